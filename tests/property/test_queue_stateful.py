"""Queue against QueueModel (tests/models.py): one thread, a FakeClock, random operations.

Rules: put (any priority, with or without delay; Full at maxsize), get and get_many
(timeout=0), ack (Delivery.ack, Queue.ack, Queue.ack_many), nack with a delay, extend, the
clock moving on, a consumer dying (its receipts are forgotten: the leases run out), and stale or
garbage receipts thrown at ack / nack / extend. After every step the invariants compare the
queue with the model:

- every hand-out is one the model allows (smallest (effective class, ready time), aging
  modelled exactly or strict), so an acked or dead message is never delivered again, and an
  un-acked message is visible again exactly at its lease deadline (not before, not after);
- attempt == hand-outs so far; lease_deadline == get time + visibility_timeout;
- the DLQ receives each message exactly when a failure happens at max_deliveries, with the
  reason (max_deliveries on expiry, rejected on nack) and the attempt count;
- stale receipts raise InvalidReceipt and change nothing;
- statistics (ready, delayed, in_flight, dead_lettered, every counter, oldest_ready_age) and
  len() agree with the model; ready + delayed + in_flight + dead + acked == put_total; held
  never exceeds maxsize.

Clock steps and durations are multiples of 1/4 s, so float seconds and the model's integer
nanoseconds agree exactly. Hypothesis prints the failing rule sequence; replay it with the
printed @reproduce_failure. FASTQ_STRESS_SCALE scales the number of examples.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from models import QueueModel

from fastq import Delivery, Empty, FakeClock, Full, InvalidReceipt, Queue

STRESS_SCALE = float(os.environ.get("FASTQ_STRESS_SCALE", "1"))
NS = 1_000_000_000
PRIORITIES = ["critical", "high", "normal", "low"]
DURATIONS = st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.75, 2.5, 4.0])
STEPS = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0])


def ns(seconds: float) -> int:
    return round(seconds * NS)


class QueueMachine(RuleBasedStateMachine):
    queue: Queue
    model: QueueModel

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(0.0)
        self.held: list[Delivery] = []  # deliveries some live consumer still holds
        self.old_receipts: list[int] = []  # every receipt ever handed out
        self.n = 0

    @initialize(
        vt=st.sampled_from([0.5, 1.0, 2.5]),
        max_deliveries=st.integers(1, 3),
        maxsize=st.sampled_from([None, 2, 5, 12]),
        aging=st.sampled_from([None, 0.5, 1.0, 2.5]),
    )
    def create(
        self, vt: float, max_deliveries: int, maxsize: int | None, aging: float | None
    ) -> None:
        self.queue = Queue(
            "sm",
            clock=self.clock,
            visibility_timeout=vt,
            max_deliveries=max_deliveries,
            maxsize=maxsize,
            priority_aging=aging,
        )
        self.model = QueueModel(
            ns(vt), max_deliveries, maxsize, None if aging is None else ns(aging)
        )

    def sync(self) -> None:
        self.model.advance(ns(self.clock()))

    # ---- rules ---------------------------------------------------------------------------

    @rule(prio=st.integers(0, 3), delay=DURATIONS)
    def put(self, prio: int, delay: float) -> None:
        self._put(prio, delay)

    def _put(self, prio: int, delay: float) -> None:
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
        attempt, lease = self.model.take(mid, d.receipt)
        assert d.attempt == attempt
        assert abs(d.lease_deadline - lease / NS) < 1e-6, (d.lease_deadline, lease)
        assert d.receipt not in self.old_receipts, "a receipt was reused"
        self.held.append(d)
        self.old_receipts.append(d.receipt)

    @rule()
    def get(self) -> None:
        self.sync()
        want = self.model.candidates()
        if not want:
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
    @rule(i=st.integers(0, 100), delay=DURATIONS, with_delay=st.booleans())
    def nack(self, i: int, delay: float, with_delay: bool) -> None:
        self._nack(i, delay, with_delay)

    def _nack(self, i: int, delay: float, with_delay: bool) -> None:
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
    @rule(i=st.integers(0, 100), delay=DURATIONS, with_delay=st.booleans())
    def release(self, i: int, delay: float, with_delay: bool) -> None:
        self._release(i, delay, with_delay)

    def _release(self, i: int, delay: float, with_delay: bool) -> None:
        d = self.held.pop(i % len(self.held))
        self.sync()
        ok = self.model.release(d.receipt, ns(delay) if with_delay else 0)
        try:
            d.release(delay if with_delay else None)
        except InvalidReceipt:
            assert not ok, "valid receipt refused by release"
        else:
            assert ok, "stale receipt accepted by release"

    @precondition(lambda self: bool(self.held))
    @rule(i=st.integers(0, 100), reason=st.sampled_from(["permanent", "max_attempts"]))
    def reject(self, i: int, reason: str) -> None:
        d = self.held.pop(i % len(self.held))
        self.sync()
        ok = self.model.reject(d.receipt, reason)
        try:
            d.reject(f"e{i}", reason)
        except InvalidReceipt:
            assert not ok, "valid receipt refused by reject"
        else:
            assert ok, "stale receipt accepted by reject"

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

    @precondition(lambda self: bool(self.old_receipts))
    @rule(i=st.integers(0, 1000), op=st.sampled_from(["ack", "nack", "extend"]))
    def stale_receipt(self, i: int, op: str) -> None:
        r = self.old_receipts[i % len(self.old_receipts)]
        self.sync()
        if self.model.owner(r) is not None:
            return  # still valid: the other rules cover it
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

    @rule(r=st.integers(0, 2**64 - 1))
    def garbage_receipt(self, r: int) -> None:
        self.sync()
        if self.model.owner(r) is not None or r in self.old_receipts:
            return
        try:
            self.queue.ack(r)
        except InvalidReceipt:
            return
        raise AssertionError(f"garbage receipt {r:#x} accepted")

    # ---- invariants ----------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        if not hasattr(self, "queue"):
            return
        self.sync()
        m = self.model
        s = self.queue.statistics()
        got = (s.ready, s.delayed, s.in_flight, s.dead_lettered)
        want = (m.count(m.READY), m.count(m.DELAYED), m.count(m.INFLIGHT), len(m.dead))
        assert got == want, (got, want, m.now)
        counters = (
            s.put_total,
            s.acked_total,
            s.nacked_total,
            s.lease_expiries,
            s.redelivered_total,
            s.released_total,
        )
        assert counters == (
            m.put_total,
            m.acked_total,
            m.nacked_total,
            m.lease_expiries,
            m.redelivered_total,
            m.released_total,
        ), counters
        assert len(self.queue) == m.held()
        assert s.ready + s.delayed + s.in_flight + s.dead_lettered + s.acked_total == s.put_total
        if m.maxsize is not None:
            assert len(self.queue) <= m.maxsize
        oldest = m.oldest_ready_at()
        if oldest is None:
            assert s.oldest_ready_age is None
        else:
            assert s.oldest_ready_age is not None
            assert abs(s.oldest_ready_age - (m.now - oldest) / NS) < 1e-6
        dlq = self.queue.dead_letter
        assert dlq is not None
        entries = [(e.message.id, e.reason, e.attempts) for e in dlq.list()]
        assert sorted(entries) == sorted(m.dead)  # leases ending together: any order


TestQueueAgainstModel = QueueMachine.TestCase
TestQueueAgainstModel.settings = settings(
    max_examples=max(1, int(300 * STRESS_SCALE)),
    stateful_step_count=100,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
