"""detseg's Faster / Mask / Keypoint R-CNN against torchvision's, CPU latency, in one process.

    python benchmarks/tv_latency.py --runs 11 --size 480x640 --threads 2

For each model, torchvision's ``*_resnet50_fpn`` is built from a seed (``weights=None``,
``weights_backbone=None``), its state dict is loaded into the matching detseg builder through the
documented name mapping (:mod:`detseg.models.detection.torchvision_compat`), and both run in eval
mode on the same image at the same ``min_size``/``max_size`` (no resize: the image has that size).
Runs are interleaved (torchvision, detseg, torchvision, ...) after one untimed warm-up each, so a
slow moment of the machine hits both; the ratio is of the medians. ``box_score_thresh=0`` and the
same ``detections_per_img`` make both run their mask / keypoint heads on the same number of boxes
(with random weights, torchvision's default 0.05 threshold would leave none). Issue 14's bar:
detseg at most 1.1x torchvision's median.

Records -> ``benchmarks/results/tv_latency.json`` and docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torchvision.models.detection import (fasterrcnn_resnet50_fpn, keypointrcnn_resnet50_fpn,
                                          maskrcnn_resnet50_fpn)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_or_replace, stamp  # noqa: E402

from detseg.models.detection.faster_rcnn import (build_faster_rcnn, build_keypoint_rcnn,  # noqa: E402
                                                 build_mask_rcnn)
from detseg.models.detection.torchvision_compat import load_torchvision_state_dict  # noqa: E402
from detseg.tables import format_table  # noqa: E402

CASES = {
    "faster_rcnn": (fasterrcnn_resnet50_fpn, build_faster_rcnn, {}),
    "mask_rcnn": (maskrcnn_resnet50_fpn, build_mask_rcnn, {}),
    "keypoint_rcnn": (keypointrcnn_resnet50_fpn, build_keypoint_rcnn, {"num_keypoints": 17}),
}


def pair(name: str, classes: int, size: tuple[int, int], dets: int):
    tv_build, ds_build, extra = CASES[name]
    names = ["person"] if name == "keypoint_rcnn" else [f"c{i}" for i in range(classes)]
    torch.manual_seed(0)
    tv = tv_build(weights=None, weights_backbone=None, num_classes=len(names) + 1,
                  min_size=min(size), max_size=max(size), box_score_thresh=0.0,
                  box_detections_per_img=dets, **extra)
    ds = ds_build(names, frozen_bn=False, trainable_layers=5, min_size=min(size),
                  max_size=max(size), box_score_thresh=0.0, detections_per_img=dets, **extra)
    report = load_torchvision_state_dict(ds, tv.state_dict())
    assert not (report["missing"] or report["unmapped"] or report["dropped"]), report
    return tv.eval(), ds.eval()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(CASES))
    p.add_argument("--runs", type=int, default=11, help="timed runs of each model (default %(default)s)")
    p.add_argument("--size", default="480x640", help="image HxW (default %(default)s)")
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--dets", type=int, default=50, help="detections per image (both models)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    rows = []
    for name in args.models.split(","):
        tv, ds = pair(name, args.classes, (h, w), args.dets)
        ms = {"torchvision": [], "detseg": []}
        with torch.inference_mode():
            tv([image]), ds([image])  # warm-up, untimed
            for _ in range(args.runs):
                ms["torchvision"].append(timed(lambda: tv([image])))
                ms["detseg"].append(timed(lambda: ds([image]).predictions))
        med = {k: statistics.median(v) for k, v in ms.items()}
        rows.append(stamp({"benchmark": "tv_latency", "model": name, "size": f"{h}x{w}", "threads": args.threads,
                     "runs": args.runs, "torchvision_ms": round(med["torchvision"], 1),
                     "detseg_ms": round(med["detseg"], 1),
                     "ratio": round(med["detseg"] / med["torchvision"], 3),
                     "torchvision_all_ms": [round(v, 1) for v in ms["torchvision"]],
                     "detseg_all_ms": [round(v, 1) for v in ms["detseg"]]}, "torch", "torchvision"))
        print(f"{name}: torchvision {med['torchvision']:.1f} ms, detseg {med['detseg']:.1f} ms, "
              f"ratio {rows[-1]['ratio']:.3f}", flush=True)
    head = ("model", "size", "torchvision_ms", "detseg_ms", "ratio")
    print(format_table(head, [[r[k] for k in head] for r in rows]))
    if not args.no_write:
        print("wrote", append_or_replace("tv_latency", rows, key=("benchmark", "model", "size", "threads")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
