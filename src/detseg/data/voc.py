"""PASCAL VOC reader: ``Annotations/*.xml`` + images, and ``SegmentationClass`` palette PNGs.

Format: Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010, and the
VOC devkit documentation. The folders are found by content, not by name (:func:`voc_layout`): a
folder whose first XML files have an ``<annotation>`` root, and a folder of images with the same
stems (``Annotations`` + ``JPEGImages`` + ``ImageSets/Main``, raccoon's ``annotations`` +
``images``, ``xml/`` + ``images/``, ``boxes/`` + ``jpgs/``, XML beside the images as labelImg
writes them, ``VOCdevkit/VOC2007`` nesting); a dataset yaml may name both.

XML is parsed with defusedxml: a file declaring entities (entity expansion, "billion laughs") or
referencing external resources is refused (a Problem ``xml``, sample skipped), never expanded.

Coordinates: VOC pixel indices are 1-based and inclusive; like Detectron2 (``pascal_voc.py``) the
box becomes ``[xmin - 1, ymin - 1, xmax, ymax]`` — 0-based with x2/y2 exclusive. A 0 written by a
0-based tool is taken as the first pixel (clipped silently). Degeneracy is judged on the raw
values: ``xmax <= xmin`` or ``ymax <= ymin`` (x2 < x1 included) is a zero-area box -> Problem, dropped;
a coordinate that is missing, not a number, NaN or infinite -> Problem, object skipped. Boxes past the
image -> clipped, Problem. ``difficult`` objects are kept and flagged in ``target["difficult"]``
(``Tensor[N]`` bool) so evaluation may ignore them. Missing or corrupt images -> Problem, dropped.
``<size>`` missing or other than the image's -> Problem; the image's own size is used (a
``0 x 0`` size, as some tools write, is taken as unknown, silently). Boxes are in the stored
pixel grid: EXIF orientation is ignored (see :mod:`detseg.data.base`).

Splits: ``ImageSets/Main/{train,val,trainval,test}.txt`` (``ImageSets/Segmentation`` for semantic
segmentation) where present, else the hash split of :mod:`detseg.data.split`.
Classes: ``classes.txt``/``labels.txt`` in the root if present (other names are unknown labels ->
Problem, dropped); else the 20 VOC classes in VOC order when every name is one of them; else the
sorted names found in all XML files (all splits, so train and val agree).
"""

from __future__ import annotations

import math
import os
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as SafeET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from detseg.data.base import Transform, image_size, read_image
from detseg.data.folders import LabelPngReader
from detseg.data.split import (SplitReader, child, find_image, is_file, header_error, read_classes_file,
                               subdirs)
from detseg.structures import IGNORE_INDEX, Problem

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
ANNOTATION_DIRS = ("Annotations", "annotations", "Annotation", "xml", "labels", "ann", "boxes")
IMAGE_DIRS = ("JPEGImages", "images", "Images", "img", "imgs", "jpgs", "PNGImages")
SNIFF_FILES = 3  # XML files read (first 2 KB each) to recognise a VOC folder
BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class VocLayout:
    """Where the parts of a VOC-style folder are (any may be None except the root)."""

    root: Path
    annotations: Path | None = None
    images: Path | None = None
    segmentation: Path | None = None
    image_sets: Path | None = None


def voc_layout(root: Path, annotations: Path | None = None, images: Path | None = None) -> VocLayout | None:
    """The VOC parts under ``root``, or None when it is no VOC folder.

    Found by content, not by folder names: the annotation folder is the first folder (the usual
    names first, then every sub-folder, then ``root`` itself) whose first XML files have an
    ``<annotation>`` root element; the image folder is the first one holding images whose stems
    match those XML files (``JPEGImages``/``images`` first, then any sub-folder, then the XML
    folder: labelImg writes the XML beside its images). ``annotations``/``images`` name them
    explicitly (a dataset yaml, ``--images``/``--annotations``).
    """
    root = Path(root)
    if not root.is_dir():
        return None
    ann = annotations if annotations is not None else find_xml_folder(root)
    if images is None and ann is not None:
        images = find_image_folder(root, ann)
    seg = child(root, "SegmentationClass")
    if seg is not None and not any(seg.glob("*.png")):
        seg = None
    if images is None and seg is not None:
        images = child(root, *IMAGE_DIRS)
    if ann is None and (seg is None or images is None):
        return None
    return VocLayout(root, ann, images, seg, child(root, "ImageSets"))


