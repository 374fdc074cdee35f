"""torch.distributed helpers on CPU/Gloo with 2 real processes: SLURM (submitit) init, stop votes, failing together."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import socket
import time
import traceback
from pathlib import Path

import torch
from torch import nn

from romp_hydra.training import distributed as D

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
               "TORCHELASTIC_ERROR_FILE", "SUBMITIT_EXECUTOR", "SUBMITIT_FOLDER")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(target, rank: int, env: dict, results) -> None:
    for key in LAUNCH_VARS:
        os.environ.pop(key, None)
    os.environ.update({key: value.format(rank=rank) for key, value in env.items()})
    torch.set_num_threads(1)

    def report(name, value):
        results.put((rank, "report", (name, value)))

    try:
        results.put((rank, "ok", target(rank, report), time.monotonic()))
    except BaseException as err:  # noqa: BLE001  (reported to the test)
        results.put((rank, type(err).__name__, f"{err}\n{traceback.format_exc()}", time.monotonic()))
        raise SystemExit(1) from None


def run_ranks(target, env: dict, world_size: int = 2, timeout_s: float = 60.0):
    """Run `target(rank, report)` in `world_size` spawned processes: ({rank: (status, value, time)}, reports)."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(target, r, env, results)) for r in range(world_size)]
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + timeout_s
    out, reports = {}, {r: {} for r in range(world_size)}
    while len(out) < world_size and time.monotonic() < deadline:
        try:
            rank, status, *value = results.get(timeout=0.5)
        except queue.Empty:
            continue
        if status == "report":
            reports[rank][value[0][0]] = value[0][1]
        else:
            out[rank] = (status, *value)
    for proc in procs:
        proc.join(timeout=max(deadline - time.monotonic(), 1))
        if proc.is_alive():
            proc.kill()
    assert len(out) == world_size, f"ranks did not all finish within {timeout_s} s: {out} {reports}"
    return out, reports


# -- two SLURM tasks: joining, agreeing on a stop, failing together --------------------------------------------------
# One pair of processes runs the three scenarios in turn (starting processes is the slow part).
def _slurm_rank(rank: int, report):
    assert D.launched_world_size() == 2  # what sweeps/jobs.py asks before any init
    info = D.init_distributed("cpu", timeout_s=60)
    value = torch.tensor([float(rank + 1)])
    torch.distributed.all_reduce(value)
    try:  # this torch's SyncBatchNorm refuses CPU tensors once a process group exists
        nn.SyncBatchNorm(4).train()(torch.randn(2, 4, 3, 3))
        sync_bn_on_cpu = "runs"
    except ValueError as err:
        sync_bn_on_cpu = "GPU" in str(err)
    report("init", (info.rank, info.world_size, info.local_rank, info.launcher, float(value),
                    os.environ["MASTER_ADDR"], sync_bn_on_cpu))

    # Hydra gave each rank its own directory; all adopt rank 0's, and rank 1's leftover is removed.
    own = Path(os.environ["TEST_TMP"]) / f"hydra_rank{rank}"
    (own / ".hydra").mkdir(parents=True)
    (own / "quickstart.log").write_text("")
    report("run_dir", (str(D.agree_on_run_dir(own, own, info)), own.exists()))

    vote = D.StopVote(info)
    report("votes", [vote.vote(local_stop=(rank == 1 and step >= 3)) for step in range(6)])
    vote.finish()

    report("failing", time.monotonic())
    with D.fail_together(info):
        torch.distributed.barrier()
        if rank == 1:
            raise ValueError("bad annotation in shard 1")
        torch.distributed.all_reduce(torch.ones(1))  # rank 0 waits here for a rank that is gone
    return "rank 0 should not get here"


def test_two_slurm_tasks_join_stop_together_and_fail_together(tmp_path):
    # What `srun` and submitit's sbatch script give each of 2 tasks on one node (no torchrun variables).
    env = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "1",
           "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "localhost", "SLURM_PROCID": "{rank}", "SLURM_LOCALID": "{rank}",
           "MASTER_PORT": str(free_port()), "TEST_TMP": str(tmp_path)}
    out, reports = run_ranks(_slurm_rank, env, timeout_s=50)
    for rank in range(2):
        assert reports[rank]["init"] == (rank, 2, rank, "submitit", 3.0, "localhost", True)
        # Rank 1 asks to stop at step 3; both learn it at step 4 (the vote completes during the next step).
        assert reports[rank]["votes"] == [False, False, False, False, True, True]
        assert reports[rank]["run_dir"] == (str(tmp_path / "hydra_rank0"), rank == 0)
    assert out[1][0] == "ValueError"
    assert out[0][0] == "PeerFailed"
    assert "rank 1: ValueError: bad annotation in shard 1" in out[0][1]
    # Far below the 60 s collective timeout: Gloo sees the closed connection of the rank that left.
    assert out[0][2] - reports[0]["failing"] < 20


def test_a_plain_process_is_not_distributed(monkeypatch):
    for key in LAUNCH_VARS:
        monkeypatch.delenv(key, raising=False)
    assert D.launched_world_size() == 1
    info = D.init_distributed("cpu")
    assert not info.enabled and info.is_main and D.broadcast_object({"a": 1}, info) == {"a": 1}


# -- SyncBatchNorm ----------------------------------------------------------------------------------------------------
def test_sync_batchnorm_conversion_keeps_every_weight_and_buffer():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Sequential(nn.BatchNorm2d(4)))
    for bn in (net[1], net[3][0]):
        bn.running_mean.uniform_()
        bn.weight.data.uniform_()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    converted = D.convert_sync_batchnorm(net)
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in converted.modules()) == 2
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())
    after = converted.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_sync_batchnorm_on_cpu_keeps_batchnorm_with_a_warning(caplog, monkeypatch):
    # torch's SyncBatchNorm refuses CPU tensors (checked above), so a CPU/Gloo run keeps per-rank statistics.
    monkeypatch.setattr(nn.parallel, "DistributedDataParallel", lambda module, **_: module)  # needs a group
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with caplog.at_level(logging.WARNING):
        kept = D.wrap_network(net, D.DistInfo(rank=0, world_size=2), torch.device("cpu"), sync_batchnorm=True)
    assert "sync_batchnorm=true needs CUDA" in caplog.text
    assert any(type(m) is nn.BatchNorm2d for m in kept.modules())


def test_the_log_states_the_global_batch():
    text = D.describe_batch(8, D.DistInfo(rank=0, world_size=4), accumulate_steps=2)
    assert text.startswith("global batch 64 samples per optimiser step (data.batch_size=8 per rank x 4 rank(s) x "
                           "trainer.accumulate_steps=2)")


def test_the_slurm_launcher_starts_one_task_per_gpu_on_every_node(compose_cfg, tmp_path):
    from submitit.slurm.slurm import _make_sbatch_string

    cfg = compose_cfg(["hydra/launcher=slurm", "hydra.launcher.nodes=2", "hydra.launcher.tasks_per_node=4",
                       "hydra.launcher.gpus_per_node=4", "experiment=quickstart"])
    launcher = cfg.hydra.launcher
    # The sbatch script submitit writes from these keys (hydra-submitit-launcher passes them through by name).
    script = _make_sbatch_string(command="python -m submitit.core._submit", folder=tmp_path, nodes=launcher.nodes,
                                 ntasks_per_node=launcher.tasks_per_node, gpus_per_node=launcher.gpus_per_node,
                                 setup=list(launcher.setup))
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "export SLURM_KILL_BAD_EXIT=1"):
        assert line in script
