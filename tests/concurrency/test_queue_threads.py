"""Queue shared by threads on the real clock: no loss, no double ack, order, poison messages.

- 4 producers x N messages (payload = (producer, seq)) into a bounded queue (producers block
  on Full and are woken by acks), 4 consumers iterating until the queue is closed and
  drained. Consumers ack most deliveries, nack some and drop some (the 0.2 s lease runs out).
  Checker, after every thread is joined: every message was acked exactly once or
  dead-lettered (never both, never neither); a successful ack happened at most once per
  message; the statistics add up; duplicates (redeliveries) are counted and printed;
- the same without failures: each consumer sees every producer's messages in increasing
  sequence order (the queue is FIFO, so any consumer's successive gets are a subsequence),
  and no message is delivered twice;
- a poison message that every consumer nacks reaches the DLQ after max_deliveries attempts
  ("rejected", last_error kept) while the other messages keep flowing.

Each thread keeps its own lists (no shared mutable state besides the queue); the choice of
failures comes from per-thread RNGs seeded from the ``rng`` fixture. Join bounds are
generous liveness bounds, never speed assertions. Sizes scale with FASTQ_STRESS_SCALE.
"""

from __future__ import annotations

import collections
import functools
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from threads import LIVENESS, Runner

from fastq import Delivery, InvalidReceipt, Queue

PRODUCERS = 4
CONSUMERS = 4
JOIN = 3 * LIVENESS


pytestmark = pytest.mark.usefixtures("frequent_switches")  # conftest.py


def run_all(fns: Sequence[Callable[[], Any]]) -> list[Runner]:
    runners = [Runner(fn) for fn in fns]
    for r in runners:
        r.start()
    return runners


def join_all(runners: Sequence[Runner]) -> list[Any]:
    deadline = time.monotonic() + JOIN  # one bound for the whole group
    for r in runners:
        r.join(max(0.0, deadline - time.monotonic()))
    hung = [i for i, r in enumerate(runners) if r.is_alive()]
    assert not hung, f"threads {hung} still running after {JOIN} s"
    for i, r in enumerate(runners):
        if r.error is not None:
            raise AssertionError(f"thread {i} raised {r.error!r}") from r.error
    return [r.result for r in runners]


def producer(q: Queue, p: int, n: int) -> list[str]:
    return [q.put((p, i), timeout=JOIN) for i in range(n)]


def run_workload(
    q: Queue, n: int, seeds: list[int], fail_p: float, drop_p: float
) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """Producers and consumers on q; the queue is closed once the producers are done."""

    def consumer(seed: int) -> dict[str, Any]:
        r = random.Random(seed)
        acked: list[str] = []
        seen: list[tuple[int, int, int]] = []  # (producer, seq, attempt)
        stale = 0
        for d in q:
            p, i = d.message.payload
            seen.append((p, i, d.attempt))
            x = r.random()
            if x < fail_p:
                d.nack()
            elif x < fail_p + drop_p:
                pass  # the consumer "dies" with this one: the lease runs out
            else:
                try:
                    d.ack()
                except InvalidReceipt:
                    stale += 1  # our lease ran out first: it was (or will be) redelivered
                else:
                    acked.append(d.message.id)
        return {"acked": acked, "seen": seen, "stale": stale}

    consumers = run_all([functools.partial(consumer, s) for s in seeds])
    producers = run_all([functools.partial(producer, q, p, n) for p in range(PRODUCERS)])
    ids = join_all(producers)
    q.close()
    results = join_all(consumers)
    return ids, results


