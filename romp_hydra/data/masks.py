"""The per-person flags of an ``img_info`` and how they become the batch's ``valid_masks``.

Two flag tables travel in an ``img_info`` (what a source annotates per person):

* ``vmask_2d`` (N, 3): 2D side;
* ``vmask_3d`` (N, 6): 3D side.

Sources build them with :func:`vmask_2d_rows` / :func:`vmask_3d_rows` (named flags, no bare column order). The
pipeline turns them into ``valid_masks`` (MP, 8), whose columns are part of the batch schema
(:mod:`romp_hydra.batch`).
"""

from __future__ import annotations

import numpy as np

from romp_hydra import batch

# ---- vmask_2d columns (img_info) ---------------------------------------------------------------------
VMASK_2D_IS_POSE = 0  # kp2ds[i] is a 54-joint pose; False means a (4, 2) box
VMASK_2D_TRACK_ID = 1  # track_ids[i] is valid
VMASK_2D_ALL_PERSONS_LABELLED = 2  # only row 0 is read: every person in the image is annotated
NUM_VMASK_2D = 3

# ---- vmask_3d columns (img_info) ---------------------------------------------------------------------
VMASK_3D_KP3D = 0
VMASK_3D_GLOBAL_ORIENT = 1
VMASK_3D_BODY_POSE = 2
VMASK_3D_BETAS = 3
VMASK_3D_VERTS = 4
VMASK_3D_DEPTH = 5
NUM_VMASK_3D = 6

# Where each img_info column lands in valid_masks.
VMASK_2D_TO_VALID: dict[int, int] = {VMASK_2D_IS_POSE: batch.KP2D, VMASK_2D_TRACK_ID: batch.TRACK_ID}
VMASK_3D_TO_VALID: dict[int, int] = {
    VMASK_3D_KP3D: batch.KP3D,
    VMASK_3D_GLOBAL_ORIENT: batch.GLOBAL_ORIENT,
    VMASK_3D_BODY_POSE: batch.BODY_POSE,
    VMASK_3D_BETAS: batch.BETAS,
    VMASK_3D_VERTS: batch.VERTS,
    VMASK_3D_DEPTH: batch.DEPTH,
}


def vmask_2d_rows(count: int, *, pose: bool, track_ids: bool, all_labelled: bool) -> np.ndarray:
    """(count, 3) bool ``vmask_2d`` with the same flags for every person.

    Args:
        count: number of persons.
        pose: the persons are 54-joint poses (False: (4, 2) boxes).
        track_ids: their ``track_ids`` are real identities.
        all_labelled: every person in the image is annotated (gates the centre-map loss; only row 0 is read).
    """
    row = np.zeros(NUM_VMASK_2D, dtype=bool)
    row[VMASK_2D_IS_POSE], row[VMASK_2D_TRACK_ID], row[VMASK_2D_ALL_PERSONS_LABELLED] = pose, track_ids, all_labelled
    return np.tile(row, (count, 1))


def vmask_3d_rows(
    count: int, *, kp3d: bool = False, global_orient: bool = False, body_pose: bool = False, betas: bool = False,
    verts: bool = False, depth: bool = False,
) -> np.ndarray:
    """(count, 6) bool ``vmask_3d`` with the same flags for every person; a flag left out is False.

    ``kp3d``: 54 3D joints; ``global_orient`` / ``body_pose`` / ``betas``: the SMPL params segments; ``verts``:
    ground-truth vertices exist; ``depth``: a camera-frame root translation (``root_trans``) exists.
    """
    row = np.zeros(NUM_VMASK_3D, dtype=bool)
    row[VMASK_3D_KP3D], row[VMASK_3D_GLOBAL_ORIENT], row[VMASK_3D_BODY_POSE] = kp3d, global_orient, body_pose
    row[VMASK_3D_BETAS], row[VMASK_3D_VERTS], row[VMASK_3D_DEPTH] = betas, verts, depth
    return np.tile(row, (count, 1))


def valid_masks_from_vmasks(vmask_2d: np.ndarray, vmask_3d: np.ndarray) -> np.ndarray:
    """Translate per-person source flags into ``valid_masks`` rows.

    Args:
        vmask_2d: (N, 3) bool.
        vmask_3d: (N, 6) bool.

    Returns:
        (N, 8) bool. These are the flags *as annotated*; the pipeline then clears any flag whose
        target it could not build (for example KP2D for a pose without a visible joint).
    """
    vmask_2d = np.asarray(vmask_2d, dtype=bool)
    out = np.zeros((vmask_2d.shape[0], batch.NUM_VALID_MASKS), dtype=bool)
    out[:, _VALID_FROM_2D[1]] = vmask_2d[:, _VALID_FROM_2D[0]]
    out[:, _VALID_FROM_3D[1]] = np.asarray(vmask_3d, dtype=bool)[:, _VALID_FROM_3D[0]]
    return out


# (source columns, valid_masks columns) as index arrays, to copy all columns in one step.
_VALID_FROM_2D = tuple(np.array(columns) for columns in zip(*VMASK_2D_TO_VALID.items()))
_VALID_FROM_3D = tuple(np.array(columns) for columns in zip(*VMASK_3D_TO_VALID.items()))
