"""What every verb module of the command line shares: the ``--data`` help and ``-o KEY=VALUE`` parsing.

Only the standard library (and PyYAML, on use) is imported, so building the parser stays cheap.
"""

from __future__ import annotations

from typing import Any

DATA_HELP = ("dataset: a path (COCO json, PASCAL VOC, image/label-PNG folders, LSP joints.mat, "
             "Penn-Fudan; auto-detected) or 'shapes[:key=value,...]' (built-in, e.g. shapes:size=96,n=2000)")


def parse_opts(items: list[str]) -> dict[str, Any]:
    """``["upsample=nearest", "width=32"]`` -> ``{"upsample": "nearest", "width": 32}`` (YAML scalars)."""
    import yaml

    opts: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"-o {item!r}: expected KEY=VALUE")
        opts[key.replace("-", "_")] = yaml.safe_load(value) if value else ""
    return opts
