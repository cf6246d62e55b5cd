"""OpenTelemetry spans, captured with the SDK's in-memory exporter: one trace from a
producer's ``send`` across the queue to the pool's ``process``, batch links, exceptions,
asyncio, topic pools, and nothing after ``uninstrument()``."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import fastq.tracing
from fastq import Message
from fastq.pipeline.pool import ConsumerPool
from fastq.pipeline.producer import Producer
from fastq.pipeline.retry import RetryPolicy
from fastq.semantics.queue import Queue
from fastq.semantics.topic import Topic

LIVENESS = 10.0
ONCE = RetryPolicy(max_attempts=1)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """Spans on, into an in-memory exporter (the autouse fixture turns them off after)."""
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    fastq.tracing.instrument(provider)
    assert fastq.tracing.is_instrumented()
    return exp


def spans(exp: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exp.get_finished_spans() if s.name == name]


def run_pool(pools: list[ConsumerPool], source: Queue | Topic, n: int,
             handler: Any = None, **kw: Any) -> list[Any]:
    """Start a pool over ``source``; return the first ``n`` handler arguments once seen,
    after a graceful stop (so every span has ended)."""
    seen: list[Any] = []
    lock = threading.Lock()
    all_seen = threading.Event()

    def record(arg: Any) -> None:
        with lock:
            seen.append(arg)
            if len(seen) == n:
                all_seen.set()
        if handler is not None:
            handler(arg)

    pool = ConsumerPool(source, record, concurrency=1, name=unique("pool"), **kw)
    pools.append(pool)
    pool.start()
    assert all_seen.wait(LIVENESS)
    assert pool.stop(timeout=LIVENESS)
    return seen


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_one_trace_from_send_to_process(exporter: InMemorySpanExporter,
                                        pools: list[ConsumerPool]) -> None:
    q = Queue(unique("q"))
    mid = Producer(q).send("hello")
    [got] = run_pool(pools, q, 1)
    assert got.id == mid
    [send] = spans(exporter, f"send {q.name}")
    [proc] = spans(exporter, f"process {q.name}")
    assert send.kind == SpanKind.PRODUCER
    assert proc.kind == SpanKind.CONSUMER
    assert send.context is not None
    assert proc.context is not None
    assert proc.parent is not None
    assert proc.parent.span_id == send.context.span_id
    assert proc.context.trace_id == send.context.trace_id
    tp = got.headers["traceparent"]
    assert tp.split("-")[1] == f"{send.context.trace_id:032x}"
    assert tp.split("-")[2] == f"{send.context.span_id:016x}"
    assert attrs(send) == {
        "messaging.system": "fastq",
        "messaging.destination.name": q.name,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.message.id": mid,
    }
    assert attrs(proc) == {
        "messaging.system": "fastq",
        "messaging.destination.name": q.name,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": mid,
    }
    [settle] = spans(exporter, f"settle {q.name}")
    assert settle.kind == SpanKind.CLIENT
    assert attrs(settle)["messaging.operation.type"] == "settle"
    assert attrs(settle)["messaging.batch.message_count"] == 1


def test_send_of_a_message_keeps_its_id(exporter: InMemorySpanExporter) -> None:
    q = Queue(unique("q"))
    m = Message("x")
    assert Producer(q).send(m) == m.id
    [send] = spans(exporter, f"send {q.name}")
    assert attrs(send)["messaging.message.id"] == m.id
    assert "traceparent" in q.get(timeout=0).message.headers


def test_send_many_is_one_span_with_a_count(exporter: InMemorySpanExporter,
                                            pools: list[ConsumerPool]) -> None:
    q = Queue(unique("q"))
    ids = Producer(q).send_many(["a", "b", "c"])
    [send] = spans(exporter, f"send {q.name}")
    assert attrs(send)["messaging.batch.message_count"] == 3
    assert attrs(send)["messaging.operation.type"] == "send"
    got = run_pool(pools, q, 3)
    assert sorted(m.id for m in got) == sorted(ids)
    procs = spans(exporter, f"process {q.name}")
    assert len(procs) == 3
    assert send.context is not None
    for p in procs:
        assert p.parent is not None
        assert p.parent.span_id == send.context.span_id
        assert p.context is not None
        assert p.context.trace_id == send.context.trace_id
    assert sorted(attrs(p)["messaging.message.id"] for p in procs) == sorted(ids)


def test_batch_handler_links_every_message(exporter: InMemorySpanExporter,
                                           pools: list[ConsumerPool]) -> None:
    q = Queue(unique("q"))
    p = Producer(q)
    p.send("a")
    p.send("b")
    sends = spans(exporter, f"send {q.name}")
    assert len(sends) == 2
    batch_seen = threading.Event()
    sizes: list[int] = []

    def handler(batch: Sequence[Any]) -> None:
        sizes.append(len(batch))
        if sum(sizes) == 2:
            batch_seen.set()

    pool = ConsumerPool(q, handler, concurrency=1, batch_size=2, prefetch=2,
                        name=unique("pool"))
    pools.append(pool)
    pool.start()
    assert batch_seen.wait(LIVENESS)
    assert pool.stop(timeout=LIVENESS)
    procs = spans(exporter, f"process {q.name}")
    assert len(procs) == len(sizes)
    linked = {link.context.span_id for s in procs for link in s.links}
    assert linked == {s.context.span_id for s in sends if s.context is not None}
    assert sum(attrs(s)["messaging.batch.message_count"] for s in procs) == 2
    assert all(s.parent is None for s in procs)  # a batch starts its own trace


def test_handler_exception_is_recorded(exporter: InMemorySpanExporter,
                                       pools: list[ConsumerPool]) -> None:
    q = Queue(unique("q"))
    Producer(q).send("x")

    def fail(m: Any) -> None:
        raise ValueError("broken handler")

    run_pool(pools, q, 1, fail, retry=ONCE)
    [proc] = spans(exporter, f"process {q.name}")
    assert proc.status.status_code == StatusCode.ERROR
    [event] = [e for e in proc.events if e.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "broken handler"
    assert spans(exporter, f"settle {q.name}") == []  # nothing was acked


def test_topic_pool_has_the_group(exporter: InMemorySpanExporter,
                                  pools: list[ConsumerPool]) -> None:
    t = Topic(unique("t"), partitions=2)
    Producer(t).send("x", key="k")
    run_pool(pools, t, 1, group="billing")
    [send] = spans(exporter, f"send {t.name}")
    [proc] = spans(exporter, f"process {t.name}")
    assert attrs(proc)["messaging.consumer.group.name"] == "billing"
    assert attrs(proc)["messaging.destination.name"] == t.name
    assert "messaging.consumer.group.name" not in attrs(send)
    assert send.context is not None
    assert proc.parent is not None
    assert proc.parent.span_id == send.context.span_id


def test_topic_spans_name_the_partition(exporter: InMemorySpanExporter,
                                        pools: list[ConsumerPool]) -> None:
    t = Topic(unique("t"), partitions=4)
    partition, _ = Producer(t).send("x", key="k")
    assert partition == fastq.partition("k", 4)
    run_pool(pools, t, 1, group="g")
    [send] = spans(exporter, f"send {t.name}")
    [proc] = spans(exporter, f"process {t.name}")
    assert attrs(send)["messaging.destination.partition.id"] == str(partition)
    assert attrs(proc)["messaging.destination.partition.id"] == str(partition)


def test_queue_spans_have_no_partition_and_a_receive_span(exporter: InMemorySpanExporter,
                                                          pools: list[ConsumerPool]) -> None:
    q = Queue(unique("q"))
    Producer(q).send_many(["a", "b", "c"])
    run_pool(pools, q, 3)
    procs = spans(exporter, f"process {q.name}")
    assert len(procs) == 3
    assert all("messaging.destination.partition.id" not in attrs(p) for p in procs)
    receives = spans(exporter, f"receive {q.name}")
    assert receives, "no receive span"
    assert sum(attrs(r)["messaging.batch.message_count"] for r in receives) == 3
    for r in receives:
        assert r.kind == SpanKind.CLIENT
        assert attrs(r)["messaging.operation.type"] == "receive"
        assert r.start_time is not None
        assert r.end_time is not None
        assert r.start_time <= r.end_time


def test_message_without_context_starts_a_new_trace(exporter: InMemorySpanExporter,
                                                    pools: list[ConsumerPool]) -> None:
    q = Queue(unique("q"))
    q.put("plain")  # not through a producer: no traceparent
    run_pool(pools, q, 1)
    [proc] = spans(exporter, f"process {q.name}")
    assert proc.parent is None
    assert spans(exporter, f"send {q.name}") == []


def test_asyncio_pool_and_asend(exporter: InMemorySpanExporter) -> None:
    q = Queue(unique("q"))
    p = Producer(q)

    async def main() -> tuple[str, list[Any]]:
        seen: list[Any] = []
        got = asyncio.Event()

        async def handler(m: Any) -> None:
            seen.append(m)
            got.set()

        pool = ConsumerPool(q, handler, mode="asyncio", concurrency=1, name=unique("pool"))
        async with pool:
            mid = await p.asend("hi")
            await asyncio.wait_for(got.wait(), LIVENESS)
        assert pool.state == "stopped"
        return mid, seen

    mid, seen = asyncio.run(main())
    assert [m.id for m in seen] == [mid]
    [send] = spans(exporter, f"send {q.name}")
    [proc] = spans(exporter, f"process {q.name}")
    assert send.kind == SpanKind.PRODUCER
    assert attrs(send)["messaging.message.id"] == mid
    assert send.context is not None
    assert proc.parent is not None
    assert proc.parent.span_id == send.context.span_id
    assert proc.context is not None
    assert proc.context.trace_id == send.context.trace_id


def test_no_spans_after_uninstrument(exporter: InMemorySpanExporter,
                                     pools: list[ConsumerPool]) -> None:
    q = Queue(unique("q"))
    fastq.tracing.uninstrument()
    assert not fastq.tracing.is_instrumented()
    p = Producer(q)
    p.send("a")
    p.send_many(["b", "c"])
    run_pool(pools, q, 3)
    assert exporter.get_finished_spans() == ()


def test_uninstrument_between_two_pools(exporter: InMemorySpanExporter,
                                        pools: list[ConsumerPool]) -> None:
    q = Queue(unique("q"))
    Producer(q).send("a")
    run_pool(pools, q, 1)
    before = len(exporter.get_finished_spans())
    assert before == 4  # send, receive, process, settle
    fastq.tracing.uninstrument()
    Producer(q).send("b")
    run_pool(pools, q, 1)
    assert len(exporter.get_finished_spans()) == before


class _OnDeadLetter(logging.Handler):
    """Sets ``event`` when the pool logs a dead-lettered message."""

    def __init__(self, event: threading.Event) -> None:
        super().__init__(logging.DEBUG)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "fastq_event", None) == "dead_letter":
            self.event.set()


def test_topic_pool_with_batch_size_still_calls_the_handler(
    exporter: InMemorySpanExporter, pools: list[ConsumerPool]
) -> None:
    """A topic pool with batch_size > 1 hands its handler lists; the traced handler must
    take what the pool passes (one span linking each message's context per call)."""
    t = Topic(unique("t"), partitions=1)
    p = Producer(t)
    for i in range(4):
        p.send(i)
    seen: list[Any] = []
    finished = threading.Event()  # all handled, or (the failure) one dead-lettered

    def handler(arg: Any) -> None:
        seen.extend(arg if isinstance(arg, list) else [arg])
        if len(seen) == 4:
            finished.set()

    watcher = _OnDeadLetter(finished)
    logging.getLogger("fastq.pool").addHandler(watcher)
    try:
        pool = ConsumerPool(t, handler, concurrency=1, batch_size=2, retry=ONCE,
                            name=unique("pool"))
        pools.append(pool)
        pool.start()
        assert finished.wait(LIVENESS)
        assert pool.stop(timeout=LIVENESS)
    finally:
        logging.getLogger("fastq.pool").removeHandler(watcher)
    s = pool.statistics()
    assert s.errors == {}, f"the traced handler failed: {s.errors}"
    assert sorted(m.payload for m in seen) == [0, 1, 2, 3]
    assert len(spans(exporter, f"process {t.name}")) >= 2
