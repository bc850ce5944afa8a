"""PASCAL VOC detection AP (VOC2010+ devkit rules: all-point interpolated area under the PR curve).

Reference: Everingham et al., "The PASCAL Visual Object Classes Challenge: A Retrospective",
IJCV 2015, and the devkit's ``VOCevaldet.m`` / ``VOCap.m``. Rules implemented exactly:

- per class, detections of all images are ranked by score (stable, so ties keep input order);
- a detection is compared with *every* ground-truth box of its class in its image and takes the one
  of maximal IoU; if that IoU is ``>= 0.5`` (the devkit's ``ovmax >= minoverlap``) it is a true
  positive unless that box was already taken (then a false positive, a duplicate) or is marked
  ``difficult`` (then neither: difficult boxes are ignored and not counted as positives);
  otherwise it is a false positive;
- AP is the area under the precision/recall curve after making precision monotone (the
  "all-point" interpolation of VOC2010+, not the 11-point one of VOC2007).

Boxes are xyxy with x2/y2 exclusive, so areas need no ``+1`` (the devkit's ``+1`` is for its
inclusive 1-based pixel boxes; the geometry is the same).

A class with no (non-difficult) ground truth has no defined AP: it gets ``-1`` like COCO gives for
an absent category, and is left out of the mean (``VOC_mAP50`` is ``-1`` when no class has any).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClassAP:
    """The VOC result of one class: ``ap`` (``-1`` when ``n_gt == 0``), positives and detections."""

    ap: float
    n_gt: int
    n_det: int


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC2010+): the area under the monotone PR envelope.

    Args:
        recall: ``[D]`` non-decreasing recall after each ranked detection.
        precision: ``[D]`` precision after each ranked detection.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    # Precision envelope: the best precision reachable at this recall or beyond.
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _pairs(gt_key: np.ndarray, dt_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (detection, ground truth) index pair with equal keys, gt in input order per det."""
    g_order = np.argsort(gt_key, kind="stable")
    g_sorted = gt_key[g_order]
    start = np.searchsorted(g_sorted, dt_key, "left")
    count = np.searchsorted(g_sorted, dt_key, "right") - start
    det = np.repeat(np.arange(len(dt_key)), count)
    offset = np.arange(len(det)) - np.repeat(np.cumsum(count) - count, count)
    return det, g_order[np.repeat(start, count) + offset]


def match_detections(gt_image: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray,
                     gt_difficult: np.ndarray, dt_image: np.ndarray, dt_boxes: np.ndarray,
                     dt_labels: np.ndarray, dt_scores: np.ndarray,
                     iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """VOC matching of all detections at once -> ``(tp, fp)`` flags, ``float [D]``, input order.

    Args:
        gt_image, dt_image: ``[G]`` / ``[D]`` image index of each box (boxes of different images
            never match). gt_boxes ``[G, 4]``, gt_labels ``[G]``, gt_difficult ``[G]`` bool;
            dt_boxes ``[D, 4]``, dt_labels ``[D]``, dt_scores ``[D]``.
    """
    n_dt = len(dt_boxes)
    tp = np.zeros(n_dt)
    fp = np.ones(n_dt)
    if n_dt == 0 or len(gt_boxes) == 0:
        return tp, fp
    span = int(max(gt_labels.max(initial=0), dt_labels.max(initial=0))) + 1
    det, gt = _pairs(gt_image * span + gt_labels, dt_image * span + dt_labels)
    if len(det) == 0:
        return tp, fp
    a, b = dt_boxes[det], gt_boxes[gt]
    wh = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    union = (np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), 1)
             + np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), 1) - inter)
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    # Each detection takes the box of maximal IoU among all boxes of its class in its image, taken
    # or not (the devkit's max over the class's boxes; ties -> the first box, like MATLAB's max).
    order = np.lexsort((np.arange(len(det)), -iou, det))
    first = order[np.unique(det[order], return_index=True)[1]]
    has = det[first]
    best_gt, best_iou = gt[first], iou[first]
    hit = best_iou >= iou_threshold
    hits, hit_gt = has[hit], best_gt[hit]
    difficult = gt_difficult[hit_gt]
    fp[hits[difficult]] = 0.0  # matched a difficult box: ignored
    live, live_gt = hits[~difficult], hit_gt[~difficult]
    # Since the best box does not depend on earlier detections, among the hits on one box the
    # highest-scored (first in input order on ties) is the TP and the others are duplicates.
    by_box = np.lexsort((live, -dt_scores[live], live_gt))
    winners = live[by_box[np.unique(live_gt[by_box], return_index=True)[1]]]
    tp[winners] = 1.0
    fp[winners] = 0.0
    return tp, fp


def voc_ap_per_class(gts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                     dts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                     labels: list[int], iou_threshold: float = 0.5) -> dict[int, ClassAP]:
    """VOC AP at ``iou_threshold`` for each label in ``labels``.

    Args:
        gts: per image ``(boxes [G, 4], labels [G], difficult [G] bool)``.
        dts: per image ``(boxes [D, 4], labels [D], scores [D])``.
        labels: the class labels to report (1-based, ``classes[label - 1]``).
    """
    gt_image = np.repeat(np.arange(len(gts)), [len(g[0]) for g in gts])
    dt_image = np.repeat(np.arange(len(dts)), [len(d[0]) for d in dts])
    gt_boxes, gt_labels, gt_difficult = _cat(gts, 3)
    dt_boxes, dt_labels, dt_scores = _cat(dts, 3)
    tp, fp = match_detections(gt_image, gt_boxes, gt_labels.astype(np.int64),
                              gt_difficult.astype(bool), dt_image, dt_boxes,
                              dt_labels.astype(np.int64), dt_scores, iou_threshold)
    positives = gt_labels[~gt_difficult.astype(bool)]  # difficult boxes only absorb detections
    out: dict[int, ClassAP] = {}
    for label in labels:
        n_gt = int(np.count_nonzero(positives == label))
        sel = np.nonzero(dt_labels == label)[0]
        if n_gt == 0:
            out[label] = ClassAP(-1.0, 0, len(sel))
            continue
        # Rank by score; a stable sort keeps input order among equal scores.
        order = sel[np.argsort(-dt_scores[sel], kind="stable")]
        ctp = np.cumsum(tp[order])
        cfp = np.cumsum(fp[order])
        recall = ctp / n_gt
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        out[label] = ClassAP(voc_ap(recall, precision), n_gt, len(sel))
    return out


def _cat(items: list[tuple[np.ndarray, ...]], n: int) -> list[np.ndarray]:
    """Concatenate per-image tuples field by field (boxes become ``[N, 4]``)."""
    if not items:
        return [np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0)][:n]
    return [np.concatenate([it[i] for it in items]) for i in range(n)]


def mean_ap(per_class: dict[int, ClassAP]) -> float:
    """Mean AP over the classes that have ground truth; ``-1`` when none has."""
    aps = [r.ap for r in per_class.values() if r.n_gt > 0]
    return float(np.mean(aps)) if aps else -1.0
