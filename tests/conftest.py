"""Shared fixtures: a seeded RNG whose seed is printed, the stress scale, and a redis-server
(tests/redis_server.py) for the Redis backend tests."""

from __future__ import annotations

import importlib.util
import os
import random
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from redis_server import RedisServer

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


# ---- Redis (issue 8): one redis-server per session, on a free loopback port ----------------
#
# The fixtures FAIL, never skip, when redis-server or redis-py is missing: a Redis suite that
# silently skips would pass CI without testing anything. .ci/run installs both.


def _redis_missing() -> str | None:
    """Why the Redis fixtures cannot run here (with how to fix it), or None."""
    from redis_server import INSTALL_HINT, install_if_missing

    problems = []
    if install_if_missing() is None:  # as root on Debian: installs it, as .ci/run does
        problems.append(f"redis-server is not on PATH; {INSTALL_HINT}")
    if importlib.util.find_spec("redis") is None:
        problems.append(
            "redis-py is not installed: pip install -e '.[test]' (or pip install redis)"
        )
    return "; ".join(problems) or None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (appendonly yes, appendfsync always), stopped at the
    end of the session whatever happened (Ctrl-C included). Tests that kill or restart it
    leave it to the next test's `redis_url`, which starts it again if it is down."""
    from redis_server import RedisServer, RedisServerError

    why = _redis_missing()
    if why is not None:
        pytest.fail(f"the Redis tests need redis-server and redis-py: {why}", pytrace=False)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except RedisServerError as exc:
        pytest.fail(f"could not start redis-server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, after FLUSHALL (restarted first if a test stopped it)."""
    if not redis_server.ping():
        redis_server.stop()
        redis_server.start()
    client = redis_server.client()
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def redis_backend(redis_url: str) -> Iterator[Any]:
    """A fastq.backends.RedisStreams on the session server, with a prefix of its own; closed
    after the test."""
    from fastq.backends import RedisStreams

    backend = RedisStreams(redis_url, prefix=f"t{uuid.uuid4().hex[:12]}")
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """make(**kwargs) -> a started RedisServer of the test's own (in tmp_path/redis-N), for
    tests that kill, restart or reconfigure a server; all are stopped after the test."""
    from redis_server import RedisServer, RedisServerError

    why = _redis_missing()
    if why is not None:
        pytest.fail(f"the Redis tests need redis-server and redis-py: {why}", pytrace=False)
    made: list[RedisServer] = []

    def make(**kwargs: Any) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(made)}", **kwargs)
        made.append(server)
        try:
            server.start()
        except RedisServerError as exc:
            pytest.fail(f"could not start redis-server: {exc}", pytrace=False)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.stop()
