"""Training end to end on a tiny dataset: outputs, resume after a kill, evaluation."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from salgl.checkpoint import load_model
from salgl.data.prepared import load_prepared
from salgl.errors import SalglError
from salgl.evaluate import evaluate_model, write_evaluation
from salgl.resume import STATE_FILE
from salgl.train import Trainer, train

from conftest import LABELS, TinyRun, tiny_train_config, write_embeddings
from fakes import make_prepared


def test_trained_model_file_is_self_contained(tiny_run: TinyRun) -> None:
    model, info = load_model(tiny_run.model)
    assert info.labels == LABELS
    assert info.config.num_classes == len(LABELS) and info.config.embed_dim == 8
    assert model.cooccurrence.sum() > 0  # the memory travelled with the weights
    assert info.extra["dataset"] == "fashion_scenes" and info.extra["selected_on"] == "val"
    assert 0.0 <= info.extra["val_mAP"] <= 1.0 and info.extra["selected_epoch"] == 1
    assert len(info.extra["thresholds"]) == len(LABELS)
    assert all(0.05 <= t <= 1.0 for t in info.extra["thresholds"])


def test_evaluation_outputs(tiny_run: TinyRun, tmp_path: Path) -> None:
    data = load_prepared(tiny_run.prepared)
    ev = evaluate_model(tiny_run.model, data, progress=False)
    write_evaluation(ev, tmp_path / "m.json", tmp_path / "eval", tmp_path / "p.npz",
                     headline_path=tmp_path / "headline.json")
    metrics = json.loads((tmp_path / "m.json").read_text())
    headline = json.loads((tmp_path / "headline.json").read_text())
    assert headline == {k: metrics[k] for k in ("mAP", "CF1", "OF1", "val_mAP")}
    assert metrics["num_images"] == len(data.test) and metrics["num_labels"] == len(LABELS)
    for key in ("mAP", "mAP_noninterp", "CF1", "OF1", "CF1_top3", "baseline_label_prior_mAP",
                "val_mAP", "CP_calibrated", "CR_calibrated", "CF1_calibrated", "OP_calibrated",
                "OR_calibrated", "OF1_calibrated"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["selected_on"] == "val" and metrics["selected_epoch"] == 1
    assert list(metrics)[:4] == ["mAP", "CF1", "OF1", "val_mAP"]  # what people compare, first
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
    original = Trainer.evaluate_selection

    def dies_in_second_epoch(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed()
        return original(self)

    monkeypatch.setattr(Trainer, "evaluate_selection", dies_in_second_epoch)
    with pytest.raises(Killed):
        train("x", cfg, data, embeddings, tmp_path / "resumed.safetensors",
              tmp_path / "state", None, progress=False)
    assert (tmp_path / "state" / STATE_FILE).exists()
    assert not (tmp_path / "resumed.safetensors").exists()
    monkeypatch.setattr(Trainer, "evaluate_selection", original)

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


def test_selection_on_val_never_reads_the_test_labels(tmp_path: Path) -> None:
    """The same run with the test split's labels shuffled: identical weights and thresholds."""
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=16, n_test=8)
    embeddings = write_embeddings(prepared, tmp_path / "emb")
    cfg = tiny_train_config(epochs=3)
    runs = {}
    for shuffled in (False, True):
        data = load_prepared(prepared)
        if shuffled:
            rng = np.random.default_rng(1)
            data.test.targets = rng.permuted(data.test.targets, axis=0)
            data.test.targets[:, 0] = 1 - data.test.targets[:, 0]
        out = tmp_path / f"shuffled_{shuffled}.safetensors"
        train("x", cfg, data, embeddings, out, tmp_path / f"state_{shuffled}", None,
              progress=False)
        runs[shuffled] = (load_file(str(out)), load_model(out)[1].extra)
    (a, meta_a), (b, meta_b) = runs[False], runs[True]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert meta_a["thresholds"] == meta_b["thresholds"] and meta_a["val_mAP"] == meta_b["val_mAP"]


def test_selection_on_test_is_the_papers_protocol(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=16, n_test=8, n_val=0)
    embeddings = write_embeddings(prepared, tmp_path / "emb")
    data = load_prepared(prepared)
    with pytest.raises(SalglError, match=r"train.x.select_on: val, but .*val.tsv is missing"):
        Trainer("x", tiny_train_config(), data, embeddings, tmp_path / "m.safetensors",
                tmp_path / "state", None, progress=False)
    with caplog.at_level(logging.INFO, logger="salgl"):
        result = train("x", tiny_train_config(select_on="test"), data, embeddings,
                       tmp_path / "m.safetensors", tmp_path / "state", None, progress=False)
    assert result.selected_on == "test" and result.val_map is None
    summary = next(r.getMessage() for r in caplog.records if "training on" in r.getMessage())
    assert summary.startswith("x: training on cpu (") and "fp32" in summary
    assert "16 images in 2 steps per epoch, 1 epochs; epoch selected on test" in summary
    assert any(r.getMessage().startswith("x epoch 1/1:") and r.getMessage().endswith(" s")
               for r in caplog.records)  # time per epoch
    assert any("select_on: test" in r.getMessage() and "paper" in r.getMessage()
               for r in caplog.records)
    extra = load_model(tmp_path / "m.safetensors")[1].extra
    assert extra["selected_on"] == "test" and extra["thresholds"] is None
