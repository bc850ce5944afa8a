"""ONNX export of a detseg model's network core, with its pre/post-processing in the metadata.

``export_onnx(model, path)`` traces the family's core (:mod:`detseg.export.adapters`) with
PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``: no extra
dependency, and torchvision registers its ``roi_pool``/``roi_align`` there), then writes into the
file's ``metadata_props`` everything needed to use it without detseg's Python classes: the detseg
version, the zoo builder name and arguments (so ``detseg.load`` rebuilds the pre/post-processing),
classes, task, dataset names, input size and normalisation, the inputs and outputs and their
meaning, and the post-processing (decode, thresholds, NMS). Every metadata value is a string;
structured ones are JSON.

Without ``dynamic`` the file takes one image of the exported size (``img_size`` rounded up to
the network stride, square): a smaller preprocessed image is zero-padded to it, which is the
model's own padding for square images and close to it otherwise; with ``dynamic`` the batch and
spatial axes are free, so any batch gives PyTorch's numbers. Per-region axes (proposals, crops)
are always free.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from detseg.export.adapters import adapter_for
from detseg.export.compat import exportable
from detseg.io import atomic_path

FORMAT = "detseg-onnx-1"
DEFAULT_OPSET = 17


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - the export extra is missing
        raise ImportError("ONNX export needs the onnx package: pip install 'detseg[export]'") from None
    return onnx


def export_onnx(model, path: str | Path, dynamic: bool = False,
                opset: int = DEFAULT_OPSET) -> Path:
    """Export ``model``'s network core to ``path`` (see the module docstring); returns the path.

    Raises:
        NotExportable: the model (or an option such as DeepLab's CRF) has no ONNX form.
    """
    onnx = _onnx()
    adapter = adapter_for(model)
    was_training = model.training
    model.eval()
    example = adapter.example_inputs()
    core = exportable(adapter.core(), example).eval()
    path = Path(path)
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings():
            # The TorchScript exporter announces its deprecation and warns about traced Python ints
            # that are constants here (sizes fixed by the model's configuration).
            warnings.simplefilter("ignore")
            torch.onnx.export(core, example, str(tmp), dynamo=False,
                              opset_version=opset, input_names=list(adapter.input_names),
                              output_names=list(adapter.output_names),
                              dynamic_axes=adapter.dynamic_axes(dynamic) or None,
                              do_constant_folding=True)
            proto = onnx.load(str(tmp))
            onnx.checker.check_model(proto)
            set_metadata(proto, metadata(model, adapter, dynamic, opset))
            onnx.save(proto, str(tmp))
    finally:
        model.train(was_training)
    return path


def metadata(model, adapter, dynamic: bool, opset: int) -> dict[str, str]:
    """The ``metadata_props`` of an exported file (module docstring), all values strings."""
    from detseg import __version__

    h, w = adapter.example_hw()
    desc = adapter.describe()
    inputs = desc.pop("inputs", {"images": "float Tensor[B, 3, H, W] normalised, padded batch"})
    shape = ("batch, height and width free" if dynamic else f"fixed [1, 3, {h}, {w}]: pad each "
             "preprocessed image at the bottom/right to it")
    info: dict[str, Any] = {
        "format": FORMAT, "detseg_version": __version__, "builder": model.builder_name,
        "builder_args": model.builder_args, "task": model.task, "classes": model.classes,
        "dataset_info": getattr(model, "dataset_info", {}) or {}, "family": adapter.family,
        "dynamic": dynamic, "input_hw": [h, w], "opset": opset,
        "input_shape": shape, "inputs": inputs, **desc,
        "output_names": list(adapter.output_names),
    }
    return {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in info.items()}


def set_metadata(proto, values: dict[str, str]) -> None:
    """Replace ``proto``'s ``metadata_props`` by ``values``."""
    del proto.metadata_props[:]
    for k, v in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v


def read_metadata(props: dict[str, str], path: str | Path = "model.onnx") -> dict[str, Any]:
    """Decoded ``metadata_props`` (JSON values parsed); a clear error for a foreign file."""
    if props.get("format") != FORMAT:
        raise ValueError(f"{path}: onnx metadata: no 'format' = {FORMAT!r}; not a file written "
                         "by `detseg export`")
    out: dict[str, Any] = {}
    for k, v in props.items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    for key in ("builder", "builder_args", "classes", "task", "family"):
        if key not in out:
            raise ValueError(f"{path}: onnx metadata: missing {key!r}")
    return out
