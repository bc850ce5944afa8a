"""Load torchvision's Faster / Mask / Keypoint R-CNN weights into the detseg models.

A ``state_dict`` of torchvision's ``fasterrcnn_resnet50_fpn``, ``maskrcnn_resnet50_fpn`` or
``keypointrcnn_resnet50_fpn`` loads into :func:`~detseg.models.detection.faster_rcnn.build_faster_rcnn`
/ ``build_mask_rcnn`` / ``build_keypoint_rcnn`` (``backbone="resnet50_fpn"``, the same class count)
and gives torchvision's outputs. The complete name mapping (torchvision -> detseg)::

    backbone.body.<name>                        -> backbone.body.<name>        (ResNet, same names)
    backbone.fpn.<name>                         -> backbone.fpn.<name>         (torchvision's FPN)
    rpn.head.conv.0.0.{weight,bias}             -> proposal_generator.head.conv.*
      (older checkpoints: rpn.head.conv.*)
    rpn.head.{cls_logits,bbox_pred}.*           -> proposal_generator.head.{cls_logits,bbox_pred}.*
    roi_heads.box_head.fc6.*                    -> box_head.fc.1.*
    roi_heads.box_head.fc7.*                    -> box_head.fc.3.*
    roi_heads.box_predictor.cls_score.*         -> box_head.cls_score.*
    roi_heads.box_predictor.bbox_pred.*         -> box_head.bbox_pred.*  (background rows kept, unread)
    roi_heads.mask_head.<i>.0.*                 -> instance_heads.mask.convs.<2i>.*
      (older checkpoints: roi_heads.mask_head.mask_fcn<i+1>.*)
    roi_heads.mask_predictor.conv5_mask.*       -> instance_heads.mask.deconv.*
    roi_heads.mask_predictor.mask_fcn_logits.*  -> instance_heads.mask.logits.*  channels 1: (below)
    roi_heads.keypoint_head.<j>.*               -> instance_heads.keypoint.convs.<j>.*
    roi_heads.keypoint_predictor.kps_score_lowres.* -> instance_heads.keypoint.deconv.*

What is dropped, and why nothing of it is ever used by torchvision: the background's mask map (``mask_fcn_logits``
channel 0; only the predicted / ground-truth class's map is read); ``num_batches_tracked`` of a
batch-norm backbone when the detseg model uses ``FrozenBatchNorm2d`` (a counter, not a weight).
Everything else must map: :func:`load_torchvision_state_dict` raises on any torchvision tensor it
cannot place and on any detseg tensor left unloaded, so nothing stays silently random.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

Rule = tuple[re.Pattern, str, Callable[[Tensor], Tensor] | None]


def _drop_rows(n: int) -> Callable[[Tensor], Tensor]:
    return lambda t: t[n:]


def _mask_fcn(m: re.Match) -> str:
    return f"instance_heads.mask.convs.{2 * (int(m.group(1)) - 1)}.{m.group(2)}"


def _mask_block(m: re.Match) -> str:
    return f"instance_heads.mask.convs.{2 * int(m.group(1))}.{m.group(2)}"


RULES: list[tuple[str, Any, Callable[[Tensor], Tensor] | None]] = [
    (r"backbone\.body\.(.+)", r"backbone.body.\1", None),
    (r"backbone\.fpn\.(.+)", r"backbone.fpn.\1", None),
    (r"rpn\.head\.conv\.0\.0\.(weight|bias)", r"proposal_generator.head.conv.\1", None),
    (r"rpn\.head\.conv\.(weight|bias)", r"proposal_generator.head.conv.\1", None),
    (r"rpn\.head\.(cls_logits|bbox_pred)\.(weight|bias)", r"proposal_generator.head.\1.\2", None),
    (r"roi_heads\.box_head\.fc6\.(weight|bias)", r"box_head.fc.1.\1", None),
    (r"roi_heads\.box_head\.fc7\.(weight|bias)", r"box_head.fc.3.\1", None),
    (r"roi_heads\.box_predictor\.cls_score\.(weight|bias)", r"box_head.cls_score.\1", None),
    (r"roi_heads\.box_predictor\.bbox_pred\.(weight|bias)", r"box_head.bbox_pred.\1", None),
    (r"roi_heads\.mask_head\.(\d+)\.0\.(weight|bias)", _mask_block, None),
    (r"roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)", _mask_fcn, None),
    (r"roi_heads\.mask_predictor\.conv5_mask\.(weight|bias)", r"instance_heads.mask.deconv.\1", None),
    (r"roi_heads\.mask_predictor\.mask_fcn_logits\.(weight|bias)", r"instance_heads.mask.logits.\1",
     _drop_rows(1)),
    (r"roi_heads\.keypoint_head\.(\d+)\.(weight|bias)", r"instance_heads.keypoint.convs.\1.\2", None),
    (r"roi_heads\.keypoint_predictor\.kps_score_lowres\.(weight|bias)",
     r"instance_heads.keypoint.deconv.\1", None),
]
_COMPILED = [(re.compile(p + r"\Z"), r, f) for p, r, f in RULES]

ENUMS = {"faster_rcnn": "FasterRCNN_ResNet50_FPN_Weights",
         "mask_rcnn": "MaskRCNN_ResNet50_FPN_Weights",
         "keypoint_rcnn": "KeypointRCNN_ResNet50_FPN_Weights"}


def is_torchvision_state_dict(state: dict[str, Tensor]) -> bool:
    """Whether ``state`` looks like a torchvision R-CNN (``rpn.`` / ``roi_heads.`` keys)."""
    return any(k.startswith(("rpn.", "roi_heads.")) for k in state)


def convert_state_dict(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """torchvision names -> detseg names (module docstring): ``(converted, unmapped keys)``.

    ``num_batches_tracked`` keys are mapped like the rest; :func:`load_torchvision_state_dict`
    drops them when the detseg model has no such buffer (frozen batch norm)."""
    out, unmapped = {}, []
    for key, value in state.items():
        for pattern, repl, fn in _COMPILED:
            m = pattern.match(key)
            if m:
                name = repl(m) if callable(repl) else m.expand(repl)
                out[name] = fn(value) if fn is not None else value
                break
        else:
            unmapped.append(key)
    return out, unmapped


def load_torchvision_state_dict(model: nn.Module, state: dict[str, Tensor],
                                strict: bool = True) -> dict[str, Any]:
    """Load a torchvision Faster/Mask/Keypoint R-CNN ``state_dict`` into a detseg model.

    Returns ``{"loaded": n, "unmapped": [...], "missing": [...], "mismatched": [...],
    "dropped": [...]}`` (torchvision keys with no detseg place; detseg tensors not loaded; shape
    conflicts; ``num_batches_tracked`` counters the detseg model has no buffer for).

    Raises:
        ValueError: with ``strict``, when anything is unmapped, missing or of another shape --
            e.g. a model built for another class count (torchvision's COCO models have 91 classes
            with the background: build detseg with the 90 category names).
    """
    converted, unmapped = convert_state_dict(state)
    own = model.state_dict()
    dropped = [k for k in converted if k not in own and k.endswith("num_batches_tracked")]
    unmapped += [k for k in converted if k not in own and k not in dropped]
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in converted.items() if k in own and v.shape != own[k].shape]
    ok = {k: v for k, v in converted.items() if k in own and v.shape == own[k].shape}
    missing = [k for k in own if k not in ok]
    report = {"loaded": len(ok), "unmapped": unmapped, "missing": missing,
              "mismatched": mismatched, "dropped": dropped}
    if strict and (unmapped or missing or mismatched):
        raise ValueError("torchvision weights: "
                         + "; ".join(f"{len(v)} {k} (first: {v[:3]})"
                                     for k, v in report.items() if k != "loaded" and k != "dropped" and v))
    with torch.no_grad():
        for k, v in ok.items():
            own[k].copy_(v)
    return report


def load_weights(model: nn.Module, weights: str | Path, kind: str) -> dict[str, Any]:
    """The builders' ``weights`` option: ``"torchvision:DEFAULT"`` (or another member of the
    model's torchvision weight enum; downloads), a torchvision state dict file, or a detseg
    checkpoint / state dict of the same model."""
    weights = str(weights)
    if weights.startswith("torchvision:"):
        from torchvision.models import get_weight

        member = weights.split(":", 1)[1] or "DEFAULT"
        state = get_weight(f"{ENUMS[kind]}.{member}").get_state_dict(progress=True, check_hash=True)
        return load_torchvision_state_dict(model, state)
    from detseg.models.backbones import read_state_dict

    state = read_state_dict(weights)
    if is_torchvision_state_dict(state):
        return load_torchvision_state_dict(model, state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: weights: neither a torchvision {kind} state dict nor this "
                         f"model's ({len(missing)} missing, first {missing[:3]}; {len(unexpected)} "
                         f"unexpected, first {unexpected[:3]})")
    return {"loaded": len(state)}
