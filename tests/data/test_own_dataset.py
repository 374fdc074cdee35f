"""The own-dataset workflow: a source module built from the template and a config folder outside the package,
found through hydra.searchpath by the check and pack CLIs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

import romp_hydra.config  # noqa: F401  (registers the ${project_root:} resolver used by conf/)
from romp_hydra.body.joint_sets import COCO_17
from romp_hydra.data import template
from romp_hydra.data.registry import group_options, how_to_register, registered_datasets, registered_sources
from romp_hydra.data.template import MyDataset, write_example

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_dataset(tmp_path):
    """<tmp>/mods/mine_source.py (the template, class renamed), <tmp>/conf/{source,dataset}/mine.yaml, data."""
    modules = tmp_path / "mods"
    modules.mkdir()
    code = Path(template.__file__).read_text().replace("class MyDataset(", "class MineDataset(")
    (modules / "mine_source.py").write_text(code)
    data = write_example(tmp_path / "data", num_images=6)
    conf = tmp_path / "conf"
    (conf / "source").mkdir(parents=True)
    (conf / "dataset").mkdir()
    (conf / "source" / "mine.yaml").write_text(
        f"_target_: mine_source.MineDataset\nroot: {data}\nsplit: train\n")
    (conf / "dataset" / "mine.yaml").write_text(
        "defaults:\n  - /source@members.mine: mine\n  - _self_\nname: mine\n")
    return tmp_path


def run_cli(module: str, own: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(own / "mods"), str(REPO_ROOT)])}
    command = [sys.executable, "-m", module, f"hydra.searchpath=[file://{own / 'conf'}]",
               f"paths.log_dir={own / 'logs'}", f"paths.cache_dir={own / 'cache'}", *overrides]
    return subprocess.run(command, check=False, cwd=own, env=env, capture_output=True, text=True, timeout=120)


def test_check_cli_draws_an_own_dataset_found_on_the_searchpath(own_dataset):
    result = run_cli("romp_hydra.data.check", own_dataset, "dataset=mine", "num=5", f"out={own_dataset / 'pics'}",
                     "data.input_size=256", "data.centermap_size=32")
    assert result.returncode == 0, result.stderr[-3000:]
    pictures = sorted((own_dataset / "pics").glob("*.jpg"))
    assert len(pictures) == 5 and all(p.name.split("_")[1] == "mine" for p in pictures)
    assert "checked 5 samples" in result.stdout and "every file could be read" in result.stdout
    assert (own_dataset / "data" / "mine_train.npz").is_file()  # packed on first use


def test_pack_cli_packs_an_own_dataset(own_dataset):
    result = run_cli("romp_hydra.data.pack", own_dataset, "dataset=mine")
    assert result.returncode == 0, result.stderr[-3000:]
    # write_example: image i shows 1 + i % 2 persons -> 1+2+1+2+1+2
    assert f"mine: packed 6 images, 9 persons into {own_dataset / 'data' / 'mine_train.npz'}" in result.stdout


def test_registry_lists_package_and_user_configs(own_dataset):
    extra = [f"file://{own_dataset / 'conf'}"]
    sources = registered_sources(extra)
    assert "mine" in sources and {"coco", "h36m", "pw3d"} <= set(sources)
    assert "mine" not in registered_sources()
    assert "mine" in registered_datasets(extra)
    hint = how_to_register("mine")
    assert "source/mine.yaml" in hint and "hydra.searchpath" in hint


def test_template_joint_order_is_coco17_and_unlabelled_joints_are_missing(tmp_path):
    assert MyDataset.JOINT_ORDER == COCO_17
    source = MyDataset(write_example(tmp_path / "data", num_images=3), key="mine")
    record = source.store.image_record(0)
    # example image 0: the left wrist (COCO index 9 -> 54-joint 20) is unlabelled
    assert (record["kp2ds"][0, 20] == -2).all()
    assert record["vmask_2d"].tolist() == [[True, False, True]]
    with pytest.raises(ValueError, match=r"joints of shape \(2, 3\), expected \(17, 3\)"):
        source.joints_to_54([[1, 2, 1], [3, 4, 1]], "x.jpg")


def test_registry_inside_hydra_sees_the_jobs_searchpath(own_dataset):
    conf = own_dataset / "conf"
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO_ROOT / "conf"), job_name="registry"):
        cfg = compose("check", overrides=["dataset=mine", f"hydra.searchpath=[file://{conf}]"],
                      return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        assert "mine" in registered_sources() and "mine" in registered_datasets()
        assert "mine" in group_options("source")
