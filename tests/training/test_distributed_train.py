"""2-rank DDP training on CPU/Gloo through torchrun, as a user runs it (issue 13).

Each torchrun launch costs seconds of process start-up on a small CPU, so every launch checks as much as it can.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from romp_hydra.data.sources.synthetic import SyntheticSolo
from romp_hydra.training.checkpointing import load_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]

# The quickstart recipe at test size (64 px, batch 2 per rank, a few images), with the user's loader settings
# (one worker per rank) and ROMP's own matching (nearest_center): at initialisation no centre passes the
# threshold, so the first steps match nobody and DDP must still see a gradient for every head.
TINY_DDP = [
    "experiment=quickstart",
    "model.matching=nearest_center",
    "data.input_size=64",
    "data.centermap_size=8",
    "data.max_person=8",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "model.head_channels=16",
    "sampling.epoch_samples=64",
    "dataset.members.synth_solo.num_samples=8",
    "dataset.members.synth_crowd.num_samples=8",
    "dataset.members.synth_solo.image_size_range=[96,128]",
    "dataset.members.synth_crowd.image_size_range=[96,128]",
    "val.dataset.members.synth_solo.num_samples=2",
    "val.dataset.members.synth_crowd.num_samples=2",
    "val.dataset.members.synth_solo.image_size_range=[96,128]",
    "val.dataset.members.synth_crowd.image_size_range=[96,128]",
    "val.num_pictures=1",
    "trainer.val_at_start=false",
    "trainer.log_every_steps=1",
    "trainer.vis_every_steps=3",
    "trainer.val_every_steps=3",
    "trainer.ckpt_every_steps=2",
]


class RankOneCrashes(SyntheticSolo):
    """A user's dataset with a bug that only one rank's shard reaches."""

    calls = 0

    def get_image_info(self, index: int):
        RankOneCrashes.calls += 1
        if os.environ.get("RANK") == "1" and RankOneCrashes.calls > 6:
            raise RuntimeError(f"corrupt record {index} in shard 1")
        return super().get_image_info(index)


def torchrun(tmp_path: Path, cache: Path, *overrides: str, nproc: int = 2) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "romp_hydra.train", *TINY_DDP, f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={cache}",
               "logger=mlflow", f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", *overrides]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def finish(process: subprocess.Popen, timeout: float) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"torchrun still running after {timeout} s:\n{output[-4000:]}")
    return output


def mlflow_runs(tmp_path: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "logs" / "quickstart" / "runs").iterdir() if p.is_dir())


def test_two_ranks_train_validate_get_killed_resume_and_finish(tmp_path, shared_cache_dir):
    # 1. Train with validation and checkpoints until a SIGTERM reaches every process (Ctrl-C or a cluster's
    #    group signal): the ranks agree on a step, rank 0 saves, the run is KILLED.
    process = torchrun(tmp_path, shared_cache_dir, "trainer.max_steps=1000")
    deadline = time.monotonic() + 240
    log_text = ""
    while time.monotonic() < deadline and process.poll() is None:
        logs = list((tmp_path / "logs").rglob("quickstart.log"))
        log_text = "\n".join(p.read_text() for p in logs)
        if "validation at step 3" in log_text:
            break
        time.sleep(0.3)
    assert process.poll() is None, finish(process, 10)[-4000:]
    os.killpg(process.pid, signal.SIGTERM)
    output = finish(process, 90)
    (run_dir,) = run_dirs(tmp_path)  # the ranks agreed on rank 0's directory
    killed = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    stopped_at = killed["loop"]["step"]
    assert stopped_at >= 3, output[-4000:]
    assert killed["sampler"]["position"] == (stopped_at * 2 * 2) % 64  # 2 ranks x batch 2 per step
    assert killed["sampler"]["world_size"] == 2
    log_text = (run_dir / "quickstart.log").read_text()
    assert "global batch 4 samples per optimiser step (data.batch_size=2 per rank x 2 rank(s))" in log_text
    assert "validation at step 3" in log_text
    assert list((run_dir / "pictures" / "train").glob("*.jpg")) and list((run_dir / "pictures" / "val").glob("*.jpg"))
    (run,) = mlflow_runs(tmp_path)
    assert run.info.status == "KILLED"

    # 2. Resume on 2 ranks and finish: the same run directory and MLflow run, FINISHED.
    process = torchrun(tmp_path, shared_cache_dir, f"resume={run_dir}", f"trainer.max_steps={stopped_at + 2}")
    output = finish(process, 240)
    assert process.returncode == 0, output[-4000:]
    # As in a 1-process resume, rank 0's Hydra directory of the new command holds its config; rank 1's is gone.
    (new_dir,) = set(run_dirs(tmp_path)) - {run_dir}
    assert not (new_dir / "checkpoints").exists()
    final = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert final["loop"]["step"] == stopped_at + 2
    assert final["loop"]["last_val"]["step"] == stopped_at + 2  # the final validation ran on rank 0
    (run,) = mlflow_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert f"resumed at step {stopped_at}" in (run_dir / "quickstart.log").read_text()


def test_one_rank_failing_ends_the_job_with_its_message_and_a_failed_run(tmp_path, shared_cache_dir):
    start = time.monotonic()
    process = torchrun(tmp_path, shared_cache_dir, "trainer.max_steps=1000",
                       f"dataset.members.synth_solo._target_={__name__.split('.')[-1]}.RankOneCrashes")
    output = finish(process, 240)
    elapsed = time.monotonic() - start
    assert process.returncode != 0
    assert "corrupt record" in output and "in shard 1" in output
    (run,) = mlflow_runs(tmp_path)
    assert run.info.status == "FAILED"
    assert "rank 1: " in run.data.tags.get("failure", ""), run.data.tags
    assert elapsed < 240
