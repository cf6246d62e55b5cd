"""SegmentLog durability: sync="always" (alone and under group commit), the cost of one
fsync, and reopening after a crash. Peers run in their durable configuration.

log-append-durable-100B, -1KiB   1 thread, one record per call, each durable on return
    fastq always           log.append(value) in sync="always": one msync per append
    persist-queue SQLite   q.put(value): its default, one commit per put (WAL, synchronous=FULL)
    litequeue FULL         q.put(value), PRAGMA synchronous=FULL
    diskcache FULL         deque.append(value), sqlite_synchronous=2 (FULL)
log-append-many-durable-100B, -1KiB   1 thread, batches of 1,000, each durable on return
    fastq always           log.append_many(batch)
    litequeue FULL         one transaction per batch
    diskcache FULL         deque.extend(batch) inside deque.transact()
log-group-commit         --bench-log-threads (8) threads, each appending --bench-log-commit-batches
                         batches of 100 x 100 B and waiting for each to be durable
    fastq always           log.append_many(batch) (returns once durable: group commit)
    litequeue FULL         one transaction per batch, each thread on its own connection
log-group-commit-single  the same threads, one record per call (--bench-log-thread-records each)
    fastq always           log.append(value)
    litequeue FULL         q.put(value) (autocommit), each thread on its own connection
fsync                    the cost of one sync on this disk, same run: append 100 B to a small
                         file (setup), then time os.fsync / os.fdatasync of it (one per round)
log-reopen-crash         SegmentLog(dir) on a log whose writer (a child process, sync="none")
                         appended --bench-log-crash-bytes (64 MiB) of 100 B records in one
                         128 MiB segment and was then killed with SIGKILL: nothing flushed
    fastq                  after kill -9 (recovery scans the unflushed tail)
    fastq clean            the same log closed cleanly by the child (for comparison)

For fastq the JSON keeps records per fsync (statistics(): records made durable / syncs in the
round) as `records_per_fsync`. Thread rounds start their threads in setup and release them
together; every round checks the store holds every record (fastq: end_offset, which in
sync="always" counts durable records only).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from harness import (
    JOIN_TIMEOUT,
    Settings,
    Worker,
    assert_joined,
    check_count,
    measure,
    start_workers,
)
from log_peers import (
    BATCH,
    COMMIT_BATCH,
    RECORD_SIZES,
    FastqLog,
    LogPeer,
    append_batches,
    append_each,
    batches,
    check_and_dispose,
    cycled_records,
    log_info,
    log_supporting,
    new_dir,
    remove_dir,
)

import fastq

GROUP_STORES = ["fastq always", "litequeue FULL"]


class FsyncCounter:
    """records made durable per sync, per round, for a fastq store (JSON: records_per_fsync)."""

    def __init__(self) -> None:
        self.per_round: list[float] = []
        self.syncs: list[int] = []

    def start(self, peer: LogPeer) -> tuple[int, int]:
        return peer.sync_counters() if isinstance(peer, FastqLog) else (0, 0)

    def stop(self, peer: LogPeer, before: tuple[int, int]) -> None:
        if isinstance(peer, FastqLog):
            fsyncs, durable = peer.sync_counters()
            syncs = fsyncs - before[0]
            self.syncs.append(syncs)
            self.per_round.append((durable - before[1]) / syncs if syncs else 0.0)

    def save(self, benchmark: Any) -> None:
        if self.per_round:
            benchmark.extra_info["records_per_fsync"] = statistics.median(self.per_round)
            benchmark.extra_info["fsyncs_per_round"] = statistics.median(self.syncs)


def _bench_single(
    benchmark: Any,
    settings: Settings,
    *,
    scenario: str,
    store: str,
    store_type: type[LogPeer],
    size: int,
    n: int,
    run: Callable[[LogPeer], None],
    batch: int | None,
    log_dir: str,
) -> None:
    counter = FsyncCounter()

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        peer = store_type(new_dir(log_dir), record_size=size, capacity=size * n)
        return (peer, counter.start(peer)), {}

    def target(peer: LogPeer, before: tuple[int, int]) -> None:
        run(peer)

    def teardown(peer: LogPeer, before: tuple[int, int]) -> None:
        counter.stop(peer, before)
        check_and_dispose(peer, n, f"{scenario}/{store}")

    info = log_info(store_type, size, n)
    if batch is not None:
        info["batch"] = batch
    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=store,
        items=n,
        target=target,
        setup=setup,
        teardown=teardown,
        extra_info=info,
    )
    counter.save(benchmark)


# first in this file: the sync cost right before the durable scenarios that pay it
@pytest.mark.parametrize("call", ["os.fsync", "os.fdatasync"])
def test_fsync_cost(benchmark: Any, settings: Settings, call: str, log_dir: str) -> None:
    sync: Callable[[int], None] = os.fsync if call == "os.fsync" else os.fdatasync
    path = new_dir(log_dir, prefix="fsync-")
    fd = os.open(os.path.join(path, "small"), os.O_RDWR | os.O_CREAT, 0o644)
    record = cycled_records(100, 1)[0]
    try:

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            os.write(fd, record)  # a small dirty file: one new record, not yet synced
            return (fd,), {}

        measure(
            benchmark,
            settings,
            scenario="fsync",
            impl=call,
            items=1,
            target=sync,
            setup=setup,
            rounds=settings.rounds * 4,
            extra_info={
                "table": "log",
                "record_size": len(record),
                "bytes": len(record),
                "durable": True,
                "mode": f"os.write of 100 B to a small file (setup), then {call} (timed)",
            },
        )
    finally:
        os.close(fd)
        remove_dir(path)


@pytest.mark.parametrize("size", list(RECORD_SIZES))
@pytest.mark.parametrize("store", log_supporting("append", durable=True))
def test_log_append_durable(
    benchmark: Any,
    settings: Settings,
    store_type: type[LogPeer],
    store: str,
    size: str,
    log_dir: str,
) -> None:
    nbytes = RECORD_SIZES[size]
    n = settings.log_slow_items
    records = cycled_records(nbytes, n)

    run = append_each(records)

    _bench_single(
        benchmark,
        settings,
        scenario=f"log-append-durable-{size}",
        store=store,
        store_type=store_type,
        size=nbytes,
        n=n,
        run=run,
        batch=None,
        log_dir=log_dir,
    )


@pytest.mark.parametrize("size", list(RECORD_SIZES))
@pytest.mark.parametrize("store", log_supporting("many", durable=True))
def test_log_append_many_durable(
    benchmark: Any,
    settings: Settings,
    store_type: type[LogPeer],
    store: str,
    size: str,
    log_dir: str,
) -> None:
    nbytes = RECORD_SIZES[size]
    n = settings.log_slow_items * 10
    chunks = batches(cycled_records(nbytes, n))

    run = append_batches(chunks)

    _bench_single(
        benchmark,
        settings,
        scenario=f"log-append-many-durable-{size}",
        store=store,
        store_type=store_type,
        size=nbytes,
        n=n,
        run=run,
        batch=BATCH,
        log_dir=log_dir,
    )


Round = tuple[LogPeer, threading.Event, list[Worker], tuple[int, int]]


def _bench_threads(
    benchmark: Any,
    settings: Settings,
    *,
    scenario: str,
    store: str,
    store_type: type[LogPeer],
    per_thread: int,
    work: Callable[[LogPeer], Callable[[], None]],
    batch: int | None,
    log_dir: str,
) -> None:
    size = RECORD_SIZES["100B"]
    n = settings.log_threads * per_thread
    counter = FsyncCounter()

    def setup() -> tuple[Round, dict[str, Any]]:
        peer = store_type(new_dir(log_dir), record_size=size, capacity=size * n)
        handles = [peer.connect() for _ in range(settings.log_threads)]
        go = threading.Event()
        workers = start_workers(go, "appender", [work(h) for h in handles])
        return (peer, go, workers, counter.start(peer)), {}

    def run(peer: LogPeer, go: threading.Event, workers: list[Worker], before: Any) -> None:
        go.set()
        for w in workers:
            w.finish()

    def teardown(peer: LogPeer, go: threading.Event, workers: list[Worker], before: Any) -> None:
        go.set()  # a failed round may not have released them
        for w in workers:
            w.join(JOIN_TIMEOUT)
        assert_joined(workers)
        counter.stop(peer, before)
        check_and_dispose(peer, n, f"{scenario}/{store}")

    info = {**log_info(store_type, size, n), "threads": settings.log_threads}
    if batch is not None:
        info["batch"] = batch
    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=store,
        items=n,
        target=run,
        setup=setup,
        teardown=teardown,
        extra_info=info,
    )
    counter.save(benchmark)


@pytest.mark.parametrize("store", GROUP_STORES)
def test_log_group_commit(
    benchmark: Any, settings: Settings, store_type: type[LogPeer], store: str, log_dir: str
) -> None:
    batch = cycled_records(RECORD_SIZES["100B"], COMMIT_BATCH)
    rounds_of = settings.log_commit_batches

    def work(handle: LogPeer) -> Callable[[], None]:
        def append_batches() -> None:
            append_many = handle.append_many
            for _ in range(rounds_of):
                append_many(batch)

        return append_batches

    _bench_threads(
        benchmark,
        settings,
        scenario="log-group-commit",
        store=store,
        store_type=store_type,
        per_thread=rounds_of * COMMIT_BATCH,
        work=work,
        batch=COMMIT_BATCH,
        log_dir=log_dir,
    )


@pytest.mark.parametrize("store", GROUP_STORES)
def test_log_group_commit_single(
    benchmark: Any, settings: Settings, store_type: type[LogPeer], store: str, log_dir: str
) -> None:
    records = cycled_records(RECORD_SIZES["100B"], settings.log_thread_records)

    def work(handle: LogPeer) -> Callable[[], None]:
        def append_each() -> None:
            append = handle.append
            for value in records:
                append(value)

        return append_each

    _bench_threads(
        benchmark,
        settings,
        scenario="log-group-commit-single",
        store=store,
        store_type=store_type,
        per_thread=len(records),
        work=work,
        batch=None,
        log_dir=log_dir,
    )


_CRASH_CHILD = r"""
import os, signal, sys
import fastq

