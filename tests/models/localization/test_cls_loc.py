"""Classification + localization: protocol, predictions in original pixels, the multi-task loss
(CE + lambda * L2 | L1 | smooth L1 | GIoU), box parameterisations (cxcywh, xyxy), class-agnostic
vs per-class boxes, target selection, rebuilding, and tiny overfits."""

import itertools
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert

from detseg.data import build_dataset
from detseg.models.localization.cls_loc import (BOX_FORMATS, REGRESSION_LOSSES, SMOOTH_L1_BETA, build_cls_loc,
                                   decode_boxes, regression_loss)
from detseg.models.transform import preprocess
from detseg.models.zoo import build_model

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture
def tiny(tiny_model):
    """``tiny(**kw)``: a small cls_loc model, the same weights on every call."""
    return partial(tiny_model, "cls_loc", CLASSES, hidden=32)


@pytest.fixture
def batch(images):
    tgs = [{"boxes": torch.tensor([[10.0, 20.0, 50.0, 90.0]]), "labels": torch.tensor([2])},
           {"boxes": torch.tensor([[0.0, 0.0, 32.0, 16.0]]), "labels": torch.tensor([3])}]
    return images, tgs


def raw_outputs(m, ims):
    """The head's ``(logits Tensor[B, C], boxes Tensor[B, K, 4])`` for ``ims``."""
    b = preprocess(ims, m.img_size, keep_aspect=False, stride=32)
    return m.head(m.backbone(b.tensor)[m.feature])


def normalised_goal(tgs, sizes=((100, 80), (64, 64))):
    """The ``batch`` fixture's target boxes, normalised xyxy ``Tensor[2, 4]``."""
    return torch.cat([t["boxes"] / torch.tensor([w, h, w, h]) for t, (h, w) in zip(tgs, sizes)])


def test_modes_and_prediction_format(tiny, batch):
    m = tiny().train()
    ims, tgs = batch
    out = m(ims, tgs)
    assert set(out.losses) == {"loss_cls", "loss_box"} and out.predictions is None
    assert len(m(ims, tgs, with_predictions=True).predictions) == 2
    m.eval()
    out = m(ims)
    assert out.losses == {}
    for im, p in zip(ims, out.predictions):
        h, w = im.shape[1:]
        assert p["class"].dtype == torch.int64 and p["class"].ndim == 0 and 1 <= p["class"] <= 3
        assert p["box"].shape == (4,) and p["boxes"].shape == (1, 4)
        assert p["scores"].shape == (1,) and p["labels"].tolist() == [int(p["class"])]
        x1, y1, x2, y2 = p["box"].tolist()
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
    assert set(m(ims, tgs).losses) == {"loss_cls", "loss_box"}


def test_boxes_map_back_to_original_pixels_per_axis(tiny, batch):
    m = tiny().eval()
    ims, _ = batch
    _, boxes = raw_outputs(m, ims)
    assert boxes.shape == (2, 1, 4)
    p = m(ims).predictions[0]
    norm = box_convert(boxes[0], "cxcywh", "xyxy").clamp(0, 1)[0]
    torch.testing.assert_close(p["box"], norm * torch.tensor([80.0, 100.0, 80.0, 100.0]))


@pytest.mark.parametrize("kind", ["smooth_l1", "l1", "l2"])
def test_loss_is_ce_plus_lambda_regression(kind, tiny, batch):
    ims, tgs = batch
    m = tiny(loss=kind, lam=1.0).eval()
    logits, boxes = raw_outputs(m, ims)
    boxes = boxes[:, 0]
    goal = box_convert(normalised_goal(tgs), "xyxy", "cxcywh")
    ref = {"l2": lambda d: d**2, "l1": lambda d: d.abs(),
           "smooth_l1": lambda d: torch.where(d.abs() < SMOOTH_L1_BETA, 0.5 * d**2 / SMOOTH_L1_BETA,
                                              d.abs() - 0.5 * SMOOTH_L1_BETA)}[kind]
    losses = m(ims, tgs).losses
    torch.testing.assert_close(losses["loss_box"], ref(boxes - goal).sum(1).mean())
    torch.testing.assert_close(losses["loss_cls"], F.cross_entropy(logits, torch.tensor([1, 2])))
    m.lam = 2.5
    torch.testing.assert_close(m(ims, tgs).losses["loss_box"], 2.5 * losses["loss_box"])
    assert m(ims, tgs).losses["loss_cls"] == losses["loss_cls"]


