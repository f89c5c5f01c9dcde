"""Files shipped inside the damt package (package data), found with importlib.resources so they
work from a wheel as well as from a checkout.

``damt/configs/tiny.yaml`` is the tiny CPU configuration; ``configs/tiny.yaml`` at the top of the
repository is the user-facing copy of the same bytes (tests/test_package.py checks that they
are equal; README.md, Layout, says why there are two).
"""

from __future__ import annotations

from contextlib import contextmanager
from importlib.resources import as_file, files
from pathlib import Path
from typing import Iterator

#: the packaged tiny configuration, relative to the damt package
TINY_CONFIG = "configs/tiny.yaml"


@contextmanager
def tiny_config() -> Iterator[Path]:
    """A real file path of the packaged tiny config for the block (a temporary copy only if the
    package is not on a file system, e.g. inside a zip)."""
    with as_file(files("damt").joinpath(TINY_CONFIG)) as path:
        yield Path(path)
