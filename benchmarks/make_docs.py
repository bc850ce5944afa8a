"""Regenerate ``docs/BENCHMARKS.md`` (and its plots) from every ``benchmarks/results/*.json``.

    python benchmarks/make_docs.py            # writes docs/BENCHMARKS.md and the plots it links
    python benchmarks/make_docs.py --check    # exit 1 if the markdown is out of date (for CI)

One section per results file: a short intro for the benchmarks this script knows, a headline table
of the columns a reader compares (:data:`HEADLINES`; missing values print ``-``), any further small
table (:data:`EXTRAS`: per-joint PCK, fuzz counts per reader), a plot where one helps (drawn here
from the JSON, :data:`PLOTS`, or a PNG a benchmark wrote beside its JSON), then every column of every
record (first-seen order; nested values such as ``versions`` written ``key=value``) and the command
of each row, in a collapsed ``<details>`` block. Files of benchmarks it does not know still render,
with a generic intro and the full table open. Nothing here is edited by hand. Plots are written
only when their bytes change, and ``--check`` compares the markdown alone.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling docs_plots

import docs_plots  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "BENCHMARKS.md"

INTROS: dict[str, str] = {
    "coco_eval": (
        "detseg's COCO evaluator (faster-coco-eval inside `detseg.evaluation`) against pycocotools "
        "on the same generated images, in one process. `seconds` is the best of `repeat` runs of "
        "the whole path a user pays (tensors -> COCO dicts -> evaluate, accumulate, summarize; "
        "detseg's row also computes VOC AP50, and PCK for keypoints), `ratio` is pycocotools' "
        "seconds over the row's, and `max_stat_diff` the largest absolute difference of any COCO "
        "summary statistic from pycocotools'. The `faster-coco-eval (eval only)` row times the "
        "COCO dicts -> stats stage alone."
    ),
    "reliability": (
        "Issue 17's reliability checks, two kinds of record. Memory (`case = rss_<n>_iterations`, "
        "`benchmarks/reliability.py`): resident memory over a long CPU training run of a tiny FCN "
        "on the shapes world with every hook on (checkpoints, metrics, curves, samples, "
        "validation every 5 epochs); `rss_after_warmup_mib` is the first sample after "
        "`warmup_iterations`, `growth_max_pct` the largest departure from it afterwards (the "
        "acceptance bound is 5 %). Memory does not depend on the shared CPU; `seconds` does. "
        "Fuzz (`case = fuzz`, one record per `seed`, `benchmarks/fuzz_readers.py`): mutated "
        "annotation files through every dataset reader; `ok` loaded, `clear_errors` refused with "
        "detseg's own named error, `unexpected` anything else (must be 0). The second table sums "
        "the per-reader counts over the seeds."
    ),
    "tv_latency": (
        "detseg's Faster / Mask / Keypoint R-CNN against torchvision's `*_resnet50_fpn` on the CPU "
        "in one process (`benchmarks/tv_latency.py`, issue 14): torchvision's seeded weights loaded "
        "into the matching detseg builder, both in eval mode on the same `size` image, runs "
        "interleaved after a warm-up; `torchvision_ms`/`detseg_ms` are medians of `runs` calls and "
        "`ratio` is detseg's over torchvision's (the bar: at most 1.1)."
    ),
    "train_budget": (
        "Validation metric reached on the shapes world for a training budget on the 2-core CPU "
        "machine (`train_seconds` excludes evaluation). These runs chose the recipes of "
        "`detseg demo`: for the FCN, many distinct scenes beat many epochs; augmentation does "
        "not help on an endless procedural world; bf16 autocast (`--amp`) is ~1.7x faster on "
        "this AVX512-BF16 CPU. Rows whose `train_seconds` is `-` shared the machine."
    ),
    "segmentation_shapes": (
        "Semantic-segmentation variants on the shapes world at 128 px (10000 training scenes, "
        "val 300), each trained for the same 10-minute CPU budget (`train_seconds`, training "
        "only; the cosine LR schedule decays over the budget and training stops when it is "
        "spent), bf16 autocast, batch 16, median-frequency class weights unless the model column "
        "says otherwise; params, GFLOPs and CPU ms/image in eval mode at 128 px. The six "
        "`fcn:upsample=...` rows are the same encoder-decoder (alexnet_small encoder, skips down "
        "to the input image) with each upsampling kind; the issue asks >= 0.80 for every kind. "
        "Rows whose command has `--lr 1.6e-2 --channels-last` use the faster recipe (AdamW "
        "1.6e-2, chosen over 4e-3 / 8e-3 / 3.2e-2 by 3-minute bed-of-nails pilots; NHWC "
        "convolutions, ~15% more steps; with `--pregenerate` the synthetic scenes are rendered "
        "before the clock starts, ~30 s, and the warm-up is 0.2 epoch): 6-7 epochs where the "
        "older AdamW 4e-3 rows got 3-4. Every kind lands at mIoU 0.80-0.85 (nearest best, 0.845; "
        "max-unpool, resize-conv and bed of nails 0.001-0.002 under 0.80); the limiting "
        "class is `person`, stick figures with 2-3 px limbs (IoU ~0.5 for every kind). The "
        "`+densify (reverted)` rows tried SegNet's densifying 3x3 conv after the sparse "
        "unpoolings: no gain. The `oracle` rows are a resolution ceiling, not models: the val "
        "ground truth average-pooled to stride s and upsampled bilinearly back, as FCN-8s does "
        "with its stride-8 scores -- at stride 8 even perfect scores give mIoU 0.77 (person "
        "0.15), which bounds FCN-8s on this data whatever the training; the full-resolution "
        "decoders are not bound this way."
    ),
    "segmentation_camvid": (
        "CamVid (`../shared/datasets/camvid`: 184 train / 101 val frames, 11 classes, void "
        "ignored), images at 240x180, every model trained for the same 12-minute CPU budget "
        "(training time only; the LR decays over the budget), batch 8, AdamW 2e-3, flip + scale "
        "jitter + colour augmentation, bf16 autocast, median-frequency class weights (as SegNet "
        "on CamVid), mIoU on val at the labels' original resolution. `unet_smp` is the peer: "
        "segmentation_models_pytorch's Unet with a resnet18 encoder, random init, trained by the "
        "same loop and loss. Both rows come from one invocation with nothing else on the CPU: "
        "detseg's `fcn` (alexnet_small encoder, 1.05 GFLOPs) runs 47 epochs in the budget, the "
        "peer (4.1 GFLOPs) 26, and fcn ends ahead, mIoU 0.504 vs 0.474. (An earlier fcn row, "
        "0.452 after 25 epochs, had shared the CPU with test runs and is replaced.)"
    ),
    "postprocess_camvid": (
        "Post-processing and classic baselines on CamVid val (101 frames, 11 classes, void "
        "ignored): a DeepLab checkpoint (resnet18, output stride 16, 240 px, 6.4 min of CPU "
        "training -- a weak model) evaluated with the dense CRF off and on (same weights, "
        "DeepLab's default CRF parameters, not tuned for CamVid: they smooth away thin classes "
        "such as poles and signs here); then, as DeepLab did, the CRF's appearance-kernel "
        "parameters grid-searched (12 settings) on the even-numbered val images and CRF off / "
        "default / tuned reported on the odd-numbered ones, which the search never saw: tuned "
        "+0.018 mIoU, default -0.019 (`crf_seconds_per_image` was measured with a test suite "
        "running beside it); and mean-shift regions labelled by their majority "
        "ground-truth class, an upper bound for any labelling of those regions."
    ),
    "export": (
        "onnxruntime vs PyTorch on the CPU for every exportable family (`detseg export`, fixed "
        "shapes), zoo defaults at `img_size` px, random init, one shapes image per call. "
        "`torch_ms`/`onnx_ms`: median of the whole `model([image])` call (detseg's pre/post-"
        "processing on both sides), `core_*`: the network core alone on the prepared inputs, "
        "`speedup`: PyTorch over onnxruntime; both runtimes get `threads` intra-op threads. "
        "`max_core_diff`: the largest absolute difference of the raw outputs."
    ),
    "serve_load": (
        "`detseg serve` under load on 127.0.0.1 (`benchmarks/serve_load.py`): `requests` POST "
        "/predict of shapes PNGs from `clients` concurrent threads against a small Fast R-CNN; "
        "latencies are client-side over the answered requests; then an upload over the 20 MB "
        "limit and a text file (expected 413 and 415 with a JSON error), and `alive_after`: "
        "/health and one more prediction still answered."
    ),
    "demo": (
        "`make demo` on a fresh clone (virtualenv creation and install included in `wall_seconds`)."
    ),
    "sliding_window": (
        "The lecture's case for fully convolutional networks, measured: one `sliding_window_seg` "
        "model labels a 128x128 shapes image window by window (`mode=window`: the 17x17 window "
        "around every pixel classified on its own) and as the same classifier convolutionalized "
        "(`mode=fcn`: one pass that shares the features of overlapping windows). `seconds` is the "
        "best of `repeat` calls of the whole prediction, `ratio` the window path's seconds over "
        "the row's, `same_labels` whether every pixel got the same label, and `max_logit_diff` "
        "the largest absolute difference of the two paths' logits (float rounding)."
    ),
    "pose_shapes": (
        "Single-person pose on the shapes stick figures (`mode=person`, 14 joints in LSP order): "
        "DeepPose-style regression (`pose_regression`) and simple-baselines heatmaps "
        "(`pose_heatmap`) on the same backbone, each trained for the same CPU budget "
        "(`budget_minutes`, training time only), evaluated on the val world. PCK@0.2 is "
        "torso-normalised (the LSP convention), per joint in the `PCK@0.2/<joint>` columns; PCP "
        "is strict PCP over the 10 LSP parts; CPU ms/image in eval mode, batch 1, at `img_size`."
    ),
    "pose_lspet": (
        "The same two pose methods on LSPET (`../shared/datasets/lspet`, images 1-1000 of the "
        "extended set): trained on images 1-900, validated on images 901-1000 (`split`: "
        "positions of the data's `all` split), each for the same CPU budget. With `person crops` "
        "every image is served as a context crop around its person box (the labelled joints' "
        "extent plus a margin, taken from the ground truth also on validation images -- the "
        "person is given, as in the usual single-person protocol). PCK@0.2 torso-normalised, "
        "per joint and PCP as for shapes."
    ),
    "cls_loc_shapes": (
        "Classification + localization on single-object shapes images (`CE + lambda * box "
        "loss`), every run with the same CPU budget. `lambda sweep`: one run per lambda, the "
        "value chosen (`chosen`) by the final validation `metric`, not by the loss (lambda "
        "changes the loss itself). `regression loss`: with that lambda, the box loss (L2, L1, "
        "smooth L1, GIoU), the box parameterisation (normalised cx,cy,w,h vs xyxy) and "
        "class-agnostic vs per-class boxes, one factor at a time. `loc_acc`: class right and "
        "box IoU >= 0.5; `mean_iou` over the val images."
    ),
    "rcnn_family": (
        "Test-time cost of the region-based detectors on one machine in one run: "
        "`sliding_window_det`, `rcnn` and `fast_rcnn` built with the same backbone and image size, "
        "eval mode, `torch.inference_mode`, batch 1. Each image's proposals are computed once "
        "(selective search, fast mode, for R-CNN and Fast R-CNN; the window grid for sliding "
        "windows) and timed as `proposal_seconds_per_image`; the models are then fed those stored "
        "boxes, so R-CNN and Fast R-CNN score identical crops / RoIs, and the whole forward pass is "
        "`network_seconds_per_image`. `rcnn_over_network` is R-CNN's network time over the row's "
        "(the speed-up excluding proposals; the issue asks >= 10 for Fast R-CNN). `extractor` says "
        "what each region costs: a warped image crop through the whole CNN (R-CNN) or a RoI pooled "
        "from the shared feature map (Fast R-CNN). The `paper:` rows are published figures, not "
        "measurements (VGG16 on an Nvidia K40; selective search on a CPU)."
    ),
}
# Intros of per-dataset results files (``<prefix><dataset>.json``) without an entry of their own.
PREFIX_INTROS: dict[str, str] = {
    "proposals_": (
        "Region-proposal quality on {dataset} (`benchmarks/proposals.py`, i.e. `detseg proposals "
        "eval`): recall of the ground-truth boxes with the first 100/500/1000/2000 proposals at "
        "IoU 0.5 and 0.7, MABO (mean over classes of the average best overlap with all "
        "proposals), the mean number of proposals per image (at most `max_proposals`) and seconds "
        "per image (wall clock of the generator call, no cache; `cpu_seconds_per_image` is its "
        "process CPU time, which a busy machine inflates less). `long_side`: images resized to "
        "that longer side first (500: PASCAL VOC's 500x375, where the papers quote ~2k selective-"
        "search proposals in ~2 s). `selective_search_fast:base_k=...;inc_k=...` rows set OpenCV's "
        "`switchToSelectiveSearchFast(base_k, inc_k, sigma)` (defaults 150, 150, 0.8; a smaller k "
        "gives more initial regions, hence more proposals). Timings on the shared 2-core machine "
        "are approximate."
    ),
    "detection_": (
        "Region-based detectors on {dataset} (`benchmarks/detection.py`), each trained for the same "
        "CPU budget (`budget_minutes`; `train_seconds` is training only, the cosine LR decays over "
        "the budget and training stops when it is spent) and evaluated on the validation split "
        "(`split`) by the COCO evaluator: `mAP50`, `mAP` (AP@[.5:.95]), VOC AP50 overall and per "
        "class (`AP50/<class>`). `cpu_ms_per_image`: eval mode, batch 1, on val images, proposals "
        "included and computed afresh. The model column holds the zoo name and builder options. "
        "A `+svm` row (`--svm`) is the R-CNN above it after its second stage, R-CNN's per-class "
        "linear SVMs on fc7 features with hard-negative mining (`detseg svm`, C = `svm_C`, fitted "
        "in `svm_seconds` on the train split); `softmax_mAP50`/`softmax_mAP` repeat that network's "
        "softmax scores, so the two scorings of one network sit in one row."
    ),
    "transfer_": (
        "The transfer-learning study on {dataset} (`benchmarks/transfer.py`; the lecture's \"less "
        "data, same performance\"): the detector in the model column is trained once on `source` "
        "(the `init = source` row, evaluated on the source's own val split), then on {dataset} "
        "with a seeded, nested `fraction` of its training images (`train_images`), once from "
        "scratch and once from the source checkpoint (`detseg train --weights`: every tensor whose "
        "name and shape match is loaded, `tensors_reinitialised` are the class-dependent "
        "predictors; `freeze_backbone` stages frozen), each for the same CPU budget "
        "(`budget_minutes` of training, the LR decaying over it), evaluated on the full validation "
        "split by the COCO evaluator (`mAP` = AP@[.5:.95], `mAP50`). The question the plot "
        "answers: does transfer at 25 % of the images reach scratch at 100 %?"
    ),
}
PREFIX_INTROS["tradeoff_"] = (
    "The speed/accuracy trade-off study on {dataset} (`benchmarks/tradeoff.py`, i.e. `detseg "
    "bench`; Huang et al. 2017): every detector trained for the same CPU budget "
    "(`budget_minutes`, training time only) on the same split, then measured in one process: "
    "COCO `mAP` / `mAP50` by detseg's evaluator on every row's predictions (peers included), "
    "`latency_ms` the median of >= 10 batch-1 `predict` calls (pre/post-processing included, "
    "`threads` torch threads), `images_per_s` at batch 8, `gflops` by torch's FlopCounterMode "
    "(a multiply-add counted once; NMS and RoI ops not counted), `peak_rss_mib` the process's "
    "peak RSS while the row was measured (the kernel's peak reset before each row; "
    "`rss_increase_mib` above the RSS at its start). `peer` rows are other libraries trained "
    "from scratch (torchvision's own models, Ultralytics with its own trainer and recipe); "
    "`central_box` is the floor (the mean training box in every image). `pareto`: on the "
    "latency-vs-mAP front (no row at least as fast and as accurate)."
)
# -- headlines -------------------------------------------------------------------------------------
# Each study opens with a short table of the columns a reader compares; every column of every
# record follows in a collapsed <details> block (and stays in the JSON). A key is a results-file
# name or a prefix ending in "_" (per-dataset files); the value is (columns, sort): rows sorted by
# the sort columns in turn ("-col": descending; missing values last), () keeps the file's order.
# A column named "col?" appears only when some record of the file has it.
Headline = tuple[tuple[str, ...], tuple[str, ...]]
CAMVID_SMALL = ("Pole", "SignSymbol", "Pedestrian", "Bicyclist", "Fence")  # thin/rare classes
HEADLINES: dict[str, Headline] = {
    "segmentation_camvid": (("model", "img_size", "mIoU", "pixel_acc", *(f"IoU/{c}" for c in CAMVID_SMALL),
                             "params", "gflops", "cpu_ms_per_image", "epochs_done"), ("-mIoU",)),
    "segmentation_shapes": (("model", "mIoU", "pixel_acc", "IoU/person", "params", "gflops",
                             "cpu_ms_per_image", "epochs_done", "train_seconds"), ("-mIoU",)),
    "postprocess_camvid": (("method", "mIoU", "pixel_acc", "mIoU_crf_off", "seconds_per_image",
                            "crf_seconds_per_image", "regions_per_image"), ()),
    "pose_lspet": (("model", "PCK@0.2", "PCP", "params", "cpu_ms_per_image", "train_seconds"),
                   ("-PCK@0.2",)),
    "pose_shapes": (("model", "PCK@0.2", "PCP", "params", "cpu_ms_per_image", "train_seconds"),
                    ("-PCK@0.2",)),
    "cls_loc_shapes": (("study", "variant", "chosen", "metric", "top1", "loc_acc", "mean_iou",
                        "params", "train_seconds", "epochs_done"), ()),
    # File order: a "+svm" row reads against the R-CNN row above it.
    "detection_": (("model", "mAP50", "mAP", "mask_mAP50?", "mask_mAP?", "kp_mAP?", "softmax_mAP50",
                    "params", "cpu_ms_per_image", "train_seconds", "epochs_done", "budget_minutes"), ()),
    "proposals_": (("method", "long_side", "proposals_per_image", "recall@1000_iou0.5",
                    "recall@2000_iou0.5", "recall@1000_iou0.7", "mabo", "seconds_per_image"), ()),
    "transfer_": (("init", "fraction", "train_images", "model", "mAP", "mAP50", "train_seconds",
                   "epochs_done"), ("init", "fraction")),
    "tradeoff_": (("model", "peer", "img_size", "mAP", "mAP50", "latency_ms", "images_per_s",
                   "params", "gflops", "peak_rss_mib", "train_seconds", "pareto"), ("latency_ms",)),
    "rcnn_family": (("model", "dataset", "img_size", "proposals_per_image",
                     "proposal_seconds_per_image", "network_seconds_per_image",
                     "total_seconds_per_image", "rcnn_over_network"), ()),
    "tv_latency": (("model", "size", "threads", "torchvision_ms", "detseg_ms", "ratio"), ()),
    "export": (("model", "img_size", "torch_ms", "onnx_ms", "speedup", "core_speedup",
                "max_core_diff", "onnx_mib"), ()),
    "serve_load": (("model", "clients", "requests", "ok", "errors", "p50_ms", "p95_ms",
                    "requests_per_s", "oversize_status", "non_image_status", "alive_after",
                    "passed"), ()),
    "reliability": (("case", "seed", "inputs", "ok", "clear_errors", "unexpected",
                     "growth_final_pct", "growth_max_pct"), ()),
    "coco_eval": (("task", "evaluator", "n_images", "seconds", "ratio", "max_stat_diff"), ()),
    "demo": (("model", "mIoU", "top1", "loc_acc", "PCK@0.2", "mAP50", "mAP", "train_seconds",
              "wall_seconds"), ()),
    "sliding_window": (("model", "seconds", "ratio", "same_labels", "max_logit_diff"), ()),
    "train_budget": (("model", "dataset", "epochs", "batch", "augment", "amp", "mIoU", "top1",
                      "loc_acc", "train_seconds"), ()),
}
# Plots make_docs draws from a results file: name -> (data, draw, title, alt text). The markdown
# links one when its data function finds something to draw (see docs_plots).
PLOTS: dict[str, tuple[Callable[..., Any], Callable[..., Any], str, str]] = {
    "segmentation_camvid": (docs_plots.speed_accuracy_data, docs_plots.draw_speed_accuracy,
                            "CamVid val: mIoU vs CPU time", "mIoU vs CPU ms per image"),
    "pose_lspet": (docs_plots.joints_data, docs_plots.draw_joints, "LSPET val: PCK@0.2 per joint",
                   "PCK@0.2 per joint, one bar per model"),
    "pose_shapes": (docs_plots.joints_data, docs_plots.draw_joints,
                    "shapes stick figures: PCK@0.2 per joint", "PCK@0.2 per joint, one bar per model"),
}
# Alt text of a PNG a benchmark itself writes beside its JSON (default: the file's name).
PNG_ALT = {"tradeoff_": "latency vs mAP, Pareto front dashed"}
# Columns shown last (long or rarely read); "command" is listed under the table instead.
TRAILING = ("date", "machine", "versions")
FUZZ_COUNTS = ("inputs", "ok", "clear_errors", "unexpected")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{_cell(k)}={_cell(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    # control characters (a fuzz record quotes mutated file content) would make the page binary
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)
    return text or "-"


def _table(cols: Sequence[str], rows: Sequence[Sequence[Any]], numbered: bool = False) -> list[str]:
    """A markdown table (then a blank line); ``numbered`` adds a leading ``#`` column."""
    head = (["#"] if numbered else []) + [str(c).replace("|", "\\|") for c in cols]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for i, row in enumerate(rows, 1):
        out.append("| " + " | ".join(([str(i)] if numbered else []) + [_cell(v) for v in row]) + " |")
    return out + [""]


def _columns(records: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in records:
        seen += [k for k in r if k not in seen and k != "command"]
    return [k for k in seen if k not in TRAILING] + [k for k in TRAILING if k in seen]


def _lookup(table: dict[str, Any], name: str) -> Any:
    """``table[name]``, else the entry of the longest prefix (``detection_``) of ``name``."""
    if name in table:
        return table[name]
    prefixes = [p for p in table if p.endswith("_") and name.startswith(p) and len(name) > len(p)]
    return table[max(prefixes, key=len)] if prefixes else None


def _prefix_intro(name: str) -> str | None:
    """The :data:`PREFIX_INTROS` text for ``<prefix><dataset>``, with the dataset filled in."""
    for prefix, text in PREFIX_INTROS.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return text.format(dataset=f"`{name[len(prefix):]}`")
    return None


def _sort_key(value: Any) -> tuple[int, float | str]:
    n = docs_plots.number(value)
    return (0, n) if n is not None else (1, str(value))


def sort_records(records: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """``records`` ordered by ``keys`` in turn (``-key`` descending), missing values last."""
    rows = list(records)
    for spec in reversed(keys):  # stable sorts, least significant key first
        col, desc = spec.lstrip("-"), spec.startswith("-")
        have = [r for r in rows if _cell(r.get(col)) != "-"]
        have.sort(key=lambda r: _sort_key(r[col]), reverse=desc)
        rows = have + [r for r in rows if _cell(r.get(col)) == "-"]
    return rows


def headline(records: list[dict[str, Any]], spec: Headline) -> list[str]:
    """The headline table of ``records``: the columns of ``spec``, rows in its order."""
    cols, keys = spec
    # "col?" is shown only where some record has it (mask AP is no column of a box-only dataset).
    cols = tuple(c.rstrip("?") for c in cols
                 if not c.endswith("?") or any(r.get(c[:-1]) is not None for r in records))
    return _table(cols, [[r.get(c) for c in cols] for r in sort_records(records, keys)])


def joints_table(records: list[dict[str, Any]], prefix: str = "PCK@0.2/") -> list[str]:
    """One row per joint (``PCK@0.2/<joint>`` keys), one column per model."""
    data = docs_plots.joints_data(records, prefix)
    if data is None:
        return []
    rows = [[joint] + [values[j] for _, values in data["models"]]
            for j, joint in enumerate(data["joints"])]
    return [f"{data['metric']} per joint:", ""] + _table(["joint"] + [m for m, _ in data["models"]], rows)


def fuzz_table(records: list[dict[str, Any]]) -> list[str]:
    """The fuzz records' ``per_reader`` counts summed over their seeds, with an ``all`` row."""
    fuzz = [r for r in records if r.get("case") == "fuzz" and isinstance(r.get("per_reader"), dict)]
    totals: dict[str, dict[str, float]] = {}
    for r in fuzz:
        for reader, counts in r["per_reader"].items():
            row = totals.setdefault(str(reader), dict.fromkeys(FUZZ_COUNTS, 0))
            for k in FUZZ_COUNTS:
                row[k] += docs_plots.number(counts.get(k) if isinstance(counts, dict) else None) or 0
    if not totals:
        return []
    rows = [[reader, *(int(c[k]) for k in FUZZ_COUNTS)] for reader, c in totals.items()]
    rows.append(["all", *(sum(r[i + 1] for r in rows) for i in range(len(FUZZ_COUNTS)))])
    seeds = ", ".join(_cell(r.get("seed")) for r in fuzz)
    return ([f"Fuzz counts per reader, summed over {len(fuzz)} seed(s) ({seeds}):", ""]
            + _table(["reader", *FUZZ_COUNTS], rows))


# Further tables under a headline: name (or prefix) -> records -> markdown lines.
EXTRAS: dict[str, Callable[[list[dict[str, Any]]], list[str]]] = {
    "pose_lspet": joints_table, "pose_shapes": joints_table, "reliability": fuzz_table,
}


def _plot_link(name: str, records: list[dict[str, Any]], png: Path) -> str | None:
    """The markdown image of the section's plot: make_docs' own (when the JSON allows one), else
    a PNG a benchmark wrote beside its JSON."""
    if name in PLOTS:
        data_fn, _, _, alt = PLOTS[name]
        return f"![{alt}](../benchmarks/results/{png.name})" if data_fn(records) is not None else None
    if png.is_file():
        return f"![{_lookup(PNG_ALT, name) or name}](../benchmarks/results/{png.name})"
    return None


def _read(path: Path) -> list[dict[str, Any]]:
    records = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(records, dict):
        records = [records]
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def render_file(path: Path) -> str:
    """One markdown section for one results file: intro, headline, plot, then every column."""
    name = path.stem
    try:
        records = _read(path)
    except json.JSONDecodeError as e:
        return f"## {name}\n\n`{path.name}` is not valid JSON ({e}); rerun its benchmark.\n"
    intro = INTROS.get(name) or _prefix_intro(name) or f"Results of the `{name}` benchmark."
    lines = [f"## {name}", "", intro, "", f"Source: `benchmarks/results/{path.name}`.", ""]
    if not records:
        return "\n".join(lines + ["No records yet.", ""])
    spec = _lookup(HEADLINES, name)
    if spec is not None:
        lines += headline(records, spec)
    extra = _lookup(EXTRAS, name)
    if extra is not None:
        lines += extra(records)
    link = _plot_link(name, records, path.with_suffix(".png"))
    if link:
        lines += [link, ""]
    cols = _columns(records)
    full = _table(cols, [[r.get(c) for c in cols] for r in records], numbered=True)
    commands = [r.get("command") for r in records]
    if len(set(commands)) == 1 and commands[0]:
        full += [f"All rows: `{commands[0]}`", ""]
    else:
        full += ["Commands:", ""]
        full += [f"{i}. `{c}`" if c else f"{i}. (not recorded)" for i, c in enumerate(commands, 1)]
        full += [""]
    if spec is None:  # no headline chosen for this file yet: the full table is the section
        return "\n".join(lines + full)
    # Blank lines around the table inside <details>: GitHub renders it as markdown then.
    summary = f"All columns ({len(records)} record{'s' if len(records) != 1 else ''})"
    return "\n".join(lines + [f"<details><summary>{summary}</summary>", ""] + full + ["</details>", ""])


def write_plots(results_dir: Path = RESULTS) -> list[Path]:
    """Draw the :data:`PLOTS` of the results files in ``results_dir``; the PNGs (re)written."""
    written = []
    for name, (data_fn, draw, title, _) in PLOTS.items():
        path = results_dir / f"{name}.json"
        if not path.is_file():
            continue
        try:
            data = data_fn(_read(path))
        except json.JSONDecodeError:
            continue  # render_file reports it
        if data is not None and docs_plots.write_plot(path.with_suffix(".png"), draw, data, title):
            written.append(path.with_suffix(".png"))
    return written


def render(results_dir: Path = RESULTS) -> str:
    files = sorted(results_dir.glob("*.json"))
    head = [
        "# Benchmarks",
        "",
        ("Generated by `python benchmarks/make_docs.py` from `benchmarks/results/*.json`; do not "
         "edit by hand. Each benchmark script writes its rows there; rerun it, then this script."),
        "",
    ]
    if not files:
        return "\n".join(head + ["No results yet.", ""])
    head += ["Contents: " + ", ".join(f"[{f.stem}](#{f.stem.lower()})" for f in files), ""]
    return "\n".join(head) + "\n" + "\n".join(render_file(f) for f in files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="fail if docs/BENCHMARKS.md is stale (the markdown only; writes nothing)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of *.json results")
    ap.add_argument("--out", type=Path, default=DOC, help="markdown file to write")
    args = ap.parse_args(argv)
    text = render(args.results)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python benchmarks/make_docs.py", file=sys.stderr)
            return 1
        return 0
    from detseg.io import write_text

    for png in write_plots(args.results):
        print(f"wrote {png}")
    write_text(args.out, text)
    print(f"wrote {args.out} ({len(list(args.results.glob('*.json')))} results files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
