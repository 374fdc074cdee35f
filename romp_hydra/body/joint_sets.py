"""Joint orders: ROMP's 54-joint set, the raw order of every supported dataset, and the maps between them.

Every joint set is a tuple of names written in one naming scheme (ROMP's, from ``romp/lib/constants.py``),
so converting a dataset to the 54-joint layout is a lookup by name. Dataset joints that ROMP does not use
carry names that do not occur in the 54-joint set (e.g. ``'Thorax_MuCo'``) and therefore simply do not map.

A few names deserve a warning because they look alike but are different points:

* ``'L_Hip'``/``'R_Hip'`` (46/45) are the dataset-style hips regressed from the mesh, not the SMPL kinematic
  hips ``'L_Hip_SMPL'``/``'R_Hip_SMPL'`` (1/2); every 2D dataset's hips map to 45/46.
* ``'Neck'`` (12) is SMPL's neck joint (MPII's upper neck, COCO-18's neck); ``'Neck_LSP'`` (47) is the LSP /
  CrowdPose neck; ``'Head_top'`` (48) the LSP / MPII head top; ``'Head'`` (53) the H36M head.
* ``'Jaw'`` (15) is ROMP's name for the SMPL head joint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)
JointNames = tuple[str, ...]

# ---------------------------------------------------------------------------------------------------------
# The 54-joint set (SMPL_ALL_54 = 24 SMPL kinematic joints + 30 extra joints)
# ---------------------------------------------------------------------------------------------------------

SMPL_24: JointNames = (
    "Pelvis_SMPL", "L_Hip_SMPL", "R_Hip_SMPL", "Spine_SMPL", "L_Knee", "R_Knee", "Thorax_SMPL", "L_Ankle",
    "R_Ankle", "Thorax_up_SMPL", "L_Toe_SMPL", "R_Toe_SMPL", "Neck", "L_Collar", "R_Collar", "Jaw",
    "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand", "R_Hand",
)  # fmt: skip

# 24-44 are mesh vertices (face, feet, finger tips), 45-53 come from an extra joint regressor.
SMPL_EXTRA_30: JointNames = (
    "Nose", "R_Eye", "L_Eye", "R_Ear", "L_Ear",
    "L_BigToe", "L_SmallToe", "L_Heel", "R_BigToe", "R_SmallToe", "R_Heel",
    "L_Hand_thumb", "L_Hand_index", "L_Hand_middle", "L_Hand_ring", "L_Hand_pinky",
    "R_Hand_thumb", "R_Hand_index", "R_Hand_middle", "R_Hand_ring", "R_Hand_pinky",
    "R_Hip", "L_Hip", "Neck_LSP", "Head_top", "Pelvis", "Thorax_MPII", "Spine_H36M", "Jaw_H36M", "Head",
)  # fmt: skip

SMPL_ALL_54: JointNames = SMPL_24 + SMPL_EXTRA_30
NUM_JOINTS_54 = len(SMPL_ALL_54)
JOINT54: dict[str, int] = {name: index for index, name in enumerate(SMPL_ALL_54)}

# Parent of each SMPL kinematic joint (-1 for the root).
SMPL24_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)  # fmt: skip


def mirror_joint_name(name: str) -> str:
    """The left/right counterpart of a joint name (``'L_Wrist'`` <-> ``'R_Wrist'``); centre joints map to
    themselves."""
    if name.startswith("L_"):
        return "R_" + name[2:]
    if name.startswith("R_"):
        return "L_" + name[2:]
    return name


def joint_side(name: str) -> str:
    """``'left'``, ``'right'`` or ``'centre'`` from the joint name's prefix."""
    if name.startswith("L_"):
        return "left"
    if name.startswith("R_"):
        return "right"
    return "centre"


def flip_permutation(names: Sequence[str]) -> tuple[int, ...]:
    """Index permutation that swaps left and right joints of ``names``.

    ``flipped = joints[perm]`` gives the joints of the horizontally mirrored person (the x coordinate has to
    be mirrored separately). Raises if a joint's counterpart is missing from ``names``.
    """
    index = {name: i for i, name in enumerate(names)}
    perm = []
    for name in names:
        mirrored = mirror_joint_name(name)
        if mirrored not in index:
            raise ValueError(f"joint {name!r} has no mirrored counterpart {mirrored!r} in this joint set")
        perm.append(index[mirrored])
    return tuple(perm)


