"""Dead-letter queues: where messages go when they cannot be delivered, with the context of
why; and the tooling to look at them (list, groups, show) and act on them (replay, discard)."""

from __future__ import annotations

import builtins
import functools
import itertools
import json
import math
import re
import struct
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .._core import Message, SegmentLog
from .._meter import RateMeter
from .._registry import track
from ..backends.redis import as_backend
from ..codecs import Codec
from ..errors import CorruptLogError
from ..stats import DeadLetterStatistics
from .failure import Failure, fingerprint_text, parse_legacy

if TYPE_CHECKING:
    from .._core import TokenBucket

__all__ = ("DeadLetter", "DeadLetterGroup", "DeadLetterQueue", "ReplayReport")

REASONS = ("max_deliveries", "expired", "rejected", "permanent", "max_attempts")

GROUP_IDS = 100
"""The most message ids a :class:`DeadLetterGroup` lists (``count`` is the total)."""

# replay headers
REPLAYED = "x-fastq-replayed"
REPLAYED_AT = "x-fastq-replayed-at"
DEAD_REASON = "x-fastq-dead-reason"
DEAD_FINGERPRINT = "x-fastq-dead-fingerprint"
DEAD_QUEUE = "x-fastq-dead-queue"
DEAD_ATTEMPTS = "x-fastq-dead-attempts"

_decode_failure = functools.lru_cache(maxsize=256)(Failure.decode)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message and its failure context (times are unix seconds)."""

    message: Message
    """The original message, unchanged."""
    reason: str
    """``max_deliveries`` (every allowed attempt failed or timed out), ``expired`` (its
    ``deadline`` passed before delivery), ``rejected`` (nacked on its last attempt),
    ``permanent`` (a consumer said retrying cannot help) or ``max_attempts`` (a consumer's
    retry policy gave up before ``max_deliveries``)."""
    queue: str
    """The queue it came from."""
    attempts: int
    """How many times it was handed out."""
    first_delivery: float | None
    last_delivery: float | None
    dead_lettered_at: float
    last_error: str | None
    """The last failure's description, when a consumer gave one (``nack(error=...)``): an
    encoded :class:`~fastq.Failure` from a consumer pool, or plain text."""

    @property
    def id(self) -> str:
        """The message id."""
        return self.message.id

    @property
    def failure(self) -> Failure | None:
        """The structured failure a consumer pool recorded (None for plain-text errors)."""
        error = self.last_error
        return _decode_failure(error) if type(error) is str else None

    @property
    def error_type(self) -> str | None:
        """The failure's qualified exception type (``builtins.ValueError``); for a plain
        ``"Type: message"`` error, that type (builtins qualified); else None."""
        f = self.failure
        if f is not None:
            return f.error_type
        if self.last_error is None:
            return None
        return parse_legacy(self.last_error)[0]

    @property
    def error_message(self) -> str | None:
        """The failure's message (the text after ``"Type: "`` for a plain error), or None."""
        f = self.failure
        if f is not None:
            return f.message
        if self.last_error is None:
            return None
        return parse_legacy(self.last_error)[1]

    @property
    def traceback(self) -> str | None:
        """The formatted traceback, when a consumer pool recorded one."""
        f = self.failure
        return None if f is None else f.traceback

    @property
    def consumer(self) -> str | None:
        """The consumer that failed last, when recorded."""
        f = self.failure
        return None if f is None else f.consumer

    @property
    def fingerprint(self) -> str:
        """Groups entries that failed the same way: the failure's fingerprint (exception type
        and code location); for a plain error, its exception type (or text); with no error,
        the reason (so every lease-expiry death groups together)."""
        f = self.failure
        if f is not None:
            return f.fingerprint
        if self.last_error is None:
            return fingerprint_text("reason", self.reason)
        error_type, _ = parse_legacy(self.last_error)
        if error_type is not None:
            return fingerprint_text("type", error_type)
        return fingerprint_text("error", self.last_error)

    @property
    def summary(self) -> str:
        """One line: ``"ValueError: boom"``, the plain error, or the reason."""
        f = self.failure
        if f is not None:
            return f.summary
        return self.reason if self.last_error is None else self.last_error


