"""Task adaptation: serve a dataset to a task other than its native one, where that makes sense.

- ``semantic`` from instance masks (COCO with masks, Penn-Fudan): ``sem_seg`` painted from the
  masks, larger objects first so smaller ones stay on top; ``seg_classes = ["background", *classes]``.
- ``cls_loc`` (classification + localization, lecture 11 section 2) from any detection data
  ("raccoon crops"): one sample per object of at least ``min_size`` pixels, cropped with context so
  the box covers a deterministic 30-80% of the crop's side; the target is that one box in crop
  pixels and its label (plus the object's keypoints where present, e.g. COCO persons for ``pose``).
- ``pose`` on multi-person keypoint data: the same crops around each person with labelled joints;
  single-person data (LSP) is served as is.
- a task whose target keys the data already has: as is. Anything else: ``ValueError`` naming the
  dataset and the missing target key.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detseg.data.base import DetsegDataset
from detseg.data.split import hash_fraction
from detseg.tasks import get_task

MIN_OBJECT_SIZE = 8
CROP_COVER = (0.3, 0.8)  # range of (box side / crop side)


def adapt(ds: DetsegDataset, task: str | None) -> DetsegDataset:
    """``ds`` itself, or a view of it serving ``task`` (see the module docstring)."""
    if task is None:
        return ds
    wanted = get_task(task)
    native = getattr(ds, "task", None)
    have = set(getattr(ds, "target_keys", ()))
    if task == native:
        return ds
    if task == "semantic" and {"masks", "labels"} <= have:
        return SemanticFromInstances(ds)
    if task == "cls_loc" and {"boxes", "labels"} <= have:
        return ObjectCrops(ds, task="cls_loc")
    if task == "pose" and "keypoints" in have:
        return ds if native == "pose" else ObjectCrops(ds, task="pose", need_keypoints=True)
    if task != "cls_loc" and set(wanted.target_keys) <= have:
        return ds
    missing = next(k for k in (("masks",) if task == "semantic" else wanted.target_keys) if k not in have)
    raise ValueError(f"{getattr(ds, 'name', 'dataset')} ({ds.root}): cannot serve task {task!r}: its "
                     f"samples have no {missing!r} (native task {native!r}, target keys: "
                     f"{', '.join(sorted(have)) or 'none'})")


class _View(DetsegDataset):
    """A dataset that reads its samples from another one; names and problems are shared."""

    def __init__(self, inner: DetsegDataset):
        super().__init__(transforms=None)
        self.inner = inner
        self.name, self.root = inner.name, inner.root
        self.classes = list(inner.classes)
        self.seg_classes = list(inner.seg_classes)
        self.keypoint_names = list(inner.keypoint_names)
        self.flip_pairs = list(inner.flip_pairs)
        self.problems = inner.problems
        self.split = getattr(inner, "split", None)


class SemanticFromInstances(_View):
    """``sem_seg`` [H, W] int64 painted from an instance dataset's ``masks`` and ``labels``."""

    task = "semantic"
    target_keys = ("sem_seg",)

    def __init__(self, inner: DetsegDataset):
        super().__init__(inner)
        self.seg_classes = ["background", *inner.classes]
        self.files = list(getattr(inner, "files", []))

    def __len__(self) -> int:
        return len(self.inner)

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image, t = self.inner.load(index)
        return image, {"sem_seg": masks_to_semantic(t["masks"], t["labels"]),
                       "image_id": t["image_id"], "orig_size": t["orig_size"]}


def masks_to_semantic(masks: Tensor, labels: Tensor) -> Tensor:
    """``uint8 [N, H, W]`` masks + ``[N]`` labels -> ``int64 [H, W]`` (0 = background).

    Larger objects are painted first so a small object in front of a large one keeps its pixels.
    """
    h, w = masks.shape[-2:]
    seg = torch.zeros((h, w), dtype=torch.int64)
    if len(masks):
        order = torch.argsort(masks.flatten(1).sum(1), descending=True)
        for i in order.tolist():
            seg[masks[i].bool()] = int(labels[i])
    return seg


