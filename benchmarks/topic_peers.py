"""Adapters over fastq.Topic and the partitioned topics users write by hand in process
(bench_topic.py), and the data its rounds share.

As in queue_peers.py, each adapter class (:class:`TopicPeer`) opens one topic of one
implementation for one round, in memory or in a fresh directory, and owns its timed loops, so
that the calls a user of that implementation writes are what is timed (methods bound to
locals, no adapter frame per message):

``publish_keyed(msgs)``     per message: publish it (fastq: a pre-built ``fastq.Message``
                            with its key; the peers: ``publish(key, payload)``)
``publish_kwargs(pairs)``   per message: ``t.publish(payload, key=k)`` (fastq builds the
                            Message inside; the peers: the same call as publish_keyed)
``publish_batches(chunks)`` per batch: ``publish_many(batch)``
``fill(msgs)``              untimed: publish everything (the poll scenarios' setup)
``drain(max_records)``      a fresh consumer polls ``max_records`` at a time until it gets
                            ``[]``; returns the number of records received

Messages: ``TOPIC_KEYS`` distinct str keys (``"user-123"``), drawn pseudo-randomly, and 64 B
payloads (1,024 distinct bytes objects, cycled). Every peer routes a key to
``xxh3_64_intdigest(key.encode()) % partitions``, which is what ``fastq.partition`` computes
(checked once, untimed, by bench_topic.py), so every implementation fills its partitions the
same way.

Capabilities (``TopicPeer.caps``): ``memory`` (``directory`` is None) and ``durable`` (files
under ``directory``). Optional peers are imported lazily; :meth:`Implementation.missing`
names what is not installed, and the benchmark is skipped.
"""

from __future__ import annotations

import importlib
import os
import random
import sqlite3
from collections.abc import Sequence
from typing import Any, ClassVar

from log_peers import remove_dir
from peers import Implementation
from queue_peers import PAYLOAD_BYTES, payloads

import fastq

#: partitions per topic
PARTITIONS = 8
#: distinct keys
TOPIC_KEYS = 10_000
#: messages per publish_many batch
BATCH = 1_000
#: max_records per poll
POLL = 1_000

Pair = tuple[str, bytes]


# ---- data -------------------------------------------------------------------------------


def keyed(n: int) -> list[Pair]:
    """n (key, payload) pairs: keys "user-<k>" drawn from TOPIC_KEYS, 64 B payloads."""
    keys = [f"user-{k}" for k in range(TOPIC_KEYS)]
    draw = random.Random(5).randrange
    return [(keys[draw(TOPIC_KEYS)], p) for p in payloads(n)]


def messages(pairs: Sequence[Pair]) -> list[fastq.Message]:
    """The same pairs as fastq.Message objects (built once, untimed; published every round)."""
    return [fastq.Message(payload, key=key) for key, payload in pairs]


def batches(items: Sequence[Any], size: int = BATCH) -> list[list[Any]]:
    return [list(items[k : k + size]) for k in range(0, len(items), size)]


# ---- adapters ---------------------------------------------------------------------------


