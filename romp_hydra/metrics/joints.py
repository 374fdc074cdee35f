"""Per-person pose metrics (MPJPE, PA-MPJPE, PVE, 3D PCK / AUC, 2D PCKh) and a batch-size independent
accumulator.

Every metric takes numpy arrays or torch tensors, computes in float64 on the CPU without gradients and
returns one value per person as a float64 numpy array. A person that cannot be scored (no visible joint,
missing alignment root, too few joints for Procrustes) gets NaN; :class:`MetricAccumulator` skips NaN values
and counts them, so an evaluation reports how many persons were left out instead of silently averaging 0s.

Units: 3D inputs in metres; errors and thresholds in millimetres (``unit_scale=1000``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from romp_hydra.body.joint_sets import JOINT54, LSP_14, MPII_16, NUM_JOINTS_54, ROOT_JOINTS
from romp_hydra.geometry.procrustes import similarity_procrustes

__all__ = [
    "AUC_THRESHOLDS_MM",
    "MetricAccumulator",
    "auc",
    "mpckh_bbox",
    "mpjpe",
    "pa_mpjpe",
    "pck3d",
    "pckh_2d",
    "pve",
    "visible_joints",
]

ArrayLike = np.ndarray | torch.Tensor

MM_PER_METRE = 1000.0
PCK3D_THRESHOLD_MM = 150.0
# MPI-INF-3DHP / MuPoTS: AUC of the PCK curve over 0, 5, ..., 150 mm.
AUC_THRESHOLDS_MM: tuple[float, ...] = tuple(float(t) for t in range(0, 151, 5))
MIN_PROCRUSTES_JOINTS = 3
MISSING_VALUE = -2.0
_MISSING_TOLERANCE = 1e-4

# Default alignment roots by joint count.
_HIP_PAIRS: dict[int, tuple[int, int]] = {
    NUM_JOINTS_54: ROOT_JOINTS,
    len(LSP_14): (LSP_14.index("R_Hip"), LSP_14.index("L_Hip")),
}
_PELVIS: dict[int, int] = {NUM_JOINTS_54: JOINT54["Pelvis"], 24: 0}
# Head segment (head top, neck) used as PCKh's normaliser when no head size is given.
_HEAD_SEGMENTS: dict[int, tuple[int, int]] = {
    NUM_JOINTS_54: (JOINT54["Head_top"], JOINT54["Neck_LSP"]),
    len(LSP_14): (LSP_14.index("Head_top"), LSP_14.index("Neck_LSP")),
    len(MPII_16): (MPII_16.index("Head_top"), MPII_16.index("Neck")),
}


def _as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64)
    try:
        return torch.as_tensor(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must be a numpy array or torch tensor of numbers, got {type(x).__name__}"
        ) from error


def _as_mask(mask: ArrayLike | None, shape: tuple[int, ...], name: str) -> torch.Tensor | None:
    if mask is None:
        return None
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = torch.from_numpy(np.asarray(mask, dtype=bool))
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(mask.shape)}")
    return mask


def _check_pair(pred: torch.Tensor, gt: torch.Tensor, dims: int, name: str) -> None:
    if pred.dim() != 3 or pred.shape[-1] != dims or gt.shape != pred.shape:
        raise ValueError(
            f"{name}: pred and gt must both have shape (N, J, {dims}), got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )


def _gt_visible(gt: torch.Tensor) -> torch.Tensor:
    return ((gt - MISSING_VALUE).abs() > _MISSING_TOLERANCE).all(dim=-1)


def visible_joints(gt: ArrayLike) -> np.ndarray:
    """[N, J, D] GT -> [N, J] bool, False where the joint carries the -2 filler in any coordinate."""
    return _gt_visible(_as_tensor(gt, "gt")).numpy()


def _resolve_root(align: str | None, root: int | Sequence[int] | None, num_joints: int) -> list[int] | None:
    if align is None:
        return None
    if align not in ("hips", "pelvis", "root_idx"):
        raise ValueError(f"align must be 'hips', 'pelvis', 'root_idx' or None, got {align!r}")
    if root is not None:
        return [int(root)] if isinstance(root, (int, np.integer)) else [int(r) for r in root]
    if align == "hips" and num_joints in _HIP_PAIRS:
        return list(_HIP_PAIRS[num_joints])
    if align == "pelvis" and num_joints in _PELVIS:
        return [_PELVIS[num_joints]]
    if align == "root_idx":
        raise ValueError("align='root_idx' needs root=<joint index or indices>")
    raise ValueError(
        f"align={align!r} has no default root for {num_joints} joints (defaults exist for "
        f"{sorted(_HIP_PAIRS if align == 'hips' else _PELVIS)}); pass root=<index or indices>, e.g. root=0 for "
        "the standard H36M-17 order or root=14 for ROMP's LSP-first H36M-17 order"
    )


def _joint_errors(
    pred: ArrayLike,
    gt: ArrayLike,
    mask: ArrayLike | None,
    align: str | None,
    root: int | Sequence[int] | None,
    procrustes: bool,
    unit_scale: float,
    name: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-joint errors [N, J] (scaled), the joint mask [N, J] and which persons could be scored [N]."""
    pred, gt = _as_tensor(pred, "pred"), _as_tensor(gt, "gt")
    _check_pair(pred, gt, 3, name)
    gt_visible = _gt_visible(gt)
    joint_mask = _as_mask(mask, tuple(gt_visible.shape), f"{name}: mask")
    visible = gt_visible if joint_mask is None else gt_visible & joint_mask
    scorable = visible.any(dim=1)
    if procrustes:
        scorable = scorable & (visible.sum(dim=1) >= MIN_PROCRUSTES_JOINTS)
        pred, _, _, _ = similarity_procrustes(pred, gt, visible)
    else:
        roots = _resolve_root(align, root, pred.shape[1])
        if roots is not None:
            # The GT root has to exist; the predicted root always does.
            scorable = scorable & gt_visible[:, roots].all(dim=1)
            pred = pred - pred[:, roots].mean(dim=1, keepdim=True)
            gt = gt - gt[:, roots].mean(dim=1, keepdim=True)
    errors = torch.linalg.vector_norm(pred - gt, dim=-1) * unit_scale
    return errors, visible, scorable


