"""SALGL written for reading: every step of method.md in its plainest form.

Nothing here is used for training or prediction. The fast code (salgl.model.memory,
salgl.model.layers.LabelAttention, salgl.model.propagation) batches, fuses and hand-derives
these computations; tests/test_model.py checks it against the functions below, outputs and
gradients. The naive benchmark baseline (benchmarks/reference_salgl.py) is built from them.

Conventions: B images, S scenes, C labels, N visual tokens of width D, attention width A.
``scene_probs`` is (B, S), ``targets`` (B, C) in {0, 1}, the memory M is (S, C, C).
Loops run in Python and everything stays in the inputs' dtype (no autocast).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from salgl.model.propagation import GatedPropagation
    from salgl.model.salgl import SALGL

EPS = 1e-8            # P(j | i): guards labels never seen in a scene
ENTROPY_EPS = 1e-7    # scene regularisers: log(p + eps)

Map = Callable[[torch.Tensor], torch.Tensor]


def update_cooccurrence(memory: torch.Tensor, scene_probs: torch.Tensor, targets: torch.Tensor,
                        soft: bool) -> torch.Tensor:
    """Step 4: M after a training batch, one image at a time (``memory`` is not changed).

    Each image adds its label outer product y y^T: hard mode to the matrix of its most likely
    scene only, soft mode to every scene's matrix weighted by the scene's probability (which
    keeps a gradient to ``scene_probs``)."""
    memory = memory.clone()
    for b in range(targets.shape[0]):
        outer = torch.outer(targets[b], targets[b])          # outer[i, j] = y_i y_j
        if soft:
            memory = memory + scene_probs[b][:, None, None] * outer
        else:
            memory[scene_probs[b].argmax()] += outer   # a tensor index: no device sync
    return memory


def conditional_probabilities(memory: torch.Tensor, ignore_self: bool = False,
                              normalize: bool = True) -> torch.Tensor:
    """Step 5: P[k, i, j] = P(label j | label i, scene k) = M[k, j, i] / M[k, i, i].

    Row i is how often each label j came with label i, over how often i came at all. With
    ``ignore_self`` a label does not point at itself; with ``normalize`` each row is scaled
    to sum to 1 (an all-zero row, a label never seen in that scene, stays zero)."""
    scenes, labels = memory.shape[0], memory.shape[1]
    probs = torch.zeros_like(memory)
    for k in range(scenes):
        for i in range(labels):
            row = memory[k, :, i] / (memory[k, i, i] + EPS)
            if ignore_self:
                row = torch.cat((row[:i], row.new_zeros(1), row[i + 1:]))
            if normalize:
                row = row / (row.sum() + EPS)
            probs[k, i] = row
    return probs


def scene_graphs(probs: torch.Tensor, scene_probs: torch.Tensor, soft: bool) -> torch.Tensor:
    """Step 6: each image's label graph (B, C, C): its most likely scene's P (hard), or the
    mixture of every scene's P weighted by the scene probabilities (soft)."""
    graphs = []
    for b in range(scene_probs.shape[0]):
        if soft:
            graphs.append(sum(scene_probs[b, k] * probs[k] for k in range(probs.shape[0])))
        else:
            graphs.append(probs[scene_probs[b].argmax()])
    return torch.stack(graphs)


