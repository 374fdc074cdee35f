"""The per-sample pipeline: ``img_info`` -> augmented image + training targets (ROMP HEAD semantics).

``SamplePipeline(cfg.data, train)(info, rng, scale_range, is_3d)`` returns one sample (no batch dimension)
with the keys of the training batch in docs/architecture.md plus ``affine``:

==========================  ======================================================================
image                       (3, S, S) uint8 RGB
kp2d                        (MP, 54, 2) float32, normalised (x, y); -2 missing
kp3d                        (MP, 54, 3) float32, metres, root-centred, rotated/flipped with the image; -2
params                      (MP, 76) float32, SMPL axis-angle 66 + betas 10, augmented; -10 missing
centers                     (MP, 2) float32, normalised (x, y) (after CAR in training); -2 empty slot
person_mask                 (MP,) bool
valid_masks                 (MP, 8) bool, columns in ``romp_hydra.batch``
track_ids                   (MP,) int64; -1
centermap                   (1, C, C) float32
all_persons_labelled        bool (``vmask_2d[0, 2]``)
offsets                     (10,) float32, see ``augment.crop_offsets``
affine                      (2, 3) float32: original pixel -> input pixel (continuous coordinates)
rot_flip                    (2,) float32 [deg (OpenCV angle), flip]
dataset, imgpath            str
index                       int64 (-1 when the caller did not give one)
==========================  ======================================================================

Coordinates. Pixels are continuous (the image spans [0, W] x [0, H]); a point ``u`` of the original image
lands at ``u_in = affine @ [u, 1]`` in the S x S input and has normalised coordinates ``2 * u_in / S - 1``.
To go back: ``u = inverse(affine) @ [(v + 1) * S / 2, 1]`` (``cv2.invertAffineTransform``). Without
rotation or flip, ``offsets`` give the same answer (``geometry.camera.normalized_to_original_image``).

Slots. Pose persons take the first slots in their ``img_info`` order, then box-only persons fill what is
left; a pose person with no visible joint in the input, or a box person whose centre falls outside it,
gets no slot (as ROMP).

Every target is built for all persons at once with array operations (no loop over persons).
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from omegaconf import OmegaConf

from romp_hydra.batch import (
    BETAS,
    BODY_POSE,
    GLOBAL_ORIENT,
    KP3D,
    KP_MISSING,
    NUM_JOINTS,
    NUM_PARAMS,
    NUM_POSE_PARAMS,
    NUM_VALID_MASKS,
    PARAMS_MISSING,
    TRACK_ID,
    TRACK_ID_MISSING,
)
from romp_hydra.body.joint_sets import FLIP54, ROOT_JOINTS
from romp_hydra.config.schema import DataConfig
from romp_hydra.data.augment import (
    VIS_THRESHOLD,
    AugmentParams,
    apply_affine,
    build_affine,
    color_jitter,
    crop_offsets,
    draw_augment_params,
    rotate_flip_points3d,
    synthetic_occlusion,
    warp_image,
)
from romp_hydra.data.centermap import (
    box_person_centers,
    center_radii,
    collision_aware_push,
    draw_centermap,
    pose_centers,
    visible_joints,
)
from romp_hydra.data.masks import valid_masks_from_vmasks
from romp_hydra.data.sample import ImgInfo, validate_img_info
from romp_hydra.geometry.rotations import flip_smpl_pose_np, rotate_global_orient_np

# Centres pushed by CAR are clipped this far inside (-1, 1): an exact -1 would read as an empty slot to
# ROMP-style "> -1" tests, and an exact +1 would map to cell C, outside the map.
_CENTER_LIMIT = 1.0 - 1e-4
_FLIP54 = np.asarray(FLIP54)
_ROOT_JOINTS = list(ROOT_JOINTS)
# The params segments (global orient, body pose, betas): their valid_masks column and length.
_PARAM_SEGMENT_MASKS = [GLOBAL_ORIENT, BODY_POSE, BETAS]
_PARAM_SEGMENT_SIZES = [3, NUM_POSE_PARAMS - 3, NUM_PARAMS - NUM_POSE_PARAMS]


def pipeline_settings(data_cfg: Any) -> DataConfig:
    """``cfg.data`` (DictConfig, dict or DataConfig) as the schema's DataConfig: types checked, absent keys default.

    The schema is the one definition of the data options; `config.validate` checks their ranges for every entry
    point, so this only fills and types them (tests and scripts pass plain dicts).
    """
    if isinstance(data_cfg, DataConfig):
        return data_cfg
    merged = OmegaConf.merge(OmegaConf.structured(DataConfig), data_cfg or {})
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


@dataclass
class Slots:
    """The persons that got a slot, in slot order (K <= max_person)."""

    person: np.ndarray  # (K,) int: index into the img_info persons
    center: np.ndarray  # (K, 2) float64 normalised centre (before CAR)
    hw: np.ndarray  # (K, 2) float64 normalised box size
    is_pose: np.ndarray  # (K,) bool

    def __len__(self) -> int:
        return len(self.person)


class SamplePipeline:
    """Turns one ``img_info`` into one training (or evaluation) sample.

    Args:
        data_cfg: ``cfg.data`` (DictConfig, dict or the schema's ``DataConfig``).
        train: augment and apply CAR. ``False`` (evaluation) letterboxes the whole image, unchanged.
    """

    def __init__(self, data_cfg: Any, train: bool) -> None:
        self.settings = pipeline_settings(data_cfg)
        self.train = train

    def __call__(
        self,
        info: Mapping[str, Any] | ImgInfo,
        rng: np.random.Generator,
        scale_range: tuple[float, float] = (1.2, 2.4),
        is_3d: bool = False,
        *,
        dataset_key: str | None = None,
        index: int = -1,
    ) -> dict[str, Any]:
        """Validate ``info``, draw the augmentation from ``rng`` (training only) and build the sample.

        Args:
            info: the source's ``img_info`` dict, or an :class:`ImgInfo` that ``validate_img_info`` returned
                (then it is not checked again).
            rng: this sample's generator, the only source of randomness (the sampler seeds it from
                (seed, epoch, index)), so the sample is a pure function of (info, rng state).
            scale_range: the source's crop enlargement range.
            is_3d: the source is a 3D dataset (crop probability ``crop_prob_3d``).
            dataset_key: the source's mixture key, for error messages (default: ``info['ds']``).
            index: the sample's index in its source, for error messages and the ``index`` key.

        Raises:
            ImgInfoError: when ``info`` breaks the contract (names dataset, index and field).
        """
        if isinstance(info, ImgInfo):
            checked = info
        else:
            key = dataset_key if dataset_key is not None else str(info.get("ds", "<unknown>"))
            checked = validate_img_info(info, key, index)
        if self.train:
            augment = draw_augment_params(
                rng, self.settings.augment, checked.height, checked.width, crop_anchor_points(checked),
                scale_range, is_3d,
            )
        else:
            augment = AugmentParams.letterbox(checked.height, checked.width)
        return self.build_sample(checked, augment, index=index)

    def build_sample(self, info: ImgInfo, augment: AugmentParams, index: int = -1) -> dict[str, Any]:
        """Build the sample for a validated ``info`` and fixed augmentation choices (no randomness here)."""
        size = self.settings.input_size
        affine = build_affine(augment.crop_center, augment.crop_side, augment.rotation_deg, augment.flip, size)
        image = warp_image(info.image, affine, size, augment.visible)
        targets = self.build_targets(info, affine, augment.rotation_deg, augment.flip)
        image = self.augment_pixels(image, targets, augment)
        return {
            "image": channels_first(image),
            **targets,
            "all_persons_labelled": np.bool_(info.all_persons_labelled),
            "offsets": crop_offsets(augment.crop_center, augment.crop_side, info.height, info.width),
            "affine": affine.astype(np.float32),
            "rot_flip": np.array([augment.rotation_deg, float(augment.flip)], dtype=np.float32),
            "dataset": info.dataset,
            "imgpath": info.imgpath,
            "index": np.int64(index),
        }

    def augment_pixels(self, image: np.ndarray, targets: dict[str, np.ndarray], augment: AugmentParams) -> np.ndarray:
        """Synthetic occlusion over one person (it needs the targets' poses), then colour jitter."""
        if augment.occlusion_seed is not None:
            boxes = person_pixel_boxes(targets["kp2d"][targets["person_mask"]], self.settings.input_size)
            image = synthetic_occlusion(image, boxes, augment.occlusion_seed)
        if augment.jitter is not None:
            image = color_jitter(image, augment.jitter, augment.jitter_order)
        return image

    def build_targets(
        self, info: ImgInfo, affine: np.ndarray, rotation_deg: float, flip: bool,
    ) -> dict[str, np.ndarray]:
        """The per-slot targets (kp2d, kp3d, params, centers, person_mask, valid_masks, track_ids, centermap)."""
        max_person = self.settings.max_person
        kp2d_all = transform_poses(info.kp2ds, affine, flip, self.settings.input_size)
        slots = self.assign_slots(info, kp2d_all, affine)
        used, persons = slice(0, len(slots)), slots.person  # slots are filled from the first

        valid = valid_masks_from_vmasks(info.vmask_2d[persons], info.vmask_3d[persons])
        joints, rooted = transform_kp3d(info.kp3ds[persons], rotation_deg, flip)
        valid[:, KP3D] &= rooted

        kp2d = np.full((max_person, NUM_JOINTS, 2), KP_MISSING, dtype=np.float32)
        kp2d[used][slots.is_pose] = kp2d_all[persons[slots.is_pose]]
        kp3d = np.full((max_person, NUM_JOINTS, 3), KP_MISSING, dtype=np.float32)
        kp3d[used][valid[:, KP3D]] = joints[valid[:, KP3D]]
        params = np.full((max_person, NUM_PARAMS), PARAMS_MISSING, dtype=np.float32)
        params[used] = transform_params(info.params[persons], valid, rotation_deg, flip)
        valid_masks = np.zeros((max_person, NUM_VALID_MASKS), dtype=bool)
        valid_masks[used] = valid
        track_ids = np.full(max_person, TRACK_ID_MISSING, dtype=np.int64)
        track_ids[used] = np.where(valid[:, TRACK_ID], info.track_ids[persons], TRACK_ID_MISSING)
        person_mask = np.zeros(max_person, dtype=bool)
        person_mask[used] = True

        slot_centers, radii = self.centers_and_radii(slots)
        centers = np.full((max_person, 2), KP_MISSING, dtype=np.float32)
        centers[used] = slot_centers
        return {
            "kp2d": kp2d,
            "kp3d": kp3d,
            "params": params,
            "centers": centers,
            "person_mask": person_mask,
            "valid_masks": valid_masks,
            "track_ids": track_ids,
            "centermap": draw_centermap(slot_centers, radii, self.settings.centermap_size),
        }

    def assign_slots(self, info: ImgInfo, kp2d_all: np.ndarray, affine: np.ndarray) -> Slots:
        """Pose persons with a visible joint first, then box persons with a centre in view, up to MP."""
        is_pose = info.is_pose
        pose_persons, box_persons = np.flatnonzero(is_pose), np.flatnonzero(~is_pose)
        poses = kp2d_all[pose_persons]
        pose_center, pose_hw, pose_found = pose_centers(poses)
        keep = slice(0, self.settings.max_person)
        if not len(box_persons):  # the common case: poses only, no box arithmetic, nothing to concatenate
            person = pose_persons[pose_found][keep]
            return Slots(person=person, center=pose_center[pose_found].astype(np.float64)[keep],
                         hw=pose_hw[pose_found].astype(np.float64)[keep], is_pose=np.ones(len(person), bool))
        box_center, box_hw, box_found = box_person_centers(info.boxes[box_persons], affine, self.settings.input_size)
        return Slots(
            person=np.concatenate([pose_persons[pose_found], box_persons[box_found]])[keep],
            center=np.concatenate([pose_center[pose_found], box_center[box_found]]).astype(np.float64)[keep],
            hw=np.concatenate([pose_hw[pose_found], box_hw[box_found]]).astype(np.float64)[keep],
            is_pose=np.concatenate([np.ones(pose_found.sum(), bool), np.zeros(box_found.sum(), bool)])[keep],
        )

    def centers_and_radii(self, slots: Slots) -> tuple[np.ndarray, np.ndarray]:
        """Slot centres (CAR-pushed for pose persons in training) and their Gaussian radii."""
        map_size = self.settings.centermap_size
        centers = slots.center.reshape(-1, 2).copy()
        radii = center_radii(slots.hw, map_size)
        pose = slots.is_pose
        if self.train and self.settings.collision_aware_centermap and pose.sum() > 1:
            centers[pose] = collision_aware_push(centers[pose], radii[pose], map_size, self.settings.collision_factor)
            centers = np.clip(centers, -_CENTER_LIMIT, _CENTER_LIMIT)
        return centers.astype(np.float32), radii


def retain_freed_memory() -> bool:
    """Let this process keep the memory it frees instead of handing it back to the OS after every sample.

    A sample allocates and frees a few MB (the warped image, colour jitter's float copies). glibc returns blocks
    above its mmap threshold to the OS on free and trims its heap on free, so every sample page-faults that memory
    in again: that makes colour jitter at 512 px 5x slower. Fixed thresholds keep it; the process then holds about
    one sample's peak memory. Called in each DataLoader worker (and by the benchmark). Returns False off glibc.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 128 << 20))


def channels_first(image: np.ndarray) -> np.ndarray:
    """(S, S, 3) -> contiguous (3, S, S): OpenCV writes each channel straight into its plane (4-10x faster
    than copying a numpy transpose)."""
    planes = np.empty((image.shape[2], *image.shape[:2]), dtype=image.dtype)
    cv2.split(np.ascontiguousarray(image), list(planes))
    return planes


def crop_anchor_points(info: ImgInfo) -> list[np.ndarray]:
    """Per person, the original-pixel points a person-centred crop may be built around.

    Pose persons: their visible joints (vis > VIS_THRESHOLD). Box persons: their visible-box corners.
    """
    visible = info.kp2ds[..., 2] > VIS_THRESHOLD
    return [
        info.kp2ds[person, visible[person], :2] if is_pose else info.boxes[person, 2:4]
        for person, is_pose in enumerate(info.is_pose)
    ]


def transform_poses(kp2ds: np.ndarray, affine: np.ndarray, flip: bool, input_size: int) -> np.ndarray:
    """Map (N, 54, 3) pixel keypoints ``[x, y, vis]`` to normalised (N, 54, 2) input coordinates.

    A joint is missing (-2) when its visibility is <= VIS_THRESHOLD (this covers the -2 rows) or when it
    lands outside the open interval (-1, 1). After a flip the joints are re-indexed with FLIP54 so that a
    left wrist stays a left wrist of the mirrored person.
    """
    kp2ds = np.asarray(kp2ds, dtype=np.float64).reshape(-1, NUM_JOINTS, 3)
    normalised = apply_affine(kp2ds[..., :2], affine) * (2.0 / input_size) - 1.0
    present = (kp2ds[..., 2] > VIS_THRESHOLD) & np.all(np.abs(normalised) < 1.0, axis=-1)
    out = np.where(present[..., None], normalised, KP_MISSING)
    if flip:
        out = out[:, _FLIP54]
    return out.astype(np.float32)


def transform_kp3d(kp3d: np.ndarray, rotation_deg: float, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Root-centre (N, 54, 3) metres on the hips' midpoint, rotate in-plane and mirror with the image.

    Returns:
        ``(joints, rooted)``: (N, 54, 3) float32 (-2 where missing) and (N,) bool, False when a hip (joint
        45 or 46) is missing: those joints cannot be root-centred and are not a target. (ROMP subtracts the
        mean anyway, -2 sentinels included.)
    """
    kp3d = np.asarray(kp3d, dtype=np.float64).reshape(-1, NUM_JOINTS, 3)
    present = ~np.any(kp3d == KP_MISSING, axis=-1)
    rooted = present[:, _ROOT_JOINTS].all(axis=1)
    centred = kp3d - kp3d[:, _ROOT_JOINTS].sum(axis=1, keepdims=True) / len(_ROOT_JOINTS)  # .mean, less overhead
    turned = rotate_flip_points3d(centred, rotation_deg, flip) if rotation_deg or flip else centred
    if flip:
        turned, present = turned[:, _FLIP54], present[:, _FLIP54]
    return np.where(present[..., None], turned, KP_MISSING).astype(np.float32), rooted


def transform_params(params: np.ndarray, valid: np.ndarray, rotation_deg: float, flip: bool) -> np.ndarray:
    """Rotate the global orient in-plane and mirror the pose with the image; -10 where not valid.

    Args:
        params: (N, 76) ``[global_orient 3, body_pose 63, betas 10]``.
        valid: (N, 8) the slots' ``valid_masks`` rows (GLOBAL_ORIENT, BODY_POSE, BETAS are read).

    The flip is applied whenever any pose part is valid (ROMP HEAD flips only when the body pose is
    valid, leaving a valid global orient of a flipped image unmirrored). Betas are left/right symmetric.
    """
    params = np.asarray(params).reshape(-1, NUM_PARAMS)
    orient_ok, pose_ok = valid[:, GLOBAL_ORIENT], valid[:, BODY_POSE]
    theta = params[:, :NUM_POSE_PARAMS].astype(np.float64)
    if rotation_deg != 0.0 and orient_ok.any():
        theta[orient_ok, :3] = rotate_global_orient_np(theta[orient_ok, :3], rotation_deg)
    mirrored = orient_ok | pose_ok
    if flip and mirrored.any():
        theta[mirrored] = flip_smpl_pose_np(theta[mirrored])  # joint 0 maps to itself: no leak across parts
    segments = np.repeat(valid[:, _PARAM_SEGMENT_MASKS], _PARAM_SEGMENT_SIZES, axis=1)  # (N, 76)
    values = np.concatenate([theta, params[:, NUM_POSE_PARAMS:]], axis=1)
    return np.where(segments, values, PARAMS_MISSING).astype(np.float32)


def person_pixel_boxes(kp2d: np.ndarray, input_size: int) -> np.ndarray:
    """(K, 4) ``[x0, y0, x1, y1]`` input-pixel boxes of the poses in (K, 54, 2) normalised keypoints.

    Poses without a visible joint have no box (fewer rows than poses)."""
    kp2d = np.asarray(kp2d).reshape(-1, NUM_JOINTS, 2)
    visible = visible_joints(kp2d)[..., None]
    pixels = (kp2d + 1.0) * (input_size / 2.0)
    low = np.where(visible, pixels, np.inf).min(axis=1)
    high = np.where(visible, pixels, -np.inf).max(axis=1)
    has_box = visible[..., 0].any(axis=1)
    return np.concatenate([low, high], axis=1)[has_box].astype(np.float64)
