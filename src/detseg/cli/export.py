"""The ``detseg export`` verb: a checkpoint's network core to an ONNX file (:mod:`detseg.export`).

    detseg export CHECKPOINT --format onnx [--dynamic] [--opset N] [--out FILE] [-o KEY=VALUE]

The file's metadata states the pre/post-processing it needs; ``detseg predict``, ``detseg eval``
and ``detseg.load`` run it with onnxruntime. Models without an ONNX form say why in one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from detseg.cli.common import parse_opts

FORMATS = ("onnx",)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``export CHECKPOINT --format onnx [--dynamic] [--opset N] [--out FILE]``."""
    p = subparsers.add_parser(
        "export", help="export a checkpoint's network to ONNX (pre/post-processing in its metadata)",
        description="Export the network core of a checkpoint (tensors in, raw tensors out) to "
        "ONNX; the metadata names the builder, classes, input size and normalisation, outputs and "
        "post-processing. `detseg predict FILE.onnx`, `detseg eval FILE.onnx` and "
        "detseg.load('FILE.onnx') run it with onnxruntime.")
    p.add_argument("checkpoint", help="a detseg checkpoint (.pt)")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--dynamic", action="store_true",
                   help="free batch and spatial axes (default: one image of the exported size)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output file (default: the checkpoint's path with .onnx)")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model option that keeps the weights before exporting "
                        "(e.g. crf=false)")
    return p


def run(args) -> int:
    from detseg.engine.checkpoint import load_model
    from detseg.export.onnx import DEFAULT_OPSET, export_onnx

    model = load_model(args.checkpoint, device="cpu", **parse_opts(args.opt))
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(".onnx")
    path = export_onnx(model, out, dynamic=args.dynamic, opset=args.opset or DEFAULT_OPSET)
    size = path.stat().st_size / 2 ** 20
    print(f"{model.builder_name} -> {path} ({size:.1f} MiB, opset {args.opset or DEFAULT_OPSET}, "
          f"{'dynamic' if args.dynamic else 'fixed'} shapes)")
    return 0
