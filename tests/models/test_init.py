"""detseg.models.init: seeded, decisive random weights."""

import torch

from detseg.models.init import decisive_init
from detseg.models.zoo import build_model


def test_decisive_init_is_seeded_with_batch_norm_statistics():
    a = decisive_init(build_model("fcn", classes=["bg", "a", "b"], img_size=32), seed=3)
    b = decisive_init(build_model("fcn", classes=["bg", "a", "b"], img_size=32), seed=3)
    assert not a.training
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    bn = next(m for m in a.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert (bn.running_var >= 1).all() and bn.running_mean.abs().sum() > 0
