"""COCO-format JSON as annotation tools export it (Roboflow, CVAT, Label Studio).

An image is positive for every category with at least one annotation in it (crowd ones too);
boxes and masks are not read, so empty or absent ``bbox``/``segmentation`` are fine. Label
order is the categories sorted by id (ids may start at 0 or 1 and have gaps). Tools export a
placeholder parent category that no annotation uses (Roboflow's id 0); any such category is
left out of the labels and named in the notes. ``file_name`` is relative to the images folder
and may hold sub-folders (backslashes read as slashes), never ``..`` (references.py). Only
images that end up in the collection are checked to exist; unannotated images that are dropped
are not, but their names obey the same rules, since meta.json records them.
"""

from __future__ import annotations

from pathlib import Path

from salgl.data.coco import load_json
from salgl.data.formats.collection import ALL, NAMED_SPLITS, Collection, check_collection
from salgl.data.formats.collection import split_name as normal_split
from salgl.data.formats.references import file_problem, image_reference
from salgl.data.images import Sample
from salgl.data.prepared import check_label_names
from salgl.errors import SalglError, shown

KEYS = ("images", "annotations", "categories")


def load_coco_json(path: Path) -> dict:
    """A COCO file's top-level object with its three lists; errors name file, line, column."""
    if not path.is_file():
        raise SalglError(f"{path}: annotation file not found")
    data = load_json(path)
    for key in KEYS:
        if key not in data:
            raise SalglError(f"{path}: no top-level key {key!r} (not a COCO annotation file?)")
        if not isinstance(data[key], list):
            raise SalglError(f"{path}: {key!r} is not a list")
    return data


def _entry(data: dict, key: str, i: int, fields: tuple[str, ...], path: Path) -> dict:
    item = data[key][i]
    if not isinstance(item, dict):
        raise SalglError(f"{path}: {key}[{i}] is not an object")
    for f in fields:
        if f not in item:
            raise SalglError(f"{path}: {key}[{i}] has no {f!r}")
    return item


