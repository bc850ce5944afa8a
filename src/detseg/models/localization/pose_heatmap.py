"""Single-person pose by heatmaps: the "simple baselines" deconvolution head.

Implements Xiao, Wu & Wei, "Simple Baselines for Human Pose Estimation and Tracking", ECCV 2018
(https://arxiv.org/abs/1804.06208): the backbone's deepest map goes through a few
``ConvTranspose2d(kernel 4, stride 2) - BN - ReLU`` layers and a 1x1 convolution giving one heatmap
per joint; the target of each joint is a Gaussian at its position, the loss is the mean squared
error (their ``JointsMSELoss``), and a joint is decoded as the heatmap's argmax shifted a quarter
pixel toward the higher neighbour (their ``get_final_preds``). This is the approach that
superseded direct regression (:mod:`detseg.models.localization.pose`), with which it shares the backbone, the
data convention and the evaluator.

Geometry (task ``pose``; see :mod:`detseg.models.localization.pose` for the shared conventions):

- The image is resized to an ``img_size`` square (aspect not kept) and padded to a multiple of
  the backbone stride; the heatmaps cover the padded batch at stride
  ``backbone stride / 2 ** deconv_layers`` (32 / 8 = 4 by default, as in the paper).
- Pixel-index coordinates map between the original image and the heatmap per axis by
  ``h = (x + 0.5) * s - 0.5`` with ``s`` heatmap pixels per original pixel (pixel centres map to
  pixel centres): :func:`heatmap_scale`.
- Target ``Tensor[K, h, w]``: ``exp(-d^2 / (2 sigma^2))`` around each joint's exact (sub-pixel)
  heatmap position, ``sigma`` in heatmap pixels (the paper rounds the centre to an integer pixel;
  keeping it exact makes encode -> decode unbiased). A joint weighs 0 when it is not labelled
  (visibility 0) or lies more than ``3 sigma`` outside the heatmap (its target would be empty).
- Loss ``loss_heatmap``: the weighted squared error averaged over images, joints and heatmap
  pixels (the paper's ``JointsMSELoss`` without its constant factor 0.5).
- Decoding: the argmax over the image's part of each heatmap, then, on each axis where both
  neighbours exist, a 0.25-pixel shift toward the higher neighbour; mapped back to original
  pixels. A joint's score is its heatmap maximum (floored at a small positive value, see
  :data:`detseg.models.localization.pose.MIN_JOINT_SCORE`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.models.backbones import Backbone, build_backbone
from detseg.models.base import DetsegModel
from detseg.models.localization.pose import person_label, pose_prediction, pose_targets
from detseg.models.transform import ImageBatch, preprocess
from detseg.structures import ModelOutput


class DeconvHead(nn.Module):
    """``Tensor[B, C, h, w]`` -> ``Tensor[B, K, h * 2**layers, w * 2**layers]`` heatmaps."""

    def __init__(self, in_ch: int, num_keypoints: int, layers: int = 3, channels: int = 128):
        super().__init__()
        self.num_keypoints = num_keypoints
        blocks: list[nn.Module] = []
        for i in range(layers):
            # kernel 4, stride 2, padding 1: exactly doubles the size (the paper's deconv layer).
            blocks += [nn.ConvTranspose2d(in_ch if i == 0 else channels, channels, 4, stride=2,
                                          padding=1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.deconv = nn.Sequential(*blocks)
        self.final = nn.Conv2d(channels if layers else in_ch, num_keypoints, 1)
        # The paper's initialisation: near-zero heatmaps, so the first steps fit the background.
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.final(self.deconv(x))


def heatmap_scale(batch: ImageBatch, heatmap_hw: tuple[int, int]) -> list[tuple[float, float]]:
    """Per image, ``(sx, sy)``: heatmap pixels per original pixel (see the module docstring)."""
    ry = heatmap_hw[0] / batch.tensor.shape[-2]
    rx = heatmap_hw[1] / batch.tensor.shape[-1]
    return [(w * rx / ow, h * ry / oh)
            for (h, w), (oh, ow) in zip(batch.image_sizes, batch.original_sizes)]


def encode_heatmaps(xy: Tensor, labelled: Tensor, scale: tuple[float, float],
                    heatmap_hw: tuple[int, int], sigma: float) -> tuple[Tensor, Tensor]:
    """Gaussian target heatmaps of one person.

    Args:
        xy: ``Tensor[K, 2]`` joints in original pixel indices. labelled: ``Tensor[K]`` bool.
        scale: ``(sx, sy)`` heatmap pixels per original pixel (:func:`heatmap_scale`).
        heatmap_hw: ``(h, w)`` of the heatmaps. sigma: the Gaussian's std in heatmap pixels.
    Returns:
        ``(Tensor[K, h, w] in [0, 1], weights Tensor[K] in {0, 1})``.
    """
    h, w = heatmap_hw
    c = (xy + 0.5) * xy.new_tensor(scale) - 0.5  # [K, 2] heatmap pixel indices
    gx = torch.arange(w, dtype=xy.dtype, device=xy.device)
    gy = torch.arange(h, dtype=xy.dtype, device=xy.device)
    # Separable Gaussian: exp(-(dx^2 + dy^2) / 2s^2) = exp(-dx^2 / 2s^2) * exp(-dy^2 / 2s^2).
    ex = torch.exp(-(gx[None] - c[:, :1]) ** 2 / (2 * sigma ** 2))  # [K, w]
    ey = torch.exp(-(gy[None] - c[:, 1:]) ** 2 / (2 * sigma ** 2))  # [K, h]
    inside = ((c[:, 0] > -3 * sigma) & (c[:, 0] < w - 1 + 3 * sigma)
              & (c[:, 1] > -3 * sigma) & (c[:, 1] < h - 1 + 3 * sigma))
    weight = (labelled & inside).to(xy.dtype)
    return ey[:, :, None] * ex[:, None, :] * weight[:, None, None], weight


def decode_heatmaps(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """Argmax + quarter-pixel shift: ``Tensor[..., K, h, w]`` -> ``(xy [..., K, 2], max [..., K])``.

    ``xy`` is in heatmap pixel indices; on each axis with both neighbours inside the map the
    position moves 0.25 toward the higher neighbour (no move on a tie), as in the paper's code.
    """
    h, w = heatmaps.shape[-2:]
    flat = heatmaps.flatten(-2)
    maxval, idx = flat.max(-1)
    px, py = idx % w, idx // w
    padded = F.pad(heatmaps, (1, 1, 1, 1)).flatten(-2)  # neighbours of border pixels exist (= 0)

    def at(dx: int, dy: int) -> Tensor:
        return padded.gather(-1, ((py + 1 + dy) * (w + 2) + px + 1 + dx)[..., None])[..., 0]

    shift_x = torch.sign(at(1, 0) - at(-1, 0)) * ((px > 0) & (px < w - 1))
    shift_y = torch.sign(at(0, 1) - at(0, -1)) * ((py > 0) & (py < h - 1))
    xy = torch.stack([px + 0.25 * shift_x, py + 0.25 * shift_y], -1).to(heatmaps.dtype)
    return xy, maxval


class PoseHeatmap(DetsegModel):
    """Simple-baselines heatmap pose model (see the module docstring)."""

    task = "pose"

    def __init__(self, classes: list[str], backbone: Backbone, head: DeconvHead, img_size: int,
                 sigma: float = 2.0):
        super().__init__(classes)
        if sigma <= 0:
            raise ValueError(f"pose_heatmap: sigma must be > 0, got {sigma}")
        self.backbone = backbone
        self.head = head
        self.img_size = img_size
        self.sigma = sigma
        self.feature = backbone.names[-1]
        self.label = person_label(self.classes)

    @property
    def num_keypoints(self) -> int:
        return self.head.num_keypoints

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None,
                with_predictions: bool = False) -> ModelOutput:
        """See :class:`~detseg.models.base.DetsegModel`; loss ``loss_heatmap``."""
        batch = preprocess(images, self.img_size, keep_aspect=False,
                           stride=self.backbone.out_stride, who="pose_heatmap")
        heatmaps = self.head(self.backbone(batch.tensor)[self.feature])
        hw = (heatmaps.shape[-2], heatmaps.shape[-1])
        scales = heatmap_scale(batch, hw)
        out = ModelOutput()
        if targets is not None:
            out.losses = {"loss_heatmap": self.loss(heatmaps, targets, scales)}
        if with_predictions or not self.training:
            out.predictions = [self.postprocess(hm, s, size, im_hw, batch.tensor.shape[-2:])
                               for hm, s, size, im_hw in zip(heatmaps.detach(), scales,
                                                             batch.original_sizes,
                                                             batch.image_sizes)]
        return out

    def target_heatmaps(self, targets: list[dict[str, Tensor]], scales: list[tuple[float, float]],
                        heatmap_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """``(Tensor[B, K, h, w] Gaussian targets, Tensor[B, K] joint weights)`` on the CPU."""
        xy, labelled = pose_targets(targets, self.num_keypoints, len(scales), "pose_heatmap")
        maps = [encode_heatmaps(p, v, s, heatmap_hw, self.sigma)
                for p, v, s in zip(xy, labelled, scales)]
        return torch.stack([m for m, _ in maps]), torch.stack([w for _, w in maps])

    def loss(self, heatmaps: Tensor, targets: list[dict[str, Tensor]],
             scales: list[tuple[float, float]]) -> Tensor:
        """Weighted MSE over images, joints and heatmap pixels (see the module docstring)."""
        goal, weight = self.target_heatmaps(targets, scales, tuple(heatmaps.shape[-2:]))
        goal = goal.to(heatmaps.device, heatmaps.dtype)
        weight = weight.to(heatmaps.device, heatmaps.dtype)[:, :, None, None]
        return (weight * (heatmaps - goal) ** 2).mean()

    def postprocess(self, heatmaps: Tensor, scale: tuple[float, float], size: tuple[int, int],
                    image_hw: tuple[int, int], padded_hw) -> dict[str, Tensor]:
        """One image's ``Tensor[K, h, w]`` heatmaps -> predictions in original pixels."""
        # Decode over the image's part of the map only (the padding holds no joint).
        hh = max(1, math.ceil(image_hw[0] * heatmaps.shape[-2] / padded_hw[0]))
        ww = max(1, math.ceil(image_hw[1] * heatmaps.shape[-1] / padded_hw[1]))
        xy, maxval = decode_heatmaps(heatmaps[:, :hh, :ww])
        xy = (xy + 0.5) / xy.new_tensor(scale) - 0.5
        return pose_prediction(xy, maxval, size, self.label)


