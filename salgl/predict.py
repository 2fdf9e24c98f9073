"""``salgl predict``: label image files, folders or path lists with a trained model file;
with ``--explain``, also draw each image's label-attention maps (salgl.explain)."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import stat
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from salgl.errors import SalglError

log = logging.getLogger("salgl")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


@dataclass
class Inputs:
    """What the PATH arguments expand to: images to label, inputs that failed, files ignored."""

    images: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)  # reason -> count, inside folders


def _walk_folder(folder: Path, found: Inputs) -> None:
    """Image files under ``folder`` by extension; everything else is only counted.

    os.walk does not follow links to folders, so a link loop cannot recurse; a link to a
    file is followed, and one that is broken or loops is counted as ignored.
    """
    for top, dirs, files in os.walk(folder, onerror=lambda _: found.ignored.update(
            ["unreadable folders"])):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(top) / name
            if name.startswith("."):
                found.ignored["hidden files"] += 1
            elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                found.ignored["files without an image extension"] += 1
            elif not path.is_file():
                found.ignored["broken or looping links" if not path.exists()
                              else "FIFOs, devices or sockets (never opened)"] += 1
            else:
                found.images.append(path)


def _kind(path: Path) -> str:
    """"folder", "file", or why ``path`` cannot be read as one; never opens it, so a FIFO
    or a device cannot block the run."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file or folder"
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    what = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or \
        stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file"
    return f"{what}, not a regular file (not opened)"


def _read_list(listing: Path, found: Inputs) -> None:
    """The paths of a .txt list, one per line (a tab and what follows are ignored)."""
    try:
        data = listing.read_bytes()
    except OSError as exc:
        found.failed.append((listing, f"cannot read the path list ({exc.strerror or exc})"))
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SalglError(f"{listing}:{line}: not UTF-8 text (a path list holds one UTF-8 "
                         "path per line)") from None
    for line in text.splitlines():
        if line.strip():
            path = Path(line.strip().split("\t")[0])
            kind = _kind(path)
            if kind in ("file", "folder", "no such file or folder"):
                found.images.append(path)  # the decoder names what is wrong with it
            else:
                found.failed.append((path, kind))


def collect_images(inputs: Sequence[Path]) -> Inputs:
    """Expand files, folders (recursive, image extensions only) and .txt path lists; only
    regular files are ever opened."""
    found = Inputs()
    for item in inputs:
        kind = _kind(item)
        if kind == "folder":
            _walk_folder(item, found)
        elif kind == "file" and item.suffix.lower() == ".txt":
            _read_list(item, found)
        elif kind == "file":
            found.images.append(item)
        else:
            found.failed.append((item, kind))
    return found


