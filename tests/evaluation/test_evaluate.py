"""End to end: train the tiny quickstart for a few steps, then evaluate its checkpoint on 3DPW / CrowdPose
fixtures in their real formats, in-process (`evaluate(cfg)`) and through `python -m romp_hydra.evaluate`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from romp_hydra.config.errors import ConfigError
from romp_hydra.evaluation.run import (
    adopt_checkpoint_architecture,
    evaluate,
    set_batchnorm_mode,
    validate_evaluation_config,
)
from romp_hydra.training.run import train
from tests.conftest import CONF_DIR, REPO_ROOT
from tests.data.sources.fixtures_2d import write_crowdpose_fixture
from tests.data.sources.fixtures_3d import write_vibe_db

# The quickstart recipe shrunk to test size (as tests/training/test_train.py).
TINY = [
    "experiment=quickstart",
    "data.input_size=64",
    "data.centermap_size=8",
    "data.max_person=8",
    "data.batch_size=2",
    "data.num_workers=0",
    "model.head_channels=16",
    "sampling.epoch_samples=4",
    "dataset.members.synth_solo.num_samples=4",
    "dataset.members.synth_crowd.num_samples=4",
    "dataset.members.synth_solo.image_size_range=[96,128]",
    "dataset.members.synth_crowd.image_size_range=[96,128]",
    "val.dataset.members.synth_solo.num_samples=1",
    "val.dataset.members.synth_crowd.num_samples=1",
    "val.dataset.members.synth_solo.image_size_range=[96,128]",
    "val.dataset.members.synth_crowd.image_size_range=[96,128]",
    "val.protocol.matching=gt_center",
    "data.val_batch_size=4",
    "logger=none",
    "trainer.max_steps=1",
    "trainer.val_at_start=false",
]
# VIBE db rows (vid_name = <sequence>_<person>, frame): 5 images, 7 people (the last row is written invalid).
VIBE_ROWS = [
    ("courtyard_basketball_00_0", 0),
    ("courtyard_basketball_00_1", 0),
    ("courtyard_basketball_00_0", 1),
    ("courtyard_basketball_00_1", 1),
    ("downtown_walking_00_0", 0),
    ("downtown_walking_00_0", 1),
    ("downtown_walking_00_0", 2),
    ("downtown_walking_00_0", 3),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, shared_cache_dir) -> Path:
    """A tiny quickstart model trained for one step (its checkpoint carries the training config)."""
    out = tmp_path_factory.mktemp("tiny_train")
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="test"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.log_dir={out / 'logs'}",
                f"paths.cache_dir={shared_cache_dir}",
                f"hydra.run.dir={out / 'run'}",
                *TINY,
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    train(cfg)
    GlobalHydra.instance().clear()
    return out / "run" / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """3DPW/ with VIBE's test db and its images; crowdpose/ with a val json and images."""
    root = tmp_path_factory.mktemp("data")
    write_vibe_db(root / "3DPW", "test", VIBE_ROWS, joints3d=14)
    write_crowdpose_fixture(root, split="val")
    return root


def evaluation_overrides(checkpoint: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        f"ckpt_path={checkpoint}",
        "dataset=pw3d_test",
        f"paths.data_dir={data_dir}",
        "data.num_workers=0",
        "device=cpu",
        "logger=none",
        "protocol.matching=gt_center",
        *extra,
    ]  # gt_center: every person scored


def test_evaluate_scores_every_person_per_sequence(compose_cfg, checkpoint, data_dir, tmp_path, capsys):
    cfg = compose_cfg(
        evaluation_overrides(checkpoint, data_dir, "data.val_batch_size=1"), config_name="evaluate"
    )
    metrics = evaluate(cfg)
    # The network came from the checkpoint's training config (tiny HRNet, 64 px, stand-in body model).
    assert cfg.data.input_size == 64 and cfg.backbone.width == 8 and cfg.body_model.kind == "standin"
    counts = ("num_images", "num_gt", "num_evaluated", "num_missed")
    assert [metrics[name] for name in counts] == [5, 7, 7, 0]
    for name in ("mpjpe", "pa_mpjpe", "pve"):
        assert math.isfinite(metrics[name]) and metrics[name] > 0
    results = json.loads((tmp_path / "run" / "results_pw3d_test.json").read_text())
    assert results["checkpoint_step"] == 1 and results["protocol"]["name"] == "3dpw_p2"
    groups = [(group["group"], group["people"]) for group in results["groups"]]
    assert groups == [("courtyard_basketball_00", 4), ("downtown_walking_00", 3)]
    csv_lines = (tmp_path / "run" / "results_pw3d_test.csv").read_text().splitlines()
    assert csv_lines[0].startswith("group,")
    assert [line.split(",")[0] for line in csv_lines[1:]] == ["overall", *(name for name, _ in groups)]
    printed = capsys.readouterr().out
    assert "per sequence:" in printed and "downtown_walking_00" in printed
    assert "7 evaluated, 0 missed of 7 GT" in printed

    # The same numbers in batches of 7: the sums are exact; only the network's float32 convolutions may
    # round differently for 1 and 7 images.
    seven = evaluate(
        compose_cfg(
            evaluation_overrides(checkpoint, data_dir, "data.val_batch_size=7"), config_name="evaluate"
        )
    )
    assert metrics == pytest.approx(seven, rel=0, abs=1e-3, nan_ok=True)


