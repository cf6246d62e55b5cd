"""Metrics read from durable directories on disk, for an exporter running beside a service.

``fastq metrics serve DIR...`` uses this: each scrape opens every segment log read-only (no
lock taken, nothing written) and reports its offsets and size and, per consumer group, the
committed offset and lag. A DIR is a log directory (segment files) or a durable topic's
directory (partition logs ``p0``, ``p1``...); a durable queue's journal is a log too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core import SegmentLog

__all__ = ("DirectoryCollector", "LogReading", "read_directory")


@dataclass(frozen=True, slots=True)
class LogReading:
    """One log as read from disk."""

    name: str
    """The directory's name; ``topic/pN`` for a topic partition."""
    topic: str | None
    partition: int | None
    start_offset: int
    end_offset: int
    segments: int
    size_bytes: int
    groups: dict[str, int]
    """Committed offset per consumer group."""

    def lag(self, group: str) -> int:
        """Records ``group`` has not committed past (from the start if it committed nothing
        still retained)."""
        return self.end_offset - max(self.groups.get(group, self.start_offset), self.start_offset)


_SEGMENT = re.compile(r"^\d{20}\.log$")
_PARTITION = re.compile(r"^p(\d+)$")


def log_directories(path: str | os.PathLike[str]) -> list[tuple[int | None, str]]:
    """``(partition, log directory)``: ``[(None, path)]`` for a segment log, the ``p<N>``
    partition logs (by N) of a topic directory. Raises FileNotFoundError, or ValueError when
    the directory holds neither segment files nor partition logs."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such directory")
    names = os.listdir(root)
    if any(_SEGMENT.match(n) for n in names):
        return [(None, root)]
    parts: list[tuple[int | None, str]] = []
    for n in names:
        m = _PARTITION.match(n)
        if m and os.path.isdir(os.path.join(root, n)):
            parts.append((int(m.group(1)), os.path.join(root, n)))
    if not parts:
        raise ValueError(f"{root}: neither a segment log nor a topic (no *.log, no p0/ ...)")
    return sorted(parts, key=lambda pd: pd[0] or 0)


def read_directory(path: str | os.PathLike[str]) -> list[LogReading]:
    """Read a log or topic directory (read-only); errors as :func:`log_directories`."""
    root = Path(path)
    return [
        _read(Path(d), root.name if p is None else f"{root.name}/p{p}",
              None if p is None else root.name, p)
        for p, d in log_directories(root)
    ]


def _read(path: Path, name: str, topic: str | None, partition: int | None) -> LogReading:
    log = SegmentLog(path, readonly=True)
    try:
        stats = log.statistics()
        return LogReading(
            name=name,
            topic=topic,
            partition=partition,
            start_offset=int(log.start_offset),
            end_offset=int(log.end_offset),
            segments=int(stats["segments"]),
            size_bytes=int(stats["size_bytes"]),
            groups={g: int(o) for g, o in log.groups().items()},
        )
    finally:
        log.close()


class DirectoryCollector:
    """A prometheus_client collector over directories (re-read at every scrape)."""

    def __init__(self, directories: list[str]) -> None:
        self.directories = [os.fspath(d) for d in directories]

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        start = GaugeMetricFamily("fastq_log_start_offset", "Oldest retained offset.",
                                  labels=["log"])
        end = GaugeMetricFamily("fastq_log_end_offset", "Offset the next record gets.",
                                labels=["log"])
        size = GaugeMetricFamily("fastq_log_size_bytes", "Bytes of segment headers and records.",
                                 labels=["log"])
        segs = GaugeMetricFamily("fastq_log_segments", "Segment files.", labels=["log"])
        lag = GaugeMetricFamily("fastq_consumergroup_lag",
                                "Records a consumer group has not committed past.",
                                labels=["topic", "group", "partition"])
        committed = GaugeMetricFamily("fastq_consumergroup_committed_offset",
                                      "A consumer group's committed offset.",
                                      labels=["topic", "group", "partition"])
        for d in self.directories:
            for r in read_directory(d):
                start.add_metric([r.name], r.start_offset)
                end.add_metric([r.name], r.end_offset)
                size.add_metric([r.name], r.size_bytes)
                segs.add_metric([r.name], r.segments)
                topic = r.topic if r.topic is not None else r.name
                part = str(r.partition if r.partition is not None else 0)
                for g, off in sorted(r.groups.items()):
                    committed.add_metric([topic, g, part], off)
                    lag.add_metric([topic, g, part], r.lag(g))
        yield from (start, end, size, segs, lag, committed)
