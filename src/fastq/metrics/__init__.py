"""Every fastq object's ``statistics()`` in one snapshot, by name.

``fastq.metrics.registry()`` is the default registry: it sees every live Queue, Topic (and its
consumer groups), DeadLetterQueue, Producer and ConsumerPool of the process (tracked weakly
when they are made). A :class:`Registry` of your own holds only what you register. Exporters
(:mod:`fastq.metrics.prometheus`) read snapshots; taking one does no I/O beyond a record
header per lagging topic partition.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from .._registry import tracked
from ..errors import Closed
from ..pipeline.pool import ConsumerPool, PoolStatistics
from ..pipeline.producer import Producer, ProducerStatistics
from ..semantics.dlq import DeadLetterQueue
from ..semantics.queue import Queue
from ..semantics.topic import Topic
from ..stats import (
    ConsumerGroupStatistics,
    DeadLetterStatistics,
    QueueStatistics,
    TopicStatistics,
)

__all__ = ("MetricsSnapshot", "Registry", "registry")

_KINDS: tuple[tuple[type[Any], str], ...] = (
    (Queue, "queues"),
    (Topic, "topics"),
    (DeadLetterQueue, "dead_letter_queues"),
    (Producer, "producers"),
    (ConsumerPool, "pools"),
)


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Statistics of every registered object, keyed by name (a second object with a name
    already seen gets ``name#2``, then ``#3``..., in creation order). ``consumer_groups`` is
    keyed ``"topic/group"``."""

    taken_at: float
    """``time.time()`` when the snapshot was taken."""
    queues: dict[str, QueueStatistics]
    topics: dict[str, TopicStatistics]
    consumer_groups: dict[str, ConsumerGroupStatistics]
    dead_letter_queues: dict[str, DeadLetterStatistics]
    producers: dict[str, ProducerStatistics]
    pools: dict[str, PoolStatistics]

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists and scalars (``json.dumps``-able; int dict keys stay ints)."""
        return dataclasses.asdict(self)


class Registry:
    """A set of objects whose statistics are snapshotted together.

    ``Registry()`` starts empty: :meth:`register` what it should see (held weakly).
    ``registry()`` returns the process-wide registry, which sees every fastq object.
    """

    def __init__(self, *, _all: bool = False) -> None:
        self._all = _all
        self._lock = threading.Lock()
        self._refs: list[weakref.ref[Any]] = []

    def register(self, obj: object) -> None:
        """Add a Queue, Topic, DeadLetterQueue, Producer or ConsumerPool (held weakly)."""
        if not isinstance(obj, tuple(k for k, _ in _KINDS)):
            raise TypeError(
                "obj must be a fastq Queue, Topic, DeadLetterQueue, Producer or ConsumerPool, "
                f"got {type(obj).__name__}"
            )
        with self._lock:
            if not any(r() is obj for r in self._refs):
                self._refs.append(weakref.ref(obj))

    def unregister(self, obj: object) -> None:
        """Forget ``obj`` (no error if it was not registered)."""
        with self._lock:
            self._refs = [r for r in self._refs if r() is not None and r() is not obj]

    def objects(self) -> list[Any]:
        """The live objects this registry sees, oldest first."""
        if self._all:
            return [o for o in tracked() if isinstance(o, tuple(k for k, _ in _KINDS))]
        with self._lock:
            self._refs = [r for r in self._refs if r() is not None]
            objs = [r() for r in self._refs]
        return [o for o in objs if o is not None]

    def named(self) -> list[tuple[str, str, Any]]:
        """``(kind, key, object)`` for every object, keyed as in :meth:`snapshot` (kind: the
        snapshot field, ``"queues"``, ``"pools"``...)."""
        keys: dict[str, dict[str, None]] = {attr: {} for _, attr in _KINDS}
        out = []
        for obj in self.objects():
            attr = next(a for k, a in _KINDS if isinstance(obj, k))
            key = _put(keys[attr], obj.name, None)
            out.append((attr, key, obj))
        return out

    def snapshot(self) -> MetricsSnapshot:
        """Every object's ``statistics()`` now."""
        out: dict[str, dict[str, Any]] = {attr: {} for _, attr in _KINDS}
        groups: dict[str, ConsumerGroupStatistics] = {}
        for attr, key, obj in self.named():
            stats = _statistics(obj)
            if stats is None:
                continue
            out[attr][key] = stats
            if isinstance(stats, TopicStatistics):
                for g, gs in stats.groups.items():
                    groups[f"{key}/{g}"] = gs  # key: the topic's (name, or name#2...)
        return MetricsSnapshot(
            taken_at=time.time(), consumer_groups=groups, **out
        )

    def __repr__(self) -> str:
        return f"Registry({'all' if self._all else len(self.objects())} objects)"


_default = Registry(_all=True)


def registry() -> Registry:
    """The process-wide registry: every live Queue, Topic, DeadLetterQueue, Producer and
    ConsumerPool."""
    return _default


def _put(d: dict[str, Any], name: str, value: Any) -> str:
    key, n = name, 1
    while key in d:
        n += 1
        key = f"{name}#{n}"
    d[key] = value
    return key


def _statistics(obj: Any) -> Any:
    """``obj.statistics()``, or None for an object closed so far that it answers no more (a
    durable topic whose partition logs are closed)."""
    try:
        return obj.statistics()
    except Closed:
        return None
