"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory from ``$GENREC_DATA_DIR``; skips the test (with the reason) when unset or missing."""
    value = os.environ.get("GENREC_DATA_DIR")
    if not value:
        pytest.skip("GENREC_DATA_DIR is not set (point it at the folder holding amazon_beauty/, ml_100k/, ...)")
    path = Path(value).expanduser()
    if not path.is_dir():
        pytest.skip(f"GENREC_DATA_DIR={value} does not exist")
    return path
