"""docs/RELIABILITY.md names real tests: every ``tests/...py::name`` in it must exist."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "RELIABILITY.md"
NODE = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)(?:\[[^\]`]*\])?`")


def functions_in(path: Path) -> set[str]:
    """``name`` and ``Class::name`` of every test function in a file (read, not imported)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{f.name}" for f in node.body
                      if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return names


def test_every_listed_test_exists():
    rows = [l for l in DOC.read_text(encoding="utf-8").splitlines() if l.startswith("| ")
            and not l.startswith("| case ")]
    nodes = [NODE.search(l) for l in rows]
    missing_id = [l for l, m in zip(rows, nodes) if m is None]
    assert not missing_id, f"rows without a test node id: {missing_id}"
    cache: dict[str, set[str]] = {}
    bad = []
    for m in nodes:
        file, name = m.group(1), m.group(2)
        path = REPO / file
        if not path.is_file():
            bad.append(f"{file} (no such file)")
            continue
        if name not in cache.setdefault(file, functions_in(path)):
            bad.append(f"{file}::{name}")
    assert not bad, f"docs/RELIABILITY.md names tests that do not exist: {bad}"
    assert len(rows) >= 40  # issue 17 asks for at least 40 cases