def _candidate_dirs(root: Path, first: tuple[str, ...]) -> list[Path]:
    """``root``'s sub-folders, those named like ``first`` (any case) before the others."""
    subs = subdirs(root)
    named = [subs[n.lower()] for n in first if n.lower() in subs]
    return list(dict.fromkeys(named + list(subs.values())))


def sample_xml(folder: Path, k: int = SNIFF_FILES) -> list[Path]:
    """Up to ``k`` ``*.xml`` files of ``folder`` in listing order (stops early: no full listing
    of a folder of 100k files once ``k`` are found)."""
    found: list[Path] = []
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.name.lower().endswith(".xml") and e.is_file():
                    found.append(Path(e.path))
                    if len(found) >= k:
                        break
    except OSError:
        return []
    return sorted(found)


def is_xml_folder(folder: Path) -> bool:
    """Whether ``folder``'s first XML files all have an ``<annotation>`` root element."""
    xmls = sample_xml(folder)
    return bool(xmls) and all(_looks_like_voc_xml(p) for p in xmls)


def find_xml_folder(root: Path) -> Path | None:
    """The folder of VOC XML files in or at ``root`` (sub-folders first), else None."""
    for d in [*_candidate_dirs(root, ANNOTATION_DIRS), root]:
        if is_xml_folder(d):
            return d
    return None


def find_image_folder(root: Path, ann: Path) -> Path | None:
    """The folder holding images named like the first XML files of ``ann`` (else the first
    conventionally named image folder, so the reader can say which images are missing)."""
    stems = [p.stem for p in sample_xml(ann)]
    for d in dict.fromkeys([*_candidate_dirs(root, IMAGE_DIRS), ann, root]):
        if any(find_image(d, s) is not None for s in stems):
            return d
    return child(root, *IMAGE_DIRS)


def voc_why_not(root: Path) -> str:
    """Why ``root`` is no VOC folder (for the 'nothing found' error)."""
    ann = find_xml_folder(root)
    if ann is None:
        other = next((d for d in [root, *subdirs(root).values()] if sample_xml(d, 1)), None)
        where = f" (the XML files in {other} have another root element)" if other else ""
        return f"no folder of .xml files with an <annotation> root{where}"
    return f"XML files in {ann}, but no folder of images named like them"


def _looks_like_voc_xml(path: Path) -> bool:
    """Only the first bytes are read: the root element follows the XML declaration and comments."""
    try:
        with open(path, "rb") as f:
            head = f.read(2048)
    except OSError:
        return False
    return b"<annotation" in head


@dataclass
class VocObject:
    name: str
    raw: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as written (1-based)
    difficult: bool
    index: int  # position among the file's <object> elements (0-based), for messages


@dataclass
class VocRecord:
    xml: Path
    filename: str | None
    size: tuple[int, int] | None  # (H, W) as written
    objects: list[VocObject] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ok: bool = True


def parse_voc_xml(path: Path) -> VocRecord:
    """One XML file -> record; every missing or unreadable field becomes a Problem."""
    try:
        # defusedxml: an annotation file from a stranger may declare entities ("billion laughs",
        # external files or URLs); they are refused, never expanded or fetched.
        root = SafeET.parse(path, forbid_dtd=False, forbid_entities=True, forbid_external=True).getroot()
    except defusedxml.DefusedXmlException as e:
        rec = VocRecord(path, None, None, ok=False)
        rec.problems.append(Problem(str(path), "xml", f"refused: {_defused_reason(e)} (not expanded): skipped"))
        return rec
    except (ParseError, OSError, UnicodeDecodeError) as e:
        rec = VocRecord(path, None, None, ok=False)
        rec.problems.append(Problem(str(path), "xml", f"cannot parse ({e}): skipped"))
        return rec
    rec = VocRecord(path, _text(root, "filename"), None)
    w, h = _text(root, "size/width"), _text(root, "size/height")
    try:
        if w is not None and h is not None:
            rec.size = (int(float(h)), int(float(w)))
    except (ValueError, OverflowError):  # OverflowError: "inf"
        rec.problems.append(Problem(str(path), "size", f"width={w!r} height={h!r} are not numbers"))
    for j, obj in enumerate(root.iter("object")):
        o = _parse_object(path, obj, j, rec.problems)
        if o is not None:
            rec.objects.append(o)
    return rec


