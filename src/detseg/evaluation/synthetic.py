"""Generated evaluation cases: ground truth and imperfect predictions in the detseg convention.

Used by the pycocotools comparison test and ``benchmarks/coco_eval.py``. A case is seeded and
deterministic. Each image has 0..``max_objects`` objects of several classes and sizes spanning
COCO's small/medium/large ranges; predictions are the objects found again with box jitter (score
falling with the jitter), sometimes with the wrong class, sometimes twice, sometimes missed, plus
false positives with lower scores. Coordinates are fractional on purpose (no integer luck).
Scores are continuous, so no ties make the ranking depend on sort stability.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _random_boxes(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """``n`` xyxy boxes inside an ``h x w`` image, sides log-uniform in [4, 0.9 * side]."""
    bw = np.exp(rng.uniform(np.log(4), np.log(0.9 * w), n))
    bh = np.clip(bw * np.exp(rng.normal(0, 0.4, n)), 4, 0.9 * h)
    x1 = rng.uniform(0, w - bw)
    y1 = rng.uniform(0, h - bh)
    return np.stack([x1, y1, x1 + bw, y1 + bh], 1)


def _jitter(rng: np.random.Generator, boxes: np.ndarray, level: np.ndarray, h: int,
            w: int) -> np.ndarray:
    size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, 1)
    out = boxes + rng.normal(0, 1, boxes.shape) * size * level[:, None]
    out[:, [0, 2]] = np.sort(np.clip(out[:, [0, 2]], 0, w), 1)
    out[:, [1, 3]] = np.sort(np.clip(out[:, [1, 3]], 0, h), 1)
    out[:, 2:] = np.maximum(out[:, 2:], out[:, :2] + 1)
    return out


def _ellipse_masks(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """``[N, H, W]`` uint8: the ellipse inscribed in each box (at least one pixel)."""
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    masks = np.zeros((len(boxes), h, w), dtype=np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, max((x2 - x1) / 2, 0.5), max((y2 - y1) / 2, 0.5)
        masks[i] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        if not masks[i].any():
            masks[i, min(int(cy), h - 1), min(int(cx), w - 1)] = 1
    return masks


def _person_keypoints(rng: np.random.Generator, boxes: np.ndarray, k: int) -> np.ndarray:
    """``[N, K, 3]`` joints inside each box; visibility 0/1/2, some persons with none labelled."""
    n = len(boxes)
    u = rng.uniform(0, 1, (n, k, 2))
    xy = boxes[:, None, :2] + u * (boxes[:, None, 2:] - boxes[:, None, :2])
    vis = rng.choice([0.0, 1.0, 2.0], size=(n, k), p=[0.2, 0.2, 0.6])
    vis[rng.uniform(0, 1, n) < 0.05] = 0.0
    xy[vis == 0] = 0.0  # unlabelled joints carry no coordinates, as in COCO files
    return np.concatenate([xy, vis[..., None]], 2)


def make_case(n_images: int = 500, seed: int = 0, num_classes: int = 5, max_objects: int = 12,
              masks: bool = False, keypoints: int = 0, size: tuple[int, int] = (200, 640),
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """``(predictions, targets, classes)`` for ``n_images`` generated images.

    Args:
        masks: add instance masks (ellipses) to targets and predictions (use small ``size``).
        keypoints: K > 0 adds ``keypoints [N, K, 3]`` to targets and predictions.
        size: the range of image sides in pixels.
    """
    rng = np.random.default_rng(seed)
    classes = [f"class{i}" for i in range(1, num_classes + 1)]
    preds: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    for image_id in range(n_images):
        h, w = (int(v) for v in rng.integers(size[0], size[1] + 1, 2))
        n = int(rng.integers(0, max_objects + 1)) if rng.uniform() > 0.05 else 0
        gt = _random_boxes(rng, n, h, w)
        gt_labels = rng.integers(1, num_classes + 1, n)
        # Found objects (85%), some twice (10%), plus false positives.
        found = np.nonzero(rng.uniform(0, 1, n) < 0.85)[0]
        src = np.concatenate([found, found[rng.uniform(0, 1, len(found)) < 0.1]])
        level = rng.uniform(0.0, 0.25, len(src))
        dt = _jitter(rng, gt[src], level, h, w)
        dt_labels = gt_labels[src].copy()
        wrong = rng.uniform(0, 1, len(src)) < 0.1
        dt_labels[wrong] = rng.integers(1, num_classes + 1, int(wrong.sum()))
        scores = np.clip(1.0 - 2.5 * level + rng.normal(0, 0.15, len(src)), 0.01, 0.999)
        n_fp = int(rng.poisson(1.5))
        dt = np.concatenate([dt, _random_boxes(rng, n_fp, h, w)])
        dt_labels = np.concatenate([dt_labels, rng.integers(1, num_classes + 1, n_fp)])
        scores = np.concatenate([scores, rng.uniform(0.01, 0.7, n_fp)])

        target: dict[str, Any] = {
            "boxes": torch.tensor(gt, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(gt_labels, dtype=torch.int64),
            "image_id": image_id,
            "orig_size": torch.tensor([h, w], dtype=torch.int64),
        }
        pred: dict[str, Any] = {
            "boxes": torch.tensor(dt, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(dt_labels, dtype=torch.int64),
            "scores": torch.tensor(scores, dtype=torch.float32),
        }
        if masks:
            target["masks"] = torch.from_numpy(_ellipse_masks(target["boxes"].double().numpy(), h, w))
            pred["masks"] = torch.from_numpy(_ellipse_masks(pred["boxes"].double().numpy(), h, w))
        if keypoints:
            gk = _person_keypoints(rng, target["boxes"].double().numpy(), keypoints)
            pk = np.zeros((len(dt), keypoints, 3))
            pk[:, :, 2] = 1.0
            pk[:, :, :2] = _person_keypoints(rng, pred["boxes"].double().numpy(), keypoints)[:, :, :2]
            scale = np.sqrt((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]))
            near = gk[src, :, :2] + rng.normal(0, 1, (len(src), keypoints, 2)) * (
                scale[src, None, None] * rng.uniform(0.0, 0.15, (len(src), 1, 1)))
            labelled = gk[src, :, 2:] > 0
            pk[: len(src), :, :2] = np.where(labelled, near, pk[: len(src), :, :2])
            target["keypoints"] = torch.tensor(gk, dtype=torch.float32).reshape(-1, keypoints, 3)
            pred["keypoints"] = torch.tensor(pk, dtype=torch.float32).reshape(-1, keypoints, 3)
        targets.append(target)
        preds.append(pred)
    return preds, targets, classes