# ROMP's All54_flip; derived from the names (the tests check it against ROMP's literal listing).
FLIP54: tuple[int, ...] = flip_permutation(SMPL_ALL_54)
# ROMP's SMPL_JOINTS_FLIP_PERM for the 24 SMPL joints, and the 22-joint version used on 66-value poses.
SMPL24_FLIP_PERM: tuple[int, ...] = flip_permutation(SMPL_24)
SMPL_POSE_FLIP_PERM: tuple[int, ...] = flip_permutation(SMPL_24[:22])

JOINT54_SIDES: tuple[str, ...] = tuple(joint_side(name) for name in SMPL_ALL_54)

# Dataset-style hips: 3D joints are centred on their midpoint.
ROOT_JOINTS: tuple[int, ...] = (JOINT54["R_Hip"], JOINT54["L_Hip"])
# ROMP's torso joints (Neck, Neck_LSP, R/L shoulder, Pelvis, R/L hip).
TORSO_JOINTS: tuple[int, ...] = tuple(
    JOINT54[name] for name in ("Neck", "Neck_LSP", "R_Shoulder", "L_Shoulder", "Pelvis", "R_Hip", "L_Hip")
)

# ---------------------------------------------------------------------------------------------------------
# Raw joint orders of the datasets
# ---------------------------------------------------------------------------------------------------------

COCO_17: JointNames = (
    "Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
    "L_Wrist", "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle",
)  # fmt: skip

# OpenPose-18 (3DPW's ``poses2d``).
COCO_18: JointNames = (
    "Nose", "Neck", "R_Shoulder", "R_Elbow", "R_Wrist", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Hip",
    "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "R_Eye", "L_Eye", "R_Ear", "L_Ear",
)  # fmt: skip

# MPII as converted by HRNet: upper neck -> 'Neck', thorax -> 'Thorax_MPII'.
MPII_16: JointNames = (
    "R_Ankle", "R_Knee", "R_Hip", "L_Hip", "L_Knee", "L_Ankle", "Pelvis", "Thorax_MPII", "Neck",
    "Head_top", "R_Wrist", "R_Elbow", "R_Shoulder", "L_Shoulder", "L_Elbow", "L_Wrist",
)  # fmt: skip

# LSP / LSPET / UP-3D, and the 14 "common" joints of VIBE's 3DPW db.
LSP_14: JointNames = (
    "R_Ankle", "R_Knee", "R_Hip", "L_Hip", "L_Knee", "L_Ankle", "R_Wrist", "R_Elbow", "R_Shoulder",
    "L_Shoulder", "L_Elbow", "L_Wrist", "Neck_LSP", "Head_top",
)  # fmt: skip

CROWDPOSE_14: JointNames = (
    "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Hip", "R_Hip", "L_Knee",
    "R_Knee", "L_Ankle", "R_Ankle", "Head_top", "Neck_LSP",
)  # fmt: skip

# The 32 mocap joints of Human3.6M; the ones ROMP leaves unused are named 'H36M_<index>_unused'.
H36M_32: JointNames = (
    "H36M_00_unused", "R_Hip", "R_Knee", "R_Ankle", "R_BigToe", "R_SmallToe", "L_Hip", "L_Knee", "L_Ankle",
    "L_BigToe", "L_SmallToe", "Pelvis", "Spine_H36M", "H36M_13_unused", "Jaw_H36M", "Head", "H36M_16_unused",
    "L_Shoulder", "L_Elbow", "L_Wrist", "H36M_20_unused", "H36M_21_unused", "H36M_22_unused",
    "H36M_23_unused", "Neck", "R_Shoulder", "R_Elbow", "R_Wrist", "H36M_28_unused", "H36M_29_unused",
    "H36M_30_unused", "H36M_31_unused",
)  # fmt: skip

