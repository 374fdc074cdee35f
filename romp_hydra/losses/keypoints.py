"""Joint losses: projected 2D keypoints, MPJPE and PA-MPJPE (per matched person, metres)."""

from __future__ import annotations

import torch

from romp_hydra.body.joint_sets import JOINT54, NUM_JOINTS_54, ROOT_JOINTS
from romp_hydra.geometry.procrustes import similarity_procrustes
from romp_hydra.losses.common import check_person_mask, graph_zero, masked_mean, visible_2d, visible_3d

__all__ = ["KP2D_LEAF_PARENTS", "PAMPJPE_JOINT_MODES", "kp2d_loss", "mpjpe_loss", "pampjpe_loss"]

# ROMP HEAD (constants.joint2D_tree): the face, toe and heel points are supervised relative to a parent
# joint, so a slightly misplaced body does not also pay for every face/foot point. Face points hang off
# L_Shoulder in ROMP (not the neck); kept as is because it is what the published models were trained with.
_LEAF_GROUPS: dict[str, tuple[str, ...]] = {
    "L_Shoulder": ("Jaw", "Nose", "R_Eye", "L_Eye", "R_Ear", "L_Ear"),
    "L_Ankle": ("L_BigToe", "L_SmallToe", "L_Heel", "L_Toe_SMPL"),
    "R_Ankle": ("R_BigToe", "R_SmallToe", "R_Heel", "R_Toe_SMPL"),
}
# 54-joint index of each re-parented leaf -> index of its parent.
KP2D_LEAF_PARENTS: dict[int, int] = {
    JOINT54[leaf]: JOINT54[parent] for parent, leaves in _LEAF_GROUPS.items() for leaf in leaves
}

# ROMP zeroes the 2D term when it explodes; a value this large means broken input, not a hard example.
KP2D_GUARD = 1000.0
VISIBLE_EPS = 1e-4
# A similarity transform is only determined by three or more (non-collinear) points.
MIN_PROCRUSTES_JOINTS = 3


def _check_joints(pred: torch.Tensor, gt: torch.Tensor, dims: int, name: str) -> None:
    expected = (NUM_JOINTS_54, dims)
    if pred.dim() != 3 or pred.shape[1:] != expected or gt.shape != pred.shape:
        raise ValueError(
            f"{name}: pred and gt must both have shape (N, {NUM_JOINTS_54}, {dims}), "
            f"got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )


def _reparent_leaves(kp: torch.Tensor) -> torch.Tensor:
    leaves = list(KP2D_LEAF_PARENTS)
    parents = list(KP2D_LEAF_PARENTS.values())
    out = kp.clone()
    out[:, leaves] = kp[:, leaves] - kp[:, parents]
    return out


def kp2d_loss(pred: torch.Tensor, gt: torch.Tensor, person_mask: torch.Tensor | None = None) -> torch.Tensor:
    """ROMP HEAD's 2D keypoint loss on the projected 54 joints (normalised [-1, 1] coordinates).

    * A GT joint is visible when both coordinates are > -1.99.
    * Leaves in :data:`KP2D_LEAF_PARENTS` are compared as offsets from their parent, in both GT and
      prediction, and count as visible only when the parent is visible too.
    * Per person: ``sum_j vis_j * ||gt_j - pred_j||_2 / (sum_j vis_j + 1e-4)``; mean over the persons that
      pass ``person_mask`` and have at least one visible joint.
    * Safety guard kept from ROMP: if any per-person value is NaN or above 1000 (or a used joint is not
      finite), the whole term is 0, with a zero gradient.

    ROMP also drops persons whose prediction equals their GT exactly; that only changes the denominator of
    the mean and is not replicated.

    Args:
        pred: [N, 54, 2] projected joints (``PersonOutputs["pj2d"]``).
        gt: [N, 54, 2] GT keypoints, -2 where missing.
        person_mask: [N] bool, ``valid_masks[:, KP2D]`` (box-only persons have no 2D pose).

    Returns:
        Scalar; an exact graph-connected 0 when no person has a visible keypoint.
    """
    _check_joints(pred, gt, 2, "kp2d_loss")
    valid = check_person_mask(person_mask, pred.shape[0], "kp2d_loss", pred.device)
    visible = visible_2d(gt)
    leaves = list(KP2D_LEAF_PARENTS)
    visible[:, leaves] &= visible[:, list(KP2D_LEAF_PARENTS.values())]
    valid = valid & visible.any(dim=1)
    used = visible & valid[:, None]

    pred, gt = pred.float(), gt.float()
    finite = torch.isfinite(pred).all(dim=-1) & torch.isfinite(gt).all(dim=-1)
    broken = (used & ~finite).any()
    # Unused and broken joints are set to 0 in both, so a NaN or inf there (padding, ungated persons, the
    # broken input itself) reaches neither the value nor the gradient.
    keep = (used & finite)[..., None]
    gt = torch.where(keep, gt, 0.0)
    pred = torch.where(keep, pred, 0.0)
    distance = torch.linalg.vector_norm(_reparent_leaves(gt) - _reparent_leaves(pred), dim=-1)
    distance = torch.where(used, distance, torch.zeros_like(distance))
    per_person = distance.sum(dim=1) / (used.sum(dim=1) + VISIBLE_EPS)
    exploded = (valid & (torch.isnan(per_person) | (per_person > KP2D_GUARD))).any()
    loss = masked_mean(per_person, valid)
    # The guard, decided on the device: the term becomes an exact 0 with a zero gradient.
    return torch.where(broken | exploded, torch.zeros_like(loss), loss)


def mpjpe_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    person_mask: torch.Tensor | None = None,
    root_joints: tuple[int, ...] = ROOT_JOINTS,
) -> torch.Tensor:
    """Mean per-joint position error (metres) after aligning both skeletons on the hip midpoint.

    Both prediction and GT are re-centred on the mean of ``root_joints`` (R_Hip 45, L_Hip 46); the error is
    the mean L2 distance over the GT-visible joints (not -2), then the mean over valid persons. A person is
    valid when ``person_mask`` allows it and its GT root joints are present (otherwise it cannot be
    aligned; ROMP would silently align on the -2 filler).

    Args:
        pred: [N, 54, 3] predicted joints (``PersonOutputs["joints54"]``).
        gt: [N, 54, 3] GT joints, -2 where missing.
        person_mask: [N] bool, ``valid_masks[:, KP3D]``.
        root_joints: joints whose mean is the alignment root.

    Returns:
        Scalar; an exact graph-connected 0 when no person has 3D GT.
    """
    _check_joints(pred, gt, 3, "mpjpe_loss")
    valid = check_person_mask(person_mask, pred.shape[0], "mpjpe_loss", pred.device)
    visible = visible_3d(gt)
    roots = list(root_joints)
    valid = valid & visible[:, roots].all(dim=1)
    used = visible & valid[:, None]

    # Unused joints (padding, persons left out) may hold anything: set to 0 in both, so that neither the value
    # nor the gradient sees them. A used non-finite joint still makes the term NaN, for the criterion to drop.
    gt = torch.where(used[..., None], gt.float(), 0.0)
    pred = torch.where(used[..., None], pred.float(), 0.0)
    pred_aligned = pred - pred[:, roots].mean(dim=1, keepdim=True)
    gt_aligned = gt - gt[:, roots].mean(dim=1, keepdim=True)
    distance = torch.linalg.vector_norm(pred_aligned - gt_aligned, dim=-1)
    return masked_mean(masked_mean(distance, used, dim=-1), valid)


