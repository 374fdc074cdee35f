"""What a user sees in the MLflow UI after a sweep, read through a real `mlflow server`'s REST API (issue
17): the experiment opens as model training, the sweep is one parent named after its swept key, its jobs are
named by what
differs between them, and the params that differ are the mixture weights (the UI's compare view plots them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request

from tests.tracking.server import MlflowServer, free_port

REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
# The README's sweep, two jobs and tiny: 2 steps on 32 images, 16 validation images. DataLoader settings are
# the quickstart's own (one worker process).
TINY_SWEEP = [
    "experiment=quickstart",
    "sampling.weights.synth_crowd=0.2,0.8",
    "sampling.normalize=true",
    "trainer.max_steps=2",
    "sampling.epoch_samples=32",
    "dataset.members.synth_solo.num_samples=32",
    "dataset.members.synth_crowd.num_samples=32",
    "val.dataset.members.synth_solo.num_samples=8",
    "val.dataset.members.synth_crowd.num_samples=8",
    "data.batch_size=4",
    "data.val_batch_size=8",
]


def rest(server: MlflowServer, endpoint: str, body: dict | None = None, **query: str) -> dict:
    url = f"{server.url}/api/2.0/mlflow/{endpoint}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def by_key(items: list[dict]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in items}


def test_sweep_store_read_back_through_the_rest_api(empty_store_template, tmp_path):
    db = tmp_path / "mlflow.db"
    shutil.copyfile(empty_store_template, db)
    server = MlflowServer(db, free_port(), tmp_path).start()  # starts while the sweep trains
    try:
        sweep = subprocess.run(
            [
                sys.executable,
                "-m",
                "romp_hydra.train",
                "-m",
                *TINY_SWEEP,
                f"logger.tracking_uri=sqlite:///{db}",
                f"hydra.sweep.dir={tmp_path / 'sweep'}",
                f"paths.log_dir={tmp_path / 'logs'}",
                f"paths.cache_dir={tmp_path / 'cache'}",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            check=False,
        )
        assert sweep.returncode == 0, sweep.stderr[-3000:]
        server.wait_ready()

        experiment = rest(server, "experiments/get-by-name", experiment_name="romp_hydra")["experiment"]
        assert by_key(experiment["tags"])["mlflow.experimentKind"] == "custom_model_development"
        runs = rest(
            server, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 50}
        )
        runs = runs["runs"]
        assert len(runs) == 3
        parents = [run for run in runs if by_key(run["data"]["tags"]).get("sweep.is_parent") == "true"]
        assert len(parents) == 1
        parent = parents[0]
        assert parent["info"]["run_name"] == "quickstart-sweep-synth_crowd"
        assert parent["info"]["status"] == "FINISHED"

        children = [run for run in runs if run is not parent]
        for child in children:
            tags = by_key(child["data"]["tags"])
            assert tags["mlflow.parentRunId"] == parent["info"]["run_id"]
            assert child["info"]["status"] == "FINISHED"
            weight = tags["hydra.overrides"].split("sampling.weights.synth_crowd=")[1].split()[0]
            assert child["info"]["run_name"] == f"synth_crowd={weight}"  # the full list stays in the tag
            assert "experiment=quickstart" in tags["hydra.overrides"]
            params = by_key(child["data"]["params"])
            assert params["sampling.weights.synth_crowd"] == weight  # as given; mixture.*: as drawn
            assert abs(float(params["mixture.synth_crowd"]) + float(params["mixture.synth_solo"]) - 1) < 1e-5
            metrics = [metric["key"] for metric in child["data"]["metrics"]]
            assert {"val/mpjpe", "val/pa_mpjpe", "best/val/mpjpe"} <= set(metrics)
            # The compare view plots the first metric the run holds: the validation at start comes first.
            assert metrics[0].startswith("val/")
        assert sorted(child["info"]["run_name"] for child in children) == [
            "synth_crowd=0.2",
            "synth_crowd=0.8",
        ]

        # The compare view's parallel-coordinates plot starts on the first 3 differing params, sorted: the
        # normalised mixture weights come first.
        first, second = (by_key(child["data"]["params"]) for child in children)
        differing = sorted(key for key in first.keys() | second.keys() if first.get(key) != second.get(key))
        assert differing == ["mixture.synth_crowd", "mixture.synth_solo", "sampling.weights.synth_crowd"]
    finally:
        server.kill()
