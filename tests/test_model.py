"""The fast forms in the model equal the naive forms of method.md (salgl.model.reference),
gradients included."""

from __future__ import annotations

import copy

import pytest
import torch

from salgl.errors import SalglError
from salgl.losses import asymmetric_loss, scene_regularisers
from salgl.model import SALGL, SalglConfig, reference
from salgl.model.layers import LabelAttention, sine_position_code
from salgl.model.memory import conditional_probabilities, cooccurrence_increment
from salgl.model.propagation import GatedPropagation


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def naive_increment(p: torch.Tensor, y: torch.Tensor, soft: bool) -> torch.Tensor:
    """Per-image loop of method.md step 4, from an empty memory."""
    return reference.update_cooccurrence(torch.zeros(p.shape[1], y.shape[1], y.shape[1]),
                                         p, y, soft)


@pytest.mark.parametrize("soft", [False, True])
def test_batched_cooccurrence_update_equals_per_image_loop(soft: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(9, 4, generator=gen), -1).requires_grad_()
    y = (torch.rand(9, 6, generator=gen) < 0.4).double()
    weights = torch.randn(4, 6, 6, generator=gen)
    fast = cooccurrence_increment(p, y, 4, soft)
    if soft:
        (fast * weights).sum().backward()
        fast_grad = p.grad.clone()
        p.grad = None
    else:
        assert not fast.requires_grad  # hard mode: argmax carries no gradient
    slow = naive_increment(p, y, soft)
    assert torch.allclose(fast, slow, atol=1e-12)
    if soft:
        (slow * weights).sum().backward()
        assert torch.allclose(fast_grad, p.grad, atol=1e-12)
        assert fast_grad.abs().sum() > 0


def test_conditional_probabilities_match_definition() -> None:
    gen = torch.Generator().manual_seed(1)
    y = (torch.rand(30, 5, generator=gen) < 0.5).double()
    m = torch.einsum("bi,bj->ij", y, y)[None].repeat(2, 1, 1)
    m[1, 0, :] = 0
    m[1, :, 0] = 0  # label 0 never seen in scene 1
    for ignore_self in (False, True):
        for normalize in (False, True):
            got = conditional_probabilities(m, ignore_self, normalize)
            expected = reference.conditional_probabilities(m, ignore_self, normalize)
            assert torch.allclose(got, expected, atol=1e-12)
    raw = conditional_probabilities(m, normalize=False)
    assert torch.allclose(raw[0].diagonal(), torch.ones(5), atol=1e-6)
    assert raw[1, 0].abs().sum() == 0


def naive_attention(fast: LabelAttention, tokens: torch.Tensor, labels: torch.Tensor):
    """Released formulation: explicit W_h (A x A) then w_t."""
    return reference.label_attention(tokens, labels, fast.visual_proj, fast.label_proj,
                                     fast.hidden, fast.score)


def test_collapsed_attention_equals_explicit_layers_with_gradients() -> None:
    torch.manual_seed(0)
    fast = LabelAttention(visual_dim=12, label_dim=7, attention_dim=10)
    tokens = torch.randn(3, 5, 12, requires_grad=True)
    labels = torch.randn(4, 7, requires_grad=True)
    h_fast, a_fast = fast(tokens, labels)
    loss_w = torch.randn_like(h_fast)
    (h_fast * loss_w).sum().backward()
    grads_fast = {n: p.grad.clone() for n, p in fast.named_parameters()}
    g_tokens, g_labels = tokens.grad.clone(), labels.grad.clone()
    fast.zero_grad()
    tokens.grad = labels.grad = None
    h_slow, a_slow = naive_attention(fast, tokens, labels)
    (h_slow * loss_w).sum().backward()
    assert torch.allclose(h_fast, h_slow, atol=1e-10)
    assert torch.allclose(a_fast, a_slow, atol=1e-10)
    for name, param in fast.named_parameters():
        assert torch.allclose(grads_fast[name], param.grad, atol=1e-10), name
    assert torch.allclose(g_tokens, tokens.grad, atol=1e-10)
    assert torch.allclose(g_labels, labels.grad, atol=1e-10)
    assert grads_fast["hidden.weight"].abs().sum() > 0


