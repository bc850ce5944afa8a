"""``detseg demo``'s pose and detection panels, at a tiny scale; the default recipes build."""

import json

import numpy as np
import torch

from detseg import demo as demo_mod
from detseg.cli import main
from detseg.models.zoo import build_model
from detseg.visualize import MIN_SIDE, draw_proposals


def test_default_recipes_build_and_panels_use_the_budgets():
    """Every default recipe's options are accepted by its builder (a typo fails here, not after
    minutes of demo); the panels' budgets are the lead's constants."""
    for r in demo_mod.DEMOS:
        build_model(r.model, ["circle", "rectangle", "triangle", "person"], **r.model_opts)
    by_key = {r.key: r for r in demo_mod.DEMOS}
    assert by_key["pose_heatmap"].time_limit == demo_mod.POSE_MINUTES
    assert by_key["fast_rcnn"].time_limit == demo_mod.DETECTION_MINUTES
    assert by_key["mask_rcnn"].time_limit == demo_mod.INSTANCE_MINUTES
    assert "mode=person" in by_key["pose_heatmap"].data and "mode=scene" in by_key["fast_rcnn"].data
    assert not by_key["pose_heatmap"].extra and not by_key["fast_rcnn"].extra


def test_pose_and_detection_panels(tmp_path, monkeypatch):
    tiny = [demo_mod.DemoRecipe("pose_heatmap", "shapes:size=32,mode=person,n=8,n_val=4", epochs=1,
                                img_size=32, batch=4, time_limit=0.05),
            demo_mod.DemoRecipe("fast_rcnn", "shapes:size=32,mode=scene,n=8,n_val=4", epochs=1,
                                img_size=32, batch=4, amp=False, model_opts={"feature": "c3"}),
            demo_mod.DemoRecipe("mask_rcnn", "shapes:size=32,mode=scene,n=8,n_val=4", epochs=1,
                                img_size=32, batch=4, amp=False,
                                model_opts={**demo_mod.MASK_RCNN_CPU, "fpn_channels": 16,
                                            "representation": 32, "backbone_width": 8})]
    monkeypatch.setattr(demo_mod, "DEMOS", tiny)
    assert main(["demo", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "PCK@0.2" in summary["pose_heatmap"] and "mAP50" in summary["fast_rcnn"]
    html = (tmp_path / "report.html").read_text()
    assert "mask_mAP" in summary["mask_rcnn"] and "Mask mAP on the validation scenes" in html
    for key in ("pose_heatmap", "fast_rcnn", "mask_rcnn"):
        assert f'src="panel_{key}.png"' in html
        assert (tmp_path / f"panel_{key}.png").is_file()
    assert "PCK@0.2 on the validation figures" in html and "mAP50 on the validation scenes" in html
    assert "proposals" in html
    # the selective-search cache the demo sets up was used
    assert any((tmp_path / "proposal_cache").iterdir())


def test_draw_proposals_keeps_the_first_boxes():
    image = torch.zeros(3, 32, 32)
    boxes = torch.tensor([[2.0, 2.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    one = draw_proposals(image, boxes, max_boxes=1)
    both = draw_proposals(image, boxes, max_boxes=None)
    assert one.shape == (MIN_SIDE, MIN_SIDE, 3) and one.dtype == np.uint8
    f = MIN_SIDE // 32
    assert one[2 * f, 5 * f].any() and not one[20 * f, 25 * f].any()  # only the first outline
    assert both[20 * f, 25 * f].any()
    assert not draw_proposals(image, torch.zeros(0, 4)).any()  # no boxes: the image as is
