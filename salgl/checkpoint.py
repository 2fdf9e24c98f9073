"""Our model files: one self-contained safetensors file per model (resume state: resume.py).

A model file holds every tensor of the model (the co-occurrence memory and label embeddings
included) plus JSON metadata: format version, label names, the architecture config, input size
and normalisation. Nothing is pickled, so loading a file never runs code.

A model file may come from anywhere, and its metadata decides what gets allocated, so
:func:`load_model` checks it in an order where nothing costs memory before it is known:

1. the metadata (:func:`read_model_info`, also all that ``salgl info`` reads): nesting depth,
   finite numbers, every field's type, label names unique and printable, thresholds one per
   label, the config's sizes within ``salgl.model.base.SIZE_BOUNDS``;
2. the model built on torch's meta device (shapes, no memory) against the file's header:
   tensor names, shapes and dtypes (floating weights stay floating), before any is read;
3. the memory building and running it takes (:func:`estimate_memory`) against
   :func:`memory_limit`;
4. the tensors read, every floating one finite.

Every refusal is one SalglError line naming the file and the field or tensor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from salgl.atomic import atomic_path
from salgl.errors import SalglError, printable, stored_value
from salgl.memory_estimate import (
    BOOL_DTYPES,
    EXAMPLE_BATCH,
    FLOAT_DTYPES,
    INT_DTYPES,
    check_memory,
    estimate_memory,
)

FORMAT = "salgl-model"
FORMAT_VERSION = 1
META_KEY = "salgl"
REQUIRED_FIELDS = ("format", "format_version", "labels", "model", "normalization")
NORMALIZATION_KINDS = ("imagenet", "inception", "none")  # salgl.data.dataset.NORMALIZATIONS
# Our metadata nests 4 deep (extra.train.*); json itself would hit Python's recursion limit
# (a traceback) near 1000, so anything deeper than this is damage, refused by name.
MAX_METADATA_DEPTH = 32
# Extra fields `salgl info` shows, with the type each must have (or null).
TEXT, INTEGER, NUMBER, OBJECT = "text", "an integer", "a number", "an object"
CARD_FIELDS: dict[str, str] = {
    "dataset": TEXT, "data_fingerprint": TEXT, "embedding": TEXT, "selected_on": TEXT,
    "source": TEXT, "experiment": TEXT, "selected_epoch": INTEGER, "best_epoch": INTEGER,
    "selection_mAP": NUMBER, "val_mAP": NUMBER, "best_test_mAP": NUMBER, "train": OBJECT,
    "config": OBJECT, "init_from": OBJECT,
}
FIELD_TYPES: dict[str, tuple[type, ...]] = {TEXT: (str,), INTEGER: (int,),
                                            NUMBER: (int, float), OBJECT: (dict,)}




@dataclass
class ModelInfo:
    labels: list[str]
    config: Any  # SalglConfig
    normalization: dict
    extra: dict


def contiguous_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_model(path: str | Path, model: torch.nn.Module, labels: list[str],
               normalization: dict, extra: dict | None = None) -> None:
    """Write ``model`` (a SALGL) with everything needed to rebuild it, atomically."""
    from safetensors.torch import save_file

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "labels": list(labels),
        "model": model.config.to_dict(),
        "normalization": normalization,
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        save_file(contiguous_copy(model.state_dict()), str(tmp),
                  metadata={META_KEY: json.dumps(meta)})


def _reason(exc: BaseException) -> str:
    """The first line of a library's error, escaped and cut, for inside one of ours."""
    text = str(exc).strip()
    return printable(text.splitlines()[0], 160) if text else type(exc).__name__


# ---------------------------------------------------------------------------- metadata


