"""Fine-tuning from a model file (``train.<dataset>.init_from``): start a new training run
from the weights of any SALGL model file, ours or imported from the authors' checkpoints,
on a dataset whose labels may differ.

What carries over: every weight that does not depend on the label set (backbone, context
encoder, scene classifier, label attention, propagation, fusion), and, for each label of the
new data that the file also knows, its classifier row and its label vector. Labels are
matched by name after the normalisation the embedder uses (``traffic_light``,
``TrafficLight`` and ``traffic light`` are one label). New labels keep the fresh model's
initialisation (and this run's label vectors); labels the new data lacks are dropped. The
co-occurrence memory always starts empty: it counts the new data's labels per scene.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from salgl.embeddings import embeddable_name
from salgl.errors import SalglError

# Tensors with one row per label (first dimension); the memory (scenes x labels x labels)
# is left as the fresh model has it: empty.
LABEL_ROWS = ("classifier.weight", "classifier.bias", "label_embeddings")
MEMORY = "cooccurrence"
# Architecture fields that may differ from the file: no tensor's shape depends on them.
FREE_FIELDS = {"num_classes", "embed_dim", "dropout", "normalize", "ignore_self", "soft"}


@dataclass(frozen=True)
class StartReport:
    """Where a run started from, and what became of each label."""

    path: str
    sha256: str
    matched: list[str]       # labels of the new data found in the file
    new: list[str]           # labels of the new data the file does not know
    dropped: list[str]       # labels of the file the new data lacks

    def line(self, key: str) -> str:
        def names(items: list[str]) -> str:
            shown = ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8
                                            else "")
            return f" ({shown})" if items else ""

        return (f"{key}.init_from: started from {self.path}: {len(self.matched)} label(s) "
                f"matched, {len(self.new)} new{names(self.new)}, {len(self.dropped)} "
                f"dropped{names(self.dropped)}; the co-occurrence memory starts empty")

    def metadata(self) -> dict:
        """What the model file records (`salgl info` shows it)."""
        return {"path": self.path, "sha256": self.sha256, "matched": len(self.matched),
                "new": self.new, "dropped": self.dropped}


def label_key(name: str) -> str:
    """The name two label sets are matched on: the embedder's words, lowered."""
    return embeddable_name(name)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def match_labels(old: list[str], new: list[str]) -> dict[int, int]:
    """new index -> old index for each label of ``new`` that ``old`` knows."""
    where = {label_key(name): i for i, name in enumerate(old)}
    return {j: where[label_key(name)] for j, name in enumerate(new) if label_key(name) in where}


def _architecture_differences(old, new) -> list[str]:
    return [f"{f.name} {getattr(old, f.name)!r} in the file, {getattr(new, f.name)!r} here"
            for f in fields(new)
            if f.name not in FREE_FIELDS and getattr(old, f.name) != getattr(new, f.name)]


def start_from(model: torch.nn.Module, path: str | Path, labels: list[str],
               normalization: str, key: str) -> StartReport:
    """Load ``path``'s weights into the freshly built ``model`` (labels ``labels``) as the
    module docstring says; one SalglError line naming both sides when they cannot fit."""
    from salgl.checkpoint import load_model

    path = Path(path)
    if not path.is_file():
        raise SalglError(f"{key}.init_from: model file {path} not found")
    source, info = load_model(path)
    differences = _architecture_differences(info.config, model.config)
    if differences:
        raise SalglError(f"{key}.init_from: {path} does not fit these settings: "
                         f"{'; '.join(differences)} (set {key} to match the file)")
    kind = info.normalization.get("kind")
    if kind != normalization:
        raise SalglError(f"{key}.init_from: {path} was trained on images normalised "
                         f"{kind!r}, this run uses {normalization!r} (set "
                         f"{key}.normalization: {kind})")
    old_state, state = source.state_dict(), model.state_dict()
    old_width = old_state.get("label_embeddings")
    width = state.get("label_embeddings")
    if old_width is not None and width is not None and old_width.shape[1] != width.shape[1]:
        raise SalglError(f"{key}.init_from: {path} holds {old_width.shape[1]}-d label vectors, "
                         f"this run's embed stage gives {width.shape[1]}-d (embed the labels "
                         "as the file's run did)")
    pairs = match_labels(info.labels, labels)
    rows_new = torch.tensor(sorted(pairs), dtype=torch.long)
    rows_old = torch.tensor([pairs[j] for j in sorted(pairs)], dtype=torch.long)
    loaded = {}
    for name, tensor in state.items():
        if name == MEMORY:
            continue
        if name in LABEL_ROWS:
            fresh = tensor.clone()
            fresh[rows_new] = old_state[name][rows_old].to(fresh.dtype)
            loaded[name] = fresh
        else:
            loaded[name] = old_state[name]
    model.load_state_dict(loaded, strict=False)
    matched = [labels[j] for j in sorted(pairs)]
    kept = set(pairs.values())
    return StartReport(
        path=str(path), sha256=file_sha256(path), matched=matched,
        new=[name for j, name in enumerate(labels) if j not in pairs],
        dropped=[name for i, name in enumerate(info.labels) if i not in kept])
