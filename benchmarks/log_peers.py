"""Adapters over fastq.SegmentLog and the on-disk queues it is compared with (bench_log_*.py).

As in peers.py, the benchmarks are written once against :class:`LogPeer`; each subclass opens
one store of one implementation in a fresh directory for one round and binds that store's own
methods as attributes (``peer.append is log.append``), so the timed loops call the real methods
and pay nothing for the adapter per record.

Every store is judged in its *default* configuration and, where it has one, its *durable*
configuration (each acknowledged append survives power loss). The class says which
(``durable``) and how it is configured (``mode``, printed in the README).

Capabilities (``LogPeer.caps``):

``append``   one record per call (``append``)
``many``     the store's batch idiom (``append_many``): fastq's own call, one SQLite
             transaction per batch for litequeue and diskcache, a plain loop for queuelib
``read``     drain: take `n` records through the consumer API, touching each one
``threads``  several threads append at once, each through ``connect()``

Optional peers are imported lazily (``importlib``, so their missing stubs do not matter to
mypy); :meth:`LogPeer.missing` names what is not installed and the benchmark is skipped.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import mmap
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from peers import Implementation

import fastq

#: the record sizes the log benchmarks use (test ids and scenario names use the keys)
RECORD_SIZES: dict[str, int] = {"100B": 100, "1KiB": 1024}
#: records per append_many batch (and per read() call)
BATCH = 1_000
#: records per append_many batch in the group-commit scenario
COMMIT_BATCH = 100
#: distinct records cycled through by the per-record scenarios
DISTINCT = 1_024


# ---- data -------------------------------------------------------------------------------


def random_bytes(n: int, seed: int) -> bytes:
    """n reproducible pseudo-random bytes (incompressible, so no store gets a free ride)."""
    return random.Random(seed).randbytes(n)


def cycled_records(size: int, n: int) -> list[bytes]:
    """n records of `size` bytes: references to DISTINCT different records, cycled."""
    blob = random_bytes(size * DISTINCT, seed=size)
    distinct = [blob[k * size : (k + 1) * size] for k in range(DISTINCT)]
    return [distinct[k % DISTINCT] for k in range(n)]


def split_records(blob: bytes, size: int) -> list[bytes]:
    """blob cut into records of `size` bytes (each a distinct bytes object)."""
    return [blob[k : k + size] for k in range(0, len(blob), size)]


def batches(records: Any, size: int = BATCH) -> list[Any]:
    """records (a list, or a 2-D array) in consecutive slices of `size` (lists stay lists,
    arrays become row views: no copy)."""
    return [records[k : k + size] for k in range(0, len(records), size)]


# ---- directories ------------------------------------------------------------------------


def new_dir(base: str, prefix: str = "round-") -> str:
    """A fresh empty directory under `base` (one per store per round)."""
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def remove_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ---- adapters ---------------------------------------------------------------------------


class LogPeer(Implementation):
    """One store of one implementation in its own directory, for one benchmark round."""

    caps: ClassVar[frozenset[str]] = frozenset()
    #: True: every acknowledged append survives power loss (one fsync or more per append)
    durable: ClassVar[bool] = False
    #: True: fast enough for the full record counts (log_items); False: log_slow_items
    fast: ClassVar[bool] = False
    #: how the store is configured, for the README and the JSON
    mode: ClassVar[str] = ""

    append: Callable[[bytes], object]

    def __init__(self, directory: str, *, record_size: int, capacity: int = 0) -> None:
        """Open a fresh store in `directory` (already created, empty). capacity: the bytes a
        round will write (only the preallocated floors use it)."""
        self.directory = directory
        self.record_size = record_size
        self.capacity = capacity
        self._open()

    def _open(self) -> None:
        raise NotImplementedError

    def append_many(self, batch: Sequence[bytes]) -> object:
        """The store's batch idiom; without one, a loop of append."""
        append = self.append
        for value in batch:
            append(value)
        return None

    def count(self) -> int:
        """Records the store holds now (the round's item check; may do I/O)."""
        raise NotImplementedError

    def fill(self, records: Sequence[bytes]) -> None:
        """Put records in before a read round (untimed: the fastest idiom the store has)."""
        self.append_many(records)

    def drain(self, n: int) -> int:
        """Take up to n records through the consumer API, touching each; returns how many."""
        raise NotImplementedError

    def connect(self) -> LogPeer:
        """A handle for another appending thread (the same object unless it needs its own)."""
        return self

    def close(self) -> None:
        """Release the store (teardown; untimed)."""

    def dispose(self) -> None:
        """close(), then delete the round's directory."""
        try:
            self.close()
        finally:
            remove_dir(self.directory)


