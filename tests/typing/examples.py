"""Typed usage of the public API, checked by mypy from the user's side (tests/typing).

Each `reveal_type` line carries the expected type after `# revealed:`; test_typing.py runs
mypy on this file and compares.
"""

from __future__ import annotations

import asyncio

from typing_extensions import reveal_type

import fastq

ring: fastq.RingBuffer[int] = fastq.RingBuffer(8)
reveal_type(ring)  # revealed: fastq._core.RingBuffer[int]
reveal_type(ring.get())  # revealed: int
reveal_type(ring.get_nowait())  # revealed: int
reveal_type(ring.get_many(10))  # revealed: list[int]
reveal_type(ring.put_many([1, 2, 3]))  # revealed: int
reveal_type(ring.capacity)  # revealed: int
reveal_type(ring.closed)  # revealed: bool
reveal_type(ring.qsize())  # revealed: int

with fastq.RingBuffer[str](4) as strings:
    reveal_type(strings)  # revealed: fastq._core.RingBuffer[str]
    for s in strings:
        reveal_type(s)  # revealed: str


async def consume(r: fastq.RingBuffer[bytes]) -> None:
    reveal_type(await r.aget())  # revealed: bytes
    reveal_type(await r.aget_many(4))  # revealed: list[bytes]
    await r.aput(b"x")


try:
    ring.put_nowait(1)
except fastq.Full as exc:
    reveal_type(exc)  # revealed: fastq.errors.Full

asyncio.run(consume(fastq.RingBuffer(2)))
