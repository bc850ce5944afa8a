"""Where data is when sniffing is not enough: a dataset yaml, or ``--images``/``--annotations``.

Ultralytics users write a ``data.yaml``; Detectron2 users call ``register_coco_instances(name,
json, image_root)``. detseg takes both kinds of description and reads them with the same readers
as auto-detection, so a described folder loads exactly like a sniffed one::

    format: voc              # voc | coco | lsp | seg_folders (optional: told by content)
    images: jpgs             # the image folder (paths are relative to this file)
    annotations: boxes       # XML folder | COCO json | joints file | label-PNG folder
    classes: [raccoon]       # optional: names (VOC/COCO order of labels, label-PNG values 0..K)
    splits:                  # optional: train / val / test / all, each an index range,
      train: "0:80"          # a .txt/.csv list file or an inline list of image names
      val: "80:100"
    strict_images: false     # optional data options (crop, crop_scale, ..., strict_images)

``root`` (optional, default the yaml's folder) is where a format's extras are looked for
(``ImageSets/``, ``classes.txt``). :func:`explain_nothing_found` writes the error shown when a
path holds no data detseg recognises: every folder looked at, why each format did not match, and
this yaml filled in for the path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE_FORMATS = ("voc", "coco", "lsp", "seg_folders")
DATA_FILE_SUFFIXES = (".yaml", ".yml")
KEYS = ("format", "root", "images", "annotations", "classes", "splits")
SPLIT_KEYS = ("train", "val", "test", "all")


@dataclass
class DataSource:
    """Explicit parts of a dataset; ``None`` parts are found the usual way."""

    root: Path
    images: Path | None = None
    annotations: Path | None = None
    format: str | None = None
    classes: list[str] | None = None
    splits: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    origin: str = "--images/--annotations"  # where the description came from, for messages


def is_data_file(spec: str | Path) -> bool:
    """Whether ``spec`` names a dataset yaml (an existing ``.yaml``/``.yml`` file)."""
    p = Path(str(spec)).expanduser()
    return p.suffix.lower() in DATA_FILE_SUFFIXES and p.is_file()


def read_data_file(path: str | Path, option_keys: tuple[str, ...] = ()) -> DataSource:
    """A dataset yaml -> :class:`DataSource`; ``ValueError`` naming the file and the field."""
    import yaml

    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as e:
        raise ValueError(f"{path}: cannot read the dataset file ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with {', '.join(KEYS)}")
    unknown = [k for k in data if k not in KEYS and k not in option_keys]
    if unknown:
        raise ValueError(f"{path}: {unknown[0]}: unknown key; known: {', '.join(KEYS + option_keys)}")
    base = path.parent

    def where(key: str) -> Path | None:
        value = data.get(key)
        if value is None:
            return None
        p = Path(str(value)).expanduser()
        p = p if p.is_absolute() else base / p
        try:
            exists = p.exists()
        except (OSError, ValueError) as e:  # a name longer than the file system allows, a NUL byte
            raise FileNotFoundError(f"{path}: {key}: not a usable path ({e.__class__.__name__}: "
                                    f"{str(e)[:80]})") from None
        if not exists:
            raise FileNotFoundError(f"{path}: {key}: {p} does not exist")
        return p

    fmt = data.get("format")
    if fmt is not None and fmt not in FILE_FORMATS:
        raise ValueError(f"{path}: format: {fmt!r} unknown; known: {', '.join(FILE_FORMATS)}")
    classes = data.get("classes")
    if classes is not None and not (isinstance(classes, list) and classes):
        raise ValueError(f"{path}: classes: expected a list of names, e.g. [cat, dog]")
    splits = data.get("splits") or {}
    if not isinstance(splits, dict) or any(k not in SPLIT_KEYS for k in splits):
        raise ValueError(f"{path}: splits: expected a mapping of {', '.join(SPLIT_KEYS)} to an index "
                         "range (\"0:80\"), a list file or a list of image names")
    splits = {k: _split_value(path, k, v) for k, v in splits.items()}
    src = DataSource(root=where("root") or base, images=where("images"), annotations=where("annotations"),
                     format=fmt, classes=[str(c) for c in classes] if classes else None, splits=splits,
                     options={k: data[k] for k in option_keys if k in data}, origin=str(path))
    if src.images is None and src.annotations is None and "root" not in data:
        raise ValueError(f"{path}: name the data: images and annotations (or a root folder to sniff)")
    return src


def _split_value(path: Path, key: str, value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # YAML 1.1 reads 1:30 as 90
        raise ValueError(f"{path}: splits.{key}: {value!r} is a number; quote a range: \"0:80\"")
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.lower().endswith((".txt", ".csv")):
        p = Path(text).expanduser()
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            raise FileNotFoundError(f"{path}: splits.{key}: list file {p} does not exist")
        return str(p)
    return text


def source_from_flags(root: str | Path | None, images: str | Path | None,
                      annotations: str | Path | None, format: str | None = None) -> DataSource:
    """The :class:`DataSource` of ``--images DIR --annotations DIR|FILE`` (``root``: ``--data``,
    where it is a folder; else the folder holding both)."""
    parts = [Path(p).expanduser() for p in (images, annotations) if p is not None]
    for p in parts:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
    if root is not None and Path(str(root)).is_dir():
        base = Path(str(root))
    else:
        folders = [p if p.is_dir() else p.parent for p in parts]
        base = Path(_common_parent(folders))
    return DataSource(base, Path(images) if images else None, Path(annotations) if annotations else None,
                      format)


def _common_parent(folders: list[Path]) -> str:
    import os

    resolved = [str(f.resolve()) for f in folders]
    common = os.path.commonpath(resolved) if resolved else "."
    return common if len(folders) > 1 or not folders else str(Path(common).parent)


def source_format(src: DataSource) -> str:
    """The format of a described dataset: as written, else told by the annotations' content."""
    if src.format is not None:
        return src.format
    from detseg.data.coco import looks_like_coco
    from detseg.data.folders import is_label_folder
    from detseg.data.joints import looks_like_joints
    from detseg.data.voc import is_xml_folder

    ann = src.annotations
    if ann is None:
        raise ValueError(f"{src.origin}: annotations: needed to tell the format (or write format:)")
    if ann.is_file():
        if looks_like_coco(ann):
            return "coco"
        if looks_like_joints(ann):
            return "lsp"
        raise ValueError(f"{src.origin}: annotations: {ann} is neither a COCO json nor a joints array "
                         "(3, 14, N) / (14, 3, N) / (N, 14, 3)")
    if is_xml_folder(ann):
        return "voc"
    if is_label_folder(ann):
        return "seg_folders"
    raise ValueError(f"{src.origin}: annotations: {ann} holds neither VOC XML files nor single-channel "
                     "label PNGs; write format: (voc, coco, lsp, seg_folders)")