@dataclass(frozen=True, slots=True)
class DeadLetterGroup:
    """Dead letters that share a fingerprint (:meth:`DeadLetterQueue.groups`)."""

    fingerprint: str
    error_type: str | None
    """The exception type (None when the entries carry no error)."""
    sample: str
    """The newest entry's one-line summary (``"ValueError: boom"``, or the reason)."""
    count: int
    first_seen: float
    """The oldest entry's ``dead_lettered_at`` (unix seconds)."""
    last_seen: float
    reasons: dict[str, int]
    """Entries by reason."""
    queues: dict[str, int]
    """Entries by the queue they came from."""
    ids: tuple[str, ...]
    """The oldest entries' message ids, at most :data:`GROUP_IDS` of them."""


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What :meth:`DeadLetterQueue.replay` or :meth:`~DeadLetterQueue.discard` did (or, in a
    dry run, would do)."""

    action: str
    """``"replay"`` or ``"discard"``."""
    dry_run: bool
    ids: tuple[str, ...]
    """The selected entries' message ids, oldest first."""
    moved: int
    """Entries that left the dead-letter queue (replayed or discarded); 0 in a dry run."""
    target: str | None
    """The queue replayed into (``to``'s name); None when each entry went back to its own
    source queue, and for a discard."""
    errors: dict[str, str] = field(default_factory=dict)
    """Message id -> why it was not replayed (its ``put`` raised, no source queue); those
    entries stay in the dead-letter queue."""
    missing: tuple[str, ...] = ()
    """Ids asked for with ``ids=`` that are not in the dead-letter queue."""

    @property
    def selected(self) -> int:
        """How many entries the selectors chose."""
        return len(self.ids)


class _Putter(Protocol):
    def put(self, message: Message, /) -> Any: ...


class _Publisher(Protocol):
    def publish(self, message: Message, /) -> Any: ...


_TOPIC_ENTRY = re.compile(r"(.+)\[\d+\]@\d+")  # a topic pool's entry: topic[partition]@offset


_CONTEXT_LEN = struct.Struct("<I")
_POPPED = "popped"  # the log's consumer position: entries before it are gone
_ENTRY = b"L"  # a dead letter: u32 context length, the context as JSON, the message envelope
_TOMBSTONE = b"T"  # u64 offsets of entries removed out of order (replay, discard)
_TOMBSTONE_CHUNK = 8192  # offsets per tombstone record
_REMOVE_CHUNK = 256  # replayed entries are removed (and tombstoned) in batches this big


def _bucket(rate: float) -> TokenBucket:
    """The pacer of a rate-limited replay (evenly spaced: a burst of one)."""
    from .._core import TokenBucket  # on first use: `import fastq` never depends on it

    return TokenBucket(rate, 1.0)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__qualname__
    return f"{name}: {text}" if text else name


