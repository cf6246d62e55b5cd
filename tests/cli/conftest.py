"""Fixtures of the command-line tests (helpers in cli_support.py)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_support import make_log, make_queue, run
from click.testing import Result


@pytest.fixture
def cli() -> Callable[..., Result]:
    """``fastq ARGS`` through click's runner."""
    return run


@pytest.fixture
def log_dir(tmp_path: Path, rng: random.Random) -> tuple[Path, list[tuple[bytes | None, bytes]]]:
    """A closed log of 200 records over at least 5 segments, groups billing@150, audit@20."""
    directory = tmp_path / "events"
    records = make_log(directory, rng)
    assert len([f for f in os.listdir(directory) if f.endswith(".log")]) >= 5, rng
    return directory, records


@pytest.fixture
def queue_dir(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A closed durable queue with six dead letters (see make_queue)."""
    ids = make_queue(tmp_path)
    return tmp_path / "jobs", ids
