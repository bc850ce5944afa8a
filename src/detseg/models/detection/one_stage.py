"""The single-shot (dense) detector meta-architecture shared by YOLO v1, YOLO and SSD.

Redmon et al., "You Only Look Once: Unified, Real-Time Object Detection" (CVPR 2016,
https://arxiv.org/abs/1506.02640) and Liu et al., "SSD: Single Shot MultiBox Detector" (ECCV 2016,
https://arxiv.org/abs/1512.02325) drop the per-region stage of R-CNN: one forward pass of a CNN
gives, at every cell of one or more grids, box offsets, a confidence and class scores::

    images -> resize (square warp, or letterbox: longer side = img_size), normalise, pad
           -> backbone -> (neck) -> dense head -> raw outputs
           -> training: targets scaled to the network frame -> the subclass's loss
           -> predictions: the subclass decodes boxes [N, 4] (network pixels) and per-class
              scores [N, C]; then score threshold, top-k, per-class NMS, ``detections_per_img``,
              boxes mapped back to each original image.

A subclass implements :meth:`OneStageDetector.head_outputs`, :meth:`~OneStageDetector.loss` and
:meth:`~OneStageDetector.decode`; resizing, target checks, NMS and mapping back live here once.
Models whose priors depend on the data (YOLO's k-means anchors) define ``fit_priors(dataset)``,
which the trainer calls once on the training set before the first epoch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from detseg.models.backbones import Backbone
from detseg.models.base import DetsegModel
from detseg.models.transform import ImageBatch, preprocess, resized_size
from detseg.structures import ModelOutput


class OneStageDetector(DetsegModel):
    """Backbone -> dense head; a subclass supplies the head's outputs, loss and decoding.

    Args:
        classes: foreground class names (labels 1..C).
        backbone: the CNN; its ``out_stride`` sets the padding multiple.
        img_size: the square side (``keep_aspect=False``: YOLO v1 and SSD warp to a square as in
            both papers) or the longer side (``keep_aspect=True``: YOLOv2-style letterbox).
        keep_aspect: the resize policy (see :mod:`detseg.models.transform`).
        score_thresh, nms_thresh, pre_nms_topk, detections_per_img: inference post-processing.
        name: the zoo name used in error messages.
    """

    task = "detection"

    def __init__(self, classes: list[str], backbone: Backbone, img_size: int, keep_aspect: bool,
                 score_thresh: float = 0.01, nms_thresh: float = 0.5, pre_nms_topk: int = 1000,
                 detections_per_img: int = 100, name: str = "one_stage") -> None:
        super().__init__(classes)
        self.backbone = backbone
        self.img_size = int(img_size)
        self.keep_aspect = bool(keep_aspect)
        self.score_thresh, self.nms_thresh = float(score_thresh), float(nms_thresh)
        self.pre_nms_topk, self.detections_per_img = int(pre_nms_topk), int(detections_per_img)
        self.name = name
        self.stride = int(backbone.out_stride)

    # -- what a subclass provides ---------------------------------------------------------------
    def head_outputs(self, x: Tensor) -> Any:  # pragma: no cover - abstract
        """Raw outputs of the network for the normalised padded batch ``x`` ``[B, 3, Hp, Wp]``."""
        raise NotImplementedError

    def loss(self, outputs: Any, targets: list[dict[str, Tensor]],
             batch: ImageBatch) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """Losses from the raw outputs and targets whose boxes are in network-frame pixels."""
        raise NotImplementedError

    def decode(self, outputs: Any, batch: ImageBatch) -> tuple[Tensor, Tensor]:  # pragma: no cover
        """``(boxes Tensor[B, N, 4] xyxy network-frame pixels, scores Tensor[B, N, C])``."""
        raise NotImplementedError

    # -- the model-side transform ---------------------------------------------------------------
    def transform(self, images: list[Tensor]) -> ImageBatch:
        return preprocess(images, self.img_size, self.keep_aspect, self.stride, who=self.name)

    def scale_targets(self, targets: list[dict[str, Tensor]], batch: ImageBatch) -> list[dict]:
        """Targets with ``boxes`` in network-frame pixels; degenerate boxes dropped."""
        if len(targets) != len(batch.image_sizes):
            raise ValueError(f"{self.name}: {len(batch.image_sizes)} images but {len(targets)} targets")
        device = batch.tensor.device
        out = []
        for i, (t, (h, w), (oh, ow)) in enumerate(zip(targets, batch.image_sizes, batch.original_sizes)):
            boxes, labels = checked_boxes_labels(t, i, self.num_classes, self.name)
            boxes = boxes.to(device, torch.float32) * torch.tensor([w / ow, h / oh] * 2, device=device)
            ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            out.append({"boxes": boxes[ok], "labels": labels.to(device)[ok]})
        return out

    # -- forward ------------------------------------------------------------------------------
    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None,
                with_predictions: bool = False) -> ModelOutput:
        """See :class:`~detseg.models.base.DetsegModel`."""
        batch = self.transform(images)
        scaled = self.scale_targets(targets, batch) if targets is not None else None
        outputs = self.head_outputs(batch.tensor)
        out = ModelOutput()
        if scaled is not None:
            out.losses = self.loss(outputs, scaled, batch)
        if with_predictions or not self.training:
            with torch.no_grad():
                boxes, scores = self.decode(outputs, batch)
                out.predictions = self.postprocess(boxes.float(), scores.float(), batch)
        return out

    def postprocess(self, boxes: Tensor, scores: Tensor, batch: ImageBatch) -> list[dict[str, Tensor]]:
        """Per image: ``boxes`` xyxy original pixels, ``labels`` 1..C, ``scores``, best first."""
        c = scores.shape[-1]
        preds = []
        for bx, sc, (h, w), (oh, ow) in zip(boxes, scores, batch.image_sizes, batch.original_sizes):
            bx = clip_boxes_to_image(bx, (h, w))
            flat = sc.reshape(-1)
            keep = torch.nonzero(flat > self.score_thresh).flatten()
            if len(keep) > self.pre_nms_topk:
                keep = keep[flat[keep].topk(self.pre_nms_topk).indices]
            cand, cand_scores = bx[keep // c], flat[keep]
            cand_labels = keep % c + 1
            ok = remove_small_boxes(cand, 1e-2)
            cand, cand_scores, cand_labels = cand[ok], cand_scores[ok], cand_labels[ok]
            sel = batched_nms(cand, cand_scores, cand_labels, self.nms_thresh)[: self.detections_per_img]
            scale = cand.new_tensor([ow / w, oh / h, ow / w, oh / h])
            preds.append({"boxes": clip_boxes_to_image(cand[sel] * scale, (oh, ow)),
                          "labels": cand_labels[sel], "scores": cand_scores[sel]})
        return preds


def checked_boxes_labels(t: dict[str, Tensor], i: int, num_classes: int,
                         who: str) -> tuple[Tensor, Tensor]:
    """``(boxes Tensor[N, 4], labels Tensor[N] int64)`` of ``targets[i]``, or a clear error."""
    for key in ("boxes", "labels"):
        if key not in t:
            raise ValueError(f"{who}: targets[{i}]: no {key!r} (detection needs boxes and labels)")
    boxes, labels = torch.as_tensor(t["boxes"]), torch.as_tensor(t["labels"]).long()
    if boxes.numel() == 0:
        return boxes.new_zeros((0, 4), dtype=torch.float32), labels.reshape(0)
    if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.shape != (len(boxes),):
        raise ValueError(f"{who}: targets[{i}]: 'boxes' {tuple(boxes.shape)} and 'labels' "
                         f"{tuple(labels.shape)} must be Tensor[N, 4] xyxy and Tensor[N]")
    if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
        raise ValueError(f"{who}: targets[{i}]['labels']: values must be in 1..{num_classes} "
                         f"(1-based; 0 is background), got {labels.tolist()}")
    return boxes, labels


def dataset_box_sizes(dataset, img_size: int, keep_aspect: bool, max_images: int = 2000) -> Tensor:
    """``Tensor[N, 2]`` widths and heights of the boxes of (up to ``max_images`` of) ``dataset``,
    in pixels of the network frame a model with ``img_size``/``keep_aspect`` resizes to.

    Samples are read without the dataset's (random) transforms: the anchors describe the data.
    """
    transforms, dataset.transforms = getattr(dataset, "transforms", None), None
    sizes = []
    try:
        for i in range(min(len(dataset), max_images)):
            image, target = dataset[i]
            boxes = torch.as_tensor(target.get("boxes", torch.zeros(0, 4)), dtype=torch.float32)
            if boxes.numel() == 0:
                continue
            oh, ow = image.shape[-2:]
            h, w = resized_size(int(oh), int(ow), img_size, keep_aspect)
            wh = (boxes.reshape(-1, 4)[:, 2:] - boxes.reshape(-1, 4)[:, :2]) * torch.tensor([w / ow, h / oh])
            sizes.append(wh[(wh > 0).all(1)])
    finally:
        dataset.transforms = transforms
    return torch.cat(sizes) if sizes else torch.zeros(0, 2)
