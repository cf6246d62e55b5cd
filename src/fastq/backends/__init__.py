"""Storage engines behind queues and topics: small, batch-first interfaces
(:class:`QueueEngine`, :class:`PartitionEngine`) with declared :class:`Capabilities`, so the
semantics layer never depends on where messages live. In process: :class:`MemoryEngine`
(native) and :class:`LogEngine` (the same, journalled to a SegmentLog) for queues;
:class:`MemoryPartition` and :class:`LogPartition` for topics. Across processes and machines:
:class:`RedisStreams` (Redis Streams, docs/redis.md)."""

from .base import Capabilities as Capabilities
from .base import QueueEngine as QueueEngine
from .log import LogEngine as LogEngine
from .memory import MemoryEngine as MemoryEngine
from .partition import LogPartition as LogPartition
from .partition import MemoryPartition as MemoryPartition
from .partition import PartitionEngine as PartitionEngine
from .redis import RedisStreams as RedisStreams

__all__ = (
    "Capabilities",
    "LogEngine",
    "LogPartition",
    "MemoryEngine",
    "MemoryPartition",
    "PartitionEngine",
    "QueueEngine",
    "RedisStreams",
)
