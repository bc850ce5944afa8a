"""Model-side preprocessing and postprocessing: normalise, resize, pad, batch — and map back.

A simpler, functional take on torchvision's ``GeneralizedRCNNTransform``
(``torchvision/models/detection/transform.py``): each model calls :func:`preprocess` on the raw
``list[Tensor[3, H, W]]`` it receives and :func:`maps_to_original` / :func:`boxes_to_original` on
its outputs, so callers never rescale anything themselves.

Two resize policies, chosen per model:

- ``keep_aspect=True``: the longer side becomes ``size``, the other side scales alike (rounded);
  used by dense models (FCN), whose maps are cropped and resized back per axis.
- ``keep_aspect=False``: a fixed ``size x size`` square (the aspect ratio is not kept); used by
  single-object models that regress coordinates normalised to the image, which map back per axis.

Images are normalised with the ImageNet mean/std (what torchvision's pretrained backbones expect),
then zero-padded at the bottom/right to a common size that is a multiple of the network stride, so
padding reads as "mean colour" and every feature map divides evenly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageBatch:
    """A preprocessed batch and what is needed to map outputs back to each original image.

    Attributes:
        tensor: ``Tensor[B, 3, Hp, Wp]`` normalised, zero-padded at the bottom/right.
        image_sizes: ``(h, w)`` of each resized image inside ``tensor`` (top-left corner).
        original_sizes: ``(H, W)`` of each image as given to the model.
    """

    tensor: Tensor
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]


def check_images(images: list[Tensor], who: str) -> None:
    """Raise a clear ``ValueError``/``TypeError`` unless ``images`` is a list of ``Tensor[3, H, W]``."""
    if isinstance(images, Tensor) or not isinstance(images, (list, tuple)):
        raise TypeError(f"{who}: images must be a list of Tensor[3, H, W] (got {type(images).__name__})")
    if not images:
        raise ValueError(f"{who}: images is an empty list")
    for i, im in enumerate(images):
        if not isinstance(im, Tensor) or im.ndim != 3 or im.shape[0] != 3:
            shape = tuple(im.shape) if isinstance(im, Tensor) else type(im).__name__
            raise ValueError(f"{who}: images[{i}]: expected a float Tensor[3, H, W] in [0, 1], got {shape}")
        if not im.is_floating_point():
            raise ValueError(f"{who}: images[{i}]: expected float values in [0, 1], got {im.dtype} "
                             "(divide uint8 images by 255)")


def resized_size(height: int, width: int, size: int, keep_aspect: bool) -> tuple[int, int]:
    """The ``(h, w)`` an ``height x width`` image is resized to (see the module docstring)."""
    if not keep_aspect:
        return size, size
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``Tensor[C, H, W]`` to ``size_hw`` (antialiased when shrinking)."""
    if tuple(image.shape[-2:]) == tuple(size_hw):
        return image
    return TF.resize(image, list(size_hw), antialias=True)