# Rows of the 17-joint H36M regressor (J_regressor_h36m), pelvis first; also CMU Panoptic's 3D GT order.
H36M_17_STANDARD: JointNames = (
    "Pelvis", "L_Hip", "L_Knee", "L_Ankle", "R_Hip", "R_Knee", "R_Ankle", "Spine_H36M", "Neck", "Jaw_H36M",
    "Head", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Shoulder", "R_Elbow", "R_Wrist",
)  # fmt: skip
# ROMP's H36M_TO_J17: reorders the regressor rows so that the first 14 follow LSP.
H36M_TO_J17: tuple[int, ...] = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9)
# The body model's ``joints_h36m17`` output: H36M_17_STANDARD[H36M_TO_J17]. The 3DPW protocol compares its
# first 14 position by position with LSP-14 ground truth, 'Neck' and 'Head' standing in for LSP's neck and
# head top (as in SPIN and VIBE).
H36M_17: JointNames = tuple(H36M_17_STANDARD[i] for i in H36M_TO_J17)

# MPI-INF-3DHP training annotations (28 joints).
MPI_INF_28: JointNames = (
    "Spine4_MPI", "Spine3_MPI", "Spine2_MPI", "Spine1_MPI", "Pelvis", "Neck", "Head", "Head_top",
    "L_Collar_MPI", "L_Shoulder", "L_Elbow", "L_Wrist", "L_Hand", "R_Collar_MPI", "R_Shoulder", "R_Elbow",
    "R_Wrist", "R_Hand", "L_Hip", "L_Knee", "L_Ankle", "L_SmallToe", "L_BigToe", "R_Hip", "R_Knee",
    "R_Ankle", "R_SmallToe", "R_BigToe",
)  # fmt: skip

# MPI-INF-3DHP test set. ROMP flags its head top as misaligned and leaves thorax and head unused.
MPI_INF_TEST_17: JointNames = (
    "Head_top_misaligned_MPI_test", "Neck_LSP", "R_Shoulder", "R_Elbow", "R_Wrist", "L_Shoulder", "L_Elbow",
    "L_Wrist", "R_Hip", "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Pelvis", "Thorax_MPI_test",
    "Head_MPI_test",
)  # fmt: skip

MUPOTS_17: JointNames = (
    "Head_top", "Neck", "R_Shoulder", "R_Elbow", "R_Wrist", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Hip",
    "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Pelvis", "Thorax_MPII", "Head",
)  # fmt: skip

MUCO_21: JointNames = (
    "Head_top", "Thorax_MuCo", "R_Shoulder", "R_Elbow", "R_Wrist", "L_Shoulder", "L_Elbow", "L_Wrist",
    "R_Hip", "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Pelvis", "Spine_MuCo", "Head", "R_Hand",
    "L_Hand", "R_BigToe", "L_BigToe",
)  # fmt: skip

# PoseTrack: nose, head_bottom, head_top, ears, then COCO's shoulders..ankles.
# Difference from ROMP: ROMP names joints 2-4 'empty' in a dict, so they collapse and PoseTrack's head top
# is dropped. head_bottom/head_top are MPII's upper neck/head top (ROMP maps those to 12/48), so we map the
# head top to 48 as well. The ears are not annotated in PoseTrack and stay missing either way.
POSETRACK_17: JointNames = (
    "Nose", "Neck", "Head_top", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
    "L_Wrist", "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle",
)  # fmt: skip

# AI Challenger (order implied by ROMP's AIC->LSP map; it agrees with the official keypoint list).
AICH_14: JointNames = (
    "R_Shoulder", "R_Elbow", "R_Wrist", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Hip", "R_Knee", "R_Ankle",
    "L_Hip", "L_Knee", "L_Ankle", "Head_top", "Neck_LSP",
)  # fmt: skip