def _metadata_problem(meta: dict) -> str | None:
    """The first NaN or infinite number (json reads NaN, Infinity and 1e400 as floats, which
    would come back out as invalid JSON) or nesting deeper than MAX_METADATA_DEPTH, named by
    its field; None when there is none. Iterative: no recursion on hostile nesting."""
    stack: list[tuple[Any, str, int]] = [(meta, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            what = "NaN" if math.isnan(item) else "infinite"
            return f"metadata field '{where[:80]}' is {what}, not a number JSON allows"
        if not isinstance(item, (dict, list)):
            continue
        if depth >= MAX_METADATA_DEPTH:
            return (f"metadata field '{where[:80]}' nests deeper than {MAX_METADATA_DEPTH} "
                    "levels (a damaged file)")
        if isinstance(item, dict):
            children = [(child, f"{where}.{printable(str(key), 40)}".lstrip("."))
                        for key, child in item.items()]
        else:
            children = [(child, f"{where}[{index}]") for index, child in enumerate(item)]
        stack.extend((child, name, depth + 1) for child, name in reversed(children))
    return None


class DuplicateKey(ValueError):
    """A JSON object names one key twice: readers disagree on which copy wins."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: an object whose keys are unique, else DuplicateKey."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(f"duplicate key '{printable(key, 60)}'")
        found[key] = value
    return found


def parse_metadata(text: str, where: str) -> dict:
    """Our JSON metadata as a dict, with unique keys, finite numbers and bounded nesting."""
    try:
        meta = json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise SalglError(f"{where}: metadata field '{META_KEY}' nests too deep to read "
                         "(a damaged file)") from None
    except ValueError as exc:  # JSONDecodeError; integers of over 4300 digits
        raise SalglError(f"{where}: metadata field '{META_KEY}' is not valid JSON "
                         f"({_reason(exc)})") from None
    if not isinstance(meta, dict):
        raise SalglError(f"{where}: metadata field '{META_KEY}' is {stored_value(meta)}, expected "
                         "an object")
    problem = _metadata_problem(meta)
    if problem:
        raise SalglError(f"{where}: {problem}")
    return meta


def check_labels(labels: Any, where: str) -> list[str]:
    """Label names: a list of strings that pass the rule prepare and import-official apply
    when they write them (salgl.data.prepared.check_label_names): non-empty, no control or
    invisible characters (names reach terminals), unique (scores are keyed by name)."""
    from salgl.data.prepared import check_label_names

    field = f"{where}: metadata field 'labels'"
    if not isinstance(labels, list):
        raise SalglError(f"{field} is {stored_value(labels)}, expected a list of label names")
    for number, name in enumerate(labels, start=1):
        if not isinstance(name, str):
            raise SalglError(f"{field}: label {number} is {stored_value(name)}, expected a name")
    check_label_names(labels, field)
    return labels


def check_normalization(normalization: Any, where: str) -> None:
    """What inference needs: a known ``kind``; ``mean`` and ``std`` (exported with the model)
    three finite numbers each, std positive."""
    field = f"{where}: metadata field 'normalization'"
    if not isinstance(normalization, dict):
        raise SalglError(f"{field} is {stored_value(normalization)}, expected an object")
    kind = normalization.get("kind", "imagenet")
    if not isinstance(kind, str) or kind not in NORMALIZATION_KINDS:
        raise SalglError(f"{field}: kind is {stored_value(kind)}, expected one of "
                         f"{', '.join(NORMALIZATION_KINDS)}")
    for key in ("mean", "std"):
        values = normalization.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) != 3 or not all(
                _is_number(v) and (key == "mean" or v > 0) for v in values):
            raise SalglError(f"{field}: {key} must be three "
                             f"{'positive ' if key == 'std' else ''}numbers (R, G, B)")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_extra(extra: Any, num_labels: int, where: str) -> dict:
    """Training and selection records: an object whose shown fields have their types, and
    thresholds (when stored) one number in [0, 1] per label."""
    from salgl.calibration import check_thresholds

    field = f"{where}: metadata field 'extra'"
    if not isinstance(extra, dict):
        raise SalglError(f"{field} is {stored_value(extra)}, expected an object")
    thresholds = extra.get("thresholds")
    if thresholds is not None:
        if not isinstance(thresholds, list) or not all(_is_number(v) for v in thresholds):
            raise SalglError(f"{field}: thresholds must be a list of numbers, one per label")
        check_thresholds(thresholds, num_labels, field)
    for key, expected in CARD_FIELDS.items():
        value = extra.get(key)
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, FIELD_TYPES[expected])):
            raise SalglError(f"{field}: {key} is {stored_value(value)}, expected {expected}")
    return extra


def _read_metadata(path: Path) -> dict:
    from safetensors import safe_open

    if not path.is_file():
        raise SalglError(f"{path}: model file not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:
        raise SalglError(f"{path}: not a readable safetensors file ({_reason(exc)})"
                         ) from None
    if META_KEY not in metadata:
        raise SalglError(f"{path}: metadata field '{META_KEY}' missing (not a salgl model file)")
    return parse_metadata(metadata[META_KEY], str(path))


def _check_format(meta: dict, path: Path) -> None:
    for name in REQUIRED_FIELDS:
        if name not in meta:
            raise SalglError(f"{path}: metadata field '{name}' missing")
    if meta["format"] != FORMAT:
        raise SalglError(f"{path}: metadata field 'format' is {stored_value(meta['format'])}, "
                         f"expected {FORMAT!r}")
    version = meta["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SalglError(f"{path}: metadata field 'format_version' is {stored_value(version)}, "
                         f"expected an integer from 1 to {FORMAT_VERSION}")
    if version > FORMAT_VERSION:
        raise SalglError(f"{path}: metadata field 'format_version' is "
                         f"{stored_value(version)}; this salgl reads up to {FORMAT_VERSION} "
                         "(upgrade salgl)")


def _checked_metadata(path: Path) -> tuple[dict, Any]:
    """The metadata and its SalglConfig, every field checked (the backbone name by timm)."""
    from salgl.model import SalglConfig
    from salgl.model.backbone import check_backbone_name

    meta = _read_metadata(path)
    _check_format(meta, path)
    labels = check_labels(meta["labels"], str(path))
    try:
        config = SalglConfig.from_dict(meta["model"])
        check_backbone_name(config.backbone, "backbone")
    except (TypeError, ValueError) as exc:
        raise SalglError(f"{path}: metadata field 'model' is invalid: {exc}") from None
    except SalglError as exc:
        raise SalglError(f"{path}: metadata field 'model': {exc}") from None
    if len(labels) != config.num_classes:
        raise SalglError(f"{path}: metadata field 'labels' has {len(labels)} names "
                         f"for {config.num_classes} classes")
    check_normalization(meta["normalization"], str(path))
    meta["extra"] = check_extra(meta.get("extra", {}), len(labels), str(path))
    return meta, config


def read_model_info(path: str | Path) -> dict:
    """The metadata of a model file, checked field by field (no tensor is read): what
    load_model would refuse in the metadata, this refuses with the same line."""
    return _checked_metadata(Path(path))[0]


# ----------------------------------------------------------------------------- tensors


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


def describe_mismatch(expected: Mapping[str, Any], found: Mapping[str, Any],
                      shown: int = 3) -> str:
    """One line naming missing and unexpected keys and shape differences ("" if none).
    Values are tensors or shapes; names are escaped (they come from the file)."""
    def listing(names: list[str], what: str) -> str:
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        return f"{len(names)} {what} ({', '.join(names[:shown])}{more})"

    missing = [printable(k, 80) for k in sorted(set(expected) - set(found))]
    unexpected = [printable(k, 80) for k in sorted(set(found) - set(expected))]
    shapes = [f"{k} {_shape(found[k])} instead of {_shape(expected[k])}"
              for k in sorted(set(expected) & set(found))
              if _shape(found[k]) != _shape(expected[k])]
    parts = [listing(names, what) for names, what in ((missing, "missing"),
                                                      (unexpected, "unexpected"),
                                                      (shapes, "with another shape")) if names]
    return "; ".join(parts)


def _check_header_keys(path: Path) -> None:
    """The safetensors header's JSON names each tensor once (the library keeps the last of
    two entries silently). Its size was already bounded by safe_open."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            json.loads(fh.read(size), object_pairs_hook=_unique_keys)
    except DuplicateKey as exc:
        raise SalglError(f"{path}: the safetensors header has a {exc}") from None
    except (OSError, ValueError, RecursionError):
        pass  # safe_open has judged the header already: its message stands


def read_header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{tensor name: (shape, safetensors dtype)} from the file's header; no tensor is read."""
    from safetensors import safe_open

    _check_header_keys(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = {}
            for name in fh.keys():
                view = fh.get_slice(name)
                header[name] = (tuple(view.get_shape()), view.get_dtype())
            return header
    except Exception as exc:
        raise SalglError(f"{path}: not a readable safetensors file ({_reason(exc)})"
                         ) from None


def _allowed_dtypes(tensor: torch.Tensor) -> dict[str, int]:
    if tensor.is_floating_point():
        return FLOAT_DTYPES
    return BOOL_DTYPES if tensor.dtype == torch.bool else INT_DTYPES


def check_tensors(path: Path, expected: Mapping[str, torch.Tensor],
                  header: Mapping[str, tuple[tuple[int, ...], str]]) -> None:
    """The file's tensors are the model's: same names and shapes, floating weights stored as
    floating point (int8 or bool would load as silent garbage), integer counters as
    integers."""
    mismatch = describe_mismatch(expected, {k: shape for k, (shape, _) in header.items()})
    if mismatch:
        raise SalglError(f"{path}: tensors do not match the stored config: {mismatch}")
    for name in sorted(expected):
        allowed = _allowed_dtypes(expected[name])
        dtype = header[name][1]
        if dtype not in allowed:
            kind = ("floating point" if allowed is FLOAT_DTYPES else
                    "an integer" if allowed is INT_DTYPES else "true/false")
            raise SalglError(f"{path}: tensor {printable(name, 80)} is stored as "
                             f"{printable(dtype, 20)}, but the model keeps it as {kind} "
                             f"({', '.join(allowed)})")


def read_finite_tensors(path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The named tensors, refusing the file when a floating one holds NaN or Inf: such a
    model scores every image NaN."""
    from safetensors import safe_open

    state, damaged = {}, []
    try:
        with safe_open(str(path), framework="pt") as fh:
            for name in sorted(names):
                tensor = fh.get_tensor(name)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    damaged.append((name, int((~torch.isfinite(tensor)).sum())))
                state[name] = tensor
    except Exception as exc:
        raise SalglError(f"{path}: not a readable safetensors file ({_reason(exc)})"
                         ) from None
    if damaged:
        name, count = damaged[0]
        more = f"; {len(damaged) - 1} more tensors too" if len(damaged) > 1 else ""
        raise SalglError(f"{path}: tensor {printable(name, 80)} has {count} NaN/Inf values "
                         f"(a diverged or damaged model){more}")
    return state


# ----------------------------------------------------------------------------- loading


def _create(path: Path, config: Any, meta_device: bool) -> torch.nn.Module:
    """create_model(config), on the meta device (shapes only) or for real; what torch or
    timm refuse becomes one line naming the file."""
    from salgl.model import create_model

    try:
        if meta_device:
            with torch.device("meta"):
                return create_model(config).eval()
        return create_model(config)
    except SalglError as exc:
        raise SalglError(f"{path}: metadata field 'model': {exc}") from None
    except Exception as exc:  # layers assert their own constraints (heads divide width...)
        raise SalglError(f"{path}: metadata field 'model' describes a model that cannot be "
                         f"built ({_reason(exc)})") from None


def load_model(path: str | Path, device: str | torch.device = "cpu",
               images: int = EXAMPLE_BATCH) -> tuple[torch.nn.Module, ModelInfo]:
    """Rebuild a SALGL model from one of our files, in eval mode, after the checks in this
    module's docstring (each refusal one SalglError line); the memory check covers a pass
    over ``images`` images at once (predict: its batch size)."""
    path = Path(path)
    meta, config = _checked_metadata(path)
    expected = _create(path, config, meta_device=True)
    header = read_header(path)
    check_tensors(path, expected.state_dict(), header)
    check_memory(path, estimate_memory(expected, config, header, images))
    del expected
    state = read_finite_tensors(path, list(header))
    model = _create(path, config, meta_device=False)
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    info = ModelInfo(labels=meta["labels"], config=config, normalization=meta["normalization"],
                     extra=meta["extra"])
    return model, info
