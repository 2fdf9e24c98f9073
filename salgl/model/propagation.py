"""Gated graph propagation (GGNN, method.md step 9) with a hand-written backward.

The same three gate maps are applied at every propagation step. Autograd would compute each
step's weight gradient as its own (out x in) product over B*C nodes and then add them up;
here the per-step inputs and gate gradients are stacked, so each weight gradient is one
matrix product over T*B*C rows. That is the same sum in fewer, larger products, with no
full-size temporaries to add. Forward keeps only each step's state and gate activations
(the messages are recomputed in backward), about half of what autograd would keep.
"""

from __future__ import annotations

import torch
from torch import nn


def _messages(graph: torch.Tensor, h: torch.Tensor, outmess: bool,
              out: torch.Tensor) -> torch.Tensor:
    """x = [G h, G^T h] (or G h alone), written into ``out`` (B, C, in_dim)."""
    if outmess:
        return torch.cat((graph @ h, graph.transpose(1, 2) @ h), dim=-1, out=out)
    return torch.bmm(graph, h, out=out)


def _compute_dtype(h: torch.Tensor) -> torch.dtype:
    device = h.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return h.dtype


def _step_backward(g: torch.Tensor, h: torch.Tensor, gates: torch.Tensor,
                   graph: torch.Tensor, wx: torch.Tensor, wh: torch.Tensor, wc: torch.Tensor,
                   outmess: bool, dgx: torch.Tensor, rh: torch.Tensor,
                   dgraph: torch.Tensor | None) -> torch.Tensor:
    """One step backwards: fills the gate gradients ``dgx`` (B*C, 3D) and ``rh``; returns
    the gradient of the step's input state."""
    b, c, d = h.shape
    n = b * c
    z, r, cand = gates[..., :d], gates[..., d:2 * d], gates[..., 2 * d:]
    torch.mul(r, h, out=rh)
    da_c = dgx[:, 2 * d:].view(b, c, d)
    torch.mul(g * z, 1 - cand * cand, out=da_c)                      # through lerp and tanh
    drh = (da_c.reshape(n, d) @ wc).view(b, c, d)
    torch.mul(g * (cand - h), z * (1 - z), out=dgx[:, :d].view(b, c, d))
    torch.mul(drh * h, r * (1 - r), out=dgx[:, d:2 * d].view(b, c, d))
    dh = torch.addcmul(g * (1 - z), drh, r)                           # lerp and r * h paths
    dh.view(n, d).addmm_(dgx[:, :2 * d], wh)                          # hidden gate maps
    dx = (dgx @ wx).view(b, c, -1)
    d_in = dx[..., :d]
    dh.baddbmm_(graph.transpose(1, 2), d_in)
    if dgraph is not None:
        dgraph.baddbmm_(d_in, h.transpose(1, 2))
    if outmess:
        d_out = dx[..., d:]
        dh.baddbmm_(graph, d_out)
        if dgraph is not None:
            dgraph.baddbmm_(h, d_out.transpose(1, 2))
    return dh


