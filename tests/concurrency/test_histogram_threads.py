"""Histogram shared by threads: lock-free records are never lost or counted twice.

- drain while recording: 4 threads record 200,000 values each (record_ns one by one, and every
  fourth block of 10,000 through record_many on an int64 array, which runs without the GIL)
  while a fifth thread calls snapshot(reset=True) in a loop. The counts, exact ns sums and overflows
  of all the reset snapshots plus the final one add up to exactly what the threads recorded;
  every snapshot's percentiles are in order;
- read while recording: the same writers with a reader calling snapshot(), count,
  percentile() and cumulative(), and a thread merging a fixed histogram in now and then: the
  count a reader sees never goes down, and the end state is exactly the records plus the
  merges.

Values come from per-thread random.Random(seed) with the seed printed; the writers start
together on a Barrier; no sleeps (on GIL builds the switch interval is cut to 10 us so the
threads interleave). Sizes scale with FASTQ_STRESS_SCALE. The module runs on free-threaded
3.13t too, where the threads really run in parallel.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from threads import Runner

from fastq import Histogram, HistogramSnapshot

WRITERS = 4
HIGHEST = 0.5  # seconds; values above it count as overflow
TOP_NS = 500_000_000


pytestmark = pytest.mark.usefixtures("frequent_switches")  # conftest.py


def run_all(fns: Sequence[Callable[[], Any]]) -> list[Any]:
    runners = [Runner(fn) for fn in fns]
    for r in runners:
        r.start()
    results = [r.finish() for r in runners]
    for r in runners:
        if r.error is not None:
            raise r.error
    return results


def writer_values(seed: int, n: int) -> list[int]:
    """ns values: mostly 1 us .. 100 ms log-uniform, some zeros, 1% above HIGHEST."""
    r = random.Random(seed)
    out = []
    for _ in range(n):
        x = r.random()
        if x < 0.01:
            out.append(r.randrange(TOP_NS + 1, 1 << 45))
        elif x < 0.02:
            out.append(0)
        else:
            out.append(int(10 ** r.uniform(3, 8)))
    return out


def make_writer(h: Histogram, values: list[int], start: threading.Barrier) -> Callable[[], None]:
    """Blocks of 10,000 values: every fourth one through record_many (an int64 array, long
    enough to count privately and publish per bucket), the rest one record_ns at a time."""

    def write() -> None:
        start.wait()
        record_ns = h.record_ns
        for k in range(0, len(values), 10_000):
            block = values[k : k + 10_000]
            if k % 40_000 == 30_000:
                h.record_many(np.array(block, dtype=np.int64), unit="ns")
            else:
                for v in block:
                    record_ns(v)

    return write


def expected(all_values: list[list[int]]) -> tuple[int, int, int]:
    flat = [v for vs in all_values for v in vs]
    return len(flat), sum(min(v, TOP_NS) for v in flat), sum(v > TOP_NS for v in flat)


def in_order(s: HistogramSnapshot) -> bool:
    return s.p50 <= s.p90 <= s.p95 <= s.p99 <= s.p999


def test_reset_snapshots_add_up_exactly(rng: random.Random, stress_scale: float) -> None:
    n = int(200_000 * stress_scale)
    seeds = [rng.getrandbits(32) for _ in range(WRITERS)]
    print(f"writer seeds {seeds} (from {rng!r})")
    values = [writer_values(s, n) for s in seeds]
    h = Histogram(highest=HIGHEST, name="e2e")
    start = threading.Barrier(WRITERS + 1)
    done = threading.Event()
    writers_left = [WRITERS]
    lock = threading.Lock()

    def writer(vs: list[int]) -> Callable[[], None]:
        write = make_writer(h, vs, start)

        def run() -> None:
            try:
                write()
            finally:
                with lock:
                    writers_left[0] -= 1
                    if writers_left[0] == 0:
                        done.set()

        return run

    def drainer() -> list[HistogramSnapshot]:
        snaps = []
        start.wait()
        while not done.is_set():
            snaps.append(h.snapshot(reset=True))
        return snaps

    results = run_all([*(writer(vs) for vs in values), drainer])
    snaps: list[HistogramSnapshot] = results[-1]
    snaps.append(h.snapshot(reset=True))
    count, sum_ns, overflow = expected(values)
    assert sum(s.count for s in snaps) == count == WRITERS * n
    assert sum(s.sum_ns for s in snaps) == sum_ns
    assert sum(s.overflow for s in snaps) == overflow
    assert all(in_order(s) for s in snaps)
    assert all(s.p999 <= HIGHEST * (1 + 2**-7) for s in snaps)
    assert h.snapshot().count == 0
    print(f"{len(snaps)} reset snapshots")


def test_readers_and_merges_alongside_writers(rng: random.Random, stress_scale: float) -> None:
    n = int(100_000 * stress_scale)
    seeds = [rng.getrandbits(32) for _ in range(WRITERS)]
    print(f"writer seeds {seeds} (from {rng!r})")
    values = [writer_values(s, n) for s in seeds]
    h = Histogram(highest=HIGHEST)
    extra = Histogram(highest=HIGHEST)
    extra.record_many([0.001, 0.002, 0.75], unit="s")  # one overflow per merge
    start = threading.Barrier(WRITERS + 2)
    done = threading.Event()
    writers = [make_writer(h, vs, start) for vs in values]

    def writers_then_done() -> list[Callable[[], None]]:
        runs: list[Callable[[], None]] = []
        left = [len(writers)]
        lock = threading.Lock()
        for w in writers:

            def run(w: Callable[[], None] = w) -> None:
                try:
                    w()
                finally:
                    with lock:
                        left[0] -= 1
                        if left[0] == 0:
                            done.set()

            runs.append(run)
        return runs

    def reader() -> int:
        start.wait()
        seen = 0
        rounds = 0
        while not done.is_set() or rounds == 0:
            s = h.snapshot()
            assert in_order(s)
            c = h.count
            assert c >= s.count >= seen
            seen = c
            cum = h.cumulative([0.0001, 0.01, HIGHEST, float("inf")])
            assert cum == sorted(cum)
            h.percentile(99.0)
            rounds += 1
        return rounds

    def merger() -> int:
        start.wait()
        merges = 0
        while not done.is_set() or merges == 0:
            h.merge(extra)
            merges += 1
        return merges

    results = run_all([*writers_then_done(), reader, merger])
    merges: int = results[-1]
    count, sum_ns, overflow = expected(values)
    final = h.snapshot()
    assert final.count == count + 3 * merges
    assert final.sum_ns == sum_ns + merges * (1_000_000 + 2_000_000 + TOP_NS)
    assert final.overflow == overflow + merges
    assert final.max == HIGHEST
    assert final.min == 0.0
    assert h.cumulative([float("inf")]) == [final.count]
