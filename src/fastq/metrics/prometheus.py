"""Prometheus exposition of fastq's statistics (the ``prometheus`` extra).

``FastqCollector(registry)`` is a custom collector (``prometheus_client.REGISTRY.register``)
that turns each snapshot into metric families with conventional names: counters end in
``_total``, times are in seconds, one label per object (``queue``, ``topic``, ``group``,
``partition``, ``pool``, ``producer``, ``dlq``). :func:`register` adds it to a
prometheus_client registry; :func:`serve` also starts prometheus_client's HTTP server.
The full list of names is in docs/operations.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from . import MetricsSnapshot, Registry, registry

__all__ = ("Exporter", "FastqCollector", "register", "serve")

_BREAKER_STATES = ("closed", "open", "half_open")

#: histogram bucket bounds, seconds (the default Prometheus buckets, extended both ways)
BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)


class FastqCollector(Collector):
    """Collects ``registry`` (default: every fastq object of the process) at each scrape."""

    def __init__(self, registry: Registry | None = None) -> None:
        if registry is not None and not isinstance(registry, Registry):
            raise TypeError(
                f"registry must be a fastq.metrics.Registry, got {type(registry).__name__}"
            )
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        reg = self.registry if self.registry is not None else registry()
        snap = reg.snapshot()
        yield from _queue_families(snap)
        yield from _topic_families(snap)
        yield from _dlq_families(snap)
        yield from _producer_families(snap)
        yield from _pool_families(snap)
        named = reg.named()
        queues = [(key, obj) for kind, key, obj in named if kind == "queues"]
        yield from _queue_histograms(queues, snap)
        pools = [(key, obj) for kind, key, obj in named if kind == "pools"]
        yield from _pool_histograms(pools, snap)

    def describe(self) -> list[Any]:
        return []  # unchecked collector: families depend on what exists at scrape time


def register(
    registry: Registry | None = None, *, into: CollectorRegistry | None = None
) -> FastqCollector:
    """Register a :class:`FastqCollector` into ``into`` (default: prometheus_client's global
    ``REGISTRY``) and return it."""
    collector = FastqCollector(registry)
    (REGISTRY if into is None else into).register(collector)
    return collector


class Exporter:
    """What :func:`serve` started: the ``collector``, the HTTP ``port`` it listens on (the
    one chosen when 0 was asked) and :meth:`close` to stop serving and unregister."""

    def __init__(
        self, collector: FastqCollector, into: CollectorRegistry, server: Any, thread: Any
    ) -> None:
        self.collector = collector
        self.port: int = int(server.server_address[1])
        self._into = into
        self._server = server
        self._thread = thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        with contextlib.suppress(KeyError):
            self._into.unregister(self.collector)

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    port: int = 9464,
    addr: str = "0.0.0.0",
    *,
    registry: Registry | None = None,
    into: CollectorRegistry | None = None,
) -> Exporter:
    """Start prometheus_client's HTTP server on ``addr:port`` (a daemon thread; ``port=0``
    picks a free one) exposing ``into`` (default: the global ``REGISTRY``) with a
    :class:`FastqCollector` registered in it. Returns the :class:`Exporter` (``close()``
    stops it); if the server cannot start, nothing stays registered."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, got {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port!r}")
    target = REGISTRY if into is None else into
    collector = register(registry, into=target)
    try:
        server, thread = start_http_server(port, addr=addr, registry=target)
    except BaseException:
        target.unregister(collector)
        raise
    return Exporter(collector, target, server, thread)


# ---- families --------------------------------------------------------------------------


