"""The EMA warm-up (issue 21): a short run with default settings never selects an average
that is still mostly its initial weights; without the warm-up (the authors' EMA) it would,
and training says so in one line."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from salgl.config import TrainConfig
from salgl.ema import ModelEma, initial_share, step_decay

from conftest import LABELS, write_embeddings
from fakes import TINY_TRAIN, make_prepared


def test_step_decay_follows_tensorflow_and_stops_at_the_setting() -> None:
    assert step_decay(0.9997, True, 0) == pytest.approx(0.1)
    assert step_decay(0.9997, True, 90) == pytest.approx(0.91)
    assert step_decay(0.9, True, 10_000) == 0.9
    assert step_decay(0.9997, False, 0) == 0.9997
    assert initial_share(0.9997, False, 1000) == pytest.approx(0.9997 ** 1000)
    assert initial_share(0.9997, True, 10) == pytest.approx(
        math.prod((1 + t) / (10 + t) for t in range(10)))


def test_the_average_tracks_a_moving_weight_and_resumes_its_clock() -> None:
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = ModelEma(model, 0.9997, warmup=True)
    for step in range(10):
        model.weight.data.fill_(step + 1.0)
        ema.update(model)
    # the last step's decay is 10/19: the average sits near the recent weights
    assert ema.module.weight.item() > 6.0
    again = ModelEma(model, 0.9997, warmup=True)
    again.load_state_dict(ema.state_dict())
    assert again.updates == 10
    model.weight.data.fill_(11.0)
    ema.update(model)
    again.update(model)
    assert torch.equal(again.module.weight, ema.module.weight)


def _ten_step_run(tmp_path: Path, warmup: bool | None) -> tuple[float, float]:
    """Distances from the initial weights of the raw model and of its EMA after a 10-step
    run (40 images, batch 4, one epoch) with the code's default EMA settings."""
    from salgl.data.prepared import load_prepared
    from salgl.train import Trainer

    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=40)
    embeddings = write_embeddings(prepared, tmp_path / "embeddings")
    settings = dict(TINY_TRAIN, num_scenes=2, epochs=1, batch_size=4, lr=3e-3)
    if warmup is not None:
        settings["ema_warmup"] = warmup
    cfg = TrainConfig(**settings)
    assert cfg.ema_decay == 0.9997  # the code's default
    trainer = Trainer("own", cfg, load_prepared(prepared), embeddings,
                      tmp_path / "model.safetensors", tmp_path / "state", None, False)
    assert trainer.steps_per_epoch == 10
    start = {k: p.detach().clone() for k, p in trainer.model.named_parameters()}
    trainer.run()
    raw = dict(trainer.model.named_parameters())
    averaged = dict(trainer.eval_model.named_parameters())

    def distance(weights: dict[str, torch.Tensor]) -> float:
        return math.sqrt(sum(float((weights[k].detach() - start[k]).pow(2).sum())
                             for k in start))

    return distance(raw), distance(averaged)


def test_a_ten_step_run_with_default_settings_leaves_its_start(tmp_path: Path,
                                                               caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="salgl"):
        raw, averaged = _ten_step_run(tmp_path, None)
    assert raw > 0
    assert averaged >= 0.5 * raw
    assert "still holds" not in caplog.text


def test_without_the_warm_up_the_run_is_warned_of(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="salgl"):
        raw, averaged = _ten_step_run(tmp_path, False)
    assert averaged < 0.01 * raw  # 0.9997 ** 10: the average barely moved
    assert ("own.ema_decay: after 10 optimiser steps the EMA (decay 0.9997, no warm-up) still "
            "holds 100% of the initial weights" in caplog.text)
