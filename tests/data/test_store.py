"""The packed annotation store: round trip, no pickle, memory mapping, validation, StoreBackedSource packing."""
from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from torch.utils.data import DataLoader, Dataset

from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.store import PackedStore, StoreFormatError, memmap_npz
from romp_hydra.data.template import MyDataset, write_example


def _pose(offset: float) -> np.ndarray:
    joints = np.full((54, 3), -2.0, np.float32)
    joints[:17] = np.stack([np.arange(17) + offset, np.arange(17) * 2 + offset, np.ones(17)], axis=1)
    return joints


BOX = np.array([[10, 20], [50, 120], [12, 22], [48, 100]], np.float32)


def _records() -> list[dict]:
    return [
        {   # two pose persons with SMPL params and track ids, known intrinsics
            "imgpath": "images/a.jpg", "img_size": (480, 640),
            "kp2ds": np.stack([_pose(0), _pose(100)]), "vmask_2d": [[1, 1, 1], [1, 1, 1]],
            "vmask_3d": [[0, 1, 1, 1, 0, 0]] * 2, "track_ids": [4, 9],
            "params": np.arange(152, dtype=np.float32).reshape(2, 76) / 100, "camMats": np.diag([500, 500, 1]),
        },
        {   # a pose and a box-only person, 3D joints for the pose only (list form with None)
            "imgpath": "/abs/b.png", "img_size": (100, 200),
            "kp2ds": [_pose(5), BOX], "vmask_2d": [[1, 0, 1], [0, 0, 1]],
            "vmask_3d": [[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]],
            "kp3ds": [np.full((54, 3), 0.25, np.float32), None],
        },
        {"imgpath": "images/empty.jpg", "img_size": (10, 10), "kp2ds": [], "vmask_2d": np.zeros((0, 3))},
    ]


@pytest.fixture
def store_path(tmp_path):
    return PackedStore.write(tmp_path / "demo_train.npz", _records(), dataset="demo")


def test_round_trip(store_path):
    store = PackedStore(store_path)
    assert (len(store), store.num_persons) == (3, 4)
    assert store.meta["dataset"] == "demo" and store.meta["version"] == 1

    first = store.image_record(0)
    assert first["imgpath"] == "images/a.jpg" and first["img_size"] == (480, 640)
    np.testing.assert_array_equal(first["kp2ds"], np.stack([_pose(0), _pose(100)]))
    np.testing.assert_array_equal(first["track_ids"], [4, 9])
    np.testing.assert_allclose(first["params"], np.arange(152).reshape(2, 76) / 100, rtol=1e-6)
    np.testing.assert_array_equal(first["camMats"], np.diag([500, 500, 1]))
    assert first["vmask_3d"].dtype == bool and first["vmask_3d"][0].tolist() == [0, 1, 1, 1, 0, 0]
    # the store has 3D joints (image 1), so image 0 gets the -2 fill; nobody has root_trans: None
    assert np.all(first["kp3ds"] == -2) and first["root_trans"] is None

    second = store.image_record(1)
    assert isinstance(second["kp2ds"], list)  # box persons come back as (4, 2) boxes
    np.testing.assert_array_equal(second["kp2ds"][0], _pose(5))
    np.testing.assert_array_equal(second["kp2ds"][1], BOX)
    np.testing.assert_array_equal(second["track_ids"], [-1, -1])
    assert np.all(second["params"] == -10)  # no params for this image: the -10 fill
    assert np.all(second["kp3ds"][0] == 0.25) and np.all(second["kp3ds"][1] == -2)
    assert "camMats" not in second  # NaN-filled = unknown

    empty = store.image_record(2)
    assert empty["kp2ds"].shape == (0, 54, 3) and empty["vmask_2d"].shape == (0, 3)
    with pytest.raises(IndexError, match="out of range"):
        store.image_record(3)


def test_plain_arrays_load_without_pickle(store_path):
    with np.load(store_path, allow_pickle=False) as npz:
        assert set(npz.files) == {"image_paths", "img_size", "cam_mats", "person_offsets", "kp2d", "is_box",
                                  "vmask_2d", "vmask_3d", "track_ids", "kp3d", "params", "meta"}
        assert all(npz[name].dtype != object for name in npz.files)
        assert npz["person_offsets"].tolist() == [0, 2, 4, 4]
        assert npz["is_box"].tolist() == [False, False, False, True]
        assert npz["image_paths"].dtype.kind == "U"
        # a box is stored in rows 0..3 of kp2d
        np.testing.assert_array_equal(npz["kp2d"][3, :4, :2], BOX)
        assert json.loads(str(npz["meta"]))["format"] == "romp_hydra.packed_store"
    with zipfile.ZipFile(store_path) as archive:
        assert {m.compress_type for m in archive.infolist()} == {zipfile.ZIP_STORED}


