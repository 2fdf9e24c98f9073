"""The optimiser stepped from gradient hooks equals one step after backward."""

from __future__ import annotations

import torch

from salgl.step_in_backward import StepInBackward


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.BatchNorm1d(7), torch.nn.ReLU(),
                               torch.nn.Linear(7, 3))


def test_hooked_adamw_with_schedule_matches_step_after_backward() -> None:
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    plain, hooked = _model(), _model()
    optimisers = [torch.optim.AdamW(m.parameters(), lr=0.01, weight_decay=0.1, fused=True)
                  for m in (plain, hooked)]
    schedules = [torch.optim.lr_scheduler.OneCycleLR(o, 0.01, total_steps=6) for o in optimisers]
    hooks = StepInBackward(optimisers[1])
    state = optimisers[1].state   # allocated up front, counters at zero
    assert len(state) == 6 and all(int(s["step"]) == 0 for s in state.values())
    assert all(not s["exp_avg"].any() for s in state.values())
    for _ in range(5):
        optimisers[0].zero_grad()
        ((plain(x) - y) ** 2).mean().backward()
        optimisers[0].step()
        schedules[0].step()
        ((hooked(x) - y) ** 2).mean().backward()
        assert all(p.grad is None for p in hooked.parameters())
        schedules[1].step()
    for a, b in zip(plain.parameters(), hooked.parameters(), strict=True):
        assert torch.equal(a, b)
    assert optimisers[0].state_dict()["state"][0]["step"] == 5
    assert optimisers[1].state_dict()["state"][0]["step"] == 5
    hooks.remove()
    ((hooked(x) - y) ** 2).mean().backward()
    assert all(p.grad is not None for p in hooked.parameters())