class FastqLog(LogPeer):
    name = "fastq"
    dist = "fastq-queue"
    caps = frozenset({"append", "many", "read", "threads"})
    fast = True
    sync: ClassVar[str] = "none"
    mode = 'SegmentLog(dir, sync="none"), 64 MiB segments (the defaults)'

    def _open(self) -> None:
        self.log = fastq.SegmentLog(self.directory, sync=self.sync)
        self.append = self.log.append
        self.append_many = self.log.append_many  # type: ignore[method-assign,assignment]

    def count(self) -> int:
        return self.log.end_offset

    def drain(self, n: int) -> int:
        read = self.log.read
        offset = self.log.start_offset
        got = 0
        while got < n:
            records = read(offset, min(BATCH, n - got))
            if not records:
                break
            for r in records:
                len(r)
            got += len(records)
            offset = records[-1].offset + 1
        return got

    def sync_counters(self) -> tuple[int, int]:
        """(fsyncs, records_durable) so far."""
        stats = self.log.statistics()
        return int(stats["fsyncs"]), int(stats["records_durable"])

    def close(self) -> None:
        self.log.close()


class FastqIntervalLog(FastqLog):
    name = "fastq interval:100"
    sync = "interval:100"
    mode = 'SegmentLog(dir, sync="interval:100"): a background thread syncs every 100 ms'


class FastqAlwaysLog(FastqLog):
    name = "fastq always"
    sync = "always"
    durable = True
    fast = False
    mode = 'SegmentLog(dir, sync="always"): append returns once durable (group commit)'


class MmapWrite(LogPeer):
    """The raw floor: records written back to back into a preallocated shared mmap."""

    name = "mmap.write"
    caps = frozenset({"append"})
    fast = True
    mode = (
        "mmap.write(record) per record into a fresh posix_fallocate'd file mapped MAP_SHARED; "
        "no header, CRC, index or sync"
    )

    def _open(self) -> None:
        path = os.path.join(self.directory, "floor.bin")
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        size = max(self.capacity, mmap.PAGESIZE)
        fallocate = getattr(os, "posix_fallocate", None)
        if fallocate is not None:
            fallocate(self.fd, 0, size)  # held space, like fastq's preallocated segments
        else:  # pragma: no cover - macOS
            os.ftruncate(self.fd, size)
        self.mm = mmap.mmap(self.fd, size)
        self.append = self.mm.write
        self.write_all = self.mm.write

    def count(self) -> int:
        written = self.mm.tell()
        return written // self.record_size if written % self.record_size == 0 else -1

    def close(self) -> None:
        self.mm.close()
        os.close(self.fd)


class MemcpyFloor(MmapWrite):
    """First-touch write bandwidth: all of a round's bytes in one mm.write (one memcpy)."""

    name = "memcpy"
    caps = frozenset({"memcpy"})
    mode = (
        "one mm.write(buffer) of all the round's bytes (one memcpy) into a fresh "
        "posix_fallocate'd file mapped MAP_SHARED: first touch of every page"
    )


class QueuelibPeer(LogPeer):
    name = "queuelib"
    dist = "queuelib"
    module = "queuelib"
    caps = frozenset({"append", "many", "read"})
    fast = True
    mode = "FifoDiskQueue(dir): one os.write per push, never fsyncs (no durable mode)"

    def _open(self) -> None:
        queuelib: Any = importlib.import_module("queuelib")
        self.q: Any = queuelib.FifoDiskQueue(os.path.join(self.directory, "q"))
        self.append = self.q.push

    def count(self) -> int:
        return len(self.q)

    def drain(self, n: int) -> int:
        pop = self.q.pop
        got = 0
        for _ in range(n):
            value = pop()
            if value is None:
                break
            len(value)
            got += 1
        return got

    def close(self) -> None:
        self.q.close()