class DeadLetterQueue:
    """Holds :class:`DeadLetter` entries in arrival order. ``maxsize`` (None: unbounded) keeps
    memory bounded by dropping the oldest entries first (counted). ``path``: a directory for a
    durable dead-letter queue (a :class:`~fastq.SegmentLog`; each entry is one record: the
    failure context as JSON, then the message envelope; entries removed out of order by
    :meth:`replay` / :meth:`discard` are recorded as tombstones). Thread-safe.

    Tooling: :meth:`list` (with ``where=``), :meth:`groups` (by failure fingerprint),
    :meth:`show`, and :meth:`replay` / :meth:`discard` (dry runs unless ``dry_run=False``)."""

    def __init__(
        self,
        name: str,
        *,
        maxsize: int | None = None,
        path: str | None = None,
        sync: str = "none",
        codec: Codec | None = None,
        backend: Any = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if maxsize is not None:
            if isinstance(maxsize, bool) or not isinstance(maxsize, int):
                raise TypeError(f"maxsize must be an int or None, got {type(maxsize).__name__}")
            if maxsize < 1:
                raise ValueError(f"maxsize must be >= 1 (or None), got {maxsize!r}")
        self.name = name
        self.maxsize = maxsize
        # (key, entry) in arrival order: the key is the entry's log offset (durable) or a
        # running number. Entries removed out of order stay in _items until compacted; _live
        # says which are held. The front of _items is always held (or _items is empty).
        self._items: deque[tuple[int, DeadLetter]] = deque()
        self._live: set[int] = set()  # keys held
        self._stale = 0  # removed entries still in _items
        self._claimed: set[int] = set()  # keys a running replay/discard is working on
        self._next_key = 0
        self._lock = threading.Lock()
        self._added = 0
        self._dropped = 0
        self._codec = codec
        self._sources: dict[str, weakref.ref[Any]] = {}
        self._log: SegmentLog | None = None
        self._popped = 0  # durable: the committed position (entries before it are gone)
        self._remote: Any = None  # the Redis dead-letter stream (backend=)
        self._seen: int | None = None  # remote: the newest entry key read
        backend = as_backend(backend)
        if backend is not None:
            if path is not None:
                raise ValueError("path and backend exclude each other: the backend stores it")
            from ..backends.redis.dlq import RedisDeadLetterStore

            base = name[: -len(".dlq")] if name.endswith(".dlq") else name
            self._remote = RedisDeadLetterStore(backend, base)
            self._refresh()
        elif path is not None:
            self._log = SegmentLog(path, sync=sync)
            try:
                self._load()
            except BaseException:
                self._log.close()
                raise
        self._growth = RateMeter()
        track(self)

    # ---- storage ----------------------------------------------------------------------------

    def _load(self) -> None:
        assert self._log is not None
        self._popped = self._log.committed(_POPPED) or 0
        removed: set[int] = set()
        for rec in self._log.iter(max(self._popped, self._log.start_offset)):
            value = rec.value_view
            source = f"{self._log.directory} (record {rec.offset})"
            if rec.key == _TOMBSTONE:
                if len(value) % 8:
                    raise CorruptLogError(source, 0, "dead-letter tombstone: not u64 offsets")
                removed.update(struct.unpack(f"<{len(value) // 8}Q", value))
                continue
            if rec.key != _ENTRY:
                raise CorruptLogError(source, 0, f"unknown dead-letter record kind {rec.key!r}")
            self._items.append((rec.offset, self._decode(value, source)))
        if removed:
            self._items = deque(item for item in self._items if item[0] not in removed)
        self._live = {key for key, _ in self._items}

    def _decode(self, value: Any, source: str) -> DeadLetter:
        try:
            (n,) = _CONTEXT_LEN.unpack_from(value)
            ctx = json.loads(bytes(value[4 : 4 + n]))
            msg = Message.decode(
                value[4 + n :],
                codecs=() if self._codec is None else (self._codec,),
                source=source,
                position=4 + n,
            )
            return DeadLetter(message=msg, **ctx)
        except CorruptLogError:
            raise
        except Exception as exc:
            raise CorruptLogError(source, 0, f"dead-letter context: {exc}") from None

    def _refresh(self) -> None:
        """Remote: take in the entries other processes (and queues' scripts) added since the
        last look; when some were removed elsewhere, read the stream again from the start."""
        remote = self._remote
        if remote is None:
            return
        with self._lock:
            while True:
                rows = remote.read_after(self._seen)
                for key, value in rows:
                    entry = self._decode(value, f"{remote.source} (entry {key})")
                    self._items.append((key, entry))
                    self._live.add(key)
                    self._seen = key
                    self._added += 1
                if len(rows) < 1000:
                    break
            if remote.length() != len(self._live):  # removed elsewhere: start again
                self._items.clear()
                self._live.clear()
                self._stale = 0
                self._seen = None
                for key, value in remote.read_after(None, 1 << 30):
                    self._items.append((key, self._decode(value, f"{remote.source} (entry {key})")))
                    self._live.add(key)
                    self._seen = key

    def _encode(self, entry: DeadLetter) -> bytes:
        ctx = {
            "reason": entry.reason,
            "queue": entry.queue,
            "attempts": entry.attempts,
            "first_delivery": entry.first_delivery,
            "last_delivery": entry.last_delivery,
            "dead_lettered_at": entry.dead_lettered_at,
            "last_error": entry.last_error,
        }
        raw = json.dumps(ctx, separators=(",", ":")).encode()
        return _CONTEXT_LEN.pack(len(raw)) + raw + entry.message.encode(self._codec)

    def _advance(self) -> None:
        """Durable (holding the lock): commit the position of the oldest entry held (the log
        end when empty), so a reopen skips what went before and retention can reclaim it."""
        if self._log is None:
            return
        position = self._items[0][0] if self._items else self._log.end_offset
        if position > self._popped:
            self._log.commit(_POPPED, position)
            self._popped = position
            self._log.truncate_before(position)  # whole segments only: cheap

    def _remove(self, keys: Iterable[int]) -> int:
        """Remove the entries under ``keys`` that are still held (holding the lock); returns
        how many. Durable: tombstones first, unless the removal is a prefix of the entries
        held (then the commit of the new position alone says it)."""
        gone = {k for k in keys if k in self._live}
        if not gone:
            return 0
        if self._remote is not None:
            self._remote.delete(sorted(gone))
        self._live -= gone
        self._stale += len(gone)
        self._trim()
        if self._log is not None and self._items and max(gone) > self._items[0][0]:
            offsets = sorted(gone)
            for i in range(0, len(offsets), _TOMBSTONE_CHUNK):
                chunk = offsets[i : i + _TOMBSTONE_CHUNK]
                self._log.append(struct.pack(f"<{len(chunk)}Q", *chunk), key=_TOMBSTONE)
        if self._stale > 1024 and self._stale > len(self._live):  # compact: amortised O(1)
            live = self._live
            self._items = deque(item for item in self._items if item[0] in live)
            self._stale = 0
        self._advance()
        return len(gone)

    def _trim(self) -> None:
        """Drop removed entries from the front (holding the lock)."""
        items, live = self._items, self._live
        while items and items[0][0] not in live:
            items.popleft()
            self._stale -= 1

    def _popleft(self) -> DeadLetter:
        key, entry = self._items.popleft()
        if self._remote is not None:
            self._remote.delete([key])
        self._live.discard(key)
        self._trim()
        return entry

    def _bind_source(self, queue: Any) -> None:
        """A queue (or a topic a consumer pool reads) sends its dead letters here:
        ``replay(to=None)`` puts its entries back into it (held weakly; matched by
        ``entry.queue`` == ``queue.name``, or ``name[partition]@offset`` for a topic)."""
        with self._lock:
            self._sources[str(queue.name)] = weakref.ref(queue)

    # ---- the basic calls --------------------------------------------------------------------

    def add(self, entry: DeadLetter) -> None:
        """Store one entry (queues call this)."""
        if not isinstance(entry, DeadLetter):
            raise TypeError(f"entry must be a DeadLetter, got {type(entry).__name__}")
        if self._remote is not None:
            self._refresh()  # keys are stream ids: the entries before this one come first
        with self._lock:
            if self._log is not None:
                key = self._log.append(self._encode(entry), key=_ENTRY)
            elif self._remote is not None:
                key = self._seen = self._remote.append(self._encode(entry))
            else:
                key = self._next_key
                self._next_key += 1
            self._items.append((key, entry))
            self._live.add(key)
            self._added += 1
            if self.maxsize is not None and len(self._live) > self.maxsize:
                self._popleft()
                self._dropped += 1
                self._advance()

    def list(
        self, limit: int | None = None, *, where: Callable[[DeadLetter], bool] | None = None
    ) -> builtins.list[DeadLetter]:
        """The oldest ``limit`` entries (all if None) for which ``where(entry)`` is true (all
        if None), without removing them."""
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"limit must be an int or None, got {type(limit).__name__}")
            if limit < 0:
                raise ValueError(f"limit must be >= 0, got {limit!r}")
        _check_where(where)
        self._refresh()
        if where is None:
            with self._lock:
                if not self._stale:
                    return [item[1] for item in itertools.islice(self._items, limit)]
                live = self._live
                held = (item[1] for item in self._items if item[0] in live)
                return builtins.list(itertools.islice(held, limit))
        out: builtins.list[DeadLetter] = []
        if limit == 0:
            return out
        for entry in self._snapshot_entries():  # the predicate runs without the lock
            if where(entry):
                out.append(entry)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def pop(self) -> DeadLetter | None:
        """Remove and return the oldest entry (None if empty)."""
        self._refresh()
        with self._lock:
            if not self._items:
                return None
            entry = self._popleft()
            self._advance()
            return entry

    def purge(self) -> int:
        """Drop every entry; returns how many."""
        self._refresh()
        with self._lock:
            n = len(self._live)
            if self._remote is not None:
                self._remote.delete(sorted(self._live))
            self._items.clear()
            self._live.clear()
            self._stale = 0
            self._advance()
            return n

    def flush(self) -> None:
        """Durable: make every entry added so far survive a power loss now."""
        if self._log is not None:
            self._log.flush()

    def close(self) -> None:
        """Durable: close the log (entries stay on disk for the next open)."""
        if self._log is not None and not self._log.closed:
            self._log.close()

    def statistics(self) -> DeadLetterStatistics:
        self._refresh()
        with self._lock:
            live = self._live
            by_reason = dict(Counter(e.reason for k, e in self._items if k in live))
            return DeadLetterStatistics(
                name=self.name,
                size=len(live),
                added_total=self._added,
                dropped_total=self._dropped,
                by_reason=by_reason,
                growth_rate=self._growth.rate(self._added, time.monotonic()),
            )

    # ---- tooling ----------------------------------------------------------------------------

    def show(self, id: str) -> DeadLetter:
        """The entry of message ``id`` (the newest, should it be here twice); KeyError if
        absent."""
        if not isinstance(id, str):
            raise TypeError(f"id must be a str, got {type(id).__name__}")
        self._refresh()
        with self._lock:
            for key, entry in reversed(self._items):
                if entry.message.id == id and key in self._live:
                    return entry
        raise KeyError(f"no dead letter with id {id!r} in {self.name!r}")

    def groups(self) -> builtins.list[DeadLetterGroup]:
        """Entries grouped by :attr:`DeadLetter.fingerprint`, the largest group first (then
        the most recently seen)."""
        acc: dict[str, _GroupAcc] = {}
        for entry in self._snapshot_entries():
            fp = entry.fingerprint
            g = acc.get(fp)
            if g is None:
                g = acc[fp] = _GroupAcc(entry)
            g.add(entry)
        out = [g.result(fp) for fp, g in acc.items()]
        out.sort(key=lambda g: (-g.count, -g.last_seen, g.fingerprint))
        return out

    def replay(
        self,
        ids: Iterable[str] | None = None,
        *,
        where: Callable[[DeadLetter], bool] | None = None,
        group: str | DeadLetterGroup | None = None,
        to: _Putter | _Publisher | None = None,
        rate: float | None = None,
        dry_run: bool = True,
    ) -> ReplayReport:
        """Put the selected entries' messages back as fresh puts, so their attempts start
        again, and remove each entry once its put returned. ``to``: a queue, or anything with
        ``put(message)`` or ``publish(message)`` (a topic, a router); None: each entry goes
        back to the queue (or topic) it came from. Selectors (``ids``, ``where``, ``group``)
        combine with AND; none selects every entry. ``rate``: at most that many puts per
        second. ``dry_run=True`` (the default) changes nothing and reports what would be
        replayed.

        The replayed message keeps its id, payload and fields, with headers recording the
        replay: ``x-fastq-replayed`` (how many times, counting this one), ``x-fastq-replayed-at``
        (unix seconds), ``x-fastq-dead-reason``, ``x-fastq-dead-fingerprint``,
        ``x-fastq-dead-queue``, ``x-fastq-dead-attempts``; a ``deadline`` already passed is
        dropped (the message would die again at once). An entry whose put raises (or that a
        queue's dedup window drops because another message took its idempotency key) stays
        here and is listed in the report's ``errors``. Puts block while the target is full."""
        wanted = _check_ids(ids)
        _check_where(where)
        fp = _check_group(group)
        if to is not None and _sender(to) is None:
            raise TypeError(
                f"to must be a queue or topic (anything with put(message) or "
                f"publish(message)), got {to!r}"
            )
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                raise TypeError(
                    f"rate must be a number of messages per second or None, got {rate!r}"
                )
            if math.isnan(rate) or rate <= 0:
                raise ValueError(f"rate must be > 0 messages per second (or None), got {rate!r}")
        _check_dry_run(dry_run)
        if to is None:
            with self._lock:
                if not self._sources:
                    raise ValueError("to= is required: this dead-letter queue has no source queue")
        target = None if to is None else str(getattr(to, "name", type(to).__name__))
        chosen, missing = self._select(wanted, where, fp, claim=not dry_run)
        ids_out = tuple(e.message.id for _, e in chosen)
        if dry_run:
            return ReplayReport("replay", True, ids_out, 0, target, {}, missing)
        errors: dict[str, str] = {}
        moved = 0
        done: builtins.list[int] = []
        bucket = None if rate is None or math.isinf(rate) else _bucket(float(rate))
        from .queue import Queue  # queue imports this module

        try:
            for key, entry in chosen:
                dest = to if to is not None else self._source(entry.queue)
                if dest is None:
                    errors[entry.id] = (
                        f"no source queue named {entry.queue!r} is bound to {self.name!r}: pass to="
                    )
                    continue
                if bucket is not None:
                    bucket.acquire()
                msg = _replayed(entry)
                try:
                    if isinstance(dest, Queue):
                        # a dedup window must not drop the replay: free the idempotency key
                        # if this very message took it
                        dest._dedup_release(msg)
                        first = dest.put(msg)
                        if first != msg.id:
                            errors[entry.id] = (
                                f"deduplicated: message {first!r} put idempotency key "
                                f"{msg.idempotency_key!r} within the dedup window of "
                                f"{dest.name!r}"
                            )
                            continue
                    else:
                        send = _sender(dest)
                        if send is None:
                            raise TypeError(f"{dest!r} has no put(message) or publish(message)")
                        send(msg)
                except Exception as exc:
                    errors[entry.id] = _describe(exc)
                    continue
                done.append(key)
                if len(done) >= _REMOVE_CHUNK:
                    moved += self._finish(done)
                    done = []
        finally:
            moved += self._finish(done)
            self._unclaim(chosen)
        return ReplayReport("replay", False, ids_out, moved, target, errors, missing)

    def discard(
        self,
        ids: Iterable[str] | None = None,
        *,
        where: Callable[[DeadLetter], bool] | None = None,
        group: str | DeadLetterGroup | None = None,
        dry_run: bool = True,
    ) -> ReplayReport:
        """Remove the selected entries for good (selectors as in :meth:`replay`; none selects
        every entry). ``dry_run=True`` (the default) changes nothing and reports what would be
        removed."""
        wanted = _check_ids(ids)
        _check_where(where)
        fp = _check_group(group)
        _check_dry_run(dry_run)
        chosen, missing = self._select(wanted, where, fp, claim=not dry_run)
        ids_out = tuple(e.message.id for _, e in chosen)
        if dry_run:
            return ReplayReport("discard", True, ids_out, 0, None, {}, missing)
        try:
            moved = self._finish([key for key, _ in chosen])
        finally:
            self._unclaim(chosen)
        return ReplayReport("discard", False, ids_out, moved, None, {}, missing)

    # ---- tooling internals ------------------------------------------------------------------

    def _snapshot(self) -> builtins.list[tuple[int, DeadLetter]]:
        self._refresh()
        with self._lock:
            live = self._live
            return [item for item in self._items if item[0] in live]

    def _snapshot_entries(self) -> builtins.list[DeadLetter]:
        self._refresh()
        with self._lock:
            live = self._live
            return [entry for key, entry in self._items if key in live]

    def _select(
        self,
        wanted: set[str] | None,
        where: Callable[[DeadLetter], bool] | None,
        fp: str | None,
        *,
        claim: bool,
    ) -> tuple[builtins.list[tuple[int, DeadLetter]], tuple[str, ...]]:
        """The held entries the selectors choose, oldest first (the predicate runs without the
        lock); with ``claim``, those no other replay/discard is working on, now claimed."""
        found: set[str] = set()
        chosen = []
        for key, entry in self._snapshot():
            if wanted is not None:
                if entry.message.id not in wanted:
                    continue
                found.add(entry.message.id)
            if fp is not None and entry.fingerprint != fp:
                continue
            if where is not None and not where(entry):
                continue
            chosen.append((key, entry))
        missing = () if wanted is None else tuple(sorted(wanted - found))
        if claim:
            with self._lock:
                chosen = [
                    item
                    for item in chosen
                    if item[0] in self._live and item[0] not in self._claimed
                ]
                self._claimed.update(key for key, _ in chosen)
        return chosen, missing

    def _unclaim(self, chosen: builtins.list[tuple[int, DeadLetter]]) -> None:
        with self._lock:
            self._claimed.difference_update(key for key, _ in chosen)

    def _finish(self, keys: builtins.list[int]) -> int:
        if not keys:
            return 0
        with self._lock:
            return self._remove(keys)

    def _source(self, name: str) -> Any:
        """The bound queue (or topic) named ``name``; a topic consumer pool's entries name
        ``topic[partition]@offset``."""
        with self._lock:
            ref = self._sources.get(name)
            if ref is None:
                m = _TOPIC_ENTRY.fullmatch(name)
                if m is not None:
                    ref = self._sources.get(m.group(1))
        return None if ref is None else ref()

    def __len__(self) -> int:
        self._refresh()
        return len(self._live)

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(self.list())

    def __repr__(self) -> str:
        return f"DeadLetterQueue({self.name!r}, size={len(self)})"


