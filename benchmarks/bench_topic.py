"""Partitioned topics with consumer groups (issue 5): fastq.Topic next to the partitioned
topic users write by hand in process, one thread. 8 partitions; keys drawn from 10,000
distinct str keys ("user-123"); payloads 64 B bytes objects (1,024 distinct ones, cycled).

topic_publish_keyed          per message: publish(msg)
    fastq                      t.publish(m), m a pre-built fastq.Message(payload, key=k)
    dict of lists              publish(k, p): p = xxh3_64_intdigest(k.encode()) % 8; append
topic_publish_key_kwarg      per message: t.publish(payload, key=k) (fastq builds the
                             Message: id, timestamp); the peer as above
topic_publish_many           per batch of 1,000: publish_many(batch) (fastq: Messages,
                             grouped per partition in C; the peer: its loop in one method)
topic_poll_batch             a fresh consumer of a topic filled in setup polls
                             max_records=1000 until it gets [] (fastq: consumer("g",
                             start="earliest"), auto_commit; the peer: slices from a position
                             per partition into (partition, offset, item) tuples)
topic_durable_publish_keyed  as topic_publish_keyed, on disk in a fresh directory
    fastq                      Topic(path=dir, sync="none"): one SegmentLog per partition
    sqlite3                    one table (part, off, key, payload), WAL, synchronous=NORMAL:
                               an INSERT and a commit per message (no fsync, as sync="none")
topic_durable_poll_batch     as topic_poll_batch, the topic filled in setup, closed and
                             opened again (what a new consumer process finds)
    sqlite3                    a SELECT ... ORDER BY off LIMIT per partition

Each round opens a fresh topic (setup, untimed; on disk in a fresh directory under
--bench-log-dir); teardown checks that the topic holds every message published, then closes it
and deletes its directory; a poll round fails unless it received every message. Before the
timing, a check on a topic of its own: each implementation routes and numbers the first
messages as xxh3_64_intdigest(key.encode()) % 8 and per-partition counting say (so fastq and
the peers fill their partitions alike). fastq and the dict of lists move
--bench-topic-items messages per round, sqlite3 --bench-topic-slow-items; rates are per each
row's own count.

Select these with ``-k topic``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from harness import Settings, measure
from log_peers import new_dir
from topic_peers import (
    BATCH,
    PARTITIONS,
    POLL,
    TOPIC_REGISTRY,
    Pair,
    TopicPeer,
    batches,
    keyed,
    messages,
    topic_info,
    topic_supporting,
)

_CHECKED = 50


def _expected(pairs: list[Pair]) -> list[tuple[int, int, str, bytes]]:
    import xxhash

    nxt = [0] * PARTITIONS
    out = []
    for key, payload in pairs:
        p = xxhash.xxh3_64_intdigest(key.encode()) % PARTITIONS
        out.append((p, nxt[p], key, payload))
        nxt[p] += 1
    return sorted(out)


@pytest.fixture
def topic_type(topic_impl: str) -> type[TopicPeer]:
    cls = TOPIC_REGISTRY[topic_impl]
    reason = cls.missing()
    if reason is not None:
        pytest.skip(reason)
    return cls


def _bench(
    benchmark: Any,
    settings: Settings,
    topic_type: type[TopicPeer],
    topic_impl: str,
    log_dir: str,
    *,
    scenario: str,
    durable: bool,
    kind: str,
) -> None:
    what = f"{scenario}/{topic_impl}"
    n = settings.topic_items if topic_type.fast else settings.topic_slow_items
    pairs = keyed(n)
    items: list[Any] = messages(pairs) if topic_type.takes_messages else pairs

    def fresh() -> TopicPeer:
        return topic_type(new_dir(log_dir, prefix="topic-") if durable else None)

    check = fresh()
    try:
        check.fill(items[:_CHECKED])
        check.reopen()
        got = check.first(_CHECKED)
        if got != _expected(pairs[:_CHECKED]):
            raise AssertionError(f"{what}: routed {got[:3]!r}..., expected xxh3 % 8 routing")
    finally:
        check.dispose()

    extra: dict[str, Any] = {}
    run: Callable[[TopicPeer], Any]
    if kind == "poll":
        extra["max_records"] = POLL

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            peer = fresh()
            peer.fill(items)
            peer.reopen()
            return (peer,), {}

        def run(peer: TopicPeer) -> None:
            received = peer.drain(POLL)
            if received != n:
                raise AssertionError(f"{what}: polled {received} records, expected {n}")

    else:

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            return (fresh(),), {}

        if kind == "keyed":
            run = lambda peer: peer.publish_keyed(items)  # noqa: E731
        elif kind == "kwarg":
            run = lambda peer: peer.publish_kwargs(pairs)  # noqa: E731
        else:
            chunks = batches(items, BATCH)
            extra["batch"] = BATCH
            run = lambda peer: peer.publish_batches(chunks)  # noqa: E731

    def teardown(peer: TopicPeer) -> None:
        try:
            held = peer.count()
            if held != n:
                raise AssertionError(f"{what}: the topic holds {held} records, expected {n}")
        finally:
            peer.dispose()

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=topic_impl,
        items=n,
        target=run,
        setup=setup,
        teardown=teardown,
        extra_info={**topic_info(topic_type, durable, n), **extra},
    )


def _impls(mode: str) -> list[Any]:
    return [pytest.param(name, id=name.replace(" ", "-")) for name in topic_supporting(mode)]


#: (scenario, durable, kind): one benchmark each, for every implementation that supports it
SCENARIOS = (
    ("topic_publish_keyed", False, "keyed"),
    ("topic_publish_key_kwarg", False, "kwarg"),
    ("topic_publish_many", False, "many"),
    ("topic_poll_batch", False, "poll"),
    ("topic_durable_publish_keyed", True, "keyed"),
    ("topic_durable_poll_batch", True, "poll"),
)


@pytest.mark.parametrize(
    ("scenario", "durable", "kind", "topic_impl"),
    [
        pytest.param(sc, durable, kind, impl.values[0], id=f"{sc}-{impl.id}")
        for sc, durable, kind in SCENARIOS
        for impl in _impls("durable" if durable else "memory")
    ],
)
def test_topic(
    benchmark: Any,
    settings: Settings,
    topic_type: type[TopicPeer],
    log_dir: str,
    scenario: str,
    durable: bool,
    kind: str,
    topic_impl: str,
) -> None:
    _bench(
        benchmark, settings, topic_type, topic_impl, log_dir,
        scenario=scenario, durable=durable, kind=kind,
    )  # fmt: skip
