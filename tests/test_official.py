"""Released checkpoints: import, parity with a naive reference of method.md, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from salgl.checkpoint import load_model
from salgl.errors import SalglError
from salgl.official import import_official

from fakes import write_exploit_pickle
from official_fixtures import (
    C,
    S,
    fake_checkpoint,
    labels_file,
    released_config,
    write_experiment,
)


def naive_logits(state: dict[str, torch.Tensor], images: torch.Tensor, soft: bool
                 ) -> torch.Tensor:
    """method.md written plainly, from the released keys, looping over images."""
    import timm

    w = {k.removeprefix("module."): v for k, v in state.items()}
    backbone = timm.create_model("resnet101", num_classes=0, global_pool="")
    backbone.load_state_dict({k[9:]: v for k, v in w.items() if k.startswith("backbone.")})
    encoder = torch.nn.TransformerEncoderLayer(2048, 8, 2048, dropout=0.1, batch_first=True)
    encoder.load_state_dict({k[12:]: v for k, v in w.items() if k.startswith("tb.layers.0.")})
    backbone.eval()
    encoder.eval()
    m = w["comatrix"]
    probs = torch.zeros_like(m)
    for k in range(S):
        for i in range(C):
            for j in range(C):
                probs[k, i, j] = m[k, j, i] / (m[k, i, i] + 1e-8)
        probs[k] = probs[k] / (probs[k].sum(-1, keepdim=True) + 1e-8)
    out = []
    with torch.no_grad():
        fmap = backbone.forward_features(images)
        for b in range(images.shape[0]):
            tokens = encoder(fmap[b].flatten(1).t()[None])[0]           # (N, D)
            p = F.softmax(tokens.mean(0) @ w["scene_linear.weight"].t(), -1)
            graph = probs[int(p.argmax())] if not soft else (p[:, None, None] * probs).sum(0)
            u = tokens @ w["attention.linear1.weight"].t()             # (N, A)
            v = w["embeddings"] @ w["attention.linear2.weight"].t()    # (C, A)
            hidden = torch.tanh(v[:, None, :] * u[None]) @ w["attention.hidden_linear.weight"].t()
            hidden = hidden + w["attention.hidden_linear.bias"]
            score = hidden @ w["attention.target_linear.weight"].t()
            score = score[..., 0] + w["attention.target_linear.bias"]
            h0 = F.softmax(score, -1) @ tokens                          # (C, D)
            h = h0
            for _ in range(3):
                x = torch.cat([graph @ h, graph.t() @ h], -1)

                def lin(name, inp):
                    return inp @ w[f"ggnn.{name}.weight"].t() + w[f"ggnn.{name}.bias"]

                z = torch.sigmoid(lin("fc1_w", x) + lin("fc1_u", h))
                r = torch.sigmoid(lin("fc2_w", x) + lin("fc2_u", h))
                cand = torch.tanh(lin("fc3_w", x) + lin("fc3_u", r * h))
                h = (1 - z) * h + z * cand
            fused = torch.tanh(torch.cat([h0, h], -1) @ w["fc.0.weight"].t() + w["fc.0.bias"])
            out.append((fused * w["classifier.weight"]).sum(-1) + w["classifier.bias"])
    return torch.stack(out)


@pytest.mark.parametrize("soft", [False, True])
def test_imported_model_matches_naive_reference(tmp_path: Path, soft: bool) -> None:
    state = fake_checkpoint()
    exp = write_experiment(tmp_path / "exp", released_config(soft=soft), state)
    out = tmp_path / "imported.safetensors"
    import_official(exp, labels_file(tmp_path / "labels.txt"), out)
    model, info = load_model(out)
    assert info.labels[3] == "label 3" and info.config.soft is soft
    assert info.normalization["kind"] == "imagenet"
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(images)["logits"]
    reference = naive_logits(state, images, soft)
    assert ours.shape == (2, C)
    assert (ours - reference).abs().max().item() <= 1e-4
    assert reference.std() > 1e-3  # a degenerate constant output would prove nothing


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    exp = tmp_path / "exp"
    write_experiment(exp, released_config(), {"x": torch.zeros(1)})
    write_exploit_pickle(exp / "checkpoints" / "ema_best_model.pth", marker, "a")
    with pytest.raises(SalglError, match="refused or unreadable weight file") as caught:
        import_official(exp, labels_file(tmp_path / "l.txt"), tmp_path / "o.safetensors")
    assert not marker.exists() and not (tmp_path / "o.safetensors").exists()
    assert "weights_only" not in str(caught.value)  # never advise loading it anyway


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    return fake_checkpoint(seed=3)


@pytest.mark.parametrize("case,fragment", [
    ("missing_key", "config.yaml: needed key 'num_scenes' is missing"),
    ("unknown_backbone", "unknown backbone 'resnet1001'"),
    ("labels_length", "79 labels, but config.yaml says num_classes 80"),
    ("truncated", "refused or unreadable weight file"),
    ("shape", "classifier.weight has shape (80, 2000)"),
    ("extra_key", "unexpected key module.extra.weight"),
    ("missing_weight", "missing key module.ggnn.fc2_w.weight"),
])
def test_bad_input_is_named_and_writes_nothing(tmp_path: Path, small_state, case: str,
                                               fragment: str) -> None:
    needs_weights = case in ("shape", "extra_key", "missing_weight")
    state = dict(small_state) if needs_weights else {"module.comatrix": torch.zeros(S, C, C)}
    config, n_labels = released_config(), C
    if case == "missing_key":
        config.pop("num_scenes")
    elif case == "unknown_backbone":
        config["backbone"] = "resnet1001"
    elif case == "labels_length":
        n_labels = C - 1
    elif case == "shape":
        state["module.classifier.weight"] = torch.zeros(C, 2000)
    elif case == "extra_key":
        state["module.extra.weight"] = torch.zeros(2)
    elif case == "missing_weight":
        state.pop("module.ggnn.fc2_w.weight")
    exp = write_experiment(tmp_path / "exp", config, state)
    if case == "truncated":
        path = exp / "checkpoints" / "ema_best_model.pth"
        path.write_bytes(path.read_bytes()[:5000])
    out = tmp_path / "out.safetensors"
    with pytest.raises(SalglError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        import_official(exp, labels_file(tmp_path / "l.txt", n_labels), out)
    assert not out.exists()


def to_released_format(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our key names -> the authors' (the inverse of the import), prefixed 'module.'."""
    from salgl.official import ENCODER_PREFIX, FUSED, HEAD_NAMES

    inverse = {ours: theirs for theirs, ours in HEAD_NAMES.items()}
    out = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            out[key] = value
        elif key.startswith(ENCODER_PREFIX[1]):
            out[ENCODER_PREFIX[0] + key[len(ENCODER_PREFIX[1]):]] = value
        elif key in inverse:
            out[inverse[key]] = value
    for ours, parts in FUSED.items():
        for suffix in ("weight", "bias"):
            for name, chunk in zip(parts, state[f"{ours}.{suffix}"].chunk(len(parts)),
                                   strict=True):
                out[f"{name}.{suffix}"] = chunk.clone()
    return {f"module.{k}": v for k, v in out.items()}


