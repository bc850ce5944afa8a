"""The box head of R-CNN / Fast R-CNN: RoI features -> class scores and class-specific box deltas.

Girshick, "Fast R-CNN", ICCV 2015 (https://arxiv.org/abs/1504.08083), sec. 2 and fig. 1: the pooled
RoI feature goes through fully connected layers (VGG16's fc6, fc7), then two sibling layers: a
softmax over ``C + 1`` classes (index 0 = background) and ``4`` box deltas per foreground class.
Initialisation as in the paper (sec. 2.3): the classifier from N(0, 0.01^2), the regressor from
N(0, 0.001^2), biases 0 -- so the first boxes are the proposals themselves.

Deltas are ``Tensor[R, 4 * C]`` for the ``C`` foreground classes (Detectron2's layout; torchvision
also spends 4 outputs on the background): label ``k`` (1-based) owns columns ``4(k-1) .. 4k-1``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class BoxHead(nn.Module):
    """``Tensor[R, C_in, h, w]`` (or ``[R, D]``) -> ``(logits Tensor[R, C+1], deltas Tensor[R, 4C])``.

    Args:
        in_features: ``C_in * h * w`` of the RoI features.
        num_classes: foreground classes ``C``.
        hidden: widths of the fully connected layers (fc6, fc7); ``()`` = linear on the features.
        dropout: dropout after each hidden layer (0.5 in AlexNet / VGG).
        box_regression: False drops the regressor (sliding-window detection classifies crops only);
            ``deltas`` is then ``None``.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (256, 256),
                 dropout: float = 0.0, box_regression: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = int(in_features)
        for width in hidden:
            layers += [nn.Linear(prev, int(width)), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            prev = int(width)
        self.fc = nn.Sequential(*layers)
        self.cls_score = nn.Linear(prev, num_classes + 1)
        self.bbox_pred = nn.Linear(prev, 4 * num_classes) if box_regression else None
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.zeros_(self.cls_score.bias)
        if self.bbox_pred is not None:
            nn.init.normal_(self.bbox_pred.weight, std=0.001)
            nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.fc(x)
        return self.cls_score(h), (self.bbox_pred(h) if self.bbox_pred is not None else None)
