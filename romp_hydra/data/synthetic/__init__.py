"""The embedded synthetic dataset: multi-person images rendered from the (stand-in) body model.

Needs no downloaded data and no SMPL licence, so the quickstart, the tests and CI can train end to end.
Variants live in ``generator.VARIANTS``; the sources that serve them are
``romp_hydra.data.sources.synthetic.SyntheticSolo`` and ``SyntheticCrowd``.
"""

from romp_hydra.data.synthetic.cache import SPLITS, ensure_synthetic_split, load_body_model, sample_rng
from romp_hydra.data.synthetic.generator import (
    GENERATOR_VERSION,
    VARIANTS,
    SceneConfig,
    SceneGenerator,
    SyntheticSample,
)

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "VARIANTS",
    "SceneConfig",
    "SceneGenerator",
    "SyntheticSample",
    "ensure_synthetic_split",
    "load_body_model",
    "sample_rng",
]
