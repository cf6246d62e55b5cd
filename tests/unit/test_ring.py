"""RingBuffer: every method, every error path, wrap-around, lifetimes and interrupts."""

from __future__ import annotations

import asyncio
import copy
import gc
import inspect
import math
import os
import pickle
import queue
import random
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import traceback
import types
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from threads import Runner, wait_until

from fastq import Closed, Empty, Full, RingBuffer
from fastq._core import _ring_at  # type: ignore[attr-defined]  # private test hook

WRAP = 2**63  # positions are 63-bit
LIVENESS = 10.0  # generous bound for "returns eventually"; never a speed assertion


def blocked_call(fn: Callable[[], Any]) -> Runner:
    """Start fn() in a thread and return once it has (very likely) entered its wait.

    There is no public "waiter count", so after the thread signals it is about to call, a
    short bounded wait lets it park; tests below never depend on that wait for correctness,
    only for exercising the parked path rather than the spin path."""
    runner = Runner(fn)
    runner.start()
    assert runner.started_call.wait(LIVENESS)
    runner.join(0.05)
    return runner


class Item:
    """A weakref-able payload whose identity the tests track."""

    __slots__ = ("__weakref__", "n")

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Item({self.n})"


# ---- construction and capacity -------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "real"),
    [(1, 1), (2, 2), (3, 4), (4, 4), (5, 8), (1000, 1024), (1024, 1024), (1025, 2048)],
)
def test_capacity_is_rounded_up_to_a_power_of_two(requested: int, real: int) -> None:
    ring: RingBuffer[int] = RingBuffer(requested)
    assert ring.capacity == real
    assert type(ring.capacity) is int
    for i in range(real):
        ring.put_nowait(i)
    assert ring.full()
    with pytest.raises(Full):
        ring.put_nowait(real)


@pytest.mark.parametrize(
    ("capacity", "exc", "fragments"),
    [
        (0, ValueError, ["capacity", "0"]),
        (-1, ValueError, ["capacity", "-1"]),
        (2**30 + 1, ValueError, ["capacity", str(2**30 + 1)]),
        (2**63, ValueError, ["capacity", str(2**63)]),
        (2**64 + 3, ValueError, ["capacity", str(2**64 + 3)]),
        ("8", TypeError, ["capacity", "str"]),
        (8.0, TypeError, ["capacity", "float"]),
        (None, TypeError, ["capacity", "NoneType"]),
        (True, TypeError, ["capacity", "bool"]),
        ([8], TypeError, ["capacity", "list"]),
    ],
)
def test_bad_capacity_is_refused_with_a_typed_error(
    capacity: object, exc: type[Exception], fragments: list[str]
) -> None:
    with pytest.raises(exc) as info:
        RingBuffer(capacity)  # type: ignore[arg-type]
    assert type(info.value) is exc
    for fragment in fragments:
        assert fragment in str(info.value)


def test_capacity_accepts_index_objects() -> None:
    class Eight:
        def __index__(self) -> int:
            return 8

    assert RingBuffer(Eight()).capacity == 8  # type: ignore[arg-type]


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_AS")
@pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="ASan reserves terabytes of shadow address space: RLIMIT_AS cannot apply (soak tier)",
)
def test_maximum_capacity_passes_validation() -> None:
    # 2**30 slots is 16 GiB, so build it in a child whose address space is capped at 2 GiB:
    # validation must accept it and the allocation must fail with a clean MemoryError.
    code = (
        "import resource, fastq\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "try:\n"
        "    r = fastq.RingBuffer(2**30)\n"
        "    print('ok', r.capacity)\n"
        "except MemoryError as e:\n"
        "    print('memory', e)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == 0, child.stderr
    out = child.stdout.strip()
    assert out == f"ok {2**30}" or (out.startswith("memory") and str(2**30) in out), out


# ---- observers, repr and object protocol -----------------------------------------------------


def test_qsize_len_empty_full_track_the_contents() -> None:
    ring: RingBuffer[int] = RingBuffer(4)
    seen = []
    for i in range(4):
        seen.append((ring.qsize(), len(ring), ring.empty(), ring.full()))
        ring.put_nowait(i)
    seen.append((ring.qsize(), len(ring), ring.empty(), ring.full()))
    assert seen == [
        (0, 0, True, False),
        (1, 1, False, False),
        (2, 2, False, False),
        (3, 3, False, False),
        (4, 4, False, True),
    ]
    ring.get_nowait()
    assert (ring.qsize(), len(ring), ring.empty(), ring.full()) == (3, 3, False, False)
    assert bool(ring) is True  # __len__ drives truthiness


def test_repr_shows_capacity_size_and_closed() -> None:
    ring: RingBuffer[str] = RingBuffer(3)
    ring.put_nowait("a")
    text = repr(ring)
    assert "RingBuffer" in text
    assert "capacity=4" in text
    assert "size=1" in text
    assert "closed" not in text
    ring.close()
    assert "closed" in repr(ring)


def test_pickle_is_refused_with_a_clear_message() -> None:
    ring: RingBuffer[int] = RingBuffer(2)
    with pytest.raises(TypeError, match="pickle") as info:
        pickle.dumps(ring)
    assert "RingBuffer" in str(info.value)


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy])
def test_copy_fails_cleanly(copier: Callable[[Any], Any]) -> None:
    ring: RingBuffer[int] = RingBuffer(2)
    ring.put_nowait(1)
    with pytest.raises(TypeError, match="RingBuffer"):
        copier(ring)
    assert ring.get_nowait() == 1  # the original is untouched


