"""Export: a model's network core to ONNX, and running the file with onnxruntime.

- :mod:`~detseg.export.adapters` -- per model family: the traced core, and the model's own
  pre/post-processing around it;
- :mod:`~detseg.export.onnx` -- ``export_onnx(model, path, dynamic, opset)`` and the file's metadata;
- :mod:`~detseg.export.runtime` -- :class:`OnnxModel`: the file behind the detseg model protocol
  (``detseg.load("model.onnx")``, ``detseg predict``/``eval`` on it).

Nothing here is imported by model code: models carry no export workarounds.
"""

from detseg.export.adapters import NotExportable, adapter_for
from detseg.export.onnx import export_onnx

__all__ = ["NotExportable", "adapter_for", "export_onnx"]
