"""The two-stage detector (detseg.models.detection.two_stage) and its zoo builders (fast_rcnn, rcnn,
sliding_window_det): empty images, eval-mode losses, original-image coordinates, RoI sampling,
checkpoint round trips, and Fast R-CNN overfitting four images from ground-truth proposals."""

import pytest
import torch
from torchvision.ops import box_iou

from detseg.data import build_dataset
from detseg.evaluation import build_evaluator
from detseg.models.zoo import ZOO, build_model
from detseg.structures import ModelOutput, empty_target

torch.set_num_threads(1)

CLASSES = ["a", "b", "c"]
# Small, fast variants of the three builders (sliding windows instead of selective search).
FAST = {
    "fast_rcnn": dict(proposals="sliding_window", backbone="simple", roi_size=3, hidden=32),
    "rcnn": dict(proposals="sliding_window", num_proposals=40, backbone="simple", crop_size=32,
                 context_pad=2, hidden=32),
    "sliding_window_det": dict(backbone="simple", crop_size=32, hidden=32, scales=[0.3, 0.6]),
}


def _build(name: str, **kw):
    torch.manual_seed(0)
    return build_model(name, CLASSES, img_size=48, **{**FAST[name], **kw})


def _scene(gen: torch.Generator, h: int, w: int, boxes: list[list[float]], labels: list[int]):
    image = torch.rand(3, h, w, generator=gen)
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
              "labels": torch.tensor(labels, dtype=torch.int64), "image_id": 0,
              "orig_size": torch.tensor([h, w])}
    return image, target


@pytest.mark.parametrize("name", list(FAST))
def test_image_without_objects_trains_with_zero_box_loss(name):
    model = _build(name, box_regression=True) if name == "sliding_window_det" else _build(name)
    model.train()
    image = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(1))
    out = model([image], [empty_target(40, 56)])
    assert isinstance(out, ModelOutput) and out.predictions is None
    assert set(out.losses) == {"loss_cls", "loss_box"}
    assert out.losses["loss_box"].item() == 0.0
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", list(FAST))
def test_eval_mode_gives_losses_and_predictions(name):
    gen = torch.Generator().manual_seed(2)
    ims, tgs = zip(_scene(gen, 48, 48, [[4, 6, 30, 28]], [2]),
                   _scene(gen, 40, 60, [[10, 5, 40, 35], [0, 0, 12, 12]], [1, 3]))
    model = _build(name).eval()
    with torch.no_grad():
        out = model(list(ims), list(tgs))
        plain = model(list(ims))
    assert out.losses and all(torch.isfinite(v) for v in out.losses.values())
    assert len(out.predictions) == 2 and plain.losses == {}
    for p in out.predictions:
        assert p["boxes"].shape == (len(p["scores"]), 4) and p["labels"].dtype == torch.int64
        assert ((p["labels"] >= 1) & (p["labels"] <= len(CLASSES))).all()
        assert (p["scores"][:-1] >= p["scores"][1:]).all()  # best first
        assert len(p["scores"]) <= model.detections_per_img


def test_predictions_in_original_image_coordinates():
    """Ground-truth proposals with the (near zero) initial regressor come back as the gt boxes
    of each original image, through a resize of two differently shaped images to 32 px."""
    gen = torch.Generator().manual_seed(3)
    ims, tgs = zip(_scene(gen, 48, 64, [[5, 7, 30, 40], [33, 2, 63, 20]], [1, 2]),
                   _scene(gen, 70, 40, [[3, 10, 37, 66]], [3]))
    torch.manual_seed(0)
    model = build_model("fast_rcnn", CLASSES, img_size=32, proposals="gt", backbone="simple",
                        score_thresh=0.0).eval()
    with torch.no_grad():
        preds = model(list(ims), list(tgs)).predictions
    for im, t, p in zip(ims, tgs, preds):
        h, w = im.shape[-2:]
        assert (p["boxes"][:, 0::2] <= w).all() and (p["boxes"][:, 1::2] <= h).all()
        iou = box_iou(t["boxes"], p["boxes"])
        assert (iou.max(1).values > 0.98).all(), iou


def test_training_rois_follow_the_iou_bands():
    model = _build("fast_rcnn", num_proposals=None)
    gt = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    props = [torch.tensor([[10.0, 10, 30, 30], [12, 10, 32, 30], [20, 20, 40, 40], [25, 25, 45, 45],
                           [40, 40, 47, 47], [0, 0, 20, 20]])]
    rois, labels, reg = model.sample_rois(props, [{"boxes": gt, "labels": torch.tensor([2])}])
    iou = box_iou(rois[0], gt)[:, 0]
    assert ((labels[0] == 2) == (iou >= 0.5)).all()
    assert (iou[labels[0] == 0] >= 0.1).all()
    # IoUs 1, 0.82, 0.14, 0.03, 0, 0.14: two below 0.1 are ignored; the gt box is appended.
    assert len(rois[0]) == 5 and int((labels[0] == 2).sum()) == 3
    decoded = model.box_coder.decode(reg[0], rois[0])
    pos = labels[0] > 0
    assert torch.allclose(decoded[pos], gt.expand(int(pos.sum()), 4), atol=1e-4)


def test_bad_targets_and_gt_proposals_without_targets_are_clear_errors():
    model = _build("fast_rcnn")
    image = torch.rand(3, 32, 32)
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\].*1\.\.3"):
        model([image], [{"boxes": torch.tensor([[1.0, 1, 9, 9]]), "labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match="no 'labels'"):
        model([image], [{"boxes": torch.zeros(0, 4)}])
    gt_model = build_model("fast_rcnn", CLASSES, img_size=32, proposals="gt", backbone="simple").eval()
    with pytest.raises(ValueError, match="proposals='gt'.*need targets"):
        gt_model([image])
    with pytest.raises(ValueError, match="unknown method 'edge_boxes'"):
        build_model("fast_rcnn", CLASSES, proposals="edge_boxes")


@pytest.mark.parametrize("name", list(FAST))
def test_builder_round_trip(name):
    assert ZOO[name].task == "detection"
    model = _build(name).eval()
    again = build_model(model.builder_name, **model.builder_args).eval()
    again.load_state_dict(model.state_dict())
    image = torch.rand(3, 40, 52, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a, b = model([image]).predictions[0], again([image]).predictions[0]
    assert len(a["boxes"]) > 0
    for k in ("boxes", "labels", "scores"):
        assert torch.equal(a[k], b[k]), k


def test_fast_rcnn_overfits_four_images_from_ground_truth_proposals():
    ds = build_dataset("shapes:size=64,n=4,max_objects=2", split="train", task="detection")
    ims, tgs = [], []
    for i in range(4):
        im, t = ds[i]
        ims.append(im)
        tgs.append({k: t[k] for k in ("boxes", "labels", "image_id", "orig_size")})
    torch.manual_seed(0)
    model = build_model("fast_rcnn", ds.classes, img_size=64, proposals="gt",
                        backbone="alexnet_small", backbone_width=8, hidden=64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    first = None
    for _ in range(40):
        loss = model(ims, tgs).loss
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    model.eval()
    with torch.no_grad():
        preds = model(ims, tgs).predictions
    evaluator = build_evaluator("detection", ds.classes)
    evaluator.update(preds, tgs)
    assert evaluator.compute()["mAP50"] == 1.0
    for p, t in zip(preds, tgs):  # every object's best-scoring detection has its class
        best = box_iou(t["boxes"], p["boxes"]).ge(0.5).float() * p["scores"]
        assert torch.equal(p["labels"][best.argmax(1)], t["labels"])
