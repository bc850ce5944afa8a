"""The bridge from detseg's per-image predictions and targets to COCO's format and faster-coco-eval.

Used by :class:`detseg.evaluation.coco.CocoEvaluator` (box, mask and keypoint AP) and by the
pose evaluator's OKS AP (:mod:`detseg.evaluation.keypoints`), so both sit above it and neither
imports the other for it.

How the detseg convention becomes COCO (all in memory, no temporary files):

- images get ids ``1..N`` in the order ``update`` saw them (the target's ``image_id`` is not used,
  so ids never collide, also after ``merge``); height/width come from ``orig_size`` (else masks);
- ``bbox`` is ``[x1, y1, x2 - x1, y2 - y1]``: detseg boxes are x2/y2 exclusive, so no ``+1``;
- ground-truth ``area`` is the mask area when the target has masks, else the box area, and
  ``iscrowd`` is 0; ``labels`` are the category ids (``classes[label - 1]`` is the name);
- detection ``area`` is the box area for box/keypoint AP and the mask area for mask AP (what
  pycocotools' ``loadRes`` gives when a mask result carries no ``bbox``, as Detectron2 does), so
  small/medium/large use the mask area for masks;
- masks are run-length encoded at ``update`` time (memory: an RLE is ~100x smaller than the mask);
- keypoints: ground-truth persons with no labelled joint (``num_keypoints == 0``) are ignored, as
  in COCO. OKS sigmas: see :mod:`detseg.evaluation.keypoints`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np
from torch import Tensor

from detseg.evaluation.common import boxes_of, to_numpy

BOX_STATS = ("mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large",
             "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")
MASK_STATS = tuple(f"mask_{k}" for k in BOX_STATS)
KP_STATS = ("kp_mAP", "kp_mAP50", "kp_mAP75", "kp_mAP_medium", "kp_mAP_large",
            "kp_AR", "kp_AR50", "kp_AR75", "kp_AR_medium", "kp_AR_large")
STAT_KEYS = {"bbox": BOX_STATS, "segm": MASK_STATS, "keypoints": KP_STATS}


def _quiet(*args: Any, **kwargs: Any) -> None:
    """faster-coco-eval prints its progress through this; the CLI prints tables instead."""


# -- update time: one compact record per image -----------------------------------------------------

def binary_masks(masks: Any) -> np.ndarray:
    """``[N, H, W]`` (or ``[N, 1, H, W]``) masks as uint8 {0, 1}; floats are thresholded at 0.5."""
    m = to_numpy(masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {tuple(m.shape)}")
    if m.dtype == np.uint8 or m.dtype == np.bool_:
        return m.view(np.uint8) if m.dtype == np.bool_ else np.minimum(m, 1)
    return ((m >= 0.5) if np.issubdtype(m.dtype, np.floating) else (m > 0)).view(np.uint8)


def encode_masks(masks: np.ndarray, encoder: Callable[[np.ndarray], list[dict]] | None = None,
                 ) -> list[dict]:
    """uint8 ``[N, H, W]`` {0, 1} masks -> N COCO RLEs (``{"size": [H, W], "counts": bytes}``).

    ``encoder`` is a COCO ``mask.encode`` (default faster-coco-eval's; the pycocotools reference
    path passes pycocotools' own so each side pays its own library's price).
    """
    if len(masks) == 0:
        return []
    if encoder is None:
        from faster_coco_eval.core.mask import encode as encoder
    # COCO's encoders read column-major [H, W, N].
    return encoder(np.asfortranarray(masks.transpose(1, 2, 0)))


def _image_size(target: dict[str, Any], prediction: dict[str, Any]) -> tuple[int, int]:
    """``(H, W)`` of the image: ``orig_size``, else a mask or semantic map, else the box extent."""
    if target.get("orig_size") is not None:
        h, w = to_numpy(target["orig_size"]).reshape(-1)[:2].tolist()
        return int(h), int(w)
    for d, key in ((target, "masks"), (target, "sem_seg"), (prediction, "masks")):
        shape = tuple(d[key].shape) if d.get(key) is not None else ()
        if len(shape) >= 2 and all(shape):
            return int(shape[-2]), int(shape[-1])
    boxes = np.concatenate([boxes_of(target), boxes_of(prediction)])
    if len(boxes) == 0:
        return 1, 1
    return int(np.ceil(boxes[:, 3].max())), int(np.ceil(boxes[:, 2].max()))


def _labels(d: dict[str, Any], n: int, what: str, image_id: Any, num_classes: int) -> np.ndarray:
    if d.get("labels") is None:
        if num_classes == 1:  # one-class data may omit labels
            return np.ones(n, dtype=np.int64)
        raise ValueError(f"{what} of image {image_id}: field 'labels' is missing")
    labels = to_numpy(d["labels"], np.int64).reshape(-1)
    if len(labels) != n:
        raise ValueError(f"{what} of image {image_id}: field 'labels' has {len(labels)} entries "
                         f"for {n} boxes")
    bad = (labels < 1) | (labels > num_classes)
    if bad.any():
        raise ValueError(f"{what} of image {image_id}: field 'labels' holds {labels[bad][:5].tolist()}"
                         f", outside 1..{num_classes} (0 is background, classes[label - 1] the name)")
    return labels


def _keypoints(d: dict[str, Any], n: int, what: str, image_id: Any) -> np.ndarray:
    kps = to_numpy(d["keypoints"], np.float64)
    if kps.ndim == 2:  # one person given as [K, 3]
        kps = kps[None]
    if kps.ndim != 3 or kps.shape[0] != n or kps.shape[2] not in (2, 3):
        raise ValueError(f"{what} of image {image_id}: field 'keypoints' has shape "
                         f"{tuple(kps.shape)}, expected [{n}, K, 3]")
    if kps.shape[2] == 2:  # no visibility column: every joint counts as visible
        kps = np.concatenate([kps, np.full(kps.shape[:2] + (1,), 2.0)], axis=2)
    return kps


def make_record(prediction: dict[str, Any], target: dict[str, Any], num_classes: int,
                masks: bool = False, keypoints: bool = False,
                encoder: Callable[[np.ndarray], list[dict]] | None = None) -> dict[str, Any]:
    """What the COCO evaluator keeps of one image: numpy arrays and RLEs, nothing on a GPU.

    Keys: ``size (H, W)``; ``gt_boxes [G, 4]`` xyxy, ``gt_labels``, ``gt_difficult``, ``gt_area``,
    ``gt_rles``/``gt_kps [G, K, 3]`` when asked; ``dt_boxes``, ``dt_labels``, ``dt_scores``,
    ``dt_rles`` (+ ``dt_mask_area``), ``dt_kps`` likewise.
    """
    image_id = target.get("image_id", "?")
    image_id = int(image_id) if isinstance(image_id, (int, np.integer, Tensor)) else image_id
    rec: dict[str, Any] = {"size": _image_size(target, prediction)}
    gt_masks = target.get("masks")
    gt_boxes = boxes_of(target)
    if "boxes" not in target and gt_masks is not None:
        from detseg.structures import masks_to_boxes

        gt_boxes = to_numpy(masks_to_boxes(gt_masks), np.float64)
    g = len(gt_boxes)
    rec["gt_boxes"] = gt_boxes
    rec["gt_labels"] = _labels(target, g, "target", image_id, num_classes)
    rec["gt_difficult"] = (to_numpy(target["difficult"], bool).reshape(-1)
                           if target.get("difficult") is not None else np.zeros(g, dtype=bool))
    if len(rec["gt_difficult"]) != g:
        raise ValueError(f"target of image {image_id}: field 'difficult' has "
                         f"{len(rec['gt_difficult'])} entries for {g} boxes")
    if gt_masks is not None and len(gt_masks) != g:
        raise ValueError(f"target of image {image_id}: field 'masks' has {len(gt_masks)} "
                         f"masks for {g} boxes")
    if gt_masks is not None and g:
        m = binary_masks(gt_masks)
        _check_mask_size(m, rec["size"], "target", image_id)
        rec["gt_area"] = m.reshape(g, -1).sum(1, dtype=np.int64).astype(np.float64)
        if masks:  # box AP only needs the area (COCO's object size), mask AP the RLE
            rec["gt_rles"] = encode_masks(m, encoder)
    else:
        if masks and g:
            raise ValueError(f"target of image {image_id}: field 'masks' is missing (mask AP "
                             f"needs instance masks)")
        rec["gt_area"] = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
        if masks:
            rec["gt_rles"] = []
    if keypoints:
        if target.get("keypoints") is None:
            raise ValueError(f"target of image {image_id}: field 'keypoints' is missing")
        rec["gt_kps"] = _keypoints(target, g, "target", image_id)

    dt_boxes = boxes_of(prediction)
    if "boxes" not in prediction and keypoints and prediction.get("keypoints") is not None:
        dt_boxes = _keypoint_extent(_keypoints(prediction, len(to_numpy(prediction["keypoints"])),
                                               "prediction", image_id))
    d = len(dt_boxes)
    rec["dt_boxes"] = dt_boxes
    rec["dt_labels"] = _labels(prediction, d, "prediction", image_id, num_classes)
    if prediction.get("scores") is None:
        raise ValueError(f"prediction of image {image_id}: field 'scores' is missing (AP ranks "
                         f"detections by score)")
    rec["dt_scores"] = to_numpy(prediction["scores"], np.float64).reshape(-1)
    if len(rec["dt_scores"]) != d:
        raise ValueError(f"prediction of image {image_id}: field 'scores' has "
                         f"{len(rec['dt_scores'])} entries for {d} boxes")
    if masks:
        m = (binary_masks(prediction["masks"]) if prediction.get("masks") is not None
             else np.zeros((0, 1, 1), dtype=np.uint8))
        if len(m) != d:
            raise ValueError(f"prediction of image {image_id}: field 'masks' has {len(m)} "
                             f"masks for {d} boxes")
        if d:
            _check_mask_size(m, rec["size"], "prediction", image_id)
        rec["dt_rles"] = encode_masks(m, encoder)
        rec["dt_mask_area"] = m.reshape(d, -1).sum(1, dtype=np.int64).astype(np.float64) if d \
            else np.zeros(0)
    if keypoints:
        if prediction.get("keypoints") is None:
            raise ValueError(f"prediction of image {image_id}: field 'keypoints' is missing")
        rec["dt_kps"] = _keypoints(prediction, d, "prediction", image_id)
    return rec


def _check_mask_size(m: np.ndarray, size: tuple[int, int], what: str, image_id: Any) -> None:
    if tuple(m.shape[1:]) != tuple(size):
        raise ValueError(f"{what} of image {image_id}: field 'masks' is {m.shape[1]}x{m.shape[2]}"
                         f" but the image is {size[0]}x{size[1]} (orig_size); predictions must be "
                         f"mapped back to the original image")


def _keypoint_extent(kps: np.ndarray) -> np.ndarray:
    """``[N, K, 3]`` -> ``[N, 4]`` xyxy around every joint (a box when a model gives none)."""
    if len(kps) == 0:
        return np.zeros((0, 4))
    xy = kps[:, :, :2]
    return np.concatenate([xy.min(1), xy.max(1)], axis=1)


# -- compute time: COCO dicts and faster-coco-eval ---------------------------------------------------

def _stack(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], np.ndarray]:
    """``(image id of each row, rows)``: one field of every record concatenated (ids are 1-based)."""
    counts = [len(r[key]) for r in records]
    ids = np.repeat(np.arange(1, len(records) + 1), counts).tolist()
    rows = [r[key] for r in records if len(r[key])]  # empty ones may have any trailing shape
    return ids, np.concatenate(rows) if rows else np.zeros((0, 4))


def _xywh(boxes: np.ndarray) -> list[list[float]]:
    """xyxy (x2/y2 exclusive) -> COCO ``[x, y, w, h]`` with ``w = x2 - x1``."""
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()


def coco_ground_truth(records: Sequence[dict[str, Any]], classes: Sequence[str], iou_type: str,
                      keypoint_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The COCO ground-truth dict (``images``, ``categories``, ``annotations``) of the records."""
    categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(classes)]
    if iou_type == "keypoints":
        for c in categories:
            c["keypoints"] = list(keypoint_names or [])
    images = [{"id": i, "height": r["size"][0], "width": r["size"][1]}
              for i, r in enumerate(records, 1)]
    # Whole-dataset arrays converted to Python lists once: no per-object numpy calls.
    image_ids, boxes = _stack(records, "gt_boxes")
    labels = np.concatenate([r["gt_labels"] for r in records]).tolist() if records else []
    areas = np.concatenate([r["gt_area"] for r in records]).tolist() if records else []
    # Ids start at 1: faster-coco-eval uses id 0 as its "unmatched" marker.
    anns = [{"id": i, "image_id": im, "category_id": c, "bbox": b, "area": a, "iscrowd": 0}
            for i, (im, c, b, a) in enumerate(zip(image_ids, labels, _xywh(boxes), areas), 1)]
    if iou_type == "segm":
        rles = [rle for r in records for rle in r["gt_rles"]]
        for ann, rle in zip(anns, rles):
            ann["segmentation"] = rle
    elif iou_type == "keypoints":
        _, kps = _stack(records, "gt_kps")
        flat = kps.reshape(len(kps), -1).tolist() if len(kps) else []
        n_kp = np.count_nonzero(kps[:, :, 2] > 0, axis=1).tolist() if len(kps) else []
        for ann, k, n in zip(anns, flat, n_kp):
            ann["keypoints"] = k
            ann["num_keypoints"] = n
    return {"images": images, "categories": categories, "annotations": anns}