# CMU Panoptic in CRMH's 24-joint format: SPIN's 24-joint order (LSP-14, then pelvis, thorax, spine, jaw,
# H36M head, nose, eyes, ears). Inferred from ROMP's J24_TO_H36M, which is consistent with it joint for joint.
# Difference from ROMP: ROMP converts its 2D joints through LSP order and discards everything but the LSP-14
# (with head top forced missing); mapping by name keeps the other annotated joints too.
CMUP_J24: JointNames = (
    "R_Ankle", "R_Knee", "R_Hip", "L_Hip", "L_Knee", "L_Ankle", "R_Wrist", "R_Elbow", "R_Shoulder",
    "L_Shoulder", "L_Elbow", "L_Wrist", "Neck_LSP", "Head_top", "Pelvis", "Thorax_MPII", "Spine_H36M",
    "Jaw_H36M", "Head", "Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear",
)  # fmt: skip
# ROMP's J24_TO_H36M: CMUP_J24 indices in H36M_17_STANDARD order (CMU Panoptic 3D evaluation).
CMUP_J24_TO_H36M17: tuple[int, ...] = (14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6)

JOINT_SETS: dict[str, JointNames] = {
    "smpl_54": SMPL_ALL_54,
    "smpl_24": SMPL_24,
    "coco_17": COCO_17,
    "coco_18": COCO_18,
    "mpii_16": MPII_16,
    "lsp_14": LSP_14,
    "crowdpose_14": CROWDPOSE_14,
    "h36m_32": H36M_32,
    "h36m_17": H36M_17,
    "h36m_17_standard": H36M_17_STANDARD,
    "mpi_inf_28": MPI_INF_28,
    "mpi_inf_test_17": MPI_INF_TEST_17,
    "mupots_17": MUPOTS_17,
    "muco_21": MUCO_21,
    "posetrack_17": POSETRACK_17,
    "aich_14": AICH_14,
    "cmup_j24": CMUP_J24,
}

# ---------------------------------------------------------------------------------------------------------
# Mapping between joint sets
# ---------------------------------------------------------------------------------------------------------


def resolve_joint_set(joint_set: str | Sequence[str]) -> JointNames:
    """A joint set given by its ``JOINT_SETS`` key (e.g. ``'coco_17'``) or as a sequence of names."""
    if isinstance(joint_set, str):
        if joint_set not in JOINT_SETS:
            raise KeyError(f"unknown joint set {joint_set!r}; known: {sorted(JOINT_SETS)}")
        return JOINT_SETS[joint_set]
    return tuple(joint_set)


def joint_mapping(src: str | Sequence[str], dst: str | Sequence[str]) -> np.ndarray:
    """For every joint of ``dst``, its index in ``src`` or -1 if ``src`` lacks it (matched by name).

    Returns an int64 array of shape ``(len(dst),)``, so ``dst_joints = src_joints[mapping]`` where
    ``mapping >= 0``.
    """
    src_names = resolve_joint_set(src)
    dst_names = resolve_joint_set(dst)
    src_index: dict[str, int] = {}
    for i, name in enumerate(src_names):
        if name in src_index:
            raise ValueError(
                f"joint name {name!r} appears twice in the source set (indices {src_index[name]}, {i})"
            )
        src_index[name] = i
    return np.array([src_index.get(name, -1) for name in dst_names], dtype=np.int64)


def map_to_54(src: str | Sequence[str]) -> np.ndarray:
    """Index into the source joints for each of the 54 joints, -1 where the source has no such joint."""
    return joint_mapping(src, SMPL_ALL_54)


def convert_to_54(joints: ArrayOrTensor, src: str | Sequence[str], fill: float = -2.0) -> ArrayOrTensor:
    """Re-order source joints ``[..., Js, D]`` into the 54-joint layout ``[..., 54, D]``.

    Joints the source does not have are set to ``fill`` (every coordinate, including a visibility column).
    Works for numpy arrays and torch tensors; integer input is returned as float32.
    """
    src_names = resolve_joint_set(src)
    if not isinstance(joints, torch.Tensor):
        joints = np.asarray(joints)
    if joints.ndim < 2 or joints.shape[-2] != len(src_names):
        raise ValueError(
            f"convert_to_54 expects joints of shape [..., {len(src_names)}, D] for this source set, "
            f"got {tuple(joints.shape)}"
        )
    mapping = map_to_54(src_names)
    present = np.flatnonzero(mapping >= 0)
    out_shape = (*joints.shape[:-2], NUM_JOINTS_54, joints.shape[-1])
    if isinstance(joints, torch.Tensor):
        dtype = joints.dtype if torch.is_floating_point(joints) else torch.float32
        out = torch.full(out_shape, fill, dtype=dtype, device=joints.device)
        out[..., torch.from_numpy(present), :] = joints[..., torch.from_numpy(mapping[present]), :].to(dtype)
        return out
    dtype = joints.dtype if joints.dtype.kind == "f" else np.float32
    out = np.full(out_shape, fill, dtype=dtype)
    out[..., present, :] = joints[..., mapping[present], :]
    return out