class ObjectCrops(_View):
    """One sample per object: a context crop around it with that single box (and its keypoints).

    The crop of object ``j`` of image ``i`` is deterministic (a hash of the file name and ``j``):
    its side is the box side divided by a cover fraction in ``CROP_COVER``, placed so the box lies
    inside it, then clipped to the image (so the box always stays inside the crop).
    """

    def __init__(self, inner: DetsegDataset, task: str = "cls_loc", min_size: int = MIN_OBJECT_SIZE,
                 need_keypoints: bool = False):
        super().__init__(inner)
        if not hasattr(inner, "annotation"):
            raise ValueError(f"{inner.name}: crops need a reader with per-sample annotations")
        self.task = task
        self.target_keys = ("boxes", "labels") + (("keypoints",) if need_keypoints else ())
        self.items: list[tuple[int, int, tuple[int, int, int, int]]] = []  # (sample, object, crop)
        self.files: list[str] = []
        files = getattr(inner, "files", [])
        skipped = 0
        for i in range(len(inner)):
            ann = inner.annotation(i)  # type: ignore[attr-defined]
            h, w = inner.sizes[i]  # type: ignore[attr-defined]
            for j, box in enumerate(ann["boxes"]):
                if min(box[2] - box[0], box[3] - box[1]) < min_size:
                    skipped += 1
                    continue
                if need_keypoints and not (ann["keypoints"][j][:, 2] > 0).any():
                    continue
                name = f"{files[i] if i < len(files) else i}#{j}"
                self.items.append((i, j, crop_window(box, h, w, name)))
                self.files.append(name)
        self.n_small = skipped

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        i, j, (x0, y0, x1, y1) = self.items[index]
        image, t = self.inner.load(i)
        crop = image[:, y0:y1, x0:x1]
        shift = torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
        box = (t["boxes"][j] - shift).clamp(min=0)
        box = torch.minimum(box, torch.tensor([x1 - x0, y1 - y0] * 2, dtype=torch.float32))
        target: dict[str, Any] = {
            "boxes": box[None], "labels": t["labels"][j:j + 1].clone(), "image_id": index,
            "orig_size": torch.tensor([y1 - y0, x1 - x0], dtype=torch.int64),
        }
        if "keypoints" in t:
            kp = t["keypoints"][j:j + 1].clone()
            kp[..., 0] -= x0
            kp[..., 1] -= y0
            out = (kp[..., 0] < 0) | (kp[..., 1] < 0) | (kp[..., 0] > x1 - x0) | (kp[..., 1] > y1 - y0)
            kp[out & (kp[..., 2] > 0), 2] = 0  # a joint cut off by the crop is no longer labelled
            kp[kp[..., 2] == 0, :2] = 0
            target["keypoints"] = kp
        return crop, target


def crop_window(box: np.ndarray, h: int, w: int, name: str) -> tuple[int, int, int, int]:
    """Integer crop ``(x0, y0, x1, y1)`` containing ``box`` (xyxy), deterministic for ``name``."""
    lo, hi = CROP_COVER
    u = [hash_fraction(f"{name}/{k}") for k in range(3)]
    cover = lo + (hi - lo) * u[0]
    bx0, by0, bx1, by1 = (float(v) for v in box)
    cw, ch = (bx1 - bx0) / cover, (by1 - by0) / cover
    x0 = bx0 - (cw - (bx1 - bx0)) * u[1]
    y0 = by0 - (ch - (by1 - by0)) * u[2]
    x0i, y0i = max(0, math.floor(x0)), max(0, math.floor(y0))
    x1i, y1i = min(w, math.ceil(x0 + cw)), min(h, math.ceil(y0 + ch))
    # the box is inside the image, so clipping keeps it inside the crop; guard rounding anyway
    x0i, y0i = min(x0i, math.floor(bx0)), min(y0i, math.floor(by0))
    x1i, y1i = max(x1i, min(w, math.ceil(bx1))), max(y1i, min(h, math.ceil(by1)))
    return x0i, y0i, x1i, y1i

