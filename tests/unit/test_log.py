"""SegmentLog: the whole public API, the bad-input contract, locking, fork and retention.

Covers append/append_many/read/iter/tail/offset_for_time, Record fields and lifetimes, rolling
and the exact largest record, reopening, the three sync modes, consumer commits and offsets
(R11), retention and truncate_before (and how live Records hold segments), every bad argument
(R13), the single-writer flock and fork (R14: a second writer, a killed holder, other fds on
the lock file, a forked child), readonly readers in this and another process, statistics,
repr/pickling and the exception hierarchy. Crash recovery and corruption have their own tests;
here every log is closed cleanly.
"""

from __future__ import annotations

import array
import gc
import logging
import os
import pickle
import random
import shutil
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threads import Runner, wait_until

import fastq
from fastq import (
    Closed,
    CorruptLogError,
    FastqError,
    LogFailedError,
    LogLockedError,
    OffsetOutOfRange,
    Record,
    SegmentLog,
)

SEG = 16384  # the smallest segment: rolls come quickly
MAX_RECORD = SEG - 8192 - 32  # the largest key + value in a SEG segment
LIVENESS = 10.0  # generous bound for "returns eventually"; never a speed assertion
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def untyped(obj: object) -> Any:
    """`obj` as Any: for the deliberately wrong arguments, and for the buffer protocol of
    Record, which the stubs declare only for Python >= 3.12."""
    return obj


def rec_size(key_len: int, value_len: int) -> int:
    """Bytes a record takes in a segment: 32-byte header + key + value, padded to 8."""
    return (32 + key_len + value_len + 7) & ~7


def all_records(log: SegmentLog) -> list[Record]:
    return log.read(log.start_offset, max_records=10**6)


def values(log: SegmentLog) -> list[bytes]:
    return [r.value for r in all_records(log)]


def segment_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".log"))


def segment_bases(directory: Path) -> list[int]:
    return [int(name[:-4]) for name in segment_files(directory)]


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path / "log"


@pytest.fixture
def log(logdir: Path) -> Iterator[SegmentLog]:
    with SegmentLog(logdir, segment_bytes=SEG) as lg:
        yield lg


def fill_segments(log: SegmentLog, segments: int) -> None:
    """Append 2 * segments - 1 values of 4000 bytes (two fill a SEG segment), so an empty log
    ends with `segments` segments based at 0, 2, 4, ... Each value starts with its offset."""
    first = log.end_offset
    for i in range(2 * segments - 1):
        log.append(b"%06d" % (first + i) + b"v" * 3994)


# ---- append and read --------------------------------------------------------------------------


def test_append_returns_consecutive_offsets_and_read_returns_them(log: SegmentLog) -> None:
    assert (log.start_offset, log.end_offset) == (0, 0)
    assert log.read(0) == []
    offsets = [log.append(b"v%d" % i) for i in range(5)]
    assert offsets == [0, 1, 2, 3, 4]
    assert log.end_offset == 5
    recs = log.read(0)
    assert [r.offset for r in recs] == offsets
    assert [r.value for r in recs] == [b"v0", b"v1", b"v2", b"v3", b"v4"]
    assert [r.value for r in log.read(3)] == [b"v3", b"v4"]
    assert log.read(5) == []


def test_record_fields_key_none_empty_and_explicit_timestamp(log: SegmentLog) -> None:
    log.append(b"no key")
    log.append(b"empty key", key=b"", timestamp=-5)
    log.append(b"", key=b"k", timestamp=INT64_MAX)
    log.append(b"min", timestamp=INT64_MIN)
    a, b, c, d = log.read(0)
    assert a.key is None
    assert b.key == b""  # an empty key is a key, distinct from none
    assert isinstance(b.key, bytes)
    assert (b.offset, b.timestamp, b.value) == (1, -5, b"empty key")
    assert (c.key, c.value, c.timestamp, len(c)) == (b"k", b"", INT64_MAX, 0)
    assert d.timestamp == INT64_MIN
    assert a != b


def test_default_timestamp_is_wall_clock_nanoseconds(log: SegmentLog) -> None:
    before = time.time_ns()
    log.append(b"x")
    log.append_many([b"y", b"z"])
    after = time.time_ns()
    for rec in log.read(0):
        assert before <= rec.timestamp <= after, rec


def test_value_is_a_copy_and_value_view_a_readonly_zero_copy_view(log: SegmentLog) -> None:
    source = bytearray(b"hello world")
    log.append(source, key=bytearray(b"key"))
    source[:] = b"HELLO WORLD"  # the log copied it at append
    (rec,) = log.read(0)
    assert rec.value == b"hello world"
    assert type(rec.value) is bytes
    assert rec.key == b"key"
    assert type(rec.key) is bytes
    assert len(rec) == 11
    assert bytes(untyped(rec)) == b"hello world"
    view = rec.value_view
    assert isinstance(view, memoryview)
    assert view.readonly
    assert view.obj is untyped(rec)  # a view of the record itself (the mapped bytes), not a copy
    assert view.tobytes() == b"hello world"
    assert memoryview(untyped(rec)).tobytes() == b"hello world"
    with pytest.raises(TypeError):
        view[0] = 0
    again = log.read(0)[0].value_view
    assert again.tobytes() == view.tobytes()
    view.release()
    again.release()


def test_records_and_views_outlive_the_log(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        log.append(b"kept alive", key=b"k")
        fill_segments(log, 3)
        rec = log.read(0)[0]
        view = log.read(0)[0].value_view
    assert log.closed
    assert (rec.value, rec.key, bytes(untyped(rec))) == (b"kept alive", b"k", b"kept alive")
    assert view.tobytes() == b"kept alive"  # the segment stays mapped while the view lives
    view.release()


def test_record_equality_and_hash(log: SegmentLog) -> None:
    log.append(b"a", key=b"k", timestamp=1)
    log.append(b"a", key=b"k", timestamp=1)
    first, second = log.read(0)
    assert first == log.read(0)[0]
    assert hash(first) == hash(log.read(0)[0])
    assert first != second  # different offsets
    assert first != b"a"
    assert first != object()


def test_append_accepts_any_contiguous_bytes_like_object(log: SegmentLog) -> None:
    log.append(bytearray(b"ba"), key=memoryview(b"mv"))
    log.append(memoryview(b"xxmvxx")[2:4], key=untyped(array.array("B", b"ar")))
    log.append(untyped(np.frombuffer(b"np", dtype=np.uint8)), key=bytearray())
    log.append(
        untyped(np.arange(4, dtype=np.uint8).reshape(2, 2))
    )  # contiguous: its bytes, row-major
    got = [(r.key, r.value) for r in log.read(0)]
    assert got == [(b"mv", b"ba"), (b"ar", b"mv"), (b"", b"np"), (None, b"\x00\x01\x02\x03")]


def test_append_many_with_lists_tuples_and_mixed_buffers(log: SegmentLog) -> None:
    assert log.append_many([b"a", bytearray(b"b"), memoryview(b"c")]) == 0
    assert log.append_many((b"d", b"e")) == 3
    assert log.append_many([b"f"], keys=[b"k"], timestamps=[7]) == 5
    assert log.end_offset == 6
    assert values(log) == [b"a", b"b", b"c", b"d", b"e", b"f"]
    last = log.read(5)[0]
    assert (last.key, last.timestamp) == (b"k", 7)


def test_append_many_keys_with_none_items_and_timestamp_list(log: SegmentLog) -> None:
    log.append_many(
        [b"v0", b"v1", b"v2", b"v3"],
        keys=[None, b"", b"k2", None],
        timestamps=[30, -1, 10, 20],
    )
    got = [(r.offset, r.key, r.value, r.timestamp) for r in log.read(0)]
    assert got == [
        (0, None, b"v0", 30),
        (1, b"", b"v1", -1),
        (2, b"k2", b"v2", 10),
        (3, None, b"v3", 20),
    ]


def test_append_many_numpy_rows_keys_and_int64_timestamps(log: SegmentLog) -> None:
    vals = np.arange(15, dtype=np.uint8).reshape(5, 3)
    keys = np.full((5, 2), ord("k"), dtype=np.uint8)
    stamps = np.array([5, 4, 3, 2, INT64_MIN], dtype=np.int64)
    assert log.append_many(vals, keys=keys, timestamps=stamps) == 0
    recs = log.read(0)
    assert [r.value for r in recs] == [bytes(row) for row in vals.tolist()]
    assert [r.key for r in recs] == [b"kk"] * 5
    assert [r.timestamp for r in recs] == [5, 4, 3, 2, INT64_MIN]
    # numpy rows as values with a key list, and a numpy key array with a value list
    assert log.append_many(np.zeros((2, 4), dtype=np.uint8), keys=[b"a", None]) == 5
    assert log.append_many([b"x", b"y"], keys=np.ones((2, 1), dtype=np.uint8)) == 7
    tail = [(r.key, r.value) for r in log.read(5)]
    assert tail == [(b"a", bytes(4)), (None, bytes(4)), (b"\x01", b"x"), (b"\x01", b"y")]


@pytest.mark.parametrize(
    "empty",
    [[], (), np.zeros((0, 5), dtype=np.uint8)],
    ids=["list", "tuple", "array"],
)
def test_append_many_empty_batch_returns_end_offset_and_writes_nothing(
    log: SegmentLog, empty: Any
) -> None:
    assert log.append_many(empty) == 0
    log.append(b"a")
    before = log.statistics()
    assert log.append_many(empty) == 1
    assert log.append_many(empty, keys=[] if isinstance(empty, list) else None) == 1
    after = log.statistics()
    assert log.end_offset == 1
    assert (after["appends"], after["size_bytes"]) == (before["appends"], before["size_bytes"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"values": [b"a", b"b"], "keys": [b"k"]},
        {"values": [b"a"], "keys": [b"k", b"l"]},
        {"values": [b"a", b"b"], "timestamps": [1]},
        {"values": [b"a"], "timestamps": [1, 2]},
        {"values": [b"a", b"b"], "timestamps": np.array([1, 2, 3], dtype=np.int64)},
        {"values": np.zeros((3, 2), dtype=np.uint8), "keys": np.zeros((2, 2), dtype=np.uint8)},
        {"values": np.zeros((3, 2), dtype=np.uint8), "keys": [b"a"]},
    ],
    ids=[
        "fewer-keys",
        "more-keys",
        "fewer-timestamps",
        "more-timestamps",
        "timestamp-array",
        "key-array-rows",
        "array-vs-list",
    ],
)
def test_append_many_mismatched_lengths_raise_value_error(
    log: SegmentLog, kwargs: dict[str, Any]
) -> None:
    log.append(b"before")
    with pytest.raises(ValueError, match="entries"):
        log.append_many(**kwargs)
    assert log.end_offset == 1
    assert log.statistics()["appends"] == 1


