"""Named vmask rows and their translation into the batch's valid_masks columns."""
from __future__ import annotations

import numpy as np

from romp_hydra import batch
from romp_hydra.data import masks


def test_vmask_rows_put_each_named_flag_in_its_column():
    rows_2d = masks.vmask_2d_rows(3, pose=False, track_ids=True, all_labelled=False)
    assert rows_2d.shape == (3, masks.NUM_VMASK_2D) and rows_2d.dtype == bool
    np.testing.assert_array_equal(rows_2d, np.tile([False, True, False], (3, 1)))
    np.testing.assert_array_equal(masks.vmask_3d_rows(2, kp3d=True, depth=True), np.tile([1, 0, 0, 0, 0, 1], (2, 1)))
    np.testing.assert_array_equal(masks.vmask_3d_rows(1, betas=True, verts=True), [[0, 0, 0, 1, 1, 0]])
    assert masks.vmask_3d_rows(0).shape == (0, masks.NUM_VMASK_3D)


def test_valid_masks_take_every_flag_from_its_source_column():
    vmask_2d = masks.vmask_2d_rows(1, pose=True, track_ids=False, all_labelled=True)
    vmask_3d = masks.vmask_3d_rows(1, global_orient=True, betas=True, depth=True)
    valid = masks.valid_masks_from_vmasks(vmask_2d, vmask_3d)[0]
    named = {name for name, flag in zip(batch.VALID_MASK_NAMES, valid) if flag}
    assert named == {"kp2d", "global_orient", "betas", "depth"}  # all_labelled is per image, not per slot
    assert valid[batch.KP2D] and valid[batch.DEPTH] and not valid[batch.TRACK_ID]
