"""Backbones: CNNs returning named feature maps that declare their channels and strides.

Like torchvision's ``IntermediateLayerGetter`` / ``BackboneWithFPN`` and Detectron2's
``Backbone.output_shape()`` (``ShapeSpec``): a backbone maps ``Tensor[B, 3, H, W]`` to
``dict[str, Tensor]`` and declares ``channels`` and ``strides`` per name, so heads size themselves.

Every backbone here returns ``c1..c5`` at strides 2, 4, 8, 16, 32 (``c1`` is the stem, used by
decoders that must draw thin structures; ``c5`` the deepest map).

- ``resnet18``: torchvision's ResNet-18 (He et al., "Deep Residual Learning for Image
  Recognition", CVPR 2016, https://arxiv.org/abs/1512.03385), ``c2..c5`` = ``layer1..layer4``.
  Its parameter names equal torchvision's, so torchvision checkpoints load as they are.
- ``alexnet_small``: an AlexNet-style net sized for CPUs (Krizhevsky, Sutskever, Hinton, "ImageNet
  Classification with Deep Convolutional Neural Networks", NeurIPS 2012): a large-kernel strided
  first convolution, then conv-BN-ReLU-maxpool stages (~1.2M parameters at the default
  ``width=32``). BatchNorm replaces AlexNet's local response
  normalisation: it lets a random initialisation train in a few CPU minutes.
- ``simple``: a tiny conv stack for tests (~25k parameters).

Backbones whose downsampling is max-pooling (``alexnet_small``) also declare those pools
(``pool_specs``) and offer ``forward_with_indices``, which returns each pool's argmax indices beside
the features, for decoders that max-unpool with them (SegNet; Badrinarayanan et al., TPAMI 2017).

Stages (what ``detseg train --freeze-backbone N`` freezes, shallow to deep; :func:`backbone_stages`):
ResNets have 5 -- the stem (``conv1`` + ``bn1``) and ``layer1..layer4`` (torchvision's
``trainable_layers`` units); a :class:`StagedBackbone` (``alexnet_small``, ``simple``) one per
``c1..c5`` stage; a VGG-style ``features`` sequence (FCN's VGG-16, SegNet's encoder) one per block
ending in a max-pool; an FPN backbone the stages of its body (the FPN neck is not a stage).
Stages a truncated backbone dropped (Fast R-CNN's ``feature``) do not count.

Random initialisation by default. ``weights`` is a local file (a ``state_dict`` saved by torch, a
torchvision checkpoint, or a detseg checkpoint, read with ``torch.load(weights_only=True)``) or a
torchvision weights enum name such as ``"ResNet18_Weights.IMAGENET1K_V1"`` (downloads, so only when
a user asks for it). Matching is reported in ``backbone.weights_report`` and a warning lists what
did not load.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class PoolSpec:
    """A backbone max-pool whose argmax indices :meth:`Backbone.forward_with_indices` records.

    ``in_stride -> out_stride`` are the strides of the pool's input and output maps, ``channels``
    their channel count, ``kernel``/``stride``/``padding`` the pool's own.
    """

    stage: str
    in_stride: int
    out_stride: int
    channels: int
    kernel: int
    stride: int
    padding: int


PoolIndices = dict[int, tuple[Tensor, tuple[int, int]]]
"""``{pool in_stride: (indices Tensor[B, C, h, w] int64, pool input size (H, W))}``."""


def _int(v: int | tuple[int, ...]) -> int:
    if isinstance(v, tuple):
        if len(set(v)) != 1:
            raise ValueError(f"non-square pooling {v} is not supported for index recording")
        return int(v[0])
    return int(v)


class Backbone(nn.Module):
    """Base class: ``forward(x: Tensor[B, 3, H, W]) -> dict[str, Tensor[B, channels[k], H/s, W/s]]``.

    Subclasses set ``channels`` and ``strides`` (same keys, shallow to deep, in forward's order).
    """

    channels: dict[str, int]
    strides: dict[str, int]

    def __init__(self) -> None:
        super().__init__()
        self.weights_report: dict[str, Any] = {}

    @property
    def names(self) -> list[str]:
        """Feature names, shallow to deep."""
        return list(self.channels)

    @property
    def out_stride(self) -> int:
        """The stride of the deepest feature map (inputs are padded to a multiple of it)."""
        return max(self.strides.values())

    @property
    def pool_specs(self) -> dict[int, PoolSpec]:
        """The max-pools whose indices can be recorded, by input stride (none by default)."""
        return {}

    def forward_with_indices(self, x: Tensor) -> tuple[dict[str, Tensor], PoolIndices]:
        """``(features, pool indices)`` (see :data:`PoolIndices`); only with ``pool_specs``."""
        raise ValueError(f"backbone {type(self).__name__}: has no max-pools whose indices can be "
                         "recorded")

    def named_stages(self) -> list[tuple[str, list[nn.Module]]]:
        """``[(stage name, its modules), ...]`` shallow to deep: the units ``--freeze-backbone``
        counts. The default splits a VGG-style ``features`` sequence after each max-pool."""
        features = getattr(self, "features", None)
        if isinstance(features, nn.Sequential):
            return pool_blocks(features)
        raise ValueError(f"backbone {type(self).__name__}: defines no stages to freeze")


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                  dilation: int = 1) -> list[nn.Module]:
    """``[Conv2d (no bias, size-keeping padding), BatchNorm2d, ReLU]``: the conv-BN-ReLU block
    shared by the backbones, decoders and heads of :mod:`detseg.models`."""
    return [nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=dilation * (kernel // 2),
                      dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class StagedBackbone(Backbone):
    """A backbone that is a plain sequence of stages, each ending in one named feature map."""

    def __init__(self, stages: dict[str, nn.Module], channels: dict[str, int],
                 strides: dict[str, int]):
        super().__init__()
        self.stages = nn.ModuleDict(stages)
        self.channels = channels
        self.strides = strides

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = {}
        for name, stage in self.stages.items():
            x = stage(x)
            out[name] = x
        return out

    def named_stages(self) -> list[tuple[str, list[nn.Module]]]:
        """One stage per named feature map (``c1..c5``)."""
        return [(name, [stage]) for name, stage in self.stages.items()]

    @property
    def pool_specs(self) -> dict[int, PoolSpec]:
        """Stages that end in an ``nn.MaxPool2d``: their pool, keyed by the pool's input stride."""
        specs = {}
        for name, stage in self.stages.items():
            last = list(stage.children())[-1] if len(stage) else None
            if isinstance(last, nn.MaxPool2d) and _int(last.dilation) == 1:
                stride = _int(last.stride)
                spec = PoolSpec(name, self.strides[name] // stride, self.strides[name],
                                self.channels[name], _int(last.kernel_size), stride,
                                _int(last.padding))
                specs[spec.in_stride] = spec
        return specs

    def forward_with_indices(self, x: Tensor) -> tuple[dict[str, Tensor], PoolIndices]:
        """Like ``forward``, but each stage-ending max-pool also returns its argmax indices."""
        specs = {s.stage: s for s in self.pool_specs.values()}
        if not specs:
            super().forward_with_indices(x)
        out, pools = {}, {}
        for name, stage in self.stages.items():
            if name in specs:
                *body, pool = stage.children()
                for m in body:
                    x = m(x)
                size = (x.shape[-2], x.shape[-1])
                x, idx = F.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding,
                                      pool.dilation, pool.ceil_mode, return_indices=True)
                pools[specs[name].in_stride] = (idx, size)
            else:
                x = stage(x)
            out[name] = x
        return out, pools


