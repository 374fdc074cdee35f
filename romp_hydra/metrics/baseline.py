"""The mean baseline: every person predicted as the training set's mean pose and shape.

A model that has learnt nothing but the average person scores exactly this, so every validation number has a
floor to beat. The baseline is a stand-in *network* (:class:`MeanParamsNetwork`) whose parameter maps hold the
mean person at every cell: read at each GT centre (``matching="gt_center"``) and decoded by the same
``Predictor``, it is scored by the same evaluation code as the model, so the two numbers compare exactly.

The camera does not enter the 3D metrics (MPJPE is hip-aligned, PA-MPJPE Procrustes-aligned, PVE
hip-centred), so "the best camera" costs nothing here: any camera gives the same 3D errors.

    mean = mean_smpl_params(train_params)        # (76,) from the training people's SMPL parameters
    net = MeanParamsNetwork(mean, centermap_size=16)
    result = evaluate_batches(net, predictor, val_batches, replace(protocol, matching="gt_center"), device)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from romp_hydra.geometry.rotations import axis_angle_to_rotmat, rotmat_to_axis_angle, rotmat_to_rot6d

__all__ = ["NUM_SMPL_PARAMS", "MeanParamsNetwork", "mean_smpl_params", "params_from_sources"]

NUM_SMPL_PARAMS = 76  # global orient 3 + body pose 63 (axis-angle) + betas 10, the img_info layout
_POSE_JOINTS = 22
_MISSING = -10.0  # the img_info fill value of absent parameters
# The ROMP parameter vector: cam 3 | 22 x 6D rotations | betas 10 (models/romp.py).
_CAM_DIM, _BETAS_DIM = 3, 10
_PARAMS_DIM = _CAM_DIM + _POSE_JOINTS * 6 + _BETAS_DIM


def mean_smpl_params(params: np.ndarray) -> np.ndarray:
    """(76,) mean of (N, 76) SMPL parameters; rows holding the missing value (-10) are left out.

    Each joint's mean rotation is the chordal L2 mean (the rotation nearest to the average rotation matrix), so
    it is a valid rotation whatever the spread; betas are averaged.
    """
    params = np.asarray(params, dtype=np.float64).reshape(-1, NUM_SMPL_PARAMS)
    params = params[~np.any(params == _MISSING, axis=1)]
    if len(params) == 0:
        raise ValueError("mean_smpl_params: no person with SMPL parameters to average")
    rotmats = axis_angle_to_rotmat(torch.from_numpy(params[:, :66].reshape(-1, _POSE_JOINTS, 3))).double()
    u, _, vt = torch.linalg.svd(rotmats.mean(dim=0))
    # Project onto SO(3): the sign fix keeps a proper rotation (det +1).
    d = torch.sign(torch.linalg.det(u @ vt))
    u = torch.cat([u[:, :, :2], u[:, :, 2:] * d[:, None, None]], dim=2)
    mean_rot = u @ vt
    mean = np.empty(NUM_SMPL_PARAMS)
    mean[:66] = rotmat_to_axis_angle(mean_rot.float()).double().numpy().reshape(-1)
    mean[66:] = params[:, 66:].mean(axis=0)
    return mean.astype(np.float32)


def params_from_sources(sources: Iterable) -> np.ndarray:
    """(P, 76) SMPL parameters of every person of some sources that keep them in a packed store
    (``source.store.arrays["params"]``: the synthetic and store-backed sources); others are skipped."""
    parts = []
    for source in sources:
        store = getattr(source, "store", None)
        arrays = getattr(store, "arrays", None) if store is not None else None
        if arrays is not None and "params" in arrays:
            parts.append(np.asarray(arrays["params"], dtype=np.float32))
    if not parts:
        raise ValueError("params_from_sources: none of the sources keeps SMPL parameters in a packed store")
    return np.concatenate(parts)


class MeanParamsNetwork(nn.Module):
    """A network that sees nothing: no centre anywhere, and the mean person's parameters at every cell.

    Args:
        mean_params: (76,) axis-angle pose + betas (:func:`mean_smpl_params`).
        centermap_size: side of the output maps (the real network's, so GT centre cells exist).
        cam: the (s, tx, ty) written at every cell; irrelevant to the aligned 3D metrics.
    """

    def __init__(self, mean_params: np.ndarray, centermap_size: int, cam: tuple[float, float, float] = (1.0, 0.0, 0.0)):
        super().__init__()
        mean = torch.as_tensor(np.asarray(mean_params, dtype=np.float32)).reshape(NUM_SMPL_PARAMS)
        rot6d = rotmat_to_rot6d(axis_angle_to_rotmat(mean[:66].reshape(_POSE_JOINTS, 3))).reshape(-1)
        vector = torch.cat([torch.tensor(cam, dtype=torch.float32), rot6d, mean[66:]])
        assert vector.numel() == _PARAMS_DIM
        self.register_buffer("vector", vector)
        self.centermap_size = int(centermap_size)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        size, batch = self.centermap_size, images.shape[0]
        params = self.vector.to(images.device)[None, :, None, None].expand(batch, -1, size, size)
        center = torch.full((batch, 1, size, size), -1.0, device=images.device)
        return {"center_map": center, "params_maps": params.contiguous()}
