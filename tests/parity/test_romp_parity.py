"""ROMP parity: every training-relevant value of ROMP's four v1 recipes, as composed here.

The table is tests/parity/romp_v1_recipes.yaml; docs/romp_parity.md is generated from it and checked here.
Regenerate the page after editing the table:  python tests/parity/test_romp_parity.py --write
"""

from __future__ import annotations

import importlib
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
TABLE = yaml.safe_load((HERE / "romp_v1_recipes.yaml").read_text())
RECIPES: dict[str, str] = TABLE["recipes"]
ROWS: list[dict[str, Any]] = TABLE["rows"]
DOC = REPO_ROOT / "docs" / "romp_parity.md"
ABSENT = "__absent__"


def _per_recipe(row: dict[str, Any], field: str, each_flag: str) -> dict[str, Any]:
    value = row.get(field)
    if row.get(each_flag) or (field == "value" and row.get("each")):
        if not isinstance(value, list) or len(value) != len(RECIPES):
            raise AssertionError(f"row {row['romp']!r}: {field} needs one value per recipe {list(RECIPES)}")
        return dict(zip(RECIPES, value))
    return {recipe: value for recipe in RECIPES}


def expected_values(row: dict[str, Any]) -> dict[str, Any]:
    """Our value of the row for each recipe (`ours` where given, else ROMP's `value`)."""
    if "ours" in row:
        each = row.get("each_ours") or (row.get("each") and isinstance(row["ours"], list)
                                         and len(row["ours"]) == len(RECIPES))
        return _per_recipe({**row, "each_ours": each}, "ours", "each_ours")
    return _per_recipe(row, "value", "each")


def _lookup(raw: dict[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return ABSENT
        node = node[part]
    return node


def _python_attribute(path: str) -> Any:
    module, cls, attr = path.rsplit(".", 2)
    return getattr(getattr(importlib.import_module(module), cls), attr)


def actual_value(raw: dict[str, Any], row: dict[str, Any]) -> Any:
    key = row["key"]
    if key.startswith("python:"):
        values = [_python_attribute(path) for path in key[len("python:"):].split()]
        return values[0] if len(values) == 1 else values
    value = _lookup(raw, key)
    if row.get("compare") == "member_names" and value is not ABSENT:
        return " ".join(sorted(value))
    return value


def _normalise(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def _equal(actual: Any, expected: Any) -> bool:
    actual, expected = _normalise(actual), _normalise(expected)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(actual) == len(expected) and all(_equal(a, e) for a, e in zip(actual, expected))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(_equal(actual[k], expected[k]) for k in expected)
    return actual == expected


@pytest.fixture(scope="module")
def composed(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """Each recipe's experiment, composed (not run) and not resolved, so paths read as written."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    configs = {}
    for recipe, override in RECIPES.items():
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(REPO_ROOT / "conf"), job_name="parity"):
            cfg = compose("train", overrides=[override])
        configs[recipe] = OmegaConf.to_container(cfg, resolve=False)
    GlobalHydra.instance().clear()
    return configs


def test_table_rows_are_explained():
    for row in ROWS:
        assert row.get("romp") and row.get("where"), row
        if row.get("key") is None or ("ours" in row and "note" not in row):
            assert row.get("note") or row.get("difference"), f"row {row['romp']!r} needs a note or a difference"


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_each_recipe_composes_romps_values(composed, recipe):
    raw = composed[recipe]
    wrong = []
    for row in ROWS:
        if row.get("key") is None:
            continue
        expected, actual = expected_values(row)[recipe], actual_value(raw, row)
        if row.get("compare") == "member_names" and expected != ABSENT:
            expected = " ".join(sorted(expected.split()))
        if not _equal(actual, expected):
            wrong.append(f"{row['romp']} -> {row['key']}: expected {expected!r}, composed {actual!r}")
    assert not wrong, f"{RECIPES[recipe]} differs from ROMP's {recipe}:\n  " + "\n  ".join(wrong)


# ---- the plain command is the v1 recipe -------------------------------------------------------------------------
# Keys that name or place a run but do not change what it trains.
NOT_TRAINING_RELEVANT = ("task_name",)


def _cfg_job(*overrides: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "romp_hydra.train", *overrides, "--cfg", "job"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    job = yaml.safe_load(out)
    for key in NOT_TRAINING_RELEVANT:
        job.pop(key, None)
    return job


def test_plain_command_composes_the_v1_hrnet_recipe():
    assert _cfg_job("backbone=hrnet32", "dataset=v1_mix") == _cfg_job("experiment=v1_hrnet")


def test_plain_resnet_command_composes_the_v1_resnet_recipe(composed):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO_ROOT / "conf"), job_name="parity"):
        plain = OmegaConf.to_container(compose("train", overrides=["backbone=resnet50", "dataset=v1_mix"]),
                                       resolve=False)
    GlobalHydra.instance().clear()
    recipe = dict(composed["v1_resnet"])
    for key in NOT_TRAINING_RELEVANT:
        plain.pop(key, None)
        recipe.pop(key, None)
    assert plain == recipe


# ---- docs/romp_parity.md ----------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if value == ABSENT:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value).replace("|", "\\|")


def _values(row: dict[str, Any], per_recipe: dict[str, Any]) -> str:
    groups: list[tuple[Any, list[str]]] = []  # (value, recipes with it), in recipe order
    for recipe, value in per_recipe.items():
        for known, recipes in groups:
            if known == value:
                recipes.append(recipe)
                break
        else:
            groups.append((value, [recipe]))
    if len(groups) == 1:
        return f"`{_cell(groups[0][0])}`"
    return "<br>".join(f"{', '.join(recipes)}: `{_cell(value)}`" for value, recipes in groups)


def render() -> str:
    lines = [
        "# ROMP v1 parity",
        "",
        "Generated from `tests/parity/romp_v1_recipes.yaml` by `python tests/parity/test_romp_parity.py --write`;",
        "`tests/parity/test_romp_parity.py` composes each recipe and fails when a value or this page drifts.",
        "",
        "ROMP recipe -> experiment here: "
        + ", ".join(f"`configs/{recipe}.yml` -> `{override}`" for recipe, override in RECIPES.items())
        + ". `python -m romp_hydra.train backbone=hrnet32 dataset=v1_mix` composes the same training values as",
        "`experiment=v1_hrnet` (and `backbone=resnet50 dataset=v1_mix` as `experiment=v1_resnet`).",
        "",
        "| ROMP | where | ROMP value | key here | value here | how it maps |",
        "|---|---|---|---|---|---|",
    ]
    differences = []
    for row in ROWS:
        romp_values = _values(row, _per_recipe(row, "value", "each")) if "value" in row else ""
        ours = _values(row, expected_values(row)) if row.get("key") else ""
        if row.get("difference"):
            how = f"**difference**: {row['difference']}"
            differences.append(row)
        else:
            how = row.get("note") or "same"
        key = f"`{row['key']}`" if row.get("key") else "—"
        lines.append(f"| {row['romp']} | {row['where']} | {romp_values} | {key} | {ours} | {how} |")
    lines += ["", f"{len(differences)} deliberate differences, {len(ROWS)} rows.", ""]
    return "\n".join(lines)


def test_docs_page_is_generated_from_the_table():
    assert DOC.read_text() == render(), "docs/romp_parity.md is stale: python tests/parity/test_romp_parity.py --write"


if __name__ == "__main__":
    if "--write" in sys.argv:
        DOC.write_text(render())
        print(f"wrote {DOC}")
