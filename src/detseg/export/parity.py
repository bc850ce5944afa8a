"""Measuring that an exported file computes what the PyTorch model computes.

Two levels, both on the same images:

- :func:`core_diff`: the raw outputs of the network core (logits, boxes, heatmaps, region scores
  and deltas) from PyTorch and from onnxruntime, fed the *same* prepared inputs: the max absolute
  difference per output (the issue's "<= 1e-4 on dense outputs");
- :func:`prediction_diff`: the final predictions of ``model(images)`` and
  ``onnx_model(images)``: semantic logits at the original size and the label-map disagreement,
  cls+loc class/box, pose joints, and for detectors :func:`match_detections` (same label, score
  within ``score_tol``, every box coordinate within ``box_tol`` pixels, one to one), with the
  matched detections' pasted masks (probabilities, if kept, and binary pixels) and keypoints.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


@torch.no_grad()
def core_diff(model, onnx_model, images: list[Tensor]) -> dict[str, float]:
    """``{output name: max |torch - onnxruntime|}`` over every call of the file for ``images``
    (one call: the whole list for a dynamic file, else the first image; a file of several stages
    is called once per stage), PyTorch's core fed the very inputs onnxruntime was fed."""
    from detseg.export.adapters import adapter_for

    model.eval()
    ims = images if onnx_model.dynamic else images[:1]
    calls: list[tuple[dict[str, Tensor], dict[str, Tensor]]] = []

    def recorded(inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        out = onnx_model.run_core(inputs)
        calls.append((inputs, out))
        return out

    onnx_model.adapter.run(recorded, ims, onnx_model.fixed_hw)
    adapter = adapter_for(model)
    reference = adapter.torch_runner(adapter.core().eval())
    out: dict[str, float] = {}
    for inputs, got in calls:
        ref = reference(inputs)
        for name, g in got.items():
            r = ref[name]
            if tuple(g.shape) != tuple(r.shape):
                raise AssertionError(f"onnx output {name!r}: shape {tuple(g.shape)} vs PyTorch's "
                                     f"{tuple(r.shape)}")
            d = float((r.float() - g.float()).abs().max()) if r.numel() else 0.0
            out[name] = max(out.get(name, 0.0), d)
    return out


def match_pairs(a: dict[str, Tensor], b: dict[str, Tensor], box_tol: float = 1e-3,
                score_tol: float = 1e-4) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching of two detection sets (``boxes``, ``labels``, ``scores``):
    ``(index in a, index in b, max box difference)`` per pair; a pair has the same label, scores
    within ``score_tol`` and boxes within ``box_tol`` px."""
    used = torch.zeros(len(b["boxes"]), dtype=torch.bool)
    pairs = []
    for i, (box, label, score) in enumerate(zip(a["boxes"], a["labels"], a["scores"])):
        diff = (b["boxes"] - box).abs().amax(-1) if len(b["boxes"]) else torch.zeros(0)
        ok = (~used & (b["labels"] == label) & ((b["scores"] - score).abs() <= score_tol)
              & (diff <= box_tol))
        if ok.any():
            j = int(torch.nonzero(ok)[torch.argmin(diff[ok])])
            used[j] = True
            pairs.append((i, j, float(diff[j])))
    return pairs


def match_detections(a: dict[str, Tensor], b: dict[str, Tensor], box_tol: float = 1e-3,
                     score_tol: float = 1e-4) -> tuple[int, int, float]:
    """:func:`match_pairs` counted: ``(matched, unmatched in a or b, max box difference over the
    matches)``."""
    pairs = match_pairs(a, b, box_tol, score_tol)
    matched = len(pairs)
    return matched, len(a["boxes"]) + len(b["boxes"]) - 2 * matched, max((w for *_, w in pairs),
                                                                          default=0.0)


@torch.no_grad()
def prediction_diff(model, onnx_model, images: list[Tensor]) -> dict[str, Any]:
    """Differences of the final predictions on ``images`` (module docstring)."""
    model.eval()
    semantic = model.task == "semantic"
    kw = {"with_logits": True} if semantic else {}
    ref = model(images, **kw).predictions
    got = onnx_model(images, **kw).predictions
    out: dict[str, Any] = {"images": len(images)}
    if semantic:
        out["logits"] = max(float((r["sem_seg_logits"] - g["sem_seg_logits"]).abs().max())
                            for r, g in zip(ref, got))
        pixels = sum(r["sem_seg"].numel() for r in ref)
        out["label_disagreement"] = sum(int((r["sem_seg"] != g["sem_seg"]).sum())
                                        for r, g in zip(ref, got)) / pixels
        return out
    if model.task == "pose":
        out["keypoints_px"] = max(float((r["keypoints"] - g["keypoints"]).abs().max())
                                  for r, g in zip(ref, got))
        return out
    if model.task == "cls_loc":
        out["class_mismatch"] = sum(int(r["class"] != g["class"]) for r, g in zip(ref, got))
        out["box_px"] = max(float((r["box"] - g["box"]).abs().max()) for r, g in zip(ref, got))
        out["scores"] = max(float((r["scores"] - g["scores"]).abs().max()) for r, g in zip(ref, got))
        return out
    pairs = [match_pairs(r, g) for r, g in zip(ref, got)]
    out["detections"] = sum(len(r["boxes"]) for r in ref)
    out["matched"] = sum(len(p) for p in pairs)
    out["unmatched"] = sum(len(r["boxes"]) + len(g["boxes"]) for r, g in zip(ref, got)) - 2 * out["matched"]
    out["box_px"] = max((w for p in pairs for *_, w in p), default=0.0)
    # Instance masks and keypoints of the matched detections.
    for key, name in (("mask_probs", "mask_probs"), ("keypoints", "keypoints_px"),
                      ("keypoints_scores", "keypoints_scores")):
        if all(key in r for r in ref):
            out[name] = max((float((r[key][i].float() - g[key][j].float()).abs().max())
                             for r, g, p in zip(ref, got, pairs) for i, j, _ in p), default=0.0)
    if all("masks" in r for r in ref):
        out["mask_pixels_differing"] = sum(int((r["masks"][i] != g["masks"][j]).sum())
                                           for r, g, p in zip(ref, got, pairs) for i, j, _ in p)
    return out
