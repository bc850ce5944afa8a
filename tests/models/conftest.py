"""Fixtures shared by the model tests: a seeded tiny-model factory, a two-image batch drawn from a
seeded generator, and a short training loop for the overfit tests."""

from typing import Any, Callable

import pytest
import torch
from torch import Tensor, nn

from detseg.models.zoo import build_model


@pytest.fixture
def tiny_model() -> Callable[..., nn.Module]:
    """``tiny_model(name, classes, **kw)``: zoo model ``name`` at ``img_size=64`` on the ``simple``
    backbone, its weights drawn after ``torch.manual_seed(0)`` so every call builds the same one."""

    def build(name: str, classes: list[str], **kw: Any) -> nn.Module:
        torch.manual_seed(0)
        return build_model(name, classes, img_size=64, backbone="simple", **kw)

    return build


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator seeded with 0: the fixtures' random tensors do not touch the global seed."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def images(generator: torch.Generator) -> list[Tensor]:
    """Two random images of different sizes and aspect ratios: ``[3, 100, 80]`` and ``[3, 64, 64]``
    (the ``generator`` fixture then goes on to draw the targets)."""
    return [torch.rand(3, 100, 80, generator=generator), torch.rand(3, 64, 64, generator=generator)]


@pytest.fixture
def train_steps() -> Callable[..., tuple[float, float]]:
    """``train_steps(model, images, targets, lr, steps) -> (first loss, last loss)`` with Adam."""

    def run(model: nn.Module, ims: list[Tensor], tgs: list[dict[str, Tensor]], lr: float,
            steps: int) -> tuple[float, float]:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        losses = []
        for _ in range(steps):
            loss = model(ims, tgs).loss
            losses.append(loss.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
        return losses[0], losses[-1]

    return run
