import torch
import torchvision

from detseg.structures import masks_to_boxes


def test_masks_to_boxes_matches_torchvision_plus_exclusive_edge():
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(6, 20, 30, generator=g) > 0.97).to(torch.uint8)
    masks[2] = 0  # an empty mask gives zeros
    ours = masks_to_boxes(masks)
    keep = masks.flatten(1).any(1).bool()
    ref = torchvision.ops.masks_to_boxes(masks[keep]) + torch.tensor([0, 0, 1, 1])
    assert torch.equal(ours[keep], ref)
    assert torch.equal(ours[2], torch.zeros(4))
    assert masks_to_boxes(torch.zeros(0, 4, 4, dtype=torch.uint8)).shape == (0, 4)
