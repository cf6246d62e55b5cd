"""Pure-Python reference models for differential and stateful tests (no threads, no blocking)."""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Generic, TypeVar

import numpy as np

from fastq.errors import Closed, Empty, Full

T = TypeVar("T")


class RingModel(Generic[T]):
    """A bounded FIFO with RingBuffer's capacity rounding and close semantics.

    Only the non-blocking operations exist: a blocking call is one of these plus waiting.
    `put_many` and `get_many` model `block=False`.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = 1 << (capacity - 1).bit_length()  # rounded up to a power of two
        self.items: deque[T] = deque()
        self.closed = False

    def qsize(self) -> int:
        return len(self.items)

    def empty(self) -> bool:
        return not self.items

    def full(self) -> bool:
        return len(self.items) >= self.capacity

    def put_nowait(self, item: T) -> None:
        if self.closed:
            raise Closed("model: put on a closed ring")
        if self.full():
            raise Full("model: full")
        self.items.append(item)

    def get_nowait(self) -> T:
        if self.items:
            return self.items.popleft()
        raise Closed("model: closed and drained") if self.closed else Empty("model: empty")

    def put_many(self, items: Iterable[T]) -> int:
        batch = list(items)
        if self.closed and batch:
            raise Closed("model: put_many on a closed ring")
        n = min(len(batch), self.capacity - len(self.items))
        self.items.extend(batch[:n])
        return n

    def get_many(self, max_items: int) -> list[T]:
        if not self.items:
            raise Closed("model: closed and drained") if self.closed else Empty("model: empty")
        return [self.items.popleft() for _ in range(min(max_items, len(self.items)))]

    def close(self) -> None:
        self.closed = True


def dedup_key_bytes(key: object) -> bytes:
    """The bytes a DedupWindow (and hash64) sees for one key: str as UTF-8, int (bool, IntEnum,
    numpy integer scalars) as 8 little-endian bytes, two's complement, any other buffer (bytes,
    bytearray, memoryview, array.array, numpy array) as its raw bytes."""
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    if isinstance(key, (int, np.integer)):
        value = int(key)
        if not -(2**63) <= value < 2**64:
            raise ValueError(f"model: int key out of range: {value}")
        return (value % 2**64).to_bytes(8, "little")
    try:
        return memoryview(key).tobytes()  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"model: unsupported key type {type(key).__name__}") from None


class DedupModel:
    """DedupWindow's contract as a pure-Python oracle: an OrderedDict of key -> expiry time,
    oldest insertion first (also the expiry order: one ttl and a clock that never goes back).

    Keys are the bytes `dedup_key_bytes` gives (so "a", b"a" and memoryview(b"a") are one key).
    Every operation takes the clock reading `now`: it is clamped so time never goes backwards
    for the window, then every key whose expiry is <= now is dropped (counted in `expiries`).
    A new key arriving when the window is full evicts the oldest one (counted in `evictions`).
    `clear` does not consult the clock and does not count what it drops.
    """

    def __init__(self, ttl: float, max_keys: int) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self.entries: OrderedDict[bytes, float] = OrderedDict()
        self.now = -math.inf
        self.inserted = 0
        self.hits = 0
        self.evictions = 0
        self.expiries = 0

    def advance(self, now: float) -> None:
        """Move to `now` (never backwards) and expire what is due."""
        self.now = max(self.now, now)
        while self.entries:
            key, expiry = next(iter(self.entries.items()))
            if expiry > self.now:
                break
            del self.entries[key]
            self.expiries += 1

    def _seen(self, key: bytes) -> bool:
        if key in self.entries:
            self.hits += 1
            return True
        if len(self.entries) >= self.max_keys:
            self.entries.popitem(last=False)
            self.evictions += 1
        self.entries[key] = self.now + self.ttl
        self.inserted += 1
        return False

    def seen(self, key: bytes, now: float) -> bool:
        self.advance(now)
        return self._seen(key)

    def seen_many(self, keys: Iterable[bytes], now: float) -> list[bool]:
        """One clock reading for the whole batch; in-batch repeats are seen after the first."""
        self.advance(now)
        return [self._seen(key) for key in keys]

    def contains(self, key: bytes, now: float) -> bool:
        self.advance(now)
        return key in self.entries

    def forget(self, key: bytes, now: float) -> bool:
        self.advance(now)
        return self.entries.pop(key, None) is not None

    def clear(self) -> None:
        self.entries.clear()

    def len(self, now: float) -> int:
        self.advance(now)
        return len(self.entries)

    def remaining(self) -> list[tuple[bytes, float]]:
        """What a snapshot holds: each key with its remaining lifetime, oldest first (the
        lifetime is clamped to 0..ttl, as DedupWindow.to_bytes writes it)."""
        return [(k, min(max(e - self.now, 0.0), self.ttl)) for k, e in self.entries.items()]

    def snapshot(self, now: float) -> list[tuple[bytes, float]]:
        self.advance(now)
        return self.remaining()

    def restored(
        self, snapshot: list[tuple[bytes, float]], now: float, elapsed: float
    ) -> DedupModel:
        """The window from_bytes rebuilds from `snapshot` at clock reading `now` (a new window:
        its own clock starts there), every lifetime shortened by `elapsed`; the counters carry
        over and the entries that have no lifetime left are dropped uncounted."""
        new = DedupModel(self.ttl, self.max_keys)
        new.now = now
        for key, rem in snapshot:
            left = rem - elapsed
            if left > 0:
                new.entries[key] = now + left
        new.inserted, new.hits = self.inserted, self.hits
        new.evictions, new.expiries = self.evictions, self.expiries
        return new


class ManualClock:
    """A fake clock for DedupWindow(clock=...): returns t[0], which the test sets (list-backed,
    so a lambda or another object can share it). `readings` counts the calls."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = [start]
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return self.t[0]

    def set(self, now: float) -> None:
        self.t[0] = now

    def advance(self, seconds: float) -> None:
        self.t[0] += seconds


