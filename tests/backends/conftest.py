"""The backend conformance suite's fixtures: every test in tests/backends runs once per backend
(in-process memory, the durable segment log, Redis Streams) with the same assertions.

- ``backend``: the backend's name, parametrised ``memory`` / ``log`` / ``redis``;
- ``make_queue(name, **kw)`` / ``make_topic(name, partitions=..., **kw)``: a ``fastq.Queue`` /
  ``fastq.Topic`` on that backend (``path=tmp_path`` for the log, ``backend=redis_backend``
  for Redis), closed at teardown.

The Redis server and backend come from the shared fixtures in tests/conftest.py
(``redis_backend``: one server per session, a fresh key prefix per test), requested only by
the redis parametrisation, so the in-process backends need no server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fastq

BACKENDS = ("memory", "log", "redis")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test (its name)."""
    return str(request.param)


@pytest.fixture
def backend_options(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The constructor keywords that put a Queue or Topic on ``backend``."""
    if backend == "memory":
        return {}
    if backend == "log":
        return {"path": str(tmp_path)}
    assert backend == "redis", backend
    return {"backend": request.getfixturevalue("redis_backend")}


@pytest.fixture
def make_queue(backend_options: dict[str, Any]) -> Iterator[Callable[..., fastq.Queue]]:
    """``make_queue(name, **kw)``: a fastq.Queue on the backend under test."""
    made: list[fastq.Queue] = []

    def make(name: str, **kw: Any) -> fastq.Queue:
        q = fastq.Queue(name, **backend_options, **kw)
        made.append(q)
        return q

    yield make
    errors: list[BaseException] = []
    for q in reversed(made):
        try:
            q.close(drain=False)  # at once: in-flight receipts go stale, logs are closed
        except BaseException as exc:  # close every queue, then report the first failure
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def make_topic(backend_options: dict[str, Any]) -> Iterator[Callable[..., fastq.Topic]]:
    """``make_topic(name, partitions=n, **kw)``: a fastq.Topic on the backend under test."""
    made: list[fastq.Topic] = []

    def make(name: str, *, partitions: int = 4, **kw: Any) -> fastq.Topic:
        t = fastq.Topic(name, partitions=partitions, **backend_options, **kw)
        made.append(t)
        return t

    yield make
    errors: list[BaseException] = []
    for t in reversed(made):
        try:
            if not t.closed:
                t.close()
        except BaseException as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