@pytest.mark.parametrize("where", [0, 2, 4])
def test_append_many_too_large_record_anywhere_writes_nothing(log: SegmentLog, where: int) -> None:
    batch = [b"small"] * 5
    batch[where] = b"x" * (MAX_RECORD + 1)
    size_before = log.size_bytes
    with pytest.raises(ValueError, match=rf"values\[{where}\].*exceeds"):
        log.append_many(batch)
    # the key counts too
    keys: list[bytes | None] = [None] * 5
    keys[where] = b"k"
    batch[where] = b"x" * MAX_RECORD
    with pytest.raises(ValueError, match="exceeds"):
        log.append_many(batch, keys=keys)
    with pytest.raises(ValueError, match="exceeds"):
        log.append_many(np.zeros((3, MAX_RECORD + 1), dtype=np.uint8))
    assert (log.end_offset, log.size_bytes, log.segments) == (0, size_before, 1)
    assert log.read(0) == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"values": [b"a", "text"]}, r"values\[1\]"),
        ({"values": [b"a", None]}, r"values\[1\]"),
        ({"values": [b"a", 5]}, r"values\[1\]"),
        ({"values": [b"a", memoryview(b"abcdef")[::2]]}, r"values\[1\]"),
        ({"values": [b"a"], "keys": ["k"]}, r"keys\[0\]"),
        ({"values": [b"a"], "timestamps": [1.5]}, r"timestamps\[0\]"),
        ({"values": [b"a"], "timestamps": [True]}, r"timestamps\[0\]"),
        ({"values": [b"a"], "timestamps": np.array([1.0])}, "timestamps"),
        ({"values": [b"a"], "timestamps": np.array([1], dtype=np.int32)}, "timestamps"),
        ({"values": [b"a"], "timestamps": "1"}, "timestamps"),
        ({"values": b"abc"}, "values"),
        ({"values": "abc"}, "values"),
        ({"values": None}, "values"),
        ({"values": iter([b"a"])}, "values"),
        ({"values": np.zeros(4, dtype=np.uint8)}, "values"),
        ({"values": np.zeros((2, 2), dtype=np.int32)}, "values"),
        ({"values": np.zeros((4, 2), dtype=np.uint8)[::2]}, "values"),
    ],
)
def test_append_many_bad_types_raise_type_error_and_write_nothing(
    log: SegmentLog, kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(TypeError, match=name):
        log.append_many(**kwargs)
    assert log.end_offset == 0
    assert log.statistics()["appends"] == 0


def test_append_many_timestamp_out_of_int64_range_raises(log: SegmentLog) -> None:
    with pytest.raises(ValueError, match=r"timestamps\[1\]"):
        log.append_many([b"a", b"b"], timestamps=[0, 2**63])
    assert log.end_offset == 0


def test_append_many_batch_larger_than_a_segment_rolls(log: SegmentLog) -> None:
    batch = [b"%05d" % i + b"b" * 995 for i in range(100)]  # ~100 KB: spans ~14 segments
    assert log.append_many(batch) == 0
    assert log.segments > 5
    assert values(log) == batch
    assert [r.offset for r in all_records(log)] == list(range(100))


# ---- sizes, rolling and the largest record ----------------------------------------------------


def test_size_bytes_counts_headers_and_records_not_preallocation(log: SegmentLog) -> None:
    assert log.size_bytes == 8192  # header page + mutable page of the empty active segment
    log.append(b"abc")
    log.append(b"v" * 10, key=b"k" * 5)
    log.append(b"", key=b"")
    assert log.size_bytes == 8192 + rec_size(0, 3) + rec_size(5, 10) + rec_size(0, 0)
    stats = log.statistics()
    assert stats["size_bytes"] == log.size_bytes
    assert stats["bytes_appended"] == log.size_bytes - 8192
    assert stats["appends"] == 3


def test_records_roll_across_segments_and_read_across_them(log: SegmentLog) -> None:
    expected = [b"%04d" % i + b"r" * (i * 37 % 3000) for i in range(60)]
    for i, v in enumerate(expected):
        assert log.append(v, key=b"k%d" % i if i % 3 else None) == i
    assert log.segments > 3
    directory = Path(log.directory)
    assert segment_bases(directory)[0] == 0
    assert len(segment_files(directory)) == log.segments
    assert values(log) == expected
    # reads starting in every segment, in small pages
    for start in range(0, 60, 7):
        page = log.read(start, max_records=9)
        assert [r.value for r in page] == expected[start : start + 9]
    on_disk = os.path.getsize(directory / segment_files(directory)[0])
    assert on_disk == SEG  # preallocated


def test_largest_record_fits_exactly_and_one_byte_more_is_refused(log: SegmentLog) -> None:
    log.append(b"small")
    assert log.append(b"x" * MAX_RECORD) == 1  # rolls, then fills the new segment exactly
    assert log.append(b"v" * (MAX_RECORD - 100), key=b"k" * 100) == 2
    assert log.append_many([b"y" * MAX_RECORD, b"z" * MAX_RECORD]) == 3
    assert log.segments == 5
    size, segments, end = log.size_bytes, log.segments, log.end_offset
    with pytest.raises(ValueError, match=str(MAX_RECORD)):
        log.append(b"x" * (MAX_RECORD + 1))
    with pytest.raises(ValueError, match="exceeds"):
        log.append(b"x" * MAX_RECORD, key=b"k")
    with pytest.raises(ValueError, match="exceeds"):
        log.append(b"", key=b"k" * (MAX_RECORD + 1))
    assert (log.size_bytes, log.segments, log.end_offset) == (size, segments, end)
    got = log.read(1)
    assert [len(r) for r in got] == [MAX_RECORD, MAX_RECORD - 100, MAX_RECORD, MAX_RECORD]
    assert got[0].value == b"x" * MAX_RECORD
    assert got[1].key == b"k" * 100


def test_largest_record_follows_segment_bytes(tmp_path: Path) -> None:
    seg = SEG + 8
    with SegmentLog(tmp_path, segment_bytes=seg) as log:
        assert log.append(b"x" * (seg - 8224)) == 0
        with pytest.raises(ValueError, match="exceeds"):
            log.append(b"x" * (seg - 8224 + 1))
        assert log.read(0)[0].value == b"x" * (seg - 8224)


def _segment_sizes(directory: Path) -> list[int]:
    return [os.path.getsize(p) for p in sorted(directory.glob("*.log"))]


def test_segments_start_small_and_double_up_to_segment_bytes(tmp_path: Path) -> None:
    """A new log costs 1 MiB of disk, not segment_bytes: segments double from 1 MiB."""
    mib = 1 << 20
    with SegmentLog(tmp_path, segment_bytes=8 * mib) as log:
        assert _segment_sizes(tmp_path) == [mib]
        value = b"v" * 100_000
        for _ in range(300):                           # ~30 MB: 1 + 2 + 4 + 8 + 8 + 8 MiB
            log.append(value)
        sizes = _segment_sizes(tmp_path)
        assert sizes[:4] == [mib, 2 * mib, 4 * mib, 8 * mib]
        assert set(sizes[4:]) == {8 * mib}
        assert [r.value for r in all_records(log)] == [value] * 300
    with SegmentLog(tmp_path, segment_bytes=8 * mib) as log:   # growth resumes after a reopen
        log.append_many([b"w" * 1_000_000] * 40)
        assert set(_segment_sizes(tmp_path)[4:]) == {8 * mib}
        assert log.end_offset == 340


@pytest.mark.parametrize("batch", [False, True])
def test_a_record_larger_than_the_next_step_gets_a_segment_that_fits(
        tmp_path: Path, batch: bool) -> None:
    mib = 1 << 20
    big = b"b" * (5 * mib)
    with SegmentLog(tmp_path, segment_bytes=16 * mib) as log:
        log.append(b"small")
        if batch:
            log.append_many([b"s", big, b"t"])
        else:
            log.append(big)
        assert _segment_sizes(tmp_path) == [mib, 8 * mib]
        assert log.read(1 if not batch else 2)[0].value == big


def test_small_segment_bytes_is_used_from_the_first_segment(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, segment_bytes=SEG) as log:
        log.append(b"x")
        assert _segment_sizes(tmp_path) == [SEG]


# ---- reopening and sync modes -----------------------------------------------------------------


def test_reopen_keeps_records_keys_timestamps_and_commits(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        for i in range(40):
            log.append(b"%03d" % i * (i * 50 % 1500 + 1), key=None if i % 4 else b"k%d" % i)
        log.append_many([b"a", b"b"], keys=[b"", None], timestamps=[1, 2])
        log.commit("billing", 17)
        log.commit("audit", 42)
        before = [(r.offset, r.timestamp, r.key, r.value) for r in all_records(log)]
        stats = log.statistics()
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        after = [(r.offset, r.timestamp, r.key, r.value) for r in all_records(log)]
        assert after == before
        assert (log.end_offset, log.segments) == (42, stats["segments"])
        assert log.groups() == {"billing": 17, "audit": 42}
        assert log.committed("billing") == 17
        assert log.statistics()["bytes_truncated"] == 0
        assert log.append(b"next") == 42
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        assert log.read(42)[0].value == b"next"


def test_reopen_with_a_different_segment_size(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        fill_segments(log, 2)
        end = log.end_offset
    with SegmentLog(logdir, segment_bytes=2 * SEG) as log:
        assert log.end_offset == end
        assert log.append(b"big" * 5000) == end  # too big for the old size: rolls to a new one
        newest = logdir / segment_files(logdir)[-1]
        assert os.path.getsize(newest) == 2 * SEG
        assert log.read(end)[0].value == b"big" * 5000


@pytest.mark.parametrize("sync", ["none", "always", "interval:20", "interval:0.5"])
def test_every_sync_mode_appends_reads_and_reopens(logdir: Path, sync: str) -> None:
    with SegmentLog(logdir, segment_bytes=SEG, sync=sync) as log:
        assert log.statistics()["sync"] == sync
        assert f"sync={sync!r}" in repr(log)
        log.append(b"one")
        log.append_many([b"two", b"three"])
        fill_segments(log, 3)
        assert log.end_offset == len(values(log))
        expected = values(log)
        log.flush()
        assert log.statistics()["durable_offset"] == log.end_offset
    with SegmentLog(logdir, segment_bytes=SEG, sync=sync) as log:
        assert values(log) == expected


def test_sync_none_syncs_only_on_flush_and_close(log: SegmentLog) -> None:
    log.append_many([b"a"] * 10)
    stats = log.statistics()
    assert (stats["fsyncs"], stats["durable_offset"]) == (0, 0)
    log.flush()
    stats = log.statistics()
    assert stats["fsyncs"] >= 1
    assert stats["durable_offset"] == 10
    assert stats["records_durable"] == 10


def test_sync_always_every_append_is_durable_when_it_returns(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=1 << 20, sync="always") as log:
        for i in range(5):
            off = log.append(b"x%d" % i)
            stats = log.statistics()
            assert stats["durable_offset"] == off + 1 == log.end_offset
        assert log.statistics()["fsyncs"] == 5
        assert log.statistics()["records_per_fsync"] == pytest.approx(1.0)
        log.append_many([b"y"] * 50)  # one batch: one sync
        stats = log.statistics()
        assert stats["fsyncs"] == 6
        assert stats["records_durable"] == 55
        assert stats["records_per_fsync"] == pytest.approx(55 / 6)
        assert isinstance(stats["records_per_fsync"], float)
        # after padding to a fresh page, reads still return exactly the records
        assert [r.value for r in log.read(0, max_records=6)] == [
            b"x0",
            b"x1",
            b"x2",
            b"x3",
            b"x4",
            b"y",
        ]
        assert len(log.read(0)) == 55


def test_sync_always_concurrent_appenders_share_syncs(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=1 << 20, sync="always") as log:
        start = threading.Barrier(4)

        def appender(tid: int) -> list[int]:
            start.wait()
            return [log.append(b"%d:%d" % (tid, i)) for i in range(40)]

        runners = [Runner(partial(appender, t)) for t in range(4)]
        for r in runners:
            r.start()
        offsets = sorted(o for r in runners for o in r.finish())
        assert offsets == list(range(160))
        stats = log.statistics()
        assert stats["durable_offset"] == 160 == stats["records_durable"]
        assert 1 <= stats["fsyncs"] <= 160
        assert stats["records_per_fsync"] >= 1.0


def test_sync_interval_makes_records_durable_without_flush(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG, sync="interval:20") as log:
        log.append_many([b"a"] * 7)
        wait_until(
            lambda: log.statistics()["durable_offset"] == 7,
            "the background sync made the records durable",
        )
        fsyncs = log.statistics()["fsyncs"]
        assert fsyncs >= 1
        log.append(b"b")
        wait_until(lambda: log.statistics()["fsyncs"] > fsyncs, "a second background sync")
        wait_until(lambda: log.statistics()["durable_offset"] == 8, "the second record durable")


@pytest.mark.parametrize(
    ("sync", "exc"),
    [
        ("", ValueError),
        ("sometimes", ValueError),
        ("interval:", ValueError),
        ("interval:-1", ValueError),
        ("interval:abc", ValueError),
        ("interval:0", ValueError),
        ("interval:20ms", ValueError),
        ("Always", ValueError),
        (" none", ValueError),
        (5, TypeError),
        (None, TypeError),
        (b"none", TypeError),
    ],
)
def test_bad_sync_raises(logdir: Path, sync: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="sync"):
        SegmentLog(logdir, sync=sync)
    with SegmentLog(logdir) as log:  # the failed open left no lock behind
        assert log.end_offset == 0


# ---- constructor arguments --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment_bytes", "exc"),
    [
        (SEG - 8, ValueError),
        (SEG + 4, ValueError),
        (8192, ValueError),
        (0, ValueError),
        (-SEG, ValueError),
        (2**32 + 8, ValueError),
        (True, TypeError),
        (float(SEG), TypeError),
        (str(SEG), TypeError),
        (None, TypeError),
    ],
)
def test_bad_segment_bytes_raise(logdir: Path, segment_bytes: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="segment_bytes"):
        SegmentLog(logdir, segment_bytes=segment_bytes)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"retention_bytes": -1}, ValueError),
        ({"retention_seconds": -1}, ValueError),
        ({"retention_seconds": -0.5}, ValueError),
        ({"retention_seconds": float("inf")}, ValueError),
        ({"retention_seconds": float("nan")}, ValueError),
        ({"retention_bytes": 1.5}, TypeError),
        ({"retention_bytes": True}, TypeError),
        ({"retention_bytes": "1"}, TypeError),
        ({"retention_seconds": "1"}, TypeError),
        ({"retention_seconds": True}, TypeError),
        ({"readonly": True, "repair": True}, ValueError),
        ({"readonly": 1}, TypeError),
        ({"repair": "yes"}, TypeError),
    ],
)
def test_bad_constructor_arguments_raise(
    logdir: Path, kwargs: dict[str, Any], exc: type[Exception]
) -> None:
    logdir.mkdir()
    with pytest.raises(exc):
        SegmentLog(logdir, **kwargs)
    with SegmentLog(logdir) as log:  # nothing was locked by the failed open
        assert log.end_offset == 0


