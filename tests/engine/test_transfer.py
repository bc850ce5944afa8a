"""Transfer learning (detseg.engine.transfer): ``--weights`` loads exactly the tensors whose name and
shape match and reports the rest; ``--freeze-backbone N`` freezes exactly the first N stages, which
then do not move in training; the CLI writes ``transfer.json``."""

import json

import pytest
import torch

from detseg.cli.main import main
from detseg.engine.checkpoint import save_checkpoint
from detseg.engine.trainer import TrainConfig, Trainer
from detseg.engine.transfer import freeze_backbone, load_transfer
from detseg.models.zoo import build_model

DATA = "shapes:size=64,n=4,n_val=2"
# A small, fast Faster R-CNN (the zoo default is torchvision's ResNet-50 FPN at 800 px).
OPTS = {"backbone": "simple", "fpn_channels": 16, "representation": 32, "detections_per_img": 10,
        "rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 100,
        "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50,
        "box_batch_size_per_image": 64, "anchor_sizes": [8, 16, 32, 64, 128]}
SOURCE_CLASSES = ["a", "b", "c", "d", "e", "f", "g"]  # 7 classes; shapes detection has 4


def _source(tmp_path, classes=SOURCE_CLASSES):
    """A faster_rcnn checkpoint for another class count, and its state_dict."""
    torch.manual_seed(1)
    src = build_model("faster_rcnn", classes, img_size=64, **OPTS)
    path = tmp_path / "source.pt"
    save_checkpoint(path, {"builder": src.builder_name, "builder_args": src.builder_args,
                           "classes": src.classes, "model": src.state_dict()})
    return path, src.state_dict()


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(model="faster_rcnn", data=DATA, epochs=1, img_size=64, batch=4, out=str(tmp_path / "runs"),
                device="cpu", quiet=True, samples=1, model_opts=dict(OPTS))
    base.update(kw)
    return TrainConfig(**base)


def test_partial_load_reports_exactly_what_it_skipped(tmp_path):
    path, file_state = _source(tmp_path)
    trainer = Trainer(_cfg(tmp_path, weights=str(path)))
    report = trainer.transfer
    own = trainer.model.state_dict()
    # Independently: the names both models have, split by whether the shapes agree.
    differ = {k for k in file_state if k in own and file_state[k].shape != own[k].shape}
    assert differ == {"box_head.cls_score.weight", "box_head.cls_score.bias",
                      "box_head.bbox_pred.weight", "box_head.bbox_pred.bias"}  # class-dependent
    assert {e["name"] for e in report["skipped"]} == differ
    assert {e["name"] for e in report["reinitialised"]} == differ
    assert all(e["reason"] == "shape mismatch" for e in report["skipped"] + report["reinitialised"])
    cls = next(e for e in report["skipped"] if e["name"] == "box_head.cls_score.weight")
    assert cls["file_shape"] == [8, 32] and cls["model_shape"] == [5, 32]
    assert set(report["loaded"]) == set(file_state) - differ == set(own) - differ
    for k in report["loaded"]:  # loaded tensors are the file's
        assert torch.equal(own[k], file_state[k]), k
    for k in differ:  # re-initialised ones keep the new model's shape (its fresh init)
        assert own[k].shape != file_state[k].shape
    saved = json.loads((trainer.run_dir / "transfer.json").read_text())
    assert saved["counts"]["loaded"] == len(own) - 4 and saved["counts"]["skipped"] == 4
    assert saved["kind"] == "detseg checkpoint" and saved["source_builder"] == "faster_rcnn"


def test_plain_state_dict_extra_and_missing_names(tmp_path):
    model = build_model("faster_rcnn", ["circle", "rectangle", "triangle", "person"], img_size=64, **OPTS)
    state = dict(model.state_dict())
    gone = "proposal_generator.head.conv.weight"
    del state[gone]
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "plain.pt"
    torch.save(state, path)
    fresh = build_model("faster_rcnn", ["circle", "rectangle", "triangle", "person"], img_size=64, **OPTS)
    report = load_transfer(fresh, path)
    assert report["kind"] == "state_dict"
    assert report["skipped"] == [{"name": "extra.weight", "reason": "missing in model"}]
    assert report["reinitialised"] == [{"name": gone, "reason": "missing in file"}]
    assert len(report["loaded"]) == len(state) - 1


