"""Adapters over fastq.Queue and the work queues with acknowledgements that users pick instead
(bench_queue.py), and the helpers its rounds share.

As in peers.py and log_peers.py, the benchmarks are written once against an adapter class
(:class:`WorkQueuePeer`); each subclass opens one queue of one implementation for one round,
in memory or in a fresh directory. The interface:

``put(payload)``          enqueue one message
``get() -> handle``       take one ready message without waiting (it is now leased/in flight)
``ack(handle)``           acknowledge it (it is never delivered again)
``put_many(payloads)``    the batch variants: the implementation's batch API, or its closest
``get_many(n)``           idiom (one SQLite transaction), or a plain loop of the single call
``ack_many(handles)``     when it has neither (each class says which)

The timed loops are each adapter's own (``single`` and ``batched``): the calls a user of that
library writes, with the methods bound to locals, so that no adapter layer (a wrapper frame,
a partial) is timed per message. The generic calls above serve the untimed round-trip check.
Nothing waits: every scenario puts before it gets, so a message is always ready, and an
implementation that lost one fails the round (Empty, or litequeue's None) instead of hanging.

Capabilities (``WorkQueuePeer.caps``): ``memory`` (an in-memory queue: ``directory`` is None)
and ``durable`` (a queue in files under ``directory``). Optional peers are imported lazily
(``importlib``, so mypy needs no stubs for them); :meth:`Implementation.missing` names what is
not installed, and the benchmark is skipped.
"""

from __future__ import annotations

import importlib
import itertools
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from log_peers import remove_dir
from peers import Implementation

import fastq

#: bytes per message payload
PAYLOAD_BYTES = 64
#: messages per put_many / get_many / ack_many in the batch scenarios
BATCH = 100
#: distinct payloads cycled through by a round
DISTINCT = 1_024
#: the lease length users give their own lease table (fastq.Queue's default
#: visibility_timeout); far longer than a round, so no lease expires inside one
VISIBILITY_TIMEOUT = 30.0


# ---- data -------------------------------------------------------------------------------


def payloads(n: int, size: int = PAYLOAD_BYTES) -> list[bytes]:
    """n payloads of `size` bytes: references to DISTINCT pseudo-random bytes objects, cycled."""
    blob = random.Random(size).randbytes(size * DISTINCT)
    distinct = [blob[k * size : (k + 1) * size] for k in range(DISTINCT)]
    return [distinct[k % DISTINCT] for k in range(n)]


def batches(items: Sequence[bytes], size: int = BATCH) -> list[list[bytes]]:
    """items in consecutive lists of `size` (the last one may be shorter)."""
    return [list(items[k : k + size]) for k in range(0, len(items), size)]


# ---- the lease table users write around queue.Queue ------------------------------------


