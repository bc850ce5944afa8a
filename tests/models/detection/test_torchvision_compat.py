"""Exactness against torchvision: a randomly initialised torchvision Faster / Mask / Keypoint R-CNN
state dict, loaded into the detseg model, gives the same detections (eval) and the same four to
five losses (train, same seed) at two image sizes; the name mapping covers every tensor."""

import pytest
import torch
from torchvision.models.detection import (fasterrcnn_resnet50_fpn, keypointrcnn_resnet50_fpn,
                                          maskrcnn_resnet50_fpn)

from detseg.models.detection.faster_rcnn import (build_faster_rcnn, build_keypoint_rcnn,
                                                 build_mask_rcnn)
from detseg.models.detection.torchvision_compat import (convert_state_dict,
                                                        load_torchvision_state_dict)

K = 5  # keypoints (fewer than COCO's 17: same code, faster)
# small images and few detections keep the ResNet-50 models fast on a CPU
SIZES = [(160, 256), (224, 320)]
CASES = {
    "faster": (fasterrcnn_resnet50_fpn, build_faster_rcnn, ["a", "b", "c"], {}),
    "mask": (maskrcnn_resnet50_fpn, build_mask_rcnn, ["a", "b"], {}),
    "keypoint": (keypointrcnn_resnet50_fpn, build_keypoint_rcnn, ["person"], {"num_keypoints": K}),
}
LOSS_NAMES = {"loss_objectness": "loss_objectness", "loss_rpn_box": "loss_rpn_box_reg",
              "loss_cls": "loss_classifier", "loss_box": "loss_box_reg", "loss_mask": "loss_mask",
              "loss_keypoint": "loss_keypoint"}


def _pair(case: str, dets: int):
    tv_build, ds_build, classes, extra = CASES[case]
    torch.manual_seed(0)
    # box_score_thresh=0: random weights score every class about equally, below torchvision's 0.05
    tv = tv_build(weights=None, weights_backbone=None, num_classes=len(classes) + 1,
                  min_size=SIZES[0][0], max_size=SIZES[0][1], box_score_thresh=0.0,
                  box_detections_per_img=dets, **extra)
    ds = ds_build(classes, frozen_bn=False, trainable_layers=5, min_size=SIZES[0][0],
                  max_size=SIZES[0][1], box_score_thresh=0.0, detections_per_img=dets, **extra)
    report = load_torchvision_state_dict(ds, tv.state_dict())
    assert report["missing"] == [] and report["unmapped"] == [] and report["dropped"] == []
    return tv, ds


def _set_size(tv, ds, size):
    tv.transform.min_size, tv.transform.max_size = (size[0],), size[1]
    ds.image_transform.min_size, ds.image_transform.max_size = size


def _targets(images, classes: int):
    g = torch.Generator().manual_seed(1)
    out = []
    for im in images:
        h, w = im.shape[-2:]
        n = 3
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 10 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.35, h * 0.35])
        boxes = torch.cat([xy, xy + wh], dim=1)
        masks = torch.zeros(n, h, w, dtype=torch.uint8)
        kps = torch.zeros(n, K, 3)
        for i, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
            masks[i, y1:y2, x1:(x1 + x2) // 2 + 1] = 1
            kps[i, :, 0] = x1 + torch.rand(K, generator=g) * (x2 - x1)
            kps[i, :, 1] = y1 + torch.rand(K, generator=g) * (y2 - y1)
            kps[i, :, 2] = (torch.rand(K, generator=g) > 0.2).float() * 2
        labels = torch.randint(1, classes + 1, (n,), generator=g)
        out.append({"boxes": boxes, "labels": labels, "masks": masks, "keypoints": kps})
    return out


def _images(seed: int):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 120, 200, generator=g), torch.rand(3, 150, 130, generator=g)]


@pytest.mark.parametrize("case", list(CASES))
def test_eval_outputs_equal_torchvision_at_two_sizes(case):
    tv, ds = _pair(case, dets=8 if case == "keypoint" else 30)
    tv.eval(), ds.eval()
    if case == "mask":
        ds.instance_heads["mask"].keep_probs = True
    for seed, size in enumerate(SIZES):
        _set_size(tv, ds, size)
        images = _images(seed)
        with torch.no_grad():
            expected, got = tv(images), ds(images).predictions
        for e, g in zip(expected, got):
            assert len(e["boxes"]) > 0 and len(g["boxes"]) == len(e["boxes"])
            assert torch.equal(g["labels"], e["labels"])
            for k in ("boxes", "scores"):
                assert (g[k] - e[k]).abs().max() <= 1e-4, k
            if case == "mask":
                assert (g["mask_probs"] - e["masks"][:, 0]).abs().max() <= 1e-4
                assert torch.equal(g["masks"], (e["masks"][:, 0] > 0.5).to(torch.uint8))
            if case == "keypoint":
                assert (g["keypoints"] - e["keypoints"]).abs().max() <= 1e-4
                assert (g["keypoints_scores"] - e["keypoints_scores"]).abs().max() <= 1e-4


@pytest.mark.parametrize("case", list(CASES))
def test_train_losses_equal_torchvision_with_the_same_draws(case):
    tv, ds = _pair(case, dets=10)
    tv.train(), ds.train()
    # torchvision's transform draws the training min_size even from a one-element tuple
    tv.transform.torch_choice = lambda sizes: sizes[0]
    classes = len(CASES[case][2])
    for seed, size in enumerate(SIZES):
        _set_size(tv, ds, size)
        images = _images(seed)
        targets = _targets(images, classes)
        torch.manual_seed(seed)
        expected = tv(images, [dict(t) for t in targets])
        torch.manual_seed(seed)
        got = ds(images, targets).losses
        assert set(got) == {k for k, v in LOSS_NAMES.items() if v in expected}
        for k, v in got.items():
            assert abs(v.item() - expected[LOSS_NAMES[k]].item()) <= 1e-4, (k, v, expected[LOSS_NAMES[k]])


def test_the_mapping_covers_every_tensor_both_ways():
    for tv_build, ds_build, classes, extra in CASES.values():
        tv = tv_build(weights=None, weights_backbone=None, num_classes=len(classes) + 1, **extra)
        ds = ds_build(classes, frozen_bn=False, trainable_layers=5, **extra)
        converted, unmapped = convert_state_dict(tv.state_dict())
        assert unmapped == []
        assert set(converted) == set(ds.state_dict())  # nothing missing, nothing extra
        # the default (frozen batch norm) model drops only the batch-norm counters
        frozen = ds_build(classes, **extra)
        report = load_torchvision_state_dict(frozen, tv.state_dict())
        assert report["missing"] == [] and report["dropped"]
        assert all(k.endswith("num_batches_tracked") for k in report["dropped"])


def test_a_wrong_class_count_is_a_clear_error():
    tv = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    ds = build_faster_rcnn(["a", "b"])
    with pytest.raises(ValueError, match="mismatched.*cls_score"):
        load_torchvision_state_dict(ds, tv.state_dict())
    report = load_torchvision_state_dict(ds, tv.state_dict(), strict=False)
    assert len(report["mismatched"]) == 4 and not report["unmapped"]
