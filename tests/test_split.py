"""Seeded multi-label stratified splits: exact sizes, determinism, rare labels in every part."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from salgl.data.split import stratified_split, three_way_split
from salgl.errors import SalglError

WHERE = "prepare.mscoco.val_fraction"


def random_targets(n: int, prevalences: list[float], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, len(prevalences))) < np.asarray(prevalences)).astype(np.uint8)


def rare_label_targets(seed: int) -> np.ndarray:
    """200 images, 4 common labels and a last label with exactly 2 positives."""
    y = random_targets(200, [0.4, 0.3, 0.2, 0.1, 0.0], seed)
    rng = np.random.default_rng(seed + 1000)
    y[rng.choice(200, size=2, replace=False), 4] = 1
    return y


def check_partition(parts: list[np.ndarray], n: int) -> None:
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0), "sorted, no duplicates"
    joined = np.concatenate(parts)
    assert len(joined) == n
    assert np.array_equal(np.sort(joined), np.arange(n))


def test_same_seed_same_split_other_seed_differs() -> None:
    y = random_targets(300, [0.5, 0.2, 0.05, 0.01])
    kept, carved = stratified_split(y, 0.2, 7, WHERE)
    again_kept, again_carved = stratified_split(y.copy(), 0.2, 7, WHERE)
    assert np.array_equal(kept, again_kept) and np.array_equal(carved, again_carved)
    _, other = stratified_split(y, 0.2, 8, WHERE)
    assert not np.array_equal(carved, other)


@pytest.mark.parametrize(("n", "fraction", "expected"), [
    (200, 0.1, 20), (37, 0.2, 7), (101, 0.33, 33), (10, 0.0, 0),
    (50, 0.001, 1),  # a non-zero fraction carves at least one image
    (2, 0.5, 1), (10, 0.99, 9),  # ... and leaves at least one
])
def test_sizes_are_exact_and_parts_complete(n: int, fraction: float, expected: int) -> None:
    # Dense labels leave few all-zero rows, and iterstrat's sizes then drift (by 3 for 101).
    y = random_targets(n, [0.6, 0.5, 0.4, 0.3, 0.2, 0.1], seed=n)
    kept, carved = stratified_split(y, fraction, 0, WHERE)
    assert len(carved) == expected
    check_partition([kept, carved], n)


@pytest.mark.parametrize("seed", range(6))
def test_two_positive_label_lands_in_both_parts(seed: int) -> None:
    y = rare_label_targets(seed)
    # A plain random 10% split misses a 2-positive label's carved part about 81% of the time;
    # iterstrat's split alone puts both positives in the big part.
    kept, carved = stratified_split(y, 0.1, seed, WHERE)
    assert len(carved) == 20
    for part in (kept, carved):
        assert np.all(y[part].sum(axis=0) >= 1), "every label with >= 2 positives in each part"


def test_common_labels_keep_their_prevalence() -> None:
    y = random_targets(2000, [0.5, 0.3, 0.15, 0.08, 0.003])
    kept, carved = stratified_split(y, 0.2, 3, WHERE)
    whole = y.mean(axis=0)
    for part in (kept, carved):
        share = y[part].mean(axis=0)
        assert np.all(np.abs(share[:4] - whole[:4]) <= 0.1 * whole[:4] + 1e-9)
    # Label counts in the carved part are within one image of their exact share.
    assert np.all(np.abs(y[carved].sum(axis=0) - 0.2 * y.sum(axis=0)) <= 1)


def test_edge_cases_iterstrat_does_not_handle() -> None:
    one_label = np.array([[1], [0], [1], [1], [0], [0]])  # iterstrat refuses a single column
    kept, carved = stratified_split(one_label, 0.34, 0, WHERE)
    assert len(carved) == 2 and one_label[kept].sum() >= 1 and one_label[carved].sum() >= 1
    no_positives = np.zeros((9, 3), dtype=np.uint8)
    kept, carved = stratified_split(no_positives, 0.3, 0, WHERE)
    assert len(carved) == 3
    check_partition([kept, carved], 9)
    single = random_targets(40, [0.5, 0.0, 0.3])
    single[5, 1] = 1  # a single-positive label: in one part only, nothing to guarantee
    kept, carved = stratified_split(single, 0.25, 1, WHERE)
    assert len(carved) == 10
    check_partition([kept, carved], 40)
    kept, carved = stratified_split(np.array([[1, 0], [1, 1]], dtype=bool), 0.1, 0, WHERE)
    assert (len(kept), len(carved)) == (1, 1)


SPLIT_CODE = """
import numpy as np
from salgl.data.split import stratified_split, three_way_split
prevalence = [0.5, 0.3, 0.1, 0.05, 0.02, 0.01]
y = (np.random.default_rng(5).random((150, 6)) < prevalence).astype(np.uint8)
kept, carved = stratified_split(y, 0.15, 11, "w")
parts = three_way_split(y, 0.1, 0.2, 11, "w")
out = [kept.tolist(), carved.tolist(), [parts[p].tolist() for p in ("train", "val", "test")]]
"""


def test_identical_indices_across_processes() -> None:
    """This process and a child with another PYTHONHASHSEED (one child: sklearn loads slowly)."""
    hash_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    child = subprocess.run([sys.executable, "-c", SPLIT_CODE + "print(hash('salgl'))\nprint(out)"],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONHASHSEED": hash_seed})
    assert child.returncode == 0, child.stderr
    child_hash, child_out = child.stdout.splitlines()
    assert int(child_hash) != hash("salgl"), "the processes must differ in hash order"
    namespace: dict = {}
    exec(SPLIT_CODE, namespace)
    assert child_out == str(namespace["out"])


@pytest.mark.parametrize(("targets", "fraction", "seed", "message"), [
    (np.ones((10, 2)), 1.0, 0, "fraction must be a number in"),
    (np.ones((10, 2)), -0.1, 0, "fraction must be a number in"),
    (np.ones((10, 2)), float("nan"), 0, "fraction must be a number in"),
    (np.ones((1, 2)), 0.5, 0, "1 image(s) cannot be split into 2"),
    (np.ones(10), 0.5, 0, "2-D"),
    (np.full((10, 2), 2), 0.5, 0, "only 0 and 1"),
    (np.array([["a", "b"]]), 0.5, 0, "only 0 and 1"),
    (np.ones((10, 2)), 0.5, -1, "seed must be"),
])
def test_bad_input_names_where(targets: np.ndarray, fraction: float, seed: int,
                               message: str) -> None:
    with pytest.raises(SalglError, match=r"^prepare\.mscoco\.val_fraction: ") as info:
        stratified_split(targets, fraction, seed, WHERE)
    assert message in str(info.value)


@pytest.mark.parametrize(("n", "val", "test", "message"), [
    (10, 0.5, 0.5, "val_fraction + test_fraction must be below 1"),
    (10, 0.2, 1.0, "test_fraction must be a number in"),
    (2, 0.3, 0.3, "2 image(s) cannot be split into 3"),
])
def test_three_way_bad_input_names_where(n: int, val: float, test: float, message: str) -> None:
    with pytest.raises(SalglError, match=r"^prepare\.user\.split: ") as info:
        three_way_split(np.ones((n, 2)), val, test, 0, "prepare.user.split")
    assert message in str(info.value)


@pytest.mark.parametrize("seed", range(4))
def test_three_way_sizes_and_guarantees(seed: int) -> None:
    y = random_targets(300, [0.4, 0.2, 0.1, 0.0, 0.0], seed)
    rng = np.random.default_rng(seed + 1000)
    y[rng.choice(300, size=3, replace=False), 3] = 1  # 3 positives: one for each part
    y[rng.choice(300, size=2, replace=False), 4] = 1  # 2 positives: test and train or val
    parts = three_way_split(y, 0.1, 0.15, seed, WHERE)
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (225, 30, 45)
    check_partition([parts["train"], parts["val"], parts["test"]], 300)
    for name in ("train", "val", "test"):
        assert np.all(y[parts[name], :4].sum(axis=0) >= 1), name
    assert y[parts["test"], 4].sum() == 1
    assert y[np.concatenate([parts["train"], parts["val"]]), 4].sum() == 1
    whole = y[:, :2].mean(axis=0)
    for name in ("train", "val", "test"):
        assert np.all(np.abs(y[parts[name], :2].mean(axis=0) - whole) <= 0.15 * whole)
    again = three_way_split(y, 0.1, 0.15, seed, WHERE)
    assert all(np.array_equal(parts[name], again[name]) for name in parts)


def test_three_way_zero_fractions_and_rounding() -> None:
    y = random_targets(11, [0.5, 0.3])
    parts = three_way_split(y, 0.0, 0.3, 0, WHERE)
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (8, 0, 3)
    parts = three_way_split(y, 0.3, 0.0, 0, WHERE)
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (8, 3, 0)
    # val is a fraction of the whole, not of what test leaves; train is never emptied.
    parts = three_way_split(np.ones((4, 2)), 0.3, 0.65, 0, WHERE)
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (1, 1, 2)
    check_partition([parts["train"], parts["val"], parts["test"]], 4)