def test_generic_alias_at_runtime() -> None:
    alias = RingBuffer[int]
    assert isinstance(alias, types.GenericAlias)
    assert alias.__origin__ is RingBuffer
    assert alias.__args__ == (int,)
    ring = alias(2)
    assert type(ring) is RingBuffer
    assert ring.capacity == 2


def test_weakref_to_a_ring() -> None:
    ring: RingBuffer[int] = RingBuffer(2)
    ref = weakref.ref(ring)
    assert ref() is ring
    del ring
    gc.collect()
    assert ref() is None


def test_ring_buffer_is_final() -> None:
    with pytest.raises(TypeError):
        types.new_class("Sub", (RingBuffer,))


def test_capacity_and_closed_are_read_only() -> None:
    ring: RingBuffer[int] = RingBuffer(2)
    with pytest.raises(AttributeError):
        ring.capacity = 8  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ring.closed = True  # type: ignore[misc]
    assert ring.capacity == 2
    assert ring.closed is False


# ---- single items: put/get and the nowait twins ---------------------------------------------


def test_fifo_order_through_many_laps() -> None:
    ring: RingBuffer[int] = RingBuffer(8)
    out = []
    for i in range(1000):
        ring.put_nowait(i)
        if ring.full() or i % 3:
            out.append(ring.get_nowait())
    while not ring.empty():
        out.append(ring.get())
    assert out == list(range(1000))


@pytest.mark.parametrize("item", [None, 0, "", b"x", (), Item(7), float("nan"), Ellipsis], ids=repr)
def test_item_identity_is_preserved(item: object) -> None:
    ring: RingBuffer[object] = RingBuffer(4)
    ring.put(item)
    ring.put_nowait(item)
    ring.put_many([item])
    assert ring.get() is item
    assert ring.get_nowait() is item
    (got,) = ring.get_many(5)
    assert got is item


def test_nonblocking_put_on_full_and_get_on_empty() -> None:
    ring: RingBuffer[int] = RingBuffer(1)
    with pytest.raises(Empty):
        ring.get_nowait()
    with pytest.raises(Empty):
        ring.get(block=False)
    ring.put(1, block=False)
    with pytest.raises(Full):
        ring.put_nowait(2)
    with pytest.raises(Full):
        ring.put(2, block=False)
    assert ring.get(block=False) == 1


def test_block_false_ignores_timeout() -> None:
    ring: RingBuffer[int] = RingBuffer(1)
    start = time.monotonic()
    with pytest.raises(Empty):
        ring.get(block=False, timeout=30)
    ring.put_nowait(1)
    with pytest.raises(Full):
        ring.put(2, block=False, timeout=30)
    assert time.monotonic() - start < LIVENESS


def test_blocking_get_is_woken_by_a_put() -> None:
    ring: RingBuffer[Item] = RingBuffer(2)
    item = Item(1)
    runner = blocked_call(ring.get)
    ring.put(item)
    assert runner.finish() is item
    assert runner.error is None


def test_blocking_put_is_woken_by_a_get() -> None:
    ring: RingBuffer[int] = RingBuffer(1)
    ring.put(1)
    runner = blocked_call(lambda: ring.put(2))
    assert ring.get() == 1
    runner.finish()
    assert runner.error is None
    assert ring.get_nowait() == 2


def test_blocking_producer_consumer_deliver_everything_in_order() -> None:
    ring: RingBuffer[int] = RingBuffer(2)
    n = 5000
    consumer = Runner(lambda: [ring.get() for _ in range(n)])
    consumer.start()
    for i in range(n):
        ring.put(i)
    assert consumer.finish() == list(range(n))


# ---- timeouts ----------------------------------------------------------------------------


def full_ring() -> RingBuffer[int]:
    ring: RingBuffer[int] = RingBuffer(1)
    ring.put_nowait(0)
    return ring


def ready_ring() -> RingBuffer[int]:
    ring: RingBuffer[int] = RingBuffer(2)
    ring.put_nowait(0)
    return ring


