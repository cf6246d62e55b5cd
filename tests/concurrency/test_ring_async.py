"""R7: RingBuffer from asyncio: aput/aget/aget_many in one loop, mixed with threads, shared by
several loops in several threads; cancellation never loses or duplicates an item; close()
wakes awaiting coroutines; a waiting coroutine costs no CPU and no extra thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from checker import Crew, DeliveryChecker, Item, ring_at

import fastq

JOIN_TIMEOUT = 60.0
WAKE_BOUND = 5.0  # seconds: generous bound for "woken promptly"


def _native_thread_count() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> BaseException | None:
    """asyncio.run(main()), returning its exception: a worker thread's error (which closes
    the ring) is the root cause to report first, the loop's Closed only a consequence."""
    try:
        asyncio.run(main())
    except Exception as exc:
        return exc
    return None


async def _settle(steps: int = 5) -> None:
    """Let every ready task run up to its next real wait (asyncio has no wait_all_blocked)."""
    for _ in range(steps):
        await asyncio.sleep(0)


async def _aproduce(ring: fastq.RingBuffer[Item], pid: int, count: int) -> None:
    for s in range(count):
        await ring.aput((pid, s))


async def _aconsume(ring: fastq.RingBuffer[Item], sink: list[Item], batch: int = 0) -> None:
    """aget (batch=0) or aget_many(batch) until Closed."""
    try:
        while True:
            if batch:
                sink.extend(await ring.aget_many(batch))
            else:
                sink.append(await ring.aget())
    except fastq.Closed:
        pass


# ---- plain delivery ---------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 4, 64])
def test_aput_aget_in_one_loop(capacity: int, rng: random.Random) -> None:
    producers, per = 3, 2000
    checker = DeliveryChecker(producers, 3, context=f"capacity={capacity} rng={rng!r}")
    ring: fastq.RingBuffer[Item] = ring_at(capacity, 2**63 - per)

    async def main() -> None:
        consumers = [
            asyncio.create_task(_aconsume(ring, checker.sink(0))),
            asyncio.create_task(_aconsume(ring, checker.sink(1))),
            asyncio.create_task(_aconsume(ring, checker.sink(2), batch=rng.randint(2, 9))),
        ]
        await asyncio.gather(*(_aproduce(ring, p, per) for p in range(producers)))
        ring.close()
        await asyncio.wait_for(asyncio.gather(*consumers), JOIN_TIMEOUT)

    asyncio.run(main())
    for p in range(producers):
        checker.expect_range(p, per)
    checker.assert_ok()


def _thread_produce(ring: fastq.RingBuffer[Item], pid: int, count: int, r: random.Random) -> None:
    s = 0
    while s < count:
        if r.random() < 0.5:
            ring.put((pid, s))
            s += 1
        else:
            k = min(r.randint(1, 20), count - s)
            s += ring.put_many([(pid, x) for x in range(s, s + k)])


@pytest.mark.parametrize("capacity", [1, 8, 256])
def test_thread_producers_coroutine_consumers(capacity: int, rng: random.Random) -> None:
    producers, per = 2, 10_000
    checker = DeliveryChecker(producers, 3, context=f"capacity={capacity} rng={rng!r}")
    ring: fastq.RingBuffer[Item] = ring_at(capacity, 2**63 - per)
    crew = Crew(on_error=ring.close)

    async def main() -> None:
        consumers = [
            asyncio.create_task(_aconsume(ring, checker.sink(0))),
            asyncio.create_task(_aconsume(ring, checker.sink(1), batch=rng.randint(2, 50))),
            asyncio.create_task(_aconsume(ring, checker.sink(2), batch=1)),
        ]
        for p in range(producers):
            crew.spawn(
                f"producer-{p}", _thread_produce, ring, p, per, random.Random(rng.getrandbits(64))
            )
        hung = await asyncio.to_thread(crew.join, JOIN_TIMEOUT)
        assert not hung
        ring.close()
        await asyncio.wait_for(asyncio.gather(*consumers), JOIN_TIMEOUT)

    run_error = _run(main)
    assert not crew.errors, crew.describe_errors()
    assert run_error is None, repr(run_error)
    for p in range(producers):
        checker.expect_range(p, per)
    checker.assert_ok()


