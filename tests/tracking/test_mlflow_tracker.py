"""MLflowTracker against a fresh SQLite store per test: content of a run, resume, store failures, overhead."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from romp_hydra.tracking import NullTracker, build_tracker
from romp_hydra.tracking.mlflow_tracker import MLflowTracker
from romp_hydra.tracking.run_info import config_params
from romp_hydra.tracking.store import default_tracking_uri, normalize_tracking_uri, read_run_id
from romp_hydra.tracking.writers import FALLBACK_STATE_FILE, METRICS_FALLBACK_FILE


def tracker_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("romp_hydra.tracking")
    ]


def test_run_holds_params_metrics_tags_and_pictures(tiny_cfg, tracking_uri, tmp_path):
    tracker = MLflowTracker(tracking_uri, "tests")
    run_id = tracker.start(tiny_cfg, tmp_path / "run")
    for step in range(5):
        tracker.log_metrics({"train/loss": 1.0 / (step + 1), "lr": 1e-4}, step=step * 10)
    picture = np.zeros((8, 12, 3), np.uint8)
    picture[2:4, 3:9] = (255, 0, 0)  # a red bar: checks the RGB order survives the PNG round trip
    tracker.log_image(picture, "train", step=200)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    tracker.log_artifact(notes, "extra")
    tracker.log_params({"model": {"num_params": 123}, "mixture": {"coco": 0.25}})  # what the caller adds
    tracker.finish()

    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "train"  # no overrides outside a Hydra job
    assert read_run_id(tmp_path / "run") == run_id
    params = run.data.params
    assert params["mixture.coco"] == "0.25" and "mixture.h36m" not in params  # the tracker computes nothing
    assert params["sampling.weights.coco"] == "0.1" and params["sampling.weights.h36m"] == "0.3"  # raw
    assert params["optim.lr"] == "0.0001" and params["optim.milestones"] == "[60,80]"
    assert params["model.num_params"] == "123"
    assert not [key for key in params if key.startswith(("paths.", "hydra."))]  # not hyper-parameters
    tags = run.data.tags
    assert tags["paths.output_dir"] == "${hydra:runtime.output_dir}"  # unresolvable outside Hydra
    assert tags["body_model"] == "standin"
    assert tags["mixture.members"] == "coco,h36m"
    assert tags["task_name"] == "train" and tags["tags"] == "smoke"
    assert tags["git.commit"]
    assert "mlflow.parentRunId" not in tags

    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (10, 0.5), (20, 1 / 3), (30, 0.25), (40, 0.2)]

    assert {a.path for a in client.list_artifacts(run_id)} >= {
        "config.yaml",
        "final_metrics.json",
        "pictures",
        "extra",
    }
    png = client.download_artifacts(run_id, "pictures/train/step_000200.png", str(tmp_path / "dl"))
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(png), cv2.COLOR_BGR2RGB), picture)
    final = json.loads(
        Path(client.download_artifacts(run_id, "final_metrics.json", str(tmp_path / "dl"))).read_text()
    )
    assert final["status"] == "FINISHED"
    assert final["metrics"]["train/loss"] == {"value": 0.2, "step": 40}


def test_real_config_logs_every_param_in_chunks(compose_cfg, tracking_uri, tmp_path):
    cfg = compose_cfg(["body_model=standin"])
    expected = config_params(cfg)
    assert len(expected) > 100  # more than one log_batch request
    tracker = build_tracker(cfg)
    run_id = tracker.start(cfg, tmp_path / "run")
    tracker.finish()
    assert cfg.logger.tracking_uri == tracking_uri
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.data.params == expected
    assert run.info.run_name == "train-body_model=standin"  # paths.* and hydra.* overrides left out
    assert run.data.tags["hydra.overrides"].endswith("body_model=standin")


def test_resume_reattaches_to_the_same_run(tiny_cfg, tracking_uri, tmp_path):
    first = MLflowTracker(tracking_uri, "tests")
    run_id = first.start(tiny_cfg, tmp_path / "run")
    first.log_metrics({"loss": 3.0}, step=1)
    first.finish("KILLED")

    tiny_cfg.optim.lr = 2e-4  # changed on resume: MLflow refuses to overwrite a param
    second = MLflowTracker(tracking_uri, "tests")
    assert second.start(tiny_cfg, tmp_path / "run", resume_run_id=read_run_id(tmp_path / "run")) == run_id
    client = MlflowClient(tracking_uri)
    assert client.get_run(run_id).info.status == "RUNNING"
    second.log_metrics({"loss": 2.0}, step=2)
    second.finish()

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["optim.lr"] == "0.0001"
    assert run.data.tags["param_changed.optim.lr"] == "0.0002"
    assert run.data.tags["resume.count"] == "1"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(1, 3.0), (2, 2.0)]
    experiment = client.get_experiment_by_name("tests")
    assert len(client.search_runs([experiment.experiment_id])) == 1
    assert "resume_1/config.yaml" in {a.path for a in client.list_artifacts(run_id, "resume_1")}


def test_resume_of_an_unknown_run_starts_a_new_one(tiny_cfg, tracking_uri, tmp_path, caplog):
    tracker = MLflowTracker(tracking_uri, "tests")
    run_id = tracker.start(tiny_cfg, tmp_path / "run", resume_run_id="0123456789abcdef0123456789abcdef")
    tracker.finish()
    assert run_id != "0123456789abcdef0123456789abcdef"
    assert MlflowClient(tracking_uri).get_run(run_id).data.tags["resume.missing_run_id"].startswith("0123")
    assert any("is not in" in message for message in tracker_warnings(caplog))


def test_store_failure_mid_run_falls_back_with_one_warning(
    tiny_cfg, tracking_uri, tmp_path, caplog, monkeypatch
):
    def still_gone(*args, **kwargs):
        raise ConnectionError("still gone")

    monkeypatch.setattr("romp_hydra.tracking.mlflow_tracker.replay_fallback", still_gone)
    tracker = MLflowTracker(tracking_uri, "tests")
    run_id = tracker.start(tiny_cfg, tmp_path / "run")
    tracker.log_metrics({"loss": 1.0}, step=0)
    tracker.flush()

    def broken(*args, **kwargs):
        raise MlflowException("the store is gone")

    client = tracker._writer.client
    client.log_batch = client.log_text = client.log_artifact = client.set_terminated = broken
    for step in (1, 2, 3):
        tracker.log_metrics({"loss": float(step), "lr": 0.5}, step=step)  # must not raise
    tracker.log_image(np.full((4, 4, 3), 7, np.uint8), "train", step=3)
    tracker.set_tags({"note": "after"})
    tracker.finish()

    warnings = tracker_warnings(caplog)
    assert len(warnings) == 2 and "the store is gone" in warnings[0]
    assert "romp_hydra.tracking.replay" in warnings[1]  # at finish: the store is still gone, how to replay
    lines = [json.loads(line) for line in (tmp_path / "run" / METRICS_FALLBACK_FILE).read_text().splitlines()]
    assert [(m["key"], m["step"], m["value"]) for m in lines] == [
        ("loss", 1, 1.0),
        ("lr", 1, 0.5),
        ("loss", 2, 2.0),
        ("lr", 2, 0.5),
        ("loss", 3, 3.0),
        ("lr", 3, 0.5),
    ]
    state = json.loads((tmp_path / "run" / FALLBACK_STATE_FILE).read_text())
    assert state["run_id"] == run_id and "the store is gone" in state["error"]
    assert state["params"]["optim.lr"] == "0.0001"  # logged before the failure, kept for the replay
    assert state["tags"]["note"] == "after" and state["status"] == "FINISHED"
    assert (tmp_path / "run" / "tracking_fallback" / "pictures" / "train" / "step_000003.png").is_file()
    # What reached the store before the failure is still there.
    assert [m.value for m in MlflowClient(tracking_uri).get_metric_history(run_id, "loss")] == [1.0]


def test_broken_store_at_start_never_raises(tiny_cfg, tmp_path, caplog):
    db = tmp_path / "not_a_database.db"
    db.write_bytes(b"this is not sqlite" * 100)
    tracker = MLflowTracker(f"sqlite:///{db}", "tests")
    assert tracker.start(tiny_cfg, tmp_path / "run") is None
    tracker.log_metrics({"loss": 1.5}, step=7)
    tracker.finish("FAILED")
    assert tracker.using_fallback
    warnings = tracker_warnings(caplog)
    assert len(warnings) == 2 and "romp_hydra.tracking.replay" in warnings[1]  # the failure; how to replay
    line = json.loads((tmp_path / "run" / METRICS_FALLBACK_FILE).read_text())
    assert (line["key"], line["value"], line["step"]) == ("loss", 1.5, 7)
    state = json.loads((tmp_path / "run" / FALLBACK_STATE_FILE).read_text())
    assert state["params"]["optim.lr"] == "0.0001" and state["status"] == "FAILED"


def test_metrics_are_written_after_the_flush_interval(tiny_cfg, tracking_uri, tmp_path):
    tracker = MLflowTracker(tracking_uri, "tests", flush_interval_s=0.1)
    run_id = tracker.start(tiny_cfg, tmp_path / "run")
    tracker.log_metrics({"loss": 4.0}, step=0)  # no flush(), no more calls: the timer must write it
    client = MlflowClient(tracking_uri)
    deadline = time.monotonic() + 10
    while not client.get_metric_history(run_id, "loss") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [4.0]
    tracker.finish()


def test_context_manager_marks_failed_and_uses_explicit_name(tiny_cfg, tracking_uri, tmp_path):
    with pytest.raises(RuntimeError), MLflowTracker(tracking_uri, "tests", run_name="my-run") as tracker:
        run_id = tracker.start(tiny_cfg, tmp_path / "run")
        raise RuntimeError("loss exploded")
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert (run.info.run_name, run.info.status) == ("my-run", "FAILED")


def test_log_metrics_overhead_is_microseconds(tiny_cfg, tracking_uri, tmp_path):
    calls = 2000
    metrics = {"loss": 0.5, "loss/center": 0.1, "loss/kp2d": 0.2, "lr": 1e-4}
    timings = {}
    for name, tracker in (("null", NullTracker()), ("mlflow", MLflowTracker(tracking_uri, "tests"))):
        tracker.start(tiny_cfg, tmp_path / name)
        begin = time.perf_counter()
        for step in range(calls):
            tracker.log_metrics(metrics, step=step)
        timings[name] = (time.perf_counter() - begin) / calls
        tracker.finish()
    print(
        f"log_metrics per call (4 metrics): null {timings['null'] * 1e6:.2f} us, "
        f"mlflow {timings['mlflow'] * 1e6:.2f} us"
    )
    assert timings["mlflow"] < 500e-6  # a synchronous SQLite write costs ~8 ms
    run = MlflowClient(tracking_uri).search_runs(
        [MlflowClient(tracking_uri).get_experiment_by_name("tests").experiment_id]
    )[0]
    assert len(MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "loss/kp2d")) == calls


def test_build_tracker_by_kind_and_rank(tiny_cfg, tracking_uri):
    assert isinstance(build_tracker(tiny_cfg, rank=1), NullTracker)
    tracker = build_tracker(tiny_cfg)
    assert isinstance(tracker, MLflowTracker) and tracker.tracking_uri == tracking_uri
    tiny_cfg.logger = {"kind": "none"}
    assert isinstance(build_tracker(tiny_cfg), NullTracker)
    tiny_cfg.logger = {"kind": "wandb"}
    with pytest.raises(ValueError, match="logger=mlflow or logger=none"):
        build_tracker(tiny_cfg)


def test_log_image_rejects_non_uint8_rgb(tiny_cfg, tracking_uri, tmp_path):
    tracker = MLflowTracker(tracking_uri, "tests")
    tracker.start(tiny_cfg, tmp_path / "run")
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        tracker.log_image(np.zeros((3, 8, 8), np.float32), "train", step=0)
    tracker.finish()


def test_tracking_uri_defaults_to_an_absolute_sqlite_store(tmp_path, monkeypatch):
    assert default_tracking_uri().startswith("sqlite:////")
    assert default_tracking_uri().endswith("/mlflow.db")
    assert normalize_tracking_uri(None) == default_tracking_uri()
    monkeypatch.chdir(tmp_path)
    assert normalize_tracking_uri("sqlite:///rel/m.db") == f"sqlite:///{tmp_path.resolve()}/rel/m.db"
    assert normalize_tracking_uri("http://tracking:5000") == "http://tracking:5000"


def test_unreachable_server_falls_back_within_seconds(tiny_cfg, tmp_path, caplog):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tracker = MLflowTracker(f"http://127.0.0.1:{port}", "tests")
    begin = time.monotonic()
    assert tracker.start(tiny_cfg, tmp_path / "run") is None
    tracker.finish()
    assert time.monotonic() - begin < 15
    warnings = tracker_warnings(caplog)
    assert len(warnings) == 2 and "not reachable" in warnings[0] and "still unavailable" in warnings[1]


def test_hydra_node_can_be_passed_to_a_spawned_worker(tiny_cfg, tracking_uri, tmp_path, hydra_job):
    """DDP workers spawned from the Hydra job have no HydraConfig: the job's hydra node is passed in."""
    hydra_node = hydra_job("RUN", ["optim.lr=0.001", "paths.log_dir=/x"])
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None  # as in the spawned process
    tracker = MLflowTracker(tracking_uri, "tests")
    run_id = tracker.start(tiny_cfg, tmp_path / "run", hydra_cfg=hydra_node)
    tracker.finish()
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.info.run_name == "train-lr=0.001"
    assert run.data.tags["hydra.overrides"] == "optim.lr=0.001 paths.log_dir=/x"


