"""3DPW frame i shows imageFiles/<seq>/image_{i:05d}.jpg, whatever `img_frame_ids` holds (ROMP, SPIN, VIBE)."""

from __future__ import annotations

import pickle

import numpy as np

from romp_hydra.data.sources.pw3d import PW3D
from tests.data.sources.fixtures_3d import write_pw3d_sequence


def test_sequence_frame_index_names_the_image_not_img_frame_ids(tmp_path, shared_cache_dir):
    root = tmp_path / "3DPW"
    write_pw3d_sequence(root, "test", "downtown_walking_00")
    path = root / "sequenceFiles" / "test" / "downtown_walking_00.pkl"
    with open(path, "rb") as file:
        data = pickle.load(file, encoding="latin1")
    # In the official files img_frame_ids index the 60 Hz poses: 0, 2, 4, ... plus an offset, never arange.
    data["img_frame_ids"] = np.arange(4) * 2 + 7
    with open(path, "wb") as file:
        pickle.dump(data, file, protocol=2)

    source = PW3D(root, "test", body_model_kind="standin", body_model_dir=shared_cache_dir / "standin_smpl")
    names = [source.store.image_record(i)["imgpath"] for i in range(len(source))]
    assert names == [f"imageFiles/downtown_walking_00/image_{i:05d}.jpg" for i in range(4)]
