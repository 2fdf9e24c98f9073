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

from salgl.errors import SalglError

log = logging.getLogger("salgl")

DESCRIPTION = """\
Scene-Aware Label Graph Learning (SALGL, ICCV 2023) for multi-label image classification.

Pipeline stages (what `dvc repro` runs, one per dataset, settings from params.yaml):
  prepare -> embed -> train -> evaluate -> plots
Other tools: predict (label your own images), metrics (score a predictions file).
Run `salgl COMMAND --help` for each command's options."""


def _dataset_command(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="fashion_scenes (embedded) | mscoco | voc2007 | nuswide")
    p.add_argument("--params", type=Path, default=Path("params.yaml"),
                   help="params file to read settings from (default: params.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a {name} setting of this dataset, e.g. --set epochs=2 "
                        "(validated like params.yaml; repeatable)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salgl", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _dataset_command(sub, "prepare", "Write a dataset in the prepared format "
                         "(labels.txt, train.tsv, test.tsv, meta.json).")
    p.add_argument("--raw", type=Path, help="the dataset's own folder (fashion_scenes: a folder "
                   "with Fashion-MNIST IDX files)")
    p.add_argument("--out", type=Path, help="output folder (default data/prepared/DATASET)")
    p.add_argument("--strict", action="store_true", help="real datasets: a missing or broken "
                   "image is an error (default: left out and recorded in meta.json)")

    p = _dataset_command(sub, "embed", "Make label vectors (GloVe file, a GloVe fit to the "
                         "training label co-occurrence, or random).")
    p.add_argument("--prepared", type=Path, help="prepared dataset folder")
    p.add_argument("--out", type=Path, help="output folder (default data/embeddings/DATASET)")

    p = _dataset_command(sub, "train", "Train SALGL (AdamW + OneCycle, EMA, early stopping on "
                         "test mAP); resumes a killed run from its last finished epoch.")
    p.add_argument("--prepared", type=Path)
    p.add_argument("--embeddings", type=Path, help="folder with vectors.npy and info.json")
    p.add_argument("--out", type=Path, help="model file (default models/DATASET/model.safetensors)")
    p.add_argument("--state", type=Path, help="resume-state folder (default state/DATASET)")
    p.add_argument("--live", type=Path, help="DVCLive folder (default dvclive/DATASET)")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="processes on this node (one per GPU): N > 1 re-runs this command "
                   "under torchrun with DistributedDataParallel (params.yaml: nproc)")

    p = _dataset_command(sub, "evaluate", "Score a model on the test split: metrics JSON, "
                         "per-label AP table, saved predictions.")
    p.add_argument("--model", type=Path)
    p.add_argument("--prepared", type=Path)
    p.add_argument("--metrics", type=Path, help="metrics JSON (default metrics/DATASET.json)")
    p.add_argument("--eval-dir", type=Path, help="tables folder (default plots/DATASET/eval)")
    p.add_argument("--predictions", type=Path,
                   help="predictions npz (default data/predictions/DATASET.npz)")

    p = _dataset_command(sub, "plots", "Draw the figures: training curves, per-label AP, "
                         "precision-recall, per-scene co-occurrence heatmaps and label clouds.")
    p.add_argument("--model", type=Path, help="model file whose scene memory is drawn")
    p.add_argument("--prepared", type=Path)
    p.add_argument("--predictions", type=Path)
    p.add_argument("--out", type=Path, help="figures folder (default plots/DATASET/figures)")

    p = sub.add_parser("predict", help="Label your own images with a trained model.",
                       description="Label images with a model file. PATH may be image files, "
                       "folders (searched recursively for image files) or a .txt file with one "
                       "path per line. Output: JSON lines (path, labels, scores, scene, "
                       "scene_probs) or CSV. Unreadable images are reported on stderr and "
                       "skipped; the exit code is then 1.")
    p.add_argument("model", type=Path, help="a model.safetensors written by salgl")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--threshold", type=float, default=0.5, help="label cut-off (default 0.5)")
    p.add_argument("--topk", type=int, default=None, help="keep at most K labels per image")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

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
                       "imported model on its prepared dataset (metrics/official/NAME.json) and "
                       "draws the figures (plots/official/NAME/).")
    p.add_argument("name", help="an entry of `official:` in params.yaml, e.g. coco448")
    p.add_argument("--params", type=Path, default=Path("params.yaml"))

    p = sub.add_parser("export", help="Export a model as ONNX (dynamic batch).",
                       description="Write an ONNX graph from normalised images (batch, 3, S, S) "
                       "to sigmoid scores and scene probabilities; label names and input "
                       "normalisation go into the ONNX metadata (salgl.labels, "
                       "salgl.normalization). Needs the onnx extra.")
    p.add_argument("model", type=Path)
    p.add_argument("--onnx", type=Path, required=True, metavar="OUT.onnx")
    p.add_argument("--opset", type=int, default=18)

    p = sub.add_parser("metrics", help="Compute the evaluation metrics of a predictions file.",
                       description="Print method.md's metrics as JSON for an .npz holding "
                       "`scores` and `targets` (images x labels), optional `ignore` and "
                       "`scene_probs`.")
    p.add_argument("predictions", type=Path)
    p.add_argument("--threshold", type=float, default=0.5)
    return parser


