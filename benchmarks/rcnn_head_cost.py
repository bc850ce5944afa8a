"""Whole-call CPU ms of Keypoint/Mask R-CNN with torchvision-sized vs smaller heads (export.py's
CPU-sized FPN, random init, 128 px, 1 thread, so 100 detections reach the heads).

    python benchmarks/rcnn_head_cost.py
"""
import sys
import time
from pathlib import Path

import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
import export as ex  # noqa: E402
from detseg.models.zoo import build_model  # noqa: E402
torch.set_num_threads(1)
img = ex.shapes_image(128)
cases = [("keypoint_rcnn", ["person"], {}), ("keypoint_rcnn", ["person"], {"keypoint_layers": [128] * 4}),
         ("mask_rcnn", ex.FG, {}), ("mask_rcnn", ex.FG, {"mask_layers": [64] * 4})]
for b, classes, extra in cases:
    m = build_model(b, classes, img_size=128, **ex.RPN, **extra).eval()
    with torch.no_grad():
        m([img]); ts = []
        for _ in range(3):
            t = time.perf_counter(); out = m([img]); ts.append((time.perf_counter() - t) * 1e3)
    n = len(out.predictions[0]["boxes"])
    print(f"{b} {extra or 'default heads'}: {sorted(ts)[1]:.0f} ms whole call, {n} detections, "
          f"{sum(p.numel() for p in m.parameters())/1e6:.2f} M params", flush=True)
