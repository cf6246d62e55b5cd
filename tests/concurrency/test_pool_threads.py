"""ConsumerPool in threads mode on the real clock: every message handled once, heartbeats keep
long handlers' leases, graceful and abrupt stops lose nothing and ack nothing twice, a
handler's KeyboardInterrupt/SystemExit stops the pool without losing its message, topic
sources keep per-key order with parallelism across partitions, and a stress run with
producers, transient and permanent failures accounts for every message.

Synchronisation is by events and polled conditions with generous liveness deadlines; nothing
asserts on speed. Seeds come from the ``rng`` fixture (FASTQ_SEED replays).
"""

from __future__ import annotations

import collections
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from threads import LIVENESS, Runner, wait_until

import fastq
from fastq.errors import Empty, Permanent
from fastq.pipeline.pool import ConsumerPool
from fastq.pipeline.retry import RetryPolicy
from fastq.semantics.queue import Queue
from fastq.semantics.topic import Topic

FAST = RetryPolicy(max_attempts=5, backoff="constant", base=0.001, jitter="none")


@pytest.fixture
def pools() -> Iterator[list[ConsumerPool]]:
    made: list[ConsumerPool] = []
    yield made
    for p in made:
        if p.state != "stopped":
            p.stop(graceful=False, timeout=10)


def take_all(q: Queue) -> list[Any]:
    """Every ready delivery left in ``q`` (left unsettled)."""
    out: list[Any] = []
    while True:
        try:
            out.extend(q.get_many(1000, timeout=0))
        except Empty:
            return out


# ---- happy path ------------------------------------------------------------------------------


def test_every_message_handled_once(pools: list[ConsumerPool]) -> None:
    n = 20_000
    q = Queue("happy", maxsize=None)
    seen = collections.Counter[int]()
    lock = threading.Lock()

    def handler(m: Any) -> None:
        with lock:
            seen[m.payload] += 1

    q.put_many(range(n))
    pool = ConsumerPool(q, handler, concurrency=4)
    pools.append(pool.start())
    wait_until(lambda: q.statistics().acked_total == n, "all acked", timeout=60)
    assert pool.stop(timeout=LIVENESS)
    assert len(seen) == n
    assert set(seen.values()) == {1}
    s = q.statistics()
    assert (s.ready, s.delayed, s.in_flight, s.acked_total) == (0, 0, 0, n)
    ps = pool.statistics()
    assert (ps.processed, ps.failed, ps.lost_leases, ps.state) == (n, 0, 0, "stopped")


def test_coroutine_handler_in_threads_mode(pools: list[ConsumerPool]) -> None:
    n = 2000
    q = Queue("coro", maxsize=None)
    seen: list[int] = []
    loops: set[int] = set()

    async def handler(m: Any) -> None:
        import asyncio

        loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(0)
        seen.append(m.payload)

    q.put_many(range(n))
    pool = ConsumerPool(q, handler, concurrency=3)
    pools.append(pool.start())
    wait_until(lambda: q.statistics().acked_total == n, "all acked", timeout=60)
    assert sorted(seen) == list(range(n))
    assert pool.stop(timeout=LIVENESS)  # joins the workers: their counters are final
    assert pool.statistics().processed == n
    assert 1 <= len(loops) <= 3  # one event loop per worker thread


def test_batch_handler_gets_lists(pools: list[ConsumerPool]) -> None:
    n = 5000
    q = Queue("batch", maxsize=None)
    sizes: list[int] = []
    got: list[int] = []

    def handler(ms: Any) -> None:
        assert isinstance(ms, list)
        sizes.append(len(ms))
        got.extend(m.payload for m in ms)

    q.put_many(range(n))
    pool = ConsumerPool(q, handler, batch_size=16, concurrency=2)
    pools.append(pool.start())
    wait_until(lambda: q.statistics().acked_total == n, "all acked", timeout=60)
    assert sorted(got) == list(range(n))
    assert max(sizes) <= 16
    assert min(sizes) >= 1
    assert pool.stop(timeout=LIVENESS)  # joins the workers: their counters are final
    assert pool.statistics().processed == n


