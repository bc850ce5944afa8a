"""COCO detection, instance-mask and keypoint AP through faster-coco-eval (plus VOC AP50 per class).

Metrics are those of the COCO detection challenge (Lin et al., "Microsoft COCO: Common Objects in
Context", ECCV 2014; cocodataset.org/#detection-eval): AP averaged over IoU 0.50:0.05:0.95 with
101-point interpolated precision, per area range and max-detection count, computed by
``faster_coco_eval.COCOeval_faster`` (the pycocotools algorithm with per-image matching and
accumulation in C++; ``tests/evaluation/test_coco_vs_pycocotools.py`` proves equality to
pycocotools within 1e-9).

The conversion of the detseg convention into COCO's, and the call into faster-coco-eval, are
:mod:`detseg.evaluation.coco_api`.

Empty cases follow COCO: a statistic with no ground truth in its range is ``-1`` (so with no
targets at all every AP/AR is ``-1``); with targets but no predictions AP and AR are ``0``.
The VOC keys (``AP50/<class>``, ``VOC_mAP50``) are :mod:`detseg.evaluation.voc`; a target may
carry ``difficult`` (bool ``[N]``): VOC ignores those boxes, COCO counts them as ordinary objects.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence


from detseg.evaluation.coco_api import (BOX_STATS, KP_STATS, MASK_STATS, STAT_KEYS, coco_detections,
                                        coco_ground_truth, make_record, run_cocoeval)
from detseg.evaluation.common import Evaluator, metrics_table
from detseg.evaluation.keypoints import default_sigmas, multi_person_pck
from detseg.evaluation.voc import mean_ap, voc_ap_per_class
from detseg.tables import format_table

__all__ = ["BOX_STATS", "KP_STATS", "MASK_STATS", "STAT_KEYS", "CocoEvaluator"]


class CocoEvaluator(Evaluator):
    """Detection, instance and multi-person keypoint evaluation (tasks ``detection``,
    ``instance``, ``keypoints``).

    Args:
        classes: foreground class names; ``labels`` index them 1-based.
        task: ``detection`` (box AP), ``instance`` (box + mask AP) or ``keypoints`` (box + OKS AP
            + PCK).
        keypoint_names: joint names (keypoints task; default LSP/COCO names by K).
        sigmas: per-joint OKS sigmas overriding the defaults of :func:`default_sigmas`.
        pck_alpha: the PCK threshold factor (0.2 -> ``PCK@0.2``).
    """

    def __init__(self, classes: Sequence[str], task: str = "detection",
                 keypoint_names: Sequence[str] | None = None,
                 sigmas: Sequence[float] | None = None, pck_alpha: float = 0.2):
        if task not in ("detection", "instance", "keypoints"):
            raise ValueError(f"CocoEvaluator handles detection, instance, keypoints; not {task!r}")
        if not classes:
            raise ValueError(f"{task} evaluation needs the class names (got none)")
        self.task = task
        self.keypoint_names = list(keypoint_names) if keypoint_names else None
        self.sigmas = list(sigmas) if sigmas is not None else None
        self.pck_alpha = pck_alpha
        self.iou_types = ("bbox",) + {"detection": (), "instance": ("segm",),
                                      "keypoints": ("keypoints",)}[task]
        super().__init__(classes)

    def _clear(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._per_class: dict[str, dict[int, float]] = {}

    def _add_image(self, p: dict[str, Any], t: dict[str, Any]) -> None:
        self.records.append(make_record(p, t, len(self.classes), masks=self.task == "instance",
                                        keypoints=self.task == "keypoints"))

    def state(self) -> list[dict[str, Any]]:
        return self.records

    def merge(self, states: Iterable[list[dict[str, Any]]]) -> None:
        for s in states:
            self.records.extend(s)

    def compute(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        self._per_class = {}
        sigmas = None
        if self.task == "keypoints":
            k = next((r["gt_kps"].shape[1] for r in self.records if len(r["gt_kps"])), 0)
            sigmas = self.sigmas or (default_sigmas(k) if k else None)
        for iou_type in self.iou_types:
            gt = coco_ground_truth(self.records, self.classes, iou_type, self.keypoint_names)
            dets = coco_detections(self.records, iou_type)
            stats, per_cat = run_cocoeval(gt, dets, iou_type, sigmas)
            metrics.update(zip(STAT_KEYS[iou_type], stats.tolist()))
            self._per_class[iou_type] = per_cat
        voc = voc_ap_per_class(
            [(r["gt_boxes"], r["gt_labels"], r["gt_difficult"]) for r in self.records],
            [(r["dt_boxes"], r["dt_labels"], r["dt_scores"]) for r in self.records],
            list(range(1, len(self.classes) + 1)))
        self._voc = voc
        for label, res in voc.items():
            metrics[f"AP50/{self.classes[label - 1]}"] = res.ap
        metrics["VOC_mAP50"] = mean_ap(voc)
        if self.task == "keypoints":
            metrics.update(multi_person_pck(self.records, self.pck_alpha, sigmas,
                                            self.keypoint_names))
        self._metrics = metrics
        return dict(metrics)

    def table(self) -> str:
        """Per-class rows (objects, detections, COCO AP, VOC AP50) then the summary numbers."""
        if not self._metrics:
            self.compute()
        header = ["class", "objects", "detections", "AP", "AP50(VOC)"]
        if "segm" in self._per_class:
            header.append("mask_AP")
        if "keypoints" in self._per_class:
            header.append("kp_AP")
        rows = []
        for label, name in enumerate(self.classes, 1):
            voc = self._voc[label]
            row: list[Any] = [name, voc.n_gt, voc.n_det, self._per_class["bbox"].get(label, -1.0),
                              voc.ap]
            for t in ("segm", "keypoints"):
                if t in self._per_class:
                    row.append(self._per_class[t].get(label, -1.0))
            rows.append(row)
        keys = [*BOX_STATS, "VOC_mAP50"]
        keys += list(MASK_STATS) if self.task == "instance" else []
        keys += [*KP_STATS, f"PCK@{self.pck_alpha:g}"] if self.task == "keypoints" else []
        return (format_table(header, rows, title=f"{self.task}: per class (-1 = no ground truth)")
                + "\n\n" + metrics_table(self._metrics, keys))
