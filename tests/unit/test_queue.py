"""Queue (unit): the in-memory work queue's contract, deterministic under fastq.FakeClock.

- put / get / ack; Delivery fields (attempt, receipt, lease_deadline = get time + vt);
- leases: expiry at exactly lease_deadline is a failed attempt, visible again at once;
  extend moves the deadline; stale receipts (after expiry, ack, nack, foreign, garbage) raise
  InvalidReceipt and never touch the redelivered copy; non-int receipts raise TypeError;
- max_deliveries -> DLQ with reason and context ("max_deliveries" on expiry, "rejected" on
  nack, "expired" for a passed message deadline), dead_letter=None still counts;
- delay and nack(delay=) on the queue clock; priorities (strict and with aging); FIFO;
- dedup_window; maxsize / max_bytes Full, put_many's exc.ids, a blocked put woken by an ack
  from another thread; purge; close/drain; iteration; statistics; bad arguments.

Random inputs come from the seeded ``rng`` fixture (asserts print it: FASTQ_SEED replays).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest
from threads import LIVENESS, Runner, wait_until

import fastq
from fastq import Closed, Empty, FakeClock, Full, InvalidReceipt, Queue


def q_(clock: FakeClock | None = None, **kw: Any) -> Queue:
    return Queue("q", clock=clock if clock is not None else FakeClock(), **kw)


# ---- basics ----------------------------------------------------------------------------------


def test_put_get_ack_and_delivery_fields() -> None:
    clock = FakeClock(100.0)
    q = q_(clock, visibility_timeout=7.5)
    mid = q.put(b"hello", key="k")
    assert isinstance(mid, str)
    assert len(q) == 1
    d = q.get(timeout=0)
    assert d.message.payload == b"hello"
    assert d.message.id == mid
    assert d.message.key == "k"
    assert d.attempt == 1
    assert isinstance(d.receipt, int)
    assert d.lease_deadline == pytest.approx(107.5)
    assert d.queue is q
    st = q.statistics()
    assert (st.ready, st.delayed, st.in_flight) == (0, 0, 1)
    d.ack()
    assert len(q) == 0
    st = q.statistics()
    assert st.put_total == 1
    assert st.acked_total == 1
    assert st.in_flight == 0
    with pytest.raises(Empty):
        q.get(timeout=0)


def test_fifo_within_a_class(rng: Any) -> None:
    q = q_()
    payloads = [rng.randrange(10**9) for _ in range(50)]
    ids = q.put_many(payloads)
    assert len(ids) == 50
    assert len(set(ids)) == 50
    got = q.get_many(20, timeout=0)
    got += q.get_many(100, timeout=0)
    assert [d.message.payload for d in got] == payloads, rng
    assert [d.message.id for d in got] == ids


def test_put_message_object_and_fields() -> None:
    q = q_()
    m = fastq.Message(b"x", type="t")
    assert q.put(m) == m.id
    q.put(m.replace(id="other"), priority="high")
    assert q.get(timeout=0).message.id == "other"  # high first
    assert q.get(timeout=0).message == m


# ---- leases ----------------------------------------------------------------------------------


def test_lease_expiry_exactly_at_deadline_redelivers() -> None:
    clock = FakeClock()
    q = q_(clock, visibility_timeout=10.0)
    q.put("m")
    d1 = q.get(timeout=0)
    clock.advance(9.999)
    with pytest.raises(Empty):
        q.get(timeout=0)
    assert q.statistics().in_flight == 1
    clock.advance(0.001)  # now == lease_deadline
    d2 = q.get(timeout=0)
    assert d2.message.id == d1.message.id
    assert d2.attempt == 2
    assert d2.receipt != d1.receipt
    assert d2.lease_deadline == pytest.approx(20.0)
    st = q.statistics()
    assert st.lease_expiries == 1
    assert st.redelivered_total == 1
    # the late ack of the first hand-out is stale and does not settle the second
    with pytest.raises(InvalidReceipt):
        d1.ack()
    assert q.statistics().in_flight == 1
    d2.ack()
    assert len(q) == 0


def test_expired_lease_ready_time_is_the_deadline() -> None:
    # expired message (ready at its lease deadline t=5) beats a message put later (t=8)
    clock = FakeClock()
    q = q_(clock, visibility_timeout=5.0)
    q.put("first")
    q.get(timeout=0)
    clock.advance(8.0)
    q.put("second")
    assert q.statistics().oldest_ready_age == pytest.approx(3.0)
    assert q.get(timeout=0).message.payload == "first"


def test_ready_order_merges_expired_leases_and_due_delays() -> None:
    # a delayed message ready at t=0.5 and a lease that ran out at t=1, both found at t=2:
    # the delayed one has been ready longer, so it is served first and sets oldest_ready_age
    clock = FakeClock()
    q = q_(clock, visibility_timeout=1.0, priority_aging=None)
    q.put("leased")
    q.get(timeout=0)
    q.put("delayed", delay=0.5)
    clock.advance(2.0)
    assert q.statistics().oldest_ready_age == pytest.approx(1.5)
    assert q.get(timeout=0).message.payload == "delayed"
    assert q.get(timeout=0).message.payload == "leased"


def test_extend_moves_the_deadline() -> None:
    clock = FakeClock()
    q = q_(clock, visibility_timeout=10.0)
    q.put("m")
    d = q.get(timeout=0)
    clock.advance(8.0)
    assert d.extend(30.0) == pytest.approx(38.0)
    assert d.lease_deadline == pytest.approx(38.0)
    clock.advance(29.0)  # t=37: the original lease would have ended at 10
    with pytest.raises(Empty):
        q.get(timeout=0)
    assert q.extend(d.receipt, 1.0) == pytest.approx(38.0)  # shorten: ends at 37 + 1
    clock.advance(1.0)
    d2 = q.get(timeout=0)
    assert d2.attempt == 2
    with pytest.raises(InvalidReceipt):
        d.extend(5.0)


def test_stale_receipts() -> None:
    clock = FakeClock()
    q = q_(clock)
    other = q_(clock)
    q.put_many(["a", "b", "c"])
    a, b, c = q.get_many(3, timeout=0)
    a.ack()
    b.nack()
    with pytest.raises(InvalidReceipt):
        q.ack(a.receipt)
    with pytest.raises(InvalidReceipt):
        q.nack(a.receipt)
    with pytest.raises(InvalidReceipt):
        q.extend(b.receipt, 1.0)
    with pytest.raises(InvalidReceipt):
        b.ack()
    other.put("x")
    other.get(timeout=0)
    with pytest.raises(InvalidReceipt):
        other.ack(c.receipt)  # foreign receipt
    for garbage in (0, 12345, -1, 2**64, 2**70):
        with pytest.raises(InvalidReceipt):
            q.ack(garbage)
    for wrong in ("1", 1.0, None, True, b"\x01"):
        with pytest.raises(TypeError):
            q.ack(wrong)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            q.nack(wrong)  # type: ignore[arg-type]
    # c is still valid after all that
    c.ack()
    assert q.statistics().in_flight == 0
    assert other.statistics().in_flight == 1


def test_ack_many_acks_valid_then_reports_stale() -> None:
    q = q_()
    q.put_many(range(4))
    ds = q.get_many(4, timeout=0)
    ds[0].ack()
    with pytest.raises(InvalidReceipt):
        q.ack_many([ds[0], ds[1].receipt, ds[2], 999_999_999])
    assert q.statistics().in_flight == 1  # ds[1], ds[2] acked
    q.ack_many([ds[3]])
    assert len(q) == 0
    assert q.statistics().acked_total == 4


# ---- attempts and dead letters ---------------------------------------------------------------


def test_max_deliveries_on_expiry_goes_to_dlq_with_context() -> None:
    clock = FakeClock(50.0)
    q = q_(clock, visibility_timeout=2.0, max_deliveries=3)
    mid = q.put(b"poison")
    before = time.time()
    for attempt in (1, 2, 3):
        d = q.get(timeout=0)
        assert d.attempt == attempt
        clock.advance(2.0)
    with pytest.raises(Empty):
        q.get(timeout=0)
    st = q.statistics()
    assert st.dead_lettered == 1
    assert len(q) == 0
    assert st.lease_expiries == 3
    assert q.dead_letter is not None
    assert q.dead_letter.name == "q.dlq"
    (dl,) = q.dead_letter.list()
    assert dl.message.id == mid
    assert dl.reason == "max_deliveries"
    assert dl.queue == "q"
    assert dl.attempts == 3
    assert dl.last_error is None
    assert dl.first_delivery is not None
    assert dl.last_delivery is not None
    assert dl.last_delivery - dl.first_delivery == pytest.approx(4.0, abs=0.01)
    assert dl.dead_lettered_at >= before - 1
    assert len(q.dead_letter) == 1  # list() did not consume
    assert q.dead_letter.statistics().by_reason == {"max_deliveries": 1}
    assert q.dead_letter.pop() == dl
    assert len(q.dead_letter) == 0


def test_nack_on_last_attempt_is_rejected_with_error() -> None:
    q = q_(max_deliveries=2)
    q.put("m")
    q.get(timeout=0).nack(error="first")
    d = q.get(timeout=0)
    assert d.attempt == 2
    d.nack(error=ValueError("boom"))
    assert q.dead_letter is not None
    (dl,) = q.dead_letter.list()
    assert dl.reason == "rejected"
    assert dl.attempts == 2
    assert dl.last_error == "ValueError: boom"
    st = q.statistics()
    assert st.nacked_total == 2
    assert st.dead_lettered == 1
    assert len(q) == 0
    assert q.dead_letter.purge() == 1
    assert len(q.dead_letter) == 0


def test_max_deliveries_one() -> None:
    q = q_(max_deliveries=1)
    q.put("m")
    q.get(timeout=0).nack()
    with pytest.raises(Empty):
        q.get(timeout=0)
    assert q.statistics().dead_lettered == 1


def test_message_deadline_passed_is_dead_lettered_not_delivered() -> None:
    q = q_()
    q.put("late", deadline=time.time() - 1.0)
    q.put("ok", deadline=time.time() + 3600)
    d = q.get(timeout=0)
    assert d.message.payload == "ok"
    assert q.dead_letter is not None
    (dl,) = q.dead_letter.list()
    assert dl.reason == "expired"
    assert dl.message.payload == "late"
    assert dl.attempts == 0
    assert dl.first_delivery is None


def test_dead_letter_none_counts_and_custom_dlq() -> None:
    q = q_(max_deliveries=1, dead_letter=None)
    q.put("m")
    q.get(timeout=0).nack()
    assert q.dead_letter is None
    assert q.statistics().dead_lettered == 1
    dlq = fastq.DeadLetterQueue("mine")
    q2 = q_(max_deliveries=1, dead_letter=dlq)
    q2.put("m")
    q2.get(timeout=0).nack()
    assert q2.dead_letter is dlq
    assert len(dlq) == 1
    with pytest.raises(TypeError):
        q_(dead_letter="other")


# ---- delays ----------------------------------------------------------------------------------


def test_delay_and_nack_delay_on_queue_clock() -> None:
    clock = FakeClock()
    q = q_(clock)
    q.put("later", delay=5.0)
    q.put("now")
    assert q.statistics().delayed == 1
    assert len(q) == 2
    d = q.get(timeout=0)
    assert d.message.payload == "now"
    clock.advance(4.999)
    with pytest.raises(Empty):
        q.get(timeout=0)
    clock.advance(0.001)
    d2 = q.get(timeout=0)
    assert d2.message.payload == "later"
    d2.nack(delay=3.0)
    assert q.statistics().delayed == 1
    clock.advance(2.9)
    with pytest.raises(Empty):
        q.get(timeout=0)
    clock.advance(0.1)
    d3 = q.get(timeout=0)
    assert d3.message.payload == "later"
    assert d3.attempt == 2


# ---- priorities ------------------------------------------------------------------------------


def test_strict_priority_order() -> None:
    q = q_(priority_aging=None)
    order = ["low", "normal", "high", "critical", "low", "critical"]
    for i, p in enumerate(order):
        q.put(i, priority=p)
    got = [d.message.payload for d in q.get_many(10, timeout=0)]
    assert got == [3, 5, 2, 1, 0, 4]


def test_priority_aging_low_served_after_three_steps() -> None:
    clock = FakeClock()
    aging = 10.0
    q = q_(clock, priority_aging=aging)
    q.put("low", priority="low")
    served_at = None
    for step in range(80):  # t = 0, 0.5, 1, ...
        q.put(("crit", step), priority="critical")
        d = q.get(timeout=0)
        d.ack()
        if d.message.payload == "low":
            served_at = clock()
            break
        clock.advance(0.5)
    # before t=30 low's effective class is >= 1 and a critical (class 0) wins; at t=30 it is
    # class 0 and older than every critical waiting
    assert served_at == pytest.approx(3 * aging)


def test_priority_aging_none_starves_low() -> None:
    clock = FakeClock()
    q = q_(clock, priority_aging=None)
    q.put("low", priority="low")
    for step in range(100):
        q.put(step, priority="critical")
        d = q.get(timeout=0)
        assert d.message.payload == step
        d.ack()
        clock.advance(1.0)
    assert q.get(timeout=0).message.payload == "low"


def test_aging_one_step_ties_by_ready_time() -> None:
    clock = FakeClock()
    q = q_(clock, priority_aging=1.0)
    q.put("normal0", priority="normal")  # class 2, ready t=0
    clock.advance(1.0)
    q.put("high1", priority="high")  # class 1, ready t=1
    # at t=1: normal0 effective 1, ready 0 < 1 -> normal0 first
    assert q.get(timeout=0).message.payload == "normal0"
    assert q.get(timeout=0).message.payload == "high1"


# ---- dedup -----------------------------------------------------------------------------------


def test_dedup_window() -> None:
    clock = FakeClock()
    q = q_(clock, dedup_window=5.0)
    first = q.put("a", idempotency_key="k")
    assert q.put("b", idempotency_key="k") == first
    assert q.put("c") != first  # no key: never deduplicated
    assert len(q) == 2
    assert q.statistics().deduplicated_total == 1
    clock.advance(4.9)
    assert q.put("d", idempotency_key="k") == first
    clock.advance(0.1)
    again = q.put("e", idempotency_key="k")
    assert again != first
    assert len(q) == 3
    assert q.statistics().deduplicated_total == 2
    ids = q.put_many(["f", "g"], idempotency_key="k2")
    assert ids[0] == ids[1]
    assert len(q) == 4


def test_no_dedup_without_window() -> None:
    q = q_()
    assert q.put("a", idempotency_key="k") != q.put("a", idempotency_key="k")
    assert len(q) == 2


# ---- capacity --------------------------------------------------------------------------------


def test_maxsize_counts_ready_delayed_inflight() -> None:
    q = q_(maxsize=3)
    q.put("ready")
    q.put("delayed", delay=10.0)
    q.put("inflight")
    q.get(timeout=0)
    with pytest.raises(Full):
        q.put("x", block=False)
    with pytest.raises(Full):
        q.put("x", timeout=0)
    with pytest.raises(Full) as ei:
        q.put_many(["y"], block=False)
    assert ei.value.ids == []  # type: ignore[attr-defined]
    assert q.statistics().put_total == 3


def test_put_many_full_reports_stored_ids() -> None:
    q = q_(maxsize=3)
    with pytest.raises(Full) as ei:
        q.put_many(list(range(5)), block=False)
    ids = ei.value.ids  # type: ignore[attr-defined]
    assert len(ids) == 3
    assert len(q) == 3
    assert [d.message.id for d in q.get_many(5, timeout=0)] == ids


def test_max_bytes() -> None:
    q = q_(max_bytes=10, maxsize=None)
    q.put(b"12345")
    q.put("é12")  # 4 UTF-8 bytes: total 9
    with pytest.raises(Full):
        q.put(b"ab", block=False)
    q.put(b"a")  # exactly 10
    assert q.statistics().bytes == 10
    with pytest.raises(Full):
        q.put([1], block=False)  # JSON "[1]" = 3 bytes
    for d in q.get_many(3, timeout=0):
        d.ack()
    assert q.statistics().bytes == 0
    q.put(b"x" * 100)  # bigger than max_bytes: still enters an empty queue
    with pytest.raises(Full):
        q.put(b"y", block=False)
    assert len(q) == 1


def test_blocking_put_woken_by_ack_from_another_thread() -> None:
    q = Queue("q", maxsize=1)  # real clock: the put must be woken, not time out
    q.put("one")
    d = q.get(timeout=0)
    done = threading.Event()

    def producer() -> str:
        r = q.put("two", timeout=LIVENESS)
        done.set()
        return r

    t = Runner(producer)
    t.start()
    assert t.started_call.wait(LIVENESS)
    assert not done.is_set()  # still full: cannot have returned
    d.ack()
    assert done.wait(LIVENESS), "put was not woken by the ack"
    mid = t.finish()
    assert t.error is None
    assert q.get(timeout=0).message.id == mid


def test_blocked_put_times_out_on_fake_clock() -> None:
    clock = FakeClock()
    q = q_(clock, maxsize=1)
    q.put("one")
    t = Runner(lambda: q.put("two", timeout=5.0))
    t.start()
    assert t.started_call.wait(LIVENESS)
    clock.advance(4.0)
    # not timed out at t=4: advance until the runner is out (woken by advance)
    while t.is_alive() and clock() < 1000:
        clock.advance(1.0)
        t.join(0.01)
    t.finish()
    assert isinstance(t.error, Full)
    assert clock() >= 5.0
    assert len(q) == 1


def test_blocked_get_woken_by_advance_not_real_time() -> None:
    clock = FakeClock()
    q = q_(clock)
    q.put("later", delay=3.0)
    t = Runner(lambda: q.get(timeout=100.0))
    t.start()
    assert t.started_call.wait(LIVENESS)
    clock.advance(3.0)
    d = t.finish()
    assert t.error is None
    assert d.message.payload == "later"


def test_blocked_get_empty_after_fake_timeout() -> None:
    clock = FakeClock()
    q = q_(clock)
    t = Runner(lambda: q.get(timeout=2.0))
    t.start()
    assert t.started_call.wait(LIVENESS)
    while t.is_alive() and clock() < 1000:
        clock.advance(0.5)
        t.join(0.01)
    t.finish()
    assert isinstance(t.error, Empty)
    assert clock() >= 2.0


# ---- purge, close, iteration -----------------------------------------------------------------


def test_purge_drops_ready_only() -> None:
    q = q_()
    q.put_many(["a", "b", "c"])
    q.put("d", delay=5.0)
    d = q.get(timeout=0)
    assert q.purge() == 2
    st = q.statistics()
    assert (st.ready, st.delayed, st.in_flight) == (0, 1, 1)
    d.ack()
    assert len(q) == 1


def test_close_drains_then_closed() -> None:
    clock = FakeClock()
    q = q_(clock, visibility_timeout=5.0)
    q.put("a")
    q.put("b", delay=2.0)
    d = q.get(timeout=0)
    q.close()
    assert q.closed
    assert q.statistics().closed
    with pytest.raises(Closed):
        q.put("c")
    with pytest.raises(Closed):
        q.put_many(["c"])
    with pytest.raises(Empty):  # b delayed, a in flight: not drained
        q.get(timeout=0)
    clock.advance(2.0)
    assert q.get(timeout=0).message.payload == "b"  # then ack? leave it in flight
    d.nack()  # a comes back
    assert q.get(timeout=0).message.payload == "a"
    assert len(q) == 2
    clock.advance(5.0)  # both leases run out: redelivered even when closed
    for d in q.get_many(5, timeout=0):
        d.ack()
    with pytest.raises(Closed):
        q.get(timeout=0)
    with pytest.raises(Closed):
        q.get()


def test_close_wakes_blocked_get() -> None:
    q = q_()
    t = Runner(lambda: q.get())
    t.start()
    assert t.started_call.wait(LIVENESS)
    q.close()
    t.finish()
    assert isinstance(t.error, Closed)


@pytest.mark.parametrize("how", ["delivery", "queue"])
def test_closed_getter_woken_when_last_in_flight_is_acked(how: str) -> None:
    # closed, one message in flight, a consumer blocked in get(): acking the last message
    # drains the queue, so the blocked get must raise Closed (not wait for the old lease)
    q = q_(visibility_timeout=30.0)
    q.put("a")
    d = q.get(timeout=0)
    q.close()
    t = Runner(lambda: q.get())
    t.start()
    assert t.started_call.wait(LIVENESS)
    wait_until(lambda: q._waiting > 0, "the getter blocks")  # private: the waiter count
    if how == "delivery":
        d.ack()
    else:
        q.ack(d.receipt)
    t.finish()
    assert isinstance(t.error, Closed)


def test_iteration_until_closed_and_drained() -> None:
    q = q_()
    q.put_many(list(range(10)))
    q.close()
    seen = []
    for d in q:
        seen.append(d.message.payload)
        d.ack()
    assert seen == list(range(10))


def test_delete() -> None:
    q = q_()
    q.put("a")
    q.delete()
    assert len(q) == 0
    assert q.closed
    with pytest.raises(Closed):
        q.put("b")
    with pytest.raises(Closed):
        q.get(timeout=0)


def test_statistics_accounting() -> None:
    clock = FakeClock()
    q = q_(clock, visibility_timeout=1.0, max_deliveries=2)
    q.put_many(["a", "b", "c", "d"])
    q.put("e", delay=5.0)
    a, b, _c = q.get_many(3, timeout=0)
    a.ack()
    b.nack()
    clock.advance(1.0)  # c expires
    st = q.statistics()
    assert st.name == "q"
    assert st.put_total == 5
    assert st.acked_total == 1
    assert st.nacked_total == 1
    assert st.lease_expiries == 1
    assert st.redelivered_total == 2
    assert (st.ready, st.delayed, st.in_flight) == (3, 1, 0)
    assert st.oldest_ready_age == pytest.approx(1.0)
    assert len(q) == 4


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, 0.0])
def test_bad_visibility_timeout(bad: float) -> None:
    with pytest.raises(ValueError, match="visibility_timeout"):
        q_(visibility_timeout=bad)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError):
        q_(visibility_timeout="1")
    for md in (0, -1):
        with pytest.raises(ValueError, match="max_deliveries"):
            q_(max_deliveries=md)
    with pytest.raises(TypeError):
        q_(max_deliveries=1.5)
    with pytest.raises(ValueError, match="sync"):
        Queue("q", sync="always")  # sync without a path
    q = q_()
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="delay"):
            q.put("x", delay=bad)
    with pytest.raises(TypeError):
        q.put("x", delay="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="urgent"):
        q.put("x", priority="urgent")
    with pytest.raises(TypeError):
        q.put("x", key=1.5)
    with pytest.raises(TypeError, match="colour"):
        q.put("x", colour="red")
    with pytest.raises(ValueError, match="timeout"):
        q.get(timeout=-1)
    with pytest.raises(ValueError, match="max_messages"):
        q.get_many(0)
    assert len(q) == 0  # nothing slipped in
    q.put("x")
    d = q.get(timeout=0)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="delay"):
            d.nack(delay=bad)
        with pytest.raises(ValueError, match="seconds"):
            d.extend(bad)
    d.ack()  # still valid after the refused calls


def test_a_long_lease_behind_many_settled_ones_still_runs_out_on_time() -> None:
    """Leases are timed in hand-out order with settled entries dropped lazily (compacted when
    they outnumber the live ones): 20,000 get/ack cycles behind one held lease, and one
    extended lease, must not disturb when either runs out."""
    clock = FakeClock()
    q = q_(clock, visibility_timeout=10.0, maxsize=None)
    q.put("held")
    held = q.get(timeout=0)
    q.put("extended")
    extended = q.get(timeout=0)
    extended.extend(25.0)  # runs out at 25, not 10
    for i in range(20_000):
        q.put(i)
        q.get(timeout=0).ack()
        if i % 5000 == 0:
            clock.advance(1.0)  # time moves while the held lease waits: now 4.0 at the end
    assert q.statistics().in_flight == 2
    clock.advance(10.0 - clock())
    again = q.get(timeout=0)
    assert (again.message.payload, again.attempt) == ("held", 2)
    with pytest.raises(InvalidReceipt):
        held.ack()
    with pytest.raises(Empty):
        q.get(timeout=0)  # the extended lease is still running
    again.ack()
    clock.advance(14.75)
    with pytest.raises(Empty):
        q.get(timeout=0)  # 24.75: not yet
    clock.advance(0.25)
    assert q.get(timeout=0).message.payload == "extended"
    assert q.statistics().lease_expiries == 2
