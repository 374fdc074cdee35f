"""Human3.6M from ROMP's parsed annotations (`annots.npz`) and frames extracted from the official videos."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from romp_hydra.body.joint_sets import convert_to_54
from romp_hydra.data.masks import vmask_2d_rows, vmask_3d_rows
from romp_hydra.data.pose_clusters import DEFAULT_NUM_CLUSTERS, PoseClusteredSource
from romp_hydra.data.sources._shared_3d import (
    SMPLJoints,
    hip_centre,
    image_size,
    intrinsics,
    load_romp_annots,
    to_metres,
)
from romp_hydra.data.store import StoreBackedSource

log = logging.getLogger(__name__)

__all__ = ["H36M", "H36M_CAMERAS", "SUBJECT_GENDERS"]

# Subjects per split (the standard protocol: train S1, 5, 6, 7, 8; test S9, 11); 'val' = the test subjects.
SPLIT_SUBJECTS: dict[str, tuple[int, ...]] = {"train": (1, 5, 6, 7, 8), "val": (9, 11), "test": (9, 11)}
SUBJECT_GENDERS: dict[int, str] = {
    1: "female",
    5: "female",
    6: "male",
    7: "female",
    8: "male",
    9: "male",
    11: "male",
}
# Intrinsics (fx, fy, cx, cy) in pixels of the four cameras (ids 54138969, 55011271, 58860488, 60457274).
H36M_CAMERAS: tuple[tuple[float, float, float, float], ...] = (
    (1145.0494384765625, 1143.7811279296875, 512.54150390625, 515.4514770507812),
    (1149.6756591796875, 1147.5916748046875, 508.8486328125, 508.0649108886719),
    (1149.1407470703125, 1148.7989501953125, 519.8158569335938, 501.40264892578125),
    (1145.5113525390625, 1144.77392578125, 514.9682006835938, 501.88201904296875),
)
KP3D_SOURCES = ("auto", "smpl", "mocap")
ROMP_CLUSTER_FILE = "cluster_results_noumap_h36m_kmeans.npz"
SMPL_CHUNK = 512


class H36M(PoseClusteredSource, StoreBackedSource):
    """Human3.6M: one person per image; 2D joints, 3D joints, SMPL pose + shape, root translation, intrinsics.

    Annotations (ROMP's `annots.npz`, keyed by image name): `kp2d` (32 H36M joints, pixels), `kp3d_mono`
    (32 joints, camera frame, metres), `poses` (SMPL 72-vectors; ROMP uses index 1), `cam` (global orients;
    index 1 replaces the pose's first 3 values), `betas`. Image names are `<S>_<action>_<cam>_<k>.jpg`
    (e.g. `S1_Directions 1_0_0.jpg`); the camera index picks the intrinsics.

    3D ground truth: for training (`kp3d_source=smpl`, the default for split 'train') the 54 joints are
    regressed from the SMPL parameters with the subject's gendered body model (neutral if the gendered files
    are missing) and placed at the mocap hip centre; for evaluation (`mocap`, the default otherwise) the mocap
    joints `kp3d_mono` are mapped by name to the 54-joint set. The body model runs once, in `pack_data()`.

    Splits by subject: train S1, 5, 6, 7, 8; test (and val) S9, 11. When `h36m_<train|test>.txt` exists it
    lists the images of the split (ROMP's lists), otherwise every annotated image of the split's subjects
    is used. Track ids are the subject numbers.

    Args:
        frame_stride: keep images whose frame number `k` is a multiple of this. ROMP's frames are already
            every 5th video frame, and ROMP draws one of each 5 consecutive images per epoch index, which our
            sampler's epoch length covers: so 1 uses everything, as ROMP does over several epochs.
        kp3d_source: 'auto' | 'smpl' | 'mocap' (see above).
        body_model_kind, body_model_dir: the body model for `kp3d_source=smpl` ('smpl' or 'standin').
        homogenize_pose_space: draw the images evenly over pose clusters (ROMP v1; `romp_hydra.data.pose_clusters`):
            ROMP's `cluster_results_noumap_h36m_kmeans.npz` in root when present, else k-means at pack time.
        pose_clusters: the number of k-means clusters when ROMP's file is absent.
    """

    romp_cluster_file: ClassVar[str] = ROMP_CLUSTER_FILE

    is_3d: ClassVar[bool] = True
    multi_person: ClassVar[bool] = False
    scale_range: ClassVar[tuple[float, float]] = (1.4, 2.0)
    homepage: ClassVar[str] = (
        "images: http://vision.imar.ro/human3.6m (extract the video frames into images/); annots.npz and the "
        "h36m_*.txt lists: ROMP's parsed annotations (docs/dataset.md of github.com/Arthur151/ROMP)"
    )
    expected_layout: ClassVar[str] = """
        annots.npz                    ROMP's parsed annotations (pickled dict keyed by image name)
        h36m_train.txt, h36m_test.txt optional: the images of each split, one name per line
        images/<S>_<action>_<cam>_<k>.jpg
    """
    provides: ClassVar[str] = (
        "2D (32 H36M joints), 3D joints (SMPL-regressed for training, mocap for evaluation), SMPL pose + "
        "shape, root translation, intrinsics; one person per image"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        key: str | None = None,
        store_dir: str | Path | None = None,
        frame_stride: int = 1,
        kp3d_source: str = "auto",
        body_model_kind: str = "smpl",
        body_model_dir: str | Path | None = None,
        homogenize_pose_space: bool = False,
        pose_clusters: int = DEFAULT_NUM_CLUSTERS,
    ):
        if split not in SPLIT_SUBJECTS:
            raise ValueError(f"h36m split={split!r}: use one of {', '.join(SPLIT_SUBJECTS)}")
        if kp3d_source not in KP3D_SOURCES:
            raise ValueError(f"h36m kp3d_source={kp3d_source!r}: use one of {', '.join(KP3D_SOURCES)}")
        if int(frame_stride) < 1:
            raise ValueError(f"h36m frame_stride={frame_stride}: must be a positive integer")
        super().__init__(root, split, key=key or "h36m", store_dir=store_dir)
        self.frame_stride = int(frame_stride)
        self.kp3d_source = ("smpl" if split == "train" else "mocap") if kp3d_source == "auto" else kp3d_source
        if self.kp3d_source == "smpl" and body_model_dir is None:
            raise ValueError(
                "h36m kp3d_source=smpl needs body_model_dir (the folder with SMPL_*.pkl), "
                "e.g. body_model_dir=${paths.smpl_dir}; or use kp3d_source=mocap"
            )
        self.body_model_kind = body_model_kind
        self.body_model_dir = Path(body_model_dir).expanduser() if body_model_dir is not None else None
        self.homogenize_pose_space = bool(homogenize_pose_space)
        self.pose_clusters = int(pose_clusters)

    @property
    def store_path(self) -> Path:
        body = f"_{self.body_model_kind}" if self.kp3d_source == "smpl" else ""
        return (
            self.store_dir / f"{self.key}_{self.split}_stride{self.frame_stride}_{self.kp3d_source}{body}.npz"
        )

    @property
    def list_file(self) -> Path:
        return self.root / f"h36m_{'train' if self.split == 'train' else 'test'}.txt"

    def annotation_files(self) -> list[Path]:
        files = [self.root / "annots.npz"]
        return files + [self.list_file] if self.list_file.is_file() else files

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        annots: dict[str, dict[str, Any]] = load_romp_annots(self.require("annots.npz"))
        if self.list_file.is_file():
            names = [line.strip() for line in self.list_file.read_text().splitlines() if line.strip()]
        else:
            names = sorted(annots)
        subjects = SPLIT_SUBJECTS[self.split]
        selected, unannotated = [], 0
        for name in names:
            subject, camera, frame = parse_image_name(name)
            if subject in subjects and frame % self.frame_stride == 0:
                if name in annots:
                    selected.append((name, subject, camera))
                else:
                    unannotated += 1
        log.info(
            "h36m %s: %d images of subjects %s (frame stride %d)",
            self.split,
            len(selected),
            subjects,
            self.frame_stride,
        )
        if unannotated:
            log.warning(
                "h36m %s: %d listed images have no entry in annots.npz and are left out",
                self.split,
                unannotated,
            )
        smpl = (
            SMPLJoints(self.body_model_kind, self.body_model_dir, self.key)
            if self.kp3d_source == "smpl"
            else None
        )
        sizes: dict[
            tuple[str, int], tuple[int, int]
        ] = {}  # one image read per video: all its frames share a size
        # The body model runs on chunks of images (one forward per image would take hours on the full set).
        for start in range(0, len(selected), SMPL_CHUNK):
            records = []
            for name, subject, camera in selected[start : start + SMPL_CHUNK]:
                video = (name.rsplit("_", 1)[0], camera)
                if video not in sizes:
                    sizes[video] = image_size(self.root / "images" / name, self.not_found)
                records.append(self._record(name, annots[name], subject, camera, sizes[video]))
            if smpl is not None:
                self._regress_joints(records, smpl)
            yield from records

    def _record(
        self, name: str, entry: Mapping[str, Any], subject: int, camera: int, size: tuple[int, int]
    ) -> dict[str, Any]:
        """The record with the mocap 3D joints; `_regress_joints` swaps in the SMPL ones for training."""
        kp2d = np.asarray(entry["kp2d"], dtype=np.float32).reshape(32, 2)
        kp2d = convert_to_54(np.concatenate([kp2d, np.ones((32, 1), np.float32)], axis=1), "h36m_32")
        mocap = convert_to_54(
            to_metres(np.asarray(entry["kp3d_mono"]).reshape(32, 3), f"h36m {name}"), "h36m_32"
        )
        pose = np.asarray(entry["poses"][1], dtype=np.float32).reshape(-1)[:72].copy()
        pose[:3] = np.asarray(entry["cam"][1], dtype=np.float32).reshape(3)
        params = np.concatenate([pose[:66], np.asarray(entry["betas"], dtype=np.float32).reshape(-1)[:10]])
        return {
            "imgpath": f"images/{name}",
            "img_size": size,
            "kp2ds": kp2d[None],
            "track_ids": np.array([subject]),
            "vmask_2d": vmask_2d_rows(1, pose=True, track_ids=True, all_labelled=True),
            "vmask_3d": vmask_3d_rows(
                1, kp3d=True, global_orient=True, body_pose=True, betas=True, verts=True, depth=True
            ),
            "kp3ds": mocap[None],
            "params": params[None],
            "root_trans": hip_centre(mocap)[None],
            "camMats": intrinsics(*H36M_CAMERAS[camera]),
        }

    @staticmethod
    def _regress_joints(records: list[dict[str, Any]], smpl: SMPLJoints) -> None:
        """Replace each record's 3D joints by its subject's body model posed with the SMPL params, moved so
        that the hip centre sits at the mocap hip centre (the root translation)."""
        genders = np.array([SUBJECT_GENDERS[int(r["track_ids"][0])] for r in records])
        for gender in np.unique(genders):
            chosen = np.flatnonzero(genders == gender)
            joints = smpl(np.concatenate([records[i]["params"] for i in chosen]), str(gender))
            for i, person_joints in zip(chosen, joints):
                records[i]["kp3ds"] = (
                    person_joints - hip_centre(person_joints) + records[i]["root_trans"][0]
                )[None]


def parse_image_name(name: str) -> tuple[int, int, int]:
    """(subject, camera, frame) of `S<s>_<action>_<cam>_<k>.jpg` (the action may hold spaces, underscores)."""
    stem = Path(name).stem
    try:
        subject = int(stem.split("_", 1)[0].lstrip("S"))
        _, camera, frame = stem.rsplit("_", 2)
        if not 0 <= int(camera) < len(H36M_CAMERAS):
            raise ValueError(f"camera index {camera} is not 0..3")
        return subject, int(camera), int(frame)
    except ValueError as err:
        raise ValueError(
            f"h36m image name {name!r} is not <S>_<action>_<cam>_<k>.jpg (e.g. 'S1_Directions 1_0_0.jpg')"
        ) from err