@pytest.mark.stress
def test_no_loss_no_double_ack_with_failures(rng: Any, stress_scale: float) -> None:
    n = int(1500 * stress_scale)
    q = Queue("threads", maxsize=64, visibility_timeout=0.2, max_deliveries=5)
    seeds = [rng.randrange(2**32) for _ in range(CONSUMERS)]
    ids, results = run_workload(q, n, seeds, fail_p=0.03, drop_p=0.005)
    all_ids = [i for per in ids for i in per]
    assert len(set(all_ids)) == PRODUCERS * n
    acks = collections.Counter(i for r in results for i in r["acked"])
    assert q.dead_letter is not None
    dead = collections.Counter(e.message.id for e in q.dead_letter.list())
    doubled = [i for i, c in acks.items() if c > 1]
    assert not doubled, (f"{len(doubled)} messages acked twice", rng)
    assert not [i for i, c in dead.items() if c > 1], ("dead-lettered twice", rng)
    both = set(acks) & set(dead)
    assert not both, (f"{len(both)} messages acked and dead-lettered", rng)
    lost = set(all_ids) - set(acks) - set(dead)
    assert not lost, (f"{len(lost)} messages lost", rng)
    assert set(acks) | set(dead) == set(all_ids)
    st = q.statistics()
    assert st.acked_total == len(acks)
    assert st.dead_lettered == len(dead)
    assert st.put_total == PRODUCERS * n
    assert len(q) == 0
    assert st.in_flight == 0
    deliveries = sum(len(r["seen"]) for r in results)
    redelivered = deliveries - PRODUCERS * n
    print(
        f"deliveries={deliveries} redelivered={redelivered} dead={len(dead)} "
        f"stale_acks={sum(r['stale'] for r in results)} lease_expiries={st.lease_expiries}"
    )
    # attempts are counted per hand-out: every message's attempts run 1, 2, ... with no gap
    attempts: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    for r in results:
        for p, i, a in r["seen"]:
            attempts[(p, i)].append(a)
    for key, got in attempts.items():
        assert sorted(got) == list(range(1, len(got) + 1)), (key, got, rng)
    assert len(attempts) == PRODUCERS * n


@pytest.mark.stress
def test_fifo_per_producer_without_failures(rng: Any, stress_scale: float) -> None:
    n = int(2000 * stress_scale)
    q = Queue("fifo", maxsize=100, visibility_timeout=30.0)
    seeds = [rng.randrange(2**32) for _ in range(CONSUMERS)]
    _, results = run_workload(q, n, seeds, fail_p=0.0, drop_p=0.0)
    total = 0
    for c, r in enumerate(results):
        last = [-1] * PRODUCERS
        for p, i, a in r["seen"]:
            assert a == 1, ("redelivered without any failure", p, i, a)
            assert i > last[p], (f"consumer {c}: producer {p} seq {i} after {last[p]}", rng)
            last[p] = i
        total += len(r["seen"])
    assert total == PRODUCERS * n
    delivered = collections.Counter((p, i) for r in results for p, i, _ in r["seen"])
    assert len(delivered) == PRODUCERS * n
    assert max(delivered.values()) == 1


def test_poison_message_reaches_dlq_while_others_flow(stress_scale: float) -> None:
    n = int(500 * stress_scale)
    q = Queue("poison", maxsize=50, visibility_timeout=30.0, max_deliveries=3)
    start = threading.Barrier(PRODUCERS + 1)

    def consumer() -> list[str]:
        acked = []
        for d in q:
            if d.message.payload == "poison":
                d.nack(error=RuntimeError("cannot parse"))
            else:
                d.ack()
                acked.append(d.message.id)
        return acked

    def prod(p: int) -> list[str]:
        start.wait(LIVENESS)
        return producer(q, p, n)

    consumers = run_all([consumer] * CONSUMERS)
    producers = run_all([functools.partial(prod, p) for p in range(PRODUCERS)])
    poison_id = q.put("poison")
    start.wait(LIVENESS)
    ids = join_all(producers)
    q.close()
    acked = [i for r in join_all(consumers) for i in r]
    assert sorted(acked) == sorted(i for per in ids for i in per)
    assert q.dead_letter is not None
    (dl,) = q.dead_letter.list()
    assert dl.message.id == poison_id
    assert dl.reason == "rejected"
    assert dl.attempts == 3
    assert dl.last_error == "RuntimeError: cannot parse"
    st = q.statistics()
    assert st.nacked_total == 3
    assert st.dead_lettered == 1
    assert len(q) == 0


def test_late_ack_after_expiry_is_rejected_across_threads() -> None:
    # thread A takes a message and waits; its 0.2 s lease runs out; thread B gets the
    # redelivery and holds it; A's late ack must fail and must not settle B's copy
    q = Queue("late", visibility_timeout=0.2)
    q.put("m")
    first = q.get(timeout=0)
    second_taken = threading.Event()
    holder: list[Delivery] = []

    def b() -> None:
        d = q.get(timeout=LIVENESS)
        holder.append(d)
        second_taken.set()

    t = Runner(b)
    t.start()
    assert second_taken.wait(LIVENESS)
    t.finish()
    assert t.error is None
    with pytest.raises(InvalidReceipt):
        first.ack()
    (second,) = holder
    assert second.attempt == 2
    assert second.message.id == first.message.id
    assert q.statistics().in_flight == 1
    second.extend(LIVENESS)
    second.ack()
    assert len(q) == 0
