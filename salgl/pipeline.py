"""One function per pipeline stage: read settings, call the package, write the stage's outputs.

The DVC stage scripts and the ``salgl`` subcommands both call these, so a stage run by hand
and by ``dvc repro`` behave the same. Default locations (architecture.md) come from salgl.paths.
What each stage reads and writes is checked before it runs by the command line (salgl.cli,
with salgl.output_rules.check_outputs); ``prepare_inputs`` and ``plots_model_only`` tell it what a
stage will read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from salgl.atomic import atomic_dir, write_json
from salgl.config import DatasetParams, OwnDatasetConfig
from salgl.paths import DatasetPaths, OfficialPaths

log = logging.getLogger("salgl")


Inputs = list[tuple[str, Path | None]]  # (what the message calls it, path)


def _own_inputs(where: str, cfg: OwnDatasetConfig) -> Inputs:
    """A user's image folders and annotation files, one entry per split where given so."""
    found: Inputs = []
    for key in ("images", "annotations"):
        value = getattr(cfg, key)
        if isinstance(value, str):
            found.append((f"{where}.{key}", Path(value)))
        elif isinstance(value, dict):
            found += [(f"{where}.{key}.{split}", Path(path)) for split, path in value.items()
                      if isinstance(path, str)]
    return found


def prepare_inputs(params: DatasetParams, raw: Path | None = None) -> Inputs:
    """What the prepare stage reads, so that its output is kept apart from it."""
    where = f"prepare.{params.name}"
    if params.name == "fashion_scenes":
        from salgl.data.fashion_mnist import find_source

        source = str(raw) if raw is not None else params.prepare.source
        return [("--raw" if raw is not None else f"{where}.source", find_source(source))]
    if isinstance(params.prepare, OwnDatasetConfig):
        return _own_inputs(where, params.prepare)
    root = raw or Path(params.prepare.raw or DatasetPaths(params.name).raw)
    return [("--raw" if raw is not None else f"{where}.raw", Path(root))]


def run_prepare(params: DatasetParams, out: Path | None = None, raw: Path | None = None) -> dict:
    out = out or DatasetPaths(params.name).prepared
    if params.name == "fashion_scenes":
        from dataclasses import replace

        from salgl.data.fashion_scenes import prepare_fashion_scenes

        cfg = params.prepare if raw is None else replace(params.prepare, source=str(raw))
        meta = prepare_fashion_scenes(cfg, out)
    elif isinstance(params.prepare, OwnDatasetConfig):
        from salgl.data.own import prepare_own

        meta = prepare_own(params.name, params.prepare, out)
    else:
        from salgl.data.real import prepare_real

        root = raw or Path(params.prepare.raw or DatasetPaths(params.name).raw)
        meta = prepare_real(params.name, Path(root), out, strict=params.prepare.strict,
                            val_fraction=params.prepare.val_fraction, seed=params.prepare.seed)
    log.info("prepared %s into %s", params.name, out)
    return meta


def run_embed(params: DatasetParams, prepared: Path | None = None, out: Path | None = None
              ) -> dict:
    import numpy as np

    from salgl.data.prepared import load_prepared
    from salgl.embeddings import make_embeddings

    paths = DatasetPaths(params.name)
    prepared, out = prepared or paths.prepared, out or paths.embeddings
    data = load_prepared(prepared, images=False)
    vectors, info = make_embeddings(data.labels, data.train.targets, params.embed,
                                    f"embed.{params.name}")
    with atomic_dir(out, "embeddings") as tmp:
        np.save(tmp / "vectors.npy", vectors)
        write_json(tmp / "info.json", info)
    log.info("embedded %d labels of %s (%s, %d-d)", len(data.labels), params.name,
             info["source"], vectors.shape[1])
    return info


