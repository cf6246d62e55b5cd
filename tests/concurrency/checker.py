"""Delivery checking and thread plumbing for the concurrency tests.

``DeliveryChecker`` is the oracle of the R6/R7 stress tests: items are ``(producer, seq)``
tuples, every consumer appends what it got to its *own* list (no lock in the hot loop), and
``verify()`` proves, after all threads are joined:

- no loss: every acknowledged item was delivered;
- no duplicates: none was delivered twice;
- no phantoms: nothing was delivered that no put acknowledged (e.g. a put that raised Closed);
- per-producer FIFO at each consumer (the order a single consumer saw a producer's items in);
- optionally total FIFO (SPSC: the consumer saw exactly the acknowledged sequence, in order).

``Crew`` starts worker threads, records their exceptions (a worker that dies aborts the run
through ``on_error``, typically ``ring.close``, so the others do not block forever) and joins
them with a deadline.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import fastq
import fastq._core

Item = tuple[int, int]
"""What the stress tests send: (producer id, per-producer sequence number)."""

EXAMPLES = 5  # first examples kept per kind of failure


def ring_at(capacity: int, start: int) -> fastq.RingBuffer[Any]:
    """A RingBuffer whose positions start at ``start`` (private hook, to cross the 63-bit wrap)."""
    factory: Callable[[int, int], fastq.RingBuffer[Any]] = fastq._core._ring_at  # type: ignore[attr-defined]
    return factory(capacity, start)


def free_threaded_build() -> bool:
    """True on a free-threaded (``--disable-gil``) interpreter build."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_enabled() -> bool:
    """Whether the GIL is enabled right now (always True before 3.13)."""
    probe: Callable[[], bool] | None = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else probe()


@dataclass
class DeliveryReport:
    """The outcome of :meth:`DeliveryChecker.verify`; ``str()`` is the failure message."""

    context: str
    expected: int = 0
    delivered: int = 0
    per_consumer: list[int] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    phantom: int = 0
    malformed: int = 0
    reordered: int = 0
    total_fifo_break: int | None = None  # first index where the SPSC sequence differs
    lost_examples: list[Item] = field(default_factory=list)
    dup_examples: list[Item] = field(default_factory=list)
    phantom_examples: list[object] = field(default_factory=list)
    malformed_examples: list[object] = field(default_factory=list)
    reorder_examples: list[str] = field(default_factory=list)
    total_fifo_detail: str = ""

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.phantom
            or self.malformed
            or self.reordered
            or self.total_fifo_break is not None
        )

    def __str__(self) -> str:
        head = "OK" if self.ok else "DELIVERY FAILURE"
        lines = [
            f"{head} [{self.context}]",
            f"  expected={self.expected} delivered={self.delivered} "
            f"per-consumer={self.per_consumer}",
            f"  lost={self.lost} duplicated={self.duplicated} phantom={self.phantom} "
            f"malformed={self.malformed} reordered={self.reordered}",
        ]
        if self.lost_examples:
            lines.append(f"  first lost: {self.lost_examples}")
        if self.dup_examples:
            lines.append(f"  first duplicated: {self.dup_examples}")
        if self.phantom_examples:
            lines.append(
                f"  first phantom (delivered, never acknowledged): {self.phantom_examples}"
            )
        if self.malformed_examples:
            lines.append(f"  first malformed: {self.malformed_examples!r}")
        if self.reorder_examples:
            lines.append(f"  first reorders: {self.reorder_examples}")
        if self.total_fifo_break is not None:
            lines.append(
                f"  total FIFO broken at index {self.total_fifo_break}: {self.total_fifo_detail}"
            )
        return "\n".join(lines)


