"""Several processes under torchrun, on one node or several: launch checks, the process
group and its timeout, global gathers, and a lost peer as one line.

The train stage runs ``python stages/train.py DATASET --processes N``. With N > 1 it checks the
request here (before any process starts) and re-executes itself under
``torch.distributed.run``; each process then finds RANK/WORLD_SIZE in its environment. On
several nodes the user starts torchrun on each node (README, "Several GPUs and nodes"): the
command then finds itself under torchrun and never re-executes, and each node checks its own
processes against its own devices.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from salgl.errors import SalglError, printable, shown
from salgl.runtime import cpu_cores


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def _devices_present(device: str) -> tuple[int, str]:
    """How many processes this node can take (CUDA devices, else CPU cores), and what."""
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.device_count(), "CUDA devices"
    return cpu_cores(), "CPU cores (no CUDA device)"


def check_launch(nproc: int, batch_size: int, device: str, batch_key: str) -> None:
    """Refuse, before any process starts, a process count the machine or batch cannot take."""
    if nproc < 1:
        raise SalglError(f"nproc: must be at least 1, got {nproc}")
    present, what = _devices_present(device)
    if nproc > present:
        raise SalglError(f"nproc: {nproc} processes requested but only {present} {what} "
                         f"present on this node; set nproc in params.yaml to at most {present}")
    if batch_size % nproc:
        raise SalglError(f"{batch_key}: the global batch {batch_size} is not divisible by "
                         f"nproc {nproc}; use a multiple of {nproc}")


def check_node(processes: int, batch_size: int, device: str, batch_key: str) -> None:
    """Under torchrun (one node or several): ``--processes`` agrees with the processes torchrun
    started on this node, which this node's devices can take, and the global batch divides
    by every node's processes together."""
    local, world = int(os.environ.get("LOCAL_WORLD_SIZE", "1")), int(os.environ["WORLD_SIZE"])
    if processes not in (1, local):
        raise SalglError(f"--processes: {processes}, but torchrun started {local} process(es) "
                         "on this node (its --nproc-per-node); leave --processes out under "
                         "torchrun")
    present, what = _devices_present(device)
    if local > present:
        raise SalglError(f"torchrun --nproc-per-node: {local} processes requested but only "
                         f"{present} {what} present on this node; start at most {present} "
                         "processes on this node")
    if batch_size % world:
        raise SalglError(f"{batch_key}: the global batch {batch_size} is not divisible by "
                         f"the {world} processes of all nodes; use a multiple of {world}")


def relaunch(nproc: int, argv: Sequence[str]) -> None:
    """Replace this process by torchrun running the same script with ``nproc`` processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


# How long any collective (joining, a gather, a barrier, DDP's gradient sum) may wait for
# the other processes before this one gives up: a peer on a dead or frozen node then ends
# every other node within this time instead of never. Rank 0 alone writes the resume state
# and the model file while the others wait at a barrier, so it must exceed that write.
TIMEOUT_VARIABLE = "SALGL_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600
MAX_TIMEOUT_S = 7 * 24 * 3600


def collective_timeout() -> timedelta:
    """``SALGL_DIST_TIMEOUT`` seconds (default 600, ten minutes)."""
    raw = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 1 <= seconds <= MAX_TIMEOUT_S:  # also NaN
        raise SalglError(f"{TIMEOUT_VARIABLE}: {shown(raw)} is not a number of seconds from "
                         f"1 to {MAX_TIMEOUT_S}")
    return timedelta(seconds=seconds)


def init_from_env(device_setting: str) -> DistInfo:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU), with the
    collective timeout of ``SALGL_DIST_TIMEOUT``."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistInfo()
    timeout = collective_timeout()
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device_setting != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timeout)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


# What a collective raises when another process is gone: gloo names its own source file
# first ("[.../gloo/transport/tcp/pair.cc:545] Read error [10.0.0.2]:41234: Connection reset
# by peer", "[.../unbound_buffer.cc:78] Timed out waiting 600000ms for recv operation to
# complete"); the store and NCCL raise the distributed error types.
_LOST = re.compile(r"/gloo/|connection (closed|reset|refused)|broken pipe|timed out waiting",
                   re.IGNORECASE)


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another process is gone or silent
    (not a bug in this one): only in a run of several processes."""
    if not under_torchrun() or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return False
    if isinstance(error, dist.DistError):  # backend (NCCL), network and store errors
        return True
    return isinstance(error, RuntimeError) and bool(_LOST.search(str(error)))


def lost_peer_line(error: BaseException, state_dir: Path | None = None) -> str:
    """One line for a surviving process: where it runs, what it saw, how to go on."""
    env = os.environ
    where = (f"this is rank {env.get('RANK', '?')} of {env.get('WORLD_SIZE', '?')}, node "
             f"{env.get('GROUP_RANK', '?')} of {env.get('GROUP_WORLD_SIZE', '?')}")
    lines = str(error).strip().splitlines() or [type(error).__name__]
    cause = re.sub(r"^\[[^\]]*\]\s*", "", lines[0])  # gloo's "[file.cc:line] " prefix
    cause = cause.split(". This is typically", 1)[0]  # gloo's advice to read the other logs
    state = f" in {state_dir}" if state_dir is not None else ""
    return (f"lost another training process ({where}): {printable(cause, 200)}; rerun every "
            f"node to resume from the last saved epoch{state} (collectives wait at most "
            f"{collective_timeout().total_seconds():g} s: {TIMEOUT_VARIABLE})")


@contextmanager
def lost_peers_as_error(state_dir: Path | None = None) -> Iterator[None]:
    """Turn a collective's failure on a lost peer into a SalglError: the command line then
    prints one line and exits with 2 instead of a traceback; other errors pass unchanged.
    The process group is destroyed first: a gloo group left with a receive still waiting
    aborts the interpreter at exit (SIGABRT) instead of letting it exit with 2."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, SalglError) or not lost_peer(exc):
            raise
        line = lost_peer_line(exc, state_dir)
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # a group half gone may refuse; the line matters more
                pass
        raise SalglError(line) from exc


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows in rank order; this rank's rows keep their gradient."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[dist.get_rank()] = tensor
    return torch.cat(parts)


def gather_scene_batch(probs: torch.Tensor, targets: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The co-occurrence update's view of the global batch (method.md step 4)."""
    return gather_rows(probs), gather_rows(targets)


def broadcast_state(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s weights and buffers into every rank's ``module``."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src)


def gather_predictions(scores: torch.Tensor, indices: torch.Tensor, total: int,
                       device: torch.device) -> torch.Tensor:
    """Every rank's shard of a split's scores, back in dataset order (sampler padding
    dropped): ``indices`` are each row's dataset index."""
    all_scores = gather_rows(scores.to(device)).cpu()
    all_indices = gather_rows(indices.to(device)).cpu()
    ordered = torch.empty(total, scores.shape[1], dtype=scores.dtype)
    ordered[all_indices] = all_scores
    return ordered


def gather_ints(value: int, device: torch.device) -> list[int]:
    """Every rank's ``value``, in rank order (``[value]`` in a single-process run)."""
    return gather_rows(torch.tensor([value], dtype=torch.int64, device=device)).tolist()


def barrier() -> None:
    """Wait for every process (nothing to wait for in a single-process run)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
