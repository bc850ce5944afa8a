"""DeepLab: a dilated (atrous) backbone, atrous spatial pyramid pooling, optional dense CRF.

Implements, after

- Chen, Papandreou, Kokkinos, Murphy, Yuille, "Semantic Image Segmentation with Deep
  Convolutional Nets and Fully Connected CRFs", ICLR 2015 (https://arxiv.org/abs/1412.7062):
  keep the resolution by turning the last strides into *dilations* ("atrous" convolution: the
  same filters read inputs ``d`` pixels apart, so the receptive field still grows but the map
  stays large), then refine the bilinearly upsampled scores with a fully connected CRF
  (:func:`~detseg.postprocess.crf.dense_crf`);
- Chen, Papandreou, Schroff, Adam, "Rethinking Atrous Convolution for Semantic Image
  Segmentation" (DeepLab v3), 2017 (https://arxiv.org/abs/1706.05587): atrous spatial pyramid
  pooling (ASPP: a 1x1 branch, three 3x3 branches at rates ``atrous_rates``, and an image-level
  pooling branch, concatenated and projected), a 1x1 classifier, bilinear upsampling by the
  output stride.

Backbones: ``resnet18`` (default, torchvision's BasicBlock ResNet), ``resnet50`` (Bottleneck) and
``simple`` (tests). torchvision's ``replace_stride_with_dilation`` exists only for Bottleneck
ResNets, so :func:`dilate_backbone` converts any of them itself: in each converted stage every
strided convolution gets stride 1, and every convolution wider than 1x1 gets dilation ``d``
(padding ``d * (k - 1) / 2``, so sizes are kept). Output stride 16 dilates ``c5`` (``d = 2``);
output stride 8 dilates ``c4`` (``d = 2``) and ``c5`` (``d = 4``). Parameter shapes do not change,
so ImageNet weights load as for the undilated net (``weights``).

Predictions follow :class:`~detseg.models.segmentation.semantic.SemanticModel`. With ``crf=True`` (or setting
``model.crf = True`` later, e.g. to measure the CRF on and off with the same weights) each
prediction is refined by the dense CRF on the *original* image (uint8) and the softmax at the
original size: ``sem_seg`` is the argmax of the CRF marginals ``Q``, ``scores`` their mean per-pixel
max, and ``sem_seg_logits`` (when asked) ``log Q`` so its argmax agrees with ``sem_seg``. The loss
never sees the CRF (it is inference-only, as in the paper).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.models.backbones import (
    Backbone,
    ResNetBackbone,
    _conv_bn_relu,
    build_backbone,
    load_weights,
)
from detseg.models.segmentation.semantic import SemanticLoss, SemanticModel
from detseg.structures import ModelOutput

BACKBONE_NAMES = ("resnet18", "resnet50", "simple")
DEFAULT_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}  # DeepLab v3, section 4.1


# -- dilated backbone ----------------------------------------------------------------------------
def _stage(backbone: Backbone, name: str) -> nn.Module:
    """The module that produces feature ``name`` (``c4``/``c5``) of a detseg backbone."""
    if isinstance(backbone, ResNetBackbone):
        return getattr(backbone, f"layer{int(name[1:]) - 1}")  # c2..c5 = layer1..layer4
    return backbone.stages[name]


def _dilate_stage(stage: nn.Module, dilation: int, who: str) -> None:
    for m in stage.modules():
        if isinstance(m, nn.Conv2d):
            m.stride = (1, 1)
            if m.kernel_size != (1, 1):
                if m.kernel_size[0] % 2 == 0 or m.kernel_size[1] % 2 == 0:
                    raise ValueError(f"{who}: cannot dilate an even-sized kernel {m.kernel_size}")
                m.dilation = (dilation, dilation)
                m.padding = (dilation * (m.kernel_size[0] - 1) // 2,
                             dilation * (m.kernel_size[1] - 1) // 2)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            # A pooling stride cannot become a dilation without changing what the net computes.
            raise ValueError(f"{who}: stage contains pooling ({type(m).__name__}); "
                             "dilation is supported for resnet18, resnet50 and simple backbones")


def dilate_backbone(backbone: Backbone, output_stride: int, who: str = "deeplab") -> Backbone:
    """Turn the strides of the last stages into dilations so ``c5`` has ``output_stride`` (8 or 16).

    Works in place on backbones whose ``c4``/``c5`` stages downsample only by strided
    convolutions (ResNets, ``simple``); updates ``backbone.strides``. Returns the backbone.
    """
    if output_stride not in (8, 16):
        raise ValueError(f"{who}: output_stride must be 8 or 16, got {output_stride}")
    plan = {"c5": 2} if output_stride == 16 else {"c4": 2, "c5": 4}
    for name, dilation in plan.items():
        _dilate_stage(_stage(backbone, name), dilation, who)
    strides = dict(backbone.strides)
    strides["c4"] = min(strides["c4"], output_stride)
    strides["c5"] = output_stride
    backbone.strides = strides
    return backbone


def _build_dilated_backbone(name: str, output_stride: int, weights: str | None) -> Backbone:
    if name not in BACKBONE_NAMES:
        raise ValueError(f"deeplab: unknown backbone {name!r}; known: {', '.join(BACKBONE_NAMES)}")
    if name == "resnet50":
        from torchvision.models import resnet50

        backbone: Backbone = ResNetBackbone(resnet50(weights=None))
        if weights:
            load_weights(backbone, weights)
    else:
        backbone = build_backbone(name, weights=weights)
    return dilate_backbone(backbone, output_stride)


# -- ASPP ----------------------------------------------------------------------------------------
def _conv_bn_relu_seq(in_ch: int, out_ch: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(*_conv_bn_relu(in_ch, out_ch, kernel, dilation=dilation))


class ImagePooling(nn.Module):
    """ASPP's image-level branch: global average pool, 1x1 conv + ReLU, broadcast back to ``h x w``.

    Unlike torchvision's ``ASPPPooling`` there is no BatchNorm: on a 1x1 map it sees one value per
    channel per image and fails in training at batch size 1 (the common CPU/CamVid case).
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.conv(F.adaptive_avg_pool2d(x, 1)))
        return y.expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3): ``Tensor[B, in, h, w] -> Tensor[B, out, h, w]``.

    Branches: 1x1 conv; one 3x3 conv per rate in ``rates`` (dilation = rate); image pooling.
    Concatenated, projected by 1x1 conv-BN-ReLU, then dropout (as torchvision's ``ASPP``).
    """

    def __init__(self, in_ch: int, rates: Sequence[int], out_ch: int = 256, dropout: float = 0.1):
        super().__init__()
        branches = [_conv_bn_relu_seq(in_ch, out_ch, 1)]
        branches += [_conv_bn_relu_seq(in_ch, out_ch, 3, dilation=int(r)) for r in rates]
        branches.append(ImagePooling(in_ch, out_ch))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(*_conv_bn_relu(len(branches) * out_ch, out_ch, 1),
                                     nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class DeepLabNetwork(nn.Module):
    """``Tensor[B, 3, H, W]`` (normalised, H, W multiples of ``stride``) -> logits ``[B, C, H, W]``.

    Dilated backbone ``c5`` -> :class:`ASPP` -> 1x1 classifier -> bilinear upsampling to the input.
    """

    def __init__(self, backbone: Backbone, num_classes: int, rates: Sequence[int],
                 aspp_channels: int = 256, dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.aspp = ASPP(backbone.channels["c5"], rates, aspp_channels, dropout)
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)
        self.stride = backbone.strides["c5"]

    def forward(self, x: Tensor) -> Tensor:
        scores = self.classifier(self.aspp(self.backbone(x)["c5"]))
        return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)


# -- model ---------------------------------------------------------------------------------------
class DeepLab(SemanticModel):
    """A :class:`SemanticModel` over :class:`DeepLabNetwork`, with the optional dense CRF.

    Args:
        crf: refine predictions with :func:`~detseg.postprocess.crf.dense_crf` (an attribute:
            may be switched after building).
        crf_params: keyword arguments of ``dense_crf`` (``iterations``, ``gauss_sxy``, ...).
        Others: as :class:`SemanticModel`.
    """

    def __init__(self, classes: list[str], network: DeepLabNetwork, img_size: int,
                 loss: SemanticLoss | None = None, return_logits: bool = False,
                 crf: bool = False, crf_params: dict[str, Any] | None = None):
        super().__init__(classes, network, img_size, loss=loss, return_logits=return_logits,
                         who="deeplab")
        self.crf = crf
        self.crf_params = dict(crf_params or {})

    @property
    def backbone(self) -> Backbone:
        return self.network.backbone

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None,
                with_predictions: bool = False, with_logits: bool = False) -> ModelOutput:
        """See :class:`SemanticModel`; with ``self.crf`` the predictions are CRF-refined."""
        refine = self.crf and (with_predictions or not self.training)
        if not refine:
            return super().forward(images, targets, with_predictions, with_logits)
        from detseg.postprocess.crf import _densecrf_module

        _densecrf_module()  # a missing pydensecrf2 fails before the network runs, with the hint
        out = super().forward(images, targets, with_predictions, with_logits=True)
        keep_logits = with_logits or self.return_logits
        out.predictions = [self._refine(im, p, keep_logits)
                           for im, p in zip(images, out.predictions)]
        return out

    def _refine(self, image: Tensor, pred: dict[str, Tensor], keep_logits: bool) -> dict[str, Tensor]:
        """Replace ``sem_seg``/``scores`` (and ``sem_seg_logits``) by the CRF's, on the original image."""
        from detseg.postprocess.crf import dense_crf

        logits = pred["sem_seg_logits"]
        probs = logits.float().softmax(0).cpu().numpy()
        rgb = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        rgb = np.ascontiguousarray(rgb.permute(1, 2, 0).cpu().numpy())
        q = torch.from_numpy(dense_crf(rgb, probs, **self.crf_params)).to(logits.device)
        conf, sem_seg = q.max(0)
        refined = {**pred, "sem_seg": sem_seg, "scores": conf.mean()}
        if keep_logits:
            refined["sem_seg_logits"] = q.clamp(min=1e-8).log()
        else:
            refined.pop("sem_seg_logits")
        return refined


def build_deeplab(classes: list[str], img_size: int = 128, backbone: str = "resnet18",
                  output_stride: int = 16, atrous_rates: list[int] | None = None,
                  aspp_channels: int = 256, dropout: float = 0.1, weights: str | None = None,
                  crf: bool = False, crf_iterations: int = 5, crf_gauss_sxy: float = 3,
                  crf_gauss_compat: float = 3, crf_bilateral_sxy: float = 80,
                  crf_bilateral_srgb: float = 13, crf_bilateral_compat: float = 10,
                  loss_reduction: str = "mean", class_weights: list[float] | None = None,
                  return_logits: bool = False) -> DeepLab:
    """DeepLab (v3 head, optional v1 dense CRF); see the module docstring.

    Args:
        classes: segmentation class names, 0-based (``sem_seg`` values).
        img_size: the longer image side the network sees (aspect kept; padded to a multiple of
            ``output_stride``).
        backbone: ``resnet18`` (default), ``resnet50`` or ``simple`` (tests).
        output_stride: 16 (``c5`` dilated) or 8 (``c4`` and ``c5`` dilated; 4x the ASPP cost).
        atrous_rates: ASPP 3x3 rates (default ``[6, 12, 18]`` at stride 16, ``[12, 24, 36]`` at 8,
            as DeepLab v3; on small inputs smaller rates see more than padding).
        aspp_channels: channels of every ASPP branch and of its projection.
        dropout: dropout after the ASPP projection.
        weights: pretrained backbone weights (local file or torchvision enum name, e.g.
            ``ResNet18_Weights.IMAGENET1K_V1``); dilation keeps parameter shapes so they load.
        crf: refine predictions with the dense CRF (needs ``pip install detseg[crf]``).
        crf_iterations, crf_gauss_sxy, crf_gauss_compat, crf_bilateral_sxy, crf_bilateral_srgb,
            crf_bilateral_compat: the parameters of :func:`~detseg.postprocess.crf.dense_crf`.
        loss_reduction: ``"mean"`` over the batch's labelled pixels, or ``"sum"``.
        class_weights: per-class loss weights (e.g. median-frequency balancing).
        return_logits: always add ``sem_seg_logits`` to predictions.
    """
    rates = list(atrous_rates) if atrous_rates is not None else list(DEFAULT_RATES.get(output_stride, ()))
    bb = _build_dilated_backbone(backbone, output_stride, weights)
    network = DeepLabNetwork(bb, len(classes), rates, aspp_channels, dropout)
    crf_params = {"iterations": crf_iterations, "gauss_sxy": crf_gauss_sxy,
                  "gauss_compat": crf_gauss_compat, "bilateral_sxy": crf_bilateral_sxy,
                  "bilateral_srgb": crf_bilateral_srgb, "bilateral_compat": crf_bilateral_compat}
    loss = SemanticLoss(len(classes), loss_reduction, class_weights, who="deeplab")
    return DeepLab(classes, network, img_size, loss=loss, return_logits=return_logits, crf=crf,
                   crf_params=crf_params)