def test_attach_adds_to_an_existing_run_without_touching_its_status(tiny_cfg, tracking_uri, tmp_path):
    """How an evaluation logs into the run that trained its checkpoint (evaluation/run.py)."""
    client = MlflowClient(tracking_uri)
    training = MLflowTracker(tracking_uri, "tests")
    run_id = training.start(tiny_cfg, tmp_path / "train")
    training.finish("FINISHED")
    (tmp_path / "results.json").write_text("{}")
    with MLflowTracker(tracking_uri, "tests") as tracker:
        assert tracker.attach(run_id, tmp_path / "eval") == run_id
        tracker.log_params({"optim.lr": 0.5, "eval.protocol": "p2"})  # lr is held with another value
        tracker.log_metrics({"eval/mpjpe": 80.0}, step=3)
        tracker.log_artifact(tmp_path / "results.json", "eval")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["optim.lr"] == "0.0001" and run.data.tags["param_changed.optim.lr"] == "0.5"
    assert run.data.params["eval.protocol"] == "p2" and run.data.metrics["eval/mpjpe"] == 80.0
    assert [a.path for a in client.list_artifacts(run_id, "eval")] == ["eval/results.json"]
    with pytest.raises(MlflowException):
        MLflowTracker(tracking_uri, "tests").attach("0123456789abcdef0123456789abcdef", tmp_path / "eval2")


