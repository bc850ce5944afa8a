"""onnxruntime vs PyTorch CPU latency of every exportable family, with the parity of each file.

    python benchmarks/export.py --repeat 20 --threads 1
    python benchmarks/export.py --only fcn,fast_rcnn --repeat 50 --threads 2

For each family (:data:`CASES`: the zoo defaults at ``--img-size``, random init -- latency does
not depend on training; the detectors use sliding-window proposals so the timing is the
network's, not selective search's; the RPN detectors a CPU-sized FPN, their ``--img-size`` the
longer side) the model is exported with fixed shapes (``detseg export``'s
default: one image of the exported size) to a temporary folder, then one ``--img-size`` square
image of the shapes world goes through, interleaved per round:

- ``torch_ms`` / ``onnx_ms``: the whole ``model([image])`` call a user pays -- detseg's
  preprocessing and post-processing included (the same code on both sides), the network in
  PyTorch (eval mode, ``no_grad``) or in onnxruntime;
- ``core_torch_ms`` / ``core_onnx_ms``: the network core alone on the prepared inputs;
- ``speedup`` / ``core_speedup``: PyTorch's median over onnxruntime's;
- ``max_core_diff``: the largest absolute difference of any raw output (the parity bound,
  1e-4, is checked by ``tests/export``).

Medians of ``--repeat`` rounds after ``--warmup`` untimed ones; PyTorch and onnxruntime both get
``--threads`` intra-op threads. Results go to ``benchmarks/results/export.json`` (rows keyed by
model and threads, so runs with other thread counts add rows).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from common import append_or_replace, print_rows, stamp

from detseg.data import build_dataset
from detseg.export import adapter_for, export_onnx
from detseg.export.parity import core_diff
from detseg.export.runtime import OnnxModel
from detseg.models.zoo import build_model

SEG = ["background", "circle", "square", "triangle", "person"]
FG = ["circle", "square", "triangle", "person"]
DET = {"proposals": "sliding_window", "num_proposals": 500}
RPN = {"backbone": "alexnet_small_fpn", "fpn_channels": 64, "representation": 256,
       "anchor_sizes": [16, 32, 64, 128, 256]}

# name -> (zoo builder, classes, options); the zoo defaults otherwise.
CASES: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "fcn": ("fcn", SEG, {}),
    "fcn:upsample=max_unpool": ("fcn", SEG, {"upsample": "max_unpool"}),
    "fcn_same_res": ("fcn_same_res", SEG, {}),
    "fcn8s": ("fcn8s", SEG, {}),
    "sliding_window_seg": ("sliding_window_seg", SEG, {}),
    "segnet": ("segnet", SEG, {}),
    "deeplab": ("deeplab", SEG, {}),
    "cls_loc": ("cls_loc", FG, {}),
    "pose_regression": ("pose_regression", ["person"], {}),
    "pose_heatmap": ("pose_heatmap", ["person"], {}),
    "fast_rcnn": ("fast_rcnn", FG, DET),
    "rcnn": ("rcnn", FG, DET),
    "sliding_window_det": ("sliding_window_det", FG, {}),
    "yolo_v1": ("yolo_v1", FG, {}),
    "yolo": ("yolo", FG, {}),
    "ssd": ("ssd", FG, {}),
    # torchvision's hyper-parameters on a CPU-sized FPN (faster_rcnn's module docstring); the
    # file runs in three stages, and core_* time the first (backbone, FPN, RPN head)
    "faster_rcnn": ("faster_rcnn", FG, RPN),
    "mask_rcnn": ("mask_rcnn", FG, RPN),
    "keypoint_rcnn": ("keypoint_rcnn", ["person"], RPN),
}


def time_ms(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> list[float]:
    """Milliseconds of each of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def interleaved(fns: dict[str, Callable[[], Any]], repeat: int, warmup: int = 1) -> dict[str, float]:
    """Median ms of each function, timed round by round (``a b c a b c ...``) so that a change of
    machine load hits every function alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            times[k] += time_ms(fn, 1, warmup=0)
    return {k: statistics.median(v) for k, v in times.items()}


def shapes_image(size: int) -> torch.Tensor:
    """One ``size x size`` image of the shapes world (val split)."""
    ds = build_dataset(f"shapes:size={size},n=2", split="val", task="detection")
    return ds[0][0]


def bench_case(name: str, builder: str, classes: list[str], options: dict[str, Any],
               img_size: int, repeat: int, warmup: int, threads: int,
               folder: Path) -> dict[str, Any]:
    """One record: the latencies and parity of one family (module docstring)."""
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = build_model(builder, classes, img_size=img_size, **options).eval()
    path = export_onnx(model, folder / f"{name.replace(':', '_').replace('=', '-')}.onnx")
    onnx_model = OnnxModel(path, threads=threads)
    image = shapes_image(img_size)
    inputs, _ = onnx_model.adapter.prepare([image], onnx_model.fixed_hw)
    core = adapter_for(model).core().eval()

    def torch_call():
        with torch.no_grad():
            model([image])

    def torch_core():
        with torch.no_grad():
            core(*inputs.values())

    medians = interleaved({"torch": torch_call, "onnx": lambda: onnx_model([image]),
                           "core_torch": torch_core, "core_onnx": lambda: onnx_model.run_core(inputs)},
                          repeat, warmup)
    diffs = core_diff(model, onnx_model, [image])
    return {"benchmark": "export", "model": name, "builder": builder, "img_size": img_size,
            "threads": threads, "torch_ms": round(medians["torch"], 2),
            "onnx_ms": round(medians["onnx"], 2),
            "speedup": round(medians["torch"] / medians["onnx"], 2),
            "core_torch_ms": round(medians["core_torch"], 2),
            "core_onnx_ms": round(medians["core_onnx"], 2),
            "core_speedup": round(medians["core_torch"] / medians["core_onnx"], 2),
            "max_core_diff": float(f"{max(diffs.values()):.2e}"),
            "onnx_mib": round(path.stat().st_size / 2 ** 20, 2), "repeat": repeat}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help=f"comma-separated cases (of {', '.join(CASES)})")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes")
    p.add_argument("--no-write", action="store_true", help="print only, write no results file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, cases: dict[str, tuple] | None = None) -> list[dict]:
    args = parse_args(argv)
    cases = cases or CASES
    names = args.only.split(",") if args.only else list(cases)
    unknown = [n for n in names if n not in cases]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {', '.join(cases)}")
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in names:
            builder, classes, options = cases[n]
            rec = bench_case(n, builder, classes, options, args.img_size, args.repeat,
                             args.warmup, args.threads, Path(tmp))
            records.append(stamp(rec, "torch", "torchvision", "onnx", "onnxruntime"))
            print_rows([rec], ["model", "torch_ms", "onnx_ms", "speedup", "core_torch_ms",
                               "core_onnx_ms", "core_speedup", "max_core_diff"])
    if not args.no_write:
        path = append_or_replace("export", records, key=("benchmark", "model", "threads", "img_size"))
        print(f"results -> {path}")
    return records


if __name__ == "__main__":
    main()