class _Propagate(torch.autograd.Function):
    """h_{t+1} = lerp(h_t, tanh(x_c + W_c (r * h_t)), z) for T steps; see GatedPropagation."""

    @staticmethod
    def forward(ctx, h0, graph, wx, bx, wh, bh, wc, bc, steps: int, outmess: bool):
        dtype = _compute_dtype(h0)
        device = h0.device.type
        ctx.input_dtypes = (h0.dtype, graph.dtype)
        ctx.param_dtypes = tuple(t.dtype for t in (wx, bx, wh, bh, wc, bc))
        with torch.autocast(device, enabled=False):
            h = h0.to(dtype)
            graph, wx, bx, wh, bh, wc, bc = (t.to(dtype) for t in (graph, wx, bx, wh, bh, wc, bc))
            b, c, d = h.shape
            n = b * c
            states = h.new_empty(steps, b, c, d)          # h_t entering step t
            gates = h.new_empty(steps, b, c, 3 * d)       # (z, r, candidate) of step t
            x = h.new_empty(b, c, wx.shape[1])
            for t in range(steps):
                states[t] = h
                _messages(graph, h, outmess, x)
                gx = torch.addmm(bx, x.view(n, -1), wx.t())
                gh = torch.addmm(bh, h.reshape(n, d), wh.t())
                zr = gates[t, ..., :2 * d].view(n, 2 * d)
                torch.sigmoid(torch.add(gx[:, :2 * d], gh, out=zr), out=zr)
                z, r = gates[t, ..., :d], gates[t, ..., d:2 * d]
                cand = gates[t, ..., 2 * d:]
                pre = torch.addmm(bc, (r * h).view(n, d), wc.t()).add_(gx[:, 2 * d:])
                torch.tanh(pre.view(b, c, d), out=cand)
                h = torch.lerp(h, cand, z)
        ctx.save_for_backward(graph, wx, wh, wc, states, gates)
        ctx.outmess = outmess
        return h.to(h0.dtype) if h.dtype != h0.dtype else h

    @staticmethod
    def backward(ctx, grad):
        graph, wx, wh, wc, states, gates = ctx.saved_tensors
        steps, b, c, d = states.shape
        n = b * c
        dtype = states.dtype
        in_dim = wx.shape[1]
        g = grad.to(dtype).contiguous()
        dgx_all = states.new_empty(steps, n, 3 * d)       # gate pre-activation gradients
        x_all = states.new_empty(steps, b, c, in_dim)     # recomputed messages
        rh_all = states.new_empty(steps, b, c, d)         # r * h, the candidate map's input
        want_graph = ctx.needs_input_grad[1]
        dgraph = torch.zeros_like(graph) if want_graph else None
        for t in reversed(range(steps)):
            _messages(graph, states[t], ctx.outmess, x_all[t])
            g = _step_backward(g, states[t], gates[t], graph, wx, wh, wc, ctx.outmess,
                               dgx_all[t], rh_all[t], dgraph)
        dh0 = g.to(ctx.input_dtypes[0])
        del g
        # The weight gradients, each buffer dropped once used (backward's memory peak).
        rows = dgx_all.view(steps * n, 3 * d)
        del dgx_all
        dbx = rows.sum(0)
        dwx = rows.t() @ x_all.view(steps * n, in_dim)
        del x_all
        dwc = rows[:, 2 * d:].t() @ rh_all.view(steps * n, d)
        del rh_all
        dwh = rows[:, :2 * d].t() @ states.view(steps * n, d)
        del rows
        wx_t, bx_t, wh_t, bh_t, wc_t, bc_t = ctx.param_dtypes
        if dgraph is not None:
            dgraph = dgraph.to(ctx.input_dtypes[1])
        return (dh0, dgraph, dwx.to(wx_t), dbx.to(bx_t), dwh.to(wh_t), dbx[:2 * d].to(bh_t),
                dwc.to(wc_t), dbx[2 * d:].to(bc_t), None, None)


class GatedPropagation(nn.Module):
    """Gated graph propagation (GGNN) over the image-specific label graph.

    The three gates read the messages x through one fused matrix ``x_proj`` (update, reset,
    candidate) and the state h through ``h_proj`` (update, reset) and ``cand_h``; the
    released checkpoints' six separate maps load into these (salgl.official).
    Tested against salgl.model.reference.gated_propagation (six separate maps, autograd).
    """

    def __init__(self, dim: int, steps: int = 3, outmess: bool = True):
        super().__init__()
        self.steps = steps
        self.outmess = outmess
        in_dim = 2 * dim if outmess else dim
        self.x_proj = nn.Linear(in_dim, 3 * dim)
        self.h_proj = nn.Linear(dim, 2 * dim)
        self.cand_h = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        if self.steps == 0:
            return h
        return _Propagate.apply(h, graph, self.x_proj.weight, self.x_proj.bias,
                                self.h_proj.weight, self.h_proj.bias, self.cand_h.weight,
                                self.cand_h.bias, self.steps, self.outmess)