def test_regression_loss_names():
    p, t = torch.rand(3, 4), torch.rand(3, 4)
    torch.testing.assert_close(regression_loss(p, t, "l2"), F.mse_loss(p, t) * 4)
    with pytest.raises(ValueError, match="smooth_l1"):
        regression_loss(p, t, "huber")
    with pytest.raises(ValueError, match="loss must be one of"):
        build_cls_loc(CLASSES, loss="l3")


def test_largest_box_is_the_target_and_empty_targets_add_nothing(tiny, batch):
    m = tiny().eval()
    ims, tgs = batch
    several = dict(tgs[0])
    several["boxes"] = torch.tensor([[0.0, 0.0, 5.0, 5.0], *tgs[0]["boxes"]])
    several["labels"] = torch.tensor([1, 2])
    ref = m(ims[:1], tgs[:1]).losses
    got = m(ims[:1], [several]).losses
    for k in ref:
        torch.testing.assert_close(got[k], ref[k])
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    got = m(ims, [tgs[0], empty]).losses
    for k in ref:
        torch.testing.assert_close(got[k], ref[k])
    with pytest.raises(ValueError, match="no target in this batch has a box"):
        m(ims, [empty, empty])


def test_bad_targets_are_named(tiny, batch):
    m = tiny().eval()
    ims, tgs = batch
    with pytest.raises(ValueError, match=r"targets\[1\]\['labels'\]: 0 is outside 1..3"):
        m(ims, [tgs[0], {"boxes": tgs[1]["boxes"], "labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match=r"targets\[0\]: no 'boxes'"):
        m(ims, [{"labels": torch.tensor([1])}, tgs[1]])


def test_gradients_reach_the_first_layer(tiny, batch):
    m = tiny().train()
    ims, tgs = batch
    m(ims, tgs).loss.backward()
    assert m.backbone.stages["c1"][0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.parameters())  # DDP needs every parameter used


def test_rebuild_from_builder_args_gives_identical_outputs(tiny, batch):
    m = tiny(loss="l1", lam=0.5).eval()
    copy = build_model(m.builder_name, **m.builder_args).eval()
    copy.load_state_dict(m.state_dict())
    ims, tgs = batch
    a, b = m(ims, tgs), copy(ims, tgs)
    assert copy.loss_kind == "l1" and copy.lam == 0.5
    for p, q in zip(a.predictions, b.predictions):
        assert torch.equal(p["box"], q["box"]) and torch.equal(p["scores"], q["scores"])
    assert torch.equal(a.loss, b.loss)


def test_default_build_runs():
    m = build_cls_loc(CLASSES, img_size=64).eval()
    assert m.task == "cls_loc"
    assert m([torch.rand(3, 30, 50)]).predictions[0]["box"].shape == (4,)


def test_overfits_one_tiny_batch(train_steps):
    torch.manual_seed(0)
    m = build_cls_loc(CLASSES, img_size=32, backbone="simple", hidden=32).train()
    ims, tgs = [], []
    for i in range(6):
        im = torch.rand(3, 32, 32) * 0.2
        x, y = 2 + 3 * i, 4 + 2 * i
        im[:, y:y + 10, x:x + 12] += 0.7
        ims.append(im)
        tgs.append({"boxes": torch.tensor([[x, y, x + 12, y + 10]], dtype=torch.float32),
                    "labels": torch.tensor([1 + i % 3])})
    first, last = train_steps(m, ims, tgs, lr=3e-3, steps=40)
    assert last < 0.5 * first


COMBOS = list(itertools.product(REGRESSION_LOSSES, BOX_FORMATS, [True, False]))


@pytest.mark.parametrize("box_format", BOX_FORMATS)
def test_coordinate_losses_by_hand(box_format):
    # Differences (0, 0.05, 0.2, -0.3), whatever the 4 numbers mean: smooth L1 (beta 0.1) is
    # quadratic for 0.05 (0.5 * 0.05^2 / 0.1) and linear beyond (|d| - 0.05).
    t = torch.tensor([[0.3, 0.3, 0.4, 0.5]])
    p = t + torch.tensor([[0.0, 0.05, 0.2, -0.3]])
    expect = {"l1": 0.55, "l2": 0.0025 + 0.04 + 0.09, "smooth_l1": 0.0125 + 0.15 + 0.25}
    for kind, value in expect.items():
        got = regression_loss(p.repeat(3, 1), t.repeat(3, 1), kind, box_format)
        torch.testing.assert_close(got, torch.tensor(value))


@pytest.mark.parametrize("box_format", BOX_FORMATS)
def test_giou_loss_by_hand_in_both_formats(box_format):
    xyxy = torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.0, 0.0, 0.4, 0.2], [0.0, 0.0, 0.4, 0.2]])
    other = torch.tensor([[0.4, 0.4, 0.6, 0.6], [0.2, 0.0, 0.6, 0.2], [0.0, 0.0, 0.4, 0.2]])
    enc = (lambda b: b) if box_format == "xyxy" else (lambda b: box_convert(b, "xyxy", "cxcywh"))
    each = [regression_loss(enc(a[None]), enc(b[None]), "giou", box_format).item()
            for a, b in zip(xyxy, other)]
    # Disjoint: IoU 0, hull 0.36, union 0.08 -> 1 - (0 - 0.28 / 0.36) = 1.78 > 1.
    # Half overlap: IoU 0.04 / 0.12 = 1/3, hull = union -> 1 - 1/3. Identical: 0.
    assert each == pytest.approx([1 + 0.28 / 0.36, 2 / 3, 0.0], abs=1e-5)  # eps 1e-7
    assert each[0] > 1
    mean = regression_loss(enc(xyxy), enc(other), "giou", box_format)
    assert mean.item() == pytest.approx(sum(each) / 3, abs=1e-5)


