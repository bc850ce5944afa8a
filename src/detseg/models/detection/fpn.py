"""Feature Pyramid Network neck and multi-level RoIAlign.

Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017
(https://arxiv.org/abs/1612.03144): a top-down pathway with lateral 1x1 connections turns the
backbone's ``C2..C5`` into ``P2..P5`` (256 channels each, 3x3 smoothing), plus ``P6`` by max-pooling
``P5`` with stride 2 (sec. 4.1, for the RPN's largest anchors). RoIs are pooled from the level
``k = floor(4 + log2(sqrt(w h) / 224))`` clamped to ``[2, 5]`` (eq. 1), with RoIAlign (He et al.,
"Mask R-CNN", ICCV 2017, https://arxiv.org/abs/1703.06870).

Parts used as they are: torchvision's ``ops.FeaturePyramidNetwork`` (+ ``LastLevelMaxPool``) and
``ops.MultiScaleRoIAlign``, so the arithmetic is torchvision's. :func:`resnet50` builds the
backbone of torchvision's ``resnet_fpn_backbone`` (``FrozenBatchNorm2d``, the first stages frozen
by ``trainable_layers``).

Feature names: the backbone's ``c2..c5`` become ``p2..p5`` and ``p6`` (torchvision calls them
``"0".."3"`` and ``"pool"``; :mod:`~detseg.models.detection.torchvision_compat` maps the weights).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from detseg.models.backbones import Backbone, ResNetBackbone

_STAGES = ("layer4", "layer3", "layer2", "layer1", "conv1")


def resnet50(frozen_bn: bool = True, trainable_layers: int = 3) -> ResNetBackbone:
    """torchvision's ResNet-50 as a detseg backbone, set up like ``resnet_fpn_backbone``.

    Args:
        frozen_bn: ``FrozenBatchNorm2d`` (torchvision's choice with pretrained weights; batch
            statistics of 2 images are useless) or plain ``BatchNorm2d`` (torchvision's with
            ``weights=None, weights_backbone=None``).
        trainable_layers: how many stages, from ``layer4`` down to ``conv1``, keep
            ``requires_grad`` (0..5; 5 also trains ``bn1``).
    """
    from torchvision.models import resnet50 as tv_resnet50

    net = tv_resnet50(weights=None, norm_layer=FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d)
    return freeze_stages(ResNetBackbone(net), trainable_layers)


def resnet18_frozen(trainable_layers: int = 5, frozen_bn: bool = False) -> ResNetBackbone:
    """ResNet-18 (torchvision's), optionally with ``FrozenBatchNorm2d`` and frozen stages."""
    from torchvision.models import resnet18 as tv_resnet18

    net = tv_resnet18(weights=None, norm_layer=FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d)
    return freeze_stages(ResNetBackbone(net), trainable_layers)


def freeze_stages(backbone: nn.Module, trainable_layers: int) -> nn.Module:
    """Turn off ``requires_grad`` of all but the last ``trainable_layers`` ResNet stages."""
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in 0..5, got {trainable_layers}")
    train = list(_STAGES[:trainable_layers]) + (["bn1"] if trainable_layers == 5 else [])
    for name, p in backbone.named_parameters():
        if all(not name.startswith(t) for t in train):
            p.requires_grad_(False)
    return backbone


class FPNBackbone(Backbone):
    """A backbone + FPN neck: ``Tensor[B, 3, H, W] -> {"p2".."p5", "p6"}`` of ``out_channels``.

    Args:
        body: a :class:`~detseg.models.backbones.Backbone` giving ``in_features`` (``c2..c5``).
        in_features: the body's maps the pyramid is built on, shallow to deep.
        out_channels: channels of every pyramid level (256).
        extra_pool: add ``p6``, ``P5`` max-pooled with stride 2 (for the RPN only).
    """

    def __init__(self, body: Backbone, in_features: Sequence[str] = ("c2", "c3", "c4", "c5"),
                 out_channels: int = 256, extra_pool: bool = True) -> None:
        super().__init__()
        self.body = body
        self.in_features = list(in_features)
        missing = [f for f in self.in_features if f not in body.channels]
        if missing:
            raise ValueError(f"FPNBackbone: the body has no {missing[0]!r} (it gives: {', '.join(body.names)})")
        self.fpn = FeaturePyramidNetwork([body.channels[f] for f in self.in_features], out_channels,
                                         extra_blocks=LastLevelMaxPool() if extra_pool else None)
        levels = [int(f[1:]) for f in self.in_features]
        self.level_names = [f"p{k}" for k in levels] + ([f"p{levels[-1] + 1}"] if extra_pool else [])
        self.channels = {n: int(out_channels) for n in self.level_names}
        strides = [body.strides[f] for f in self.in_features]
        self.strides = dict(zip(self.level_names, strides + ([strides[-1] * 2] if extra_pool else [])))

    def named_stages(self) -> list[tuple[str, list[nn.Module]]]:
        """The body's stages (the FPN neck is not a backbone stage: it is trained from scratch)."""
        return self.body.named_stages()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feats = self.body(x)
        y = self.fpn(OrderedDict((f, feats[f]) for f in self.in_features))
        return dict(zip(self.level_names, y.values()))


class MultiLevelRoIAlign(nn.Module):
    """RoIAlign from the FPN level of each RoI (torchvision's ``MultiScaleRoIAlign``).

    The RoI feature extractor slot of :class:`~detseg.models.detection.two_stage.TwoStageDetector`:
    ``(features, images Tensor[B, 3, Hp, Wp], proposals list[Tensor[N_i, 4]]) -> Tensor[R, C, k, k]``.
    Level scales are inferred from the padded batch size (the power of two nearest each map's
    ratio), which is what torchvision infers from the resized sizes.

    Args:
        features: the pyramid levels to pool from (``p2..p5``).
        channels: their channel count; output_size: ``k`` (7 for boxes, 14 for masks/keypoints).
        sampling_ratio: bilinear samples per bin side (2).
    """

    def __init__(self, features: Sequence[str], channels: int, output_size: int = 7,
                 sampling_ratio: int = 2) -> None:
        super().__init__()
        self.features = list(features)
        self.pool = MultiScaleRoIAlign(self.features, output_size, sampling_ratio)
        self.out_shape = (int(channels), int(output_size), int(output_size))

    def forward(self, features: dict[str, Tensor], images: Tensor, proposals: list[Tensor]) -> Tensor:
        if len(proposals) != len(images):
            raise ValueError(f"MultiLevelRoIAlign: {len(images)} images but {len(proposals)} proposal tensors")
        missing = [f for f in self.features if f not in features]
        if missing:
            raise ValueError(f"MultiLevelRoIAlign: needs feature {missing[0]!r} (the backbone gives: "
                             f"{', '.join(features)})")
        shapes = [tuple(int(s) for s in images.shape[-2:])] * len(images)
        x = {f: features[f] for f in self.features}
        return self.pool(x, [p.to(x[self.features[0]].dtype) for p in proposals], shapes)


def num_trainable(module: nn.Module) -> int:
    """Parameters with ``requires_grad`` (tests of ``trainable_layers``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

