"""The ``img_info`` contract, as code.

A source dataset's ``get_image_info(i)`` returns a plain dict (romp_datasets.md §3). Before the pipeline
touches it, :func:`validate_img_info` checks every field and converts the permissive forms sources may use
(lists of per-person arrays, ``None`` entries, mixed pose / box persons) into one fixed-shape
:class:`ImgInfo`. A bad annotation therefore fails here, with the dataset key, the sample index, the field
and what was expected, instead of deep inside the augmentation code.

Normal form (N persons, J = 54):

* ``kp2ds`` (N, J, 3) float32 ``[x_px, y_px, vis]``; rows of -2 for missing joints and for box persons;
* ``boxes`` (N, 4, 2) float32 ``[full_lt, full_rb, visible_lt, visible_rb]`` in pixels; -2 for pose persons;
* ``kp3ds`` (N, J, 3) float32 metres, -2 where missing or not flagged in ``vmask_3d[:, 0]``;
* ``params`` (N, 76) float32, -10 where missing or where ``vmask_3d[:, 1:4]`` does not flag the segment;
* ``track_ids`` (N,) int64, -1 where ``vmask_2d[:, 1]`` is False.

Pixel coordinates are continuous: the image spans [0, W] x [0, H] and the centre of pixel (col, row) is
the point (col + 0.5, row + 0.5). This is the convention in which a horizontal mirror is ``x -> W - x``
(ROMP's flip) and normalised coordinates are ``2 * x / size - 1`` (romp_hydra.geometry.camera).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from romp_hydra.batch import KP_MISSING, NUM_JOINTS, NUM_PARAMS, NUM_POSE_PARAMS, PARAMS_MISSING
from romp_hydra.data import masks

MAX_ABS_METRES = 10.0  # a root-relative or camera-frame joint farther than this is a unit error (mm / cm)
# Axis-angle and beta values live well inside (-10, 10); the bound also rejects the -10 "missing" fill
# in a segment that vmask_3d claims is valid.
MAX_ABS_PARAM = 10.0

# Params segments and the vmask_3d column that declares each one valid.
PARAM_SEGMENTS: tuple[tuple[str, slice, int], ...] = (
    ("global_orient", slice(0, 3), masks.VMASK_3D_GLOBAL_ORIENT),
    ("body_pose", slice(3, NUM_POSE_PARAMS), masks.VMASK_3D_BODY_POSE),
    ("betas", slice(NUM_POSE_PARAMS, NUM_PARAMS), masks.VMASK_3D_BETAS),
)
# The segments tile [0, NUM_PARAMS) in order: each params column's vmask_3d column, for whole-array checks.
_PARAM_COLUMN_FLAG = np.repeat([column for _, _, column in PARAM_SEGMENTS],
                               [segment.stop - segment.start for _, segment, _ in PARAM_SEGMENTS])


class ImgInfoError(ValueError):
    """An ``img_info`` dict broke the contract. Carries the dataset key, the sample index and the field."""

    def __init__(self, dataset: str, index: int, field: str, message: str) -> None:
        self.dataset = dataset
        self.index = index
        self.field = field
        super().__init__(f"dataset '{dataset}', index {index}, field '{field}': {message}")


@dataclass
class ImgInfo:
    """One image's annotations in the normal form the pipeline consumes (see the module docstring)."""

    imgpath: str
    dataset: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    kp2ds: np.ndarray  # (N, 54, 3) float32
    boxes: np.ndarray  # (N, 4, 2) float32
    track_ids: np.ndarray  # (N,) int64
    vmask_2d: np.ndarray  # (N, 3) bool
    vmask_3d: np.ndarray  # (N, 6) bool
    kp3ds: np.ndarray  # (N, 54, 3) float32
    params: np.ndarray  # (N, 76) float32
    root_trans: np.ndarray | None = None  # (N, 3) float32
    cam_mats: np.ndarray | None = None  # (3, 3) float32

    @property
    def num_persons(self) -> int:
        return int(self.vmask_2d.shape[0])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def is_pose(self) -> np.ndarray:
        """(N,) bool: the person is a 54-joint pose (else a box)."""
        return self.vmask_2d[:, masks.VMASK_2D_IS_POSE]

    @property
    def all_persons_labelled(self) -> bool:
        """ROMP reads this flag from person 0 only (romp_datasets.md §4.1); no person means False."""
        return bool(self.num_persons > 0 and self.vmask_2d[0, masks.VMASK_2D_ALL_PERSONS_LABELLED])


