"""The zoo: one explicit dict; build_model records JSON-able builder args that rebuild the model."""

import json

import pytest
import torch

from detseg.models.base import DetsegModel
from detseg.models.zoo import ZOO, build_model, model_options
from detseg.tasks import TASKS


@pytest.mark.parametrize("name", list(ZOO))
def test_every_entry_builds_its_task(name):
    entry = ZOO[name]
    assert entry.task in TASKS and entry.description
    # The tiny test backbone where the model takes one (it keeps this test fast).
    kw = {"backbone": "simple"} if "backbone" in model_options(name) else {}
    m = build_model(name, ("a", "b"), img_size=32, **kw)
    assert isinstance(m, DetsegModel) and m.task == entry.task
    assert m.builder_name == name
    assert m.builder_args == {"classes": ["a", "b"], "img_size": 32, **kw}
    json.dumps(m.builder_args)
    again = build_model(m.builder_name, **m.builder_args)
    again.load_state_dict(m.state_dict())
    x = [torch.rand(3, 32, 40)]
    m.eval(), again.eval()
    p, q = m(x).predictions[0], again(x).predictions[0]
    assert all(torch.equal(p[k], q[k]) for k in p)


def test_entries_now():
    assert {"fcn", "cls_loc"} <= set(ZOO)
    assert ZOO["fcn"].task == "semantic" and ZOO["cls_loc"].task == "cls_loc"


def test_model_options_are_builder_defaults():
    opts = model_options("cls_loc")
    assert "classes" not in opts
    assert opts["loss"] == "smooth_l1" and opts["lam"] == 1.0 and opts["img_size"] == 128
    assert model_options("fcn")["loss_reduction"] == "mean"


def test_unknown_name_lists_the_zoo():
    with pytest.raises(ValueError, match="fcn.*cls_loc|cls_loc.*fcn"):
        build_model("yolo9000", ["a"])
    with pytest.raises(ValueError, match="known"):
        model_options("nope")


def test_unknown_option_names_model_and_accepted_options():
    with pytest.raises(TypeError) as e:
        build_model("cls_loc", ["a"], lamda=2.0)
    msg = str(e.value)
    assert "cls_loc" in msg and "'lamda'" in msg and "lam=1.0" in msg and "loss='smooth_l1'" in msg


def test_option_values_must_be_json_primitives():
    with pytest.raises(TypeError, match="JSON"):
        build_model("fcn", ["a", "b"], img_size=torch.tensor(32))
    m = build_model("fcn", ("bg", "x"), img_size=32, backbone="simple")
    assert m.builder_args["classes"] == ["bg", "x"]