class _ImageFiles(Dataset):
    def __init__(self, paths: list[Path], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from salgl.data.decode import ImageReadError, open_rgb

        try:
            return index, self.transform(open_rgb(str(self.paths[index]))), None
        except ImageReadError as exc:
            return index, None, exc.reason
        except Exception as exc:  # one bad image must never cost the others their labels
            return index, None, f"{type(exc).__name__}: {exc}"


def _collate(batch):
    good = [(i, x) for i, x, err in batch if err is None]
    bad = [(i, err) for i, _, err in batch if err is not None]
    tensors = torch.stack([x for _, x in good]) if good else None
    return [i for i, _ in good], tensors, bad


def predict_batches(model, info, paths: list[Path], batch_size: int, device: torch.device,
                    progress: bool = True, attention: bool = False) -> Iterator[tuple]:
    """Yield (path, scores, scene_probs) or (path, None, reason) per image, in input order;
    with ``attention``, a fourth item: the labels' attention maps over the token grid
    (C, h, w; salgl.explain), None for an image that failed."""
    from tqdm import tqdm

    from salgl.explain import grid_maps
    from salgl.inference import scores_and_scenes, transform_for
    from salgl.runtime import loader_workers

    tail: tuple = (None,) if attention else ()

    loader = DataLoader(_ImageFiles(paths, transform_for(info)), batch_size=batch_size,
                        num_workers=min(loader_workers(device), 4), collate_fn=_collate)
    # On a terminal only (disable=None): redrawn in place around the skip messages; in a log
    # file or pipe every redraw would be a second copy of the bar.
    with torch.no_grad(), tqdm(total=len(paths), desc="predict",
                               disable=None if progress else True, file=sys.stderr) as bar:
        for indices, images, bad in loader:
            results: dict[int, tuple] = {i: (paths[i], None, err, *tail) for i, err in bad}
            if images is not None:
                outputs = model(images.to(device))
                scores, scenes = scores_and_scenes(outputs)
                scores, scenes = scores.cpu().numpy(), scenes.cpu().numpy()
                maps = grid_maps(outputs["attention"].float(), model)[0].cpu().numpy() \
                    if attention else None
                for row, i in enumerate(indices):
                    extra = (maps[row],) if maps is not None else ()
                    results[i] = (paths[i], scores[row], scenes[row], *extra)
            for i in sorted(results):
                yield results[i]
            bar.update(len(indices) + len(bad))


def _say(text: str) -> None:
    """A line on stderr that does not break a running progress bar."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


def chosen_labels(scores: np.ndarray, labels: list[str], threshold: float | np.ndarray,
                  topk: int | None) -> list[str]:
    """Labels at or above their cut (one for all, or one per label), highest score first."""
    cuts = np.broadcast_to(np.asarray(threshold, dtype=np.float64), scores.shape)
    order = np.argsort(-scores, kind="stable")
    keep = [labels[i] for i in order if scores[i] >= cuts[i]]
    return keep[:topk] if topk else keep


def label_cuts(info, threshold: float | None, model_path: Path) -> float | np.ndarray:
    """--threshold when given, else the per-label cuts calibrated on the validation split
    at training time, else 0.5 (models without a validation split, imported checkpoints)."""
    from salgl.calibration import check_thresholds

    if threshold is not None:
        return threshold
    stored = info.extra.get("thresholds")
    if stored is None:
        log.info("salgl predict: %s has no calibrated thresholds; cutting at 0.5", model_path)
        return 0.5
    return check_thresholds(stored, len(info.labels), f"{model_path}: thresholds")


def scene_top_labels(cooccurrence: np.ndarray, labels: list[str], k: int = 3
                     ) -> list[list[str]]:
    """Each learned scene's k labels whose occurrences fall most into it (the diagonal of
    the scene memory, normalised over scenes): a name a person can read beside the index."""
    from salgl.figures.memory import scene_label_shares

    return [[labels[i] for i in np.argsort(-row, kind="stable")[:k]]
            for row in scene_label_shares(cooccurrence)]


def _write_records(out: TextIO, fmt: str, labels: list[str], results: Iterator[tuple],
                   threshold: float | np.ndarray, topk: int | None,
                   scene_labels: list[list[str]]) -> int:
    """Write one record per labelled image; report and count the ones that failed."""
    writer = None
    if fmt == "csv":
        writer = csv.writer(out)
        # scene probabilities last, named so no label column can be mistaken for one
        writer.writerow(["path", "labels", "scene", "scene_top_labels", *labels,
                         *(f"scene_prob_{k}" for k in range(len(scene_labels)))])
    failed = 0
    for path, scores, scenes in results:
        if scores is None:
            failed += 1
            _say(f"salgl predict: skipped {path}: {scenes}")
            continue
        names = chosen_labels(scores, labels, threshold, topk)
        scene = int(np.argmax(scenes))
        if writer is not None:
            writer.writerow([str(path), ";".join(names), scene, ";".join(scene_labels[scene]),
                             *(f"{s:.6f}" for s in scores), *(f"{p:.6f}" for p in scenes)])
        else:
            named = zip(labels, scores, strict=True)
            record = {"path": str(path), "labels": names,
                      "scores": {n: round(float(s), 6) for n, s in named},
                      "scene": scene, "scene_top_labels": scene_labels[scene],
                      "scene_probs": [round(float(p), 6) for p in scenes]}
            out.write(json.dumps(record) + "\n")
    return failed


STDOUT = "-"  # -o -: standard output, as without -o


class _NothingLabelled(Exception):
    """Raised inside the output's atomic write, so that an earlier result stays as it was."""


