"""The ``salgl`` command. Heavy libraries are imported inside each subcommand so that
``salgl --help`` and ``salgl metrics`` start fast."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from salgl import __version__
from salgl.errors import SalglError
from salgl.paths import ABLATION_PARAMS, PARAMS, DatasetPaths, OfficialPaths

log = logging.getLogger("salgl")

DESCRIPTION = """\
Scene-Aware Label Graph Learning (SALGL, ICCV 2023) for multi-label image classification.

Pipeline stages (what `dvc repro` runs, one per dataset, settings from params.yaml):
  prepare -> embed -> train -> evaluate -> plots
Other tools: predict (label your own images), info (what a model file holds), metrics
(score a predictions file), export (ONNX), import-official (released checkpoints),
headroom (what scene awareness could gain on the embedded data, before any training),
ablation (the stages of the scene-awareness ablation, experiments/ablation).
Run `salgl COMMAND --help` for each command's options."""


OWN_DATA_HELP = """\
your own images: name the dataset in params.yaml with a prepare block that has a format
  prepare:
    my_photos:
      format: coco | csv | onehot
      annotations: FILE (coco: also {train: F, val: F, test: F})
      images: FOLDER (coco: also one per split)
image names stay inside the images folder ('..' is refused); absolute_paths: false (true
  allows absolute ones, never files under /proc, /sys or /dev)
formats and their settings:
  coco    any COCO-format JSON (Roboflow, CVAT, Label Studio exports); category ids in any
          order, placeholder categories without annotations left out
          keep_unannotated: false (images without annotations are dropped)
  csv     an image column and a tags column
          image_column: null (image, image_name, filename, file_name, file or path)
          tags_column: null (tags, labels, label or categories)
          tag_separator: ' ' (or ',', '|', ';'), extension: null (added to bare names)
  onehot  an image column and one 0/1 column per label; -1 = uncertain, empty = missing
          non_label_columns: [] (numeric columns that are not labels; all-text ones are
          skipped, a stray text cell among numbers is an error)
          uncertain: ignore | positive | negative, missing: ignore | negative
both tables: split_column: null (train/val/test per row)
splits: the data's own, else stratified with val_fraction: 0.1, test_fraction: 0.2, seed: 0
also: min_positives: 5 (warn below), strict: false (broken images are skipped)
see README, "Train on your own images"."""


SET_EXAMPLES = {"prepare": "seed=1", "embed": "dim=16", "train": "epochs=2",
                "evaluate": "threshold=0.4", "plots": "top_labels=5"}


# The default locations as the help text states them, from the same definitions the
# stages use (salgl.paths).
DEFAULT = DatasetPaths("DATASET")
OFFICIAL = OfficialPaths("NAME")


def _prepared_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prepared", type=Path,
                   help=f"prepared dataset folder (default {DEFAULT.prepared})")


def _dataset_command(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="fashion_scenes (embedded) | mscoco | voc2007 | nuswide | "
                   "a dataset of your own with prepare.<name>.format in the params file")
    p.add_argument("--params", type=Path, default=PARAMS,
                   help=f"params file to read settings from (default: {PARAMS})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override one of this dataset's {name} settings ({name}.<dataset>.KEY "
                        f"in params.yaml), e.g. --set {SET_EXAMPLES[name]} (validated like "
                        "params.yaml; repeatable)")
    if name in STAGE_SETTINGS:
        from salgl import config

        listing = config.settings_help(getattr(config, STAGE_SETTINGS[name]))
        p.epilog = (f"settings ({name}.<dataset> in params.yaml, or --set KEY=VALUE): default "
                    f"(range or choices) and purpose\n{listing}")
    return p