def _masked_person_mean(values: torch.Tensor, visible: torch.Tensor, scorable: torch.Tensor) -> np.ndarray:
    summed = torch.where(visible, values, torch.zeros_like(values)).sum(dim=1)
    mean = summed / visible.sum(dim=1).clamp(min=1)
    return torch.where(scorable, mean, torch.full_like(mean, math.nan)).numpy()


def mpjpe(
    pred: ArrayLike,
    gt: ArrayLike,
    mask: ArrayLike | None = None,
    align: str | None = "hips",
    root: int | Sequence[int] | None = None,
    unit_scale: float = MM_PER_METRE,
) -> np.ndarray:
    """Mean per-joint position error per person (mm for metre input).

    Args:
        pred: [N, J, 3] predicted joints.
        gt: [N, J, 3] GT joints, -2 where missing (missing joints are never scored).
        mask: optional [N, J] bool, further restricts the scored joints.
        align: ``'hips'`` (mean of R/L hip: 45/46 for 54 joints, 2/3 for LSP-14), ``'pelvis'`` (joint 49
            'Pelvis' for 54 joints, 0 for SMPL-24), ``'root_idx'`` (``root`` required) or ``None`` (no
            alignment, e.g. both already root-aligned). ``root`` overrides the default indices.
        root: joint index, or indices whose mean is the root.
        unit_scale: multiplies the error (1000: metres -> mm).

    Returns:
        [N] float64; NaN for persons without a visible joint or without their GT root.
    """
    errors, visible, scorable = _joint_errors(pred, gt, mask, align, root, False, unit_scale, "mpjpe")
    return _masked_person_mean(errors, visible, scorable)


