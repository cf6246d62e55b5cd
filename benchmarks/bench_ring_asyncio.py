"""asyncio: coroutines in one event loop, and a plain thread feeding a coroutine.

async-gather       one producer coroutine (await aput(x) per item, then end the stream) and
                   one consumer coroutine (await aget() until the end), run with gather
async-pairs        one coroutine: await aput(x); await aget() per item
thread-async       a producer thread puts per item, a coroutine awaits per item:
                   fastq ring.put / await ring.aget(); janus sync_q.put / await async_q.get();
                   asyncio.Queue loop.call_soon_threadsafe(q.put_nowait, x) / await q.get()
thread-async-many  the same, but the fastq coroutine takes batches: await ring.aget_many(1000)
                   (the peers have no batch get and run per item, as in thread-async)

Streams end with close() for fastq (consumers stop on fastq.Closed) and with None for the
others. Each round gets a fresh queue; the loop is made once per benchmark, outside the timing.
The producer thread is started in setup and released by the timed call, from inside the loop;
the time runs until the consumer coroutine has every item and the thread is joined.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from harness import Settings, Worker, assert_joined, check_count, make_items, measure
from peers import Peer, supporting


def _bench_loop(
    benchmark: Any,
    settings: Settings,
    aio_loop: asyncio.AbstractEventLoop,
    *,
    scenario: str,
    impl: str,
    peer_type: type[Peer],
    body: Callable[[Peer, list[int]], Coroutine[Any, Any, int]],
) -> None:
    items = make_items(settings.items)

    def setup() -> tuple[tuple[Peer], dict[str, Any]]:
        return (peer_type(settings.capacity, aio_loop),), {}

    def run(peer: Peer) -> int:
        got = aio_loop.run_until_complete(body(peer, items))
        return check_count(got, len(items), f"{scenario}/{impl}")

    def teardown(peer: Peer) -> None:
        peer.dispose()

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=impl,
        items=len(items),
        target=run,
        setup=setup,
        teardown=teardown,
    )


async def _gather(peer: Peer, items: list[int]) -> int:
    async def produce() -> None:
        aput = peer.aput
        for x in items:
            await aput(x)
        await peer.afinish()

    _, got = await asyncio.gather(produce(), peer.aconsume())
    return int(got)


async def _pairs(peer: Peer, items: list[int]) -> int:
    aput = peer.aput
    aget = peer.aget
    n = 0
    for x in items:
        await aput(x)
        if (await aget()) is not None:
            n += 1
    return n


@pytest.mark.parametrize("impl", supporting("aloop"))
def test_async_gather(
    benchmark: Any,
    settings: Settings,
    aio_loop: asyncio.AbstractEventLoop,
    peer_type: type[Peer],
    impl: str,
) -> None:
    _bench_loop(
        benchmark,
        settings,
        aio_loop,
        scenario="async-gather",
        impl=impl,
        peer_type=peer_type,
        body=_gather,
    )


@pytest.mark.parametrize("impl", supporting("aloop"))
def test_async_pairs(
    benchmark: Any,
    settings: Settings,
    aio_loop: asyncio.AbstractEventLoop,
    peer_type: type[Peer],
    impl: str,
) -> None:
    _bench_loop(
        benchmark,
        settings,
        aio_loop,
        scenario="async-pairs",
        impl=impl,
        peer_type=peer_type,
        body=_pairs,
    )


# ---- a thread feeding a coroutine -------------------------------------------------------------

FeedRound = tuple[Peer, threading.Event, Worker]


def _bench_feed(
    benchmark: Any,
    settings: Settings,
    aio_loop: asyncio.AbstractEventLoop,
    *,
    scenario: str,
    impl: str,
    peer_type: type[Peer],
    consume: Callable[[Peer], Coroutine[Any, Any, int]],
) -> None:
    items = make_items(settings.items)

    def setup() -> tuple[FeedRound, dict[str, Any]]:
        peer = peer_type(settings.capacity, aio_loop, feed=True)
        go = threading.Event()

        def produce() -> None:
            tput = peer.tput
            try:
                for x in items:
                    tput(x)
            finally:
                peer.tfinish()  # even after a failure, so the coroutine cannot hang

        producer = Worker("producer", go, produce)
        producer.start()
        return (peer, go, producer), {}

    async def main(peer: Peer, go: threading.Event) -> int:
        go.set()  # release the producer thread once the loop runs
        return await consume(peer)

    def run(peer: Peer, go: threading.Event, producer: Worker) -> int:
        try:
            got = aio_loop.run_until_complete(main(peer, go))
        except BaseException:
            peer.dispose()  # a producer blocked on a full queue gets out
            raise
        finally:
            producer.finish()
        return check_count(got, len(items), f"{scenario}/{impl}")

    def teardown(peer: Peer, go: threading.Event, producer: Worker) -> None:
        assert_joined([producer])
        peer.dispose()

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=impl,
        items=len(items),
        target=run,
        setup=setup,
        teardown=teardown,
    )


@pytest.mark.parametrize("impl", supporting("feed"))
def test_thread_async(
    benchmark: Any,
    settings: Settings,
    aio_loop: asyncio.AbstractEventLoop,
    peer_type: type[Peer],
    impl: str,
) -> None:
    _bench_feed(
        benchmark,
        settings,
        aio_loop,
        scenario="thread-async",
        impl=impl,
        peer_type=peer_type,
        consume=lambda peer: peer.aconsume(),
    )


@pytest.mark.parametrize("impl", supporting("feed"))
def test_thread_async_many(
    benchmark: Any,
    settings: Settings,
    aio_loop: asyncio.AbstractEventLoop,
    peer_type: type[Peer],
    impl: str,
) -> None:
    size = settings.batch_size
    _bench_feed(
        benchmark,
        settings,
        aio_loop,
        scenario="thread-async-many",
        impl=impl,
        peer_type=peer_type,
        consume=lambda peer: peer.aconsume_many(size),
    )
