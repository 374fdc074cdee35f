"""SMPL parameter losses: rotation-matrix pose loss and PCA-weighted shape loss."""

from __future__ import annotations

import torch

from romp_hydra.geometry.rotations import axis_angle_to_rotmat
from romp_hydra.losses.common import check_person_mask, masked_mean

__all__ = ["SHAPE_PCA_WEIGHTS", "pose_loss", "shape_loss"]

# Layout of the 76-value GT parameter vector (docs/architecture.md).
GLOBAL_ORIENT_SLICE = slice(0, 3)
BODY_POSE_SLICE = slice(3, 66)
BETAS_SLICE = slice(66, 76)
NUM_PARAMS = 76
NUM_BODY_JOINTS = 21

# Leading shape components explain most of the body variation, so errors there cost more (ROMP HEAD).
SHAPE_PCA_WEIGHTS = (1.0, 0.64, 0.32, 0.32, 0.16, 0.16, 0.16, 0.16, 0.16, 0.16)
SHAPE_LOSS_DIVISOR = 20.0


def _check_params(gt_params: torch.Tensor, num_persons: int, name: str) -> None:
    if gt_params.shape != (num_persons, NUM_PARAMS):
        raise ValueError(
            f"{name}: gt_params must have shape ({num_persons}, {NUM_PARAMS}) "
            f"(66 axis-angle + 10 betas per matched person), got {tuple(gt_params.shape)}"
        )


def _rotmat_distance(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of ``pred - gt`` for rotation matrices [..., 3, 3] -> [...]."""
    return torch.linalg.vector_norm((pred - gt).flatten(start_dim=-2), dim=-1)


def pose_loss(
    pred_rotmat: torch.Tensor,
    gt_params: torch.Tensor,
    global_orient_mask: torch.Tensor | None = None,
    body_pose_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean Frobenius distance between predicted and GT joint rotation matrices (ROMP's ``Pose`` term).

    The GT axis-angle of the root (``params[:, :3]``) and of the 21 body joints (``params[:, 3:66]``) are
    turned into rotation matrices and compared with the prediction joint by joint (``||R_gt - R_pred||_F``).
    Two parts are summed, each a mean over its own valid persons:

    * global orientation, over persons with ``global_orient_mask``;
    * body pose, mean over the 21 joints, over persons with ``body_pose_mask``.

    Comparing matrices rather than axis-angle vectors avoids the 2*pi ambiguity of the latter.

    Args:
        pred_rotmat: [N, 22, 3, 3] predicted rotations (root first), e.g. ``PersonOutputs["pose_rotmat"]``.
        gt_params: [N, 76] GT parameters (66 axis-angle + 10 betas; -10 where missing).
        global_orient_mask: [N] bool, ``valid_masks[:, GLOBAL_ORIENT]`` (all True when ``None``).
        body_pose_mask: [N] bool, ``valid_masks[:, BODY_POSE]`` (all True when ``None``).

    Returns:
        Scalar; an exact graph-connected 0 when no person has either kind of GT.
    """
    num_persons = pred_rotmat.shape[0]
    if pred_rotmat.shape[1:] != (NUM_BODY_JOINTS + 1, 3, 3):
        raise ValueError(
            f"pose_loss: pred_rotmat must have shape (N, 22, 3, 3), got {tuple(pred_rotmat.shape)}"
        )
    _check_params(gt_params, num_persons, "pose_loss")
    global_valid = check_person_mask(global_orient_mask, num_persons, "pose_loss", pred_rotmat.device)
    body_valid = check_person_mask(body_pose_mask, num_persons, "pose_loss", pred_rotmat.device)

    # Joint 0 is gated by the global orientation, joints 1..21 by the body pose. Ungated GT (-10 filler, or
    # anything) is replaced by the identity and compared with itself, so it reaches neither value nor gradient.
    supervised = torch.cat((global_valid[:, None], body_valid[:, None].expand(-1, NUM_BODY_JOINTS)), dim=1)
    gt_aa = gt_params[:, : BODY_POSE_SLICE.stop].float().reshape(num_persons, NUM_BODY_JOINTS + 1, 3)
    gt_rotmat = axis_angle_to_rotmat(torch.where(supervised[..., None], gt_aa, 0.0))
    pred_rotmat = torch.where(supervised[..., None, None], pred_rotmat, gt_rotmat)
    distance = _rotmat_distance(pred_rotmat, gt_rotmat)  # [N, 22]
    return masked_mean(distance[:, 0], global_valid) + masked_mean(distance[:, 1:], body_valid[:, None])


def shape_loss(
    pred_betas: torch.Tensor,
    gt_params: torch.Tensor,
    betas_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """ROMP's ``Shape`` term: the sum of two means, one over the persons with GT betas, one over the rest.

    * persons with GT betas: mean of ``|| (beta_gt - beta_pred) * w ||_2 / 20``, ``w = [1, .64, .32, .32, .16 x 6]``;
    * persons without: ``mean(beta_pred^2) / 20`` over all their betas, which keeps unsupervised shapes near
      the mean body.

    Each part is averaged over its own persons and the two are added (ROMP ``calc_loss.py``), so in a batch that
    mixes both kinds each kind weighs as much as in a batch of only that kind.

    Args:
        pred_betas: [N, 10] predicted betas.
        gt_params: [N, 76] GT parameters; betas are ``[:, 66:76]``.
        betas_mask: [N] bool, ``valid_masks[:, BETAS]`` (all True when ``None``).

    Returns:
        Scalar; an exact graph-connected 0 for N = 0.
    """
    num_persons = pred_betas.shape[0]
    if pred_betas.shape[1:] != (len(SHAPE_PCA_WEIGHTS),):
        raise ValueError(f"shape_loss: pred_betas must have shape (N, 10), got {tuple(pred_betas.shape)}")
    _check_params(gt_params, num_persons, "shape_loss")
    supervised = check_person_mask(betas_mask, num_persons, "shape_loss", pred_betas.device)

    pred_betas = pred_betas.float()
    weights = torch.tensor(SHAPE_PCA_WEIGHTS, dtype=pred_betas.dtype, device=pred_betas.device)
    rows = supervised[:, None]
    # Each person feeds one part; in the other its row is replaced (a zero difference, a zero beta), so ungated
    # GT reaches neither value nor gradient and each part's gradient comes from its own persons only.
    gt_betas = torch.where(rows, gt_params[:, BETAS_SLICE].float(), 0.0)
    diff = (gt_betas - torch.where(rows, pred_betas, gt_betas)) * weights
    fitted = masked_mean(torch.linalg.vector_norm(diff, dim=-1), supervised)
    regularised = masked_mean(torch.where(rows, 0.0, pred_betas).pow(2), ~rows)
    return fitted / SHAPE_LOSS_DIVISOR + regularised / SHAPE_LOSS_DIVISOR
