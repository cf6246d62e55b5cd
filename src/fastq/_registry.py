"""Where the objects with ``statistics()`` are found: a weak, thread-safe set of them.

Queues, topics, dead-letter queues, producers and consumer pools add themselves here when they
are made; :func:`fastq.metrics.registry` reads them. Only weak references are kept, so being
tracked never keeps an object alive.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any

__all__ = ("track", "tracked")

# single dict operations are atomic (a per-object lock on free-threaded builds), so the
# weakref callback, which may run inside any allocation, takes no lock of ours
_refs: dict[int, weakref.ref[Any]] = {}
_seq = itertools.count()
_seq_lock = threading.Lock()


def track(obj: object) -> None:
    """Remember ``obj`` (weakly) until it is garbage."""
    with _seq_lock:
        key = next(_seq)
    _refs[key] = weakref.ref(obj, lambda _, key=key: _refs.pop(key, None))  # type: ignore[misc]


def tracked() -> list[Any]:
    """The live tracked objects, oldest first."""
    return [o for o in (r() for r in list(_refs.values())) if o is not None]
