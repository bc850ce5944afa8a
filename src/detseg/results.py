"""Prediction results as objects, in the manner of Ultralytics' ``Results``.

``model.predict(images)`` returns one :class:`Results` per image: the image, the prediction dict
(the :mod:`detseg.structures` convention, in the image's pixel frame), the task and the class names.
A result draws itself (``plot``/``save``), writes the semantic label map as PNG
(``save_label_png``) and converts itself to the COCO results format (``to_coco``: ``bbox`` as
``[x, y, w, h]``, masks as RLE through ``faster_coco_eval``'s mask utilities, keypoints as a flat
``[x1, y1, v1, ...]`` list; see https://cocodataset.org/#format-results).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from detseg.data.base import read_image
from detseg.io import save_png


def load_image(x: Any) -> tuple[Tensor, str | None]:
    """Any image input -> ``(Tensor[3, H, W] float in [0, 1], name or None)``.

    Accepts a path (``str``/``Path``, the name is the file name), a PIL image, a numpy array
    (``uint8`` or float in [0, 1], ``[H, W, 3]``, ``[H, W, 4]`` or ``[H, W]``) or a tensor
    (``[3, H, W]`` / ``[1, H, W]`` / ``[H, W]``, float in [0, 1] or uint8).
    """
    if isinstance(x, (str, Path)):
        return read_image(x), Path(x).name
    if isinstance(x, Image.Image):
        name = Path(x.filename).name if getattr(x, "filename", "") else None
        return _from_hwc(np.asarray(x.convert("RGB"))), name
    if isinstance(x, np.ndarray):
        return _from_hwc(x), None
    if isinstance(x, Tensor):
        t = x.detach()
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"image tensor: expected [3, H, W], [1, H, W] or [H, W], got {list(x.shape)}")
        if t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        t = t.float().div(255.0) if t.dtype == torch.uint8 else t.float()
        return t.contiguous(), None
    raise TypeError(f"image: cannot read a {type(x).__name__}; pass a path, PIL image, numpy array or tensor")


def _from_hwc(a: np.ndarray) -> Tensor:
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"image array: expected [H, W], [H, W, 3] or [H, W, 4], got {list(a.shape)}")
    a = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]
    t = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1)  # PIL arrays are read-only
    if a.dtype == np.uint8:
        return t.float().div_(255.0)
    if np.issubdtype(a.dtype, np.floating):
        return t.float().contiguous()
    raise ValueError(f"image array: dtype {a.dtype} is neither uint8 nor float")


class Results:
    """One image's prediction.

    Attributes:
        image: ``Tensor[3, H, W]`` float in [0, 1].
        prediction: the prediction dict (``boxes`` xyxy, ``labels``, ``scores``, ``masks``,
            ``keypoints``, ``sem_seg``; ``class``/``box`` for cls_loc).
        task: the model's task name.
        classes: the model's class names (``seg_classes`` for semantic models).
        name: the image's name (file name for paths).
    """

    def __init__(self, image: Tensor, prediction: dict[str, Any], task: str, classes: Sequence[str],
                 name: str | None = None, keypoint_names: Sequence[str] | None = None):
        self.image = image
        self.prediction = prediction
        self.task = task
        self.classes = list(classes)
        self.name = name
        self.keypoint_names = list(keypoint_names) if keypoint_names is not None else None

    # -- convenience views -------------------------------------------------------------------
    @property
    def boxes(self) -> Tensor:
        """``Tensor[N, 4]`` xyxy (cls_loc: its one box)."""
        p = self.prediction
        if "box" in p:
            return torch.as_tensor(p["box"]).float().reshape(1, 4)
        return torch.as_tensor(p.get("boxes", torch.zeros((0, 4)))).float().reshape(-1, 4)

    @property
    def labels(self) -> Tensor:
        """``Tensor[N]`` int64, 1-based (cls_loc: its one class)."""
        p = self.prediction
        if "class" in p:
            return torch.as_tensor(p["class"]).long().reshape(1)
        return torch.as_tensor(p.get("labels", torch.zeros(0, dtype=torch.int64))).long().reshape(-1)

    @property
    def scores(self) -> Tensor:
        """``Tensor[N]`` (ones when the model gives no scores; cls_loc: the winning class's score)."""
        p = self.prediction
        n = len(self.labels) if ("labels" in p or "class" in p) else len(self.boxes)
        if "scores" not in p:
            return torch.ones(n)
        s = torch.as_tensor(p["scores"]).float().reshape(-1)
        if "class" in p and len(s) > 1:  # a per-class score vector
            c = int(self.labels[0])
            return s[c - 1: c] if 1 <= c <= len(s) else s.max().reshape(1)
        return s

    @property
    def names(self) -> list[str]:
        """The class name of each instance."""
        return [self._name(int(l)) for l in self.labels]

    def __len__(self) -> int:
        if self.task == "semantic":
            return 0
        if "keypoints" in self.prediction and not ("boxes" in self.prediction or "box" in self.prediction):
            return len(self.prediction["keypoints"])
        return len(self.labels)

    # -- drawing and saving ------------------------------------------------------------------
    def plot(self, score_thresh: float = 0.3) -> np.ndarray:
        """The prediction drawn on the image: ``uint8 [H', W', 3]`` (small images are enlarged)."""
        from detseg.visualize import draw_prediction

        return draw_prediction(self.image, self.prediction, self.task, self.classes,
                               score_thresh=score_thresh, keypoint_names=self.keypoint_names)

    def save(self, path: str | Path, score_thresh: float = 0.3) -> Path:
        """Write :meth:`plot` as PNG (atomically)."""
        save_png(path, self.plot(score_thresh))
        return Path(path)

    def save_label_png(self, path: str | Path) -> Path:
        """Semantic models: the label map as a uint8 PNG (pixel value = ``seg_classes`` index)."""
        if "sem_seg" not in self.prediction:
            raise ValueError(f"{self.name or 'image'}: save_label_png: the {self.task} prediction "
                             "has no sem_seg")
        sem = torch.as_tensor(self.prediction["sem_seg"])
        if sem.numel() and (int(sem.min()) < 0 or int(sem.max()) > 255):
            raise ValueError(f"{self.name or 'image'}: sem_seg: values outside 0..255 do not fit a uint8 PNG")
        save_png(path, sem.to(torch.uint8).numpy())
        return Path(path)

    # -- machine-readable forms --------------------------------------------------------------
    def to_coco(self, image_id: int, category_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """COCO results records: ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``,
        ``score`` and, where predicted, ``segmentation`` (RLE) and ``keypoints`` (flat list).

        ``category_ids[label - 1]`` maps labels to dataset category ids (default: the label).
        Semantic maps have no COCO results form: they give ``[]`` (use :meth:`save_label_png`).
        """
        if self.task == "semantic":
            return []
        p = self.prediction
        kps = torch.as_tensor(p["keypoints"]).float() if "keypoints" in p else None
        boxes, labels, scores = self.boxes, self.labels, self.scores
        if len(boxes) == 0 and kps is not None and len(kps):  # pose: boxes from the joints
            boxes = _keypoint_boxes(kps)
            labels = labels if len(labels) == len(kps) else torch.ones(len(kps), dtype=torch.int64)
            scores = scores if len(scores) == len(kps) else torch.ones(len(kps))
        rles = _encode_masks(p["masks"]) if "masks" in p and len(p["masks"]) == len(boxes) else None
        records = []
        for i in range(len(boxes)):
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            label = int(labels[i]) if i < len(labels) else 1
            rec: dict[str, Any] = {
                "image_id": int(image_id),
                "category_id": int(category_ids[label - 1]) if category_ids is not None else label,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(scores[i]) if i < len(scores) else 1.0,
            }
            if rles is not None:
                rec["segmentation"] = rles[i]
            if kps is not None and i < len(kps):
                rec["keypoints"] = [float(v) for v in kps[i].reshape(-1)]
            records.append(rec)
        return records

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: names, boxes, scores, keypoints, RLE masks, classes present."""
        d: dict[str, Any] = {"name": self.name, "task": self.task,
                             "size": [int(self.image.shape[-2]), int(self.image.shape[-1])]}
        p = self.prediction
        if self.task == "semantic":
            if "sem_seg" in p:
                counts = torch.bincount(torch.as_tensor(p["sem_seg"]).reshape(-1).long().clamp(0, 255))
                d["pixels_per_class"] = {self._name0(c): int(n) for c, n in enumerate(counts.tolist()) if n}
            return d
        d["labels"] = self.labels.tolist()
        d["names"] = self.names
        d["boxes"] = self.boxes.tolist()
        d["scores"] = self.scores.tolist()
        if "keypoints" in p:
            d["keypoints"] = torch.as_tensor(p["keypoints"]).float().tolist()
        if "masks" in p:
            d["masks"] = _encode_masks(p["masks"])
        return d

    def __repr__(self) -> str:
        h, w = self.image.shape[-2:]
        head = f"Results(task={self.task!r}, name={self.name!r}, image={h}x{w}"
        if self.task == "semantic":
            present = self.to_dict().get("pixels_per_class", {})
            return f"{head}, classes present: {', '.join(present) or 'none'})"
        counts = Counter(self.names)
        what = ", ".join(f"{n} {c}" for c, n in counts.most_common())
        return f"{head}, {len(self)} instance(s){': ' + what if what else ''})"

    def _name(self, label: int) -> str:
        return self.classes[label - 1] if 1 <= label <= len(self.classes) else str(label)

    def _name0(self, index: int) -> str:
        return self.classes[index] if 0 <= index < len(self.classes) else str(index)


def _encode_masks(masks: Any) -> list[dict[str, Any]]:
    """``[N, H, W]`` -> COCO RLEs with ``counts`` as str (JSON-ready)."""
    from faster_coco_eval.core import mask as mask_utils

    m = torch.as_tensor(masks)
    m = (m > 0.5) if m.is_floating_point() else (m > 0)
    if len(m) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(m.permute(1, 2, 0).numpy().astype(np.uint8)))
    return [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def _keypoint_boxes(kps: Tensor) -> Tensor:
    """``[N, K, 3]`` -> ``[N, 4]`` xyxy around the labelled joints (each covering its pixel)."""
    boxes = torch.zeros((len(kps), 4))
    for i, k in enumerate(kps):
        v = k[k[:, 2] > 0] if k.shape[-1] > 2 else k
        if len(v):
            boxes[i] = torch.stack([v[:, 0].min(), v[:, 1].min(), v[:, 0].max() + 1, v[:, 1].max() + 1])
    return boxes