def naive_propagation(prop: GatedPropagation, h: torch.Tensor, graph: torch.Tensor):
    """method.md step 9 with six separate linear maps sliced out of the fused ones."""
    return reference.gated_propagation(h, graph, prop.steps, prop.outmess,
                                       reference.gate_maps(prop))


@pytest.mark.parametrize("outmess", [True, False])
def test_fused_gates_equal_separate_gates(outmess: bool) -> None:
    torch.manual_seed(2)
    prop = GatedPropagation(dim=6, steps=3, outmess=outmess)
    h = torch.randn(2, 5, 6)
    graph = torch.rand(2, 5, 5)
    assert torch.allclose(prop(h, graph), naive_propagation(prop, h, graph), atol=1e-12)


@pytest.mark.parametrize("outmess", [True, False])
def test_propagation_gradients_equal_autograd_of_separate_gates(outmess: bool) -> None:
    """The hand-written backward gives autograd's gradients for every input and weight."""
    torch.manual_seed(3)
    prop = GatedPropagation(dim=6, steps=3, outmess=outmess)
    h = torch.randn(2, 5, 6, requires_grad=True)
    graph = torch.rand(2, 5, 5, requires_grad=True)
    weights = torch.randn(2, 5, 6)
    (prop(h, graph) * weights).sum().backward()
    fast = [h.grad, graph.grad] + [p.grad for p in prop.parameters()]
    h.grad = graph.grad = None
    prop.zero_grad(set_to_none=True)
    (naive_propagation(prop, h, graph) * weights).sum().backward()
    slow = [h.grad, graph.grad] + [p.grad for p in prop.parameters()]
    for a, b in zip(fast, slow, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    assert all(g.abs().sum() > 0 for g in fast)


def test_propagation_passes_gradcheck() -> None:
    torch.manual_seed(4)
    prop = GatedPropagation(dim=3, steps=2)
    h = torch.randn(2, 4, 3, requires_grad=True)
    graph = torch.rand(2, 4, 4, requires_grad=True)
    params = tuple(prop.parameters())

    def run(h, graph, *weights):
        return torch.func.functional_call(prop, dict(zip(
            [n for n, _ in prop.named_parameters()], weights, strict=True)), (h, graph))

    assert torch.autograd.gradcheck(run, (h, graph, *params))


def test_propagation_under_bf16_autocast_keeps_fp32_weight_gradients() -> None:
    torch.manual_seed(5)
    prop = GatedPropagation(dim=8, steps=3).float()
    h = torch.randn(2, 5, 8, dtype=torch.float32).bfloat16().requires_grad_()
    graph = torch.rand(2, 5, 5, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = prop(h, graph)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in prop.parameters())
    reference = naive_propagation(prop.double(), h.detach().double(), graph.double())
    assert torch.allclose(out.double(), reference, atol=0.05)


def small_model(soft: bool = False, embed_dim: int | None = 8, **kw) -> SALGL:
    torch.manual_seed(0)
    cfg = SalglConfig(backbone="resnet10t", num_classes=5, img_size=32, embed_dim=embed_dim,
                      num_scenes=3, attention_dim=16, encoder_heads=8, encoder_ffn=32,
                      backbone_stage=2, soft=soft, **kw)
    return SALGL(cfg, torch.randn(5, 8) if embed_dim else None).double()


@pytest.mark.parametrize("soft", [False, True])
def test_training_forward_updates_memory_before_building_graphs(soft: bool) -> None:
    model = small_model(soft).train()
    images = torch.randn(4, 3, 32, 32)
    targets = (torch.rand(4, 5) < 0.5).double()
    targets[:, 0] = 1
    out = model(images, targets)
    p = out["scene_probs"].detach()
    expected = naive_increment(p, targets, soft)
    assert torch.allclose(model.cooccurrence, expected, atol=1e-10)
    graphs = reference.scene_graphs(reference.conditional_probabilities(expected), p, soft)
    assert torch.allclose(out["graphs"].detach(), graphs, atol=1e-10)
    model.eval()
    before = model.cooccurrence.clone()
    model(images, targets)
    assert torch.equal(model.cooccurrence, before)  # eval never updates the memory


@pytest.mark.parametrize("soft,num_steps,ignore_self", [(False, 3, False), (True, 2, True),
                                                         (False, 0, False)])
def test_forward_equals_the_reference_with_gradients(soft, num_steps, ignore_self) -> None:
    """The whole head, fast (SALGL.forward) and naive (reference.salgl_forward), trained on
    a memory that already holds counts."""
    model = small_model(soft, dropout=0.0, num_steps=num_steps, ignore_self=ignore_self).train()
    model.cooccurrence.copy_(naive_increment(torch.eye(3)[[0, 1, 2, 0]],
                                             (torch.rand(4, 5) < 0.6).double(), soft=False))
    before = model.cooccurrence.clone()
    images = torch.randn(4, 3, 32, 32)
    targets = (torch.rand(4, 5) < 0.5).double()
    weights = torch.randn(4, 5)
    slow = reference.salgl_forward(model, images, targets)
    assert torch.equal(model.cooccurrence, before)  # the reference leaves the buffer alone
    (slow["logits"] * weights).sum().backward()
    slow_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    fast = model(images, targets)
    (fast["logits"] * weights).sum().backward()
    assert torch.allclose(model.cooccurrence, slow["memory"].detach(), atol=1e-10)
    for key in ("logits", "scene_probs", "graphs", "attention"):
        assert torch.allclose(fast[key], slow[key], atol=1e-10), key
    fast_grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert fast_grads.keys() == slow_grads.keys()
    for name, grad in fast_grads.items():
        assert torch.allclose(grad, slow_grads[name], atol=1e-9), name
    scene_grad = fast_grads.get("scene_classifier.weight")
    assert (scene_grad is not None and scene_grad.abs().sum() > 0) == soft


def test_soft_mode_sends_graph_gradient_to_scene_classifier() -> None:
    model = small_model(soft=True).train()
    out = model(torch.randn(3, 3, 32, 32), torch.ones(3, 5, dtype=torch.float64))
    out["logits"].sum().backward()
    assert model.scene_classifier.weight.grad.abs().sum() > 0


def test_output_shapes_random_embeddings_and_position_code() -> None:
    model = small_model(embed_dim=None, pos_encoding=True).eval()
    out = model(torch.randn(2, 3, 32, 32))
    n = out["attention"].shape[-1]
    assert out["logits"].shape == (2, 5) and out["scene_probs"].shape == (2, 3)
    assert out["graphs"].shape == (2, 5, 5) and out["attention"].shape == (2, 5, n)
    assert isinstance(model.label_embeddings, torch.nn.Parameter)
    assert model.label_embeddings.shape == (5, model.feature_dim)
    assert torch.allclose(out["attention"].sum(-1), torch.ones(2, 5, dtype=out["attention"].dtype))


def test_sine_position_code_layout() -> None:
    code = sine_position_code(3, 4, dim=16, prefix=1)
    assert code.shape == (13, 16)
    assert code[0].abs().sum() == 0  # class token gets no position
    assert not torch.allclose(code[1], code[2])  # neighbours differ
    assert code.abs().max() <= 1


def naive_asl(logits, y, gamma_neg=2.0, gamma_pos=0.0, clip=0.0, eps=1e-5):
    total = 0.0
    b, c = logits.shape
    for i in range(b):
        for j in range(c):
            q = torch.sigmoid(logits[i, j])
            qm = min(1 - q + clip, torch.tensor(1.0)) if clip > 0 else 1 - q
            if y[i, j] == 1:
                term = torch.log(torch.clamp(q, min=eps)) * (1 - q).detach() ** gamma_pos
            else:
                term = torch.log(torch.clamp(qm, min=eps)) * (1 - qm).detach() ** gamma_neg
            total = total - term
    return total / b / c * 1000


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_asymmetric_loss_matches_elementwise_definition(clip: float) -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 6, generator=gen, requires_grad=True)
    y = (torch.rand(4, 6, generator=gen) < 0.3).double()
    fast = asymmetric_loss(logits, y, clip=clip)
    fast.backward()
    g = logits.grad.clone()
    logits.grad = None
    slow = naive_asl(logits, y, clip=clip)
    slow.backward()
    assert torch.allclose(fast.double(), slow, atol=1e-4)
    assert torch.allclose(g.double(), logits.grad, atol=1e-5)


