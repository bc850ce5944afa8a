"""YOLO v1 (detseg.models.detection.yolo_v1): target encoding into the right cell and predictor,
decoding back to the same box, one object per cell, and the sum-squared loss on empty images."""

import math

import torch

from detseg.models.detection.yolo_v1 import decode_cells, elementwise_iou, encode_targets
from detseg.models.zoo import build_model
from detseg.structures import empty_target


def test_encoding_puts_the_object_in_its_cell_and_best_predictor_and_decodes_back():
    s, b = 3, 2
    gt = torch.tensor([[0.40, 0.10, 0.60, 0.50]])  # centre (0.5, 0.3): column 1, row 0
    pred = torch.zeros(s, s, b, 4)
    pred[0, 1, 0] = torch.tensor([0.0, 0.0, 0.05, 0.05])   # far from the object
    pred[0, 1, 1] = torch.tensor([0.40, 0.10, 0.60, 0.45])  # overlaps it most: responsible
    enc = encode_targets(gt, torch.tensor([3]), pred, num_classes=3)
    assert enc["has_obj"].nonzero().tolist() == [[0, 1]]
    assert enc["resp"].nonzero().tolist() == [[0, 1, 1]]
    assert enc["cls"][0, 1].tolist() == [0.0, 0.0, 1.0] and enc["cls"].sum() == 1
    x, y, sw, sh = enc["box"][0, 1, 1].tolist()
    assert math.isclose(x, 0.5, abs_tol=1e-6) and math.isclose(y, 0.9, abs_tol=1e-6)
    assert math.isclose(sw, math.sqrt(0.2), abs_tol=1e-6) and math.isclose(sh, math.sqrt(0.4), abs_tol=1e-6)
    assert torch.allclose(decode_cells(enc["box"])[0, 1, 1], gt[0], atol=1e-6)
    # The other predictor of that cell wins when it is the better one.
    pred[0, 1, 0] = gt[0]
    assert encode_targets(gt, torch.tensor([3]), pred, 3)["resp"].nonzero().tolist() == [[0, 1, 0]]


def test_a_shared_cell_goes_to_the_largest_object():
    gt = torch.tensor([[0.05, 0.05, 0.25, 0.25], [0.10, 0.10, 0.20, 0.20], [0.6, 0.6, 0.9, 0.9]])
    enc = encode_targets(gt, torch.tensor([1, 2, 3]), torch.zeros(2, 2, 2, 4), num_classes=3)
    assert enc["has_obj"].sum() == 2
    assert torch.equal(enc["gt"][0, 0], gt[0]) and enc["cls"][0, 0].argmax() == 0
    assert torch.equal(enc["gt"][1, 1], gt[2])


def test_decode_cells_and_elementwise_iou():
    xywh = torch.tensor([0.5, 0.5, 0.5, 0.5]).expand(2, 2, 1, 4)  # centred, w = h = 0.25
    boxes = decode_cells(xywh)
    assert torch.allclose(boxes[1, 0, 0], torch.tensor([0.125, 0.625, 0.375, 0.875]))
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    assert math.isclose(float(elementwise_iou(a, torch.tensor([1.0, 0.0, 3.0, 2.0]))), 1 / 3, rel_tol=1e-6)


def test_empty_image_gives_zero_box_loss_and_finite_gradients():
    torch.manual_seed(0)
    model = build_model("yolo_v1", ["a", "b"], img_size=64, backbone="simple").train()
    out = model([torch.rand(3, 48, 64)], [empty_target(48, 64)])
    assert set(out.losses) == {"loss_box", "loss_conf", "loss_cls"}
    assert out.losses["loss_box"].item() == 0.0 and out.losses["loss_cls"].item() == 0.0
    assert torch.isfinite(out.loss) and out.losses["loss_conf"] > 0  # no-object confidences
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_output_tensor_is_s_by_s_by_5b_plus_c():
    model = build_model("yolo_v1", ["a", "b", "c"], img_size=64, backbone="simple", grid=5, num_boxes=3)
    out = model.head(model.backbone(torch.zeros(1, 3, 64, 64))["c5"])
    assert out.shape == (1, 5, 5, 5 * 3 + 3)