@pytest.mark.parametrize("capacity", [1, 8, 256])
def test_coroutine_producers_thread_consumers(capacity: int, rng: random.Random) -> None:
    producers, consumers, per = 3, 3, 5000
    checker = DeliveryChecker(producers, consumers, context=f"capacity={capacity} rng={rng!r}")
    ring: fastq.RingBuffer[Item] = ring_at(capacity, 2**63 - per)

    def consume(sink: list[Item], batch: int) -> None:
        try:
            while True:
                if batch:
                    sink.extend(ring.get_many(batch))
                else:
                    sink.append(ring.get())
        except fastq.Closed:
            pass

    crew = Crew(on_error=ring.close)
    for c in range(consumers):
        crew.spawn(f"consumer-{c}", consume, checker.sink(c), (0, 1, 7)[c])

    async def main() -> None:
        await asyncio.gather(*(_aproduce(ring, p, per) for p in range(producers)))

    run_error = _run(main)
    ring.close()
    assert crew.join(JOIN_TIMEOUT) == []
    assert not crew.errors, crew.describe_errors()
    assert run_error is None, repr(run_error)
    for p in range(producers):
        checker.expect_range(p, per)
    checker.assert_ok()


def test_several_event_loops_in_several_threads_share_one_ring(rng: random.Random) -> None:
    """Each of 3 threads runs its own event loop with an aput producer and aget/aget_many
    consumers; one more plain thread produces with put/put_many."""
    loops, per = 3, 5000
    producers = loops + 1
    checker = DeliveryChecker(producers, 2 * loops, context=f"rng={rng!r}")
    ring: fastq.RingBuffer[Item] = ring_at(4, 2**63 - 2 * per)
    produced = [threading.Event() for _ in range(producers)]

    def loop_thread(i: int, batch: int) -> None:
        async def produce() -> None:
            try:
                await _aproduce(ring, i, per)
            finally:
                produced[i].set()

        async def main() -> None:
            await asyncio.gather(
                produce(),
                _aconsume(ring, checker.sink(2 * i)),
                _aconsume(ring, checker.sink(2 * i + 1), batch=batch),
            )

        asyncio.run(main())

    def plain_producer(r: random.Random) -> None:
        try:
            _thread_produce(ring, loops, per, r)
        finally:
            produced[loops].set()

    crew = Crew(on_error=ring.close)
    for i in range(loops):
        crew.spawn(f"loop-{i}", loop_thread, i, rng.randint(1, 16))
    crew.spawn("plain-producer", plain_producer, random.Random(rng.getrandbits(64)))
    finished = [ev.wait(JOIN_TIMEOUT) for ev in produced]
    ring.close()
    hung = crew.join(JOIN_TIMEOUT)
    assert not crew.errors, crew.describe_errors()
    assert all(finished), f"producers that never finished: {finished}"
    assert not hung, hung
    for p in range(producers):
        checker.expect_range(p, per)
    checker.assert_ok()


# ---- cancellation ---------------------------------------------------------------------------


async def _cancelling_consumer(
    ring: fastq.RingBuffer[Item], sink: list[Item], r: random.Random, stats: dict[str, int]
) -> None:
    """Take items, cancelling most waits at random points; ends on Closed."""
    loop_timeouts = (0.0, 1e-5, 1e-4, 5e-4, 2e-3)
    while True:
        try:
            op = r.randrange(4)
            if op == 0:  # time out through wait_for (cancels the inner aget)
                try:
                    sink.append(await asyncio.wait_for(ring.aget(), r.choice(loop_timeouts)))
                except asyncio.TimeoutError:
                    stats["timeouts"] += 1
            elif op in (1, 2):  # cancel the task after 0..3 loop steps
                fut: asyncio.Task[Any] = asyncio.ensure_future(
                    ring.aget() if op == 1 else ring.aget_many(r.randint(1, 4))
                )
                for _ in range(r.randrange(4)):
                    await asyncio.sleep(0)
                fut.cancel()
                try:
                    got = await fut
                except asyncio.CancelledError:
                    stats["cancelled"] += 1
                else:
                    if op == 1:
                        sink.append(got)
                    else:
                        sink.extend(got)
            else:
                sink.append(await ring.aget())
        except fastq.Closed:
            return


