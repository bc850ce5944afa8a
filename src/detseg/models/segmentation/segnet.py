"""SegNet: a decoder that upsamples by max-unpooling with the encoder's pooling indices.

Implements Badrinarayanan, Kendall, Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation", TPAMI 2017 (https://arxiv.org/abs/1511.00561), section 3 and
figure 2 — the "max unpooling" of CS231n 2017 lecture 11 ("remember which element was max!", the
max-pool and the max-unpool of corresponding layers paired across the network):

- **encoder**: VGG-style stages of conv(3x3)-BN-ReLU blocks, each stage ending in a 2x2 stride-2
  max-pool that *returns its argmax indices*;
- **decoder**: the stages mirrored; each first max-unpools
  (:class:`~detseg.layers.unpooling.MaxUnpool`) with the indices of the **matching** encoder pool — every value goes back to the position its max came
  from, zeros elsewhere (a sparse map) — then conv-BN-ReLU blocks densify it. No upsampling is
  learned and no encoder *feature* is passed across (unlike U-Net or FCN's skips): only the indices
  travel, 2 bits per 2x2 window, which is SegNet's memory argument;
- a 1x1 conv classifier gives ``C`` scores at full resolution.

Encoder layouts (option ``backbone``; ``width`` = channels of the first stage, stage ``i`` has
``width * 2**min(i, 3)`` — the 64-128-256-512-512 of VGG-16 for ``width=64``):

- ``vgg16`` — SegNet's original: the 13 convolutions of VGG-16 (2, 2, 3, 3, 3 per stage, with
  BatchNorm), ``width`` 64 by default; its layers keep torchvision's ``vgg16_bn().features.<i>``
  names, so ``weights="VGG16_BN_Weights.IMAGENET1K_V1"`` (or a local file) initialises the encoder
  as the paper did;
- ``vgg_small`` (default) — 2 convs per stage, ``width`` 16: a CPU-sized SegNet;
- ``simple`` — 1 conv per stage, ``width`` 8: for tests.

The decoder mirrors the encoder (SegNet's Caffe model): decoder stage ``i`` has as many convs as
encoder stage ``i``, at its width, the last one narrowing to the width of stage ``i - 1``. The
paper's last decoder conv (to ``C`` classes, 3x3) is a 1x1 classifier here. ``depth`` (1..5)
keeps the first stages; the network stride is ``2**depth``. Median-frequency class weights (as
SegNet on CamVid): ``class_weights``, see :func:`~detseg.models.segmentation.semantic.median_frequency_weights`.

Shapes: ``Tensor[B, 3, H, W]`` (H, W multiples of ``2**depth``) -> logits ``Tensor[B, C, H, W]``.
"""

from __future__ import annotations

from torch import Tensor, nn

from detseg.layers.unpooling import MaxUnpool
from detseg.models.backbones import load_weights
from detseg.models.segmentation.semantic import SemanticLoss, SemanticModel

# Convs per encoder stage and the default first-stage width of each layout.
LAYOUTS: dict[str, tuple[tuple[int, ...], int]] = {
    "vgg16": ((2, 2, 3, 3, 3), 64),
    "vgg_small": ((2, 2, 2, 2, 2), 16),
    "simple": ((1, 1, 1, 1, 1), 8),
}
MAX_DEPTH = 5


def stage_widths(width: int, depth: int) -> list[int]:
    """Channels of each stage: ``width * 2**i``, capped at ``8 * width`` (VGG's 512 for 64)."""
    return [width * 2 ** min(i, 3) for i in range(depth)]


def _conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class SegNetEncoder(nn.Module):
    """``Tensor[B, 3, H, W] -> (Tensor[B, c_last, H/2**d, W/2**d], indices, sizes)``.

    ``indices[i]`` (``int64``, the shape of pool ``i``'s output) and ``sizes[i]`` (pool ``i``'s
    input ``(h, w)``) are what the decoder's unpooling ``i`` needs. The layers sit in one
    ``nn.Sequential`` named ``features`` in VGG's order (conv, BN, ReLU, ..., max-pool), so the
    ``vgg16`` layout has the module names of torchvision's ``vgg16_bn().features``.

    Attributes:
        convs: convs per stage; channels: output channels per stage.
    """

    def __init__(self, convs: tuple[int, ...], channels: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        prev = 3
        for n, ch in zip(convs, channels):
            for _ in range(n):
                layers += _conv_bn_relu(prev, ch)
                prev = ch
            layers.append(nn.MaxPool2d(2, stride=2, return_indices=True))
        self.features = nn.Sequential(*layers)
        self.convs = list(convs)
        self.channels = list(channels)
        self.weights_report: dict = {}  # filled by load_weights, like a Backbone's

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor], list[tuple[int, int]]]:
        indices, sizes = [], []
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                sizes.append((x.shape[-2], x.shape[-1]))
                x, idx = layer(x)
                indices.append(idx)
            else:
                x = layer(x)
        return x, indices, sizes


