"""The ``detseg segment-meanshift`` verb: mean-shift regions of images, no training
(:mod:`detseg.classic.meanshift`, Comaniciu & Meer 2002).

    detseg segment-meanshift IMAGE... --out DIR [--spatial-bw] [--color-bw] [--max-pixels] [--seed-spacing]

Writes ``<stem>_regions.png`` (mean colours + boundaries) and ``<stem>_regions.npy`` (int64 ids).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from detseg.classic.meanshift import (DEFAULT_COLOR_BW, DEFAULT_MAX_PIXELS, DEFAULT_SEED_SPACING,
                                      DEFAULT_SPATIAL_BW, draw_regions, meanshift_segment)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``segment-meanshift IMAGE... --out DIR [--spatial-bw] [--color-bw] [--max-pixels]``."""
    p = subparsers.add_parser(
        "segment-meanshift", help="mean-shift regions of images (classic, no training): "
        "<stem>_regions.png (mean colours + boundaries) and <stem>_regions.npy (int64 ids)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--spatial-bw", type=float, default=DEFAULT_SPATIAL_BW,
                   help="spatial bandwidth in pixels (default %(default)s)")
    p.add_argument("--color-bw", type=float, default=DEFAULT_COLOR_BW,
                   help="colour bandwidth in L*a*b* units (default %(default)s)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="larger images are clustered shrunk to this many pixels, then mapped back "
                        "(default %(default)s)")
    p.add_argument("--seed-spacing", type=float, default=DEFAULT_SEED_SPACING,
                   help="seed grid cell in bandwidths; 1 = scikit-learn's bin seeding, larger is "
                        "faster with fewer regions (default %(default)s)")
    return p


def run(args: argparse.Namespace) -> int:
    """Segment every image of ``args.images``; write ``<stem>_regions.png`` and ``.npy`` to ``--out``.

    A file that cannot be read is reported on stderr and skipped; the exit code is 1 then.
    """
    from detseg.data.base import read_image
    from detseg.io import atomic_path, expand_inputs, save_png

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for f in expand_inputs(args.images):
        try:
            image = read_image(f)
        except ValueError as e:
            print(f"skipped {e}", file=sys.stderr)
            failed += 1
            continue
        start = time.perf_counter()
        regions = meanshift_segment(
            image, args.spatial_bw, args.color_bw,
            getattr(args, "max_pixels", DEFAULT_MAX_PIXELS),
            seed_spacing=getattr(args, "seed_spacing", DEFAULT_SEED_SPACING))
        took = time.perf_counter() - start
        save_png(out / f"{f.stem}_regions.png", draw_regions(image, regions))
        with atomic_path(out / f"{f.stem}_regions.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, regions)
        print(f"{f}: {int(regions.max()) + 1} regions in {took:.2f} s")
    print(f"-> {out}")
    return 1 if failed else 0
