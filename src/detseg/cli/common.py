"""What every verb module of the command line shares: the ``--data`` help and ``-o KEY=VALUE`` parsing.

Only the standard library (and PyYAML, on use) is imported, so building the parser stays cheap.
"""

from __future__ import annotations

from typing import Any

DATA_HELP = ("dataset: a path (COCO json, PASCAL VOC, image/label-PNG folders, LSP joints, "
             "Penn-Fudan; found by content), a dataset yaml (format, images, annotations, classes, "
             "splits; see the README), or 'shapes[:key=value,...]' (built-in, e.g. shapes:size=96,n=2000)")
IMAGES_HELP = "the image folder, named explicitly (with --annotations; --data is then an optional root)"
ANNOTATIONS_HELP = "the annotations: a VOC XML folder, a COCO json, an LSP joints file or a label-PNG folder"


def add_source_arguments(parser) -> None:
    """``--images DIR --annotations DIR|FILE``: the parts of a dataset on the command line."""
    parser.add_argument("--images", default=None, metavar="DIR", help=IMAGES_HELP)
    parser.add_argument("--annotations", default=None, metavar="PATH", help=ANNOTATIONS_HELP)


def parse_opts(items: list[str]) -> dict[str, Any]:
    """``["upsample=nearest", "width=32"]`` -> ``{"upsample": "nearest", "width": 32}`` (YAML scalars)."""
    import yaml

    opts: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"-o {item!r}: expected KEY=VALUE")
        try:
            opts[key.replace("-", "_")] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError as e:  # e.g. "-o sizes=[1,": an unclosed list
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"-o {item!r}: the value is not a YAML scalar or list ({reason})") from None
    return opts
