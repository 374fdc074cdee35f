"""img_info builders shared by the data-layer tests (import: from tests.data.builders import make_info)."""
from __future__ import annotations

from typing import Any

import numpy as np


def gradient_image(height: int = 150, width: int = 200) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([cols * 255 // (width - 1), rows * 255 // (height - 1), (cols * 7 + rows * 3) % 256],
                    axis=-1).astype(np.uint8)


def make_info(image=None, poses=(), boxes=(), *, kp3ds=None, params=None, track_ids=None,
              all_labelled=True) -> dict[str, Any]:
    """img_info with pose persons first, then box persons; 3D labels flagged where given."""
    image = gradient_image() if image is None else image
    num_pose, num = len(poses), len(poses) + len(boxes)
    vmask_2d = np.zeros((num, 3), dtype=bool)
    vmask_2d[:num_pose, 0] = True
    vmask_2d[:, 2] = all_labelled
    if track_ids is not None:
        vmask_2d[:, 1] = np.asarray(track_ids) >= 0
    vmask_3d = np.zeros((num, 6), dtype=bool)
    if kp3ds is not None:
        kp3ds = list(kp3ds) + [None] * (num - len(kp3ds))
        vmask_3d[:, 0] = [k is not None for k in kp3ds]
    if params is not None:
        params = list(params) + [None] * (num - len(params))
        vmask_3d[:, 1:4] = np.array([p is not None for p in params])[:, None]
    return {
        "imgpath": "/fake/toy/img.jpg", "image": image, "kp2ds": list(poses) + list(boxes),
        "track_ids": track_ids, "vmask_2d": vmask_2d, "vmask_3d": vmask_3d, "kp3ds": kp3ds, "params": params,
        "img_size": image.shape[:2], "ds": "toy",
    }
