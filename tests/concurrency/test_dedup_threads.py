"""DedupWindow shared by threads: check-and-insert is atomic, nothing is lost or doubled.

- exactly-once acceptance: 4 threads offer overlapping key sets (every key is offered by 3 of
  them, some twice by the same thread) through different calls and spellings — seen_many on
  uint64 arrays, on lists of ints, on lists of 8-byte little-endian bytes, and single seen()
  calls — to one window with ttl=inf and room for every key. Across all threads each key must
  be reported new (False) exactly once: no loss (a key nobody accepted), no double accept (two
  threads both told "new");
- writers alongside readers and a forgetter: while 2 writers run, one thread forgets and looks
  up keys of a "forgettable" set, another calls len(), statistics() and to_bytes() (each
  snapshot must restore). No call raises; the counters a reader sees never go down; and at the
  end, for every key, accepts - successful forgets == 1 if the key is still in the window else 0
  (each accept and each successful forget flips the key's presence), the keys never forgotten
  were accepted exactly once, and the final statistics add up to what the threads saw;
- under eviction pressure (max_keys far below the keys offered): the window never holds more
  than max_keys, and inserted + hits == offers, inserted - evictions == size at the end.

Each thread appends to its own lists and the checks run after every thread is joined, so
nothing depends on the GIL (the module runs on free-threaded 3.13t too). Threads start
together on a Barrier; no sleeps (on GIL builds the switch interval is cut to 10 us here so
the threads interleave inside batches). Sizes scale with FASTQ_STRESS_SCALE
(``stress_scale``); join bounds are generous and never a speed assertion.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from threads import LIVENESS, Runner

import fastq
from fastq import DedupWindow

THREADS = 4
JOIN_TIMEOUT = 12 * LIVENESS * max(1.0, float(os.environ.get("FASTQ_STRESS_SCALE", "1")))

U64 = npt.NDArray[np.uint64]
Bools = npt.NDArray[np.bool_]
Log = list[tuple[U64, Bools]]  # per thread: (keys offered, what the window answered)


pytestmark = pytest.mark.usefixtures("frequent_switches")  # conftest.py


def run_all(fns: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run each fn in a Runner thread; join all with a generous deadline; re-raise the first
    error; return the results in order."""
    runners = [Runner(fn) for fn in fns]
    for r in runners:
        r.start()
    for r in runners:
        r.join(JOIN_TIMEOUT)
    hung = [i for i, r in enumerate(runners) if r.is_alive()]
    assert not hung, f"threads {hung} still running after {JOIN_TIMEOUT} s"
    for i, r in enumerate(runners):
        if r.error is not None:
            raise AssertionError(f"thread {i} raised {r.error!r}") from r.error
    return [r.result for r in runners]


def le_bytes(keys: U64) -> list[bytes]:
    return [int(k).to_bytes(8, "little") for k in keys.tolist()]


def offer(w: DedupWindow, style: str, keys: U64, rng: random.Random, log: Log) -> None:
    """Offer `keys` to `w` in chunks, spelled per `style`, and log the answers."""
    i = 0
    while i < len(keys):
        size = rng.choice([1, 7, 64, 500, 1500, 3000])
        chunk = keys[i : i + size]
        i += size
        if style == "u64 array":
            got = w.seen_many(chunk)
        elif style == "int list":
            got = w.seen_many(chunk.tolist())
        elif style == "bytes list":
            got = w.seen_many(le_bytes(chunk))
        else:  # single calls, mixed spellings
            spell: list[Callable[[int], Any]] = [
                int,
                lambda k: k.to_bytes(8, "little"),
                np.uint64,
                lambda k: memoryview(k.to_bytes(8, "little")),
            ]
            got = np.array([w.seen(rng.choice(spell)(k)) for k in chunk.tolist()], dtype=np.bool_)
        log.append((chunk, got))


STYLES = ["u64 array", "int list", "bytes list", "single"]