@pytest.mark.parametrize("thread_consumer", [False, True], ids=["coroutines", "with-thread"])
def test_cancelled_aget_never_loses_or_duplicates(
    thread_consumer: bool, rng: random.Random, stress_scale: float
) -> None:
    """The key cancellation test: agets cancelled at random points (wait_for timeouts and
    Task.cancel after 0..3 loop steps, racing the wake-up from the producer thread) while a
    producer thread puts; every item is delivered exactly once, in per-producer order."""
    rounds = max(1, int(30 * stress_scale))
    per = 2000
    stats = {"timeouts": 0, "cancelled": 0}
    for rnd in range(rounds):
        capacity = rng.choice((1, 2, 4, 16))
        consumers = 3 if thread_consumer else 2
        checker = DeliveryChecker(
            1, consumers, context=f"round {rnd} capacity={capacity} rng={rng!r}"
        )
        ring: fastq.RingBuffer[Item] = ring_at(capacity, 2**63 - rng.randint(0, per))
        pr = random.Random(rng.getrandbits(64))

        def produce(ring: fastq.RingBuffer[Item] = ring, pr: random.Random = pr) -> None:
            for s in range(per):
                ring.put((0, s))
                if pr.random() < 0.05:  # leave the ring empty for a moment: agets must wait
                    time.sleep(pr.choice((0, 1e-5, 2e-4)))

        def thread_consume(ring: fastq.RingBuffer[Item], sink: list[Item]) -> None:
            with contextlib.suppress(fastq.Closed):
                while True:
                    sink.append(ring.get())

        crew = Crew(on_error=ring.close)

        async def main(
            ring: fastq.RingBuffer[Item] = ring,
            checker: DeliveryChecker = checker,
            crew: Crew = crew,
        ) -> None:
            tasks = [
                asyncio.create_task(
                    _cancelling_consumer(
                        ring, checker.sink(c), random.Random(rng.getrandbits(64)), stats
                    )
                )
                for c in range(2)
            ]
            await _settle()
            prod = crew.spawn("producer", produce)
            if thread_consumer:
                crew.spawn("thread-consumer", thread_consume, ring, checker.sink(2))
            hung = await asyncio.to_thread(crew.join, JOIN_TIMEOUT, [prod])
            assert not hung
            ring.close()
            await asyncio.wait_for(asyncio.gather(*tasks), JOIN_TIMEOUT)

        run_error = _run(main)
        ring.close()
        assert crew.join(JOIN_TIMEOUT) == []
        assert not crew.errors, crew.describe_errors()
        assert run_error is None, repr(run_error)
        checker.expect_range(0, per)
        checker.assert_ok(extra=f"stats so far: {stats}")
        assert len(ring) == 0
    print(f"aget cancellation: {rounds} rounds x {per} items, {stats}")
    # the test is only meaningful if waits really were cancelled, many times
    assert stats["cancelled"] + stats["timeouts"] >= 50 * rounds, stats


@pytest.mark.parametrize("capacity", [1, 3])
def test_cancelled_aput_puts_exactly_the_acknowledged_items(
    capacity: int, rng: random.Random, stress_scale: float
) -> None:
    """aputs into a full ring cancelled at random points: the multiset delivered equals the
    multiset of items whose aput completed without an exception."""
    producers = 3
    attempts = max(10, int(3000 * stress_scale))
    checker = DeliveryChecker(producers, 2, context=f"capacity={capacity} rng={rng!r}")
    ring: fastq.RingBuffer[Item] = ring_at(capacity, 2**63 - 500)
    acked: list[list[int]] = [[] for _ in range(producers)]
    refused = [0] * producers

    def consume(sink: list[Item], batch: int, r: random.Random) -> None:
        with contextlib.suppress(fastq.Closed):
            while True:
                if batch:
                    sink.extend(ring.get_many(batch))
                else:
                    sink.append(ring.get())
                if r.random() < 0.05:  # keep the ring full for a moment: aputs must wait
                    time.sleep(r.choice((0, 1e-5, 2e-4)))

    async def produce(pid: int, r: random.Random) -> None:
        for s in range(attempts):
            item = (pid, s)
            op = r.randrange(3)
            try:
                if op == 0:
                    await asyncio.wait_for(ring.aput(item), r.choice((0.0, 1e-5, 1e-4, 1e-3)))
                elif op == 1:
                    task = asyncio.ensure_future(ring.aput(item))
                    for _ in range(r.randrange(4)):
                        await asyncio.sleep(0)
                    task.cancel()
                    await task
                else:
                    await ring.aput(item)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                refused[pid] += 1
            else:
                acked[pid].append(s)

    crew = Crew(on_error=ring.close)

    async def main() -> None:
        for c in range(2):
            crew.spawn(
                f"consumer-{c}", consume, checker.sink(c), c * 3, random.Random(rng.getrandbits(64))
            )
        await asyncio.gather(
            *(produce(p, random.Random(rng.getrandbits(64))) for p in range(producers))
        )

    run_error = _run(main)
    ring.close()
    assert crew.join(JOIN_TIMEOUT) == []
    assert not crew.errors, crew.describe_errors()
    assert run_error is None, repr(run_error)
    for p in range(producers):
        checker.expect(p, acked[p])
    checker.assert_ok(extra=f"refused per producer: {refused}")
    print(f"aput cancellation: {attempts} attempts x {producers}, refused {refused}")
    assert sum(refused) >= attempts // 10, f"too few cancellations to mean much: {refused}"
    assert sum(map(len, acked)) >= attempts // 10, "too few successful aputs"


