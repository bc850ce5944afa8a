"""Post-processing and classic baselines on a segmentation val split.

    python benchmarks/crf_meanshift.py --data ../shared/datasets/camvid \
        --checkpoint runs/deeplab/train1/best.pt --meanshift-images 101
    python benchmarks/crf_meanshift.py --data ../shared/datasets/camvid \
        --checkpoint runs/deeplab/train1/best.pt --tune-crf

- Dense CRF (Chen et al. 2015 / Kraehenbuehl & Koltun 2011): the checkpoint evaluated with the
  CRF off and on (same weights: ``crf`` is a weight-free builder option), mIoU difference.
- ``--tune-crf``: the CRF's parameters chosen as DeepLab chose them, by a grid search on held-out
  images — here the even-numbered images of the split — then CRF off / on (default parameters) /
  on (tuned) reported on the odd-numbered ones, which the search never saw. The network runs once
  per image; every setting reuses its probabilities.
- Mean shift (scikit-learn): regions + majority ground-truth label per region, an UPPER BOUND
  for any labelling of those regions (it reads the labels).
Rows go to benchmarks/results/postprocess_<dataset>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_or_replace, stamp  # noqa: E402

from detseg.api import evaluate  # noqa: E402
from detseg.data import build_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--checkpoint", default=None, help="a DeepLab checkpoint for CRF on/off")
    p.add_argument("--meanshift-images", type=int, default=0, help="0 = skip mean shift")
    p.add_argument("--tune-crf", action="store_true",
                   help="grid-search the CRF on the even images, report on the odd ones")
    args = p.parse_args(argv)
    name = "postprocess_" + Path(args.data.rstrip("/")).name.lower()
    rows = []
    if args.checkpoint and args.tune_crf:
        rows += tune_crf(args.checkpoint, args.data, args.split)
    elif args.checkpoint:
        for crf in (False, True):
            t = time.perf_counter()
            m = evaluate(args.checkpoint, args.data, split=args.split, options={"crf": crf})
            rows.append({"method": f"deeplab crf={'on' if crf else 'off'}", "mIoU": round(m["mIoU"], 4),
                         "pixel_acc": round(m["pixel_acc"], 4), "seconds": round(time.perf_counter() - t, 1),
                         "checkpoint": args.checkpoint})
        rows.append({"method": "crf gain", "mIoU": round(rows[1]["mIoU"] - rows[0]["mIoU"], 4),
                     "pixel_acc": round(rows[1]["pixel_acc"] - rows[0]["pixel_acc"], 4)})
    if args.meanshift_images:
        from detseg.classic.meanshift import evaluate_meanshift

        ds = build_dataset(args.data, split=args.split, task="semantic")
        m = evaluate_meanshift(ds, n_images=args.meanshift_images)
        rows.append({"method": "mean shift + majority label (upper bound)", "mIoU": round(m["mIoU"], 4),
                     "pixel_acc": round(m["pixel_acc"], 4), "n_images": args.meanshift_images,
                     "regions_per_image": round(m["regions_per_image"], 1),
                     "seconds_per_image": round(m["seconds_per_image"], 2)})
    records = [stamp({"benchmark": name, "dataset": args.data, "split": args.split, **r}, "torch")
               for r in rows]
    append_or_replace(name, records, key=("benchmark", "method", "dataset"))
    for r in rows:
        print(r)


# The grid: the appearance kernel's weight, colour and spatial reach (DeepLab searched the same
# three on held-out VOC images), smoothness kernel and iterations at their defaults.
CRF_GRID = [{"bilateral_compat": w, "bilateral_srgb": c, "bilateral_sxy": x}
            for w in (3, 5, 10) for c in (5, 13) for x in (30, 80)]


def tune_crf(checkpoint: str, data: str, split: str) -> list[dict]:
    """Rows: the best grid setting on the even images, then off/default/tuned on the odd ones."""
    import numpy as np
    import torch

    from detseg.engine.checkpoint import load_model
    from detseg.evaluation import build_evaluator
    from detseg.postprocess.crf import dense_crf

    model = load_model(checkpoint, crf=False)
    ds = build_dataset(data, split=split, task="semantic")
    classes = list(ds.seg_classes)
    cache = []  # (rgb uint8, probs float16 [C,H,W], target) per image: the network runs once
    with torch.no_grad():
        for i in range(len(ds)):
            image, target = ds[i]
            logits = model([image], with_logits=True).predictions[0]["sem_seg_logits"]
            rgb = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            cache.append((np.ascontiguousarray(rgb), logits.float().softmax(0).half().numpy(), target))

    def score(indices, params):
        ev = build_evaluator("semantic", classes)
        t = time.perf_counter()
        for i in indices:
            rgb, probs, target = cache[i]
            q = probs.astype(np.float32) if params is None else dense_crf(rgb, probs.astype(np.float32), **params)
            ev.update([{"sem_seg": torch.from_numpy(q.argmax(0)).long()}], [target])
        m = ev.compute()
        return m["mIoU"], m["pixel_acc"], (time.perf_counter() - t) / max(1, len(indices))

    tune, report = list(range(0, len(ds), 2)), list(range(1, len(ds), 2))
    results = []
    for params in CRF_GRID:
        miou, _, _ = score(tune, params)
        results.append((miou, params))
        print(f"tune {params}: mIoU {miou:.4f}", flush=True)
    best_miou, best = max(results, key=lambda r: r[0])
    off_tune = score(tune, None)[0]
    rows = [{"method": "crf tuned: chosen on the even images", "mIoU": round(best_miou, 4),
             "mIoU_crf_off": round(off_tune, 4), "params": best, "grid": CRF_GRID,
             "n_images": len(tune), "checkpoint": checkpoint}]
    for label, params in (("off", None), ("on, default parameters", {}), ("on, tuned", best)):
        miou, acc, sec = score(report, params)
        rows.append({"method": f"crf {label}: odd images", "mIoU": round(miou, 4),
                     "pixel_acc": round(acc, 4), "crf_seconds_per_image": round(sec, 3),
                     "n_images": len(report), "checkpoint": checkpoint})
    rows.append({"method": "crf tuned gain: odd images",
                 "mIoU": round(rows[-1]["mIoU"] - rows[1]["mIoU"], 4),
                 "pixel_acc": round(rows[-1]["pixel_acc"] - rows[1]["pixel_acc"], 4)})
    return rows


if __name__ == "__main__":
    main()
