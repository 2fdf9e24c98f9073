"""One entry point for preparing the three real benchmarks from their raw downloads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from salgl.data.coco import prepare_mscoco
from salgl.data.nuswide import prepare_nuswide
from salgl.data.voc import prepare_voc2007
from salgl.errors import SalglError

PREPARERS: dict[str, Callable[..., dict]] = {
    "mscoco": prepare_mscoco,
    "voc2007": prepare_voc2007,
    "nuswide": prepare_nuswide,
}


def prepare_real(name: str, raw: str | Path, out: str | Path, strict: bool = False,
                 progress: bool = True, workers: int | None = None, val_fraction: float = 0.0,
                 seed: int = 0) -> dict:
    """Prepare dataset ``name`` from ``raw`` into ``out``; a missing raw folder says how to fix."""
    if name not in PREPARERS:
        raise SalglError(f"prepare: no raw preparer for {name!r} (known: "
                         f"{', '.join(PREPARERS)})")
    raw = Path(raw)
    if not raw.is_dir():
        raise SalglError(f"{raw}: raw dataset folder not found (set prepare.{name}.raw in "
                         "params.yaml or pass --raw)")
    return PREPARERS[name](raw, Path(out), strict=strict, workers=workers, progress=progress,
                           val_fraction=val_fraction, seed=seed)
