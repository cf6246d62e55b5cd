"""Pure-Python reference models for differential and stateful tests (no threads, no blocking)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

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