class LeaseQueue:
    """A work queue with acknowledgements, written the way users write it on the stdlib.

    ``queue.Queue`` holds the ready messages; ``get`` takes one, gives it a lease id from an
    ``itertools.count`` and records ``(payload, deadline)`` in a dict under a
    ``threading.Lock`` (the dict is shared with the acking threads and with whatever re-queues
    expired leases); ``ack`` pops the lease. It returns ``(lease_id, payload)``.

    What it does *not* do, and fastq.Queue does: re-deliver a message whose lease expired (a
    user adds a reaper thread that scans the dict; nothing runs during a round here), count
    deliveries, dead-letter, reject a stale ack, bound its bytes. So it flatters itself.
    """

    def __init__(self, maxsize: int = 0, visibility_timeout: float = VISIBILITY_TIMEOUT) -> None:
        self._ready: queue.Queue[bytes] = queue.Queue(maxsize)
        self._leases: dict[int, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._timeout = visibility_timeout
        self.put = self._ready.put  # a message goes straight onto the queue

    def get(self) -> tuple[int, bytes]:
        payload = self._ready.get_nowait()
        lease = next(self._ids)
        with self._lock:
            self._leases[lease] = (payload, time.monotonic() + self._timeout)
        return lease, payload

    def ack(self, handle: tuple[int, bytes]) -> None:
        with self._lock:
            del self._leases[handle[0]]

    # queue.Queue has no batch API: the batch methods a user adds loop over it, and take the
    # lease lock once per batch.

    def put_many(self, items: Sequence[bytes]) -> None:
        put = self._ready.put
        for payload in items:
            put(payload)

    def get_many(self, n: int) -> list[tuple[int, bytes]]:
        get = self._ready.get_nowait
        taken: list[bytes] = []
        try:
            for _ in range(n):
                taken.append(get())
        except queue.Empty:
            if not taken:
                raise
        ids = self._ids
        handles = [(next(ids), payload) for payload in taken]
        deadline = time.monotonic() + self._timeout
        with self._lock:
            leases = self._leases
            for lease, payload in handles:
                leases[lease] = (payload, deadline)
        return handles

    def ack_many(self, handles: Sequence[tuple[int, bytes]]) -> None:
        with self._lock:
            leases = self._leases
            for lease, _ in handles:
                del leases[lease]

    def counts(self) -> tuple[int, int, int]:
        """(ready, in flight, leases handed out so far): the round's check (consumes an id)."""
        with self._lock:
            return self._ready.qsize(), len(self._leases), next(self._ids)


# ---- adapters ---------------------------------------------------------------------------


class WorkQueuePeer(Implementation):
    """One queue of one implementation, for one benchmark round."""

    caps: ClassVar[frozenset[str]] = frozenset()
    #: True: fast enough for --bench-queue-items per round; False: --bench-queue-slow-items
    fast: ClassVar[bool] = False
    #: True (durable scenarios only): every acknowledged put/ack is fsynced before it returns
    fsynced: ClassVar[bool] = False
    #: how the queue is configured in memory and on disk, for the README and the JSON
    memory_mode: ClassVar[str] = ""
    durable_mode: ClassVar[str] = ""

    put: Callable[[bytes], object]
    get: Callable[[], Any]
    ack: Callable[[Any], object]

    def __init__(self, directory: str | None) -> None:
        """A fresh queue: in memory (directory None) or in `directory` (created, empty)."""
        self.directory = directory
        self._open()

    @classmethod
    def mode(cls, durable: bool) -> str:
        return cls.durable_mode if durable else cls.memory_mode

    @classmethod
    def unsupported(cls, durable: bool) -> str | None:
        """Why this implementation cannot run in that mode here (None if it can)."""
        return None

    def _open(self) -> None:
        raise NotImplementedError

    def single(self, items: Sequence[bytes]) -> None:
        """The timed loop of the *_single scenarios: per message, put it, get it, ack it."""
        put, get, ack = self.put, self.get, self.ack
        for payload in items:
            put(payload)
            ack(get())

    def batched(self, chunks: Sequence[list[bytes]]) -> None:
        """The timed loop of the *_batch scenarios: per batch, put_many, get_many, ack_many."""
        put_many, get_many, ack_many = self.put_many, self.get_many, self.ack_many
        for chunk in chunks:
            put_many(chunk)
            ack_many(get_many(len(chunk)))

    # Without a batch API: a loop of the single call (what the user of that library writes).

    def put_many(self, items: Sequence[bytes]) -> object:
        put = self.put
        for payload in items:
            put(payload)
        return None

    def get_many(self, n: int) -> list[Any]:
        get = self.get
        return [get() for _ in range(n)]

    def ack_many(self, handles: Sequence[Any]) -> object:
        ack = self.ack
        for handle in handles:
            ack(handle)
        return None

    def payload(self, handle: Any) -> bytes:
        """The message a handle delivered (the untimed round-trip check)."""
        raise NotImplementedError

    def check_drained(self, messages: int, what: str) -> None:
        """Teardown check: `messages` were delivered and acknowledged; none is ready or in
        flight. Raises AssertionError otherwise."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the queue (teardown; untimed)."""

    def dispose(self) -> None:
        """close(), then delete the round's directory (if any)."""
        try:
            self.close()
        finally:
            if self.directory is not None:
                remove_dir(self.directory)


def _expect(what: str, got: Any, expected: Any, name: str) -> None:
    if got != expected:
        raise AssertionError(f"{what}: {name} is {got!r}, expected {expected!r}")


class FastqWorkQueue(WorkQueuePeer):
    name = "fastq"
    dist = "fastq-queue"
    caps = frozenset({"memory", "durable"})
    fast = True
    memory_mode = (
        'Queue("bench") (defaults: maxsize 10,000, visibility_timeout 30 s); '
        "q.get(timeout=0), d.ack(); batches: put_many, get_many(100, timeout=0), ack_many(ds)"
    )
    durable_mode = 'Queue("bench", path=dir) (defaults: sync="none"); calls as in memory'

    @classmethod
    def missing(cls) -> str | None:
        if not hasattr(fastq, "Queue"):
            return "this fastq build has no fastq.Queue yet"
        return None

    @classmethod
    def unsupported(cls, durable: bool) -> str | None:
        if durable and not _fastq_durable():
            return "this fastq build has no durable fastq.Queue (path=) yet"
        return None

    def _open(self) -> None:
        self.q = fastq.Queue("bench", path=self.directory)
        q = self.q
        self.put = q.put
        self.put_many = q.put_many  # type: ignore[method-assign,assignment]
        self.get = lambda: q.get(timeout=0)  # the round-trip check only
        self.ack = fastq.Delivery.ack

    def single(self, items: Sequence[bytes]) -> None:
        put, get = self.q.put, self.q.get
        for payload in items:
            put(payload)
            get(timeout=0).ack()

    def batched(self, chunks: Sequence[list[bytes]]) -> None:
        # ack_many takes the deliveries themselves (or their receipts: the same work, and
        # [d.receipt for d in ds] would cost the caller one more list per batch)
        put_many, get_many, ack_many = self.q.put_many, self.q.get_many, self.q.ack_many
        for chunk in chunks:
            put_many(chunk)
            ack_many(get_many(len(chunk), timeout=0))

    def get_many(self, n: int) -> list[Any]:
        return self.q.get_many(n, timeout=0)

    def ack_many(self, handles: Sequence[Any]) -> object:
        self.q.ack_many([d.receipt for d in handles])
        return None

    def payload(self, handle: Any) -> bytes:
        return bytes(handle.message.payload)

    def check_drained(self, messages: int, what: str) -> None:
        stats = self.q.statistics()
        _expect(what, stats.ready + stats.delayed, 0, "ready messages")
        _expect(what, stats.in_flight, 0, "messages in flight")
        _expect(what, stats.put_total, messages, "messages put")
        _expect(what, stats.acked_total, messages, "messages acked")
        _expect(what, stats.redelivered_total, 0, "redeliveries")

    def close(self) -> None:
        self.q.close()


_DURABLE: list[bool] = []


def _fastq_durable() -> bool:
    """Whether this build has fastq.Queue(path=...) (probed once, in a scratch dir). Only
    NotImplementedError means no: any other error is left for the benchmark to report."""
    if not _DURABLE:
        import tempfile

        directory = tempfile.mkdtemp(prefix="fastq-bench-probe-")
        try:
            fastq.Queue("probe", path=directory).close()
            _DURABLE.append(True)
        except NotImplementedError:
            _DURABLE.append(False)
        except Exception:
            _DURABLE.append(True)  # it exists, and fails: the benchmark's setup shows how
        finally:
            remove_dir(directory)
    return _DURABLE[0]


class LeaseQueuePeer(WorkQueuePeer):
    name = "Queue+leases"
    caps = frozenset({"memory"})
    fast = True
    memory_mode = (
        "queue.Queue() + a dict lease id -> (payload, deadline) under a threading.Lock, "
        "ids from itertools.count; get_nowait; batches: loops, one lock per batch"
    )

    def _open(self) -> None:
        self.lq = LeaseQueue()
        self.put = self.lq.put
        self.get = self.lq.get
        self.ack = self.lq.ack
        self.put_many = self.lq.put_many  # type: ignore[method-assign]
        self.get_many = self.lq.get_many  # type: ignore[method-assign]
        self.ack_many = self.lq.ack_many  # type: ignore[method-assign]

    def single(self, items: Sequence[bytes]) -> None:
        put, get, ack = self.lq.put, self.lq.get, self.lq.ack
        for payload in items:
            put(payload)
            ack(get())

    def batched(self, chunks: Sequence[list[bytes]]) -> None:
        put_many, get_many, ack_many = self.lq.put_many, self.lq.get_many, self.lq.ack_many
        for chunk in chunks:
            put_many(chunk)
            ack_many(get_many(len(chunk)))

    def payload(self, handle: Any) -> bytes:
        return bytes(handle[1])

    def check_drained(self, messages: int, what: str) -> None:
        ready, in_flight, handed_out = self.lq.counts()
        _expect(what, ready, 0, "ready messages")
        _expect(what, in_flight, 0, "leases in flight")
        _expect(what, handed_out, messages, "leases handed out")


class PersistAckQueuePeer(WorkQueuePeer):
    """persist-queue's SQLiteAckQueue. auto_commit cannot be turned off for it (it warns and
    forces True): put, get (a SELECT, then an UPDATE of the row's status) and ack (an UPDATE)
    each commit. It has no batch API, so batches are loops. Acked rows stay in the table
    (status 5) unless clear_acked_data() is called, which its README does not mention, and
    every get scans past them: the rate falls with the number of messages the queue has seen.
    """

    name = "persist-queue"
    dist = "persist-queue"
    module = "persistqueue"
    caps = frozenset({"memory", "durable"})
    #: PRAGMA synchronous to set on its connections (None: SQLite's default, FULL)
    synchronous: ClassVar[str | None] = None
    fsynced = True
    memory_mode = (
        'SQLiteAckQueue(":memory:", multithreading=True); get(block=False, raw=True), '
        "ack(raw dict); batches: loops (no batch API)"
    )
    durable_mode = (
        "SQLiteAckQueue(dir, multithreading=True) (WAL, SQLite's default synchronous=FULL: "
        "put, get and ack each commit and fsync); batches: loops"
    )

    def _open(self) -> None:
        persistqueue: Any = importlib.import_module("persistqueue")
        # multithreading=True: what its README tells users of several threads to set (a work
        # queue's producers and consumers are); on disk, a second connection for puts
        self.q: Any = persistqueue.SQLiteAckQueue(
            ":memory:" if self.directory is None else self.directory, multithreading=True
        )
        if self.synchronous is not None:
            for conn in {self.q._getter, self.q._putter}:
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
        q = self.q
        self.get = lambda: q.get(block=False, raw=True)  # the round-trip check only
        self.put = q.put
        self.ack = q.ack

    def single(self, items: Sequence[bytes]) -> None:
        # raw=True: a dict with the row id (pqid), which ack() takes directly; ack(payload)
        # would search the unacked payloads by identity
        put, get, ack = self.q.put, self.q.get, self.q.ack
        for payload in items:
            put(payload)
            ack(get(block=False, raw=True))

    def batched(self, chunks: Sequence[list[bytes]]) -> None:
        # no batch API: loops of the single calls (each one a commit)
        put, get, ack = self.q.put, self.q.get, self.q.ack
        for chunk in chunks:
            for payload in chunk:
                put(payload)
            handles = [get(block=False, raw=True) for _ in range(len(chunk))]
            for handle in handles:
                ack(handle)

    def payload(self, handle: Any) -> bytes:
        return bytes(handle["data"])

    def check_drained(self, messages: int, what: str) -> None:
        _expect(what, self.q.qsize(), 0, "ready messages")
        _expect(what, self.q.unack_count(), 0, "unacked messages")
        _expect(what, self.q.acked_count(), messages, "acked messages")

    def close(self) -> None:
        self.q.close()


class PersistAckQueueNormalPeer(PersistAckQueuePeer):
    name = "persist-queue NORMAL"
    caps = frozenset({"durable"})
    synchronous = "NORMAL"
    fsynced = False
    durable_mode = (
        "the same with PRAGMA synchronous=NORMAL on both connections (no fsync per commit in "
        "WAL mode, as litequeue): the like-for-like row"
    )


class LiteQueuePeer(WorkQueuePeer):
    """litequeue's LiteQueue: put, pop (an UPDATE ... RETURNING in its own IMMEDIATE
    transaction), done(message_id). Batches: put_many and ack_many are one transaction each
    (its transaction() context manager), get_many a loop of pop (pop opens its own
    transaction, which cannot nest). Done messages stay in the table (prune() deletes them)."""

    name = "litequeue"
    dist = "litequeue"
    module = "litequeue"
    caps = frozenset({"memory", "durable"})
    memory_mode = (
        'LiteQueue(":memory:"); pop, done(message_id); batches: put and done loops in one '
        "transaction each, pop per message"
    )
    durable_mode = (
        "LiteQueue(file) (defaults: WAL, synchronous=NORMAL, autocommit: one commit per put, "
        "pop and done); batches: as in memory"
    )

    def _open(self) -> None:
        litequeue: Any = importlib.import_module("litequeue")
        if self.directory is None:
            self.q: Any = litequeue.LiteQueue(":memory:")
        else:
            self.q = litequeue.LiteQueue(f"{self.directory}/q.db")
        q = self.q
        self.put = q.put
        self.get = q.pop  # the round-trip check only (None when empty: it fails there)
        self.ack = lambda message: q.done(message.message_id)

    def single(self, items: Sequence[bytes]) -> None:
        # pop() returns None when nothing is ready: a lost message fails the round here
        put, pop, done = self.q.put, self.q.pop, self.q.done
        for payload in items:
            put(payload)
            done(pop().message_id)

    def batched(self, chunks: Sequence[list[bytes]]) -> None:
        put_many, pop, ack_many = self.put_many, self.q.pop, self.ack_many
        for chunk in chunks:
            put_many(chunk)
            ack_many([pop() for _ in range(len(chunk))])

    def put_many(self, items: Sequence[bytes]) -> object:
        put = self.q.put
        with self.q.transaction(mode="IMMEDIATE"):
            for payload in items:
                put(payload)
        return None

    def ack_many(self, handles: Sequence[Any]) -> object:
        done = self.q.done
        with self.q.transaction(mode="IMMEDIATE"):
            for message in handles:
                done(message.message_id)
        return None

    def payload(self, handle: Any) -> bytes:
        return bytes(handle.data)

    def check_drained(self, messages: int, what: str) -> None:
        rows = dict(
            self.q.conn.execute(
                f"SELECT status, COUNT(*) FROM {self.q.table} GROUP BY status"
            ).fetchall()
        )
        done = int(importlib.import_module("litequeue").MessageStatus.DONE)
        _expect(what, rows, {done: messages} if messages else {}, "messages by status")

    def close(self) -> None:
        self.q.close()


#: every work queue, fastq first
QUEUE_REGISTRY: dict[str, type[WorkQueuePeer]] = {
    cls.name: cls
    for cls in (
        FastqWorkQueue,
        LeaseQueuePeer,
        PersistAckQueuePeer,
        PersistAckQueueNormalPeer,
        LiteQueuePeer,
    )
}


def queue_supporting(*caps: str) -> list[str]:
    """Names of the work queues with every capability in caps (installed or not)."""
    return [name for name, cls in QUEUE_REGISTRY.items() if set(caps) <= cls.caps]


# ---- timed loops and round helpers (bench_queue.py) ---------------------------------------


def check_round_trip(peer: WorkQueuePeer, items: Sequence[bytes], what: str) -> None:
    """Untimed, once per benchmark, on a queue of its own: the adapter delivers the payloads
    put, in order, through the single calls and the batch calls, and acks them all."""
    single, batch = list(items[:3]), list(items[3 : 3 + 5])
    got: list[bytes] = []
    for payload in single:
        peer.put(payload)
        handle = peer.get()
        got.append(peer.payload(handle))
        peer.ack(handle)
    peer.put_many(batch)
    handles = peer.get_many(len(batch))
    got.extend(peer.payload(h) for h in handles)
    peer.ack_many(handles)
    if got != single + batch:
        raise AssertionError(f"{what}: delivered {got!r}, expected {single + batch!r}")
    peer.check_drained(len(got), what)


def queue_info(peer_type: type[WorkQueuePeer], durable: bool, messages: int) -> dict[str, Any]:
    """extra_info for a work-queue benchmark: what report.py's work-queue table is built from."""
    return {
        "table": "queue",
        "payload_bytes": PAYLOAD_BYTES,
        "bytes": PAYLOAD_BYTES * messages,
        "durable": durable,
        "fsynced": durable and peer_type.fsynced,
        "mode": peer_type.mode(durable),
    }


def check_and_dispose(peer: WorkQueuePeer, messages: int, what: str) -> None:
    try:
        peer.check_drained(messages, what)
    finally:
        peer.dispose()