def test_scene_regularisers_extremes() -> None:
    one_hot = torch.eye(4)
    reg = scene_regularisers(one_hot)
    assert reg["scene_sample"] < 1e-5  # every image certain of its scene
    assert abs(reg["scene_batch"]) < 1e-3  # batch uses all scenes evenly
    collapsed = scene_regularisers(torch.tensor([[1.0, 0, 0, 0]] * 4))
    assert collapsed["scene_batch"] == pytest.approx(100 * torch.log(torch.tensor(4.0)).item(),
                                                     rel=1e-4)


def test_scene_regularisers_equal_the_reference() -> None:
    gen = torch.Generator().manual_seed(6)
    probs = torch.softmax(torch.randn(7, 4, generator=gen), -1)
    fast, slow = scene_regularisers(probs), reference.scene_regularisers(probs)
    assert fast.keys() == slow.keys()
    for key in fast:
        assert torch.allclose(fast[key], slow[key], atol=1e-12), key


def test_channels_last_backbone_computes_the_same_outputs() -> None:
    model = small_model().eval()
    images = torch.randn(2, 3, 32, 32)
    before = model(images)["logits"]
    model.set_channels_last()
    conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(model(images)["logits"], before, atol=1e-10)


@pytest.mark.parametrize("backbone_stage,stages", [(2, 1), (2, 3), (None, 2)])
def test_recomputed_stages_give_identical_gradients_and_statistics(backbone_stage, stages) -> None:
    torch.manual_seed(0)
    cfg = SalglConfig(backbone="resnet10t", num_classes=5, img_size=32, embed_dim=8,
                      num_scenes=3, attention_dim=16, encoder_ffn=32,
                      backbone_stage=backbone_stage, dropout=0.0)
    plain = SALGL(cfg, torch.randn(5, 8)).double().train()
    recomputing = copy.deepcopy(plain).set_recompute(stages)
    assert recomputing.recompute_cut > 0
    images = torch.randn(4, 3, 32, 32)
    targets = (torch.rand(4, 5) < 0.5).double()
    for model in (plain, recomputing):
        out = model(images, targets)
        (out["logits"] * torch.arange(5.0)).sum().backward()
    for (name, a), b in zip(plain.named_parameters(), recomputing.parameters(), strict=True):
        assert (a.grad is None) == (b.grad is None), name
        assert a.grad is None or torch.equal(a.grad, b.grad), name
    for (name, a), b in zip(plain.named_buffers(), recomputing.buffers(), strict=True):
        assert torch.equal(a, b), name   # BatchNorm statistics updated once, not twice


def test_recompute_refuses_what_it_cannot_do() -> None:
    model = small_model()
    with pytest.raises(SalglError, match="train.x.recompute_stages: 9 stages asked"):
        model.set_recompute(9, "train.x.recompute_stages")
    vit = SALGL(SalglConfig(backbone="vit_tiny_patch16_224", num_classes=5, img_size=32,
                            embed_dim=8, attention_dim=16, encoder_heads=4, encoder_ffn=32))
    with pytest.raises(SalglError, match="not a top-level module"):
        vit.set_recompute(1, "train.x.recompute_stages")
    assert model.set_recompute(0).recompute_cut == 0
