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
valid_masks                 (MP, 8) bool, columns in ``romp_hydra.data.masks``
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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from romp_hydra.body.joint_sets import FLIP54, ROOT_JOINTS
from romp_hydra.config.schema import DataConfig
from romp_hydra import batch
from romp_hydra.data import masks
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
    box_person_center,
    center_radius,
    collision_aware_push,
    draw_centermap,
    pose_box_hw,
    pose_center,
    visible_joints,
)
from romp_hydra.data.sample import (
    KP_MISSING,
    NUM_JOINTS,
    NUM_PARAMS,
    NUM_POSE_PARAMS,
    PARAMS_MISSING,
    ImgInfo,
    validate_img_info,
)
from romp_hydra.geometry.rotations import flip_smpl_pose_np, rotate_global_orient_np

# Centres pushed by CAR are clipped this far inside (-1, 1): an exact -1 would read as an empty slot to
# ROMP-style "> -1" tests, and an exact +1 would map to cell C, outside the map.
_CENTER_LIMIT = 1.0 - 1e-4
_FLIP54 = np.asarray(FLIP54)
_ROOT_JOINTS = list(ROOT_JOINTS)


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
class _Slot:
    person: int  # index into the img_info persons
    center: np.ndarray  # (2,) normalised
    hw: np.ndarray  # (2,) normalised box size
    is_pose: bool


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
        size, max_person = self.settings.input_size, self.settings.max_person
        affine = build_affine(augment.crop_center, augment.crop_side, augment.rotation_deg, augment.flip, size)
        image = warp_image(info.image, affine, size, augment.visible)
        kp2d_all = transform_poses(info.kp2ds, affine, augment.flip, size)
        slots = self._assign_slots(info, kp2d_all, affine)

        kp2d = np.full((max_person, NUM_JOINTS, 2), KP_MISSING, dtype=np.float32)
        kp3d = np.full((max_person, NUM_JOINTS, 3), KP_MISSING, dtype=np.float32)
        params = np.full((max_person, NUM_PARAMS), PARAMS_MISSING, dtype=np.float32)
        centers = np.full((max_person, 2), KP_MISSING, dtype=np.float32)
        person_mask = np.zeros(max_person, dtype=bool)
        valid_masks = np.zeros((max_person, batch.NUM_VALID_MASKS), dtype=bool)
        track_ids = np.full(max_person, -1, dtype=np.int64)

        for slot_index, slot in enumerate(slots):
            person = slot.person
            person_mask[slot_index] = True
            valid_masks[slot_index] = masks.valid_masks_from_vmasks(
                info.vmask_2d[person:person + 1], info.vmask_3d[person:person + 1]
            )[0]
            track_ids[slot_index] = info.track_ids[person] if valid_masks[slot_index, batch.TRACK_ID] else -1
            if slot.is_pose:
                kp2d[slot_index] = kp2d_all[person]
            if valid_masks[slot_index, batch.KP3D]:
                joints = transform_kp3d(info.kp3ds[person], augment.rotation_deg, augment.flip)
                if joints is None:
                    valid_masks[slot_index, batch.KP3D] = False
                else:
                    kp3d[slot_index] = joints
            params[slot_index] = transform_params(
                info.params[person], valid_masks[slot_index], augment.rotation_deg, augment.flip
            )

        slot_centers, radii = self._centers_and_radii(slots)
        centers[: len(slots)] = slot_centers
        centermap = draw_centermap(slot_centers, radii, self.settings.centermap_size)

        if augment.occlusion_seed is not None:
            image = synthetic_occlusion(image, person_pixel_boxes(kp2d[person_mask], size), augment.occlusion_seed)
        if augment.jitter is not None:
            image = color_jitter(image, augment.jitter, augment.jitter_order)

        return {
            "image": np.ascontiguousarray(image.transpose(2, 0, 1)),
            "kp2d": kp2d,
            "kp3d": kp3d,
            "params": params,
            "centers": centers,
            "person_mask": person_mask,
            "valid_masks": valid_masks,
            "track_ids": track_ids,
            "centermap": centermap,
            "all_persons_labelled": np.bool_(info.all_persons_labelled),
            "offsets": crop_offsets(augment.crop_center, augment.crop_side, info.height, info.width),
            "affine": affine.astype(np.float32),
            "rot_flip": np.array([augment.rotation_deg, float(augment.flip)], dtype=np.float32),
            "dataset": info.dataset,
            "imgpath": info.imgpath,
            "index": np.int64(index),
        }

    def _assign_slots(self, info: ImgInfo, kp2d_all: np.ndarray, affine: np.ndarray) -> list[_Slot]:
        """Pose persons with a visible joint first, then box persons with a centre in view, up to MP."""
        slots: list[_Slot] = []
        max_person = self.settings.max_person
        for person in np.flatnonzero(info.is_pose):
            if len(slots) == max_person:
                return slots
            center = pose_center(kp2d_all[person])
            if center is not None:
                slots.append(_Slot(int(person), center, pose_box_hw(kp2d_all[person]), True))
        for person in np.flatnonzero(~info.is_pose):
            if len(slots) == max_person:
                return slots
            found = box_person_center(info.boxes[person], affine, self.settings.input_size)
            if found is not None:
                slots.append(_Slot(int(person), found[0], found[1], False))
        return slots

    def _centers_and_radii(self, slots: list[_Slot]) -> tuple[np.ndarray, list[int]]:
        """Slot centres (CAR-pushed for pose persons in training) and their Gaussian radii."""
        map_size = self.settings.centermap_size
        centers = np.array([slot.center for slot in slots], dtype=np.float64).reshape(-1, 2)
        radii = [center_radius(slot.hw, map_size) for slot in slots]
        pose = np.array([slot.is_pose for slot in slots], dtype=bool)
        if self.train and self.settings.collision_aware_centermap and pose.sum() > 1:
            centers[pose] = collision_aware_push(
                centers[pose], [r for r, p in zip(radii, pose) if p], map_size, self.settings.collision_factor
            )
            centers = np.clip(centers, -_CENTER_LIMIT, _CENTER_LIMIT)
        return centers.astype(np.float32), radii