class QueueModel:
    """fastq.Queue's delivery contract as a pure-Python oracle (one thread, no blocking, no
    message deadlines). Times are int nanoseconds on the queue clock; `advance(now)` must run
    before every operation (as the queue does): expired leases become failed attempts
    (visible again at their lease deadline, or dead at max_deliveries), due delayed messages
    become ready.

    Selection: each ready message has effective class max(0, class - floor(waited / aging))
    (aging None: its class), waited = now - ready_at; the next hand-out is any message with
    the smallest (effective class, ready_at) -- `candidates` returns that set (ties are not
    ordered by the contract, FIFO of equal ready times aside).
    """

    READY, DELAYED, INFLIGHT, ACKED, DEAD = "ready", "delayed", "inflight", "acked", "dead"

    def __init__(
        self, vt: int, max_deliveries: int, maxsize: int | None, aging: int | None
    ) -> None:
        self.vt = vt
        self.max_deliveries = max_deliveries
        self.maxsize = maxsize
        self.aging = aging
        self.now = 0
        self.state: dict[str, str] = {}
        self.prio: dict[str, int] = {}
        self.ready_at: dict[str, int] = {}
        self.deliveries: dict[str, int] = {}
        self.lease: dict[str, int] = {}  # in-flight id -> lease deadline
        self.receipt: dict[str, int] = {}  # in-flight id -> its current receipt
        self.dead: list[tuple[str, str, int]] = []  # (id, reason, attempts) in order
        self.put_total = self.acked_total = self.nacked_total = 0
        self.lease_expiries = self.redelivered_total = self.released_total = 0

    def count(self, state: str) -> int:
        return sum(1 for s in self.state.values() if s == state)

    def held(self) -> int:
        return sum(1 for s in self.state.values() if s in (self.READY, self.DELAYED, self.INFLIGHT))

    def _fail(self, mid: str, ready_at: int, reason: str) -> None:
        del self.lease[mid]
        del self.receipt[mid]
        if self.deliveries[mid] >= self.max_deliveries:
            self.state[mid] = self.DEAD
            self.dead.append((mid, reason, self.deliveries[mid]))
            return
        self.redelivered_total += 1
        self.ready_at[mid] = ready_at
        self.state[mid] = self.READY if ready_at <= self.now else self.DELAYED

    def advance(self, now: int) -> None:
        self.now = max(self.now, now)
        for mid, deadline in sorted(self.lease.items(), key=lambda kv: kv[1]):
            if deadline <= self.now:
                self.lease_expiries += 1
                self._fail(mid, deadline, "max_deliveries")
        for mid, s in self.state.items():
            if s == self.DELAYED and self.ready_at[mid] <= self.now:
                self.state[mid] = self.READY

    def put(self, mid: str, prio: int, delay: int) -> bool:
        """False (nothing stored) when maxsize is reached."""
        if self.maxsize is not None and self.held() >= self.maxsize:
            return False
        self.put_total += 1
        self.state[mid] = self.READY if delay <= 0 else self.DELAYED
        self.prio[mid] = prio
        self.ready_at[mid] = self.now + max(delay, 0)
        self.deliveries[mid] = 0
        return True

    def effective(self, mid: str) -> int:
        c = self.prio[mid]
        if self.aging is None or c == 0:
            return c
        return max(0, c - (self.now - self.ready_at[mid]) // self.aging)

    def candidates(self) -> set[str]:
        ready = [m for m, s in self.state.items() if s == self.READY]
        if not ready:
            return set()
        best = min((self.effective(m), self.ready_at[m]) for m in ready)
        return {m for m in ready if (self.effective(m), self.ready_at[m]) == best}

    def take(self, mid: str, receipt: int) -> tuple[int, int]:
        """Hand out `mid` (one of `candidates`): returns (attempt, lease deadline)."""
        assert mid in self.candidates()
        self.deliveries[mid] += 1
        self.state[mid] = self.INFLIGHT
        self.lease[mid] = self.now + self.vt
        self.receipt[mid] = receipt
        return self.deliveries[mid], self.lease[mid]

    def owner(self, receipt: int) -> str | None:
        """The in-flight message a receipt currently names (None: stale)."""
        for mid, r in self.receipt.items():
            if r == receipt:
                return mid
        return None

    def ack(self, receipt: int) -> bool:
        mid = self.owner(receipt)
        if mid is None:
            return False
        del self.lease[mid]
        del self.receipt[mid]
        self.state[mid] = self.ACKED
        self.acked_total += 1
        return True

    def nack(self, receipt: int, delay: int) -> bool:
        mid = self.owner(receipt)
        if mid is None:
            return False
        self.nacked_total += 1
        self._fail(mid, self.now + max(delay, 0), "rejected")
        return True

    def release(self, receipt: int, delay: int) -> bool:
        """Given back untried: the hand-out is not an attempt, visible again after delay."""
        mid = self.owner(receipt)
        if mid is None:
            return False
        del self.lease[mid]
        del self.receipt[mid]
        self.released_total += 1
        self.deliveries[mid] -= 1
        self.ready_at[mid] = self.now + max(delay, 0)
        self.state[mid] = self.READY if delay <= 0 else self.DELAYED
        return True

    def reject(self, receipt: int, reason: str) -> bool:
        """Dead-lettered now, whatever the attempts left."""
        mid = self.owner(receipt)
        if mid is None:
            return False
        del self.lease[mid]
        del self.receipt[mid]
        self.nacked_total += 1
        self.state[mid] = self.DEAD
        self.dead.append((mid, reason, self.deliveries[mid]))
        return True

    def extend(self, receipt: int, by: int) -> int | None:
        mid = self.owner(receipt)
        if mid is None:
            return None
        self.lease[mid] = self.now + by
        return self.lease[mid]

    def oldest_ready_at(self) -> int | None:
        ready = [self.ready_at[m] for m, s in self.state.items() if s == self.READY]
        return min(ready) if ready else None
