"""Fixtures shared by the model tests: a seeded tiny-model factory, a two-image batch (with random
3-class ``sem_seg`` targets) drawn from a seeded generator, a four-image batch a segmenter can
overfit, a short training loop, and the conv layer an image meets first.

Fixtures, not importable helpers: pytest runs with ``--import-mode=importlib``, so test modules
cannot import each other (or this file)."""

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
def batch(images: list[Tensor],
          generator: torch.Generator) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """``(images, targets)``: the ``images`` fixture with uniform random ``sem_seg`` labels in
    ``0..2`` (``Tensor[H_i, W_i]`` int64) at each image's own size."""
    tgs = [{"sem_seg": torch.randint(0, 3, im.shape[1:], generator=generator)} for im in images]
    return images, tgs


@pytest.fixture
def shapes_batch() -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """Four dim ``[3, 32, 32]`` images, each with one 16 x 16 square shifted by a pixel per image:
    class 1 (brightened by 0.3) or 2 (by 0.6) on background 0: a batch a tiny segmenter overfits."""
    gen = torch.Generator().manual_seed(0)
    ims, tgs = [], []
    for i in range(4):
        im = torch.rand(3, 32, 32, generator=gen) * 0.2
        seg = torch.zeros(32, 32, dtype=torch.int64)
        seg[4 + i: 20 + i, 6:22] = 1 + i % 2
        im[:, seg > 0] += 0.6 if i % 2 else 0.3
        ims.append(im)
        tgs.append({"sem_seg": seg})
    return ims, tgs


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


@pytest.fixture
def first_conv() -> Callable[[nn.Module, list[Tensor]], nn.Conv2d]:
    """``first_conv(model, images)``: the ``nn.Conv2d`` that runs first when ``model`` sees
    ``images`` — the layer the image meets first. It runs in eval mode without gradients (batch
    norm statistics stay as they were) and puts ``model`` back in its mode."""

    def find(model: nn.Module, ims: list[Tensor]) -> nn.Conv2d:
        called: list[nn.Conv2d] = []
        hooks = [m.register_forward_pre_hook(lambda mod, args: called.append(mod))
                 for m in model.modules() if isinstance(m, nn.Conv2d)]
        training = model.training
        try:
            with torch.no_grad():
                model.eval()(ims)
        finally:
            model.train(training)
            for h in hooks:
                h.remove()
        assert called, f"{type(model).__name__}: no nn.Conv2d ran"
        return called[0]

    return find
