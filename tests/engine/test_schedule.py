import math

import pytest
import torch

from detseg.engine.schedule import build_optimizer, build_scheduler, lr_factor


def test_warmup_then_cosine():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.001)
    assert lr_factor(5, 100, 10, "cosine") == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.01)


def test_step_schedule():
    assert lr_factor(10, 90, 0, "step") == 1.0
    assert lr_factor(60, 90, 0, "step") == pytest.approx(0.1)
    assert lr_factor(80, 90, 0, "step") == pytest.approx(0.01)


def test_unknown_names():
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, 10, 0, "linear")
    with pytest.raises(ValueError, match="optimizer"):
        build_optimizer(torch.nn.Linear(2, 2), "rmsprop", 0.1, 0.0)


def test_scheduler_state_round_trip():
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, "sgd", 0.1, 1e-4)
    assert opt.param_groups[1]["weight_decay"] == 0.0  # biases are not decayed
    sched = build_scheduler(opt, 20, 5, "cosine")
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = build_optimizer(model, "sgd", 0.1, 1e-4)
    sched2 = build_scheduler(opt2, 20, 5, "cosine")
    sched2.load_state_dict(state)
    sched.step()
    sched2.step()
    assert math.isclose(opt.param_groups[0]["lr"], sched2.get_last_lr()[0])