def pa_mpjpe(
    pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None, unit_scale: float = MM_PER_METRE
) -> np.ndarray:
    """MPJPE after aligning each person's prediction to its GT by similarity Procrustes (mm).

    Each person is aligned on its own visible joints (ROMP uses the joints visible in every person of the
    batch, and its batched Procrustes mis-aligns batches of exactly 2 or 3 persons; neither applies here).

    Returns:
        [N] float64; NaN for persons with fewer than 3 visible joints.
    """
    errors, visible, scorable = _joint_errors(pred, gt, mask, None, None, True, unit_scale, "pa_mpjpe")
    return _masked_person_mean(errors, visible, scorable)


def pve(
    pred_verts: ArrayLike,
    gt_verts: ArrayLike,
    person_mask: ArrayLike | None = None,
    unit_scale: float = MM_PER_METRE,
) -> np.ndarray:
    """Per-vertex error per person (mm): mean L2 over all vertices, no extra alignment.

    As in ROMP, both meshes are compared as given (each already root-aligned by its body model); align them
    beforehand if the protocol needs it.

    Args:
        pred_verts: [N, V, 3].
        gt_verts: [N, V, 3].
        person_mask: optional [N] bool; persons without GT vertices get NaN.

    Returns:
        [N] float64.
    """
    pred, gt = _as_tensor(pred_verts, "pred_verts"), _as_tensor(gt_verts, "gt_verts")
    _check_pair(pred, gt, 3, "pve")
    error = (torch.linalg.vector_norm(pred - gt, dim=-1).mean(dim=1) * unit_scale).numpy()
    valid = _as_mask(person_mask, (pred.shape[0],), "pve: person_mask")
    if valid is not None:
        error = np.where(valid.numpy(), error, np.nan)
    return error


def pck3d(
    pred: ArrayLike,
    gt: ArrayLike,
    mask: ArrayLike | None = None,
    threshold: float = PCK3D_THRESHOLD_MM,
    align: str | None = "hips",
    root: int | Sequence[int] | None = None,
    procrustes: bool = False,
    unit_scale: float = MM_PER_METRE,
) -> np.ndarray:
    """Fraction of a person's visible joints whose 3D error is below ``threshold`` (mm), per person.

    Root-relative by default (``align``/``root`` as in :func:`mpjpe`); ``procrustes=True`` gives PA-PCK.
    A joint counts when ``error < threshold`` (strict, as MPI-INF-3DHP / mmhuman3d), so PCK at 0 mm is 0.
    For a joint-weighted dataset PCK, feed the accumulator ``weights=`` the visible-joint counts.

    Returns:
        [N] float64 in [0, 1]; NaN for persons that cannot be scored.
    """
    errors, visible, scorable = _joint_errors(pred, gt, mask, align, root, procrustes, unit_scale, "pck3d")
    return _masked_person_mean((errors < threshold).double(), visible, scorable)


def auc(
    pred: ArrayLike,
    gt: ArrayLike,
    mask: ArrayLike | None = None,
    thresholds: Sequence[float] = AUC_THRESHOLDS_MM,
    align: str | None = "hips",
    root: int | Sequence[int] | None = None,
    procrustes: bool = False,
    unit_scale: float = MM_PER_METRE,
) -> np.ndarray:
    """Area under the 3D PCK curve per person: mean of :func:`pck3d` over ``thresholds`` (0..150 mm, step 5).

    Returns:
        [N] float64 in [0, 1]; NaN for persons that cannot be scored.
    """
    errors, visible, scorable = _joint_errors(pred, gt, mask, align, root, procrustes, unit_scale, "auc")
    per_threshold = [_masked_person_mean((errors < t).double(), visible, scorable) for t in thresholds]
    return np.mean(np.stack(per_threshold, axis=0), axis=0)


