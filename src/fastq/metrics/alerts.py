"""Threshold alerts over the metrics: depth, oldest-message age, consumer lag, DLQ growth.

``Alerts(registry)`` holds rules; :meth:`Alerts.check` takes one snapshot, evaluates every
rule against every matching object and calls the rule's callback on each transition: once
when a value has stayed above its threshold for ``for_seconds`` (``firing=True``), once when it
is back at or below it (``firing=False``). :meth:`Alerts.start` runs ``check`` on a daemon
thread every ``interval`` seconds; tests call ``check`` directly with a fake clock.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from ..logs import logger
from . import MetricsSnapshot, Registry, registry

__all__ = ("AlertEvent", "Alerts", "Metric")

Metric = Literal["depth", "age", "lag", "dlq_growth", "dlq_size"]
_METRICS = ("depth", "age", "lag", "dlq_growth", "dlq_size")


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """What a callback gets: which rule, on which object, the value and whether the alert
    starts (``firing=True``) or ends."""

    rule: str
    metric: str
    subject: str
    """The object's name in the snapshot (a queue, ``topic/group``, a dead-letter queue)."""
    value: float
    threshold: float
    firing: bool
    at: float
    """``time.time()`` of the check that saw it."""


@dataclass(slots=True)
class _Rule:
    name: str
    metric: str
    above: float
    callback: Callable[[AlertEvent], object]
    subject: str
    for_seconds: float
    since: dict[str, float]
    firing: set[str]


class Alerts:
    """Rules that fire callbacks on thresholds (see the module docstring).

    ``add(metric, above, callback, *, subject="*", for_seconds=0.0, name=None)`` with metric:

    * ``"depth"``: a queue's ready + delayed + in-flight messages;
    * ``"age"``: a queue's oldest ready message, seconds;
    * ``"lag"``: a consumer group's total lag (subject ``"topic/group"``), records;
    * ``"dlq_size"``: entries held in a dead-letter queue;
    * ``"dlq_growth"``: entries added to a dead-letter queue per second (last ~10 s).

    ``subject`` is a glob on the object's name. A callback that raises does not stop the
    others; the error is logged on the ``fastq.alerts`` logger.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if registry is not None and not isinstance(registry, Registry):
            raise TypeError(
                f"registry must be a fastq.metrics.Registry, got {type(registry).__name__}"
            )
        self._registry = registry
        self._clock = clock
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def add(
        self,
        metric: Metric,
        above: float,
        callback: Callable[[AlertEvent], object],
        *,
        subject: str = "*",
        for_seconds: float = 0.0,
        name: str | None = None,
    ) -> None:
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {', '.join(_METRICS)}; got {metric!r}")
        if isinstance(above, bool) or not isinstance(above, (int, float)) or above != above:
            raise TypeError(f"above must be a number, got {above!r}")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        if not isinstance(subject, str):
            raise TypeError(f"subject must be a str (a glob), got {type(subject).__name__}")
        if isinstance(for_seconds, bool) or not isinstance(for_seconds, (int, float)):
            raise TypeError(f"for_seconds must be a number, got {for_seconds!r}")
        if not for_seconds >= 0:
            raise ValueError(f"for_seconds must be >= 0, got {for_seconds!r}")
        rule = _Rule(
            name=name if name is not None else f"{metric}>{above:g}",
            metric=metric,
            above=float(above),
            callback=callback,
            subject=subject,
            for_seconds=float(for_seconds),
            since={},
            firing=set(),
        )
        with self._lock:
            self._rules.append(rule)

    def check(self) -> list[AlertEvent]:
        """Evaluate every rule now; returns the events fired (in rule order)."""
        snap = (self._registry if self._registry is not None else registry()).snapshot()
        now = self._clock()
        fired: list[tuple[_Rule, AlertEvent]] = []
        with self._lock:  # rule state changes under the lock; callbacks run outside it
            rules = list(self._rules)
            for rule in rules:
                seen: set[str] = set()
                for subject, value in _values(snap, rule.metric):
                    if not fnmatch.fnmatchcase(subject, rule.subject):
                        continue
                    seen.add(subject)
                    if value > rule.above:
                        start = rule.since.setdefault(subject, now)
                        if subject not in rule.firing and now - start >= rule.for_seconds:
                            rule.firing.add(subject)
                            fired.append((rule, self._event(rule, subject, value, True, snap)))
                    else:
                        rule.since.pop(subject, None)
                        if subject in rule.firing:
                            rule.firing.discard(subject)
                            fired.append((rule, self._event(rule, subject, value, False, snap)))
                for gone in set(rule.since) - seen:  # the object went away: forget it quietly
                    rule.since.pop(gone, None)
                    rule.firing.discard(gone)
        for rule, ev in fired:
            try:
                rule.callback(ev)
            except Exception:
                logger("alerts").exception("alert callback of rule %r raised", ev.rule)
        return [ev for _, ev in fired]

    def start(self, interval: float = 1.0) -> Alerts:
        """Run :meth:`check` every ``interval`` seconds on a daemon thread."""
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            raise TypeError(f"interval must be a number, got {interval!r}")
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        if self._thread is not None:
            raise RuntimeError("the alerts are already running")
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(interval):
                self.check()

        self._thread = threading.Thread(target=run, name="fastq-alerts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread :meth:`start` made (a callback may call this: it then returns
        without waiting for its own thread)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @staticmethod
    def _event(
        rule: _Rule, subject: str, value: float, firing: bool, snap: MetricsSnapshot
    ) -> AlertEvent:
        return AlertEvent(rule.name, rule.metric, subject, value, rule.above, firing,
                          snap.taken_at)


def _values(snap: MetricsSnapshot, metric: str) -> Iterator[tuple[str, float]]:
    if metric == "depth":
        for k, q in snap.queues.items():
            yield k, float(q.ready + q.delayed + q.in_flight)
    elif metric == "age":
        for k, q in snap.queues.items():
            yield k, q.oldest_ready_age or 0.0
    elif metric == "lag":
        for k, g in snap.consumer_groups.items():
            yield k, float(g.total_lag)
    elif metric == "dlq_size":
        for k, d in snap.dead_letter_queues.items():
            yield k, float(d.size)
    else:
        for k, d in snap.dead_letter_queues.items():
            yield k, d.growth_rate