def test_wakeup_of_a_cancelled_aget_passes_to_the_next_waiter() -> None:
    """Woken (its future resolved) and then cancelled before it ran: the waiter must hand the
    wake-up on, or the item sits in the ring while another coroutine waits forever."""
    ring: fastq.RingBuffer[str] = fastq.RingBuffer(2)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # same thread: put_nowait resolves A's future directly, A.cancel() lands before A runs
        a = asyncio.create_task(ring.aget())
        await _settle()
        b = asyncio.create_task(ring.aget())
        await _settle()
        ring.put_nowait("x")
        a.cancel()
        assert await asyncio.wait_for(b, WAKE_BOUND) == "x"
        with pytest.raises(asyncio.CancelledError):
            await a
        # other thread: its put queues A's wake-up, then it queues the cancel
        a = asyncio.create_task(ring.aget())
        await _settle()
        b = asyncio.create_task(ring.aget())
        await _settle()

        def put_then_cancel(a: asyncio.Task[str] = a) -> None:
            ring.put("y")
            loop.call_soon_threadsafe(a.cancel)

        # block the loop while the thread runs, so both callbacks are queued before A runs
        t = threading.Thread(target=put_then_cancel)
        t.start()
        t.join()
        assert await asyncio.wait_for(b, WAKE_BOUND) == "y"
        with pytest.raises(asyncio.CancelledError):
            await a

    asyncio.run(main())
    assert len(ring) == 0


def test_wakeup_of_a_cancelled_aput_passes_to_the_next_waiter() -> None:
    ring: fastq.RingBuffer[str] = fastq.RingBuffer(1)
    ring.put("full")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a = asyncio.create_task(ring.aput("a"))
        await _settle()
        b = asyncio.create_task(ring.aput("b"))
        await _settle()
        assert ring.get_nowait() == "full"  # resolves A's future in this thread
        a.cancel()
        await asyncio.wait_for(b, WAKE_BOUND)
        with pytest.raises(asyncio.CancelledError):
            await a
        assert ring.get_nowait() == "b"
        ring.put("full")
        a = asyncio.create_task(ring.aput("a2"))
        await _settle()
        b = asyncio.create_task(ring.aput("b2"))
        await _settle()
        got: list[str] = []

        def get_then_cancel(a: asyncio.Task[None] = a) -> None:
            got.append(ring.get())
            loop.call_soon_threadsafe(a.cancel)

        t = threading.Thread(target=get_then_cancel)
        t.start()
        t.join()  # (blocks the loop on purpose, as above)
        await asyncio.wait_for(b, WAKE_BOUND)
        with pytest.raises(asyncio.CancelledError):
            await a
        assert got == ["full"]
        assert ring.get_nowait() == "b2"

    asyncio.run(main())
    assert len(ring) == 0


def test_put_many_from_a_thread_wakes_many_awaiting_coroutines() -> None:
    ring: fastq.RingBuffer[int] = fastq.RingBuffer(16)

    async def main() -> None:
        takers: list[asyncio.Task[Any]] = [asyncio.create_task(ring.aget()) for _ in range(6)]
        takers += [asyncio.create_task(ring.aget_many(1)) for _ in range(3)]
        await _settle()
        assert not any(t.done() for t in takers)
        assert await asyncio.to_thread(ring.put_many, list(range(9))) == 9
        done = await asyncio.wait_for(asyncio.gather(*takers), WAKE_BOUND)
        got = [x for r in done for x in (r if isinstance(r, list) else [r])]
        assert sorted(got) == list(range(9))

    asyncio.run(main())