def test_next_start_in_the_run_dir_replays_an_earlier_outage(tiny_cfg, empty_store_template, tmp_path):
    db = tmp_path / "store.db"
    db.write_bytes(b"not a database yet" * 100)  # the store is broken while the first run trains
    first = MLflowTracker(f"sqlite:///{db}", "tests", run_name="first")
    assert first.start(tiny_cfg, tmp_path / "run") is None
    first.log_metrics({"train/loss": 5.0}, step=3)
    first.finish("KILLED")  # still broken: the fallback stays
    assert (tmp_path / "run" / FALLBACK_STATE_FILE).is_file()

    shutil.copyfile(empty_store_template, db)  # the store is back
    second = MLflowTracker(f"sqlite:///{db}", "tests", run_name="second")
    second.start(tiny_cfg, tmp_path / "run")
    second.finish()
    client = MlflowClient(f"sqlite:///{db}")
    runs = {
        run.info.run_name: run
        for run in client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    }
    assert runs["first"].info.status == "KILLED" and runs["first"].data.metrics == {"train/loss": 5.0}
    assert runs["first"].data.params["optim.lr"] == "0.0001"
    assert runs["second"].info.status == "FINISHED"
    assert not (tmp_path / "run" / FALLBACK_STATE_FILE).exists()