# The settings group each stage reads, listed by its --help (prepare's depend on the dataset:
# OWN_DATA_HELP).
STAGE_SETTINGS = {"embed": "EmbedConfig", "train": "TrainConfig",
                  "evaluate": "EvaluateConfig", "plots": "PlotsConfig"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salgl", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--version", action="version", version=f"salgl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _dataset_command(sub, "prepare", "Write a dataset in the prepared format "
                         "(labels.txt, train.tsv, val.tsv, test.tsv, meta.json).")
    p.epilog = OWN_DATA_HELP
    p.add_argument("--raw", type=Path, help="the dataset's own folder (fashion_scenes: a folder "
                   "with Fashion-MNIST IDX files)")
    p.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT.prepared}), "
                   "replaced as a whole: it must be missing, empty or written by salgl, "
                   "and apart from the inputs")
    p.add_argument("--strict", action="store_true", help="real datasets: a missing or broken "
                   "image is an error (default: left out and recorded in meta.json)")

    p = _dataset_command(sub, "embed", "Make label vectors (GloVe file, a GloVe fit to the "
                         "training label co-occurrence, or random).")
    _prepared_option(p)
    p.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT.embeddings}), "
                   "replaced as a whole: it must be missing, empty or written by salgl")

    p = _dataset_command(sub, "train", "Train SALGL (AdamW + OneCycle, EMA, epoch selection "
                         "and early stopping on validation mAP, per-label thresholds "
                         "calibrated on the validation split); resumes a killed run from its "
                         "last finished epoch.")
    _prepared_option(p)
    p.add_argument("--embeddings", type=Path, help="folder with vectors.npy and info.json "
                   f"(default {DEFAULT.embeddings})")
    p.add_argument("--out", type=Path, help=f"model file (default {DEFAULT.model})")
    p.add_argument("--state", type=Path, help=f"resume-state folder (default {DEFAULT.state}); "
                   "it must hold nothing but what salgl writes there")
    p.add_argument("--live", type=Path, help=f"DVCLive folder (default {DEFAULT.live}); it "
                   "must hold nothing but what salgl writes there")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="processes on this node (one per GPU): N > 1 re-runs this command "
                   "under torchrun with DistributedDataParallel (params.yaml: nproc); "
                   "several nodes: start torchrun on each node yourself (README, Several "
                   "GPUs and nodes); SALGL_DIST_TIMEOUT: the seconds a process waits for the "
                   "others before it stops with one line (default 600)")

    p = _dataset_command(sub, "evaluate", "Score a model on the test split: metrics JSON, "
                         "per-label AP table, saved predictions.")
    p.add_argument("--model", type=Path, help=f"model file (default {DEFAULT.model})")
    _prepared_option(p)
    p.add_argument("--metrics", type=Path, help="the headline metrics JSON that DVC "
                   f"compares: test mAP, CF1, OF1, val mAP (default {DEFAULT.metrics})")
    p.add_argument("--all-metrics", type=Path, help="every number: precision, recall, top-3, "
                   f"counts, baseline, selection (default {DEFAULT.all_metrics})")
    p.add_argument("--eval-dir", type=Path, help=f"tables folder (default {DEFAULT.eval_dir}); "
                   "it must hold nothing but salgl's tables")
    p.add_argument("--predictions", type=Path,
                   help=f"predictions npz (default {DEFAULT.predictions})")

    p = _dataset_command(sub, "plots", "Draw the figures: training curves, per-label AP, "
                         "precision-recall, per-scene co-occurrence heatmaps and label clouds.")
    p.add_argument("--model", type=Path, help="model file whose scene memory is drawn "
                   f"(default {DEFAULT.model}; a model alone draws only the figures of its "
                   "memory)")
    _prepared_option(p)
    p.add_argument("--predictions", type=Path, help="predictions npz of the evaluate stage "
                   f"(default {DEFAULT.predictions})")
    p.add_argument("--out", type=Path, help=f"figures folder (default {DEFAULT.figures}); it "
                   "must hold nothing but salgl's figures")

    p = sub.add_parser("predict", help="Label your own images with a trained model.",
                       description="Label images with a model file. PATH may be image files, "
                       "folders (searched recursively for image files) or a .txt file with one "
                       "path per line. Output: one JSON line per image with path, labels "
                       "(at or above their cut-offs, highest score first), scores (every "
                       "label), scene (the learned scene's index), scene_top_labels (the three "
                       "labels most specific to that scene, to name it) and scene_probs; or "
                       "CSV with the same in columns (scene_prob_K last). Unreadable images "
                       "are reported on stderr and skipped; the exit code is then 1.")
    p.add_argument("model", type=Path, help="a model.safetensors written by salgl")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="image files, folders (searched recursively for image extensions) or "
                   ".txt files with one image path per line")
    p.add_argument("--threshold", type=float, default=None,
                   help="one label cut-off for every label (default: the per-label cut-offs "
                   "calibrated on the validation split and stored in the model file; 0.5 for "
                   "a model without them)")
    p.add_argument("--topk", type=int, default=None, help="keep at most K labels per image")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl",
                   help="jsonl: one JSON object per line (default); csv: a header row, then "
                   "one row per image")
    p.add_argument("--output", "-o", type=Path, help="write this file instead of stdout "
                   "('-': stdout); a new or regular file (or a link to one), not an input; "
                   "left as it was when no image could be labelled")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass "
                   "(default 32)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: CUDA when present (default)")
    p.add_argument("--explain", type=Path, metavar="DIR",
                   help="also draw each labelled image with its labels' label-attention "
                   "maps: one PNG per image, named after it (NAME.png; NAME-2.png for a "
                   "second image of that name), one panel per label the record lists (the "
                   "top-1 label, said in the title, when none reaches its cut-off). A map "
                   "shows where that label's query looks on the backbone's token grid (a "
                   "coarse grid, resized), before the label graph and the scene change the "
                   "score: not a causal attribution (docs/method-notes.md). DIR is replaced "
                   "as a whole: it must be missing, empty or written by --explain, and apart "
                   "from the inputs. Needs a SALGL model: the linear head has no attention")

    p = sub.add_parser("import-official", help="Convert an authors' released checkpoint into "
                       "our model file.", description="Read EXP_DIR/config.yaml and "
                       "EXP_DIR/checkpoints/ema_best_model.pth (with torch.load(weights_only="
                       "True): a pickle that would run code is refused), map every key onto "
                       "our model, check every shape, and write a self-contained safetensors "
                       "model file.")
    p.add_argument("exp_dir", type=Path, metavar="EXP_DIR")
    p.add_argument("--labels", type=Path, required=True,
                   help="label names, one per line, in class-index order (num_classes lines)")
    p.add_argument("out", type=Path, metavar="OUT.safetensors")

    p = sub.add_parser("evaluate-official", help="Import a released experiment listed under "
                       "official.NAME in params.yaml, evaluate it and draw its figures.",
                       description="Runs import-official on official.NAME.dir, evaluates the "
                       f"imported model on its prepared dataset ({OFFICIAL.metrics}) and "
                       f"draws the figures ({OFFICIAL.plots}/).")
    p.add_argument("name", help="an entry of `official:` in params.yaml, e.g. coco448")
    p.add_argument("--params", type=Path, default=PARAMS)

    p = sub.add_parser("export", help="Export a model as ONNX (dynamic batch).",
                       description="Write an ONNX graph from normalised images (batch, 3, S, S) "
                       "to sigmoid scores and scene probabilities; label names and input "
                       "normalisation go into the ONNX metadata (salgl.labels, "
                       "salgl.normalization). Needs the onnx extra.")
    p.add_argument("model", type=Path)
    p.add_argument("--onnx", type=Path, required=True, metavar="OUT.onnx",
                   help="a new or regular file (or a link to one), not the model")
    p.add_argument("--opset", type=int, default=18)

    p = sub.add_parser("info", help="Show what a model file holds.",
                       description="Print a model file's card: architecture, labels, the "
                       "data it was trained on (fingerprint), the selected epoch and its "
                       "metrics, and the calibrated thresholds. Reads metadata only.")
    p.add_argument("model", type=Path, help="a model.safetensors written by salgl")
    p.add_argument("--json", action="store_true", help="print the card as JSON")

    _headroom_parser(sub)

    p = sub.add_parser("metrics", help="Compute the evaluation metrics of a predictions file.",
                       description="Print the evaluation metrics (docs/contract/method.md) "
                       "as JSON for an .npz holding "
                       "`scores` and `targets` (images x labels), optional `ignore` and "
                       "`scene_probs`.")
    p.add_argument("predictions", type=Path)
    p.add_argument("--threshold", type=float, default=0.5)
    _ablation_parser(sub)
    return parser


