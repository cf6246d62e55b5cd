"""The no-op task of the Redis end-to-end benchmark (bench_redis.py), in a module of its own
so that RQ can import it by name (``_redis_tasks.noop``) like a real job function."""

from __future__ import annotations


def noop(i: int) -> None:
    """Does nothing: the benchmark measures the queueing, not the work."""
