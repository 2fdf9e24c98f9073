"""Each real-format fixture through prepare -> embed (GloVe) -> one epoch -> evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from raw_fixtures import make_coco, make_nuswide, make_voc

from salgl.config import DatasetParams, EmbedConfig, EvaluateConfig, PlotsConfig, RealDatasetConfig
from salgl.pipeline import run_embed, run_evaluate, run_prepare, run_train

from conftest import tiny_train_config

GLOVE_WORDS = ["person", "traffic", "light", "zebra", "animal", "beach", "clouds", "sky",
               "airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "dining", "table", "dog", "horse", "motorbike", "potted", "plant",
               "sheep", "sofa", "train", "tv", "monitor"]
VOC_MAP = {"diningtable": "dining table", "pottedplant": "potted plant",
           "tvmonitor": "tv monitor", "aeroplane": "airplane"}


def glove(path: Path) -> Path:
    path.write_text("".join(f"{w} {' '.join(str((i * 7 + d) % 5 - 2) for d in range(6))}\n"
                            for i, w in enumerate(GLOVE_WORDS)), encoding="utf-8")
    return path


@pytest.mark.parametrize("name,make", [("mscoco", make_coco), ("voc2007", make_voc),
                                       ("nuswide", make_nuswide)])
def test_real_format_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     name: str, make) -> None:
    monkeypatch.chdir(tmp_path)
    raw = make(tmp_path / "raw" / name)
    params = DatasetParams(
        name=name, prepare=RealDatasetConfig(raw=str(raw)),
        embed=EmbedConfig(source="glove", glove_path=str(glove(tmp_path / "glove.txt")),
                          word_map=VOC_MAP if name == "voc2007" else {}),
        train=tiny_train_config(batch_size=1, img_size=32, epochs=2),
        evaluate=EvaluateConfig(), plots=PlotsConfig())
    meta = run_prepare(params)
    assert meta["counts"]["train"]["images"] >= 1 and meta["counts"]["val"]["images"] >= 1
    info = run_embed(params)
    assert info["source"] == "glove" and info["labels_covered"] == info["labels"]
    result = run_train(params, live=Path("dvclive") / name, progress=False)
    assert result.epochs_run == 2 and result.selected_on == "val"
    metrics = run_evaluate(params, progress=False)
    assert 0.0 <= metrics["mAP"] <= 1.0 and metrics["selected_on"] == "val"
    assert 0.0 <= metrics["CF1_calibrated"] <= 1.0
    saved = json.loads((tmp_path / "metrics" / f"{name}_all.json").read_text())
    assert saved["num_labels"] == len(meta["labels"])
    assert (tmp_path / "models" / name / "model.safetensors").is_file()


def test_prepare_command_strict_and_wrong_layout(tmp_path: Path, salgl_main) -> None:
    raw = make_voc(tmp_path / "voc")
    (tmp_path / "params.yaml").write_text("datasets: {voc2007: voc}\n", encoding="utf-8")
    common = ["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "out")]
    code, _, err = salgl_main("prepare", "voc2007", "--raw", str(raw), "--strict", *common)
    assert code == 2 and "strict" in err
    code, _, err = salgl_main("prepare", "mscoco", "--raw", str(raw), *common)
    assert code == 2 and "annotations/instances_train2014.json" in err
    assert not (tmp_path / "out").exists()
    code, _, err = salgl_main("prepare", "voc2007", "--raw", str(raw), *common)
    assert code == 0, err
    assert (tmp_path / "out" / "ignore.npy").is_file()