def _parse_object(path: Path, obj: Element, j: int, problems: list[Problem]) -> VocObject | None:
    name = _text(obj, "name")
    if not name:
        problems.append(Problem(str(path), f"object[{j}].name", "missing: object skipped"))
        return None
    raw = []
    for k in BOX_FIELDS:
        v = _text(obj, f"bndbox/{k}")
        try:
            number = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):  # "nan" and "inf" parse as floats, but no box has them
            what = "missing" if v is None else f"{v!r:.30} is not a finite number"
            problems.append(Problem(str(path), f"object[{j}].bndbox.{k}", f"{what}: object skipped"))
            return None
        raw.append(number)
    difficult = _text(obj, "difficult") or "0"
    try:
        is_difficult = bool(int(float(difficult)))
    except (ValueError, OverflowError):
        problems.append(Problem(str(path), f"object[{j}].difficult", f"{difficult!r} is not 0/1: taken as 0"))
        is_difficult = False
    return VocObject(name, tuple(raw), is_difficult, j)  # type: ignore[arg-type]


def _text(node: Element, path: str) -> str | None:
    found = node.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def _defused_reason(e: Exception) -> str:
    """What defusedxml refused, in words (its own messages name internal parser arguments)."""
    import defusedxml.common as dc

    if isinstance(e, dc.EntitiesForbidden):
        return f"the file declares an entity ({e.name!r}; entity expansion is not allowed)"
    if isinstance(e, dc.ExternalReferenceForbidden):
        return f"the file references an external resource ({(e.sysid or e.pubid)!r})"
    if isinstance(e, dc.DTDForbidden):
        return "the file has a DTD"
    return f"unsafe XML ({type(e).__name__})"


def read_image_sets(folder: Path | None) -> dict[str, list[str]]:
    """``{split: ids}`` from ``train.txt``/``val.txt``/``trainval.txt``/``test.txt`` in ``folder``."""
    out: dict[str, list[str]] = {}
    if folder is None or not folder.is_dir():
        return out
    for split in ("train", "val", "trainval", "test"):
        p = folder / f"{split}.txt"
        if p.is_file():
            out[split] = [ln.split()[0] for ln in p.read_text().splitlines() if ln.strip()]
    return out


def box_from_raw(raw: tuple[float, float, float, float], h: int, w: int) -> tuple[list[float], bool]:
    """VOC 1-based inclusive box -> 0-based exclusive xyxy clipped to the image; and whether the
    raw box reached outside the image (a 0 from 0-based tools does not count)."""
    xmin, ymin, xmax, ymax = raw
    outside = xmin < 0 or ymin < 0 or xmax > w or ymax > h
    box = [min(max(xmin - 1, 0.0), w), min(max(ymin - 1, 0.0), h), min(max(xmax, 0.0), w), min(max(ymax, 0.0), h)]
    return box, outside