def accepts_per_key(logs: Sequence[Log], universe: int) -> npt.NDArray[np.int64]:
    """How many times each key 0..universe-1 was reported new, over all threads."""
    counts = np.zeros(universe, dtype=np.int64)
    for log in logs:
        for keys, got in log:
            np.add.at(counts, keys[~got].astype(np.int64), 1)
    return counts


def offers(logs: Sequence[Log]) -> int:
    return sum(len(keys) for log in logs for keys, _ in log)


@pytest.mark.parametrize("exact", [False, True])
def test_each_key_is_accepted_exactly_once_across_threads(
    exact: bool, rng: random.Random, stress_scale: float
) -> None:
    n = int(100_000 * stress_scale)
    w = DedupWindow(float("inf"), n, exact=exact)
    start = threading.Barrier(THREADS)
    seeds = [rng.randrange(2**32) for _ in range(THREADS)]

    def producer(t: int) -> Callable[[], Log]:
        def run() -> Log:
            local = random.Random(seeds[t])
            mine = np.array([k for k in range(n) if k % THREADS != t], dtype=np.uint64)
            again = mine[np.array([local.random() < 0.1 for _ in range(len(mine))])]
            keys = np.concatenate([mine, again])
            np.random.default_rng(seeds[t]).shuffle(keys)
            log: Log = []
            start.wait(LIVENESS)
            offer(w, STYLES[t], keys, local, log)
            return log

        return run

    logs: list[Log] = run_all([producer(t) for t in range(THREADS)])
    counts = accepts_per_key(logs, n)
    lost = np.flatnonzero(counts == 0)
    doubled = np.flatnonzero(counts > 1)
    assert lost.size == 0, (rng, f"{lost.size} keys never accepted, e.g. {lost[:10].tolist()}")
    assert doubled.size == 0, (
        rng,
        f"{doubled.size} keys accepted more than once, e.g. {doubled[:10].tolist()}",
    )
    s = w.statistics()
    total = offers(logs)
    assert (s.size, s.inserted, s.hits, s.evictions, s.expiries) == (n, n, total - n, 0, 0), rng
    assert len(w) == n
    assert all(w.contains(k) for k in range(0, n, 97))


