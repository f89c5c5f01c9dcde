"""``python -m damt.cli``: an alias of :mod:`damt.app.cli`, where the command line lives."""

import sys

from damt.app.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