class VOCDetection(SplitReader):
    """PASCAL VOC detection: ``boxes``, ``labels``, ``difficult`` per image."""

    task = "detection"
    target_keys = ("boxes", "labels")

    def __init__(self, root: str | Path, split: str = "train", val_fraction: float = 0.2,
                 seed: int = 0, transforms: Transform | None = None, annotations: Path | None = None,
                 images: Path | None = None, classes: list[str] | None = None):
        super().__init__(root, split, val_fraction, seed, transforms)
        layout = voc_layout(Path(root), annotations, images)
        if layout is None or layout.annotations is None:
            raise ValueError(f"{root}: no PASCAL VOC annotations (a folder of *.xml files) found")
        self.layout = layout
        self.listed_classes = classes
        xmls = sorted(layout.annotations.glob("*.xml"))
        records = {p.stem: parse_voc_xml(p) for p in xmls}
        keys = list(records)
        self.classes = self._classes(records)
        self.seg_classes = ["background", *self.classes]
        own = read_image_sets(layout.image_sets / "Main" if layout.image_sets else None)
        self._report_missing_ids(own, records)
        self.boxes: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.difficult: list[np.ndarray] = []
        self.image_ids: list[int] = []
        index = {k: i for i, k in enumerate(keys)}
        chosen = self.select(keys, own)
        self.n_raw_objects = sum(len(records[k].objects) for k in chosen)
        self.index_samples(chosen, lambda k: self._add(records[k], index[k]))

    def _classes(self, records: dict[str, VocRecord]) -> list[str]:
        listed, source = self.listed_classes, "the dataset file"
        if listed is None:
            listed, source = read_classes_file(self.layout.root), "classes file"
        if listed is not None:
            self.classes_source = source
            return listed
        names = {o.name for r in records.values() for o in r.objects}
        if names and names <= set(VOC_CLASSES):
            self.classes_source = "the 20 PASCAL VOC classes"
            return list(VOC_CLASSES)
        self.classes_source = "names found in the XML files"
        return sorted(names)

    def _report_missing_ids(self, own: dict[str, list[str]], records: dict[str, VocRecord]) -> None:
        for split, ids in own.items():
            missing = [i for i in ids if i not in records]
            if missing:
                self.problem(self.layout.image_sets / "Main" / f"{split}.txt", "ids",  # type: ignore[operator]
                             f"{len(missing)} listed id(s) have no XML (first: {missing[0]}): skipped")

    def _find_image(self, rec: VocRecord) -> Path | None:
        folder = self.layout.images or rec.xml.parent
        if rec.filename:
            p = folder / rec.filename
            if is_file(p):
                return p
        p = find_image(folder, rec.xml.stem)
        if p is not None and rec.filename:
            self.problem(rec.xml, "filename", f"{rec.filename!r} not found in {folder}: using {p.name}")
        return p

    def _add(self, rec: VocRecord, image_id: int) -> None:
        self.problems.extend(rec.problems)
        if not rec.ok:
            return
        path = self._find_image(rec)
        if path is None:
            self.problem(rec.xml, "filename", f"image {rec.filename or rec.xml.stem} not found: sample skipped")
            return
        try:
            h, w = image_size(path)
        except ValueError as e:
            self.problem(path, "image", f"{header_error(e)}: sample skipped")
            return
        if rec.size is None:
            self.problem(rec.xml, "size", "missing: using the image's")
        elif rec.size != (h, w) and rec.size != (0, 0):
            self.problem(rec.xml, "size", f"says {rec.size[1]}x{rec.size[0]} but the image is {w}x{h}: "
                         "using the image's")
        boxes, labels, difficult = [], [], []
        for o in rec.objects:
            box = self._convert(rec.xml, o, h, w)
            if box is not None:
                boxes.append(box)
                labels.append(self.classes.index(o.name) + 1)
                difficult.append(o.difficult)
        self.files.append(str(path))
        self.sizes.append((h, w))
        self.image_ids.append(image_id)
        self.boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
        self.labels.append(np.asarray(labels, np.int64))
        self.difficult.append(np.asarray(difficult, bool))

    def _convert(self, xml: Path, o: VocObject, h: int, w: int) -> list[float] | None:
        f = f"object[{o.index}]"
        if o.name not in self.classes:
            self.problem(xml, f"{f}.name", f"unknown label {o.name!r} (classes: {', '.join(self.classes)}): dropped")
            return None
        xmin, ymin, xmax, ymax = o.raw
        if xmax <= xmin or ymax <= ymin:
            self.problem(xml, f"{f}.bndbox", f"{o.name} box xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} "
                         f"ymax={ymax:g} has zero area: dropped")
            return None
        box, outside = box_from_raw(o.raw, h, w)
        if box[2] <= box[0] or box[3] <= box[1]:
            self.problem(xml, f"{f}.bndbox", f"{o.name} box {o.raw} lies outside the {w}x{h} image: dropped")
            return None
        if outside:
            self.problem(xml, f"{f}.bndbox", f"{o.name} box {o.raw} reaches outside the {w}x{h} image: clipped")
        return box

    def annotation(self, index: int) -> dict[str, Any]:
        return {"boxes": self.boxes[index], "labels": self.labels[index]}

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image = read_image(self.files[index])
        h, w = image.shape[-2:]
        target = {
            "boxes": torch.from_numpy(self.boxes[index].copy()),
            "labels": torch.from_numpy(self.labels[index].copy()),
            "difficult": torch.from_numpy(self.difficult[index].copy()),
            "image_id": self.image_ids[index],
            "orig_size": torch.tensor([h, w], dtype=torch.int64),
        }
        return image, target


