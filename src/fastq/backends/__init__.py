"""Storage engines behind queues and topics: one small, batch-first interface
(:class:`QueueEngine`) with declared :class:`Capabilities`, so the semantics layer never
depends on where messages live. In process: :class:`MemoryEngine` (native). A real broker
plugs in here later (docs/backends.md)."""

from .base import Capabilities as Capabilities
from .base import QueueEngine as QueueEngine
from .memory import MemoryEngine as MemoryEngine

__all__ = ("Capabilities", "MemoryEngine", "QueueEngine")
