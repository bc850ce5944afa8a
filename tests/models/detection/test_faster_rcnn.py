"""Faster / Mask / Keypoint R-CNN's own parts on the lecture's small examples: anchors of a tiny
image by hand, the RPN's 0.7 / 0.3 labels, an empty image's zero box losses, mask pasting against a
slow per-pixel reference, and Faster R-CNN overfitting four shapes images to mAP50 = 1.0.
(Exactness against torchvision: test_torchvision_compat.py.)"""

import pytest
import torch
from torchvision.ops import box_iou

from detseg.data import build_dataset
from detseg.evaluation import build_evaluator
from detseg.models.detection.anchors import AnchorGenerator, cell_anchors
from detseg.models.detection.mask_head import paste_masks_in_image
from detseg.models.zoo import build_model
from detseg.structures import empty_target

torch.set_num_threads(1)

# a CPU-sized configuration: 8-wide AlexNet-like body under a 16-channel FPN, small anchors
SMALL = dict(backbone="alexnet_small_fpn", backbone_width=8, fpn_channels=16, representation=32,
             anchor_sizes=(8, 16, 32, 48, 64), rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=50,
             rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=50, box_batch_size_per_image=64)


def test_cell_anchors_by_hand():
    # size 16: ratio h/w = 0.5 -> w = 16 / sqrt(.5) = 22.63, h = 11.31 -> round(+-11.31, +-5.66)
    a = cell_anchors([16], [0.5, 1.0, 2.0])
    assert a.tolist() == [[-11.0, -6.0, 11.0, 6.0], [-8.0, -8.0, 8.0, 8.0], [-6.0, -11.0, 6.0, 11.0]]
    # ratios are the outer loop, sizes the inner one
    b = cell_anchors([4, 8], [1.0, 4.0])
    assert b.tolist() == [[-2, -2, 2, 2], [-4, -4, 4, 4], [-1, -4, 1, 4], [-2, -8, 2, 8]]


def test_grid_anchors_of_a_tiny_image_by_hand():
    # an 8x12 image, one 2x3 feature map -> stride 4 each way; one 4 px square anchor per cell
    gen = AnchorGenerator(((4,),), ((1.0,),))
    (anchors,) = gen((8, 12), [torch.zeros(1, 1, 2, 3)])
    expected = [[x - 2, y - 2, x + 2, y + 2] for y in (0, 4) for x in (0, 4, 8)]  # row-major cells
    assert anchors.tolist() == expected
    assert gen.num_anchors_per_location() == [1]


def _rpn():
    torch.manual_seed(0)
    return build_model("faster_rcnn", ["a"], img_size=64, **SMALL).proposal_generator


def test_rpn_labels_follow_the_07_03_rule():
    rpn = _rpn()
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    anchors = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],   # IoU 1.0 -> object
        [0.0, 0.0, 10.0, 12.0],   # 100/120 = 0.83 -> object
        [0.0, 0.0, 10.0, 20.0],   # 0.5 -> ignored (between 0.3 and 0.7)
        [0.0, 0.0, 10.0, 40.0],   # 0.25 -> background
        [50.0, 50.0, 60.0, 60.0],  # 0 -> background
    ])
    labels, reg = rpn.assign(anchors, [{"boxes": gt}])
    assert labels[0].tolist() == [1.0, 1.0, -1.0, 0.0, 0.0]
    assert reg[0][0].abs().max() == 0  # a perfect anchor needs no correction
    # a box whose best anchor is below 0.7 still gets that anchor (sec. 3.1.2, the second rule)
    far = torch.tensor([[0.0, 0.0, 10.0, 20.0], [30.0, 30.0, 40.0, 40.0]])
    labels, _ = rpn.assign(far, [{"boxes": gt}])
    assert labels[0].tolist() == [1.0, 0.0]
    # no objects: every anchor background
    labels, _ = rpn.assign(anchors, [{"boxes": torch.zeros(0, 4)}])
    assert labels[0].tolist() == [0.0] * 5


@pytest.mark.parametrize("name", ["faster_rcnn", "mask_rcnn", "keypoint_rcnn"])
def test_image_without_objects_trains_with_zero_box_losses(name):
    torch.manual_seed(0)
    extra = {"num_keypoints": 4} if name == "keypoint_rcnn" else {}
    model = build_model(name, ["a", "b"] if name != "keypoint_rcnn" else ["person"], img_size=64,
                        **SMALL, **extra).train()
    target = empty_target(48, 64)
    target["masks"] = torch.zeros(0, 48, 64, dtype=torch.uint8)
    target["keypoints"] = torch.zeros(0, 4, 3)
    out = model([torch.rand(3, 48, 64)], [target])
    assert out.losses["loss_rpn_box"].item() == 0.0 and out.losses["loss_box"].item() == 0.0
    assert all(torch.isfinite(v) for v in out.losses.values()), out.losses
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def _slow_paste(mask: torch.Tensor, box: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Mask R-CNN's paste, pixel by pixel: pad the M x M map by one cell, enlarge the box alike
    ((M + 2) / M), bilinear-resize the map to the enlarged box's whole-pixel extent
    (``int(x2 - x1 + 1)`` wide), write the part inside the image."""
    m = mask.shape[-1]
    padded = torch.nn.functional.pad(mask, (1, 1, 1, 1))
    scale = (m + 2) / m
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) / 2 * scale, (box[3] - box[1]) / 2 * scale
    x1, y1, x2, y2 = (int(v) for v in (cx - hw, cy - hh, cx + hw, cy + hh))
    bw, bh = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    resized = torch.nn.functional.interpolate(padded[None, None], size=(bh, bw), mode="bilinear",
                                              align_corners=False)[0, 0]
    out = torch.zeros(h, w)
    for y in range(max(y1, 0), min(y2 + 1, h)):
        for x in range(max(x1, 0), min(x2 + 1, w)):
            out[y, x] = resized[y - y1, x - x1]
    return out


def test_mask_pasting_matches_a_slow_reference():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(4, 1, 28, 28, generator=g)
    boxes = torch.tensor([[3.2, 5.7, 30.1, 22.9], [0.0, 0.0, 47.0, 39.0],
                          [-6.0, 20.5, 12.0, 45.0], [40.3, 1.0, 60.0, 9.6]])  # one leaves the image
    fast = paste_masks_in_image(masks, boxes, (40, 48))[:, 0]
    for i in range(4):
        assert torch.allclose(fast[i], _slow_paste(masks[i, 0], boxes[i], 40, 48), atol=1e-6), i


def test_faster_rcnn_overfits_four_images():
    ds = build_dataset("shapes:size=64,n=4,max_objects=2", split="train", task="detection")
    ims, tgs = [], []
    for i in range(4):
        im, t = ds[i]
        ims.append(im)
        tgs.append({k: t[k] for k in ("boxes", "labels", "image_id", "orig_size")})
    torch.manual_seed(0)
    model = build_model("faster_rcnn", ds.classes, img_size=64, **SMALL)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    first = None
    for _ in range(120):
        loss = model(ims, tgs).loss
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    model.eval()
    with torch.no_grad():
        preds = model(ims, tgs).predictions
    evaluator = build_evaluator("detection", ds.classes)
    evaluator.update(preds, tgs)
    assert evaluator.compute()["mAP50"] == 1.0
    for p, t in zip(preds, tgs):  # every object's best-scoring detection has its class
        best = box_iou(t["boxes"], p["boxes"]).ge(0.5).float() * p["scores"]
        assert torch.equal(p["labels"][best.argmax(1)], t["labels"])
