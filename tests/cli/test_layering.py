"""The package's layering (issue 12): the CLI sits on top, nothing below it imports it; one table
printer; the task families live under ``models/``; no import circles between modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "src" / "detseg"


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(path: Path) -> set[str]:
    """Every ``detseg...`` module a file imports, at module level or inside functions; imports
    under ``if TYPE_CHECKING:`` (annotations only, never run) are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for b in node.body for n in ast.walk(b)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("detseg")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("detseg"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_nothing_outside_cli_imports_the_cli():
    hits = []
    for f in PKG.rglob("*.py"):
        if PKG / "cli" in f.parents or f.name == "__main__.py":  # the entry point sits above the CLI
            continue
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            # the check, `grep -rn "detseg.cli"`, plus the other spelling of the import
            if re.search(r"detseg.cli|from detseg import cli\b", line):
                hits.append(f"{f.relative_to(PKG)}:{i}: {line.strip()}")
    assert not hits, "modules below the CLI import it:\n" + "\n".join(hits)


def test_one_format_table_and_the_family_folders():
    defs = [f.relative_to(PKG) for f in PKG.rglob("*.py")
            if re.search(r"^def format_table\(", f.read_text(encoding="utf-8"), re.M)]
    assert [str(d) for d in defs] == ["tables.py"]
    assert not (PKG / "detection").exists() and not (PKG / "cli.py").exists()
    for family in ("segmentation", "localization", "detection"):
        assert (PKG / "models" / family / "__init__.py").is_file(), family


def test_no_import_circles():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = {d for d in _imports(path) if d in modules and d != name}
        # `from detseg.x import y` names module x.y when it exists, else only x
        graph[name] = {d for d in deps if d != "detseg" and not name.startswith(d + ".")}
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        for dep in sorted(graph.get(node, ())):
            if dep in stack:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in done:
                visit(dep, stack + [dep], done)
        done.add(node)

    done: set[str] = set()
    for n in sorted(graph):
        if n not in done:
            visit(n, [n], done)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_layers_import_downwards():
    """data, evaluation and layers know nothing of models; models nothing of the engine, the
    export package (no export workarounds in model code) or above."""
    above = {"data": ("models", "engine", "api", "demo"), "evaluation": ("models", "engine", "api", "demo"),
             "layers": ("models", "engine", "api", "demo"), "models": ("engine", "api", "demo", "export")}
    bad = []
    for name, path in _modules().items():
        parts = name.split(".")
        if len(parts) < 2 or parts[1] not in above:
            continue
        for dep in _imports(path):
            dparts = dep.split(".")
            if len(dparts) > 1 and dparts[1] in above[parts[1]]:
                bad.append(f"{name} imports {dep}")
    assert not bad, "\n".join(sorted(set(bad)))
