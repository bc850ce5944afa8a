"""Every CLI verb: --help, and a tiny end-to-end train -> eval -> predict -> data check -> demo."""

import json
import re

import pytest

from detseg import demo as demo_mod
from detseg.cli import main
from detseg.cli.common import parse_opts

VERBS = [["models"], ["train"], ["eval"], ["predict"], ["demo"], ["data"], ["data", "check"],
         ["segment-meanshift"], ["sweep"], ["proposals"], ["proposals", "eval"]]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v))
def test_help(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([*verb, "--help"])
    assert e.value.code == 0
    assert "usage: detseg" in capsys.readouterr().out


def test_train_help_lists_model_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "-o KEY=VALUE" in out and "fcn:" in out and "cls_loc:" in out


def test_models_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "fcn" in out and "semantic" in out and "cls_loc" in out


def test_parse_opts():
    assert parse_opts(["width=32", "loss=l1", "lam=0.5", "flag=true"]) == {
        "width": 32, "loss": "l1", "lam": 0.5, "flag": True}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_opts(["width"])


@pytest.mark.parametrize("item, message", [
    ("width", "expected KEY=VALUE"), ("=32", "expected KEY=VALUE"),
    ("sizes=[1,", "the value is not a YAML scalar or list"), ("x={a", "the value is not a YAML scalar or list"),
    ("x=a: b: c", "the value is not a YAML scalar or list"),
])
def test_malformed_opts_name_the_option(item, message, capsys):
    with pytest.raises(ValueError, match=rf"^-o '{re.escape(item)}': {message}"):
        parse_opts([item])
    assert main(["train", "fcn", "--data", "shapes:n=4", "-o", item]) == 2
    err = capsys.readouterr().err
    assert f"-o '{item}'" in err and "Traceback" not in err


def test_clear_errors(tmp_path, capsys):
    assert main(["train", "no_such_model", "--data", "shapes:n=4", "--out", str(tmp_path)]) == 2
    assert "no_such_model" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.pt"), "--data", "shapes"]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2


def test_end_to_end(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "cls_loc", "--data", "shapes:size=32,n=24", "--img-size", "32", "--epochs", "1",
                 "--batch", "8", "--device", "cpu", "--out", str(out), "--quiet", "-o", "loss=l1"]) == 0
    ckpt = out / "cls_loc" / "train1" / "best.pt"
    assert ckpt.is_file()
    mjson = tmp_path / "m.json"
    assert main(["eval", str(ckpt), "--data", "shapes:size=32,n=24", "--json", str(mjson)]) == 0
    metrics = json.loads(mjson.read_text())
    assert {"top1", "loc_acc", "mean_iou", "loss"} <= set(metrics)
    # predict on a folder of images written from the dataset
    from detseg.data import build_dataset
    from detseg.io import save_png

    ds = build_dataset("shapes:size=32,n=3", split="val", task="cls_loc")
    imgs = tmp_path / "imgs"
    for i in range(2):
        save_png(imgs / f"im{i}.png", (ds[i][0].permute(1, 2, 0) * 255).byte().numpy())
    pred = tmp_path / "pred"
    assert main(["predict", str(ckpt), str(imgs), "--out", str(pred), "--save-json"]) == 0
    assert (pred / "im0.png").is_file() and (pred / "im1.png").is_file()
    records = json.loads((pred / "predictions.json").read_text())
    assert len(records) == 2
    assert isinstance(json.loads((pred / "coco_results.json").read_text()), list)
    capsys.readouterr()
    assert main(["data", "check", "shapes:size=32,n=8"]) == 0
    assert "circle" in capsys.readouterr().out


def test_predict_semantic_writes_label_pngs(tmp_path):
    out = tmp_path / "runs"
    assert main(["train", "fcn", "--data", "shapes:size=32,n=16", "--img-size", "32", "--epochs", "1",
                 "--batch", "8", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    from detseg.data import build_dataset
    from detseg.io import save_png

    ds = build_dataset("shapes:size=32,n=2", split="val", task="semantic")
    save_png(tmp_path / "a.png", (ds[0][0].permute(1, 2, 0) * 255).byte().numpy())
    (tmp_path / "broken.png").write_bytes(b"not a png")
    pred = tmp_path / "pred"
    # the broken file is skipped (exit status 1), the other one still predicted
    assert main(["predict", str(out / "fcn" / "train1" / "last.pt"), str(tmp_path / "a.png"),
                 str(tmp_path / "broken.png"), "--out", str(pred), "--save-json"]) == 1
    assert (pred / "a.png").is_file() and (pred / "a_label.png").is_file()


def test_demo_smoke(tmp_path, monkeypatch):
    tiny = [demo_mod.DemoRecipe("fcn", "shapes:size=32,n=16", epochs=1, img_size=32, batch=8,
                                group="upsampling"),
            demo_mod.DemoRecipe("fcn", "shapes:size=32,n=16", epochs=2, img_size=32, batch=8,
                                name="fcn_nearest", model_opts={"upsample": "nearest"},
                                group="upsampling", time_limit=1e-6, extra=True),
            demo_mod.DemoRecipe("cls_loc", "shapes:size=32,n=16", epochs=1, img_size=32, batch=8)]
    monkeypatch.setattr(demo_mod, "DEMOS", tiny)
    assert main(["demo", "--out", str(tmp_path / "default")]) == 0
    assert set(json.loads((tmp_path / "default" / "summary.json").read_text())) == {"fcn", "cls_loc"}
    assert "meanshift.png" in (tmp_path / "default" / "report.html").read_text()
    assert not (tmp_path / "default" / "compare_upsampling.png").exists()  # one member: no panel
    assert main(["demo", "--out", str(tmp_path), "--compare"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"fcn", "fcn_nearest", "cls_loc"}
    assert "mIoU" in summary["fcn"] and "loc_acc" in summary["cls_loc"]
    assert summary["fcn"]["train_seconds"] > 0
    html = (tmp_path / "report.html").read_text()
    assert "samples.png" in html and "curves.png" in html
    assert "compare_upsampling.png" in html and "meanshift.png" in html and "upper bound" in html
    assert (tmp_path / "compare_upsampling.png").is_file() and (tmp_path / "meanshift.png").is_file()
    assert main(["demo", "--out", str(tmp_path / "one"), "--only", "fcn_nearest"]) == 0


def test_eval_option_override_keeps_weights(tmp_path):
    """-o overrides builder options that keep the weights: the sliding-window segmenter evaluated
    window by window gives the metrics of its convolutionalized form."""
    out = tmp_path / "runs"
    assert main(["train", "sliding_window_seg", "--data", "shapes:size=24,n=8", "--img-size", "24",
                 "--epochs", "1", "--batch", "4", "--device", "cpu", "--out", str(out), "--quiet",
                 "-o", "width=8", "-o", "hidden=16", "-o", "patch=7"]) == 0
    ckpt = str(out / "sliding_window_seg" / "train1" / "last.pt")
    a, b = tmp_path / "fcn.json", tmp_path / "window.json"
    assert main(["eval", ckpt, "--data", "shapes:size=24,n=8", "--json", str(a)]) == 0
    assert main(["eval", ckpt, "--data", "shapes:size=24,n=8", "--json", str(b), "-o", "mode=window"]) == 0
    assert json.loads(a.read_text())["mIoU"] == pytest.approx(json.loads(b.read_text())["mIoU"], abs=1e-9)
    assert main(["eval", ckpt, "--data", "shapes:size=24,n=8", "-o", "width=16"]) == 2  # weights differ