def alexnet_small(width: int = 32) -> StagedBackbone:
    """AlexNet-style CPU backbone: channels ``w, w, 2w, 4w, 8w`` at strides 2, 4, 8, 16, 32.

    AlexNet's 11x11 stride-4 opening is a 5x5 stride-2 conv (``c1``) + 3x3 max-pool here (images
    are 10x smaller); then 5x5 and 3x3 convs with max-pooling, as in AlexNet's conv2..conv5.
    """
    w = width
    stages = {
        "c1": nn.Sequential(*_conv_bn_relu(3, w, 5, stride=2)),
        "c2": nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1)),
        "c3": nn.Sequential(*_conv_bn_relu(w, 2 * w, 5), nn.MaxPool2d(2)),
        "c4": nn.Sequential(*_conv_bn_relu(2 * w, 4 * w, 3), *_conv_bn_relu(4 * w, 4 * w, 3),
                            nn.MaxPool2d(2)),
        "c5": nn.Sequential(*_conv_bn_relu(4 * w, 8 * w, 3), *_conv_bn_relu(8 * w, 8 * w, 3),
                            nn.MaxPool2d(2)),
    }
    return StagedBackbone(stages, {"c1": w, "c2": w, "c3": 2 * w, "c4": 4 * w, "c5": 8 * w},
                          {"c1": 2, "c2": 4, "c3": 8, "c4": 16, "c5": 32})


