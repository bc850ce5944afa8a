"""benchmarks/segmentation.py helpers on tiny inputs."""

from __future__ import annotations

from tests.benchmark_scripts import load_benchmark


def test_pregenerate_fills_a_caching_dataset_and_skips_others():
    bench = load_benchmark("segmentation")
    from detseg.data import build_dataset

    ds = build_dataset("shapes:size=32,n=6", split="train", task="semantic")
    assert bench.pregenerate(ds) > 0 and len(ds._cache) == 6
    uncached = build_dataset("shapes:size=32,n=6,cache=0", split="train", task="semantic")
    assert bench.pregenerate(uncached) == 0.0 and not uncached._cache
    assert bench.pregenerate([1, 2, 3]) == 0.0  # not a caching dataset: left alone


def test_cli_flags():
    bench = load_benchmark("segmentation")
    seen = {}
    bench.train_budgeted = lambda name, opts, args: seen.update(vars(args)) or {}
    bench.stamp = lambda rec, *a: rec
    bench.append_or_replace = lambda *a, **k: None
    bench.main(["--data", "shapes:size=32,n=4", "--models", "fcn", "--pregenerate",
                "--warmup-epochs", "0.1"])
    assert seen["pregenerate"] is True and seen["warmup_epochs"] == 0.1
