"""IoU matcher: each prediction (proposal / anchor) gets a ground-truth box and a quality label.

Detectron2's ``modeling/matcher.py`` design (Girshick et al., "Rich feature hierarchies ...", 2014,
and the later R-CNN papers): a sorted list of IoU thresholds cuts ``[0, 1]`` into bands and each band
gets a label, so the usual schemes are all one constructor call:

- R-CNN / Fast R-CNN box head: ``>= 0.5`` object, ``[0.1, 0.5)`` background, ``< 0.1`` ignored::

      Matcher([0.1, 0.5], [IGNORE, NEGATIVE, POSITIVE])

- Faster R-CNN's RPN: ``< 0.3`` negative, ``[0.3, 0.7)`` ignored, ``>= 0.7`` positive, plus the
  best prediction of every ground-truth box::

      Matcher([0.3, 0.7], [NEGATIVE, IGNORE, POSITIVE], allow_low_quality_matches=True)

An image with no objects matches nothing: every prediction gets the label of the lowest band
that is not ``IGNORE`` -- in practice background -- so it still trains the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

POSITIVE = 1
NEGATIVE = 0
IGNORE = -1


class Matcher:
    """Assign each of N predictions to one of M ground-truth boxes by a quality matrix (IoU).

    Args:
        thresholds: increasing IoU cut points, e.g. ``[0.3, 0.7]``; the bands are
            ``[0, t0), [t0, t1), ..., [tk, 1]`` (a value equal to a threshold falls in the upper band).
        labels: one label per band (``len(thresholds) + 1``), each of ``POSITIVE`` (1),
            ``NEGATIVE`` (0) or ``IGNORE`` (-1).
        allow_low_quality_matches: also mark positive, for every ground-truth box, the
            prediction(s) with its highest IoU even when that IoU is below the positive band
            (Faster R-CNN's RPN rule; ties all count), so that no object is left without a match.
    """

    def __init__(self, thresholds: Sequence[float], labels: Sequence[int],
                 allow_low_quality_matches: bool = False) -> None:
        thresholds = [float(t) for t in thresholds]
        if any(b < a for a, b in zip(thresholds, thresholds[1:])):
            raise ValueError(f"Matcher: thresholds must increase, got {thresholds}")
        if len(labels) != len(thresholds) + 1:
            raise ValueError(f"Matcher: need len(thresholds) + 1 = {len(thresholds) + 1} labels, "
                             f"got {len(labels)}")
        if any(lab not in (POSITIVE, NEGATIVE, IGNORE) for lab in labels):
            raise ValueError(f"Matcher: labels must be 1, 0 or -1, got {list(labels)}")
        self.thresholds = [-float("inf"), *thresholds, float("inf")]
        self.labels = [int(lab) for lab in labels]
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, quality: Tensor) -> tuple[Tensor, Tensor]:
        """Match predictions to ground truth.

        Args:
            quality: ``Tensor[M, N]`` pairwise quality (IoU) between M ground-truth boxes and N
                predictions, e.g. ``torchvision.ops.box_iou(gt_boxes, proposals)``. ``M`` may be 0.

        Returns:
            matches: ``Tensor[N]`` int64, the index in ``[0, M)`` of each prediction's best
                ground-truth box (0 when ``M == 0``: meaningless for non-positive predictions).
            match_labels: ``Tensor[N]`` int8, ``1`` positive, ``0`` negative, ``-1`` ignore.
        """
        if quality.dim() != 2:
            raise ValueError(f"Matcher: quality must be [M, N], got shape {tuple(quality.shape)}")
        m, n = quality.shape
        if m == 0:
            # No objects: every prediction is background (the lowest non-ignore label).
            empty_label = next((lab for lab in self.labels if lab != IGNORE), IGNORE)
            return (torch.zeros(n, dtype=torch.int64, device=quality.device),
                    torch.full((n,), empty_label, dtype=torch.int8, device=quality.device))
        best, matches = quality.max(dim=0)
        match_labels = torch.empty(n, dtype=torch.int8, device=quality.device)
        for label, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            match_labels[(best >= low) & (best < high)] = label
        if self.allow_low_quality_matches:
            self._set_low_quality_matches(match_labels, quality)
        return matches, match_labels

    @staticmethod
    def _set_low_quality_matches(match_labels: Tensor, quality: Tensor) -> None:
        """Mark positive every prediction that is some ground-truth box's best (ties included).

        Ground-truth boxes whose best IoU is 0 (no overlapping prediction at all) are skipped:
        matching them to an arbitrary prediction would teach the regressor nonsense.
        """
        best_per_gt, _ = quality.max(dim=1)
        gt_ok = best_per_gt > 0
        if not gt_ok.any():
            return
        is_best = (quality == best_per_gt[:, None]) & gt_ok[:, None]
        match_labels[is_best.any(dim=0)] = POSITIVE
