"""A short round of the readers' mutation fuzzing (detseg.data.fuzz; the 100,000-input run is
benchmarks/fuzz_readers.py): every reader, only detseg's own clear errors."""

from detseg.data.fuzz import CASES, fuzz


def test_mutated_annotations_give_only_clear_errors(tmp_path):
    tallies = fuzz(tmp_path, inputs=30 * len(CASES), seed=12345, timeout=20.0)
    assert set(tallies) == {c.name for c in CASES}
    bad = {name: t.samples for name, t in tallies.items() if t.unexpected}
    assert not bad, bad
    assert all(t.inputs == 30 for t in tallies.values())
    # the mutations do bite: some inputs of the structured formats end in clear errors
    assert sum(t.clear for t in tallies.values()) > 0


# (seed, input) of the 100,000-input run (benchmarks/fuzz_readers.py, seeds 0 and 1) that were not
# clear errors before their fix: a VOC <filename> and a yaml path longer than the file system
# allows (OSError ENAMETOOLONG from Path.is_file), COCO file_name given as a dict / list / int
# (TypeError in the image-folder vote), a compressed RLE string that ends early (RuntimeError).
FOUND = [(1, 35170), (0, 49320), (1, 6179), (1, 30999), (1, 1901), (1, 3271), (0, 7221),
         (1, 3041), (0, 4111)]


def test_inputs_the_long_run_found_are_clear_errors_now(tmp_path):
    import random

    from detseg.data.fuzz import mutate, run_one

    for seed, n in FOUND:
        case = CASES[n % len(CASES)]
        root = tmp_path / f"{case.name}_{seed}_{n}"
        root.mkdir()
        case.build(root)
        data = mutate(case, (root / case.target).read_bytes(), random.Random(seed * 1_000_003 + n))
        outcome, e = run_one(root, case, data)
        assert outcome in ("ok", "clear"), (seed, n, case.name, repr(e))
