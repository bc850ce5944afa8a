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
