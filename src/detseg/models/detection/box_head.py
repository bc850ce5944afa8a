"""The box head of R-CNN / Fast R-CNN: RoI features -> class scores and class-specific box deltas.

Girshick, "Fast R-CNN", ICCV 2015 (https://arxiv.org/abs/1504.08083), sec. 2 and fig. 1: the pooled
RoI feature goes through fully connected layers (VGG16's fc6, fc7), then two sibling layers: a
softmax over ``C + 1`` classes (index 0 = background) and ``4`` box deltas per foreground class.
Initialisation as in the paper (sec. 2.3): the classifier from N(0, 0.01^2), the regressor from
N(0, 0.001^2), biases 0 -- so the first boxes are the proposals themselves.

Deltas are ``Tensor[R, 4 * C]`` for the ``C`` foreground classes (Detectron2's layout; torchvision
also spends 4 outputs on the background): label ``k`` (1-based) owns columns ``4(k-1) .. 4k-1``.

R-CNN (Girshick et al. 2014, sec. 2.3) scored regions with one linear SVM per class on the fc7
features instead of the softmax. A head built with ``svm=True`` carries those SVMs as buffers
(``svm_weight [C, D]``, ``svm_bias [C]``, ``svm_fitted``): they are fitted after training by
:func:`detseg.models.detection.svm.fit_svms`, never by the optimiser, and until then the softmax scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

SCORERS = ("auto", "softmax", "svm")


class BoxHead(nn.Module):
    """``Tensor[R, C_in, h, w]`` (or ``[R, D]``) -> ``(logits Tensor[R, C+1], deltas Tensor[R, 4C])``.

    Args:
        in_features: ``C_in * h * w`` of the RoI features.
        num_classes: foreground classes ``C``.
        hidden: widths of the fully connected layers (fc6, fc7); ``()`` = linear on the features.
        dropout: dropout after each hidden layer (0.5 in AlexNet / VGG).
        box_regression: False drops the regressor (sliding-window detection classifies crops only);
            ``deltas`` is then ``None``.
        svm: carry R-CNN's per-class linear SVMs (module docstring) for :meth:`predict`.
        scorer: what :meth:`predict` scores with: ``"auto"`` (the SVMs once fitted, else the
            softmax), ``"softmax"`` or ``"svm"`` (an error while they are not fitted).
        background_deltas: the regressor also has the background's 4 outputs, never used (as
            torchvision's ``FastRCNNPredictor``): ``deltas`` stays ``[R, 4C]``. The Faster R-CNN
            family sets it so that torchvision's weights load whole and the matrix product has
            torchvision's shape -- a ``4C``-row product rounds differently in float32 (measured:
            deltas 5e-6 apart, boxes 3e-5 px, pasted masks 1.25e-4).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (256, 256),
                 dropout: float = 0.0, box_regression: bool = True, svm: bool = False,
                 scorer: str = "auto", background_deltas: bool = False) -> None:
        super().__init__()
        if scorer not in SCORERS:
            raise ValueError(f"box head: scorer must be one of {SCORERS}, got {scorer!r}")
        self.scorer = scorer
        layers: list[nn.Module] = [nn.Flatten()]
        prev = int(in_features)
        for width in hidden:
            layers += [nn.Linear(prev, int(width)), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            prev = int(width)
        self.fc = nn.Sequential(*layers)
        self.cls_score = nn.Linear(prev, num_classes + 1)
        self.skip = 4 if background_deltas else 0  # leading regressor outputs never read
        self.bbox_pred = nn.Linear(prev, 4 * num_classes + self.skip) if box_regression else None
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.zeros_(self.cls_score.bias)
        if self.bbox_pred is not None:
            nn.init.normal_(self.bbox_pred.weight, std=0.001)
            nn.init.zeros_(self.bbox_pred.bias)
        self.has_svm = bool(svm)
        if self.has_svm:  # buffers: saved with the weights, invisible to optimisers and DDP
            self.register_buffer("svm_weight", torch.zeros(num_classes, prev))
            self.register_buffer("svm_bias", torch.zeros(num_classes))
            self.register_buffer("svm_fitted", torch.tensor(False))

    @property
    def feature_dim(self) -> int:
        """``D``, the width of the fc7 features (:meth:`features`) the SVMs read."""
        return self.cls_score.in_features

    def features(self, x: Tensor) -> Tensor:
        """``Tensor[R, D]``: the last hidden layer's output (R-CNN's fc7 features)."""
        return self.fc(x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.fc(x)
        return self.cls_score(h), self._deltas(h)

    def _deltas(self, h: Tensor) -> Tensor | None:
        if self.bbox_pred is None:
            return None
        return self.bbox_pred(h)[:, self.skip:] if self.skip else self.bbox_pred(h)

    def uses_svm(self) -> bool:
        """Whether :meth:`predict` scores with the SVMs (``scorer`` and whether they are fitted)."""
        if self.scorer == "svm" and not self.has_svm:
            raise ValueError("box head: scorer='svm' but this head has no SVMs (build it with svm=True)")
        if self.scorer == "softmax" or not self.has_svm:
            return False
        fitted = bool(self.svm_fitted)
        if self.scorer == "svm" and not fitted:
            raise ValueError("box head: scorer='svm' but the SVMs are not fitted yet "
                             "(detseg svm CHECKPOINT --data DATA, or detseg.models.detection.svm.fit_svms)")
        return fitted

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(scores Tensor[R, C] in (0, 1) per foreground class, deltas Tensor[R, 4C] or None)``.

        Softmax probabilities, or with fitted SVMs the logistic of each SVM's margin: a monotone
        map, so rankings, NMS and AP are the SVMs' own, and scores keep the softmax's range for
        score thresholds.
        """
        h = self.fc(x)
        deltas = self._deltas(h)
        if self.uses_svm():
            margin = h.float() @ self.svm_weight.t() + self.svm_bias
            return margin.sigmoid(), deltas
        return self.cls_score(h).float().softmax(-1)[:, 1:], deltas

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # Checkpoints written before the SVM buffers existed load with unfitted SVMs.
        if self.has_svm and prefix + "svm_fitted" not in state_dict:
            for name in ("svm_weight", "svm_bias", "svm_fitted"):
                state_dict[prefix + name] = getattr(self, name)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