def label_attention(tokens: torch.Tensor, labels: torch.Tensor, visual_proj: Map,
                    label_proj: Map, hidden: Map, score: Map
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 8: each label's attention over the tokens and the attended visual feature.

    u = visual_proj(token) (A), v = label_proj(label embedding) (A); the score of label c on
    token n is score(hidden(tanh(u_n * v_c))), the A x A map ``hidden`` applied to every
    (image, label, token); softmax over tokens gives alpha (B, C, N) and the label's feature
    is the alpha-weighted sum of tokens (B, C, D)."""
    u = visual_proj(tokens)                                   # (B, N, A)
    v = label_proj(labels)                                    # (C, A)
    joint = torch.tanh(u[:, None] * v[None, :, None])         # (B, C, N, A)
    scores = score(hidden(joint))[..., 0]                     # (B, C, N)
    alpha = scores.softmax(dim=-1)
    return alpha @ tokens, alpha


def gate_maps(propagation: GatedPropagation) -> dict[str, Map]:
    """The six maps of a GatedPropagation's gates, sliced out of its fused matrices: ``z_x``,
    ``r_x``, ``c_x`` read the messages, ``z_h``, ``r_h`` the state and ``c_h`` the reset
    state (the layout of the released checkpoints' fc1..fc3 _w and _u)."""
    d = propagation.cand_h.weight.shape[0]
    wx, bx = propagation.x_proj.weight, propagation.x_proj.bias
    wh, bh = propagation.h_proj.weight, propagation.h_proj.bias

    def linear(weight: torch.Tensor, bias: torch.Tensor) -> Map:
        return lambda x: F.linear(x, weight, bias)

    return {"z_x": linear(wx[:d], bx[:d]), "r_x": linear(wx[d:2 * d], bx[d:2 * d]),
            "c_x": linear(wx[2 * d:], bx[2 * d:]),
            "z_h": linear(wh[:d], bh[:d]), "r_h": linear(wh[d:], bh[d:]),
            "c_h": propagation.cand_h}


def gated_propagation(h: torch.Tensor, graph: torch.Tensor, steps: int, outmess: bool,
                      maps: Mapping[str, Map]) -> torch.Tensor:
    """Step 9: GGNN over each image's label graph, ``steps`` times (h: (B, C, D)).

    Messages x = [G h, G^T h] (in and out edges; G h alone without ``outmess``), then
    z = sigmoid(z_x(x) + z_h(h)), r = sigmoid(r_x(x) + r_h(h)),
    h~ = tanh(c_x(x) + c_h(r * h)) and h <- (1 - z) h + z h~."""
    for _ in range(steps):
        x = torch.cat((graph @ h, graph.transpose(1, 2) @ h), dim=-1) if outmess else graph @ h
        z = torch.sigmoid(maps["z_x"](x) + maps["z_h"](h))
        r = torch.sigmoid(maps["r_x"](x) + maps["r_h"](h))
        candidate = torch.tanh(maps["c_x"](x) + maps["c_h"](r * h))
        h = (1 - z) * h + z * candidate
    return h


def entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) = -sum_k p_k log(p_k + eps) of one distribution over scenes."""
    return -sum(p[k] * torch.log(p[k] + ENTROPY_EPS) for k in range(p.shape[0]))


def scene_regularisers(scene_probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loss's two scene terms: ``scene_sample``, the mean entropy of each image's scene
    distribution (low: every image sure of its scene), and ``scene_batch``, 100 times how far
    the batch's mean distribution falls short of uniform entropy (low: all scenes used)."""
    batch, scenes = scene_probs.shape
    sample = sum(entropy(scene_probs[b]) for b in range(batch)) / batch
    mean = sum(scene_probs[b] for b in range(batch)) / batch
    return {"scene_sample": sample, "scene_batch": (math.log(scenes) - entropy(mean)) * 100}


def salgl_forward(model: SALGL, images: torch.Tensor, targets: torch.Tensor | None = None
                  ) -> dict[str, torch.Tensor]:
    """SALGL's forward pass with ``model``'s weights, its head written with the functions
    above. The backbone and context encoder are the model's own modules. In training mode
    with targets, the updated memory is returned under ``memory``; the model's buffer is
    left as it was."""
    config = model.config
    tokens, grid = model.tokens(images)                                  # step 1
    tokens = model.encoder(tokens, model._position_code(tokens, grid))   # step 2
    scene_probs = model.scene_classifier(tokens.mean(dim=1)).softmax(dim=-1)   # step 3
    memory = model.cooccurrence                                          # steps 4-6
    if model.training and targets is not None:
        memory = update_cooccurrence(memory, scene_probs, targets, config.soft)
    probs = conditional_probabilities(memory, config.ignore_self, config.normalize)
    graphs = scene_graphs(probs, scene_probs, config.soft)
    att = model.attention                                                # steps 7-8
    visual, alpha = label_attention(tokens, model.label_embeddings, att.visual_proj,
                                    att.label_proj, att.hidden, att.score)
    if config.num_steps > 0:                                             # steps 9-10
        prop = model.propagation
        propagated = gated_propagation(visual, graphs, prop.steps, prop.outmess,
                                       gate_maps(prop))
        fused = torch.tanh(model.fusion(torch.cat((visual, propagated), dim=-1)))
    else:
        fused = torch.tanh(model.fusion(visual))
    classifier = model.classifier                                        # step 11
    logits = (fused * classifier.weight).sum(-1) + classifier.bias
    return {"logits": logits, "scene_probs": scene_probs, "graphs": graphs,
            "attention": alpha, "memory": memory}