def test_batch_handler_failure_fails_the_whole_batch(pools: list[ConsumerPool]) -> None:
    q = Queue("batchfail", max_deliveries=5)
    calls: list[list[int]] = []

    def handler(ms: Any) -> None:
        calls.append([m.payload for m in ms])
        if len(calls) == 1:
            raise ConnectionError("the whole batch fails")

    q.put_many(range(4))
    pool = ConsumerPool(q, handler, batch_size=4, concurrency=1, prefetch=4, retry=FAST)
    pools.append(pool.start())
    wait_until(lambda: q.statistics().acked_total == 4, "all acked")
    assert sorted(calls[0]) == [0, 1, 2, 3]
    assert sorted(p for c in calls[1:] for p in c) == [0, 1, 2, 3]
    assert pool.stop(timeout=LIVENESS)  # joins the workers: their counters are final
    ps = pool.statistics()
    assert (ps.failed, ps.retried, ps.processed) == (4, 4, 4)


# ---- heartbeats ------------------------------------------------------------------------------


def test_heartbeats_keep_long_handlers_leases(pools: list[ConsumerPool]) -> None:
    """visibility_timeout=0.3 s, handlers that run ~1 s: the pool extends the leases, so no
    lease runs out and no message is handed to the idle workers. The messages arrive at
    different moments (every 40 ms), so whatever the supervisor's phase, one of them starts
    just after a supervisor pass."""
    q = Queue("hb", visibility_timeout=0.3)
    calls = collections.Counter[int]()
    lock = threading.Lock()
    release = threading.Event()

    def handler(m: Any) -> None:
        with lock:
            calls[m.payload] += 1
        release.wait(LIVENESS)

    pool = ConsumerPool(q, handler, concurrency=8)
    pools.append(pool.start())
    wait_until(lambda: pool.statistics().workers == 8, "8 workers")
    for i in range(7):
        q.put(i)
        time.sleep(0.04)  # spreads the start times over the supervisor period (not a sync)
    wait_until(lambda: q.statistics().in_flight == 7, "all 7 in flight")
    t0 = time.monotonic()
    wait_until(lambda: time.monotonic() - t0 > 1.0, "the handlers ran 1 s (3 leases)")
    release.set()
    wait_until(lambda: q.statistics().acked_total == 7, "all acked")
    s = q.statistics()
    assert dict(calls) == dict.fromkeys(range(7), 1), "a lease ran out: handled twice"
    assert s.lease_expiries == 0
    assert s.redelivered_total == 0
    assert pool.stop(timeout=LIVENESS)  # joins the workers: their counters are final
    ps = pool.statistics()
    assert ps.heartbeats > 0
    assert ps.lost_leases == 0


# ---- stopping --------------------------------------------------------------------------------