def _g(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _c(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    # prometheus_client appends _total to a counter's samples; the family name goes without
    return CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)


def _queue_families(snap: MetricsSnapshot) -> Iterator[Any]:
    ready = _g("fastq_queue_messages_ready", "Messages visible, waiting for a consumer.", ["queue"])
    delayed = _g("fastq_queue_messages_delayed", "Messages scheduled for later.", ["queue"])
    inflight = _g("fastq_queue_messages_in_flight", "Messages leased, not yet settled.", ["queue"])
    age = _g(
        "fastq_queue_oldest_message_age_seconds",
        "Age of the oldest ready message (0 when none is ready).",
        ["queue"],
    )
    rate = _g("fastq_queue_throughput", "Messages acked per second (last ~10 s).", ["queue"])
    counters = {
        "put_total": _c("fastq_queue_messages_put_total", "Messages put.", ["queue"]),
        "acked_total": _c("fastq_queue_messages_acked_total", "Messages acked.", ["queue"]),
        "nacked_total": _c("fastq_queue_messages_nacked_total", "Messages nacked.", ["queue"]),
        "redelivered_total": _c(
            "fastq_queue_messages_redelivered_total",
            "Hand-outs made visible again (lease ran out or nack).",
            ["queue"],
        ),
        "released_total": _c(
            "fastq_queue_messages_released_total", "Deliveries given back untried.", ["queue"]
        ),
        "lease_expiries": _c(
            "fastq_queue_lease_expiries_total", "Leases that ran out.", ["queue"]
        ),
        "dead_lettered": _c(
            "fastq_queue_messages_dead_lettered_total",
            "Messages moved to the dead-letter queue.",
            ["queue"],
        ),
        "deduplicated_total": _c(
            "fastq_queue_messages_deduplicated_total",
            "Puts dropped as duplicates.",
            ["queue"],
        ),
    }
    for key, s in snap.queues.items():
        ready.add_metric([key], s.ready)
        delayed.add_metric([key], s.delayed)
        inflight.add_metric([key], s.in_flight)
        age.add_metric([key], s.oldest_ready_age or 0.0)
        rate.add_metric([key], s.throughput)
        for attr, fam in counters.items():
            fam.add_metric([key], getattr(s, attr))
    yield from (ready, delayed, inflight, age, rate, *counters.values())


def _topic_families(snap: MetricsSnapshot) -> Iterator[Any]:
    end = _g("fastq_topic_end_offset", "Offset the next record gets.", ["topic", "partition"])
    start = _g("fastq_topic_start_offset", "Oldest retained offset.", ["topic", "partition"])
    records = _g("fastq_topic_records", "Records retained over all partitions.", ["topic"])
    rate = _g("fastq_topic_throughput", "Records published per second (last ~10 s).", ["topic"])
    lag = _g(
        "fastq_consumergroup_lag",
        "Records a consumer group has not committed past.",
        ["topic", "group", "partition"],
    )
    committed = _g(
        "fastq_consumergroup_committed_offset",
        "A consumer group's committed offset (absent: nothing committed).",
        ["topic", "group", "partition"],
    )
    members = _g("fastq_consumergroup_members", "Members joined in this process.",
                 ["topic", "group"])
    age = _g(
        "fastq_consumergroup_oldest_uncommitted_age_seconds",
        "Age of the oldest record a group has not committed past (0: no lag).",
        ["topic", "group"],
    )
    for key, s in snap.topics.items():
        records.add_metric([key], s.records)
        rate.add_metric([key], s.throughput)
        for p, off in s.end_offsets.items():
            end.add_metric([key, str(p)], off)
            start.add_metric([key, str(p)], s.start_offsets[p])
        for g, gs in s.groups.items():
            members.add_metric([key, g], gs.members)
            age.add_metric([key, g], gs.oldest_uncommitted_age or 0.0)
            for p, n in gs.lag.items():
                lag.add_metric([key, g, str(p)], n)
                c = gs.committed[p]
                if c is not None:
                    committed.add_metric([key, g, str(p)], c)
    yield from (end, start, records, rate, lag, committed, members, age)


def _dlq_families(snap: MetricsSnapshot) -> Iterator[Any]:
    size = _g("fastq_dlq_messages", "Entries held in a dead-letter queue.", ["dlq"])
    growth = _g("fastq_dlq_growth_rate", "Entries added per second (last ~10 s).", ["dlq"])
    added = _c("fastq_dlq_messages_added_total", "Entries added.", ["dlq"])
    dropped = _c("fastq_dlq_messages_dropped_total", "Oldest entries dropped at maxsize.", ["dlq"])
    by_reason = _g("fastq_dlq_messages_by_reason", "Entries held, by reason.", ["dlq", "reason"])
    for key, s in snap.dead_letter_queues.items():
        size.add_metric([key], s.size)
        growth.add_metric([key], s.growth_rate)
        added.add_metric([key], s.added_total)
        dropped.add_metric([key], s.dropped_total)
        for reason, n in sorted(s.by_reason.items()):
            by_reason.add_metric([key, reason], n)
    yield from (size, growth, added, dropped, by_reason)


def _producer_families(snap: MetricsSnapshot) -> Iterator[Any]:
    sent = _c("fastq_producer_messages_sent_total", "Messages sent.", ["producer"])
    shed = _c(
        "fastq_producer_messages_shed_total",
        "Messages refused by load shedding, by priority.",
        ["producer", "priority"],
    )
    blocked = _c(
        "fastq_producer_blocked_seconds_total", "Time sends waited for room.", ["producer"]
    )
    invalid = _c(
        "fastq_producer_validation_errors_total", "Messages rejected by the schema.", ["producer"]
    )
    rate = _g("fastq_producer_throughput", "Messages sent per second (last ~10 s).",
              ["producer"])
    for key, s in snap.producers.items():
        sent.add_metric([key], s.sent)
        blocked.add_metric([key], s.blocked_seconds)
        invalid.add_metric([key], s.validation_errors)
        rate.add_metric([key], s.throughput)
        for prio, n in s.shed.items():
            shed.add_metric([key, prio], n)
    yield from (sent, shed, blocked, invalid, rate)


def _pool_families(snap: MetricsSnapshot) -> Iterator[Any]:
    lab = ["pool", "source"]
    processed = _c(
        "fastq_messages_processed_total", "Handler calls that returned.", lab
    )
    failed = _c(
        "fastq_messages_failed_total", "Handler calls that raised, by exception type.",
        [*lab, "error_type"],
    )
    retried = _c("fastq_messages_retried_total", "Failed messages nacked for a retry.", lab)
    dead = _c("fastq_messages_dead_lettered_total", "Messages a pool dead-lettered.", lab)
    released = _c("fastq_messages_released_total", "Messages given back untried.", lab)
    dups = _c("fastq_messages_duplicates_total", "Repeats skipped by the idempotency ledger.",
              lab)
    lost = _c("fastq_pool_lost_leases_total", "Settlements refused: lease already gone.", lab)
    limit = _g("fastq_pool_concurrency_limit", "The adaptive concurrency limit now.", lab)
    busy = _g("fastq_pool_busy_workers", "Workers running a batch now.", lab)
    rate = _g("fastq_pool_throughput", "Messages processed per second (last ~10 s).", lab)
    ewma = _g("fastq_pool_handler_seconds_ewma", "Smoothed handler time per message.", lab)
    breaker = _g(
        "fastq_circuit_breaker_state", "1 for the breaker's current state, else 0.",
        [*lab, "state"],
    )
    for key, s in snap.pools.items():
        lv = [key, s.source]
        processed.add_metric(lv, s.processed)
        for err, n in sorted(s.errors.items()):
            failed.add_metric([*lv, err], n)
        retried.add_metric(lv, s.retried)
        dead.add_metric(lv, s.dead_lettered)
        released.add_metric(lv, s.released)
        dups.add_metric(lv, s.duplicates)
        lost.add_metric(lv, s.lost_leases)
        limit.add_metric(lv, s.limit)
        busy.add_metric(lv, s.busy)
        rate.add_metric(lv, s.throughput)
        ewma.add_metric(lv, s.handler_seconds_ewma)
        if s.breaker_state is not None:
            for st in _BREAKER_STATES:
                breaker.add_metric([*lv, st], 1.0 if s.breaker_state == st else 0.0)
    yield from (processed, failed, retried, dead, released, dups, lost, limit, busy, rate, ewma,
                breaker)


def _buckets(hist: Any) -> tuple[list[tuple[str, float]], float]:
    """A histogram's cumulative buckets at BUCKETS (+Inf last) and its sum in seconds."""
    counts = hist.cumulative(BUCKETS)
    s = hist.snapshot()
    total = max(s.count, counts[-1] if counts else 0)
    buckets = [(f"{b:g}", float(c)) for b, c in zip(BUCKETS, counts, strict=True)]
    buckets.append(("+Inf", float(total)))
    return buckets, s.sum_seconds


def _queue_histograms(queues: list[tuple[str, Any]], snap: MetricsSnapshot) -> Iterator[Any]:
    fam = HistogramMetricFamily(
        "fastq_queue_latency_seconds", "Put to ack, per acked message.", labels=["queue"]
    )
    for key, q in queues:
        if key in snap.queues and q.latency is not None:
            buckets, total = _buckets(q.latency)
            fam.add_metric([key], buckets, total)
    yield fam


def _pool_histograms(pools: list[tuple[str, Any]], snap: MetricsSnapshot) -> Iterator[Any]:
    lab = ["pool", "source"]
    proc = HistogramMetricFamily(
        "fastq_processing_seconds", "Handler call durations.", labels=lab
    )
    e2e = HistogramMetricFamily(
        "fastq_end_to_end_seconds",
        "Put to ack (a queue source: its queue's latency) or publish to commit (topics).",
        labels=lab,
    )
    for key, pool in pools:
        stats = snap.pools.get(key)
        if stats is None:
            continue
        for fam, hist in ((proc, pool.handler_latency), (e2e, pool.end_to_end_latency)):
            if hist is None:
                continue
            buckets, total = _buckets(hist)
            fam.add_metric([key, stats.source], buckets, total)
    yield from (proc, e2e)
