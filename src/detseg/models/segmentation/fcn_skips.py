"""FCN-32s, FCN-16s, FCN-8s (and FCN-4s): class scores from several strides, fused by summation.

Implements Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation",
CVPR 2015 (https://arxiv.org/abs/1411.4038), section 4.2 and figure 3 ("skip architecture"), as
presented in CS231n 2017 lecture 11:

- a classification network, convolutionalized: a backbone (features at strides 8, 16, 32) and the
  former fully connected ``fc6``/``fc7`` as convolutions (the **head**: a 3x3 then a 1x1 conv of
  ``head_width`` channels; the paper's are 7x7 and 1x1 with 4096 channels — far too heavy for a
  CPU, and BatchNorm is added so the head trains from scratch);
- ``score``: a 1x1 conv to ``C`` class scores at stride 32 — **FCN-32s** upsamples them x32 in
  one step;
- **FCN-16s** upsamples the stride-32 scores x2 by a learned transpose convolution and *adds* the
  scores of a 1x1 conv on the stride-16 features (``pool4``), then upsamples x16;
- **FCN-8s** does the same once more with the stride-8 features (``pool3``), then upsamples x8.
- **FCN-4s** (not in the paper) fuses the stride-4 features (``pool2``) too, then upsamples x4.
  The paper stopped at FCN-8s because lower layers gave "diminishing returns" on mean IU, which
  weighs large regions; a class a few pixels wide (CamVid's poles) is what a stride-8 output
  cannot draw, so the next step is offered as a variant of its own.

Initialisation as in the paper: every transpose convolution starts as bilinear interpolation
(:class:`~detseg.layers.upsampling.TransposeConvUpsample`); the skip score layers start at **zero**,
so a fresh FCN-16s/8s predicts what its FCN-32s path predicts and training then learns how much of
the finer evidence to add. The final upsampling is fixed to bilinear interpolation, as in the
paper ("the final layer deconvolutional filters are fixed to bilinear interpolation", section 4.2),
unless ``learn_final_upsample=True``.

Backbones: ``resnet18`` (default; ``c3/c4/c5``), ``alexnet_small`` and ``simple`` from
:func:`~detseg.models.backbones.build_backbone`, and ``vgg16`` — the paper's: torchvision's VGG-16
``features`` cut after ``pool3``, ``pool4``, ``pool5`` (:class:`VGG16Backbone`; its module names are
torchvision's, so ``weights="VGG16_Weights.IMAGENET1K_V1"`` or a local VGG-16 file loads). The
paper's crop layers are not needed: inputs are padded to a multiple of 32 and every upsampling
multiplies the size exactly.

Shapes: ``Tensor[B, 3, H, W]`` (H, W multiples of 32) -> logits ``Tensor[B, C, H, W]``; the
loss, preprocessing and predictions are :class:`~detseg.models.segmentation.semantic.SemanticModel`'s.
"""

from __future__ import annotations

from torch import Tensor, nn

from detseg.layers.upsampling import TransposeConvUpsample
from detseg.models.backbones import Backbone, _conv_bn_relu, build_backbone, load_weights
from detseg.models.segmentation.semantic import SemanticLoss, SemanticModel

VARIANTS = {"32s": 0, "16s": 1, "8s": 2, "4s": 3}  # variant -> number of skip levels fused
SKIP_STRIDES = (16, 8, 4)  # the paper's pool4 then pool3, then pool2 for FCN-4s
BACKBONE_NAMES = ("resnet18", "vgg16", "alexnet_small", "simple")


class VGG16Backbone(Backbone):
    """torchvision VGG-16 ``features`` as ``pool3`` / ``pool4`` / ``pool5`` maps.

    ``Tensor[B, 3, H, W] -> {"pool3": [B, 256, H/8, W/8], "pool4": [B, 512, H/16, W/16],
    "pool5": [B, 512, H/32, W/32]}``. The layers keep torchvision's ``features.<i>`` names, so a
    torchvision VGG-16 ``state_dict`` loads (its ``classifier.*`` keys are reported as unused).
    """

    # End index (exclusive) of each block in torchvision's vgg16().features: pools at 16, 23, 30.
    _ENDS = {"pool3": 17, "pool4": 24, "pool5": 31}

    def __init__(self) -> None:
        super().__init__()
        # Only the convolutional part: vgg16() would also allocate the 120M-parameter classifier.
        from torchvision.models.vgg import cfgs, make_layers

        self.features = make_layers(cfgs["D"], batch_norm=False)
        for m in self.features.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.channels = {"pool3": 256, "pool4": 512, "pool5": 512}
        self.strides = {"pool3": 8, "pool4": 16, "pool5": 32}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out, start = {}, 0
        for name, end in self._ENDS.items():
            for i in range(start, end):
                x = self.features[i](x)
            out[name], start = x, end
        return out


