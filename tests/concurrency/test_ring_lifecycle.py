"""R7: RingBuffer lifecycle with threads: close() wakes blocked callers, timeouts return,
signals reach a blocked caller, blocked callers are woken by other threads, and every item
is released exactly once (weakref.finalize counters)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import random
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from checker import Crew, ring_at, wait_blocked

import fastq

WAKE_BOUND = 2.0  # seconds: generous bound for "woken promptly" (R7 aims at 100 ms)
JOIN_TIMEOUT = 30.0


class Tracked:
    """An item whose release is observable through a weakref.finalize counter."""

    __slots__ = ("__weakref__", "n")

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Tracked({self.n})"


class Freed:
    """Records which Tracked items were released (list.append is atomic on every build)."""

    def __init__(self) -> None:
        self.log: list[int] = []

    def make(self, n: int) -> Tracked:
        t = Tracked(n)
        weakref.finalize(t, self.log.append, n)
        return t

    def assert_exactly_once(self, expected: range | list[int]) -> None:
        gc.collect()
        counts = Counter(self.log)
        twice = sorted(n for n, k in counts.items() if k > 1)
        missing = sorted(set(expected) - set(counts))
        extra = sorted(set(counts) - set(expected))
        assert not twice, f"items finalized more than once: {twice[:10]}"
        assert not missing, f"{len(missing)} items never released (leaked): {missing[:10]}"
        assert not extra, f"unexpected items released: {extra[:10]}"


class Outcome:
    """What a blocking call in a worker thread ended with."""

    def __init__(self) -> None:
        self.value: Any = None
        self.exc: BaseException | None = None
        self.ended_at: float | None = None


def _blocking_call(
    fn: Callable[[], Any], ready: threading.Event, out: Outcome, ids: list[int]
) -> Callable[[], None]:
    def body() -> None:
        ids.append(threading.get_native_id())
        ready.set()
        try:
            out.value = fn()
        except BaseException as exc:
            out.exc = exc
        finally:
            out.ended_at = time.monotonic()

    return body


def _start_blocked(
    calls: dict[str, Callable[[], Any]],
) -> tuple[Crew, dict[str, Outcome], list[int]]:
    """Start one thread per call, wait until all are (very likely) parked in the call."""
    crew = Crew()
    outcomes: dict[str, Outcome] = {}
    ids: list[int] = []
    readies = []
    for name, fn in calls.items():
        ready = threading.Event()
        outcomes[name] = Outcome()
        crew.spawn(name, _blocking_call(fn, ready, outcomes[name], ids))
        readies.append(ready)
    for ready in readies:
        assert ready.wait(JOIN_TIMEOUT)
    wait_blocked(ids)
    return crew, outcomes, ids


# ---- close() wakes everyone -----------------------------------------------------------------


def test_close_wakes_blocked_putters_and_getters(rng: random.Random) -> None:
    freed = Freed()
    full: fastq.RingBuffer[Any] = fastq.RingBuffer(2)
    full.put("a")
    full.put("b")
    empty: fastq.RingBuffer[Any] = ring_at(4, 2**63 - 2)
    calls: dict[str, Callable[[], Any]] = {
        "put": lambda: full.put(freed.make(0)),
        "put-timeout": lambda: full.put(freed.make(1), timeout=600),
        "put_many-list": lambda: full.put_many([freed.make(2), freed.make(3)]),
        "put_many-tuple-timeout": lambda: full.put_many((freed.make(4),), timeout=600),
        "get": lambda: empty.get(),
        "get-timeout": lambda: empty.get(timeout=600),
        "get_many": lambda: empty.get_many(4),
        "get_many-timeout": lambda: empty.get_many(3, timeout=600),
        "next": lambda: next(empty),
        "iterate": lambda: list(empty),
    }
    crew, outcomes, _ = _start_blocked(calls)
    assert all(o.ended_at is None for o in outcomes.values()), (
        f"a call returned before close(): "
        f"{[(n, o.value, o.exc) for n, o in outcomes.items() if o.ended_at is not None]}"
    )
    closing = [full.close, empty.close]
    rng.shuffle(closing)
    t0 = time.monotonic()
    for close in closing:
        close()
    hung = crew.join(JOIN_TIMEOUT)
    assert not hung, f"still blocked after close(): {hung}"
    latency = {n: (o.ended_at or 0.0) - t0 for n, o in outcomes.items()}
    print(f"close() -> return, max over {len(latency)} blocked calls: {max(latency.values()):.4f}s")
    slow = {n: round(t, 3) for n, t in latency.items() if t > WAKE_BOUND}
    assert not slow, f"woken too late by close() (bound {WAKE_BOUND}s): {slow}"
    for name, out in outcomes.items():
        if name == "next":
            assert isinstance(out.exc, StopIteration), (name, out.value, out.exc)
        elif name == "iterate":
            assert out.exc is None, (name, out.exc)
            assert out.value == [], (name, out.value)
        else:
            assert isinstance(out.exc, fastq.Closed), (name, out.value, out.exc)
    # the items queued before close() still drain, in order; the refused ones are not there
    assert [full.get_nowait(), full.get()] == ["a", "b"]
    with pytest.raises(fastq.Closed):
        full.get_nowait()
    outcomes.clear()
    freed.assert_exactly_once(range(5))


def test_put_then_close_with_many_blocked_getters() -> None:
    """One item for four blocked getters, then close(): one gets it, three get Closed."""
    ring: fastq.RingBuffer[int] = fastq.RingBuffer(1)
    crew, outcomes, _ = _start_blocked({f"get-{i}": ring.get for i in range(4)})
    ring.put(1)  # wakes one getter
    ring.close()  # wakes the other three
    hung = crew.join(JOIN_TIMEOUT)
    assert not hung
    values = [o.value for o in outcomes.values() if o.exc is None]
    closed = [o for o in outcomes.values() if isinstance(o.exc, fastq.Closed)]
    assert values == [1], [(o.value, o.exc) for o in outcomes.values()]
    assert len(closed) == 3


def test_close_is_idempotent_and_context_manager_closes() -> None:
    with fastq.RingBuffer[int](4) as ring:
        ring.put(1)
        crew, outcomes, _ = _start_blocked({"put-many": lambda: ring.put_many(range(10))})
    # __exit__ closed it: the blocked put_many returns the prefix it managed (3 items)
    assert crew.join(JOIN_TIMEOUT) == []
    assert ring.closed
    out = outcomes["put-many"]
    assert out.exc is None, out.exc
    assert out.value == 3
    ring.close()
    ring.close()
    assert list(ring) == [1, 0, 1, 2]


def test_put_many_refuses_on_closed_ring_for_every_input_type() -> None:
    """put_many() on a closed ring raises Closed whatever it is given and however it blocks."""
    ring: fastq.RingBuffer[int] = fastq.RingBuffer(4)
    ring.close()
    results = {}
    for kind, make in (
        ("list", lambda: [1, 2]),
        ("tuple", lambda: (1, 2)),
        ("iterator", lambda: iter([1, 2])),
    ):
        for block in (True, False):
            try:
                results[(kind, block)] = repr(ring.put_many(make(), block=block))
            except fastq.Closed:
                results[(kind, block)] = "Closed"
    refused = {k: v for k, v in results.items() if v != "Closed"}
    assert not refused, f"put_many(items, block) on a closed ring returned instead: {refused}"
    assert len(ring) == 0


# ---- timeouts -------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, 0.05])
def test_timeouts_on_blocked_calls_return(timeout: float) -> None:
    empty: fastq.RingBuffer[int] = fastq.RingBuffer(4)
    full: fastq.RingBuffer[int] = fastq.RingBuffer(2)
    full.put_many([1, 2])
    checks: list[tuple[str, Callable[[], Any], type[BaseException] | None, Any]] = [
        ("get", lambda: empty.get(timeout=timeout), fastq.Empty, None),
        ("get_many", lambda: empty.get_many(3, timeout=timeout), fastq.Empty, None),
        ("put", lambda: full.put(3, timeout=timeout), fastq.Full, None),
        ("put_many-list", lambda: full.put_many([3, 4], timeout=timeout), None, 0),
        ("put_many-tuple", lambda: full.put_many((3, 4), timeout=timeout), None, 0),
    ]
    for name, call, exc_type, want in checks:
        t0 = time.monotonic()
        if exc_type is None:
            assert call() == want, name
        else:
            with pytest.raises(exc_type):
                call()
        took = time.monotonic() - t0
        assert timeout * 0.9 <= took < timeout + WAKE_BOUND, f"{name}: {took:.3f}s"
    assert full.get_many(10) == [1, 2]
    assert len(empty) == 0
    # a timed put_many puts the prefix that fits before the deadline and leaves the rest
    full.put(9)
    assert full.put_many([10, 11, 12], timeout=timeout) == 1
    assert full.get_many(10) == [9, 10]


def test_blocked_call_with_timeout_still_takes_a_late_item() -> None:
    ring: fastq.RingBuffer[str] = fastq.RingBuffer(1)
    crew, outcomes, _ = _start_blocked({"get": lambda: ring.get(timeout=600)})
    ring.put("late")
    assert crew.join(JOIN_TIMEOUT) == []
    assert outcomes["get"].value == "late"


# ---- liveness: a blocked caller is woken by another thread --------------------------------


@pytest.mark.parametrize("how", ["get", "get-timeout", "get_many", "next"])
def test_blocked_getter_is_woken_by_put_from_another_thread(how: str) -> None:
    ring: fastq.RingBuffer[str] = ring_at(2, 2**63 - 1)
    take: Callable[[], Any] = {
        "get": ring.get,
        "get-timeout": lambda: ring.get(timeout=600),
        "get_many": lambda: ring.get_many(5),
        "next": lambda: next(ring),
    }[how]
    crew, outcomes, _ = _start_blocked({"taker": take})
    putter = threading.Thread(target=ring.put, args=("x",))
    t0 = time.monotonic()
    putter.start()
    putter.join(JOIN_TIMEOUT)
    assert crew.join(JOIN_TIMEOUT) == [], "the blocked getter was never woken"
    out = outcomes["taker"]
    assert out.exc is None, out.exc
    assert out.value == (["x"] if how == "get_many" else "x")
    assert (out.ended_at or 0) - t0 < WAKE_BOUND


@pytest.mark.parametrize("how", ["put", "put-timeout", "put_many"])
def test_blocked_putter_is_woken_by_get_from_another_thread(how: str) -> None:
    ring: fastq.RingBuffer[str] = ring_at(1, 2**63 - 1)
    ring.put("first")
    put: Callable[[], Any] = {
        "put": lambda: ring.put("second"),
        "put-timeout": lambda: ring.put("second", timeout=600),
        "put_many": lambda: ring.put_many(["second"]),
    }[how]
    crew, outcomes, _ = _start_blocked({"putter": put})
    got: list[str] = []
    getter = threading.Thread(target=lambda: got.append(ring.get()))
    getter.start()
    getter.join(JOIN_TIMEOUT)
    assert crew.join(JOIN_TIMEOUT) == [], "the blocked putter was never woken"
    assert outcomes["putter"].exc is None
    assert got == ["first"]
    assert ring.get_nowait() == "second"


def test_put_many_wakes_many_blocked_getters() -> None:
    ring: fastq.RingBuffer[int] = fastq.RingBuffer(16)
    calls: dict[str, Callable[[], Any]] = {}
    for i in range(9):
        calls[f"get-{i}"] = ring.get
    for i in range(3):
        calls[f"get_many-{i}"] = lambda: ring.get_many(1)
    for i in range(2):
        calls[f"next-{i}"] = lambda: next(ring)
    crew, outcomes, _ = _start_blocked(calls)
    n = len(calls)
    assert ring.put_many(list(range(n))) == n
    hung = crew.join(JOIN_TIMEOUT)
    assert not hung, f"not woken by put_many: {hung}"
    got: list[int] = []
    for name, out in outcomes.items():
        assert out.exc is None, (name, out.exc)
        got.extend(out.value if name.startswith("get_many") else [out.value])
    assert sorted(got) == list(range(n))


def test_put_many_larger_than_capacity_feeds_blocked_getters() -> None:
    ring: fastq.RingBuffer[int] = fastq.RingBuffer(2)
    sinks: list[list[int]] = [[] for _ in range(4)]

    def drain(sink: list[int]) -> None:
        try:
            while True:
                sink.append(ring.get())
        except fastq.Closed:
            pass

    crew = Crew(on_error=ring.close)
    for s in sinks:
        crew.spawn("getter", drain, s)
    assert ring.put_many(list(range(1000))) == 1000
    ring.close()
    assert crew.join(JOIN_TIMEOUT) == []
    assert not crew.errors, crew.describe_errors()
    assert sorted(x for s in sinks for x in s) == list(range(1000))
    assert all(s == sorted(s) for s in sinks)


def test_get_many_wakes_many_blocked_putters() -> None:
    ring: fastq.RingBuffer[int] = fastq.RingBuffer(8)
    assert ring.put_many(list(range(8))) == 8
    calls: dict[str, Callable[[], Any]] = {}
    for i in range(6):
        calls[f"put-{i}"] = functools.partial(ring.put, 100 + i)
    calls["put_many"] = lambda: ring.put_many([106, 107])
    crew, outcomes, _ = _start_blocked(calls)
    assert ring.get_many(8) == list(range(8))
    hung = crew.join(JOIN_TIMEOUT)
    assert not hung, f"not woken by get_many: {hung}"
    assert all(o.exc is None for o in outcomes.values())
    assert sorted(ring.get_many(8)) == list(range(100, 108))


# ---- signals reach a blocked caller ---------------------------------------------------------


class Interrupted(Exception):
    pass


def _signal_main_when_blocked(then: Callable[[], None] | None = None) -> threading.Thread:
    """From a helper thread: wait until the main thread sleeps, send it SIGUSR1, then ``then``."""
    main = threading.main_thread()
    native, ident = main.native_id, main.ident
    assert native is not None
    assert ident is not None

    def body() -> None:
        wait_blocked([native])
        signal.pthread_kill(ident, signal.SIGUSR1)
        if then is not None:
            then()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


needs_main_thread_signals = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill")
    or threading.current_thread() is not threading.main_thread(),
    reason="needs POSIX pthread_kill and the main thread",
)


@needs_main_thread_signals
def test_signal_handler_runs_while_blocked_in_get_and_get_continues() -> None:
    ring: fastq.RingBuffer[str] = fastq.RingBuffer(1)
    handled = threading.Event()
    in_time: list[bool] = []
    main_native = threading.main_thread().native_id or 0

    def put_after_handler() -> None:
        in_time.append(handled.wait(JOIN_TIMEOUT))  # the handler ran while get() was blocked
        wait_blocked([main_native])
        ring.put("after-signal")

    old = signal.signal(signal.SIGUSR1, lambda signum, frame: handled.set())
    try:
        t = _signal_main_when_blocked(put_after_handler)
        assert ring.get(timeout=600) == "after-signal"
        t.join(JOIN_TIMEOUT)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert in_time == [True], "the signal handler did not run while get() was blocked"


@needs_main_thread_signals
def test_exception_from_signal_handler_interrupts_blocked_put_and_get() -> None:
    freed = Freed()

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        full: fastq.RingBuffer[Any] = fastq.RingBuffer(1)
        full.put("kept")
        puts: list[Callable[[], object]] = [
            lambda: full.put(freed.make(0)),
            lambda: full.put(freed.make(1), timeout=600),
            lambda: full.put_many([freed.make(2), freed.make(3)]),
        ]
        empty: fastq.RingBuffer[Any] = fastq.RingBuffer(1)
        gets: list[Callable[[], object]] = [
            empty.get,
            lambda: empty.get(timeout=600),
            lambda: empty.get_many(2),
            lambda: next(empty),
        ]
        for call in puts + gets:
            t = _signal_main_when_blocked()
            with pytest.raises(Interrupted):
                call()  # blocks forever unless interrupted
            t.join(JOIN_TIMEOUT)
        # the rings still work and nothing was lost, added or leaked
        assert full.get_nowait() == "kept"
        assert len(full) == 0
        empty.put("ok")
        assert empty.get_nowait() == "ok"
    finally:
        signal.signal(signal.SIGUSR1, old)
    freed.assert_exactly_once(range(4))


# ---- object lifetime ------------------------------------------------------------------------


def _put_all(ring: fastq.RingBuffer[Any], items: list[Any], r: random.Random) -> None:
    i = 0
    while i < len(items):
        op = r.randrange(5)
        if op == 0:
            ring.put(items[i])
            i += 1
        elif op == 1:
            ring.put_nowait(items[i])
            i += 1
        else:
            k = min(r.randint(1, 5), len(items) - i)
            chunk = items[i : i + k]
            arg = chunk if op == 2 else tuple(chunk) if op == 3 else iter(chunk)
            assert ring.put_many(arg, block=False) == k
            i += k


def _take_all(ring: fastq.RingBuffer[Any], n: int, r: random.Random) -> list[Any]:
    got: list[Any] = []
    while len(got) < n:
        op = r.randrange(4)
        if op == 0:
            got.append(ring.get())
        elif op == 1:
            got.append(ring.get_nowait())
        elif op == 2:
            got.extend(ring.get_many(r.randint(1, 5)))
        else:
            got.append(next(ring))
    return got


def test_items_released_exactly_once_after_drain(rng: random.Random) -> None:
    freed = Freed()
    n = 300
    keep = [freed.make(i) for i in range(n)]
    base = [sys.getrefcount(x) for x in keep[:5]]
    ring: fastq.RingBuffer[Any] = ring_at(16, 2**63 - 100)
    got: list[Any] = []
    for lo in range(0, n, 16):  # through the wrap, 16 at a time
        _put_all(ring, keep[lo : lo + 16], rng)
        got += _take_all(ring, len(keep[lo : lo + 16]), rng)
    assert len(got) == n
    assert all(a is b for a, b in zip(got, keep, strict=True)), f"rng={rng!r}"
    del got
    assert freed.log == [], f"released while still referenced (extra DECREF): {freed.log[:10]}"
    assert [sys.getrefcount(x) for x in keep[:5]] == base, "reference count changed"
    ring.close()
    del ring
    gc.collect()
    assert freed.log == []
    del keep
    freed.assert_exactly_once(range(n))


@pytest.mark.parametrize("closed", [False, True])
def test_deleting_a_nonempty_ring_releases_every_item_once(
    closed: bool, rng: random.Random
) -> None:
    freed = Freed()
    ring: fastq.RingBuffer[Any] = ring_at(64, 2**63 - 20)
    _put_all(ring, [freed.make(i) for i in range(10)], rng)
    assert ring.get_many(10) is not None  # move the positions on, then fill across the wrap
    _put_all(ring, [freed.make(i) for i in range(10, 74)], rng)
    assert len(ring) == 64
    if closed:
        ring.close()
    freed.log.clear()
    gc.collect()
    assert freed.log == [], "items released while in the ring"
    del ring
    freed.assert_exactly_once(range(10, 74))


def test_refused_puts_do_not_leak(rng: random.Random) -> None:
    freed = Freed()
    ring: fastq.RingBuffer[Any] = fastq.RingBuffer(2)
    ring.put_many([freed.make(0), freed.make(1)])
    with pytest.raises(fastq.Full):
        ring.put_nowait(freed.make(2))
    with pytest.raises(fastq.Full):
        ring.put(freed.make(3), block=False)
    with pytest.raises(fastq.Full):
        ring.put(freed.make(4), timeout=0.001)
    assert ring.put_many([freed.make(5)], block=False) == 0
    assert ring.put_many((freed.make(6), freed.make(7)), timeout=0.001) == 0
    ring.get_nowait()
    assert ring.put_many([freed.make(8), freed.make(9)], block=False) == 1
    ring.close()
    with pytest.raises(fastq.Closed):
        ring.put(freed.make(10))
    with pytest.raises(fastq.Closed):
        ring.put_many((freed.make(11),))
    gc.collect()
    assert sorted(freed.log) == [0, 2, 3, 4, 5, 6, 7, 9, 10, 11]
    assert [x.n for x in ring] == [1, 8]
    freed.assert_exactly_once(range(12))


def test_threads_moving_tracked_items_release_each_exactly_once(rng: random.Random) -> None:
    freed = Freed()
    ring: fastq.RingBuffer[Any] = ring_at(8, 2**63 - 1000)
    n_per, producers, consumers = 3000, 3, 3
    counts = [0] * consumers

    def produce(ring: fastq.RingBuffer[Any], p: int, r: random.Random) -> None:
        items = [freed.make(p * n_per + i) for i in range(n_per)]
        i = 0
        while i < n_per:
            if r.random() < 0.5:
                ring.put(items[i])
                i += 1
            else:
                k = min(r.randint(1, 12), n_per - i)
                i += ring.put_many(items[i : i + k])

    def consume(ring: fastq.RingBuffer[Any], c: int, r: random.Random) -> None:
        try:
            while True:
                if r.random() < 0.5:
                    ring.get()
                    counts[c] += 1
                else:
                    counts[c] += len(ring.get_many(r.randint(1, 12)))
        except fastq.Closed:
            pass

    crew = Crew(on_error=ring.close)
    prods = [
        crew.spawn(f"p{p}", produce, ring, p, random.Random(rng.getrandbits(64)))
        for p in range(producers)
    ]
    for c in range(consumers):
        crew.spawn(f"c{c}", consume, ring, c, random.Random(rng.getrandbits(64)))
    assert crew.join(JOIN_TIMEOUT, prods) == []
    ring.close()
    assert crew.join(JOIN_TIMEOUT) == []
    assert not crew.errors, f"{crew.describe_errors()} rng={rng!r}"
    assert sum(counts) == n_per * producers
    del ring
    freed.assert_exactly_once(range(n_per * producers))


def test_reference_cycle_through_ring_contents_is_collected() -> None:
    """Like queue.Queue, a ring that (indirectly) holds itself is garbage once unreachable."""

    class Box:
        ring: object = None

    ring: fastq.RingBuffer[Any] = fastq.RingBuffer(4)
    box = Box()
    box.ring = ring
    ring.put(box)
    alive = weakref.ref(box)
    ring_alive = weakref.ref(ring)
    del ring, box
    gc.collect()
    assert alive() is None, (
        "an item in a RingBuffer that refers back to the ring is never freed "
        "(the ring's tp_traverse does not visit its items)"
    )
    assert ring_alive() is None


# ---- interpreter shutdown and fork ------------------------------------------------------------

SHUTDOWN_SCRIPT = r"""
import threading, fastq
full = fastq.RingBuffer(2); full.put_many([1, 2])
empty = fastq.RingBuffer(4)
loaded = fastq.RingBuffer(64); loaded.put_many([object() for _ in range(50)])
ready = threading.Barrier(5)
def blocked(fn):
    ready.wait()
    fn()
