"""Statistics snapshots: frozen dataclasses returned by ``statistics()`` methods."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("DedupStatistics",)


@dataclass(frozen=True, slots=True)
class DedupStatistics:
    """A snapshot of a :class:`fastq.DedupWindow` (``window.statistics()``)."""

    size: int
    """Keys remembered now (expired ones are not counted)."""
    max_keys: int
    """The most keys held at once."""
    ttl: float
    """Seconds a key is remembered after its insertion."""
    exact: bool
    """Whether key bytes are kept and compared."""
    inserted: int
    """Keys inserted since the window was created (``seen`` returned False)."""
    hits: int
    """Duplicates caught (``seen`` returned True)."""
    evictions: int
    """Keys dropped early because the window held ``max_keys``."""
    expiries: int
    """Keys dropped because their ``ttl`` ran out."""
    memory_bytes: int
    """Bytes of memory the window holds (ring, index and, if exact, key bytes)."""