def test_prefixed_and_torchvision_names(tmp_path):
    model = build_model("faster_rcnn", ["x"], img_size=64, **OPTS)
    # A DDP-style prefix and a backbone-only file both find their place.
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "ddp.pt")
    assert len(load_transfer(build_model("faster_rcnn", ["x"], img_size=64, **OPTS), tmp_path / "ddp.pt")
               ["loaded"]) == len(model.state_dict())
    body = {k[len("backbone.body."):]: v for k, v in model.state_dict().items() if k.startswith("backbone.body.")}
    torch.save(body, tmp_path / "body.pt")
    report = load_transfer(build_model("faster_rcnn", ["x"], img_size=64, **OPTS), tmp_path / "body.pt")
    assert sorted(report["loaded"]) == sorted(f"backbone.body.{k}" for k in body)
    # torchvision names go through torchvision_compat's mapping (the background's box rows are
    # kept in detseg's regressor too, so the tensor loads as it is).
    sd = model.state_dict()
    tv = {"roi_heads.box_head.fc6.weight": sd["box_head.fc.1.weight"],
          "roi_heads.box_predictor.bbox_pred.weight": sd["box_head.bbox_pred.weight"],
          "rpn.head.cls_logits.bias": sd["proposal_generator.head.cls_logits.bias"],
          "roi_heads.unknown.weight": torch.zeros(1)}
    torch.save(tv, tmp_path / "tv.pt")
    target = build_model("faster_rcnn", ["x"], img_size=64, **OPTS)
    report = load_transfer(target, tmp_path / "tv.pt")
    assert report["kind"] == "torchvision"
    assert sorted(report["loaded"]) == ["box_head.bbox_pred.weight", "box_head.fc.1.weight",
                                        "proposal_generator.head.cls_logits.bias"]
    assert torch.equal(target.state_dict()["box_head.bbox_pred.weight"], sd["box_head.bbox_pred.weight"])
    assert [e["name"] for e in report["skipped"]] == ["roi_heads.unknown.weight"]


