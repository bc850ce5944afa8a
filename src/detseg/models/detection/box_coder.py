"""Box coder: boxes <-> regression targets ``(dx, dy, dw, dh)`` relative to a reference box.

The parameterisation of R-CNN (Girshick et al. 2014, appendix C) used by every two-stage detector,
written as torchvision's ``models/detection/_utils.py::BoxCoder`` / Detectron2's
``Box2BoxTransform``. For a proposal ``P`` (centre ``px, py``, size ``pw, ph``) and a target ``G``::

    dx = wx * (gx - px) / pw        dy = wy * (gy - py) / ph
    dw = ww * log(gw / pw)          dh = wh * log(gh / ph)

Weights such as ``(10, 10, 5, 5)`` (Fast/Faster R-CNN's box head) scale the targets to roughly unit
variance; ``(1, 1, 1, 1)`` is the RPN's. Widths are ``x2 - x1`` (x2 exclusive, as in
:mod:`detseg.structures`), no ``+ 1``. Decoding clamps ``dw, dh`` at ``log(1000 / 16)`` so that a wild
prediction cannot overflow ``exp`` (torchvision's ``bbox_xform_clip``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """Encode boxes as deltas to reference boxes and decode them back.

    Args:
        weights: ``(wx, wy, ww, wh)`` multipliers of the four deltas.
        scale_clamp: largest ``dw``/``dh`` (after dividing by the weight) applied when decoding.
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 scale_clamp: float = DEFAULT_SCALE_CLAMP) -> None:
        if len(weights) != 4:
            raise ValueError(f"BoxCoder: weights must be 4 numbers (wx, wy, ww, wh), got {weights}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = float(scale_clamp)

    def encode(self, targets: Tensor, references: Tensor) -> Tensor:
        """Regression targets that move ``references`` onto ``targets``.

        Args:
            targets: ``Tensor[N, 4]`` xyxy, the boxes to reach (matched ground truth).
            references: ``Tensor[N, 4]`` xyxy, the boxes regressed from (proposals / anchors);
                they must have positive width and height.

        Returns:
            ``Tensor[N, 4]`` ``(dx, dy, dw, dh)``, already multiplied by the weights.
        """
        if targets.shape != references.shape or targets.shape[-1:] != (4,):
            raise ValueError(f"BoxCoder.encode: targets {tuple(targets.shape)} and references "
                             f"{tuple(references.shape)} must both be [N, 4]")
        wx, wy, ww, wh = self.weights
        pw, ph, px, py = _size_centre(references)
        gw, gh, gx, gy = _size_centre(targets)
        return torch.stack([wx * (gx - px) / pw, wy * (gy - py) / ph,
                            ww * torch.log(gw / pw), wh * torch.log(gh / ph)], dim=1)

    def decode(self, deltas: Tensor, references: Tensor) -> Tensor:
        """Apply ``deltas`` to ``references``.

        Args:
            deltas: ``Tensor[N, 4 * K]``, one ``(dx, dy, dw, dh)`` per reference and class
                (class-specific regression has ``K = num_classes``; plain regression ``K = 1``).
            references: ``Tensor[N, 4]`` xyxy.

        Returns:
            ``Tensor[N, 4 * K]`` xyxy boxes, the same layout as ``deltas`` (not clipped to the image:
            use ``torchvision.ops.clip_boxes_to_image``).
        """
        if deltas.dim() != 2 or deltas.shape[1] % 4 or deltas.shape[0] != references.shape[0]:
            raise ValueError(f"BoxCoder.decode: deltas {tuple(deltas.shape)} must be [N, 4*K] for "
                             f"references {tuple(references.shape)}")
        deltas = deltas.to(references.dtype)
        wx, wy, ww, wh = self.weights
        pw, ph, px, py = (v[:, None] for v in _size_centre(references))
        dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.scale_clamp)
        cx, cy = dx * pw + px, dy * ph + py
        w, h = torch.exp(dw) * pw, torch.exp(dh) * ph
        boxes = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=2)
        return boxes.reshape(deltas.shape)


def _size_centre(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``Tensor[N, 4]`` xyxy -> widths, heights, centre x, centre y (each ``Tensor[N]``)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return w, h, boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
