"""Gaussian-mixture pose prior (SMPLify's ``gmm_08.pkl``), as ROMP's ``Prior`` term uses it."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from romp_hydra.body.convert import ChumpyConversionError, load_smpl_pickle
from romp_hydra.losses.common import graph_zero

__all__ = ["MaxMixturePrior", "build_pose_prior", "load_gmm", "pose_prior_loss"]

# ROMP scales the mixture NLL down and ignores batches whose mean is already plausible ("only punish
# high loss"); the threshold applies to the batch mean, not per person.
PRIOR_SCALE = 100.0
PRIOR_MIN_VALUE = 5.0

_warned_paths: set[str] = set()


def load_gmm(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a SMPLify-style GMM pickle: a dict with ``means`` (K, D), ``covars`` (K, D, D), ``weights`` (K,).

    SMPLify's ``gmm_08.pkl`` is a Python-2 pickle of plain numpy arrays. It is read with the body room's
    restricted unpickler (``romp_hydra.body.convert.load_smpl_pickle``: latin1 decoding, only numpy /
    chumpy / sparse globals allowed, chumpy arrays evaluated without chumpy), so a copy whose arrays were
    saved as chumpy objects loads too, and a file naming anything else is refused instead of executed.
    """
    path = Path(path)
    try:
        content = load_smpl_pickle(path)
    except ChumpyConversionError as error:
        raise ValueError(
            f"cannot read the GMM pose prior: {error}. Re-save it as plain numpy with "
            f"`python -m romp_hydra.body.convert {path} <plain copy>.pkl` and point loss.gmm_path at the copy"
        ) from error
    if not {"means", "covars", "weights"} <= set(content):
        raise ValueError(
            f"GMM file {path} must hold 'means', 'covars' and 'weights'; found {sorted(content)}"
        )
    means = np.asarray(content["means"], dtype=np.float64)
    covars = np.asarray(content["covars"], dtype=np.float64)
    weights = np.asarray(content["weights"], dtype=np.float64).reshape(-1)
    num_components, dim = means.shape if means.ndim == 2 else (-1, -1)
    if means.ndim != 2 or covars.shape != (num_components, dim, dim) or weights.shape != (num_components,):
        raise ValueError(
            f"GMM file {path}: inconsistent shapes means {means.shape}, covars {covars.shape}, "
            f"weights {weights.shape}; expected (K, D), (K, D, D), (K,)"
        )
    return means, covars, weights


