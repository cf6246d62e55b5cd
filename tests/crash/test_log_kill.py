"""R1: kill -9 crash-recovery loop for SegmentLog (crash class C1, blackbox, RocksDB style).

A writer child, forked from this process (fastq is already imported, so a cycle costs a fork,
not an interpreter start), opens the log itself and appends records of random sizes (0 B, 1 B,
up to 16 KiB, and sizes that exactly fill the rest of the active segment) with random keys into
a log with 64 KiB segments (it rolls every few records) and size retention on. Every few records
it commits a group offset. After each ``append`` returns it reports ``(offset, sha256)`` over a
pipe, and after each ``commit`` the committed offset. The parent SIGKILLs it after U(1 ms,
100 ms), or the child kills itself after a random number of records, and the parent then reopens
the directory and checks the C1 contract (TESTING.md §1, R1):

* the directory lock is free at once (the kernel dropped the dead writer's ``flock``);
* reopening takes < 1 s (liveness bound) and leaves no ``*.tmp`` file behind;
* every reported record at or after ``start_offset`` is there with an identical hash, and so is
  every record any earlier cycle read back (records never change); anything below the start is
  gone only because retention removed whole segments (the log is then near its size cap);
* offsets are contiguous from ``start_offset`` to ``end_offset`` and every record reads back
  (each read verifies its CRC and offset); at most one in-flight batch was never reported;
* the group's committed offset is within [the last reported commit, ``end_offset``].

Each cycle appends to the same directory, so the log grows across cycles (retention bounds it)
and recovery runs over logs that earlier kills and recoveries shaped. Sync modes vary per cycle;
all of them are C1-safe. A second test builds a 16 MiB unflushed tail (``sync="none"``, no
checkpoint at all) and checks that recovering it takes < 1 s and keeps every record.

What this cannot show: missing fsyncs (mmap stores survive kill -9); test_log_powerloss.py does.
``FASTQ_SOAK=1`` raises the cycle count from 300 to 10,000.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import re
import select
import signal
import struct
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

import fastq

SOAK = os.environ.get("FASTQ_SOAK") == "1"
KILL_CYCLES = 10_000 if SOAK else 300
TIMEOUT = 4 * 3600 if SOAK else 300  # seconds per test (pytest-timeout)

SEGMENT_BYTES = 64 * 1024
RETENTION_BYTES = 512 * 1024
MAX_VALUE = 16 * 1024
MAX_BATCH = 8
GROUP = "billing"
SYNC_MODES = ("none", "interval:5", "always")
SYNC_WEIGHTS = (6, 3, 1)

RECOVERY_BOUND = 1.0  # seconds per reopen (liveness; real recoveries take milliseconds)
CHILD_DEADLINE = 60.0  # seconds a child may take to die before the cycle is declared hung

# the on-disk format (docs/log-format.md): where the published hint lives in a segment
SEGMENT_NAME = re.compile(r"^[0-9]{20}\.log$")
CHECKPOINTS_AT = 4096
HINT_AT = 4160
HINT_SEALED = 1 << 63
RECORD_HEADER = 32
MAX_RECORD = SEGMENT_BYTES - 8192 - RECORD_HEADER  # key + value

# child -> parent messages: tag, u64, 32 bytes (error text follows an "E" message)
MSG = struct.Struct("<cQ32s")
OPENED, APPENDED, COMMITTED, DONE, ERROR = b"O", b"A", b"C", b"D", b"E"


def digest(value: bytes, key: bytes | None) -> bytes:
    """What the child reports for a record: covers the value, the key and "no key" vs b""."""
    h = hashlib.sha256(len(value).to_bytes(8, "little"))
    h.update(value)
    h.update(b"\x01" if key is None else b"\x00" + key)
    return h.digest()


# ---- the writer child ---------------------------------------------------------------------


def _fork(child: Callable[[], NoReturn]) -> int:
    """Fork and run `child` there (it must end with os._exit)."""
    with warnings.catch_warnings():
        # 3.12+ warns when forking a process that has threads (pytest's faulthandler watchdog);
        # the child only runs `child`, which uses no lock another thread could hold.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        child()  # never returns
    return pid


def _send(fd: int, tag: bytes, value: int = 0, blob: bytes = b"") -> None:
    os.write(fd, MSG.pack(tag, value, blob))


def _active_remainder(directory: str) -> int:
    """Bytes left in the active segment, from its published hint (0 when unknown)."""
    names = [n for n in os.listdir(directory) if SEGMENT_NAME.match(n)]
    if not names:
        return 0
    try:
        with open(os.path.join(directory, max(names)), "rb") as f:
            f.seek(HINT_AT)
            raw = f.read(8)
    except FileNotFoundError:
        return 0
    pos = int.from_bytes(raw, "little") & ~HINT_SEALED
    return SEGMENT_BYTES - pos if 8192 <= pos <= SEGMENT_BYTES else 0


def _random_record(rng: random.Random, directory: str) -> tuple[bytes, bytes | None]:
    r = rng.random()
    key: bytes | None
    if r < 0.3:
        key = None
    elif r < 0.4:
        key = b""
    else:
        key = rng.randbytes(rng.randint(1, 64))
    klen = len(key) if key else 0
    r = rng.random()
    if r < 0.1:
        size = 0
    elif r < 0.2:
        size = 1
    elif r < 0.3:
        # exactly fill what is left of the active segment (or one byte more: forces a roll)
        rest = _active_remainder(directory) - RECORD_HEADER - klen
        size = rest if rest >= 0 else rng.randint(0, MAX_VALUE)
        if rest >= 0 and rest + klen < MAX_RECORD and rng.random() < 0.3:
            size += 1
    else:
        size = rng.randint(2, MAX_VALUE)
    return rng.randbytes(size), key


def _writer(directory: str, sync: str, seed: int, kill_after: int | None, wfd: int) -> NoReturn:
    """The child: append and report until killed (by the parent, or by itself after
    `kill_after` operations)."""
    code = 0
    try:
        rng = random.Random(seed)
        log = fastq.SegmentLog(
            directory, segment_bytes=SEGMENT_BYTES, sync=sync, retention_bytes=RETENTION_BYTES
        )
        _send(wfd, OPENED, log.end_offset, log.start_offset.to_bytes(8, "little"))
        ops = 0
        while True:
            if kill_after is not None and ops >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            ops += 1
            if rng.random() < 0.1:
                batch = [_random_record(rng, directory) for _ in range(rng.randint(2, MAX_BATCH))]
                first = log.append_many([v for v, _ in batch], keys=[k for _, k in batch])
                for i, (value, key) in enumerate(batch):
                    _send(wfd, APPENDED, first + i, digest(value, key))
                last = first + len(batch) - 1
            else:
                value, key = _random_record(rng, directory)
                last = log.append(value, key=key)
                _send(wfd, APPENDED, last, digest(value, key))
            if rng.random() < 0.15:
                log.commit(GROUP, last + 1)
                _send(wfd, COMMITTED, last + 1)
    except BaseException as exc:  # report anything (the parent fails the test with it)
        text = f"{type(exc).__name__}: {exc}".encode(errors="replace")[:3000]
        with contextlib.suppress(OSError):
            _send(wfd, ERROR, len(text))
            os.write(wfd, text)
        code = 3
    finally:
        os._exit(code)


@dataclass
class Reports:
    """What one child reported, parsed from the pipe."""

    opened_end: int | None = None
    opened_start: int | None = None
    appended: list[tuple[int, bytes]] = field(default_factory=list)
    commits: list[int] = field(default_factory=list)
    done: bool = False
    error: str | None = None
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> None:
        self._buf += data
        while len(self._buf) >= MSG.size:
            tag, value, blob = MSG.unpack_from(self._buf)
            if tag == ERROR:
                if len(self._buf) < MSG.size + value:
                    return
                self.error = bytes(self._buf[MSG.size : MSG.size + value]).decode()
                del self._buf[: MSG.size + value]
                continue
            del self._buf[: MSG.size]
            if tag == OPENED:
                self.opened_end = value
                self.opened_start = int.from_bytes(blob[:8], "little")
            elif tag == APPENDED:
                self.appended.append((value, blob))
            elif tag == COMMITTED:
                self.commits.append(value)
            elif tag == DONE:
                self.done = True
            else:
                raise AssertionError(f"unknown message tag {tag!r}")


def _pump(
    fd: int, reports: Reports, until: float, stop: Callable[[], bool] = lambda: False
) -> bool:
    """Read reports until EOF (returns True), `stop()` or the monotonic deadline `until`."""
    while not stop():
        left = until - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            data = os.read(fd, 1 << 16)
            if not data:
                return True
            reports.feed(data)
    return False


class Child:
    """A forked child writing reports into a pipe; reaped exactly once."""

    def __init__(self, target: Callable[[int], NoReturn]) -> None:
        r, w = os.pipe()

        def run() -> NoReturn:
            os.close(r)
            target(w)

        self.pid = _fork(run)
        os.close(w)
        self.fd = r
        self.status: int | None = None

    def kill(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def reap(self) -> int:
        if self.status is None:
            self.status = os.waitpid(self.pid, 0)[1]
        return self.status


@contextlib.contextmanager
def _child(target: Callable[[int], NoReturn]) -> Iterator[Child]:
    """Fork `target(write_fd)`; on the way out kill and reap it whatever happened."""
    child = Child(target)
    try:
        yield child
    finally:
        os.close(child.fd)
        child.kill()
        child.reap()


def _lock_is_free(directory: str) -> bool:
    fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the flock too
    return True


def _read_all(log: fastq.SegmentLog) -> dict[int, bytes]:
    """Every record from start to end, checking the offsets are contiguous."""
    start, end = log.start_offset, log.end_offset
    out: dict[int, bytes] = {}
    pos = start
    while pos < end:
        batch = log.read(pos, max_records=1000)
        assert batch, f"read({pos}) returned nothing but end_offset is {end}"
        for rec in batch:
            assert rec.offset == pos, f"offset {rec.offset} where {pos} was expected"
            out[pos] = digest(rec.value, rec.key)
            pos += 1
    assert log.read(end) == []
    return out


# ---- the loop -----------------------------------------------------------------------------


@dataclass
class History:
    """What the parent knows about the directory across cycles."""

    known: dict[int, bytes] = field(default_factory=dict)  # offset -> digest, never changes
    start: int = 0
    end: int = 0
    last_commit: int | None = None
    recoveries: list[float] = field(default_factory=list)
    reported: int = 0
    unreported: int = 0
    retention_drops: int = 0
    killed_before_open: int = 0
    self_kills: int = 0


def _verify(directory: str, rep: Reports, hist: History, cycle: str) -> None:
    # the child's own view at open: the parent closed the log cleanly before forking it
    if rep.opened_end is not None:
        assert rep.opened_end == hist.end, (
            f"{cycle}: the child opened a cleanly closed log at end {rep.opened_end}, "
            f"expected {hist.end}"
        )
    offsets = [off for off, _ in rep.appended]
    if offsets:
        assert offsets == list(range(hist.end, hist.end + len(offsets))), (
            f"{cycle}: appends did not return consecutive offsets from {hist.end}: {offsets[:5]}..."
        )
    if rep.commits:
        assert rep.commits == sorted(rep.commits)
        hist.last_commit = max(hist.last_commit or 0, rep.commits[-1])
    assert _lock_is_free(directory), f"{cycle}: the dead writer's lock is still held"

    t0 = time.perf_counter()
    log = fastq.SegmentLog(directory, segment_bytes=SEGMENT_BYTES, retention_bytes=RETENTION_BYTES)
    took = time.perf_counter() - t0
    try:
        hist.recoveries.append(took)
        assert took < RECOVERY_BOUND, f"{cycle}: reopening took {took:.3f} s"
        leftovers = [n for n in os.listdir(directory) if n.endswith(".tmp")]
        assert not leftovers, f"{cycle}: temp files left after reopen: {leftovers}"

        start, end = log.start_offset, log.end_offset
        assert start >= hist.start, f"{cycle}: start_offset went back {hist.start} -> {start}"
        present = _read_all(log)
        assert len(present) == end - start

        expected = dict(hist.known)
        expected.update(rep.appended)
        gone = sorted(off for off in expected if off < start)
        if gone:
            # only retention removes records: whole segments, while the log is over its cap
            assert log.size_bytes > RETENTION_BYTES - 2 * SEGMENT_BYTES, (
                f"{cycle}: offsets {gone[0]}..{gone[-1]} are gone (start {start}) but the log "
                f"holds only {log.size_bytes} bytes, far below retention_bytes={RETENTION_BYTES}"
            )
            hist.retention_drops += len(gone)
        lost = [off for off in expected if off >= start and off not in present]
        assert not lost, (
            f"{cycle}: {len(lost)} acknowledged records lost after kill -9 "
            f"(first {sorted(lost)[:5]}; log holds {start}..{end})"
        )
        changed = [off for off, dig in expected.items() if off >= start and present[off] != dig]
        assert not changed, f"{cycle}: records changed content: {sorted(changed)[:5]}"

        # records nobody reported: at most one batch that was in flight at the kill
        newest = max([hist.end - 1, *offsets])
        extra = end - 1 - newest
        assert 0 <= extra <= MAX_BATCH, (
            f"{cycle}: {extra} records after the last reported offset {newest} (end {end})"
        )
        hist.unreported += max(extra, 0)
        hist.reported += len(offsets)

        committed = log.committed(GROUP)
        if hist.last_commit is not None:
            assert committed is not None, f"{cycle}: committed offset lost"
            assert hist.last_commit <= committed <= end, (
                f"{cycle}: committed {committed} outside [{hist.last_commit}, {end}]"
            )
            hist.last_commit = committed
        elif committed is not None:
            assert committed <= end
            hist.last_commit = committed
        hist.known = present
        hist.start, hist.end = start, end
    finally:
        log.close()


def _cycle(directory: str, rng: random.Random, hist: History, n: int) -> None:
    sync = rng.choices(SYNC_MODES, SYNC_WEIGHTS)[0]
    seed = rng.getrandbits(64)
    by_count = rng.random() < 0.3
    kill_after = rng.randint(0, 300) if by_count else None
    delay = rng.uniform(0.001, 0.1)
    cycle = f"cycle {n} (sync={sync}, seed={seed}, " + (
        f"self-kill after {kill_after} ops)" if by_count else f"kill after {delay * 1e3:.1f} ms)"
    )
    rep = Reports()
    with _child(lambda w: _writer(directory, sync, seed, kill_after, w)) as child:
        t0 = time.monotonic()
        if not by_count:
            _pump(child.fd, rep, t0 + delay)
            child.kill()
        eof = _pump(child.fd, rep, time.monotonic() + CHILD_DEADLINE)
        assert eof, f"{cycle}: the child did not die within {CHILD_DEADLINE} s"
        status = child.reap()
    assert rep.error is None, f"{cycle}: the writer failed: {rep.error}"
    assert os.WIFSIGNALED(status), f"{cycle}: the writer exited with status {status:#x}"
    assert os.WTERMSIG(status) == signal.SIGKILL, f"{cycle}: the writer got {os.WTERMSIG(status)}"
    if rep.opened_end is None:
        hist.killed_before_open += 1
    hist.self_kills += by_count
    _verify(directory, rep, hist, cycle)


@pytest.mark.timeout(TIMEOUT)
def test_kill9_loop(tmp_path: Path, rng: random.Random) -> None:
    directory = str(tmp_path / "log")
    fastq.SegmentLog(directory, segment_bytes=SEGMENT_BYTES).close()
    hist = History()
    t0 = time.monotonic()
    for n in range(KILL_CYCLES):
        _cycle(directory, rng, hist, n)
    took = time.monotonic() - t0
    rec = sorted(hist.recoveries)
    print(
        f"\nR1: {KILL_CYCLES} kill -9 cycles in {took:.1f} s; {hist.reported} acked records "
        f"checked, {hist.unreported} unacknowledged in-flight records recovered, "
        f"{hist.retention_drops} removed by retention, {hist.killed_before_open} kills before "
        f"the writer finished opening, {hist.self_kills} self-kills; final log "
        f"{hist.start}..{hist.end}; reopen median {rec[len(rec) // 2] * 1e3:.2f} ms, "
        f"max {rec[-1] * 1e3:.2f} ms"
    )
    assert hist.end > 0
    assert hist.reported > 0
    assert hist.retention_drops > 0, "retention never ran: the workload is too small"


# ---- a 16 MiB unflushed tail ------------------------------------------------------------------

TAIL_BYTES = 16 * 1024 * 1024
TAIL_SEGMENT_BYTES = 32 * 1024 * 1024


def _tail_writer(directory: str, seed: int, wfd: int) -> NoReturn:
    code = 0
    try:
        rng = random.Random(seed)
        log = fastq.SegmentLog(directory, segment_bytes=TAIL_SEGMENT_BYTES, sync="none")
        _send(wfd, OPENED, log.end_offset)
        written = 0
        while written < TAIL_BYTES:
            value = rng.randbytes(rng.choice((0, 1, rng.randint(2, MAX_VALUE))))
            key = rng.randbytes(rng.randint(0, 16)) if rng.random() < 0.5 else None
            off = log.append(value, key=key)
            _send(wfd, APPENDED, off, digest(value, key))
            written += len(value) + RECORD_HEADER + (len(key) if key else 0)
        _send(wfd, DONE)
        signal.pause()  # wait for the parent's SIGKILL with everything still unflushed
    except BaseException as exc:
        text = f"{type(exc).__name__}: {exc}".encode(errors="replace")[:3000]
        with contextlib.suppress(OSError):
            _send(wfd, ERROR, len(text))
            os.write(wfd, text)
        code = 3
    finally:
        os._exit(code)


def test_recover_16mib_unflushed_tail(tmp_path: Path, rng: random.Random) -> None:
    directory = str(tmp_path / "log")
    seed = rng.getrandbits(64)
    rep = Reports()
    with _child(lambda w: _tail_writer(directory, seed, w)) as child:
        deadline = time.monotonic() + CHILD_DEADLINE
        _pump(child.fd, rep, deadline, lambda: rep.done or rep.error is not None)
        assert rep.error is None, rep.error
        assert rep.done, "the writer did not finish its 16 MiB within the deadline"
        child.kill()
        assert _pump(child.fd, rep, time.monotonic() + CHILD_DEADLINE)
        assert os.WTERMSIG(child.reap()) == signal.SIGKILL
    segment = os.path.join(directory, f"{0:020d}.log")
    with open(segment, "rb") as f:
        f.seek(CHECKPOINTS_AT)
        slots = f.read(64)
    # nothing was ever synced: no checkpoint, so recovery must treat the whole tail as suspect
    assert slots == bytes(64), "the writer checkpointed although sync='none' never syncs"
    assert _lock_is_free(directory)

    t0 = time.perf_counter()
    log = fastq.SegmentLog(directory, segment_bytes=TAIL_SEGMENT_BYTES)
    took = time.perf_counter() - t0
    try:
        present = _read_all(log)
        assert log.start_offset == 0
        lost = [off for off, dig in rep.appended if present.get(off) != dig]
        assert not lost, f"{len(lost)} records lost or changed, first {lost[:5]}"
        assert len(present) == len(rep.appended)
        assert log.statistics()["bytes_truncated"] == 0
    finally:
        log.close()
    print(
        f"\nR1: recovered a {TAIL_BYTES >> 20} MiB unflushed tail of {len(rep.appended)} "
        f"records in {took * 1e3:.1f} ms"
    )
    assert took < RECOVERY_BOUND, f"recovering a 16 MiB tail took {took:.3f} s"


def test_writer_lock_released_by_kill(tmp_path: Path) -> None:
    """The lock check used above means something: a live writer does hold it."""
    directory = str(tmp_path / "log")

    def holder(w: int) -> NoReturn:
        try:
            log = fastq.SegmentLog(directory, segment_bytes=SEGMENT_BYTES)
            _send(w, OPENED, log.end_offset)
            signal.pause()
        finally:
            os._exit(3)

    rep = Reports()
    with _child(holder) as child:
        deadline = time.monotonic() + CHILD_DEADLINE
        _pump(child.fd, rep, deadline, lambda: rep.opened_end is not None)
        assert rep.opened_end == 0
        assert not _lock_is_free(directory)
        with pytest.raises(fastq.LogLockedError):
            fastq.SegmentLog(directory, segment_bytes=SEGMENT_BYTES)
        child.kill()
        assert _pump(child.fd, rep, time.monotonic() + CHILD_DEADLINE)
        assert os.WTERMSIG(child.reap()) == signal.SIGKILL
    t0 = time.perf_counter()
    fastq.SegmentLog(directory, segment_bytes=SEGMENT_BYTES).close()
    assert time.perf_counter() - t0 < RECOVERY_BOUND
