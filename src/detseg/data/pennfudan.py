"""Penn-Fudan pedestrian reader: ``PNGImages/`` + ``PedMasks/*_mask.png`` (+ ``Annotation/*.txt``).

Wang, Shi, Song, Shen, "Object Detection Combining Recognition and Segmentation", ACCV 2007.
A mask PNG holds ``k`` on the pixels of the k-th pedestrian and 0 on the background; each value
becomes one instance (``masks`` uint8 [N, H, W], ``labels`` 1 = person). Boxes are the tight
boxes of the masks (x2/y2 exclusive). The optional PASCAL-Annotation-1.00 text files give 1-based
inclusive boxes; they are cross-checked against the masks (IoU below 0.5, or a different count ->
Problem), not used. Masks are decoded once at construction for that check and the boxes (170
small PNGs: about a second).

Splits: the data has none -> the hash split of :mod:`detseg.data.split`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.ops import box_iou

from detseg.data.base import Transform, image_size, read_image
from detseg.data.split import SplitReader, child, header_error, list_images
from detseg.structures import masks_to_boxes

TXT_BOX = re.compile(r"\(Xmin, Ymin\) - \(Xmax, Ymax\)\s*:\s*\((\d+),\s*(\d+)\)\s*-\s*\((\d+),\s*(\d+)\)")
MIN_IOU = 0.5


def pennfudan_dirs(root: Path) -> tuple[Path, Path, Path | None] | None:
    """``(PNGImages, PedMasks, Annotation or None)`` under ``root``, or None."""
    images, masks = child(Path(root), "PNGImages"), child(Path(root), "PedMasks")
    if images is None or masks is None:
        return None
    return images, masks, child(Path(root), "Annotation", "Annotations")


def read_txt_boxes(path: Path) -> np.ndarray:
    """PASCAL Annotation 1.00 text -> ``float32 [N, 4]`` xyxy, 0-based, x2/y2 exclusive."""
    found = TXT_BOX.findall(path.read_text(encoding="latin-1"))
    boxes = np.asarray(found, np.float32).reshape(-1, 4)
    boxes[:, :2] -= 1  # 1-based inclusive -> 0-based exclusive
    return boxes


def mask_boxes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``uint8 [H, W]`` instance ids -> ``(values [N], float32 [N, 4] tight xyxy boxes)``."""
    values = np.unique(ids)
    values = values[values != 0]
    return values, masks_to_boxes(torch.from_numpy(ids[None] == values[:, None, None])).numpy()


def read_ids(path: Path) -> np.ndarray:
    """A mask PNG's instance ids as ``uint8 [H, W]`` (``OSError`` when it cannot be decoded)."""
    with Image.open(path) as im:
        return np.asarray(im if im.mode in ("L", "P") else im.convert("L"), np.uint8)


class PennFudan(SplitReader):
    """Penn-Fudan: ``boxes``, ``labels`` (1 = person) and ``masks`` per image."""

    task = "instance"
    target_keys = ("boxes", "labels", "masks")

    def __init__(self, root: str | Path, split: str = "train", val_fraction: float = 0.2,
                 seed: int = 0, transforms: Transform | None = None):
        super().__init__(root, split, val_fraction, seed, transforms)
        dirs = pennfudan_dirs(Path(root))
        if dirs is None:
            raise ValueError(f"{root}: no Penn-Fudan layout (PNGImages/ + PedMasks/) found")
        self.images_dir, self.masks_dir, self.txt_dir = dirs
        self.classes = ["person"]
        self.seg_classes = ["background", "person"]
        images = list_images(self.images_dir)
        keys = [p.name for p in images]
        by_key = {p.name: p for p in images}
        self.mask_files: list[str] = []
        self.values: list[np.ndarray] = []
        self.boxes: list[np.ndarray] = []
        self.image_ids: list[int] = []
        index = {k: i for i, k in enumerate(keys)}
        self.index_samples(self.select(keys), lambda k: self._add(by_key[k], index[k]))

    def _add(self, image: Path, image_id: int) -> None:
        mask = self.masks_dir / f"{image.stem}_mask.png"
        if not mask.is_file():
            self.problem(image, "mask", f"no {mask.name} in {self.masks_dir}: sample skipped")
            return
        try:
            hw = image_size(image)
            ids = read_ids(mask)
        except ValueError as e:
            self.problem(image, "image", f"{header_error(e)}: sample skipped")
            return
        except OSError as e:
            self.problem(mask, "mask", f"cannot decode ({e}): sample skipped")
            return
        if ids.shape != hw:
            self.problem(mask, "size", f"mask is {ids.shape[1]}x{ids.shape[0]} but the image is "
                         f"{hw[1]}x{hw[0]}: sample skipped")
            return
        values, boxes = mask_boxes(ids)
        self._cross_check(image, boxes)
        self.files.append(str(image))
        self.mask_files.append(str(mask))
        self.sizes.append(hw)
        self.values.append(values)
        self.boxes.append(boxes)
        self.image_ids.append(image_id)

    def _cross_check(self, image: Path, boxes: np.ndarray) -> None:
        if self.txt_dir is None:
            return
        txt = self.txt_dir / f"{image.stem}.txt"
        if not txt.is_file():
            return
        listed = read_txt_boxes(txt)
        if len(listed) != len(boxes):
            self.problem(txt, "boxes", f"{len(listed)} boxes but {len(boxes)} instances in the mask")
            return
        ious = box_iou(torch.from_numpy(boxes), torch.from_numpy(listed)).diag().numpy()
        for k in np.nonzero(ious < MIN_IOU)[0]:
            self.problem(txt, f"object {k + 1}", f"box {listed[k].tolist()} disagrees with the mask's "
                         f"{boxes[k].tolist()} (IoU {ious[k]:.2f}); the mask's is used")

    def annotation(self, index: int) -> dict[str, Any]:
        return {"boxes": self.boxes[index], "labels": np.ones(len(self.boxes[index]), np.int64)}

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image = read_image(self.files[index])
        ids = read_ids(Path(self.mask_files[index]))
        masks = torch.from_numpy(ids[None] == self.values[index][:, None, None]).to(torch.uint8)
        h, w = image.shape[-2:]
        target = {
            "boxes": torch.from_numpy(self.boxes[index].copy()),
            "labels": torch.ones(len(self.values[index]), dtype=torch.int64),
            "masks": masks,
            "image_id": self.image_ids[index],
            "orig_size": torch.tensor([h, w], dtype=torch.int64),
        }
        return image, target
