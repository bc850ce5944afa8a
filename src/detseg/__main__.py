"""``python -m detseg`` (and ``torchrun ... -m detseg train ...``) runs the CLI; this entry point sits above it."""

import sys

from detseg import cli

if __name__ == "__main__":
    sys.exit(cli.main())
