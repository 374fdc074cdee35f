"""Tiny datasets in the real on-disk formats of the 3D / video / evaluation sources, and batch helpers.

Every writer returns the raw arrays it wrote, so tests can check where each value lands. People are drawn from
one standing-person layout (`body_2d` / `body_3d`); tests overwrite a few joints with distinctive values.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from scipy.io import savemat

from romp_hydra import batch as masks
from romp_hydra.body.joint_sets import JOINT54, resolve_joint_set
from romp_hydra.data.loader import CollateWithSkips, MixtureDataset
from romp_hydra.data.pipeline import SamplePipeline

INPUT_SIZE = 128

# A standing person facing the camera, (x, y) offsets from the pelvis in units of its height (y down).
BODY: dict[str, tuple[float, float]] = {
    "Head_top": (0.0, -0.50), "Head": (0.0, -0.44), "Jaw_H36M": (0.0, -0.40), "Nose": (0.0, -0.42),
    "Neck": (0.0, -0.33), "Neck_LSP": (0.0, -0.32), "Thorax_MPII": (0.0, -0.30), "Spine_H36M": (0.0, -0.15),
    "R_Shoulder": (-0.12, -0.30), "L_Shoulder": (0.12, -0.30), "R_Elbow": (-0.16, -0.15),
    "L_Elbow": (0.16, -0.15), "R_Wrist": (-0.18, 0.0), "L_Wrist": (0.18, 0.0), "R_Hand": (-0.19, 0.04),
    "L_Hand": (0.19, 0.04), "Pelvis": (0.0, 0.0), "R_Hip": (-0.07, 0.0), "L_Hip": (0.07, 0.0),
    "R_Knee": (-0.08, 0.25), "L_Knee": (0.08, 0.25), "R_Ankle": (-0.08, 0.50), "L_Ankle": (0.08, 0.50),
    "R_BigToe": (-0.09, 0.53), "L_BigToe": (0.09, 0.53), "R_Eye": (-0.02, -0.44), "L_Eye": (0.02, -0.44),
    "R_Ear": (-0.04, -0.43), "L_Ear": (0.04, -0.43),
}  # fmt: skip


def body_2d(joint_set: str, pelvis_xy: tuple[float, float], height: float) -> np.ndarray:
    """(J, 2) pixels of `joint_set`; joints the layout lacks sit a little above the pelvis."""
    names = resolve_joint_set(joint_set)
    offsets = np.array([BODY.get(name, (0.0, -0.1)) for name in names])
    return np.asarray(pelvis_xy, dtype=np.float64) + offsets * height


def body_3d(joint_set: str, pelvis_xyz: tuple[float, float, float], height: float = 1.7) -> np.ndarray:
    """(J, 3) metres, camera axes; each joint a little deeper than the previous so none coincide."""
    names = resolve_joint_set(joint_set)
    offsets = np.array([(*BODY.get(name, (0.0, -0.1)), 0.0) for name in names]) * height
    offsets[:, 2] = 0.01 * np.arange(len(names))
    return np.asarray(pelvis_xyz, dtype=np.float64) + offsets


def index_of(joint_set: str, name: str) -> int:
    return resolve_joint_set(joint_set).index(name)


def write_image(path: Path, height: int, width: int, value: int = 90) -> Path:
    """A small JPEG with a gradient (so it is not blank) at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack(
        [np.full_like(rows, value), rows * 255 // max(height - 1, 1), cols * 255 // max(width - 1, 1)],
        axis=-1,
    ).astype(np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def write_video(path: Path, values: list[int], height: int, width: int) -> Path:
    """A Motion-JPEG AVI whose frame i is the solid grey `values[i]`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (width, height))
    assert writer.isOpened()
    for value in values:
        writer.write(np.full((height, width, 3), value, np.uint8))
    writer.release()
    return path


# ---- batches through the real pipeline ---------------------------------------------------------------------
def pipeline_batch(source: Any, indices: list[int] | None = None, *, train: bool = True) -> dict[str, Any]:
    """The collated batch of `source`'s items (default: all) through the training (or evaluation) pipeline."""
    settings = {"input_size": INPUT_SIZE, "centermap_size": INPUT_SIZE // 8, "max_person": 8}
    dataset = MixtureDataset([source], SamplePipeline(settings, train=train), replace_bad=False)
    indices = list(range(len(source))) if indices is None else indices
    return CollateWithSkips()([dataset[(0, index, 1000 + index)] for index in indices])


def assert_valid_batch(batch: dict[str, Any], persons_per_image: list[int], *, kp3d: bool) -> None:
    """Shapes and dtypes of the training batch, one slot per annotated person, and root-centred 3D joints."""
    size = len(persons_per_image)
    assert batch["image"].shape == (size, 3, INPUT_SIZE, INPUT_SIZE) and batch["image"].dtype == torch.uint8
    assert batch["kp2d"].shape == (size, 8, 54, 2) and batch["kp3d"].shape == (size, 8, 54, 3)
    assert batch["centermap"].shape == (size, 1, INPUT_SIZE // 8, INPUT_SIZE // 8)
    assert batch["person_mask"].sum(dim=1).tolist() == persons_per_image
    assert batch["skipped"] == []
    valid = batch["valid_masks"][batch["person_mask"]]
    assert bool(valid[:, masks.KP3D].all()) == kp3d
    if kp3d:
        joints = batch["kp3d"][batch["person_mask"]]
        hips = joints[:, [JOINT54["R_Hip"], JOINT54["L_Hip"]]].mean(dim=1)
        torch.testing.assert_close(hips, torch.zeros_like(hips), atol=1e-5, rtol=0)


# ---- Human3.6M (ROMP's annots.npz) -------------------------------------------------------------------------
H36M_TRAIN_NAMES = ("S1_Directions 1_0_0.jpg", "S1_Directions 1_0_1.jpg", "S1_Directions 1_0_2.jpg")
H36M_TEST_NAMES = ("S9_Walking 1_1_0.jpg", "S11_Sitting_3_5.jpg")
H36M_IMAGE = (120, 100)  # (H, W)


def write_h36m(root: Path) -> dict[str, dict[str, Any]]:
    """ROMP's h36m/ layout: annots.npz (pickled dict keyed by image name), h36m_{train,test}.txt, images/."""
    rng = np.random.default_rng(0)
    annots = {}
    for i, name in enumerate(H36M_TRAIN_NAMES + H36M_TEST_NAMES):
        kp2d = body_2d("h36m_32", (50 + i, 60), 80)
        kp2d[index_of("h36m_32", "L_Wrist")] = (70.25 + i, 55.5)
        kp2d[index_of("h36m_32", "R_Ankle")] = (30.5, 100.75 + i)
        kp3d = body_3d("h36m_32", (0.1 * i, 0.2, 4.0 + 0.1 * i))
        kp3d[index_of("h36m_32", "L_Wrist")] = (0.31 + 0.1 * i, 0.05, 4.2)
        annots[name] = {
            "kp2d": kp2d.reshape(64),
            "kp3d_mono": kp3d.reshape(96),
            "poses": [np.zeros(72), rng.uniform(-0.3, 0.3, 72)],
            "cam": [np.zeros(3), rng.uniform(-0.5, 0.5, 3)],
            "betas": rng.uniform(-1, 1, 10),
        }
        write_image(root / "images" / name, *H36M_IMAGE)
    np.savez(root / "annots.npz", annots=annots)
    (root / "h36m_train.txt").write_text("\n".join(H36M_TRAIN_NAMES) + "\n")
    (root / "h36m_test.txt").write_text("\n".join(H36M_TEST_NAMES) + "\n")
    return annots


# ---- MPI-INF-3DHP (raw release, ROMP's annots.npz, test set in MATLAB v7.3) --------------------------------
MPIINF_SIZE = 64  # square frames
MPIINF_FOCAL = 50.0


def mpiinf_pose(camera: int, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """(28, 2) pixels and (28, 3) millimetres of the subject in `camera`'s view at `frame`."""
    kp2d = body_2d("mpi_inf_28", (30 + frame, 30 + camera), 40)
    kp2d[index_of("mpi_inf_28", "L_Wrist")] = (40.5 + frame, 20.25 + camera)
    kp2d[index_of("mpi_inf_28", "R_Ankle")] = (25.75, 49.5 + frame)
    kp3d = body_3d("mpi_inf_28", (0.1 * camera, 0.1 * frame, 3.5)) * 1000.0
    return kp2d, kp3d


def write_mpiinf_sequence(
    root: Path,
    subject: int,
    sequence: int,
    cameras: tuple[int, ...],
    frames: int = 3,
    out_of_view: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """S<subject>/Seq<sequence>/: annot.mat (14 camera cells), camera.calibration, a video per camera in
    `cameras`. `out_of_view=(camera, frame)` puts that frame's right ankle outside the image."""
    folder = root / f"S{subject}" / f"Seq{sequence}"
    (folder / "imageSequence").mkdir(parents=True, exist_ok=True)
    annot2 = np.empty((14, 1), dtype=object)
    annot3 = np.empty((14, 1), dtype=object)
    for camera in range(14):
        poses = [mpiinf_pose(camera, f) for f in range(frames)]
        kp2d = np.stack([p[0] for p in poses])
        if out_of_view is not None and out_of_view[0] == camera:
            kp2d[out_of_view[1], index_of("mpi_inf_28", "R_Ankle")] = (MPIINF_SIZE + 5.0, 10.0)
        annot2[camera, 0] = kp2d.reshape(frames, 56)
        annot3[camera, 0] = np.stack([p[1] for p in poses]).reshape(frames, 84)
    savemat(
        folder / "annot.mat",
        {
            "annot2": annot2,
            "annot3": annot3,
            "univ_annot3": annot3,
            "frames": np.arange(frames)[:, None],
            "cameras": np.arange(14)[None],
        },
    )
    lines = ["Skeletool Camera Calibration File V1.0"]
    for camera in range(14):
        fx = MPIINF_FOCAL + camera
        intrinsic = [fx, 0, 32, 0, 0, fx, 31, 0, 0, 0, 1, 0, 0, 0, 0, 1]
        lines += [
            f"name          {camera}",
            "  sensor      10 10",
            f"  size        {MPIINF_SIZE} {MPIINF_SIZE}",
            "  animated    0",
            "  intrinsic   " + " ".join(f"{v:g}" for v in intrinsic) + " ",
            "  extrinsic   1 0 0 0 0 1 0 0 0 0 1 3000 0 0 0 1 ",
            "  radial      0",
        ]
    (folder / "camera.calibration").write_text("\n".join(lines) + "\n")
    for camera in cameras:
        write_video(
            folder / "imageSequence" / f"video_{camera}.avi",
            [40 + 80 * f for f in range(frames)],
            MPIINF_SIZE,
            MPIINF_SIZE,
        )
    return {"annot2": annot2, "annot3": annot3}


def write_mpiinf_romp(root: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """ROMP's mpi_inf_3dhp/annots.npz ({name: {kp2d, kp3d (m), intrinsics, extrinsics}}) and the images."""
    annots = {}
    for i, name in enumerate(names):
        kp2d, kp3d = mpiinf_pose(0, i)
        annots[name] = {
            "kp2d": kp2d,
            "kp3d": kp3d / 1000.0,
            "intrinsics": [51.0, 52.0, 30.0, 29.0],
            "extrinsics": [np.eye(3), np.zeros(3)],
        }
        write_image(root / "images" / name, MPIINF_SIZE, MPIINF_SIZE)
    np.savez(root / "annots.npz", annots=annots, frame_info={})
    return annots


def write_mat73(path: Path, variables: dict[str, np.ndarray]) -> Path:
    """A MATLAB v7.3 MAT-file: HDF5 with MATLAB's 512-byte header as user block and each variable stored with
    its dimensions reversed (MATLAB is column-major), as MATLAB's `save -v7.3` writes it."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as mat:
        for name, value in variables.items():
            dataset = mat.create_dataset(name, data=np.asarray(value, dtype=np.float64).T)
            dataset.attrs["MATLAB_class"] = np.bytes_("double")
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 ."
    )
    with open(path, "r+b") as file:
        file.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")
    return path


MPIINF_TEST_SIZE = (72, 96)  # (H, W)


def mpiinf_test_pose(frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(17, 2) pixels, (17, 3) mm camera frame and (17, 3) mm universal skeleton of the subject at `frame`."""
    kp2d = body_2d("mpi_inf_test_17", (48 + frame, 36), 50)
    kp2d[index_of("mpi_inf_test_17", "L_Wrist")] = (60.5 + frame, 33.25)
    kp3d = body_3d("mpi_inf_test_17", (0.2, 0.1, 4.0 + frame)) * 1000.0
    univ = body_3d("mpi_inf_test_17", (0.0, 0.0, 4.0 + frame), height=1.8) * 1000.0
    univ[index_of("mpi_inf_test_17", "L_Wrist")] = (251.0, 12.5, 4100.0 + frame)
    return kp2d, kp3d, univ


def write_mpiinf_test(
    root: Path, sequence: int, valid: list[int], out_of_view_frame: int | None
) -> dict[str, Any]:
    """TS<sequence>/annot_data.mat (MATLAB v7.3: annot2 2x17x1xF, annot3 / univ_annot3 3x17x1xF, valid_frame
    1xF) and TS<sequence>/imageSequence/img_<f+1:06d>.jpg for every frame."""
    poses = [mpiinf_test_pose(f) for f in range(len(valid))]
    annot2 = np.stack([p[0] for p in poses])  # (F, 17, 2)
    if out_of_view_frame is not None:
        annot2[out_of_view_frame, index_of("mpi_inf_test_17", "R_Ankle")] = (-3.0, 40.0)
    annot3 = np.stack([p[1] for p in poses])
    univ = np.stack([p[2] for p in poses])

    def matlab_order(values: np.ndarray) -> np.ndarray:  # (F, 17, C) -> MATLAB's C x 17 x 1 x F
        return values.transpose(2, 1, 0)[:, :, None, :]

    folder = root / f"TS{sequence}"
    write_mat73(
        folder / "annot_data.mat",
        {
            "annot2": matlab_order(annot2),
            "annot3": matlab_order(annot3),
            "univ_annot3": matlab_order(univ),
            "valid_frame": np.asarray(valid, dtype=np.float64)[None],
        },
    )
    for frame in range(len(valid)):
        write_image(folder / "imageSequence" / f"img_{frame + 1:06d}.jpg", *MPIINF_TEST_SIZE)
    return {"annot2": annot2, "annot3": annot3, "univ_annot3": univ}


# ---- MuCo-3DHP / MuPoTS-3D (COCO-style json of the 3DMPPE release) -----------------------------------------
def multi_person(joint_set: str, count: int, image_index: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, J, 2) pixels and (P, J, 3) millimetres for `count` people side by side."""
    kp2d, kp3d = [], []
    for person in range(count):
        joints = body_2d(joint_set, (20 + 30 * person + image_index, 45), 50)
        joints[index_of(joint_set, "L_Wrist")] = (30.5 + 30 * person, 41.25 + image_index)
        kp2d.append(joints)
        joints3d = body_3d(joint_set, (-0.8 + 0.6 * person, 0.1, 5.0 + image_index)) * 1000.0
        joints3d[index_of(joint_set, "L_Wrist")] = (123.0 + person, 45.0, 5100.0 + image_index)
        kp3d.append(joints3d)
    kp2d[-1][index_of(joint_set, "R_Ankle")] = (width + 4.0, 60.0)  # the last person's ankle leaves the image
    return np.array(kp2d), np.array(kp3d)


def write_coco3d(
    root: Path,
    json_name: str,
    joint_set: str,
    images: list[tuple[str, int]],
    size: tuple[int, int],
    camera_key: str,
) -> dict[str, Any]:
    """COCO-style MuCo-3DHP.json / MuPoTS-3D.json with `images` [(file_name, people)] and the images.

    camera_key: 'f_c' (MuCo: f [fx, fy], c [cx, cy]) or 'intrinsic' (MuPoTS: [fx, fy, cx, cy])."""
    height, width = size
    data: dict[str, list] = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    arrays = {}
    for image_id, (file_name, people) in enumerate(images):
        record = {"id": image_id, "file_name": file_name, "width": width, "height": height}
        if camera_key == "f_c":
            record.update(f=[60.0 + image_id, 61.0], c=[width / 2, height / 2])
        else:
            record["intrinsic"] = [60.0 + image_id, 61.0, width / 2, height / 2]
        data["images"].append(record)
        kp2d, kp3d = multi_person(joint_set, people, image_id, width)
        arrays[file_name] = (kp2d, kp3d)
        for person in range(people):
            data["annotations"].append(
                {
                    "id": len(data["annotations"]),
                    "image_id": image_id,
                    "category_id": 1,
                    "keypoints_img": kp2d[person].tolist(),
                    "keypoints_cam": kp3d[person].tolist(),
                    "bbox": [0, 0, width, height],
                }
            )
        write_image(root / file_name, height, width)
    (root / json_name).write_text(json.dumps(data))
    return arrays


# ---- 3DPW (official sequence files, VIBE db) ---------------------------------------------------------------
PW3D_IMAGE = (128, 96)  # (H, W): portrait, like most of 3DPW


def pw3d_camera(frame: int) -> np.ndarray:
    """(4, 4) world-to-camera pose: 30 degrees about the camera's y axis, plus a translation."""
    angle = np.deg2rad(30.0 + 5 * frame)
    pose = np.eye(4)
    pose[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    pose[:3, 3] = (0.1, -0.2, 4.0 + 0.1 * frame)
    return pose


def write_pw3d_sequence(root: Path, folder: str, sequence: str, frames: int = 4) -> dict[str, Any]:
    """sequenceFiles/<folder>/<sequence>.pkl with two actors (a Python-2-style pickle) and the images.

    Actor 1 is undetected (poses2d all zero) in frame 2; actor 0's camera pose is invalid in frame 3."""
    rng = np.random.default_rng(1)
    poses2d, poses, trans, betas = [], [], [], []
    for actor in range(2):
        joints = np.stack([body_2d("coco_18", (30 + 35 * actor + f, 64), 70) for f in range(frames)])
        joints[:, index_of("coco_18", "L_Wrist")] = [(40.5 + 35 * actor + f, 50.25) for f in range(frames)]
        conf = np.full((frames, 18, 1), 0.8)
        poses2d.append(np.concatenate([joints, conf], axis=2).transpose(0, 2, 1))  # (N, 3, 18)
        poses.append(rng.uniform(-0.4, 0.4, (frames, 72)))
        trans.append(np.stack([(0.5 * actor - 0.3, 0.1, 0.05 * f) for f in range(frames)]))
        betas.append(rng.uniform(-1, 1, 10))
    poses2d[1][2] = 0.0
    campose_valid = [np.ones(frames, bool), np.ones(frames, bool)]
    campose_valid[0][3] = False
    data = {
        "sequence": sequence,
        "genders": ["f", "m"],
        "poses": poses,
        "trans": trans,
        "betas": betas,
        "poses2d": poses2d,
        "campose_valid": campose_valid,
        "cam_poses": np.stack([pw3d_camera(f) for f in range(frames)]),
        "cam_intrinsics": np.array([[90.0, 0, 48.0], [0, 90.0, 64.0], [0, 0, 1]]),
        "img_frame_ids": np.arange(frames),
    }
    path = root / "sequenceFiles" / folder / f"{sequence}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        pickle.dump(data, file, protocol=2)
    for frame in range(frames):
        write_image(root / "imageFiles" / sequence / f"image_{frame:05d}.jpg", *PW3D_IMAGE)
    return data


def write_vibe_db(
    root: Path, split: str, rows: list[tuple[str, int]], joints3d: int
) -> dict[str, np.ndarray]:
    """vibe_db/3dpw_<split>_db.pt (joblib) with one row per (vid_name, frame_id); the last row is not valid.
    `joints3d` is 49 (train db) or 14 (val/test db). Also writes the images."""
    import joblib

    count = len(rows)
    rng = np.random.default_rng(2)
    joints2d = np.stack(
        [np.concatenate([body_2d("lsp_14", (40 + 5 * i, 64), 70), np.ones((14, 1))], 1) for i in range(count)]
    )
    joints2d[:, index_of("lsp_14", "L_Wrist"), :2] = [(55.5 + i, 60.25) for i in range(count)]
    lsp3d = np.stack([body_3d("lsp_14", (0.0, 0.0, 0.1 * i)) for i in range(count)])
    lsp3d[:, index_of("lsp_14", "L_Wrist")] = [(0.3 + 0.01 * i, 0.02, 0.1) for i in range(count)]
    if joints3d == 49:
        full = rng.uniform(-1, 1, (count, 49, 3))
        full[:, 25:39] = lsp3d
    else:
        full = lsp3d
    db = {
        "vid_name": np.array([name for name, _ in rows]),
        "frame_id": np.array([f for _, f in rows]),
        "img_name": np.array(
            [f"/somewhere/imageFiles/{name.rsplit('_', 1)[0]}/image_{f:05d}.jpg" for name, f in rows]
        ),
        "joints2D": joints2d,
        "joints3D": full,
        "shape": rng.uniform(-1, 1, (count, 10)),
        "pose": rng.uniform(-0.4, 0.4, (count, 72)),
        "bbox": np.zeros((count, 4)),
        "features": np.zeros((count, 8)),
        "valid": np.array([1] * (count - 1) + [0]),
    }
    path = root / "vibe_db" / f"3dpw_{split}_db.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(db, path)
    for name, frame in rows:
        image = root / "imageFiles" / name.rsplit("_", 1)[0] / f"image_{frame:05d}.jpg"
        if not image.exists():
            write_image(image, *PW3D_IMAGE)
    return db


# ---- CMU Panoptic (CRMH pickles) ---------------------------------------------------------------------------
CMUP_ANNOT_SIZE = (60, 104)  # (H, W) of the annotation's coordinates
CMUP_IMAGE = (120, 208)  # (H, W) of the images: twice the annotation's resolution


def cmup_person(offset: float) -> tuple[np.ndarray, np.ndarray]:
    """(24, 3) 2D [x, y, conf] at annotation resolution and (24, 4) 3D [x, y, z, conf] metres."""
    kp2d = np.concatenate([body_2d("cmup_j24", (20 + offset, 30), 40), np.ones((24, 1))], axis=1)
    kp2d[index_of("cmup_j24", "L_Wrist")] = (30.5 + offset, 28.25, 0.9)
    kp3d = np.concatenate([body_3d("cmup_j24", (offset / 100, 0.1, 3.0)), np.ones((24, 1))], axis=1)
    kp3d[index_of("cmup_j24", "L_Wrist")] = (0.41 + offset / 100, 0.05, 3.2, 1.0)
    return kp2d, kp3d


def write_cmup(root: Path) -> list[dict[str, Any]]:
    """panoptic_annot/160422_haggling1.pkl with two usable frames (the first has a third person with only one
    joint in view) and one of the release's broken frames, plus the images."""
    entries = []
    for frame, offsets in ((100, (0.0, 40.0, 0.0)), (101, (10.0,)), (2945, (0.0,))):
        people = [cmup_person(o) for o in offsets]
        kp2d = np.stack([p[0] for p in people])
        kp3d = np.stack([p[1] for p in people])
        if len(offsets) == 3:  # third person: every joint but one outside the image
            kp2d[2, 1:, 0] = CMUP_ANNOT_SIZE[1] + 10.0
        kp3d[0, index_of("cmup_j24", "R_Ankle"), 3] = 0.05  # below the confidence threshold
        name = f"hdImgs/00_16/00_16_{frame:08d}.png"
        entries.append(
            {
                "filename": f"panoptic/160422_haggling1/{name}",
                "width": CMUP_ANNOT_SIZE[1],
                "height": CMUP_ANNOT_SIZE[0],
                "kpts2d": kp2d,
                "kpts3d": kp3d,
            }
        )
        write_image(root / "images" / f"160422_haggling1-00_16_{frame:08d}.jpg", *CMUP_IMAGE)
    (root / "panoptic_annot").mkdir(parents=True, exist_ok=True)
    with open(root / "panoptic_annot" / "160422_haggling1.pkl", "wb") as file:
        pickle.dump(entries, file, protocol=2)
    return entries