def _is_id(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def read_categories(data: dict, path: Path) -> dict[int, str]:
    """{id: stripped name} sorted by id; ids and names must each be unique."""
    names: dict[int, str] = {}
    by_name: dict[str, int] = {}
    for i in range(len(data["categories"])):
        item = _entry(data, "categories", i, ("id", "name"), path)
        cid, name = item["id"], item["name"]
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise SalglError(f"{path}: categories[{i}]: id {cid!r} is not an integer")
        if not isinstance(name, str):
            raise SalglError(f"{path}: category id {cid}: name {name!r} is not a string")
        name = name.strip()
        if cid in names:
            raise SalglError(f"{path}: category id {cid} is defined twice")
        if name in by_name:
            raise SalglError(f"{path}: category name {name!r} is used by ids {by_name[name]} "
                             f"and {cid}")
        names[cid] = name
        by_name[name] = cid
    return dict(sorted(names.items()))


def _used_categories(data: dict, path: Path, names: dict[int, str]) -> dict[object, set[int]]:
    """{image id: category ids annotated in it} for every image of the file, in file order."""
    used: dict[object, set[int]] = {}
    for i in range(len(data["images"])):
        image = _entry(data, "images", i, ("id", "file_name"), path)
        iid = image["id"]
        if not _is_id(iid):
            raise SalglError(f"{path}: images[{i}]: id {iid!r} is not an integer or string")
        if iid in used:
            raise SalglError(f"{path}: image id {_id_text(iid)} is defined twice")
        used[iid] = set()
    for i in range(len(data["annotations"])):
        ann = _entry(data, "annotations", i, ("image_id", "category_id"), path)
        which = f"annotation id {_id_text(ann['id'])}" if "id" in ann else f"annotations[{i}]"
        cid = ann["category_id"]
        if not _is_id(cid) or cid not in names:
            raise SalglError(f"{path}: {which}: category_id {shown(cid)} is not defined in "
                             "categories")
        iid = ann["image_id"]
        if not _is_id(iid) or iid not in used:
            raise SalglError(f"{path}: {which}: image_id {shown(iid)} names no image in images")
        used[iid].add(cid)
    return used


def _by_split(annotations: Path | dict[str, Path], images: Path | dict[str, Path]
              ) -> list[tuple[str, Path, Path]]:
    """(split, annotation file, images folder) in train/val/test order, or one ("all", ...)."""
    if not isinstance(annotations, dict):
        if isinstance(images, dict):
            raise SalglError(f"{annotations}: one annotation file needs one images folder, "
                             f"not one per split ({', '.join(images)})")
        return [(ALL, Path(annotations), Path(images))]
    if not annotations:
        raise SalglError("annotations: no split files given")
    files: dict[str, Path] = {}
    for key, file in annotations.items():
        split = normal_split(key)
        if split is None:
            raise SalglError(f"{file}: split {key!r} is not train, val or test")
        if split in files:
            raise SalglError(f"{file}: split {split!r} given twice")
        files[split] = Path(file)
    folders: dict[str, Path] = {}
    if isinstance(images, dict):
        for key, folder in images.items():
            split = normal_split(key)
            if split is None or split not in files:
                raise SalglError(f"{folder}: images folder for split {key!r}, which has no "
                                 "annotation file")
            folders[split] = Path(folder)
    else:
        folders = dict.fromkeys(files, Path(images))
    for split, file in files.items():
        if split not in folders:
            raise SalglError(f"{file}: no images folder for split {split!r}")
    return [(s, files[s], folders[s]) for s in NAMED_SPLITS if s in files]


def _check_same_categories(names: dict[int, str], first: Path, other: dict[int, str],
                           path: Path) -> None:
    """A label index must mean the same in every split file."""
    if names == other:
        return
    cid = min(c for c in names.keys() | other.keys() if names.get(c) != other.get(c))
    raise SalglError(f"{path}: categories differ from {first} (id {cid}: {other.get(cid)!r} "
                     f"here, {names.get(cid)!r} there)")


def _id_text(iid: object) -> str:
    """An image id as messages show it: plain when printable, else quoted with escapes."""
    return str(iid) if str(iid).isprintable() else shown(iid)


def _image_file(image: dict, path: Path, folder: Path, absolute_paths: bool) -> Path:
    """The file an image entry's ``file_name`` names below ``folder`` (references.py)."""
    file_name = image["file_name"]
    where = f"{path}: image id {_id_text(image['id'])}"
    if not isinstance(file_name, str) or not file_name.strip():
        raise SalglError(f"{where}: file_name {shown(file_name)} is not a file name")
    return image_reference(file_name, folder, where, absolute_paths).path


def read_coco(annotations: Path | dict[str, Path], images: Path | dict[str, Path],
              keep_unannotated: bool = False, absolute_paths: bool = False) -> Collection:
    """Read one COCO file (split "all") or one per split ({"train": file, ...}; "valid" and
    "validation" mean val); ``images`` is one folder or one per split. Images without any
    annotation are dropped, or kept with no label present when ``keep_unannotated``.
    ``file_name`` stays inside its folder; absolute ones only with ``absolute_paths``."""
    parts = _by_split(annotations, images)
    for _, _, folder in parts:
        if not folder.is_dir():
            raise SalglError(f"{folder}: images folder not found")
    loaded = [(split, path, folder, load_coco_json(path)) for split, path, folder in parts]
    first = loaded[0][1]
    names = read_categories(loaded[0][3], first)
    used_per_file = []
    for index, (_, path, _, data) in enumerate(loaded):
        if index:
            _check_same_categories(names, first, read_categories(data, path), path)
        used_per_file.append(_used_categories(data, path, names))
    used = set().union(*(c for per_image in used_per_file for c in per_image.values()))
    where = ", ".join(str(path) for _, path, _, _ in loaded)
    notes = [f"left out category {name!r} (id {cid}): no annotation uses it"
             for cid, name in names.items() if cid not in used]
    kept = {cid: name for cid, name in names.items() if cid in used}
    if not kept:
        raise SalglError(f"{where}: no labels left: no annotation uses any of the "
                         f"{len(names)} categories")
    for cid, name in kept.items():
        check_label_names([name], f"{first}: category id {cid}")
    labels = list(kept.values())
    splits: dict[str, list[Sample]] = {}
    dropped: list[dict] = []
    for (split, path, folder, data), per_image in zip(loaded, used_per_file, strict=True):
        samples = splits.setdefault(split, [])
        for image in data["images"]:
            image_path = _image_file(image, path, folder, absolute_paths)
            cids = per_image[image["id"]]
            if not cids and not keep_unannotated:
                entry = {"path": image_path.as_posix(), "reason": "no annotation"}
                dropped.append(entry if split == ALL else {**entry, "split": split})
                continue
            problem = file_problem(image_path)
            if problem:
                raise SalglError(f"{path}: image id {_id_text(image['id'])}: {image_path} "
                                 f"{problem}")
            samples.append(Sample(image_path, [kept[c] for c in kept if c in cids]))
    unannotated = sum(not c for per_image in used_per_file for c in per_image.values())
    if unannotated:
        notes.append(f"kept {unannotated} image(s) without annotation as all-negative"
                     if keep_unannotated else
                     f"dropped {unannotated} image(s) without annotation")
    collection = Collection(labels, splits, dropped, notes)
    check_collection(collection, where)
    return collection