@pytest.mark.parametrize("directory", [None, 5, b"", ""])
def test_bad_directory_argument_raises(directory: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        SegmentLog(directory)


def test_directory_that_is_a_file_raises_oserror_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"not a directory")
    with pytest.raises(OSError, match="file") as info:
        SegmentLog(path)
    assert str(path) in str(info.value)
    with pytest.raises(NotADirectoryError) as info:
        SegmentLog(path, readonly=True)
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"not a directory"


def test_directory_under_a_file_raises_not_a_directory_naming_it(tmp_path: Path) -> None:
    # (tests run as root, so chmod cannot make a directory unwritable; a path under a regular
    # file fails for everyone)
    (tmp_path / "file").write_bytes(b"")
    target = tmp_path / "file" / "sub"
    with pytest.raises(NotADirectoryError) as info:
        SegmentLog(target)
    assert str(target) in str(info.value)


def test_readonly_on_a_missing_directory_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        SegmentLog(tmp_path / "missing", readonly=True)
    assert str(tmp_path / "missing") in str(info.value)
    assert not (tmp_path / "missing").exists()  # a reader creates nothing


def test_path_like_and_bytes_directories(tmp_path: Path) -> None:
    with SegmentLog(tmp_path / "a") as log:
        assert log.directory == str(tmp_path / "a")
        log.append(b"x")
    with SegmentLog(os.fsencode(tmp_path / "a")) as log:
        assert log.directory == str(tmp_path / "a")
        assert values(log) == [b"x"]


