"""The resume state of a training run: its file format and the save / resume / finish steps.

After every epoch the whole training state (model, EMA, the selected epoch's weights,
optimiser, scheduler, counters) goes to ``STATE_DIR/last.safetensors`` under a fingerprint of
the settings and data; a rerun with the same fingerprint continues from the next epoch. Tensors
are stored with safetensors and everything else as JSON metadata, so nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from salgl.atomic import atomic_path, write_text
from salgl.checkpoint import contiguous_copy
from salgl.distributed import gather_ints
from salgl.errors import SalglError
from salgl.output_rules import STATE_NOTES, check_dir_output, remove_own

log = logging.getLogger(__name__)

STATE_FILE = "last.safetensors"
LIVE_STAGING = "live"  # DVCLive logs here, published to the live folder after each epoch
STATE_NOTE = STATE_NOTES[0]  # README.txt: keeps the folder, a DVC output, in every clone


# ----------------------------------------------------------------------------- file format


def flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into named tensors and JSON-able structure."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], structure: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entry in structure.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
              for g in structure["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_state(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Resume state: tensors in safetensors, everything else as JSON metadata."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(contiguous_copy(tensors), str(tmp), metadata={"state": json.dumps(meta)})


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """Resume state, or None when absent or unreadable (a fresh start is then safe)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["state"])
        return load_file(str(path)), meta
    except Exception:
        return None


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    start = prefix + "."
    return {k[len(start):]: v for k, v in state.items() if k.startswith(start)}


@torch.no_grad()
def match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give loaded optimiser state the memory layout of its parameter.

    State read from a file is contiguous, while a channels-last weight's moments were created
    channels-last. The fused AdamW kernel then takes another code path with other rounding
    (about 1e-5 after one epoch, growing from there), so a resumed run would drift from an
    unbroken one. Copying each moment into a tensor laid out like its parameter keeps every
    step bitwise the same.
    """
    for param, state in optimizer.state.items():
        for name, value in state.items():
            if (torch.is_tensor(value) and value.shape == param.shape
                    and value.stride() != param.stride()):
                state[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def starting_points(starts: list[int]) -> str:
    """Where each rank would go on (-1: from the start), grouped: "rank 0 from epoch 3,
    ranks 1, 2 from the start"."""
    groups: dict[int, list[str]] = {}
    for rank, start in enumerate(starts):
        groups.setdefault(start, []).append(str(rank))
    return ", ".join(f"rank{'s' if len(ranks) > 1 else ''} {', '.join(ranks)} from "
                     f"{'the start' if start < 0 else f'epoch {start + 1}'}"
                     for start, ranks in groups.items())


# ----------------------------------------------------------------------------- the steps


@dataclass
class TrainingState:
    """What a resumed run must get back, as live objects (the EMA only on rank 0)."""

    model: torch.nn.Module
    ema: Any  # salgl.ema.ModelEma | None
    optimizer: torch.optim.Optimizer
    scheduler: Any  # torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    selection: Any  # salgl.selection.Selection


class ResumeState:
    """The resume-state folder of one run: ``prepare`` it, ``save`` after each epoch,
    ``resume`` at start, ``finish`` when the model file is written."""

    def __init__(self, state_dir: Path, fingerprint: str):
        self.dir, self.fingerprint = Path(state_dir), fingerprint
        self.file = self.dir / STATE_FILE
        self.live_staging = self.dir / LIVE_STAGING

    def prepare(self) -> None:
        """The note that keeps the folder, minus temporary files a killed write left. The
        folder must hold nothing but what salgl writes there (the command line checks it
        before any work; checked again here for callers that train directly)."""
        check_dir_output(self.dir, "state")
        remove_own(self.dir, "state", leftovers_only=True)
        note = self.dir / "README.txt"
        if not note.is_file() or note.read_text(encoding="utf-8") != STATE_NOTE:
            write_text(note, STATE_NOTE)  # absent, or an earlier version's note

    def save(self, epoch: int, state: TrainingState) -> None:
        """Everything needed to continue after ``epoch`` (rank 0 calls it: it holds the EMA)."""
        opt_tensors, opt_structure = flatten_optimizer(state.optimizer.state_dict())
        tensors = {**prefixed(state.model.state_dict(), "model"),
                   **prefixed(state.ema.state_dict(), "ema"), **opt_tensors}
        selection = state.selection
        if selection.best_state is not None:
            tensors.update(prefixed(selection.best_state, "best"))
        meta = {"fingerprint": self.fingerprint, "epoch": epoch, **selection.counters(),
                "optimizer": opt_structure, "scheduler": state.scheduler.state_dict(),
                "scaler": state.scaler.state_dict() if state.scaler.is_enabled() else None}
        save_state(self.file, tensors, meta)

    def resume(self, state: TrainingState, device: torch.device) -> int | None:
        """Load the saved state into ``state``; the epoch to continue from, or None when there
        is nothing to resume (no file, an unreadable one, or another run's). Every process
        reads the file rank 0 wrote; with several they must agree where they continue."""
        start = self._load(state, device)
        starts = gather_ints(-1 if start is None else start, device)
        if len(set(starts)) > 1:
            raise SalglError(f"{self.dir}: the training processes disagree on where to go on "
                             f"({starting_points(starts)}); every node must see this same "
                             "state folder (shared storage) with the same settings and data")
        return start

    def _load(self, state: TrainingState, device: torch.device) -> int | None:
        loaded = load_state(self.file)
        if loaded is None:
            return None
        tensors, meta = loaded
        if meta.get("fingerprint") != self.fingerprint:
            log.info("resume state belongs to other settings or data; starting fresh")
            return None
        state.model.load_state_dict(unprefixed(tensors, "model"))
        if state.ema is not None:
            state.ema.load_state_dict(unprefixed(tensors, "ema"))
        state.selection.load_counters(meta, unprefixed(tensors, "best") or None)
        state.optimizer.load_state_dict(unflatten_optimizer(
            {k: v.to(device) for k, v in tensors.items() if k.startswith("optimizer.")},
            meta["optimizer"]))
        match_param_layout(state.optimizer)
        state.scheduler.load_state_dict(meta["scheduler"])
        if meta.get("scaler") and state.scaler.is_enabled():
            state.scaler.load_state_dict(meta["scaler"])
        return meta["epoch"] + 1

    def finish(self) -> None:
        """A finished run leaves no resume state and no staged curves; only what salgl wrote
        there is removed."""
        remove_own(self.dir, "state", keep={"README.txt"})
