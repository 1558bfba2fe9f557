"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


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


@pytest.fixture
def single_thread():
    """One torch thread for tests of tiny tensors: threads gain nothing there, and on a shared 2-core
    machine two threads made such tests 5-10x slower. Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_accelerator_state():
    """A fresh accelerate state before and after the test. ``AcceleratorState`` is a process-wide singleton
    that keeps the first mixed precision / device it was built with; tests that build ``Accelerator``s
    (recipes, ``genrec.training.train``) each pick their own. Use with
    ``pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")``."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(autouse=True)
def recipes_keep_the_test_thread_count(monkeypatch):
    """Recipes pick torch's thread count from the free cores unless OMP_NUM_THREADS says otherwise
    (``genrec.training.choose_num_threads``); in tests they keep the count the test runs with, so two
    recipe runs in one test compute with the same threads (exact comparisons) whatever the machine's load."""
    if "OMP_NUM_THREADS" not in os.environ:
        monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
