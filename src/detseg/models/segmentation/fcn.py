"""Fully convolutional semantic segmentation: a downsampling encoder, an upsampling decoder.

Implements the encoder-decoder FCN of CS231n 2017 lecture 11 ("Semantic segmentation idea: fully
convolutional", downsampling then *learnable upsampling*), after Long, Shelhamer, Darrell, "Fully
Convolutional Networks for Semantic Segmentation", CVPR 2015 (https://arxiv.org/abs/1411.4038) and
Noh et al., "Learning Deconvolution Network for Semantic Segmentation", ICCV 2015.

- Encoder: a :mod:`~detseg.models.backbones` backbone (features ``c1..c5``, strides 2..32).
- Decoder (:class:`FCNDecoder`): top-down from the deepest map; at each shallower stage an
  upsampling step (by default a bilinear-initialised transpose convolution,
  :class:`~detseg.layers.upsampling.TransposeConvUpsample`) doubles the resolution and a 1x1
  "skip" projection of the encoder map is added (FCN's skip
  architecture), then a 3x3 conv fuses them. The stages go down to the stride-2 stem and, with
  ``image_skip`` (default), to the normalised input image itself at stride 1, so thin parts (the
  shapes world's stick-figure limbs are 2 px wide) and class boundaries are decided at full
  resolution. 1x1 class scores come last (upsampled by one more transpose convolution when the
  last stage is coarser than the input). FCN-32s/16s/8s as such are built from the same parts
  by a later issue.
- Upsampling by name (``upsample``, :data:`~detseg.layers.upsampling.UPSAMPLE_KINDS`), the same
  kind for every decoder step: ``transpose`` (default), ``bilinear``, ``resize_conv``, or the
  fixed unpoolings ``nearest``, ``bed_of_nails`` and ``max_unpool``, which learn nothing (1x1
  convs around them change channels). ``max_unpool`` puts values back where the *matching encoder
  max-pool* found its maxima (SegNet): the backbone runs ``forward_with_indices`` and the decoder
  step from stride ``2s`` to ``s`` uses the indices of the pool from ``s`` to ``2s``. Steps with no
  such pool (``alexnet_small``'s strided stem, the image level) fall back to ``nearest``; a
  backbone with no recordable pool at all (``resnet18``, ``simple``) is refused.
- Loss: per-pixel cross-entropy averaged over every labelled pixel of the mini-batch
  (``IGNORE_INDEX`` 255 excluded), or summed (``loss_reduction="sum"``). It is computed against each
  image's **original-resolution** ``sem_seg``: the logits are cropped to the image's area of the
  padded batch and upsampled bilinearly to the original size
  (:func:`~detseg.models.transform.maps_to_original`), so a model trained at 64 px is scored on
  the labels as the dataset gives them.
- Predictions (original size): ``sem_seg`` ``Tensor[H, W]`` int64 (argmax of the upsampled logits),
  ``scores`` a 0-dim float tensor — the image's mean per-pixel max softmax probability (a per-pixel
  map would double the memory of every prediction; ask for the logits instead), and
  ``sem_seg_logits`` ``Tensor[C, H, W]`` when built with ``return_logits=True`` or called with
  ``with_logits=True``.
"""

from __future__ import annotations

from torch import Tensor, nn

from detseg.layers.upsampling import UPSAMPLE_KINDS, build_upsampler
from detseg.models.backbones import (
    Backbone,
    PoolIndices,
    PoolSpec,
    _conv_bn_relu,
    build_backbone,
)
from detseg.models.segmentation.semantic import SemanticLoss, SemanticModel


MIN_WIDTH = 16