class MaxMixturePrior(nn.Module):
    """Negative log-likelihood of a pose under the best-fitting component of a Gaussian mixture.

    For each component k: ``0.5 (x - mu_k)^T Sigma_k^-1 (x - mu_k) - log(w_k / ((2 pi)^(D/2) c_k))`` with
    ``c_k = sqrt(det Sigma_k) / min_j sqrt(det Sigma_j)`` (SMPLify's "merged" form: the determinant is
    taken relative to the tightest component); the prior is the minimum over k. Determinants are
    evaluated as log-determinants in float64, so the 69-D covariances cannot under/overflow.

    Args:
        means: (K, D) component means.
        covars: (K, D, D) covariances.
        weights: (K,) mixture weights.
    """

    def __init__(self, means: np.ndarray, covars: np.ndarray, weights: np.ndarray) -> None:
        super().__init__()
        means = np.asarray(means, dtype=np.float64)
        covars = np.asarray(covars, dtype=np.float64)
        weights = np.asarray(weights, dtype=np.float64)
        sign, logdet = np.linalg.slogdet(covars)
        if np.any(sign <= 0):
            raise ValueError(
                f"MaxMixturePrior: covariances of components {np.flatnonzero(sign <= 0).tolist()} "
                "are not positive definite"
            )
        if np.any(weights <= 0):
            raise ValueError(f"MaxMixturePrior: mixture weights must be positive, got {weights.tolist()}")
        dim = means.shape[1]
        half_logdet = 0.5 * logdet
        log_normaliser = (
            np.log(weights) - 0.5 * dim * math.log(2.0 * math.pi) - (half_logdet - half_logdet.min())
        )
        self.dim = dim
        # Derived from a file, not learned: non-persistent, so they stay out of checkpoints (ROMP's criterion
        # buffers ended up in its checkpoints, #396).
        self.register_buffer("means", torch.from_numpy(means).float(), persistent=False)
        self.register_buffer("precisions", torch.from_numpy(np.linalg.inv(covars)).float(), persistent=False)
        self.register_buffer("nll_constants", torch.from_numpy(-log_normaliser).float(), persistent=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> MaxMixturePrior:
        """Build the prior from a SMPLify-style GMM pickle (see :func:`load_gmm`)."""
        return cls(*load_gmm(path))

    def forward(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Per-person prior NLL.

        Args:
            body_pose: [N, 63] axis-angle of the 21 body joints (SMPL joints 1..21). SMPLify's mixture is
                over 23 joints (69-D); the two hand joints, which ROMP does not predict, are filled with 0.

        Returns:
            [N] minimum-over-components negative log-likelihood (float32).
        """
        if body_pose.dim() != 2 or body_pose.shape[1] > self.dim:
            raise ValueError(
                f"MaxMixturePrior: body_pose must have shape (N, <= {self.dim}), got {tuple(body_pose.shape)}"
            )
        pose = body_pose.float()
        if pose.shape[1] < self.dim:
            pose = torch.cat((pose, pose.new_zeros(pose.shape[0], self.dim - pose.shape[1])), dim=1)
        diff = pose[:, None, :] - self.means[None]  # [N, K, D]
        quadratic = torch.einsum("nkd,kde,nke->nk", diff, self.precisions, diff)
        return (0.5 * quadratic + self.nll_constants[None]).min(dim=1).values


def build_pose_prior(gmm_path: str | os.PathLike | None) -> MaxMixturePrior | None:
    """Load the prior, or return ``None`` (term off) with one warning when the file is not available."""
    if gmm_path is None:
        message = (
            "pose prior is OFF: loss.gmm_path is null. Point it at SMPLify's gmm_08.pkl "
            "(e.g. loss.gmm_path=${paths.smpl_dir}/gmm_08.pkl) to train with ROMP's Prior term"
        )
        key = "<null>"
    elif not Path(gmm_path).is_file():
        message = (
            f"pose prior is OFF: GMM file not found at {gmm_path}. Copy SMPLify's gmm_08.pkl there "
            "or set loss.gmm_path to its location"
        )
        key = str(gmm_path)
    else:
        return MaxMixturePrior.from_file(gmm_path)
    if key not in _warned_paths:
        _warned_paths.add(key)
        warnings.warn(message, stacklevel=2)
    return None


def pose_prior_loss(prior: MaxMixturePrior, body_pose: torch.Tensor) -> torch.Tensor:
    """ROMP's ``Prior`` term: mean NLL over the matched persons / 100, set to 0 when that mean is < 5.

    The threshold acts on the batch mean (not per person), so a batch of plausible poses costs nothing
    while one implausible pose can switch the whole term on. NaN stays NaN, so the criterion can report it.

    Args:
        prior: the mixture.
        body_pose: [N, 63] predicted body-pose axis-angle (``PersonOutputs["body_pose"]``).

    Returns:
        Scalar; an exact graph-connected 0 for N = 0.
    """
    if body_pose.shape[0] == 0:
        return graph_zero(body_pose)
    value = prior(body_pose).mean() / PRIOR_SCALE
    # Multiplying by a 0/1 factor (not torch.where) keeps NaN visible and the gradient exact where kept.
    keep = (value.detach() >= PRIOR_MIN_VALUE) | torch.isnan(value.detach())
    return value * keep.to(value.dtype)
