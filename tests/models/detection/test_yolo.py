"""Anchor-based YOLO (detseg.models.detection.yolo): k-means anchors on hand-made boxes, anchors
fitted from a data set and kept in checkpoints, assignment to level/anchor/cell, empty images."""

import pytest
import torch

from detseg.data import build_dataset
from detseg.engine.checkpoint import load_model, save_checkpoint
from detseg.models.detection.yolo import kmeans_anchors, wh_iou
from detseg.models.zoo import build_model
from detseg.structures import empty_target


def test_kmeans_finds_the_three_box_shapes_sorted_by_area():
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[40.0, 20.0], [10.0, 10.0], [20.0, 60.0]])
    wh = shapes.repeat_interleave(30, 0) * (1 + 0.05 * (torch.rand(90, 2, generator=gen) - 0.5))
    anchors = kmeans_anchors(wh, 3)
    assert torch.allclose(anchors, shapes[[1, 0, 2]], rtol=0.03)
    assert torch.equal(anchors, kmeans_anchors(wh, 3))  # seeded: the same anchors every time


def test_kmeans_with_fewer_boxes_than_clusters_and_wh_iou():
    anchors = kmeans_anchors(torch.tensor([[4.0, 4.0], [8.0, 2.0]]), 3)
    assert anchors.shape == (3, 2) and {tuple(a) for a in anchors.tolist()} <= {(4.0, 4.0), (8.0, 2.0)}
    assert torch.allclose(wh_iou(torch.tensor([[4.0, 4.0]]), torch.tensor([[8.0, 2.0], [2.0, 2.0]])),
                          torch.tensor([[8 / 24, 0.25]]))


def test_fit_priors_clusters_the_training_boxes_and_checkpoints_keep_them(tmp_path):
    ds = build_dataset("shapes:size=64,n=8", split="train", task="detection")
    torch.manual_seed(0)
    model = build_model("yolo", ds.classes, img_size=32, backbone="simple")
    before = model.anchors.clone()
    model.fit_priors(ds)
    assert model.anchors.shape == (3, 3, 2) and not torch.equal(model.anchors, before)
    areas = model.anchors.reshape(-1, 2).prod(1)
    assert (areas[1:] >= areas[:-1]).all()  # small anchors on the fine levels
    assert model.anchors.max() <= 32  # in the 32 px network frame
    save_checkpoint(tmp_path / "m.pt", {"builder": model.builder_name,
                                        "builder_args": model.builder_args, "model": model.state_dict()})
    assert torch.equal(load_model(tmp_path / "m.pt").anchors, model.anchors)
    fixed = build_model("yolo", ds.classes, img_size=32, backbone="simple", anchors_per_level=1,
                        anchors=[[20, 20], [4, 4], [9, 9]])
    fixed.fit_priors(ds)  # explicit anchors are kept, sorted
    assert fixed.anchors.reshape(-1, 2).tolist() == [[4, 4], [9, 9], [20, 20]]


def test_an_object_goes_to_its_best_anchors_level_at_its_centre_cell():
    model = build_model("yolo", ["a", "b"], img_size=64, backbone="simple", anchors_per_level=1,
                        anchors=[[8, 8], [16, 16], [32, 32]])
    gt = torch.tensor([[25.0, 5.0, 55.0, 35.0], [2.0, 2.0, 10.0, 10.0]])  # 30x30 at (40, 20); 8x8
    assigned = model.assign([{"boxes": gt, "labels": torch.tensor([2, 1])}], [(8, 8), (4, 4), (2, 2)])
    img, anchor, row, col, boxes, labels = assigned[2]
    assert (img.tolist(), anchor.tolist(), row.tolist(), col.tolist()) == ([0], [0], [0], [1])
    assert torch.equal(boxes, gt[:1]) and labels.tolist() == [2]
    img, anchor, row, col, boxes, labels = assigned[0]
    assert (row.tolist(), col.tolist(), labels.tolist()) == ([0], [0], [1])
    assert len(assigned[1][0]) == 0
    more = build_model("yolo", ["a", "b"], img_size=64, backbone="simple", anchors_per_level=1,
                       anchors=[[8, 8], [16, 16], [32, 32]], anchor_iou_thresh=0.2)
    assigned = more.assign([{"boxes": gt[:1], "labels": torch.tensor([2])}], [(8, 8), (4, 4), (2, 2)])
    assert [len(a[0]) for a in assigned] == [0, 1, 1]  # 16x16 has shape IoU 0.28 with 30x30


def test_empty_image_gives_zero_box_loss_and_finite_gradients():
    torch.manual_seed(0)
    model = build_model("yolo", ["a", "b"], img_size=64, backbone="simple").train()
    out = model([torch.rand(3, 40, 64)], [empty_target(40, 64)])
    assert set(out.losses) == {"loss_box", "loss_obj", "loss_cls"}
    assert out.losses["loss_box"].item() == 0.0 and out.losses["loss_cls"].item() == 0.0
    assert torch.isfinite(out.loss) and out.losses["loss_obj"] > 0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_yolov5_neighbour_cells_and_bounded_boxes():
    model = build_model("yolo", ["a", "b"], img_size=64, backbone="simple", anchors_per_level=1,
                        anchors=[[8, 8], [16, 16], [32, 32]], box_param="v5", neighbor_cells=True)
    gt = torch.tensor([[25.0, 5.0, 55.0, 35.0]])  # centre (40, 20) = cell (1.25, 0.625) at stride 32
    img, anchor, row, col, boxes, labels = model.assign(
        [{"boxes": gt, "labels": torch.tensor([2])}], [(8, 8), (4, 4), (2, 2)])[2]
    assert sorted(zip(row.tolist(), col.tolist())) == [(0, 0), (0, 1), (1, 1)]
    assert torch.equal(boxes, gt.expand(3, 4))
    raw = torch.zeros(1, 1, 2, 2, 7)  # sigmoid(0) = 0.5: centre mid-cell, size = the anchor
    assert torch.allclose(model.decode_level(raw, 2)[0, 0, 1, 0], torch.tensor([0.0, 32, 32, 64]))
    with pytest.raises(ValueError, match="neighbor_cells.*v5"):
        build_model("yolo", ["a"], backbone="simple", neighbor_cells=True)