HEADROOM_HELP = """\
Before training: the Bayes-optimal test mAP of three label models on an embedded
(fashion_scenes) dataset, computed from the generator's exact distribution of label sets and
backgrounds and a model of visual evidence (each label's evidence is SIGNAL * label + unit
Gaussian noise):
  independent  each label alone, with its frequency
  pairwise     the best model of every label, label-pair and (label, background) statistic
  scenes       the true scene mixture, given the background
headroom = scenes - pairwise: what knowing the scenes could add to a global label graph plus
the background (salgl/headroom.py; docs/results.md). Also how much of the true scene a
classifier of the background alone recovers (agreement and NMI, exact): the bar that learned
scenes must clear. Prints one JSON object."""


def _headroom_parser(sub) -> None:
    p = sub.add_parser("headroom", help="What scene awareness could gain on an embedded "
                       "dataset, before any training.", description=HEADROOM_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", nargs="?", default="fashion_scenes",
                   help="a dataset whose prepare settings are fashion_scenes' (default "
                   "fashion_scenes)")
    p.add_argument("--params", type=Path, default=PARAMS,
                   help=f"params file to read its prepare settings from (default: {PARAMS})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a prepare setting, e.g. --set scene_purity=0 (repeatable)")
    evidence = p.add_mutually_exclusive_group(required=True)
    evidence.add_argument("--target-map", type=float, metavar="MAP",
                          help="fit the signal so that the independent model reaches this "
                          "test mAP (e.g. the plain backbone's measured one)")
    evidence.add_argument("--signal", type=float, help="the evidence signal itself (>= 0)")
    p.add_argument("--images", type=int, default=20000,
                   help="simulated test images (default 20000; 100 to 200000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated images")
    p.add_argument("--out", type=Path, help="also write the JSON to this file")


