"""The one data convention every part of detseg speaks, written down once.

Images
    ``Tensor[3, H, W]`` float32 in ``[0, 1]``, RGB (grayscale files are expanded to 3 channels).
    Batches are plain ``list[Tensor]`` of any sizes; each model owns its resizing/padding.

Per-image target dict (keys present only where the dataset has them)
    ``boxes``      ``Tensor[N, 4]`` float32, ``xyxy`` in absolute pixels of *this* image
                   (0-based, x2/y2 exclusive like torchvision: a 1-pixel box is ``[x, y, x+1, y+1]``).
    ``labels``     ``Tensor[N]`` int64, ``1..num_classes``; ``0`` is reserved for *background*.
                   ``classes[label - 1]`` is the name.
    ``masks``      ``Tensor[N, H, W]`` uint8 in {0, 1}, one per instance.
    ``keypoints``  ``Tensor[N, K, 3]`` float32 ``(x, y, visibility)``; visibility 0 = not labelled
                   (its x, y are meaningless), 1 = labelled but occluded, 2 = visible (COCO).
                   x, y follow torchvision: pixel indices (an integer is a pixel centre), so a
                   horizontal flip maps x to ``W - 1 - x`` (and swaps left/right joints).
    ``sem_seg``    ``Tensor[H, W]`` int64, values index ``seg_classes``; ``IGNORE_INDEX`` (255) = ignore.
    ``image_id``   int, unique within the dataset.
    ``orig_size``  ``Tensor[2]`` int64 ``(H, W)`` of the image as read from disk.

Per-image prediction dict
    The target keys plus ``scores`` (``Tensor[N]``); ``sem_seg_logits`` ``Tensor[C, H, W]`` on
    request; single-object models (classification + localization) also give ``class`` (int64
    scalar, 1-based like ``labels``) and ``box`` (``Tensor[4]``). Everything is in the pixel frame
    of the *original* image passed to the model.

Class names
    A dataset exposes ``classes`` (foreground names, ``labels`` index them 1-based) and
    ``seg_classes`` (the names ``sem_seg`` values index, 0-based; for datasets that have a
    background it is ``["background", *classes]``). Keypoint datasets expose ``keypoint_names``
    and ``flip_pairs`` (index pairs swapped by a horizontal flip).

Problems
    Every problem a reader finds is a :class:`Problem` ``(file, field, message)``; readers collect
    them in ``dataset.problems`` and either repair the sample (counted warning) or drop it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

IGNORE_INDEX = 255

TARGET_KEYS = ("boxes", "labels", "masks", "keypoints", "sem_seg", "image_id", "orig_size")

# The 14 joints of the Leeds Sports Pose dataset, in its order (also the shapes-world person).
LSP_KEYPOINTS = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "neck", "head_top",
)
LSP_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9))
# Limbs to draw a skeleton (pairs of joint indices).
LSP_SKELETON = (
    (0, 1), (1, 2), (2, 8), (5, 4), (4, 3), (3, 9), (6, 7), (7, 8), (11, 10), (10, 9),
    (8, 12), (9, 12), (12, 13),
)


class Problem(NamedTuple):
    """One thing wrong with the input data: which file, which field, what is wrong."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


@dataclass
class ModelOutput:
    """What every detseg model returns, in train and eval mode alike.

    ``losses`` is filled whenever targets are given (so validation loss needs no code edits);
    ``predictions`` is filled in eval mode (and in train mode when the model is asked to).
    """

    losses: dict[str, Tensor] = field(default_factory=dict)
    predictions: list[dict[str, Tensor]] | None = None

    @property
    def loss(self) -> Tensor:
        """The sum of all losses (what the optimizer minimises)."""
        if not self.losses:
            raise ValueError("no losses: call the model with targets")
        return sum(self.losses.values())  # type: ignore[return-value]


def empty_target(height: int, width: int, image_id: int = 0) -> dict[str, Tensor]:
    """A target with no objects, in the convention above."""
    return {
        "boxes": torch.zeros((0, 4), dtype=torch.float32),
        "labels": torch.zeros((0,), dtype=torch.int64),
        "image_id": image_id,
        "orig_size": torch.tensor([height, width], dtype=torch.int64),
    }


def masks_to_boxes(masks: Tensor) -> Tensor:
    """``Tensor[N, H, W]`` -> ``Tensor[N, 4]`` xyxy, x2/y2 exclusive (empty masks give zeros).

    Vectorised (it runs in every training sample's transform): first/last occupied row and column.
    """
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    m = masks.bool()
    rows, cols = m.any(2), m.any(1)  # [N, H], [N, W]
    y1 = rows.byte().argmax(1)
    y2 = h - rows.flip(1).byte().argmax(1)
    x1 = cols.byte().argmax(1)
    x2 = w - cols.flip(1).byte().argmax(1)
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    boxes[~rows.any(1)] = 0
    return boxes
