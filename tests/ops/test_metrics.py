"""Statistics against known workloads (exact numbers), RateMeter arithmetic with explicit
times, and the metrics registry (default and own, duplicate names, weak references)."""

from __future__ import annotations

import gc
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from fastq import FakeClock, Overloaded
from fastq._meter import RateMeter
from fastq.metrics import MetricsSnapshot, Registry, registry
from fastq.pipeline.pool import ConsumerPool
from fastq.pipeline.producer import Producer
from fastq.pipeline.retry import RetryPolicy
from fastq.semantics.dlq import DeadLetterQueue
from fastq.semantics.queue import Queue
from fastq.semantics.topic import Topic

LIVENESS = 10.0


def unique(prefix: str) -> str:
    """A name no other test (or leftover object) of the process uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ---- RateMeter: exact arithmetic on explicit times ------------------------------------------


class TestRateMeter:
    def test_first_call_measures_since_the_meter_was_made(self) -> None:
        assert RateMeter(10.0, start=40.0).rate(100, 50.0) == 10.0  # 100 events in 10 s
        assert RateMeter(10.0, start=50.0).rate(100, 50.0) == 0.0  # no time yet: no rate

    def test_growth_over_the_window(self) -> None:
        m = RateMeter(window=10.0, start=100.0)  # a sample at most every 1.0 s
        assert m.rate(0, 100.0) == 0.0
        assert m.rate(10, 102.0) == 5.0  # 10 events in 2 s
        assert m.rate(15, 102.5) == 6.0  # no new sample (0.5 s < 1 s): still from 100.0
        # 112.0: the sample at 102.0 is a full window old, so the oldest (100.0) goes
        assert m.rate(30, 112.0) == 2.0  # (30 - 10) / (112 - 102)

    def test_idle_then_called_late_covers_the_gap(self) -> None:
        m = RateMeter(window=10.0, start=0.0)
        m.rate(0, 0.0)
        m.rate(40, 4.0)
        assert m.rate(40, 104.0) == 0.0  # nothing happened in the last 100 s
        assert m.rate(140, 129.0) == 4.0  # 100 events in the 25 s since the previous call

    def test_counter_going_down_and_clock_going_back_give_zero(self) -> None:
        m = RateMeter(window=4.0, start=0.0)
        m.rate(10, 5.0)
        m.rate(20, 20.0)  # the start sample leaves the window; the oldest is (5.0, 10)
        assert m.rate(5, 21.0) == 0.0  # below the oldest sample's count
        assert m.rate(50, 4.0) == 0.0  # before the oldest sample

    def test_threads_share_one_meter(self) -> None:
        m = RateMeter(window=100.0, start=0.0)
        m.rate(0, 0.0)
        barrier = threading.Barrier(4)
        out: list[float] = []

        def call(i: int) -> None:
            barrier.wait()
            out.append(m.rate(400, 40.0 + i * 0.25))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(LIVENESS)
        assert sorted(out) == sorted(400 / (40.0 + i * 0.25) for i in range(4))


# ---- queues and dead-letter queues -----------------------------------------------------------


def test_queue_put_get_ack_counts() -> None:
    q = Queue(unique("q"))
    for i in range(10):
        q.put(i)
    first = q.statistics()
    assert (first.ready, first.in_flight, first.put_total, first.acked_total) == (10, 0, 10, 0)
    assert first.oldest_ready_age is not None
    assert first.oldest_ready_age >= 0.0
    got = [q.get(timeout=0) for _ in range(4)]
    for d in got[:3]:
        d.ack()
    s = q.statistics()
    assert (s.ready, s.delayed, s.in_flight) == (6, 0, 1)
    assert (s.put_total, s.acked_total, s.nacked_total, s.redelivered_total) == (10, 3, 0, 0)
    assert s.dead_lettered == 0
    assert not s.closed
    assert s.throughput > 0.0  # 3 acks since the first statistics() call
    got[3].nack()
    s = q.statistics()
    assert (s.ready, s.in_flight, s.nacked_total, s.redelivered_total) == (7, 0, 1, 1)


def test_queue_latency_counts_every_ack_path(tmp_path: Path) -> None:
    """put -> ack time lands in queue.latency for Delivery.ack, ack(receipt), ack_many (of
    deliveries and of receipts), in memory and durable; nack and expiry record nothing."""
    for q in (Queue(unique("lat")), Queue(unique("lat"), path=str(tmp_path))):
        q.put_many(list(range(6)))
        ds = q.get_many(6)
        ds[0].ack()
        q.ack(ds[1].receipt)
        q.ack_many(ds[2:4])
        q.ack_many([d.receipt for d in ds[4:5]])
        ds[5].nack()
        assert q.latency is not None
        s = q.statistics().latency
        assert s is not None
        assert s.count == 5
        assert 0 < s.min <= s.p50 <= s.p99 <= s.max < 60  # seconds, wall clock
        q.close(drain=False)


def test_queue_without_metrics_has_no_latency() -> None:
    q = Queue(unique("nolat"), metrics=False)
    q.put(1)
    q.get().ack()
    assert q.latency is None
    assert q.statistics().latency is None
    with pytest.raises(TypeError, match="metrics must be a bool"):
        Queue(unique("bad"), metrics=1)  # type: ignore[arg-type]


def test_pool_end_to_end_is_its_queues_latency(pools: list[ConsumerPool]) -> None:
    q = Queue(unique("e2e"))
    done = threading.Event()
    seen: list[int] = []

    def handler(m: Any) -> None:
        seen.append(m.payload)
        if len(seen) == 20:
            done.set()

    pool = ConsumerPool(q, handler)
    pools.append(pool.start())
    q.put_many(list(range(20)))
    assert done.wait(30)
    q.close()
    pool.wait(30)
    assert pool.end_to_end_latency is q.latency
    stats = pool.statistics()
    assert stats.end_to_end_latency is not None
    assert stats.end_to_end_latency.count == 20
    assert stats.handler_latency is not None
    assert stats.handler_latency.count == 20


def test_queue_empty_has_no_oldest_age() -> None:
    s = Queue(unique("q")).statistics()
    assert (s.ready, s.in_flight, s.oldest_ready_age, s.throughput) == (0, 0, None, 0.0)


def test_dead_letters_by_reason() -> None:
    clock = FakeClock()
    q = Queue(unique("q"), max_deliveries=2, visibility_timeout=5.0, clock=clock)
    dlq = q.dead_letter
    assert isinstance(dlq, DeadLetterQueue)
    assert dlq.statistics().growth_rate == 0.0  # the first reading
    for i in range(3):
        q.put(i)
    for attempt in (1, 2):  # both leases of each run out
        assert [q.get(timeout=0).attempt for _ in range(3)] == [attempt] * 3
        clock.advance(6.0)
    q.put("bad")
    bad = q.get(timeout=0)
    assert bad.message.payload == "bad"
    bad.reject(b"no", "permanent")
    s = q.statistics()
    assert (s.ready, s.in_flight, s.dead_lettered, s.lease_expiries) == (0, 0, 4, 6)
    d = dlq.statistics()
    assert (d.name, d.size, d.added_total, d.dropped_total) == (dlq.name, 4, 4, 0)
    assert d.by_reason == {"max_deliveries": 3, "permanent": 1}
    assert d.growth_rate > 0.0


def test_nack_on_the_last_attempt_is_rejected() -> None:
    q = Queue(unique("q"), max_deliveries=1)
    q.put("x")
    q.get(timeout=0).nack()
    assert q.dead_letter is not None
    assert q.dead_letter.statistics().by_reason == {"rejected": 1}


# ---- topics and consumer groups -------------------------------------------------------------


def test_topic_lag_per_partition() -> None:
    t = Topic(unique("t"), partitions=3)
    for i in range(9):
        t.publish(i)
    c = t.consumer("g", auto_commit=False)
    try:
        assert len(c.poll(max_records=100)) == 9
        none = t.group_statistics("g")
        assert none.committed == {0: None, 1: None, 2: None}
        assert none.lag == {0: 3, 1: 3, 2: 3}
        assert none.total_lag == 9
        c.commit({0: 3, 1: 1})
        g = t.group_statistics("g")
        assert (g.topic, g.group, g.members) == (t.name, "g", 1)
        assert g.committed == {0: 3, 1: 1, 2: None}
        assert g.lag == {0: 0, 1: 2, 2: 3}
        assert g.total_lag == 5
        assert g.oldest_uncommitted_age is not None
        assert g.oldest_uncommitted_age > 0.0
        assert c.statistics().lag == g.lag
        s = t.statistics()
        assert (s.name, s.partitions, s.records, s.closed) == (t.name, 3, 9, False)
        assert s.start_offsets == {0: 0, 1: 0, 2: 0}
        assert s.end_offsets == {0: 3, 1: 3, 2: 3}
        assert set(s.groups) == {"g"}
        assert s.groups["g"].lag == g.lag
        c.commit({1: 3, 2: 3})
        done = t.group_statistics("g")
        assert done.lag == {0: 0, 1: 0, 2: 0}
        assert done.total_lag == 0
        assert done.oldest_uncommitted_age is None
    finally:
        c.close()
    assert t.group_statistics("g").members == 0


def test_unknown_group_lags_everything() -> None:
    t = Topic(unique("t"), partitions=2)
    t.publish("a")
    g = t.group_statistics("nobody")
    assert (g.members, g.total_lag, g.committed) == (0, 1, {0: None, 1: None})
    with pytest.raises(TypeError, match="group"):
        t.group_statistics(3)  # type: ignore[arg-type]


def test_topic_throughput_after_publishing() -> None:
    t = Topic(unique("t"), partitions=1)
    assert t.statistics().throughput == 0.0
    t.publish_many(range(5))
    assert t.statistics().throughput > 0.0


# ---- pools and producers --------------------------------------------------------------------


def test_pool_errors_by_type(pools: list[ConsumerPool]) -> None:
    q = Queue(unique("q"))
    ids = [q.put(i) for i in range(20)]
    value_ids = {ids[i] for i in (0, 4, 8, 12, 16)}
    key_ids = {ids[i] for i in (1, 5, 9, 13)}
    calls = 0
    all_seen = threading.Event()
    lock = threading.Lock()

    def handler(m: Any) -> None:
        nonlocal calls
        with lock:
            calls += 1
            if calls == len(ids):
                all_seen.set()
        if m.id in value_ids:
            raise ValueError(m.id)
        if m.id in key_ids:
            raise KeyError(m.id)

    pool = ConsumerPool(q, handler, concurrency=2, retry=RetryPolicy(max_attempts=1),
                        name=unique("pool"))
    pools.append(pool)
    assert pool.statistics().state == "new"
    pool.start()
    assert all_seen.wait(LIVENESS)
    assert pool.stop(timeout=LIVENESS)
    s = pool.statistics()
    assert s.errors == {"ValueError": 5, "KeyError": 4}
    assert (s.processed, s.failed, s.dead_lettered, s.retried) == (11, 9, 9, 0)
    assert (s.name, s.source, s.state, s.mode) == (pool.name, q.name, "stopped", "threads")
    assert s.throughput > 0.0  # processed since the first statistics() call
    assert q.dead_letter is not None
    assert q.dead_letter.statistics().by_reason == {"max_attempts": 9}
    qs = q.statistics()
    assert (qs.acked_total, qs.ready, qs.in_flight) == (11, 0, 0)


def test_producer_shed_counts() -> None:
    q = Queue(unique("q"))
    p = Producer(q, high_watermark=1, policy="shed", name=unique("prod"))
    q.put(0)
    q.put(1)  # depth 2: low is shed from 2, normal from 3, high from 4, critical never
    outcomes = []
    for prio in ("low", "normal", "normal", "high", "high", "critical"):
        try:
            p.send("x", priority=prio)
            outcomes.append(True)
        except Overloaded:
            outcomes.append(False)
    assert outcomes == [False, True, False, True, False, True]
    s = p.statistics()
    assert s.shed == {"critical": 0, "high": 1, "normal": 1, "low": 1}
    assert (s.sent, s.overloaded_total, s.depth, s.rate) == (3, 3, 5 - 1, None)
    assert s.throughput > 0.0  # the first reading: since the producer was made
    p.send("y", priority="critical")
    assert p.statistics().throughput > 0.0


# ---- the registry ---------------------------------------------------------------------------


def test_default_registry_sees_new_objects_and_forgets_collected_ones() -> None:
    name = unique("reg")
    q: Queue | None = Queue(name)
    t: Topic | None = Topic(name, partitions=1)
    snap = registry().snapshot()
    assert name in snap.queues
    assert name in snap.topics
    assert f"{name}.dlq" in snap.dead_letter_queues
    assert any(o is q for o in registry().objects())
    del q, t
    gc.collect()
    snap = registry().snapshot()
    assert name not in snap.queues
    assert name not in snap.topics
    assert f"{name}.dlq" not in snap.dead_letter_queues


def test_default_registry_sees_consumer_groups() -> None:
    t = Topic(unique("t"), partitions=2)
    t.publish("a")
    with t.consumer("workers", auto_commit=False):
        snap = registry().snapshot()
        g = snap.consumer_groups[f"{t.name}/workers"]
        assert (g.members, g.total_lag) == (1, 1)


def test_duplicate_names_are_numbered_in_order() -> None:
    reg = Registry()
    name = unique("dup")
    qs = [Queue(name, dead_letter=None) for _ in range(3)]
    for i, q in enumerate(qs):
        q.put_many(range(i))
        reg.register(q)
    snap = reg.snapshot()
    assert list(snap.queues) == [name, f"{name}#2", f"{name}#3"]
    assert [s.ready for s in snap.queues.values()] == [0, 1, 2]


def test_own_registry_sees_only_what_is_registered() -> None:
    reg = Registry()
    other = Queue(unique("other"))
    empty = reg.snapshot()
    assert isinstance(empty, MetricsSnapshot)
    assert (empty.queues, empty.topics, empty.consumer_groups, empty.dead_letter_queues,
            empty.producers, empty.pools) == ({}, {}, {}, {}, {}, {})
    q = Queue(unique("mine"))
    reg.register(q)
    reg.register(q)  # once only
    assert reg.objects() == [q]
    assert list(reg.snapshot().queues) == [q.name]
    assert other.name not in reg.snapshot().queues
    reg.unregister(q)
    reg.unregister(other)  # never registered: no error
    assert reg.objects() == []
    assert "0 objects" in repr(reg)


def test_own_registry_holds_weakly() -> None:
    reg = Registry()
    q: Queue | None = Queue(unique("weak"))
    reg.register(q)
    assert len(reg.objects()) == 1
    del q
    gc.collect()
    assert reg.objects() == []
    assert reg.snapshot().queues == {}


@pytest.mark.parametrize("bad", [42, "queue", [], object()])
def test_register_bad_object(bad: object) -> None:
    with pytest.raises(TypeError, match=rf"obj must be .*got {type(bad).__name__}"):
        Registry().register(bad)


def test_snapshot_to_dict_is_json(pools: list[ConsumerPool]) -> None:
    reg = Registry()
    q = Queue(unique("q"))
    q.put("a")
    t = Topic(unique("t"), partitions=2)
    t.publish("b")
    c = t.consumer("g", auto_commit=False)
    c.poll(max_records=10)
    c.commit({0: 0})
    p = Producer(q, name=unique("prod"))
    pool = ConsumerPool(q, lambda m: None, name=unique("pool"))
    pools.append(pool)
    assert q.dead_letter is not None
    for obj in (q, t, q.dead_letter, p, pool):
        reg.register(obj)
    d = reg.snapshot().to_dict()
    c.close()
    text = json.dumps(d)
    back = json.loads(text)
    assert back["queues"][q.name]["ready"] == 1
    assert back["topics"][t.name]["end_offsets"] == {"0": 0, "1": 0} | {
        str(k): v for k, v in t.end_offsets().items()
    }
    assert back["consumer_groups"][f"{t.name}/g"]["committed"]["0"] == 0
    assert back["producers"][p.name]["sent"] == 0
    assert back["pools"][pool.name]["state"] == "new"
    assert back["dead_letter_queues"][q.dead_letter.name]["size"] == 0
    assert isinstance(d["taken_at"], float)
    # before the JSON round trip, partition keys are ints
    assert set(d["topics"][t.name]["end_offsets"]) == {0, 1}


def test_closed_durable_topic_is_skipped(tmp_path: Path) -> None:
    reg = Registry()
    t = Topic(unique("dt"), partitions=1, path=str(tmp_path))
    t.publish("a")
    reg.register(t)
    assert list(reg.snapshot().topics) == [t.name]
    t.close()
    snap = reg.snapshot()
    assert snap.topics == {}
    assert snap.consumer_groups == {}
    assert t.name not in registry().snapshot().topics  # the default one does not fail either


def test_closed_memory_topic_is_reported_closed() -> None:
    reg = Registry()
    t = Topic(unique("mt"), partitions=1)
    t.publish("a")
    reg.register(t)
    t.close()
    s = reg.snapshot().topics[t.name]
    assert s.closed
    assert s.records == 1