def test_import_evaluate_and_figures_end_to_end(tmp_path: Path) -> None:
    import json

    import yaml
    from test_cli import salgl

    from salgl.model import SALGL, SalglConfig

    from conftest import LABELS
    from fakes import make_prepared

    torch.manual_seed(0)
    config = SalglConfig(backbone="resnet10t", num_classes=len(LABELS), img_size=32, embed_dim=5,
                         num_scenes=3, attention_dim=16, encoder_ffn=32)
    model = SALGL(config, torch.randn(len(LABELS), 5))
    model.cooccurrence.copy_(fake_memory(3, len(LABELS)))
    exp = write_experiment(tmp_path / "exp", released_config(
        backbone="resnet10t", img_size=32, num_classes=len(LABELS), num_scenes=3),
        to_released_format(model.state_dict()))
    make_prepared(tmp_path / "data" / "prepared" / "fashion_scenes", LABELS)
    params = {"datasets": ["fashion_scenes"],
              "official": {"tiny": {"dir": str(exp), "dataset": "fashion_scenes"}},
              "plots": {"fashion_scenes": {"label_groups": {"pets": ["cat", "dog"]}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    result = salgl("evaluate-official", "tiny", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics" / "official" / "tiny.json").read_text())
    assert metrics["num_labels"] == len(LABELS) and 0 <= metrics["mAP"] <= 1
    imported, _ = load_model(tmp_path / "models" / "official" / "tiny.safetensors")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(imported(x)["logits"], model.eval()(x)["logits"], atol=1e-5)
    figures = tmp_path / "plots" / "official" / "tiny" / "figures"
    for name in ("group_pets.png", "scene_top_labels.png", "scene_2_cloud.png",
                 "scene_0_cooccurrence.png", "pr_curves.png"):
        assert (figures / name).is_file(), name


def fake_memory(scenes: int, labels: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    y = (torch.rand(scenes, 40, labels, generator=gen) < 0.3).float()
    return torch.einsum("sbi,sbj->sij", y, y)
