"""Search over mixture weights on the probability simplex with Hydra's Optuna sweeper.

Optuna has no simplex distribution: it suggests independent numbers. The Dirichlet trick turns K independent
uniforms into a point drawn uniformly from the simplex (Optuna FAQ):

    u_i ~ U(0, 1)  ->  x_i = -log(u_i)  (Exp(1))  ->  w_i = x_i / sum_j x_j  ~  Dirichlet(1, ..., 1)

so every trial's weights are >= 0 and sum to 1, and the sampler still optimises over a plain box.

Two halves, because the sweeper and the training job live in different processes:

* `dirichlet_space(cfg, trial)` is the sweeper's `hydra.sweeper.custom_search_space`: it suggests one raw
  uniform per mixture member, named `+u_<member>`. The leading '+' is required: the training config has no
  `u_<member>` key, and Hydra refuses to override a key that is not there ("Key 'u_h36m' is not in struct").
* `apply_simplex_weights(cfg)` runs in the job before validation: it maps the `u_<member>` values to
  `sampling.weights`. The raw `u_*` stay in the config, so MLflow records both them and the weights.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf, open_dict

from romp_hydra.config import ConfigError

log = logging.getLogger(__name__)

RAW_PREFIX = "u_"
# u is drawn from [UNIFORM_LOW, 1): never 0, whose -log is infinite. -log(1e-6) = 13.8 caps a member's share
# of the raw sum, which is far beyond what a sensible search distinguishes.
UNIFORM_LOW = 1.0e-6
UNIFORM_HIGH = 1.0


def dirichlet_weights(uniforms: Mapping[str, float]) -> dict[str, float]:
    """Map raw uniforms `{member: u}` with u in (0, 1] to simplex weights `{member: w}` (w >= 0, sum 1).

    u = 1 gives weight 0. In the measure-zero case where every u is 1 the weights are uniform.
    """
    if not uniforms:
        raise ValueError("dirichlet_weights needs at least one member")
    exponentials = {}
    for name, u in uniforms.items():
        u = float(u)
        if not (0.0 < u <= 1.0):
            raise ValueError(f"the raw simplex parameter {RAW_PREFIX}{name}={u} must lie in (0, 1]; the sweeper "
                             f"suggests it in [{UNIFORM_LOW:g}, {UNIFORM_HIGH:g})")
        exponentials[name] = -math.log(u)
    total = sum(exponentials.values())
    if total == 0.0:
        return {name: 1.0 / len(uniforms) for name in uniforms}
    return {name: x / total for name, x in exponentials.items()}


def mixture_members(cfg: DictConfig) -> list[str]:
    """The mixture's member names in config order (empty when the config has no dataset)."""
    members = OmegaConf.select(cfg, "dataset.members", default=None)
    return [str(name) for name in members] if members else []


def dirichlet_space(cfg: DictConfig, trial) -> None:
    """Optuna sweeper hook (`hydra.sweeper.custom_search_space`): one raw uniform `+u_<member>` per member.

    `cfg` is the sweep's composed config, so the members come from whatever `dataset=` the sweep uses.
    """
    members = mixture_members(cfg)
    if len(members) < 2:
        raise ValueError(f"a mixture-weight search needs a dataset with at least 2 members, got {members} "
                         f"(dataset={OmegaConf.select(cfg, 'dataset.name', default='?')}); "
                         "choose e.g. dataset=synthetic or dataset=v1_mix")
    for name in members:
        trial.suggest_float(f"+{RAW_PREFIX}{name}", UNIFORM_LOW, UNIFORM_HIGH)


def raw_simplex_params(cfg: DictConfig) -> dict[str, float]:
    """The `u_<member>` values present at the top level of `cfg` (empty when this is not a simplex trial)."""
    return {name: float(cfg[f"{RAW_PREFIX}{name}"]) for name in mixture_members(cfg)
            if f"{RAW_PREFIX}{name}" in cfg}


def apply_simplex_weights(cfg: DictConfig) -> dict[str, float] | None:
    """If `cfg` carries raw simplex params (`+u_<member>=...`), set `sampling.weights` from them.

    Returns the weights that were set, or None when there are no raw params (a normal run: nothing changes).
    Raises ConfigError when only some members have one, since the missing weights would be undefined.
    """
    uniforms = raw_simplex_params(cfg)
    if not uniforms:
        return None
    members = mixture_members(cfg)
    missing = [name for name in members if name not in uniforms]
    if missing:
        raise ConfigError(
            f"+{RAW_PREFIX}{missing[0]}", None,
            f"simplex weights need a raw parameter for every mixture member, got {sorted(uniforms)}",
            f"pass +{RAW_PREFIX}<member>=<value in (0,1]> for each of {', '.join(members)}, or use "
            "hparams_search=mixture_optuna, which suggests all of them",
        )
    try:
        weights = dirichlet_weights(uniforms)
    except ValueError as error:
        raise ConfigError(f"{RAW_PREFIX}*", uniforms, str(error), "use values in (0, 1]") from error
    with open_dict(cfg):
        cfg.sampling.name = "simplex"
        cfg.sampling.weights = weights
        cfg.sampling.normalize = True  # already sums to 1; this only forgives the last float ulp
    log.info("simplex trial: raw %s -> sampling.weights %s", uniforms,
             {name: round(w, 6) for name, w in weights.items()})
    return weights
