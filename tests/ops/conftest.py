"""Fixtures of the operations tests: pools that are always stopped, and tracing that is
always turned off again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import fastq.tracing
from fastq.pipeline.pool import ConsumerPool


@pytest.fixture
def pools() -> Iterator[list[ConsumerPool]]:
    """Pools to stop at the end of the test, whatever happened (threads or asyncio mode)."""
    made: list[ConsumerPool] = []
    yield made
    for p in made:
        if p.state == "stopped":
            continue
        if p.mode == "threads":
            p.stop(timeout=10)
        elif p.state == "new":
            asyncio.run(p.astop())


@pytest.fixture(autouse=True)
def _no_tracing() -> Iterator[None]:
    """A test that instruments never leaves spans on for the next one."""
    yield
    fastq.tracing.uninstrument()