class _GroupAcc:
    __slots__ = ("count", "error_type", "first", "ids", "last", "queues", "reasons", "sample")

    def __init__(self, entry: DeadLetter) -> None:
        self.count = 0
        self.error_type = entry.error_type
        self.first = entry.dead_lettered_at
        self.last = entry.dead_lettered_at
        self.sample = entry.summary
        self.reasons: Counter[str] = Counter()
        self.queues: Counter[str] = Counter()
        self.ids: list[str] = []

    def add(self, entry: DeadLetter) -> None:
        self.count += 1
        t = entry.dead_lettered_at
        self.first = min(self.first, t)
        if t >= self.last:
            self.last = t
            self.sample = entry.summary
            self.error_type = entry.error_type or self.error_type
        self.reasons[entry.reason] += 1
        self.queues[entry.queue] += 1
        if len(self.ids) < GROUP_IDS:
            self.ids.append(entry.message.id)

    def result(self, fp: str) -> DeadLetterGroup:
        return DeadLetterGroup(
            fingerprint=fp,
            error_type=self.error_type,
            sample=self.sample,
            count=self.count,
            first_seen=self.first,
            last_seen=self.last,
            reasons=dict(self.reasons),
            queues=dict(self.queues),
            ids=tuple(self.ids),
        )


