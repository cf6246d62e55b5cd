"""Structured logging: the records the pool writes about a message carry ``message_id``,
``trace_id``, ``queue`` and ``fastq_event``; ContextFilter and MessageLoggerAdapter."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import pytest

from fastq import FakeClock, Message
from fastq.logs import FIELDS, ContextFilter, MessageLoggerAdapter, logger, message_fields
from fastq.pipeline.pool import ConsumerPool
from fastq.pipeline.retry import RetryPolicy
from fastq.semantics.queue import Queue
from fastq.semantics.topic import Topic

LIVENESS = 10.0
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
RETRY2 = RetryPolicy(max_attempts=2, backoff="constant", base=0.001, jitter="none")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def pool_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "fastq.pool"]


def test_retry_and_dead_letter_records_from_a_queue_pool(
    caplog: pytest.LogCaptureFixture, pools: list[ConsumerPool]
) -> None:
    caplog.set_level(logging.INFO, logger="fastq.pool")
    q = Queue(unique("q"))
    traced = Message("t", headers={"traceparent": TRACEPARENT})
    q.put(traced)
    plain_id = q.put("p")
    calls: dict[str, int] = {}
    both_done = threading.Event()
    lock = threading.Lock()

    def handler(m: Any) -> None:
        with lock:
            calls[m.id] = calls.get(m.id, 0) + 1
            if sum(calls.values()) == 4:
                both_done.set()
        raise ValueError("no")

    pool = ConsumerPool(q, handler, concurrency=1, retry=RETRY2, name=unique("pool"))
    pools.append(pool)
    pool.start()
    assert both_done.wait(LIVENESS)
    assert pool.stop(timeout=LIVENESS)
    assert calls == {traced.id: 2, plain_id: 2}

    recs = pool_records(caplog)
    got = sorted((r.fastq_event, r.levelno, r.message_id, r.trace_id, r.queue)  # type: ignore[attr-defined]
                 for r in recs)
    assert got == sorted([
        ("retry", logging.INFO, traced.id, TRACE, q.name),
        ("dead_letter", logging.WARNING, traced.id, TRACE, q.name),
        ("retry", logging.INFO, plain_id, None, q.name),
        ("dead_letter", logging.WARNING, plain_id, None, q.name),
    ])
    dead = next(r for r in recs if r.fastq_event == "dead_letter")  # type: ignore[attr-defined]
    assert "ValueError" in dead.getMessage()
    assert "max_attempts" in dead.getMessage()


def test_retry_and_dead_letter_records_from_a_topic_pool(
    caplog: pytest.LogCaptureFixture, pools: list[ConsumerPool]
) -> None:
    caplog.set_level(logging.INFO, logger="fastq.pool")
    t = Topic(unique("t"), partitions=1)
    msg = Message("t", headers={"traceparent": TRACEPARENT})
    t.publish(msg)
    calls = threading.Semaphore(0)

    def handler(m: Any) -> None:
        calls.release()
        raise KeyError("no")

    pool = ConsumerPool(t, handler, concurrency=1, retry=RETRY2, name=unique("pool"))
    pools.append(pool)
    pool.start()
    for _ in range(2):
        assert calls.acquire(timeout=LIVENESS)
    # the second failure is dead-lettered by the worker before a graceful stop returns
    assert pool.stop(timeout=LIVENESS)
    assert pool.dead_letter is not None
    assert len(pool.dead_letter) == 1
    got = [(r.fastq_event, r.message_id, r.trace_id, r.queue)  # type: ignore[attr-defined]
           for r in pool_records(caplog)]
    assert got == [("retry", msg.id, TRACE, t.name), ("dead_letter", msg.id, TRACE, t.name)]


def test_pool_stopped_record(caplog: pytest.LogCaptureFixture, pools: list[ConsumerPool]) -> None:
    caplog.set_level(logging.INFO, logger="fastq.pool")
    q = Queue(unique("q"))
    q.put("x")

    def handler(m: Any) -> None:
        raise SystemExit(3)

    pool = ConsumerPool(q, handler, concurrency=1, name=unique("pool"))
    pools.append(pool)
    pool.start()
    with pytest.raises(SystemExit):
        pool.wait(LIVENESS)
    recs = [r for r in pool_records(caplog) if r.fastq_event == "pool_stopped"]  # type: ignore[attr-defined]
    assert len(recs) == 1
    r = recs[0]
    assert r.levelno == logging.ERROR
    assert "SystemExit" in r.getMessage()
    assert (r.queue, r.message_id, r.trace_id) == (q.name, None, None)  # type: ignore[attr-defined]
    assert len(q) == 1  # released untried


def test_context_filter_gives_every_record_the_fields() -> None:
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert ContextFilter().filter(rec) is True
    assert all(getattr(rec, f) is None for f in FIELDS)
    fmt = logging.Formatter("%(levelname)s %(queue)s %(message_id)s %(fastq_event)s %(message)s")
    assert fmt.format(rec) == "INFO None None None hello"
    kept = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    kept.queue = "jobs"
    ContextFilter().filter(kept)
    assert (kept.queue, kept.trace_id) == ("jobs", None)  # type: ignore[attr-defined]


def test_adapter_adds_message_fields(caplog: pytest.LogCaptureFixture) -> None:
    log = MessageLoggerAdapter(logging.getLogger("fastq.test_ops"), "jobs")
    m = Message(1, headers={"traceparent": TRACEPARENT})
    with caplog.at_level(logging.INFO, logger="fastq.test_ops"):
        log.info("handled %s", "it", message=m, event="custom")
        log.info("own extra wins", message=m, extra={"queue": "other", "k": 1})
        log.info("no message")
    a, b, c = caplog.records[-3:]
    assert a.getMessage() == "handled it"
    assert (a.message_id, a.trace_id, a.queue, a.fastq_event) == (  # type: ignore[attr-defined]
        m.id, TRACE, "jobs", "custom")
    assert (b.queue, b.k, b.message_id) == ("other", 1, m.id)  # type: ignore[attr-defined]
    assert (c.message_id, c.trace_id, c.queue, c.fastq_event) == (  # type: ignore[attr-defined]
        None, None, "jobs", None)


def test_message_fields() -> None:
    m = Message("p", headers={"traceparent": TRACEPARENT})
    assert message_fields(m, "q", "retry") == {
        "message_id": m.id, "trace_id": TRACE, "queue": "q", "fastq_event": "retry"
    }

    class Holder:
        message = m

    assert message_fields(Holder())["message_id"] == m.id
    assert message_fields(Message("p"))["trace_id"] is None
    bad = Message("p", headers={"traceparent": "garbage"})
    assert message_fields(bad)["trace_id"] is None
    assert message_fields(None) == dict.fromkeys(FIELDS)


def test_logger_names() -> None:
    assert logger().name == "fastq"
    assert logger("pool").name == "fastq.pool"
    assert logger("pool").parent is logger() or logger("pool").parent.name == "fastq"  # type: ignore[union-attr]


def test_lost_lease_record(caplog: pytest.LogCaptureFixture, pools: list[ConsumerPool]) -> None:
    caplog.set_level(logging.INFO, logger="fastq.pool")
    clock = FakeClock()
    q = Queue(unique("q"), visibility_timeout=5.0, clock=clock)
    mid = q.put(Message("x", headers={"traceparent": TRACEPARENT}))
    attempts: list[int] = []
    redelivered = threading.Event()

    def handler(m: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            clock.advance(10.0)  # the lease runs out while the handler runs
            raise ValueError("too late")
        redelivered.set()

    pool = ConsumerPool(q, handler, concurrency=1, retry=RETRY2, name=unique("pool"))
    pools.append(pool)
    pool.start()
    assert redelivered.wait(LIVENESS)
    assert pool.stop(timeout=LIVENESS)
    recs = pool_records(caplog)
    assert [(r.levelno, r.fastq_event, r.message_id, r.trace_id, r.queue)  # type: ignore[attr-defined]
            for r in recs] == [(logging.WARNING, "lost_lease", mid, TRACE, q.name)]
    assert pool.statistics().lost_leases == 1
