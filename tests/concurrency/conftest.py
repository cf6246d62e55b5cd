"""Fixtures shared by the threaded suites."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    """GIL builds: hand the GIL over every 10 us instead of 5 ms, so the threads interleave
    inside batches rather than taking turns (free-threaded builds run them in parallel).
    Suites opt in with ``pytestmark = pytest.mark.usefixtures("frequent_switches")``."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(before)
