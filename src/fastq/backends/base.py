"""The storage-engine interface of a work queue."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .._core import Delivery, Message

__all__ = ("Capabilities", "QueueEngine", "SharedQueueEngine")


@dataclass(frozen=True)
class Capabilities:
    """What an engine does itself; the queue emulates the rest or refuses it clearly."""

    durable: bool = False
    delay: bool = True  # delayed delivery and nack(delay=)
    priorities: bool = True  # the four priority classes with aging
    delivery_counter: bool = True  # attempts survive hand-outs
    dead_letter: bool = True  # moves exhausted messages aside itself
    native_dedup: bool = False  # idempotency keys checked by the engine
    shared: bool = False  # several processes (and machines) may use one queue or topic


class QueueEngine(Protocol):
    """Non-blocking, batch-first operations; waiting is the queue's job. Receipts are opaque
    ints; a stale one raises :class:`fastq.InvalidReceipt`. Times are seconds on the queue's
    clock."""

    on_room: Any
    room_waiters: int

    def offer(self, message: Message, delay: float = 0.0) -> bool: ...

    def offer_many(self, messages: Iterable[Message], delay: float = 0.0) -> int: ...

    def poll(self) -> Delivery | None: ...

    def poll_many(self, max_messages: int) -> list[Delivery]: ...

    def ack(self, receipt: int) -> None: ...

    def ack_many(self, receipts: Iterable[int]) -> None: ...

    def nack(self, receipt: int, delay: float | None = None, error: object = None) -> bool: ...

    def release(self, receipt: int, delay: float | None = None) -> None: ...

    def reject(self, receipt: int, reason: str = "permanent", error: object = None) -> None: ...

    def extend(self, receipt: int, seconds: float) -> float: ...

    def take_dead(self) -> Sequence[tuple[Any, ...]]: ...

    @property
    def dead_pending(self) -> bool: ...

    def purge(self) -> int: ...

    def now(self) -> float: ...

    def next_due(self) -> float | None: ...

    def counts(self) -> tuple[Any, ...]: ...

    def __len__(self) -> int: ...


class SharedQueueEngine(QueueEngine, Protocol):
    """An engine whose state lives outside this process (a server), shared with others: its
    changes are not signalled here, so the queue waits by :meth:`wait`, and one call carries a
    whole batch (a round trip costs more than anything done per message). Receipts are still
    opaque ints (the engine keeps what names the hand-out on the server); staleness is
    decided by the server, so a receipt whose lease ran out and went to another process is
    refused there."""

    def put_many(self, messages: Sequence[Message], delay: float = 0.0) -> list[Any]:
        """Store in order until full: per message stored, 1, or the first message's id when
        the engine's dedup window dropped it."""
        ...

    def wait(self, seconds: float) -> None:
        """Block up to ``seconds`` (the engine may return sooner) for something to get."""
        ...

    def delete(self) -> None: ...
