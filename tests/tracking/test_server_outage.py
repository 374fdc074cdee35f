"""A tracking server killed mid-run: training is not held up, nothing is lost, and the run's status is fixed
once
the server is back (issue 12, point 4). A real `mlflow server` on 127.0.0.1, SIGKILLed."""

from __future__ import annotations

import json
import shutil
import time

from mlflow.tracking import MlflowClient

from romp_hydra.tracking.mlflow_tracker import MLflowTracker
from romp_hydra.tracking.replay import main as replay_main
from romp_hydra.tracking.store import FAST_HTTP_SETTINGS
from romp_hydra.tracking.writers import FALLBACK_STATE_FILE, METRICS_FALLBACK_FILE
from tests.tracking.server import MlflowServer, free_port


def test_server_killed_mid_run_loses_nothing_and_the_replay_fixes_the_status(
    tiny_cfg, empty_store_template, tmp_path, monkeypatch
):
    for name, value in FAST_HTTP_SETTINGS.items():  # what the tracker sets; restored after the test
        monkeypatch.setenv(name, value)
    db = tmp_path / "server.db"
    shutil.copyfile(empty_store_template, db)
    port = free_port()
    server = MlflowServer(db, port, tmp_path).start().wait_ready()
    run_dir = tmp_path / "run"
    try:
        tracker = MLflowTracker(server.url, "outage", flush_interval_s=0.2)
        run_id = tracker.start(tiny_cfg, run_dir)
        for step in range(3):
            tracker.log_metrics({"train/loss": 10.0 - step}, step=step)
        tracker.flush()

        server.kill()
        begin = time.monotonic()
        for step in range(3, 6):
            tracker.log_metrics({"train/loss": 10.0 - step}, step=step)  # never blocks
        assert time.monotonic() - begin < 0.5
        tracker.log_metrics({"val/MPJPE": 42.0}, step=5)
        tracker.set_tags({"note": "logged during the outage"})
        tracker.finish("FINISHED")
        assert time.monotonic() - begin < 40  # today: 60 s of retries, then the writes are given up

        # Everything after the outage is in the fallback; the store still says RUNNING.
        lines = [json.loads(line) for line in (run_dir / METRICS_FALLBACK_FILE).read_text().splitlines()]
        assert [(m["key"], m["step"]) for m in lines] == [
            ("train/loss", 3),
            ("train/loss", 4),
            ("train/loss", 5),
            ("val/MPJPE", 5),
        ]
        state = json.loads((run_dir / FALLBACK_STATE_FILE).read_text())
        assert state["status"] == "FINISHED" and state["run_id"] == run_id
        direct = MlflowClient(f"sqlite:///{db}")  # read the server's database while it is down
        assert direct.get_run(run_id).info.status == "RUNNING"

        server = MlflowServer(db, port, tmp_path).start().wait_ready()  # back, same address, same store
        assert replay_main([str(run_dir)]) == 0

        client = MlflowClient(server.url)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run_id, "train/loss")
        assert [(m.step, m.value) for m in history] == [(s, 10.0 - s) for s in range(6)]
        assert run.data.metrics["val/MPJPE"] == 42.0
        assert run.data.tags["note"] == "logged during the outage"
        assert "final_metrics.json" in {a.path for a in client.list_artifacts(run_id)}
        assert not (
            run_dir / FALLBACK_STATE_FILE
        ).exists()  # renamed *.replayed*: a second replay sends nothing
        assert replay_main([str(run_dir)]) == 1
    finally:
        server.kill()
