"""Import a script of ``benchmarks/`` (not a package) as a module, for the tests of its helpers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module; skips the test when the script is absent."""
    path = BENCH / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    sys.path.insert(0, str(BENCH))  # the scripts import their sibling `common`
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod
