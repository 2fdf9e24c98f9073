"""A faithful, naive version of the released SALGL formulation, kept only as a baseline.

Written from the method description for the benchmark harness: a Python loop over the batch
for the co-occurrence update and the graph choice, the explicit A x A attention layer applied
to every (image, label, token), and three separate gate maps of the messages. fp32 only.
These steps are salgl.model.reference's functions, applied to this model's own layers (named
as in the released code); P(j | i) stays one vectorised expression here, as released.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from salgl.model.reference import (
    gated_propagation,
    label_attention,
    scene_graphs,
    update_cooccurrence,
)


class ReferenceGGNN(nn.Module):
    def __init__(self, dim: int, steps: int = 3):
        super().__init__()
        self.steps = steps
        self.fc1_w, self.fc1_u = nn.Linear(2 * dim, dim), nn.Linear(dim, dim)
        self.fc2_w, self.fc2_u = nn.Linear(2 * dim, dim), nn.Linear(dim, dim)
        self.fc3_w, self.fc3_u = nn.Linear(2 * dim, dim), nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        maps = {"z_x": self.fc1_w, "z_h": self.fc1_u, "r_x": self.fc2_w, "r_h": self.fc2_u,
                "c_x": self.fc3_w, "c_h": self.fc3_u}
        return gated_propagation(h, graph, self.steps, True, maps)


class ReferenceAttention(nn.Module):
    def __init__(self, dim: int, label_dim: int, att: int = 1024):
        super().__init__()
        self.linear1 = nn.Linear(dim, att, bias=False)
        self.linear2 = nn.Linear(label_dim, att, bias=False)
        self.hidden_linear = nn.Linear(att, att)
        self.target_linear = nn.Linear(att, 1)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return label_attention(tokens, labels, self.linear1, self.linear2, self.hidden_linear,
                               self.target_linear)[0]   # the A x A product


class ReferenceSALGL(nn.Module):
    def __init__(self, backbone: str, num_classes: int, num_scenes: int, embed_dim: int = 300,
                 att: int = 1024):
        super().__init__()
        self.backbone = timm.create_model(backbone, num_classes=0, global_pool="")
        dim = self.backbone.num_features
        self.tb = nn.TransformerEncoderLayer(dim, 8, 2048, dropout=0.1, batch_first=True)
        self.scene_linear = nn.Linear(dim, num_scenes, bias=False)
        self.attention = ReferenceAttention(dim, embed_dim, att)
        self.ggnn = ReferenceGGNN(dim)
        self.fc = nn.Sequential(nn.Linear(2 * dim, dim), nn.Tanh())
        self.classifier = nn.Linear(dim, num_classes)
        self.register_buffer("embeddings", torch.randn(num_classes, embed_dim))
        self.register_buffer("comatrix", torch.zeros(num_scenes, num_classes, num_classes))

    def forward(self, images: torch.Tensor, targets: torch.Tensor):
        fmap = self.backbone.forward_features(images)
        tokens = self.tb(fmap.flatten(2).transpose(1, 2))
        scene_probs = F.softmax(self.scene_linear(tokens.mean(1)), -1)
        if self.training:   # the released per-image update
            self.comatrix.copy_(update_cooccurrence(self.comatrix, scene_probs.detach(), targets,
                                                    soft=False))
        diag = torch.diagonal(self.comatrix, dim1=1, dim2=2)
        probs = self.comatrix.transpose(1, 2) / (diag[..., None] + 1e-8)
        probs = probs / (probs.sum(-1, keepdim=True) + 1e-8)
        graph = scene_graphs(probs, scene_probs, soft=False)
        h0 = self.attention(tokens, self.embeddings)
        fused = self.fc(torch.cat((h0, self.ggnn(h0, graph)), -1))
        logits = (fused * self.classifier.weight).sum(-1) + self.classifier.bias
        return logits, scene_probs