def _conv_bn_relu_seq(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(*_conv_bn_relu(in_ch, out_ch, kernel))


class FCNDecoder(nn.Module):
    """``dict[str, Tensor]`` backbone features -> class logits ``Tensor[B, C, H, W]`` at input size.

    Args:
        channels, strides: the backbone's declarations (shallow to deep).
        num_classes: ``C``.
        width: channels of the decoder's deepest maps (a level never gets more channels than
            the encoder map it fuses).
        skips: encoder features fused on the way up (default: all but the deepest). The deepest
            feature always starts the decoder; with ``skips=[]`` it is FCN-32s-like (one big
            upsampling of coarse scores).
        upsample: the kind of every upsampling step (see
            :func:`~detseg.layers.upsampling.build_upsampler`).
        pools: for ``max_unpool``: the backbone's ``pool_specs`` (by input stride). A step from
            stride ``t`` to ``s`` max-unpools when a pool went from ``s`` to ``t``, else it is
            ``nearest``; ``forward`` then needs the pool indices.
    """

    def __init__(self, channels: dict[str, int], strides: dict[str, int], num_classes: int,
                 width: int = 64, skips: list[str] | None = None, upsample: str = "transpose",
                 pools: dict[int, PoolSpec] | None = None):
        super().__init__()
        if upsample not in UPSAMPLE_KINDS:
            raise ValueError(f"FCNDecoder: unknown upsample {upsample!r}; known: "
                             f"{', '.join(UPSAMPLE_KINDS)}")
        self.upsample = upsample
        self.pools = dict(pools or {})
        # Decoder level name -> input stride of the encoder pool whose indices it unpools with.
        self.unpool_at: dict[str, int] = {}
        names = list(channels)
        self.deepest = names[-1]
        if skips is None:
            skips = names[:-1]
        self.skips = sorted(skips, key=lambda k: strides.get(k, 0), reverse=True)  # deep to shallow
        unknown = [s for s in self.skips if s not in channels or s == self.deepest]
        if unknown:
            raise ValueError(f"FCNDecoder: skips {unknown} are not shallower backbone features "
                             f"({names[:-1]})")
        self.inner = _conv_bn_relu_seq(channels[self.deepest], width, 3)
        self.up = nn.ModuleDict()
        self.lateral = nn.ModuleDict()
        self.fuse = nn.ModuleDict()
        stride, ch = strides[self.deepest], width
        for name in self.skips:
            # Shallow levels mirror the encoder's narrower width (U-Net style): cheap at high res;
            # at least MIN_WIDTH, so the 3-channel image level still gets a real feature map.
            out_ch = min(width, max(channels[name], MIN_WIDTH))
            self.up[name] = self._upsampler(name, ch, out_ch, stride, strides[name])
            self.lateral[name] = nn.Conv2d(channels[name], out_ch, 1)
            self.fuse[name] = _conv_bn_relu_seq(out_ch, out_ch, 3)
            stride, ch = strides[name], out_ch
        self.classifier = nn.Conv2d(ch, num_classes, 1)
        # Class scores at stride `stride` -> input resolution, learnable (bilinear start).
        final_kind = "nearest" if upsample == "max_unpool" else upsample
        self.final_up = (build_upsampler(final_kind, num_classes, num_classes, stride) if stride > 1
                         else nn.Identity())
        if upsample == "max_unpool" and not self.unpool_at:
            raise ValueError(f"FCNDecoder: upsample='max_unpool' but no decoder step matches an "
                             f"encoder max-pool (pools by input stride: {sorted(self.pools)})")

    @property
    def needs_indices(self) -> bool:
        """Whether ``forward`` needs the encoder's pool indices (``max_unpool``)."""
        return bool(self.unpool_at)

    def _upsampler(self, name: str, in_ch: int, out_ch: int, from_stride: int,
                   to_stride: int) -> nn.Module:
        factor = from_stride // to_stride
        if self.upsample != "max_unpool":
            return build_upsampler(self.upsample, in_ch, out_ch, factor)
        spec = self.pools.get(to_stride)
        if spec is None or spec.out_stride != from_stride:
            return build_upsampler("nearest", in_ch, out_ch, factor)
        self.unpool_at[name] = to_stride
        return build_upsampler("max_unpool", in_ch, out_ch, factor, unpool_channels=spec.channels,
                               kernel=spec.kernel, padding=spec.padding)

    def forward(self, features: dict[str, Tensor], pools: PoolIndices | None = None) -> Tensor:
        """``features`` by name; ``pools`` the backbone's indices when :attr:`needs_indices`."""
        x = self.inner(features[self.deepest])
        for name in self.skips:
            if name in self.unpool_at:
                if pools is None or self.unpool_at[name] not in pools:
                    raise ValueError(f"FCNDecoder: level {name!r} max-unpools and needs the "
                                     f"indices of the encoder pool at stride "
                                     f"{self.unpool_at[name]} (call backbone.forward_with_indices)")
                indices, size = pools[self.unpool_at[name]]
                up = self.up[name](x, indices, size)
            else:
                up = self.up[name](x)
            x = self.fuse[name](up + self.lateral[name](features[name]))
        return self.final_up(self.classifier(x))


class EncoderDecoder(nn.Module):
    """``Tensor[B, 3, H, W]`` (normalised) -> logits ``Tensor[B, C, H, W]``: backbone, then decoder."""

    def __init__(self, backbone: Backbone, decoder: nn.Module, image_skip: bool = False):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.image_skip = image_skip
        self.stride = backbone.out_stride

    def forward(self, x: Tensor) -> Tensor:
        if getattr(self.decoder, "needs_indices", False):
            # max_unpool: the encoder's pools hand their argmax indices to the decoder.
            features, pools = self.backbone.forward_with_indices(x)
        else:
            features, pools = self.backbone(x), None
        if self.image_skip:
            features = {"image": x, **features}
        return self.decoder(features, pools) if pools is not None else self.decoder(features)


class FCN(SemanticModel):
    """The encoder-decoder FCN: a :class:`SemanticModel` whose network is an :class:`EncoderDecoder`.

    See the module docstring for the loss and prediction conventions.
    """

    def __init__(self, classes: list[str], backbone: Backbone, decoder: nn.Module, img_size: int,
                 loss_reduction: str = "mean", return_logits: bool = False,
                 image_skip: bool = False, class_weights: list[float] | None = None):
        super().__init__(classes, EncoderDecoder(backbone, decoder, image_skip), img_size,
                         loss=SemanticLoss(len(classes), loss_reduction, class_weights),
                         return_logits=return_logits, who="fcn")
        self.image_skip = image_skip

    @property
    def backbone(self) -> Backbone:
        return self.network.backbone

    @property
    def decoder(self) -> nn.Module:
        return self.network.decoder


def build_fcn(classes: list[str], img_size: int = 128, backbone: str = "alexnet_small",
              width: int = 64, weights: str | None = None, loss_reduction: str = "mean",
              return_logits: bool = False, backbone_width: int | None = None,
              image_skip: bool = True, class_weights: list[float] | None = None,
              upsample: str = "transpose") -> FCN:
    """An encoder-decoder FCN (see the module docstring).

    Args:
        classes: segmentation class names, 0-based (``sem_seg`` values), e.g. ``["background", ...]``.
        img_size: the longer image side the network sees (aspect kept; padded to a multiple of 32).
        backbone: ``alexnet_small`` (CPU-fast), ``resnet18`` or ``simple``.
        width: decoder channels.
        weights: pretrained backbone weights (local file or torchvision enum name).
        loss_reduction: ``"mean"`` over labelled pixels of the batch, or ``"sum"``.
        return_logits: always add ``sem_seg_logits`` to predictions.
        backbone_width: base width of ``alexnet_small``/``simple`` (their default when ``None``).
        image_skip: fuse the (normalised) input image as a last, stride-1 skip, so class
            boundaries and thin parts are decided at full resolution.
        class_weights: per-class loss weights (e.g. median-frequency balancing, see
            :func:`~detseg.models.segmentation.semantic.median_frequency_weights`).
        upsample: every decoder upsampling step: ``transpose`` (default), ``bilinear``,
            ``resize_conv``, ``nearest``, ``bed_of_nails`` or ``max_unpool`` (with the indices of
            the matching encoder max-pool; needs a backbone with max-pools: ``alexnet_small``).
    """
    if upsample not in UPSAMPLE_KINDS:
        raise ValueError(f"fcn: unknown upsample {upsample!r}; known: {', '.join(UPSAMPLE_KINDS)}")
    bb = build_backbone(backbone, weights=weights, width=backbone_width)
    if upsample == "max_unpool" and not bb.pool_specs:
        raise ValueError(f"fcn: upsample='max_unpool' needs a backbone whose downsampling is "
                         f"max-pooling, to unpool with its indices; {backbone!r} has no recordable "
                         f"max-pool (use backbone='alexnet_small', or another upsample kind)")
    channels, strides = dict(bb.channels), dict(bb.strides)
    if image_skip:
        channels, strides = {"image": 3, **channels}, {"image": 1, **strides}
    decoder = FCNDecoder(channels, strides, len(classes), width=width, upsample=upsample,
                         pools=bb.pool_specs)
    return FCN(classes, bb, decoder, img_size, loss_reduction=loss_reduction,
               return_logits=return_logits, image_skip=image_skip, class_weights=class_weights)
