"""MixtureDataset / MixtureLoader: bad files are skipped and counted, too many fail the run, resume is exact."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from romp_hydra.config.errors import ConfigError
from romp_hydra.data.loader import (
    BadDataError,
    CollateWithSkips,
    MixtureDataset,
    MixtureLoader,
    build_eval_loader,
    build_train_loader,
    instantiate_source,
)
from romp_hydra.data.pipeline import SamplePipeline
from romp_hydra.data.sampler import MixtureSampler
from romp_hydra.data.template import MyDataset, write_example

SMALL_DATA = {"input_size": 64, "centermap_size": 8, "max_person": 4, "batch_size": 4, "val_batch_size": 2,
              "num_workers": 0, "max_bad_fraction": 0.01, "augment": {"enabled": True}}


@pytest.fixture
def example_root(tmp_path):
    return write_example(tmp_path / "data", num_images=6)


def _corrupt(root, *names):
    for name in names:
        (root / "images" / name).write_bytes(b"this is not a jpeg")
    return [str(root / "images" / name) for name in names]


def _loader(source, epoch_samples=48, batch_size=4, max_bad_fraction=0.5, min_samples=10, workers=0, seed=0):
    sampler = MixtureSampler([len(source)], None, epoch_samples, seed=seed, names=[source.key])
    dataset = MixtureDataset([source], SamplePipeline(SMALL_DATA, train=True))
    return MixtureLoader(dataset, sampler, batch_size, max_bad_fraction=max_bad_fraction,
                         min_samples_for_bad_fraction=min_samples, num_workers=workers,
                         collate_fn=CollateWithSkips())


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_image_is_replaced_counted_and_reported(example_root, workers):
    source = MyDataset(example_root, key="mine")
    len(source)  # pack while every image is still readable
    [bad_path] = _corrupt(example_root, "img_002.jpg")
    loader = _loader(source, workers=workers)

    skipped, used_paths = [], []
    for batch in loader:
        assert batch["image"].shape == (4, 3, 64, 64)  # replaced, so batches stay full
        skipped.extend(batch["skipped"])
        used_paths.extend(batch["imgpath"])
    assert bad_path not in used_paths
    assert len(skipped) > 0 and {s.path for s in skipped} == {bad_path}
    assert all(s.dataset == "mine" and s.index == 2 and "UnreadableImageError" in s.reason for s in skipped)
    # counted in the main process, whatever the number of worker processes
    assert loader.bad_samples.bad == len(skipped)
    assert loader.bad_samples.attempted == 48 + len(skipped)
    assert list(loader.bad_samples.bad_files) == [bad_path]


def test_replacement_is_deterministic(example_root):
    source = MyDataset(example_root, key="mine")
    len(source)
    _corrupt(example_root, "img_002.jpg")
    dataset = MixtureDataset([source], SamplePipeline(SMALL_DATA, train=True))
    first, second = dataset[(0, 2, 12345)], dataset[(0, 2, 12345)]
    assert len(first["skipped"]) >= 1 and first["imgpath"] == second["imgpath"]
    np.testing.assert_array_equal(first["image"], second["image"])
    np.testing.assert_array_equal(first["kp2d"], second["kp2d"])


def test_too_many_bad_files_fail_with_a_summary(example_root):
    source = MyDataset(example_root, key="mine")
    len(source)
    bad_paths = _corrupt(example_root, "img_000.jpg", "img_003.jpg", "img_004.jpg")
    loader = _loader(source, max_bad_fraction=0.01, min_samples=20)
    with pytest.raises(BadDataError) as failure:
        for _ in loader:
            pass
    text = str(failure.value)
    assert "more than data.max_bad_fraction=0.01" in text
    assert all(path in text for path in bad_paths)
    assert loader.bad_samples.attempted >= 20  # judged only after the minimum count


def test_a_broken_member_fails_instead_of_looping(example_root):
    source = MyDataset(example_root, key="mine")
    len(source)
    _corrupt(example_root, *[f"img_{i:03d}.jpg" for i in range(6)])
    dataset = MixtureDataset([source], SamplePipeline(SMALL_DATA, train=True))
    with pytest.raises(BadDataError, match="8 items of dataset 'mine' in a row could not be used"):
        dataset[(0, 0, 1)]


def test_loader_state_resumes_the_exact_sequence_and_advances_epochs(example_root):
    source = MyDataset(example_root, key="mine")
    full = [batch["imgpath"] for batch in _loader(source, epoch_samples=24, seed=3)]

    interrupted = _loader(source, epoch_samples=24, seed=3)
    seen = []
    for step, batch in enumerate(interrupted):
        seen.append(batch["imgpath"])
        if step == 2:
            state = interrupted.state_dict()
            break
    assert state["sampler"]["position"] == 12

    resumed = _loader(source, epoch_samples=24, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)
    assert len(resumed) == 3
    rest = [batch["imgpath"] for batch in resumed]
    assert seen + rest == full
    # a finished pass moves on to the next epoch by itself
    assert resumed.sampler.epoch == 1 and len(resumed) == 6


def test_eval_loader_reads_every_item_in_order_and_never_replaces(example_root):
    cfg = OmegaConf.create({"seed": 0, "data": SMALL_DATA, "dataset": {"name": "mine", "members": {
        "mine": {"_target_": "romp_hydra.data.template.MyDataset", "root": str(example_root)}}}})
    loader = build_eval_loader(cfg, "mine")
    paths = [path for batch in loader for path in batch["imgpath"]]
    assert paths == [str(example_root / "images" / f"img_{i:03d}.jpg") for i in range(6)]
    assert [int(i) for batch in build_eval_loader(cfg, cfg.dataset) for i in batch["index"]] == list(range(6))

    _corrupt(example_root, "img_004.jpg")
    with pytest.raises(BadDataError, match="img_004.jpg"):
        for _ in build_eval_loader(cfg, "mine"):
            pass


def test_build_train_loader_from_config(example_root, tmp_path):
    cfg = OmegaConf.create({
        "seed": 5, "data": {**SMALL_DATA, "batch_size": 3},
        "dataset": {"name": "two", "members": {
            "a": {"_target_": "romp_hydra.data.template.MyDataset", "root": str(example_root)},
            "b": {"_target_": "romp_hydra.data.template.MyDataset", "root": str(example_root),
                  "store_dir": str(tmp_path / "cache")}}},
        "sampling": {"weights": {"a": 0.0, "b": 1.0}, "epoch_samples": 9},
    })
    loader = build_train_loader(cfg, rank=1, world_size=2)
    assert isinstance(loader, MixtureLoader) and len(loader) == 1  # 9 // 2 = 4 samples -> 1 full batch of 3
    [batch] = list(loader)
    assert batch["dataset"] == ["b", "b", "b"]  # member keys tag the samples; weight 0 is never drawn
    assert batch["image"].dtype == torch.uint8 and batch["centermap"].shape == (3, 1, 8, 8)
    assert batch["skipped"] == []


def test_bad_target_is_a_config_error_naming_the_member():
    with pytest.raises(ConfigError, match=r"dataset.members.mine._target_='no_such_module.Dataset'"):
        instantiate_source("mine", OmegaConf.create({"_target_": "no_such_module.Dataset", "root": "/x"}))


def test_samples_do_not_depend_on_the_number_of_workers(example_root):
    source = MyDataset(example_root, key="mine")
    runs = []
    for workers in (0, 2):
        batches = list(_loader(source, epoch_samples=16, workers=workers, seed=8))
        runs.append((torch.cat([b["image"] for b in batches]), [p for b in batches for p in b["imgpath"]]))
    assert runs[0][1] == runs[1][1]
    assert torch.equal(runs[0][0], runs[1][0])  # same augmentation: it comes from the per-sample seed
