"""Datasets: readers for real formats (auto-detected from a path) and the built-in shapes world.

``build_dataset(spec, split, task)`` is the one entry point: ``spec`` is ``shapes[:options]`` or a
path. A path's format is sniffed, never required from the user (``format=`` overrides):

==============  ===========================================================  =================
format          what marks it (content, not folder names)                    reader
==============  ===========================================================  =================
``lsp``         a joints array (14, 3, N) / (N, 14, 3) / (3, 14, N) in a     :mod:`.lsp`
                ``.mat``/``.npy``/``.json``/``.csv`` beside images
``pennfudan``   ``PNGImages/`` + ``PedMasks/``                               :mod:`.pennfudan`
``coco``        a COCO json, or ``annotations/*.json`` / ``*.json``          :mod:`.coco`
``voc``         a folder of ``<annotation>`` XML files + images of the same  :mod:`.voc`
                names (any folder names, or side by side); ``SegmentationClass/``
``seg_folders`` ``train/`` + ``trainannot/``, ``images/`` + ``labels/``, or any  :mod:`.folders`
                image folder + a folder of single-channel PNGs of the same names
==============  ===========================================================  =================

When nothing matches, the error lists every folder looked at with the reason each format did not
match, and the dataset yaml to write. A dataset yaml (``--data mydata.yaml``: ``format``,
``images``, ``annotations``, ``classes``, ``splits``) or ``images=``/``annotations=``
(``--images``/``--annotations``) name the parts instead (:mod:`.source`); they load exactly like
the sniffed folder.

The path may also be a parent of the data folder (``bccd/`` holding ``BCCD/``, ``VOCdevkit/``
holding ``VOC2007/``): up to two levels down are searched, and more than one match is an error
naming them. The returned dataset serves ``task`` through :func:`detseg.data.adapt.adapt`.

Splits (:mod:`.split`): ``train``, ``val``, ``test``, ``all`` or an index range ``"A:B"`` of
``all`` in file order (LSPET ``"0:900"`` / ``"900:1000"``).

Data options after a path, ``PATH:key=value,key=value`` (like ``shapes:size=96``), so that they
travel wherever a ``--data`` string goes (``detseg train``, ``eval``, a checkpoint's
``args.yaml``): ``crop=person`` serves pose data as square crops centred on each person
(:class:`detseg.data.adapt.PersonCrop`), ``crop_scale=1.25`` (crop side / box side), and, applied
to training sets only, ``crop_jitter`` (relative scale jitter) and ``crop_shift`` (centre shift as
a share of the side). E.g. ``../shared/datasets/lspet:crop=person,crop_jitter=0.25,crop_shift=0.1``.
``strict_images=true``: a truncated image is skipped (as an undecodable one is) instead of read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from detseg.data.base import DetsegDataset, Transform

if TYPE_CHECKING:
    from detseg.data.adapt import PersonCrop

FORMATS = ("coco", "voc", "seg_folders", "lsp", "pennfudan")
FORMAT_HINT = ("expected one of: a COCO json (or a folder with annotations/*.json); PASCAL VOC "
               "(a folder of <annotation> XML files + images with the same names); image/label PNG "
               "folder pairs (train/ + trainannot/, images/ + labels/, or any image folder + a folder "
               "of single-channel PNGs with the same names); LSP/LSPET (a joints array in .mat/.npy/"
               ".json/.csv + images); Penn-Fudan (PNGImages/ + PedMasks/)")


def _detectors() -> dict[str, Callable[[Path], bool]]:
    """Format -> test of one folder, in priority order (the first match at a level wins)."""
    from detseg.data.coco import coco_files
    from detseg.data.folders import seg_folder_pairs
    from detseg.data.lsp import lsp_source
    from detseg.data.pennfudan import pennfudan_dirs
    from detseg.data.voc import voc_layout

    def is_coco(d: Path) -> bool:
        try:
            return bool(coco_files(d)[1])
        except ValueError:
            return True  # several unsplit json files: COCO, but the reader will ask which one

    return {
        "lsp": lambda d: lsp_source(d) is not None,
        "pennfudan": lambda d: pennfudan_dirs(d) is not None,
        "coco": is_coco,
        "voc": lambda d: voc_layout(d) is not None,
        "seg_folders": lambda d: bool(seg_folder_pairs(d)),
    }


def _match(folder: Path, detectors: dict[str, Callable[[Path], bool]]) -> str | None:
    for name, test in detectors.items():
        try:
            if test(folder):
                return name
        except OSError:
            return None
    return None


def locate(path: str | Path, format: str | None = None) -> tuple[str, Path]:
    """``(format, data root)`` of ``path`` (a file, the data folder, or up to two levels above it)."""
    path = Path(path).expanduser()
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        return _locate_file(path, format)
    from detseg.data.split import subdirs

    detectors = _detectors()
    if format is not None:
        detectors = {format: detectors[format]}
    level, looked = [path], []
    for _ in range(3):
        found = [(fmt, d) for d in level if (fmt := _match(d, detectors)) is not None]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            listing = "; ".join(f"{d} ({fmt})" for fmt, d in found)
            raise ValueError(f"{path}: several datasets inside, pass one of them: {listing}")
        looked += level
        level = [c for d in level for c in subdirs(d).values()]
    from detseg.data.source import explain_nothing_found

    what = f"no {format} data" if format else "no known dataset format"
    hint = ""
    if path.parent != path and (parent_fmt := _match(path.parent, detectors)):
        hint = f" (its parent {path.parent} is {parent_fmt} data: pass that)"
    raise ValueError(f"{path}: {what} found here or up to two folders below{hint}; {FORMAT_HINT}\n"
                     + explain_nothing_found(path, looked))


def _locate_file(path: Path, format: str | None) -> tuple[str, Path]:
    from detseg.data.coco import looks_like_coco
    from detseg.data.joints import JOINT_SUFFIXES, looks_like_joints, why_not_joints

    suffix = path.suffix.lower()
    if format in (None, "coco") and suffix == ".json" and (format == "coco" or looks_like_coco(path)):
        return "coco", path
    if format in (None, "lsp") and suffix in JOINT_SUFFIXES and (format == "lsp" or looks_like_joints(path)):
        return "lsp", path
    if format is not None and format != "coco":
        return locate(path.parent, format)
    as_joints = why_not_joints(path) if suffix != ".json" or not looks_like_coco(path) else None
    why = f" (read as LSP joints: {as_joints})" if as_joints else ""
    raise ValueError(f"{path}: not a dataset file I know{why}; {FORMAT_HINT}")


def sniff_format(path: str | Path) -> str:
    """The format name of the data at ``path`` (one of :data:`FORMATS`); ``ValueError`` otherwise."""
    return locate(path)[0]


def open_reader(format: str, root: Path, split: str = "train", val_fraction: float = 0.2,
                seed: int = 0, task: str | None = None) -> DetsegDataset:
    """The native reader of ``format`` at ``root`` (no task adaptation, no transforms)."""
    kw = dict(split=split, val_fraction=val_fraction, seed=seed)
    if format == "coco":
        from detseg.data.coco import COCODataset

        return COCODataset(root, **kw)
    if format == "voc":
        from detseg.data.voc import VOCDetection, VOCSegmentation, voc_layout

        layout = voc_layout(Path(root))
        semantic = layout is not None and layout.segmentation is not None and layout.images is not None
        if semantic and (task == "semantic" or layout.annotations is None):  # type: ignore[union-attr]
            return VOCSegmentation(root, **kw)
        return VOCDetection(root, **kw)
    if format == "seg_folders":
        from detseg.data.folders import SegFolders

        return SegFolders(root, **kw)
    if format == "lsp":
        from detseg.data.lsp import LSPDataset

        return LSPDataset(root, **kw)
    if format == "pennfudan":
        from detseg.data.pennfudan import PennFudan

        return PennFudan(root, **kw)
    raise ValueError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")


def is_shapes_spec(spec: str | Path) -> bool:
    s = str(spec)
    return (s == "shapes" or s.startswith("shapes:")) and not Path(s).exists()


DATA_OPTIONS = ("crop", "crop_scale", "crop_jitter", "crop_shift", "strict_images")
TRUE, FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def split_data_options(spec: str | Path) -> tuple[str | Path, dict[str, Any]]:
    """``"PATH:crop=person,crop_scale=1.4"`` -> ``("PATH", {"crop": "person", "crop_scale": 1.4})``.

    A spec that exists as a path, or whose tail after the last ``:`` is not ``key=value`` pairs,
    has no options. An unknown key is a ``ValueError`` naming it.
    """
    text = str(spec)
    head, sep, tail = text.rpartition(":")
    if not sep or "=" not in tail or Path(text).exists():
        return spec, {}
    opts: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in tail.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in DATA_OPTIONS:
            raise ValueError(f"{text}: data option {item!r}: expected key=value with key one of "
                             f"{', '.join(DATA_OPTIONS)}")
        try:
            opts[key] = value.strip() if key == "crop" else _flag(value) if key == "strict_images" else float(value)
        except ValueError:
            raise ValueError(f"{text}: data option {key}: {value!r} is not a number") from None
    return head, opts


def _flag(value: str) -> bool:
    text = value.strip().lower()
    if text not in TRUE + FALSE:
        raise ValueError(value)
    return text in TRUE


def open_data(spec: str | Path | None, split: Any = "train", val_fraction: float = 0.2, seed: int = 0,
              task: str | None = None, format: str | None = None, images: str | Path | None = None,
              annotations: str | Path | None = None) -> tuple[DetsegDataset, dict[str, Any], str]:
    """``(native reader, data options, format)`` of a path, a dataset yaml, or explicit folders.

    ``images``/``annotations`` (``--images``/``--annotations``) name the parts, ``spec`` then being
    an optional root folder; a ``.yaml`` spec is a dataset file (:mod:`.source`), whose splits map
    the split names to ranges or lists; anything else is located by content (:func:`locate`).
    """
    from detseg.data.source import (is_data_file, open_source, read_data_file, source_format,
                                    source_from_flags)

    spec, opts = split_data_options(spec) if spec is not None else (None, {})
    src = None
    if images is not None or annotations is not None:
        root = None if spec is None or is_shapes_spec(spec) else spec
        src = source_from_flags(root, images, annotations, format)
    elif spec is not None and is_data_file(spec):
        src = read_data_file(spec, DATA_OPTIONS)
        opts = {**src.options, **opts}
        src.format = format or src.format
    if src is not None:
        fmt = source_format(src)
        if isinstance(split, str) and split in src.splits:
            split = src.splits[split]
        return open_source(src, split, val_fraction, seed), opts, fmt
    if spec is None:
        raise ValueError("no data: pass a path, a dataset yaml, or --images and --annotations")
    fmt, root = locate(spec, format)
    return open_reader(fmt, root, split, val_fraction, seed, task), opts, fmt


def _crop_from(opts: dict[str, Any], crop: PersonCrop | str | None) -> PersonCrop | str | None:
    """The crop asked for by the keyword (wins) or the spec options."""
    from detseg.data.adapt import PersonCrop

    if crop is not None or "crop" not in opts:
        if crop is None and set(opts) & {"crop_scale", "crop_jitter", "crop_shift"}:
            raise ValueError("crop_scale/crop_jitter/crop_shift need crop=person in the data options")
        return crop
    if opts["crop"] in ("none", ""):
        return None
    if opts["crop"] != "person":
        raise ValueError(f"data option crop: unknown crop {opts['crop']!r}; expected person or none")
    return PersonCrop(opts.get("crop_scale", 1.25), opts.get("crop_jitter", 0.0), opts.get("crop_shift", 0.0))


def build_dataset(spec: str | Path, split: str = "train", task: str | None = None,
                  transforms: Transform | None = None, val_fraction: float = 0.2, seed: int = 0,
                  format: str | None = None, crop: PersonCrop | str | None = None,
                  train: bool = False, images: str | Path | None = None,
                  annotations: str | Path | None = None) -> DetsegDataset:
    """The dataset ``spec`` names, one split of it, serving ``task``.

    Args:
        spec: ``"shapes"`` / ``"shapes:size=128,n=2000"`` (the built-in world) or a path,
            optionally with data options ``PATH:crop=person,...`` (see the module docstring).
        split: ``train``, ``val``, ``test`` (where the data has one), ``all``, or an index range
            ``"A:B"`` of ``all`` in file order, or a ``.txt``/``.csv`` list of image names (not for
            shapes; see :mod:`detseg.data.split`).
        task: serve this task (e.g. ``cls_loc`` crops from detection data); None = native.
        transforms: a callable ``(image, target) -> (image, target)`` applied after loading.
        val_fraction, seed: the hash split for data without a validation split of its own.
        format: override the sniffed format.
        crop: ``"person"`` or a :class:`~detseg.data.adapt.PersonCrop`: serve ``pose`` data as
            square crops centred on each person (overrides the spec's ``crop`` options).
        train: this is a training set: a person crop's jitter applies (else crops are fixed).
        images, annotations: the image folder and the annotations (XML folder, COCO json, joints
            file, label-PNG folder) named explicitly; ``spec`` is then an optional root folder.
    """
    from detseg.data.split import is_list_split, split_range

    explicit = images is not None or annotations is not None
    if is_shapes_spec(spec) and not explicit:
        rng = split_range(split)
        from detseg.data.shapes import ShapesDataset

        if rng is not None or is_list_split(split):
            raise ValueError(f"{spec}: split {split!r}: the shapes world has no index ranges or lists (each "
                             "split is its own seed stream); size splits with n= / n_val=")
        if crop is not None:
            raise ValueError(f"{spec}: crop: shapes persons are already centred; no person crops")
        return ShapesDataset.from_spec(str(spec), split=split, task=task, transforms=transforms)
    from detseg.data.adapt import adapt, person_crop

    reader, opts, _ = open_data(spec, split, val_fraction, seed, task, format, images, annotations)
    window = person_crop(_crop_from(opts, crop), train=train)
    ds = adapt(reader, task, crop=window)
    ds.strict_images = bool(opts.get("strict_images", False))
    ds.transforms = transforms
    return ds


__all__ = ["DetsegDataset", "FORMATS", "build_dataset", "locate", "open_data", "open_reader", "sniff_format"]