@pytest.mark.slow
def test_results_are_logged_to_mlflow_as_a_run_or_into_one(compose_cfg, checkpoint, data_dir):
    # A run of their own, with the config and the spelled-out protocol as params.
    cfg = compose_cfg(evaluation_overrides(checkpoint, data_dir, "logger=mlflow"), config_name="evaluate")
    evaluate(cfg)
    client = mlflow.MlflowClient(cfg.logger.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    (own,) = client.search_runs([experiment.experiment_id])
    assert own.info.status == "FINISHED"
    assert (
        own.data.params["protocol.name"] == "3dpw_p2" and own.data.params["protocol.matching"] == "gt_center"
    )
    assert own.data.params["eval.pw3d_test.protocol.joints"].startswith("lsp14: 14 joints")
    assert "own centre cell" in own.data.params["eval.pw3d_test.protocol.matching"]
    assert own.data.metrics["eval/pw3d_test/num_gt"] == 7.0
    assert "eval/pw3d_test/downtown_walking_00/pa_mpjpe" in own.data.metrics

    # Into an existing (finished) run, e.g. the training run: metrics at the checkpoint's step, status kept.
    training = client.create_run(experiment.experiment_id, run_name="a training run").info.run_id
    client.set_terminated(training, "FINISHED")
    cfg.logger.run_id = training
    evaluate(cfg)
    run = client.get_run(training)
    assert run.info.status == "FINISHED"
    assert run.data.params["eval.pw3d_test.protocol.name"] == "3dpw_p2"
    history = client.get_metric_history(training, "eval/pw3d_test/num_evaluated")
    assert [(m.value, m.step) for m in history] == [(7.0, 1)]
    artifacts = sorted(a.path for a in client.list_artifacts(training, "eval/pw3d_test"))
    assert artifacts == ["eval/pw3d_test/results_pw3d_test.csv", "eval/pw3d_test/results_pw3d_test.json"]
    assert len(client.search_runs([experiment.experiment_id])) == 2  # no third run


def test_crowdpose_keypoint_ap_runs_end_to_end(compose_cfg, checkpoint, data_dir, tmp_path):
    cfg = compose_cfg(
        [
            f"ckpt_path={checkpoint}",
            "dataset=crowdpose_val",
            f"paths.data_dir={data_dir}",
            "data.num_workers=0",
            "device=cpu",
            "logger=none",
        ],
        config_name="evaluate",
    )
    metrics = evaluate(cfg)
    assert metrics["num_images"] == 3 and metrics["num_gt"] == 5
    assert metrics["AP"] == 0.0 or 0.0 <= metrics["AP"] <= 1.0  # a 1-step model rarely finds anybody
    assert (tmp_path / "run" / "results_crowdpose_val.json").is_file()


def test_configuration_errors_name_the_key(compose_cfg, data_dir, tmp_path):
    cfg = compose_cfg(
        [f"ckpt_path={tmp_path / 'missing.pt'}", f"paths.data_dir={data_dir}"], config_name="evaluate"
    )
    with pytest.raises(ConfigError, match="is not a file") as info:
        validate_evaluation_config(cfg)
    assert info.value.key == "ckpt_path"
    cfg = compose_cfg(
        [f"ckpt_path={tmp_path / 'x.pt'}", "logger=none", "logger.run_id=abc"], config_name="evaluate"
    )
    (tmp_path / "x.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="logger=mlflow"):
        validate_evaluation_config(cfg)


@pytest.mark.slow
def test_command_line_evaluation_and_its_config_error(checkpoint, data_dir, tmp_path, shared_cache_dir):
    common = [
        sys.executable,
        "-m",
        "romp_hydra.evaluate",
        f"paths.cache_dir={shared_cache_dir}",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    done = subprocess.run(
        [*common, *evaluation_overrides(checkpoint, data_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on pw3d_test (protocol 3dpw_p2)" in done.stdout and "courtyard_basketball_00" in done.stdout
    assert (tmp_path / "run" / "results_pw3d_test.json").is_file()
    failed = subprocess.run(
        [*common, f"ckpt_path={tmp_path / 'nope.pt'}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        f"Invalid configuration: ckpt_path='{tmp_path / 'nope.pt'}': is not a file",
        "  fix: give the path of a checkpoint file (relative paths are taken from the current folder)",
    ]


def test_checkpoint_architecture_yields_to_the_command_line(compose_cfg):
    trained = {
        "backbone": {"_target_": "romp_hydra.models.backbones.HRNet", "width": 8, "pretrained": None},
        "model": {"head_channels": 16, "head_blocks": 2},
        "body_model": {
            "kind": "standin",
            "model_dir": "${paths.cache_dir}/standin_smpl",
            "gender": "neutral",
            "root_align": True,
        },
        "data": {"input_size": 64, "centermap_size": 8},
    }
    cfg = compose_cfg(
        ["ckpt_path=x.pt", "model.head_channels=32", "data.input_size=128"], config_name="evaluate"
    )
    adopted = adopt_checkpoint_architecture(cfg, trained)
    assert adopted == ["backbone", "body_model", "data.centermap_size"]
    assert cfg.backbone.width == 8 and cfg.model.head_channels == 32 and cfg.data.input_size == 128
    # Interpolations in the training config resolve against this run's paths.
    assert cfg.body_model.kind == "standin"
    assert cfg.body_model.model_dir == f"{cfg.paths.cache_dir}/standin_smpl"


def test_batchnorm_train_mode_uses_batch_statistics():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5))
    set_batchnorm_mode(net, "train")
    assert [m.training for m in net] == [False, True, False]
    set_batchnorm_mode(net, "eval")
    assert not any(m.training for m in net.modules())
