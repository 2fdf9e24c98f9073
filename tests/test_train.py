"""Training end to end on a tiny dataset: outputs, resume after a kill, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from salgl.checkpoint import load_model
from salgl.data.prepared import load_prepared
from salgl.evaluate import evaluate_model, write_evaluation
from salgl.train import STATE_FILE, Trainer, train

from conftest import LABELS, TinyRun, tiny_train_config, write_embeddings
from fakes import make_prepared


def test_trained_model_file_is_self_contained(tiny_run: TinyRun) -> None:
    model, info = load_model(tiny_run.model)
    assert info.labels == LABELS
    assert info.config.num_classes == len(LABELS) and info.config.embed_dim == 8
    assert model.cooccurrence.sum() > 0  # the memory travelled with the weights
    assert info.extra["dataset"] == "fashion_scenes" and "best_test_mAP" in info.extra


def test_evaluation_outputs(tiny_run: TinyRun, tmp_path: Path) -> None:
    data = load_prepared(tiny_run.prepared)
    ev = evaluate_model(tiny_run.model, data, progress=False)
    write_evaluation(ev, tmp_path / "m.json", tmp_path / "eval", tmp_path / "p.npz")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["num_images"] == len(data.test) and metrics["num_labels"] == len(LABELS)
    for key in ("mAP", "mAP_noninterp", "CF1", "OF1", "CF1_top3", "baseline_label_prior_mAP"):
        assert 0.0 <= metrics[key] <= 1.0
    table = (tmp_path / "eval" / "per_label_ap.csv").read_text().splitlines()
    assert table[0] == "label,ap,ap_noninterp,positives,prevalence" and len(table) == 7
    import numpy as np

    saved = np.load(tmp_path / "p.npz", allow_pickle=False)
    assert saved["scores"].shape == (len(data.test), len(LABELS))
    assert list(saved["labels"]) == LABELS


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_same_weights(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=16, n_test=8)
    embeddings = write_embeddings(prepared, tmp_path / "emb")
    data = load_prepared(prepared)
    cfg = tiny_train_config(epochs=3, randaugment=True)

    whole = train("x", cfg, data, embeddings, tmp_path / "whole.safetensors",
                  tmp_path / "state_whole", None, progress=False)
    assert whole.resumed_from == 0

    calls = {"n": 0}
    original = Trainer.evaluate_ema

    def dies_in_second_epoch(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed()
        return original(self)

    monkeypatch.setattr(Trainer, "evaluate_ema", dies_in_second_epoch)
    with pytest.raises(Killed):
        train("x", cfg, data, embeddings, tmp_path / "resumed.safetensors",
              tmp_path / "state", None, progress=False)
    assert (tmp_path / "state" / STATE_FILE).exists()
    assert not (tmp_path / "resumed.safetensors").exists()
    monkeypatch.setattr(Trainer, "evaluate_ema", original)

    resumed = train("x", cfg, data, embeddings, tmp_path / "resumed.safetensors",
                    tmp_path / "state", None, progress=False)
    assert resumed.resumed_from == 1 and resumed.epochs_run == 3
    assert not (tmp_path / "state" / STATE_FILE).exists()  # finished runs leave no state
    a = load_file(str(tmp_path / "whole.safetensors"))
    b = load_file(str(tmp_path / "resumed.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key


def test_state_of_other_settings_is_not_reused(tmp_path: Path) -> None:
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=8, n_test=4)
    embeddings = write_embeddings(prepared, tmp_path / "emb")
    data = load_prepared(prepared)
    trainer = Trainer("x", tiny_train_config(epochs=2), data, embeddings,
                      tmp_path / "m.safetensors", tmp_path / "state", None, progress=False)
    trainer.save_state(0)
    other = Trainer("x", tiny_train_config(epochs=2, lr=1e-3), data, embeddings,
                    tmp_path / "m.safetensors", tmp_path / "state", None, progress=False)
    assert not other.try_resume()
    same = Trainer("x", tiny_train_config(epochs=2), data, embeddings,
                   tmp_path / "m.safetensors", tmp_path / "state", None, progress=False)
    assert same.try_resume() and same.start_epoch == 1


def test_stepping_inside_backward_trains_the_same_weights(tmp_path: Path) -> None:
    """salgl.step_in_backward frees each gradient early and changes no number."""
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=16, n_test=8)
    embeddings = write_embeddings(prepared, tmp_path / "emb")
    data = load_prepared(prepared)
    files = {}
    for inside in (True, False):
        out = tmp_path / f"inside_{inside}.safetensors"
        trainer = Trainer("x", tiny_train_config(epochs=2, step_in_backward=inside), data,
                          embeddings, out, tmp_path / f"state_{inside}", None, progress=False)
        assert (trainer.step_in_backward is not None) == inside
        trainer.run()
        assert all(p.grad is None for p in trainer.model.parameters()) == inside
        files[inside] = load_file(str(out))
    assert files[True].keys() == files[False].keys()
    for key, value in files[True].items():
        assert torch.equal(value, files[False][key]), key
