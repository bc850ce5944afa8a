"""The keypoint head of Mask R-CNN: one heatmap per keypoint and RoI (human pose).

He, Gkioxari, Dollar, Girshick, "Mask R-CNN", ICCV 2017 (https://arxiv.org/abs/1703.06870),
sec. 5: each keypoint is a one-hot "mask" -- RoIAlign 14x14 -> eight 3x3 convs (512, ReLU) -> a
4x4 transpose convolution with stride 2 -> bilinear x2 to ``K`` heatmaps of 56x56; the loss is the
cross-entropy over the ``56 * 56`` positions of each labelled keypoint's heatmap against the cell
holding the ground-truth keypoint (visible or occluded, ``v > 0``), on the positive RoIs. At
inference each heatmap is resized to its box (bicubic) and the argmax cell's centre is the
keypoint; its score is the heatmap value there.

torchvision's ``keypointrcnn_loss`` and ``keypointrcnn_inference`` (``roi_heads.py``) are used as
they are. Ground-truth keypoints are scaled to the model frame as torchvision's transform does;
predictions come back as ``keypoints`` ``Tensor[N, K, 3]`` (``x, y, 1``, original pixels) and
``keypoints_scores`` ``Tensor[N, K]``. Horizontal-flip augmentation must swap left and right: the
dataset's ``flip_pairs`` are kept on the head (``flip_pairs``) and in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import keypointrcnn_inference, keypointrcnn_loss

from detseg.models.transform import ImageBatch


def _ratios(size: Sequence[int], original: Sequence[int], device: torch.device) -> tuple[Tensor, Tensor]:
    """``(size / original)`` per axis as float32 tensors (torchvision's ``resize_keypoints``)."""
    r = [torch.tensor(s, dtype=torch.float32, device=device) / torch.tensor(o, dtype=torch.float32,
                                                                              device=device)
         for s, o in zip(size, original)]
    return r[0], r[1]


def scale_keypoints(keypoints: Tensor, size: Sequence[int], original: Sequence[int]) -> Tensor:
    """``Tensor[N, K, 3]`` from an ``original (h, w)`` frame to ``size (h, w)`` (x, y only)."""
    rh, rw = _ratios(size, original, keypoints.device)
    out = keypoints.clone().float()
    out[..., 0] *= rw
    out[..., 1] *= rh
    return out


class KeypointHead(nn.Module):
    """RoI features -> ``Tensor[R, K, 4k, 4k]`` keypoint heatmap logits (module docstring).

    Args:
        pool: the RoI extractor for keypoints (``MultiLevelRoIAlign(..., output_size=14)``).
        in_channels: channels of the pooled features; num_keypoints: ``K``.
        layers: widths of the 3x3 convs (``(512,) * 8``).
        flip_pairs: the dataset's left/right keypoint index pairs (recorded, for flipping).
    """

    def __init__(self, pool: nn.Module, in_channels: int, num_keypoints: int,
                 layers: Sequence[int] = (512,) * 8,
                 flip_pairs: Sequence[Sequence[int]] = ()) -> None:
        super().__init__()
        self.pool = pool
        convs: list[nn.Module] = []
        prev = int(in_channels)
        for width in layers:
            convs += [nn.Conv2d(prev, int(width), 3, padding=1), nn.ReLU(inplace=True)]
            prev = int(width)
        self.convs = nn.Sequential(*convs)
        self.deconv = nn.ConvTranspose2d(prev, num_keypoints, 4, stride=2, padding=1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.num_keypoints = int(num_keypoints)
        self.flip_pairs = [tuple(int(i) for i in p) for p in flip_pairs]

    def forward(self, x: Tensor) -> Tensor:
        """``Tensor[R, C_in, k, k]`` -> ``Tensor[R, K, 4k, 4k]`` heatmap logits."""
        y = self.deconv(self.convs(x))
        return F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False,
                             recompute_scale_factor=False)

    def loss(self, features: dict[str, Tensor], batch: ImageBatch, rois: list[Tensor],
             labels: list[Tensor], matched: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        """``loss_keypoint``: spatial cross-entropy of each labelled keypoint (positive RoIs)."""
        logits = self(self.pool(features, batch.tensor, rois))
        gt = []
        for t, size, orig, r in zip(targets, batch.image_sizes, batch.original_sizes, rois):
            if "keypoints" not in t:
                raise ValueError("keypoint head: targets need 'keypoints' (Tensor[N, K, 3]) for "
                                 "Keypoint R-CNN")
            kp = torch.as_tensor(t["keypoints"]).to(r.device)
            if kp.numel() and (kp.dim() != 3 or kp.shape[1:] != (self.num_keypoints, 3)):
                raise ValueError(f"keypoint head: targets 'keypoints' must be [N, {self.num_keypoints}, 3], "
                                 f"got {tuple(kp.shape)}")
            gt.append(scale_keypoints(kp.reshape(-1, self.num_keypoints, 3), size, orig))
        return {"loss_keypoint": keypointrcnn_loss(logits, rois, gt, matched)}

    @torch.no_grad()
    def predict(self, features: dict[str, Tensor], batch: ImageBatch,
                detections: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        """Per image ``keypoints`` [N, K, 3] (original pixels) and ``keypoints_scores`` [N, K]."""
        boxes = [d["boxes"] for d in detections]
        return self.postprocess(self(self.pool(features, batch.tensor, boxes)), batch, detections)

    def postprocess(self, logits: Tensor, batch: ImageBatch,
                    detections: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        """:meth:`predict` from the heatmap logits ``Tensor[N, K, 4k, 4k]`` of every image's
        detections, concatenated in image order (torchvision's ``keypointrcnn_inference``)."""
        boxes = [d["boxes"] for d in detections]
        kps, scores = keypointrcnn_inference(logits, boxes)
        out = []
        for kp, sc, size, orig in zip(kps, scores, batch.image_sizes, batch.original_sizes):
            out.append({"keypoints": scale_keypoints(kp, orig, size), "keypoints_scores": sc})
        return out