# Indices of the LSP-14 evaluation joints in the 54-joint set:
# (8, 5, 45, 46, 4, 7, 21, 19, 17, 16, 18, 20, 47, 48).
LSP14_FROM_54: tuple[int, ...] = tuple(JOINT54[name] for name in LSP_14)


def select_lsp14(joints54: ArrayOrTensor) -> ArrayOrTensor:
    """The 14 LSP evaluation joints ``[..., 14, D]`` of 54-joint input ``[..., 54, D]`` (numpy or torch).

    Predictions in the 3DPW protocol use the H36M-regressed joints instead: ``joints_h36m17[..., :14, :]``
    is already in this order.
    """
    if joints54.ndim < 2 or joints54.shape[-2] != NUM_JOINTS_54:
        raise ValueError(f"select_lsp14 expects joints of shape [..., 54, D], got {tuple(joints54.shape)}")
    return joints54[..., list(LSP14_FROM_54), :]


# ---------------------------------------------------------------------------------------------------------
# Drawing skeleton
# ---------------------------------------------------------------------------------------------------------


def _named_edges(pairs: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
    return [(JOINT54[parent], JOINT54[child]) for parent, child in pairs]


def _skeleton_54() -> tuple[tuple[int, int], ...]:
    smpl_tree = [(parent, child) for child, parent in enumerate(SMPL24_PARENTS) if parent >= 0]
    fingers = ("thumb", "index", "middle", "ring", "pinky")
    hands = [(f"{side}_Wrist", f"{side}_Hand_{finger}") for side in ("L", "R") for finger in fingers]
    feet = [
        (f"{side}_{a}", f"{side}_{b}")
        for side in ("L", "R")
        for a, b in (("Ankle", "BigToe"), ("BigToe", "SmallToe"), ("Ankle", "Heel"))
    ]
    face = [("Jaw", "Nose"), ("Nose", "R_Eye"), ("R_Eye", "R_Ear"), ("Nose", "L_Eye"), ("L_Eye", "L_Ear")]
    # The dataset-style (LSP / MPII / H36M) joints drawn as their own stick figure over the SMPL tree.
    dataset_style = [
        ("Pelvis", "R_Hip"), ("R_Hip", "R_Knee"), ("Pelvis", "L_Hip"), ("L_Hip", "L_Knee"),
        ("Pelvis", "Spine_H36M"), ("Spine_H36M", "Thorax_MPII"), ("Thorax_MPII", "Neck_LSP"),
        ("Neck_LSP", "R_Shoulder"), ("Neck_LSP", "L_Shoulder"), ("Neck_LSP", "Jaw_H36M"),
        ("Jaw_H36M", "Head"), ("Neck_LSP", "Head_top"),
    ]  # fmt: skip
    return tuple(smpl_tree + _named_edges(hands + feet + face + dataset_style))


# (parent, child) joint-index pairs for drawing 54-joint skeletons.
SKELETON_54: tuple[tuple[int, int], ...] = _skeleton_54()


def _edge_side(edge: tuple[int, int]) -> str:
    sides = {JOINT54_SIDES[edge[0]], JOINT54_SIDES[edge[1]]} - {"centre"}
    return sides.pop() if sides else "centre"


# 'left', 'right' or 'centre' for each edge of SKELETON_54 (an edge touching a left joint is left), so a
# drawer can colour the sides apart and a flipped image visibly swaps colours.
SKELETON_54_SIDES: tuple[str, ...] = tuple(_edge_side(edge) for edge in SKELETON_54)
