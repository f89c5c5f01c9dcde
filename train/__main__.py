"""``python -m train [CONFIG] [--cache DIR] [--out DIR] [--resume] [--max-steps N] [--set k=v ...]``

The same command as ``damt train`` (one parser, one code path), runnable as a module so that
``torchrun ... -m train`` can start it on every rank once DDP lands.
"""

import sys

from damt.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
