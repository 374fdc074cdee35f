"""torch.distributed for training: join the process group, wrap the network, agree, and fail together.

Launchers (docs/distributed.md):
* `torchrun --nproc_per_node=N [--nnodes=M --rdzv_backend=c10d --rdzv_endpoint=host:port] -m romp_hydra.train ...`
  sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT.
* `hydra/launcher=slurm hydra.launcher.tasks_per_node=N hydra.launcher.nodes=M` starts one SLURM task per GPU
  through submitit; the same variables are derived from the SLURM allocation (submitit's `JobEnvironment`).
Gloo on CPU, NCCL on CUDA. Rank 0 writes every output and talks to the tracker.

Failing together: the rank that raises records its error in the job's key-value store and exits non-zero. Its peers
then fail in their next collective (Gloo notices a closed connection at once; NCCL within `timeout_s`), and report
the failed rank's message instead of a bare "Connection closed by peer". torchrun (and `srun --kill-on-bad-exit`,
set in conf/hydra/launcher/slurm.yaml) end every other rank once one exits non-zero.
"""
from __future__ import annotations

import datetime
import logging
import os
import shutil
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

# Collectives (and joining) wait at most this long for a missing rank before raising.
DEFAULT_TIMEOUT_S = 1800.0
# Key under which the first failing rank leaves its message for the others.
FAILURE_KEY = "romp_hydra/first_failure"


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "none"  # none | torchrun | submitit
    # CPU (Gloo) group for small control messages (stop votes), so they never sync a CUDA stream.
    control_group: Any = field(default=None, compare=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _submitit_job_environment():
    """submitit's JobEnvironment when this process is a task of a submitit job, else None."""
    if "SUBMITIT_EXECUTOR" not in os.environ and "SUBMITIT_FOLDER" not in os.environ:
        return None
    try:
        import submitit

        return submitit.JobEnvironment()
    except Exception:  # noqa: BLE001  (not a submitit job after all, or submitit missing)
        return None


def launched_world_size() -> int:
    """How many ranks the launcher started (1 for a plain `python -m romp_hydra.train`), before any init."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    job_env = _submitit_job_environment()
    return int(job_env.num_tasks) if job_env is not None else 1


def _export_slurm_environment() -> bool:
    """Under a multi-task submitit job, set the env:// variables from the SLURM allocation. True if it did."""
    if "WORLD_SIZE" in os.environ:
        return False
    job_env = _submitit_job_environment()
    if job_env is None or job_env.num_tasks <= 1:
        return False
    from submitit.helpers import TorchDistributedEnvironment

    # The master port is MASTER_PORT if set, else drawn from the job id (jobs of an array never collide). Every
    # task keeps all of the node's GPUs visible and takes cuda:<local rank>.
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return True


def init_distributed(device_type: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistInfo:
    """Join the process group when a launcher started several ranks (NCCL on CUDA, Gloo on CPU); no-op otherwise.

    `timeout_s` bounds the wait for missing ranks, when joining and in every later collective.
    """
    launcher = "submitit" if _export_slurm_environment() else "torchrun"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    timeout = datetime.timedelta(seconds=float(timeout_s))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", timeout=timeout)
    control = dist.new_group(backend="gloo", timeout=timeout) if dist.get_backend() != "gloo" else None
    info = DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, launcher=launcher,
                    control_group=control)
    log.info("joined the process group: rank %d of %d (local rank %d, %s, launched by %s, timeout %.0f s)",
             rank, world_size, local_rank, dist.get_backend(), launcher, timeout_s)
    return info


def cleanup_distributed(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


# -- the network ----------------------------------------------------------------------------------------------------
def unwrap(net: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (what is saved, validated and drawn)."""
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net


def wrap_network(net: nn.Module, info: DistInfo, device: torch.device, sync_batchnorm: bool = False) -> nn.Module:
    """DistributedDataParallel around `net` under several ranks (SyncBatchNorm first when asked); `net` otherwise.

    Every parameter gets a gradient on every step (the model keeps all heads in the graph when nothing is
    matched), so unused-parameter search stays off.
    """
    if not info.enabled:
        if sync_batchnorm:
            log.info("trainer.sync_batchnorm=true has no effect with a single process")
        return net
    if sync_batchnorm:
        if device.type != "cuda":
            # torch's SyncBatchNorm runs on GPUs only ("expected input tensor to be on GPU"); on CPU every rank
            # keeps its own batch statistics.
            log.warning("trainer.sync_batchnorm=true needs CUDA (torch's SyncBatchNorm does not run on %s); "
                        "keeping per-rank BatchNorm statistics", device.type)
        else:
            net = convert_sync_batchnorm(net)
    return nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False)


def convert_sync_batchnorm(net: nn.Module) -> nn.Module:
    """ROMP's conversion under DDP: every BatchNorm computes its statistics over the global batch.

    Parameters and buffers keep their names and values, so checkpoints load either way.
    """
    count = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    log.info("%d BatchNorm layers converted to SyncBatchNorm (statistics over the global batch)", count)
    return net


def describe_batch(per_rank: int, info: DistInfo, accumulate_steps: int = 1) -> str:
    """The global batch of one optimiser step and how it is made, for the log at start."""
    total = per_rank * info.world_size * accumulate_steps
    parts = f"data.batch_size={per_rank} per rank x {info.world_size} rank(s)"
    if accumulate_steps > 1:
        parts += f" x trainer.accumulate_steps={accumulate_steps}"
    return (f"global batch {total} samples per optimiser step ({parts}); gradients are averaged over ranks, so "
            f"this matches one process with data.batch_size={per_rank * info.world_size}")


# -- agreeing ---------------------------------------------------------------------------------------------------------
def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every rank (any picklable value)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=info.control_group)
    return box[0]


def agree_on_run_dir(hydra_dir: Path, run_dir: Path, info: DistInfo) -> Path:
    """Rank 0's run directory on every rank.

    Every rank composes the config, and Hydra gives each its own timestamped directory (`hydra_dir`); only rank 0's
    run directory is used. Another rank's Hydra directory is removed when it holds nothing but what Hydra wrote
    (its config copy and log), and that rank stops logging into it.
    """
    agreed = Path(broadcast_object(str(run_dir), info))
    if not info.enabled or info.is_main:
        return agreed
    # Only rank 0 writes the log (SLURM tasks of one job even share Hydra's directory and log file).
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent in (hydra_dir, agreed):
            root.removeHandler(handler)
            handler.close()
    if hydra_dir.is_dir() and hydra_dir.resolve() != agreed.resolve() and all(
            entry.name == ".hydra" or entry.suffix == ".log" for entry in hydra_dir.iterdir()):
        shutil.rmtree(hydra_dir, ignore_errors=True)
    return agreed


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier(group=info.control_group)


def _group_for(value: torch.Tensor, info: DistInfo):
    """CPU tensors go over the Gloo control group (NCCL only reduces CUDA tensors)."""
    return info.control_group if value.device.type == "cpu" else None


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM, group=_group_for(value, info))
    return value / info.world_size


def all_ranks_finite(finite: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The on-device flag "this step is finite on every rank" (an asynchronous reduction: no host sync)."""
    if not info.enabled:
        return finite
    flag = finite.to(torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return flag.bool()


class StopVote:
    """Makes every rank stop at the same optimiser step when any of them received a stop signal.

    `vote(local)` posts this rank's wish and returns the agreed decision of the previous step's votes: the
    all-reduce runs on the CPU group in the background during the next step, so the decision costs no wait.
    A signal therefore stops the job one step later than a single process would.
    """

    def __init__(self, info: DistInfo):
        self.info = info
        self._pending: tuple[Any, torch.Tensor] | None = None

    def vote(self, local_stop: bool) -> bool:
        if not self.info.enabled:
            return local_stop
        decided = False
        if self._pending is not None:
            work, flag = self._pending
            work.wait()
            decided = bool(flag.item() > 0)
        flag = torch.tensor([1 if local_stop else 0], dtype=torch.int32)
        self._pending = (dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.info.control_group,
                                         async_op=True), flag)
        return decided

    def finish(self) -> None:
        """Complete the vote still in flight (every rank must, before the next collective)."""
        if self._pending is not None:
            self._pending[0].wait()
            self._pending = None


# -- failing together -------------------------------------------------------------------------------------------------
def _store():
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except Exception:  # noqa: BLE001
        return None


def first_failure() -> str | None:
    """The message the first failing rank left in the store, if any (never blocks)."""
    store = _store()
    if store is None:
        return None
    try:
        if store.check([FAILURE_KEY]):
            return store.get(FAILURE_KEY).decode(errors="replace")
    except Exception:  # noqa: BLE001  (the store's host may be gone too)
        return None
    return None


class PeerFailed(RuntimeError):
    """Another rank failed first; this rank stops with that rank's message."""


@contextmanager
def fail_together(info: DistInfo) -> Iterator[None]:
    """Run the training of one rank so that an error anywhere ends all ranks, each naming the rank that failed."""
    try:
        yield
    except BaseException as err:
        if not info.enabled or isinstance(err, (SystemExit, PeerFailed)):
            raise
        earlier = first_failure()
        if earlier is not None and not earlier.startswith(f"rank {info.rank}:"):
            log.error("stopping rank %d because %s", info.rank, earlier)
            raise PeerFailed(f"{earlier} (rank {info.rank} stopped with: {type(err).__name__}: {err})") from err
        message = f"rank {info.rank}: {type(err).__name__}: {err}"
        store = _store()
        if store is not None:
            try:
                store.compare_set(FAILURE_KEY, "", message)
            except Exception as store_err:  # noqa: BLE001  (the store's host may be gone)
                log.debug("could not leave the failure message in the store: %s", store_err)
        _record_for_torchrun(err)
        log.error("rank %d of %d failed; the other ranks stop at their next collective:\n%s", info.rank,
                  info.world_size, "".join(traceback.format_exception(err)))
        raise


def exit_failed_rank(info: DistInfo) -> None:
    """End a failed rank of a distributed job now, with status 1 (its error is already logged).

    A normal interpreter exit could wait on a peer that is gone or on a DataLoader worker; leaving at once closes
    this rank's connections, so the other ranks fail in their next collective instead of at the timeout.
    """
    log.error("rank %d of %d exits with status 1", info.rank, info.world_size)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _record_for_torchrun(err: BaseException) -> None:
    """Write torchrun's error file, so its summary shows this rank's exception rather than '<N/A>'."""
    if "TORCHELASTIC_ERROR_FILE" not in os.environ or not isinstance(err, Exception):
        return
    try:
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(err)
    except Exception as record_err:  # noqa: BLE001
        log.debug("could not write torchrun's error file: %s", record_err)