def test_unusable_files_are_named(tmp_path):
    model = build_model("faster_rcnn", ["x"], img_size=64, **OPTS)
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_transfer(model, tmp_path / "nothere.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_transfer(model, tmp_path / "junk.pt")
    torch.save({"zzz.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt.*no tensor matches"):
        load_transfer(model, tmp_path / "other.pt")


def test_freeze_n_stages_exactly_and_they_do_not_train(tmp_path):
    path, _ = _source(tmp_path)
    trainer = Trainer(_cfg(tmp_path, weights=str(path), freeze_backbone=2, lr=1e-2))
    model = trainer.model
    # Independently: the first two stages of the simple backbone are c1 and c2.
    expected = {k for k, _ in model.named_parameters()
                if k.startswith(("backbone.body.stages.c1.", "backbone.body.stages.c2."))}
    assert expected and {k for k, p in model.named_parameters() if not p.requires_grad} == expected
    assert set(trainer.transfer["frozen"]["parameters"]) == expected
    assert trainer.transfer["frozen"]["stages"] == ["c1", "c2"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.fit()
    after = model.state_dict()
    frozen_state = [k for k in before if k.startswith(("backbone.body.stages.c1.", "backbone.body.stages.c2."))]
    for k in frozen_state:  # weights and batch-norm statistics (kept in eval mode) unchanged
        assert torch.equal(before[k], after[k]), k
    assert any("running_mean" in k for k in frozen_state)
    assert not torch.equal(before["backbone.body.stages.c3.0.weight"], after["backbone.body.stages.c3.0.weight"])
    assert not torch.equal(before["backbone.body.stages.c3.1.running_mean"],
                           after["backbone.body.stages.c3.1.running_mean"])


def test_freeze_errors():
    model = build_model("faster_rcnn", ["x"], img_size=64, **OPTS)
    with pytest.raises(ValueError, match=r"--freeze-backbone 6.*5 stages \(c1, c2, c3, c4, c5\)"):
        freeze_backbone(model, 6, "faster_rcnn")
    assert freeze_backbone(model, 0).parameters == []
    flat = build_model("fcn_same_res", ["background", "x"], img_size=32)
    with pytest.raises(ValueError, match="no backbone"):
        freeze_backbone(flat, 1, "fcn_same_res")
    resnet = build_model("cls_loc", ["x"], img_size=32, backbone="resnet18")
    frozen = freeze_backbone(resnet, 1)
    assert frozen.available == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert sorted(frozen.parameters) == ["backbone.bn1.bias", "backbone.bn1.weight", "backbone.conv1.weight"]


def test_resume_with_weights_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--resume and --weights"):
        Trainer(_cfg(tmp_path, weights="x.pt", resume=True))


def test_cli_writes_transfer_json(tmp_path, capsys):
    path, _ = _source(tmp_path)
    opts = [a for k, v in OPTS.items() for a in ("-o", f"{k}={json.dumps(v).replace(' ', '')}")]
    argv = ["train", "faster_rcnn", "--data", DATA, "--img-size", "64", "--epochs", "1", "--batch", "4",
            "--device", "cpu", "--samples", "1", "--out", str(tmp_path / "runs"),
            "--weights", str(path), "--freeze-backbone", "1", *opts]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "loaded 56 tensors, re-initialised 4" in out and "frozen: 1 of 5 stages" in out
    report = json.loads((tmp_path / "runs" / "faster_rcnn" / "train1" / "transfer.json").read_text())
    assert report["counts"]["reinitialised"] == 4 and report["frozen"]["stages"] == ["c1"]
    assert main([*argv, "--freeze-backbone", "9"]) == 2
    assert "--freeze-backbone 9" in capsys.readouterr().err


def test_study_subsets_and_docs_section(tmp_path):
    """benchmarks/transfer.py's nested, seeded training-set fractions; make_docs shows its plot."""
    from tests.benchmark_scripts import load_benchmark

    study = load_benchmark("transfer")
    spec, split, n = study.subset_split("shapes:size=64,mode=scene,n=16,n_val=8", "train", 0.25, 0, tmp_path)
    assert (spec, split, n) == ("shapes:size=64,mode=scene,n_val=8,n=4", "train", 4)
    if study.RACCOON.is_dir():
        lists = [study.subset_split(str(study.RACCOON), study.RACCOON_SPLIT[0], f, 0, tmp_path)[1:]
                 for f in (0.25, 0.5, 1.0)]
        names = [set(open(path).read().split()) for path, _ in lists]
        assert [len(s) for s in names] == [k for _, k in lists] == [40, 80, 160]
        assert names[0] <= names[1] <= names[2]
    rows = [{"benchmark": "transfer_x", "model": "m", "init": init, "fraction": f, "mAP": 0.1 * i,
             "mAP50": 0.2 * i, "train_images": int(f * 8)}
            for i, (init, f) in enumerate([("scratch", 0.5), ("transfer", 0.5), ("scratch", 1.0), ("transfer", 1.0)])]
    table = study.study_table(rows)
    assert "transfer mAP" in table and "50%" in table and "0.100" in table
    (tmp_path / "transfer_x.json").write_text(json.dumps(rows))
    study.plot_study(rows, tmp_path / "transfer_x.png", "t")
    text = load_benchmark("make_docs").render(tmp_path)
    assert "The transfer-learning study on `x`" in text
    assert "![transfer_x](../benchmarks/results/transfer_x.png)" in text


def test_yolo_priors_are_refitted_after_loading(tmp_path):
    torch.manual_seed(0)
    src = build_model("yolo", SOURCE_CLASSES, img_size=64, backbone="simple")
    path = tmp_path / "yolo.pt"
    save_checkpoint(path, {"builder": "yolo", "builder_args": src.builder_args, "model": src.state_dict()})
    trainer = Trainer(_cfg(tmp_path, model="yolo", model_opts={"backbone": "simple"}, weights=str(path)))
    report = trainer.transfer
    assert report["refitted"] == ["anchors"]  # k-means on the new data, not the file's
    assert not torch.equal(trainer.model.anchors, src.anchors)
    assert {e["name"] for e in report["reinitialised"]} == {f"heads.{i}.1.{w}" for i in range(len(src.heads))
                                                             for w in ("weight", "bias")}
