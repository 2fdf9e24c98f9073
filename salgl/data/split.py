"""Seeded multi-label stratified splits (iterative stratification, Sechidis et al. 2011).

Used to carve a validation split from a benchmark's training data and to make train/val/test
for user datasets that come without splits. A plain random split can leave a rare label with
no positive in the validation or test part, which makes its AP undefined there; iterative
stratification keeps each label's share roughly equal in every part.

The stratification itself is ``iterstrat``'s ``MultilabelStratifiedShuffleSplit``. Two things
it does not promise are repaired here, deterministically:

* exact part sizes (it prefers stratification over sizes): images move from the larger part
  to the smaller one, choosing those whose move disturbs the label counts least;
* a positive of every label with at least 2 positives in each part (with a small carved
  fraction it puts both positives of a 2-positive label in the big part): images are swapped
  between the parts, so the sizes stay exact, whenever one swap can fix a label without
  breaking another.

Every choice depends only on the targets and the seed (numpy's seeded ``RandomState`` and
exact integer arithmetic; no hash order), so the same input gives the same indices in any
process.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from salgl.errors import SalglError

T = TypeVar("T")

__all__ = ["stratified_split", "three_way_split"]

# How many rows a coverage repair weighs as the one to move (see _State.pick_swap_in).
_SWAP_CANDIDATES = 32


def stratified_split(targets: np.ndarray, fraction: float, seed: int,
                     where: str) -> tuple[np.ndarray, np.ndarray]:
    """Split images in two, carving ``round(fraction * N)`` of them off (e.g. as validation).

    ``targets`` is (N images, C labels) 0/1. Returns ``(kept, carved)``: sorted int64 row
    indices, disjoint, together all rows. The carved part has at least one image when
    ``fraction > 0`` and the kept part always has at least one (``round`` is Python's, half to
    even). Every label with at least 2 positives gets a positive in both parts whenever the
    data allow it (repairs are greedy single swaps, so a part of a few images may still miss
    a label in a rare feasible case), and labels keep their share approximately. ``where``
    (the params key) names the culprit in errors.
    """
    y = _check_targets(targets, where)
    _check_fraction(fraction, "fraction", where)
    rng = _rng(seed, where)
    n = len(y)
    needed = 2 if fraction > 0 else 1
    if n < needed:
        raise SalglError(f"{where}: {n} image(s) cannot be split into {needed} non-empty "
                         f"part(s) (fraction {fraction})")
    n_carved = min(_count(fraction, n), n - 1)
    need = (y.sum(axis=0) >= 2).astype(np.int64)
    carved = _carve(y, n_carved, rng, need_kept=need, need_carved=need)
    return _indices(~carved), _indices(carved)


def three_way_split(targets: np.ndarray, val_fraction: float, test_fraction: float, seed: int,
                    where: str) -> dict[str, np.ndarray]:
    """Split images into train/val/test for a dataset that comes without splits.

    Test (``round(test_fraction * N)`` images) is carved first, then val
    (``round(val_fraction * N)``, i.e. ``val_fraction`` of the whole, not of the rest) from
    what is left; train is the remainder and never empty. Returns sorted int64 indices under
    "train", "val" and "test". A label with at least 3 positives gets a positive in each part
    whenever the data allow it (as in ``stratified_split``, by greedy swaps, one carve at a
    time); one with 2 gets one in test and one in train or val (test is carved first so that
    its metrics are defined). ``where`` names the culprit in errors.
    """
    y = _check_targets(targets, where)
    _check_fraction(val_fraction, "val_fraction", where)
    _check_fraction(test_fraction, "test_fraction", where)
    if val_fraction + test_fraction >= 1:
        raise SalglError(f"{where}: val_fraction + test_fraction must be below 1 (train needs "
                         f"images), got {val_fraction} + {test_fraction}")
    rng = _rng(seed, where)
    n = len(y)
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if n < needed:
        raise SalglError(f"{where}: {n} image(s) cannot be split into {needed} non-empty "
                         f"parts (val_fraction {val_fraction}, test_fraction {test_fraction})")
    n_test = min(_count(test_fraction, n), n - 1 - (val_fraction > 0))
    n_val = min(_count(val_fraction, n), n - n_test - 1)

    total = y.sum(axis=0)
    at_least_2 = (total >= 2).astype(np.int64)
    # The rest must keep 2 positives of a label so that val and train can both get one.
    need_rest = np.where((total >= 3) & (n_val > 0), 2, at_least_2)
    test = _carve(y, n_test, rng, need_kept=need_rest, need_carved=at_least_2)

    rest = np.flatnonzero(~test)
    y_rest = y[rest]
    need = (y_rest.sum(axis=0) >= 2).astype(np.int64)
    val = _carve(y_rest, n_val, rng, need_kept=need, need_carved=need)
    return {"train": rest[~val].astype(np.int64), "val": rest[val].astype(np.int64),
            "test": _indices(test)}


# --- checks -------------------------------------------------------------------------------


def _check_targets(targets: np.ndarray, where: str) -> np.ndarray:
    """0/1 matrix as float64: exact for the integer sums used below, and BLAS-fast."""
    y = np.asarray(targets)
    if y.ndim != 2:
        raise SalglError(f"{where}: targets must be a 2-D (images x labels) 0/1 array, got "
                         f"shape {y.shape}")
    if y.dtype.kind not in "biuf" or not np.all((y == 0) | (y == 1)):
        raise SalglError(f"{where}: targets must hold only 0 and 1 (dtype {y.dtype})")
    return y.astype(np.float64)


def _check_fraction(value: float, name: str, where: str) -> None:
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not 0 <= value < 1):
        raise SalglError(f"{where}: {name} must be a number in [0, 1), got {value!r}")


def _rng(seed: int, where: str) -> np.random.RandomState:
    """The legacy generator, because iterstrat draws its tie-breaks from one."""
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise SalglError(f"{where}: seed must be an integer in [0, 2**32), got {seed!r}")
    return np.random.RandomState(int(seed))


def _count(fraction: float, n: int) -> int:
    """``round(fraction * n)``, but at least one image for a non-zero fraction."""
    if fraction <= 0:
        return 0
    return max(1, round(fraction * n))


def _indices(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask).astype(np.int64)


# --- carving ------------------------------------------------------------------------------


def _carve(y: np.ndarray, n_carved: int, rng: np.random.RandomState, need_kept: np.ndarray,
           need_carved: np.ndarray) -> np.ndarray:
    """Mask of exactly ``n_carved`` rows (0 < n_carved < len(y), or 0), stratified by label.

    ``need_kept``/``need_carved`` give, per label, how many positives each part should hold;
    the coverage repair only makes swaps that lower the total shortfall.
    """
    # Imported here: it pulls in scikit-learn (seconds), which most commands never need.
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n = len(y)
    carved = np.zeros(n, dtype=bool)
    if n_carved == 0:
        return carved
    lib_y = y.astype(np.uint8)
    if lib_y.shape[1] < 2:
        # With one column iterstrat sees a 'binary' target and refuses; a zero column is inert.
        lib_y = np.hstack([lib_y, np.zeros((n, 2 - lib_y.shape[1]), dtype=np.uint8)])
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_carved,
                                                train_size=n - n_carved, random_state=rng)
    _, carved_idx = next(splitter.split(np.zeros(n), lib_y))
    carved[carved_idx] = True
    state = _State(y, carved, n_carved, rng.permutation(n), need_kept, need_carved)
    state.fix_sizes()
    state.fix_coverage()
    return state.carved


class _State:
    """The two parts and their per-label positive counts, with greedy deterministic moves.

    Moves are ranked by (change in total shortfall, change in stratification error, seeded
    random rank). The stratification error of a label is ``|c * N - P * n_carved|`` (c its
    positives in the carved part, P in all): N times the distance from its exact share, kept in
    integers so that ties are exact.
    """

    def __init__(self, y: np.ndarray, carved: np.ndarray, n_carved: int, rank: np.ndarray,
                 need_kept: np.ndarray, need_carved: np.ndarray) -> None:
        self.y = y
        self.carved = carved
        self.n_carved = n_carved
        self.rank = rank
        self.need = {False: np.asarray(need_kept, dtype=np.int64),
                     True: np.asarray(need_carved, dtype=np.int64)}
        self.total = np.rint(y.sum(axis=0)).astype(np.int64)
        self.count_carved = np.rint(y[carved].sum(axis=0)).astype(np.int64)
        self.target = self.total * n_carved

    def counts(self, in_carved: bool) -> np.ndarray:
        return self.count_carved if in_carved else self.total - self.count_carved

    def move(self, i: int, to_carved: bool) -> None:
        self.carved[i] = to_carved
        row = np.rint(self.y[i]).astype(np.int64)
        self.count_carved += row if to_carved else -row

    def shortfall(self, in_carved: bool) -> np.ndarray:
        return np.maximum(self.need[in_carved] - self.counts(in_carved), 0)

    def scores(self, to_carved: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per row: change in total shortfall and in stratification error if it moved."""
        source, dest = self.counts(not to_carved), self.counts(to_carved)
        # A positive leaving the source deepens its shortfall where it holds no spare one.
        loss = source <= self.need[not to_carved]
        gain = dest < self.need[to_carved]
        step = 1 if to_carved else -1
        n = len(self.y)
        error = np.abs(self.count_carved * n - self.target)
        after = np.abs((self.count_carved + step) * n - self.target)
        # Rows are 0/1 and the weights integers, so these float products are exact.
        d_short = np.rint(self.y @ (loss.astype(np.float64) - gain)).astype(np.int64)
        d_error = np.rint(self.y @ (after - error).astype(np.float64)).astype(np.int64)
        return d_short, d_error

    def pick(self, candidates: np.ndarray, to_carved: bool) -> tuple[int, int]:
        """Best row to move into (or out of) the carved part, and its shortfall change."""
        d_short, d_error = self.scores(to_carved)
        idx = np.flatnonzero(candidates)
        for key in (d_short, d_error, self.rank):
            values = key[idx]
            idx = idx[values == values.min()]
        return int(idx[0]), int(d_short[idx[0]])

    def pick_swap_in(self, candidates: np.ndarray, to_carved: bool) -> tuple[int, int]:
        """Row to move for a swap, judged with the best row that could come back for it.

        Looking at the way back matters when the receiving part is small: the row that
        leaves it may take away the only positive of another label, unless the incoming
        row brings one. Only the ``_SWAP_CANDIDATES`` best rows on their own are weighed.
        Returns the row and the shortfall change of the whole swap.
        """
        d_short, d_error = self.scores(to_carved)
        idx = np.flatnonzero(candidates)
        idx = idx[np.lexsort((self.rank[idx], d_error[idx], d_short[idx]))][:_SWAP_CANDIDATES]
        rows = np.rint(self.y[idx]).astype(np.int64)
        dest_after = self.counts(to_carved) + rows
        source_after = self.counts(not to_carved) - rows
        loss = dest_after <= self.need[to_carved]
        gain = source_after < self.need[not to_carved]
        back = np.rint(self.y @ (loss.astype(np.float64) - gain).T).astype(np.int64)
        back = back[self.carved == to_carved]  # rows of the receiving part (idx is not there)
        total = d_short[idx] + back.min(axis=0)
        best = int(np.argmin(total))  # first of the minima: the order above breaks ties
        return int(idx[best]), int(total[best])

    def fix_sizes(self) -> None:
        """Move rows until the carved part has exactly ``n_carved`` rows."""
        while (size := int(self.carved.sum())) != self.n_carved:
            to_carved = size < self.n_carved
            i, _ = self.pick(~self.carved if to_carved else self.carved, to_carved)
            self.move(i, to_carved)

    def fix_coverage(self) -> None:
        """Swap rows between the parts until no label falls short, where one swap can help.

        Only swaps that lower the total shortfall are kept, so this ends; a label that no
        single swap can fix (e.g. a one-row part and two labels that never co-occur) is left.
        """
        order = np.lexsort((np.arange(len(self.total)), self.total))
        skipped: set[tuple[int, bool]] = set()
        while True:
            short = {part: self.shortfall(part) for part in (True, False)}
            todo = [(int(label), part) for label in order for part in (True, False)
                    if short[part][label] > 0 and (int(label), part) not in skipped]
            if not todo:
                return
            label, to_carved = todo[0]
            source = self.counts(not to_carved)
            if source[label] <= self.need[not to_carved][label]:
                skipped.add((label, to_carved))  # no spare positive to give
                continue
            has_label = self.y[:, label] > 0
            from_side = self.carved != to_carved
            i, d_swap = self.pick_swap_in(from_side & has_label, to_carved)
            if d_swap >= 0:
                skipped.add((label, to_carved))
                continue
            back = self.carved == to_carved
            self.move(i, to_carved)
            j, _ = self.pick(back, not to_carved)
            self.move(j, not to_carved)
            skipped.clear()


def carve_validation(entries: Sequence[T], labels_of: Sequence[Sequence[int]],
                     num_labels: int, fraction: float, seed: int, where: str
                     ) -> tuple[list[T], list[T]]:
    """Split training entries into (train, val) by iterative stratification, so that every
    label keeps its share in both; ``labels_of[i]`` are entry i's label indices."""
    if fraction <= 0:
        return list(entries), []
    targets = np.zeros((len(entries), num_labels), dtype=np.uint8)
    for row, indices in enumerate(labels_of):
        targets[row, list(indices)] = 1
    kept, carved = stratified_split(targets, fraction, seed, where)
    return [entries[i] for i in kept], [entries[i] for i in carved]