def _feature_at(backbone: Backbone, stride: int) -> str:
    """The deepest feature of ``backbone`` with ``stride`` (a clear error when there is none)."""
    names = [k for k, s in backbone.strides.items() if s == stride]
    if not names:
        raise ValueError(f"fcn_skips: backbone {type(backbone).__name__} has no stride-{stride} "
                         f"feature (strides: {backbone.strides})")
    return names[-1]


class FCNSkipNet(nn.Module):
    """``Tensor[B, 3, H, W]`` (normalised, H and W multiples of 32) -> logits ``[B, C, H, W]``.

    Args:
        backbone: features at strides (4,) 8, 16 and 32 (at least those the variant uses).
        num_classes: ``C``.
        variant: ``"32s"``, ``"16s"``, ``"8s"`` or ``"4s"``.
        head_width: channels of the convolutionalized ``fc6``/``fc7``.
        dropout: dropout after ``fc6`` and ``fc7`` (the paper's 0.5; 0 disables it).
        learn_final_upsample: learn the last (bilinear-initialised) upsampling instead of fixing it.

    Attributes:
        skip_names: the backbone features fused, deep to shallow (``[]``, ``[pool4]``,
            ``[pool4, pool3]`` in the paper's names).
        final_stride: the stride of the fused scores (32, 16, 8, 4), i.e. the last upsampling factor.
    """

    stride = 32

    def __init__(self, backbone: Backbone, num_classes: int, variant: str = "8s",
                 head_width: int = 256, dropout: float = 0.0, learn_final_upsample: bool = False):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"fcn_skips: variant must be one of {list(VARIANTS)}, got {variant!r}")
        self.backbone = backbone
        self.variant = variant
        deepest = _feature_at(backbone, 32)
        self.deepest = deepest
        self.head = nn.Sequential(*_conv_bn_relu(backbone.channels[deepest], head_width, 3),
                                  nn.Dropout(dropout),
                                  *_conv_bn_relu(head_width, head_width, 1), nn.Dropout(dropout))
        self.score = nn.Conv2d(head_width, num_classes, 1)
        self.skip_names = [_feature_at(backbone, s) for s in SKIP_STRIDES[:VARIANTS[variant]]]
        self.score_skips = nn.ModuleDict()
        self.up2 = nn.ModuleDict()
        for name in self.skip_names:
            score = nn.Conv2d(backbone.channels[name], num_classes, 1)
            # Zero start: the fused scores begin as the coarser path's (paper, section 4.2).
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
            self.score_skips[name] = score
            self.up2[name] = TransposeConvUpsample(num_classes, num_classes, 2)
        self.final_stride = 32 // 2 ** len(self.skip_names)
        self.final_up = TransposeConvUpsample(num_classes, num_classes, self.final_stride)
        self.final_up.requires_grad_(learn_final_upsample)

    def coarse_scores(self, x: Tensor) -> Tensor:
        """The fused class scores ``Tensor[B, C, H/s, W/s]`` at ``s = final_stride``."""
        features = self.backbone(x)
        scores = self.score(self.head(features[self.deepest]))
        for name in self.skip_names:
            scores = self.up2[name](scores) + self.score_skips[name](features[name])
        return scores

    def forward(self, x: Tensor) -> Tensor:
        return self.final_up(self.coarse_scores(x))


class FCNSkip(SemanticModel):
    """FCN-32s/16s/8s/4s: a :class:`SemanticModel` whose network is an :class:`FCNSkipNet`."""

    def __init__(self, classes: list[str], network: FCNSkipNet, img_size: int,
                 loss_reduction: str = "mean", class_weights: list[float] | None = None,
                 return_logits: bool = False):
        who = f"fcn{network.variant}"
        super().__init__(classes, network, img_size,
                         loss=SemanticLoss(len(classes), loss_reduction, class_weights, who=who),
                         return_logits=return_logits, who=who)

    @property
    def backbone(self) -> Backbone:
        return self.network.backbone


def make_backbone(name: str, weights: str | None = None,
                  backbone_width: int | None = None) -> Backbone:
    """``resnet18``/``alexnet_small``/``simple`` (``build_backbone``) or :class:`VGG16Backbone`."""
    if name == "vgg16":
        if backbone_width is not None:
            raise ValueError("fcn_skips: backbone_width does not apply to vgg16")
        backbone = VGG16Backbone()
        if weights:
            load_weights(backbone, weights)
        return backbone
    if name not in BACKBONE_NAMES:
        raise ValueError(f"fcn_skips: unknown backbone {name!r}; "
                         f"known: {', '.join(BACKBONE_NAMES)}")
    return build_backbone(name, weights=weights, width=backbone_width)