def build_pose_heatmap(classes: list[str], img_size: int = 128, backbone: str = "alexnet_small",
                       num_keypoints: int = 14, weights: str | None = None,
                       deconv_layers: int = 3, deconv_channels: int = 128, sigma: float = 2.0,
                       backbone_width: int | None = None) -> PoseHeatmap:
    """Simple-baselines pose: backbone -> deconvolutions -> one heatmap per joint.

    Args:
        classes: class names of the data (prediction ``labels`` index them; ``person`` if present).
        img_size: the square side the network sees.
        backbone: ``alexnet_small`` (CPU-fast), ``resnet18`` or ``simple``.
        num_keypoints: ``K``, the joints per person (14 for LSP and the shapes stick figures).
        weights: pretrained backbone weights (local file or torchvision enum name).
        deconv_layers: stride-2 deconvolutions after the deepest map (3: heatmaps at stride 4).
        deconv_channels: their width (the paper uses 256 on ResNet-50).
        sigma: the target Gaussian's std, in heatmap pixels (the paper: 2 on 64 x 48 maps).
        backbone_width: base width of ``alexnet_small``/``simple`` (their default when ``None``).
    """
    if num_keypoints < 1 or deconv_layers < 0:
        raise ValueError(f"pose_heatmap: num_keypoints must be >= 1 and deconv_layers >= 0 "
                         f"(got {num_keypoints}, {deconv_layers})")
    bb = build_backbone(backbone, weights=weights, width=backbone_width)
    head = DeconvHead(bb.channels[bb.names[-1]], num_keypoints, deconv_layers, deconv_channels)
    return PoseHeatmap(classes, bb, head, img_size, sigma=sigma)
