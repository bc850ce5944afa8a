"""The same-resolution fully convolutional network: no downsampling, scores at every pixel.

Implements CS231n 2017 lecture 11, "Semantic segmentation idea: fully convolutional": "design a
network as a bunch of convolutional layers to make predictions for all pixels at once" -- input
``3 x H x W``, convolutions with zero padding that keep the size ``D x H x W`` throughout, class
scores ``C x H x W``, argmax per pixel -- and its drawback, "convolutions at original image
resolution will be very expensive", which motivates the downsampling/upsampling FCN of
:mod:`detseg.models.segmentation.fcn` (Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015, https://arxiv.org/abs/1411.4038).

- Network (:class:`SameResFCN`): ``depth`` layers of 3x3 conv (padding 1, stride 1) + batch norm +
  ReLU at ``width`` channels, then a 1x1 convolution to ``C`` class scores. No pooling, no stride:
  every layer is ``H x W``, and the receptive field grows by only 2 px a layer (``2 * depth + 1``).
- Loss and predictions: :class:`~detseg.models.segmentation.semantic.SemanticModel`'s (per-pixel cross-entropy
  over the labelled pixels at the original resolution; ``sem_seg`` at the original size).
"""

from __future__ import annotations

from torch import Tensor, nn

from detseg.models.backbones import _conv_bn_relu
from detseg.models.segmentation.semantic import SemanticLoss, SemanticModel


class SameResFCN(nn.Module):
    """Normalised ``Tensor[B, 3, H, W]`` -> logits ``Tensor[B, C, H, W]`` (the same ``H, W``).

    Args:
        num_classes: ``C``.
        depth: number of 3x3 conv-BN-ReLU layers (>= 1).
        width: their channels.
    """

    stride = 1

    def __init__(self, num_classes: int, depth: int = 6, width: int = 32):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"fcn_same_res: depth and width must be >= 1, got depth={depth}, "
                             f"width={width}")
        layers: list[nn.Module] = []
        ch = 3
        for _ in range(depth):
            # padding=1 keeps H x W: the lecture's "zero padding keeps the input size".
            layers += _conv_bn_relu(ch, width, 3)
            ch = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(ch, num_classes, 1)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images))


def build_fcn_same_res(classes: list[str], img_size: int = 128, depth: int = 6, width: int = 32,
                       loss_reduction: str = "mean", class_weights: list[float] | None = None,
                       return_logits: bool = False) -> SemanticModel:
    """A same-resolution FCN (see the module docstring).

    Args:
        classes: segmentation class names, 0-based (``sem_seg`` values).
        img_size: the longer image side the network sees (aspect kept).
        depth: number of 3x3 conv-BN-ReLU layers (receptive field ``2 * depth + 1`` px).
        width: their channels.
        loss_reduction: ``"mean"`` over the batch's labelled pixels, or ``"sum"``.
        class_weights: per-class loss weights.
        return_logits: always add ``sem_seg_logits`` to predictions.
    """
    return SemanticModel(classes, SameResFCN(len(classes), depth, width), img_size,
                         loss=SemanticLoss(len(classes), loss_reduction, class_weights,
                                           who="fcn_same_res"),
                         return_logits=return_logits, who="fcn_same_res")
