"""Balanced positive/negative sampling of the predictions that enter a detection loss.

Torchvision's ``BalancedPositiveNegativeSampler`` / Detectron2's ``subsample_labels``: an image
yields thousands of background regions and a handful of objects, so each image contributes a fixed
mini-batch of at most ``batch_size_per_image`` regions of which at most ``positive_fraction`` are
positive; the negatives fill the rest. R-CNN's fine-tuning batches (Girshick et al. 2014, sec. 2.3:
32 positive windows and 96 background windows) are ``BalancedSampler(128, 0.25)``.

Random draws use ``torch.randperm`` with an optional ``torch.Generator``: results are reproducible
under ``torch.manual_seed`` (or a seeded generator).
"""

from __future__ import annotations

import torch
from torch import Tensor


class BalancedSampler:
    """Pick positives and negatives of one image.

    Args:
        batch_size_per_image: regions kept per image (positives + negatives), e.g. 128.
        positive_fraction: upper bound on the share of positives, e.g. 0.25. When an image has
            fewer positives, negatives fill the batch (torchvision and Detectron2 do the same).
        generator: optional ``torch.Generator`` for the draws (default: torch's global RNG).
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float,
                 generator: torch.Generator | None = None) -> None:
        if batch_size_per_image < 1:
            raise ValueError(f"BalancedSampler: batch_size_per_image must be >= 1, got {batch_size_per_image}")
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"BalancedSampler: positive_fraction must be in [0, 1], got {positive_fraction}")
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)
        self.generator = generator

    def __call__(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Sample one image's regions.

        Args:
            labels: ``Tensor[N]`` int, ``-1`` ignore, ``0`` negative (background), ``>= 1`` positive
                (a class label or the matcher's ``1``).

        Returns:
            pos_idx: ``Tensor[P]`` int64 indices into ``labels`` of the chosen positives.
            neg_idx: ``Tensor[Q]`` int64 indices of the chosen negatives, ``P + Q <= batch_size``.
        """
        if labels.dim() != 1:
            raise ValueError(f"BalancedSampler: labels must be [N], got shape {tuple(labels.shape)}")
        positive = torch.nonzero(labels >= 1).flatten()
        negative = torch.nonzero(labels == 0).flatten()
        num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
        num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
        return self._choose(positive, num_pos), self._choose(negative, num_neg)

    def _choose(self, indices: Tensor, k: int) -> Tensor:
        """``k`` of ``indices`` without replacement, uniformly at random, in drawn order."""
        perm = torch.randperm(indices.numel(), generator=self.generator, device="cpu")[:k]
        return indices[perm.to(indices.device)]

    def masks(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The same draw as boolean masks: ``(pos_mask, neg_mask)``, each ``Tensor[N]`` bool."""
        pos_idx, neg_idx = self(labels)
        pos = torch.zeros_like(labels, dtype=torch.bool)
        neg = torch.zeros_like(labels, dtype=torch.bool)
        pos[pos_idx] = True
        neg[neg_idx] = True
        return pos, neg
