"""Resources during training (issue 17): resident memory stays flat after warm-up, and the data
loader holds no more decoded images than its configuration allows."""

import weakref

import torch

from tests.benchmark_scripts import load_benchmark
from detseg.engine.trainer import TrainConfig, Trainer


def test_rss_flat_after_warmup_short_run():
    """A 150-iteration version of ``benchmarks/reliability.py`` (the 2,000-iteration run must stay
    within 5 %; this short one, whose allocator has settled less, within 15 %). The reference is
    taken after the second epoch's validation, checkpoints and drawings."""
    bench = load_benchmark("reliability")
    r = bench.measure_rss(iters=150, warmup=60, val_every=2, n=120, batch=4)
    assert r["iterations"] >= 150
    assert abs(r["growth_max_pct"]) <= 15.0, r


class CountingSet(torch.utils.data.Dataset):
    """Wraps a dataset; counts the decoded images that are alive (weakref finalizers)."""

    def __init__(self, inner):
        self.inner, self.live, self.peak, self.served = inner, 0, 0, 0

    def __len__(self):
        return len(self.inner)

    def __getattr__(self, name):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _gone(self):
        self.live -= 1

    def __getitem__(self, i):
        image, target = self.inner[i]
        self.live += 1
        self.served += 1
        self.peak = max(self.peak, self.live)
        weakref.finalize(image, self._gone)
        return image, target


def test_loader_holds_at_most_two_batches_of_images(tmp_path):
    """--workers 0: no prefetch, so the batch being trained on plus the one being loaded."""
    batch = 4
    trainer = Trainer(TrainConfig(model="fcn", data="shapes:size=32,n=24,n_val=8", epochs=2,
                                  img_size=32, batch=batch, device="cpu", workers=0, quiet=True,
                                  samples=2, out=str(tmp_path)))
    trainer.train_set = CountingSet(trainer.train_set)
    trainer.val_set = CountingSet(trainer.val_set)
    trainer.train_loader = trainer._train_loader()
    trainer.fit()
    train, val = trainer.train_set, trainer.val_set
    assert train.served == 2 * 24 and val.served >= 2 * 8  # everything was read ...
    assert train.peak <= 2 * batch, train.peak  # ... but never more than two batches at once
    assert val.peak <= 2 * batch, val.peak
    assert train.live == 0  # nothing kept after the epoch