class PersistQueuePeer(LogPeer):
    name = "persist-queue"
    dist = "persist-queue"
    module = "persistqueue"
    caps = frozenset({"append", "read"})
    mode = (
        "persistqueue.Queue(dir) (file queue, defaults): pickles each item, flushes, and "
        "rewrites its info file (tempfile + rename) per put; fsyncs only when a 100-item "
        "chunk fills. autosave only concerns get(); put has no durable option"
    )

    def _open(self) -> None:
        persistqueue: Any = importlib.import_module("persistqueue")
        # tempdir inside the round's directory: its info-file renames stay on one filesystem
        self.q: Any = persistqueue.Queue(os.path.join(self.directory, "q"), tempdir=self.directory)
        self.append = self.q.put

    def count(self) -> int:
        return int(self.q.qsize())

    def drain(self, n: int) -> int:
        get = self.q.get
        got = 0
        for _ in range(min(n, self.q.qsize())):
            len(get(block=False))
            got += 1
        return got

    def close(self) -> None:
        self.q.headf.close()
        self.q.tailf.close()


class PersistSQLitePeer(LogPeer):
    name = "persist-queue SQLite"
    dist = "persist-queue"
    module = "persistqueue"
    caps = frozenset({"append"})
    durable = True
    mode = (
        "persistqueue.SQLiteQueue(dir) (defaults): auto_commit=True (one commit per put), WAL, "
        "SQLite's default synchronous=FULL: durable by default"
    )

    def _open(self) -> None:
        persistqueue: Any = importlib.import_module("persistqueue")
        self.q: Any = persistqueue.SQLiteQueue(self.directory, auto_commit=True)
        self.append = self.q.put

    def count(self) -> int:
        return int(self.q.qsize())

    def close(self) -> None:
        self.q.close()


class LiteQueuePeer(LogPeer):
    name = "litequeue"
    dist = "litequeue"
    module = "litequeue"
    caps = frozenset({"append", "many", "read", "threads"})
    #: PRAGMA synchronous to set on every connection (None: litequeue's own, NORMAL)
    synchronous: ClassVar[str | None] = None
    mode = (
        "LiteQueue(file) (defaults: WAL, synchronous=NORMAL), one autocommit per put; "
        "batches: one transaction per batch"
    )

    def _open(self) -> None:
        self._connect()
        self.handles: list[LiteQueuePeer] = []

    def _connect(self) -> None:
        litequeue: Any = importlib.import_module("litequeue")
        # timeout: how long a connection waits for the write lock (8 writers in one file)
        self.q: Any = litequeue.LiteQueue(os.path.join(self.directory, "q.db"), timeout=120)
        if self.synchronous is not None:
            self.q.conn.execute(f"PRAGMA synchronous={self.synchronous}")
        self.append = self.q.put

    def append_many(self, batch: Sequence[bytes]) -> object:
        put = self.q.put
        with self.q.transaction(mode="IMMEDIATE"):
            for value in batch:
                put(value)
        return None

    def count(self) -> int:
        """Records still to be taken (qsize() also counts the popped, locked ones)."""
        ready = self.q.conn.execute(f"SELECT COUNT(*) FROM {self.q.table} WHERE status = 0")
        return int(ready.fetchone()[0])

    def drain(self, n: int) -> int:
        pop = self.q.pop
        got = 0
        for _ in range(n):
            message = pop()
            if message is None:
                break
            len(message.data)
            got += 1
        return got

    def connect(self) -> LogPeer:
        """Its own connection to the same database file (SQLite connections are per thread)."""
        peer = type(self).__new__(type(self))
        peer.directory, peer.record_size, peer.capacity = (
            self.directory,
            self.record_size,
            self.capacity,
        )
        peer._connect()
        peer.handles = []
        self.handles.append(peer)
        return peer

    def close(self) -> None:
        for handle in self.handles:
            handle.q.close()
        self.q.close()