class _Checker:
    """Raises :class:`ImgInfoError` for one (dataset, index)."""

    def __init__(self, dataset: str, index: int) -> None:
        self.dataset = dataset
        self.index = index

    def fail(self, field: str, message: str) -> ImgInfoError:
        return ImgInfoError(self.dataset, self.index, field, message)

    def array(self, field: str, value: Any, dtype: type = np.float32) -> np.ndarray:
        try:
            arr = np.asarray(value, dtype=dtype)
        except (TypeError, ValueError) as err:
            raise self.fail(field, f"cannot be read as a {np.dtype(dtype).name} array ({err})") from err
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise self.fail(field, "contains NaN or inf; mark missing values with the sentinel instead")
        return arr

    def shape(self, field: str, arr: np.ndarray, expected: tuple[int, ...], meaning: str) -> None:
        if arr.shape != expected:
            raise self.fail(field, f"has shape {arr.shape}, expected {expected} ({meaning})")

    def bool_mask(self, field: str, value: Any, expected: tuple[int, ...], meaning: str) -> np.ndarray:
        if value is None:
            raise self.fail(field, f"is missing, expected a bool array of shape {expected} ({meaning})")
        raw = np.asarray(value)
        if raw.dtype != bool:
            if raw.dtype.kind not in "iuf" or not np.isin(raw, (0, 1)).all():
                raise self.fail(field, f"has dtype {raw.dtype} with values other than 0/1, expected bool")
            raw = raw.astype(bool)
        self.shape(field, raw, expected, meaning)
        return raw


def validate_img_info(info: Mapping[str, Any], dataset_key: str, index: int) -> ImgInfo:
    """Check an ``img_info`` dict against the contract and return it in normal form.

    Args:
        info: what ``SourceDataset.get_image_info(index)`` returned.
        dataset_key: the source's key in the mixture (used in error messages only).
        index: the sample index within that source (used in error messages only).

    Raises:
        ImgInfoError: naming the dataset, the index, the field and the expected form.
    """
    check = _Checker(dataset_key, index)
    if not isinstance(info, Mapping):
        raise check.fail("<img_info>", f"is a {type(info).__name__}, expected a dict")

    imgpath = info.get("imgpath")
    if not isinstance(imgpath, str) or not imgpath:
        raise check.fail("imgpath", f"is {imgpath!r}, expected a non-empty str path")
    ds = info.get("ds")
    if not isinstance(ds, str) or not ds:
        raise check.fail("ds", f"is {ds!r}, expected a non-empty dataset tag str")

    image = _check_image(check, info.get("image"))
    height, width = image.shape[:2]
    if info.get("img_size") is not None:
        img_size = tuple(int(v) for v in np.asarray(info["img_size"]).reshape(-1))
        if img_size != (height, width):
            raise check.fail("img_size", f"is {img_size}, but the image is (H, W) = {(height, width)}")

    kp2ds_raw = info.get("kp2ds")
    num_persons = 0 if kp2ds_raw is None else len(kp2ds_raw)
    vmask_2d = check.bool_mask(
        "vmask_2d", info.get("vmask_2d"), (num_persons, masks.NUM_VMASK_2D),
        f"one row per person in kp2ds: N = {num_persons}; columns [is_pose, track_id_valid, all_labelled]",
    )
    vmask_3d = check.bool_mask(
        "vmask_3d", info.get("vmask_3d"), (num_persons, masks.NUM_VMASK_3D),
        f"N = {num_persons}; columns [kp3d, global_orient, body_pose, betas, verts, depth]",
    )
    kp2ds, boxes = _check_kp2ds(check, kp2ds_raw, vmask_2d[:, masks.VMASK_2D_IS_POSE])
    track_ids = _check_track_ids(check, info.get("track_ids"), vmask_2d[:, masks.VMASK_2D_TRACK_ID])
    kp3ds = _check_kp3ds(check, info.get("kp3ds"), vmask_3d[:, masks.VMASK_3D_KP3D])
    params = _check_params(check, info.get("params"), vmask_3d)

    root_trans = None
    if info.get("root_trans") is not None:
        root_trans = check.array("root_trans", info["root_trans"])
        check.shape("root_trans", root_trans, (num_persons, 3), "camera-frame root translation per person, m")
    cam_mats = None
    if info.get("camMats") is not None:
        cam_mats = check.array("camMats", info["camMats"])
        check.shape("camMats", cam_mats, (3, 3), "intrinsics of the original image")
    if info.get("verts") is not None:
        verts = check.array("verts", info["verts"])
        if verts.ndim != 3 or verts.shape[0] != num_persons or verts.shape[2] != 3:
            raise check.fail("verts", f"has shape {verts.shape}, expected ({num_persons}, V, 3)")

    return ImgInfo(
        imgpath=imgpath, dataset=ds, image=image, kp2ds=kp2ds, boxes=boxes, track_ids=track_ids,
        vmask_2d=vmask_2d, vmask_3d=vmask_3d, kp3ds=kp3ds, params=params,
        root_trans=root_trans, cam_mats=cam_mats,
    )


