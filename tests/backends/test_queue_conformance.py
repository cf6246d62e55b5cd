"""Queue conformance: the work-queue contract (docs/queue.md), one set of assertions run on
every backend (memory, log, redis; see conftest.py).

- put / get / ack, get_many / ack_many, Delivery fields; payloads and Message fields survive;
- attempts counted over nack; nack(delay=) and put(delay=) visible after the delay; release
  keeps the attempt count; reject -> dead letter "permanent"; the last allowed nack ->
  "rejected"; the last lease running out -> "max_deliveries"; a passed deadline -> "expired";
- leases run out on real time (short visibility timeouts) and redeliver; extend keeps a lease
  alive past its original deadline; stale receipts raise InvalidReceipt;
- priorities, dedup_window, maxsize (Full), len() / statistics(), purge, close(drain=True);
- async aput / aget / aget_many, and a blocked get woken by a put from another thread.
- Redis only: what the backend cannot do is refused at construction with fastq.Unsupported.

Lease and delay tests run on the real clock (Redis leases are the server's idle times), so
they wait with get(timeout=...) under a generous liveness bound, and the lower bounds on
elapsed time allow 50 ms for clock granularity.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from threads import LIVENESS, Runner

import fastq
from fastq import Closed, Empty, Full, InvalidReceipt, Message, Queue

# a hang (a lost wake-up, a deadlock) fails fast instead of using the session's 300 s
pytestmark = pytest.mark.timeout(30)

MakeQueue = Callable[..., Queue]
SLACK = 0.05  # seconds a backend's clock may read differently from time.monotonic()


def drain_dead(q: Queue, n: int) -> list[fastq.DeadLetter]:
    """Drive the queue (gets that find nothing) until its dead-letter queue holds ``n``
    entries; return them."""
    dlq = q.dead_letter
    assert dlq is not None
    deadline = time.monotonic() + LIVENESS
    while len(dlq) < n:
        assert time.monotonic() < deadline, f"dead-letter queue holds {len(dlq)}, expected {n}"
        with pytest.raises(Empty):
            q.get(timeout=0.05)
    entries = dlq.list()
    assert len(entries) == n
    return entries


def take(q: Queue, n: int, batch: int = 4) -> list[fastq.Delivery]:
    """``n`` deliveries by get_many (which may return fewer than asked)."""
    got: list[fastq.Delivery] = []
    while len(got) < n:
        got += q.get_many(min(batch, n - len(got)), timeout=LIVENESS)
    assert len(got) == n
    return got


# ---- put / get / ack -------------------------------------------------------------------------


def test_put_get_ack(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    assert q.dead_letter is not None
    assert q.dead_letter.name == "jobs.dlq"
    mid = q.put(b"hello", key="k")
    assert isinstance(mid, str)
    assert len(q) == 1
    d = q.get(timeout=0)
    assert d.message.payload == b"hello"
    assert d.message.id == mid
    assert d.message.key == "k"
    assert d.attempt == 1
    assert isinstance(d.receipt, int)
    assert d.queue is q
    st = q.statistics()
    assert (st.ready, st.delayed, st.in_flight) == (0, 0, 1)
    d.ack()
    assert len(q) == 0
    st = q.statistics()
    assert (st.put_total, st.acked_total, st.in_flight) == (1, 1, 0)
    with pytest.raises(Empty):
        q.get(timeout=0)


def test_get_many_fifo_and_ack_many(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    payloads = [f"job-{i}" for i in range(10)]
    ids = q.put_many(payloads)
    assert len(set(ids)) == 10
    got = take(q, 10)
    assert [d.message.payload for d in got] == payloads
    assert [d.message.id for d in got] == ids
    assert all(d.attempt == 1 for d in got)
    assert len({d.receipt for d in got}) == 10
    assert q.statistics().in_flight == 10
    q.ack_many(got)
    assert len(q) == 0
    assert q.statistics().acked_total == 10
    with pytest.raises(Empty):
        q.get(timeout=0)


def test_ack_many_acks_the_valid_then_reports_the_stale(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    q.put_many(range(3))
    a, b, c = take(q, 3)
    a.ack()
    with pytest.raises(InvalidReceipt):
        q.ack_many([a, b.receipt, c])
    assert len(q) == 0  # b and c were acked all the same
    assert q.statistics().acked_total == 3


PAYLOADS: list[Any] = [
    b"\x00\xff raw bytes",
    b"",
    "h\u00e9llo \u2713",
    "",
    {"a": [1, 2.5, None, True], "b": {"c": "d"}},
    [1, "x", None, [False]],
    42,
    -(2**53),
    2.5,
    None,
    True,
]


def test_payloads_round_trip(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    ids = q.put_many(PAYLOADS)
    got = take(q, len(PAYLOADS))
    assert [d.message.id for d in got] == ids
    for d, want in zip(got, PAYLOADS, strict=True):
        assert d.message.payload == want
        assert type(d.message.payload) is type(want)
    q.ack_many(got)


def test_message_fields_survive(make_queue: MakeQueue) -> None:
    q = make_queue("jobs", priority_aging=None)
    deadline = time.time() + 3600
    sent = [
        Message(
            {"order": 1},
            key="user-7",
            type="order.created",
            priority="high",
            headers={"h1": "v1", "traceparent": "00-abc-def-01"},
            idempotency_key="idem-1",
            deadline=deadline,
            source="checkout",
            trace_id="trace-1",
        ),
        Message(b"k-bytes", key=b"\x01key", idempotency_key=b"\x02idem"),
        Message("k-int", key=12345, id="custom-id-1"),
        Message("plain"),
    ]
    for m in sent:
        assert q.put(m) == m.id
    got = take(q, len(sent))
    assert [d.message.id for d in got] == [m.id for m in sent]  # high first, then FIFO
    for d, m in zip(got, sent, strict=True):
        r = d.message
        assert (r.payload, r.key, r.type, r.priority) == (m.payload, m.key, m.type, m.priority)
        assert (r.idempotency_key, r.source, r.trace_id) == (
            m.idempotency_key,
            m.source,
            m.trace_id,
        )
        assert dict(r.headers or {}) == dict(m.headers or {})
        assert r.timestamp == m.timestamp
        if m.deadline is None:
            assert r.deadline is None
        else:
            assert r.deadline == pytest.approx(m.deadline, abs=1e-6)
    q.ack_many(got)


# ---- attempts, delays, release ---------------------------------------------------------------


def test_attempts_count_over_nacks(make_queue: MakeQueue) -> None:
    q = make_queue("jobs", max_deliveries=5)
    mid = q.put("m")
    for attempt in (1, 2, 3):
        d = q.get(timeout=0)
        assert d.message.id == mid
        assert d.attempt == attempt
        d.nack()
    d = q.get(timeout=0)
    assert d.attempt == 4
    d.ack()
    st = q.statistics()
    assert (st.nacked_total, st.redelivered_total, st.acked_total) == (3, 3, 1)
    assert st.dead_lettered == 0
    assert len(q) == 0


def test_nack_delay(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    q.put("m")
    d = q.get(timeout=0)
    t0 = time.monotonic()
    d.nack(delay=0.4)
    with pytest.raises(Empty):
        q.get(timeout=0)
    st = q.statistics()
    assert (st.ready, st.delayed, st.in_flight) == (0, 1, 0)
    assert len(q) == 1
    d2 = q.get(timeout=LIVENESS)
    assert time.monotonic() - t0 >= 0.4 - SLACK
    assert d2.message.payload == "m"
    assert d2.attempt == 2
    d2.ack()


def test_put_delay(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    t0 = time.monotonic()
    q.put("later", delay=0.4)
    q.put("now")
    assert len(q) == 2
    st = q.statistics()
    assert (st.ready, st.delayed) == (1, 1)
    assert q.get(timeout=0).message.payload == "now"
    with pytest.raises(Empty):
        q.get(timeout=0)
    d = q.get(timeout=LIVENESS)
    assert time.monotonic() - t0 >= 0.4 - SLACK
    assert d.message.payload == "later"
    assert d.attempt == 1


def test_release_keeps_the_attempt_count(make_queue: MakeQueue) -> None:
    q = make_queue("jobs", max_deliveries=2)
    mid = q.put("m")
    d = q.get(timeout=0)
    d.nack()
    d = q.get(timeout=0)
    assert d.attempt == 2
    d.release()  # untried: does not use the last attempt
    with pytest.raises(InvalidReceipt):
        d.ack()
    d2 = q.get(timeout=0)
    assert d2.message.id == mid
    assert d2.attempt == 2
    d2.release(delay=0.2)
    with pytest.raises(Empty):
        q.get(timeout=0)
    d3 = q.get(timeout=LIVENESS)
    assert d3.attempt == 2
    d3.ack()
    st = q.statistics()
    assert st.released_total == 2
    assert st.dead_lettered == 0
    assert len(q) == 0


# ---- dead letters ----------------------------------------------------------------------------


def test_reject_dead_letters_at_once(make_queue: MakeQueue) -> None:
    q = make_queue("jobs", max_deliveries=5)
    mid = q.put({"bad": True})
    d = q.get(timeout=0)
    d.reject(error=ValueError("boom"))
    assert len(q) == 0
    with pytest.raises(Empty):
        q.get(timeout=0)
    assert q.statistics().dead_lettered == 1
    assert q.dead_letter is not None
    (dl,) = q.dead_letter.list()
    assert dl.message.id == mid
    assert dl.message.payload == {"bad": True}
    assert dl.reason == "permanent"
    assert dl.queue == "jobs"
    assert dl.attempts == 1
    assert dl.last_error == "ValueError: boom"
    with pytest.raises(InvalidReceipt):
        d.ack()


def test_last_nack_dead_letters_as_rejected(make_queue: MakeQueue) -> None:
    q = make_queue("jobs", max_deliveries=2)
    mid = q.put("poison")
    q.get(timeout=0).nack(error="first")
    d = q.get(timeout=0)
    assert d.attempt == 2
    d.nack(error=ValueError("boom"))
    with pytest.raises(Empty):
        q.get(timeout=0)
    assert q.dead_letter is not None
    (dl,) = q.dead_letter.list()
    assert dl.message.id == mid
    assert dl.reason == "rejected"
    assert dl.attempts == 2
    assert dl.last_error == "ValueError: boom"
    st = q.statistics()
    assert (st.nacked_total, st.dead_lettered) == (2, 1)
    assert len(q) == 0
    assert q.dead_letter.pop() == dl
    assert len(q.dead_letter) == 0


def test_message_past_its_deadline_is_dead_lettered_as_expired(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    late = q.put("late", deadline=time.time() - 1.0)
    q.put("ok", deadline=time.time() + 3600)
    d = q.get(timeout=0)
    assert d.message.payload == "ok"
    d.ack()
    (dl,) = drain_dead(q, 1)
    assert dl.message.id == late
    assert dl.reason == "expired"
    assert dl.attempts == 0
    assert len(q) == 0


# ---- leases ----------------------------------------------------------------------------------


def test_lease_expiry_redelivers(make_queue: MakeQueue) -> None:
    q = make_queue("jobs", visibility_timeout=0.5)
    mid = q.put("m")
    t0 = time.monotonic()
    d1 = q.get(timeout=0)
    with pytest.raises(Empty):
        q.get(timeout=0)  # leased
    assert q.statistics().in_flight == 1
    d2 = q.get(timeout=LIVENESS)
    assert time.monotonic() - t0 >= 0.5 - SLACK
    assert d2.message.id == mid
    assert d2.attempt == 2
    assert d2.receipt != d1.receipt
    with pytest.raises(InvalidReceipt):
        d1.ack()  # late: never settles the redelivered copy
    assert q.statistics().in_flight == 1
    d2.ack()
    assert len(q) == 0
    st = q.statistics()
    assert (st.lease_expiries, st.redelivered_total, st.acked_total) == (1, 1, 1)


def test_last_lease_running_out_dead_letters_as_max_deliveries(make_queue: MakeQueue) -> None:
    q = make_queue("jobs", visibility_timeout=0.3, max_deliveries=2)
    mid = q.put(b"poison")
    assert q.get(timeout=0).attempt == 1
    assert q.get(timeout=LIVENESS).attempt == 2
    (dl,) = drain_dead(q, 1)
    assert dl.message.id == mid
    assert dl.reason == "max_deliveries"
    assert dl.queue == "jobs"
    assert dl.attempts == 2
    assert dl.last_error is None
    assert len(q) == 0
    st = q.statistics()
    assert (st.dead_lettered, st.lease_expiries) == (1, 2)


def test_extend_keeps_the_lease_past_its_first_deadline(make_queue: MakeQueue) -> None:
    vt = 1.0
    q = make_queue("jobs", visibility_timeout=vt)
    q.put("m")
    t0 = time.monotonic()
    d = q.get(timeout=0)
    time.sleep(max(0.0, t0 + 0.5 - time.monotonic()))
    new_deadline = d.extend(vt)  # now ends about t0 + 1.5
    assert isinstance(new_deadline, float)
    time.sleep(max(0.0, t0 + 1.2 - time.monotonic()))  # past the first deadline (t0 + 1.0)
    with pytest.raises(Empty):
        q.get(timeout=0)
    assert q.statistics().in_flight == 1
    d.ack()  # the lease is still ours
    assert len(q) == 0
    assert q.statistics().lease_expiries == 0


def test_stale_receipts(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    q.put_many(["a", "b", "c"])
    a, b, c = take(q, 3)
    a.ack()
    b.nack()
    with pytest.raises(InvalidReceipt):
        a.ack()
    with pytest.raises(InvalidReceipt):
        q.ack(a.receipt)
    with pytest.raises(InvalidReceipt):
        q.nack(a.receipt)
    with pytest.raises(InvalidReceipt):
        q.extend(a.receipt, 1.0)
    with pytest.raises(InvalidReceipt):
        b.ack()
    with pytest.raises(InvalidReceipt):
        q.release(b.receipt)
    c.ack()  # c is unaffected
    b2 = q.get(timeout=0)
    assert (b2.message.payload, b2.attempt) == ("b", 2)
    b2.ack()
    assert len(q) == 0


# ---- priorities, dedup, capacity -------------------------------------------------------------


def test_priorities_high_before_low(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    for payload, priority in [
        ("low", "low"),
        ("normal", "normal"),
        ("high", "high"),
        ("critical", "critical"),
        ("high2", "high"),
        ("low2", "low"),
    ]:
        q.put(payload, priority=priority)
    order = []
    for _ in range(6):
        d = q.get(timeout=0)
        order.append(d.message.payload)
        d.ack()
    assert order == ["critical", "high", "high2", "normal", "low", "low2"]


def test_dedup_window(make_queue: MakeQueue) -> None:
    q = make_queue("jobs", dedup_window=30.0)
    first = q.put("a", idempotency_key="k")
    assert q.put("b", idempotency_key="k") == first
    other = q.put("c", idempotency_key="k2")
    assert other != first
    assert q.put("d") not in (first, other)  # no key: never deduplicated
    assert len(q) == 3
    assert q.statistics().deduplicated_total == 1
    got = take(q, 3)
    assert [d.message.payload for d in got] == ["a", "c", "d"]
    q.ack_many(got)
    assert q.put("e", idempotency_key="k") == first  # still taken after the ack
    assert len(q) == 0
    ids = q.put_many(["f", "g"], idempotency_key="k3")
    assert ids[0] == ids[1]
    assert len(q) == 1
    assert q.statistics().deduplicated_total == 3


def test_maxsize_full(make_queue: MakeQueue) -> None:
    q = make_queue("jobs", maxsize=3)
    q.put("ready")
    q.put("delayed", delay=60.0)
    q.put("in-flight")
    d = q.get(timeout=0)
    assert d.message.payload == "ready"
    with pytest.raises(Full):
        q.put("x", block=False)
    with pytest.raises(Full):
        q.put("x", timeout=0)
    with pytest.raises(Full) as ei:
        q.put_many(["y"], block=False)
    assert ei.value.ids == []  # type: ignore[attr-defined]
    assert len(q) == 3
    d.ack()
    q.put("fits", block=False)
    assert len(q) == 3
    assert q.statistics().put_total == 4


def test_len_statistics_and_purge(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    assert len(q) == 0
    q.put("a")
    q.put("later", delay=60.0)
    q.put("b")
    q.put("c")
    d = q.get(timeout=0)
    assert d.message.payload == "a"
    assert len(q) == 4
    st = q.statistics()
    assert (st.ready, st.delayed, st.in_flight, st.put_total) == (2, 1, 1, 4)
    assert st.name == "jobs"
    assert not st.closed
    d.ack()
    assert len(q) == 3
    st = q.statistics()
    assert (st.ready, st.delayed, st.in_flight, st.acked_total) == (2, 1, 0, 1)
    assert q.purge() == 2  # the ready ones; the delayed one stays
    assert len(q) == 1
    st = q.statistics()
    assert (st.ready, st.delayed, st.in_flight) == (0, 1, 0)


# ---- closing ---------------------------------------------------------------------------------


def test_close_drains_then_closed(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    q.put_many(["a", "b"])
    a = q.get(timeout=0)
    q.close()
    assert q.statistics().closed
    with pytest.raises(Closed):
        q.put("refused")
    b = q.get(timeout=0)  # consumers keep draining
    assert (a.message.payload, b.message.payload) == ("a", "b")
    with pytest.raises(Empty):
        q.get(timeout=0)  # two in flight: not drained yet
    a.ack()
    b.ack()
    with pytest.raises(Closed):
        q.get(timeout=0)
    with pytest.raises(Closed):
        q.get(timeout=LIVENESS)


def test_close_wakes_a_blocked_getter_once_drained(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    q.put("last")
    d = q.get(timeout=0)
    q.close()
    r = Runner(lambda: q.get(timeout=LIVENESS))
    r.start()
    r.started_call.wait(LIVENESS)
    d.ack()
    r.finish()
    assert isinstance(r.error, Closed), r.error


# ---- waiting ---------------------------------------------------------------------------------


def test_blocked_get_woken_by_a_put_from_another_thread(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")
    r = Runner(lambda: q.get(timeout=LIVENESS))
    r.start()
    r.started_call.wait(LIVENESS)
    time.sleep(0.05)
    q.put("wake")
    d = r.finish()
    assert r.error is None, r.error
    assert d.message.payload == "wake"
    d.ack()


def test_async_aput_aget(make_queue: MakeQueue) -> None:
    q = make_queue("jobs")

    async def main() -> None:
        mid = await q.aput({"n": 1}, key="a")
        d = await q.aget(timeout=LIVENESS)
        assert (d.message.id, d.message.payload, d.message.key) == (mid, {"n": 1}, "a")
        d.ack()
        waiter = asyncio.ensure_future(q.aget(timeout=LIVENESS))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await q.aput("later")
        d = await asyncio.wait_for(waiter, LIVENESS)
        assert d.message.payload == "later"
        assert d.attempt == 1
        d.nack()
        ds: list[fastq.Delivery] = []
        await q.aput("more")
        while len(ds) < 2:
            ds += await q.aget_many(2 - len(ds), timeout=LIVENESS)
        assert [x.message.payload for x in ds] == ["later", "more"]
        assert [x.attempt for x in ds] == [2, 1]
        q.ack_many(ds)
        with pytest.raises(Empty):
            await q.aget(timeout=0)

    asyncio.run(main())
    assert len(q) == 0
    assert q.statistics().acked_total == 3


# ---- Redis only: capabilities it lacks are refused at construction ---------------------------


@pytest.mark.parametrize(
    ("capability", "options"),
    [
        ("clock", {"clock": fastq.FakeClock()}),
        ("path", {"path": "PATH"}),
        ("max_bytes", {"max_bytes": 1 << 20}),
    ],
)
def test_redis_refuses_what_it_cannot_do(
    redis_backend: Any, tmp_path: Any, capability: str, options: dict[str, Any]
) -> None:
    if options.get("path") == "PATH":
        options = {"path": str(tmp_path)}
    with pytest.raises(fastq.Unsupported) as ei:
        fastq.Queue("jobs", backend=redis_backend, **options)
    exc = ei.value
    assert isinstance(exc, NotImplementedError)
    assert capability in exc.capability
    assert capability in str(exc)
    assert "redis" in str(exc).lower()
