"""Property-based tests (hypothesis) of detseg's box operations against torchvision.ops.

Box clipping (``finalize_boxes``, the VOC reader's ``box_from_raw``, the transforms' ``sanitize``),
conversions (``cls_loc``'s box formats, ``masks_to_boxes``, the R-CNN ``BoxCoder`` round trip) and
IoU (the evaluators' numpy ``box_iou``, YOLO's ``wh_iou``): each agrees with torchvision where
torchvision has the same operation, and keeps the invariants (inside the image, IoU symmetric in
[0, 1], 1 on the diagonal) on random boxes, degenerate and huge ones included.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import ops

from detseg.data.transforms import sanitize
from detseg.data.voc import box_from_raw
from detseg.evaluation.common import box_iou
from detseg.models.detection.box_coder import BoxCoder
from detseg.models.detection.proposals import finalize_boxes
from detseg.models.detection.yolo import wh_iou
from detseg.models.localization.cls_loc import from_xyxy, to_xyxy
from detseg.structures import masks_to_boxes

SETTINGS = settings(max_examples=80, deadline=None)
coord = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@st.composite
def boxes(draw, n_max: int = 12, valid: bool = True, lim: float = 1e4):
    """``float32 [N, 4]`` xyxy; ``valid``: x2 >= x1 and y2 >= y1 (possibly zero area)."""
    n = draw(st.integers(0, n_max))
    rows = []
    for _ in range(n):
        x0, y0 = draw(st.floats(-lim, lim, width=32)), draw(st.floats(-lim, lim, width=32))
        if valid:
            x1, y1 = x0 + draw(st.floats(0, lim, width=32)), y0 + draw(st.floats(0, lim, width=32))
        else:
            x1, y1 = draw(st.floats(-lim, lim, width=32)), draw(st.floats(-lim, lim, width=32))
        rows.append([x0, y0, x1, y1])
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


sizes = st.tuples(st.integers(1, 2000), st.integers(1, 2000))


@SETTINGS
@given(boxes(valid=False), sizes, st.floats(0.0, 8.0))
def test_finalize_boxes_clips_like_torchvision_and_stays_inside(b, hw, min_size):
    h, w = hw
    out = finalize_boxes(b, h, w, min_size=min_size)
    assert out.dtype == torch.float32 and out.shape[1:] == (4,)
    assert (out[:, 0::2] >= 0).all() and (out[:, 0::2] <= w).all()
    assert (out[:, 1::2] >= 0).all() and (out[:, 1::2] <= h).all()
    assert ((out[:, 2] - out[:, 0]) >= min_size).all() and ((out[:, 3] - out[:, 1]) >= min_size).all()
    # the kept boxes are torchvision's clip, minus its small boxes, minus duplicates, order kept
    clipped = ops.clip_boxes_to_image(b, (h, w))
    clipped = clipped[((clipped[:, 2] - clipped[:, 0]) >= min_size) & ((clipped[:, 3] - clipped[:, 1]) >= min_size)]
    unique = [r for i, r in enumerate(clipped.tolist()) if r not in clipped.tolist()[:i]]
    assert out.tolist() == unique


@SETTINGS
@given(boxes(valid=False, lim=3000), sizes)
def test_sanitize_keeps_boxes_inside_and_drops_their_instances_together(b, hw):
    h, w = hw
    n = len(b)
    t = sanitize({"boxes": b, "labels": torch.arange(n), "keypoints": torch.zeros(n, 2, 3)}, h, w)
    out = t["boxes"]
    assert (out[:, 0::2] >= 0).all() and (out[:, 0::2] <= w).all()
    assert (out[:, 1::2] >= 0).all() and (out[:, 1::2] <= h).all()
    assert ((out[:, 2] - out[:, 0]) >= 1).all() and ((out[:, 3] - out[:, 1]) >= 1).all()
    assert len(t["labels"]) == len(out) == len(t["keypoints"])
    assert torch.equal(out, ops.clip_boxes_to_image(b, (h, w))[t["labels"]])  # survivors, in order


@SETTINGS
@given(st.tuples(coord, coord, coord, coord), sizes)
def test_voc_boxes_become_zero_based_and_clipped(raw, hw):
    h, w = hw
    box, outside = box_from_raw(raw, h, w)
    assert 0 <= box[0] <= w and 0 <= box[2] <= w and 0 <= box[1] <= h and 0 <= box[3] <= h
    xmin, ymin, xmax, ymax = raw
    expected = ops.clip_boxes_to_image(torch.tensor([[xmin - 1, ymin - 1, xmax, ymax]], dtype=torch.float64),
                                       (h, w))[0].tolist()
    assert np.allclose(box, expected)
    assert outside == (xmin < 0 or ymin < 0 or xmax > w or ymax > h)


@SETTINGS
@given(boxes(lim=1e3), st.sampled_from(["cxcywh", "xyxy"]))
def test_cls_loc_formats_match_box_convert_and_round_trip(b, fmt):
    conv = from_xyxy(b, fmt)
    expected = b if fmt == "xyxy" else ops.box_convert(b, "xyxy", fmt)
    assert torch.allclose(conv, expected)
    assert torch.allclose(to_xyxy(conv, fmt), b, atol=1e-3 * (1 + float(b.abs().amax()) if len(b) else 1.0))


@SETTINGS
@given(st.integers(1, 24), st.integers(1, 24), st.integers(0, 4), st.integers(0, 2**31 - 1))
def test_masks_to_boxes_is_torchvision_plus_one(h, w, n, seed):
    g = torch.Generator().manual_seed(seed)
    masks = (torch.rand(n, h, w, generator=g) > torch.rand(n, 1, 1, generator=g)).to(torch.uint8)
    out = masks_to_boxes(masks)
    assert out.shape == (n, 4)
    for m, box in zip(masks, out):
        if m.any():  # torchvision's x2/y2 are inclusive; detseg's exclusive
            assert torch.equal(box, ops.masks_to_boxes(m[None].bool())[0] + torch.tensor([0, 0, 1, 1]))
        else:
            assert (box == 0).all()


@SETTINGS
@given(boxes(lim=1e3), boxes(lim=1e3))
def test_box_iou_matches_torchvision_and_is_a_similarity(a, b):
    iou = box_iou(a.double().numpy(), b.double().numpy())
    assert iou.shape == (len(a), len(b))
    assert np.isfinite(iou).all() and (iou >= 0).all() and (iou <= 1 + 1e-9).all()
    assert np.allclose(iou, box_iou(b.double().numpy(), a.double().numpy()).T)
    tv = ops.box_iou(a.double(), b.double()).numpy()
    defined = np.isfinite(tv)  # torchvision gives NaN where both boxes are empty; detseg 0
    assert np.allclose(iou[defined], tv[defined], atol=1e-9)
    area = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])).double().numpy()
    diag = np.diag(box_iou(a.double().numpy(), a.double().numpy()))
    assert np.allclose(diag[area > 0], 1.0)


@SETTINGS
@given(st.lists(st.tuples(st.floats(0.5, 500), st.floats(0.5, 500)), min_size=1, max_size=8),
       st.lists(st.tuples(st.floats(0.5, 500), st.floats(0.5, 500)), min_size=1, max_size=8))
def test_wh_iou_is_iou_of_corner_aligned_boxes(wh1, wh2):
    a, b = torch.tensor(wh1, dtype=torch.float64), torch.tensor(wh2, dtype=torch.float64)
    corner = lambda wh: torch.cat([torch.zeros_like(wh), wh], 1)  # noqa: E731
    assert torch.allclose(wh_iou(a, b), ops.box_iou(corner(a), corner(b)))


@SETTINGS
@given(boxes(lim=500), st.integers(0, 2**31 - 1),
       st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]))
def test_box_coder_round_trip(targets, seed, weights):
    n = len(targets)
    g = torch.Generator().manual_seed(seed)
    targets = targets.double() + torch.tensor([0, 0, 1, 1], dtype=torch.float64)  # positive sizes
    # references around the targets (within the decode clamp: at most 62x larger or smaller)
    scale = torch.exp(torch.empty(n, 2, dtype=torch.float64).uniform_(-2, 2, generator=g))
    centre = (targets[:, :2] + targets[:, 2:]) / 2 + torch.empty(n, 2, dtype=torch.float64).normal_(generator=g)
    size = (targets[:, 2:] - targets[:, :2]) * scale
    refs = torch.cat([centre - size / 2, centre + size / 2], 1)
    coder = BoxCoder(weights)
    deltas = coder.encode(targets, refs)
    assert torch.isfinite(deltas).all()
    assert torch.allclose(coder.decode(deltas, refs), targets, rtol=1e-6, atol=1e-6)