def _check_output(output: Path, model: Path, paths: Sequence[Path], found: Inputs) -> None:
    """Refuse an output that is not a writable file path or that is one of the inputs: the
    model, a PATH, a path list, or an image found in them; before any work."""
    from salgl.output_rules import check_file_output, check_not_input

    check_file_output(output)
    check_not_input(output, [("the model", model), *(("PATH", p) for p in paths)])
    try:
        written = os.stat(output)
    except OSError:
        return  # not there yet, so not an input
    for image in found.images:
        try:
            same = os.path.samestat(written, os.stat(image))
        except OSError:
            continue
        if same:
            raise SalglError(f"{output}: is an input of this command (an image to label: "
                             f"{image}); choose another output; nothing was changed")


def _write_output(args, labels: list[str], results: Iterator[tuple],
                  cuts: float | np.ndarray, scene_labels: list[list[str]], total: int
                  ) -> int | None:
    """Records to -o (whole, or not at all when nothing was labelled) or stdout; returns the
    number of images that failed, or None when none was labelled and -o was left as it was."""
    from salgl.atomic import atomic_path

    if args.output is None or str(args.output) == STDOUT:
        return _write_records(sys.stdout, args.format, labels, results, cuts, args.topk,
                              scene_labels)
    try:
        # A temporary sibling renamed into place when complete: a failed or concurrent run
        # never leaves a cut-off file, and an earlier result stays until a new one is whole.
        with atomic_path(args.output) as tmp, open(tmp, "w", encoding="utf-8",
                                                   newline="") as out:
            failed = _write_records(out, args.format, labels, results, cuts, args.topk,
                                    scene_labels)
            if failed == total:
                raise _NothingLabelled
    except _NothingLabelled:
        return None
    return failed


def _check_explain(args, found: Inputs) -> None:
    """Refuse an --explain folder that is, lies inside or holds an input (the model, a PATH,
    an image to label) or the -o file, or that holds anything salgl did not write there;
    before any work."""
    from salgl.output_rules import Output, check_apart, check_apart_outputs, check_dir_output

    inputs = [("the model", args.model), *(("PATH", p) for p in args.paths),
              *(("an image to label", image) for image in found.images)]
    check_apart(args.explain, inputs, whole=True)
    if args.output is not None and str(args.output) != STDOUT:
        check_apart_outputs(Output("--explain", args.explain, "explain"),
                            [Output("--output", args.output)])
    check_dir_output(args.explain, "explain")


def explanation_name(path: Path, taken: set[str]) -> str:
    """The PNG name of an image's explanation: its name without the extension (characters
    other than letters, digits, '.', '-' and '_' as '_'), '-2', '-3', ... added when an
    earlier image took it; ``taken`` (lowercase, for case-insensitive file systems) grows."""
    stem = re.sub(r"[^\w.-]", "_", path.stem)[:100].lstrip(".") or "image"
    name, count = f"{stem}.png", 1
    while name.lower() in taken:
        count += 1
        name = f"{stem}-{count}.png"
    taken.add(name.lower())
    return name


def _explaining(results: Iterator[tuple], folder: Path, info, cuts: float | np.ndarray,
                topk: int | None, prefix: int) -> Iterator[tuple]:
    """Pass the records on, drawing each labelled image with the maps of the labels its
    record lists (the top-1 label, said in the title, when none reaches its cut) into
    ``folder``."""
    from salgl.data.decode import ImageReadError, open_rgb
    from salgl.explain import draw_explanation

    labels, taken = info.labels, set()
    index = {name: i for i, name in enumerate(labels)}
    for path, scores, scenes, maps in results:
        if scores is not None:
            names = chosen_labels(scores, labels, cuts, topk)
            title = str(path)
            if not names:
                names = [labels[int(np.argmax(scores))]]
                title += "\nno label reached its cut-off: the top-1 label is shown"
            rows = [index[name] for name in names]
            try:
                image = open_rgb(str(path))
            except ImageReadError as exc:  # changed since it was labelled
                _say(f"salgl predict: no explanation for {path}: {exc.reason}")
            else:
                draw_explanation(folder / explanation_name(Path(path), taken), image,
                                 maps[rows], names, scores[rows], title, prefix)
        yield path, scores, scenes


