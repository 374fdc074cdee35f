"""MPI-INF-3DHP: the training set (S1-S8, raw `annot.mat` + videos, or ROMP's `annots.npz`) and the test set
(TS1-TS6, MATLAB v7.3 `annot_data.mat`, or ROMP's `annots.npz`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from romp_hydra.body.joint_sets import convert_to_54
from romp_hydra.data.masks import vmask_2d_rows, vmask_3d_rows
from romp_hydra.data.pose_clusters import DEFAULT_NUM_CLUSTERS, PoseClusteredSource
from romp_hydra.data.sources._shared_3d import (
    hip_centre,
    image_size,
    inside_image,
    intrinsics,
    load_romp_annots,
    to_metres,
    with_visibility,
)
from romp_hydra.data.store import StoreBackedSource, StoreFormatError

log = logging.getLogger(__name__)

__all__ = ["MPIINF3DHP", "CameraCalibration", "MPIINF3DHPTest", "read_camera_calibration"]

HOMEPAGE = (
    "https://vcai.mpi-inf.mpg.de/3dhp-dataset/ (download script in the release; ROMP's annots.npz optional)"
)
SPLIT_SUBJECTS: dict[str, tuple[int, ...]] = {"train": (1, 2, 3, 4, 5, 6, 7), "val": (8,)}
SEQUENCES = (1, 2)
# Cameras 11-13 look down from the ceiling; like ROMP (and most methods) we train on the 11 others.
CAMERAS = tuple(range(11))
NUM_JOINTS_TRAIN = 28
NUM_JOINTS_TEST = 17
ROMP_CLUSTER_FILE = "cluster_results_noumap_mpiinf_kmeans.npz"
_IMAGE_NAME = re.compile(r"S(\d+)_Seq(\d+)_video_(\d+)_F(\d+)\.jpg$")


@dataclass(frozen=True)
class CameraCalibration:
    """One camera of a `camera.calibration` file: image size and 4 x 4 intrinsic / extrinsic (mm) matrices."""

    width: int
    height: int
    intrinsic: np.ndarray
    extrinsic: np.ndarray


def read_camera_calibration(path: Path) -> dict[int, CameraCalibration]:
    """Parse MPI-INF-3DHP's `camera.calibration` text file.

    After one header line, each camera is a block of lines `name <id>`, `sensor`, `size <w> <h>`, `animated`,
    `intrinsic <16 numbers>`, `extrinsic <16 numbers>`, `radial`. We read the blocks by keyword rather than
    by line number (ROMP slices fixed character ranges), so extra spaces or a missing line shift no value.
    """
    cameras: dict[int, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        keyword, values = fields[0], fields[1:]
        try:
            if keyword == "name":
                current = cameras.setdefault(int(values[0]), {})
            elif current is not None and keyword == "size":
                current["size"] = (int(float(values[0])), int(float(values[1])))
            elif current is not None and keyword in ("intrinsic", "extrinsic"):
                current[keyword] = np.array([float(v) for v in values[:16]], dtype=np.float64).reshape(4, 4)
        except (ValueError, IndexError) as err:
            raise StoreFormatError(
                f"{path} line {line_number}: cannot parse {line.strip()!r} ({err})"
            ) from err
    parsed = {}
    for camera, block in cameras.items():
        missing = [k for k in ("size", "intrinsic", "extrinsic") if k not in block]
        if missing:
            raise StoreFormatError(f"{path}: camera {camera} has no {', '.join(missing)} line")
        parsed[camera] = CameraCalibration(
            block["size"][0], block["size"][1], block["intrinsic"], block["extrinsic"]
        )
    return parsed


def _mat_cell(cell: np.ndarray, camera: int, width: int, path: Path, name: str) -> np.ndarray:
    """Camera `camera`'s (F, width) array of a MATLAB cell loaded by scipy ((14, 1) object array)."""
    cells = np.asarray(cell).reshape(-1)
    if camera >= len(cells):
        raise StoreFormatError(
            f"{path}: '{name}' has {len(cells)} camera cells, camera {camera} was asked for"
        )
    values = np.asarray(cells[camera], dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != width:
        raise StoreFormatError(
            f"{path}: {name}[{camera}] has shape {values.shape}, expected (frames, {width})"
        )
    return values


class MPIINF3DHP(PoseClusteredSource, StoreBackedSource):
    """MPI-INF-3DHP training data: one person per image, 2D + 3D joints (28 mocap joints), root translation,
    intrinsics; track ids are the subject numbers.

    Two ways in, chosen by what is on disk:

    * raw release: `S<i>/Seq<j>/annot.mat` (`annot2` / `annot3`: one cell per camera, F x 56 pixels and
      F x 84 millimetres in that camera's frame), `camera.calibration` and `imageSequence/video_<cam>.avi`.
      Frames of the 11 non-ceiling cameras are kept when their index f satisfies f % frame_stride == 1 %
      frame_stride (ROMP's choice for stride 10) and all 28 joints lie inside the image. Missing frames are
      extracted from the videos into `images/` during `pack_data()`.
    * ROMP's `annots.npz` (`annots`: {image name: {kp2d, kp3d (metres), intrinsics [fx, fy, cx, cy], ...}})
      with the images it was made from in `images/`. Used when no `annot.mat` of the split is present.

    Splits: train S1-S7, val S8. Image names: `S<i>_Seq<j>_video_<cam>_F<frame:06d>.jpg`.

    Args:
        frame_stride: keep frames f with f % frame_stride == 1 % frame_stride (10 in ROMP).
        cameras: the cameras to use (default 0-10, all but the ceiling cameras 11-13).
        homogenize_pose_space: draw the images evenly over pose clusters (ROMP v1; `romp_hydra.data.pose_clusters`):
            ROMP's `cluster_results_noumap_mpiinf_kmeans.npz` in root when present, else k-means at pack time.
        pose_clusters: the number of k-means clusters when ROMP's file is absent.
    """

    romp_cluster_file: ClassVar[str] = ROMP_CLUSTER_FILE

    is_3d: ClassVar[bool] = True
    multi_person: ClassVar[bool] = False
    scale_range: ClassVar[tuple[float, float]] = (1.3, 1.9)
    homepage: ClassVar[str] = HOMEPAGE
    expected_layout: ClassVar[str] = """
        S<i>/Seq<j>/annot.mat, S<i>/Seq<j>/camera.calibration, S<i>/Seq<j>/imageSequence/video_<cam>.avi
            (the official release; i = 1..7 for train, 8 for val; j = 1, 2)
        or annots.npz (ROMP's parsed annotations) with images/S<i>_Seq<j>_video_<cam>_F<frame:06d>.jpg
    """
    provides: ClassVar[str] = (
        "2D + 3D joints (28 mocap joints), root translation, intrinsics; one person per image"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        key: str | None = None,
        store_dir: str | Path | None = None,
        frame_stride: int = 10,
        cameras: Sequence[int] = CAMERAS,
        homogenize_pose_space: bool = False,
        pose_clusters: int = DEFAULT_NUM_CLUSTERS,
    ):
        if split not in SPLIT_SUBJECTS:
            raise ValueError(f"mpiinf split={split!r}: use 'train' (S1-S7) or 'val' (S8)")
        if int(frame_stride) < 1:
            raise ValueError(f"mpiinf frame_stride={frame_stride}: must be a positive integer")
        bad = [c for c in cameras if not 0 <= int(c) < 14]
        if bad or not cameras:
            raise ValueError(f"mpiinf cameras={list(cameras)}: give camera numbers 0..13 (default 0..10)")
        super().__init__(
            root, split, key=key or ("mpiinf" if split == "train" else "mpiinf_val"), store_dir=store_dir
        )
        self.frame_stride = int(frame_stride)
        self.cameras = tuple(sorted({int(c) for c in cameras}))
        self.homogenize_pose_space = bool(homogenize_pose_space)
        self.pose_clusters = int(pose_clusters)

    @property
    def store_path(self) -> Path:
        cameras = "" if self.cameras == CAMERAS else "_cams" + "-".join(map(str, self.cameras))
        return self.store_dir / f"{self.key}_{self.split}_stride{self.frame_stride}{cameras}.npz"

    def sequences(self) -> list[Path]:
        """The raw sequence folders of this split that are on disk."""
        found = []
        for subject in SPLIT_SUBJECTS[self.split]:
            for sequence in SEQUENCES:
                folder = self.root / f"S{subject}" / f"Seq{sequence}"
                if (folder / "annot.mat").is_file():
                    found.append(folder)
        return found

    def annotation_files(self) -> list[Path]:
        folders = self.sequences()
        if not folders:
            return [self.root / "annots.npz"]
        return [folder / name for folder in folders for name in ("annot.mat", "camera.calibration")]

    def keeps_frame(self, frame: int) -> bool:
        return frame % self.frame_stride == 1 % self.frame_stride

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        folders = self.sequences()
        if folders:
            log.info(
                "mpiinf %s: reading %d raw sequences (%s)",
                self.split,
                len(folders),
                ", ".join(f"{f.parent.name}/{f.name}" for f in folders),
            )
            for folder in folders:
                yield from self._read_sequence(folder)
        else:
            yield from self._read_romp_npz()

    # -- the official release --------------------------------------------------------------------------------
    def _read_sequence(self, folder: Path) -> Iterator[Mapping[str, Any]]:
        from scipy.io import loadmat

        subject, sequence = int(folder.parent.name[1:]), int(folder.name[3:])
        annot_path = folder / "annot.mat"
        annot = loadmat(str(annot_path))
        for name in ("annot2", "annot3"):
            if name not in annot:
                raise StoreFormatError(
                    f"{annot_path} has no '{name}' variable; is it the release's annot.mat?"
                )
        calibration = read_camera_calibration(self.require(folder / "camera.calibration"))
        for camera in self.cameras:
            if camera not in calibration:
                raise StoreFormatError(f"{folder / 'camera.calibration'} has no camera {camera}")
            cam = calibration[camera]
            kp2d = _mat_cell(annot["annot2"], camera, NUM_JOINTS_TRAIN * 2, annot_path, "annot2")
            kp3d = _mat_cell(annot["annot3"], camera, NUM_JOINTS_TRAIN * 3, annot_path, "annot3")
            kp2d = kp2d.reshape(-1, NUM_JOINTS_TRAIN, 2)
            kp3d = kp3d.reshape(-1, NUM_JOINTS_TRAIN, 3) / 1000.0  # millimetres
            frames = [
                f
                for f in range(len(kp2d))
                if self.keeps_frame(f) and inside_image(kp2d[f], cam.height, cam.width).all()
            ]
            names = {f: f"S{subject}_Seq{sequence}_video_{camera}_F{f:06d}.jpg" for f in frames}
            self._extract_missing_frames(folder / "imageSequence" / f"video_{camera}.avi", names)
            cam_mat = cam.intrinsic[:3, :3].astype(np.float32)
            for frame in frames:
                yield self._record(
                    names[frame], subject, kp2d[frame], kp3d[frame], (cam.height, cam.width), cam_mat
                )

    def _extract_missing_frames(self, video: Path, names: Mapping[int, str]) -> None:
        """Write the frames `names` lacks in images/ from the sequence video (read front to back once)."""
        image_dir = self.root / "images"
        missing = {frame: name for frame, name in names.items() if not (image_dir / name).is_file()}
        if not missing:
            return
        if not video.is_file():
            raise self.not_found(
                video,
                f"the video to extract {len(missing)} missing frames from "
                f"(e.g. images/{next(iter(missing.values()))})",
            )
        image_dir.mkdir(parents=True, exist_ok=True)
        log.info("mpiinf: extracting %d frames from %s", len(missing), video)
        capture = cv2.VideoCapture(str(video))
        try:
            last = max(missing)
            for frame in range(last + 1):
                ok, image = capture.read()
                if not ok:
                    raise StoreFormatError(
                        f"{video}: could not read frame {frame} (the video has fewer frames "
                        f"than annot.mat, or is truncated)"
                    )
                if frame in missing and not cv2.imwrite(str(image_dir / missing[frame]), image):
                    raise OSError(f"could not write {image_dir / missing[frame]}")
        finally:
            capture.release()

    # -- ROMP's annots.npz -----------------------------------------------------------------------------------
    def _read_romp_npz(self) -> Iterator[Mapping[str, Any]]:
        annots: dict[str, Mapping[str, Any]] = load_romp_annots(self.require("annots.npz"))
        sizes: dict[str, tuple[int, int]] = {}  # one image read per video
        for name in sorted(annots):
            match = _IMAGE_NAME.search(name)
            if match is None:
                raise StoreFormatError(
                    f"mpiinf annots.npz: image name {name!r} is not S<i>_Seq<j>_video_<cam>_F<frame>.jpg"
                )
            subject, frame = int(match.group(1)), int(match.group(4))
            if (
                subject not in SPLIT_SUBJECTS[self.split]
                or int(match.group(3)) not in self.cameras
                or not self.keeps_frame(frame)
            ):
                continue
            video = name[: match.start(4) - 1]
            if video not in sizes:
                sizes[video] = image_size(self.root / "images" / name, self.not_found)
            entry = annots[name]
            fx, fy, cx, cy = (float(v) for v in np.asarray(entry["intrinsics"]).reshape(-1)[:4])
            kp3d = to_metres(np.asarray(entry["kp3d"]).reshape(NUM_JOINTS_TRAIN, 3), f"mpiinf {name}")
            yield self._record(
                name,
                subject,
                np.asarray(entry["kp2d"]).reshape(NUM_JOINTS_TRAIN, 2),
                kp3d,
                sizes[video],
                intrinsics(fx, fy, cx, cy),
            )

    def _record(
        self,
        name: str,
        subject: int,
        kp2d: np.ndarray,
        kp3d: np.ndarray,
        size: tuple[int, int],
        cam_mat: np.ndarray,
    ) -> dict[str, Any]:
        kp2d54 = convert_to_54(with_visibility(kp2d, inside_image(kp2d, *size)), "mpi_inf_28")
        kp3d54 = convert_to_54(np.asarray(kp3d, dtype=np.float32), "mpi_inf_28")
        return {
            "imgpath": f"images/{name}",
            "img_size": size,
            "kp2ds": kp2d54[None],
            "track_ids": np.array([subject]),
            "vmask_2d": vmask_2d_rows(1, pose=True, track_ids=True, all_labelled=True),
            "vmask_3d": vmask_3d_rows(1, kp3d=True, depth=True),
            "kp3ds": kp3d54[None],
            "root_trans": hip_centre(kp3d54)[None],
            "camMats": cam_mat,
        }


TEST_SEQUENCES = tuple(range(1, 7))
# Focal lengths of the test cameras: TS1-TS4 studio (2048 x 2048 images), TS5-TS6 outdoor (1920 x 1080).
TEST_FOCAL = {
    1: 1499.2054687744,
    2: 1499.2054687744,
    3: 1499.2054687744,
    4: 1499.2054687744,
    5: 1683.98345952,
    6: 1683.98345952,
}


class MPIINF3DHPTest(StoreBackedSource):
    """MPI-INF-3DHP test set (TS1-TS6): one person per image, 2D + 3D joints (17, universal skeleton), root
    translation, intrinsics; track ids are the sequence numbers.

    Raw: `TS<k>/annot_data.mat`, a MATLAB v7.3 (HDF5) file read with h5py: `annot2` (2 x 17 x 1 x F in
    MATLAB, so F x 1 x 17 x 2 in HDF5), `annot3`, `univ_annot3` (millimetres), `valid_frame`. Images are
    `TS<k>/imageSequence/img_<f+1:06d>.jpg`. Frames are kept when valid and all 17 joints lie inside the image
    (2048 x 2048 for TS1-TS4, 1920 x 1080 for TS5-TS6, read from the first image). The intrinsics are the
    published focal length with the principal point at the image centre.
    The 3D joints are the universal (height-normalised) skeleton, the standard for PCK3D; the root translation
    is the hip centre of `annot3` (the true camera-frame position). ROMP's `annots.npz` ({image path: {kp2d,
    kp3d, univ_kp3d}}) is read instead when no `annot_data.mat` is present.
    """

    is_3d: ClassVar[bool] = True
    multi_person: ClassVar[bool] = False
    scale_range: ClassVar[tuple[float, float]] = (1.3, 1.9)
    homepage: ClassVar[str] = HOMEPAGE
    expected_layout: ClassVar[str] = """
        TS<k>/annot_data.mat           (MATLAB v7.3; k = 1..6) or annots.npz (ROMP's parsed annotations)
        TS<k>/imageSequence/img_<frame:06d>.jpg
    """
    provides: ClassVar[str] = (
        "2D + 3D joints (17, universal skeleton), root translation, intrinsics; one person per image"
    )

    splits: ClassVar[tuple[str, ...]] = ("test",)
    default_key: ClassVar[str | None] = "mpiinf_test"

    def __init__(self, root: str | Path, split: str | None = None, *, key: str | None = None,
                 store_dir: str | Path | None = None):
        super().__init__(root, split, key=key, store_dir=store_dir)
        self._sizes: dict[int, tuple[int, int]] = {}

    def sequences(self) -> list[int]:
        return [k for k in TEST_SEQUENCES if (self.root / f"TS{k}" / "annot_data.mat").is_file()]

    def annotation_files(self) -> list[Path]:
        found = self.sequences()
        return (
            [self.root / f"TS{k}" / "annot_data.mat" for k in found] if found else [self.root / "annots.npz"]
        )

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        found = self.sequences()
        if not found:
            yield from self._read_romp_npz()
            return
        for sequence in found:
            arrays = read_v73_annotations(self.root / f"TS{sequence}" / "annot_data.mat")
            frames = np.flatnonzero(arrays["valid_frame"])
            if len(frames) == 0:
                continue
            size = self._size(sequence, int(frames[0]))
            for frame in frames:
                if inside_image(arrays["annot2"][frame], *size).all():
                    yield self._record(
                        sequence,
                        int(frame),
                        size,
                        arrays["annot2"][frame],
                        arrays["univ_annot3"][frame] / 1000.0,
                        arrays["annot3"][frame] / 1000.0,
                    )

    def _size(self, sequence: int, frame: int) -> tuple[int, int]:
        """(H, W) of a test sequence, read from one of its images (all frames of a sequence share it)."""
        if sequence not in self._sizes:
            self._sizes[sequence] = image_size(self.root / self._imgpath(sequence, frame), self.not_found)
        return self._sizes[sequence]

    @staticmethod
    def _imgpath(sequence: int, frame: int) -> str:
        return f"TS{sequence}/imageSequence/img_{frame + 1:06d}.jpg"

    def _read_romp_npz(self) -> Iterator[Mapping[str, Any]]:
        annots: dict[str, Mapping[str, Any]] = load_romp_annots(self.require("annots.npz"))
        for name in sorted(annots):
            match = re.search(r"TS(\d+)/imageSequence/img_(\d+)\.jpg$", name)
            if match is None:
                raise StoreFormatError(
                    f"mpiinf_test annots.npz: key {name!r} is not TS<k>/imageSequence/img_<n>.jpg"
                )
            entry = annots[name]
            kp3d = to_metres(np.asarray(entry["kp3d"]).reshape(NUM_JOINTS_TEST, 3), f"mpiinf_test {name}")
            univ = to_metres(
                np.asarray(entry["univ_kp3d"]).reshape(NUM_JOINTS_TEST, 3), f"mpiinf_test {name}"
            )
            sequence, frame = int(match.group(1)), int(match.group(2)) - 1
            yield self._record(
                sequence, frame, self._size(sequence, frame), np.asarray(entry["kp2d"]), univ, kp3d
            )

    def _record(
        self,
        sequence: int,
        frame: int,
        size: tuple[int, int],
        kp2d: np.ndarray,
        univ_kp3d: np.ndarray,
        kp3d: np.ndarray,
    ) -> dict[str, Any]:
        height, width = size
        kp2d = np.asarray(kp2d, dtype=np.float32).reshape(NUM_JOINTS_TEST, 2)
        kp2d54 = convert_to_54(with_visibility(kp2d, inside_image(kp2d, height, width)), "mpi_inf_test_17")
        focal = TEST_FOCAL[sequence]
        return {
            "imgpath": self._imgpath(sequence, frame),
            "img_size": size,
            "kp2ds": kp2d54[None],
            "track_ids": np.array([sequence]),
            "vmask_2d": vmask_2d_rows(1, pose=True, track_ids=True, all_labelled=True),
            "vmask_3d": vmask_3d_rows(1, kp3d=True, depth=True),
            "kp3ds": convert_to_54(np.asarray(univ_kp3d, dtype=np.float32), "mpi_inf_test_17")[None],
            "root_trans": hip_centre(convert_to_54(np.asarray(kp3d, dtype=np.float32), "mpi_inf_test_17"))[
                None
            ],
            "camMats": intrinsics(focal, focal, width / 2.0, height / 2.0),
        }


def read_v73_annotations(path: Path) -> dict[str, np.ndarray]:
    """`annot2` (F, 17, 2), `annot3` and `univ_annot3` (F, 17, 3) millimetres and `valid_frame` (F,) bool
    from a test sequence's MATLAB v7.3 `annot_data.mat`.

    HDF5 stores MATLAB arrays with the dimensions reversed: MATLAB's 2 x 17 x 1 x F reads as (F, 1, 17, 2).
    """
    try:
        import h5py
    except ImportError as err:  # a declared dependency; this only fires in a broken environment
        raise ImportError(
            "reading MPI-INF-3DHP test annotations (MATLAB v7.3) needs h5py: pip install h5py"
        ) from err
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as mat:
        for name, coords in (("annot2", 2), ("annot3", 3), ("univ_annot3", 3)):
            if name not in mat:
                raise StoreFormatError(f"{path} has no '{name}' dataset (has: {sorted(mat.keys())})")
            values = np.asarray(mat[name], dtype=np.float64)
            if values.ndim < 3 or values.shape[-1] != coords or values.shape[-2] != NUM_JOINTS_TEST:
                raise StoreFormatError(
                    f"{path}: '{name}' has HDF5 shape {values.shape}, expected "
                    f"(frames, 1, {NUM_JOINTS_TEST}, {coords}) (MATLAB {coords} x 17 x 1 x frames)"
                )
            arrays[name] = values.reshape(values.shape[0], NUM_JOINTS_TEST, coords)
        if "valid_frame" not in mat:
            raise StoreFormatError(f"{path} has no 'valid_frame' dataset (has: {sorted(mat.keys())})")
        arrays["valid_frame"] = np.asarray(mat["valid_frame"]).reshape(-1) > 0
    frames = {len(v) for v in arrays.values()}
    if len(frames) != 1:
        raise StoreFormatError(
            f"{path}: annot2 / annot3 / univ_annot3 / valid_frame disagree on the frame count "
            f"({ {k: len(v) for k, v in arrays.items()} })"
        )
    return arrays
