"""Param strings and run names: what MLflow will store, computed without a store."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from romp_hydra.tracking.naming import (
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    TRUNCATION_MARKER,
    build_run_name,
    chunked,
    flatten_config,
    format_value,
    key_overrides,
    sanitize_key,
    sweep_job_name,
    sweep_parent_name,
)


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.1 + 0.2, "0.3"),  # repr would be 0.30000000000000004
        (2 / 3, "0.666667"),
        (5e-5, "5e-05"),
        (1234567.0, "1.23457e+06"),
        (0.2, "0.2"),
        (3, "3"),
        (True, "true"),
        (None, "null"),
        (float("nan"), "nan"),
        ([1, 0.1 + 0.2, "a"], "[1,0.3,a]"),
        ({"a": 1.0 / 3}, "{a:0.333333}"),
    ],
)
def test_format_value(value, expected):
    assert format_value(value) == expected


def test_flatten_config_dotted_resolved_and_robust():
    cfg = OmegaConf.create(
        {
            "hydra": {"run": {"dir": "x"}},
            "paths": {"root": "/r", "logs": "${paths.root}/logs", "out": "${hydra:runtime.output_dir}"},
            "optim": {"lr": 0.1 + 0.2, "milestones": [60, 80], "betas": {}},
            "model": "???",
            "members": {"coco": {"_target_": "a.Coco"}},
        }
    )
    flat = flatten_config(cfg)
    assert flat == {
        "paths.root": "/r",
        "paths.logs": "/r/logs",  # resolved
        "paths.out": "${hydra:runtime.output_dir}",  # not resolvable outside a Hydra job: kept as written
        "optim.lr": "0.3",
        "optim.milestones": "[60,80]",
        "optim.betas": "{}",
        "model": "???",
        "members.coco._target_": "a.Coco",
    }


def test_long_values_are_truncated_with_a_marker():
    flat = flatten_config({"long": "x" * 7000, "short": "y" * MAX_PARAM_VALUE_LENGTH})
    assert len(flat["long"]) == MAX_PARAM_VALUE_LENGTH
    assert flat["long"].endswith(TRUNCATION_MARKER)
    assert flat["long"].startswith("x" * 100)
    assert flat["short"] == "y" * MAX_PARAM_VALUE_LENGTH  # exactly at the limit: untouched


def test_long_keys_are_cut_and_stay_distinct():
    first, second = "a." * 200 + "first", "a." * 200 + "second"
    flat = flatten_config({first: 1, second: 2})
    keys = sorted(flat)
    assert len(keys) == 2 and all(len(key) == MAX_KEY_LENGTH for key in keys)
    assert keys[0] != keys[1]
    assert sanitize_key("short.key") == "short.key"


@pytest.mark.parametrize(
    "key, expected",
    [
        ("a@b c", "a_b c"),
        ("/abs", "_abs"),
        ("a//b", "a__b"),
        ("val/pw3d/PA_MPJPE", "val/pw3d/PA_MPJPE"),
        ("..up", "_.up"),
        ("w{1}", "w_1_"),
    ],
)
def test_sanitize_key(key, expected):
    assert sanitize_key(key) == expected


def test_chunked_in_hundreds():
    sizes = [len(chunk) for chunk in chunked(list(range(250)), 100)]
    assert sizes == [100, 100, 50]
    assert list(chunked([], 100)) == []
    with pytest.raises(ValueError, match="at least 1"):
        list(chunked([1], 0))


def test_key_overrides_drop_paths_hydra_logger_and_deletions():
    overrides = [
        "paths.log_dir=/tmp/x",
        "hydra.job.num=3",
        "hydra/launcher=joblib",
        "logger=none",
        "logger.run_name=x",
        "~trainer.max_steps",
        "+trainer.extra=1",
        "++seed=2",
        "resume=true",
        "dataset=v1_mix",
    ]
    assert key_overrides(overrides) == [("dataset", "v1_mix"), ("seed", "2"), ("trainer.extra", "1")]


def test_run_name_is_readable_and_deterministic():
    job = ["sampling.weights.coco=0.2", "sampling.normalize=true", "paths.log_dir=/tmp/logs"]
    name = build_run_name("train", job)
    assert name == "train-normalize=true,coco=0.2"
    assert build_run_name("train", list(reversed(job))) == name  # order of the command line does not matter
    assert build_run_name("train", []) == "train"


def test_run_name_keeps_ambiguous_keys_apart_and_sanitises():
    name = build_run_name("train", ["data.batch_size=8", "val.batch_size=4", "tags=[a b]", "optim.lr='1e-4'"])
    assert name == "train-data.batch_size=8,lr=1e-4,tags=_a_b_,val.batch_size=4"


def test_long_run_names_end_in_a_hash():
    many = [f"sampling.weights.member_{i:02d}=0.{i:02d}" for i in range(20)]
    name = build_run_name("train", many)
    other = build_run_name("train", many[:-1] + ["sampling.weights.member_19=0.5"])
    assert len(name) == 100 and len(other) == 100
    assert name.startswith("train-member_00=0.00,member_01=0.01")
    assert name != other
    assert build_run_name("train", many) == name


def test_sweep_job_is_named_by_what_differs_between_jobs():
    fixed = ["experiment=quickstart", "sampling.normalize=true", "hydra.sweep.dir=/x"]
    job = ["experiment=quickstart", "sampling.weights.synth_crowd=0.2", "sampling.normalize=True"]
    assert sweep_job_name(job, fixed) == "synth_crowd=0.2"  # Hydra rewrote true -> True: compared by key
    two = ["sampling.weights.synth_crowd=0.3", "sampling.weights.synth_solo=0.7", "optim.optimizer.lr=0.01"]
    assert sweep_job_name(two, ["optim.optimizer.lr=0.01"]) == "synth_crowd=0.3,synth_solo=0.7"
    assert sweep_job_name(["experiment=quickstart"], ["experiment=quickstart"]) is None  # nothing differs


def test_sweep_parent_is_named_by_task_and_swept_keys():
    assert sweep_parent_name("quickstart", ["sampling.weights.synth_crowd"]) == "quickstart-sweep-synth_crowd"
    keys = ["sampling.weights.coco", "optim.optimizer.lr", "sampling.weights.coco"]
    assert sweep_parent_name("train", keys) == "train-sweep-lr,coco"  # in key order
    assert sweep_parent_name("train", []) == "train-sweep"