class _NothingExplained(Exception):
    """Raised inside the --explain folder's atomic write: an earlier folder stays as it was."""

    def __init__(self, failed: int | None):
        super().__init__()
        self.failed = failed


def _write_explained(args, model, info, results: Iterator[tuple], cuts: float | np.ndarray,
                     scene_labels: list[list[str]], total: int) -> int | None:
    """The records as _write_output writes them, and the --explain folder, replaced as a
    whole once every image is drawn (left as it was when no image could be labelled)."""
    from salgl.atomic import atomic_dir
    from salgl.explain import prefix_tokens

    prefix = prefix_tokens(model)
    try:
        with atomic_dir(args.explain, "explain") as folder:
            drawn = _explaining(results, folder, info, cuts, args.topk, prefix)
            failed = _write_output(args, info.labels, drawn, cuts, scene_labels, total)
            if failed is None or failed == total:
                raise _NothingExplained(failed)
    except _NothingExplained as nothing:
        log.warning("salgl predict: no image could be labelled; %s was left as it was",
                    args.explain)
        return nothing.failed
    return failed


def predict_command(args) -> int:
    """Exit code: 0 when every input was labelled, 1 when some were skipped (each named on
    stderr with its reason) or none could be labelled (an earlier -o file and --explain
    folder are then left as they were); usage errors, refused outputs and --explain with a
    model without label attention raise SalglError (exit 2) before any work."""
    from salgl.checkpoint import load_model
    from salgl.runtime import select_device

    if args.topk is not None and args.topk < 1:
        raise SalglError("--topk: must be at least 1")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise SalglError("--threshold: must be within [0, 1]")
    if args.batch_size < 1:
        raise SalglError("--batch-size: must be at least 1")
    device = select_device(args.device, "--device")
    found = collect_images(args.paths)
    if args.output is not None and str(args.output) != STDOUT:
        _check_output(args.output, args.model, args.paths, found)
    explain = args.explain is not None
    if explain:
        _check_explain(args, found)
    model, info = load_model(args.model, device, images=max(args.batch_size, 2))
    if explain:
        from salgl.explain import check_explainable

        check_explainable(info.config, f"--explain: {args.model}")
    model.set_channels_last()
    cuts = label_cuts(info, args.threshold, args.model)
    scene_labels = scene_top_labels(model.cooccurrence.cpu().numpy(), info.labels)
    for path, reason in found.failed:
        _say(f"salgl predict: skipped {path}: {reason}")
    if found.ignored:
        what = ", ".join(f"{n} {reason}" for reason, n in sorted(found.ignored.items()))
        _say(f"salgl predict: ignored {sum(found.ignored.values())} file(s) in the folders "
             f"given: {what}")
    if not found.images:
        where = ", ".join(str(p) for p in args.paths)
        raise SalglError(f"no image files found in {where}")
    results = predict_batches(model, info, found.images, args.batch_size, device,
                              progress=not args.quiet, attention=explain)
    if explain:
        failed = _write_explained(args, model, info, results, cuts, scene_labels,
                                  len(found.images))
    else:
        failed = _write_output(args, info.labels, results, cuts, scene_labels,
                               len(found.images))
    total = len(found.images) + len(found.failed)
    if failed is None:
        log.warning("salgl predict: none of the %d inputs could be labelled; %s was left as "
                    "it was", total, args.output)
        return 1
    failed += len(found.failed)
    if failed:
        log.warning("salgl predict: %d of %d inputs could not be labelled", failed, total)
        return 1
    return 0
