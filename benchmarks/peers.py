"""One adapter interface over fastq.RingBuffer and the queues it is compared with.

Every benchmark is written once against :class:`Peer`; each subclass maps that interface onto
one implementation. Adapters bind the implementation's own methods as instance attributes
(``peer.put is ring.put``), so the measured loops call the real methods directly and pay no
adapter overhead per item. Only the end-of-stream handling differs per peer, in the
``consume*`` loops: fastq ends with ``close()`` (consumers stop on ``fastq.Closed``), the
others with a ``None`` sentinel per consumer, each in its own idiom.

Optional peers (janus, faster-fifo) are imported lazily; :meth:`Peer.missing` names what is
not installed so the benchmark can be skipped instead of failing.

Capabilities (``Peer.caps``) decide which scenarios a peer takes part in:

``nowait``   put_nowait/get_nowait (deque: append/popleft)
``block``    put/get with default arguments, single thread
``batch``    put_many/get_many in one thread (native, or the peer's closest idiom)
``threads``  put/get across threads, with a way to end the stream
``aloop``    aput/aget inside one event loop
``feed``     a plain thread puts, a coroutine gets

The *_many thread and coroutine scenarios run every peer with ``threads`` (or ``feed``):
a peer with a batch API overrides ``produce_many``/``consume_many``/``aconsume_many``; the
others keep the per-item defaults, which is what their users would write.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import importlib
import importlib.metadata
import queue
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import fastq

#: the end-of-stream marker for peers without close(); benchmark items are ints, never None
STOP = None


class Implementation:
    """What every benchmarked implementation declares: its name, distribution and module."""

    name: ClassVar[str]
    #: distribution whose version the report prints (None: the standard library)
    dist: ClassVar[str | None] = None
    #: module that must import for the implementation to be available
    module: ClassVar[str | None] = None

    @classmethod
    def missing(cls) -> str | None:
        """Why this implementation cannot run here (None if it can)."""
        if cls.module is None:
            return None
        try:
            importlib.import_module(cls.module)
        except ImportError as exc:
            return f"{cls.name} is not installed ({exc})"
        return None

    @classmethod
    def version(cls) -> str:
        if cls.dist is None:
            return "stdlib"
        try:
            return importlib.metadata.version(cls.dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"


class Peer(Implementation):
    """Adapter base: one queue instance of one implementation, for one benchmark round."""

    caps: ClassVar[frozenset[str]] = frozenset()
    #: one line on how this peer is used, for the report and README
    note: ClassVar[str] = ""

    # Bound methods of the real queue, set by each subclass's _open() where supported.
    put: Callable[[Any], object]
    get: Callable[[], Any]
    put_nowait: Callable[[Any], object]
    get_nowait: Callable[[], Any]
    # thread-side put for the thread -> coroutine scenarios
    tput: Callable[[Any], object]

    def __init__(
        self, capacity: int, loop: asyncio.AbstractEventLoop | None = None, feed: bool = False
    ) -> None:
        """A fresh queue for one round. loop: the event loop of an asyncio scenario;
        feed: a plain thread will put (tput) while coroutines in loop get."""
        self.capacity = capacity
        self.loop = loop
        self.feed = feed
        self._open()

    def _open(self) -> None:
        """Create the queue and bind its methods (each subclass)."""
        raise NotImplementedError

    # ---- single thread batches -------------------------------------------------------------

    def put_many(self, items: list[Any]) -> object:
        put = self.put_nowait
        for x in items:
            put(x)
        return None

    def get_many(self, max_items: int) -> list[Any]:
        """Up to max_items items that are there now (single-thread use)."""
        get = self.get_nowait
        return [get() for _ in range(min(max_items, self.qsize()))]

    def qsize(self) -> int:
        raise NotImplementedError

    # ---- threads: end of stream ------------------------------------------------------------

    def finish(self, consumers: int) -> None:
        """Producers are done: make each of `consumers` blocked consumers stop."""
        for _ in range(consumers):
            self.put(STOP)

    def consume(self) -> int:
        """Blocking get() until the end of the stream; returns the number of items."""
        get = self.get
        n = 0
        while get() is not STOP:
            n += 1
        return n

    def produce_many(self, chunks: Iterable[list[Any]]) -> None:
        """Producer side of the *_many thread scenarios (per item unless overridden)."""
        put = self.put
        for chunk in chunks:
            for x in chunk:
                put(x)

    def consume_many(self, max_items: int) -> int:
        """Consumer side of the *_many thread scenarios (per item unless overridden)."""
        return self.consume()

    # ---- asyncio ---------------------------------------------------------------------------

    async def aput(self, item: Any) -> None:
        raise NotImplementedError

    async def aget(self) -> Any:
        raise NotImplementedError

    async def afinish(self) -> None:
        await self.aput(STOP)

    async def aconsume(self) -> int:
        aget = self.aget
        n = 0
        while (await aget()) is not STOP:
            n += 1
        return n

    async def aconsume_many(self, max_items: int) -> int:
        return await self.aconsume()

    def tfinish(self) -> None:
        """End of stream, from the producer thread of the thread -> coroutine scenarios."""
        self.tput(STOP)

    # ---- cleanup ---------------------------------------------------------------------------

    def dispose(self) -> None:
        """Release what the round created (called from teardown, outside the timing)."""


class FastqPeer(Peer):
    name = "fastq"
    dist = "fastq-queue"
    caps = frozenset({"nowait", "block", "batch", "threads", "aloop", "feed"})
    note = "RingBuffer(capacity); streams end with close(), consumers stop on fastq.Closed"

    def _open(self) -> None:
        self.ring: fastq.RingBuffer[Any] = fastq.RingBuffer(self.capacity)
        ring = self.ring
        self.put = ring.put
        self.get = ring.get
        self.put_nowait = ring.put_nowait
        self.get_nowait = ring.get_nowait
        self.put_many = ring.put_many  # type: ignore[method-assign]
        self.tput = ring.put
        self.aput = ring.aput  # type: ignore[method-assign]
        self.aget = ring.aget  # type: ignore[method-assign]

    def get_many(self, max_items: int) -> list[Any]:
        return self.ring.get_many(max_items, block=False)

    def qsize(self) -> int:
        return self.ring.qsize()

    def finish(self, consumers: int) -> None:
        self.ring.close()

    def consume(self) -> int:
        get = self.ring.get
        n = 0
        try:
            while True:
                get()
                n += 1
        except fastq.Closed:
            return n

    def produce_many(self, chunks: Iterable[list[Any]]) -> None:
        put_many = self.ring.put_many
        for chunk in chunks:
            put_many(chunk)

    def consume_many(self, max_items: int) -> int:
        get_many = self.ring.get_many
        n = 0
        try:
            while True:
                n += len(get_many(max_items))
        except fastq.Closed:
            return n

    async def afinish(self) -> None:
        self.ring.close()

    async def aconsume(self) -> int:
        aget = self.ring.aget
        n = 0
        try:
            while True:
                await aget()
                n += 1
        except fastq.Closed:
            return n

    async def aconsume_many(self, max_items: int) -> int:
        aget_many = self.ring.aget_many
        n = 0
        try:
            while True:
                n += len(await aget_many(max_items))
        except fastq.Closed:
            return n

    def tfinish(self) -> None:
        self.ring.close()

    def dispose(self) -> None:
        self.ring.close()


class DequePeer(Peer):
    name = "deque"
    caps = frozenset({"nowait", "batch"})
    note = "collections.deque: append/popleft; batches: extend + [popleft() for _ in ...]"

    def _open(self) -> None:
        self.dq: collections.deque[Any] = collections.deque()
        self.put_nowait = self.dq.append
        self.get_nowait = self.dq.popleft
        self.put_many = self.dq.extend  # type: ignore[method-assign,assignment]

    def get_many(self, max_items: int) -> list[Any]:
        dq = self.dq
        popleft = dq.popleft
        return [popleft() for _ in range(min(max_items, len(dq)))]

    def qsize(self) -> int:
        return len(self.dq)


def _bind_stdlib(peer: Peer, q: queue.SimpleQueue[Any] | queue.Queue[Any]) -> None:
    """The stdlib queues' own methods, bound directly (no adapter call in the timed loops)."""
    peer.put, peer.get = q.put, q.get
    peer.put_nowait, peer.get_nowait = q.put_nowait, q.get_nowait