def simple(width: int = 8) -> StagedBackbone:
    """A tiny test backbone: one strided conv-BN-ReLU per stage, ``c1..c5`` at strides 2..32."""
    chans = {f"c{i + 1}": width * 2 ** max(i - 1, 0) for i in range(5)}
    stages, prev = {}, 3
    for name, ch in chans.items():
        stages[name] = nn.Sequential(*_conv_bn_relu(prev, ch, 3, 2))
        prev = ch
    return StagedBackbone(stages, chans, {f"c{i + 1}": 2 ** (i + 1) for i in range(5)})


class ResNetBackbone(Backbone):
    """torchvision ResNet without ``avgpool``/``fc``: ``c1`` = the stem (conv1-bn-relu, stride 2),
    ``c2..c5`` = ``layer1..layer4`` outputs (strides 4..32).

    The submodules keep torchvision's names (``conv1``, ``bn1``, ``layer1`` ...) so a torchvision
    ``state_dict`` loads directly (its ``fc.*`` keys are reported as unused).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(net, name))
        chans = [self._out_channels(getattr(net, f"layer{i}")) for i in range(1, 5)]
        self.channels = {"c1": len(net.bn1.weight), **{f"c{i + 2}": c for i, c in enumerate(chans)}}
        self.strides = {f"c{i + 1}": 2 ** (i + 1) for i in range(5)}

    @staticmethod
    def _out_channels(layer: nn.Sequential) -> int:
        block = layer[-1]
        last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
        return len(last_bn.weight)  # FrozenBatchNorm2d has no num_features

    def named_stages(self) -> list[tuple[str, list[nn.Module]]]:
        """The stem (``conv1`` + ``bn1``), then ``layer1..layer4`` (those a truncation kept)."""
        stages = [("stem", [self.conv1, self.bn1])]
        for i in range(1, 5):
            layer = getattr(self, f"layer{i}")
            if not isinstance(layer, nn.Identity):  # dropped by truncate_backbone
                stages.append((f"layer{i}", [layer]))
        return stages

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        out = {"c1": x}
        x = self.maxpool(x)
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            out[f"c{i + 2}"] = x
        return out


def resnet18() -> ResNetBackbone:
    from torchvision.models import resnet18 as tv_resnet18

    return ResNetBackbone(tv_resnet18(weights=None))


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet18": resnet18,
    "alexnet_small": alexnet_small,
    "simple": simple,
}


def build_backbone(name: str, weights: str | None = None, width: int | None = None,
                   **kw: Any) -> Backbone:
    """Build the backbone ``name`` (randomly initialised), then load ``weights`` if given.

    Args:
        name: one of :data:`BACKBONES` (``resnet18``, ``alexnet_small``, ``simple``).
        weights: ``None``; a local file path; or a torchvision weights enum name
            (``"ResNet18_Weights.IMAGENET1K_V1"``, downloaded by torchvision on first use).
        width: base width of ``alexnet_small``/``simple``; ``None`` keeps the backbone's default
            (builders pass their ``backbone_width`` option straight through).
        **kw: other options of the backbone function.

    Raises:
        ValueError: unknown name, unusable weights; TypeError: an option the backbone lacks;
        FileNotFoundError: a weights path that does not exist.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    if width is not None:
        kw["width"] = width
    try:
        backbone = BACKBONES[name](**kw)
    except TypeError as e:
        raise TypeError(f"backbone {name!r}: {e}") from None
    if weights:
        load_weights(backbone, weights)
    return backbone


def pool_blocks(features: nn.Sequential) -> list[tuple[str, list[nn.Module]]]:
    """VGG-style blocks of ``features``: ``block1``, ``block2``, ... each ending in a max-pool
    (layers after the last pool form one more block)."""
    blocks: list[tuple[str, list[nn.Module]]] = []
    current: list[nn.Module] = []
    for layer in features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks.append((f"block{len(blocks) + 1}", current))
            current = []
    if current:
        blocks.append((f"block{len(blocks) + 1}", current))
    return blocks


