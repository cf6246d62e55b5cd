"""SegmentLog appends, single thread, sync="none" and "interval:100", next to on-disk queues
and the raw mmap floor (the durable modes are in bench_log_sync.py).

log-append-100B, log-append-1KiB   one record per call
    fastq, fastq interval:100   log.append(value)
    mmap.write                  mm.write(value) into a preallocated shared mmap: the floor
                                (no header, CRC, index or sync)
    queuelib                    q.push(value)               (FifoDiskQueue)
    persist-queue               q.put(value)                (persistqueue.Queue, a file queue)
    litequeue                   q.put(value)                (one autocommit each)
    diskcache                   deque.append(value)         (diskcache.Deque)
log-append-many-100B, log-append-many-1KiB   batches of 1,000 records, each a bytes object
    fastq, fastq interval:100   log.append_many(batch)
    memcpy                      one mm.write of all the round's bytes into a fresh preallocated
                                mmap: the first-touch write bandwidth, measured in the same run
    litequeue                   one transaction per batch, q.put per record
    diskcache                   deque.extend(batch) inside deque.transact()
    queuelib                    q.push per record (no batch API)
log-append-many-1KiB-numpy   the same bytes as one 2-D uint8 array, appended 1,000 rows at a
                             time (fastq, fastq interval:100); memcpy again, for the ratio

Each round opens a fresh store in a fresh directory (setup, untimed); the timed call appends;
teardown checks that the store holds exactly the records appended (fastq: end_offset), closes it
(fastq's close() flushes: untimed) and deletes the directory. fastq, mmap.write, memcpy and
queuelib get --bench-log-items records per round (append_many: --bench-log-many-bytes of
payload); the SQLite and file-queue peers, ~100x slower, get --bench-log-slow-items
(append_many: 10x that). Throughput is per round's own count, so the ratios hold.
"""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest
from harness import Settings, measure
from log_peers import (
    BATCH,
    RECORD_SIZES,
    LogPeer,
    MemcpyFloor,
    append_batches,
    append_each,
    batches,
    check_and_dispose,
    cycled_records,
    log_info,
    log_supporting,
    new_dir,
    random_bytes,
    split_records,
)

HAVE_NUMPY = importlib.util.find_spec("numpy") is not None


class BatchData:
    """The append_many tests' records, made once per module: n distinct records of `size`
    bytes, back to back in one buffer (memcpy, numpy) and cut into bytes objects (lists)."""

    def __init__(self) -> None:
        self._blobs: dict[tuple[int, int], bytes] = {}
        self._records: dict[tuple[int, int], list[bytes]] = {}

    def blob(self, size: int, n: int) -> bytes:
        if (size, n) not in self._blobs:
            self._blobs[size, n] = random_bytes(size * n, seed=n ^ size)
        return self._blobs[size, n]

    def records(self, size: int, n: int) -> list[bytes]:
        if (size, n) not in self._records:
            self._records[size, n] = split_records(self.blob(size, n), size)
        return self._records[size, n]

    def clear(self) -> None:
        self._blobs.clear()
        self._records.clear()


@pytest.fixture(scope="module")
def batch_data() -> Iterator[BatchData]:
    """Dropped at the end of the module: ~10^6 objects left in the heap would slow the next
    module's benchmarks (every full GC pass would walk them)."""
    data = BatchData()
    try:
        yield data
    finally:
        data.clear()
        gc.collect()


def _append_count(store_type: type[LogPeer], settings: Settings) -> int:
    return settings.log_items if store_type.fast else settings.log_slow_items


