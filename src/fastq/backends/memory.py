"""The in-memory engine: the native work-queue state machine (``_c/fq_wq.h``)."""

from __future__ import annotations

from .._core import MemoryQueue
from .base import Capabilities

__all__ = ("MEMORY_CAPABILITIES", "MemoryEngine")

MEMORY_CAPABILITIES = Capabilities()

MemoryEngine = MemoryQueue
"""The in-memory engine class (native): see :class:`fastq._core.MemoryQueue`."""
