"""The ``detseg`` command line: one module per verb group, on top of everything else.

- :mod:`~detseg.cli.main` -- the parser and verb dispatch; ``models``, ``train``, ``sweep``,
  ``eval``, ``predict``, ``demo``, ``data check``;
- :mod:`~detseg.cli.detection` -- ``proposals eval`` and ``svm`` (R-CNN's second stage);
- :mod:`~detseg.cli.classic` -- ``segment-meanshift``;
- :mod:`~detseg.cli.export` -- ``export``; :mod:`~detseg.cli.serve` -- ``serve`` (HTTP + a page);
- :mod:`~detseg.cli.common` -- the ``--data`` help and ``-o KEY=VALUE`` parsing they share.

No module outside this package imports it (``tests/cli/test_layering.py`` checks).
"""

from detseg.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
