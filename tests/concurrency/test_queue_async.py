"""Queue from asyncio: aput / aget / async iteration, several event loops and threads at once.

- two event loops in two threads (one producing with aput, one consuming with aget) plus a
  sync producer thread and a sync consumer thread, all on one bounded queue: every message
  is delivered and acked exactly once, nothing is lost;
- an aget waiting on an empty queue is woken by a put from another thread;
- ``async for`` ends when the queue is closed and drained;
- with a FakeClock, aget waits for a delayed message until advance() makes it due (never on
  real time), and aget(timeout=T) raises Empty once advance() moves past T;
- cancelling waiting agets (while another thread puts) never loses a message: every put is
  either returned by an aget that completed or still ready, and nothing stays in flight.

Liveness bounds are generous (asyncio.wait_for with LIVENESS), never speed assertions.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from typing import Any

import pytest
from threads import LIVENESS, Runner

from fastq import Closed, Delivery, Empty, FakeClock, Queue


def test_two_loops_and_sync_threads_share_one_queue(stress_scale: float) -> None:
    n = int(1000 * stress_scale)
    q = Queue("mixed", maxsize=32)

    async def aproducer() -> list[str]:
        return [await q.aput(("async", i), timeout=LIVENESS) for i in range(n)]

    async def aconsumer() -> list[str]:
        got = []
        async for d in q:
            d.ack()
            got.append(d.message.id)
        return got

    def sconsumer() -> list[str]:
        got = []
        for d in q:
            d.ack()
            got.append(d.message.id)
        return got

    consumers = [Runner(lambda: asyncio.run(aconsumer())), Runner(sconsumer)]
    producers = [
        Runner(lambda: asyncio.run(aproducer())),
        Runner(lambda: [q.put(("sync", i), timeout=LIVENESS) for i in range(n)]),
    ]
    for r in consumers + producers:
        r.start()
    put_ids = [i for r in producers for i in r.finish()]
    q.close()
    got = [r.finish() for r in consumers]
    for r in consumers + producers:
        assert r.error is None, r.error
    counts = collections.Counter(i for per in got for i in per)
    assert len(put_ids) == 2 * n
    assert set(counts) == set(put_ids), "lost or invented messages"
    assert max(counts.values()) == 1, "a message was delivered twice"
    st = q.statistics()
    assert st.acked_total == 2 * n
    assert len(q) == 0


def test_aget_hears_the_ack_that_drains_a_closed_queue_before_it_registers() -> None:
    """BUG (3.13t CI hang): an async getter checked "closed and drained?" (no: a message was in
    flight elsewhere), then the last ack drained the queue and woke the waiters before this
    getter had registered as one; it then slept forever. The ack is made to land in exactly
    that window: the getter must still see Closed."""
    q = Queue("drain-window")
    q.put(1)
    held = q.get(timeout=0)
    q.close()  # drain=True: the in-flight message keeps the queue open
    real_check = q._check_drained
    acked: list[bool] = []

    def check_then_ack() -> None:
        real_check()  # not drained yet: `held` is in flight
        if not acked:
            acked.append(True)
            held.ack()  # the other consumer's ack, between the check and the registration

    q._check_drained = check_then_ack  # type: ignore[method-assign]

    async def main() -> None:
        with pytest.raises(Closed):
            await asyncio.wait_for(q.aget(), LIVENESS)

    asyncio.run(main())
    assert acked == [True]


def test_aget_woken_by_put_from_thread() -> None:
    q = Queue("wake")

    async def main() -> Delivery:
        with pytest.raises(Empty):
            await q.aget(timeout=0)
        task = asyncio.ensure_future(q.aget())
        while q._waiting == 0:  # private: the waiter count (the aget is parked)
            await asyncio.sleep(0.001)
        t = threading.Thread(target=q.put, args=("hello",))
        t.start()
        d = await asyncio.wait_for(task, LIVENESS)
        t.join(LIVENESS)
        return d

    d = asyncio.run(main())
    assert d.message.payload == "hello"
    assert d.attempt == 1
    d.ack()
    assert len(q) == 0


def test_async_iteration_ends_on_close() -> None:
    q = Queue("aiter")

    async def main() -> list[Any]:
        got: list[Any] = []

        async def consume() -> None:
            async for d in q:
                got.append(d.message.payload)
                d.ack()

        task = asyncio.ensure_future(consume())
        for i in range(5):
            await q.aput(i)
        while len(got) < 5:
            await asyncio.sleep(0.001)
        closer = threading.Thread(target=q.close)
        closer.start()
        await asyncio.wait_for(task, LIVENESS)
        closer.join(LIVENESS)
        return got

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]
    with pytest.raises(Closed):
        q.put(1)


def test_aget_with_fake_clock_woken_by_advance() -> None:
    clock = FakeClock()
    q = Queue("fake", clock=clock)

    async def main() -> tuple[Delivery, BaseException | None]:
        q.put("later", delay=5.0)
        task = asyncio.ensure_future(q.aget(timeout=60.0))
        while q._waiting == 0:  # private: the waiter count
            await asyncio.sleep(0.001)
        clock.advance(4.0)
        await asyncio.sleep(0.01)
        assert not task.done(), "aget returned before the message was due"
        threading.Thread(target=clock.advance, args=(1.0,)).start()
        d = await asyncio.wait_for(task, LIVENESS)
        # a timeout on the fake clock: Empty once time has moved past it
        t2 = asyncio.ensure_future(q.aget(timeout=2.0))
        while q._waiting == 0:
            await asyncio.sleep(0.001)
        clock.advance(3.0)
        err: BaseException | None = None
        try:
            await asyncio.wait_for(t2, LIVENESS)
        except Empty as e:
            err = e
        return d, err

    d, err = asyncio.run(main())
    assert d.message.payload == "later"
    assert clock() == pytest.approx(5.0 + 3.0)
    assert isinstance(err, Empty)


def test_cancelled_aget_loses_nothing(rng: Any) -> None:
    q = Queue("cancel")
    rounds = 200

    async def main() -> list[Delivery]:
        got: list[Delivery] = []
        producer = Runner(lambda: [q.put(i) for i in range(rounds)])
        started = False
        for _ in range(rounds):
            task = asyncio.ensure_future(q.aget())
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
            if not started:
                producer.start()
                started = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                got.append(await task)
        producer.finish()
        assert producer.error is None
        return got

    got = asyncio.run(main())
    st = q.statistics()
    assert st.in_flight == len(got), (st, rng)  # no lease taken by a cancelled aget
    rest = q.get_many(rounds + 1, timeout=0) if st.ready else []
    payloads = sorted([d.message.payload for d in got] + [d.message.payload for d in rest])
    assert payloads == list(range(rounds)), rng


def test_aget_many_waits_for_a_batch_from_another_thread_and_times_out() -> None:
    """aget_many returns at least one and at most max_messages deliveries once another thread
    puts a batch; with nothing to take, aget_many(timeout=...) raises Empty; a full queue's
    aput waits until an ack makes room."""
    q = Queue("batch", maxsize=5, visibility_timeout=30.0)

    async def main() -> tuple[list[Delivery], list[Delivery], str]:
        loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(q.aget_many(3))
        await asyncio.sleep(0)  # let it register as a waiter
        threading.Thread(target=q.put_many, args=([1, 2, 3, 4],)).start()
        got = await asyncio.wait_for(waiting, LIVENESS)
        rest = await q.aget_many(10, timeout=0)
        with pytest.raises(Empty):
            await q.aget_many(2, timeout=0.05)
        q.put(5)  # the queue now holds 5 (4 in flight + 1 ready): full
        blocked = asyncio.ensure_future(q.aput(6))
        await asyncio.sleep(0)
        assert not blocked.done()
        loop.call_soon(got[0].ack)  # room for one
        mid = await asyncio.wait_for(blocked, LIVENESS)
        return got, rest, mid

    got, rest, mid = asyncio.run(main())
    assert 1 <= len(got) <= 3
    assert sorted(d.message.payload for d in got + rest) == [1, 2, 3, 4]
    assert isinstance(mid, str)
    assert len(q) == 5
