"""Durable Queue (path=) against QueueModel (tests/models.py), with crash_and_reopen (R9).

The rules of test_queue_stateful.py (put, get, get_many, ack three ways, nack, extend, the
clock moving on, a consumer dying, stale receipts) plus purge and crash_and_reopen:
``close(drain=False)`` and a new Queue on the same directory (the journal is all that
survives). The model turns every in-flight message into a failed attempt at the reopen: ready
again with its attempt count, or dead-lettered ("max_deliveries") when that was the last
allowed attempt; delayed messages stay delayed; receipts handed out before go stale.

Delays are journalled as wall-clock ready times, while leases run on the FakeClock, so delays
are either 0 or 10^6 s (never reached by the clock steps here): a delayed message is simply
"still delayed" on both sides of a reopen. priority_aging=None (strict priority), since a
reopen resets ready times (the model treats every ready message as ready at the reopen, so
order within a class is not checked after a reopen; the class order is).

Invariants after every step: every hand-out is one the model allows (so an acked or dead
message is never delivered again), attempt == hand-outs across reopens, leases end at get
time + vt, the durable DLQ holds exactly the model's dead (id, reason, attempts) across
reopens, ready / delayed / in_flight / len() agree, dead_lettered (per process) counts the
dead since the last open, held <= maxsize. FASTQ_STRESS_SCALE / FASTQ_SOAK scale the examples.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from models import QueueModel

from fastq import Delivery, Empty, FakeClock, Full, InvalidReceipt, Queue

STRESS_SCALE = float(os.environ.get("FASTQ_STRESS_SCALE", "1"))
SOAK = os.environ.get("FASTQ_SOAK") == "1"
NS = 1_000_000_000
PRIORITIES = ["critical", "high", "normal", "low"]
BIG = 1_000_000.0  # a delay no clock step here reaches (wall-clock ready time in the journal)
DELAYS = st.sampled_from([0.0, BIG])
DURATIONS = st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.75, 2.5, 4.0])
STEPS = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0])


def ns(seconds: float) -> int:
    return round(seconds * NS)


class DurableQueueMachine(RuleBasedStateMachine):
    queue: Queue
    model: QueueModel

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(0.0)
        self.dir = tempfile.mkdtemp(prefix="fastq-durable-sm-")
        self.held: list[Delivery] = []
        self.old_receipts: list[int] = []
        self.n = 0
        self.dead_at_open = 0
        self.reopens = 0

    @initialize(
        vt=st.sampled_from([0.5, 1.0, 2.5]),
        max_deliveries=st.integers(1, 3),
        maxsize=st.sampled_from([None, 2, 5, 12]),
        sync=st.sampled_from(["none"] * 9 + ["always"]),
    )
    def create(self, vt: float, max_deliveries: int, maxsize: int | None, sync: str) -> None:
        self.options = dict(
            path=self.dir,
            clock=self.clock,
            visibility_timeout=vt,
            max_deliveries=max_deliveries,
            maxsize=maxsize,
            priority_aging=None,
            sync=sync,
        )
        self.queue = Queue("sm", **self.options)  # type: ignore[arg-type]
        self.model = QueueModel(ns(vt), max_deliveries, maxsize, None)

    def teardown(self) -> None:
        if hasattr(self, "queue"):
            self.queue.close(drain=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def sync(self) -> None:
        self.model.advance(ns(self.clock()))

    # ---- rules ---------------------------------------------------------------------------

    @rule(prio=st.integers(0, 3), delay=DELAYS)
    def put(self, prio: int, delay: float) -> None:
        self.sync()
        self.n += 1
        mid = f"m{self.n}"
        fits = self.model.put(mid, prio, ns(delay))
        try:
            got = self.queue.put(
                self.n, id=mid, priority=PRIORITIES[prio], delay=delay, block=False
            )
        except Full:
            assert not fits, "Full while the model had room"
        else:
            assert fits, "put succeeded beyond maxsize"
            assert got == mid

    def _check_delivery(self, d: Delivery) -> None:
        mid = d.message.id
        cands = self.model.candidates()
        assert mid in cands, (mid, self.model.state.get(mid), sorted(cands), self.model.now)
        assert d.message.payload == int(mid[1:])
        attempt, lease = self.model.take(mid, d.receipt)
        assert d.attempt == attempt, (mid, d.attempt, attempt)
        assert abs(d.lease_deadline - lease / NS) < 1e-6, (d.lease_deadline, lease)
        self.held.append(d)
        self.old_receipts.append(d.receipt)

    @rule()
    def get(self) -> None:
        self.sync()
        if not self.model.candidates():
            try:
                d = self.queue.get(timeout=0)
            except Empty:
                return
            raise AssertionError(f"got {d!r} while the model has nothing ready")
        self._check_delivery(self.queue.get(timeout=0))

    @rule(n=st.integers(1, 4))
    def get_many(self, n: int) -> None:
        self.sync()
        if not self.model.candidates():
            return
        ds = self.queue.get_many(n, timeout=0)
        assert 1 <= len(ds) <= n
        for d in ds:
            self._check_delivery(d)
        if len(ds) < n:
            assert not self.model.candidates(), "get_many returned fewer than were ready"

    @precondition(lambda self: bool(self.held))
    @rule(i=st.integers(0, 100), how=st.sampled_from(["delivery", "queue", "many"]))
    def ack(self, i: int, how: str) -> None:
        d = self.held.pop(i % len(self.held))
        self.sync()
        ok = self.model.ack(d.receipt)
        try:
            if how == "delivery":
                d.ack()
            elif how == "queue":
                self.queue.ack(d.receipt)
            else:
                self.queue.ack_many([d])
        except InvalidReceipt:
            assert not ok, "valid receipt refused"
        else:
            assert ok, "stale receipt accepted (lease had run out)"

    @precondition(lambda self: bool(self.held))
    @rule(i=st.integers(0, 100), delay=DELAYS, with_delay=st.booleans())
    def nack(self, i: int, delay: float, with_delay: bool) -> None:
        d = self.held.pop(i % len(self.held))
        self.sync()
        ok = self.model.nack(d.receipt, ns(delay) if with_delay else 0)
        try:
            d.nack(delay if with_delay else None, error=f"e{i}")
        except InvalidReceipt:
            assert not ok, "valid receipt refused"
        else:
            assert ok, "stale receipt accepted by nack"

    @precondition(lambda self: bool(self.held))
    @rule(i=st.integers(0, 100), by=DURATIONS)
    def extend(self, i: int, by: float) -> None:
        d = self.held[i % len(self.held)]
        self.sync()
        want = self.model.extend(d.receipt, ns(by))
        try:
            got = d.extend(by)
        except InvalidReceipt:
            assert want is None, "valid receipt refused by extend"
        else:
            assert want is not None, "stale receipt accepted by extend"
            assert abs(got - want / NS) < 1e-6

    @rule(step=STEPS)
    def advance(self, step: float) -> None:
        self.clock.advance(step)

    @rule()
    def consumer_dies(self) -> None:
        self.held.clear()

    @rule()
    def purge(self) -> None:
        self.sync()
        m = self.model
        ready = [mid for mid, s in m.state.items() if s == m.READY]
        assert self.queue.purge() == len(ready)
        for mid in ready:
            m.state[mid] = m.ACKED  # settled: never delivered again

    @precondition(lambda self: bool(self.old_receipts))
    @rule(i=st.integers(0, 1000), op=st.sampled_from(["ack", "nack", "extend"]))
    def stale_receipt(self, i: int, op: str) -> None:
        r = self.old_receipts[i % len(self.old_receipts)]
        self.sync()
        if self.model.owner(r) is not None:
            return
        try:
            if op == "ack":
                self.queue.ack(r)
            elif op == "nack":
                self.queue.nack(r)
            else:
                self.queue.extend(r, 1.0)
        except InvalidReceipt:
            return
        raise AssertionError(f"stale receipt {r:#x} accepted by {op}")

    @rule()
    def crash_and_reopen(self) -> None:
        self.sync()
        m = self.model
        self.queue.close(drain=False)
        self.held.clear()
        self.dead_at_open = len(m.dead)
        # every lease died with the process: a failed attempt each
        for mid in sorted(m.lease):
            del m.lease[mid]
            del m.receipt[mid]
            if m.deliveries[mid] >= m.max_deliveries:
                m.state[mid] = m.DEAD
                m.dead.append((mid, "max_deliveries", m.deliveries[mid]))
            else:
                m.state[mid] = m.READY
        for mid, s in m.state.items():
            if s == m.READY:
                m.ready_at[mid] = m.now  # restored: ready as of the reopen
        self.queue = Queue("sm", **self.options)  # type: ignore[arg-type]
        self.reopens += 1

    # ---- invariants ----------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        if not hasattr(self, "queue"):
            return
        self.sync()
        m = self.model
        s = self.queue.statistics()
        got = (s.ready, s.delayed, s.in_flight, s.dead_lettered)
        want = (
            m.count(m.READY),
            m.count(m.DELAYED),
            m.count(m.INFLIGHT),
            len(m.dead) - self.dead_at_open,
        )
        assert got == want, (got, want, m.now, self.reopens)
        assert len(self.queue) == m.held()
        if self.reopens == 0:
            counters = (s.put_total, s.acked_total, s.nacked_total, s.lease_expiries)
            assert counters == (m.put_total, m.acked_total, m.nacked_total, m.lease_expiries)
        if m.maxsize is not None:
            assert len(self.queue) <= m.maxsize
        dlq = self.queue.dead_letter
        assert dlq is not None
        entries = [(e.message.id, e.reason, e.attempts) for e in dlq.list()]
        assert sorted(entries) == sorted(m.dead), self.reopens


TestDurableQueueAgainstModel = DurableQueueMachine.TestCase
TestDurableQueueAgainstModel.settings = settings(
    max_examples=max(1, int((2000 if SOAK else 100) * STRESS_SCALE)),
    stateful_step_count=50,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
