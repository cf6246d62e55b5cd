"""Pipeline conformance: ConsumerPool, Producer and Router (docs/pipeline.md) over queues and
topics of every backend (memory, log, redis; see conftest.py), with the same assertions.

- a pool handles N messages exactly once when the handler succeeds (threads and asyncio);
- a transient failure is retried (RetryPolicy) and then succeeds; fastq.Permanent and an
  exhausted RetryPolicy.max_attempts land in the dead-letter queue with the Failure;
- a pool over a topic group handles every record once, each key in publish order;
- Producer.send / send_many into a queue (idempotency keys; a queue's dedup window stores a
  re-sent Message once); Router routes to two queues, enrichment headers intact.

The pool's own waits are real time, so the tests wait for conditions with a liveness bound
(``wait_until``), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from threads import LIVENESS, wait_until

import fastq
from fastq import ConsumerPool, Message, Queue, RetryPolicy, Topic

pytestmark = pytest.mark.timeout(60)

MakeQueue = Callable[..., Queue]
MakeTopic = Callable[..., Topic]
FAST = RetryPolicy(max_attempts=5, backoff="constant", base=0.001, jitter="none")


@pytest.fixture
def pools() -> Iterator[list[ConsumerPool]]:
    """Pools to stop at the end of the test, whatever happened (before the queues close)."""
    made: list[ConsumerPool] = []
    yield made
    for p in made:
        if p.state != "stopped":
            p.stop(timeout=LIVENESS)


def started(pools: list[ConsumerPool], pool: ConsumerPool) -> ConsumerPool:
    pools.append(pool)
    return pool.start()


# ---- ConsumerPool over a queue ---------------------------------------------------------------


def test_pool_handles_every_message_exactly_once(
    make_queue: MakeQueue, pools: list[ConsumerPool]
) -> None:
    q = make_queue("work", maxsize=None)
    n = 500
    ids = q.put_many([{"n": i} for i in range(n)])
    seen: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def handler(m: Message) -> None:
        with lock:
            seen[m.id] += 1

    pool = started(pools, ConsumerPool(q, handler, concurrency=4, retry=FAST))
    wait_until(lambda: q.statistics().acked_total == n, f"{n} messages acked")
    assert pool.stop(timeout=LIVENESS)
    assert set(seen) == set(ids)
    assert max(seen.values()) == 1
    assert len(q) == 0
    st = q.statistics()
    assert (st.acked_total, st.redelivered_total, st.dead_lettered) == (n, 0, 0)
    assert pool.statistics().processed == n


def test_asyncio_pool_handles_every_message_exactly_once(make_queue: MakeQueue) -> None:
    q = make_queue("work", maxsize=None)
    n = 200
    ids = q.put_many(range(n))
    seen: collections.Counter[str] = collections.Counter()

    async def handler(m: Message) -> None:
        await asyncio.sleep(0)
        seen[m.id] += 1

    async def main() -> None:
        pool = ConsumerPool(q, handler, concurrency=4, mode="asyncio", retry=FAST)
        await pool.astart()
        try:
            deadline = time.monotonic() + LIVENESS
            while q.statistics().acked_total < n:
                assert time.monotonic() < deadline, f"{q.statistics().acked_total} of {n} acked"
                await asyncio.sleep(0.01)
        finally:
            assert await pool.astop(timeout=LIVENESS)

    asyncio.run(main())
    assert set(seen) == set(ids)
    assert max(seen.values()) == 1
    assert len(q) == 0


def test_transient_failures_are_retried_then_succeed(
    make_queue: MakeQueue, pools: list[ConsumerPool]
) -> None:
    q = make_queue("work", max_deliveries=5)
    calls: collections.Counter[str] = collections.Counter()

    def handler(m: Message) -> None:
        calls[m.id] += 1
        if calls[m.id] <= 2:  # attempts 1 and 2 fail
            raise ConnectionError(f"attempt {calls[m.id]}")

    mid = q.put("job")
    pool = started(pools, ConsumerPool(q, handler, concurrency=1, retry=FAST))
    wait_until(lambda: q.statistics().acked_total == 1, "the message is acked")
    assert pool.stop(timeout=LIVENESS)  # joins the workers: their counters are final
    assert calls == {mid: 3}
    st = q.statistics()
    assert (st.nacked_total, st.redelivered_total, st.dead_lettered) == (2, 2, 0)
    ps = pool.statistics()
    assert (ps.processed, ps.failed, ps.retried, ps.dead_lettered) == (1, 2, 2, 0)
    assert q.dead_letter is not None
    assert len(q.dead_letter) == 0
    assert len(q) == 0


def test_permanent_failure_lands_in_the_dead_letter_queue(
    make_queue: MakeQueue, pools: list[ConsumerPool]
) -> None:
    q = make_queue("work", max_deliveries=5)
    calls: list[str] = []

    def handler(m: Message) -> None:
        calls.append(m.id)
        if m.payload == "bad":
            try:
                raise ValueError("bad field 'amount'")
            except ValueError as exc:
                raise fastq.Permanent("unprocessable record") from exc

    bad = q.put("bad")
    good = q.put("good")
    pool = started(pools, ConsumerPool(q, handler, concurrency=1, retry=FAST, name="perm-pool"))
    dlq = q.dead_letter
    assert dlq is not None
    wait_until(lambda: len(dlq) == 1 and q.statistics().acked_total == 1, "settled")
    assert pool.stop(timeout=LIVENESS)
    assert sorted(calls) == sorted([bad, good])  # the bad one was tried once
    entry = dlq.show(bad)
    assert entry.reason == "permanent"
    assert entry.queue == "work"
    assert entry.attempts == 1
    assert entry.message.payload == "bad"
    f = entry.failure
    assert f is not None
    assert f.error_type == "fastq.errors.Permanent"
    assert f.message == "unprocessable record"
    assert "ValueError: bad field 'amount'" in f.traceback
    assert f.consumer == "perm-pool"
    assert f.permanent is True
    st = q.statistics()
    assert (st.redelivered_total, st.dead_lettered, st.acked_total) == (0, 1, 1)
    assert pool.statistics().dead_lettered == 1
    assert len(q) == 0


def test_retry_policy_max_attempts_dead_letters(
    make_queue: MakeQueue, pools: list[ConsumerPool]
) -> None:
    q = make_queue("work", max_deliveries=5)
    calls: collections.Counter[str] = collections.Counter()

    def handler(m: Message) -> None:
        calls[m.id] += 1
        raise TimeoutError("downstream timed out")

    retry = RetryPolicy(max_attempts=3, backoff="constant", base=0.001, jitter="none")
    mid = q.put("job")
    pool = started(pools, ConsumerPool(q, handler, concurrency=1, retry=retry, name="ma"))
    dlq = q.dead_letter
    assert dlq is not None
    wait_until(lambda: len(dlq) == 1, "the message is dead-lettered")
    assert pool.stop(timeout=LIVENESS)
    assert calls == {mid: 3}
    (entry,) = dlq.list()
    assert (entry.id, entry.reason, entry.attempts) == (mid, "max_attempts", 3)
    assert entry.failure is not None
    assert entry.failure.error_type == "builtins.TimeoutError"
    assert len(q) == 0


# ---- ConsumerPool over a topic ---------------------------------------------------------------


def test_pool_over_a_topic_group_keeps_each_keys_order(
    make_topic: MakeTopic, pools: list[ConsumerPool]
) -> None:
    t = make_topic("events", partitions=4)
    n, keys = 200, 10
    t.publish_many([Message({"i": i}, key=f"user-{i % keys}") for i in range(n)])
    per_key: dict[str, list[int]] = collections.defaultdict(list)
    lock = threading.Lock()

    def handler(m: Message) -> None:
        with lock:
            per_key[str(m.key)].append(m.payload["i"])

    pool = started(pools, ConsumerPool(t, handler, concurrency=2, group="billing", retry=FAST))
    wait_until(lambda: sum(map(len, per_key.values())) >= n, f"{n} records handled")
    assert pool.stop(timeout=LIVENESS)  # commits the group's offsets
    assert sum(map(len, per_key.values())) == n
    for k in range(keys):
        assert per_key[f"user-{k}"] == list(range(k, n, keys))
    assert t.lag("billing") == dict.fromkeys(range(4), 0)


# ---- Producer and Router ---------------------------------------------------------------------


def test_producer_sends_into_a_queue(make_queue: MakeQueue) -> None:
    q = make_queue("orders", dedup_window=60.0)
    producer = fastq.Producer(q)
    mid = producer.send({"order": 1}, type="order.created", priority="high")
    ids = producer.send_many([{"order": n} for n in (2, 3, 4)])
    m = Message({"order": 5})
    assert producer.send(m) == m.id
    assert producer.send(m) == m.id  # a retried send: the dedup window stores it once
    assert len(q) == 5
    got = []
    while len(got) < 5:
        got += q.get_many(5 - len(got), timeout=LIVENESS)
    assert [d.message.id for d in got] == [mid, *ids, m.id]
    assert [d.message.payload["order"] for d in got] == [1, 2, 3, 4, 5]
    first = got[0].message
    assert (first.type, first.priority) == ("order.created", "high")
    assert all(d.message.idempotency_key is not None for d in got)
    assert got[4].message.idempotency_key == m.id
    q.ack_many(got)
    st = producer.statistics()
    assert st.sent == 6
    assert q.statistics().deduplicated_total == 1


def test_router_routes_to_two_queues(make_queue: MakeQueue) -> None:
    fast_lane = make_queue("fast")
    slow_lane = make_queue("slow")
    router = fastq.Router({"fast": fast_lane, "slow": slow_lane}, "slow")
    router.route_priority("critical", "fast").route_type("video.*", "fast")
    a = router.publish(Message("a", priority="critical"))
    b = router.publish("b")
    c = router.publish("c", type="video.hd")
    rest = router.publish_many([Message("d"), Message("e", priority="critical")])
    assert len(rest) == 2
    producer = fastq.Producer(router)
    f = producer.send("f", type="video.sd")

    def drain(q: Queue) -> list[Message]:
        out: list[Message] = []
        while True:
            try:
                d = q.get(timeout=0)
            except fastq.Empty:
                return out
            out.append(d.message)
            d.ack()

    fast_msgs = drain(fast_lane)
    slow_msgs = drain(slow_lane)
    assert [m.payload for m in fast_msgs] == ["a", "e", "c", "f"]  # critical first
    assert [m.payload for m in slow_msgs] == ["b", "d"]
    assert {m.id for m in fast_msgs} == {a, c, rest[1], f}
    assert {m.id for m in slow_msgs} == {b, rest[0]}
    for m in fast_msgs + slow_msgs:
        assert m.headers is not None
        assert "fastq-routed-at" in m.headers
    assert fast_msgs[0].headers is not None
    assert fast_msgs[0].headers["fastq-route"] == "priority 'critical' -> fast"
