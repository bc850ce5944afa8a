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