class LiteQueueFullPeer(LiteQueuePeer):
    name = "litequeue FULL"
    durable = True
    synchronous = "FULL"
    mode = (
        "LiteQueue(file) + PRAGMA synchronous=FULL on each connection (WAL): each commit is "
        "fsynced; batches: one transaction per batch"
    )


class DiskcachePeer(LogPeer):
    name = "diskcache"
    dist = "diskcache"
    module = "diskcache"
    caps = frozenset({"append", "many", "read"})
    #: diskcache's sqlite_synchronous setting (None: its default, 1 = NORMAL)
    sqlite_synchronous: ClassVar[int | None] = None
    mode = (
        "diskcache.Deque(directory=dir) (defaults: WAL, synchronous=NORMAL); batches: "
        "extend() inside deque.transact()"
    )

    def _open(self) -> None:
        diskcache: Any = importlib.import_module("diskcache")
        if self.sqlite_synchronous is None:
            self.dq: Any = diskcache.Deque(directory=self.directory)
        else:  # Deque's own cache, with one setting changed
            cache = diskcache.Cache(
                self.directory,
                eviction_policy="none",
                sqlite_synchronous=self.sqlite_synchronous,
            )
            self.dq = diskcache.Deque.fromcache(cache)
        self.append = self.dq.append

    def append_many(self, batch: Sequence[bytes]) -> object:
        with self.dq.transact():
            self.dq.extend(batch)
        return None

    def count(self) -> int:
        return len(self.dq)

    def drain(self, n: int) -> int:
        popleft = self.dq.popleft
        got = 0
        try:
            for _ in range(n):
                len(popleft())
                got += 1
        except IndexError:
            pass
        return got

    def close(self) -> None:
        self.dq.cache.close()


class DiskcacheFullPeer(DiskcachePeer):
    name = "diskcache FULL"
    durable = True
    sqlite_synchronous = 2
    mode = (
        "diskcache.Deque on Cache(dir, eviction_policy='none', sqlite_synchronous=2): FULL, "
        "each commit fsynced; batches: extend() inside deque.transact()"
    )


#: every log store, fastq first
LOG_REGISTRY: dict[str, type[LogPeer]] = {
    cls.name: cls
    for cls in (
        FastqLog,
        FastqIntervalLog,
        FastqAlwaysLog,
        MmapWrite,
        MemcpyFloor,
        QueuelibPeer,
        PersistQueuePeer,
        PersistSQLitePeer,
        LiteQueuePeer,
        LiteQueueFullPeer,
        DiskcachePeer,
        DiskcacheFullPeer,
    )
}


def append_each(records: Sequence[bytes]) -> Callable[[LogPeer], None]:
    """The timed loop of the one-record-per-call scenarios."""

    def run(peer: LogPeer) -> None:
        append = peer.append
        for value in records:
            append(value)

    return run


def append_batches(chunks: Sequence[Any]) -> Callable[[LogPeer], None]:
    """The timed loop of the batch scenarios: one append_many per chunk."""

    def run(peer: LogPeer) -> None:
        append_many = peer.append_many
        for chunk in chunks:
            append_many(chunk)

    return run


def log_supporting(*caps: str, durable: bool | None = None) -> list[str]:
    """Names of the stores with every capability in caps (and the given durability)."""
    return [
        name
        for name, cls in LOG_REGISTRY.items()
        if set(caps) <= cls.caps and (durable is None or cls.durable == durable)
    ]


# ---- round helpers (shared by bench_log_*.py) ------------------------------------------


def log_info(store_type: type[LogPeer], record_size: int, records: int) -> dict[str, Any]:
    """extra_info for a log benchmark: what report.py's SegmentLog table is built from."""
    return {
        "table": "log",
        "record_size": record_size,
        "bytes": record_size * records,
        "durable": store_type.durable,
        "mode": store_type.mode,
    }


def check_stored(peer: LogPeer, expected: int, what: str) -> None:
    """Teardown check: the store holds exactly the records the round appended."""
    got = peer.count()
    if got != expected:
        raise AssertionError(f"{what}: the store holds {got} records, expected {expected}")


def check_and_dispose(peer: LogPeer, expected: int, what: str) -> None:
    try:
        check_stored(peer, expected, what)
    finally:
        peer.dispose()
