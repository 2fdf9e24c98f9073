"""Several processes per node under torchrun: launch checks, process group, global gathers.

The train stage runs ``python stages/train.py DATASET --processes N``. With N > 1 it checks the
request here (before any process starts) and re-executes itself under
``torch.distributed.run``; each process then finds RANK/WORLD_SIZE in its environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from salgl.errors import SalglError
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


def check_launch(nproc: int, batch_size: int, device: str, batch_key: str) -> None:
    """Refuse, before any process starts, a process count the machine or batch cannot take."""
    if nproc < 1:
        raise SalglError(f"nproc: must be at least 1, got {nproc}")
    use_cuda = device != "cpu" and torch.cuda.is_available()
    present = torch.cuda.device_count() if use_cuda else cpu_cores()
    what = "CUDA devices" if use_cuda else "CPU cores (no CUDA device)"
    if nproc > present:
        raise SalglError(f"nproc: {nproc} processes requested but only {present} {what} "
                         f"present; set nproc in params.yaml to at most {present}")
    if batch_size % nproc:
        raise SalglError(f"{batch_key}: the global batch {batch_size} is not divisible by "
                         f"nproc {nproc}; use a multiple of {nproc}")


def relaunch(nproc: int, argv: Sequence[str]) -> None:
    """Replace this process by torchrun running the same script with ``nproc`` processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


def init_from_env(device_setting: str) -> DistInfo:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU)."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistInfo()
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device_setting != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


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


def barrier() -> None:
    """Wait for every process (nothing to wait for in a single-process run)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
