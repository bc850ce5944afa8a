"""Sliding-window semantic segmentation, and the same classifier "convolutionalized" into an FCN.

Implements CS231n 2017 lecture 11, "Semantic segmentation idea: sliding window": extract a patch
around every pixel, classify the patch, and label its centre pixel with the class (Farabet et al.,
"Learning Hierarchical Features for Scene Labeling", TPAMI 2013; Pinheiro & Collobert, "Recurrent
Convolutional Neural Networks for Scene Labeling", ICML 2014) -- "very inefficient: not reusing
shared features between overlapping patches". The fix is the lecture's next slide: the same
classifier applied as a *fully convolutional* network computes every window's scores in one pass,
sharing the features of overlapping windows (Sermanet et al., "OverFeat", ICLR 2014, sec. 3.5;
Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015,
sec. 3.1 "Adapting classifiers for dense prediction": fully connected layers are convolutions
whose kernels cover their entire input region).

- :class:`PatchClassifier`: ``Tensor[N, 3, P, P]`` windows (P odd) -> ``Tensor[N, C]`` scores of
  each window's centre pixel. ``(P - 3) / 2`` unpadded ("valid") 3x3 conv-BN-ReLU layers shrink the
  window to 3x3, then two fully connected layers (``nn.Linear``, as a patch classifier has).
  No padding and no strided pooling, so the network is exactly translation-equivariant.
- :func:`window_logits`: dense inference window by window -- pad the image by ``P // 2``, take
  the ``P x P`` window centred on every pixel (``Tensor.unfold``, a view: no copy), classify them
  in chunks of ``chunk`` windows (bounded memory), write each score at the window's centre.
- :func:`convolutionalize`: the same classifier as an FCN (:class:`ConvolutionalizedClassifier`):
  the conv layers run on the whole padded image, ``fc1`` becomes a ``3 x 3`` convolution whose
  kernel is ``fc1.weight`` reshaped (the flatten order ``C, H, W`` is the conv kernel's order) and
  ``fc2`` a 1x1 convolution. It *shares* the classifier's parameters (views, not copies), so the
  output at each pixel is the classifier applied to the window centred there, up to float
  rounding (the tests check < 1e-5 on the logits and identical labels).
- :func:`build_sliding_window_seg`: the zoo model, a
  :class:`~detseg.models.segmentation.semantic.SemanticModel` whose network pads the input itself so its
  logits are at input resolution. ``mode="fcn"`` (default) predicts with the convolutionalized
  network, ``mode="window"`` window by window; both give the same labels.

Training always runs the convolutionalized form on whole images, in both modes. It is the same
function and the same loss: the per-pixel cross-entropy averaged over the labelled pixels is the
average of the window classifier's loss over *all* windows whose centre is labelled (ignore-labelled
centres contribute nothing), so sampling random windows would only be a noisier estimate of this
gradient, at a cost of ``P * P`` times more convolution work per window. The one difference is
batch normalisation in training mode, which normalises with the statistics of the batch it sees
(all positions of the images rather than a batch of windows); in eval mode (running statistics)
the two paths are the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.models.segmentation.semantic import SemanticLoss, SemanticModel

PADDINGS = ("zeros", "reflect", "replicate")
MODES = ("fcn", "window")


def _check_patch(patch: int, who: str) -> None:
    if not isinstance(patch, int) or patch < 3 or patch % 2 == 0:
        raise ValueError(f"{who}: patch must be an odd int >= 3 (the window has a centre pixel), "
                         f"got {patch!r}")


class PatchClassifier(nn.Module):
    """``Tensor[N, 3, P, P]`` windows -> ``Tensor[N, C]`` class scores of each window's centre pixel.

    Args:
        num_classes: ``C``.
        patch: the window side ``P`` (odd, >= 3).
        width: channels of the conv layers.
        hidden: units of the first fully connected layer.
    """

    head_size = 3  # spatial side left for the fully connected layers

    def __init__(self, num_classes: int, patch: int = 17, width: int = 32, hidden: int = 64):
        super().__init__()
        _check_patch(patch, "PatchClassifier")
        self.patch = patch
        layers: list[nn.Module] = []
        ch = 3
        # Unpadded convs: a window's features never see padding, only the image border's.
        for _ in range((patch - self.head_size) // 2):
            layers += [nn.Conv2d(ch, width, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            ch = width
        self.features = nn.Sequential(*layers)
        self.feature_channels = ch
        self.fc1 = nn.Linear(ch * self.head_size ** 2, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, windows: Tensor) -> Tensor:
        if windows.ndim != 4 or tuple(windows.shape[1:]) != (3, self.patch, self.patch):
            raise ValueError(f"PatchClassifier: expected windows Tensor[N, 3, {self.patch}, "
                             f"{self.patch}], got {tuple(windows.shape)}")
        x = self.features(windows).flatten(1)
        return self.fc2(F.relu(self.fc1(x)))


def pad_for_windows(images: Tensor, patch: int, padding: str = "zeros") -> Tensor:
    """``Tensor[B, 3, H, W]`` -> ``Tensor[B, 3, H + P - 1, W + P - 1]``: room for a window on every pixel.

    ``padding``: ``zeros`` (on normalised images: the mean colour), ``reflect`` (mirror without
    repeating the edge; needs ``H, W > P // 2``) or ``replicate`` (repeat the edge pixel).
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    half = patch // 2
    if padding == "zeros":
        return F.pad(images, (half, half, half, half))
    if padding == "reflect" and min(images.shape[-2:]) <= half:
        raise ValueError(f"padding='reflect' needs images larger than patch // 2 = {half} px, got "
                         f"{tuple(images.shape[-2:])}; use 'replicate' or 'zeros'")
    return F.pad(images, (half, half, half, half), mode=padding)


@torch.no_grad()
def window_logits(classifier: PatchClassifier, images: Tensor, padding: str = "zeros",
                  chunk: int = 4096) -> Tensor:
    """Dense inference window by window: ``Tensor[B, 3, H, W]`` -> logits ``Tensor[B, C, H, W]``.

    Every pixel's ``P x P`` window (centred on it, borders padded per :func:`pad_for_windows`) is
    classified on its own; at most ``chunk`` windows (whole rows of them, at least one row) are
    materialised at a time, so memory stays bounded whatever the image size.
    """
    if chunk < 1:
        raise ValueError(f"window_logits: chunk must be >= 1, got {chunk}")
    p = classifier.patch
    b, _, h, w = images.shape
    # [B, 3, H, W, P, P]: a strided view of the padded images, copied only chunk by chunk.
    windows = pad_for_windows(images, p, padding).unfold(2, p, 1).unfold(3, p, 1)
    rows = max(1, chunk // w)
    out = []
    for i in range(b):
        parts = []
        for r in range(0, h, rows):
            block = windows[i, :, r: r + rows]  # [3, R, W, P, P]
            batch = block.permute(1, 2, 0, 3, 4).reshape(-1, 3, p, p)
            parts.append(classifier(batch).view(block.shape[1], w, -1))
        out.append(torch.cat(parts).permute(2, 0, 1))
    return torch.stack(out)


class ConvolutionalizedClassifier(nn.Module):
    """A :class:`PatchClassifier` as a fully convolutional network sharing its parameters.

    ``Tensor[B, 3, H, W]`` -> ``Tensor[B, C, H, W]``: the input is padded by ``P // 2`` (as
    :func:`window_logits` pads it), the conv layers run on the whole image, ``fc1`` runs as a
    ``3 x 3`` convolution and ``fc2`` as a 1x1 convolution, so ``out[b, :, y, x]`` is the
    classifier's output for the window centred on pixel ``(y, x)``.
    """

    def __init__(self, classifier: PatchClassifier, padding: str = "zeros"):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        self.classifier = classifier
        self.padding = padding

    def forward(self, images: Tensor) -> Tensor:
        pc = self.classifier
        x = pc.features(pad_for_windows(images, pc.patch, self.padding))
        k = pc.head_size
        # Linear(C*k*k -> hidden) on the flattened [C, k, k] block == a k x k conv, same weights.
        fc1 = pc.fc1.weight.view(pc.fc1.out_features, pc.feature_channels, k, k)
        x = F.relu(F.conv2d(x, fc1, pc.fc1.bias))
        return F.conv2d(x, pc.fc2.weight[:, :, None, None], pc.fc2.bias)


def convolutionalize(classifier: PatchClassifier, padding: str = "zeros") -> ConvolutionalizedClassifier:
    """The fully convolutional form of ``classifier`` (see :class:`ConvolutionalizedClassifier`)."""
    return ConvolutionalizedClassifier(classifier, padding)


class SlidingWindowNet(nn.Module):
    """Normalised ``Tensor[B, 3, H, W]`` -> logits ``Tensor[B, C, H, W]``, by either path.

    ``mode="fcn"``: the convolutionalized classifier; ``mode="window"``: :func:`window_logits`
    (eval mode only: training always uses the FCN path, see the module docstring).
    """

    stride = 1

    def __init__(self, num_classes: int, patch: int = 17, width: int = 32, hidden: int = 64,
                 padding: str = "zeros", mode: str = "fcn", chunk: int = 4096):
        super().__init__()
        self.fcn = convolutionalize(PatchClassifier(num_classes, patch, width, hidden), padding)
        self.mode = mode
        self.chunk = chunk

    @property
    def classifier(self) -> PatchClassifier:
        return self.fcn.classifier

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"sliding_window_seg: mode must be one of {', '.join(MODES)}, got {value!r}")
        self._mode = value

    def forward(self, images: Tensor) -> Tensor:
        if self.mode == "window" and not self.training:
            return window_logits(self.classifier, images, self.fcn.padding, self.chunk)
        return self.fcn(images)


class SlidingWindowSegmenter(SemanticModel):
    """The sliding-window segmenter: a :class:`SemanticModel` around a :class:`SlidingWindowNet`."""

    @property
    def mode(self) -> str:
        """``"fcn"`` or ``"window"``: the inference path (settable)."""
        return self.network.mode

    @mode.setter
    def mode(self, value: str) -> None:
        self.network.mode = value

    @property
    def classifier(self) -> PatchClassifier:
        return self.network.classifier


def build_sliding_window_seg(classes: list[str], img_size: int = 128, patch: int = 17,
                             width: int = 32, hidden: int = 64, mode: str = "fcn",
                             padding: str = "zeros", chunk: int = 4096,
                             loss_reduction: str = "mean", class_weights: list[float] | None = None,
                             return_logits: bool = False) -> SlidingWindowSegmenter:
    """A sliding-window segmenter (see the module docstring).

    Args:
        classes: segmentation class names, 0-based (``sem_seg`` values).
        img_size: the longer image side the network sees (aspect kept).
        patch: the window side ``P`` (odd, >= 3); ``(P - 3) / 2`` conv layers.
        width: channels of the conv layers.
        hidden: units of the first fully connected layer.
        mode: inference path, ``"fcn"`` (one convolutional pass) or ``"window"`` (every pixel's
            window classified on its own: the same labels, far slower). Training uses ``"fcn"``.
        padding: how windows at the border are filled: ``zeros``, ``reflect`` or ``replicate``.
        chunk: windows classified per batch in ``window`` mode (bounds memory).
        loss_reduction: ``"mean"`` over the batch's labelled pixels, or ``"sum"``.
        class_weights: per-class loss weights.
        return_logits: always add ``sem_seg_logits`` to predictions.
    """
    _check_patch(patch, "sliding_window_seg")
    if padding not in PADDINGS:
        raise ValueError(f"sliding_window_seg: padding must be one of {', '.join(PADDINGS)}, "
                         f"got {padding!r}")
    net = SlidingWindowNet(len(classes), patch, width, hidden, padding, mode, chunk)
    return SlidingWindowSegmenter(
        classes, net, img_size,
        loss=SemanticLoss(len(classes), loss_reduction, class_weights, who="sliding_window_seg"),
        return_logits=return_logits, who="sliding_window_seg")
