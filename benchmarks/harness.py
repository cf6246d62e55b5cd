"""What every benchmark file shares: settings, workload generators, worker threads, timing.

Workloads are made in the round's setup and never timed. Each timed call moves a fixed number
of items (``extra_info["items"]``) and checks that every item arrived, so a faster number can
never come from lost items.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

#: seconds a round may take before a worker thread is declared hung
JOIN_TIMEOUT = 300.0


@dataclass(frozen=True)
class Settings:
    """Sizes for one run (from the --bench-* options of conftest.py)."""

    items: int = 100_000  # items moved per round by the per-item scenarios
    batch_items: int = 1_000_000  # items moved per round by the batch scenarios
    batch_size: int = 1_000  # put_many/get_many batch size
    capacity: int = 1_024  # ring capacity; bounded peers get the same maxsize
    # Ring capacity in the two-thread scenarios. SimpleQueue is unbounded there, so its producer
    # runs a whole GIL switch interval (5 ms, ~100k items) before handing over; a 1,024-slot
    # ring forces a GIL hand-off every 1,024 items instead, which measures the GIL, not the
    # queue. 65,536 slots give both the same rhythm (README: the sweep down to 1,024).
    thread_capacity: int = 65_536
    rounds: int = 15  # timed rounds per benchmark (at most)
    warmup: int = 1  # untimed rounds before them
    budget: float = 5.0  # seconds of timed rounds per benchmark: slow peers get fewer rounds
    min_rounds: int = 3  # ...but never fewer than this
    # ---- SegmentLog benchmarks (bench_log_*.py; sizes per implementation in README.md) ----
    log_items: int = 200_000  # records per round, per-record appends by fastq and the fast peers
    log_slow_items: int = 5_000  # records per round, SQLite/file peers and fsync-per-record rows
    log_many_bytes: int = 64 << 20  # payload bytes per round, append_many by fastq and memcpy
    log_read_records: int = 1_000_000  # records in the log that read() scans each round
    log_threads: int = 8  # appending threads in the group-commit scenarios
    log_commit_batches: int = 50  # append_many batches (of 100 records) per thread per round
    log_thread_records: int = 500  # single appends per thread per round (group commit)
    log_crash_bytes: int = 64 << 20  # unflushed tail (bytes of log) left by the killed writer
    # ---- hashing and dedup benchmarks (bench_hash.py, bench_dedup.py) ----
    hash_keys: int = 1_000_000  # bytes keys per round (partition-list; the array peer's loop)
    hash_array_keys: int = 10_000_000  # uint64 keys per round, fastq partition_many on an array
    hash_calls: int = 100_000  # single hash64 calls per round (hash64-13B)
    dedup_keys: int = 1_000_000  # keys in the dedup stream, checked once each per round
    # ---- work queues with acknowledgements (bench_queue.py) ----
    queue_items: int = 100_000  # messages per round, fastq and the in-memory lease table
    queue_slow_items: int = 2_000  # messages per round, the SQLite peers (persist-queue, litequeue)
    # ---- partitioned topics (bench_topic.py) ----
    topic_items: int = 200_000  # messages per round, fastq.Topic and the dict of lists
    topic_slow_items: int = 20_000  # messages per round, the SQLite topic (durable scenarios)
    # ---- pipelines (bench_pipeline.py) ----
    pipeline_items: int = 200_000  # messages per round through the end-to-end pipelines
    pipeline_adaptive_items: int = 3_000  # backlog per round in the adaptive scenario
    pipeline_workers: int = 4  # hand-written pipelines: worker threads (tasks) per lane

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# ---- workloads ------------------------------------------------------------------------------


def make_items(n: int) -> list[int]:
    """n small objects: distinct ints, never None (the peers' end-of-stream marker)."""
    return list(range(1, n + 1))


def chunked(items: list[int], size: int) -> list[list[int]]:
    """items cut into lists of `size` (the last one may be shorter)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def split(items: list[int], parts: int) -> list[list[int]]:
    """items dealt into `parts` contiguous slices of (nearly) equal length."""
    step, extra = divmod(len(items), parts)
    out: list[list[int]] = []
    start = 0
    for k in range(parts):
        end = start + step + (1 if k < extra else 0)
        out.append(items[start:end])
        start = end
    return out


# ---- threads ----------------------------------------------------------------------------------


class Worker(threading.Thread):
    """A thread that waits for `go`, runs fn once and keeps its result or exception.

    Started in a round's setup, so thread creation is not timed; the timed call sets `go`.
    """

    def __init__(self, name: str, go: threading.Event, fn: Callable[[], Any]) -> None:
        super().__init__(name=name, daemon=True)
        self._go = go
        self._fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        self._go.wait()
        try:
            self.result = self._fn()
        except BaseException as exc:  # re-raised in the timing thread by finish()
            self.error = exc

    def finish(self, timeout: float = JOIN_TIMEOUT) -> Any:
        """Join; return fn's result or raise its exception (or a hang report)."""
        self.join(timeout)
        if self.is_alive():
            raise RuntimeError(f"worker {self.name} still running after {timeout}s")
        if self.error is not None:
            raise RuntimeError(f"worker {self.name} failed") from self.error
        return self.result


def start_workers(go: threading.Event, role: str, fns: list[Callable[[], Any]]) -> list[Worker]:
    workers = [Worker(f"{role}-{k}", go, fn) for k, fn in enumerate(fns)]
    for w in workers:
        w.start()
    return workers


def check_count(got: int, expected: int, what: str) -> int:
    if got != expected:
        raise AssertionError(f"{what}: consumers received {got} items, expected {expected}")
    return got


def assert_joined(*groups: list[Worker]) -> None:
    """Teardown check: no thread of the round outlives it."""
    alive = [w.name for group in groups for w in group if w.is_alive()]
    if alive:
        raise AssertionError(f"threads still alive after the round: {alive}")


# ---- timing ---------------------------------------------------------------------------------


def measure(
    benchmark: Any,
    settings: Settings,
    *,
    scenario: str,
    impl: str,
    items: int,
    target: Callable[..., Any],
    setup: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]],
    teardown: Callable[..., None] | None = None,
    rounds: int | None = None,
    extra_info: dict[str, Any] | None = None,
) -> Any:
    """Time `target` with pytest-benchmark: one call per round, a fresh setup each round.

    The warm-up rounds also size the run: an implementation whose round takes long (a peer
    100x slower than fastq) gets settings.budget seconds of rounds, at least min_rounds.
    The group and extra_info are what report.py pairs fastq with its peers by. `rounds`
    overrides settings.rounds (the budget still applies); `extra_info` adds fields to the JSON.
    """
    benchmark.group = scenario
    benchmark.extra_info.update(
        scenario=scenario, impl=impl, items=items, capacity=settings.capacity
    )
    if extra_info:
        benchmark.extra_info.update(extra_info)
    rounds = settings.rounds if rounds is None else rounds
    if not benchmark.disabled:
        took = 0.0
        for _ in range(settings.warmup):
            args, kwargs = setup()
            start = time.perf_counter()
            target(*args, **kwargs)
            took = time.perf_counter() - start
            if teardown is not None:
                teardown(*args, **kwargs)
        if took * rounds > settings.budget:
            rounds = max(settings.min_rounds, int(settings.budget / took))
    else:
        # --benchmark-disable (a smoke test): pedantic then runs setup and target once but
        # never teardown, which holds the round's checks and cleanup, so run it here.
        target = _then_teardown(target, teardown)
        teardown = None
    return benchmark.pedantic(
        target, setup=setup, teardown=teardown, rounds=rounds, warmup_rounds=0, iterations=1
    )


def _then_teardown(
    target: Callable[..., Any], teardown: Callable[..., None] | None
) -> Callable[..., Any]:
    if teardown is None:
        return target

    def run(*args: Any, **kwargs: Any) -> Any:
        result = target(*args, **kwargs)
        teardown(*args, **kwargs)
        return result

    return run
