import pickle

import pytest
import torch

from detseg.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_round_trip(tmp_path):
    p = tmp_path / "a" / "last.pt"
    save_checkpoint(p, {"model": {"w": torch.ones(2)}, "epoch": 3})
    s = load_checkpoint(p)
    assert s["epoch"] == 3 and torch.equal(s["model"]["w"], torch.ones(2))
    assert [f.name for f in p.parent.iterdir()] == ["last.pt"]  # no temp files left


def test_missing_truncated_and_foreign(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    p = tmp_path / "x.pt"
    save_checkpoint(p, {"epoch": 1})
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(p)
    torch.save({"w": torch.ones(1)}, p)
    with pytest.raises(CheckpointError, match="not a detseg checkpoint"):
        load_checkpoint(p)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_refuses_pickled_objects(tmp_path):
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"format": "detseg-checkpoint-1", "x": Evil()}, f)
    with pytest.raises(CheckpointError):
        load_checkpoint(p)


class WritesFile:
    """A pickle payload that, unpickled without the safe loader, writes a file."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        from pathlib import Path

        return (Path.write_text, (Path(self.target), "pwned"))


def _evil_files(tmp_path, target):
    payload = {"format": "detseg-checkpoint-1", "builder": "fcn", "model": WritesFile(target)}
    zipped, raw = tmp_path / "evil_zip.pt", tmp_path / "evil_raw.pt"
    torch.save(payload, zipped)  # torch's zip format
    with open(raw, "wb") as f:
        pickle.dump(payload, f)  # a bare pickle (torch's legacy format)
    return zipped, raw


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_checkpoint_writes_no_file(tmp_path):
    from detseg.engine.checkpoint import load_model

    # The payload is real: an unsafe load writes the file.
    proof = tmp_path / "proof.txt"
    pickle.loads(pickle.dumps(WritesFile(proof)))
    assert proof.read_text() == "pwned"

    target = tmp_path / "pwned.txt"
    for path in _evil_files(tmp_path, target):
        for load in (load_checkpoint, load_model):
            with pytest.raises(CheckpointError, match=rf"{path.name}: checkpoint: refused by the safe "
                                                      r"loader \(weights_only=True\).*nothing in it was run"):
                load(path)
        assert not target.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_checkpoint_refused_by_resume_and_cli(tmp_path, capsys):
    from detseg.cli.main import main
    from detseg.engine.trainer import TrainConfig, Trainer

    target = tmp_path / "pwned.txt"
    zipped, _ = _evil_files(tmp_path, target)
    run = tmp_path / "runs" / "fcn" / "train1"
    run.mkdir(parents=True)
    zipped.rename(run / "last.pt")
    with pytest.raises(CheckpointError, match="refused by the safe loader"):
        Trainer(TrainConfig(model="fcn", data="shapes:size=32,n=8", device="cpu", quiet=True,
                            resume=str(run)))
    assert main(["eval", str(run / "last.pt"), "--data", "shapes:size=32,n=8"]) == 2
    err = capsys.readouterr().err
    assert "last.pt: checkpoint: refused by the safe loader" in err and "Traceback" not in err
    assert not target.exists()


def test_resumed_checkpoint_cannot_move_the_run_folder(tmp_path):
    """A last.pt whose saved config names other folders still writes only into its own run."""
    from detseg.engine.trainer import TrainConfig, Trainer

    run = Trainer(TrainConfig(model="fcn", data="shapes:size=32,n=16", epochs=1, img_size=32,
                              batch=8, device="cpu", quiet=True, samples=1,
                              out=str(tmp_path / "runs"))).fit()
    state = load_checkpoint(run / "last.pt")
    state["config"].update(out=str(tmp_path / "elsewhere"), name="../../escaped", epochs=2)
    state.pop("format")
    save_checkpoint(run / "last.pt", state)
    before = {p for p in tmp_path.rglob("*")}
    again = Trainer(TrainConfig(model="fcn", device="cpu", quiet=True, resume=str(run)))
    assert again.fit() == run
    assert {p for p in tmp_path.rglob("*")} == before, "files appeared outside the run's own files"
    assert load_checkpoint(run / "last.pt")["epoch"] == 2  # it did train, in its own folder


def _model_checkpoint(path, classes):
    from detseg.models.zoo import build_model

    m = build_model("fcn", classes=classes, img_size=32)
    save_checkpoint(path, {"builder": m.builder_name, "builder_args": m.builder_args, "task": m.task,
                           "classes": m.classes, "model": m.state_dict()})
    return path


def test_newer_detseg_warns_and_newer_format_is_refused(tmp_path):
    from detseg import __version__

    p = _model_checkpoint(tmp_path / "a.pt", ["background", "x"])
    assert load_checkpoint(p)["detseg_version"] == __version__  # every checkpoint names its writer
    state = torch.load(p, weights_only=True)
    major, minor = (int(v) for v in __version__.split(".")[:2])
    state["detseg_version"] = f"{major}.{minor + 1}.0"
    torch.save(state, p)
    with pytest.warns(UserWarning, match=rf"a\.pt: checkpoint written by detseg {major}\.{minor + 1}\.0, "
                                         rf"newer than this detseg {__version__}"):
        load_checkpoint(p)
    state["format"] = "detseg-checkpoint-2"
    torch.save(state, p)
    with pytest.raises(CheckpointError, match=rf"a\.pt: checkpoint: format 'detseg-checkpoint-2' was written by "
                                              rf"a newer detseg \({major}\.{minor + 1}\.0\); this detseg "
                                              rf"{__version__} reads 'detseg-checkpoint-1': upgrade detseg"):
        load_checkpoint(p)
    state["detseg_version"] = f"{major}.{minor}.99"  # a newer patch of this version: no warning
    state["format"] = "detseg-checkpoint-1"
    torch.save(state, p)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(p)


def test_classes_other_than_the_data_are_refused(tmp_path, capsys):
    from detseg.api import evaluate
    from detseg.cli.main import main

    p = _model_checkpoint(tmp_path / "m.pt", ["background", "cat", "dog"])
    with pytest.raises(ValueError, match=r"shapes.*classes \[.*'circle'.*\] differ from the model's "
                                         r"\['background', 'cat', 'dog'\]"):
        evaluate(p, "shapes:size=32,n=4", split="val", device="cpu")
    assert main(["eval", str(p), "--data", "shapes:size=32,n=4"]) == 2
    err = capsys.readouterr().err
    assert "differ from the model's ['background', 'cat', 'dog']" in err and "Traceback" not in err
