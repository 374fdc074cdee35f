"""The 'internet' source: unlabelled images, zero persons per sample, through the pipeline and collate."""
from __future__ import annotations

import numpy as np
import pytest

from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.collate import collate_samples
from romp_hydra.data.pipeline import SamplePipeline
from romp_hydra.data.sources.internet import Internet
from tests.data.sources.fixtures_2d import assert_valid_batch, pipeline_batch, write_internet_fixture


def test_internet_lists_images_only(tmp_path):
    fixture = write_internet_fixture(tmp_path)
    source = Internet(fixture.root)
    assert len(source) == 2 and [p.name for p in source.image_paths] == fixture.images
    info = source.get_image_info(1)
    assert info["image"].shape == (260, 200, 3) and info["ds"] == "internet"
    assert info["kp2ds"].shape == (0, 54, 3) and info["vmask_2d"].shape == (0, 3) and info["vmask_3d"].shape == (0, 6)


def test_internet_batches_have_no_persons_and_no_centre_loss(tmp_path):
    batch = pipeline_batch(Internet(write_internet_fixture(tmp_path).root))
    assert_valid_batch(batch, 2)
    assert not batch["person_mask"].any() and not batch["all_persons_labelled"].any()
    assert (batch["centermap"] == 0).all() and (batch["kp2d"] == -2).all()


def test_internet_evaluation_letterbox(tmp_path):
    source = Internet(write_internet_fixture(tmp_path).root)
    pipeline = SamplePipeline({"input_size": 64, "centermap_size": 8, "max_person": 4}, train=False)
    batch = collate_samples([pipeline(source.get_image_info(i), np.random.default_rng(i)) for i in range(2)])
    assert batch["image"].shape == (2, 3, 64, 64) and not batch["person_mask"].any()


def test_internet_empty_folder(tmp_path):
    (tmp_path / "internet").mkdir()
    with pytest.raises(DatasetNotFoundError, match="any image"):
        Internet(tmp_path / "internet")