# ---- bad inputs to methods --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["text", None, 5, [b"a"], 1.5, memoryview(b"abcdef")[::2]])
def test_append_bad_value_raises_type_error_naming_value(log: SegmentLog, value: Any) -> None:
    with pytest.raises(TypeError, match="value"):
        log.append(value)
    assert log.end_offset == 0


@pytest.mark.parametrize("key", ["text", 5, [b"k"], memoryview(b"abcdef")[::2]])
def test_append_bad_key_raises_type_error_naming_key(log: SegmentLog, key: Any) -> None:
    with pytest.raises(TypeError, match="key"):
        log.append(b"v", key=key)
    assert log.end_offset == 0


@pytest.mark.parametrize(
    ("timestamp", "exc"),
    [
        (1.0, TypeError),
        (True, TypeError),
        ("1", TypeError),
        (2**63, ValueError),
        (-(2**63) - 1, ValueError),
        (2**100, ValueError),
    ],
)
def test_append_bad_timestamp_raises(log: SegmentLog, timestamp: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="timestamp"):
        log.append(b"v", timestamp=timestamp)
    assert log.end_offset == 0


def test_read_out_of_range_names_the_valid_range(log: SegmentLog) -> None:
    log.append_many([b"a", b"b", b"c"])
    for bad in (-1, 4, 2**63, 2**64 + 5, -(2**70)):
        with pytest.raises(OffsetOutOfRange, match=r"0\.\.3") as info:
            log.read(bad)
        assert str(bad) in str(info.value)
    assert log.read(3) == []
    assert not issubclass(OffsetOutOfRange, (ValueError, IndexError))


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"offset": 1.0}, TypeError),
        ({"offset": True}, TypeError),
        ({"offset": "0"}, TypeError),
        ({"offset": None}, TypeError),
        ({"offset": 0, "max_records": 0}, ValueError),
        ({"offset": 0, "max_records": -1}, ValueError),
        ({"offset": 0, "max_records": 1.5}, TypeError),
        ({"offset": 0, "max_records": True}, TypeError),
        ({"offset": 0, "max_bytes": -1}, ValueError),
        ({"offset": 0, "max_bytes": 1.5}, TypeError),
    ],
)
def test_read_bad_arguments_raise(
    log: SegmentLog, kwargs: dict[str, Any], exc: type[Exception]
) -> None:
    log.append(b"a")
    with pytest.raises(exc):
        log.read(**kwargs)


def test_read_max_records_and_max_bytes(log: SegmentLog) -> None:
    log.append_many([b"aaa", b"bbb", b"ccc", b"ddd"], keys=[None, b"kk", None, None])
    assert [r.offset for r in log.read(0, max_records=2)] == [0, 1]
    assert [r.offset for r in log.read(1, max_records=10**12)] == [1, 2, 3]
    # max_bytes counts key + value; at least one record comes back
    assert [r.offset for r in log.read(0, max_bytes=0)] == [0]
    assert [r.offset for r in log.read(1, max_bytes=1)] == [1]
    assert [r.offset for r in log.read(0, max_bytes=7)] == [0]
    assert [r.offset for r in log.read(0, max_bytes=8)] == [0, 1]
    assert [r.offset for r in log.read(0, max_bytes=11)] == [0, 1, 2]
    assert [r.offset for r in log.read(0, max_bytes=14)] == [0, 1, 2, 3]
    assert [r.offset for r in log.read(0, max_records=2, max_bytes=10**9)] == [0, 1]
    assert log.read(4, max_bytes=0) == []


