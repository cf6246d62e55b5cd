"""Threads: producers and consumers on separate threads, through one shared queue.

spsc       1 producer thread put(x) per item, 1 consumer thread get() per item
spsc-many  the same with batches: fastq put_many(batch) / get_many(1000); faster-fifo its
           put_many/get_many; peers without a batch API run per item (same as spsc)
mpmc       2 producer threads (half the items each), 2 consumer threads

Threads are created and started in the round's setup and wait on an Event; the timed call
sets it, joins the producers, ends the stream (fastq: close(), consumers stop on
fastq.Closed; the others: one None per consumer), joins the consumers and checks that they
received exactly every item. So the time runs from the producers' start to the last
consumer's finish. Teardown checks that no thread of the round is left.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from harness import (
    Settings,
    Worker,
    assert_joined,
    check_count,
    chunked,
    make_items,
    measure,
    split,
    start_workers,
)
from peers import Peer, supporting

Round = tuple[Peer, threading.Event, list[Worker], list[Worker]]


def _bench_threads(
    benchmark: Any,
    settings: Settings,
    *,
    scenario: str,
    impl: str,
    peer_type: type[Peer],
    producers: int,
    consumers: int,
    produce: Callable[[Peer, list[int]], Callable[[], None]],
    consume: Callable[[Peer], Callable[[], int]],
    capacity: int,
) -> None:
    items = make_items(settings.items)
    shares = split(items, producers)

    def setup() -> tuple[Round, dict[str, Any]]:
        peer = peer_type(capacity)
        go = threading.Event()
        prod = start_workers(go, "producer", [produce(peer, share) for share in shares])
        cons = start_workers(go, "consumer", [consume(peer) for _ in range(consumers)])
        return (peer, go, prod, cons), {}

    def run(peer: Peer, go: threading.Event, prod: list[Worker], cons: list[Worker]) -> int:
        go.set()
        try:
            for w in prod:
                w.finish()
        finally:
            peer.finish(consumers)  # also ends the consumers if a producer failed
        received = sum(w.finish() for w in cons)
        return check_count(received, len(items), f"{scenario}/{impl}")

    def teardown(peer: Peer, go: threading.Event, prod: list[Worker], cons: list[Worker]) -> None:
        assert_joined(prod, cons)
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


def _put_each(peer: Peer, share: list[int]) -> Callable[[], None]:
    def produce() -> None:
        put = peer.put
        for x in share:
            put(x)

    return produce


def _get_each(peer: Peer) -> Callable[[], int]:
    return peer.consume


@pytest.mark.parametrize("impl", supporting("threads"))
def test_spsc(benchmark: Any, settings: Settings, peer_type: type[Peer], impl: str) -> None:
    _bench_threads(
        benchmark,
        settings,
        scenario="spsc",
        impl=impl,
        peer_type=peer_type,
        producers=1,
        consumers=1,
        produce=_put_each,
        consume=_get_each,
        capacity=settings.thread_capacity,
    )


@pytest.mark.parametrize("impl", supporting("threads"))
def test_spsc_many(benchmark: Any, settings: Settings, peer_type: type[Peer], impl: str) -> None:
    size = settings.batch_size

    def put_batches(peer: Peer, share: list[int]) -> Callable[[], None]:
        batches = chunked(share, size)
        return lambda: peer.produce_many(batches)

    def get_batches(peer: Peer) -> Callable[[], int]:
        return lambda: peer.consume_many(size)

    _bench_threads(
        benchmark,
        settings,
        scenario="spsc-many",
        impl=impl,
        peer_type=peer_type,
        producers=1,
        consumers=1,
        produce=put_batches,
        consume=get_batches,
        capacity=max(settings.thread_capacity, size),
    )


@pytest.mark.parametrize("impl", supporting("threads"))
def test_mpmc(benchmark: Any, settings: Settings, peer_type: type[Peer], impl: str) -> None:
    _bench_threads(
        benchmark,
        settings,
        scenario="mpmc",
        impl=impl,
        peer_type=peer_type,
        producers=2,
        consumers=2,
        produce=_put_each,
        consume=_get_each,
        capacity=settings.thread_capacity,
    )
