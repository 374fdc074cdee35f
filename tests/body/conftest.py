"""Session fixtures of the body-model tests: the stand-in is written once and shared."""
from __future__ import annotations

from pathlib import Path

import pytest

from romp_hydra.body.smpl import BodyModel
from romp_hydra.body.standin import standin_is_complete, write_standin


@pytest.fixture(scope="session")
def standin_dir(shared_cache_dir: Path) -> Path:
    """The stand-in model folder, in the same place `body_model=standin` uses under the test cache."""
    path = shared_cache_dir / "standin_smpl"
    if not standin_is_complete(path):
        write_standin(path)
    return path


@pytest.fixture(scope="session")
def standin_model(standin_dir: Path) -> BodyModel:
    """Stand-in body model without root alignment, so outputs are in the template's frame."""
    return BodyModel(standin_dir, root_align=False, kind="standin")