def _visible_2d(gt: torch.Tensor, mask: ArrayLike | None, name: str) -> torch.Tensor:
    visible = (gt > -1.99).all(dim=-1)  # 2D convention: any coordinate <= -1.99 is missing
    joint_mask = _as_mask(mask, tuple(visible.shape), f"{name}: mask")
    return visible if joint_mask is None else visible & joint_mask


def pckh_2d(
    pred: ArrayLike,
    gt: ArrayLike,
    mask: ArrayLike | None = None,
    head_size: ArrayLike | None = None,
    threshold: float = 0.5,
    head_joints: tuple[int, int] | None = None,
) -> np.ndarray:
    """Head-normalised 2D PCK per person: fraction of visible joints with ``error <= threshold * head_size``.

    ``<=`` follows MPII's evaluation. Without ``head_size`` the head segment ``|head_top - neck|`` of the GT
    is used (joints 48/47 for 54 joints, 13/12 for LSP-14, 9/8 for MPII-16, or ``head_joints``); MPII's
    official head size (0.6 x head-box diagonal) has to be passed in as ``head_size``.

    Args:
        pred: [N, J, 2]; gt: [N, J, 2] with -2 (any coordinate <= -1.99) where missing; any consistent unit.
        mask: optional [N, J] bool.
        head_size: optional [N] normaliser in the keypoint unit.
        threshold: fraction of the head size (PCKh@0.5).
        head_joints: (head_top, neck) indices overriding the defaults.

    Returns:
        [N] float64; NaN where nothing is visible or the head size is unknown or 0.
    """
    pred, gt = _as_tensor(pred, "pred"), _as_tensor(gt, "gt")
    _check_pair(pred, gt, 2, "pckh_2d")
    visible = _visible_2d(gt, mask, "pckh_2d")
    if head_size is None:
        num_joints = gt.shape[1]
        if head_joints is None and num_joints not in _HEAD_SEGMENTS:
            raise ValueError(
                f"pckh_2d: no default head segment for {num_joints} joints; pass head_size or head_joints"
            )
        top, neck = head_joints if head_joints is not None else _HEAD_SEGMENTS[num_joints]
        size = torch.linalg.vector_norm(gt[:, top] - gt[:, neck], dim=-1)
        size = torch.where((gt[:, [top, neck]] > -1.99).all(dim=-1).all(dim=-1), size, torch.zeros_like(size))
    else:
        size = _as_tensor(head_size, "head_size").reshape(-1)
        if size.shape[0] != gt.shape[0]:
            raise ValueError(f"pckh_2d: head_size must have {gt.shape[0]} entries, got {size.shape[0]}")
    errors = torch.linalg.vector_norm(pred - gt, dim=-1)
    correct = (errors <= threshold * size[:, None]).double()
    return _masked_person_mean(correct, visible, visible.any(dim=1) & (size > 0))


def mpckh_bbox(
    pred: ArrayLike,
    gt: ArrayLike,
    mask: ArrayLike | None = None,
    joint_threshold: float = 0.143,
    person_threshold: float = 0.6,
) -> np.ndarray:
    """ROMP's ``mPCKh_0.6`` per person: 1 if enough of its 2D joints are close, else 0.

    A visible joint is correct when ``error / diag < joint_threshold``, where ``diag`` is the diagonal of the
    axis-aligned box around the person's visible GT keypoints; the person scores 1 when the fraction of
    correct joints is ``>= person_threshold``. The mean over persons is the reported mPCKh@0.6.

    Returns:
        [N] float64 of 0/1; NaN where no joint is visible or the box is degenerate (diagonal 0).
    """
    pred, gt = _as_tensor(pred, "pred"), _as_tensor(gt, "gt")
    _check_pair(pred, gt, 2, "mpckh_bbox")
    visible = _visible_2d(gt, mask, "mpckh_bbox")
    big = torch.full_like(gt, math.inf)
    lower = torch.where(visible[..., None], gt, big).amin(dim=1)
    upper = torch.where(visible[..., None], gt, -big).amax(dim=1)
    diagonal = torch.linalg.vector_norm(upper - lower, dim=-1)
    scorable = visible.any(dim=1)
    diagonal = torch.where(scorable, diagonal, torch.zeros_like(diagonal))
    scorable = scorable & (diagonal > 0)
    errors = torch.linalg.vector_norm(pred - gt, dim=-1)
    correct = (errors < joint_threshold * diagonal[:, None]).double()
    fraction = _masked_person_mean(correct, visible, scorable)
    return np.where(np.isnan(fraction), np.nan, (fraction >= person_threshold).astype(np.float64))


