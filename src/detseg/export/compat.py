"""Exportable stand-ins for the layers PyTorch's TorchScript ONNX exporter cannot write.

Applied to a *copy* of the traced core by :func:`exportable` (model code is never changed):

- ``nn.MaxUnpool2d`` (SegNet, FCN ``upsample=max_unpool``): the exporter has no symbolic for
  ``max_unpool2d`` (and ``F.max_unpool2d`` checks traced sizes as Python bools). Max-unpooling *is* a
  scatter of each value to the flat position its max-pool recorded, per ``(image, channel)`` plane:
  ``zeros[B, C, H * W].scatter(2, indices, values)`` -- ONNX ``ScatterElements``, the same numbers
  (pools with ``stride >= kernel``, as detseg's, never record a position twice).
- ``nn.AdaptiveAvgPool2d`` whose input size is not a multiple of its output size (cls_loc's and
  DeepPose's ``pool x pool`` grid on a small map): ONNX has no adaptive pooling. The input size is
  fixed (those models resize to a square), so the pooling is a fixed linear map per axis,
  ``P_h @ x @ P_w^T`` with ``P[i, j] = 1 / |bin i|`` for ``j`` in PyTorch's bin ``i``
  (``floor(i * n / o) .. ceil((i + 1) * n / o)``).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn


class ScatterMaxUnpool(nn.Module):
    """``nn.MaxUnpool2d`` as a scatter (module docstring); same call signature."""

    def __init__(self, unpool: nn.MaxUnpool2d):
        super().__init__()
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
        self.kernel, self.stride, self.padding = (pair(unpool.kernel_size), pair(unpool.stride),
                                                  pair(unpool.padding))

    def forward(self, x: Tensor, indices: Tensor, output_size=None) -> Tensor:
        b, c = x.shape[0], x.shape[1]
        if output_size is not None:
            h, w = output_size[-2], output_size[-1]
        else:
            h = (x.shape[-2] - 1) * self.stride[0] - 2 * self.padding[0] + self.kernel[0]
            w = (x.shape[-1] - 1) * self.stride[1] - 2 * self.padding[1] + self.kernel[1]
        out = x.new_zeros((b, c, h * w))
        out = out.scatter(2, indices.flatten(2), x.flatten(2))
        return out.view(b, c, h, w)


def _bins(n: int, o: int) -> Tensor:
    """``Tensor[o, n]``: row ``i`` averages PyTorch's adaptive-pooling bin ``i`` of ``n`` inputs."""
    m = torch.zeros(o, n)
    for i in range(o):
        start, end = (i * n) // o, math.ceil((i + 1) * n / o)
        m[i, start:end] = 1.0 / (end - start)
    return m


class FixedAdaptiveAvgPool(nn.Module):
    """``nn.AdaptiveAvgPool2d`` for one known input size, as two matrix products."""

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]):
        super().__init__()
        self.register_buffer("rows", _bins(in_hw[0], out_hw[0]))
        self.register_buffer("cols", _bins(in_hw[1], out_hw[1]).t().contiguous())

    def forward(self, x: Tensor) -> Tensor:
        return self.rows.to(x.dtype) @ x @ self.cols.to(x.dtype)


def _out_hw(pool: nn.AdaptiveAvgPool2d, in_hw: tuple[int, int]) -> tuple[int, int]:
    size = pool.output_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    return tuple(in_hw[i] if s is None else int(s) for i, s in enumerate(size))  # type: ignore


def exportable(core: nn.Module, example_inputs: tuple[Tensor, ...]) -> nn.Module:
    """A copy of ``core`` with the stand-ins above swapped in where needed."""
    core = copy.deepcopy(core)
    seen: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, m in core.named_modules():
        if isinstance(m, nn.AdaptiveAvgPool2d):
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args, name=name: seen.__setitem__(name, tuple(args[0].shape[-2:]))))
    if hooks:
        with torch.no_grad():
            core(*example_inputs)
        for h in hooks:
            h.remove()
    for name, m in list(core.named_modules()):
        new = None
        if isinstance(m, nn.MaxUnpool2d):
            new = ScatterMaxUnpool(m)
        elif isinstance(m, nn.AdaptiveAvgPool2d) and name in seen:
            in_hw, out_hw = seen[name], _out_hw(m, seen[name])
            if any(i % o for i, o in zip(in_hw, out_hw)):
                new = FixedAdaptiveAvgPool(in_hw, out_hw)
        if new is not None:
            parent_name, _, attr = name.rpartition(".")
            setattr(core.get_submodule(parent_name) if parent_name else core, attr, new)
    return core
