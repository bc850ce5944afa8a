"""Region-proposal quality: recall at K proposals, MABO and seconds per image, method by method.

    python benchmarks/proposals.py --data ../shared/datasets/raccoon --split val --long-side 500 \
        --methods "selective_search_fast,selective_search_fast:base_k=50;inc_k=50,sliding_window"
    python benchmarks/proposals.py --data ../shared/datasets/bccd --split val --long-side 500 \
        --methods "selective_search_fast,selective_search_fast:base_k=50;inc_k=50,sliding_window"

The measures of Uijlings et al., "Selective Search for Object Recognition" (IJCV 2013, sec. 5.1)
and Hosang et al., "What makes for effective detection proposals?" (TPAMI 2016), computed by
:mod:`detseg.evaluation.proposals` (the ``detseg proposals eval`` verb): recall of the
ground-truth boxes at 100/500/1000/2000 proposals for IoU 0.5 and 0.7, MABO (mean over classes of
the average best overlap with all proposals), the mean number of proposals per image and seconds
per image: the wall clock of the generator call on the image as the dataset serves it (decoding
excluded, no cache), and ``cpu_seconds_per_image``, the process CPU time of the same calls, which
a busy machine inflates less. ``--long-side 500`` first resizes every image (and its boxes) to a
longer side of 500 px: PASCAL VOC's 500x375, on which the papers quote ~2k selective-search
proposals in ~2 s; counts and times grow with the pixel count.

Each ``--methods`` entry is ``NAME[:key=value;key=value]`` (quote the list in a shell: ``;``):
``sliding_window`` (options: ``scales``, ``aspect_ratios``, ``stride_fraction`` of
:class:`~detseg.models.detection.proposals.SlidingWindowProposals`), ``selective_search_fast`` /
``selective_search_quality`` (options: ``max_side``, ``max_aspect``, ``seed`` of
:class:`~detseg.models.detection.proposals.SelectiveSearchProposals`, and for the fast mode OpenCV's
``switchToSelectiveSearchFast(base_k, inc_k, sigma)`` -- 150, 150, 0.8 by default: the graph
segmentations run at k = base_k, base_k + inc_k, base_k + 2 inc_k; a smaller k gives more initial
regions and so more proposals), or ``precomputed:PATH``. ``--max-proposals`` (2000) caps every
method, as R-CNN does.

Records -> ``benchmarks/results/proposals_<dataset>.json`` (``--results-dir`` writes elsewhere,
e.g. for smoke runs) and docs/BENCHMARKS.md via benchmarks/make_docs.py. Timings on a shared
machine are approximate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import append_or_replace, dataset_name, parse_entry, print_rows, stamp  # noqa: E402

from detseg.evaluation.proposals import RECALL_AT, RECALL_IOUS, evaluate_proposals  # noqa: E402
from detseg.models.detection.proposals import SelectiveSearchProposals, SlidingWindowProposals  # noqa: E402

FAST_KEYS = ("base_k", "inc_k", "sigma")


def build_method(entry: str, max_proposals: int | None):
    """The proposal generator of one ``--methods`` entry (module docstring)."""
    from detseg.cli.detection import build_generator

    name, opts = parse_entry(entry)
    if not opts:
        return build_generator(name, max_proposals)
    if name == "sliding_window":
        return SlidingWindowProposals(max_proposals=max_proposals, **opts)
    if name in ("selective_search_fast", "selective_search_quality"):
        mode = name.rsplit("_", 1)[1]
        fast = {k: opts.pop(k) for k in FAST_KEYS if k in opts}
        if fast and mode != "fast":
            raise SystemExit(f"{entry}: {', '.join(fast)} apply to selective_search_fast only")
        return SelectiveSearchProposals(mode=mode, max_proposals=max_proposals, **fast, **opts)
    raise SystemExit(f"{entry}: options are supported for sliding_window and selective_search_* only")


class CpuTimed(torch.nn.Module):
    """Wraps a generator and adds up the process CPU seconds of its calls: on a shared machine the
    wall-clock seconds include waiting for a core, CPU seconds do not (one-threaded search)."""

    def __init__(self, generator: torch.nn.Module) -> None:
        super().__init__()
        self.generator, self.cpu_seconds, self.calls = generator, 0.0, 0

    def forward(self, *args: Any, **kwargs: Any):
        t = time.process_time()
        out = self.generator(*args, **kwargs)
        self.cpu_seconds += time.process_time() - t
        self.calls += 1
        return out


def image_size(dataset: Any, n: int) -> str:
    """Mean ``WxH`` of the first ``n`` images (as served: the size the generator sees)."""
    sizes = torch.tensor([tuple(dataset[i][0].shape[-2:]) for i in range(n)], dtype=torch.float64)
    h, w = sizes.mean(0).tolist()
    return f"{w:.0f}x{h:.0f}"


class LongSide(torch.utils.data.Dataset):
    """``dataset`` with every image resized (bilinear, aspect kept) so its longer side is
    ``long_side`` px and its boxes scaled alike: proposal counts and times depend on the pixel
    count, and the papers quote them on PASCAL VOC's ~500x375 images."""

    def __init__(self, dataset: Any, long_side: int) -> None:
        self.dataset, self.long_side = dataset, int(long_side)
        self.files = getattr(dataset, "files", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        import torch.nn.functional as F

        image, target = self.dataset[i]
        h, w = image.shape[-2:]
        s = self.long_side / max(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        image = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True,
                              align_corners=False)[0].clamp(0, 1)
        boxes = target["boxes"].float() * torch.tensor([size[1] / w, size[0] / h] * 2)
        return image, {**target, "boxes": boxes}


def run_method(entry: str, dataset: Any, args) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    generator = CpuTimed(build_method(entry, args.max_proposals))
    evaluator = evaluate_proposals(generator, dataset, limit=args.limit, progress=not args.quiet)
    s = evaluator.summary()
    n = int(s["images"])
    recalls = {f"recall@{k}_iou{t:g}": round(s[f"recall@{k}_iou{t:g}"], 4)
               for t in RECALL_IOUS for k in RECALL_AT}
    return {"method": entry, "images": n, "objects": int(s["objects"]),
            "mean_image_wxh": image_size(dataset, n),
            "proposals_per_image": round(s["proposals_per_image"], 1),
            "seconds_per_image": round(s["seconds_per_image"], 3),
            "cpu_seconds_per_image": round(generator.cpu_seconds / max(1, generator.calls), 3), **recalls,
            "mabo": round(s["mabo"], 4)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--methods", default="selective_search_fast,sliding_window")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the first N images only")
    p.add_argument("--max-proposals", type=int, default=2000, help="per image, 0 = no cap (default %(default)s)")
    p.add_argument("--long-side", type=int, default=None, metavar="L",
                   help="resize every image so its longer side is L px first (500: VOC's 500x375)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (OpenCV's search is serial)")
    p.add_argument("--results-dir", type=Path, help="write the JSON here instead of benchmarks/results")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.results_dir is not None:
        common.RESULTS = args.results_dir
    args.max_proposals = args.max_proposals or None
    from detseg.data import build_dataset

    dataset = build_dataset(args.data, split=args.split, task="detection")
    if len(dataset) == 0:
        raise SystemExit(f"{args.data}: split {args.split!r} has no images")
    if args.long_side:
        dataset = LongSide(dataset, args.long_side)
    name = f"proposals_{dataset_name(args.data)}"
    rows, path = [], None
    for entry in filter(None, args.methods.split(",")):
        row = run_method(entry, dataset, args)
        record = stamp({"benchmark": name, "dataset": args.data, "split": args.split,
                        "long_side": args.long_side or "as stored", **row,
                        "max_proposals": args.max_proposals}, "torch", "opencv-contrib-python-headless")
        key = ("benchmark", "method", "dataset", "split", "long_side", "images", "max_proposals")
        path = append_or_replace(name, [record], key=key)
        rows.append(record)
        print(row, flush=True)
    if rows:
        print_rows(rows, ("method", "images", "mean_image_wxh", "proposals_per_image", "seconds_per_image",
                          "cpu_seconds_per_image", "recall@2000_iou0.5", "recall@2000_iou0.7", "mabo"))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
