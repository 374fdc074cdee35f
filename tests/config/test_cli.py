"""The entry point as a user meets it: --help, --cfg job, and one readable message on a bad config."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_train(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": ""}
    env.pop("HYDRA_FULL_ERROR")
    return subprocess.run([sys.executable, "-m", "romp_hydra.train", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_help_lists_config_groups():
    out = run_train("--help")
    assert out.returncode == 0, out.stderr
    for group in ("backbone", "dataset", "sampling", "body_model", "loss", "optim", "trainer", "logger", "experiment"):
        assert f"{group}:" in out.stdout, group


@pytest.mark.parametrize("backbone", ["hrnet32", "resnet50"])
def test_cfg_job_prints_v1_mixture(backbone):
    out = run_train("--cfg", "job", f"backbone={backbone}", "dataset=v1_mix")
    assert out.returncode == 0, out.stderr
    for line in ("h36m: 0.2", "mpiinf: 0.16", "coco: 0.2", "lsp: 0.06", "mpii: 0.1", "muco: 0.14", "crowdpose: 0.14"):
        assert line in out.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["dataset=nosuchdata"], ["dataset/nosuchdata", "v1_mix", "coco"]),
        (["backbone=vgg"], ["backbone/vgg", "hrnet32", "resnet50"]),
        (["data.batch_size=abc"], ["data.batch_size", "abc"]),
        (["backbone.init=he"], ["backbone.init", "he", "backbone.init=kaiming"]),
        (["sampling.weights.lsp=0.5"], ["sum to 1.44", "sampling.normalize=true"]),
        (["+sampling.weights.up=0.1"], ["sampling.weights.up", "not a member", "h36m"]),
    ],
)
def test_bad_config_fails_fast_with_one_message(args, words):
    out = run_train(*args, "logger=none")
    assert out.returncode != 0
    for word in words:
        assert word in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
