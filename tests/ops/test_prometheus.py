"""The Prometheus exposition: a FastqCollector in a fresh CollectorRegistry, scraped with
generate_latest and read back with prometheus_client's own text parser."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fastq import FakeClock
from fastq.metrics import Registry
from fastq.metrics.prometheus import FastqCollector, register, serve
from fastq.pipeline.breaker import CircuitBreaker
from fastq.pipeline.pool import ConsumerPool
from fastq.pipeline.producer import Producer
from fastq.pipeline.retry import RetryPolicy
from fastq.semantics.queue import Queue
from fastq.semantics.topic import Topic

LIVENESS = 10.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def scrape(reg: CollectorRegistry) -> dict[str, Any]:
    """Family name -> parsed family, from the text exposition."""
    text = generate_latest(reg).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], family: str, sample: str | None = None,
          **labels: str) -> float:
    """The one sample of ``family`` whose labels include ``labels``."""
    want = sample or family
    got = [s.value for s in families[family].samples
           if s.name == want and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(got) == 1, (family, labels, families[family].samples)
    return float(got[0])


@pytest.fixture
def workload(pools: list[ConsumerPool]) -> Iterator[dict[str, Any]]:
    """A queue with 10 put / 4 got / 3 acked, a topic whose group lags, a producer that
    shed one message, a stopped pool that saw ValueErrors, all in an own fastq Registry."""
    reg = Registry()
    q = Queue(unique("q"))
    for i in range(10):
        q.put(i)
    got = [q.get(timeout=0) for _ in range(4)]
    for d in got[:3]:
        d.ack()

    t = Topic(unique("t"), partitions=2)
    for i in range(6):
        t.publish(i)
    c = t.consumer("g", auto_commit=False)
    c.poll(max_records=100)
    c.commit({0: 1})

    pq = Queue(unique("pq"))
    prod = Producer(pq, high_watermark=1, policy="shed", name=unique("prod"))
    pq.put_many([0, 1])
    with pytest.raises(Exception, match="shed"):
        prod.send("x", priority="low")
    prod.send("y")

    wq = Queue(unique("wq"))
    ids = [wq.put(i) for i in range(6)]
    bad = {ids[0], ids[3]}
    seen = threading.Semaphore(0)

    def handler(m: Any) -> None:
        seen.release()
        if m.id in bad:
            raise ValueError("bad")

    breaker = CircuitBreaker(min_calls=1000, clock=FakeClock())
    pool = ConsumerPool(wq, handler, concurrency=1, retry=RetryPolicy(max_attempts=1),
                        circuit_breaker=breaker, name=unique("pool"))
    pools.append(pool)
    pool.start()
    for _ in ids:
        assert seen.acquire(timeout=LIVENESS)
    assert pool.stop(timeout=LIVENESS)

    assert q.dead_letter is not None
    assert wq.dead_letter is not None
    for obj in (q, t, q.dead_letter, wq.dead_letter, prod, pool):
        reg.register(obj)
    yield {"reg": reg, "q": q, "t": t, "prod": prod, "pool": pool, "wq": wq, "consumer": c}
    c.close()


def test_queue_families(workload: dict[str, Any]) -> None:
    reg = CollectorRegistry()
    reg.register(FastqCollector(workload["reg"]))
    f = scrape(reg)
    q = workload["q"].name
    assert f["fastq_queue_messages_ready"].type == "gauge"
    assert value(f, "fastq_queue_messages_ready", queue=q) == 6
    assert value(f, "fastq_queue_messages_in_flight", queue=q) == 1
    assert value(f, "fastq_queue_messages_delayed", queue=q) == 0
    assert f["fastq_queue_messages_put"].type == "counter"
    assert value(f, "fastq_queue_messages_put", "fastq_queue_messages_put_total", queue=q) == 10
    assert value(f, "fastq_queue_messages_acked", "fastq_queue_messages_acked_total",
                 queue=q) == 3
    assert value(f, "fastq_queue_oldest_message_age_seconds", queue=q) >= 0.0
    # only registered objects: the producer's and the pool's queues were not registered
    assert {s.labels["queue"] for s in f["fastq_queue_messages_ready"].samples} == {q}


def test_topic_and_group_families(workload: dict[str, Any]) -> None:
    reg = CollectorRegistry()
    register(workload["reg"], into=reg)
    f = scrape(reg)
    t = workload["t"].name
    assert value(f, "fastq_topic_records", topic=t) == 6
    assert value(f, "fastq_topic_end_offset", topic=t, partition="0") == 3
    assert value(f, "fastq_topic_start_offset", topic=t, partition="1") == 0
    lag = f["fastq_consumergroup_lag"]
    assert lag.type == "gauge"
    assert {(s.labels["topic"], s.labels["group"], s.labels["partition"], s.value)
            for s in lag.samples} == {(t, "g", "0", 2.0), (t, "g", "1", 3.0)}
    committed = f["fastq_consumergroup_committed_offset"].samples
    assert [(s.labels["partition"], s.value) for s in committed] == [("0", 1.0)]
    assert value(f, "fastq_consumergroup_members", topic=t, group="g") == 1
    assert value(f, "fastq_consumergroup_oldest_uncommitted_age_seconds", topic=t,
                 group="g") > 0.0


def test_dlq_producer_and_pool_families(workload: dict[str, Any]) -> None:
    reg = CollectorRegistry()
    register(workload["reg"], into=reg)
    f = scrape(reg)
    wq, pool, prod = workload["wq"], workload["pool"], workload["prod"]
    dlq = wq.dead_letter.name
    assert value(f, "fastq_dlq_messages", dlq=dlq) == 2
    assert value(f, "fastq_dlq_messages_added", "fastq_dlq_messages_added_total", dlq=dlq) == 2
    assert value(f, "fastq_dlq_messages_by_reason", dlq=dlq, reason="max_attempts") == 2
    assert value(f, "fastq_producer_messages_sent", "fastq_producer_messages_sent_total",
                 producer=prod.name) == 1
    assert value(f, "fastq_producer_messages_shed", "fastq_producer_messages_shed_total",
                 producer=prod.name, priority="low") == 1
    assert value(f, "fastq_producer_messages_shed", "fastq_producer_messages_shed_total",
                 producer=prod.name, priority="normal") == 0
    lab = {"pool": pool.name, "source": wq.name}
    assert f["fastq_messages_processed"].type == "counter"
    assert value(f, "fastq_messages_processed", "fastq_messages_processed_total", **lab) == 4
    assert value(f, "fastq_messages_failed", "fastq_messages_failed_total",
                 error_type="ValueError", **lab) == 2
    assert value(f, "fastq_messages_dead_lettered", "fastq_messages_dead_lettered_total",
                 **lab) == 2
    assert value(f, "fastq_pool_busy_workers", **lab) == 0
    assert {s.labels["state"]: s.value for s in f["fastq_circuit_breaker_state"].samples} == {
        "closed": 1.0, "open": 0.0, "half_open": 0.0
    }


def test_counters_end_in_total_and_names_are_fastq(workload: dict[str, Any]) -> None:
    reg = CollectorRegistry()
    register(workload["reg"], into=reg)
    families = scrape(reg)
    counters = [f for f in families.values() if f.type == "counter"]
    assert len(counters) >= 15
    for fam in families.values():
        assert fam.name.startswith("fastq_"), fam.name
        assert fam.documentation, fam.name
    for fam in counters:
        assert fam.samples, fam.name
        for s in fam.samples:
            assert s.name == fam.name + "_total", s.name
    gauges = {f.name for f in families.values() if f.type == "gauge"}
    assert not any(g.endswith("_total") for g in gauges)


def test_empty_registry_exposes_families_without_samples() -> None:
    reg = CollectorRegistry()
    reg.register(FastqCollector(Registry()))
    families = scrape(reg)
    assert "fastq_queue_messages_ready" in families
    assert all(not f.samples for f in families.values())


def test_default_collector_sees_every_object() -> None:
    q = Queue(unique("glob"))
    q.put("a")
    reg = CollectorRegistry()
    collector = register(into=reg)
    assert isinstance(collector, FastqCollector)
    assert collector.registry is None
    assert value(scrape(reg), "fastq_queue_messages_ready", queue=q.name) == 1


def test_each_scrape_is_fresh() -> None:
    mine = Registry()
    q = Queue(unique("fresh"))
    mine.register(q)
    reg = CollectorRegistry()
    register(mine, into=reg)
    assert value(scrape(reg), "fastq_queue_messages_ready", queue=q.name) == 0
    q.put_many(range(3))
    assert value(scrape(reg), "fastq_queue_messages_ready", queue=q.name) == 3


@pytest.mark.parametrize("bad", [42, object(), CollectorRegistry()])
def test_collector_bad_registry(bad: Any) -> None:
    with pytest.raises(TypeError, match=rf"registry must be .*got {type(bad).__name__}"):
        FastqCollector(bad)


@pytest.mark.parametrize(
    ("port", "exc"), [("9464", TypeError), (True, TypeError), (9464.0, TypeError),
                      (-1, ValueError), (65536, ValueError)]
)
def test_serve_bad_port(port: Any, exc: type[Exception]) -> None:
    reg = CollectorRegistry()
    with pytest.raises(exc, match=rf"port must be .*{port!r}|port must be an int"):
        serve(port, into=reg)
    assert generate_latest(reg) == b""  # nothing was registered


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_queue_latency_histogram() -> None:
    q = Queue(unique("latq"))
    q.put_many(range(3))
    for d in q.get_many(3):
        d.ack()
    mine = Registry()
    mine.register(q)
    reg = CollectorRegistry()
    register(mine, into=reg)
    fams = scrape(reg)
    fam = fams["fastq_queue_latency_seconds"]
    assert fam.type == "histogram"
    assert value(fams, "fastq_queue_latency_seconds", "fastq_queue_latency_seconds_count",
                 queue=q.name) == 3
    assert value(fams, "fastq_queue_latency_seconds", "fastq_queue_latency_seconds_bucket",
                 queue=q.name, le="+Inf") == 3
    assert value(fams, "fastq_queue_latency_seconds", "fastq_queue_latency_seconds_sum",
                 queue=q.name) > 0


def test_serve_over_http() -> None:
    q = Queue(unique("http"))
    q.put_many(range(2))
    mine = Registry()
    mine.register(q)
    reg = CollectorRegistry()
    exporter = serve(0, addr="127.0.0.1", registry=mine, into=reg)
    try:
        assert exporter.collector.registry is mine
        assert exporter.port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics",
                                    timeout=LIVENESS) as resp:
            text = resp.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert value(families, "fastq_queue_messages_ready", queue=q.name) == 2
    finally:
        exporter.close()
    # closed: unregistered, and the port refuses connections
    assert "fastq_queue_messages_ready" not in generate_latest(reg).decode()
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=LIVENESS)


def test_failed_serve_registers_nothing() -> None:
    """serve() on a port in use raises; its collector must not stay registered, or the retry
    (another serve or register into the same registry) exposes every family twice."""
    mine = Registry()
    q = Queue(unique("busy"))
    mine.register(q)
    reg = CollectorRegistry()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError, match="in use"):
            serve(int(busy.getsockname()[1]), addr="127.0.0.1", registry=mine, into=reg)
    register(mine, into=reg)  # the retry
    text = generate_latest(reg).decode()
    ready = [line for line in text.splitlines()
             if line.startswith("# TYPE fastq_queue_messages_ready ")]
    assert len(ready) == 1, f"fastq_queue_messages_ready exposed {len(ready)} times"
