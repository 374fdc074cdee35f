"""How low the synthetic benchmark's PA-MPJPE can go: the mean baseline next to two answers no image model beats.

    python benchmarks/synthetic_floors.py                                  # the quickstart's pose space and older ones
    python benchmarks/synthetic_floors.py --noise-deg 10 5 3 --blend-prob 0.5 0.25 --people 4000

For poses drawn as the synthetic data draws them (`data/synthetic/poses.py`: a prototype, blended with a second
one with probability ``blend_prob``, mirrored half of the time, Gaussian noise on every joint angle), each row
prints the PA-MPJPE (mm, all 54 joints, as `conf/protocol/synthetic.yaml`) of

  mean       the training set's mean pose and shape for everybody (what `val/baseline_pa_mpjpe` reports)
  recogniser the exact noise-free pose (prototype, blend and mirroring all right) with the person's own shape:
             only the noise is missing, which at 128 px is mostly invisible (wrist and ankle angles)
  classifier the dominant prototype, mirrored right, with the person's own shape: knowing which of the 30
             poses it is, nothing finer

and each floor as a share of the mean baseline. A target of "0.6x the mean baseline" is only reachable where
the recogniser's share is well below 0.6. People face the camera (the metric is Procrustes-aligned, so the
orientation does not matter); shapes are drawn as the generator draws them.
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from romp_hydra.body.smpl import build_body_model
from romp_hydra.data.synthetic.poses import BODY_JOINT_LIMITS, sample_betas, sample_prototype_mode
from romp_hydra.metrics.baseline import mean_smpl_params
from romp_hydra.metrics.joints import pa_mpjpe


def draw_people(rng: np.random.Generator, count: int, noise_deg: float, blend_prob: float):
    """(noisy poses, noise-free poses, dominant prototypes), each (count, 63), and betas (count, 10)."""
    poses, clean, prototypes, betas = [], [], [], []
    for _ in range(count):
        pose, prototype = sample_prototype_mode(rng, blend_prob)
        noisy = pose + rng.normal(0.0, np.deg2rad(noise_deg), size=pose.shape)
        poses.append(np.clip(noisy, BODY_JOINT_LIMITS[..., 0], BODY_JOINT_LIMITS[..., 1]).reshape(-1))
        clean.append(pose.reshape(-1))
        prototypes.append(prototype.reshape(-1))
        betas.append(sample_betas(rng))
    return np.stack(poses), np.stack(clean), np.stack(prototypes), np.stack(betas)


def joints(body_model, body_pose: np.ndarray, betas: np.ndarray) -> torch.Tensor:
    count = len(body_pose)
    with torch.no_grad():
        return body_model(global_orient=torch.zeros(count, 3), body_pose=torch.as_tensor(body_pose, dtype=torch.float32),
                          betas=torch.as_tensor(betas, dtype=torch.float32)).joints54


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise-deg", type=float, nargs="+", default=[10.0, 5.0])
    parser.add_argument("--blend-prob", type=float, nargs="+", default=[0.5, 0.25])
    parser.add_argument("--people", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        body_model = build_body_model("standin", folder, root_align=False)
    print(f"{'noise':>5} {'blend':>5} | {'mean':>6} | {'recogniser':>16} | {'classifier':>16}   (PA-MPJPE mm, 54 joints, "
          f"{args.people} people)")
    for noise_deg in args.noise_deg:
        for blend_prob in args.blend_prob:
            rng = np.random.default_rng(args.seed)
            poses, clean, prototypes, betas = draw_people(rng, args.people, noise_deg, blend_prob)
            gt = joints(body_model, poses, betas)
            train = np.concatenate([np.zeros((len(poses), 3)), poses, betas], axis=1)
            mean = mean_smpl_params(train)
            baseline = pa_mpjpe(joints(body_model, np.repeat(mean[None, 3:66], len(poses), 0),
                                       np.repeat(mean[None, 66:], len(poses), 0)), gt).mean()
            recogniser = pa_mpjpe(joints(body_model, clean, betas), gt).mean()
            classifier = pa_mpjpe(joints(body_model, prototypes, betas), gt).mean()
            print(f"{noise_deg:5.1f} {blend_prob:5.2f} | {baseline:6.1f} | {recogniser:6.1f} ({recogniser / baseline:.2f}x) "
                  f"| {classifier:6.1f} ({classifier / baseline:.2f}x)")


if __name__ == "__main__":
    main()