@pytest.mark.parametrize("exact", [False, True])
def test_readers_and_a_forgetter_alongside_writers(
    exact: bool, rng: random.Random, stress_scale: float
) -> None:
    kept = int(50_000 * stress_scale)  # keys 0..kept-1: never forgotten
    forgettable = 2_000  # keys kept..kept+forgettable-1
    n = kept + forgettable
    w = DedupWindow(float("inf"), n, exact=exact)
    start = threading.Barrier(4)
    writers_done = threading.Event()
    seeds = [rng.randrange(2**32) for _ in range(4)]
    snapshots_restored: list[int] = []

    def writer(t: int) -> Callable[[], Log]:
        def run() -> Log:
            local = random.Random(seeds[t])
            log: Log = []
            start.wait(LIVENESS)
            for rnd in range(2):
                keys = np.arange(n, dtype=np.uint64)
                np.random.default_rng(seeds[t] + rnd).shuffle(keys)
                offer(w, STYLES[(t + rnd) % 3], keys, local, log)
            return log

        return run

    def forgetter() -> list[tuple[int, bool]]:
        local = random.Random(seeds[2])
        done: list[tuple[int, bool]] = []
        start.wait(LIVENESS)
        while not writers_done.is_set() or len(done) < 100:
            k = kept + local.randrange(forgettable)
            done.append((k, w.forget(k)))
            probe = local.randrange(n)
            assert type(w.contains(probe)) is bool
            assert type(probe.to_bytes(8, "little") in w) is bool
        return done

    def reader() -> list[fastq.DedupStatistics]:
        seen_stats: list[fastq.DedupStatistics] = []
        start.wait(LIVENESS)
        while not writers_done.is_set() or len(seen_stats) < 10:
            size = len(w)
            s = w.statistics()
            assert 0 <= size <= n
            assert 0 <= s.size <= n
            assert s.size <= s.inserted
            assert (s.evictions, s.expiries) == (0, 0)
            if seen_stats:
                prev = seen_stats[-1]
                assert s.inserted >= prev.inserted, (prev, s)
                assert s.hits >= prev.hits, (prev, s)
            seen_stats.append(s)
            if len(seen_stats) % 5 == 1:
                snap = w.to_bytes()
                r = DedupWindow.from_bytes(snap, elapsed=0)
                rs = r.statistics()
                assert rs.size == len(r) == int.from_bytes(snap[48:56], "little")
                assert rs.inserted >= s.inserted
                assert r.exact is exact
                snapshots_restored.append(rs.size)
        return seen_stats

    def writers_then_signal() -> list[Log]:
        try:
            return run_all([writer(0), writer(1)])
        finally:
            writers_done.set()

    results = run_all([writers_then_signal, forgetter, reader])
    logs: list[Log] = results[0]
    forgets: list[tuple[int, bool]] = results[1]
    stats: list[fastq.DedupStatistics] = results[2]
    assert snapshots_restored, "the reader took no snapshot"
    assert len(stats) >= 10

    accepts = accepts_per_key(logs, n)
    forgot = np.zeros(n, dtype=np.int64)
    for k, ok in forgets:
        forgot[k] += ok
    present = np.array([w.contains(k) for k in range(n)], dtype=np.int64)
    bad = np.flatnonzero(accepts - forgot != present)
    assert bad.size == 0, (
        rng,
        [(int(k), int(accepts[k]), int(forgot[k]), int(present[k])) for k in bad[:10]],
    )
    assert (accepts[:kept] == 1).all(), (rng, np.flatnonzero(accepts[:kept] != 1)[:10].tolist())
    assert present[:kept].all()
    s = w.statistics()
    total_accepts = int(accepts.sum())
    assert s.inserted == total_accepts
    assert s.hits == offers(logs) - total_accepts
    assert s.size == len(w) == int(present.sum())
    assert (s.evictions, s.expiries) == (0, 0)


@pytest.mark.parametrize("exact", [False, True])
def test_counters_add_up_under_eviction_pressure(
    exact: bool, rng: random.Random, stress_scale: float
) -> None:
    max_keys = 1000
    n = int(100_000 * stress_scale)
    w = DedupWindow(float("inf"), max_keys, exact=exact)
    start = threading.Barrier(THREADS + 1)
    stop = threading.Event()
    seeds = [rng.randrange(2**32) for _ in range(THREADS)]

    def producer(t: int) -> Callable[[], Log]:
        def run() -> Log:
            local = random.Random(seeds[t])
            keys = np.random.default_rng(seeds[t]).integers(0, n // 2, size=n, dtype=np.uint64)
            log: Log = []
            start.wait(LIVENESS)
            offer(w, STYLES[t], keys, local, log)
            return log

        return run

    def watcher() -> int:
        looks = 0
        start.wait(LIVENESS)
        while not stop.is_set() or looks < 10:
            assert len(w) <= max_keys
            s = w.statistics()
            assert s.size <= max_keys, s
            assert s.inserted - s.evictions >= s.size, s
            looks += 1
        return looks

    def producers_then_stop() -> list[Log]:
        try:
            return run_all([producer(t) for t in range(THREADS)])
        finally:
            stop.set()

    logs, looks = run_all([producers_then_stop, watcher])
    assert looks >= 10
    s = w.statistics()
    accepted = sum(int(np.count_nonzero(~got)) for log in logs for _, got in log)
    assert s.inserted == accepted, rng
    assert s.inserted + s.hits == offers(logs), rng
    assert s.size == len(w) == max_keys, rng
    assert s.inserted - s.evictions == s.size, rng
    assert s.expiries == 0