def coco_detections(records: Sequence[dict[str, Any]], iou_type: str) -> list[dict[str, Any]]:
    """The COCO result list (``image_id``, ``category_id``, ``bbox``, ``score``, ``area``, ...)."""
    image_ids, boxes = _stack(records, "dt_boxes")
    labels = np.concatenate([r["dt_labels"] for r in records]).tolist() if records else []
    scores = np.concatenate([r["dt_scores"] for r in records]).tolist() if records else []
    if iou_type == "segm":  # mask AP sizes objects by mask area
        areas = np.concatenate([r["dt_mask_area"] for r in records]).tolist() if records else []
    else:
        areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).tolist()
    anns = [{"id": i, "image_id": im, "category_id": c, "bbox": b, "score": s, "area": a,
             "iscrowd": 0}
            for i, (im, c, b, s, a) in enumerate(zip(image_ids, labels, _xywh(boxes), scores,
                                                     areas), 1)]
    if iou_type == "segm":
        for ann, rle in zip(anns, (rle for r in records for rle in r["dt_rles"])):
            ann["segmentation"] = rle
    elif iou_type == "keypoints":
        _, kps = _stack(records, "dt_kps")
        for ann, k in zip(anns, kps.reshape(len(kps), -1).tolist() if len(kps) else []):
            ann["keypoints"] = k
    return anns


