"""Learned scenes against the true ones: read a prepared dataset's scenes.tsv, find each
prediction's true scene, and score the match (contingency, NMI, ARI, purity). The one home of
scene matching: the plots stage draws it, the ablation reports its NMI."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from salgl.errors import SalglError

_AMBIGUOUS = -2


# --------------------------------------------------------------------------- true scenes


def read_scenes_tsv(scenes_tsv: str | Path) -> list[tuple[str, str, int, str]]:
    """Rows (image_path, split, scene_index, scene_name) of a scenes.tsv; the header is skipped."""
    path = Path(scenes_tsv)
    if not path.is_file():
        raise SalglError(f"{path}: scenes file not found")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if not line.strip() or (number == 1 and fields[0] == "image_path"):
            continue
        if len(fields) < 3:
            raise SalglError(f"{path}:{number}: expected image_path<TAB>split<TAB>scene_index"
                             "<TAB>scene_name")
        try:
            index = int(fields[2])
        except ValueError:
            raise SalglError(f"{path}:{number}: scene index {fields[2]!r} is not an integer"
                             ) from None
        rows.append((fields[0], fields[1], index, fields[3] if len(fields) > 3 else str(index)))
    return rows


def scene_names(rows: Sequence[tuple[str, str, int, str]]) -> list[str]:
    """Scene names by index (0..max); an index that never appears is named by its number."""
    names: dict[int, str] = {index: name for _, _, index, name in rows if index >= 0}
    return [names.get(k, str(k)) for k in range(max(names, default=-1) + 1)]


def _parts(path: str) -> tuple[str, ...]:
    """Normalised path components without the root, for suffix matching."""
    pure = PurePath(os.path.normpath(path.replace("\\", "/")))
    return tuple(p for p in pure.parts if p not in (pure.anchor, ".", ""))


def _resolved(path: str, base: Path) -> str:
    return str((base / path).resolve()) if not os.path.isabs(path) else str(Path(path).resolve())


def _scene_index(rows: Sequence[tuple[str, str, int, str]], tsv_dir: Path
                 ) -> tuple[dict[str, int], dict[tuple[str, ...], int]]:
    """Exact (resolved path) and suffix lookups; a suffix shared by two images is ambiguous."""
    exact: dict[str, int] = {}
    suffix: dict[tuple[str, ...], int] = {}
    owner: dict[tuple[str, ...], int] = {}
    for row, (image, _, index, _) in enumerate(rows):
        for base in (Path.cwd(), tsv_dir):
            exact.setdefault(_resolved(image, base), index)
        parts = _parts(image)
        for k in range(1, len(parts) + 1):
            key = parts[-k:]
            if key in owner and owner[key] != row:
                suffix[key] = _AMBIGUOUS
            else:
                owner[key], suffix[key] = row, index
    return exact, suffix


def _match(path: str, exact: Mapping[str, int], suffix: Mapping[tuple[str, ...], int]) -> int:
    """Scene of one prediction path: exact resolved match, else its longest unique suffix."""
    found = exact.get(_resolved(path, Path.cwd()))
    if found is not None:
        return found
    parts = _parts(path)
    for k in range(len(parts), 0, -1):
        index = suffix.get(parts[-k:])
        if index is not None:
            return -1 if index == _AMBIGUOUS else index
    return -1


def true_scenes_for(paths: Sequence[str], scenes_tsv: str | Path) -> np.ndarray:
    """The true scene index of each prediction path (-1 when scenes.tsv does not know it)."""
    exact, suffix = _scene_index(read_scenes_tsv(scenes_tsv), Path(scenes_tsv).parent)
    return np.array([_match(str(p), exact, suffix) for p in paths], dtype=np.int64)


# --------------------------------------------------------------------------- scene matching


def scene_matching(learned: np.ndarray, true: np.ndarray,
                   true_names: Sequence[str] | None = None,
                   num_learned: int | None = None) -> dict[str, Any]:
    """How well learned scenes recover the true ones: contingency (learned x true), NMI, ARI.

    Images with a negative (unknown) true scene are left out.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    learned, true = np.asarray(learned, dtype=np.int64), np.asarray(true, dtype=np.int64)
    if learned.shape != true.shape or learned.ndim != 1:
        raise SalglError(f"scene_matching: learned {learned.shape} and true {true.shape} differ")
    keep = (true >= 0) & (learned >= 0)
    learned, true = learned[keep], true[keep]
    rows = max(num_learned or 0, int(learned.max(initial=-1)) + 1)
    names = list(true_names) if true_names is not None else []
    cols = max(len(names), int(true.max(initial=-1)) + 1)
    names += [str(k) for k in range(len(names), cols)]
    table = np.zeros((rows, cols), dtype=np.int64)
    np.add.at(table, (learned, true), 1)
    empty = learned.size == 0
    return {
        "num_images": int(learned.size),
        "nmi": None if empty else float(normalized_mutual_info_score(true, learned)),
        "ari": None if empty else float(adjusted_rand_score(true, learned)),
        "purity": None if empty else float(table.max(1).sum() / learned.size),
        "contingency": table.tolist(),
        "true_scene_names": names,
    }


def background_only_recovery(num_scenes: int, background_match: float) -> dict[str, float]:
    """What a classifier of the background alone recovers of the true scene, exactly, on
    `fashion_scenes`: the background shows the image's scene with chance ``background_match``
    and a uniform scene otherwise, so the best guess is the scene the background shows.

    The baseline learned scenes must beat before "the model found the scenes" means more than
    "the model read the background". NMI is scikit-learn's default (arithmetic mean of the
    two entropies), as in ``scene_matching``.
    """
    k, m = num_scenes, background_match
    joint = (m * np.eye(k) + (1.0 - m) / k) / k  # P(true scene, background's scene)
    marginal = joint.sum(1)
    nonzero = joint > 0
    mutual = float(np.sum(joint[nonzero] * np.log(joint[nonzero]
                                                  / np.outer(marginal, marginal)[nonzero])))
    entropy = float(-np.sum(marginal * np.log(marginal)))
    return {"agreement": float(np.trace(joint)), "nmi": mutual / entropy if entropy else 0.0}