class VOCSegmentation(LabelPngReader):
    """PASCAL VOC semantic segmentation: ``SegmentationClass/*.png`` palette indices -> ``sem_seg``.

    Index 0 is background, 1..20 the VOC classes, 255 the object border (ignored). RGB-coloured
    label PNGs are mapped back through the VOC colour map (unknown colours -> 255).
    """

    def __init__(self, root: str | Path, split: str = "train", val_fraction: float = 0.2,
                 seed: int = 0, transforms: Transform | None = None):
        super().__init__(root, split, val_fraction, seed, transforms)
        layout = voc_layout(Path(root))
        if layout is None or layout.segmentation is None or layout.images is None:
            raise ValueError(f"{root}: no VOC SegmentationClass/*.png with JPEGImages found")
        self.layout = layout
        listed = read_classes_file(layout.root)
        if listed and listed[0].lower() in ("background", "__background__", "_background_"):
            listed = listed[1:]
        self.classes = list(listed or VOC_CLASSES)
        self.seg_classes = ["background", *self.classes]
        self.value_map = np.full(256, IGNORE_INDEX, np.uint8)  # label value -> class index
        self.value_map[:len(self.seg_classes)] = np.arange(len(self.seg_classes), dtype=np.uint8)
        labels = {p.stem: p for p in sorted(layout.segmentation.glob("*.png"))}
        own = read_image_sets(layout.image_sets / "Segmentation" if layout.image_sets else None)
        keys = list(labels)
        index = {k: i for i, k in enumerate(keys)}
        self.index_samples(self.select(keys, own), lambda k: self._add(k, labels[k], index[k]))

    def _add(self, key: str, label: Path, image_id: int) -> None:
        image = find_image(self.layout.images, key)  # type: ignore[arg-type]
        if image is None:
            self.problem(label, "image", f"no image {key}.* in {self.layout.images}: sample skipped")
            return
        self.add_pair(image, label, image_id)

    def label_size(self, label: Path) -> tuple[int, int] | None:
        """``(H, W)`` of a label PNG of any mode: RGB labels are decoded by colour."""
        try:
            return image_size(label)
        except ValueError as e:
            self.problem(label, "image", f"{header_error(e)}: sample skipped")
            return None

    def decode_label(self, im: Image.Image) -> np.ndarray:
        """``uint8 [H, W]`` class indices (255 = ignore): palette/grey values as they are, RGB
        colours through the VOC colour map."""
        if im.mode in ("P", "L"):
            return super().decode_label(im)
        return _colours_to_index(np.asarray(im.convert("RGB")))


def voc_colormap(n: int = 256) -> np.ndarray:
    """The VOC devkit's label colour map (``labelcolormap.m``), ``uint8 [n, 3]``."""
    cmap = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def _colours_to_index(rgb: np.ndarray) -> np.ndarray:
    cmap = voc_colormap().astype(np.int64)
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    table = {int((r << 16) | (g << 8) | b): i for i, (r, g, b) in enumerate(cmap[:21])}
    table[(224 << 16) | (224 << 8) | 192] = IGNORE_INDEX  # the VOC border colour
    out = np.full(code.shape, IGNORE_INDEX, np.uint8)
    for c, i in table.items():
        out[code == c] = i
    return out