PAMPJPE_JOINT_MODES = ("batch", "person")


def pampjpe_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    person_mask: torch.Tensor | None = None,
    joints: str = "batch",
) -> torch.Tensor:
    """MPJPE (metres) after a per-person similarity Procrustes alignment of the prediction onto the GT.

    ``joints`` chooses which joints each person is aligned and scored on:

    * ``"batch"`` (ROMP, the v1 default): the joints visible in *every* valid person of the batch, so one
      person with a missing joint removes that joint for everybody;
    * ``"person"``: each person on its own visible joints (persons need at least three).

    ROMP's batched Procrustes mis-handles batches of exactly 2 or 3 persons (see
    ``romp_hydra.geometry.procrustes``); the alignment used here does not depend on the batch size.
    If the SVD fails (ROMP: issue #136) the term is NaN, so the criterion drops it and reports a NaN step
    instead of hiding the failure.

    Args:
        pred: [N, 54, 3] predicted joints.
        gt: [N, 54, 3] GT joints, -2 where missing.
        person_mask: [N] bool, ``valid_masks[:, KP3D]``.
        joints: ``"batch"`` or ``"person"`` (above).

    Returns:
        Scalar; an exact graph-connected 0 when no person (or, for ``"batch"``, fewer than three common
        joints) qualifies.
    """
    if joints not in PAMPJPE_JOINT_MODES:
        raise ValueError(f"pampjpe_loss: joints={joints!r}; use one of {', '.join(PAMPJPE_JOINT_MODES)}")
    _check_joints(pred, gt, 3, "pampjpe_loss")
    valid = check_person_mask(person_mask, pred.shape[0], "pampjpe_loss", pred.device)
    visible = visible_3d(gt)
    if joints == "batch":
        common = (visible | ~valid[:, None]).all(dim=0)
        visible = common.expand_as(visible)
        valid = valid & (common.sum() >= MIN_PROCRUSTES_JOINTS)
    else:
        valid = valid & (visible.sum(dim=1) >= MIN_PROCRUSTES_JOINTS)
    used = visible & valid[:, None]

    # Unused joints of a valid person weigh 0 in the fit, but 0 * NaN is NaN: they are zeroed. A person left out
    # is aligned as a well-conditioned dummy onto itself (a zero or degenerate matrix has no SVD gradient).
    dummy = _procrustes_dummy(pred.device)
    person = valid[:, None, None]
    gt = torch.where(person, torch.where(used[..., None], gt.float(), 0.0), dummy)
    pred = torch.where(person, torch.where(used[..., None], pred.float(), 0.0), dummy)
    try:
        aligned, _, _, _ = similarity_procrustes(pred, gt, used | ~valid[:, None])
    except torch.linalg.LinAlgError:
        return graph_zero(pred) + float("nan")
    distance = torch.linalg.vector_norm(aligned - gt, dim=-1)
    return masked_mean(masked_mean(distance, used, dim=-1), valid)


def _procrustes_dummy(device: torch.device) -> torch.Tensor:
    """[54, 3] points on a twisted curve: not collinear, with distinct singular values (a stable SVD)."""
    x = torch.linspace(-1.0, 1.0, NUM_JOINTS_54, device=device)
    return torch.stack((x, x * x, x * x * x), dim=-1)