def normalize(images: Tensor) -> Tensor:
    """``Tensor[..., 3, H, W]`` in [0, 1] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device)[:, None, None]
    return (images - mean) / std


def pad_batch(images: list[Tensor], stride: int) -> Tensor:
    """Stack ``list[Tensor[C, h_i, w_i]]`` into ``Tensor[B, C, Hp, Wp]``, zero-padded bottom/right.

    ``Hp``/``Wp`` are the largest height/width rounded up to a multiple of ``stride``.
    """
    hp = math.ceil(max(im.shape[-2] for im in images) / stride) * stride
    wp = math.ceil(max(im.shape[-1] for im in images) / stride) * stride
    if all(tuple(im.shape[-2:]) == (hp, wp) for im in images):
        return torch.stack(images)
    out = images[0].new_zeros((len(images), images[0].shape[0], hp, wp))
    for i, im in enumerate(images):
        out[i, :, : im.shape[-2], : im.shape[-1]] = im
    return out


def preprocess(images: list[Tensor], size: int, keep_aspect: bool, stride: int,
               who: str = "model") -> ImageBatch:
    """Normalise, resize (per :func:`resized_size`), pad to a multiple of ``stride`` and batch.

    Args:
        images: ``list[Tensor[3, H, W]]`` float in [0, 1], any sizes.
        size: the target side (longer side, or the square's side).
        keep_aspect: the resize policy of the module docstring.
        stride: the network's output stride; the padded size is a multiple of it.
        who: the model name used in error messages.
    """
    check_images(images, who)
    original = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    sizes = [resized_size(h, w, size, keep_aspect) for h, w in original]
    resized = [normalize(resize_image(im, s)) for im, s in zip(images, sizes)]
    return ImageBatch(pad_batch(resized, stride), sizes, original)


def maps_to_original(maps: Tensor, batch: ImageBatch) -> list[Tensor]:
    """Dense outputs ``Tensor[B, C, h, w]`` -> ``list[Tensor[C, H_i, W_i]]`` at each original size.

    ``maps`` cover the padded batch (at any resolution: the ratio to ``batch.tensor`` is used);
    each map is cropped to its image's area (dropping the padding), then resized bilinearly
    (``align_corners=False``) to the original image size. Used for logits, so a loss against the
    original-resolution ``sem_seg`` and the predictions see the same numbers.
    """
    ry = maps.shape[-2] / batch.tensor.shape[-2]
    rx = maps.shape[-1] / batch.tensor.shape[-1]
    out = []
    for m, (h, w), (oh, ow) in zip(maps, batch.image_sizes, batch.original_sizes):
        m = m[:, : max(1, round(h * ry)), : max(1, round(w * rx))]
        if tuple(m.shape[-2:]) != (oh, ow):
            m = F.interpolate(m[None], size=(oh, ow), mode="bilinear", align_corners=False)[0]
        out.append(m)
    return out


def boxes_to_original(boxes_norm: Tensor, original_size: tuple[int, int]) -> Tensor:
    """``Tensor[..., 4]`` xyxy normalised to [0, 1] of the image -> absolute pixels, clipped.

    Normalised coordinates do not depend on the resize, so they map back per axis even when the
    aspect ratio was not kept.
    """
    h, w = original_size
    scale = boxes_norm.new_tensor([w, h, w, h])
    return boxes_norm.clamp(0, 1) * scale


class MinMaxResize:
    """torchvision's ``GeneralizedRCNNTransform`` for detseg models (Faster / Mask / Keypoint R-CNN).

    The same steps in the same order, so torchvision weights see the same numbers: normalise with
    the ImageNet mean/std, resize bilinearly (``align_corners=False``, no antialiasing) by
    ``scale = min(min_size / shorter side, max_size / longer side)`` with the output size
    ``floor(side * scale)``, zero-pad bottom/right to a multiple of ``size_divisible``. Boxes map
    back per axis (``original / resized``), which the detector does.

    Args:
        min_size: the shorter side after resizing (800 for torchvision's COCO models).
        max_size: the bound on the longer side (1333).
        size_divisible: the padded batch's sides are multiples of it (32).
    """

    def __init__(self, min_size: int = 800, max_size: int = 1333, size_divisible: int = 32) -> None:
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.size_divisible = int(size_divisible)

    def scale(self, height: int, width: int) -> float:
        """The resize factor of a ``height x width`` image."""
        return min(self.min_size / min(height, width), self.max_size / max(height, width))

    def __call__(self, images: list[Tensor]) -> ImageBatch:
        check_images(images, "MinMaxResize")
        original = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        resized = []
        for im, (h, w) in zip(images, original):
            x = normalize(im)
            x = F.interpolate(x[None], scale_factor=self.scale(h, w), mode="bilinear",
                              recompute_scale_factor=True, align_corners=False)[0]
            resized.append(x)
        sizes = [(int(x.shape[-2]), int(x.shape[-1])) for x in resized]
        return ImageBatch(pad_batch(resized, self.size_divisible), sizes, original)


def rescale_boxes(boxes: Tensor, size: tuple[int, int], original: tuple[int, int]) -> Tensor:
    """``Tensor[N, 4]`` xyxy in a resized ``size = (h, w)`` frame -> the ``original (H, W)`` frame.

    The ratios are float32 divisions of the sizes, as in torchvision's ``resize_boxes``, so boxes
    mapped back match torchvision's to the last bit; then clipped to the original image.
    """
    (h, w), (oh, ow) = size, original
    f32 = dict(dtype=torch.float32, device=boxes.device)
    rw = torch.tensor(ow, **f32) / torch.tensor(w, **f32)
    rh = torch.tensor(oh, **f32) / torch.tensor(h, **f32)
    out = boxes * torch.stack([rw, rh, rw, rh]).to(boxes.dtype)
    out[:, 0::2] = out[:, 0::2].clamp(0, ow)
    out[:, 1::2] = out[:, 1::2].clamp(0, oh)
    return out