def build_fcn_skip(classes: list[str], variant: str = "8s", img_size: int = 128,
                   backbone: str = "resnet18", weights: str | None = None,
                   backbone_width: int | None = None, head_width: int = 256, dropout: float = 0.0,
                   learn_final_upsample: bool = False, loss_reduction: str = "mean",
                   class_weights: list[float] | None = None,
                   return_logits: bool = False) -> FCNSkip:
    """FCN-``variant`` (see the module docstring).

    Args:
        classes: segmentation class names, 0-based (``sem_seg`` values).
        variant: ``"32s"``, ``"16s"``, ``"8s"`` or ``"4s"`` (the last needs a stride-4 feature:
            not ``vgg16``'s).
        img_size: the longer image side the network sees (aspect kept; padded to a multiple of 32).
        backbone: ``resnet18`` (default), ``vgg16`` (the paper's; heavy on a CPU),
            ``alexnet_small`` or ``simple``.
        weights: pretrained backbone weights: a local file or a torchvision enum name
            (``"ResNet18_Weights.IMAGENET1K_V1"``, ``"VGG16_Weights.IMAGENET1K_V1"``).
        backbone_width: base width of ``alexnet_small``/``simple`` (their default when ``None``).
        head_width: channels of the convolutionalized ``fc6``/``fc7``.
        dropout: dropout probability after ``fc6`` and ``fc7`` (the paper used 0.5).
        learn_final_upsample: learn the last upsampling (the paper fixes it to bilinear).
        loss_reduction: ``"mean"`` over the batch's labelled pixels, or ``"sum"``.
        class_weights: per-class loss weights (e.g. median-frequency balancing).
        return_logits: always add ``sem_seg_logits`` to predictions.
    """
    net = FCNSkipNet(make_backbone(backbone, weights, backbone_width), len(classes), variant,
                     head_width=head_width, dropout=dropout,
                     learn_final_upsample=learn_final_upsample)
    return FCNSkip(classes, net, img_size, loss_reduction=loss_reduction,
                   class_weights=class_weights, return_logits=return_logits)


# One zoo builder per paper variant; each takes build_fcn_skip's options but ``variant`` (the zoo
# reads each builder's own signature, so they are spelled out).
def build_fcn32s(classes: list[str], img_size: int = 128, backbone: str = "resnet18",
                 weights: str | None = None, backbone_width: int | None = None,
                 head_width: int = 256, dropout: float = 0.0, learn_final_upsample: bool = False,
                 loss_reduction: str = "mean", class_weights: list[float] | None = None,
                 return_logits: bool = False) -> FCNSkip:
    """FCN-32s: stride-32 scores upsampled x32 in one step (see :func:`build_fcn_skip`)."""
    return build_fcn_skip(variant="32s", **locals())  # every option, by name


def build_fcn16s(classes: list[str], img_size: int = 128, backbone: str = "resnet18",
                 weights: str | None = None, backbone_width: int | None = None,
                 head_width: int = 256, dropout: float = 0.0, learn_final_upsample: bool = False,
                 loss_reduction: str = "mean", class_weights: list[float] | None = None,
                 return_logits: bool = False) -> FCNSkip:
    """FCN-16s: + stride-16 (``pool4``) scores, upsampled x16 (see :func:`build_fcn_skip`)."""
    return build_fcn_skip(variant="16s", **locals())  # every option, by name


def build_fcn8s(classes: list[str], img_size: int = 128, backbone: str = "resnet18",
                weights: str | None = None, backbone_width: int | None = None,
                head_width: int = 256, dropout: float = 0.0, learn_final_upsample: bool = False,
                loss_reduction: str = "mean", class_weights: list[float] | None = None,
                return_logits: bool = False) -> FCNSkip:
    """FCN-8s: + stride-16 and stride-8 (``pool3``) scores, upsampled x8 (``build_fcn_skip``)."""
    return build_fcn_skip(variant="8s", **locals())  # every option, by name


def build_fcn4s(classes: list[str], img_size: int = 128, backbone: str = "resnet18",
                weights: str | None = None, backbone_width: int | None = None,
                head_width: int = 256, dropout: float = 0.0, learn_final_upsample: bool = False,
                loss_reduction: str = "mean", class_weights: list[float] | None = None,
                return_logits: bool = False) -> FCNSkip:
    """FCN-4s: FCN-8s + stride-4 (``pool2``) scores, upsampled x4 (``build_fcn_skip``)."""
    return build_fcn_skip(variant="4s", **locals())  # every option, by name
