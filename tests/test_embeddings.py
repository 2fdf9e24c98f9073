"""Label vectors from GloVe files, from label co-occurrence, and at random."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from salgl.config import EmbedConfig
from salgl.embeddings import label_words, make_embeddings
from salgl.errors import SalglError


def glove_file(path: Path) -> Path:
    rows = {"traffic": [1, 0, 0], "light": [0, 1, 0], "teddy": [2, 2, 0], "bear": [0, 0, 2],
            "dining": [1, 1, 1], "table": [3, 3, 3], "cat": [0.5, 0.5, 0.5]}
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in rows.items()),
                    encoding="utf-8")
    return path


def test_multi_word_hyphenated_and_mapped_names_average(tmp_path: Path) -> None:
    cfg = EmbedConfig(source="glove", glove_path=str(glove_file(tmp_path / "g.txt")),
                      word_map={"diningtable": "dining table"})
    labels = ["traffic light", "teddy-bear", "diningtable", "cat"]
    vectors, info = make_embeddings(labels, np.zeros((1, 4)), cfg, "embed.x")
    assert vectors.shape == (4, 3) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0], [0.5, 0.5, 0])
    np.testing.assert_allclose(vectors[1], [1, 1, 1])
    np.testing.assert_allclose(vectors[2], [2, 2, 2])
    assert info["labels_covered"] == 4 and info["missing_words"] == {}
    assert label_words("hair drier", {}) == ["hair", "drier"]


def test_missing_word_is_an_error_unless_a_fallback_is_set(tmp_path: Path) -> None:
    path = str(glove_file(tmp_path / "g.txt"))
    with pytest.raises(SalglError, match=r"no vector for word 'zebra' of label 'zebra'.*"
                                         r"embed.x.word_map"):
        make_embeddings(["cat", "zebra"], np.zeros((1, 2)),
                        EmbedConfig(source="glove", glove_path=path), "embed.x")
    vectors, info = make_embeddings(["cat", "zebra"], np.zeros((1, 2)),
                                    EmbedConfig(source="glove", glove_path=path,
                                                fallback="zero"), "embed.x")
    assert info["missing_words"] == {"zebra": ["zebra"]}
    assert not vectors[1].any() and vectors[0].any()


def test_glove_file_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("cat 1 2 3\ndog 1 2\n", encoding="utf-8")
    with pytest.raises(SalglError, match=r"bad.txt:2: expected 3 numbers"):
        make_embeddings(["cat"], np.zeros((1, 1)),
                        EmbedConfig(source="glove", glove_path=str(bad)), "embed.x")
    with pytest.raises(SalglError, match=r"missing.txt: GloVe file not found"):
        make_embeddings(["cat"], np.zeros((1, 1)),
                        EmbedConfig(source="glove", glove_path=str(tmp_path / "missing.txt")),
                        "embed.x")


def test_cooccurrence_vectors_are_deterministic_and_group_cooccurring_labels() -> None:
    rng = np.random.default_rng(0)
    # labels 0,1 appear together; labels 2,3 appear together; the groups never meet
    group = rng.random(400) < 0.5
    targets = np.zeros((400, 4), dtype=np.uint8)
    targets[group, 0] = targets[group, 1] = 1
    targets[~group, 2] = targets[~group, 3] = 1
    cfg = EmbedConfig(source="cooccurrence", dim=8, epochs=300)
    a, info = make_embeddings(["a", "b", "c", "d"], targets, cfg, "embed.x")
    b, _ = make_embeddings(["a", "b", "c", "d"], targets, cfg, "embed.x")
    assert np.array_equal(a, b)
    assert info["cooccurring_pairs"] == 2

    def cos(i: int, j: int) -> float:
        return float(a[i] @ a[j] / np.linalg.norm(a[i]) / np.linalg.norm(a[j]))

    assert cos(0, 1) > cos(0, 2) + 0.3 and cos(2, 3) > cos(1, 3) + 0.3


def test_random_source_is_seeded() -> None:
    a, info = make_embeddings(["a", "b"], np.zeros((1, 2)), EmbedConfig(source="random", dim=5),
                              "embed.x")
    b, _ = make_embeddings(["a", "b"], np.zeros((1, 2)), EmbedConfig(source="random", dim=5),
                           "embed.x")
    assert a.shape == (2, 5) and np.array_equal(a, b) and info["source"] == "random"