# (name, call with a timeout, ring state) - "waits": the call must wait, "ready": it need not
TIMEOUT_CALLS: list[tuple[str, Callable[[RingBuffer[int], Any], object], str]] = [
    ("put-waits", lambda r, t: r.put(1, timeout=t), "full"),
    ("get-waits", lambda r, t: r.get(timeout=t), "empty"),
    ("put_many-waits", lambda r, t: r.put_many([1], timeout=t), "full"),
    ("get_many-waits", lambda r, t: r.get_many(1, timeout=t), "empty"),
    ("put-ready", lambda r, t: r.put(1, timeout=t), "ready"),
    ("get-ready", lambda r, t: r.get(timeout=t), "ready"),
    ("put_many-ready", lambda r, t: r.put_many([1], timeout=t), "ready"),
    ("get_many-ready", lambda r, t: r.get_many(1, timeout=t), "ready"),
]


def make_ring(state: str) -> RingBuffer[int]:
    return {"full": full_ring, "empty": lambda: RingBuffer(1), "ready": ready_ring}[state]()


@pytest.mark.parametrize(
    ("name", "call", "state"), TIMEOUT_CALLS, ids=[c[0] for c in TIMEOUT_CALLS]
)
@pytest.mark.parametrize(
    ("timeout", "exc"),
    [
        (-1, ValueError),
        (-0.001, ValueError),
        (math.nan, ValueError),
        (-math.inf, ValueError),
        ("1", TypeError),
        ([1], TypeError),
        (1j, TypeError),
    ],
    ids=["-1", "-0.001", "nan", "-inf", "str", "list", "complex"],
)
def test_bad_timeout_is_refused_whatever_the_state(
    name: str,
    call: Callable[[RingBuffer[int], object], object],
    state: str,
    timeout: object,
    exc: type[Exception],
) -> None:
    ring = make_ring(state)
    before = ring.qsize()
    with pytest.raises(exc) as info:
        call(ring, timeout)
    assert type(info.value) is exc
    assert "timeout" in str(info.value)
    assert ring.qsize() == before  # a refused call changes nothing


@pytest.mark.parametrize("timeout", [0, 0.0, 0.01])
def test_timeout_expires_with_full_or_empty(timeout: float) -> None:
    ring: RingBuffer[int] = RingBuffer(1)
    calls: list[Callable[[], object]] = [
        lambda: ring.get(timeout=timeout),
        lambda: ring.get_many(4, timeout=timeout),
    ]
    for call in calls:
        start = time.monotonic()
        with pytest.raises(Empty):
            call()
        elapsed = time.monotonic() - start
        assert timeout * 0.9 <= elapsed < LIVENESS
    ring.put_nowait(0)
    start = time.monotonic()
    with pytest.raises(Full):
        ring.put(1, timeout=timeout)
    assert timeout * 0.9 <= time.monotonic() - start < LIVENESS
    assert ring.qsize() == 1


def test_timeout_zero_still_tries_once() -> None:
    ring: RingBuffer[int] = RingBuffer(1)
    ring.put(5, timeout=0)
    assert ring.get(timeout=0) == 5
    assert ring.put_many([6, 7], timeout=0) == 1
    assert ring.get_many(3, timeout=0) == [6]


@pytest.mark.parametrize(
    "timeout",
    [None, math.inf, 1e300, 2**63, 10**400],
    ids=["None", "inf", "1e300", "2**63", "10**400"],
)
def test_unbounded_timeouts_wait_forever(timeout: object) -> None:
    ring: RingBuffer[int] = RingBuffer(1)
    # a ready call returns at once, a waiting one keeps waiting until it can proceed
    assert ring.put_many([1], timeout=timeout) == 1  # type: ignore[arg-type]
    assert ring.get_many(1, timeout=timeout) == [1]  # type: ignore[arg-type]
    getter = blocked_call(lambda: ring.get(timeout=timeout))  # type: ignore[arg-type]
    assert getter.is_alive(), f"get(timeout={timeout!r}) returned early: {getter.error!r}"
    ring.put(2, timeout=timeout)  # type: ignore[arg-type]
    assert getter.finish() == 2
    assert getter.error is None


def test_put_timeout_returns_when_room_appears() -> None:
    ring = full_ring()
    putter = blocked_call(lambda: ring.put(1, timeout=LIVENESS * 3))
    assert ring.get() == 0
    putter.finish()
    assert putter.error is None
    assert ring.get_nowait() == 1


# ---- batches ------------------------------------------------------------------------------

ITERABLE_KINDS: dict[str, Callable[[list[int]], Iterable[int]]] = {
    "list": list,
    "tuple": tuple,
    "generator": lambda xs: (x for x in xs),
    "iterator": iter,
    "range": lambda xs: range(xs[0], xs[0] + len(xs)) if xs else range(0),
    "deque": deque,
    "dict_keys": lambda xs: dict.fromkeys(xs).keys(),
}