class SegNetDecoder(nn.Module):
    """``(Tensor[B, c_last, h, w], indices, sizes) -> Tensor[B, channels[0], H, W]``.

    Stage ``i`` (deep to shallow) max-unpools with ``indices[i]`` to ``sizes[i]``, then runs
    ``convs[i]`` conv-BN-ReLU blocks at ``channels[i]``, the last narrowing to ``channels[i - 1]``.
    """

    def __init__(self, convs: tuple[int, ...], channels: list[int]):
        super().__init__()
        self.unpool = MaxUnpool(2)
        self.stages = nn.ModuleList()
        for i, (n, ch) in enumerate(zip(convs, channels)):
            out = channels[max(i - 1, 0)]
            layers = []
            for j in range(n):
                layers += _conv_bn_relu(ch, out if j == n - 1 else ch)
            self.stages.append(nn.Sequential(*layers))

    def forward(self, x: Tensor, indices: list[Tensor], sizes: list[tuple[int, int]]) -> Tensor:
        for i in reversed(range(len(self.stages))):
            x = self.unpool(x, indices[i], sizes[i])
            x = self.stages[i](x)
        return x


class SegNetNet(nn.Module):
    """``Tensor[B, 3, H, W]`` (normalised; H, W multiples of ``stride``) -> ``[B, C, H, W]``."""

    def __init__(self, num_classes: int, depth: int, width: int, layout: str):
        super().__init__()
        convs = LAYOUTS[layout][0][:depth]
        channels = stage_widths(width, depth)
        self.encoder = SegNetEncoder(convs, channels)
        self.decoder = SegNetDecoder(convs, channels)
        self.classifier = nn.Conv2d(channels[0], num_classes, 1)
        self.stride = 2 ** depth

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.decoder(*self.encoder(x)))


class SegNet(SemanticModel):
    """SegNet: a :class:`SemanticModel` whose network is a :class:`SegNetNet`."""

    def __init__(self, classes: list[str], network: SegNetNet, img_size: int,
                 loss_reduction: str = "mean", class_weights: list[float] | None = None,
                 return_logits: bool = False):
        super().__init__(classes, network, img_size,
                         loss=SemanticLoss(len(classes), loss_reduction, class_weights,
                                           who="segnet"),
                         return_logits=return_logits, who="segnet")

    @property
    def backbone(self) -> SegNetEncoder:
        """The encoder (what ``--freeze-backbone`` freezes)."""
        return self.network.encoder


def build_segnet(classes: list[str], img_size: int = 128, backbone: str = "vgg_small",
                 depth: int = 5, width: int | None = None, weights: str | None = None,
                 loss_reduction: str = "mean", class_weights: list[float] | None = None,
                 return_logits: bool = False) -> SegNet:
    """SegNet (see the module docstring).

    Args:
        classes: segmentation class names, 0-based (``sem_seg`` values).
        img_size: the longer image side the network sees (aspect kept; padded to ``2**depth``).
        backbone: the encoder layout: ``vgg_small`` (default), ``vgg16`` (SegNet's 13 convs) or
            ``simple``.
        depth: encoder stages (= max-pools), 1..5; the network stride is ``2**depth``.
        width: channels of the first stage (the layout's default when ``None``: 16, 64, 8).
        weights: encoder weights, a local file or a torchvision enum name; for ``vgg16`` with
            ``width=64`` torchvision's ``"VGG16_BN_Weights.IMAGENET1K_V1"`` matches by name.
        loss_reduction: ``"mean"`` over the batch's labelled pixels, or ``"sum"``.
        class_weights: per-class loss weights (SegNet used median-frequency balancing on CamVid).
        return_logits: always add ``sem_seg_logits`` to predictions.
    """
    if backbone not in LAYOUTS:
        raise ValueError(f"segnet: unknown backbone (encoder layout) {backbone!r}; "
                         f"known: {', '.join(LAYOUTS)}")
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"segnet: depth must be 1..{MAX_DEPTH}, got {depth}")
    if width is not None and width < 1:
        raise ValueError(f"segnet: width must be >= 1, got {width}")
    net = SegNetNet(len(classes), depth, width or LAYOUTS[backbone][1], backbone)
    if weights:
        load_weights(net.encoder, weights)
    return SegNet(classes, net, img_size, loss_reduction=loss_reduction,
                  class_weights=class_weights, return_logits=return_logits)
