"""Random weights that make decisive predictions: for parity and latency checks of untrained models.

PyTorch's default initialisation leaves a fresh detector's scores near-uniform, so its outputs
(which boxes survive NMS, which class wins a pixel) hinge on float rounding, and an exported copy
can disagree on ties that no trained model would produce. He-scaled weights, batch-norm scales
around 1 and seeded running statistics give spread scores and stable decisions instead.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def decisive_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill ``model``'s parameters and batch-norm statistics from a seeded generator; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.dim() > 1:  # He-scaled weights
                p.copy_(noise * math.sqrt(2 / p[0].numel()))
            elif name.endswith("weight"):  # batch-norm scales around 1
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(1 + torch.rand(m.running_var.shape, generator=g))
    return model.eval()
