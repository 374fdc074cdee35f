"""Training losses: centre-map focal loss, keypoint/3D joint losses, SMPL parameter losses, GMM pose prior,
and the weighted :class:`Criterion` that combines them (ROMP v1 weights in ``conf/loss/v1.yaml``)."""

from romp_hydra.losses.criterion import LOSS_TERMS, TERM_NAMES, Criterion, gather_matched_targets
from romp_hydra.losses.focal import centermap_focal_loss
from romp_hydra.losses.keypoints import kp2d_loss, mpjpe_loss, pampjpe_loss
from romp_hydra.losses.params import pose_loss, shape_loss
from romp_hydra.losses.prior import MaxMixturePrior, build_pose_prior, load_gmm, pose_prior_loss

__all__ = [
    "LOSS_TERMS",
    "TERM_NAMES",
    "Criterion",
    "MaxMixturePrior",
    "build_pose_prior",
    "centermap_focal_loss",
    "gather_matched_targets",
    "kp2d_loss",
    "load_gmm",
    "mpjpe_loss",
    "pampjpe_loss",
    "pose_loss",
    "pose_prior_loss",
    "shape_loss",
]
