"""The fastq exception hierarchy.

Everything fastq raises on purpose derives from :class:`FastqError`. Where the standard library
already has an exception users catch, ours subclasses it too, so existing code keeps working:
``except queue.Empty`` catches :class:`Empty`, ``except asyncio.QueueFull`` catches :class:`Full`.
"""

from __future__ import annotations

import asyncio
import queue

__all__ = ("Closed", "Empty", "FastqError", "Full")


class FastqError(Exception):
    """Base class of every error fastq raises on purpose."""


class Full(FastqError, queue.Full, asyncio.QueueFull):
    """No room: a non-blocking put found the queue full, or a put's timeout expired."""


class Empty(FastqError, queue.Empty, asyncio.QueueEmpty):
    """Nothing to take: a non-blocking get found the queue empty, or a get's timeout expired."""


class Closed(FastqError):
    """The queue is closed: no more puts; gets raise this once the queue is drained."""
