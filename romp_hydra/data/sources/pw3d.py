"""3DPW (3D Poses in the Wild): the official sequence files, or VIBE's preprocessed databases."""

from __future__ import annotations

import logging
import pickle
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.spatial.transform import Rotation

from romp_hydra.body.joint_sets import convert_to_54
from romp_hydra.data.masks import vmask_2d_rows
from romp_hydra.data.sources._shared_3d import SMPLJoints, hip_centre, image_size
from romp_hydra.data.store import StoreBackedSource, StoreFormatError

log = logging.getLogger(__name__)

__all__ = ["GT_SOURCES", "PW3D", "camera_frame_params"]

GT_SOURCES = ("sequence", "vibe")
SEQUENCE_FOLDERS = {"train": "train", "val": "validation", "test": "test"}
GENDERS = {"m": "male", "f": "female", "male": "male", "female": "female"}
VMASK_3D_SEQUENCE = (True, True, True, True, True, True)
VMASK_3D_VIBE = (True, True, True, True, True, False)  # VIBE's db has no camera-frame translation
# VIBE's training db stores 49 joints (25 OpenPose + 24 SPIN); SPIN's first 14 are the LSP joints.
VIBE_TRAIN_LSP14 = slice(25, 39)
SEQUENCE_FIELDS = (
    "poses",
    "trans",
    "betas",
    "poses2d",
    "campose_valid",
    "cam_poses",
    "cam_intrinsics",
    "genders",
)
VIBE_FIELDS = ("vid_name", "frame_id", "joints2D", "joints3D", "pose", "shape")


def camera_frame_params(pose: np.ndarray, betas: np.ndarray, camera_rotation: np.ndarray) -> np.ndarray:
    """(N, 76) SMPL params with the global orient rotated from the world into the camera: R_cam @ R_orient.

    Args:
        pose: (N, 72) world-frame SMPL pose; betas: (10,) shape; camera_rotation: (N, 3, 3) world-to-camera.
    """
    pose = np.asarray(pose, dtype=np.float64).reshape(-1, 72)
    orient = Rotation.from_matrix(np.asarray(camera_rotation, dtype=np.float64)) * Rotation.from_rotvec(
        pose[:, :3]
    )
    out = np.empty((len(pose), 76), dtype=np.float32)
    out[:, :3] = orient.as_rotvec()
    out[:, 3:66] = pose[:, 3:66]
    out[:, 66:] = np.asarray(betas, dtype=np.float32).reshape(-1)[:10]
    return out


