"""Hostile model files: metadata and tensors are checked before they cost memory, and every
refusal is one line and exit 2 with nothing on disk changed (issue 20, findings 4 and 5).

Mutated files are written from the tiny trained model, either through safetensors'
save_file (other tensors) or by editing the JSON header bytes directly (other metadata,
dtypes, shapes). The fuzz test runs in a subprocess under an address-space cap.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tree_snapshot import changes, tree_snapshot

from salgl.checkpoint import load_model
from salgl.errors import SalglError

from conftest import LABELS, TinyRun

REPO = Path(__file__).resolve().parents[1]
FIRST_FLOAT = "attention.hidden.weight"  # a floating weight of every SALGL model


# ------------------------------------------------------------------ writing mutated files


def split_file(raw: bytes) -> tuple[dict, bytes]:
    """(safetensors header as a dict, the tensor bytes after it)."""
    size = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + size]), raw[8 + size:]


def join_file(header_text: str, data: bytes) -> bytes:
    encoded = header_text.encode("utf-8")
    return struct.pack("<Q", len(encoded)) + encoded + data


def with_meta_text(source: Path, out: Path, text: str) -> Path:
    """``source`` with its salgl metadata string replaced by ``text`` (any JSON, or not)."""
    header, data = split_file(source.read_bytes())
    header["__metadata__"]["salgl"] = text
    out.write_bytes(join_file(json.dumps(header), data))
    return out


def with_meta(source: Path, out: Path, change: Callable[[dict], Any]) -> Path:
    """``source`` with ``change`` applied to its metadata (json.dumps writes NaN as NaN)."""
    header, _ = split_file(source.read_bytes())
    meta = json.loads(header["__metadata__"]["salgl"])
    change(meta)
    return with_meta_text(source, out, json.dumps(meta))


def with_tensors(source: Path, out: Path, change: Callable[[dict], Any]) -> Path:
    """``source`` with ``change`` applied to its tensors, metadata kept."""
    header, _ = split_file(source.read_bytes())
    tensors = load_file(str(source))
    change(tensors)
    save_file(tensors, str(out), metadata=header["__metadata__"])
    return out


def set_model(**values: Any) -> Callable[[dict], Any]:
    return lambda meta: meta["model"].update(values)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "images" / "photo.png"
    path.parent.mkdir()
    Image.new("RGB", (40, 30), (120, 60, 30)).save(path)
    return path


def refused(salgl_main, root: Path, *args: str) -> str:
    """Run the command line; assert exit 2, one line on stderr, nothing on stdout and no
    change under ``root``; return the message after 'salgl COMMAND: error: '."""
    before = tree_snapshot(root)
    code, out, err = salgl_main(*args)
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    prefix = f"salgl {args[0]}: error: "
    assert lines[0].startswith(prefix), err
    assert changes(before, tree_snapshot(root)) == []
    return lines[0][len(prefix):]


def every_command_refuses(salgl_main, root: Path, model: Path, image: Path) -> str:
    """predict, export and info refuse ``model`` with the same line; returns it."""
    messages = {refused(salgl_main, root, "predict", str(model), str(image)),
                refused(salgl_main, root, "export", str(model), "--onnx",
                        str(root / "model.onnx")),
                refused(salgl_main, root, "info", str(model))}
    assert len(messages) == 1, messages
    return messages.pop()


# ------------------------------------------------------------- finding 4: sizes and types


@pytest.mark.parametrize("value,expected", [
    (2e6, "num_scenes: expected an integer, got float"),
    (2_000_000, "num_scenes: 2000000 is outside 1 to 1024"),
])
def test_num_scenes_of_two_million_is_refused_before_building(
        tiny_run: TinyRun, tmp_path: Path, image: Path, salgl_main, value, expected) -> None:
    model = with_meta(tiny_run.model, tmp_path / "m.safetensors", set_model(num_scenes=value))
    message = every_command_refuses(salgl_main, tmp_path, model, image)
    assert message.startswith(f"{model}: metadata field 'model' is invalid: {expected}")


@pytest.mark.parametrize("size", [20000, 0])
def test_img_size_out_of_bounds_blames_the_model_not_the_images(
        tiny_run: TinyRun, tmp_path: Path, image: Path, salgl_main, size: int) -> None:
    model = with_meta(tiny_run.model, tmp_path / "m.safetensors", set_model(img_size=size))
    message = every_command_refuses(salgl_main, tmp_path, model, image)
    assert message == (f"{model}: metadata field 'model' is invalid: img_size: {size} is "
                       "outside 16 to 2048 (training accepts 16 to 2048 px; beyond that one "
                       "image's activations alone take gigabytes)")
    assert str(image) not in message


@pytest.mark.parametrize("key,value", [
    ("num_classes", 10**12), ("attention_dim", 10**6), ("encoder_ffn", 10**7),
    ("embed_dim", 10**6), ("num_steps", -1), ("encoder_heads", 0),
])
def test_huge_or_negative_sizes_name_their_key(tiny_run: TinyRun, tmp_path: Path,
                                               salgl_main, key: str, value: int) -> None:
    model = with_meta(tiny_run.model, tmp_path / "m.safetensors", set_model(**{key: value}))
    message = refused(salgl_main, tmp_path, "info", str(model))
    assert message.startswith(f"{model}: metadata field 'model' is invalid: {key}: {value} "
                              "is outside")


@pytest.mark.parametrize("change,reason", [
    (set_model(encoder_heads=3), "embed_dim must be divisible by num_heads"),
    (set_model(head="linear"), "the linear head has one scene and no propagation steps"),
])
def test_config_the_layers_refuse_is_one_line(tiny_run: TinyRun, tmp_path: Path, image: Path,
                                              salgl_main, change, reason: str) -> None:
    """Within every bound, yet not a model: found on the meta device, before allocating."""
    model = with_meta(tiny_run.model, tmp_path / "m.safetensors", change)
    message = refused(salgl_main, tmp_path, "predict", str(model), str(image))
    assert message.startswith(f"{model}: metadata field 'model' describes a model that "
                              f"cannot be built ({reason}"), message


def test_size_within_bounds_but_not_the_files_is_refused_without_allocating(
        tiny_run: TinyRun, tmp_path: Path, image: Path, salgl_main) -> None:
    """attention_dim 65536 builds a 17 GB hidden layer; the meta-device check sees the
    mismatch with the file's tensors first."""
    model = with_meta(tiny_run.model, tmp_path / "m.safetensors",
                      set_model(attention_dim=65536))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    message = refused(salgl_main, tmp_path, "predict", str(model), str(image))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak < 1e9
    assert message.startswith(f"{model}: tensors do not match the stored config: ")
    assert "attention.hidden.weight (8, 8) instead of (65536, 65536)" in message


