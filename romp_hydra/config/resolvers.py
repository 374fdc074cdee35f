"""OmegaConf resolvers used by conf/ (registered once, on import)."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def project_root() -> str:
    """The checkout that holds conf/ (editable install), else the current directory.

    Run outputs, caches and the MLflow store default to paths under it; they must be absolute so that every
    Hydra job (whatever its working directory) writes to the same place.
    """
    candidate = Path(__file__).resolve().parents[2]
    if (candidate / "conf" / "train.yaml").is_file():
        return str(candidate)
    return str(Path.cwd().resolve())


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", project_root)


register_resolvers()
