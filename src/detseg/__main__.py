"""``python -m detseg`` (and ``torchrun ... -m detseg train ...``) runs the CLI."""

import sys

from detseg.cli import main

sys.exit(main())
