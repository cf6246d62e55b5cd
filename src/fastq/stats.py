"""Statistics snapshots: frozen dataclasses returned by ``statistics()`` methods."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = (
    "ConsumerGroupStatistics",
    "DeadLetterStatistics",
    "DedupStatistics",
    "HistogramSnapshot",
    "QueueStatistics",
    "TopicStatistics",
)


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


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    """A snapshot of a :class:`fastq.Queue` (``queue.statistics()``); no I/O, cheap."""

    name: str
    ready: int
    """Messages visible now, waiting for a consumer."""
    delayed: int
    """Messages scheduled for later (``delay=`` or ``nack(delay=)``)."""
    in_flight: int
    """Messages handed out and not yet settled (leased)."""
    dead_lettered: int
    """Messages this queue has moved to its dead-letter queue, in total."""
    oldest_ready_age: float | None
    """Seconds the oldest ready message has been waiting (None when none is ready)."""
    bytes: int
    """Payload bytes held (measured when ``max_bytes`` is set, else 0)."""
    put_total: int
    acked_total: int
    redelivered_total: int
    """Hand-outs that failed (lease ran out, or nack) and were made visible again."""
    nacked_total: int
    lease_expiries: int
    """Leases that ran out before the consumer settled them."""
    released_total: int
    """Deliveries given back untried (``release``): not counted as attempts."""
    deduplicated_total: int
    """Puts dropped as duplicates by the dedup window."""
    closed: bool
    throughput: float = 0.0
    """Messages acked per second over about the last 10 s (from ``statistics()`` calls)."""
    latency: HistogramSnapshot | None = None
    """Put to ack, per acked message (wall clock); None with ``Queue(metrics=False)``."""


@dataclass(frozen=True, slots=True)
class DeadLetterStatistics:
    """A snapshot of a :class:`fastq.DeadLetterQueue`."""

    name: str
    size: int
    """Entries held now."""
    added_total: int
    dropped_total: int
    """Oldest entries dropped because the queue held ``maxsize``."""
    by_reason: dict[str, int]
    """Entries held now, by reason (``max_deliveries``, ``expired``, ``rejected``,
    ``permanent``, ``max_attempts``)."""
    growth_rate: float = 0.0
    """Entries added per second over about the last 10 s (from ``statistics()`` calls)."""


@dataclass(frozen=True, slots=True)
class ConsumerGroupStatistics:
    """A consumer group of a :class:`fastq.Topic` (``topic.group_statistics(group)``,
    ``consumer.statistics()``)."""

    topic: str
    group: str
    members: int
    """Members joined in this process."""
    committed: dict[int, int | None]
    """Committed offset per partition (None: nothing committed there)."""
    lag: dict[int, int]
    """Records per partition not yet committed past."""
    total_lag: int
    oldest_uncommitted_age: float | None
    """Seconds since the oldest record the group has not committed past was published, over
    all partitions (None: no lag)."""


@dataclass(frozen=True, slots=True)
class TopicStatistics:
    """A snapshot of a :class:`fastq.Topic` (``topic.statistics()``); no I/O."""

    name: str
    partitions: int
    start_offsets: dict[int, int]
    end_offsets: dict[int, int]
    records: int
    """Records held over all partitions (end - start)."""
    throughput: float
    """Records published per second over about the last 10 s (from ``statistics()`` calls)."""
    groups: dict[str, ConsumerGroupStatistics]
    """Every group known here: joined in this process or, when durable, committed on disk."""
    closed: bool


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A snapshot of a :class:`fastq.Histogram` (``histogram.snapshot()``). Times in seconds;
    every field is 0 when the snapshot holds no values. Percentiles are the highest value of
    their bucket, at most ``max`` (<= 0.78% above the exact value)."""

    count: int
    """Values recorded (overflows included)."""
    sum_seconds: float
    min: float
    max: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    sum_ns: int
    """The exact sum, in integer nanoseconds."""
    overflow: int
    """Values above the histogram's ``highest`` (counted as ``highest``)."""
