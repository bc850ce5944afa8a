"""Image/label-PNG folder pairs for semantic segmentation (the CamVid/SegNet layout and kin).

Layouts: ``train/`` + ``trainannot/``, ``val/`` + ``valannot/``, ``test/`` + ``testannot/`` (SegNet's
CamVid, Badrinarayanan et al., "SegNet", TPAMI 2017; CamVid: Brostow et al., PRL 2009); any
``X/`` + ``Xannot|X_labels|X_masks/`` pair; and ``images/`` + ``labels|masks|annotations/``, with
or without ``train``/``val``/``test`` sub-folders inside both; and, by content whatever the names,
any folder of images beside a folder of single-channel PNGs with the same stems (``rgb/`` + ``gt/``).
A label is a single-channel PNG
(``L`` or ``P`` mode) of class indices with the image's stem (optionally ``_mask``/``_label``/
``_L``/``_gt`` appended) and the image's size (else Problem, sample skipped).

Splits: the split folders where present (a ``train`` without ``val`` gets a hashed ``val``);
a single unsplit pair gets the hash split of :mod:`detseg.data.split`.

Classes: ``classes.txt``/``labels.txt`` in the root (line i names value i). SegNet's CamVid is
recognised by its ``*annot`` folders and CamVid sequence names (0001TP, 0006R0, 0016E5, Seq05VD):
values 0..10 are its 11 classes and 11 (void) is mapped to 255 = ignore. Otherwise the label
values are scanned once (all splits) and named ``class_0..class_K``. 255 is always ignore.

:class:`LabelPngReader` (one label PNG per image: size checks, decoding, ``sem_seg`` targets) is
the base of :class:`SegFolders` and of PASCAL VOC's ``SegmentationClass`` reader.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from detseg.data.base import Transform, image_size, read_image
from detseg.data.split import (SPLIT_ALIASES, SplitReader, child, header_error, list_images,
                               read_classes_file, subdirs)
from detseg.structures import IGNORE_INDEX

CAMVID_CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence",
                  "Car", "Pedestrian", "Bicyclist")
CAMVID_VOID = 11
CAMVID_SEQUENCES = re.compile(r"^(0001TP|0006R0|0016E5|Seq05VD)_")
LABEL_SUFFIXES = ("annot", "_annot", "annotations", "_labels", "labels", "_label", "_masks",
                  "_mask", "_gt", "_seg")
LABEL_DIRS = ("labels", "masks", "annotations", "annot", "gt", "segmentations", "labels_png")
STEM_SUFFIXES = ("", "_mask", "_label", "_labels", "_L", "_gt", "_annot", "_seg")
SPLIT_NAMES = ("train", "val", "test", *SPLIT_ALIASES)
MAX_SNIFF_DIRS = 32  # sub-folders tried as image/label pairs by content


@dataclass
class FolderPair:
    split: str | None  # train/val/test, or None for an unsplit pair
    images: Path
    labels: Path


def seg_folder_pairs(root: Path) -> list[FolderPair]:
    """The image/label folder pairs under ``root`` (empty when it is no such layout)."""
    root = Path(root)
    if not root.is_dir():
        return []
    pairs = [p for p in _suffix_pairs(root) or _images_labels_pairs(root) if _has_matching_label(p)]
    return pairs or _stem_pairs(root)


def _stem_pairs(root: Path) -> list[FolderPair]:
    """Any two sub-folders, one of images and one of single-channel PNGs named like them
    (``rgb/`` + ``gt/``): found by content when no folder name says which is which."""
    dirs = list(subdirs(root).values())[:MAX_SNIFF_DIRS]
    label_dirs = [d for d in dirs if is_label_folder(d)]
    for labels in label_dirs:
        for images in dirs:
            pair = FolderPair(None, images, labels)
            if images != labels and not is_label_folder(images) and _has_matching_label(pair):
                return [pair]
    return []


def is_label_folder(folder: Path) -> bool:
    """Whether the first PNG in ``folder`` is single-channel (``L``/``P``: class indices)."""
    try:
        with os.scandir(folder) as it:
            first = next((Path(e.path) for e in it if e.name.lower().endswith(".png") and e.is_file()), None)
        if first is None:
            return False
        with Image.open(first) as im:
            return im.mode in ("L", "P")
    except (OSError, ValueError):
        return False


def _split_of(name: str) -> str | None:
    name = name.lower()
    return SPLIT_ALIASES.get(name, name) if name in SPLIT_NAMES else None


def _suffix_pairs(root: Path) -> list[FolderPair]:
    dirs = subdirs(root)
    pairs = []
    for low, d in dirs.items():
        for suffix in LABEL_SUFFIXES:
            if low + suffix in dirs:
                pairs.append(FolderPair(_split_of(low), d, dirs[low + suffix]))
                break
    return pairs


def _images_labels_pairs(root: Path) -> list[FolderPair]:
    images = child(root, "images", "imgs", "img")
    labels = child(root, *LABEL_DIRS)
    if images is None or labels is None:
        return []
    subs = [d for d in subdirs(images).values() if _split_of(d.name)]
    if subs:
        return [FolderPair(_split_of(d.name), d, labels / d.name) for d in subs if (labels / d.name).is_dir()]
    return [FolderPair(None, images, labels)]


def _has_matching_label(pair: FolderPair) -> bool:
    images = list_images(pair.images)[:5]
    return bool(images) and any(match_label(pair.labels, p.stem) is not None for p in images)


def match_label(folder: Path, stem: str) -> Path | None:
    """``folder/<stem><suffix>.png`` for the first known suffix that exists."""
    for suffix in STEM_SUFFIXES:
        p = folder / f"{stem}{suffix}.png"
        if p.is_file():
            return p
    return None


def _label_header(path: Path) -> tuple[int, int, str]:
    """``(H, W, mode)`` of a label PNG from its header; ``ValueError`` like ``image_size``."""
    h, w = image_size(path)
    with Image.open(path) as im:
        return h, w, im.mode


class LabelPngReader(SplitReader):
    """Base of the semantic segmentation readers: one label PNG per image -> ``sem_seg``.

    Subclasses set ``value_map`` (``uint8 [256]``: label value -> class index, 255 = ignore) and
    call :meth:`add_pair` for each sample. They override :meth:`label_size` where a label PNG need
    not be single-channel, and :meth:`decode_label` where its pixels are not the label values.
    ``detseg data check`` counts pixels through ``value_map``, :meth:`read_label`, ``label_files``.
    """

    task = "semantic"
    target_keys = ("sem_seg",)
    value_map: np.ndarray

    def __init__(self, root: str | Path, split: str = "train", val_fraction: float = 0.2,
                 seed: int = 0, transforms: Transform | None = None):
        super().__init__(root, split, val_fraction, seed, transforms)
        self.label_files: list[str] = []
        self.image_ids: list[int] = []

    def add_pair(self, image: Path, label: Path, image_id: int) -> None:
        """Keep the sample when both headers read and the sizes agree; else a Problem says why."""
        try:
            hw = image_size(image)
        except ValueError as e:
            self.problem(image, "image", f"{header_error(e)}: sample skipped")
            return
        lhw = self.label_size(label)
        if lhw is None:
            return
        if lhw != hw:
            self.problem(label, "size", f"label is {lhw[1]}x{lhw[0]} but the image is {hw[1]}x{hw[0]}: "
                         "sample skipped")
            return
        self.files.append(str(image))
        self.label_files.append(str(label))
        self.sizes.append(hw)
        self.image_ids.append(image_id)

    def label_size(self, label: Path) -> tuple[int, int] | None:
        """``(H, W)`` of a single-channel (``L``/``P``) label PNG; None once a Problem says why not."""
        try:
            lh, lw, mode = _label_header(label)
        except ValueError as e:
            self.problem(label, "label", f"{header_error(e)}: sample skipped")
            return None
        if mode not in ("L", "P"):
            self.problem(label, "label", f"mode {mode}: expected a single-channel PNG of class indices "
                         "(colour-coded labels are not supported): sample skipped")
            return None
        return lh, lw

    def decode_label(self, im: Image.Image) -> np.ndarray:
        """An open label PNG -> its ``uint8 [H, W]`` label values (before ``value_map``)."""
        return np.asarray(im, dtype=np.uint8).copy()

    def read_label(self, index: int) -> np.ndarray:
        """The ``uint8 [H, W]`` label values of sample ``index`` (before ``value_map``)."""
        with Image.open(self.label_files[index]) as im:
            return self.decode_label(im)

    def annotation(self, index: int) -> dict[str, Any]:
        return {}

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image = read_image(self.files[index])
        seg = torch.from_numpy(self.value_map[self.read_label(index)].astype(np.int64))
        h, w = image.shape[-2:]
        return image, {"sem_seg": seg, "image_id": self.image_ids[index],
                       "orig_size": torch.tensor([h, w], dtype=torch.int64)}


class SegFolders(LabelPngReader):
    """Semantic segmentation from image/label-PNG folder pairs: ``sem_seg`` per image."""

    def __init__(self, root: str | Path, split: str = "train", val_fraction: float = 0.2,
                 seed: int = 0, transforms: Transform | None = None, images: Path | None = None,
                 labels: Path | None = None, classes: list[str] | None = None):
        super().__init__(root, split, val_fraction, seed, transforms)
        if (images is None) != (labels is None):
            raise ValueError(f"{root}: image/label folders: name both the images and the labels folder")
        pairs = [FolderPair(None, Path(images), Path(labels))] if images is not None else seg_folder_pairs(Path(root))
        self.listed_classes = classes
        if not pairs:
            raise ValueError(f"{root}: no image/label folder pairs (e.g. train/ + trainannot/, "
                             "images/ + labels/) with matching PNG labels found")
        samples: dict[str, tuple[Path, Path | None]] = {}
        own: dict[str, list[str]] = {}
        for pair in pairs:
            for image in list_images(pair.images):
                key = f"{pair.images.name}/{image.name}"
                samples[key] = (image, match_label(pair.labels, image.stem))
                if pair.split is not None:
                    own.setdefault(pair.split, []).append(key)
        keys = list(samples)
        self.pairs = pairs
        self.value_map = self._classes(Path(root), pairs, samples)
        self.classes = list(self.seg_classes)
        index = {k: i for i, k in enumerate(keys)}
        chosen = self.select(keys, own if len(own) == len(pairs) else None)
        self.index_samples(chosen, lambda k: self._add(*samples[k], index[k]))

    def _classes(self, root: Path, pairs: list[FolderPair],
                 samples: dict[str, tuple[Path, Path | None]]) -> np.ndarray:
        """Fill ``seg_classes``; return the ``uint8 [256]`` map from label value to class index."""
        value_map = np.full(256, IGNORE_INDEX, np.uint8)
        listed, source = self.listed_classes, "the dataset file"
        if listed is None:
            listed, source = read_classes_file(root), "classes file"
        if listed is not None:
            self.seg_classes, self.classes_source = list(listed), source
        elif self._is_segnet_camvid(pairs, samples):
            self.seg_classes = list(CAMVID_CLASSES)
            self.classes_source = "SegNet CamVid (11 classes, 11 = void -> ignored)"
        else:
            k = self._max_label_value(samples)
            self.seg_classes = [f"class_{i}" for i in range(k + 1)]
            self.classes_source = "label values found (no classes.txt)"
        n = min(len(self.seg_classes), IGNORE_INDEX)
        value_map[:n] = np.arange(n, dtype=np.uint8)
        return value_map

    @staticmethod
    def _is_segnet_camvid(pairs: list[FolderPair], samples: dict[str, tuple[Path, Path | None]]) -> bool:
        annot = all(p.labels.name.lower().endswith("annot") for p in pairs)
        names = [img.name for img, _ in samples.values()]
        return annot and bool(names) and all(CAMVID_SEQUENCES.match(n) for n in names)

    @staticmethod
    def _max_label_value(samples: dict[str, tuple[Path, Path | None]]) -> int:
        top = 0
        for _, label in samples.values():
            if label is None:
                continue
            try:
                with Image.open(label) as im:
                    values = np.unique(np.asarray(im))
            except (OSError, ValueError):
                continue  # reported when the sample is added
            values = values[values != IGNORE_INDEX]
            if len(values):
                top = max(top, int(values.max()))
        return top

    def _add(self, image: Path, label: Path | None, image_id: int) -> None:
        if label is None:
            self.problem(image, "label", "no label PNG with this name: sample skipped")
            return
        self.add_pair(image, label, image_id)