def test_xyxy_head_always_gives_valid_boxes(tiny, batch):
    raw = torch.randn(1000, 4) * 20
    b = decode_boxes(raw, "xyxy")
    assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
    assert (b >= 0).all() and (b <= 1).all()
    m = tiny(box_format="xyxy", class_agnostic=False).eval()
    with torch.no_grad():
        m.head.box.weight.mul_(50)  # saturate the sigmoids
    _, boxes = raw_outputs(m, batch[0])
    assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()
    for im, p in zip(batch[0], m(batch[0]).predictions):
        x1, y1, x2, y2 = p["box"].tolist()
        assert 0 <= x1 <= x2 <= im.shape[2] and 0 <= y1 <= y2 <= im.shape[1]


def test_xyxy_head_starts_at_the_centred_half_box():
    head = build_cls_loc(CLASSES, img_size=32, backbone="simple", hidden=8,
                         box_format="xyxy", class_agnostic=False).head
    with torch.no_grad():
        head.box.weight.zero_()
        _, boxes = head(torch.rand(2, head.fc[1].in_features // 16, 4, 4))
    torch.testing.assert_close(boxes, torch.tensor([0.25, 0.25, 0.75, 0.75]).expand(2, 3, 4))


@pytest.mark.parametrize("box_format", BOX_FORMATS)
def test_loss_is_computed_in_the_chosen_format(box_format, tiny, batch):
    ims, tgs = batch
    m = tiny(loss="l1", box_format=box_format).eval()
    _, boxes = raw_outputs(m, ims)
    goal = normalised_goal(tgs)
    if box_format == "cxcywh":
        goal = box_convert(goal, "xyxy", "cxcywh")
    ref = (boxes[:, 0] - goal).abs().sum(1).mean()
    torch.testing.assert_close(m(ims, tgs).losses["loss_box"], ref)


def set_per_class_head(m, cls_bias, box_bias):
    """Make the head's outputs constant: logits ``cls_bias``, raw boxes ``box_bias Tensor[C, 4]``."""
    with torch.no_grad():
        m.head.cls.weight.zero_()
        m.head.cls.bias.copy_(torch.tensor(cls_bias))
        m.head.box.weight.zero_()
        m.head.box.bias.copy_(box_bias.flatten())


@pytest.mark.parametrize("box_format", BOX_FORMATS)
def test_per_class_head_uses_the_right_class_box(box_format, tiny, batch):
    ims, tgs = batch  # ground-truth labels 2 and 3
    m = tiny(class_agnostic=False, box_format=box_format, loss="l1").eval()
    assert m.head.box.out_features == 12
    raw = torch.tensor([[-2.0, -1.0, 0.0, 1.0], [0.5, -0.5, 1.5, -1.5], [1.0, 2.0, -1.0, 0.3]])
    set_per_class_head(m, [0.0, 0.0, 5.0], raw)  # class 3 predicted
    per_class = decode_boxes(raw, box_format)
    for im, p in zip(ims, m(ims).predictions):
        h, w = im.shape[1:]
        assert int(p["class"]) == 3
        xyxy = per_class[2] if box_format == "xyxy" else box_convert(per_class[2], "cxcywh", "xyxy")
        torch.testing.assert_close(p["box"], xyxy.clamp(0, 1) * torch.tensor([w, h, w, h]))
    # Training regresses the ground-truth class's box (2 for image 0, 3 for image 1), whatever
    # class is predicted; class 1's box never enters the loss.
    goal = normalised_goal(tgs)
    if box_format == "cxcywh":
        goal = box_convert(goal, "xyxy", "cxcywh")
    ref = (per_class[[1, 2]] - goal).abs().sum(1).mean()
    torch.testing.assert_close(m(ims, tgs).losses["loss_box"], ref)
    raw[0] += 3.0
    set_per_class_head(m, [0.0, 0.0, 5.0], raw)
    torch.testing.assert_close(m(ims, tgs).losses["loss_box"], ref)


@pytest.mark.parametrize("loss,box_format,agnostic", COMBOS)
def test_every_combination_trains_and_rebuilds(loss, box_format, agnostic, tiny, batch):
    ims, tgs = batch
    m = tiny(loss=loss, box_format=box_format, class_agnostic=agnostic, lam=0.7).train()
    out = m(ims, tgs, with_predictions=True)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert m.backbone.stages["c1"][0].weight.grad.abs().sum() > 0
    assert m.head.box.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.parameters())  # DDP needs every parameter used
    m.eval()
    copy = build_model(m.builder_name, **m.builder_args).eval()
    copy.load_state_dict(m.state_dict())
    assert (copy.loss_kind, copy.box_format, copy.class_agnostic) == (loss, box_format, agnostic)
    a, b = m(ims, tgs), copy(ims, tgs)
    for p, q in zip(a.predictions, b.predictions):
        assert torch.equal(p["box"], q["box"]) and torch.equal(p["class"], q["class"])
    assert torch.equal(a.loss, b.loss)


def test_checkpoints_from_before_the_options_still_load(tiny):
    # Older checkpoints' builder_args have no box_format / class_agnostic: the defaults rebuild
    # the same module (same state_dict keys and shapes).
    old = tiny()
    args = {k: v for k, v in old.builder_args.items() if k not in ("box_format", "class_agnostic")}
    new = build_model("cls_loc", **args)
    new.load_state_dict(old.state_dict())
    assert new.box_format == "cxcywh" and new.class_agnostic and new.head.box.out_features == 4


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="box_format must be one of"):
        build_cls_loc(CLASSES, box_format="xywh")
    with pytest.raises(ValueError, match="class_agnostic must be true or false"):
        build_cls_loc(CLASSES, class_agnostic="maybe")


@pytest.mark.parametrize("loss,box_format,agnostic",
                         [("giou", "xyxy", False), ("giou", "cxcywh", True), ("l2", "xyxy", True)])
def test_new_options_overfit_shapes(loss, box_format, agnostic, train_steps):
    ds = build_dataset("shapes:size=64,mode=single,n=8", "train", task="cls_loc")
    ims, tgs = zip(*(ds[i] for i in range(8)))
    tgs = [{"boxes": t["boxes"], "labels": t["labels"]} for t in tgs]
    torch.manual_seed(0)
    m = build_model("cls_loc", ds.classes, img_size=64, backbone="simple", hidden=32, loss=loss,
                    box_format=box_format, class_agnostic=agnostic).train()
    box_first = m(list(ims), tgs).losses["loss_box"].item()
    first, last = train_steps(m, list(ims), tgs, lr=3e-3, steps=40)
    box_last = m(list(ims), tgs).losses["loss_box"].item()
    assert last < 0.5 * first and box_last < 0.7 * box_first and math.isfinite(last)
