"""Test-time cost of the region-based detectors: sliding windows, R-CNN, Fast R-CNN, one backbone.

    python benchmarks/rcnn_family.py --data shapes:size=128,mode=scene,n_val=50 --images 20
    python benchmarks/rcnn_family.py --data shapes:size=128,mode=scene,n_val=50 --images 20 \
        --checkpoints fast_rcnn=runs/fast_rcnn/train1/best.pt,rcnn=runs/rcnn/train1/best.pt

The lecture's point, measured on one machine in one run: R-CNN (Girshick et al., CVPR 2014) runs
the CNN on every warped region, Fast R-CNN (Girshick, ICCV 2015) runs it once per image and RoI-
pools every region from the feature map, so the network time drops by orders of magnitude and the
proposals become the bottleneck. Every model is built by the zoo with the same ``--backbone``
(``alexnet_small``) and the same ``--img-size`` (the longer side the network sees), in eval mode,
``torch.inference_mode``, batch 1, ``--threads`` torch threads.

Per image, the proposals are computed once on the image each model sees (the model's own resize):
selective search (fast mode, ``--num-proposals`` at most) for R-CNN and Fast R-CNN, the window
grid for ``sliding_window_det``; that call is timed as ``proposal_seconds_per_image``. Each model's
generator is then swapped for one that returns the stored boxes, and the whole forward pass
(resize, normalise, backbone, RoI features, head, NMS) is timed as ``network_seconds_per_image``:
R-CNN and Fast R-CNN score *the same* regions -- identical crops and RoIs -- so
``rcnn_over_network`` (R-CNN's network seconds over the row's) is the speed-up excluding proposals.
Weights are random unless ``--checkpoints NAME=PATH,...`` gives detseg checkpoints (timing does not
depend on the weights, except for the few boxes NMS sees). The first call of each model is a
warm-up and is not timed.

``faster_rcnn`` (Ren et al., NIPS 2015) gets its proposals from its own RPN on the shared
features, so its whole forward pass is timed and the RPN's share is taken apart by hooks
(``proposal_seconds_per_image``); its backbone is the same body under an FPN.
``fast_rcnn_over_total`` is Fast R-CNN's total (selective search included) over the row's.

The ``paper:`` rows are the published figures for comparison, not measurements: R-CNN 47.0 s and
Fast R-CNN 0.32 s per image excluding proposals, VGG16 on an Nvidia K40 (Fast R-CNN, Table 4), and
selective search ~2 s per image on a CPU (Faster R-CNN, Ren et al. 2015, sec. 1).
Records -> ``benchmarks/results/rcnn_family.json`` (``--results-dir`` writes elsewhere).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import append_or_replace, parse_entry, print_rows, stamp  # noqa: E402

from detseg.models.detection.proposals import ProposalGenerator, SelectiveSearchProposals  # noqa: E402

MODELS = ("sliding_window_det", "rcnn", "fast_rcnn", "faster_rcnn")
LEARNED = ("faster_rcnn",)  # proposals from an RPN on the shared features: timed inside the pass
PAPER_ROWS = (
    {"model": "paper: R-CNN (VGG16, Nvidia K40)", "network_seconds_per_image": 47.0,
     "source": "Girshick, Fast R-CNN, ICCV 2015, Table 4 (test time excl. proposals)"},
    {"model": "paper: Fast R-CNN (VGG16, Nvidia K40)", "network_seconds_per_image": 0.32,
     "rcnn_over_network": round(47.0 / 0.32, 1),
     "source": "Girshick, Fast R-CNN, ICCV 2015, Table 4 (test time excl. proposals)"},
    {"model": "paper: selective search, fast mode (CPU)", "proposal_seconds_per_image": 2.0,
     "proposals_per_image": 2000, "source": "Ren et al., Faster R-CNN, NIPS 2015, sec. 1"},
    {"model": "paper: Faster R-CNN (VGG16, Nvidia K40)", "total_seconds_per_image": 0.198,
     "proposals_per_image": 300, "source": "Ren et al., Faster R-CNN, NIPS 2015, Table 5 (incl. RPN)"},
)


class FixedProposals(ProposalGenerator):
    """Returns ``boxes`` (set before each call) for a batch of one image: the stored proposals."""

    def __init__(self) -> None:
        super().__init__()
        self.boxes: Tensor | None = None

    def forward(self, images: list[Tensor], features: Any = None,
                targets: Any = None) -> tuple[list[Tensor], dict[str, Tensor]]:
        if self.boxes is None or len(images) != 1:
            raise ValueError("FixedProposals: set .boxes, then call with one image")
        return [self.boxes], {}


def build(name: str, args, classes: list[str]):
    """A zoo model in eval mode: from ``--checkpoints`` if given, else random weights."""
    from detseg.models.zoo import build_model

    path = args.checkpoints.get(name)
    if path:
        from detseg.engine.checkpoint import load_checkpoint, model_from_checkpoint

        model = model_from_checkpoint(load_checkpoint(path))
        if model.img_size != args.img_size:
            raise SystemExit(f"{path}: img_size {model.img_size} != --img-size {args.img_size}")
    else:
        opts = {"backbone": args.backbone, "img_size": args.img_size}
        if name in LEARNED:
            # the same body under an FPN (faster_rcnn's builder puts every backbone under one)
            opts = {"backbone": args.backbone.removesuffix("_fpn") + "_fpn", "img_size": args.img_size}
        if name in ("rcnn", "fast_rcnn"):
            opts["num_proposals"] = args.num_proposals
        if name in ("rcnn", "sliding_window_det") and args.crop_size:
            opts["crop_size"] = args.crop_size
        model = build_model(name, classes=classes, **{**opts, **args.model_opts.get(name, {})})
    return model.eval()


def backbone_of(model) -> str:
    args = getattr(model, "builder_args", {}) or {}
    return str(args.get("backbone", "alexnet_small")).removesuffix("_fpn")


def time_proposals(model, generator, images: list[Tensor]) -> tuple[list[Tensor], list[float]]:
    """``generator`` on each image as ``model`` resizes it: (boxes, seconds)."""
    boxes, seconds = [], []
    for image in images:
        _, resized = model.transform([image])
        t = time.perf_counter()
        (b,), _ = generator(resized, None, None)
        seconds.append(time.perf_counter() - t)
        boxes.append(b.float())
    return boxes, seconds


def time_network(model, images: list[Tensor], boxes: list[Tensor]) -> list[float]:
    """Seconds of each forward pass with the stored proposals swapped in (warm-up not timed)."""
    original, fixed = model.proposal_generator, FixedProposals()
    model.proposal_generator = fixed
    try:
        fixed.boxes = boxes[0]
        model([images[0]])  # warm-up: first-call allocations and oneDNN kernel choice
        seconds = []
        for image, b in zip(images, boxes):
            fixed.boxes = b
            t = time.perf_counter()
            model([image])
            seconds.append(time.perf_counter() - t)
    finally:
        model.proposal_generator = original
    return seconds


def time_learned(model, images: list[Tensor]) -> tuple[list[float], list[float], list[int]]:
    """A model whose proposals come from its own RPN: the whole pass is timed, and the RPN's share
    (its forward call, on features the backbone already computed) by hooks, so the proposal and
    network seconds add up to the pass. Returns (proposal seconds, network seconds, proposals)."""
    gen, clock = model.proposal_generator, {}

    def before(module, inputs):
        clock["t"] = time.perf_counter()

    def after(module, inputs, output):
        clock["rpn"] = time.perf_counter() - clock["t"]
        clock["n"] = len(output[0][0])

    hooks = [gen.register_forward_pre_hook(before), gen.register_forward_hook(after)]
    try:
        model([images[0]])  # warm-up
        prop, net, count = [], [], []
        for image in images:
            t = time.perf_counter()
            model([image])
            total = time.perf_counter() - t
            prop.append(clock["rpn"]), net.append(total - clock["rpn"]), count.append(clock["n"])
    finally:
        for h in hooks:
            h.remove()
    return prop, net, count


def measure(args) -> list[dict[str, Any]]:
    from detseg.data import build_dataset

    torch.set_num_threads(args.threads)
    dataset = build_dataset(args.data, split=args.split, task="detection")
    n = min(args.images, len(dataset))
    images = [dataset[i][0] for i in range(n)]
    classes = list(dataset.classes)
    models = {name: build(name, args, classes) for name in args.models}
    entries = dict(zip(args.models, args.entries))
    if len({backbone_of(m) for m in models.values()}) > 1:
        raise SystemExit(f"the models use different backbones: "
                         f"{ {k: backbone_of(m) for k, m in models.items()} }; the comparison needs one")
    stored: dict[str, tuple[list[Tensor], list[float]]] = {}
    rows = []
    with torch.inference_mode():
        for name, model in models.items():
            # R-CNN and Fast R-CNN share selective search's boxes, computed (and timed) once by
            # one uncached generator, whatever proposals a checkpoint was trained with.
            kind = "selective_search" if name in ("rcnn", "fast_rcnn") else name
            if name in LEARNED:
                prop_s, net_s, counts = time_learned(model, images)
                prop, net = statistics.mean(prop_s), statistics.mean(net_s)
                rows.append({"model": entries[name], "backbone": backbone_of(model), "img_size": args.img_size,
                             "weights": "checkpoint" if args.checkpoints.get(name) else "random",
                             "images": n, "proposals": "RPN (shared features)",
                             "proposals_per_image": round(statistics.mean(counts), 1),
                             "proposal_seconds_per_image": round(prop, 4),
                             "network_seconds_per_image": round(net, 4),
                             "total_seconds_per_image": round(prop + net, 4),
                             "network_ms_per_region": round(1000 * net / max(1, statistics.mean(counts)), 3),
                             "extractor": "MultiScaleRoIAlign 7x7 (FPN)"})
                continue
            if kind not in stored:
                generator = (SelectiveSearchProposals("fast", max_proposals=args.num_proposals)
                             if kind == "selective_search" else model.proposal_generator)
                stored[kind] = time_proposals(model, generator, images)
            boxes, prop_s = stored[kind]
            net_s = time_network(model, images, boxes)
            prop, net = statistics.mean(prop_s), statistics.mean(net_s)
            rows.append({"model": entries[name], "backbone": backbone_of(model), "img_size": args.img_size,
                         "weights": "checkpoint" if args.checkpoints.get(name) else "random",
                         "images": n, "proposals": "selective search (fast)" if kind != name else "windows",
                         "proposals_per_image": round(statistics.mean(len(b) for b in boxes), 1),
                         "proposal_seconds_per_image": round(prop, 4),
                         "network_seconds_per_image": round(net, 4),
                         "total_seconds_per_image": round(prop + net, 4),
                         "network_ms_per_region": round(1000 * net / max(1, statistics.mean(len(b) for b in boxes)), 3),
                         "extractor": describe_extractor(model)})
    rcnn = next((r["network_seconds_per_image"] for r in rows if r["model"].partition(":")[0] == "rcnn"), None)
    fast = next((r["total_seconds_per_image"] for r in rows if r["model"].partition(":")[0] == "fast_rcnn"), None)
    for r in rows:
        if rcnn is not None:
            r["rcnn_over_network"] = round(rcnn / r["network_seconds_per_image"], 2)
        if fast is not None:  # Faster R-CNN's claim: proposals included, vs Fast R-CNN + SS
            r["fast_rcnn_over_total"] = round(fast / r["total_seconds_per_image"], 2)
    return rows


def describe_extractor(model) -> str:
    """``crops 112 px`` or ``roi pool 7x7 @ stride 16``: what each region costs."""
    roi = model.roi_extractor
    if hasattr(roi, "crop_size"):
        return f"warped crops {roi.crop_size} px"
    return f"{type(roi).__name__} {roi.output_size}x{roi.output_size} @ stride {roi.stride}"


def parse_checkpoints(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, text.split(",")):
        name, sep, path = item.partition("=")
        if not sep or name not in MODELS:
            raise argparse.ArgumentTypeError(f"--checkpoints: expected NAME=PATH with NAME in {MODELS}, got {item!r}")
        out[name] = path
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="shapes:size=128,mode=scene,n_val=50")
    p.add_argument("--split", default="val")
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma list of NAME[:key=value;key=value] (builder options, e.g. rcnn:crop_size=64)")
    p.add_argument("--images", type=int, default=20, help="images timed (default %(default)s)")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--backbone", default="alexnet_small")
    p.add_argument("--crop-size", type=int, default=None, help="R-CNN / sliding windows crop (builder default)")
    p.add_argument("--num-proposals", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--checkpoints", type=parse_checkpoints, default={}, help="NAME=PATH,...")
    p.add_argument("--results-dir", type=Path, help="write the JSON here instead of benchmarks/results")
    args = p.parse_args(argv)
    if args.results_dir is not None:
        common.RESULTS = args.results_dir
    args.models_text = args.models
    entries = [parse_entry(e) for e in filter(None, args.models.split(","))]
    unknown = [n for n, _ in entries if n not in MODELS]
    if unknown:
        raise SystemExit(f"--models: {unknown}: expected some of {MODELS}")
    args.models = [n for n, _ in entries]
    if len(set(args.models)) != len(args.models):
        raise SystemExit("--models: each model once (one run, one row per model)")
    args.entries = [e for e in filter(None, args.models_text.split(","))]
    args.model_opts = {n: o for n, o in entries}
    rows = measure(args)
    records = [stamp({"benchmark": "rcnn_family", "dataset": args.data, **r}, "torch") for r in rows]
    records += [{"benchmark": "rcnn_family", "dataset": "PASCAL VOC 2007 test", **r} for r in PAPER_ROWS]
    path = append_or_replace("rcnn_family", records, key=("benchmark", "model", "dataset"))
    print_rows(rows, ("model", "extractor", "proposals_per_image", "proposal_seconds_per_image",
                      "network_seconds_per_image", "total_seconds_per_image", "rcnn_over_network",
                      "fast_rcnn_over_total"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
