"""Plain monospace tables: the one table printer of detseg (CLI verbs, evaluators, demo, sweeps).

No third-party import, so any layer may use it, from the evaluators up to the command line.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    try:
        float(str(v).rstrip("%xs"))
    except ValueError:
        return str(v) == "-"  # the NaN marker
    return True


def format_table(header: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> str:
    """A plain monospace table; floats print with 3 decimals, NaN as ``-``.

    The first column is left-aligned; any other column whose cells are all numbers (or numeric
    strings such as ``"0.512"``, ``"12s"``, ``"3.1x"``) is right-aligned, text columns left-aligned.
    Lines carry no trailing spaces.
    """
    rows = [list(r) for r in rows]
    body = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]
    right = [i > 0 and bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cells, widths, right)).rstrip()

    lines = [title] if title else []
    lines += [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body)]
    return "\n".join(lines)
