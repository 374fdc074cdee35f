"""DataLoader worker processes as a user's run has them (data.num_workers >= 1): they start under every launcher's
process model, leave the stop signals to the main process, and take their settings from the config."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from romp_hydra.data.loader import build_train_loader, resolve_num_workers, worker_start_method
from romp_hydra.training.checkpointing import load_checkpoint
from tests.training.test_train import TINY

REPO_ROOT = Path(__file__).resolve().parents[2]
# One worker process (what the default data.num_workers=auto gives on 2 cores), not the in-process loading of
# the other tests and of the quickstart.
WITH_WORKERS = [option for option in TINY if not option.startswith("data.num_workers=")] + ["data.num_workers=1"]


def _first_batch_keys(cfg_yaml: str) -> list[str]:
    """Build the training loader from a config and read one batch (run inside a loky worker below)."""
    cfg = OmegaConf.create(cfg_yaml)
    loader = build_train_loader(cfg)
    assert loader.num_workers == 1
    return sorted(next(iter(loader)))


def test_workers_start_inside_a_joblib_loky_worker(compose_cfg):
    """hydra/launcher=joblib runs each job in a loky process, where the default multiprocessing context is loky's
    own; a DataLoader that does not name its context fails there ('Process' object has no attribute 'env')."""
    from joblib.externals.loky import get_reusable_executor

    cfg = compose_cfg([*WITH_WORKERS, "logger=none"])
    assert cfg.data.num_workers == 1
    needed = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("data", "dataset", "sampling", "trainer")}
    cfg_yaml = OmegaConf.to_yaml({**needed, "seed": cfg.seed})
    keys = get_reusable_executor(max_workers=1).submit(_first_batch_keys, cfg_yaml).result()  # joblib's pool
    assert "image" in keys and "skipped" in keys


def _start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)  # its own process group, as a batch job has


def _wait_for(process: subprocess.Popen, log_file: Path, text: str, timeout_s: float = 180) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline and process.poll() is None and not (
            log_file.is_file() and text in log_file.read_text()):
        time.sleep(0.3)
    if process.poll() is not None or not (log_file.is_file() and text in log_file.read_text()):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"never saw {text!r}:\n{process.communicate()[0][-3000:]}")


def test_sigterm_to_the_process_group_saves_and_stops_cleanly_then_kill_9_loses_nothing(tmp_path, shared_cache_dir):
    """What SLURM's scancel and most schedulers do: SIGTERM to every process of the job, workers included. The
    workers ignore it, the main process finishes its step, saves, closes the run as KILLED and exits 0.
    Then the resumed run is killed with SIGKILL (no handler runs): its checkpoint is still whole and loads."""
    run_dir = tmp_path / "run"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "romp_hydra.train", *WITH_WORKERS, "trainer.max_steps=100000",
           f"logger.tracking_uri={tracking_uri}", f"paths.cache_dir={shared_cache_dir}",
           f"paths.log_dir={tmp_path / 'logs'}", f"hydra.run.dir={run_dir}", "trainer.ckpt_every_steps=100000",
           "trainer.val_every_steps=100000", "trainer.val_at_start=false"]
    log_file = run_dir / "quickstart.log"
    process = _start(cmd)
    _wait_for(process, log_file, "step 5 ")
    workers = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) >= 2, "the run should have its DataLoader worker beside the main process"
    os.killpg(process.pid, signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output[-4000:]
    assert "killed by signal" not in output
    stopped_at = load_checkpoint(run_dir / "checkpoints" / "last.pt")["loop"]["step"]
    assert stopped_at >= 5
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("romp_hydra").experiment_id])
    assert [run.info.status for run in runs] == ["KILLED"]  # stopped on request: neither FAILED nor FINISHED

    resumed = _start([*cmd, f"resume={run_dir}", "trainer.ckpt_every_steps=2", "logger=none"])
    target = (stopped_at + 3 + 1) // 2 * 2  # a periodic save (every 2 steps) at least 3 steps after the resume
    _wait_for(resumed, log_file, f"saved checkpoint {run_dir / 'checkpoints' / 'last.pt'} (step {target})")
    os.killpg(resumed.pid, signal.SIGKILL)
    resumed.communicate(timeout=60)
    assert resumed.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")  # written atomically: never half a file
    assert ckpt["loop"]["step"] >= stopped_at + 2
    deadline = time.time() + 10  # the kernel reaps the killed worker shortly after
    while subprocess.run(["pgrep", "-g", str(resumed.pid)], capture_output=True).stdout and time.time() < deadline:
        time.sleep(0.2)
    assert not subprocess.run(["pgrep", "-g", str(resumed.pid)], capture_output=True).stdout  # no orphan worker


def test_a_worker_that_ignores_sigterm_still_stops_when_the_loader_ends_it(compose_cfg):
    """torch ends a stuck worker, and Python's exit ends daemon children, with terminate() and then waits: a worker
    ignoring SIGTERM must still go (a rank whose training raised hung at exit, waiting for its worker)."""
    loader = build_train_loader(compose_cfg([*WITH_WORKERS, "logger=none", "data.persistent_workers=false"]))
    iterator = torch.utils.data.DataLoader.__iter__(loader)  # torch's iterator, which owns the worker processes
    next(iterator)
    (worker,) = iterator._workers
    torch.utils.data._utils.signal_handling._remove_worker_pids(id(iterator))  # as torch's own shutdown does
    iterator._worker_pids_set = False
    worker._popen.terminate()  # what multiprocessing's exit handler calls for daemon children (then it joins)
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert worker.exitcode == -signal.SIGKILL


@pytest.mark.parametrize(("value", "cpus", "expected"), [("auto", 1, 0), ("auto", 2, 1), ("auto", 5, 4),
                                                          ("auto", 64, 8), (3, 64, 3), ("0", 64, 0)])
def test_auto_workers_leave_one_cpu_to_training_and_stop_at_8(value, cpus, expected):
    assert resolve_num_workers(value, cpus=cpus) == expected


def test_loader_settings_come_from_the_config(compose_cfg):
    cfg = compose_cfg([*WITH_WORKERS, "logger=none", "data.prefetch_factor=3", "data.persistent_workers=false",
                       "trainer.device=cpu", "data.pin_memory=auto"])
    loader = build_train_loader(cfg)
    assert (loader.num_workers, loader.prefetch_factor, loader.persistent_workers) == (1, 3, False)
    assert loader.pin_memory is False  # auto: only when training on CUDA
    assert loader.multiprocessing_context.get_start_method() == worker_start_method("auto") == "fork"
    default = compose_cfg(["logger=none"]).data
    assert (default.num_workers, default.pin_memory, default.persistent_workers) == ("auto", "auto", True)
    if torch.cuda.is_available():
        cuda = compose_cfg([*WITH_WORKERS, "logger=none", "trainer.device=cuda"])
        assert build_train_loader(cuda).pin_memory is True