class SimpleQueuePeer(Peer):
    name = "SimpleQueue"
    caps = frozenset({"nowait", "block", "batch", "threads"})
    note = "queue.SimpleQueue (unbounded, C); no batch API: per item; streams end with None"

    def _open(self) -> None:
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        _bind_stdlib(self, self.q)

    def qsize(self) -> int:
        return self.q.qsize()


class QueuePeer(Peer):
    name = "Queue"
    caps = frozenset({"nowait", "block", "threads"})
    note = "queue.Queue(maxsize=capacity) (pure Python, locks); streams end with None"

    def _open(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue(maxsize=self.capacity)
        _bind_stdlib(self, self.q)

    def qsize(self) -> int:
        return self.q.qsize()


class AsyncioQueuePeer(Peer):
    name = "asyncio.Queue"
    caps = frozenset({"aloop", "feed"})
    note = (
        "asyncio.Queue(maxsize=capacity) in one loop; fed from a thread it is unbounded and "
        "filled with loop.call_soon_threadsafe(q.put_nowait, x)"
    )

    def _open(self) -> None:
        # A thread cannot await put(): the stdlib idiom is an unbounded queue fed through
        # call_soon_threadsafe (no backpressure). In one loop it is bounded like the ring.
        self.q: asyncio.Queue[Any] = asyncio.Queue(maxsize=0 if self.feed else self.capacity)
        self.aput = self.q.put  # type: ignore[method-assign]
        self.aget = self.q.get  # type: ignore[method-assign]
        if self.feed:
            if self.loop is None:
                raise ValueError("feeding an asyncio.Queue from a thread needs its loop")
            # a C partial, so the feeding thread pays no extra Python frame per item
            self.tput = functools.partial(
                self.loop.call_soon_threadsafe,
                self.q.put_nowait,  # type: ignore[arg-type]
            )


class JanusPeer(Peer):
    name = "janus"
    dist = "janus"
    module = "janus"
    caps = frozenset({"nowait", "block", "aloop", "feed"})
    note = (
        "janus.Queue(maxsize=capacity): sync_q on the thread side, async_q in coroutines; "
        "streams end with None"
    )

    def _open(self) -> None:
        import janus

        self.q: janus.Queue[Any] = janus.Queue(maxsize=self.capacity)
        sync_q, async_q = self.q.sync_q, self.q.async_q
        self.put = sync_q.put
        self.get = sync_q.get
        self.put_nowait = sync_q.put_nowait
        self.get_nowait = sync_q.get_nowait
        self.tput = sync_q.put
        self.aput = async_q.put  # type: ignore[method-assign]
        self.aget = async_q.get  # type: ignore[method-assign]

    def qsize(self) -> int:
        return self.q.sync_q.qsize()

    def dispose(self) -> None:
        # janus schedules notifier tasks in the loop it is bound to: let them finish
        self.q.close()
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.run_until_complete(self.q.wait_closed())


class FasterFifoPeer(Peer):
    name = "faster-fifo"
    dist = "faster-fifo"
    module = "faster_fifo"
    caps = frozenset({"nowait", "block", "batch", "threads"})
    note = (
        "faster_fifo.Queue(maxsize=capacity): a multiprocessing queue that pickles each item "
        "into shared memory; streams end with None"
    )

    #: bytes of shared buffer per item of capacity (a pickled small int takes ~15)
    BYTES_PER_SLOT = 64

    def _open(self) -> None:
        import faster_fifo

        self.q = faster_fifo.Queue(
            max_size_bytes=max(self.capacity, 1024) * self.BYTES_PER_SLOT, maxsize=self.capacity
        )
        self.put = self.q.put
        self.get = self.q.get
        self.put_nowait = self.q.put_nowait
        self.get_nowait = self.q.get_nowait
        self.put_many = self.q.put_many  # type: ignore[method-assign]

    def get_many(self, max_items: int) -> list[Any]:
        result: list[Any] = self.q.get_many_nowait(max_messages_to_get=max_items)
        return result

    def qsize(self) -> int:
        size: int = self.q.qsize()
        return size

    def produce_many(self, chunks: Iterable[list[Any]]) -> None:
        put_many = self.q.put_many
        for chunk in chunks:
            put_many(chunk)

    def consume_many(self, max_items: int) -> int:
        get_many = self.q.get_many
        n = 0
        while True:
            batch = get_many(max_messages_to_get=max_items)
            if batch[-1] is STOP:
                return n + len(batch) - 1
            n += len(batch)

    def dispose(self) -> None:
        self.q.close()


#: every peer, fastq first; the report pairs fastq with each of the others per scenario
REGISTRY: dict[str, type[Peer]] = {
    cls.name: cls
    for cls in (
        FastqPeer,
        DequePeer,
        SimpleQueuePeer,
        QueuePeer,
        AsyncioQueuePeer,
        JanusPeer,
        FasterFifoPeer,
    )
}


def supporting(*caps: str, exclude: Iterable[str] = ()) -> list[str]:
    """Names of the peers that have every capability in caps (installed or not)."""
    skip = set(exclude)
    return [name for name, cls in REGISTRY.items() if name not in skip and set(caps) <= cls.caps]
