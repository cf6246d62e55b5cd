"""R8: concurrent put_nowait/get_nowait histories are linearizable w.r.t. a bounded FIFO.

Each thread records invoke/return `perf_counter_ns` around every operation. The history is then
checked by a Wing-Gong search with Lowe's just-in-time linearization and memoization of
(linearized-set bitmask, FIFO contents), the algorithm porcupine uses (ported: porcupine is Go).

Real-time order: A precedes B iff A returned strictly before B was invoked; anything else is
concurrent, and the checker may order it either way.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from fastq import Empty, Full, RingBuffer
from fastq._core import _ring_at  # type: ignore[attr-defined]  # private test hook

PUT, GET = "put", "get"
OK, FULL, EMPTY = "ok", "full", "empty"

HISTORIES = 100  # PR tier (TESTING.md R8); the soak tier runs 10,000
THREADS = 3
OPS_PER_THREAD = 200


@dataclass(frozen=True)
class Op:
    """One completed operation. put: arg is the value, result OK/FULL. get: result value/EMPTY."""

    thread: int
    kind: str
    arg: int | None
    result: int | str
    call: int
    ret: int


# ---- the sequential specification ------------------------------------------------------------


def fifo_step(state: tuple[int, ...], capacity: int, op: Op) -> tuple[int, ...] | None:
    """Apply op to the FIFO contents; None if the observed result is impossible in `state`."""
    if op.kind == PUT:
        assert op.arg is not None
        if op.result == OK:
            return (*state, op.arg) if len(state) < capacity else None
        return state if len(state) >= capacity else None
    if op.result == EMPTY:
        return state if not state else None
    return state[1:] if state and state[0] == op.result else None


# ---- the checker -------------------------------------------------------------------------------


class _Entry:
    __slots__ = ("is_call", "match", "next", "op_id", "prev")

    def __init__(self, op_id: int, is_call: bool) -> None:
        self.op_id = op_id
        self.is_call = is_call
        self.match: _Entry | None = None  # call -> its return
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _lift(call: _Entry) -> None:
    """Unlink a call entry and its return entry from the event list."""
    ret = call.match
    assert call.prev is not None
    assert ret is not None
    assert ret.prev is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Entry) -> None:
    """Undo _lift (entries are re-linked in the reverse order of unlinking)."""
    ret = call.match
    assert call.prev is not None
    assert ret is not None
    assert ret.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def is_linearizable(ops: Sequence[Op], capacity: int) -> bool:
    """Wing-Gong/Lowe search for a linearization of `ops` against a FIFO of `capacity`."""
    events: list[tuple[int, int, int]] = []  # (time, 0 call / 1 return, op id)
    for i, op in enumerate(ops):
        assert op.call <= op.ret, op
        events.append((op.call, 0, i))
        events.append((op.ret, 1, i))
    events.sort()  # at equal times calls come first: touching intervals count as concurrent

    head = _Entry(-1, False)
    calls: dict[int, _Entry] = {}
    tail = head
    for _, kind, i in events:
        new = _Entry(i, kind == 0)
        if kind == 0:
            calls[i] = new
        else:
            calls[i].match = new
        new.prev = tail
        tail.next = new
        tail = new

    state: tuple[int, ...] = ()
    linearized = 0
    seen: set[tuple[int, tuple[int, ...]]] = set()
    stack: list[tuple[_Entry, tuple[int, ...]]] = []
    entry: _Entry | None = head.next
    while head.next is not None:
        assert entry is not None
        if entry.is_call:
            new_state = fifo_step(state, capacity, ops[entry.op_id])
            if new_state is not None:
                new_linearized = linearized | (1 << entry.op_id)
                key = (new_linearized, new_state)
                if key not in seen:
                    seen.add(key)
                    stack.append((entry, state))
                    state, linearized = new_state, new_linearized
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # a return whose call is not linearized yet: undo the last choice and try the next
            if not stack:
                return False
            entry, state = stack.pop()
            linearized &= ~(1 << entry.op_id)
            _unlift(entry)
            entry = entry.next
    return True


# ---- checker sanity: accepts good histories, rejects bad ones ----------------------------------


def op(kind: str, arg: int | None, result: int | str, call: int, ret: int, thread: int = 0) -> Op:
    return Op(thread, kind, arg, result, call, ret)


def brute_force_linearizable(ops: Sequence[Op], capacity: int) -> bool:
    """Try every order that respects real time (small histories only)."""
    for order in itertools.permutations(range(len(ops))):
        position = {i: k for k, i in enumerate(order)}
        if any(
            ops[a].ret < ops[b].call and position[a] > position[b]
            for a in range(len(ops))
            for b in range(len(ops))
        ):
            continue
        state: tuple[int, ...] | None = ()
        for i in order:
            assert state is not None
            state = fifo_step(state, capacity, ops[i])
            if state is None:
                break
        if state is not None:
            return True
    return False


ACCEPTED = {
    "sequential": [
        op(PUT, 1, OK, 0, 1),
        op(PUT, 2, OK, 2, 3),
        op(GET, None, 1, 4, 5),
        op(GET, None, 2, 6, 7),
        op(GET, None, EMPTY, 8, 9),
    ],
    "concurrent puts taken in either order": [
        op(PUT, 1, OK, 0, 10, 0),
        op(PUT, 2, OK, 0, 10, 1),
        op(GET, None, 2, 11, 12),
        op(GET, None, 1, 13, 14),
    ],
    "empty get overlapping a put": [
        op(PUT, 1, OK, 0, 10, 0),
        op(GET, None, EMPTY, 5, 6, 1),
        op(GET, None, 1, 11, 12),
    ],
    "get overlapping its put": [op(PUT, 1, OK, 0, 10, 0), op(GET, None, 1, 5, 6, 1)],
    "full put overlapping a get (capacity 1)": [
        op(PUT, 1, OK, 0, 1),
        op(GET, None, 1, 2, 10, 1),
        op(PUT, 2, FULL, 3, 4, 0),
    ],
    "touching intervals are concurrent": [op(PUT, 1, OK, 0, 5, 0), op(GET, None, EMPTY, 5, 6, 1)],
}

REJECTED = {
    "fifo order broken": [op(PUT, 1, OK, 0, 1), op(PUT, 2, OK, 2, 3), op(GET, None, 2, 4, 5)],
    "spurious empty": [op(PUT, 1, OK, 0, 1), op(GET, None, EMPTY, 2, 3)],
    "spurious full": [op(PUT, 1, OK, 0, 1), op(PUT, 2, FULL, 2, 3)],
    "full put after the get that made room (capacity 1)": [
        op(PUT, 1, OK, 0, 1),
        op(GET, None, 1, 2, 3, 1),
        op(PUT, 2, FULL, 4, 5, 0),
    ],
    "put beyond capacity": [op(PUT, 1, OK, 0, 1), op(PUT, 2, OK, 2, 3), op(PUT, 3, OK, 4, 5)],
    "value never put": [op(PUT, 1, OK, 0, 1), op(GET, None, 9, 2, 3)],
    "value taken twice": [
        op(PUT, 1, OK, 0, 10, 0),
        op(GET, None, 1, 1, 2, 1),
        op(GET, None, 1, 3, 4, 2),
    ],
    "get before its put": [op(GET, None, 1, 0, 1, 1), op(PUT, 1, OK, 2, 3, 0)],
    "concurrent but impossible": [
        op(PUT, 1, OK, 0, 10, 0),
        op(PUT, 2, OK, 0, 10, 1),
        op(GET, None, 1, 11, 12, 2),
        op(GET, None, 1, 13, 14, 2),
    ],
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_checker_accepts_linearizable_histories(name: str) -> None:
    ops = ACCEPTED[name]
    capacity = 1 if "capacity 1" in name else 2
    assert is_linearizable(ops, capacity)
    assert brute_force_linearizable(ops, capacity)


@pytest.mark.parametrize("name", REJECTED)
def test_checker_rejects_non_linearizable_histories(name: str) -> None:
    ops = REJECTED[name]
    capacity = 1 if "capacity 1" in name else 2
    assert not is_linearizable(ops, capacity)
    assert not brute_force_linearizable(ops, capacity)


def test_checker_agrees_with_brute_force_on_random_histories(rng: random.Random) -> None:
    verdicts = {True: 0, False: 0}
    for _ in range(400):
        ops = []
        for i in range(rng.randint(1, 6)):
            call = rng.randint(0, 20)
            ret = call + rng.randint(0, 8)
            if rng.random() < 0.5:
                ops.append(op(PUT, i, rng.choice([OK, OK, FULL]), call, ret, i))
            else:
                ops.append(op(GET, None, rng.choice([EMPTY, *range(i + 1)]), call, ret, i))
        capacity = rng.choice([1, 2])
        fast = is_linearizable(ops, capacity)
        assert fast == brute_force_linearizable(ops, capacity), (rng, ops, capacity)
        verdicts[fast] += 1
    # both verdicts must be exercised, or the comparison proves little
    assert verdicts[True] > 20, verdicts
    assert verdicts[False] > 20, verdicts


def test_checker_handles_a_long_sequential_history() -> None:
    ops, t = [], 0
    for i in range(2000):
        ops.append(op(PUT, i, OK, t, t + 1))
        ops.append(op(GET, None, i, t + 2, t + 3))
        t += 4
    assert is_linearizable(ops, capacity=1)
    ops[-1] = op(GET, None, EMPTY, t - 2, t - 1)
    assert not is_linearizable(ops, capacity=1)


# ---- recording real histories -------------------------------------------------------------------

TINY = 20e-6  # seconds: long enough to enter the (GIL-free) spin, short enough to stay a "try"


def run_workers(
    worker: Callable[[int], None], threads: int, errors: list[BaseException], timeout: float
) -> None:
    """Run worker(0..threads-1) on daemon threads; fail if one hangs or raised."""
    workers = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout)
    assert not any(w.is_alive() for w in workers), "a worker hung"
    assert not errors, errors


def record_history(
    ring: RingBuffer[int], seed: int, threads: int, ops_per_thread: int, yield_rate: float = 0.3
) -> list[Op]:
    """Run `threads` workers doing a seeded random mix of non-blocking puts and gets.

    The timed loop is kept tight (plain tuples, no allocation of Op objects), so operations of
    different threads crowd together in time; on a free-threaded build they truly overlap."""
    barrier = threading.Barrier(threads)
    logs: list[list[tuple[int, int, int | str, int, int]]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        local = random.Random(seed * 1000 + t)
        now = time.perf_counter_ns
        log = logs[t]
        put_nowait, put, get_nowait, get = ring.put_nowait, ring.put, ring.get_nowait, ring.get
        try:
            # 0: put_nowait, 1: put(timeout=TINY), 2: get_nowait, 3: get(timeout=TINY); the
            # TINY forms go through the waiting path, which spins without the GIL, so on GIL
            # builds too other threads' operations overlap theirs in time
            plan = [local.choices((0, 1, 2, 3), (8, 2, 8, 2))[0] for _ in range(ops_per_thread)]
            yields = [local.random() < yield_rate for _ in range(ops_per_thread)]
            barrier.wait(timeout=30)
            for i, code in enumerate(plan):
                if yields[i]:
                    time.sleep(0)  # drop the GIL so that the threads interleave op by op
                result: int | str
                if code < 2:
                    value = t * 1_000_000 + i
                    start = now()
                    try:
                        if code == 0:
                            put_nowait(value)
                        else:
                            put(value, timeout=TINY)
                        result = OK
                    except Full:
                        result = FULL
                else:
                    value = -1
                    start = now()
                    try:
                        result = get_nowait() if code == 2 else get(timeout=TINY)
                    except Empty:
                        result = EMPTY
                log.append((code, value, result, start, now()))
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    run_workers(worker, threads, errors, timeout=60)
    return [
        Op(t, PUT, value, result, start, end) if code < 2 else Op(t, GET, None, result, start, end)
        for t, log in enumerate(logs)
        for code, value, result, start, end in log
    ]


def overlapping_pairs(ops: Sequence[Op]) -> int:
    """How many pairs of operations from different threads overlap in time."""
    by_call = sorted(ops, key=lambda o: o.call)
    count = 0
    for i, a in enumerate(by_call):
        for b in by_call[i + 1 :]:
            if b.call > a.ret:
                break
            count += a.thread != b.thread
    return count


def test_ring_histories_are_linearizable(rng: random.Random, tmp_path: Path) -> None:
    overlaps = 0
    for h in range(HISTORIES):
        capacity = rng.choice([2, 4])
        start = rng.choice([0, 2**63 - OPS_PER_THREAD, rng.randrange(2**63)])
        ring: RingBuffer[int] = _ring_at(capacity, start)
        seed = rng.randrange(2**32)
        # no yields: long runs per thread, wide overlaps; yields: op-by-op interleaving
        yield_rate = rng.choice([0.0, 0.1, 0.3])
        ops = record_history(ring, seed, THREADS, OPS_PER_THREAD, yield_rate)
        assert len(ops) == THREADS * OPS_PER_THREAD
        overlaps += overlapping_pairs(ops)
        if not is_linearizable(ops, capacity):
            dump = tmp_path / f"history-{h}.json"
            dump.write_text(json.dumps([asdict(o) for o in ops]))
            pytest.fail(
                f"history {h} (capacity={capacity}, start={start}, worker seed={seed}, "
                f"yield_rate={yield_rate}, {rng!r}) "
                f"is not linearizable; {len(ops)} ops written to {dump}"
            )
        # what is left in the ring is consistent with the history (all puts minus all gets)
        put_ok = sum(1 for o in ops if o.kind == PUT and o.result == OK)
        got = sum(1 for o in ops if o.kind == GET and o.result != EMPTY)
        assert ring.qsize() == put_ok - got
    # the histories must actually contain concurrency, or the check proves nothing
    assert overlaps > 0


def test_no_spurious_full_or_empty_under_contention(stress_scale: float) -> None:
    """A dense consequence of linearizability that needs no search.

    Each thread alternates put_nowait(); get_nowait(). The ring never holds more than
    `threads` items (capacity is larger), and each get follows its own thread's completed
    put, so in every linearization the put finds room and the get finds an item."""
    threads, rounds = 4, int(200_000 * stress_scale)
    ring: RingBuffer[int] = RingBuffer(2 * threads)
    barrier = threading.Barrier(threads)
    fulls = [0] * threads
    empties = [0] * threads
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        put_nowait, get_nowait = ring.put_nowait, ring.get_nowait
        try:
            barrier.wait(timeout=30)
            for _ in range(rounds):
                try:
                    put_nowait(t)
                except Full:
                    fulls[t] += 1
                    continue
                try:
                    get_nowait()
                except Empty:
                    empties[t] += 1
                    ring.get(timeout=30)  # an item is there: take it to keep the balance
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    run_workers(worker, threads, errors, timeout=120)
    assert (sum(fulls), sum(empties)) == (0, 0), (
        f"spurious Full x{sum(fulls)} / Empty x{sum(empties)} in {threads * rounds} rounds"
    )
    assert ring.empty()