ABLATION_HELP = """\
The seeded ablation of scene awareness (docs/results.md), one action per DVC stage of
experiments/ablation/dvc.yaml: `dvc repro experiments/ablation/dvc.yaml` runs them all.
A cell is one (data, variant, seed); its names come from the params file's lists. One
`run` trains every cell of one seed, parallel_runs of them side by side."""


def _ablation_parser(sub) -> None:
    p = sub.add_parser("ablation", help="Run one stage of the scene-awareness ablation.",
                       description=ABLATION_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=ABLATION_PARAMS,
                   help="the ablation's params file (default: %(default)s)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("prepare", help="compose one data variant (scenes or control)")
    a.add_argument("data", help="a name from the params file's data_settings")
    a.add_argument("--raw", type=Path, help="folder with the Fashion-MNIST IDX files")
    a = actions.add_parser("embed", help="label vectors of one data variant")
    a.add_argument("data", help="a name from the params file's data_settings")
    a = actions.add_parser("run", help="train every cell (data x variant) of one seed, then "
                           "score each on the test split once")
    a.add_argument("seed", type=int, help="train.seed of these runs")
    actions.add_parser("summary", help="the convergence check, results/ablation.csv, the "
                       "paired differences, the verdicts and the figures")


def _overrides(items: Sequence[str]) -> dict:
    """--set KEY=VALUE pairs; VALUE is read as YAML, as it would be in params.yaml."""
    from salgl.errors import shown
    from salgl.yaml_text import read_yaml

    values = {}
    for item in items:
        if "=" not in item:
            raise SalglError(f"--set {shown(item)}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        values[key.strip()] = read_yaml(value, f"--set {shown(key.strip(), 40)}")
    return values


def _dataset_params(args: argparse.Namespace, stage: str):
    from collections.abc import Mapping

    from salgl.config import dataset_params, load_params, stage_section

    params = load_params(args.params)
    if args.overrides:
        section = stage_section(params, stage, args.dataset) or {}
        if not isinstance(section, Mapping):
            raise SalglError(f"{args.params}: {stage}.{args.dataset}: expected a mapping of "
                             "settings")
        section = {**section, **_overrides(args.overrides)}
        params = {**params, stage: {**(params.get(stage) or {}), args.dataset: section}}
    return dataset_params(params, args.dataset, stage)


# --------------------------------------------------------------------------- what a command
# reads and writes: one check of each command's named outputs (the defaults of salgl.paths
# where none is named) against its inputs and each other, before the command does any work
# (salgl.output_rules.check_outputs). predict and export check their one output themselves.

def _check(outputs: list, inputs: list) -> None:
    from salgl.output_rules import check_outputs

    check_outputs(outputs, inputs)


def _params_file(args) -> list:
    from salgl.output_rules import Input

    return [Input("the params file", args.params)]


def _image_root(params) -> list:
    """The folder the prepared lists' images are read from, when image_roots names one."""
    from salgl.output_rules import Input

    return [Input(f"image_roots.{params.name}", Path(params.image_root))] \
        if params.image_root else []


def _io_prepare(args, params, out: Path) -> tuple[list, list]:
    from salgl.output_rules import Input, Output
    from salgl.pipeline import prepare_inputs

    return ([Output("--out", out, "prepared")],
            [*(Input(what, path) for what, path in prepare_inputs(params, args.raw)),
             *_params_file(args)])


def _io_embed(args, params, prepared: Path, out: Path) -> tuple[list, list]:
    from salgl.output_rules import Input, Output

    glove = params.embed.glove_path if params.embed.source == "glove" else None
    return ([Output("--out", out, "embeddings")],
            [Input("the prepared folder", prepared),
             Input(f"embed.{params.name}.glove_path", Path(glove) if glove else None),
             *_params_file(args)])


def _io_train(args, params) -> tuple[list, list]:
    from salgl.output_rules import Input, Output

    paths = DatasetPaths(params.name)
    return ([Output("--out", args.out or paths.model),
             Output("--state", args.state or paths.state, "state"),
             Output("--live", args.live or paths.live, "live")],
            [Input("the prepared folder", args.prepared or paths.prepared),
             Input("the embeddings folder", args.embeddings or paths.embeddings),
             *([Input(f"train.{params.name}.init_from", Path(params.train.init_from))]
               if params.train.init_from else []),
             *_image_root(params), *_params_file(args)])


def _io_evaluate(args, params) -> tuple[list, list]:
    from salgl.output_rules import Input, Output

    paths = DatasetPaths(params.name)
    return ([Output("--metrics", args.metrics or paths.metrics),
             Output("--all-metrics", args.all_metrics or paths.all_metrics),
             Output("--eval-dir", args.eval_dir or paths.eval_dir, "eval"),
             Output("--predictions", args.predictions or paths.predictions)],
            [Input("the model", args.model or paths.model),
             Input("the prepared folder", args.prepared or paths.prepared),
             *_image_root(params), *_params_file(args)])


def _io_plots(args, params) -> tuple[list, list]:
    """A model named alone draws only its memory's figures; otherwise the stage reads the
    evaluate stage's predictions and table, which must be there before any figure is drawn."""
    from salgl.output_rules import Input, Output
    from salgl.pipeline import plots_model_only

    name, paths = params.name, DatasetPaths(params.name)
    outputs = [Output("--out", args.out or paths.figures, "figures")]
    inputs = [Input("the model", args.model or paths.model,
                    None if args.model else f"`salgl train {name}`"), *_params_file(args)]
    if plots_model_only(name, args.model, args.predictions):
        return outputs, inputs
    evaluate = f"`salgl evaluate {name}`"
    inputs += [Input("the predictions", args.predictions or paths.predictions, evaluate),
               Input("the per-label AP table", paths.eval_dir / "per_label_ap.csv", evaluate),
               Input("the prepared folder", args.prepared or paths.prepared),
               Input("the training curves", paths.live / "plots" / "metrics")]
    outputs.append(Output("the scene-match metrics", paths.scene_match))
    if args.out is None:  # with --out the training curves go into that folder
        outputs.append(Output("the training-curves figure", paths.training_curves))
    return outputs, inputs


def _released(exp_dir: Path, labels: Path) -> list:
    """What importing a released experiment reads."""
    from salgl.output_rules import Input

    return [Input("the labels file", labels),
            Input("the released config", exp_dir / "config.yaml"),
            Input("the released checkpoint", exp_dir / "checkpoints" / "ema_best_model.pth")]


def _io_evaluate_official(args, name: str, cfg, params) -> tuple[list, list]:
    from salgl.output_rules import Input, Output
    from salgl.pipeline import official_labels

    out, prepared = OfficialPaths(name), DatasetPaths(params.name).prepared
    return ([Output("the imported model", out.model), Output("the metrics", out.metrics),
             Output("the tables folder", out.eval_dir, "eval"),
             Output("the predictions", out.predictions),
             Output("the figures folder", out.figures, "figures")],
            [*_released(Path(cfg.dir), official_labels(cfg)),
             Input("the prepared folder", prepared), *_image_root(params),
             *_params_file(args)])


def _cmd_prepare(args):
    from salgl.pipeline import run_prepare

    if args.strict:
        args.overrides.append("strict=true")
    params = _dataset_params(args, "prepare")
    out = args.out or DatasetPaths(params.name).prepared
    _check(*_io_prepare(args, params, out))
    run_prepare(params, out, args.raw)


def _cmd_embed(args):
    from salgl.pipeline import run_embed

    params = _dataset_params(args, "embed")
    paths = DatasetPaths(params.name)
    prepared, out = args.prepared or paths.prepared, args.out or paths.embeddings
    _check(*_io_embed(args, params, prepared, out))
    run_embed(params, prepared, out)


def _cmd_train(args):
    import os

    from salgl.distributed import check_launch, check_node, relaunch, under_torchrun
    from salgl.pipeline import run_train

    params = _dataset_params(args, "train")
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 checks, as it writes
        _check(*_io_train(args, params))
    batch = (params.train.batch_size, params.train.device, f"train.{args.dataset}.batch_size")
    if under_torchrun():  # started by torchrun, on this node or several: never re-executed
        check_node(args.processes, *batch)
    elif args.processes != 1:
        check_launch(args.processes, *batch)
        relaunch(args.processes, sys.argv)
    run_train(params, args.prepared, args.embeddings, args.out, args.state, args.live,
              progress=not args.quiet)


def _cmd_evaluate(args):
    from salgl.pipeline import run_evaluate

    params = _dataset_params(args, "evaluate")
    _check(*_io_evaluate(args, params))
    run_evaluate(params, args.model, args.prepared, args.metrics, args.eval_dir,
                 args.predictions, progress=not args.quiet, all_metrics=args.all_metrics)


def _cmd_plots(args):
    from salgl.pipeline import run_plots

    params = _dataset_params(args, "plots")
    _check(*_io_plots(args, params))
    run_plots(params, args.model, args.prepared, args.predictions, out=args.out)


def _cmd_predict(args) -> int:
    from salgl.predict import predict_command

    return predict_command(args)


def _cmd_import_official(args):
    from salgl.official import import_official
    from salgl.output_rules import Output

    _check([Output("OUT", args.out)], _released(args.exp_dir, args.labels))
    summary = import_official(args.exp_dir, args.labels, args.out)
    log.info("imported %s (%s, %d px, %d labels) -> %s", args.exp_dir, summary["backbone"],
             summary["img_size"], summary["labels"], args.out)


def _cmd_evaluate_official(args):
    from salgl.config import dataset_params, load_params, official_params
    from salgl.pipeline import run_evaluate_official

    params = load_params(args.params)
    cfg = official_params(params, args.name)
    dataset = dataset_params(params, cfg.dataset)
    _check(*_io_evaluate_official(args, args.name, cfg, dataset))
    run_evaluate_official(args.name, cfg, dataset, progress=not args.quiet)


def _cmd_export(args):
    from salgl.export import export_onnx

    summary = export_onnx(args.model, args.onnx, args.opset)
    cuts = ("the calibrated thresholds in salgl.thresholds" if summary["thresholds"]
            else "no calibrated thresholds: cut at 0.5")
    log.info("exported %s -> %s: input images (batch, 3, %d, %d) normalised as "
             "salgl.normalization; outputs scores (batch, %d) and scene_probs (batch, scenes); "
             "%s", args.model, args.onnx, summary["img_size"], summary["img_size"],
             summary["labels"], cuts)


def _cmd_info(args):
    import json

    from salgl.model_card import card_text, model_card

    card = model_card(args.model)
    print(json.dumps(card, indent=2) if args.json else card_text(card))


def _cmd_metrics(args):
    import json

    from salgl.predictions import metrics_from_file

    print(json.dumps(metrics_from_file(args.predictions, args.threshold), indent=2))


def _cmd_headroom(args):
    import json

    from salgl.config import FashionScenesConfig
    from salgl.headroom import fashion_scenes_distribution, headroom

    if not 100 <= args.images <= 200_000:
        raise SalglError(f"--images: {args.images} is outside 100 to 200000")
    if args.target_map is not None and not 0.0 < args.target_map < 1.0:
        raise SalglError(f"--target-map: {args.target_map} is not between 0 and 1")
    if args.signal is not None and not 0.0 <= args.signal <= 50.0:
        raise SalglError(f"--signal: {args.signal} is outside 0 to 50")
    cfg = _dataset_params(args, "prepare").prepare
    if not isinstance(cfg, FashionScenesConfig):
        raise SalglError(f"prepare.{args.dataset}: headroom needs an embedded dataset (the "
                         "fashion_scenes generator); its distribution is known exactly")
    if args.out:
        from salgl.output_rules import Output

        _check([Output("--out", args.out)], _params_file(args))
    from salgl.scene_match import background_only_recovery

    result = headroom(fashion_scenes_distribution(cfg), args.signal, args.target_map,
                      args.images, args.seed)
    background = background_only_recovery(cfg.num_scenes, cfg.background_match)
    result = {"dataset": args.dataset, **result,
              "background_only_scene_agreement": background["agreement"],
              "background_only_scene_nmi": background["nmi"]}
    log.info("%s: Bayes-optimal test mAP: independent %.3f, pairwise + background %.3f, "
             "scenes + background %.3f; headroom %.4f +- %.4f (signal %.3f, %d images)",
             args.dataset, result["mAP_independent"], result["mAP_pairwise"],
             result["mAP_scenes"], result["headroom"], result["headroom_se"],
             result["signal"], args.images)
    text = json.dumps(result, indent=2)
    if args.out:
        from salgl.atomic import write_text

        write_text(args.out, text + "\n")
    print(text)


def _ablation_prepare(ablation, args) -> None:
    from salgl.ablation.run import prepare_data
    from salgl.paths import AblationPaths

    out = AblationPaths().prepared(args.data)
    _check(*_io_prepare(args, ablation.dataset_params(args.data), out))
    prepare_data(ablation, args.data, args.raw)


def _ablation_embed(ablation, args) -> None:
    from salgl.ablation.run import embed_data
    from salgl.paths import AblationPaths

    paths = AblationPaths()
    _check(*_io_embed(args, ablation.dataset_params(args.data), paths.prepared(args.data),
                      paths.embeddings(args.data)))
    embed_data(ablation, args.data)


def _ablation_run(ablation, args) -> None:
    from salgl.ablation.run import run_seed

    run_seed(ablation, args.seed)


def _ablation_summary(ablation, args) -> None:
    from salgl.ablation.summary import summarise

    summarise(ablation)


ABLATION_ACTIONS = {"prepare": _ablation_prepare, "embed": _ablation_embed,
                    "run": _ablation_run, "summary": _ablation_summary}


def _cmd_ablation(args):
    from salgl.ablation.design import load_ablation

    ABLATION_ACTIONS[args.action](load_ablation(args.params), args)


COMMANDS = {"prepare": _cmd_prepare, "embed": _cmd_embed, "train": _cmd_train,
            "evaluate": _cmd_evaluate, "plots": _cmd_plots, "predict": _cmd_predict,
            "metrics": _cmd_metrics, "info": _cmd_info, "import-official": _cmd_import_official,
            "evaluate-official": _cmd_evaluate_official, "export": _cmd_export,
            "headroom": _cmd_headroom, "ablation": _cmd_ablation}


def one_line(error: BaseException) -> str:
    """The user-facing line of an error, also when it was re-raised from a loader worker."""
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(error).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that temporary files are cleaned up."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done; 1 done, but some inputs were skipped (predict); 2 bad input,
    settings or a refused write (one line names the key, file or path); 130/143 stopped."""
    from salgl.output_rules import WRITE_ERRNOS, use_error

    args = build_parser().parse_args(argv)
    from salgl.console import configure_logging

    configure_logging(args.quiet)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = COMMANDS[args.command](args)
    except SalglError as exc:
        print(f"salgl {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        # Raised where it was not caught as a read or a write: worded for either.
        print(f"salgl {args.command}: error: {use_error(exc.filename or '?', exc)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        stopped = isinstance(exc, Terminated)
        print(f"salgl {args.command}: {'terminated' if stopped else 'interrupted'}; "
              "finished outputs are kept, a training run resumes on the next start",
              file=sys.stderr)
        return 143 if stopped else 130
    return int(code or 0)


def run_stage(stage: str, argv: Sequence[str]) -> int:
    """Entry point of the stage scripts in stages/: ``python stages/STAGE.py DATASET``."""
    return main([stage, *argv])


def run_ablation_stage(argv: Sequence[str]) -> int:
    """Entry point of stages/ablation.py: ``python stages/ablation.py ACTION ...``."""
    return main(["ablation", *argv])


if __name__ == "__main__":
    sys.exit(main())
