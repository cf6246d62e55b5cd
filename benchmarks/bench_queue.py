"""Work queues with acknowledgements (issue 5): fastq.Queue next to the queues with ack
semantics users pick instead, in memory and on disk, one thread. Payloads are 64 B bytes
objects (1,024 distinct ones, cycled).

memory_single      per message: put(payload); d = get(); ack(d)
    fastq            q.put(p); q.get(timeout=0).ack()                 (Queue("bench"))
    Queue+leases     queue.Queue + a dict of leases under a threading.Lock (LeaseQueue)
    persist-queue    SQLiteAckQueue(":memory:"): put; get(block=False, raw=True); ack(raw)
    litequeue        LiteQueue(":memory:"): put; pop(); done(message.message_id)
memory_batch100    per batch of 100: put_many(batch); ds = get_many(100); ack_many(ds)
    fastq            q.put_many(b); q.ack_many(q.get_many(100, timeout=0))  (ack_many takes
                     the deliveries or their receipts)
    Queue+leases     loops over queue.Queue (no batch API), one lease-lock hold per batch
    persist-queue    loops (no batch API)
    litequeue        put loop and done loop in one transaction each; pop per message
durable_single     as memory_single, the queue on disk in a fresh directory
    fastq                 Queue("bench", path=dir), sync="none" (the default)
    persist-queue         SQLiteAckQueue(dir): SQLite's default synchronous=FULL, so put, get
                          and ack each fsync (durable per call)
    persist-queue NORMAL  the same with PRAGMA synchronous=NORMAL (no fsync per commit)
    litequeue             LiteQueue(file): WAL, synchronous=NORMAL (its defaults)
durable_batch100   as memory_batch100, on disk (the same rows)

(Topic scenarios, issue 5's partitioned topic with consumer groups, come later: a
test_workqueue_topic_* function per scenario here, with its QUEUE_SCENARIOS entry in
report.py.)

Each round opens a fresh queue (setup, untimed; on disk in a fresh directory under
--bench-log-dir), moves its messages through, and teardown checks (untimed) that every message
was delivered and acked and none is left ready or in flight, then closes the queue and deletes
its directory. Before the timing, a round trip on a queue of its own checks that each adapter
delivers the payloads put, in order, through the single and the batch calls. fastq and
Queue+leases move --bench-queue-items messages per round, the SQLite peers
--bench-queue-slow-items; rates are per each row's own count.

Select these with ``-k workqueue`` (``-k queue`` also matches ring and log rows of peers
whose names contain "queue").
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import Settings, measure
from log_peers import new_dir
from queue_peers import (
    BATCH,
    WorkQueuePeer,
    batches,
    check_and_dispose,
    check_round_trip,
    payloads,
    queue_info,
    queue_supporting,
)

MODES = ("memory", "durable")


def _count(peer_type: type[WorkQueuePeer], settings: Settings) -> int:
    return settings.queue_items if peer_type.fast else settings.queue_slow_items


def _opener(peer_type: type[WorkQueuePeer], durable: bool, log_dir: str) -> Any:
    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        directory = new_dir(log_dir, prefix="queue-") if durable else None
        return (peer_type(directory),), {}

    return setup


def _params() -> list[Any]:
    """(mode, queue_impl) pairs: every implementation that has the mode."""
    return [
        pytest.param(mode, name, id=f"{mode}-{name}")
        for mode in MODES
        for name in queue_supporting(mode)
    ]


def _bench(
    benchmark: Any,
    settings: Settings,
    queue_type: type[WorkQueuePeer],
    queue_impl: str,
    mode: str,
    log_dir: str,
    kind: str,
) -> None:
    durable = mode == "durable"
    scenario = f"{mode}_{kind}"
    what = f"{scenario}/{queue_impl}"
    n = _count(queue_type, settings)
    items = payloads(n)
    setup = _opener(queue_type, durable, log_dir)
    (peer,), _ = setup()
    try:
        check_round_trip(peer, items, what)
    finally:
        peer.dispose()
    extra: dict[str, Any] = {}
    if kind == "single":

        def run(peer: WorkQueuePeer) -> None:
            peer.single(items)

    else:
        chunks = batches(items, BATCH)
        extra["batch"] = BATCH

        def run(peer: WorkQueuePeer) -> None:
            peer.batched(chunks)

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=queue_impl,
        items=n,
        target=run,
        setup=setup,
        teardown=lambda peer: check_and_dispose(peer, n, what),
        extra_info={**queue_info(queue_type, durable, n), **extra},
    )


@pytest.mark.parametrize(("mode", "queue_impl"), _params())
def test_workqueue_single(
    benchmark: Any,
    settings: Settings,
    queue_type: type[WorkQueuePeer],
    queue_impl: str,
    mode: str,
    log_dir: str,
) -> None:
    _bench(benchmark, settings, queue_type, queue_impl, mode, log_dir, "single")


@pytest.mark.parametrize(("mode", "queue_impl"), _params())
def test_workqueue_batch100(
    benchmark: Any,
    settings: Settings,
    queue_type: type[WorkQueuePeer],
    queue_impl: str,
    mode: str,
    log_dir: str,
) -> None:
    _bench(benchmark, settings, queue_type, queue_impl, mode, log_dir, "batch100")
