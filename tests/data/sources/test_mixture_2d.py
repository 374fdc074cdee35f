"""The 2D sources through the real config tree: every conf/source YAML instantiates on its fixture, and a mixture of
them produces batches through the training DataLoader with worker processes."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from romp_hydra import batch as masks
from romp_hydra.data.loader import build_eval_loader, build_sources, build_train_loader
from tests.data.sources.fixtures_2d import (
    assert_valid_batch,
    write_aich_fixture,
    write_coco_fixture,
    write_crowdhuman_fixture,
    write_crowdpose_fixture,
    write_internet_fixture,
    write_lsp_fixture,
    write_mpii_fixture,
    write_posetrack_fixture,
    write_up_fixture,
)

SMALL = ["data.input_size=128", "data.centermap_size=16", "data.max_person=16", "data.batch_size=4",
         "sampling.epoch_samples=8"]
# dataset key -> number of images its fixture keeps with the default options.
EXPECTED_IMAGES = {"coco": 2, "crowdpose": 2, "crowdhuman": 2, "mpii": 2, "lsp": 2, "aich": 2, "posetrack": 4,
                   "up": 2, "internet": 2, "crowdpose_val": 3, "crowdpose_test": 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """One ROMP-style dataset folder with every 2D fixture (packed on first use, shared by the tests here)."""
    root = tmp_path_factory.mktemp("dataset")
    write_coco_fixture(root)
    for split in ("train", "val", "test"):
        write_crowdpose_fixture(root, split)
    write_crowdhuman_fixture(root)
    write_mpii_fixture(root)
    write_lsp_fixture(root)
    write_aich_fixture(root)
    write_posetrack_fixture(root)
    write_up_fixture(root)
    write_internet_fixture(root)
    return root


@pytest.mark.parametrize("dataset", sorted(EXPECTED_IMAGES))
def test_each_dataset_config_instantiates_on_its_fixture(compose_cfg, data_dir, dataset):
    cfg = compose_cfg([f"dataset={dataset}", f"paths.data_dir={data_dir}", *SMALL])
    [(key, source)] = build_sources(cfg.dataset).items()
    assert len(source) == EXPECTED_IMAGES[dataset]
    assert source.key == key and source.get_image_info(0)["ds"] == key


def test_crowdpose_val_is_an_evaluation_set_of_every_image(compose_cfg, data_dir):
    cfg = compose_cfg(["dataset=crowdpose_val", f"paths.data_dir={data_dir}", *SMALL, "data.val_batch_size=3",
                       "data.num_workers=0"])
    [batch] = list(build_eval_loader(cfg, "crowdpose"))
    assert batch["image"].shape == (3, 3, 128, 128) and batch["dataset"] == ["crowdpose"] * 3
    assert batch["person_mask"].sum() == 5  # 3 + 1 + the 36 px person an unfiltered split keeps


@pytest.mark.timeout(90)  # a deadlocked worker fails the test instead of hanging the suite
def test_mixture_through_the_dataloader_with_workers(compose_cfg, data_dir):
    # As in training after an in-process validation pass (or after any earlier test here), OpenCV's thread pool is
    # already running in this process when the workers fork: loading must still work.
    cv2.warpAffine(np.zeros((480, 640, 3), np.uint8), np.eye(2, 3), (512, 512))
    members = ["crowdpose", "crowdhuman", "mpii", "lsp", "posetrack", "internet"]
    cfg = compose_cfg(["dataset=coco", f"paths.data_dir={data_dir}", *SMALL, "data.num_workers=2",
                       *(f"+source@dataset.members.{key}={key}" for key in members)])
    loader = build_train_loader(cfg)
    assert [len(source) for source in loader.dataset.sources] == [2, 2, 2, 2, 2, 4, 2]
    batches = list(loader)
    assert len(batches) == 2  # epoch_samples 8 / batch 4
    for batch in batches:
        assert_valid_batch(batch, 4)
        assert batch["skipped"] == []
        assert set(batch["dataset"]) <= {"coco", *members}
    datasets = [name for batch in batches for name in batch["dataset"]]
    assert len(set(datasets)) >= 3  # uniform weights over 7 members: several appear in 8 draws
    valid = torch.cat([batch["valid_masks"] for batch in batches])
    persons = torch.cat([batch["person_mask"] for batch in batches])
    assert not valid[~persons].any() and not valid[..., masks.KP3D].any()  # no 2D dataset claims 3D joints