def open_source(src: DataSource, split: Any, val_fraction: float = 0.2, seed: int = 0):
    """The native reader of a described dataset (like :func:`detseg.data.open_reader`)."""
    fmt = source_format(src)
    kw = dict(split=split, val_fraction=val_fraction, seed=seed)
    if fmt == "voc":
        from detseg.data.voc import VOCDetection

        return VOCDetection(src.root, annotations=src.annotations, images=src.images, classes=src.classes, **kw)
    if fmt == "coco":
        from detseg.data.coco import COCODataset

        if src.annotations is None or not src.annotations.is_file():
            raise ValueError(f"{src.origin}: annotations: a COCO json file is needed")
        ds = COCODataset(src.annotations, images=src.images, **kw)
        if src.classes is not None and list(src.classes) != list(ds.classes):
            raise ValueError(f"{src.origin}: classes {src.classes} differ from the json's categories {ds.classes}")
        return ds
    if fmt == "lsp":
        from detseg.data.lsp import LSPDataset

        return LSPDataset(src.root, joints=src.annotations, images=src.images, **kw)
    if fmt == "seg_folders":
        from detseg.data.folders import SegFolders

        if src.images is None or src.annotations is None:
            raise ValueError(f"{src.origin}: label-PNG folders need both images and annotations")
        return SegFolders(src.root, images=src.images, labels=src.annotations, classes=src.classes, **kw)
    raise ValueError(f"{src.origin}: format: {fmt!r} unknown; known: {', '.join(FILE_FORMATS)}")


