"""Fixtures for the targets tests: the shared real FreeSurfer data."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fs_data(data_dir) -> Path:
    """The real FreeSurfer subjects (tests/conftest.py: skip when absent, fail on CI)."""
    return data_dir
