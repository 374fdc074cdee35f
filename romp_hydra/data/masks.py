"""Column meanings of the per-person validity masks.

Three mask tables travel through the data layer:

* ``vmask_2d`` (N, 3) in an ``img_info`` (what a source annotates per person, 2D side);
* ``vmask_3d`` (N, 6) in an ``img_info`` (3D side);
* ``valid_masks`` (max_person, 8) in a sample / batch (what the losses may use per slot).

The constants below name every column so that no module indexes them with bare numbers.
"""

from __future__ import annotations

import numpy as np

# ---- valid_masks columns (sample / batch) -----------------------------------------------------------
KP2D = 0  # slot holds a 54-joint 2D pose (False for box-only persons)
KP3D = 1  # root-centred 3D joints are valid
TRACK_ID = 2  # track_ids[slot] is a real identity
GLOBAL_ORIENT = 3  # params[slot, :3]
BODY_POSE = 4  # params[slot, 3:66]
BETAS = 5  # params[slot, 66:76]
VERTS = 6  # the source has ground-truth SMPL vertices (not carried in the batch; rebuild them from params)
DEPTH = 7  # the source has a camera-frame root translation (not carried in the batch)
NUM_VALID_MASKS = 8

VALID_MASK_NAMES: tuple[str, ...] = (
    "kp2d", "kp3d", "track_id", "global_orient", "body_pose", "betas", "verts", "depth",
)

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
VMASK_2D_TO_VALID: dict[int, int] = {VMASK_2D_IS_POSE: KP2D, VMASK_2D_TRACK_ID: TRACK_ID}
VMASK_3D_TO_VALID: dict[int, int] = {
    VMASK_3D_KP3D: KP3D,
    VMASK_3D_GLOBAL_ORIENT: GLOBAL_ORIENT,
    VMASK_3D_BODY_POSE: BODY_POSE,
    VMASK_3D_BETAS: BETAS,
    VMASK_3D_VERTS: VERTS,
    VMASK_3D_DEPTH: DEPTH,
}


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
    vmask_3d = np.asarray(vmask_3d, dtype=bool)
    out = np.zeros((vmask_2d.shape[0], NUM_VALID_MASKS), dtype=bool)
    for source_col, target_col in VMASK_2D_TO_VALID.items():
        out[:, target_col] = vmask_2d[:, source_col]
    for source_col, target_col in VMASK_3D_TO_VALID.items():
        out[:, target_col] = vmask_3d[:, source_col]
    return out