class Blocking:
    """A handler that blocks every call until ``gate`` is set; records what it handled."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.finished: list[int] = []

    def __call__(self, m: Any) -> None:
        with self.lock:
            self.started.append(m.payload)
        assert self.gate.wait(LIVENESS), "the test never opened the gate"
        with self.lock:
            self.finished.append(m.payload)


def check_accounting(q: Queue, n: int, handled: list[int]) -> None:
    """Each message is either acked exactly once (handled) or still in the queue, untried."""
    rest = take_all(q)
    left = [d.message.payload for d in rest]
    assert len(handled) == len(set(handled)), "a message was handled twice"
    assert set(handled).isdisjoint(left), "a handled message is still in the queue"
    assert sorted(handled + left) == list(range(n)), "a message was lost"
    assert all(d.attempt == 1 for d in rest), "a released message used an attempt"
    s = q.statistics()
    assert s.acked_total == len(handled)
    assert s.redelivered_total == 0
    for d in rest:
        d.release()


@pytest.mark.parametrize("graceful", [True, False])
def test_stop_with_handlers_in_flight(pools: list[ConsumerPool], graceful: bool) -> None:
    n = 40
    q = Queue("stop")
    h = Blocking()
    q.put_many(range(n))
    pool = ConsumerPool(q, h, concurrency=2, prefetch=5)
    pools.append(pool.start())
    wait_until(lambda: len(h.started) == 2, "2 handlers in flight")
    stopper = Runner(lambda: pool.stop(graceful=graceful, timeout=LIVENESS))
    stopper.start()
    wait_until(lambda: pool.state == "stopping", "the pool is stopping")
    assert q.statistics().in_flight == 10  # two batches of 5, nothing settled yet
    # the in-flight calls outlast the pool's native-loop budget (10 ms between looks at its
    # state), so the workers see the stop before the next message: a bound, not a sync point
    threading.Event().wait(0.05)
    h.gate.set()
    assert stopper.finish() is True
    assert stopper.error is None
    assert pool.state == "stopped"
    assert sorted(h.finished) == sorted(h.started)
    assert len(h.started) == 2  # nothing new started once stopping
    s = q.statistics()
    assert s.in_flight == 0
    assert s.released_total == 8  # the unstarted rest of both batches
    assert pool.statistics().released == 8
    check_accounting(q, n, h.finished)


def test_stop_timeout_expires_while_a_handler_blocks(pools: list[ConsumerPool]) -> None:
    n = 10
    q = Queue("stopt")
    h = Blocking()
    q.put_many(range(n))
    pool = ConsumerPool(q, h, concurrency=1, prefetch=3)
    pools.append(pool.start())
    wait_until(lambda: len(h.started) == 1, "a handler in flight")
    assert pool.stop(timeout=0.2) is False
    assert pool.state == "stopping"
    assert pool.wait(0) is False
    h.gate.set()
    assert pool.wait(LIVENESS) is True
    assert pool.state == "stopped"
    assert h.finished == h.started == [0]
    wait_until(lambda: q.statistics().acked_total == 1, "the late handler's message is acked")
    assert q.statistics().released_total == 2
    check_accounting(q, n, h.finished)


@pytest.mark.parametrize("when", ["after start() returned", "first message"])
def test_stop_from_a_handler_thread(pools: list[ConsumerPool], when: str) -> None:
    """A handler may stop its own pool (e.g. after a poison pill): stop() must not wait for
    the calling worker itself, nor trip over a supervisor not started yet."""
    q = Queue("selfstop")
    q.put_many(range(20))
    box: list[ConsumerPool] = []
    results: list[Any] = []
    handled: list[int] = []
    go = threading.Event()
    stop_at = 3 if when == "after start() returned" else 0

    def handler(m: Any) -> None:
        handled.append(m.payload)
        if m.payload == stop_at:
            if stop_at:
                go.wait(LIVENESS)
            try:
                results.append(box[0].stop(timeout=5.0))
            except Exception as exc:
                results.append(exc)

    pool = ConsumerPool(q, handler, concurrency=1, prefetch=10)
    box.append(pool)
    pools.append(pool.start())
    go.set()
    assert pool.wait(LIVENESS) is True
    wait_until(lambda: bool(results), "stop() returned in the handler")
    assert results == [True]
    # the handler that stopped the pool finished; a few more may run within the pool's
    # native-loop budget before the worker looks at its state again, then the rest is released
    assert handled == list(range(len(handled)))
    assert len(handled) > stop_at
    assert pool.statistics().failed == 0
    check_accounting(q, 20, handled)


# ---- BaseException from a handler ------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_stops_the_pool_and_keeps_the_message(
    pools: list[ConsumerPool], exc_type: type[BaseException]
) -> None:
    n = 10
    q = Queue("interrupt", max_deliveries=1)
    handled: list[int] = []

    def handler(m: Any) -> None:
        if m.payload == 2:
            raise exc_type()
        handled.append(m.payload)

    q.put_many(range(n))
    pool = ConsumerPool(q, handler, concurrency=1, prefetch=5)
    pools.append(pool.start())
    with pytest.raises(exc_type):
        pool.wait(LIVENESS)
    assert pool.state == "stopped"
    assert isinstance(pool.error, exc_type)
    assert handled == [0, 1]
    assert len(q.dead_letter) == 0  # type: ignore[arg-type]
    assert pool.statistics().released == 3  # the interrupted message and the rest of the batch
    check_accounting(q, n, handled)  # with max_deliveries=1, a used attempt would dead-letter
    assert pool.stop() is True  # already stopped: nothing to do


# ---- topic sources ---------------------------------------------------------------------------


def test_topic_order_per_key_parallel_partitions_retries_and_dead_letters(
    pools: list[ConsumerPool],
) -> None:
    keys = [f"k{i}" for i in range(16)]
    per_key = 150
    topic = Topic("orders", partitions=4)
    for seq in range(per_key):
        for k in keys:
            topic.publish((k, seq), key=k)
    lock = threading.Lock()
    order: dict[str, list[int]] = collections.defaultdict(list)
    attempts = collections.Counter[tuple[str, int]]()
    active = 0
    overlap = threading.Event()

    def handler(m: Any) -> None:
        nonlocal active
        k, seq = m.payload
        with lock:
            attempts[(k, seq)] += 1
            n = attempts[(k, seq)]
            active += 1
            if active >= 2:
                overlap.set()
        try:
            if seq == 0:  # the first record of each key waits until members overlap
                overlap.wait(LIVENESS)
            if seq % 50 == 49:
                raise ConnectionError("always fails")  # dead-lettered after 3 attempts
            if seq % 50 == 25:
                raise Permanent("bad record")
            if seq % 7 == 3 and n == 1:
                raise ConnectionError("fails once")  # retried in place
            with lock:
                order[k].append(seq)
        finally:
            with lock:
                active -= 1

    retry = RetryPolicy(max_attempts=3, backoff="constant", base=0.001, jitter="none")
    pool = ConsumerPool(topic, handler, concurrency=4, retry=retry, group="g", name="tp")
    pools.append(pool.start())
    total = len(keys) * per_key
    dead = {s for s in range(per_key) if s % 50 in (25, 49)}
    wait_until(
        lambda: sum(len(v) for v in order.values()) == total - len(keys) * len(dead),
        "every record handled",
        timeout=60,
    )
    assert pool.dead_letter is not None
    wait_until(lambda: len(pool.dead_letter) == len(keys) * len(dead), "dead letters")  # type: ignore[arg-type]
    assert overlap.is_set(), "members never handled records in parallel"
    expected = [s for s in range(per_key) if s not in dead]
    for k in keys:
        assert order[k] == expected, f"key {k}: out of order or repeated"
    entries = pool.dead_letter.list()
    reasons = collections.Counter((e.message.payload[1] % 50, e.reason) for e in entries)
    assert reasons == {(49, "max_attempts"): 48, (25, "permanent"): 48}
    for e in entries:
        f = e.failure
        assert f is not None
        assert f.consumer == "tp"
        assert e.attempts == (3 if e.reason == "max_attempts" else 1)
        assert e.queue.startswith("orders[")
    assert pool.stop(timeout=LIVENESS)
    assert topic.committed("g") == topic.end_offsets()


def test_topic_stop_commits_and_a_new_pool_continues(pools: list[ConsumerPool]) -> None:
    n = 400
    topic = Topic("events", partitions=4)
    for i in range(n):
        topic.publish(i, key=f"k{i % 13}")
    first: list[int] = []
    lock = threading.Lock()
    half = threading.Event()
    gate = threading.Event()

    def h1(m: Any) -> None:
        with lock:
            first.append(m.payload)
            if len(first) >= n // 2:
                half.set()
        if half.is_set():
            gate.wait(LIVENESS)  # hold the pool mid-stream until it is stopping

    p1 = ConsumerPool(topic, h1, concurrency=4, group="g", prefetch=4)
    pools.append(p1.start())
    assert half.wait(LIVENESS)
    stopper = Runner(lambda: p1.stop(timeout=LIVENESS))
    stopper.start()
    wait_until(lambda: p1.state == "stopping", "stopping")
    gate.set()
    assert stopper.finish() is True
    done_first = len(first)
    assert done_first < n
    committed = topic.committed("g")
    assert sum(c or 0 for c in committed.values()) == done_first, "committed != handled"
    second: list[int] = []
    p2 = ConsumerPool(topic, lambda m: second.append(m.payload), concurrency=4, group="g")
    pools.append(p2.start())
    wait_until(lambda: len(first) + len(second) >= n, "the rest is handled")
    assert p2.stop(timeout=LIVENESS)
    assert sorted(first + second) == list(range(n)), "lost or re-handled"
    assert topic.committed("g") == topic.end_offsets()


def test_topic_graceful_stop_leaves_the_rest_of_a_poll_unhandled(pools: list[ConsumerPool]) -> None:
    """stop(graceful=True): the record being handled finishes; the rest of what the member
    polled is not handled (it goes back, committed offsets stop before it)."""
    topic = Topic("slow", partitions=1)
    for i in range(20):
        topic.publish(i, key="k")
    h = Blocking()
    pool = ConsumerPool(topic, h, concurrency=1, prefetch=10, group="g")
    pools.append(pool.start())
    wait_until(lambda: len(h.started) == 1, "a record in flight")
    stopper = Runner(lambda: pool.stop(timeout=LIVENESS))
    stopper.start()
    wait_until(lambda: pool.state == "stopping", "stopping")
    h.gate.set()
    assert stopper.finish() is True
    assert h.finished == [0]
    assert topic.committed("g") == {0: 1}


def test_topic_stop_during_an_in_place_retry_commits_the_records_before_it(
    pools: list[ConsumerPool],
) -> None:
    """Records 0..4 succeed, record 5 fails and waits out a long backoff in place: stop()
    wakes the wait, abandons the retry, and commits offset 5 (0..4 were handled, 5 was not);
    a new pool of the group starts at record 5."""
    topic = Topic("inplace", partitions=1)
    for i in range(10):
        topic.publish(i, key="k")
    calls: list[int] = []

    def handler(m: Any) -> None:
        calls.append(m.payload)
        if m.payload == 5:
            raise ConnectionError("downstream down")

    retry = RetryPolicy(max_attempts=5, backoff="constant", base=600.0, jitter="none")
    pool = ConsumerPool(topic, handler, concurrency=1, prefetch=10, retry=retry, group="g")
    pools.append(pool.start())
    wait_until(lambda: len(calls) == 6, "record 5 failed (its retry waits 600 s)")
    assert pool.stop(timeout=LIVENESS) is True  # the 600 s backoff does not hold the stop
    assert calls == [0, 1, 2, 3, 4, 5]
    assert topic.committed("g") == {0: 5}
    again: list[int] = []
    p2 = ConsumerPool(topic, lambda m: again.append(m.payload), concurrency=1, group="g")
    pools.append(p2.start())
    wait_until(lambda: len(again) >= 5, "the new pool handles the rest")
    assert p2.stop(timeout=LIVENESS)
    assert again == [5, 6, 7, 8, 9]


def test_topic_batch_size_hands_over_groups_in_offset_order(pools: list[ConsumerPool]) -> None:
    """batch_size > 1 on a topic: the handler gets lists of at most batch_size consecutive
    records of one partition, in offset order; a failing group is retried as a whole, in
    place, then each of its records is dead-lettered; nothing is handled twice after a
    success, and the group commits everything."""
    topic = Topic("tbatch", partitions=2)
    keys = {}  # partition -> a key that lands there
    for j in range(100):
        keys.setdefault(fastq.partition(f"k{j}", 2), f"k{j}")
    for i in range(40):
        topic.publish(i, key=keys[i % 2])  # record i goes to partition i % 2
    lists: list[list[int]] = []
    attempts: collections.Counter[tuple[int, ...]] = collections.Counter()
    lock = threading.Lock()

    def handler(batch: Any) -> None:
        assert isinstance(batch, list)
        payloads = [m.payload for m in batch]
        with lock:
            attempts[tuple(payloads)] += 1
            if 13 in payloads:
                raise ConnectionError("group with 13 fails every time")
            lists.append(payloads)

    retry = RetryPolicy(max_attempts=3, backoff="constant", base=0.001, jitter="none")
    pool = ConsumerPool(topic, handler, concurrency=2, batch_size=3, retry=retry, group="g")
    pools.append(pool.start())
    assert pool.dead_letter is not None
    dead = pool.dead_letter
    wait_until(lambda: sum(map(len, lists)) + len(dead) == 40, "all handled or dead-lettered")
    assert pool.stop(timeout=LIVENESS)
    failing = [g for g in attempts if 13 in g]
    assert len(failing) == 1
    assert attempts[failing[0]] == 3  # retried as a group, max_attempts calls
    assert sorted(e.message.payload for e in dead) == sorted(failing[0])
    assert all(len(g) <= 3 for g in lists)
    handled = [p for g in lists for p in g]
    assert len(handled) == len(set(handled))  # nothing handled twice
    for part in (0, 1):  # each partition's records in offset order
        mine = [p for p in handled if p % 2 == part]
        assert mine == sorted(mine)
    assert all(n == 1 for g, n in attempts.items() if g != failing[0])
    assert topic.committed("g") == topic.end_offsets()
    s = pool.statistics()
    assert (s.processed, s.dead_lettered) == (40 - len(failing[0]), len(failing[0]))


def test_topic_handler_keyboard_interrupt_keeps_the_record(pools: list[ConsumerPool]) -> None:
    topic = Topic("tint", partitions=2)
    for i in range(20):
        topic.publish(i, key=f"k{i % 2}")
    handled: list[int] = []

    def handler(m: Any) -> None:
        if m.payload == 7:
            raise KeyboardInterrupt
        handled.append(m.payload)

    pool = ConsumerPool(topic, handler, concurrency=2, group="g")
    pools.append(pool.start())
    with pytest.raises(KeyboardInterrupt):
        pool.wait(LIVENESS)
    assert pool.state == "stopped"
    assert 7 not in handled
    assert pool.dead_letter is not None
    assert len(pool.dead_letter) == 0
    rest: list[int] = []
    p2 = ConsumerPool(topic, lambda m: rest.append(m.payload), concurrency=2, group="g")
    pools.append(p2.start())
    wait_until(lambda: sorted(set(handled + rest)) == list(range(20)), "every record handled")
    assert p2.stop(timeout=LIVENESS)
    assert 7 in rest  # the interrupted record was not committed past


# ---- stress ----------------------------------------------------------------------------------


@pytest.mark.stress
def test_stress_producers_and_a_failing_consumer_pool(rng: Any, stress_scale: float) -> None:
    seed = rng.randrange(2**32)
    print(f"stress seed {seed} ({rng!r})")
    producers = 4
    per = int(5000 * stress_scale)
    q = Queue("stress", maxsize=2000, max_deliveries=5)
    lock = threading.Lock()
    calls = collections.Counter[tuple[int, int]]()
    events: dict[tuple[int, int], list[str]] = collections.defaultdict(list)

    def fate(item: tuple[int, int], attempt: int) -> str:
        r = zlib.crc32(f"{seed}:{item}:{attempt}".encode()) % 1000
        if attempt == 1 and r < 10:
            return "permanent"
        return "transient" if r < 110 else "ok"

    def handler(m: Any) -> None:
        item = tuple(m.payload)
        with lock:
            calls[item] += 1  # type: ignore[index]
            attempt = calls[item]  # type: ignore[index]
            assert "ok" not in events[item], f"{item} handled again after its success"  # type: ignore[index]
        f = fate(item, attempt)  # type: ignore[arg-type]
        with lock:
            events[item].append(f)  # type: ignore[index]
        if f == "permanent":
            raise Permanent("poison")
        if f == "transient":
            raise ConnectionError("flaky downstream")

    retry = RetryPolicy(max_attempts=5, backoff="exponential", base=0.001, cap=0.01, seed=seed)
    pool = ConsumerPool(q, handler, concurrency=8, retry=retry)
    pool.start()
    errors: list[BaseException] = []

    def produce(p: int) -> None:
        try:
            for s in range(per):
                q.put((p, s))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert not errors
    q.close()  # drained -> the pool stops by itself
    try:
        assert pool.wait(120) is True, "the pool did not stop after the queue drained"
    finally:
        pool.stop(timeout=LIVENESS)
    assert pool.state == "stopped"
    every = {(p, s) for p in range(producers) for s in range(per)}
    assert q.dead_letter is not None
    dead = {tuple(e.message.payload): e for e in q.dead_letter}
    acked = {i for i, ev in events.items() if ev and ev[-1] == "ok"}
    assert set(events) == every, "a message was never handled"
    assert acked.isdisjoint(dead), "acked and dead-lettered"
    assert acked | set(dead) == every, "neither acked nor dead-lettered"
    for item, ev in events.items():
        assert ev.count("ok") <= 1
        if item in dead:
            e = dead[item]
            if ev[0] == "permanent":
                assert (e.reason, e.attempts, ev) == ("permanent", 1, ["permanent"])
            else:
                assert e.reason in ("max_attempts", "rejected")
                assert ev == ["transient"] * 5
    s = q.statistics()
    ps = pool.statistics()
    assert s.acked_total == len(acked) == ps.processed
    assert ps.dead_lettered == len(dead) == s.dead_lettered
    assert ps.lost_leases == 0
    assert s.lease_expiries == 0
    assert len(q) == 0
    reruns = sum(calls.values()) - len(calls)
    print(
        f"stress: {len(every)} messages, {len(acked)} acked, {len(dead)} dead-lettered, "
        f"{reruns} handler re-runs after failures"
    )
    assert reruns == ps.retried