# -- the error when nothing is found -----------------------------------------------------------

MAX_LISTED = 12  # folders listed in the error


def why_not(folder: Path) -> list[str]:
    """One line per format: why ``folder`` is not data of that format."""
    from detseg.data.coco import coco_files
    from detseg.data.joints import find_joints, why_not_joints
    from detseg.data.pennfudan import pennfudan_dirs
    from detseg.data.voc import voc_why_not

    reasons = []
    joints = find_joints(folder)
    named = None if joints else next((why for f in _joint_named_files(folder) if (why := why_not_joints(f))), None)
    reasons.append("lsp: " + (f"joints file {joints.name} but no images beside it" if joints else named or
                              "no joints array (3, 14, N) / (14, 3, N) / (N, 14, 3) in a .mat/.npy/.json/.csv"))
    if pennfudan_dirs(folder) is None:
        reasons.append("pennfudan: no PNGImages/ + PedMasks/")
    try:
        if not coco_files(folder)[1]:
            reasons.append('coco: no .json with "images"/"annotations" (here or in annotations/)')
    except ValueError as e:
        reasons.append(f"coco: {e}")
    reasons.append("voc: " + voc_why_not(folder))
    reasons.append("seg_folders: no image folder beside a folder of single-channel label PNGs "
                   "with the same names")
    return reasons


def _joint_named_files(folder: Path) -> list[Path]:
    """Files of ``folder`` whose name says joints (``joints.npy``): worth saying why they are not."""
    from detseg.data.joints import JOINT_SUFFIXES

    try:
        return sorted(p for p in folder.iterdir() if "joint" in p.name.lower()
                      and p.suffix.lower() in JOINT_SUFFIXES and p.is_file())[:2]
    except OSError:
        return []


def explain_nothing_found(path: Path, looked: list[Path]) -> str:
    """The lines after 'no known dataset format': what was looked at and the yaml to write."""
    lines = ["looked at:"]
    for folder in looked[:MAX_LISTED]:
        lines.append(f"  {folder}/ ({_contents(folder)})")
        lines += [f"    {r}" for r in why_not(folder)]
    if len(looked) > MAX_LISTED:
        lines.append(f"  ... and {len(looked) - MAX_LISTED} more folder(s)")
    images = next((d for d in looked if _has_images(d)), path / "images")
    lines += [
        f"describe the data in a yaml file (e.g. {path}/mydata.yaml) and pass it as --data "
        "mydata.yaml (or pass --images DIR --annotations DIR|FILE):",
        "  format: voc                # voc | coco | lsp | seg_folders",
        f"  images: {_relative(images, path):<18} # the image folder",
        "  annotations: ANNOTATIONS   # XML folder | COCO json | joints file | label-PNG folder",
        "  classes: [cat, dog]        # optional",
        '  splits: {train: "0:80", val: "80:100"}   # optional: ranges, list files or name lists',
    ]
    return "\n".join(lines)


def _has_images(folder: Path) -> bool:
    from detseg.io import IMAGE_EXTS

    try:
        return any(p.suffix.lower() in IMAGE_EXTS for p in folder.iterdir())
    except OSError:
        return False


def _relative(p: Path, base: Path) -> str:
    try:
        return str(p.relative_to(base)) or "."
    except ValueError:
        return str(p)


def _contents(folder: Path) -> str:
    """``"12 files (.jpg 10, .txt 2), 2 folders"``: enough to see what a folder holds."""
    from collections import Counter

    try:
        entries = list(folder.iterdir())
    except OSError as e:
        return f"unreadable: {e}"
    files = [e for e in entries if e.is_file()]
    kinds = Counter(e.suffix.lower() or "(no suffix)" for e in files).most_common(4)
    desc = f"{len(files)} file(s)" + (f" ({', '.join(f'{k} {n}' for k, n in kinds)})" if kinds else "")
    return f"{desc}, {len(entries) - len(files)} folder(s)"
