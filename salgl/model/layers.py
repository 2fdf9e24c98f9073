"""The building blocks of SALGL's head (method.md steps 2, 8, 9, 11)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sine_position_code(h: int, w: int, dim: int, prefix: int = 0,
                       temperature: float = 10000.0, device=None) -> torch.Tensor:
    """2-D sine code (N, dim): dim/2 frequencies per axis, coordinates scaled to (0, 2*pi]."""
    half = dim // 2
    ys = torch.arange(1, h + 1, dtype=torch.float32, device=device) / h * 2 * math.pi
    xs = torch.arange(1, w + 1, dtype=torch.float32, device=device) / w * 2 * math.pi
    i = torch.arange(half, dtype=torch.float32, device=device)
    freqs = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / half)

    def code(coord: torch.Tensor) -> torch.Tensor:
        angles = coord[:, None] / freqs
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    cy, cx = code(ys), code(xs)
    grid = torch.cat((cy[:, None, :].expand(h, w, -1), cx[None, :, :].expand(h, w, -1)), dim=-1)
    grid = grid.reshape(h * w, -1)
    if grid.shape[1] < dim:
        grid = F.pad(grid, (0, dim - grid.shape[1]))
    if prefix:
        grid = torch.cat((grid.new_zeros(prefix, dim), grid), dim=0)
    return grid


class ContextEncoderLayer(nn.Module):
    """Post-norm transformer encoder layer; the optional position code enters queries and keys."""

    def __init__(self, dim: int, heads: int = 8, ffn: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        qk = tokens if pos is None else tokens + pos
        attended = self.self_attn(qk, qk, tokens, need_weights=False)[0]
        tokens = self.norm1(tokens + self.dropout1(attended))
        hidden = self.linear2(self.dropout(F.relu(self.linear1(tokens))))
        return self.norm2(tokens + self.dropout2(hidden))


CHUNK_ELEMENTS = 1 << 22  # ~16 MB of fp32 per label chunk of the (B, C, N, A) product


class CollapsedScore(torch.autograd.Function):
    """score[b, c, n] = sum_a w[a] tanh(u[b, n, a] v[c, a]), a few labels at a time.

    The (B, C, N, A) tensor is never stored: forward keeps only u, v, w and backward
    recomputes each label chunk's tanh. That bounds memory by one chunk and keeps the
    working set in cache, at the price of a second tanh. Chunks are laid out (c, B, N, A)
    so that every per-label slice is contiguous and no contraction needs a permuted copy.
    """

    @staticmethod
    def _chunk(u: torch.Tensor) -> int:
        return max(1, CHUNK_ELEMENTS // max(1, u.numel()))

    @staticmethod
    def _joint(u: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.mul(labels[:, None, None], u[None]).tanh_()        # (c, B, N, A)

    @staticmethod
    def forward(ctx, u: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(u, v, w)
        step = CollapsedScore._chunk(u)
        out = u.new_empty(u.shape[0], v.shape[0], u.shape[1])
        for start in range(0, v.shape[0], step):
            joint = CollapsedScore._joint(u, v[start:start + step])
            out[:, start:start + step] = (joint @ w).transpose(0, 1)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u, v, w = ctx.saved_tensors
        step = CollapsedScore._chunk(u)
        du, dv, dw = torch.zeros_like(u), torch.empty_like(v), torch.zeros_like(w)
        grad = grad.transpose(0, 1)                                          # (C, B, N)
        for start in range(0, v.shape[0], step):
            labels = v[start:start + step]
            joint = CollapsedScore._joint(u, labels)
            g = grad[start:start + step].contiguous()
            dw.addmv_(joint.view(-1, joint.shape[-1]).t(), g.view(-1))
            g = g[..., None]
            slope = torch.addcmul(g, joint.square_(), g, value=-1)           # g (1 - tanh^2)
            for i, label in enumerate(labels):
                du.addcmul_(slope[i], label)
                dv[start + i] = torch.mul(slope[i], u).sum((0, 1))
        return du.mul_(w), dv.mul_(w), dw


class LabelAttention(nn.Module):
    """Low-rank bilinear attention from each label embedding over the visual tokens.

    The score layer pair (``hidden`` then ``score``) has no non-linearity between them, so it is
    applied as one collapsed vector: the A x A product per token never runs, while both layers
    keep their parameters (released checkpoints load) and receive the same gradients.
    Tested against salgl.model.reference.label_attention (the explicit A x A layer).
    """

    def __init__(self, visual_dim: int, label_dim: int, attention_dim: int = 1024):
        super().__init__()
        self.visual_proj = nn.Linear(visual_dim, attention_dim, bias=False)
        self.label_proj = nn.Linear(label_dim, attention_dim, bias=False)
        self.hidden = nn.Linear(attention_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.visual_proj(tokens)                      # (B, N, A)
        v = self.label_proj(labels)                       # (C, A)
        w = self.hidden.weight.t() @ self.score.weight[0]  # (A,)
        bias = self.score.weight[0] @ self.hidden.bias + self.score.bias[0]
        v, w = v.to(u.dtype), w.to(u.dtype)
        scores = CollapsedScore.apply(u, v, w) + bias.to(u.dtype)   # (B, C, N)
        alpha = scores.softmax(dim=-1)
        return alpha @ tokens, alpha                       # (B, C, D), (B, C, N)


class PerLabelLinear(nn.Module):
    """A separate weight vector and bias per label: logit_c = w_c . O_c + beta_c."""

    def __init__(self, num_labels: int, dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(num_labels, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_labels).uniform_(-bound, bound))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features * self.weight).sum(-1) + self.bias