def test_get_many_from_a_thread_wakes_many_awaiting_aputs() -> None:
    ring: fastq.RingBuffer[int] = fastq.RingBuffer(8)
    ring.put_many(list(range(8)))

    async def main() -> None:
        putters = [asyncio.create_task(ring.aput(100 + i)) for i in range(8)]
        await _settle()
        assert not any(t.done() for t in putters)
        assert await asyncio.to_thread(ring.get_many, 8) == list(range(8))
        await asyncio.wait_for(asyncio.gather(*putters), WAKE_BOUND)
        assert sorted(ring.get_many(8)) == list(range(100, 108))

    asyncio.run(main())


# ---- close() and waiting ----------------------------------------------------------------------


@pytest.mark.parametrize("closer", ["same-loop", "other-thread"])
def test_close_wakes_awaiting_aget_and_aput_with_closed(closer: str) -> None:
    empty: fastq.RingBuffer[str] = fastq.RingBuffer(4)
    full: fastq.RingBuffer[str] = fastq.RingBuffer(2)
    full.put_many(["a", "b"])

    async def main() -> None:
        waiting: list[asyncio.Task[Any]] = [
            asyncio.create_task(empty.aget()),
            asyncio.create_task(empty.aget()),
            asyncio.create_task(empty.aget_many(3)),
            asyncio.create_task(full.aput("c")),
            asyncio.create_task(full.aput("d")),
        ]
        await _settle()
        assert not any(t.done() for t in waiting), [t for t in waiting if t.done()]

        def close_both() -> None:
            empty.close()
            full.close()

        t0 = time.monotonic()
        if closer == "same-loop":
            close_both()
        else:
            await asyncio.to_thread(close_both)
        results = await asyncio.wait_for(
            asyncio.gather(*waiting, return_exceptions=True), WAKE_BOUND
        )
        assert time.monotonic() - t0 < WAKE_BOUND
        assert all(isinstance(r, fastq.Closed) for r in results), results
        with pytest.raises(fastq.Closed):
            await empty.aget()
        with pytest.raises(fastq.Closed):
            await full.aput("e")
        assert await full.aget_many(5) == ["a", "b"]  # what was in the ring still drains
        with pytest.raises(fastq.Closed):
            await full.aget_many(5)

    asyncio.run(main())


async def _measure_idle_wait(
    make: Callable[[], Awaitable[Any]], release: Callable[[], None], seconds: float
) -> tuple[float, int, int | None, Any]:
    """Start a wait, idle for `seconds`; return CPU used, thread growth, native thread
    growth, and the wait's result once released from another thread."""
    threads0, native0 = threading.active_count(), _native_thread_count()
    task = asyncio.ensure_future(make())
    await _settle()
    assert not task.done()
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)  # the measurement window, not a synchronisation
    cpu = time.process_time() - cpu0
    extra_threads = threading.active_count() - threads0
    native1 = _native_thread_count()
    extra_native = None if native0 is None or native1 is None else native1 - native0
    assert not task.done()
    t = threading.Thread(target=release)  # liveness: woken from another thread
    t.start()
    result = await asyncio.wait_for(task, WAKE_BOUND)
    await asyncio.to_thread(t.join)
    return cpu, extra_threads, extra_native, result


def test_waiting_aget_and_aput_do_not_spin_or_start_threads() -> None:
    empty: fastq.RingBuffer[str] = fastq.RingBuffer(4)
    full: fastq.RingBuffer[str] = fastq.RingBuffer(1)
    full.put("old")
    taken: list[str] = []

    async def main() -> list[tuple[float, int, int | None, Any]]:
        return [
            await _measure_idle_wait(empty.aget, lambda: empty.put("x"), 0.2),
            await _measure_idle_wait(lambda: empty.aget_many(3), lambda: empty.put("y"), 0.2),
            await _measure_idle_wait(
                lambda: full.aput("new"), lambda: taken.append(full.get()), 0.2
            ),
        ]

    results = asyncio.run(main())
    for (cpu, extra_threads, extra_native, _), what in zip(
        results, ("aget", "aget_many", "aput"), strict=True
    ):
        assert cpu < 0.1, f"{what}: {cpu:.3f}s of CPU while waiting 0.2s (busy loop?)"
        assert extra_threads == 0, f"{what}: {extra_threads} Python threads appeared"
        # <= 0: the previous round's waker thread may still be leaving the kernel's task
        # list when the window opens (Python's join returns before the OS thread is gone)
        assert extra_native is None or extra_native <= 0, (
            f"{what}: {extra_native} native threads appeared"
        )
    assert [r[3] for r in results] == ["x", ["y"], None]
    assert taken == ["old"]
    assert full.get_nowait() == "new"
