"""Shared fixtures: a tiny prepared dataset and a model trained on it for one epoch."""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from salgl.config import EmbedConfig, TrainConfig
from salgl.embeddings import make_embeddings

from dvc_repo import reproduced  # noqa: F401  (one reproduced repository, shared)
from fakes import TINY_TRAIN, make_prepared


def pytest_configure(config: pytest.Config) -> None:
    """No test reaches a model hub or downloads a dataset."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("SALGL_OFFLINE", "1")


LABELS = ["cat", "dog", "traffic light", "teddy bear", "sofa", "cup"]


def tiny_train_config(**changes) -> TrainConfig:
    settings = dict(TINY_TRAIN, num_scenes=2, epochs=1, batch_size=8, lr=3e-3, ema_decay=0.9,
                    patience=5)
    settings.update(changes)
    return TrainConfig(**settings)


def write_embeddings(prepared: Path, out: Path) -> Path:
    from salgl.data.prepared import load_prepared

    data = load_prepared(prepared)
    vectors, info = make_embeddings(data.labels, data.train.targets,
                                    EmbedConfig(dim=8, epochs=50), "embed.test")
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "vectors.npy", vectors)
    (out / "info.json").write_text(json.dumps(info), encoding="utf-8")
    return out


@dataclass
class TinyRun:
    prepared: Path
    embeddings: Path
    model: Path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    from salgl.data.prepared import load_prepared
    from salgl.train import train

    root = tmp_path_factory.mktemp("tiny")
    prepared = make_prepared(root / "prepared", LABELS)
    embeddings = write_embeddings(prepared, root / "embeddings")
    model = root / "model.safetensors"
    train("fashion_scenes", tiny_train_config(), load_prepared(prepared), embeddings, model,
          root / "state", None, progress=False)
    return TinyRun(prepared, embeddings, model)


@pytest.fixture
def salgl_main(capsys: pytest.CaptureFixture) -> Iterator:
    """The real command line (salgl.cli.main) in this process, for checks of messages and
    exit codes that need no process of their own; returns (exit code, stdout, stderr)."""
    from salgl.cli import main

    handler = signal.getsignal(signal.SIGTERM)
    logger = logging.getLogger("salgl")
    handlers, level = list(logger.handlers), logger.level

    def call(*args: str) -> tuple[int, str, str]:
        try:
            code = main(["-q", *args])
        except SystemExit as exc:  # --help, --version, usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield call
    signal.signal(signal.SIGTERM, handler)
    logger.handlers[:] = handlers
    logger.setLevel(level)
