"""Shared fixtures: a seeded RNG whose seed is printed, and the stress scale."""

from __future__ import annotations

import os
import random
import zlib

import pytest

SEED = int(os.environ.get("FASTQ_SEED", random.SystemRandom().randrange(2**32)))
STRESS_SCALE = float(os.environ.get("FASTQ_STRESS_SCALE", "1"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"fastq: FASTQ_SEED={SEED} FASTQ_STRESS_SCALE={STRESS_SCALE} (set FASTQ_SEED to replay)"


class SeededRandom(random.Random):
    """random.Random whose repr says how to replay it, so a failing assert shows the seed.

    The per-test seed is derived from the session seed and the test id; replay with the
    session seed (FASTQ_SEED) and the same test id."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.seed_value = seed

    def __repr__(self) -> str:
        return f"SeededRandom(seed={self.seed_value}; replay with FASTQ_SEED={SEED})"


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> SeededRandom:
    """A per-test RNG derived from the session seed and the test id (stable under -k)."""
    return SeededRandom(SEED ^ zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def stress_scale() -> float:
    """Multiplier for stress sizes (FASTQ_STRESS_SCALE; the soak tier sets it > 1)."""
    return STRESS_SCALE