def _overrides(items: Sequence[str]) -> dict:
    import yaml

    values = {}
    for item in items:
        if "=" not in item:
            raise SalglError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        values[key.strip()] = yaml.safe_load(value)
    return values


def _dataset_params(args: argparse.Namespace, stage: str):
    from salgl.config import dataset_params, load_params

    params = load_params(args.params)
    if args.overrides:
        section = dict((params.get(stage) or {}).get(args.dataset) or {})
        section.update(_overrides(args.overrides))
        params = {**params, stage: {**(params.get(stage) or {}), args.dataset: section}}
    return dataset_params(params, args.dataset)


def _cmd_prepare(args):
    from salgl.pipeline import run_prepare

    if args.strict:
        args.overrides.append("strict=true")
    run_prepare(_dataset_params(args, "prepare"), args.out, args.raw)


def _cmd_embed(args):
    from salgl.pipeline import run_embed

    run_embed(_dataset_params(args, "embed"), args.prepared, args.out)


def _cmd_train(args):
    from salgl.distributed import check_launch, relaunch, under_torchrun
    from salgl.pipeline import run_train

    if args.processes != 1 and not under_torchrun():
        params = _dataset_params(args, "train")
        check_launch(args.processes, params.train.batch_size, params.train.device,
                     f"train.{args.dataset}.batch_size")
        relaunch(args.processes, sys.argv)
    run_train(_dataset_params(args, "train"), args.prepared, args.embeddings, args.out,
              args.state, args.live, progress=not args.quiet)


def _cmd_evaluate(args):
    from salgl.pipeline import run_evaluate

    run_evaluate(_dataset_params(args, "evaluate"), args.model, args.prepared, args.metrics,
                 args.eval_dir, args.predictions, progress=not args.quiet)


def _cmd_plots(args):
    from salgl.pipeline import run_plots

    run_plots(_dataset_params(args, "plots"), args.model, args.prepared, args.predictions,
              out=args.out)


def _cmd_predict(args) -> int:
    from salgl.predict import predict_command

    return predict_command(args)


def _cmd_import_official(args):
    from salgl.official import import_official

    summary = import_official(args.exp_dir, args.labels, args.out)
    log.info("imported %s (%s, %d px, %d labels) -> %s", args.exp_dir, summary["backbone"],
             summary["img_size"], summary["labels"], args.out)


def _cmd_evaluate_official(args):
    from salgl.config import dataset_params, load_params, official_params
    from salgl.pipeline import run_evaluate_official

    params = load_params(args.params)
    cfg = official_params(params, args.name)
    run_evaluate_official(args.name, cfg, dataset_params(params, cfg.dataset),
                          progress=not args.quiet)


def _cmd_export(args):
    from salgl.export import export_onnx

    summary = export_onnx(args.model, args.onnx, args.opset)
    log.info("exported %s (%d labels, %d px, dynamic batch) -> %s", args.model,
             summary["labels"], summary["img_size"], args.onnx)


def _cmd_metrics(args):
    import json

    from salgl.metrics import metrics_from_file

    print(json.dumps(metrics_from_file(args.predictions, args.threshold), indent=2))


COMMANDS = {"prepare": _cmd_prepare, "embed": _cmd_embed, "train": _cmd_train,
            "evaluate": _cmd_evaluate, "plots": _cmd_plots, "predict": _cmd_predict,
            "metrics": _cmd_metrics, "import-official": _cmd_import_official,
            "evaluate-official": _cmd_evaluate_official, "export": _cmd_export}


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
    from salgl.atomic import WRITE_ERRNOS, write_error

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
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
        print(f"salgl {args.command}: error: {write_error(exc.filename or '?', exc)}",
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


if __name__ == "__main__":
    sys.exit(main())
