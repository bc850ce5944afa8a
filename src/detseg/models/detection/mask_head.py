"""The mask head of Mask R-CNN: per-RoI, per-class 28x28 masks, pasted back into the image.

He, Gkioxari, Dollar, Girshick, "Mask R-CNN", ICCV 2017 (https://arxiv.org/abs/1703.06870),
sec. 3 and fig. 4 (right, the FPN head): RoIAlign 14x14 -> four 3x3 convs (256, ReLU) -> a 2x2
transpose convolution with stride 2 (upsampling to 28x28, ReLU) -> a 1x1 conv to one mask logit map
per foreground class. The loss is the mean binary cross-entropy of the ground-truth class's map
only (no competition between classes, sec. 3), on the positive RoIs of the box head's sample; the
target is the matched ground-truth mask cut out by the RoI and resampled to 28x28 (RoIAlign of
the mask, torchvision's ``project_masks_on_boxes``). At inference the predicted class's map of each
detection goes through a sigmoid and is pasted into the original image (torchvision's
``paste_masks_in_image``: the 28x28 map padded by one cell, the box enlarged alike, bilinear
resizing to the box), then thresholded at 0.5.

Channels are per foreground class (``C``, label ``k`` owns map ``k - 1``); torchvision's predictor
also spends a map on the background, which it never reads (the compatibility loader drops it).
Ground-truth masks are resized to the model frame like torchvision's transform does (nearest).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import paste_masks_in_image, project_masks_on_boxes

from detseg.models.transform import ImageBatch, rescale_boxes


class MaskHead(nn.Module):
    """RoI features -> ``Tensor[R, C, 2k, 2k]`` mask logits (module docstring).

    Args:
        pool: the RoI extractor for masks (``MultiLevelRoIAlign(..., output_size=14)``).
        in_channels: channels of the pooled features (256 for an FPN).
        num_classes: foreground classes ``C``.
        layers: widths of the 3x3 convs (``(256,) * 4``); dim_reduced: the transpose conv's width.
        mask_thresh: the probability above which a pasted pixel belongs to the mask.
        keep_probs: also return the pasted probabilities as ``mask_probs`` float [N, H, W].
    """

    def __init__(self, pool: nn.Module, in_channels: int, num_classes: int,
                 layers: Sequence[int] = (256, 256, 256, 256), dim_reduced: int = 256,
                 mask_thresh: float = 0.5, keep_probs: bool = False) -> None:
        super().__init__()
        self.pool = pool
        convs: list[nn.Module] = []
        prev = int(in_channels)
        for width in layers:
            convs += [nn.Conv2d(prev, int(width), 3, padding=1), nn.ReLU(inplace=True)]
            prev = int(width)
        self.convs = nn.Sequential(*convs)
        self.deconv = nn.ConvTranspose2d(prev, dim_reduced, 2, stride=2)
        self.logits = nn.Conv2d(dim_reduced, num_classes, 1)
        for m in self.modules():  # the paper's (and torchvision's) He initialisation
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.mask_thresh = float(mask_thresh)
        self.keep_probs = keep_probs

    def forward(self, x: Tensor) -> Tensor:
        """``Tensor[R, C_in, k, k]`` pooled features -> ``Tensor[R, C, 2k, 2k]`` logits."""
        return self.logits(F.relu(self.deconv(self.convs(x))))

    def loss(self, features: dict[str, Tensor], batch: ImageBatch, rois: list[Tensor],
             labels: list[Tensor], matched: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        """``loss_mask``: BCE of the ground-truth class's map against the RoI's cut-out of the
        matched mask (``rois`` are the positive RoIs, resized frame)."""
        logits = self(self.pool(features, batch.tensor, rois))
        m = logits.shape[-1]
        mask_targets = []
        for r, idx, t, size in zip(rois, matched, targets, batch.image_sizes):
            if len(r) == 0:
                continue
            if "masks" not in t:
                raise ValueError("mask head: targets need 'masks' (uint8 [N, H, W]) for Mask R-CNN")
            gt = torch.as_tensor(t["masks"]).to(r.device)
            # the resize of torchvision's transform (nearest) to the model frame
            gt = F.interpolate(gt[:, None].float(), size=tuple(size))[:, 0].byte()
            mask_targets.append(project_masks_on_boxes(gt, r, idx, m))
        if not mask_targets:  # no positive RoI: a zero that still reaches the head
            return {"loss_mask": logits.sum() * 0}
        y = torch.cat(labels)
        picked = logits[torch.arange(len(y), device=y.device), y - 1]
        return {"loss_mask": F.binary_cross_entropy_with_logits(picked, torch.cat(mask_targets))}

    @torch.no_grad()
    def predict(self, features: dict[str, Tensor], batch: ImageBatch,
                detections: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        """Per image ``masks`` uint8 [N, H, W] at the original size (and ``mask_probs``)."""
        boxes = [d["boxes"] for d in detections]
        return self.postprocess(self(self.pool(features, batch.tensor, boxes)), batch, detections)

    def postprocess(self, logits: Tensor, batch: ImageBatch,
                    detections: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        """:meth:`predict` from the mask logits ``Tensor[N, C, 2k, 2k]`` of every image's
        detections, concatenated in image order: the predicted class's map, sigmoid, pasted."""
        boxes = [d["boxes"] for d in detections]
        labels = torch.cat([d["labels"] for d in detections])
        probs = logits.sigmoid()[torch.arange(len(labels), device=labels.device), labels - 1][:, None]
        out = []
        for p, b, size, (oh, ow) in zip(probs.split([len(b) for b in boxes]), boxes,
                                        batch.image_sizes, batch.original_sizes):
            pasted = paste_masks_in_image(p, rescale_boxes(b, size, (oh, ow)), (oh, ow))[:, 0]
            res = {"masks": (pasted > self.mask_thresh).to(torch.uint8)}
            if self.keep_probs:
                res["mask_probs"] = pasted
            out.append(res)
        return out
