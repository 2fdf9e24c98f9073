"""What a model file holds, as a person reads it (`salgl info`) or as JSON (`--json`).

`salgl info` reads metadata only, through read_model_info, so it refuses exactly what loading
the model would refuse in the metadata (a card for a file `salgl predict` rejects would
mislead), with the same one line. Text in the card is shown escaped all the same
(salgl.errors.printable): the file name, and any stored text, can never drive the
terminal. The JSON form is escaped by json.dumps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from salgl.checkpoint import read_model_info
from salgl.errors import printable


def model_card(path: str | Path) -> dict[str, Any]:
    """Architecture, labels, training data and selection of a model file, from its metadata
    alone (no tensor is read)."""
    meta = read_model_info(path)
    extra, model = meta.get("extra", {}), meta["model"]
    train = extra.get("train") or {}
    return {
        "file": str(path),
        "format_version": meta["format_version"],
        "architecture": {key: model.get(key) for key in (
            "backbone", "backbone_stage", "img_size", "num_classes", "num_scenes",
            "num_steps", "attention_dim", "embed_dim", "soft")} | {
            "head": model.get("head", "salgl")},
        "normalization": meta["normalization"].get("kind"),
        "labels": meta["labels"],
        "dataset": extra.get("dataset"),
        "data_fingerprint": extra.get("data_fingerprint"),
        "embedding": extra.get("embedding"),
        "init_from": extra.get("init_from"),
        "selected_on": extra.get("selected_on"),
        "selected_epoch": extra.get("selected_epoch", extra.get("best_epoch")),
        "selection_mAP": extra.get("selection_mAP", extra.get("best_test_mAP")),
        "val_mAP": extra.get("val_mAP"),
        "thresholds": (dict(zip(meta["labels"], extra["thresholds"], strict=True))
                       if extra.get("thresholds") else None),
        "training": {key: train.get(key) for key in (
            "epochs", "batch_size", "lr", "pretrained", "augment", "randaugment", "seed")
            if key in train},
    }


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else _text(value)


def _text(value: Any, limit: int | None = None) -> str:
    """Any stored value as one escaped piece of a line."""
    return printable(str(value), limit)


def _head_line(arch: dict[str, Any], embedding: str | None) -> str:
    if arch["head"] == "linear":
        return ("head       linear: global average pooling and one linear layer (the "
                "plain-backbone baseline; no scenes, no label graph)")
    return (f"head       {arch['num_scenes']} scenes, {arch['num_steps']} propagation steps, "
            f"attention {arch['attention_dim']}, label vectors "
            f"{arch['embed_dim'] or 'learned'} ({_text(embedding or 'unknown')})")


def card_text(card: dict[str, Any]) -> str:
    """The card as a few aligned lines."""
    arch = card["architecture"]
    lines = [
        f"model      {_text(card['file'])} (salgl model format {card['format_version']})",
        f"backbone   {_text(arch['backbone'])}" + (f" up to stage {arch['backbone_stage']}"
                                                   if arch.get("backbone_stage") is not None
                                                   else "")
        + f", {arch['img_size']} px input, {_text(card['normalization'])} normalisation",
        _head_line(arch, card["embedding"]),
        f"labels     {len(card['labels'])}: {_items(map(_text, card['labels'][:12]))}"
        + (" ..." if len(card["labels"]) > 12 else ""),
        f"data       {_text(card['dataset'] or 'unknown')}"
        + (f" (fingerprint {_text(card['data_fingerprint'])})" if card["data_fingerprint"]
           else ""),
    ]
    start = card["init_from"]
    if start:
        lines.append(_start_line(start))
    lines.append(_selected_line(card))
    if card["training"]:
        lines.append("training   " + _items(f"{k} {_text(v, 60)}"
                                               for k, v in card["training"].items()))
    if card["thresholds"]:
        cuts = _items(f"{_text(k)} {v:.2f}" for k, v in list(card["thresholds"].items())[:12])
        more = " ..." if len(card["thresholds"]) > 12 else ""
        lines.append(f"thresholds calibrated on the validation split: {cuts}{more}")
    else:
        lines.append("thresholds none stored: salgl predict cuts at 0.5")
    return "\n".join(_wrapped(line) for line in lines)


CARD_WIDTH = 88  # a card line wraps here, continuing under its value


KEEP = "\x00"  # a space inside one listed item ("ankle boot 0.62"): never a line break


def _wrapped(line: str) -> str:
    import textwrap

    return textwrap.fill(line, CARD_WIDTH, subsequent_indent=" " * 11, break_on_hyphens=False,
                         break_long_words=False).replace(KEEP, " ")


def _items(texts: Any) -> str:
    """A comma-separated list that wraps between items only."""
    return ", ".join(text.replace(" ", KEEP) for text in texts)


def _start_line(start: dict[str, Any]) -> str:
    """Which model file the training started from (train.<dataset>.init_from)."""
    new, dropped = start.get("new") or [], start.get("dropped") or []
    return (f"started    from {_text(start.get('path'), 120)} (sha256 "
            f"{_text(start.get('sha256'), 12)}): {_text(start.get('matched'))} labels matched, "
            f"{len(new)} new, {len(dropped)} dropped")


def _selected_line(card: dict[str, Any]) -> str:
    """Which epoch was kept and on what; the validation mAP once when it is the same number."""
    if not card["selected_on"]:
        return "selected   not recorded (an imported or older model file)"
    split = _text(card["selected_on"])
    line = (f"selected   epoch {card['selected_epoch']} on {split} (mAP "
            f"{_number(card['selection_mAP'])})")
    if split != "val" and card["val_mAP"] is not None:
        line += f"; validation mAP {_number(card['val_mAP'])}"
    return line