def test_members_are_memory_mapped_and_pickling_carries_only_the_path(tmp_path):
    store_path = PackedStore.write(tmp_path / "big.npz", _records() * 100, dataset="big")
    store = PackedStore(store_path)
    store.image_record(0)
    assert all(isinstance(store.arrays[name], np.memmap) for name in ("kp2d", "params", "image_paths"))
    np.testing.assert_array_equal(memmap_npz(store_path)["kp2d"], np.load(store_path)["kp2d"])
    blob = pickle.dumps(store)
    assert len(blob) < 2000  # the path and metadata, not the 260 kB of kp2d
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.image_record(298)["kp2ds"][1], BOX)


class _MapsInWorker(Dataset):
    def __init__(self, store):
        self.store = store

    def __getitem__(self, index):
        return isinstance(self.store.arrays["kp2d"], np.memmap), self.store.image_record(index)["imgpath"]

    def __len__(self):
        return len(self.store)


def test_dataloader_workers_read_the_mapped_store(store_path):
    loader = DataLoader(_MapsInWorker(PackedStore(store_path)), batch_size=None, num_workers=2)
    results = list(loader)
    assert [path for _, path in results] == ["images/a.jpg", "/abs/b.png", "images/empty.jpg"]
    assert all(mapped for mapped, _ in results)


def test_compressed_archives_and_foreign_files_are_rejected(tmp_path, store_path):
    with np.load(store_path) as npz:
        np.savez_compressed(tmp_path / "compressed.npz", **{name: npz[name] for name in npz.files})
    with pytest.raises(StoreFormatError, match="compressed"):
        memmap_npz(tmp_path / "compressed.npz")
    np.savez(tmp_path / "romp_annots.npz", annots=np.zeros(3))
    with pytest.raises(StoreFormatError, match="not a packed store"):
        PackedStore(tmp_path / "romp_annots.npz")


@pytest.mark.parametrize("bad, message", [
    ({"kp2ds": [BOX], "vmask_2d": [[1, 0, 1]]}, "is a box but vmask_2d"),
    ({"kp2ds": [np.zeros((17, 3))], "vmask_2d": [[1, 0, 1]]}, r"shape \(17, 3\), expected \(54, 3\)"),
    ({"kp2ds": [_pose(0)], "vmask_2d": [[1, 0]]}, r"vmask_2d has shape \(1, 2\)"),
    ({"kp2ds": [_pose(0)], "vmask_2d": [[1, 0, 1]], "params": np.zeros((1, 72))}, r"params has shape"),
])
def test_malformed_records_name_the_record_and_field(tmp_path, bad, message):
    record = {"imgpath": "x.jpg", "img_size": (4, 4), **bad}
    with pytest.raises(StoreFormatError, match=message):
        PackedStore.write(tmp_path / "bad.npz", [record], dataset="bad")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_store_backed_source_packs_once_and_repacks_when_annotations_change(tmp_path):
    root = write_example(tmp_path / "data", num_images=4)
    source = MyDataset(root, key="mine")
    assert not source.store_path.exists()  # packing waits for first use
    assert len(source) == 4
    assert source.store_path == root / "mine_train.npz"
    info = source.get_image_info(0)
    assert info["ds"] == "mine" and info["imgpath"] == str(root / "images" / "img_000.jpg")
    assert info["image"].shape == (240, 320, 3) and info["img_size"] == (240, 320)
    # example image 0 has an unlabelled left wrist (v = 0): the 54-joint row is -2
    assert np.all(info["kp2ds"][0, 20] == -2) and info["kp2ds"][0, 24, 2] == 2.0

    packed_at = source.store_path.stat().st_mtime_ns
    assert len(MyDataset(root, key="mine")) == 4 and source.store_path.stat().st_mtime_ns == packed_at

    annotations = json.loads((root / "annotations.json").read_text())
    del annotations["img_003.jpg"]
    (root / "annotations.json").write_text(json.dumps(annotations))
    os.utime(root / "annotations.json", ns=(packed_at + 10**9, packed_at + 10**9))
    assert len(MyDataset(root, key="mine")) == 3


def test_store_dir_option_keeps_the_dataset_folder_untouched(tmp_path):
    root = write_example(tmp_path / "data", num_images=2)
    source = MyDataset(root, key="mine", store_dir=tmp_path / "cache")
    assert len(source) == 2 and (tmp_path / "cache" / "mine_train.npz").is_file()
    assert not (root / "mine_train.npz").exists()


def test_missing_root_or_annotation_file_says_what_and_where(tmp_path):
    with pytest.raises(DatasetNotFoundError) as missing_root:
        MyDataset(tmp_path / "nowhere", key="mine")
    text = str(missing_root.value)
    assert str(tmp_path / "nowhere") in text and "annotations.json" in text and "dataset.members.mine.root" in text
    assert "python -m romp_hydra.data.template" in text  # the homepage line

    (tmp_path / "empty").mkdir()
    source = MyDataset(tmp_path / "empty", key="mine")
    with pytest.raises(DatasetNotFoundError, match=f"annotation file {tmp_path / 'empty' / 'annotations.json'}"):
        len(source)