for fn in (empty.get, empty.get, lambda: full.put(3), lambda: empty.get_many(5)):
    threading.Thread(target=blocked, args=(fn,), daemon=True).start()
ready.wait()
print("exiting with blocked daemon threads", flush=True)
"""


def test_interpreter_shutdown_with_blocked_daemon_threads_and_live_rings() -> None:
    """R13: exiting while daemon threads sit in get/put and rings still hold items must be a
    clean exit (no crash, no hang)."""
    proc = subprocess.run(
        [sys.executable, "-c", SHUTDOWN_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "exiting with blocked daemon threads" in proc.stdout


FORK_SCRIPT = r"""
import os, fastq
ring = fastq.RingBuffer(8)
ring.put_many(["a", "b", "c"])
pid = os.fork()
if pid == 0:                      # the child works on its own copy
    ok = ring.get() == "a" and ring.get_many(8) == ["b", "c"]
    ring.put("child"); ok = ok and ring.get_nowait() == "child"
    ring.close(); ok = ok and ring.closed
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert not ring.closed and ring.get_many(8) == ["a", "b", "c"]   # the parent's is untouched
print("fork ok", flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_use_in_a_forked_child_works_on_a_copy() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "fork ok" in proc.stdout


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc (Linux)")
def test_no_native_leak_over_a_million_cycles() -> None:
    """R15 leak check: the C side (calloc'd rings, slots, parkers) is invisible to
    tracemalloc, so watch the process RSS across 10^6 put/get cycles, 20k rings created and
    destroyed with items left in them, and 10k asyncio waiter registrations."""

    def workload() -> None:
        ring: fastq.RingBuffer[object] = fastq.RingBuffer(64)
        put, get = ring.put, ring.get
        for i in range(1_000_000):
            put(i)
            get()
        for _ in range(20_000):
            r: fastq.RingBuffer[int] = fastq.RingBuffer(32)
            r.put_many(range(16))
            del r

        async def waits() -> None:
            r: fastq.RingBuffer[int] = fastq.RingBuffer(1)
            for _ in range(10_000):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(r.aget(), 0)

        asyncio.run(waits())

    workload()  # warm-up: allocator pools and caches reach their steady size
    gc.collect()
    before = _rss_bytes()
    workload()
    gc.collect()
    growth = _rss_bytes() - before
    assert growth < 1 << 20, f"RSS grew by {growth / 1024:.0f} KiB over the second pass"
