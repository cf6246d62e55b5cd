"""Delivery semantics over the storage engines: the work queue (and its dead-letter queue)."""

from .dlq import DeadLetter as DeadLetter
from .dlq import DeadLetterQueue as DeadLetterQueue
from .queue import Queue as Queue

__all__ = ("DeadLetter", "DeadLetterQueue", "Queue")
