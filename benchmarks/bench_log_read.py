"""SegmentLog reads: 100 B records in batches, next to the on-disk queues' consumer calls.

log-read-100B
    fastq          for each batch in log.read(offset, 1000): len(record) per record (no copy:
                   the Record is made, its value is never copied out)
    fastq .value   the same, taking record.value (a bytes copy) per record
    mmap slice     the floor: mm[pos:pos + 100] per record (a bytes copy) from a mapped file of
                   the same records back to back (no header, CRC or index)
    queuelib       q.pop() per record, len() of each
    persist-queue  q.get(block=False) per record (persistqueue.Queue), len() of each
    litequeue      q.pop() per record (marks it locked: litequeue's consumer call), len(data)
    diskcache      deque.popleft() per record, len() of each

fastq and mmap slice read a log of --bench-log-read-records (10^6) records, written once per
module (untimed) and read whole in every round: reading does not consume. The queues' reads
consume, so each round refills a fresh queue in setup (untimed) with --bench-log-items
(queuelib) or --bench-log-slow-items records. Every round checks it saw every record.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from typing import Any

import pytest
from harness import Settings, check_count, measure
from log_peers import (
    BATCH,
    FastqLog,
    LogPeer,
    MmapWrite,
    check_and_dispose,
    cycled_records,
    log_info,
    log_supporting,
    new_dir,
    remove_dir,
)

import fastq

SIZE = 100
SCENARIO = "log-read-100B"


@pytest.fixture(scope="module")
def read_log(settings: Settings, log_dir: str) -> Iterator[fastq.SegmentLog]:
    """The log read by every fastq round: log_read_records records of 100 B (sync="none")."""
    path = new_dir(log_dir, prefix="read-log-")
    n = settings.log_read_records
    records = cycled_records(SIZE, BATCH)
    log = fastq.SegmentLog(path)
    try:
        while log.end_offset < n:
            log.append_many(records[: n - log.end_offset])
        check_count(log.end_offset, n, "read log")
        yield log
    finally:
        log.close()
        remove_dir(path)


def _scan_len(log: fastq.SegmentLog) -> int:
    read = log.read
    offset = log.start_offset
    seen = 0
    while True:
        records = read(offset, BATCH)
        if not records:
            return seen
        for r in records:
            seen += len(r) != 0
        offset = records[-1].offset + 1


def _scan_value(log: fastq.SegmentLog) -> int:
    read = log.read
    offset = log.start_offset
    seen = 0
    while True:
        records = read(offset, BATCH)
        if not records:
            return seen
        for r in records:
            seen += len(r.value) != 0
        offset = records[-1].offset + 1


@pytest.mark.parametrize("variant", ["fastq", "fastq .value"])
def test_log_read_fastq(
    benchmark: Any, settings: Settings, read_log: fastq.SegmentLog, variant: str
) -> None:
    n = settings.log_read_records
    scan = _scan_len if variant == "fastq" else _scan_value

    def run(log: fastq.SegmentLog) -> int:
        return check_count(scan(log), n, variant)

    measure(
        benchmark,
        settings,
        scenario=SCENARIO,
        impl=variant,
        items=n,
        target=run,
        setup=lambda: ((read_log,), {}),
        extra_info={**log_info(FastqLog, SIZE, n), "batch": BATCH},
    )


def test_log_read_mmap_floor(benchmark: Any, settings: Settings, log_dir: str) -> None:
    n = settings.log_read_records
    path = new_dir(log_dir, prefix="read-floor-")
    try:
        records = cycled_records(SIZE, n)
        file = os.path.join(path, "floor.bin")
        with open(file, "wb") as out:
            out.write(b"".join(records))
        with open(file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:

            def run(mm: mmap.mmap) -> int:
                seen = 0
                for pos in range(0, n * SIZE, SIZE):
                    seen += len(mm[pos : pos + SIZE]) != 0
                return check_count(seen, n, "mmap slice")

            measure(
                benchmark,
                settings,
                scenario=SCENARIO,
                impl="mmap slice",
                items=n,
                target=run,
                setup=lambda: ((mm,), {}),
                extra_info={**log_info(MmapWrite, SIZE, n), "mode": "mm[pos:pos+100] per record"},
            )
    finally:
        remove_dir(path)


@pytest.mark.parametrize(
    "store", [s for s in log_supporting("read", durable=False) if not s.startswith("fastq")]
)
def test_log_read_peer(
    benchmark: Any,
    settings: Settings,
    store_type: type[LogPeer],
    store: str,
    log_dir: str,
) -> None:
    n = settings.log_items if store_type.fast else settings.log_slow_items
    records = cycled_records(SIZE, n)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        peer = store_type(new_dir(log_dir), record_size=SIZE, capacity=SIZE * n)
        peer.fill(records)
        return (peer,), {}

    def run(peer: LogPeer) -> int:
        return check_count(peer.drain(n), n, store)

    measure(
        benchmark,
        settings,
        scenario=SCENARIO,
        impl=store,
        items=n,
        target=run,
        setup=setup,
        teardown=lambda peer: check_and_dispose(peer, 0, f"{store} after draining"),
        extra_info=log_info(store_type, SIZE, n),
    )
