"""Per-producer sequence numbers and consumer-side gap detection.

A producer stamps each message with its id and a sequence number (:class:`Sequencer`, two
headers); a consumer feeds what it reads to a :class:`GapDetector`, which releases messages in
sequence order per producer, reports gaps (numbers that never came) and drops duplicates. A
bounded reorder buffer waits up to ``gap_timeout`` for late messages before declaring a gap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .._core import Message

__all__ = ("PRODUCER_HEADER", "SEQUENCE_HEADER", "Gap", "GapDetector", "Sequencer")

PRODUCER_HEADER = "fastq-producer"
SEQUENCE_HEADER = "fastq-seq"


class Sequencer:
    """Stamps messages of one producer with consecutive sequence numbers from ``start``."""

    def __init__(self, producer_id: str, *, start: int = 0) -> None:
        if not isinstance(producer_id, str) or not producer_id:
            raise TypeError(f"producer_id must be a non-empty str, got {producer_id!r}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"start must be an int >= 0, got {start!r}")
        self.producer_id = producer_id
        self._next = start
        self._lock = threading.Lock()

    def stamp(self, message: Message) -> Message:
        """A copy of ``message`` carrying this producer's id and its next sequence number."""
        if not isinstance(message, Message):
            message = Message(message)
        with self._lock:
            seq = self._next
            self._next += 1
        headers = dict(message.headers)
        headers[PRODUCER_HEADER] = self.producer_id
        headers[SEQUENCE_HEADER] = str(seq)
        return message.replace(headers=headers)


@dataclass(frozen=True, slots=True)
class Gap:
    """Sequence numbers ``first..last`` (inclusive) of ``producer`` that never arrived."""

    producer: str
    first: int
    last: int


class GapDetector:
    """Releases sequenced messages in order per producer; see the module docstring.

    ``reorder_buffer``: how many out-of-order messages to hold per producer while waiting for
    a missing one (0: report the gap at once); ``gap_timeout``: seconds (on ``clock``) a held
    message waits before the gap in front of it is declared (checked by :meth:`feed` and
    :meth:`expire`). The first message seen from a producer sets where it starts. Messages
    without the two headers pass straight through. A message that arrives after its gap was
    declared is counted in ``duplicates`` and dropped (its place in the order is gone).
    Thread-safe.
    """

    def __init__(
        self,
        *,
        reorder_buffer: int = 0,
        gap_timeout: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if isinstance(reorder_buffer, bool) or not isinstance(reorder_buffer, int):
            raise TypeError(f"reorder_buffer must be an int, got {type(reorder_buffer).__name__}")
        if reorder_buffer < 0:
            raise ValueError(f"reorder_buffer must be >= 0, got {reorder_buffer!r}")
        if gap_timeout is not None and not (
            isinstance(gap_timeout, (int, float)) and gap_timeout >= 0
        ):
            raise ValueError(f"gap_timeout must be a number >= 0 or None, got {gap_timeout!r}")
        self.reorder_buffer = reorder_buffer
        self.gap_timeout = gap_timeout
        self._clock = clock or time.monotonic
        self._expected: dict[str, int] = {}
        self._held: dict[str, dict[int, tuple[float, Message]]] = {}
        self.gaps: list[Gap] = []
        self.duplicates = 0
        self._lock = threading.Lock()

    def feed(self, message: Message) -> list[Message]:
        """Offer one message; returns the messages now released, in order."""
        headers = message.headers
        producer = headers.get(PRODUCER_HEADER)
        raw = headers.get(SEQUENCE_HEADER)
        if producer is None or raw is None:
            return [message]
        try:
            seq = int(raw)
        except ValueError:
            raise ValueError(
                f"message {message.id}: {SEQUENCE_HEADER}={raw!r} is not an int"
            ) from None
        with self._lock:
            out: list[Message] = []
            expected = self._expected.setdefault(producer, seq)
            held = self._held.setdefault(producer, {})
            if seq < expected or seq in held:
                self.duplicates += 1
            elif seq == expected:
                out.append(message)
                self._expected[producer] = seq + 1
                self._drain(producer, out)
            elif self.reorder_buffer == 0:
                self.gaps.append(Gap(producer, expected, seq - 1))
                out.append(message)
                self._expected[producer] = seq + 1
            else:
                held[seq] = (self._clock(), message)
                if len(held) > self.reorder_buffer:
                    self._skip(producer, out)
            self._expire(out)
            return out

    def expire(self) -> list[Message]:
        """Declare the gaps whose held messages waited longer than ``gap_timeout``; returns
        the messages that releases."""
        with self._lock:
            out: list[Message] = []
            self._expire(out)
            return out

    def _expire(self, out: list[Message]) -> None:
        if self.gap_timeout is None:
            return
        now = self._clock()
        for producer, held in self._held.items():
            while held and now - min(t for t, _ in held.values()) >= self.gap_timeout:
                self._skip(producer, out)

    def _skip(self, producer: str, out: list[Message]) -> None:
        """Give up on the missing numbers before the lowest held one."""
        held = self._held[producer]
        low = min(held)
        self.gaps.append(Gap(producer, self._expected[producer], low - 1))
        self._expected[producer] = low
        self._drain(producer, out)

    def _drain(self, producer: str, out: list[Message]) -> None:
        held = self._held[producer]
        nxt = self._expected[producer]
        while nxt in held:
            out.append(held.pop(nxt)[1])
            nxt += 1
        self._expected[producer] = nxt

    def held(self) -> int:
        """Messages waiting in the reorder buffers."""
        with self._lock:
            return sum(len(h) for h in self._held.values())
