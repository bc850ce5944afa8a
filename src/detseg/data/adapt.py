"""Task adaptation: serve a dataset to a task other than its native one, where that makes sense.

- ``semantic`` from instance masks (COCO with masks, Penn-Fudan): ``sem_seg`` painted from the
  masks, larger objects first so smaller ones stay on top; ``seg_classes = ["background", *classes]``.
- ``cls_loc`` (classification + localization, lecture 11 section 2) from any detection data
  ("raccoon crops"): one sample per object of at least ``min_size`` pixels, cropped with context so
  the box covers a deterministic 30-80% of the crop's side; the target is that one box in crop
  pixels and its label (plus the object's keypoints where present, e.g. COCO persons for ``pose``).
- ``pose`` on multi-person keypoint data: the same crops around each person with labelled joints;
  single-person data (LSP) is served as is.
- person-centred crops for ``pose`` (``crop=PersonCrop(...)``, ``build_dataset(..., crop="person")``
  or the data spec option ``PATH:crop=person``): each person with labelled joints is served as a
  *square* crop centred on its box (for LSP/LSPET the labelled joints' extent plus a 15% margin,
  :func:`detseg.data.lsp.person_box`), of side ``scale`` (default 1.25) times the box's longer side,
  zero-padded where it passes the image border -- the usual single-person protocol (the person is
  given; e.g. Xiao et al. 2018's 1.25x box). Validation crops are fixed; a training set
  (``build_dataset(..., train=True)``, as the trainer builds it) may draw a fresh scale in
  ``scale * (1 +- scale_jitter)`` and a centre shift of up to ``shift_jitter`` of the side at every
  load, never so far that the box leaves the crop. Boxes and keypoints move with the crop
  (tv_tensors); a joint cut off by the crop gets visibility 0.
- a task whose target keys the data already has: as is. Anything else: ``ValueError`` naming the
  dataset and the missing target key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from detseg.data.base import DetsegDataset
from detseg.data.split import hash_fraction
from detseg.tasks import get_task

MIN_OBJECT_SIZE = 8
CROP_COVER = (0.3, 0.8)  # range of (box side / crop side)


@dataclass(frozen=True)
class PersonCrop:
    """A square crop centred on the object's box (see the module docstring).

    Args:
        scale: crop side / the box's longer side (>= 1: the whole box is in the crop).
        scale_jitter: training only: the side is multiplied by ``U(1 - j, 1 + j)`` per load
            (never below the box's longer side).
        shift_jitter: training only: the centre moves by ``U(-t, t)`` times the side on each axis
            (never so far that the box leaves the crop).
    """

    scale: float = 1.25
    scale_jitter: float = 0.0
    shift_jitter: float = 0.0

    def __post_init__(self) -> None:
        if not self.scale >= 1.0:
            raise ValueError(f"crop_scale: {self.scale} must be >= 1 (the crop holds the whole box)")
        if not 0.0 <= self.scale_jitter < 1.0:
            raise ValueError(f"crop_jitter: {self.scale_jitter} must be in [0, 1)")
        if not 0.0 <= self.shift_jitter < 0.5:
            raise ValueError(f"crop_shift: {self.shift_jitter} must be in [0, 0.5)")

    @property
    def jittered(self) -> bool:
        return self.scale_jitter > 0 or self.shift_jitter > 0

    def fixed(self) -> PersonCrop:
        """The same crop without jitter (what validation uses)."""
        return PersonCrop(self.scale)


def person_crop(crop: PersonCrop | str | None, train: bool = False) -> PersonCrop | None:
    """``crop`` as a :class:`PersonCrop` (``"person"`` = the defaults), fixed unless ``train``."""
    if crop is None or crop == "none":
        return None
    if isinstance(crop, str):
        if crop != "person":
            raise ValueError(f"crop: unknown crop {crop!r}; expected 'person' or a PersonCrop")
        crop = PersonCrop()
    return crop if train else crop.fixed()


def adapt(ds: DetsegDataset, task: str | None, crop: PersonCrop | None = None) -> DetsegDataset:
    """``ds`` itself, or a view of it serving ``task`` (see the module docstring)."""
    if crop is not None:
        if task != "pose" or "keypoints" not in set(getattr(ds, "target_keys", ())):
            raise ValueError(f"{getattr(ds, 'name', 'dataset')} ({ds.root}): crop: person crops serve "
                             f"the pose task on data with keypoints (asked: task {task!r})")
        return ObjectCrops(ds, task="pose", need_keypoints=True, window=crop)
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
    """One sample per object: a crop around it with that single box (and its keypoints).

    Without ``window`` (context crops) the crop of object ``j`` of image ``i`` is deterministic (a
    hash of the file name and ``j``): its side is the box side divided by a cover fraction in
    ``CROP_COVER``, placed so the box lies inside it, then clipped to the image (so the box always
    stays inside the crop). With a :class:`PersonCrop` ``window`` it is a square centred on the
    box, padded with zeros past the image border (jittered per load when the window is).
    """

    def __init__(self, inner: DetsegDataset, task: str = "cls_loc", min_size: int = MIN_OBJECT_SIZE,
                 need_keypoints: bool = False, window: PersonCrop | None = None):
        super().__init__(inner)
        if not hasattr(inner, "annotation"):
            raise ValueError(f"{inner.name}: crops need a reader with per-sample annotations")
        self.task = task
        self.window = window
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
                crop = centred_window(box, window) if window is not None else crop_window(box, h, w, name)
                self.items.append((i, j, crop))
                self.files.append(name)
        self.n_small = skipped

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        i, j, (x0, y0, x1, y1) = self.items[index]
        image, t = self.inner.load(i)
        if self.window is not None and self.window.jittered:
            x0, y0, x1, y1 = centred_window(t["boxes"][j].numpy(), self.window, jitter=True)
        return crop_sample(image, t, j, (x0, y0, x1, y1), index)


def crop_sample(image: Tensor, t: dict[str, Any], j: int, window: tuple[int, int, int, int],
                image_id: int) -> tuple[Tensor, dict[str, Any]]:
    """Object ``j`` of ``(image, t)`` cut to ``window`` (xyxy integers, may pass the image border:
    zero padding), with its box ``[1, 4]`` xyxy and keypoints ``[1, K, 3]`` in crop pixels."""
    x0, y0, x1, y1 = window
    h, w = image.shape[-2:]
    cw, ch = x1 - x0, y1 - y0
    crop = F.crop(tv_tensors.Image(image), y0, x0, ch, cw).as_subclass(Tensor)
    box = tv_tensors.BoundingBoxes(t["boxes"][j:j + 1].float(), format="XYXY", canvas_size=(h, w))
    box = F.crop(box, y0, x0, ch, cw).as_subclass(Tensor).clone()
    box[:, 0::2] = box[:, 0::2].clamp(0, cw)
    box[:, 1::2] = box[:, 1::2].clamp(0, ch)
    target: dict[str, Any] = {
        "boxes": box, "labels": t["labels"][j:j + 1].clone(), "image_id": image_id,
        "orig_size": torch.tensor([ch, cw], dtype=torch.int64),
    }
    if "keypoints" in t:
        kp = t["keypoints"][j:j + 1].clone().float()
        xy = tv_tensors.KeyPoints(kp[..., :2], canvas_size=(h, w))
        kp[..., :2] = F.crop(xy, y0, x0, ch, cw).as_subclass(Tensor)
        # a joint cut off by the crop is no longer labelled (pixel-centre coordinates)
        out = (kp[..., 0] < -0.5) | (kp[..., 1] < -0.5) | (kp[..., 0] > cw - 0.5) | (kp[..., 1] > ch - 0.5)
        kp[out, 2] = 0
        kp[kp[..., 2] == 0, :2] = 0  # placeholder coordinates mean nothing
        target["keypoints"] = kp
    return crop, target


def centred_window(box: np.ndarray, crop: PersonCrop, jitter: bool = False) -> tuple[int, int, int, int]:
    """Integer square ``(x0, y0, x1, y1)`` centred on ``box`` (xyxy) that holds the whole box;
    with ``jitter`` its scale and centre are drawn from ``crop``'s ranges (torch's RNG)."""
    bx0, by0, bx1, by1 = (float(v) for v in box)
    bw, bh = bx1 - bx0, by1 - by0
    longer = max(bw, bh, 1.0)
    side = crop.scale * longer
    dx = dy = 0.0
    if jitter:
        u = torch.rand(3).tolist()
        side = max(longer, side * (1 + crop.scale_jitter * (2 * u[0] - 1)))
        dx = max(-(side - bw) / 2, min((side - bw) / 2, crop.shift_jitter * side * (2 * u[1] - 1)))
        dy = max(-(side - bh) / 2, min((side - bh) / 2, crop.shift_jitter * side * (2 * u[2] - 1)))
    # at least the box's integer extent, so rounding can never cut the box
    n = max(math.ceil(side), math.ceil(bx1) - math.floor(bx0), math.ceil(by1) - math.floor(by0))
    x0 = _place(round((bx0 + bx1) / 2 + dx - n / 2), n, bx0, bx1)
    y0 = _place(round((by0 + by1) / 2 + dy - n / 2), n, by0, by1)
    return x0, y0, x0 + n, y0 + n


def _place(start: int, n: int, lo: float, hi: float) -> int:
    """``start`` moved (if at all) so ``[start, start + n)`` covers ``[lo, hi]``."""
    return min(max(start, math.ceil(hi) - n), math.floor(lo))


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

