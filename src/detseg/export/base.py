"""What an exported file computes, and what detseg does around it, for each model family.

An ONNX file holds a model's *network core*: tensors in, raw tensors out (class scores, boxes
normalised to the image, heatmaps, per-region scores and box deltas). What comes before (resize,
normalise, pad; proposals and their RoI rows; R-CNN's warped crops) and after (crop and resize
logits back, argmax; decode boxes, score threshold, per-class NMS; heatmap argmax) stays in detseg,
in the model's own methods, so the PyTorch model and :class:`~detseg.export.runtime.OnnxModel`
share one implementation of each. An :class:`Adapter` per family says:

- :meth:`Adapter.core`: the ``nn.Module`` that is traced (``torch.onnx.export``);
- :meth:`Adapter.prepare`: ``images -> (named input tensors, context)``, with the model's own
  preprocessing (``fixed_hw``: pad the batch to the exported spatial size of a non-dynamic file);
- :meth:`Adapter.finish`: ``(named raw outputs, context) -> predictions``, with the model's own
  post-processing;
- :meth:`Adapter.describe`: the inputs, outputs and pre/post-processing written into the file's
  metadata (so another runtime can reproduce them);
- :meth:`Adapter.run`: prepare, run the file, finish -- or, for a file of several *stages*
  (:meth:`Adapter.stages`: the RPN detectors, :mod:`detseg.export.detectors`), each stage in turn
  with the model's own code between them; :meth:`Adapter.torch_runner` runs the traced core's
  stage for the same inputs in PyTorch (parity);
- :meth:`Adapter.restore`: puts back what the file's metadata holds and the builder arguments do
  not (YOLO's data-fitted anchors).

The model passed to ``prepare``/``finish`` only lends its configuration and methods; its weights
are not used there (the runtime builds one from the recorded builder name and arguments).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.models.transform import IMAGENET_MEAN, IMAGENET_STD, ImageBatch


class NotExportable(ValueError):
    """A model (or an option of it) that has no ONNX form; the message says why, in one line."""


def _pad_to(batch: ImageBatch, fixed_hw: tuple[int, int] | None) -> ImageBatch:
    """``batch`` zero-padded at the bottom/right to ``fixed_hw`` (a non-dynamic file's input)."""
    if fixed_hw is None or tuple(batch.tensor.shape[-2:]) == tuple(fixed_hw):
        return batch
    h, w = batch.tensor.shape[-2:]
    if h > fixed_hw[0] or w > fixed_hw[1]:
        raise ValueError(f"onnx: a preprocessed image of {h}x{w} does not fit the exported "
                         f"input {fixed_hw[0]}x{fixed_hw[1]} (export with --dynamic)")
    padded = F.pad(batch.tensor, (0, fixed_hw[1] - w, 0, fixed_hw[0] - h))
    return ImageBatch(padded, batch.image_sizes, batch.original_sizes)


def _padded_side(size: int, stride: int) -> int:
    return math.ceil(size / stride) * stride


def _preprocess_meta(img_size: int, keep_aspect: bool, stride: int) -> dict[str, Any]:
    return {"img_size": img_size, "resize": ("longer side to img_size, aspect kept" if keep_aspect
                                             else "img_size x img_size square, aspect not kept"),
            "antialias": True, "input_range": "RGB float in [0, 1] before normalisation",
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "pad": f"zeros at the bottom/right to a multiple of {stride} (after normalisation)"}


class Adapter:
    """One model family's export core and its pre/post-processing (module docstring)."""

    family = ""
    input_names: tuple[str, ...] = ("images",)
    output_names: tuple[str, ...] = ()

    def __init__(self, model):
        self.model = model

    def core(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def example_hw(self) -> tuple[int, int]:
        """The spatial size of the traced input (and of a non-dynamic file's input)."""
        s = _padded_side(self.model.img_size, self.stride())
        return s, s

    def stride(self) -> int:
        return 1

    def example_inputs(self) -> tuple[Tensor, ...]:
        return (torch.zeros(1, 3, *self.example_hw()),)

    def dynamic_axes(self, dynamic: bool) -> dict[str, dict[int, str]]:
        """The free axes when ``dynamic`` (per-region axes are always free)."""
        if not dynamic:
            return {}
        # Square resizes (cls_loc, pose): the spatial size never changes, only the batch.
        axes = {"images": {0: "batch"}}
        for name in self.output_names:
            axes[name] = {0: "batch"}
        return axes

    def stages(self) -> dict[str, tuple[list[str], list[str]]] | None:
        """``{stage: (input names, output names)}`` of a file run in several steps, else ``None``."""
        return None

    def restore(self, meta: dict[str, Any]) -> None:
        """Set what the file's metadata records beyond the builder arguments (default: nothing)."""

    def torch_runner(self, core: nn.Module) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
        """``inputs -> outputs`` by name, computed by ``core`` (:meth:`core`) in PyTorch."""
        def run(inputs: dict[str, Tensor]) -> dict[str, Tensor]:
            out = core(*inputs.values())
            return dict(zip(self.output_names, out if isinstance(out, tuple) else (out,)))
        return run

    def run(self, run_core: Callable[[dict[str, Tensor]], dict[str, Tensor]], images: list[Tensor],
            fixed_hw: tuple[int, int] | None = None, targets: list[dict] | None = None,
            **kwargs: Any) -> list[dict[str, Tensor]]:
        """Predictions for ``images``, the file's part computed by ``run_core``."""
        inputs, ctx = self.prepare(images, fixed_hw, targets)
        return self.finish(run_core(inputs), ctx, **kwargs)

    def prepare(self, images: list[Tensor], fixed_hw: tuple[int, int] | None = None,
                targets: list[dict] | None = None) -> tuple[dict[str, Tensor], Any]:
        raise NotImplementedError  # pragma: no cover

    def finish(self, outputs: dict[str, Tensor], ctx: Any, **kwargs: Any) -> list[dict[str, Tensor]]:
        raise NotImplementedError  # pragma: no cover

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover
