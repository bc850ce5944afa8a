"""Proposal quality: recall at K proposals, mean average best overlap (MABO), seconds per image.

The measures of Uijlings et al., "Selective Search for Object Recognition" (IJCV 2013, sec. 5.1)
and Hosang et al., "What makes for effective detection proposals?" (TPAMI 2016):

- recall@K at IoU t: the share of ground-truth boxes whose best IoU with the first K proposals of
  their image is ``>= t`` (pooled over all boxes of the dataset);
- ABO of a class: the mean over its ground-truth boxes of the best IoU with *all* proposals;
  MABO: the mean of the per-class ABOs (one class: the same as ABO);
- seconds per image: wall-clock time of the generator call, image decoding excluded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import box_iou

from detseg.tables import format_table

RECALL_AT = (100, 500, 1000, 2000)
RECALL_IOUS = (0.5, 0.7)


def best_overlaps(gt_boxes: Tensor, proposals: Tensor, ks: Sequence[int] = RECALL_AT) -> dict[str, Tensor]:
    """Best IoU of each ground-truth box with the first K proposals, for each K and with all.

    Args:
        gt_boxes: ``Tensor[M, 4]`` xyxy.
        proposals: ``Tensor[N, 4]`` xyxy, best-first.

    Returns:
        ``{"all": Tensor[M], "100": Tensor[M], ...}`` float, 0 where there is no proposal.
    """
    m = gt_boxes.shape[0]
    if proposals.numel() == 0 or m == 0:
        zero = torch.zeros(m)
        return {"all": zero, **{str(k): zero for k in ks}}
    iou = box_iou(gt_boxes.float(), proposals.float())  # [M, N]
    # Running max along proposals: the best IoU among the first k is cummax[:, k - 1].
    running = iou.cummax(dim=1).values
    n = proposals.shape[0]
    out = {"all": running[:, -1]}
    for k in ks:
        out[str(k)] = running[:, min(k, n) - 1]
    return out


class ProposalEvaluator:
    """Accumulate proposal quality over images; :meth:`summary` gives the flat metrics.

    Args:
        ks: proposal budgets for recall (default 100, 500, 1000, 2000).
        ious: IoU thresholds for recall (default 0.5, 0.7).
    """

    def __init__(self, ks: Sequence[int] = RECALL_AT, ious: Sequence[float] = RECALL_IOUS) -> None:
        self.ks = tuple(int(k) for k in ks)
        self.ious = tuple(float(t) for t in ious)
        self.best: dict[str, list[Tensor]] = {"all": [], **{str(k): [] for k in self.ks}}
        self.labels: list[Tensor] = []
        self.counts: list[int] = []
        self.seconds: list[float] = []

    def add(self, proposals: Tensor, target: dict[str, Any], seconds: float | None = None) -> None:
        """One image: its ``Tensor[N, 4]`` proposals and target (``boxes``, ``labels``)."""
        gt = target["boxes"].reshape(-1, 4)
        labels = target.get("labels", torch.ones(gt.shape[0], dtype=torch.int64))
        for key, value in best_overlaps(gt, proposals, self.ks).items():
            self.best[key].append(value)
        self.labels.append(labels.reshape(-1).cpu())
        self.counts.append(int(proposals.shape[0]))
        if seconds is not None:
            self.seconds.append(float(seconds))

    def summary(self) -> dict[str, float]:
        """``recall@K_iouT`` for each K and T, ``mabo``, ``abo``, ``proposals_per_image``,
        ``seconds_per_image``, ``images``, ``objects``. NaN where undefined (no objects / timing)."""
        best = {k: torch.cat(v) if v else torch.zeros(0) for k, v in self.best.items()}
        labels = torch.cat(self.labels) if self.labels else torch.zeros(0, dtype=torch.int64)
        n_obj = int(labels.numel())
        nan = float("nan")
        out: dict[str, float] = {}
        for k in self.ks:
            for t in self.ious:
                out[f"recall@{k}_iou{t:g}"] = float((best[str(k)] >= t).float().mean()) if n_obj else nan
        per_class = [float(best["all"][labels == c].mean()) for c in labels.unique()]
        out["mabo"] = sum(per_class) / len(per_class) if per_class else nan
        out["abo"] = float(best["all"].mean()) if n_obj else nan
        out["proposals_per_image"] = sum(self.counts) / len(self.counts) if self.counts else nan
        out["seconds_per_image"] = sum(self.seconds) / len(self.seconds) if self.seconds else nan
        out["images"] = float(len(self.counts))
        out["objects"] = float(n_obj)
        return out

    def table(self) -> str:
        """A text table: one row per K, one recall column per IoU, then MABO and timing lines."""

        s = self.summary()
        rows = [(str(k), *(f"{s[f'recall@{k}_iou{t:g}']:.3f}" for t in self.ious)) for k in self.ks]
        header = ["proposals", *(f"recall IoU>={t:g}" for t in self.ious)]
        lines = [format_table(header, rows),
                 f"MABO {s['mabo']:.3f}  (ABO over all objects {s['abo']:.3f})",
                 f"{s['proposals_per_image']:.0f} proposals/image, {s['seconds_per_image']:.3f} s/image, "
                 f"{s['images']:.0f} images, {s['objects']:.0f} objects"]
        return "\n".join(lines)


def evaluate_proposals(generator: Any, dataset: Any, limit: int | None = None,
                       progress: bool = False) -> ProposalEvaluator:
    """Run ``generator`` over ``dataset`` (``(image, target)`` pairs) and score it.

    Each target gets a ``file`` key from ``dataset.files`` where the reader has one (precomputed
    proposals may be keyed by file name). ``limit`` = evaluate the first N images only.
    """
    n = len(dataset) if limit is None else min(limit, len(dataset))
    files = getattr(dataset, "files", None)
    evaluator = ProposalEvaluator()
    indices = range(n)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="proposals", dynamic_ncols=True)
    for i in indices:
        image, target = dataset[i]
        target = dict(target)
        if files is not None and i < len(files) and "file" not in target:
            target["file"] = files[i]
        start = time.perf_counter()
        (proposals,), _ = generator([image], targets=[target])
        evaluator.add(proposals, target, time.perf_counter() - start)
    return evaluator