directory, target, segment, how = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
blob = os.urandom(100 * 1000)
batch = [blob[k : k + 100] for k in range(0, len(blob), 100)]
log = fastq.SegmentLog(directory, sync="none", segment_bytes=segment)
while log.size_bytes < target:
    log.append_many(batch)
stats = log.statistics()
print(log.end_offset, log.size_bytes, stats["durable_offset"], log.segments, flush=True)
if how == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
log.close()
"""


def _crashed_log(directory: str, nbytes: int, how: str) -> tuple[int, int]:
    """Run a writer child that appends nbytes of log and is killed (or closes); returns
    (records it appended, log bytes)."""
    segment = 2 * nbytes  # one segment: the whole unflushed tail is in the active one
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(fastq.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", _CRASH_CHILD, directory, str(nbytes), str(segment), how],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    expected_rc = -signal.SIGKILL if how == "kill" else 0
    if done.returncode != expected_rc:
        raise RuntimeError(
            f"writer child exited {done.returncode}, expected {expected_rc}: {done.stderr}"
        )
    records, size, durable, segments = map(int, done.stdout.split())
    if size < nbytes or segments != 1 or (how == "kill" and durable != 0):
        raise RuntimeError(f"writer child left {size} B in {segments} segments, durable {durable}")
    return records, size


@pytest.mark.parametrize("how", ["kill", "close"])
def test_log_reopen_after_crash(benchmark: Any, settings: Settings, how: str, log_dir: str) -> None:
    impl = "fastq" if how == "kill" else "fastq clean"
    nbytes = settings.log_crash_bytes
    counts: list[int] = []
    truncated: list[int] = []
    Opened = list[fastq.SegmentLog]

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        directory = new_dir(log_dir, prefix="crash-")
        records, _ = _crashed_log(directory, nbytes, how)
        return (directory, records, []), {}

    def reopen(directory: str, records: int, opened: Opened) -> None:
        opened.append(fastq.SegmentLog(directory))  # timed: the open (recovery) only

    def teardown(directory: str, records: int, opened: Opened) -> None:
        try:
            for log in opened:
                check_count(log.end_offset, records, f"{impl} reopened")
                counts.append(records)
                truncated.append(int(log.statistics()["bytes_truncated"]))
                log.close()  # flushes: untimed
        finally:
            remove_dir(directory)

    measure(
        benchmark,
        settings,
        scenario="log-reopen-crash",
        impl=impl,
        items=1,
        target=reopen,
        setup=setup,
        teardown=teardown,
        extra_info={
            "table": "log",
            "record_size": 100,
            "bytes": nbytes,
            "durable": False,
            "mode": 'SegmentLog(dir) after a sync="none" writer '
            + ("was killed (SIGKILL)" if how == "kill" else "closed"),
        },
    )
    if counts:
        benchmark.extra_info["records_in_log"] = statistics.median(counts)
        benchmark.extra_info["bytes_truncated"] = max(truncated)