class PW3D(StoreBackedSource):
    """3DPW: in-the-wild video, 1-2 tracked people per frame, with 2D joints, 3D joints, SMPL pose + shape
    and intrinsics. Only the tracked people are labelled (no centre-map loss on its images); no track ids.

    Ground truth (`gt_source`):

    * 'sequence' (default): the official `sequenceFiles/<train|validation|test>/<seq>.pkl` (pickle, latin1):
      per actor `poses` (N, 72), `trans`, `betas`, `poses2d` (N, 3, 18, OpenPose/COCO-18 with confidence),
      `campose_valid`, plus `cam_poses` (N, 4, 4, world to camera), `cam_intrinsics`, `genders`. Frame i
      shows `image_{i:05d}.jpg` (`img_frame_ids` indexes the 60 Hz poses and is not used). A person is used in a frame when its `poses2d` is not all zero and `campose_valid`.
      3D joints (our 54, which contain SMPL's 24) come from the actor's gendered body model (neutral if the
      gendered files are missing) posed with `poses`, moved by `trans` and taken into the camera with
      `cam_poses`; the global orient is rotated into the camera the same way, and the root translation is the
      camera-frame hip centre. The body model runs once, in `pack_data()`. (ROMP HEAD's `root_trans` is the
      world-frame `trans`; ours is in the camera frame like every other source.)
    * 'vibe': VIBE's `vibe_db/3dpw_<split>_db.pt` (joblib): LSP-14 2D and 3D joints (train: joints 25:39 of
      49), camera-frame SMPL pose and shape, `valid` flags. This is the ground truth of ROMP's 3DPW protocol 2
      numbers. Note that VIBE built its 'val' db from the *test* sequences.

    Images: `imageFiles/<seq>/image_<frame:05d>.jpg`; the folder name is the sequence (evaluation groups
    by it).

    Args:
        gt_source: 'sequence' or 'vibe'.
        frame_stride: keep every n-th frame of each sequence (ROMP's 'val' split keeps every 5th).
        body_model_kind, body_model_dir: the body model for `gt_source=sequence` ('smpl' or 'standin').
    """

    # ROMP's PW3D keeps the base crop probability (shuffle_crop_ratio_2d) and crops with scales 1.1-2.0.
    is_3d: ClassVar[bool] = False
    scale_range: ClassVar[tuple[float, float]] = (1.1, 2.0)
    homepage: ClassVar[str] = (
        "https://virtualhumans.mpi-inf.mpg.de/3DPW/ (imageFiles.zip, sequenceFiles.zip); vibe_db: "
        "github.com/mkocabas/VIBE (data preparation)"
    )
    expected_layout: ClassVar[str] = """
        sequenceFiles/{train,validation,test}/<seq>.pkl      (gt_source=sequence)
        vibe_db/3dpw_{train,val,test}_db.pt                  (gt_source=vibe)
        imageFiles/<seq>/image_<frame:05d>.jpg
    """
    provides: ClassVar[str] = (
        "2D (COCO-18 or LSP-14), 3D joints, SMPL pose + shape (camera frame), root translation, intrinsics; "
        "1-2 labelled people per frame (others unlabelled)"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        key: str | None = None,
        store_dir: str | Path | None = None,
        gt_source: str = "sequence",
        frame_stride: int = 1,
        body_model_kind: str = "smpl",
        body_model_dir: str | Path | None = None,
    ):
        if split not in SEQUENCE_FOLDERS:
            raise ValueError(f"pw3d split={split!r}: use one of {', '.join(SEQUENCE_FOLDERS)}")
        if gt_source not in GT_SOURCES:
            raise ValueError(f"pw3d gt_source={gt_source!r}: use one of {', '.join(GT_SOURCES)}")
        if int(frame_stride) < 1:
            raise ValueError(f"pw3d frame_stride={frame_stride}: must be a positive integer")
        if gt_source == "sequence" and body_model_dir is None:
            raise ValueError(
                "pw3d gt_source=sequence needs body_model_dir (the folder with SMPL_*.pkl), e.g. "
                "body_model_dir=${paths.smpl_dir}; or use gt_source=vibe"
            )
        super().__init__(root, split, key=key or "pw3d", store_dir=store_dir)
        self.gt_source = gt_source
        self.frame_stride = int(frame_stride)
        self.body_model_kind = body_model_kind
        self.body_model_dir = Path(body_model_dir).expanduser() if body_model_dir is not None else None

    @property
    def store_path(self) -> Path:
        body = f"_{self.body_model_kind}" if self.gt_source == "sequence" else ""
        return (
            self.store_dir / f"{self.key}_{self.split}_{self.gt_source}_stride{self.frame_stride}{body}.npz"
        )

    @property
    def vibe_db_path(self) -> Path:
        return self.root / "vibe_db" / f"3dpw_{self.split}_db.pt"

    def annotation_files(self) -> list[Path]:
        if self.gt_source == "vibe":
            return [self.vibe_db_path]
        folder = self.root / "sequenceFiles" / SEQUENCE_FOLDERS[self.split]
        files = sorted(folder.glob("*.pkl"))
        if not files:
            raise self.not_found(folder / "<seq>.pkl", "the 3DPW sequence files (none found)")
        return files

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        if self.gt_source == "vibe":
            yield from self._read_vibe_db()
            return
        smpl = SMPLJoints(self.body_model_kind, self.body_model_dir, self.key)
        for path in self.annotation_files():
            yield from self._read_sequence(path, smpl)

    def _image(self, sequence: str, frame: int) -> str:
        return f"imageFiles/{sequence}/image_{int(frame):05d}.jpg"

    # -- the official sequence files -------------------------------------------------------------------------
    def _read_sequence(self, path: Path, smpl: SMPLJoints) -> Iterator[Mapping[str, Any]]:
        with open(path, "rb") as file:
            data = pickle.load(file, encoding="latin1")  # Python 2 pickles of numpy arrays
        missing = [field for field in SEQUENCE_FIELDS if field not in data]
        if missing:
            raise StoreFormatError(f"{path}: missing field(s) {missing}; is it a 3DPW sequence file?")
        sequence = path.stem
        cam_poses = np.asarray(data["cam_poses"], dtype=np.float64)
        num_frames = len(cam_poses)
        kept = np.arange(num_frames) % self.frame_stride == 0
        persons: dict[int, list[dict[str, np.ndarray]]] = defaultdict(list)  # frame -> labelled people
        for actor, gender_code in enumerate(data["genders"]):
            poses2d = np.asarray(data["poses2d"][actor], dtype=np.float32)  # (N, 3, 18)
            valid = np.abs(poses2d).reshape(num_frames, -1).sum(axis=1) > 0
            valid &= np.asarray(data["campose_valid"][actor]).reshape(-1).astype(bool) & kept
            frames = np.flatnonzero(valid)
            if len(frames) == 0:
                continue
            gender = GENDERS.get(str(gender_code).strip().lower(), "neutral")
            pose = np.asarray(data["poses"][actor], dtype=np.float64)[frames]
            betas = np.asarray(data["betas"][actor], dtype=np.float32).reshape(-1)[:10]
            world_params = np.concatenate([pose[:, :66], np.tile(betas, (len(frames), 1))], axis=1)
            world_joints = (
                smpl(world_params, gender) + np.asarray(data["trans"][actor], np.float64)[frames, None]
            )
            rotation, translation = cam_poses[frames, :3, :3], cam_poses[frames, :3, 3]
            cam_joints = np.einsum("nij,nkj->nki", rotation, world_joints) + translation[:, None]
            params = camera_frame_params(pose, betas, rotation)
            for i, frame in enumerate(frames):
                persons[int(frame)].append(
                    {
                        "kp2d": convert_to_54(poses2d[frame].T, "coco_18"),
                        "kp3d": cam_joints[i].astype(np.float32),
                        "params": params[i],
                    }
                )
        if not persons:
            return
        # Frame i is image_{i:05d}.jpg (as ROMP, SPIN and VIBE read it); `img_frame_ids` indexes the 60 Hz
        # poses, not the images.
        size = image_size(self.root / self._image(sequence, min(persons)), self.not_found)
        cam_mat = np.asarray(data["cam_intrinsics"], dtype=np.float32).reshape(3, 3)
        for frame in sorted(persons):
            people = persons[frame]
            yield self._record(
                self._image(sequence, frame), size, people, VMASK_3D_SEQUENCE, cam_mat
            )

    # -- VIBE's database -------------------------------------------------------------------------------------
    def _read_vibe_db(self) -> Iterator[Mapping[str, Any]]:
        import joblib

        path = self.require(self.vibe_db_path, "VIBE's 3DPW database")
        log.info("reading VIBE's joblib database %s (a pickle: this file is trusted)", path)
        db = joblib.load(path)
        missing = [field for field in VIBE_FIELDS if field not in db]
        if missing:
            raise StoreFormatError(f"{path}: missing field(s) {missing}; is it VIBE's 3dpw_<split>_db.pt?")
        # SPIN-style joint arrays may carry a 4th (confidence) column.
        joints3d = np.asarray(db["joints3D"], dtype=np.float32)[..., :3]
        if joints3d.shape[1] == 49:
            joints3d = joints3d[:, VIBE_TRAIN_LSP14]
        elif joints3d.shape[1] != 14:
            raise StoreFormatError(
                f"{path}: joints3D has shape {joints3d.shape}, expected (M, 49, 3) or (M, 14, 3)"
            )
        joints2d = np.asarray(db["joints2D"], dtype=np.float32).reshape(-1, 14, 3)
        pose = np.asarray(db["pose"], dtype=np.float32).reshape(-1, 72)
        shape = np.asarray(db["shape"], dtype=np.float32).reshape(-1, 10)
        valid = np.asarray(db["valid"]).reshape(-1) > 0 if "valid" in db else np.ones(len(pose), bool)
        frames: dict[tuple[str, int], list[dict[str, np.ndarray]]] = defaultdict(list)
        for row in np.flatnonzero(valid):
            sequence = str(db["vid_name"][row]).rsplit("_", 1)[0]
            frame = int(db["frame_id"][row])
            if frame % self.frame_stride:
                continue
            frames[(sequence, frame)].append(
                {
                    "kp2d": convert_to_54(joints2d[row], "lsp_14"),
                    "kp3d": convert_to_54(joints3d[row], "lsp_14"),
                    "params": np.concatenate([pose[row, :66], shape[row]]),
                }
            )
        sizes: dict[str, tuple[int, int]] = {}
        for (sequence, frame), people in frames.items():
            imgpath = self._image(sequence, frame)
            if sequence not in sizes:
                sizes[sequence] = image_size(self.root / imgpath, self.not_found)
            yield self._record(imgpath, sizes[sequence], people, VMASK_3D_VIBE, None)

    @staticmethod
    def _record(
        imgpath: str,
        size: tuple[int, int],
        people: list[dict[str, np.ndarray]],
        vmask_3d: tuple[bool, ...],
        cam_mat: np.ndarray | None,
    ) -> dict[str, Any]:
        count = len(people)
        kp3ds = np.stack([p["kp3d"] for p in people])
        return {
            "imgpath": imgpath,
            "img_size": size,
            "kp2ds": np.stack([p["kp2d"] for p in people]),
            "track_ids": None,
            # 3DPW labels only the one or two people it tracks: no centre-map loss on its images.
            "vmask_2d": vmask_2d_rows(count, pose=True, track_ids=False, all_labelled=False),
            "vmask_3d": np.tile(vmask_3d, (count, 1)),
            "kp3ds": kp3ds,
            "params": np.stack([p["params"] for p in people]),
            "root_trans": np.stack([hip_centre(k) for k in kp3ds]) if vmask_3d[5] else None,
            "camMats": cam_mat,
        }