def _many_count(store_type: type[LogPeer], settings: Settings, size: int) -> int:
    if store_type.fast:
        return max(1, settings.log_many_bytes // size)
    return settings.log_slow_items * 10


def _opener(store_type: type[LogPeer], log_dir: str, size: int, n: int) -> Any:
    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        peer = store_type(new_dir(log_dir), record_size=size, capacity=size * n)
        return (peer,), {}

    return setup


@pytest.mark.parametrize("size", list(RECORD_SIZES))
@pytest.mark.parametrize("store", log_supporting("append", durable=False))
def test_log_append(
    benchmark: Any,
    settings: Settings,
    store_type: type[LogPeer],
    store: str,
    size: str,
    log_dir: str,
) -> None:
    nbytes = RECORD_SIZES[size]
    n = _append_count(store_type, settings)
    records = cycled_records(nbytes, n)

    run = append_each(records)

    measure(
        benchmark,
        settings,
        scenario=f"log-append-{size}",
        impl=store,
        items=n,
        target=run,
        setup=_opener(store_type, log_dir, nbytes, n),
        teardown=lambda peer: check_and_dispose(peer, n, f"{store}/{size}"),
        extra_info=log_info(store_type, nbytes, n),
    )


def _bench_memcpy(
    benchmark: Any, settings: Settings, log_dir: str, scenario: str, size: int, blob: bytes
) -> None:
    n = len(blob) // size

    def run(peer: MemcpyFloor) -> None:
        peer.write_all(blob)

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=MemcpyFloor.name,
        items=n,
        target=run,
        setup=_opener(MemcpyFloor, log_dir, size, n),
        teardown=lambda peer: check_and_dispose(peer, n, f"{scenario}/memcpy"),
        extra_info=log_info(MemcpyFloor, size, n),
    )


@pytest.mark.parametrize("size", list(RECORD_SIZES))
@pytest.mark.parametrize("store", [*log_supporting("many", durable=False), MemcpyFloor.name])
def test_log_append_many(
    benchmark: Any,
    settings: Settings,
    store_type: type[LogPeer],
    store: str,
    size: str,
    log_dir: str,
    batch_data: BatchData,
) -> None:
    nbytes = RECORD_SIZES[size]
    scenario = f"log-append-many-{size}"
    fast_n = _many_count(MemcpyFloor, settings, nbytes)
    if store_type is MemcpyFloor:
        blob = batch_data.blob(nbytes, fast_n)
        _bench_memcpy(benchmark, settings, log_dir, scenario, nbytes, blob)
        return
    n = min(fast_n, _many_count(store_type, settings, nbytes))
    chunks = batches(batch_data.records(nbytes, fast_n)[:n])

    run = append_batches(chunks)

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=store,
        items=n,
        target=run,
        setup=_opener(store_type, log_dir, nbytes, n),
        teardown=lambda peer: check_and_dispose(peer, n, f"{store}/{size}"),
        extra_info={**log_info(store_type, nbytes, n), "batch": BATCH},
    )


@pytest.mark.skipif(not HAVE_NUMPY, reason="numpy is not installed")
@pytest.mark.parametrize("store", ["fastq", "fastq interval:100", MemcpyFloor.name])
def test_log_append_many_numpy(
    benchmark: Any,
    settings: Settings,
    store_type: type[LogPeer],
    store: str,
    log_dir: str,
    batch_data: BatchData,
) -> None:
    import numpy as np

    nbytes = RECORD_SIZES["1KiB"]
    scenario = "log-append-many-1KiB-numpy"
    n = _many_count(MemcpyFloor, settings, nbytes)
    blob = batch_data.blob(nbytes, n)
    if store_type is MemcpyFloor:
        _bench_memcpy(benchmark, settings, log_dir, scenario, nbytes, blob)
        return
    # the same bytes, as a read-only (n, 1024) uint8 view; batches are row slices (no copy)
    array = np.frombuffer(blob, dtype=np.uint8).reshape(n, nbytes)
    chunks = batches(array)

    run = append_batches(chunks)

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=store,
        items=n,
        target=run,
        setup=_opener(store_type, log_dir, nbytes, n),
        teardown=lambda peer: check_and_dispose(peer, n, f"{store}/numpy"),
        extra_info={**log_info(store_type, nbytes, n), "batch": BATCH},
    )