def test_readonly_log_refuses_writes(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as writer:
        writer.append(b"a")
        with SegmentLog(logdir, readonly=True) as reader:
            assert reader.readonly
            assert "readonly" in repr(reader)
            for call in (
                lambda: reader.append(b"x"),
                lambda: reader.append_many([b"x"]),
                lambda: reader.commit("g", 0),
                lambda: reader.flush(),
                lambda: reader.truncate_before(0),
                lambda: reader.apply_retention(),
            ):
                with pytest.raises(PermissionError):
                    call()
            assert values(reader) == [b"a"]
        assert writer.end_offset == 1
        assert values(writer) == [b"a"]


# ---- close and the context manager ------------------------------------------------------------

AFTER_CLOSE: dict[str, Callable[[SegmentLog], object]] = {
    "append": lambda lg: lg.append(b"x"),
    "append_many": lambda lg: lg.append_many([b"x"]),
    "append_many_empty": lambda lg: lg.append_many([]),
    "read": lambda lg: lg.read(0),
    "iter": lambda lg: lg.iter(),
    "dunder_iter": lambda lg: iter(lg),
    "tail": lambda lg: lg.tail(timeout=0),
    "offset_for_time": lambda lg: lg.offset_for_time(0),
    "commit": lambda lg: lg.commit("g", 0),
    "committed": lambda lg: lg.committed("g"),
    "groups": lambda lg: lg.groups(),
    "flush": lambda lg: lg.flush(),
    "truncate_before": lambda lg: lg.truncate_before(0),
    "apply_retention": lambda lg: lg.apply_retention(),
    "start_offset": lambda lg: lg.start_offset,
    "end_offset": lambda lg: lg.end_offset,
    "size_bytes": lambda lg: lg.size_bytes,
    "segments": lambda lg: lg.segments,
}


@pytest.mark.parametrize("name", list(AFTER_CLOSE))
def test_use_after_close_raises_closed(logdir: Path, name: str) -> None:
    log = SegmentLog(logdir, segment_bytes=SEG)
    log.append(b"a")
    log.close()
    with pytest.raises(Closed):
        AFTER_CLOSE[name](log)


def test_close_is_idempotent_and_the_context_manager_closes(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        assert not log.closed
        log.append(b"a")
    assert log.closed
    log.close()
    log.close()
    stats = log.statistics()  # still answers (no I/O)
    assert stats["closed"] is True
    assert "closed" in repr(log)
    again = SegmentLog(logdir)

    def fail_inside() -> None:
        with again:
            again.append(b"b")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert again.closed
    with SegmentLog(logdir) as third:  # the lock went with the close
        assert values(third) == [b"a", b"b"]


@pytest.mark.parametrize("sync", ["none", "interval:10"])
def test_dropping_an_unclosed_log_releases_its_lock(logdir: Path, sync: str) -> None:
    log = SegmentLog(logdir, segment_bytes=SEG, sync=sync)
    log.append(b"dropped")
    ref = weakref.ref(log)
    del log
    gc.collect()
    # the interval thread holds the log only for the moment of a sync
    wait_until(lambda: ref() is None, "the unreferenced log is freed")
    with SegmentLog(logdir, segment_bytes=SEG) as again:
        assert values(again) == [b"dropped"]
    wait_until(
        lambda: not any(t.name.startswith("fastq-log-sync") for t in threading.enumerate()),
        "the background sync thread of the dropped log exits",
    )


def test_init_twice_is_refused(log: SegmentLog, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        untyped(log).__init__(tmp_path / "other")
    assert not (tmp_path / "other").exists()
    assert log.append(b"still fine") == 0


UNINITIALIZED = r"""
import fastq
log = fastq.SegmentLog.__new__(fastq.SegmentLog)
bad = []
for name, call in [
    ("append", lambda: log.append(b"x")),
    ("append_many", lambda: log.append_many([b"x"])),
    ("append_many_empty", lambda: log.append_many([])),
    ("flush", lambda: log.flush()),
    ("commit", lambda: log.commit("g", 0)),
    ("truncate_before", lambda: log.truncate_before(0)),
]:
    try:
        result = call()
    except Exception:
        continue
    bad.append(f"{name} returned {result!r}")
print("bad:", bad, flush=True)
log.close()
print("done", flush=True)
"""


def test_a_log_made_without_init_raises_instead_of_crashing() -> None:
    """SegmentLog.__new__ without __init__ (pickle-style construction, subclass bugs) must not
    reach the C code with no segment: every write raises a Python exception."""
    proc = run_python(UNINITIALIZED)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert "bad: []" in proc.stdout, proc.stdout
    assert "done" in proc.stdout


# ---- commits ----------------------------------------------------------------------------------


def test_commit_committed_and_groups(log: SegmentLog) -> None:
    log.append_many([b"x"] * 10)
    assert log.committed("billing") is None
    assert log.groups() == {}
    assert untyped(log.commit)("billing", 3) is None
    log.commit("audit", 0)
    log.commit("billing", 3)  # same offset again: fine
    log.commit("billing", 10)  # the end offset is allowed
    assert log.committed("billing") == 10
    assert log.groups() == {"billing": 10, "audit": 0}
    groups = log.groups()
    groups["billing"] = 0  # a copy
    assert log.committed("billing") == 10


def test_commits_are_monotonic_unless_forced(log: SegmentLog) -> None:
    log.append_many([b"x"] * 10)
    log.commit("g", 5)
    with pytest.raises(ValueError, match="back"):
        log.commit("g", 4)
    assert log.committed("g") == 5
    log.commit("g", 2, force=True)
    assert log.committed("g") == 2
    log.commit("g", 0, force=True)
    assert log.committed("g") == 0
    with pytest.raises(TypeError):
        log.commit("g", 1, force=untyped(1))


def test_commit_outside_the_log_raises_offset_out_of_range(log: SegmentLog) -> None:
    log.append_many([b"x"] * 3)
    for bad in (4, -1, 2**64):
        with pytest.raises(OffsetOutOfRange, match=r"0\.\.3"):
            log.commit("g", bad)
        with pytest.raises(OffsetOutOfRange):
            log.commit("g", bad, force=True)
    assert log.committed("g") is None


@pytest.mark.parametrize(
    ("group", "offset", "exc"),
    [
        ("", 0, ValueError),
        ("x" * 1025, 0, ValueError),
        (b"g", 0, TypeError),
        (None, 0, TypeError),
        (5, 0, TypeError),
        ("g", 1.0, TypeError),
        ("g", True, TypeError),
        ("g", None, TypeError),
    ],
)
def test_commit_bad_arguments_raise(
    log: SegmentLog, group: Any, offset: Any, exc: type[Exception]
) -> None:
    log.append(b"x")
    with pytest.raises(exc):
        log.commit(group, offset)
    assert log.groups() == {}


def test_committed_needs_a_str_group(log: SegmentLog) -> None:
    with pytest.raises(TypeError):
        log.committed(untyped(b"g"))


@pytest.mark.parametrize("sync", ["none", "always", "interval:20"])
def test_commits_persist_across_reopen(logdir: Path, sync: str) -> None:
    names = ["billing", "ünïcödé ✓", "x" * 1024, "a.b/c"]
    with SegmentLog(logdir, segment_bytes=SEG, sync=sync) as log:
        log.append_many([b"x"] * 20)
        for i, name in enumerate(names):
            log.commit(name, 5 * i)
        log.commit("billing", 20)
    with SegmentLog(logdir, segment_bytes=SEG, sync=sync) as log:
        assert log.groups() == {"billing": 20, names[1]: 5, names[2]: 10, names[3]: 15}
        with pytest.raises(ValueError, match="back"):
            log.commit("billing", 19)  # monotonic across reopen too
    assert not (logdir / "offsets.tmp").exists()


def test_committed_offset_beyond_the_end_is_clamped_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    longer, shorter = tmp_path / "longer", tmp_path / "shorter"
    with SegmentLog(longer, segment_bytes=SEG) as log:
        log.append_many([b"x"] * 10)
        log.commit("ahead", 10)
        log.commit("behind", 2)
    with SegmentLog(shorter, segment_bytes=SEG) as log:
        log.append_many([b"y"] * 3)
    # as if the tail past offset 3 was lost after the commits: the offsets file says 10
    shutil.copyfile(longer / "offsets", shorter / "offsets")
    with caplog.at_level(logging.WARNING, logger="fastq.log"), SegmentLog(shorter) as log:
        assert log.committed("ahead") == 3
        assert log.committed("behind") == 2
        assert log.statistics()["offsets_clamped"] == [("ahead", 10, 3)]
    assert any("ahead" in r.getMessage() and r.name == "fastq.log" for r in caplog.records)
    with SegmentLog(shorter) as log:  # the clamp was written back
        assert log.groups() == {"ahead": 3, "behind": 2}
        assert log.statistics()["offsets_clamped"] == []


# ---- retention and truncate_before ------------------------------------------------------------


def test_retention_bytes_deletes_whole_oldest_segments(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG, retention_bytes=3 * SEG) as log:
        fill_segments(log, 8)  # sealed segments hold 16256 bytes, the active one 12224
        log.flush()  # (keeps this test independent of retention-before-flush, tested below)
        log.apply_retention()
        assert segment_bases(logdir) == [10, 12, 14]
        assert log.segments == 3
        assert log.size_bytes <= 3 * SEG
        assert log.start_offset == 10
        assert log.statistics()["segments_removed"] == 5
        # only whole segments went; what is left runs contiguously to the end
        assert [r.offset for r in all_records(log)] == list(range(10, 15))
        with pytest.raises(OffsetOutOfRange, match=r"10\.\.15"):
            log.read(9)
        with pytest.raises(OffsetOutOfRange):
            log.read(0)
        assert log.apply_retention() == 0


def test_retention_bytes_zero_keeps_only_the_active_segment(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG, retention_bytes=0) as log:
        fill_segments(log, 5)
        log.append(b"newest")
        log.flush()
        log.apply_retention()
        assert log.segments == 1
        assert segment_bases(logdir) == [log.start_offset] == [8]
        assert values(log) == [b"%06d" % 8 + b"v" * 3994, b"newest"]
        assert log.apply_retention() == 0


def test_retention_runs_at_every_roll_without_flush(logdir: Path) -> None:
    """Retention runs at every roll (docs/log.md): it must not wait for a flush(), and in
    sync="none" the sealed segments are not flushed until flush()/close()."""
    with SegmentLog(logdir, segment_bytes=SEG, retention_bytes=3 * SEG) as log:
        fill_segments(log, 10)
        assert log.segments <= 4, segment_files(logdir)
        assert log.start_offset > 0
        assert log.statistics()["segments_removed"] >= 6
        log.apply_retention()
        assert log.size_bytes <= 3 * SEG
        assert segment_bases(logdir) == [14, 16, 18]


def test_apply_retention_and_truncate_before_do_not_wait_for_flush(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        fill_segments(log, 4)
        assert log.truncate_before(4) == 4
        assert log.start_offset == 4
        assert segment_bases(logdir) == [4, 6]
    with SegmentLog(logdir, segment_bytes=SEG, retention_bytes=0) as log:
        log.append_many([b"x" * 4000] * 4)  # two more segments, not flushed
        log.apply_retention()  # the rolls may already have removed them (they run it too)
        assert log.segments == 1
        assert log.statistics()["segments_removed"] >= 2


def test_retention_at_open(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        fill_segments(log, 6)
    with SegmentLog(logdir, segment_bytes=SEG, retention_bytes=2 * SEG) as log:
        assert segment_bases(logdir) == [8, 10]
        assert (log.start_offset, log.end_offset, log.segments) == (8, 11, 2)
        assert log.statistics()["segments_removed"] == 4


def test_retention_seconds_by_newest_timestamp(logdir: Path) -> None:
    s = 10**9
    base = time.time_ns() + 3600 * s  # in the future: wall-clock retention at rolls keeps all
    with SegmentLog(logdir, segment_bytes=SEG, retention_seconds=10) as log:
        # two records per segment; segment 1 holds an out-of-order newer timestamp
        stamps = [0, 1, 2, 50, 4, 5, 6, 7, 8]
        for ts in stamps:
            log.append(b"t" * 4000, timestamp=base + ts * s)
        assert log.segments == 5
        log.flush()
        assert log.apply_retention(now=base + 5 * s) == 0  # everything is younger than 10 s
        assert log.apply_retention(now=base + 12 * s) == 1  # segment 0's newest is 1 s < 2 s
        assert log.start_offset == 2
        # segment 1's newest record is 50 s: it stays, and retention stops there (oldest first)
        assert log.apply_retention(now=base + 30 * s) == 0
        assert log.start_offset == 2
        assert log.apply_retention(now=base + 61 * s) == 3  # all but the active segment
        assert log.segments == 1
        assert log.start_offset == 8
        assert [r.timestamp for r in all_records(log)] == [base + 8 * s]
        with pytest.raises(OffsetOutOfRange):
            log.read(7)
        assert log.statistics()["segments_removed"] == 4


def test_retention_seconds_cutoff_does_not_overflow(logdir: Path) -> None:
    base = time.time_ns() + 3600 * 10**9
    with SegmentLog(logdir, segment_bytes=SEG, retention_seconds=1) as log:
        for i in range(7):
            log.append(b"t" * 4000, timestamp=base + i)
        log.flush()
        assert log.segments == 4
        # "now" at the bottom of the clock: every record is newer than now - 1 s, none may go
        # (now - 1 s must not wrap around to a cutoff near INT64_MAX)
        assert log.apply_retention(now=INT64_MIN) == 0
        assert log.apply_retention(now=INT64_MIN + 10**9 - 1) == 0
        assert log.start_offset == 0
        assert len(values(log)) == 7


@pytest.mark.parametrize("seconds", [1e10, 2**63, 1e300])
def test_huge_retention_seconds_means_keep_everything(logdir: Path, seconds: float) -> None:
    """A finite retention longer than int64 nanoseconds (~292 years) is valid: keep all."""
    with SegmentLog(logdir, segment_bytes=SEG, retention_seconds=seconds) as log:
        fill_segments(log, 3)
        log.flush()
        assert log.apply_retention() == 0
        assert log.apply_retention(now=INT64_MAX) == 0
        assert log.start_offset == 0


@pytest.mark.parametrize("now", [1.5, True, "1", 2**63])
def test_apply_retention_bad_now_raises(log: SegmentLog, now: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        log.apply_retention(now=now)


def test_truncate_before_deletes_segments_wholly_before_the_offset(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        fill_segments(log, 5)
        log.flush()
        bases = segment_bases(logdir)
        assert log.truncate_before(0) == 0
        assert log.truncate_before(bases[1] - 1) == 0  # offset inside segment 0: keeps it
        assert log.truncate_before(bases[2] + 1) == bases[2]
        assert segment_bases(logdir) == bases[2:]
        assert log.start_offset == bases[2]
        with pytest.raises(OffsetOutOfRange):
            log.read(bases[2] - 1)
        assert log.truncate_before(bases[1]) == bases[2]  # never grows back
        assert log.truncate_before(log.end_offset) == bases[-1]  # never the active segment
        assert log.segments == 1
        assert log.read(bases[-1])[0].offset == bases[-1]
        assert log.statistics()["segments_removed"] == len(bases) - 1


def test_read_of_a_committed_offset_that_retention_removed(logdir: Path) -> None:
    """The reset policy: the group's offset is kept, reading it raises OffsetOutOfRange, and
    the consumer resumes from start_offset."""
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        fill_segments(log, 3)
        log.commit("slow", 1)
        assert log.truncate_before(log.end_offset) == 4
        assert log.committed("slow") == 1
        with pytest.raises(OffsetOutOfRange, match=r"4\.\.5"):
            log.read(log.committed("slow") or 0)
        assert [r.offset for r in log.read(log.start_offset)] == [4]
        log.commit("slow", log.start_offset)
        assert log.committed("slow") == 4


def test_truncate_before_bad_arguments(log: SegmentLog) -> None:
    log.append_many([b"x"] * 3)
    for bad in (-1, 4, 2**64):
        with pytest.raises(OffsetOutOfRange):
            log.truncate_before(bad)
    for wrong in (1.0, True, None, "1"):
        with pytest.raises(TypeError):
            log.truncate_before(untyped(wrong))
    assert log.start_offset == 0


def test_a_live_record_holds_its_segment_against_retention(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG, retention_bytes=0) as log:
        log.append(b"oldest")
        held = log.read(0)[0]
        fill_segments(log, 4)  # rolls: retention runs at each and stops at the held segment
        assert log.start_offset == 0
        assert segment_bases(logdir)[0] == 0
        log.flush()
        assert log.apply_retention() == 0  # still held
        assert log.truncate_before(log.end_offset) == 0
        assert held.value == b"oldest"
        del held
        segments = log.segments
        assert log.apply_retention() == segments - 1  # gone at the next retention run
        assert log.segments == 1
        assert segment_bases(logdir) == [log.start_offset]


def test_a_released_record_is_deleted_at_the_next_roll(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG, retention_bytes=0) as log:
        log.append(b"oldest")
        held = log.read(0)[0]
        fill_segments(log, 3)
        log.flush()
        assert log.start_offset == 0
        del held
        end = log.end_offset
        while log.end_offset - end < 3:  # rolls at least once more
            log.append(b"r" * 4000)
        assert log.start_offset > 0
        assert log.segments <= 2


def test_a_value_view_alone_holds_its_segment(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        fill_segments(log, 4)
        log.flush()
        view = log.read(1)[0].value_view  # the record itself is dropped, only its view remains
        gc.collect()
        assert log.truncate_before(log.end_offset) == 0
        assert view.tobytes().startswith(b"000001")
        view.release()
        del view
        assert log.truncate_before(log.end_offset) == 6
        assert log.start_offset == 6
        assert segment_bases(logdir) == [6]


def test_a_record_in_a_middle_segment_stops_retention_there(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        fill_segments(log, 5)
        log.flush()
        bases = segment_bases(logdir)
        held = log.read(bases[2])[0]
        assert log.truncate_before(log.end_offset) == bases[2]
        assert segment_bases(logdir) == bases[2:]
        del held
        assert log.truncate_before(log.end_offset) == bases[-1]


def test_an_iterator_holds_its_segment_and_reports_truncation_ahead(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        fill_segments(log, 4)
        log.flush()
        it = log.iter()
        first = next(it)
        assert first.offset == 0
        del first
        assert log.truncate_before(log.end_offset) == 0  # the iterator's batch holds segment 0
        rest = list(it)
        assert [r.offset for r in rest] == list(range(1, log.end_offset))
        del rest
        # an iterator that has not read yet holds nothing: truncation ahead of it is reported
        fresh = log.iter(0)
        assert log.truncate_before(log.end_offset) == segment_bases(logdir)[0] > 0
        with pytest.raises(OffsetOutOfRange):
            next(fresh)


# ---- iter, tail -------------------------------------------------------------------------------


def test_iter_yields_every_record_to_the_current_end(log: SegmentLog) -> None:
    assert list(log) == []
    fill_segments(log, 3)
    expected = values(log)
    assert [r.value for r in log.iter()] == expected
    assert [r.value for r in log] == expected
    assert [r.offset for r in log.iter(3)] == list(range(3, len(expected)))
    assert list(log.iter(log.end_offset)) == []
    it = log.iter()
    assert next(it).offset == 0
    log.append(b"appended while iterating")
    got = list(it)  # it ends at the end it finds, without waiting
    assert got[-1].value == b"appended while iterating"
    assert [r.offset for r in got] == list(range(1, log.end_offset))


def test_iter_and_tail_bad_start(log: SegmentLog) -> None:
    log.append_many([b"x"] * 3)
    for bad in (-1, 4):
        with pytest.raises(OffsetOutOfRange, match=r"0\.\.3"):
            log.iter(bad)
        with pytest.raises(OffsetOutOfRange):
            log.tail(bad)
    for wrong in (1.0, True, "0"):
        with pytest.raises(TypeError):
            log.iter(untyped(wrong))
        with pytest.raises(TypeError):
            log.tail(untyped(wrong))
    with pytest.raises(ValueError, match="timeout"):
        log.tail(timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        log.tail(timeout=float("nan"))
    with pytest.raises(TypeError):
        log.tail(timeout=untyped("1"))


def test_tail_stops_after_timeout_with_no_appends(log: SegmentLog) -> None:
    log.append_many([b"a", b"b"])
    start = time.monotonic()
    assert list(log.tail(timeout=0.05)) == []  # start=None: from the end
    elapsed = time.monotonic() - start
    assert 0.04 <= elapsed < LIVENESS
    assert [r.value for r in log.tail(0, timeout=0.05)] == [b"a", b"b"]
    assert [r.value for r in log.tail(1, timeout=0)] == [b"b"]


def test_tail_in_a_thread_receives_later_appends(log: SegmentLog) -> None:
    log.append(b"before")
    it = log.tail(timeout=LIVENESS)  # starts at the end: "before" is not included
    got: list[bytes] = []

    def consume() -> None:
        for rec in it:
            got.append(rec.value)
            if len(got) == 30:
                return

    runner = Runner(consume)
    runner.start()
    assert runner.started_call.wait(LIVENESS)
    expected = []
    for i in range(30):  # crosses segment rolls
        value = b"%02d" % i + b"t" * (i * 300 % 8000)
        expected.append(value)
        log.append(value)
    runner.finish()
    assert got == expected


def test_tail_stops_when_the_log_is_closed_from_another_thread(logdir: Path) -> None:
    log = SegmentLog(logdir, segment_bytes=SEG)
    try:
        it = log.tail()  # no timeout: only the close ends it
        first = threading.Event()
        got: list[int] = []

        def consume() -> int:
            for rec in it:
                got.append(rec.offset)
                first.set()
            return len(got)

        runner = Runner(consume)
        runner.start()
        log.append(b"one")
        assert first.wait(LIVENESS)
        log.close()
        assert runner.finish() == 1
        assert got == [0]
    finally:
        log.close()


def test_tail_and_iter_from_many_threads_while_appending(log: SegmentLog) -> None:
    total = 400
    iters = [log.tail(0, timeout=LIVENESS) for _ in range(3)]

    def consume(it: Iterator[Record]) -> list[int]:
        seen = []
        for rec in it:
            assert rec.value == b"%d" % rec.offset
            seen.append(rec.offset)
            if len(seen) == total:
                break
        return seen

    runners = [Runner(partial(consume, it)) for it in iters]
    for r in runners:
        r.start()
    for i in range(total):
        assert log.append(b"%d" % i) == i
    for r in runners:
        assert r.finish() == list(range(total))


def test_concurrent_appenders_get_unique_contiguous_offsets(log: SegmentLog) -> None:
    threads, per = 4, 250
    start = threading.Barrier(threads)

    def appender(tid: int) -> list[int]:
        start.wait()
        offsets = []
        for i in range(per):
            if i % 10 == 0:
                first = log.append_many([b"%d:%d" % (tid, i), b"%d:%d+" % (tid, i)])
                offsets += [first, first + 1]
            else:
                offsets.append(log.append(b"%d:%d" % (tid, i), key=b"%d" % tid))
        return offsets

    runners = [Runner(partial(appender, t)) for t in range(threads)]
    for r in runners:
        r.start()
    results = [r.finish() for r in runners]
    n = threads * (per + per // 10)
    assert sorted(o for res in results for o in res) == list(range(n))
    recs = {r.offset: r.value for r in all_records(log)}
    for tid, offsets in enumerate(results):
        mine = [recs[o] for o in offsets]
        assert all(v.startswith(b"%d:" % tid) for v in mine)
        assert offsets == sorted(offsets)  # each thread's appends are in its order


# ---- offset_for_time --------------------------------------------------------------------------


def test_offset_for_time_matches_brute_force_with_unordered_timestamps(
    log: SegmentLog, rng: random.Random
) -> None:
    n = 1500
    stamps = [rng.randrange(0, 1000) for _ in range(n)]
    stamps[rng.randrange(n)] = INT64_MAX
    stamps[rng.randrange(n)] = INT64_MIN
    vals = [rng.randbytes(rng.randrange(0, 120)) for _ in range(n)]
    for i in range(0, n, 100):
        log.append_many(vals[i : i + 100], timestamps=stamps[i : i + 100])
    assert log.segments > 3

    def brute(ts: int, start: int = 0) -> int:
        for off in range(start, n):
            if stamps[off] >= ts:
                return off
        return n

    queries = [rng.randrange(-5, 1006) for _ in range(200)]
    queries += [INT64_MIN, INT64_MAX, INT64_MAX - 1, -(2**70), 0, 999, 1000]
    for q in queries:
        assert log.offset_for_time(q) == brute(q), q
    log.flush()
    start = log.truncate_before(n // 2)
    assert start > 0
    for q in [*queries[:50], INT64_MIN, INT64_MAX]:
        assert log.offset_for_time(q) == brute(q, start), q


def test_offset_for_time_edges(log: SegmentLog) -> None:
    assert log.offset_for_time(0) == 0  # empty: the end offset
    log.append_many([b"a", b"b", b"c"], timestamps=[10, 30, 20])
    assert log.offset_for_time(5) == 0
    assert log.offset_for_time(10) == 0
    assert log.offset_for_time(11) == 1
    assert log.offset_for_time(25) == 1
    assert log.offset_for_time(31) == 3
    assert log.offset_for_time(-(2**70)) == 0
    log.append(b"d", timestamp=INT64_MAX)
    assert log.offset_for_time(INT64_MAX) == 3
    # beyond int64 no timestamp can be >= it: the end offset, not the INT64_MAX record
    assert log.offset_for_time(2**63) == 4
    assert log.offset_for_time(2**70) == 4
    for wrong in (1.0, True, "1", None):
        with pytest.raises(TypeError):
            log.offset_for_time(untyped(wrong))


# ---- locking (R14) ----------------------------------------------------------------------------


def test_a_second_writer_gets_log_locked_error_at_once(logdir: Path, tmp_path: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        log.append(b"a")
        start = time.monotonic()
        with pytest.raises(LogLockedError, match="readonly=True"):
            SegmentLog(logdir, segment_bytes=SEG)
        assert time.monotonic() - start < 1.0
        link = tmp_path / "link"
        link.symlink_to(logdir)
        with pytest.raises(LogLockedError):
            SegmentLog(link)
        with pytest.raises(LogLockedError):  # and again: the failed attempts dropped nothing
            SegmentLog(logdir)
        with SegmentLog(logdir, readonly=True) as reader:  # readers take no lock
            assert values(reader) == [b"a"]
        log.append(b"b")
    with SegmentLog(logdir) as log:
        assert values(log) == [b"a", b"b"]


KILLED_WRITER = r"""
import sys, fastq
log = fastq.SegmentLog(sys.argv[1], segment_bytes=16384)
for i in range(5):
    log.append(b"child-%d" % i)
log.commit("g", 5)
print("ready", flush=True)
sys.stdin.read()                    # hold the lock until killed
"""

CHECK_LOCKED = r"""
import sys, fastq
try:
    fastq.SegmentLog(sys.argv[1]).close()
    print("opened")
except fastq.LogLockedError:
    print("locked")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_killed_writer_releases_the_lock_at_once(logdir: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(logdir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(LogLockedError):
            SegmentLog(logdir)
        child.kill()  # SIGKILL: no close, no atexit
        child.wait(LIVENESS)
    start = time.monotonic()
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        assert time.monotonic() - start < 1.0
        # sync="none" survives a process crash: the records are in the page cache
        assert values(log) == [b"child-%d" % i for i in range(5)]
        assert log.committed("g") == 5
        assert log.append(b"parent") == 5


def test_other_fds_on_the_lock_and_segment_files_do_not_drop_the_lock(logdir: Path) -> None:
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        log.append(b"a")
        seg = logdir / segment_files(logdir)[0]

        def poke() -> None:
            for path in (logdir / ".lock", seg):
                fd = os.open(path, os.O_RDWR)
                os.close(fd)
                with open(path, "rb") as f:
                    f.read(1)

        runner = Runner(poke)
        runner.start()
        runner.finish()
        with pytest.raises(LogLockedError):
            SegmentLog(logdir)
        proc = run_python(CHECK_LOCKED, str(logdir))
        assert proc.stdout.strip() == "locked", proc.stderr
        assert log.append(b"b") == 1
    proc = run_python(CHECK_LOCKED, str(logdir))
    assert proc.stdout.strip() == "opened", proc.stderr


READER = r"""
import sys, fastq
directory, n = sys.argv[1], int(sys.argv[2])
with fastq.SegmentLog(directory, readonly=True) as log:
    it = log.tail(timeout=30)
    print("ready", log.end_offset, ",".join(r.value.decode() for r in log.read(0)), flush=True)
    got = []
    for rec in it:
        got.append(f"{rec.offset}={rec.value[:8].decode()}")
        if len(got) == n:
            break
    print("tail", " ".join(got), flush=True)
    recs = log.read(0, max_records=10**6)
    print("read", len(recs), log.end_offset, log.segments, recs[-1].value[:8].decode(), flush=True)
    sys.stdin.readline()            # the parent has committed
    print("groups", sorted(log.groups().items()), flush=True)
"""


def test_a_readonly_reader_in_another_process_follows_appends(logdir: Path) -> None:
    n = 40
    with SegmentLog(logdir, segment_bytes=SEG) as log:
        log.append_many([b"a", b"b", b"c"])
        with subprocess.Popen(
            [sys.executable, "-c", READER, str(logdir), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as child:
            assert child.stdout is not None
            assert child.stdin is not None
            ready = child.stdout.readline().split()
            assert ready == ["ready", "3", "a,b,c"]
            for i in range(n):  # ~40 KB: the reader has to follow several rolls
                log.append(b"%08d" % (i + 3) + b"p" * 1000)
            assert log.segments > 3
            tail_line = child.stdout.readline().split()
            assert tail_line[0] == "tail"
            assert tail_line[1:] == [f"{i + 3}={i + 3:08d}" for i in range(n)]
            read_line = child.stdout.readline().split()
            assert read_line == ["read", str(n + 3), str(n + 3), str(log.segments), f"{n + 2:08d}"]
            log.commit("g", 7)
            child.stdin.write("committed\n")
            child.stdin.flush()
            out, _ = child.communicate(timeout=LIVENESS)
            assert child.returncode == 0
            assert out.strip() == "groups [('g', 7)]"


def test_a_readonly_reader_in_this_process_sees_appends(logdir: Path) -> None:
    logdir.mkdir()
    with SegmentLog(logdir, readonly=True) as reader:  # before any writer: an empty log
        assert (reader.start_offset, reader.end_offset, reader.segments) == (0, 0, 0)
        assert reader.read(0) == []
        with SegmentLog(logdir, segment_bytes=SEG) as writer:
            writer.append(b"first")
            assert reader.end_offset == 1
            assert values(reader) == [b"first"]
            it = reader.tail(timeout=LIVENESS)
            runner = Runner(lambda: [r.value for _, r in zip(range(10), it, strict=False)])
            runner.start()
            fill = [b"%d" % i + b"x" * 3000 for i in range(10)]
            for v in fill:
                writer.append(v)
            assert runner.finish() == fill  # the reader polls the published position
            assert values(reader) == [b"first", *fill]
            assert reader.segments == writer.segments
            assert reader.offset_for_time(0) == 0


def test_a_readonly_reader_sees_commits_made_after_it_opened(
    logdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader's committed()/groups() report the writer's offsets, even ones beyond the end
    the reader last looked at: nothing was truncated, so nothing is clamped or warned about."""
    with SegmentLog(logdir, segment_bytes=SEG) as writer:
        writer.append(b"a")
        with SegmentLog(logdir, readonly=True) as reader:
            assert reader.end_offset == 1
            writer.append_many([b"x"] * 9)
            writer.commit("g", 10)
            with caplog.at_level(logging.WARNING, logger="fastq.log"):
                assert reader.committed("g") == 10
                assert reader.groups() == {"g": 10}
            assert reader.statistics()["offsets_clamped"] == []
            assert not [r for r in caplog.records if r.name == "fastq.log"]
            assert reader.end_offset == 10


READER_BEHIND_RETENTION = r"""
import sys, fastq
SEG = 16384
value = lambda i: b"%06d" % i + b"v" * 3994
with fastq.SegmentLog(sys.argv[1], segment_bytes=SEG, retention_bytes=2 * SEG) as writer:
    writer.append_many([value(i) for i in range(3)])     # segments 0 (offsets 0, 1) and 2 (2)
    with fastq.SegmentLog(sys.argv[1], readonly=True) as reader:
        assert reader.end_offset == 3
        for i in range(3, 20):          # retention deletes segments the reader never opened
            writer.append(value(i))
        start = writer.start_offset
        kept = [r.offset for r in reader.read(start)]
        print("kept", kept == list(range(start, 20)), flush=True)
        for offset in (0, 3, 4, 10):
            try:
                got = reader.read(offset, max_records=100)
            except fastq.OffsetOutOfRange:
                print(offset, "out-of-range", flush=True)
                continue
            ok = [r.offset for r in got] == list(range(offset, offset + len(got)))
            ok = ok and all(r.value == value(r.offset) for r in got)
            print(offset, "ok" if ok and got else f"bad {[r.offset for r in got]}", flush=True)
print("done", flush=True)
"""


def test_a_readonly_reader_behind_retention_never_hangs(logdir: Path) -> None:
    """The writer's retention deletes segments a readonly reader has not opened yet: reads
    across the hole must return what is still mapped or raise OffsetOutOfRange, never spin."""
    hung: subprocess.TimeoutExpired | None = None
    try:
        proc = run_python(READER_BEHIND_RETENTION, str(logdir), timeout=LIVENESS)
    except subprocess.TimeoutExpired as e:
        hung = e
    if hung is not None:
        pytest.fail(f"the reader hung (killed after {LIVENESS} s); it printed {hung.stdout!r}")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, (lines, proc.stderr)
    assert lines[0] == "kept True"
    assert lines[-1] == "done"
    results = dict(line.split(" ", 1) for line in lines[1:-1])
    assert set(results) == {"0", "3", "4", "10"}
    for offset in ("4", "10"):  # inside the deleted range
        assert results[offset] == "out-of-range", lines
    for offset in ("0", "3"):  # still mapped by the reader, or reported gone
        assert results[offset] in ("ok", "out-of-range"), lines


# ---- fork -------------------------------------------------------------------------------------

FORK = r"""
import os, sys, fastq
d1, d2 = sys.argv[1], sys.argv[2]
log = fastq.SegmentLog(d1, segment_bytes=16384)
log.append(b"before-fork")
log.commit("g", 1)
pid = os.fork()
if pid == 0:
    bad = []
    calls = {
        "append": lambda: log.append(b"child"),
        "append_many": lambda: log.append_many([b"child"]),
        "read": lambda: log.read(0),
        "iter": lambda: log.iter(),
        "tail": lambda: log.tail(timeout=0),
        "commit": lambda: log.commit("g", 1),
        "committed": lambda: log.committed("g"),
        "groups": lambda: log.groups(),
        "flush": lambda: log.flush(),
        "offset_for_time": lambda: log.offset_for_time(0),
        "truncate_before": lambda: log.truncate_before(0),
        "apply_retention": lambda: log.apply_retention(),
        "start_offset": lambda: log.start_offset,
        "end_offset": lambda: log.end_offset,
        "size_bytes": lambda: log.size_bytes,
        "segments": lambda: log.segments,
    }
    for name, call in calls.items():
        try:
            call()
            bad.append(name + ":no-error")
        except fastq.Closed:
            pass
        except BaseException as e:
            bad.append(f"{name}:{type(e).__name__}")
    try:
        fastq.SegmentLog(d1).close()
        bad.append("child-took-the-lock")
    except fastq.LogLockedError:
        pass
    try:
        with fastq.SegmentLog(d2, segment_bytes=16384) as other:
            other.append(b"child-log")
            if [r.value for r in other.read(0)] != [b"child-log"]:
                bad.append("child-log-content")
    except BaseException as e:
        bad.append(f"child-log:{type(e).__name__}")
    try:
        log.close()
        log.close()
    except BaseException as e:
        bad.append(f"close:{type(e).__name__}")
    print("child", " ".join(bad) or "ok", flush=True)
    os._exit(0 if not bad else 3)
_, status = os.waitpid(pid, 0)
print("exit", os.waitstatus_to_exitcode(status), flush=True)
log.append(b"after-fork")
print("parent", ",".join(r.value.decode() for r in log.read(0)), log.committed("g"), flush=True)
try:
    fastq.SegmentLog(d1).close()
    print("lock lost", flush=True)
except fastq.LogLockedError:
    print("lock held", flush=True)
log.close()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_fork_child_cannot_use_the_inherited_log(tmp_path: Path) -> None:
    # in a fresh single-threaded interpreter: forking pytest itself (with its threads) is unsafe
    proc = run_python(FORK, str(tmp_path / "a"), str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "child ok",
        "exit 0",
        "parent before-fork,after-fork 1",
        "lock held",
    ], proc.stderr
    with SegmentLog(tmp_path / "b") as other:
        assert values(other) == [b"child-log"]


# ---- introspection, object protocol, errors ---------------------------------------------------

STAT_TYPES: dict[str, type | tuple[type, ...]] = {
    "directory": str,
    "sync": str,
    "start_offset": int,
    "end_offset": int,
    "durable_offset": int,
    "segments": int,
    "size_bytes": int,
    "appends": int,
    "bytes_appended": int,
    "fsyncs": int,
    "records_durable": int,
    "records_per_fsync": float,
    "bytes_truncated": int,
    "truncations": list,
    "repaired": list,
    "offsets_clamped": list,
    "segments_removed": int,
    "failed": bool,
    "closed": bool,
}


def test_statistics_keys_and_types(log: SegmentLog) -> None:
    log.append_many([b"x"] * 3)
    stats = log.statistics()
    assert set(stats) == set(STAT_TYPES)
    for key, kind in STAT_TYPES.items():
        assert isinstance(stats[key], kind), (key, stats[key])
        if kind is int:
            assert not isinstance(stats[key], bool), key
    assert stats["directory"] == log.directory
    assert (stats["start_offset"], stats["end_offset"], stats["segments"]) == (0, 3, 1)
    assert (stats["appends"], stats["failed"], stats["closed"]) == (3, False, False)
    assert stats["size_bytes"] == log.size_bytes


def test_repr_and_properties(log: SegmentLog) -> None:
    text = repr(log)
    assert text.startswith("<fastq.SegmentLog")
    assert repr(log.directory) in text
    assert "sync='none'" in text
    assert "open" in text
    assert not log.readonly
    assert not log.closed
    log.append(b"x" * 100, key=b"k")
    assert "Record(offset=0" in repr(log.read(0)[0])
    assert "..." in repr(log.read(0)[0])  # long values are shortened


def test_pickling_and_direct_construction_are_refused(log: SegmentLog) -> None:
    log.append(b"x")
    rec = log.read(0)[0]
    for obj in (log, rec):
        with pytest.raises(TypeError):
            pickle.dumps(obj)
    with pytest.raises(TypeError):
        Record()
    with pytest.raises(TypeError):
        Record(0, 0, None, b"x")
    with pytest.raises(TypeError):
        type("Sub", (SegmentLog,), {})
    assert fastq.Record is Record
    assert fastq.SegmentLog is SegmentLog


def test_error_hierarchy_and_corrupt_log_error_fields() -> None:
    for exc in (CorruptLogError, LogLockedError, LogFailedError, OffsetOutOfRange):
        assert issubclass(exc, FastqError)
        assert not issubclass(exc, (ValueError, TypeError))
    assert not issubclass(Closed, OffsetOutOfRange)
    err = CorruptLogError("/data/00000000000000000000.log", 8192, "record CRC mismatch")
    assert (err.path, err.position, err.reason) == (
        "/data/00000000000000000000.log",
        8192,
        "record CRC mismatch",
    )
    assert "/data/00000000000000000000.log" in str(err)
    assert "8192" in str(err)
    assert "record CRC mismatch" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is CorruptLogError
    assert (again.path, again.position, again.reason) == (err.path, err.position, err.reason)
    for exc in (LogLockedError, LogFailedError, OffsetOutOfRange):
        clone = pickle.loads(pickle.dumps(exc("message")))
        assert type(clone) is exc
        assert str(clone) == "message"
