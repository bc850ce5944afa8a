"""Post-processing and classic baselines on a segmentation val split.

    python benchmarks/crf_meanshift.py --data ../shared/datasets/camvid \
        --checkpoint runs/deeplab/train1/best.pt --meanshift-images 101

- Dense CRF (Chen et al. 2015 / Kraehenbuehl & Koltun 2011): the checkpoint evaluated with the
  CRF off and on (same weights: ``crf`` is a weight-free builder option), mIoU difference.
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
    args = p.parse_args(argv)
    name = "postprocess_" + Path(args.data.rstrip("/")).name.lower()
    rows = []
    if args.checkpoint:
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


if __name__ == "__main__":
    main()