class MetricAccumulator:
    """Collects per-person metric values across batches; the result does not depend on the batch size.

    Values are kept (one float per person and metric; cheap at evaluation scale) and summed exactly with
    ``math.fsum`` at the end, so splitting the same persons into batches of 1 or 7 gives bit-identical
    means. NaN values (persons a metric could not score) are skipped and counted.

    Example::

        acc = MetricAccumulator()
        for batch in loader:
            acc.update("mpjpe", mpjpe(pred, gt))
        acc.compute()   # {"mpjpe": 85.1}
    """

    def __init__(self) -> None:
        self._values: dict[str, list[np.ndarray]] = {}
        self._weights: dict[str, list[np.ndarray]] = {}
        self._skipped: dict[str, int] = {}

    def update(self, name: str, values: ArrayLike, weights: ArrayLike | None = None) -> None:
        """Add per-person ``values`` [N] of metric ``name``; optional ``weights`` [N] (default 1 each)."""
        values = _as_tensor(values, name).reshape(-1).numpy()
        weights = (
            np.ones_like(values)
            if weights is None
            else _as_tensor(weights, f"{name} weights").reshape(-1).numpy()
        )
        if weights.shape != values.shape:
            raise ValueError(
                f"MetricAccumulator.update({name!r}): {values.shape[0]} values but {weights.shape[0]} weights"
            )
        keep = ~np.isnan(values)
        self._values.setdefault(name, []).append(values[keep])
        self._weights.setdefault(name, []).append(weights[keep])
        self._skipped[name] = self._skipped.get(name, 0) + int((~keep).sum())

    def update_many(self, metrics: Mapping[str, ArrayLike]) -> None:
        """``update`` every ``name -> values`` pair of ``metrics``."""
        for name, values in metrics.items():
            self.update(name, values)

    def merge(self, other: MetricAccumulator) -> None:
        """Add everything ``other`` collected (e.g. from another process)."""
        for name in other._values:
            self._values.setdefault(name, []).extend(other._values[name])
            self._weights.setdefault(name, []).extend(other._weights[name])
            self._skipped[name] = self._skipped.get(name, 0) + other._skipped[name]

    def compute(self) -> dict[str, float]:
        """Weighted mean of every metric (NaN for a metric with no scored person)."""
        result = {}
        for name, chunks in self._values.items():
            values = np.concatenate(chunks) if chunks else np.zeros(0)
            weights = np.concatenate(self._weights[name]) if chunks else np.zeros(0)
            total_weight = math.fsum(weights.tolist())
            result[name] = (
                math.fsum((values * weights).tolist()) / total_weight if total_weight > 0 else math.nan
            )
        return result

    def counts(self) -> dict[str, dict[str, int]]:
        """Per metric: how many persons were scored and how many were skipped (NaN)."""
        return {
            name: {"scored": int(sum(len(chunk) for chunk in chunks)), "skipped": self._skipped[name]}
            for name, chunks in self._values.items()
        }

    def reset(self) -> None:
        """Forget everything collected."""
        self._values.clear()
        self._weights.clear()
        self._skipped.clear()
