"""Data augmentation on the detseg convention, built on ``torchvision.transforms.v2`` and tv_tensors.

The callables here take and return ``(image, target)`` in the convention of
:mod:`detseg.structures` (plain tensors: ``Tensor[3, H, W]`` float image; ``boxes`` ``Tensor[N, 4]``
float32 xyxy; ``masks`` uint8 ``[N, H, W]``; ``sem_seg`` int64 ``[H, W]``; ``keypoints`` float32
``[N, K, 3]``). Inside, the parts are wrapped as ``tv_tensors`` (``Image``, ``BoundingBoxes`` in
XYXY, ``Mask``, ``KeyPoints``) so one geometric op moves all of them together, then unwrapped.

What torchvision does not know is added here:

* a horizontal flip also swaps left/right joints (``flip_pairs``), since tv_tensors flip the
  coordinates but not the meaning of "left elbow";
* after a scale/crop, joints that left the image get visibility 0, padded ``sem_seg`` pixels
  become ``IGNORE_INDEX`` (255), boxes are re-fitted to the visible mask when masks exist (as
  Detectron2's ``recompute_boxes`` does after cropping) and degenerate boxes are dropped with their
  labels, masks and keypoints.

Keypoint coordinates are pixel indices (an integer is a pixel centre), the convention
torchvision's ``KeyPoints`` flip uses (``x -> W - 1 - x``); resizing keeps centres on centres.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

try:
    from torchvision import tv_tensors
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as F

    _KeyPoints = tv_tensors.KeyPoints
except (ImportError, AttributeError) as _e:  # pragma: no cover - depends on the installed version
    raise ImportError(
        "detseg.data.transforms needs torchvision >= 0.23 (transforms.v2 with tv_tensors.KeyPoints); "
        f"install a newer torchvision ({_e})"
    ) from None

from detseg.structures import IGNORE_INDEX, masks_to_boxes

Sample = tuple[Tensor, dict[str, Any]]
PER_INSTANCE = ("boxes", "labels", "masks", "keypoints", "scores", "iscrowd", "area", "difficult")
# Tasks whose single object (or person) must stay in frame under a scale/crop.
KEEP_IN_FRAME = ("cls_loc", "pose")
TASKS = ("semantic", "cls_loc", "pose", "detection", "instance", "keypoints")


def build_transforms(
    task: str,
    train: bool,
    flip_pairs: Sequence[Sequence[int]] | None = None,
    scale_jitter: tuple[float, float] | None = (0.75, 1.25),
    flip_prob: float = 0.5,
    photometric: bool = True,
    recompute_boxes: bool = True,
    rotation: float = 0.0,
) -> Callable[[Tensor, dict[str, Any]], Sample]:
    """The augmentation for ``task``: identity when ``train`` is False.

    Train mode: random horizontal flip (swapping ``flip_pairs``), a random scale in
    ``scale_jitter`` followed by a crop/pad back to the input size (``None`` disables it; for
    ``cls_loc`` and ``pose`` the crop always keeps the object and its labelled joints in frame),
    and mild colour jitter. ``rotation`` (degrees, 0 = off) adds a rotation by a uniform angle in
    ``[-rotation, rotation]`` about the image centre before the scale/crop (simple baselines use
    40 for pose); joints rotated out of the image become unlabelled. The output keeps the input's
    size.
    """
    if task not in TASKS:
        raise ValueError(f"build_transforms: unknown task {task!r}; known: {', '.join(TASKS)}")
    if not train:
        return Identity()
    if scale_jitter is not None and not 0 < scale_jitter[0] <= scale_jitter[1]:
        raise ValueError(f"build_transforms: scale_jitter needs 0 < low <= high, got {scale_jitter}")
    if not 0 <= rotation <= 180:
        raise ValueError(f"build_transforms: rotation must be in [0, 180] degrees, got {rotation}")
    return TrainTransform(task, flip_pairs, flip_prob, scale_jitter, photometric, recompute_boxes,
                          rotation)


class Identity:
    """Eval mode: ``(image, target)`` unchanged."""

    def __call__(self, image: Tensor, target: dict[str, Any]) -> Sample:
        return image, target

    def __repr__(self) -> str:
        return "Identity()"


class TrainTransform:
    """Colour jitter -> flip -> rotation -> scale/crop (+ sanitize); see :func:`build_transforms`."""

    def __init__(self, task: str, flip_pairs: Sequence[Sequence[int]] | None, flip_prob: float,
                 scale_jitter: tuple[float, float] | None, photometric: bool, recompute_boxes: bool,
                 rotation: float = 0.0):
        self.task = task
        self.flip_pairs = None if flip_pairs is None else [tuple(p) for p in flip_pairs]
        self.flip_prob = flip_prob
        self.scale_jitter = scale_jitter
        self.keep_in_frame = task in KEEP_IN_FRAME
        self.recompute_boxes = recompute_boxes
        self.rotation = rotation
        self.jitter = v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2) if photometric else None

    def __call__(self, image: Tensor, target: dict[str, Any]) -> Sample:
        if self.jitter is not None:  # before any padding, so a padded border stays exactly 0
            image = self.jitter(image).clamp_(0, 1)
        if self.flip_prob > 0 and torch.rand(()) < self.flip_prob:
            image, target = hflip(image, target, self.flip_pairs)
        if self.rotation > 0:
            angle = (2 * float(torch.rand(())) - 1) * self.rotation
            image, target = rotate(image, target, angle, self.recompute_boxes)
        if self.scale_jitter is not None:
            image, target = random_scale_crop(image, target, self.scale_jitter, self.keep_in_frame,
                                              self.recompute_boxes)
        return image, target

    def __repr__(self) -> str:
        return (f"TrainTransform(task={self.task!r}, flip_prob={self.flip_prob}, "
                f"scale_jitter={self.scale_jitter}, keep_in_frame={self.keep_in_frame}, "
                f"rotation={self.rotation}, photometric={self.jitter is not None})")


def hflip(image: Tensor, target: dict[str, Any], flip_pairs: Sequence[Sequence[int]] | None) -> Sample:
    """Mirror left-right: image, boxes, masks, sem_seg and keypoints, swapping ``flip_pairs``.

    ``flip_pairs`` lists ``(left, right)`` joint index pairs (``dataset.flip_pairs``); it is
    required when the target has keypoints (``[]`` when no joint has a mirror twin).
    """
    if "keypoints" in target and flip_pairs is None:
        raise ValueError("hflip: the target has keypoints but flip_pairs is None; pass the dataset's "
                         "flip_pairs ([] if no joint has a left/right twin)")
    image_tv, parts = _wrap(image, target)
    image_tv = F.horizontal_flip(image_tv)
    parts = {k: F.horizontal_flip(v) for k, v in parts.items()}
    out_image, out = _unwrap(image_tv, parts, target)
    if "keypoints" in out and flip_pairs:
        perm = list(range(out["keypoints"].shape[1]))
        for a, b in flip_pairs:
            perm[a], perm[b] = b, a
        out["keypoints"] = out["keypoints"][:, perm]
    return out_image, out


def rotate(image: Tensor, target: dict[str, Any], angle: float, recompute_boxes: bool = True) -> Sample:
    """Rotate by ``angle`` degrees (counter-clockwise, torchvision's sign) about the image centre,
    keeping the size: the image bilinearly with a zero fill, masks and label maps by nearest
    neighbour (the uncovered corners of a label map become ignore), keypoints exactly, boxes as the
    enclosing box of their rotated corners (re-fitted to the masks when there are masks).

    torchvision rotates ``KeyPoints`` about ``(W/2, H/2)`` in continuous coordinates, while
    detseg's keypoints are pixel indices (a pixel's centre is an integer): they are shifted by half
    a pixel around the call, else a joint would land up to a pixel away from its rotated pixel.
    """
    H, W = image.shape[-2:]
    image_tv, parts = _wrap(image, target)
    image_tv = F.rotate(image_tv, angle, interpolation=v2.InterpolationMode.BILINEAR)
    for k, v in parts.items():
        if isinstance(v, _KeyPoints):
            r = F.rotate(tv_tensors.wrap(v.as_subclass(Tensor) + 0.5, like=v), angle)
            parts[k] = tv_tensors.wrap(r.as_subclass(Tensor) - 0.5, like=r)
        else:  # masks: nearest (the default for Mask); boxes: the enclosing box
            parts[k] = F.rotate(v, angle)
    out_image, out = _unwrap(image_tv, parts, target)
    return out_image, sanitize(out, H, W, recompute_boxes=recompute_boxes)


def random_scale_crop(image: Tensor, target: dict[str, Any], scale_range: tuple[float, float],
                      keep_in_frame: bool = False, recompute_boxes: bool = True) -> Sample:
    """Scale by a random factor in ``scale_range``, then crop (zoom in) or pad (zoom out) back to
    the input size at a random offset. With ``keep_in_frame`` the window always holds every box
    and labelled joint (the scale is lowered if they could not fit)."""
    H, W = image.shape[-2:]
    keep = _extent(target, H, W) if keep_in_frame else None
    nh, nw, top, left = _scale_crop_params(H, W, scale_range, keep)
    image_tv, parts = _wrap(image, target)
    image_tv = F.crop(F.resize(image_tv, [nh, nw], antialias=True), top, left, H, W)
    for k, v in parts.items():
        parts[k] = F.crop(_resize(v, nh, nw), top, left, H, W)
    out_image, out = _unwrap(image_tv, parts, target)
    return out_image, sanitize(out, H, W, recompute_boxes=recompute_boxes)


def sanitize(target: dict[str, Any], height: int, width: int, recompute_boxes: bool = True,
             min_size: float = 1.0) -> dict[str, Any]:
    """Zero the visibility of joints outside the image, clamp boxes (or re-fit them to the masks),
    and drop instances whose box is narrower or shorter than ``min_size`` pixels."""
    out = dict(target)
    if "keypoints" in out and len(out["keypoints"]):
        kp = out["keypoints"].clone()
        x, y = kp[..., 0], kp[..., 1]
        outside = (x < -0.5) | (x >= width - 0.5) | (y < -0.5) | (y >= height - 0.5)
        kp[..., 2] = torch.where(outside, torch.zeros_like(kp[..., 2]), kp[..., 2])
        out["keypoints"] = kp
    if "boxes" not in out:
        return out
    if recompute_boxes and "masks" in out and len(out["masks"]) == len(out["boxes"]):
        out["boxes"] = masks_to_boxes(out["masks"])
    boxes = out["boxes"].clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    out["boxes"] = boxes
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    if not bool(keep.all()):
        n = len(boxes)
        for k in PER_INSTANCE:
            if k in out and isinstance(out[k], Tensor) and out[k].dim() > 0 and len(out[k]) == n:
                out[k] = out[k][keep]
    return out


# -- internals ----------------------------------------------------------------------------------
def _wrap(image: Tensor, target: dict[str, Any]) -> tuple[tv_tensors.Image, dict[str, Any]]:
    """The geometric parts of ``target`` as tv_tensors (other keys are left in ``target``)."""
    H, W = image.shape[-2:]
    parts: dict[str, Any] = {}
    if "boxes" in target:
        parts["boxes"] = tv_tensors.BoundingBoxes(target["boxes"].float().reshape(-1, 4), format="XYXY",
                                                  canvas_size=(H, W))
    if "masks" in target:
        parts["masks"] = tv_tensors.Mask(target["masks"].to(torch.uint8))
    if "sem_seg" in target:
        # Shifted by one so that the zero fill of a padded border becomes IGNORE_INDEX on unwrap.
        parts["sem_seg"] = tv_tensors.Mask(target["sem_seg"].long() + 1)
    if "keypoints" in target:
        parts["keypoints"] = _KeyPoints(target["keypoints"][..., :2].float(), canvas_size=(H, W))
    return tv_tensors.Image(image), parts


def _unwrap(image: Tensor, parts: dict[str, Any], target: dict[str, Any]) -> Sample:
    out = dict(target)
    for k, v in parts.items():
        v = v.as_subclass(Tensor)
        if k == "sem_seg":
            v = v - 1
            v[(v < 0) | (v == IGNORE_INDEX)] = IGNORE_INDEX
        elif k == "masks":
            v = v.to(torch.uint8)
        elif k == "keypoints":
            v = torch.cat([v.float(), target["keypoints"][..., 2:3].float()], dim=-1)
        else:
            v = v.float()
        out[k] = v
    return image.as_subclass(Tensor), out


def _resize(v: Any, nh: int, nw: int) -> Any:
    """Masks by nearest-exact (pixel centres, like the keypoints), empty stacks by hand."""
    if isinstance(v, _KeyPoints):
        H, W = v.canvas_size
        sx, sy = nw / W, nh / H
        # torchvision scales x by nw/W; centres-on-centres needs (x + 0.5) * s - 0.5.
        shift = torch.tensor([0.5 * (sx - 1), 0.5 * (sy - 1)], dtype=v.dtype)
        r = F.resize(v, [nh, nw])
        return tv_tensors.wrap(r.as_subclass(Tensor) + shift, like=r)
    if isinstance(v, tv_tensors.Mask):
        if v.numel() == 0:
            return tv_tensors.Mask(v.new_zeros((*v.shape[:-2], nh, nw)))
        return F.resize(v, [nh, nw], interpolation=v2.InterpolationMode.NEAREST_EXACT)
    return F.resize(v, [nh, nw])


def _scale_crop_params(H: int, W: int, scale_range: tuple[float, float],
                       keep: tuple[float, float, float, float] | None) -> tuple[int, int, int, int]:
    """``(new_h, new_w, top, left)``: the resized size and the (possibly negative) crop offset."""
    lo, hi = scale_range
    s = lo + float(torch.rand(())) * (hi - lo)
    if keep is not None:
        kw, kh = keep[2] - keep[0], keep[3] - keep[1]
        s = min(s, W / kw if kw > 0 else s, H / kh if kh > 0 else s)
    nh, nw = max(1, round(H * s)), max(1, round(W * s))
    if keep is not None:  # rounding must leave an integer window that holds the kept extent
        nw = _fit(nw, W, keep[0], keep[2])
        nh = _fit(nh, H, keep[1], keep[3])
    top = _offset(nh, H, None if keep is None else (keep[1] * nh / H, keep[3] * nh / H))
    left = _offset(nw, W, None if keep is None else (keep[0] * nw / W, keep[2] * nw / W))
    return nh, nw, top, left


def _fit(new: int, out: int, a: float, b: float) -> int:
    """The largest size ``<= new`` of a side of length ``out`` rescaled so that some integer
    window start covers ``[a, b]`` scaled with it. A scaled span that merely fits in ``out`` may
    have no such start (the floor of its start below the ceiling of its end minus ``out``), which
    once pushed an edge joint out of frame; one no longer than ``out - 1`` always has, so this ends."""
    while new > 1:
        lo, hi = _bounds(new, out, (a * new / out, b * new / out))
        if lo <= hi:
            break
        new -= 1
    return new


def _bounds(new: int, out: int, span: tuple[float, float] | None) -> tuple[int, int]:
    """The range of window starts (length ``out``, in a side of length ``new``) covering ``span``."""
    lo, hi = min(0, new - out), max(0, new - out)
    if span is not None:
        lo, hi = max(lo, math.ceil(span[1] - out)), min(hi, math.floor(span[0]))
    return lo, hi


def _offset(new: int, out: int, span: tuple[float, float] | None) -> int:
    """A random window start in a side of length ``new``; the window (length ``out``) covers
    ``span`` when given. Negative starts mean padding."""
    lo, hi = _bounds(new, out, span)
    if lo > hi:  # only when the span cannot fit at all (``_fit`` prevents it): centre on it
        return round((lo + hi) / 2)
    return int(torch.randint(lo, hi + 1, ()))


def _extent(target: dict[str, Any], H: int, W: int) -> tuple[float, float, float, float] | None:
    """Union of the boxes and labelled joints, clipped to the image (``None`` when empty)."""
    pts = []
    if "boxes" in target and len(target["boxes"]):
        b = target["boxes"].float()
        pts += [b[:, :2], b[:, 2:]]
    if "keypoints" in target and len(target["keypoints"]):
        kp = target["keypoints"].reshape(-1, 3).float()
        kp = kp[kp[:, 2] > 0]
        pts += [kp[:, :2], kp[:, :2] + 1]  # a joint covers its pixel
    if not pts:
        return None
    p = torch.cat(pts)
    x0, y0 = float(p[:, 0].min().clamp(0, W)), float(p[:, 1].min().clamp(0, H))
    x1, y1 = float(p[:, 0].max().clamp(0, W)), float(p[:, 1].max().clamp(0, H))
    return x0, y0, x1, y1