def _check_image(check: _Checker, image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise check.fail("image", f"is a {type(image).__name__}, expected an (H, W, 3) uint8 RGB ndarray")
    if image.dtype != np.uint8:
        raise check.fail("image", f"has dtype {image.dtype}, expected uint8 (0..255 RGB)")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise check.fail("image", f"has shape {image.shape}, expected (H, W, 3) with H, W >= 1")
    return image


def _check_kp2ds(check: _Checker, kp2ds: Any, is_pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    num_persons = len(is_pose)
    boxes = np.full((num_persons, 4, 2), KP_MISSING, dtype=np.float32)
    if (isinstance(kp2ds, np.ndarray) and kp2ds.dtype.kind in "fiu" and kp2ds.shape == (num_persons, NUM_JOINTS, 3)
            and is_pose.all()):
        # The usual record (a packed store's): one (N, 54, 3) array of poses, checked as a whole; a bad value
        # falls through to the per-person checks below, which name the person.
        poses = kp2ds.astype(np.float32)  # a copy: never edit the source's own array
        if np.isfinite(poses).all():
            return poses, boxes
    poses = np.full((num_persons, NUM_JOINTS, 3), KP_MISSING, dtype=np.float32)
    for i in range(num_persons):
        field = f"kp2ds[{i}]"
        person = check.array(field, kp2ds[i])
        if is_pose[i]:
            if person.shape != (NUM_JOINTS, 3):
                hint = " (a (4, 2) box needs vmask_2d[i, 0] = False)" if person.shape == (4, 2) else ""
                raise check.fail(field, f"has shape {person.shape}, expected a (54, 3) [x, y, vis] pose{hint}")
            poses[i] = person
        else:
            if person.shape != (4, 2):
                raise check.fail(
                    field, f"has shape {person.shape}, but vmask_2d[{i}, 0] is False (box person): expected "
                    "(4, 2) [full_lt, full_rb, visible_lt, visible_rb]",
                )
            for name, (lt, rb) in (("full", (0, 1)), ("visible", (2, 3))):
                if np.any(person[rb] < person[lt]):
                    raise check.fail(
                        field, f"{name} box has right-bottom {person[rb].tolist()} above/left of its "
                        f"left-top {person[lt].tolist()}; expected lt <= rb",
                    )
            boxes[i] = person
    return poses, boxes


def _check_track_ids(check: _Checker, track_ids: Any, track_valid: np.ndarray) -> np.ndarray:
    num_persons = len(track_valid)
    if track_ids is None:
        if track_valid.any():
            raise check.fail(
                "track_ids", "is None but vmask_2d[:, 1] marks some persons as tracked; "
                "give ids or set vmask_2d[:, 1] = False",
            )
        return np.full(num_persons, -1, dtype=np.int64)
    if isinstance(track_ids, np.ndarray) and track_ids.dtype.kind in "iu" and track_ids.shape == (num_persons,):
        raw = track_ids  # integer ids (a packed store's): finite and whole by type
    else:
        raw = check.array("track_ids", track_ids, dtype=np.float64)
        check.shape("track_ids", raw, (num_persons,), "one id per person")
        if np.any(raw != np.round(raw)):
            raise check.fail("track_ids", f"has non-integer values {raw[raw != np.round(raw)][:3].tolist()}")
    ids = np.where(track_valid, raw, -1).astype(np.int64)
    if np.any(ids[track_valid] < 0):
        raise check.fail("track_ids", "has negative ids for persons marked tracked (vmask_2d[:, 1]); ids are >= 0")
    return ids


def _per_person_rows(
    check: _Checker, field: str, value: Any, num_persons: int, row_shape: tuple[int, ...], fill: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Stack an (N, ...) array or a list with ``None`` entries. Returns (rows, present) with fill for None."""
    rows = np.full((num_persons, *row_shape), fill, dtype=np.float32)
    present = np.zeros(num_persons, dtype=bool)
    if value is None:
        return rows, present
    if isinstance(value, np.ndarray):
        arr = check.array(field, value)
        check.shape(field, arr, (num_persons, *row_shape), "one row per person")
        return arr.copy(), np.ones(num_persons, dtype=bool)  # never edit the source's own array
    if not isinstance(value, Sequence) or len(value) != num_persons:
        length = len(value) if isinstance(value, Sequence) else type(value).__name__
        raise check.fail(field, f"has {length} entries, expected an array or list with {num_persons}")
    for i, person in enumerate(value):
        if person is None:
            continue
        arr = check.array(f"{field}[{i}]", person)
        check.shape(f"{field}[{i}]", arr, row_shape, "per-person row")
        rows[i] = arr
        present[i] = True
    return rows, present


def _check_kp3ds(check: _Checker, kp3ds: Any, kp3d_valid: np.ndarray) -> np.ndarray:
    num_persons = len(kp3d_valid)
    rows, present = _per_person_rows(check, "kp3ds", kp3ds, num_persons, (NUM_JOINTS, 3), KP_MISSING)
    missing_but_flagged = kp3d_valid & ~present
    if missing_but_flagged.any():
        person = int(np.flatnonzero(missing_but_flagged)[0])
        raise check.fail(
            "kp3ds", f"person {person} has no 3D joints but vmask_3d[{person}, 0] is True; "
            "give (54, 3) metres or clear the flag",
        )
    rows[~kp3d_valid] = KP_MISSING  # unflagged rows are not targets; keep the normal form clean
    if np.abs(rows).max(initial=0.0) < MAX_ABS_METRES:  # the usual case, in one pass (|KP_MISSING| is below)
        return rows
    implausible = (np.abs(rows) >= MAX_ABS_METRES) & (rows != KP_MISSING)
    if implausible.any():
        person, joint, _ = (int(v) for v in np.argwhere(implausible)[0])
        raise check.fail(
            "kp3ds", f"person {person} joint {joint} = {rows[person, joint].tolist()}: expected metres "
            f"with |x| < {MAX_ABS_METRES:g} (or -2 for missing); millimetres need / 1000",
        )
    return rows


def _check_params(check: _Checker, params: Any, vmask_3d: np.ndarray) -> np.ndarray:
    num_persons = vmask_3d.shape[0]
    rows, present = _per_person_rows(check, "params", params, num_persons, (NUM_PARAMS,), PARAMS_MISSING)
    flagged = vmask_3d[:, _PARAM_COLUMN_FLAG]  # (N, NUM_PARAMS)
    if not (flagged & ~present[:, None]).any() and not (flagged & (np.abs(rows) >= MAX_ABS_PARAM)).any():
        rows[~flagged] = PARAMS_MISSING  # the usual case, in a few whole-array steps
        return rows
    for name, segment, column in PARAM_SEGMENTS:  # a problem: find the first one, by segment, and name it
        flagged = vmask_3d[:, column]
        missing_but_flagged = flagged & ~present
        if missing_but_flagged.any():
            person = int(np.flatnonzero(missing_but_flagged)[0])
            raise check.fail(
                "params", f"person {person} has no SMPL params but vmask_3d[{person}, {column}] ({name}) is "
                "True; give a 76-vector (66 axis-angle + 10 betas) or clear the flag",
            )
        values = rows[:, segment]
        bad = flagged[:, None] & (np.abs(values) >= MAX_ABS_PARAM)
        if bad.any():
            person, k = (int(v) for v in np.argwhere(bad)[0])
            raise check.fail(
                "params", f"person {person} {name}[{k}] = {values[person, k]:g} but vmask_3d[{person}, {column}]"
                f" says it is valid; expected |value| < {MAX_ABS_PARAM:g} (-10 marks a missing value)",
            )
        rows[~flagged, segment] = PARAMS_MISSING
    return rows
