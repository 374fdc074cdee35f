"""Train ROMP: python -m romp_hydra.train [group=option ...] [key=value ...]

Examples:
  python -m romp_hydra.train experiment=quickstart                 # CPU, synthetic data, stand-in body model
  python -m romp_hydra.train backbone=hrnet32 dataset=v1_mix       # ROMP v1 (needs the datasets and SMPL files)
  python -m romp_hydra.train -m experiment=quickstart sampling.weights.synth_crowd=0.2,0.5,0.8 sampling.normalize=true
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from romp_hydra.config import ConfigError, exit_with_config_error, validate_config


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        validate_config(cfg)
    except ConfigError as err:
        exit_with_config_error(err)
    from romp_hydra.training.run import train  # heavy imports only after the config is known to be good

    return train(cfg)


if __name__ == "__main__":
    main()