def crop_anchor_points(info: ImgInfo) -> list[np.ndarray]:
    """Per person, the original-pixel points a person-centred crop may be built around.

    Pose persons: their visible joints (vis > VIS_THRESHOLD). Box persons: their visible-box corners.
    """
    anchors = []
    for person in range(info.num_persons):
        if info.is_pose[person]:
            joints = info.kp2ds[person]
            anchors.append(joints[joints[:, 2] > VIS_THRESHOLD, :2])
        else:
            anchors.append(info.boxes[person, 2:4])
    return anchors


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


def transform_kp3d(kp3d: np.ndarray, rotation_deg: float, flip: bool) -> np.ndarray | None:
    """Root-centre (54, 3) metres on the hips' midpoint, rotate in-plane and mirror with the image.

    Returns None when a hip (joint 45 or 46) is missing: the joints cannot be root-centred. (ROMP
    subtracts the mean anyway, -2 sentinels included.)
    """
    kp3d = np.asarray(kp3d, dtype=np.float64)
    present = ~np.any(kp3d == KP_MISSING, axis=-1)
    if not present[_ROOT_JOINTS].all():
        return None
    centred = kp3d - kp3d[_ROOT_JOINTS].mean(axis=0)
    turned = rotate_flip_points3d(centred, rotation_deg, flip)
    if flip:
        turned, present = turned[_FLIP54], present[_FLIP54]
    return np.where(present[:, None], turned, KP_MISSING).astype(np.float32)


def transform_params(params: np.ndarray, valid: np.ndarray, rotation_deg: float, flip: bool) -> np.ndarray:
    """Rotate the global orient in-plane and mirror the pose with the image; -10 where not valid.

    Args:
        params: (76,) ``[global_orient 3, body_pose 63, betas 10]``.
        valid: (8,) the slot's ``valid_masks`` row (GLOBAL_ORIENT, BODY_POSE, BETAS are read).

    The flip is applied whenever any pose part is valid (ROMP HEAD flips only when the body pose is
    valid, leaving a valid global orient of a flipped image unmirrored). Betas are left/right symmetric.
    """
    out = np.full(NUM_PARAMS, PARAMS_MISSING, dtype=np.float32)
    orient_ok, pose_ok, betas_ok = valid[batch.GLOBAL_ORIENT], valid[batch.BODY_POSE], valid[batch.BETAS]
    theta = np.asarray(params[:NUM_POSE_PARAMS], dtype=np.float64).copy()
    if orient_ok and rotation_deg != 0.0:
        theta[:3] = rotate_global_orient_np(theta[:3], rotation_deg)
    if flip and (orient_ok or pose_ok):
        theta = flip_smpl_pose_np(theta)  # joint 0 maps to itself, so invalid parts cannot leak across
    if orient_ok:
        out[:3] = theta[:3]
    if pose_ok:
        out[3:NUM_POSE_PARAMS] = theta[3:]
    if betas_ok:
        out[NUM_POSE_PARAMS:] = params[NUM_POSE_PARAMS:]
    return out


def person_pixel_boxes(kp2d: np.ndarray, input_size: int) -> np.ndarray:
    """(K, 4) ``[x0, y0, x1, y1]`` input-pixel boxes of the poses in (K, 54, 2) normalised keypoints."""
    boxes = []
    for joints in kp2d:
        visible = joints[visible_joints(joints)]
        if len(visible):
            pixels = (visible + 1.0) * (input_size / 2.0)
            boxes.append(np.concatenate([pixels.min(axis=0), pixels.max(axis=0)]))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