def backbone_stages(backbone: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The stages of ``backbone`` shallow to deep (module docstring): a :class:`Backbone`'s
    ``named_stages()``, or the max-pool blocks of a module with a VGG-style ``features``.

    Raises:
        ValueError: for a module of no known family.
    """
    if isinstance(backbone, Backbone):
        return backbone.named_stages()
    features = getattr(backbone, "features", None)
    if isinstance(features, nn.Sequential):
        return pool_blocks(features)
    raise ValueError(f"{type(backbone).__name__}: not a backbone with stages (a detseg Backbone "
                     "or a VGG-style features sequence)")


# -- pretrained weights --------------------------------------------------------------------------
_ENUM_NAME = re.compile(r"^[A-Za-z0-9]+_Weights\.[A-Za-z0-9_]+$")


def read_state_dict(weights: str | Path) -> dict[str, Tensor]:
    """The ``state_dict`` named by ``weights``: a local file or a torchvision weights enum name.

    A file may hold a plain ``state_dict`` or a dict wrapping one under ``"model"`` /
    ``"state_dict"`` (detseg and many training scripts save that way).
    """
    path = Path(weights)
    if not path.exists() and _ENUM_NAME.match(str(weights)):
        return _torchvision_state_dict(str(weights))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights: file not found (give a state_dict file or a "
                                "torchvision enum name such as 'ResNet18_Weights.IMAGENET1K_V1')")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for garbage files
        raise ValueError(f"{path}: weights: cannot be read ({type(e).__name__}: {e})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not any(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: weights: not a state_dict (no tensors found)")
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


def _torchvision_state_dict(name: str) -> dict[str, Tensor]:
    from torchvision.models import get_weight

    try:
        enum = get_weight(name)
    except (ValueError, KeyError, AttributeError) as e:
        raise ValueError(f"weights {name!r}: not a torchvision weights enum ({e})") from None
    return enum.get_state_dict(progress=True, check_hash=True)


def _best_prefix(keys: list[str], own: set[str]) -> str:
    """The key prefix (``""``, ``"module."``, ``"backbone."``, ...) whose removal matches most keys."""
    counts: dict[str, int] = {}
    for k in keys:
        parts = k.split(".")
        for i in range(len(parts)):
            prefix = ".".join(parts[:i]) + ("." if i else "")
            if k[len(prefix):] in own:
                counts[prefix] = counts.get(prefix, 0) + 1
    return max(counts, key=lambda p: (counts[p], -len(p))) if counts else ""


def load_weights(backbone: Backbone, weights: str | Path) -> dict[str, Any]:
    """Load the tensors of ``weights`` whose names and shapes match ``backbone``; report the rest.

    Names are matched after stripping the prefix that matches most keys, so a backbone-only
    ``state_dict``, a torchvision model checkpoint, a DDP (``module.``) checkpoint and a detseg
    model (``backbone.``) all load. Returns (and stores in ``backbone.weights_report``)
    ``{"source", "loaded", "missing", "unexpected", "mismatched"}``; warns when anything of the
    backbone stayed unloaded.

    Raises:
        ValueError: when no tensor matches (the wrong file for this backbone).
    """
    state = read_state_dict(weights)
    own = backbone.state_dict()
    prefix = _best_prefix(list(state), set(own))
    renamed = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    matched = {k: v for k, v in renamed.items() if k in own and v.shape == own[k].shape}
    mismatched = [k for k, v in renamed.items() if k in own and v.shape != own[k].shape]
    unexpected = [k for k in state if not k.startswith(prefix) or k[len(prefix):] not in own]
    # BatchNorm's counter is absent from older checkpoints and never matters for inference.
    missing = [k for k in own if k not in matched and not k.endswith("num_batches_tracked")]
    if not matched:
        raise ValueError(f"{weights}: weights: no tensor matches this backbone (its first keys: "
                         f"{list(own)[:3]}; the file's: {list(state)[:3]})")
    backbone.load_state_dict(matched, strict=False)
    report = {"source": str(weights), "loaded": len(matched), "missing": missing,
              "unexpected": unexpected, "mismatched": mismatched}
    backbone.weights_report = report
    if missing or mismatched:
        warnings.warn(f"{weights}: weights: loaded {len(matched)}/{len(own)} backbone tensors; "
                      f"{len(missing)} missing (first: {missing[:3]}), {len(mismatched)} of another "
                      f"shape (first: {mismatched[:3]})", stacklevel=3)
    return report