@pytest.mark.parametrize("kind", ITERABLE_KINDS)
def test_put_many_accepts_any_iterable(kind: str) -> None:
    ring: RingBuffer[int] = RingBuffer(16)
    items = list(range(10, 20))
    assert ring.put_many(ITERABLE_KINDS[kind](items)) == 10
    assert ring.get_many(100) == items
    assert ring.put_many(ITERABLE_KINDS[kind]([])) == 0
    assert ring.empty()


@pytest.mark.parametrize("kind", ITERABLE_KINDS)
def test_put_many_nonblocking_puts_the_prefix_that_fits(kind: str) -> None:
    ring: RingBuffer[int] = RingBuffer(4)
    ring.put_nowait(-1)
    assert ring.put_many(ITERABLE_KINDS[kind](list(range(10))), block=False) == 3
    assert ring.full()
    assert ring.put_many(ITERABLE_KINDS[kind](list(range(10, 20))), block=False) == 0
    assert ring.get_many(10) == [-1, 0, 1, 2]


@pytest.mark.parametrize("kind", ["list", "tuple", "generator"])
def test_put_many_with_timeout_puts_what_fits_in_time(kind: str) -> None:
    ring: RingBuffer[int] = RingBuffer(4)
    ring.put_many([100, 101])
    start = time.monotonic()
    assert ring.put_many(ITERABLE_KINDS[kind](list(range(10))), timeout=0.02) == 2
    assert 0.018 <= time.monotonic() - start < LIVENESS
    assert ring.get_many(10) == [100, 101, 0, 1]


def test_blocking_put_many_waits_for_room_and_keeps_order() -> None:
    ring: RingBuffer[int] = RingBuffer(2)
    n = 3000
    consumer = Runner(lambda: [ring.get() for _ in range(n)])
    consumer.start()
    assert ring.put_many(list(range(n))) == n
    assert consumer.finish() == list(range(n))


def test_put_many_list_mutated_later_is_not_affected() -> None:
    ring: RingBuffer[list[int]] = RingBuffer(4)
    payload = [1]
    batch = [payload, payload]
    assert ring.put_many(batch) == 2
    batch.clear()
    assert ring.get_many(4) == [[1], [1]]


def test_put_many_propagates_errors_from_the_iterable() -> None:
    ring: RingBuffer[int] = RingBuffer(8)

    def broken() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        ring.put_many(broken())
    leftovers = [] if ring.empty() else ring.get_many(8)
    assert leftovers in ([], [1], [1, 2])  # at most a prefix of what was yielded
    with pytest.raises(TypeError):
        ring.put_many(5)  # type: ignore[arg-type]
    assert ring.empty()


def test_get_many_returns_up_to_max_items_in_order() -> None:
    ring: RingBuffer[int] = RingBuffer(8)
    ring.put_many(range(6))
    assert ring.get_many(4) == [0, 1, 2, 3]
    assert ring.get_many(4) == [4, 5]
    with pytest.raises(Empty):
        ring.get_many(4, block=False)
    ring.put_nowait(9)
    assert ring.get_many(1, block=False) == [9]


def test_get_many_returns_as_soon_as_one_item_arrives() -> None:
    ring: RingBuffer[Item] = RingBuffer(8)
    item = Item(3)
    getter = blocked_call(lambda: ring.get_many(100, timeout=LIVENESS * 3))
    ring.put(item)
    batch = getter.finish()
    assert getter.error is None
    assert len(batch) == 1
    assert batch[0] is item


def test_get_many_with_huge_max_items() -> None:
    ring: RingBuffer[int] = RingBuffer(4)
    ring.put_many([1, 2])
    assert ring.get_many(2**62) == [1, 2]