class DeliveryChecker:
    """Records what each consumer got and checks it against what producers had acknowledged.

    Usage: ``sink = checker.sink(c)`` in consumer ``c`` (append items to it; one list per
    consumer thread, so no lock), ``checker.expect_range(p, n)`` or ``checker.expect(p, seqs)``
    for what producer ``p`` had acknowledged, then ``checker.assert_ok()``.
    """

    def __init__(self, producers: int, consumers: int, *, context: str = "") -> None:
        self.producers = producers
        self.context = context
        self.received: list[list[Any]] = [[] for _ in range(consumers)]
        self._expected: list[list[int]] = [[] for _ in range(producers)]

    def sink(self, consumer: int) -> list[Any]:
        """The list consumer ``consumer`` appends (or extends) its deliveries to."""
        return self.received[consumer]

    def expect_range(self, producer: int, count: int) -> None:
        """Producer ``producer`` had seqs 0..count-1 acknowledged, in that order."""
        self._expected[producer] = list(range(count))

    def expect(self, producer: int, seqs: Iterable[int]) -> None:
        """Producer ``producer`` had exactly these seqs acknowledged, in put order."""
        self._expected[producer] = list(seqs)

    @property
    def delivered(self) -> int:
        return sum(map(len, self.received))

    def verify(self, *, total_fifo: bool = False) -> DeliveryReport:
        rep = DeliveryReport(self.context)
        rep.per_consumer = [len(r) for r in self.received]
        rep.delivered = sum(rep.per_consumer)
        rep.expected = sum(map(len, self._expected))
        # acknowledged[p][seq] = 1 if expected; counts[p][seq] = times delivered
        limit = [max(seqs, default=-1) + 1 for seqs in self._expected]
        acked = [bytearray(n) for n in limit]
        counts = [array("l", bytes(8 * n)) if n else array("l") for n in limit]
        for p, seqs in enumerate(self._expected):
            for s in seqs:
                acked[p][s] = 1
        nprod = self.producers
        for c, got in enumerate(self.received):
            last = [-1] * nprod
            for i, item in enumerate(got):
                if (
                    type(item) is not tuple
                    or len(item) != 2
                    or type(item[0]) is not int
                    or type(item[1]) is not int
                ):
                    rep.malformed += 1
                    if len(rep.malformed_examples) < EXAMPLES:
                        rep.malformed_examples.append(item)
                    continue
                p, s = item
                if not (0 <= p < nprod and 0 <= s < limit[p] and acked[p][s]):
                    rep.phantom += 1
                    if len(rep.phantom_examples) < EXAMPLES:
                        rep.phantom_examples.append(item)
                    continue
                counts[p][s] += 1
                if counts[p][s] == 2 and len(rep.dup_examples) < EXAMPLES:
                    rep.dup_examples.append(item)
                if s < last[p]:
                    rep.reordered += 1
                    if len(rep.reorder_examples) < EXAMPLES:
                        rep.reorder_examples.append(
                            f"consumer {c} got {item} at index {i} after seq {last[p]}"
                        )
                else:
                    last[p] = s
        for p, seqs in enumerate(self._expected):
            cnt = counts[p]
            for s in seqs:
                n = cnt[s]
                if n == 0:
                    rep.lost += 1
                    if len(rep.lost_examples) < EXAMPLES:
                        rep.lost_examples.append((p, s))
                elif n > 1:
                    rep.duplicated += n - 1
        if total_fifo:
            want = [(p, s) for p, seqs in enumerate(self._expected) for s in seqs]
            if len(self.received) != 1 or nprod != 1:
                raise ValueError("total FIFO is only defined for one producer, one consumer")
            got = self.received[0]
            if got != want:
                i = next(
                    (k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                    min(len(got), len(want)),
                )
                rep.total_fifo_break = i
                rep.total_fifo_detail = (
                    f"got {got[i : i + 3]!r}, want {want[i : i + 3]!r} "
                    f"(len got={len(got)}, want={len(want)})"
                )
        return rep

    def assert_ok(self, *, total_fifo: bool = False, extra: str = "") -> DeliveryReport:
        """verify(), raising AssertionError with the readable report when anything is wrong."""
        rep = self.verify(total_fifo=total_fifo)
        assert rep.ok, f"{rep}\n{extra}" if extra else str(rep)
        return rep


class Crew:
    """A set of worker threads whose exceptions are recorded instead of lost.

    The first worker to raise calls ``on_error`` (e.g. the ring's ``close``) so that the
    rest of the run ends instead of blocking on a ring nobody serves any more.
    """

    def __init__(self, on_error: Callable[[], object] | None = None) -> None:
        self.on_error = on_error
        self.threads: list[threading.Thread] = []
        self.errors: list[tuple[str, BaseException]] = []
        self._errors_lock = threading.Lock()

    def spawn(self, name: str, fn: Callable[..., object], *args: object) -> threading.Thread:
        def body() -> None:
            try:
                fn(*args)
            except BaseException as exc:
                with self._errors_lock:
                    self.errors.append((name, exc))
                if self.on_error is not None:
                    self.on_error()

        t = threading.Thread(target=body, name=name, daemon=True)
        self.threads.append(t)
        t.start()
        return t

    def join(self, timeout: float, threads: Iterable[threading.Thread] | None = None) -> list[str]:
        """Join (some of) the threads within ``timeout`` seconds in total; names still alive."""
        deadline = time.monotonic() + timeout
        for t in self.threads if threads is None else threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in (self.threads if threads is None else threads) if t.is_alive()]

    def describe_errors(self) -> str:
        return "; ".join(f"{name}: {type(e).__name__}: {e}" for name, e in self.errors)


def _thread_state(native_id: int) -> str | None:
    """The kernel's scheduling state letter of a thread of this process (Linux), else None."""
    try:
        with open(f"/proc/self/task/{native_id}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def wait_blocked(native_ids: Iterable[int], timeout: float = 5.0) -> bool:
    """Wait until every listed thread sleeps in the kernel (trio's wait_all_tasks_blocked, roughly).

    This only makes it *likely* that threads which signalled "about to block" are parked when
    the test acts, so the parked path is the one exercised; no test's verdict depends on it
    (a thread that is not parked yet sees the same ring state when it gets there). Linux reads
    /proc; elsewhere it yields for a short fixed time. Returns whether all were seen asleep.
    """
    ids = list(native_ids)
    if not os.path.isdir("/proc/self/task"):
        time.sleep(0.05)
        return False
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        states = [_thread_state(i) for i in ids]
        if all(s in ("S", "D", None) for s in states):
            streak += 1
            if streak >= 3:  # asleep on three looks in a row, not just between two steps
                return True
        else:
            streak = 0
        time.sleep(0.001)
    return False