@functools.lru_cache(maxsize=1)
def _cocoeval_class() -> type:
    """``COCOeval_faster`` with OKS computed for all (detection, person) pairs of an image at once.

    faster-coco-eval moved matching and accumulation to C++, but its OKS is still pycocotools'
    Python loop over ground-truth persons with one ``np.sum`` per (detection, person) pair;
    profiling ``benchmarks/coco_eval.py`` showed it at about half of keypoint evaluation time,
    making keypoint AP only ~4x faster than pycocotools. This override is the same formula on the
    same objects in the same order (detections by score, stable, the first ``maxDets``), as one
    numpy expression; only the summation order of the per-joint terms differs (~1e-16).
    """
    from faster_coco_eval import COCOeval_faster

    class COCOevalVectorOKS(COCOeval_faster):
        def computeOks(self, imgId: int, catId: int) -> np.ndarray | list:  # noqa: N802, N803
            p = self.params
            gts = self.gt_dataset.get(imgId, catId)
            dts = self.dt_dataset.get(imgId, catId)
            if len(gts) == 0 or len(dts) == 0:
                return []
            order = np.argsort([-d["score"] for d in dts], kind="mergesort")[: p.maxDets[-1]]
            dk = np.asarray([dts[i]["keypoints"] for i in order], dtype=np.float64)
            gk = np.asarray([g["keypoints"] for g in gts], dtype=np.float64)
            xd, yd = dk[None, :, 0::3], dk[None, :, 1::3]  # [1, D, K]
            xg, yg, vis = gk[:, None, 0::3], gk[:, None, 1::3], gk[:, None, 2::3] > 0  # [G, 1, K]
            labelled = vis.any(-1, keepdims=True)
            bb = np.asarray([g["bbox"] for g in gts], dtype=np.float64)[:, None, :, None]
            # A person without labelled joints: distance to its box doubled on every side.
            x0, x1 = bb[:, :, 0] - bb[:, :, 2], bb[:, :, 0] + bb[:, :, 2] * 2
            y0, y1 = bb[:, :, 1] - bb[:, :, 3], bb[:, :, 1] + bb[:, :, 3] * 2
            dx = np.where(labelled, xd - xg, np.maximum(0, x0 - xd) + np.maximum(0, xd - x1))
            dy = np.where(labelled, yd - yg, np.maximum(0, y0 - yd) + np.maximum(0, yd - y1))
            var = (np.asarray(p.kpt_oks_sigmas, dtype=np.float64) * 2) ** 2
            if self.use_area:
                scale = np.asarray([g["area"] for g in gts], dtype=np.float64)[:, None, None]
            else:
                scale = (bb[:, :, 3] * bb[:, :, 2] * 0.53)
            e = (dx**2 + dy**2) / var / (scale + np.spacing(1)) / 2
            counted = vis | ~labelled
            sim = np.where(counted, np.exp(-e), 0.0).sum(-1) / counted.sum(-1)  # [G, D]
            return sim.T

    return COCOevalVectorOKS