class TopicPeer(Implementation):
    """One topic of one implementation, for one benchmark round."""

    caps: ClassVar[frozenset[str]] = frozenset()
    #: True: --bench-topic-items messages per round; False: --bench-topic-slow-items
    fast: ClassVar[bool] = True
    #: whether publish_keyed takes fastq.Message objects (else (key, payload) pairs)
    takes_messages: ClassVar[bool] = False
    memory_mode: ClassVar[str] = ""
    durable_mode: ClassVar[str] = ""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self._open()

    @classmethod
    def mode(cls, durable: bool) -> str:
        return cls.durable_mode if durable else cls.memory_mode

    def _open(self) -> None:
        raise NotImplementedError

    def publish_keyed(self, items: Sequence[Any]) -> None:
        raise NotImplementedError

    def publish_kwargs(self, items: Sequence[Pair]) -> None:
        raise NotImplementedError

    def publish_batches(self, chunks: Sequence[list[Any]]) -> None:
        raise NotImplementedError

    def fill(self, items: Sequence[Any]) -> None:
        raise NotImplementedError

    def reopen(self) -> None:
        """Durable topics: close and open again (the poll scenario reads what a new process
        would find). In memory: nothing."""

    def drain(self, max_records: int) -> int:
        raise NotImplementedError

    def first(self, n: int) -> list[tuple[int, int, str, bytes]]:
        """Untimed check: the first n records a fresh consumer gets, as
        (partition, offset, key, payload), sorted."""
        raise NotImplementedError

    def count(self) -> int:
        """Untimed check: records in the topic."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def dispose(self) -> None:
        try:
            self.close()
        finally:
            if self.directory is not None:
                remove_dir(self.directory)


class FastqTopic(TopicPeer):
    name = "fastq"
    dist = "fastq-queue"
    caps = frozenset({"memory", "durable"})
    takes_messages = True
    memory_mode = (
        'Topic("bench", partitions=8); publish(Message) / publish(p, key=k) / '
        'publish_many(1,000 Messages); consumer("g", start="earliest") (auto_commit=True), '
        "poll(max_records=1000)"
    )
    durable_mode = 'Topic("bench", partitions=8, path=dir, sync="none"); calls as in memory'

    @classmethod
    def missing(cls) -> str | None:
        return None if hasattr(fastq, "Topic") else "this fastq build has no fastq.Topic"

    def _open(self) -> None:
        if self.directory is None:
            self.t = fastq.Topic("bench", partitions=PARTITIONS)
        else:
            self.t = fastq.Topic("bench", partitions=PARTITIONS, path=self.directory, sync="none")

    def publish_keyed(self, items: Sequence[Any]) -> None:
        publish = self.t.publish
        for message in items:
            publish(message)

    def publish_kwargs(self, items: Sequence[Pair]) -> None:
        publish = self.t.publish
        for key, payload in items:
            publish(payload, key=key)

    def publish_batches(self, chunks: Sequence[list[Any]]) -> None:
        publish_many = self.t.publish_many
        for chunk in chunks:
            publish_many(chunk)

    def fill(self, items: Sequence[Any]) -> None:
        self.publish_batches(batches(items))

    def reopen(self) -> None:
        if self.directory is not None:
            self.t.close()
            self._open()

    def drain(self, max_records: int) -> int:
        poll = self.t.consumer("g", start="earliest").poll
        n = 0
        while records := poll(max_records=max_records):
            n += len(records)
        return n

    def first(self, n: int) -> list[tuple[int, int, str, bytes]]:
        poll = self.t.consumer("check", start="earliest").poll
        records: list[Any] = []
        while len(records) < n and (got := poll(max_records=n - len(records))):
            records += got
        return sorted(
            (r.partition, r.offset, r.message.key, bytes(r.message.payload)) for r in records
        )

    def count(self) -> int:
        ends, starts = self.t.end_offsets(), self.t.start_offsets()
        return sum(ends[p] - starts[p] for p in ends)

    def close(self) -> None:
        self.t.close()


class DictOfLists:
    """The partitioned topic users write in process: 8 lists of (key, payload), a key's
    partition from xxhash, offsets = list indices, one consumer position per partition.

    What it does not do, and fastq.Topic does: consumer groups (assignment, rebalancing,
    committed offsets), locking for threads, retention, message envelopes (id, timestamp,
    headers). So it flatters itself.
    """

    def __init__(self, partitions: int = PARTITIONS) -> None:
        self.partitions: list[list[Pair]] = [[] for _ in range(partitions)]
        self.n = partitions
        self.hash = importlib.import_module("xxhash").xxh3_64_intdigest

    def publish(self, key: str, payload: bytes) -> tuple[int, int]:
        p = self.hash(key.encode()) % self.n
        part = self.partitions[p]
        part.append((key, payload))
        return p, len(part) - 1

    def publish_many(self, items: Sequence[Pair]) -> list[tuple[int, int]]:
        h, n, parts = self.hash, self.n, self.partitions
        out = []
        for key, payload in items:
            p = h(key.encode()) % n
            part = parts[p]
            part.append((key, payload))
            out.append((p, len(part) - 1))
        return out

    def consumer(self) -> DictOfListsConsumer:
        return DictOfListsConsumer(self.partitions)


class DictOfListsConsumer:
    def __init__(self, partitions: list[list[Pair]]) -> None:
        self.partitions = partitions
        self.positions = [0] * len(partitions)

    def poll(self, max_records: int = POLL) -> list[tuple[int, int, Pair]]:
        out: list[tuple[int, int, Pair]] = []
        positions = self.positions
        for p, part in enumerate(self.partitions):
            start = positions[p]
            taken = part[start : start + max_records - len(out)]
            if taken:
                out += [(p, offset, item) for offset, item in enumerate(taken, start)]
                positions[p] = start + len(taken)
                if len(out) >= max_records:
                    break
        return out


class DictOfListsPeer(TopicPeer):
    name = "dict of lists"
    dist = "xxhash"
    module = "xxhash"
    caps = frozenset({"memory"})
    memory_mode = (
        "8 lists of (key, payload); publish: p = xxh3_64_intdigest(key.encode()) % 8, append, "
        "return (p, len - 1); publish_many: that loop in one method; poll: slices from a "
        "position per partition into (partition, offset, item) tuples"
    )

    def _open(self) -> None:
        self.t = DictOfLists()

    def publish_keyed(self, items: Sequence[Pair]) -> None:
        publish = self.t.publish
        for key, payload in items:
            publish(key, payload)

    publish_kwargs = publish_keyed

    def publish_batches(self, chunks: Sequence[list[Pair]]) -> None:
        publish_many = self.t.publish_many
        for chunk in chunks:
            publish_many(chunk)

    def fill(self, items: Sequence[Pair]) -> None:
        self.publish_batches(batches(items))

    def drain(self, max_records: int) -> int:
        poll = self.t.consumer().poll
        n = 0
        while records := poll(max_records):
            n += len(records)
        return n

    def first(self, n: int) -> list[tuple[int, int, str, bytes]]:
        return sorted((p, o, k, v) for p, o, (k, v) in self.t.consumer().poll(n))

    def count(self) -> int:
        return sum(map(len, self.t.partitions))


class SqliteTopic:
    """A durable topic in one SQLite table: rows (part, off, key, payload), primary
    key (part, off); WAL, synchronous=NORMAL (no fsync per commit, as fastq's
    sync="none" does none); the next offset of each partition kept in a Python list (read
    back with MAX(off) on open). publish: one INSERT, one commit. publish_many: one
    executemany, one commit. poll: per partition, a SELECT ... WHERE part = ? AND off >= ?
    ORDER BY off LIMIT ?, until max_records."""

    def __init__(self, path: str, partitions: int = PARTITIONS) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS records (part INTEGER, off INTEGER, key TEXT, "
            "payload BLOB, PRIMARY KEY (part, off)) WITHOUT ROWID"
        )
        self.n = partitions
        self.next = [0] * partitions
        for p, last in self.db.execute("SELECT part, MAX(off) FROM records GROUP BY part"):
            self.next[p] = last + 1
        self.hash = importlib.import_module("xxhash").xxh3_64_intdigest

    def publish(self, key: str, payload: bytes) -> tuple[int, int]:
        p = self.hash(key.encode()) % self.n
        offset = self.next[p]
        self.db.execute("INSERT INTO records VALUES (?, ?, ?, ?)", (p, offset, key, payload))
        self.next[p] = offset + 1
        return p, offset

    def publish_many(self, items: Sequence[Pair]) -> list[tuple[int, int]]:
        h, n, nxt = self.hash, self.n, self.next
        rows = []
        for key, payload in items:
            p = h(key.encode()) % n
            rows.append((p, nxt[p], key, payload))
            nxt[p] += 1
        with self.db:  # isolation_level=None: the context manager does not BEGIN by itself
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", rows)
        return [(p, o) for p, o, _, _ in rows]

    def poll_from(self, positions: list[int], max_records: int) -> list[tuple[int, int, Pair]]:
        out: list[tuple[int, int, Pair]] = []
        query = (
            "SELECT off, key, payload FROM records WHERE part = ? AND off >= ? ORDER BY off LIMIT ?"
        )
        for p in range(self.n):
            rows = self.db.execute(query, (p, positions[p], max_records - len(out))).fetchall()
            if rows:
                out += [(p, o, (k, v)) for o, k, v in rows]
                positions[p] = rows[-1][0] + 1
                if len(out) >= max_records:
                    break
        return out

    def close(self) -> None:
        self.db.close()


class SqlitePeer(TopicPeer):
    name = "sqlite3"
    dist = None
    caps = frozenset({"durable"})
    fast = False
    durable_mode = (
        "one SQLite table (part, off, key, payload), PK (part, off), WITHOUT ROWID, WAL, "
        "synchronous=NORMAL; publish: INSERT + commit; publish_many: executemany, one commit; "
        "poll: a SELECT ... LIMIT per partition from a position per partition"
    )

    def _open(self) -> None:
        assert self.directory is not None
        self.t = SqliteTopic(os.path.join(self.directory, "topic.db"))

    def publish_keyed(self, items: Sequence[Pair]) -> None:
        publish = self.t.publish
        for key, payload in items:
            publish(key, payload)

    publish_kwargs = publish_keyed

    def publish_batches(self, chunks: Sequence[list[Pair]]) -> None:
        publish_many = self.t.publish_many
        for chunk in chunks:
            publish_many(chunk)

    def fill(self, items: Sequence[Pair]) -> None:
        self.publish_batches(batches(items))

    def reopen(self) -> None:
        self.t.close()
        self._open()

    def drain(self, max_records: int) -> int:
        poll_from, positions = self.t.poll_from, [0] * PARTITIONS
        n = 0
        while records := poll_from(positions, max_records):
            n += len(records)
        return n

    def first(self, n: int) -> list[tuple[int, int, str, bytes]]:
        return sorted((p, o, k, v) for p, o, (k, v) in self.t.poll_from([0] * PARTITIONS, n))

    def count(self) -> int:
        (n,) = self.t.db.execute("SELECT COUNT(*) FROM records").fetchone()
        return int(n)

    def close(self) -> None:
        self.t.close()


#: every topic implementation, fastq first
TOPIC_REGISTRY: dict[str, type[TopicPeer]] = {
    cls.name: cls for cls in (FastqTopic, DictOfListsPeer, SqlitePeer)
}


def topic_supporting(*caps: str) -> list[str]:
    return [name for name, cls in TOPIC_REGISTRY.items() if set(caps) <= cls.caps]


def topic_info(peer_type: type[TopicPeer], durable: bool, messages: int) -> dict[str, Any]:
    """extra_info for a topic benchmark: what report.py's topic table is built from."""
    return {
        "table": "topic",
        "payload_bytes": PAYLOAD_BYTES,
        "bytes": PAYLOAD_BYTES * messages,
        "durable": durable,
        "partitions": PARTITIONS,
        "keys": TOPIC_KEYS,
        "mode": peer_type.mode(durable),
    }