def test_memory_estimate_stops_a_model_that_would_not_fit(
        tiny_run: TinyRun, tmp_path: Path, image: Path, salgl_main,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A resnet's tensors do not depend on the input size, so img_size 2048 matches the
    file: only the activation estimate can stop it. `salgl info` reads metadata only and
    describes the file as it is."""
    model = with_meta(tiny_run.model, tmp_path / "m.safetensors", set_model(img_size=2048))
    monkeypatch.setenv("SALGL_MEMORY_LIMIT_GB", "1")
    message = refused(salgl_main, tmp_path, "predict", str(model), str(image),
                      "--batch-size", "2")
    assert refused(salgl_main, tmp_path, "export", str(model), "--onnx",
                   str(tmp_path / "m.onnx")) == message
    # predict's estimate covers one batch of its --batch-size (32 by default)
    assert refused(salgl_main, tmp_path, "predict", str(model), str(image)).endswith(
        "of activations for 32 images of 2048 px), more than the 1.0 GB allowed by "
        "SALGL_MEMORY_LIMIT_GB")
    code, out, _ = salgl_main("info", str(model))
    assert code == 0 and "2048 px input" in out
    needed = re.match(rf"{re.escape(str(model))}: building this model needs about "
                      r"(\d+\.\d) GB \(", message)
    assert needed and 4.3 <= float(needed.group(1)) < 6, message  # 2 x 2048^2 x 512 bytes
    assert message.endswith("of activations for 2 images of 2048 px), more than the "
                            "1.0 GB allowed by SALGL_MEMORY_LIMIT_GB")
    monkeypatch.setenv("SALGL_MEMORY_LIMIT_GB", "lots")
    assert refused(salgl_main, tmp_path, "predict", str(tiny_run.model), str(image)) == (
        "SALGL_MEMORY_LIMIT_GB: 'lots' is not a positive number of GB")


@pytest.mark.parametrize("change,expected", [
    (lambda m: m.update(extra=["not", "a", "dict"]),
     "metadata field 'extra' is a list, expected an object"),
    (lambda m: m["extra"].update(train="fast"),
     "metadata field 'extra': train is 'fast', expected an object"),
    (lambda m: m.update(labels=list(range(len(LABELS)))),
     "metadata field 'labels': label 1 is 0, expected a name"),
    (lambda m: m.update(labels=", ".join(LABELS)),
     "metadata field 'labels' is 'cat, dog, traffic light, teddy bear, sofa, cup', expected a "
     "list of label names"),
    (lambda m: m["extra"].update(thresholds=[0.5, 0.5, 0.5]),
     "metadata field 'extra': 3 thresholds for 6 labels"),
    (lambda m: m["extra"].update(thresholds=["0.5"] * len(LABELS)),
     "metadata field 'extra': thresholds must be a list of numbers, one per label"),
    (set_model(dropout=float("nan")),
     "metadata field 'model.dropout' is NaN, not a number JSON allows"),
    (set_model(dropout=1.5), "metadata field 'model' is invalid: dropout: expected a number "
     "in [0, 1], got 1.5"),
    (set_model(soft="false"), "metadata field 'model' is invalid: soft: expected true or "
     "false, got 'false'"),
    (set_model(num_classes=6.0), "metadata field 'model' is invalid: num_classes: expected an "
     "integer, got float"),
    (set_model(backbone="resnet10x"), "metadata field 'model': backbone: unknown backbone "
     "'resnet10x'"),
    (set_model(head="mlp"), "metadata field 'model' is invalid: head: expected one of salgl, "
     "linear, got 'mlp'"),
    (lambda m: m.update(normalization={"kind": "imagenet", "std": [0.2, 0.0, 0.2]}),
     "metadata field 'normalization': std must be three positive numbers (R, G, B)"),
    (lambda m: m.update(normalization="imagenet"),
     "metadata field 'normalization' is 'imagenet', expected an object"),
    (lambda m: m.update(format_version=True),
     "metadata field 'format_version' is True, expected an integer from 1 to 1"),
])
def test_bad_metadata_types_are_one_line(tiny_run: TinyRun, tmp_path: Path, image: Path,
                                         salgl_main, change, expected: str) -> None:
    model = with_meta(tiny_run.model, tmp_path / "m.safetensors", change)
    message = every_command_refuses(salgl_main, tmp_path, model, image)
    assert message.startswith(f"{model}: {expected}"), message


@pytest.mark.parametrize("depth,expected", [
    (40, "metadata field 'extra.deep[0][0]"),  # parses, then refused by depth
    (100_000, "metadata field 'salgl' nests too deep to read (a damaged file)"),
])
def test_deeply_nested_metadata_is_refused(tiny_run: TinyRun, tmp_path: Path, salgl_main,
                                           depth: int, expected: str) -> None:
    header, _ = split_file(tiny_run.model.read_bytes())
    text = header["__metadata__"]["salgl"]
    extra_at = text.index('"extra": {') + len('"extra": {')
    nested = text[:extra_at] + '"deep": ' + "[" * depth + "]" * depth + ", " + text[extra_at:]
    model = with_meta_text(tiny_run.model, tmp_path / "m.safetensors", nested)
    message = refused(salgl_main, tmp_path, "info", str(model))
    assert message.startswith(f"{model}: {expected}")


@pytest.mark.parametrize("dtype,name", [(torch.int8, "I8"), (torch.bool, "BOOL"),
                                        (torch.int32, "I32")])
def test_integer_and_bool_weights_are_refused(tiny_run: TinyRun, tmp_path: Path, image: Path,
                                              salgl_main, dtype: torch.dtype,
                                              name: str) -> None:
    def cast(tensors: dict) -> None:
        tensors[FIRST_FLOAT] = tensors[FIRST_FLOAT].to(dtype)

    model = with_tensors(tiny_run.model, tmp_path / "m.safetensors", cast)
    for args in (("predict", str(model), str(image)),
                 ("export", str(model), "--onnx", str(tmp_path / "m.onnx"))):
        assert refused(salgl_main, tmp_path, *args) == (
            f"{model}: tensor {FIRST_FLOAT} is stored as {name}, but the model keeps it as "
            "floating point (F16, BF16, F32, F64)")


def test_half_precision_weights_still_load(tiny_run: TinyRun, tmp_path: Path) -> None:
    model = with_tensors(tiny_run.model, tmp_path / "m.safetensors",
                         lambda t: t.update({k: v.half() for k, v in t.items()
                                             if v.is_floating_point()}))
    loaded, info = load_model(model)
    assert loaded.attention.hidden.weight.dtype == torch.float32 and info.labels == LABELS


# ------------------------------------------------------- finding 5: NaN weights, labels


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_weight_is_refused_by_predict_and_export(
        tiny_run: TinyRun, tmp_path: Path, image: Path, salgl_main, bad: float) -> None:
    def damage(tensors: dict) -> None:
        tensors[FIRST_FLOAT][0, :3] = bad

    model = with_tensors(tiny_run.model, tmp_path / "m.safetensors", damage)
    expected = (f"{model}: tensor {FIRST_FLOAT} has 3 NaN/Inf values (a diverged or damaged "
                "model)")
    assert refused(salgl_main, tmp_path, "predict", str(model), str(image)) == expected
    assert refused(salgl_main, tmp_path, "export", str(model), "--onnx",
                   str(tmp_path / "m.onnx")) == expected


def test_duplicate_label_names_are_refused(tiny_run: TinyRun, tmp_path: Path, image: Path,
                                           salgl_main) -> None:
    model = with_meta(tiny_run.model, tmp_path / "m.safetensors",
                      lambda m: m.update(labels=["cat", "cat", *LABELS[2:]]))
    assert every_command_refuses(salgl_main, tmp_path, model, image) == (
        f"{model}: metadata field 'labels': duplicate label 'cat' (entries 1 and 2)")


@pytest.mark.parametrize("label,shown,problem", [
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m", "U+001B (a control character)"),
    ("two\nlines", "two\\nlines", "a newline"),
    ("abc\u202eevil", "abc\\u202eevil", "U+202E (an invisible format character)"),
])
def test_control_characters_in_labels_are_refused_and_shown_escaped(
        tiny_run: TinyRun, tmp_path: Path, salgl_main, label: str, shown: str,
        problem: str) -> None:
    """The rule prepare and import-official apply to the names they write."""
    model = with_meta(tiny_run.model, tmp_path / "m.safetensors",
                      lambda m: m["labels"].__setitem__(2, label))
    message = refused(salgl_main, tmp_path, "info", str(model))
    assert message == f"{model}: metadata field 'labels': label '{shown}' contains {problem}"
    assert "\x1b" not in message and "\u202e" not in message


def test_info_shows_other_stored_text_escaped(tiny_run: TinyRun, tmp_path: Path,
                                              salgl_main) -> None:
    model = with_meta(tiny_run.model, tmp_path / "m.safetensors",
                      lambda m: m["extra"].update(dataset="\x1b[2Jwiped\nfake line"))
    code, out, err = salgl_main("info", str(model))
    assert code == 0, err
    assert "data       \\x1b[2Jwiped\\nfake line" in out and "\x1b" not in out
    code, out, _ = salgl_main("info", str(model), "--json")
    assert code == 0 and "\x1b" not in out
    assert json.loads(out)["dataset"] == "\x1b[2Jwiped\nfake line"


def test_labels_in_any_script_load(tiny_run: TinyRun, tmp_path: Path) -> None:
    names = ["café", "交通灯", "no\u00a0break", *LABELS[3:]]
    model = with_meta(tiny_run.model, tmp_path / "m.safetensors",
                      lambda m: m.update(labels=names))
    assert load_model(model)[1].labels == names


# ----------------------------------------------------------------------------- fuzzing


FUZZ_COUNT = 300
FUZZ_SEED = 20
FUZZ_CAP_BYTES = 1_500_000_000  # address space beyond what torch and the model already use
ODD_VALUES: list[Any] = [
    0, -1, 1, 7, 2**31, 10**12, -(10**12), 2e6, 0.5, -0.5, 1e308, float("nan"), float("inf"),
    float("-inf"), True, False, None, "", "x", "resnet10t", "\x1b[31m", "a\nb", "\u202e",
    [], [1, 2, 3], ["cat"] * 6, {}, {"kind": "imagenet"}, [[[[[]]]]], "9" * 30, 2048, 65536,
]
ODD_TEXTS = ["", "{", "[]", "null", "NaN", '{"format": "salgl-model"}', "9" * 5000,
             "[" * 5000 + "]" * 5000, '{"a": ' * 60 + "1" + "}" * 60, "\x00\x1b"]
ODD_DTYPES = ["F16", "BF16", "F64", "I8", "I32", "I64", "U8", "BOOL", "F8_E4M3", "X", 7]


def _containers(node: Any) -> list[Any]:
    """Every dict and list inside ``node`` (itself included), in a fixed order."""
    found, stack = [], [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list)):
            found.append(item)
            stack.extend(reversed(list(item.values() if isinstance(item, dict) else item)))
    return found


def _mutate_meta(meta: dict, rng: random.Random) -> str:
    """Replace, delete or add one value somewhere in the metadata (in the architecture
    config half of the time: its sizes decide memory); returns what it did."""
    in_config = rng.random() < 0.5 and isinstance(meta.get("model"), dict) and meta["model"]
    target = meta["model"] if in_config else rng.choice([c for c in _containers(meta) if c])
    keys = list(target) if isinstance(target, dict) else list(range(len(target)))
    key = rng.choice(keys)
    action = rng.choice(["replace", "replace", "replace", "delete", "add"])
    if action == "delete":
        del target[key]
    elif action == "add" and isinstance(target, dict):
        target[rng.choice(["extra_key", "\x1b", "num_scenes2"])] = rng.choice(ODD_VALUES)
    else:
        target[key] = rng.choice(ODD_VALUES)
    return f"meta {action} {key!r}"


def _mutate_header(header: dict, rng: random.Random) -> str:
    """Change one tensor's dtype, shape or name in the safetensors header."""
    name = rng.choice(sorted(k for k in header if k != "__metadata__"))
    entry = header[name]
    action = rng.choice(["dtype", "shape", "permute", "rename", "drop"])
    if action == "dtype":
        entry["dtype"] = rng.choice(ODD_DTYPES)
    elif action == "shape":
        entry["shape"] = [rng.choice([0, 1, 2, 10**6, -1, 2**40]) for _ in entry["shape"]]
    elif action == "permute" and len(entry["shape"]) > 1:
        entry["shape"] = list(reversed(entry["shape"]))
    elif action == "rename":
        header[name + rng.choice(["_", "\x1b[2J", "\n"])] = header.pop(name)
    else:
        del header[name]
    return f"header {action} {name}"


def _mutate_data(header: dict, data: bytearray, rng: random.Random) -> str:
    """Write a NaN or Inf into one float32 tensor's bytes."""
    name = rng.choice(sorted(k for k, v in header.items()
                             if k != "__metadata__" and v["dtype"] == "F32"))
    start, end = header[name]["data_offsets"]
    at = start + 4 * rng.randrange((end - start) // 4)
    data[at:at + 4] = struct.pack("<f", rng.choice([float("nan"), float("inf")]))
    return f"data nan {name}"


def mutate(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One seeded mutation of a valid model file's header, metadata, bytes or length."""
    header, data = split_file(raw)
    kind = rng.choice(["meta", "meta", "meta", "meta", "meta_text", "header", "header",
                       "data", "truncate"])
    if kind == "truncate":
        return raw[:rng.randrange(len(raw))], "truncate"
    if kind == "data":
        buffer = bytearray(data)
        what = _mutate_data(header, buffer, rng)
        return join_file(json.dumps(header), bytes(buffer)), what
    if kind == "meta_text":
        header["__metadata__"]["salgl"] = rng.choice(ODD_TEXTS)
        what = "meta text"
    elif kind == "header":
        what = _mutate_header(header, rng)
    else:
        meta = json.loads(header["__metadata__"]["salgl"])
        what = " + ".join(_mutate_meta(meta, rng) for _ in range(rng.choice([1, 1, 2])))
        header["__metadata__"]["salgl"] = json.dumps(meta)
    return join_file(json.dumps(header), data), what


def _address_space() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))


def fuzz_worker(model: Path, work: Path, seed: int, count: int) -> dict:
    """Load ``count`` mutations under an address-space cap; report outcomes and failures
    (a traceback, or a SalglError of more than one line or not naming the file)."""
    torch.set_num_threads(1)
    load_model(model)  # imports and first-use allocations before the cap
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    cap = _address_space() + FUZZ_CAP_BYTES
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    rng = random.Random(seed)
    raw = model.read_bytes()
    outcomes: dict[str, int] = {"loaded": 0, "refused": 0, "nan refused": 0}
    failures = []
    big = with_meta(model, work / "big.safetensors", set_model(img_size=2048))
    try:  # within bounds and matching the tensors: only the memory estimate can stop it
        load_model(big)
        failures.append("img_size 2048: loaded under the cap")
    except SalglError as exc:
        outcomes["beyond the cap"] = "address-space limit (ulimit -v)" in str(exc)
    big.unlink()
    for number in range(count):
        path = work / f"mutant{number}.safetensors"
        data, what = mutate(raw, rng)
        path.write_bytes(data)
        try:
            load_model(path)
            outcomes["loaded"] += 1
            if what.startswith("data nan"):
                failures.append(f"{what}: loaded")
        except SalglError as exc:
            message = str(exc)
            outcomes["refused"] += 1
            outcomes["nan refused"] += "NaN/Inf values" in message
            if "\n" in message or not message.startswith(f"{path}: "):
                failures.append(f"{what}: {message!r}")
        except Exception as exc:  # the failure this test exists to catch
            failures.append(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")
        path.unlink()
    return {"outcomes": outcomes, "failures": failures, "cap": cap}


def test_fuzzed_model_files_load_or_fail_with_one_line_under_a_memory_cap(
        tiny_run: TinyRun, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    env.pop("SALGL_MEMORY_LIMIT_GB", None)
    result = subprocess.run(
        [sys.executable, __file__, str(tiny_run.model), str(tmp_path), str(FUZZ_SEED),
         str(FUZZ_COUNT)], capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failures"] == []
    outcomes = report["outcomes"]
    assert outcomes["loaded"] + outcomes["refused"] == FUZZ_COUNT
    assert outcomes["loaded"] >= 10 and outcomes["refused"] >= FUZZ_COUNT // 2, outcomes
    assert outcomes["nan refused"] >= 5 and outcomes["beyond the cap"], outcomes
    assert list(tmp_path.iterdir()) == []


def test_fuzzed_model_files_through_the_command_line(
        tiny_run: TinyRun, tmp_path: Path, image: Path, salgl_main,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A few mutations through `salgl info` and `salgl predict`: exit 0 or 1 with output, or
    exit 2 with one line; the memory limit keeps accepted ones small."""
    monkeypatch.setenv("SALGL_MEMORY_LIMIT_GB", "1")
    rng = random.Random(FUZZ_SEED + 1)
    raw = tiny_run.model.read_bytes()
    codes = []
    for number in range(12):
        data, what = mutate(raw, rng)
        model = tmp_path / f"mutant{number}.safetensors"
        model.write_bytes(data)
        for args in (("info", str(model)), ("predict", str(model), str(image))):
            code, out, err = salgl_main(*args)
            codes.append(code)
            assert "Traceback" not in err, (what, err)
            if code == 2:
                assert len(err.strip().splitlines()) == 1, (what, err)
            else:
                assert code in (0, 1) and out, (what, code, err)
    assert 2 in codes and 0 in codes


if __name__ == "__main__":  # the fuzz test's subprocess: MODEL WORK SEED COUNT
    print(json.dumps(fuzz_worker(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]),
                                 int(sys.argv[4]))))


def test_the_heads_a_file_may_name_are_the_heads_there_are() -> None:
    from salgl.model import HEADS
    from salgl.model.base import HEAD_NAMES

    assert tuple(HEADS) == HEAD_NAMES


def test_labels_equal_once_unicode_normalised_are_duplicates(
        tiny_run: TinyRun, tmp_path: Path, image: Path, salgl_main) -> None:
    model = with_meta(tiny_run.model, tmp_path / "m.safetensors",
                      lambda m: m.update(labels=["caf\u00e9", "cafe\u0301", *LABELS[2:]]))
    assert every_command_refuses(salgl_main, tmp_path, model, image) == (
        f"{model}: metadata field 'labels': duplicate label 'cafe\u0301' (entries 1 and 2; "
        "equal once Unicode-normalised)")


def test_a_key_written_twice_is_refused(tiny_run: TinyRun, tmp_path: Path, image: Path,
                                        salgl_main) -> None:
    """JSON readers disagree on which of two copies wins, so a checker and a loader could
    see different files: a second `labels` hiding an escape, a second tensor entry."""
    header, data = split_file(tiny_run.model.read_bytes())
    meta = header["__metadata__"]["salgl"]
    twice = meta.replace('{"format"', '{"labels": ["\\u001b[31m"], "format"', 1)
    model = with_meta_text(tiny_run.model, tmp_path / "m.safetensors", twice)
    assert every_command_refuses(salgl_main, tmp_path, model, image) == (
        f"{model}: metadata field 'salgl' is not valid JSON (duplicate key 'labels')")
    name = next(k for k in header if k != "__metadata__")
    text = json.dumps(header)
    entry = f'"{name}": {json.dumps(header[name])}'
    doubled = tmp_path / "t.safetensors"
    doubled.write_bytes(join_file(text.replace(entry, f"{entry}, {entry}", 1), data))
    assert refused(salgl_main, tmp_path, "predict", str(doubled), str(image)) == (
        f"{doubled}: the safetensors header has a duplicate key "
        f"'{name}'")