def _sender(target: object) -> Callable[[Message], Any] | None:
    """``target.put``, else ``target.publish``, else None."""
    for name in ("put", "publish"):
        fn = getattr(target, name, None)
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    return None


def _replayed(entry: DeadLetter) -> Message:
    """The message a replay puts: the original with the replay recorded in its headers."""
    msg = entry.message
    headers = dict(msg.headers)
    try:
        count = int(headers.get(REPLAYED, "0"))
    except ValueError:
        count = 0
    now = time.time()
    headers[REPLAYED] = str(max(count, 0) + 1)
    headers[REPLAYED_AT] = f"{now:.6f}"
    headers[DEAD_REASON] = entry.reason
    headers[DEAD_FINGERPRINT] = entry.fingerprint
    headers[DEAD_QUEUE] = entry.queue
    headers[DEAD_ATTEMPTS] = str(entry.attempts)
    deadline = msg.deadline
    if deadline is not None and deadline <= now:
        return msg.replace(headers=headers, deadline=None)
    return msg.replace(headers=headers)


def _check_ids(ids: object) -> set[str] | None:
    if ids is None:
        return None
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"ids must be an iterable of message ids (str), not a single {ids!r}")
    try:
        items = builtins.list(ids)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            f"ids must be an iterable of message ids (str) or None, got {type(ids).__name__}"
        ) from None
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"ids must hold message ids (str), got {item!r}")
    return set(items)


def _check_where(where: object) -> None:
    if where is not None and not callable(where):
        raise TypeError(f"where must be a callable (DeadLetter -> bool) or None, got {where!r}")


def _check_group(group: object) -> str | None:
    if group is None:
        return None
    if isinstance(group, DeadLetterGroup):
        return group.fingerprint
    if isinstance(group, str):
        return group
    raise TypeError(f"group must be a fingerprint (str), a DeadLetterGroup or None, got {group!r}")


def _check_dry_run(dry_run: object) -> None:
    if not isinstance(dry_run, bool):
        raise TypeError(f"dry_run must be a bool, got {dry_run!r}")
