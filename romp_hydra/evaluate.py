"""Evaluate a checkpoint:

  python -m romp_hydra.evaluate ckpt_path=PATH [dataset=NAME] [protocol=NAME] [key=value ...]

Examples:
  python -m romp_hydra.evaluate ckpt_path=logs/train/runs/<date>/checkpoints/best.pt dataset=pw3d_test
  python -m romp_hydra.evaluate ckpt_path=trained_models/romp_hrnet32.pt dataset=cmup backbone=hrnet32
  python -m romp_hydra.evaluate ckpt_path=... dataset=crowdpose_val                 # keypoint AP
  python -m romp_hydra.evaluate ckpt_path=... logger.run_id=checkpoint              # into the training run

The protocol follows the dataset (conf/protocol/<dataset>.yaml) unless `protocol=` names another; see
docs/evaluation.md.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from romp_hydra.config import ConfigError, exit_with_config_error
from romp_hydra.preflight import PreflightError, check_inputs, exit_with_problems


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from romp_hydra.evaluation.run import evaluate, prepare_evaluation_config

    try:
        # The checkpoint first: its training config says which body model and backbone the preflight must find.
        info = prepare_evaluation_config(cfg)
        check_inputs(cfg, "evaluate")  # every other missing input at once (data, body model, device)
        evaluate(cfg, info)
    except PreflightError as err:
        exit_with_problems(err)
    except ConfigError as err:
        exit_with_config_error(err)


if __name__ == "__main__":
    main()