def run_train(params: DatasetParams, prepared: Path | None = None, embeddings: Path | None = None,
              model_out: Path | None = None, state: Path | None = None,
              live: Path | None = None, progress: bool = True):
    from salgl.data.prepared import load_prepared
    from salgl.train import train

    paths = DatasetPaths(params.name)
    prepared, embeddings = prepared or paths.prepared, embeddings or paths.embeddings
    model_out, state = model_out or paths.model, state or paths.state
    live = live if live is not None else paths.live
    data = load_prepared(prepared, image_root=params.image_root)
    result = train(params.name, params.train, data, embeddings, model_out, state, live,
                   progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        log.info("trained %s: selected epoch %d on %s (mAP %.4f) -> %s", params.name,
                 result.best_epoch + 1, result.selected_on, result.best_map, model_out)
    return result


def run_evaluate(params: DatasetParams, model: Path | None = None, prepared: Path | None = None,
                 metrics: Path | None = None, eval_dir: Path | None = None,
                 predictions: Path | None = None, progress: bool = True,
                 all_metrics: Path | None = None) -> dict:
    """Score the model on the test split. `metrics` gets the headline numbers DVC compares,
    `all_metrics` every number; the full dict is returned."""
    from salgl.data.prepared import load_prepared
    from salgl.evaluate import evaluate_model, write_evaluation

    paths = DatasetPaths(params.name)
    model, prepared = model or paths.model, prepared or paths.prepared
    metrics, eval_dir = metrics or paths.metrics, eval_dir or paths.eval_dir
    all_metrics = all_metrics or paths.all_metrics
    predictions = predictions or paths.predictions
    data = load_prepared(prepared, image_root=params.image_root)
    ev = evaluate_model(model, data, params.evaluate.threshold,
                        params.evaluate.batch_size, params.evaluate.device, progress)
    write_evaluation(ev, all_metrics, eval_dir, predictions, headline_path=metrics)
    m = ev.metrics
    log.info("%s: mAP %.4f (label-prior baseline %.4f), CF1 %.4f, OF1 %.4f", params.name,
             m["mAP"], m["baseline_label_prior_mAP"], m["CF1"], m["OF1"])
    return m


def _figure_settings(params: DatasetParams) -> dict:
    """The plots.<dataset> settings as make_all_plots keywords."""
    return {"pr_labels": params.plots.pr_labels, "cloud_words": params.plots.cloud_words,
            "groups": params.plots.label_groups, "top_labels": params.plots.top_labels,
            "where": f"plots.{params.name}.label_groups"}


def plots_model_only(name: str, model: Path | None, predictions: Path | None) -> bool:
    """Whether the plots stage draws only the figures of a model's memory: a model named
    alone (an imported checkpoint, a pulled file) while no predictions file is there."""
    return model is not None and predictions is None \
        and not DatasetPaths(name).predictions.is_file()


def _explain_inputs(params: DatasetParams, model, info, prepared: Path):
    """The model and the prepared test split for explanations.png, or None (logged) when
    the prepared folder or its labels do not fit."""
    from salgl.data.prepared import load_prepared
    from salgl.figures.explain import ExplainInputs

    if not (prepared / "test.tsv").is_file():
        log.info("%s: no test split at %s, so no explanations.png", params.name, prepared)
        return None
    data = load_prepared(prepared, image_root=params.image_root)
    if data.labels != info.labels:
        log.info("%s: the model's labels differ from %s, so no explanations.png",
                 params.name, prepared / "labels.txt")
        return None
    return ExplainInputs(model, info, data.test)


def run_plots(params: DatasetParams, model: Path | None = None, prepared: Path | None = None,
              predictions: Path | None = None, eval_dir: Path | None = None,
              live: Path | None = None, out: Path | None = None,
              scene_match: Path | None = None) -> dict:
    from salgl.checkpoint import load_model
    from salgl.figures.stage import make_all_plots, model_figures

    paths = DatasetPaths(params.name)
    scene_match = scene_match or paths.scene_match
    model_obj, info = load_model(model or paths.model)
    if plots_model_only(params.name, model, predictions):
        # A model alone (an imported checkpoint, a pulled file): the figures of its memory.
        target = out or paths.figures
        figures = model_figures(model_obj.cooccurrence.numpy(), info.labels, target,
                                params.plots.label_groups, params.plots.top_labels,
                                params.plots.cloud_words, f"plots.{params.name}.label_groups")
        log.info("%s: no predictions at %s, so only the %d figures of the model's scene "
                 "memory, in %s", params.name, paths.predictions, len(figures), target)
        log.info("%s: no test images with a model alone, so no explanations.png", params.name)
        return {"figures": [p.name for p in figures], "scene_match": None}
    scenes = (prepared or paths.prepared) / "scenes.tsv"
    explain = _explain_inputs(params, model_obj, info, prepared or paths.prepared)
    summary = make_all_plots(
        predictions or paths.predictions, (eval_dir or paths.eval_dir) / "per_label_ap.csv",
        model_obj.cooccurrence.numpy(), (live or paths.live) / "plots" / "metrics",
        out or paths.figures, scenes if scenes.is_file() else None,
        curves_png=(out / "training_curves.png") if out else paths.training_curves,
        explain=explain, **_figure_settings(params))
    match = summary.get("scene_match")
    if match is not None:
        scene_summary = {"scene_nmi": match["nmi"], "scene_ari": match["ari"],
                         "num_images": match["num_images"], "contingency": match["contingency"]}
        log.info("%s: learned vs hidden scenes NMI %.3f", params.name, match["nmi"])
    else:
        scene_summary = {"note": "this dataset has no hidden scene annotation"}
    write_json(scene_match, scene_summary)
    log.info("%s: %d figures in %s", params.name, len(summary["figures"]), out or paths.figures)
    log.info("%s results: metrics in %s (every number in %s) and %s, figures in %s, model in "
             "%s; `dvc plots show` draws the interactive plots into dvc_plots/index.html",
             params.name, paths.metrics, paths.all_metrics, scene_match, out or paths.figures,
             model or paths.model)
    return summary


def official_labels(cfg) -> Path:
    """The labels file of a released experiment (official.NAME.labels, else the prepared
    dataset's labels.txt)."""
    return Path(cfg.labels) if cfg.labels else DatasetPaths(cfg.dataset).prepared / "labels.txt"


def run_evaluate_official(name: str, cfg, params: DatasetParams, progress: bool = True) -> dict:
    """Import a released experiment, evaluate it on its prepared dataset, draw its figures."""
    from salgl.data.prepared import load_prepared
    from salgl.evaluate import evaluate_model, write_evaluation
    from salgl.figures.stage import make_all_plots
    from salgl.official import import_official

    paths, out = DatasetPaths(params.name), OfficialPaths(name)
    import_official(cfg.dir, official_labels(cfg), out.model)
    data = load_prepared(paths.prepared, image_root=params.image_root)
    ev = evaluate_model(out.model, data, cfg.threshold, cfg.batch_size, "auto", progress)
    write_evaluation(ev, out.metrics, out.eval_dir, out.predictions)
    make_all_plots(out.predictions, out.eval_dir / "per_label_ap.csv", ev.cooccurrence, None,
                   out.figures, **_figure_settings(params))
    log.info("official %s on %s: mAP %.4f", name, params.name, ev.metrics["mAP"])
    return ev.metrics
