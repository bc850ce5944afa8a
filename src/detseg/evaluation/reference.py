"""The same COCO evaluation through the original pycocotools, for cross-checks and benchmarks.

pycocotools (github.com/cocodataset/cocoapi) is the reference implementation of the COCO metrics;
it is a development dependency of detseg only (``pip install detseg[dev]``). This module feeds it
exactly the dicts :mod:`detseg.evaluation.coco` builds, so any difference in the numbers comes from
the evaluation itself, never from the conversion.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any, Sequence

import numpy as np

from detseg.evaluation.coco_api import STAT_KEYS, coco_detections, coco_ground_truth, make_record


def pycocotools_encoder():
    """pycocotools' ``mask.encode`` (column-major ``uint8 [H, W, N]`` -> RLEs)."""
    from pycocotools import mask

    return mask.encode


def pycocotools_stats(gt: dict[str, Any], dets: list[dict[str, Any]], iou_type: str,
                      sigmas: Sequence[float] | None = None) -> np.ndarray:
    """COCO summary stats (12, or 10 for keypoints) computed by pycocotools on in-memory dicts."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:  # pragma: no cover - dev dependency
        raise ImportError("pycocotools is needed for the reference evaluation: "
                          "pip install 'detseg[dev]'") from e
    n_stats = len(STAT_KEYS[iou_type])
    if not gt["annotations"]:
        return np.full(n_stats, -1.0)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints every step
        coco_gt = COCO()
        coco_gt.dataset = copy.copy(gt)
        coco_gt.createIndex()
        coco_dt = COCO()
        coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"],
                           "annotations": dets}
        coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if iou_type == "keypoints" and sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:n_stats], dtype=np.float64)


def pycocotools_evaluate(predictions: list[dict[str, Any]], targets: list[dict[str, Any]],
                         classes: Sequence[str], iou_type: str = "bbox",
                         sigmas: Sequence[float] | None = None,
                         keypoint_names: Sequence[str] | None = None) -> np.ndarray:
    """The whole pycocotools path from detseg predictions/targets: convert, evaluate, summarize."""
    records = [make_record(p, t, len(classes), masks=iou_type == "segm",
                           keypoints=iou_type == "keypoints", encoder=pycocotools_encoder())
               for p, t in zip(predictions, targets)]
    gt = coco_ground_truth(records, classes, iou_type, keypoint_names)
    return pycocotools_stats(gt, coco_detections(records, iou_type), iou_type, sigmas)