def run_cocoeval(gt: dict[str, Any], dets: list[dict[str, Any]], iou_type: str,
                 sigmas: Sequence[float] | None = None) -> tuple[np.ndarray, dict[int, float]]:
    """faster-coco-eval on in-memory dicts -> ``(stats, per-category AP@[.5:.95])``.

    ``stats`` has COCO's 12 (10 for keypoints) summary numbers; per-category AP is ``-1`` for a
    category without ground truth, like COCO's summary.
    """
    from faster_coco_eval import COCO

    n_stats = len(STAT_KEYS[iou_type])
    if not gt["annotations"]:  # nothing to find: every AP/AR is undefined, as COCO reports
        return np.full(n_stats, -1.0), {c["id"]: -1.0 for c in gt["categories"]}
    coco_gt = COCO(gt, print_function=_quiet)
    coco_dt = COCO({"images": gt["images"], "categories": gt["categories"], "annotations": dets},
                   print_function=_quiet)
    kwargs: dict[str, Any] = {"print_function": _quiet}
    if iou_type == "keypoints" and sigmas is not None:
        kwargs["kpt_oks_sigmas"] = list(map(float, sigmas))
    ev = _cocoeval_class()(coco_gt, coco_dt, iou_type, **kwargs)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    precision = ev.eval["precision"]  # [IoU, recall, category, area, maxDets]
    per_cat: dict[int, float] = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        per_cat[int(cat_id)] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
    return np.asarray(ev.stats[:n_stats], dtype=np.float64), per_cat
