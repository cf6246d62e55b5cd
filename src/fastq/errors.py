"""The fastq exception hierarchy.

Everything fastq raises on purpose derives from :class:`FastqError`. Where the standard library
already has an exception users catch, ours subclasses it too, so existing code keeps working:
``except queue.Empty`` catches :class:`Empty`, ``except asyncio.QueueFull`` catches :class:`Full`.
"""

from __future__ import annotations

import asyncio
import queue

__all__ = (
    "BackendError",
    "BackendUnavailable",
    "Closed",
    "CodecError",
    "CorruptLogError",
    "Empty",
    "FastqError",
    "Full",
    "InvalidReceipt",
    "LogFailedError",
    "LogLockedError",
    "OffsetOutOfRange",
    "Overloaded",
    "Permanent",
    "Unsupported",
)


class FastqError(Exception):
    """Base class of every error fastq raises on purpose."""


class Full(FastqError, queue.Full, asyncio.QueueFull):
    """No room: a non-blocking put found the queue full, or a put's timeout expired."""


class Empty(FastqError, queue.Empty, asyncio.QueueEmpty):
    """Nothing to take: a non-blocking get found the queue empty, or a get's timeout expired."""


class Closed(FastqError):
    """The queue is closed: no more puts; gets raise this once the queue is drained."""


class CorruptLogError(FastqError):
    """A segment log holds damage before its recovery point (bit rot, a lost or altered file).

    ``path``, ``position`` (byte offset in that file) and ``reason`` say where and what.
    Opening with ``repair=True`` keeps every later valid record and reports what was dropped.
    """

    def __init__(self, path: str, position: int, reason: str) -> None:
        super().__init__(f"{path}: byte {position}: {reason}")
        self.path = path
        self.position = position
        self.reason = reason

    def __reduce__(self) -> tuple[type[CorruptLogError], tuple[str, int, str]]:
        return (type(self), (self.path, self.position, self.reason))


class LogLockedError(FastqError):
    """Another SegmentLog (in this or another process) has the directory open for writing."""


class LogFailedError(FastqError, OSError):
    """A sync failed: the log refuses writes until it is reopened (nothing unsynced is acked).

    Also an :class:`OSError`: ``errno`` is the failed sync's error number (``EIO``...) and
    ``filename`` the file or directory it was syncing.
    """


class OffsetOutOfRange(FastqError):
    """An offset outside the log's range (before ``start_offset`` or after ``end_offset``)."""


class InvalidReceipt(FastqError):
    """A receipt that no longer (or never) names a delivery in flight on this queue: the lease
    expired, the message was already acked or nacked, or the receipt is another queue's.
    A late ack never settles a redelivered copy."""


class CodecError(FastqError, ValueError):
    """A payload codec is unknown here, or refused (pickle is only read when asked for)."""


class Overloaded(FastqError):
    """A producer refused a message to protect an overloaded target (``policy="shed"``, or
    ``policy="raise"`` / ``block`` past ``max_block``). ``reason`` says why (the depth against
    the watermark, or the rate limit), ``priority`` which class was refused."""

    def __init__(self, reason: str, *, priority: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.priority = priority

    def __reduce__(self) -> tuple[object, ...]:
        return (_overloaded, (self.reason, self.priority))


def _overloaded(reason: str, priority: str | None) -> Overloaded:
    return Overloaded(reason, priority=priority)


class Permanent(FastqError):
    """Raise (or wrap a cause in) this from a handler to say retrying cannot help: a consumer
    pool sends the message to the dead-letter queue at once, without using further attempts.
    ``raise fastq.Permanent("bad record") from exc`` keeps the cause for the DLQ entry."""


class BackendError(FastqError):
    """A storage backend refused or failed an operation for a reason retrying will not fix:
    a wrong password, a server that is not the expected kind, a server-side error. The message
    names the server (host:port) and never carries credentials."""


class BackendUnavailable(BackendError, ConnectionError):
    """The backend's server could not be reached within the configured time (reconnection
    with backoff and jitter was tried meanwhile). Names host:port, never credentials."""


class Unsupported(FastqError, NotImplementedError):
    """A backend lacks a capability that was asked for (``capability`` names it); raised at
    construction, before anything is stored."""

    def __init__(self, capability: str, backend: str, hint: str = "") -> None:
        self.capability = capability
        self.backend = backend
        text = f"the {backend} backend does not support {capability}"
        super().__init__(f"{text}: {hint}" if hint else text)
