"""Optimizers and learning-rate schedules: linear warm-up, then cosine or step decay.

The schedule is a per-iteration ``LambdaLR`` (like Detectron2's ``WarmupCosineLR`` /
``WarmupMultiStepLR``), so a resumed run continues it exactly from the saved state.

Under a time budget (``detseg train --time-limit``) the decay follows the *budget*, not the
planned epochs: progress is ``max(iterations done / planned, time spent / budget)``, so the
learning rate reaches its floor when the budget runs out however many epochs fit — the
"budget-aware schedule" of Li, Yumer, Ramanan, "Budgeted Training: Rethinking Deep Neural Network
Training Under Resource Constraints", ICLR 2020. A run cut by a budget therefore ends annealed
instead of at a high learning rate in the middle of a cosine.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD (momentum 0.9) or AdamW; no weight decay on norm layers and biases."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"optimizer: unknown {name!r} (choose sgd or adamw)")


def lr_factor(it: int, total: int, warmup: int, schedule: str, warmup_factor: float = 0.001,
              min_factor: float = 0.01, spent: float = 0.0) -> float:
    """Multiplier of the base learning rate at iteration ``it`` of ``total``.

    ``spent``: fraction of a time budget used so far (0 without a budget); the decay is at
    whichever is further along, the iterations or the budget.
    """
    if warmup > 0 and it < warmup:
        alpha = it / warmup
        return warmup_factor * (1 - alpha) + alpha
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        t = max((it - warmup) / max(1, total - warmup), spent)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    if schedule == "step":  # x0.1 at 2/3 and 8/9 of training, the classic detection schedule
        t = max(it / max(1, total), spent)
        return 0.1 ** sum(t >= f for f in (2 / 3, 8 / 9))
    raise ValueError(f"schedule: unknown {schedule!r} (choose cosine, step or constant)")


def build_scheduler(optimizer: torch.optim.Optimizer, total_iters: int, warmup_iters: int,
                    schedule: str, budget_spent: Callable[[], float] | None = None,
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """``budget_spent()``: the fraction of a time budget used so far (see the module docstring)."""
    lr_factor(0, total_iters, warmup_iters, schedule)  # validate the name early
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, total_iters, warmup_iters, schedule,
                                        spent=budget_spent() if budget_spent else 0.0)
    )
