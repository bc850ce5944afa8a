"""Running an exported ``.onnx`` file with onnxruntime, behind the detseg model protocol.

:class:`OnnxModel` reads the file's metadata (:mod:`detseg.export.onnx`), rebuilds the zoo model
it came from with its recorded builder arguments -- only to lend its pre/post-processing methods
(:mod:`detseg.export.adapters`); the weights that run are the file's -- and answers
``model(images)`` with a :class:`~detseg.structures.ModelOutput` whose ``predictions`` follow the
detseg convention, and ``model.predict(...)`` with ``list[Results]``, like a
:class:`~detseg.models.base.DetsegModel` in eval mode. So ``detseg predict``, ``detseg eval`` and
``detseg.load`` take the file as they take a checkpoint. There are no losses (an ONNX core has no
criterion): ``detseg eval`` reports metrics only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detseg.export.adapters import Adapter, adapter_for
from detseg.export.onnx import read_metadata
from detseg.models.base import DetsegModel
from detseg.structures import ModelOutput

# Builder options that only change what detseg does around the file (proposals, thresholds).
POSTPROCESS_OPTIONS = ("score_thresh", "nms_thresh", "detections_per_img", "proposals",
                       "num_proposals", "proposal_cache", "return_logits")


def _ort():
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - the export extra is missing
        raise ImportError("running .onnx files needs onnxruntime: pip install 'detseg[export]'") from None
    return onnxruntime


class OnnxModel:
    """An exported detseg model run by onnxruntime (module docstring).

    Args:
        path: the ``.onnx`` file written by ``detseg export``.
        device: ``cpu`` (default), ``auto`` or ``cuda``: CUDA runs when onnxruntime has its
            provider, else the CPU.
        threads: onnxruntime's intra-op threads (default: its own choice, all cores).
        options: overrides of the builder options in :data:`POSTPROCESS_OPTIONS`.
    """

    training = False

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None,
                 **options: Any):
        from detseg.models.zoo import build_model

        ort = _ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: onnx model: file not found")
        providers = ["CPUExecutionProvider"]
        if str(device).startswith(("cuda", "auto")) and \
                "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own types for unreadable files
            raise ValueError(f"{self.path}: onnx model: cannot be read ({type(e).__name__}: {e})") from None
        self.meta = read_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        bad = [k for k in options if k not in POSTPROCESS_OPTIONS]
        if bad:
            raise ValueError(f"{self.path}: options {bad} change the exported network; an .onnx "
                             f"file takes only {', '.join(POSTPROCESS_OPTIONS)} (re-export instead)")
        args = {**self.meta["builder_args"], **options}
        if "weights" in args:
            args["weights"] = None  # the file holds the weights; never read pretrained ones
        with torch.no_grad():
            self.shell = build_model(self.meta["builder"], **args).eval()
        self.shell.dataset_info = self.meta.get("dataset_info") or {}
        self.adapter: Adapter = adapter_for(self.shell)
        self.adapter.restore(self.meta)
        self.dynamic = bool(self.meta.get("dynamic"))
        self.fixed_hw = None if self.dynamic else tuple(self.meta["input_hw"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        # A file of several stages (the RPN detectors): one session per stage, cut out of the
        # graph, so that running a stage computes nothing of the others.
        self.stages: dict[str, tuple[list[str], list[str], Any]] = {}
        if self.meta.get("stages"):
            import onnx
            from onnx.utils import Extractor

            extractor = Extractor(onnx.load(str(self.path)))
            for name, io in self.meta["stages"].items():
                part = extractor.extract_model(io["inputs"], io["outputs"])
                self.stages[name] = (io["inputs"], io["outputs"], ort.InferenceSession(
                    part.SerializeToString(), opts, providers=providers))
            self.session = None  # the whole graph is not run as one

    # -- what callers of a DetsegModel read ----------------------------------------------------
    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def dataset_info(self) -> dict[str, Any]:
        return self.shell.dataset_info

    @property
    def builder_name(self) -> str:
        return self.meta["builder"]

    @property
    def builder_args(self) -> dict[str, Any]:
        return dict(self.meta["builder_args"])

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # inputs and outputs live on the CPU; onnxruntime moves them

    def to(self, device) -> "OnnxModel":
        return self

    def eval(self) -> "OnnxModel":
        return self

    def train(self, mode: bool = True) -> "OnnxModel":
        if mode:
            raise ValueError(f"{self.path}: an exported ONNX model cannot be trained")
        return self

    # -- running -------------------------------------------------------------------------------
    def run_core(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The file's raw outputs for prepared inputs (:meth:`Adapter.prepare`), as tensors."""
        feeds = {k: np.ascontiguousarray(v.detach().cpu().float().numpy()) for k, v in inputs.items()}
        if self.stages:
            stage = self.adapter.stage_of(inputs)
            _, names, session = self.stages[stage]
            return {k: torch.from_numpy(v) for k, v in zip(names, session.run(names, feeds))}
        if any(v.shape[0] == 0 for k, v in feeds.items() if k in ("rois", "crops")):
            return self._no_regions()
        outs = self.session.run(self.output_names, feeds)
        return {k: torch.from_numpy(v) for k, v in zip(self.output_names, outs)}

    def _no_regions(self) -> dict[str, Tensor]:
        """Zero-row outputs for an image without proposals (onnxruntime refuses empty RoI sets)."""
        c = self.num_classes
        widths = {"scores": c, "deltas": 4 * c}
        return {k: torch.zeros(0, widths[k]) for k in self.output_names}

    @torch.no_grad()
    def __call__(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None,
                 with_predictions: bool = True, **kwargs: Any) -> ModelOutput:
        """Predictions for ``list[Tensor[3, H, W]]`` (``targets`` are used only by proposals that
        need them, ``proposals='gt'``); ``with_logits=True`` adds semantic logits."""
        images = [im.detach().cpu() for im in images]
        if targets is not None:
            targets = [{k: (v.cpu() if isinstance(v, Tensor) else v) for k, v in t.items()}
                       for t in targets]
        # A fixed-shape file takes one image at a time.
        groups = ([(images, targets)] if self.dynamic else
                  [([im], None if targets is None else [t])
                   for im, t in zip(images, targets or [None] * len(images))])
        preds: list[dict[str, Tensor]] = []
        for ims, tgs in groups:
            preds += self.adapter.run(self.run_core, ims, self.fixed_hw, tgs, **kwargs)
        return ModelOutput(predictions=preds)

    def predict(self, images, conf: float = 0.0):
        """Like :meth:`DetsegModel.predict`: ``list[Results]`` for paths, arrays or tensors."""
        # The same loop as a PyTorch model's (load, run, threshold, wrap); it only calls
        # eval/train/device/__call__, which this class provides.
        return DetsegModel.predict(self, images, conf=conf)

    def __repr__(self) -> str:
        return (f"OnnxModel({str(self.path)!r}, builder={self.builder_name!r}, task={self.task!r}, "
                f"dynamic={self.dynamic})")


def load_onnx(path: str | Path, device: str = "cpu", **options: Any) -> OnnxModel:
    """``detseg.load`` for ``.onnx`` files."""
    return OnnxModel(path, device=device, **options)
