"""Durable Queue (path=) against QueueModel (tests/models.py), with crash_and_reopen (R9).

The rules of test_queue_stateful.py (put, get, get_many, ack three ways, nack, release,
reject, extend, the clock moving on, a consumer dying, stale receipts) plus purge and
crash_and_reopen:
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
from hypothesis.stateful import initialize, invariant, precondition, rule
from models import QueueModel
from test_queue_stateful import STRESS_SCALE, QueueMachine, ns

from fastq import Delivery, FakeClock, Queue

SOAK = os.environ.get("FASTQ_SOAK") == "1"
BIG = 1_000_000.0  # a delay no clock step here reaches (wall-clock ready time in the journal)
DELAYS = st.sampled_from([0.0, BIG])


class DurableQueueMachine(QueueMachine):
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

    # ---- rules (the rest are QueueMachine's) ---------------------------------------------

    @rule(prio=st.integers(0, 3), delay=DELAYS)
    def put(self, prio: int, delay: float) -> None:
        self._put(prio, delay)

    @precondition(lambda self: bool(self.held))
    @rule(i=st.integers(0, 100), delay=DELAYS, with_delay=st.booleans())
    def nack(self, i: int, delay: float, with_delay: bool) -> None:
        self._nack(i, delay, with_delay)

    @precondition(lambda self: bool(self.held))
    @rule(i=st.integers(0, 100), delay=DELAYS, with_delay=st.booleans())
    def release(self, i: int, delay: float, with_delay: bool) -> None:
        self._release(i, delay, with_delay)

    @rule()
    def purge(self) -> None:
        self.sync()
        m = self.model
        ready = [mid for mid, s in m.state.items() if s == m.READY]
        assert self.queue.purge() == len(ready)
        for mid in ready:
            m.state[mid] = m.ACKED  # settled: never delivered again

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