@pytest.mark.parametrize(
    ("max_items", "exc"),
    [
        (0, ValueError),
        (-1, ValueError),
        (2**62 + 1, ValueError),
        (1.5, TypeError),
        ("3", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
    ids=["0", "-1", "2**62+1", "1.5", "str", "None", "bool"],
)
def test_bad_max_items_is_refused(max_items: object, exc: type[Exception]) -> None:
    ring: RingBuffer[int] = RingBuffer(4)
    ring.put_nowait(1)
    calls: list[Callable[[], object]] = [
        lambda: ring.get_many(max_items),  # type: ignore[arg-type]
        lambda: ring.get_many(max_items, block=False),  # type: ignore[arg-type]
        lambda: asyncio.run(ring.aget_many(max_items)),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(exc) as info:
            call()
        assert type(info.value) is exc
        assert "max_items" in str(info.value)
    assert ring.qsize() == 1  # nothing was taken


# ---- close, drain, iteration, context manager ----------------------------------------------


def test_close_refuses_puts_and_drains_gets() -> None:
    ring: RingBuffer[int] = RingBuffer(4)
    ring.put_many([1, 2, 3])
    assert ring.closed is False
    ring.close()
    assert ring.closed is True
    for put in (
        lambda: ring.put(4),
        lambda: ring.put(4, block=False),
        lambda: ring.put(4, timeout=1),
        lambda: ring.put_nowait(4),
        lambda: ring.put_many((4, 5)),
        lambda: ring.put_many((4, 5), block=False),
        lambda: asyncio.run(ring.aput(4)),
    ):
        with pytest.raises(Closed):
            put()
    assert ring.get() == 1
    assert ring.get_nowait() == 2
    assert ring.get_many(5) == [3]
    for get in (
        ring.get,
        ring.get_nowait,
        lambda: ring.get(block=False),
        lambda: ring.get(timeout=0),
        lambda: ring.get_many(2),
        lambda: ring.get_many(2, block=False),
        lambda: asyncio.run(ring.aget()),
        lambda: asyncio.run(ring.aget_many(2)),
    ):
        with pytest.raises(Closed):
            get()
    assert ring.qsize() == 0


@pytest.mark.parametrize("kind", ITERABLE_KINDS)
@pytest.mark.parametrize("block", [True, False])
def test_put_many_on_a_closed_ring_raises_closed(kind: str, block: bool) -> None:
    ring: RingBuffer[int] = RingBuffer(4)
    ring.close()
    with pytest.raises(Closed):
        ring.put_many(ITERABLE_KINDS[kind]([1, 2]), block=block)
    assert ring.qsize() == 0


def test_put_many_returns_the_count_when_closed_part_way() -> None:
    ring: RingBuffer[int] = RingBuffer(2)
    putter = Runner(lambda: ring.put_many(list(range(10))))
    putter.start()
    wait_until(ring.full, "put_many filled the ring")
    ring.close()
    assert putter.finish() == 2
    assert putter.error is None
    assert list(ring) == [0, 1]


def test_double_close_is_harmless() -> None:
    ring: RingBuffer[int] = RingBuffer(2)
    ring.put_nowait(1)
    ring.close()
    ring.close()
    assert ring.closed
    assert ring.get() == 1
    ring.close()
    with pytest.raises(Closed):
        ring.get()


@pytest.mark.parametrize("side", ["get", "put", "get_many", "put_many"])
def test_close_wakes_blocked_threads(side: str) -> None:
    ring: RingBuffer[int] = RingBuffer(1)
    if side.startswith("put"):
        ring.put_nowait(0)
    calls: dict[str, Callable[[], object]] = {
        "get": ring.get,
        "put": lambda: ring.put(1),
        "get_many": lambda: ring.get_many(3),
        "put_many": lambda: ring.put_many([1, 2]),
    }
    call = calls[side]
    runners = [blocked_call(call) for _ in range(3)]
    ring.close()
    for runner in runners:
        runner.finish()
        assert isinstance(runner.error, Closed), runner.error


def test_iteration_yields_until_closed_and_drained() -> None:
    ring: RingBuffer[int] = RingBuffer(4)
    assert iter(ring) is ring
    consumer = Runner(lambda: list(ring))
    consumer.start()
    for i in range(100):
        ring.put(i)
    ring.close()
    assert consumer.finish() == list(range(100))
    assert consumer.error is None
    assert list(ring) == []
    with pytest.raises(StopIteration):
        next(ring)


def test_iterating_a_closed_ring_drains_it() -> None:
    ring: RingBuffer[str] = RingBuffer(4)
    ring.put_many("abc")
    ring.close()
    assert [x for x in ring] == ["a", "b", "c"]  # the for protocol


def test_context_manager_closes_on_exit() -> None:
    with RingBuffer[int](2) as ring:
        assert isinstance(ring, RingBuffer)
        assert not ring.closed
        ring.put(1)
    assert ring.closed
    assert ring.get() == 1


def test_context_manager_closes_on_error_and_does_not_swallow_it() -> None:
    ring: RingBuffer[int] = RingBuffer(2)
    with pytest.raises(ZeroDivisionError), ring:
        _ = 1 / 0
    assert ring.closed


# ---- wrap-around of the 63-bit positions ---------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 2, 4, 1024])
@pytest.mark.parametrize("start", [0, WRAP - 5, WRAP - 1, WRAP - 1024])
def test_wrap_around_full_laps(capacity: int, start: int) -> None:
    ring: RingBuffer[int] = _ring_at(capacity, start)
    assert ring.capacity == capacity
    laps = max(8, 4096 // capacity)
    for lap in range(laps):
        assert ring.empty()
        base = lap * capacity
        for i in range(capacity):
            ring.put_nowait(base + i)
            assert ring.qsize() == i + 1
        assert ring.full()
        with pytest.raises(Full):
            ring.put_nowait(-1)
        assert [ring.get_nowait() for _ in range(capacity)] == list(range(base, base + capacity))
        with pytest.raises(Empty):
            ring.get_nowait()


@pytest.mark.parametrize("capacity", [1, 2, 4, 1024])
@pytest.mark.parametrize("start", [WRAP - 5, WRAP - 3000])
def test_wrap_around_with_batches_and_partial_fills(
    capacity: int, start: int, rng: random.Random
) -> None:
    ring: RingBuffer[int] = _ring_at(capacity, start)
    expected: deque[int] = deque()
    nxt = 0
    for _ in range(400):
        if rng.random() < 0.5:
            k = rng.randint(1, capacity + 1)
            batch = list(range(nxt, nxt + k))
            done = ring.put_many(batch, block=False)
            assert done == min(k, capacity - len(expected)), rng
            expected.extend(batch[:done])
            nxt += k
        elif expected:
            got = ring.get_many(rng.randint(1, capacity + 1), block=False)
            assert got == [expected.popleft() for _ in range(len(got))], rng
        assert ring.qsize() == len(expected)
        assert ring.full() == (len(expected) == capacity)
    rest = ring.get_many(capacity + 1) if expected else []
    assert rest == list(expected)
    assert ring.empty()


def test_wrap_around_with_blocking_threads() -> None:
    ring: RingBuffer[int] = _ring_at(2, WRAP - 50)
    n = 2000
    consumer = Runner(lambda: [ring.get(timeout=LIVENESS) for _ in range(n)])
    consumer.start()
    for i in range(n):
        ring.put(i, timeout=LIVENESS)
    assert consumer.finish() == list(range(n))
    assert consumer.error is None
    assert ring.empty()


def test_wrap_around_then_close_drains() -> None:
    ring: RingBuffer[int] = _ring_at(4, WRAP - 2)
    ring.put_many([1, 2, 3, 4])  # positions WRAP-2 .. 1
    ring.close()
    assert list(ring) == [1, 2, 3, 4]
    with pytest.raises(Closed):
        ring.get_nowait()


# ---- reference counts and object lifetime --------------------------------------------------


def test_refcount_returns_to_baseline_after_draining() -> None:
    obj = object()
    baseline = sys.getrefcount(obj)
    ring: RingBuffer[object] = RingBuffer(1024)
    for _ in range(500):
        ring.put_nowait(obj)
    ring.put_many([obj] * 500)
    assert sys.getrefcount(obj) == baseline + 1000
    for _ in range(500):
        assert ring.get_nowait() is obj
    assert sys.getrefcount(obj) == baseline + 500
    batch = ring.get_many(1000)
    assert len(batch) == 500
    del batch
    assert sys.getrefcount(obj) == baseline


def test_refcount_returns_to_baseline_after_deleting_a_nonempty_ring() -> None:
    obj = object()
    baseline = sys.getrefcount(obj)
    ring: RingBuffer[object] = _ring_at(1024, WRAP - 100)
    for _ in range(1000):
        ring.put(obj)
    assert sys.getrefcount(obj) == baseline + 1000
    del ring
    assert sys.getrefcount(obj) == baseline


def test_refcount_unchanged_by_failed_puts() -> None:
    obj = object()
    ring: RingBuffer[object] = RingBuffer(1)
    ring.put_nowait(obj)
    baseline = sys.getrefcount(obj)
    calls: list[Callable[[], object]] = [
        lambda: ring.put_nowait(obj),
        lambda: ring.put(obj, block=False),
        lambda: ring.put(obj, timeout=0),
        lambda: ring.put(obj, timeout=-1),
        lambda: ring.put(obj, timeout="x"),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises((Full, ValueError, TypeError)):
            call()
    assert ring.put_many([obj, obj], block=False) == 0
    ring.close()
    with pytest.raises(Closed):
        ring.put_nowait(obj)
    with pytest.raises(Closed):
        ring.put_many((obj, obj))
    assert sys.getrefcount(obj) == baseline


def test_items_are_freed_exactly_once() -> None:
    freed: list[int] = []
    ring: RingBuffer[Item] = RingBuffer(64)
    n = 50
    for i in range(n):
        item = Item(i)
        weakref.finalize(item, freed.append, i)
        if i % 2:
            ring.put(item)
        else:
            ring.put_many([item])
    del item
    assert freed == []  # the ring alone keeps them alive
    got = [ring.get() for _ in range(20)]
    assert freed == []  # we hold those
    del got
    assert sorted(freed) == list(range(20))
    del ring  # the other 30 go with the ring
    gc.collect()
    assert sorted(freed) == list(range(n))


def test_reference_cycles_through_the_ring_are_collected() -> None:
    # An item that refers back to its ring (a task holding its queue, a bound method of a
    # consumer) forms a cycle through the ring's C storage: the collector must see it.
    ring: RingBuffer[object] = RingBuffer(2)
    holder = Item(0)
    holder_ref = weakref.ref(holder)
    ring_ref = weakref.ref(ring)
    ring.put([ring, holder])
    del ring, holder
    gc.collect()
    assert ring_ref() is None
    assert holder_ref() is None


# ---- KeyboardInterrupt and signals while blocked ---------------------------------------------

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

needs_pthread_kill = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill"
)


class SignalSender(threading.Thread):
    """Signals the main thread once it is blocked in the call on `line` of `code`.

    It polls the main thread's stack (sys._current_frames) until the main thread sits on that
    line, gives it a moment to park, checks it is still there, and sends `signum`. A signal
    that lands just before the park is only noticed at the next one, so unless `once`, it
    sends again every 0.5 s until `done` is set.

    On a free-threaded build another thread's frames may change (and be freed) while they are
    read, which crashes the reader; there the caller calls ``arm()`` just before the call and
    the sender waits for that instead (a signal may then land before the park: the callers
    retry such attempts)."""

    def __init__(self, signum: int, code: types.CodeType, line: int, once: bool = False) -> None:
        super().__init__(daemon=True)
        self.signum = signum
        self.code = code
        self.line = line
        self.once = once
        self.main = threading.main_thread().ident
        self.done = threading.Event()
        self.armed = threading.Event()
        self.sent = 0

    def arm(self) -> None:
        """The main thread is about to make the call."""
        self.armed.set()

    def main_is_at_call(self) -> bool:
        if FREE_THREADED:
            return self.armed.is_set()
        frame = sys._current_frames().get(self.main or 0)
        while frame is not None:
            if frame.f_code is self.code:
                return frame.f_lineno == self.line
            frame = frame.f_back
        return False

    def run(self) -> None:
        deadline = time.monotonic() + LIVENESS
        while not self.done.is_set() and time.monotonic() < deadline:
            if self.main_is_at_call() and not self.done.wait(0.05) and self.main_is_at_call():
                signal.pthread_kill(self.main or 0, self.signum)
                self.sent += 1
                if self.once:
                    return
                self.done.wait(0.5)
            else:
                time.sleep(0.001)


def call_line(code: types.CodeType, marker: str) -> int:
    """The line number of the first line of `code` whose source ends with `marker`."""
    lines, first = inspect.getsourcelines(code)
    return first + next(i for i, text in enumerate(lines) if text.rstrip().endswith(marker))


def raised_inside_fastq(exc: BaseException) -> bool:
    """The exception came out of fastq's native code (a frame of _core's .pyx/.pxi sources;
    on 3.13t Cython may label such a frame with another function of the module)."""
    return any(
        "RingBuffer" in f.name or f.filename.endswith((".pyx", ".pxi"))
        for f in traceback.extract_tb(exc.__traceback__)
    )


def interrupt_during(blocking: Callable[[], object]) -> KeyboardInterrupt:
    """Run blocking() in the main thread, interrupt it with SIGINT, return the exception.

    SIGINT is handled by a handler that raises KeyboardInterrupt (as the default one does)
    the first time only, so a resent signal can never escape into the rest of the test."""
    assert threading.current_thread() is threading.main_thread()
    interrupts = 0

    def raise_once(signum: int, frame: types.FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            raise KeyboardInterrupt

    sender = SignalSender(
        signal.SIGINT,
        interrupt_during.__code__,
        call_line(interrupt_during.__code__, "# <- interrupted here"),
    )
    previous = signal.signal(signal.SIGINT, raise_once)
    caught: KeyboardInterrupt | None = None
    try:
        sender.start()
        try:
            sender.arm()
            blocking()  # <- interrupted here
        except KeyboardInterrupt as e:
            caught = e
        sender.done.set()
        sender.join(LIVENESS)
        _run_pending_signal_handlers()
    finally:
        sender.done.set()
        signal.signal(signal.SIGINT, previous)
    assert caught is not None, "the blocking call returned instead of being interrupted"
    assert sender.sent >= 1
    assert interrupts >= 1
    return caught


def interrupt_inside(blocking: Callable[[], object], attempts: int = 5) -> KeyboardInterrupt:
    """interrupt_during until the KeyboardInterrupt is raised inside fastq's blocking wait: on
    a loaded machine the signal can land in the Python frames just before the call (then the
    call never started, and the attempt says nothing about fastq)."""
    for _ in range(attempts):
        exc = interrupt_during(blocking)
        if raised_inside_fastq(exc):
            return exc
    raise AssertionError(
        f"in {attempts} attempts the interrupt never landed inside the blocking call: "
        + "".join(traceback.format_tb(exc.__traceback__))
    )


def _run_pending_signal_handlers() -> None:
    """A Python-level call: the interpreter runs pending signal handlers on function entry."""


@needs_pthread_kill
@pytest.mark.parametrize("kind", ["get", "get-timeout", "get_many", "iter"])
def test_keyboard_interrupt_during_blocking_get(kind: str) -> None:
    ring: RingBuffer[int] = RingBuffer(2)
    blocking: Callable[[], object] = {
        "get": ring.get,
        "get-timeout": lambda: ring.get(timeout=LIVENESS * 5),
        "get_many": lambda: ring.get_many(2),
        "iter": lambda: next(iter(ring)),
    }[kind]
    exc = interrupt_inside(blocking)
    assert raised_inside_fastq(exc), traceback.format_tb(exc.__traceback__)
    # the ring still works, including waking a new blocked getter
    ring.put_nowait(1)
    assert ring.get_nowait() == 1
    getter = blocked_call(ring.get)
    ring.put(2)
    assert getter.finish() == 2
    assert ring.empty()
    assert not ring.closed


@needs_pthread_kill
@pytest.mark.parametrize("kind", ["put", "put_many"])
def test_keyboard_interrupt_during_blocking_put_keeps_refcounts(kind: str) -> None:
    ring: RingBuffer[object] = RingBuffer(1)
    ring.put_nowait(0)
    obj = object()
    baseline = sys.getrefcount(obj)
    if kind == "put":
        exc = interrupt_inside(lambda: ring.put(obj))
    else:
        exc = interrupt_inside(lambda: ring.put_many((obj, obj)))
    assert raised_inside_fastq(exc), traceback.format_tb(exc.__traceback__)
    del exc  # its traceback holds frames that reference obj
    assert sys.getrefcount(obj) == baseline
    assert ring.qsize() == 1
    assert ring.get_nowait() == 0
    ring.put_nowait(obj)
    assert ring.get_nowait() is obj


@needs_pthread_kill
@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_signal_handler_that_returns_lets_the_get_continue() -> None:
    ring: RingBuffer[int] = RingBuffer(2)
    handled = threading.Event()

    def handler(signum: int, frame: types.FrameType | None) -> None:
        handled.set()

    code = test_signal_handler_that_returns_lets_the_get_continue.__code__
    sender = SignalSender(signal.SIGUSR1, code, call_line(code, "# <- signalled here"), once=True)
    previous = signal.signal(signal.SIGUSR1, handler)
    try:

        def feed() -> None:
            assert handled.wait(LIVENESS)
            ring.put(7)

        feeder = Runner(feed)
        feeder.start()
        sender.start()
        sender.arm()
        got = ring.get(timeout=LIVENESS)  # <- signalled here
        sender.join(LIVENESS)
        feeder.finish()
    finally:
        sender.done.set()
        signal.signal(signal.SIGUSR1, previous)
    assert handled.is_set()
    assert sender.sent == 1
    assert got == 7


# ---- asyncio ------------------------------------------------------------------------------


def test_async_put_and_get_roundtrip() -> None:
    ring: RingBuffer[Item] = RingBuffer(2)
    items = [Item(i) for i in range(5)]

    async def main() -> list[Item]:
        async def producer() -> None:
            for item in items:
                await ring.aput(item)

        task = asyncio.create_task(producer())
        got = [await ring.aget() for _ in range(3)]
        got += await ring.aget_many(10)
        while len(got) < len(items):
            got += await ring.aget_many(10)
        await task
        return got

    got = asyncio.run(main())
    assert len(got) == len(items)
    assert all(a is b for a, b in zip(got, items, strict=True))


def test_async_get_is_woken_by_a_thread() -> None:
    ring: RingBuffer[int] = RingBuffer(2)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        loop.call_soon(threading.Thread(target=ring.put, args=(42,), daemon=True).start)
        return await asyncio.wait_for(ring.aget(), LIVENESS)

    assert asyncio.run(main()) == 42


def test_async_waiters_are_woken_by_close() -> None:
    ring: RingBuffer[int] = RingBuffer(1)

    async def main() -> list[object]:
        getters = [asyncio.create_task(ring.aget()), asyncio.create_task(ring.aget_many(2))]
        await asyncio.sleep(0)  # let them register
        ring.close()
        return await asyncio.wait_for(asyncio.gather(*getters, return_exceptions=True), LIVENESS)

    results = asyncio.run(main())
    assert all(isinstance(r, Closed) for r in results), results


def test_async_put_waits_for_room() -> None:
    ring: RingBuffer[int] = RingBuffer(1)
    ring.put_nowait(1)

    async def main() -> None:
        putter = asyncio.create_task(ring.aput(2))
        await asyncio.sleep(0)
        assert not putter.done()
        assert await ring.aget() == 1
        await asyncio.wait_for(putter, LIVENESS)

    asyncio.run(main())
    assert ring.get_nowait() == 2


def test_queue_module_compatibility_shape() -> None:
    # The names stdlib users reach for exist with compatible behaviour.
    ring: RingBuffer[int] = RingBuffer(2)
    q: queue.Queue[int] = queue.Queue(2)
    for target in (ring, q):
        target.put(1)
        target.put_nowait(2)
        assert target.full()
        assert target.qsize() == 2
        with pytest.raises(queue.Full):
            target.put_nowait(3)
        assert target.get() == 1
        assert target.get_nowait() == 2
        assert target.empty()
        with pytest.raises(queue.Empty):
            target.get(timeout=0)
