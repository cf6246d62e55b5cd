"""R5: I/O error injection for SegmentLog: failed syncs, a full disk, file-size and descriptor
limits, read-only and forbidden directories.

What this proves (TESTING.md §1 and R5):

* **Sync errors (F9, "fsyncgate").** With ``log._inject_sync_error(EIO, after=k)`` (k = 0..20,
  ``sync="always"``) the append that needed the failing sync raises ``LogFailedError`` (its
  cause the ``OSError``), is not visible to readers, and every later write (``append``,
  ``append_many``, ``commit``, ``flush``, ``truncate_before``, ``apply_retention``) raises
  ``LogFailedError`` too: nothing is retried and acknowledged. Records acknowledged before are
  intact after reopening, and appends resume. The same holds for concurrent appenders sharing a
  group commit (every waiter is woken with the error, none hangs) and for ``sync="interval"``
  (the background sync fails; the next write raises). The same again with the real syscall
  failing under ``strace -e inject=msync:error=EIO`` / ``inject=fsync:error=EIO`` in a child.
* **ENOSPC (F10).** On a 1 MiB tmpfs, a roll that finds no space raises ``OSError(ENOSPC)``
  naming the path, never SIGBUS (the writer runs in a child whose exit status is checked); every
  acknowledged record stays readable; after freeing space (``truncate_before`` or deleting
  another file) the same append succeeds. More than 100 fill/free cycles over the sync modes.
  A commit on the full disk fails cleanly or works; a writer open on it is a clean
  ``OSError(ENOSPC)``; an ``append_many`` whose roll fails leaves none of its records behind.
* **RLIMIT_FSIZE** (SIGXFSZ ignored): a roll beyond the limit is a clean ``OSError(EFBIG)``
  naming the path; acknowledged records survive; lifting the limit resumes appends.
* **EMFILE**: running out of descriptors at open or at a roll (before or after the new
  segment is renamed into place) is a clean ``OSError(EMFILE)``; the directory lock is not
  leaked, and the log stays consistent (it reopens with every acknowledged record) once
  descriptors are free again.
* **Read-only filesystem / no permission**: a writer open is a clean ``OSError`` naming the
  path; a ``readonly=True`` reader still reads a log on a read-only filesystem.

Mounting needs root (CI runs as root); only a mount refused with EPERM/EACCES skips.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fastq

GROUP = "billing"
CHILD_TIMEOUT = 120.0  # seconds: liveness bound for a child process
JOIN_TIMEOUT = 30.0
WAIT_BOUND = 10.0
SRC_ROOT = str(Path(fastq.__file__).resolve().parent.parent)  # where `import fastq` resolves


def digest(value: bytes, key: bytes | None) -> str:
    h = hashlib.sha256(len(value).to_bytes(8, "little"))
    h.update(value)
    h.update(b"\x01" if key is None else b"\x00" + key)
    return h.hexdigest()


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory in RAM when /dev/shm is there (sync="always" syncs per append), else tmp."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="fastq-r5-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _open(directory: Path | str, sync: str = "always", **kw: Any) -> fastq.SegmentLog:
    kw.setdefault("segment_bytes", 16384)
    return fastq.SegmentLog(directory, sync=sync, **kw)


def _record(rng: random.Random, max_size: int = 6000) -> tuple[bytes | None, bytes]:
    key = None if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 16))
    size = rng.choice((0, 1, rng.randint(2, max_size)))
    return key, rng.randbytes(size)


def assert_intact(
    directory: Path | str,
    acked: dict[int, tuple[bytes | None, bytes]],
    attempted: dict[int, tuple[bytes | None, bytes]] | None = None,
    unplaced: set[tuple[bytes | None, bytes]] | None = None,
    **open_kw: Any,
) -> int:
    """Reopen: every acknowledged record is there unchanged, offsets are contiguous, and any
    other record is one of the unacknowledged attempts (at a known offset, or `unplaced` when
    the offset is unknown); appends work. Returns end_offset."""
    with _open(directory, **open_kw) as log:
        start, end = log.start_offset, log.end_offset
        pos = start
        while pos < end:
            for rec in log.read(pos):
                assert rec.offset == pos, f"offset {rec.offset} where {pos} was expected"
                got = (rec.key, rec.value)
                want = acked.get(pos) or (attempted or {}).get(pos)
                if want is None:
                    assert got in (unplaced or set()), f"offset {pos}: a record nobody wrote"
                else:
                    assert got == want, f"offset {pos}: content changed"
                pos += 1
        lost = sorted(off for off in acked if off >= end)
        assert not lost, f"acknowledged records lost: {lost[:10]} (log holds {start}..{end})"
        assert log.append(b"resumed", key=b"r5") == end
        return end


# ---- (a) sync failures --------------------------------------------------------------------


def _assert_refuses_writes(log: fastq.SegmentLog) -> None:
    """A failed log refuses every write, repeatedly (no retry-and-acknowledge)."""
    writes: list[tuple[str, Callable[[], object]]] = [
        ("append", lambda: log.append(b"x")),
        ("append again", lambda: log.append(b"y", key=b"k")),
        ("append_many", lambda: log.append_many([b"a", b"b"])),
        ("commit", lambda: log.commit(GROUP, 0, force=True)),
        ("flush", log.flush),
        ("truncate_before", lambda: log.truncate_before(0)),
        ("apply_retention", log.apply_retention),
        ("append a third time", lambda: log.append(b"z")),
    ]
    for name, write in writes:
        try:
            write()
        except fastq.LogFailedError:
            continue
        pytest.fail(f"{name} succeeded on a failed log")
    assert log.statistics()["failed"] is True


@pytest.mark.parametrize("k", range(21))
def test_sync_error_fails_the_log_sync_always(fast_dir: Path, rng: random.Random, k: int) -> None:
    directory = fast_dir / "log"
    acked: dict[int, tuple[bytes | None, bytes]] = {}
    attempted: dict[int, tuple[bytes | None, bytes]] = {}
    last_commit = None
    log = _open(directory, retention_bytes=64 * 1024)
    try:
        log._inject_sync_error(errno.EIO, after=k)
        failure = None
        for op in range(k + 10):
            first = log.end_offset
            batch = [_record(rng) for _ in range(rng.choice((1, 1, 1, 2, 5)))]
            for i, rec in enumerate(batch):
                attempted[first + i] = rec
            try:
                if len(batch) == 1:
                    key, value = batch[0]
                    assert log.append(value, key=key) == first
                else:
                    values = [value for _, value in batch]
                    keys = [key for key, _ in batch]
                    assert log.append_many(values, keys=keys) == first
            except fastq.LogFailedError as err:
                failure = (op, err)
                break
            for i, rec in enumerate(batch):
                acked[first + i] = rec
            if rng.random() < 0.3:  # commits do not consume injected msync failures
                last_commit = log.end_offset
                log.commit(GROUP, last_commit)
        assert failure is not None, "the injected sync failure never surfaced"
        failed_op, error = failure
        assert failed_op <= k, f"{failed_op} appends succeeded though sync {k + 1} was to fail"
        assert isinstance(error.__cause__, OSError), error.__cause__
        assert error.__cause__.errno == errno.EIO
        # sync="always" readers see only durable records: the acknowledged ones, plus at most
        # the part of a failing append_many that a roll synced before the failure (durable,
        # though its call raised); they must stay readable
        visible = log.end_offset
        assert len(acked) <= visible <= len(attempted), (len(acked), visible)
        got = [(r.key, r.value) for r in log.read(log.start_offset, max_records=10_000)]
        assert got == [attempted[off] for off in range(log.start_offset, visible)]
        _assert_refuses_writes(log)
    finally:
        log.close()  # a failed log closes without raising
    assert log.closed
    end = assert_intact(directory, acked, attempted, retention_bytes=64 * 1024)
    assert end >= visible, f"records readers saw ({visible}) are gone after reopen ({end})"
    with _open(directory) as log:
        assert log.committed(GROUP) == last_commit
        assert log.end_offset == end + 1


def test_sync_error_wakes_every_group_commit_waiter(fast_dir: Path) -> None:
    """Four threads share group commits; the failing sync must fail all its waiters, later
    appends by every thread must fail, and nobody hangs."""
    directory = fast_dir / "log"
    threads = 4
    acked: dict[int, tuple[bytes | None, bytes]] = {}
    unplaced: set[tuple[bytes | None, bytes]] = set()  # appends that raised
    failures: list[str] = []
    seen_error = [False] * threads
    guard = threading.Lock()
    start = threading.Barrier(threads)

    log = _open(directory, segment_bytes=65536)
    log._inject_sync_error(errno.EIO, after=40)

    def appender(t: int) -> None:
        start.wait()
        for i in range(2000):
            value = f"t{t}-{i}-".encode() * (i % 50)
            try:
                off = log.append(value)
            except fastq.LogFailedError:
                with guard:
                    unplaced.add((None, value))
                seen_error[t] = True
                for _ in range(3):  # never acknowledged again
                    try:
                        off = log.append(b"after the failure")
                    except fastq.LogFailedError:
                        continue
                    with guard:
                        failures.append(f"thread {t}: an append succeeded after LogFailedError")
                return
            with guard:
                acked[off] = (None, value)
        with guard:
            failures.append(f"thread {t}: 2000 appends and no failure")

    workers = [threading.Thread(target=appender, args=(t,)) for t in range(threads)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join(JOIN_TIMEOUT)
        hung = [w.name for w in workers if w.is_alive()]
        assert not hung, f"threads still blocked after the sync failure: {hung}"
        assert not failures, failures
        assert all(seen_error), seen_error
        stats = log.statistics()
        assert stats["failed"]
        assert stats["fsyncs"] <= 40
        # every visible (durable) record was acknowledged, and nothing else is visible
        assert sorted(acked) == list(range(log.end_offset))
    finally:
        log.close()
    assert_intact(directory, acked, unplaced=unplaced, segment_bytes=65536)


class _ErrorLogged(logging.Handler):
    """Sets an event when fastq.log reports a failed sync."""

    def __init__(self, event: threading.Event) -> None:
        super().__init__(logging.ERROR)
        self.event = event
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.event.set()


@pytest.mark.parametrize("k", [0, 1, 4])
def test_sync_error_fails_the_log_sync_interval(fast_dir: Path, rng: random.Random, k: int) -> None:
    directory = fast_dir / "log"
    acked: dict[int, tuple[bytes | None, bytes]] = {}
    tick = threading.Event()  # a background sync finished, or failed
    handler = _ErrorLogged(tick)
    logger = logging.getLogger("fastq.log")
    logger.addHandler(handler)
    log = _open(directory, sync="interval:5", segment_bytes=65536)
    try:
        log._set_barrier_hook(lambda kind: tick.set() if kind == "sync" else None)
        log._inject_sync_error(errno.EIO, after=k)
        raised = None
        for _ in range(k + 5):
            tick.clear()
            key, value = _record(rng, 2000)
            try:
                off = log.append(value, key=key)
            except fastq.LogFailedError as exc:
                raised = exc
                break
            acked[off] = (key, value)
            assert tick.wait(WAIT_BOUND), "the background sync neither ran nor failed"
            if handler.messages:
                break
        assert handler.messages, "the injected background sync failure was never reported"
        assert "sync failed" in handler.messages[0]
        if raised is None:
            with pytest.raises(fastq.LogFailedError) as info:
                log.append(b"after the background failure")
            raised = info.value
        assert "sync" in str(raised)
        _assert_refuses_writes(log)
        assert log.end_offset == len(acked)  # acknowledged records stay readable
        assert [r.value for r in log.read(0, max_records=10_000)] == [
            acked[o][1] for o in sorted(acked)
        ]
    finally:
        logger.removeHandler(handler)
        log.close()
    assert_intact(directory, acked, segment_bytes=65536)


STRACE_CHILD = textwrap.dedent(
    """
    import json, sys
    import fastq

    out = {"open_error": None, "acked": [], "error": None, "after": []}
    try:
        log = fastq.SegmentLog(sys.argv[1], segment_bytes=16384, sync="always")
    except OSError as e:
        out["open_error"] = [type(e).__name__, e.errno, str(e)]
        print(json.dumps(out))
        sys.exit(0)
    # 300 B fills a page; 5000 B needs two, so it rolls when one page is left; the next
    # 300 B fits the old segment again: every kind of sync gets hit at some count
    for i, size in enumerate([300, 5000, 300, 300, 5000, 300, 300, 300]):
        value = bytes([i + 1]) * size
        try:
            out["acked"].append([log.append(value), i])
        except Exception as e:
            cause = e.__cause__ if e.__cause__ is not None else e
            out["error"] = [type(e).__name__, getattr(cause, "errno", None), str(e), i]
            break
    if out["error"] is not None:
        for _ in range(3):
            try:
                out["after"].append(["acked", log.append(b"after")])
            except Exception as e:
                out["after"].append(type(e).__name__)
    log.close()
    print(json.dumps(out))
    """
)
STRACE_SIZES = [300, 5000, 300, 300, 5000, 300, 300, 300]


def _strace() -> str:
    path = shutil.which("strace")
    if path is None:
        pytest.fail("strace is not installed (TESTING.md §4 lists it as available)")
    return path


@pytest.mark.parametrize(
    ("syscall", "when"),
    [("msync", 1), ("msync", 2), ("msync", 3), ("msync", 4), ("msync", 6), ("fsync", 2)],
)
def test_real_sync_error_under_strace(fast_dir: Path, syscall: str, when: int) -> None:
    """The real syscall fails (strace fault injection) in a child interpreter: a failure of a
    sync that covers records must fail the log (LogFailedError, later appends too); a plain
    OSError is acceptable only for the sync of a segment file that is then discarded (its
    ``*.tmp``). Either way the log reopens with every acknowledged record."""
    directory = fast_dir / "log"
    python = os.path.realpath(sys.executable)
    env = dict(os.environ, PYTHONPATH=SRC_ROOT)
    cmd = [
        _strace(), "-f", "-qq", "-o", os.devnull, "-e", f"trace={syscall}",
        "-e", f"inject={syscall}:error=EIO:when={when}",
        python, "-c", STRACE_CHILD, str(directory),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT, env=env)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    acked: dict[int, tuple[bytes | None, bytes]] = {
        off: (None, bytes([i + 1]) * STRACE_SIZES[i]) for off, i in out["acked"]
    }
    attempted = dict(acked)
    if out["open_error"] is not None:
        name, err, text = out["open_error"]
        assert err == errno.EIO, out
        assert str(directory) in text, f"the error does not name the path: {text}"
    else:
        assert out["error"] is not None, f"the injected {syscall} failure never surfaced: {out}"
        name, err, text, i = out["error"]
        attempted[len(acked)] = (None, bytes([i + 1]) * STRACE_SIZES[i])
        assert err == errno.EIO, out
        assert str(directory) in text, f"the error does not name the path: {text}"
        for res in out["after"]:
            if isinstance(res, list):  # the log carried on: those appends are acknowledged
                acked[res[1]] = (None, b"after")
        if name == "LogFailedError":
            assert out["after"] == ["LogFailedError"] * 3, f"acknowledged after a failure: {out}"
        else:
            assert name == "OSError", out
            assert ".log.tmp" in text, (
                f"a failed {syscall} after the new segment was published surfaced as a plain "
                f"OSError and the log carried on ({out['after']}); a sync error must fail the "
                f"log (LogFailedError) until it is reopened: {text}"
            )
    assert_intact(directory, acked, attempted)


# ---- mounting (root) ---------------------------------------------------------------------

MS_RDONLY = 1
MS_REMOUNT = 32
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _mount_tmpfs(target: Path, options: str, flags: int = 0) -> None:
    rc = _libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", flags, options.encode())
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.EPERM, errno.EACCES):
            pytest.skip(f"mounting a tmpfs is not permitted here ({os.strerror(err)})")
        raise OSError(err, os.strerror(err), str(target))


def _umount(target: Path) -> None:
    if _libc.umount2(os.fsencode(target), 0) != 0:
        assert _libc.umount2(os.fsencode(target), MNT_DETACH) == 0, os.strerror(ctypes.get_errno())


@contextlib.contextmanager
def tmpfs(target: Path, options: str) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    _mount_tmpfs(target, options)
    try:
        yield target
    finally:
        _umount(target)


def _run_child(script: str, *args: str, **kw: Any) -> dict[str, Any]:
    """Run a Python child; it must exit 0 (a SIGBUS shows up as -7) and print JSON last."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        **kw,
    )
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        pytest.fail(f"the child died of {sig}:\n{proc.stderr}")
    assert proc.returncode == 0, f"the child failed ({proc.returncode}):\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _acked_from(result: dict[str, Any]) -> dict[int, str]:
    return {int(off): dig for off, dig in result["known"].items()}


def _assert_digests(directory: Path | str, known: dict[int, str], **open_kw: Any) -> None:
    with fastq.SegmentLog(directory, **open_kw) as log:
        start, end = log.start_offset, log.end_offset
        got = {}
        pos = start
        while pos < end:
            for rec in log.read(pos):
                assert rec.offset == pos
                got[pos] = digest(rec.value, rec.key)
                pos += 1
        bad = [off for off, dig in known.items() if off >= start and got.get(off) != dig]
        assert not bad, f"acknowledged records lost or changed: {sorted(bad)[:10]}"


# ---- (b) ENOSPC --------------------------------------------------------------------------

CHILD_PRELUDE = textwrap.dedent(
    """
    import errno, hashlib, json, os, random, resource, signal, sys
    import fastq

    def digest(value, key):
        h = hashlib.sha256(len(value).to_bytes(8, "little"))
        h.update(value)
        h.update(b"\\x01" if key is None else b"\\x00" + key)
        return h.hexdigest()

    def check(log, known):
        start, end = log.start_offset, log.end_offset
        pos = start
        while pos < end:
            for rec in log.read(pos):
                assert rec.offset == pos, (rec.offset, pos)
                if pos in known:
                    assert digest(rec.value, rec.key) == known[pos], f"offset {pos} changed"
                pos += 1
        missing = [o for o in known if o >= start and o >= end]
        assert not missing, f"acknowledged records missing: {missing[:5]}"
    """
)

ENOSPC_CHILD = CHILD_PRELUDE + textwrap.dedent(
    """
    root, sync, cycles, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    directory = os.path.join(root, "log-" + sync.replace(":", "-"))
    filler = os.path.join(root, "filler")
    log = fastq.SegmentLog(directory, segment_bytes=131072, sync=sync)
    known = {}
    stats = {"cycles": 0, "appends": 0, "by_truncate": 0, "by_filler": 0, "commit_enospc": 0}
    committed = None
    for cycle in range(cycles):
        by_filler = cycle % 2 == 1
        if by_filler:
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                for _ in range(rng.randint(40, 64)):   # 160..256 KiB
                    os.write(fd, bytes(4096))
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
            finally:
                os.close(fd)
        failed = None
        for _ in range(10_000):
            key = rng.randbytes(rng.randint(0, 16)) if rng.random() < 0.5 else None
            value = rng.randbytes(rng.randint(0, 16384))
            try:
                off = log.append(value, key=key)
            except OSError as e:
                assert not isinstance(e, fastq.LogFailedError), e
                assert e.errno == errno.ENOSPC, repr(e)
                assert directory in str(e), f"the error does not name the path: {e}"
                failed = (key, value)
                break
            known[off] = digest(value, key)
            stats["appends"] += 1
        assert failed is not None, "the filesystem never filled up"
        check(log, known)
        # a commit on the full filesystem: it works or fails cleanly, never half-way
        try:
            log.commit("g", log.end_offset)
            committed = log.end_offset
        except OSError as e:
            assert e.errno == errno.ENOSPC, repr(e)
            stats["commit_enospc"] += 1
        assert log.committed("g") == committed
        # free space, then the very append that failed succeeds (it rolls)
        if by_filler:
            os.unlink(filler)
            stats["by_filler"] += 1
        else:
            start = log.truncate_before(log.end_offset)
            known = {o: d for o, d in known.items() if o >= start}
            stats["by_truncate"] += 1
        segments = log.segments
        key, value = failed
        off = log.append(value, key=key)
        known[off] = digest(value, key)
        assert log.segments == segments + 1, "the retried append did not roll"
        check(log, known)
        stats["cycles"] += 1
    start = log.truncate_before(log.end_offset)   # room for the open-on-a-full-disk check
    known = {o: d for o, d in known.items() if o >= start}
    log.close()
    # a writer open on a full filesystem fails cleanly and leaks nothing
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    fresh = os.path.join(root, "fresh-" + sync.replace(":", "-"))
    try:
        fastq.SegmentLog(fresh, segment_bytes=131072, sync=sync).close()
        raise AssertionError("opening a new log on a full filesystem succeeded")
    except OSError as e:
        assert e.errno == errno.ENOSPC, repr(e)
        assert fresh in str(e), f"the error does not name the path: {e}"
    os.unlink(filler)
    fastq.SegmentLog(fresh, segment_bytes=131072, sync=sync).close()   # lock not leaked
    stats["known"] = {str(o): d for o, d in known.items()}
    stats["directory"] = directory
    print(json.dumps(stats))
    """
)


@pytest.mark.parametrize("sync", ["none", "interval:5", "always"])
def test_enospc_fill_and_free(tmp_path: Path, rng: random.Random, sync: str) -> None:
    cycles = 40  # x 3 sync modes: 120 fill/free cycles
    with tmpfs(tmp_path / "mnt", "size=1m") as mnt:
        result = _run_child(ENOSPC_CHILD, str(mnt), sync, str(cycles), str(rng.getrandbits(32)))
        assert result["cycles"] == cycles
        assert result["by_truncate"] > 0
        assert result["by_filler"] > 0
        _assert_digests(result["directory"], _acked_from(result), segment_bytes=131072)
        leftovers = [p.name for p in Path(result["directory"]).iterdir() if p.suffix == ".tmp"]
        assert not leftovers, leftovers
    print(
        f"\nR5 ENOSPC sync={sync}: {result['cycles']} fill/free cycles, "
        f"{result['appends']} appends, {result['commit_enospc']} commits refused on a full disk"
    )


PARTIAL_BATCH_CHILD = CHILD_PRELUDE + textwrap.dedent(
    """
    root, sync = sys.argv[1], sys.argv[2]
    log = fastq.SegmentLog(os.path.join(root, "log"), segment_bytes=131072, sync=sync)
    log.append(bytes(2000))
    fd = os.open(os.path.join(root, "filler"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:   # the filesystem is full now; the active segment still has room
        while True:
            os.write(fd, bytes(4096))
    except OSError as e:
        assert e.errno == errno.ENOSPC, repr(e)
    finally:
        os.close(fd)
    before = log.end_offset
    out = {"before": before, "error": None}
    try:   # the first two records fit the active segment, the third needs a roll
        log.append_many([b"a" * 100, b"b" * 100, b"c" * 122000])
    except OSError as e:
        out["error"] = e.errno
    out["after_failure"] = log.end_offset
    out["next"] = log.append(b"z")
    out["values"] = [r.value[:1].decode() for r in log.read(before)]
    log.close()
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("sync", ["none", "always"])
def test_enospc_append_many_writes_nothing(tmp_path: Path, sync: str) -> None:
    """A batch that fails with ENOSPC at its roll was not acknowledged: none of its records may
    appear later (a caller retrying it would otherwise duplicate them, and the next append
    would not get end_offset)."""
    with tmpfs(tmp_path / "mnt", "size=1m") as mnt:
        out = _run_child(PARTIAL_BATCH_CHILD, str(mnt), sync)
    assert out["error"] == errno.ENOSPC, out
    before = out["before"]
    assert (out["after_failure"], out["next"], out["values"]) == (before, before, ["z"]), (
        f"append_many raised ENOSPC, yet its first records were kept: the next append got "
        f"offset {out['next']} instead of {before}, and reading from {before} returns "
        f"{out['values']}"
    )


# ---- (c) RLIMIT_FSIZE --------------------------------------------------------------------

FSIZE_CHILD = CHILD_PRELUDE + textwrap.dedent(
    """
    directory, sync = sys.argv[1], sys.argv[2]
    rng = random.Random(7)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    log = fastq.SegmentLog(directory, segment_bytes=131072, sync=sync)
    known = {}
    for _ in range(5):
        value = rng.randbytes(rng.randint(0, 8000))
        known[log.append(value)] = digest(value, None)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, hard))
    failed = None
    for _ in range(1000):
        value = rng.randbytes(rng.randint(0, 16000))
        try:
            off = log.append(value)
        except OSError as e:
            assert not isinstance(e, fastq.LogFailedError), e
            assert e.errno == errno.EFBIG, repr(e)
            assert directory in str(e), f"the error does not name the path: {e}"
            failed = value
            break
        known[off] = digest(value, None)
    assert failed is not None, "no roll hit the file size limit"
    check(log, known)
    log.commit("g", log.end_offset)             # the offsets file is small: it still works
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    off = log.append(failed)                    # lifting the limit resumes appends
    known[off] = digest(failed, None)
    log.close()
    # opening a new log below the limit fails cleanly
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, hard))
    fresh = directory + "-fresh"
    try:
        fastq.SegmentLog(fresh, segment_bytes=131072, sync=sync).close()
        raise AssertionError("a 128 KiB segment was created under a 64 KiB file size limit")
    except OSError as e:
        assert e.errno == errno.EFBIG, repr(e)
        assert fresh in str(e), f"the error does not name the path: {e}"
    print(json.dumps({"known": {str(o): d for o, d in known.items()}}))
    """
)


@pytest.mark.parametrize("sync", ["none", "always"])
def test_rlimit_fsize_at_roll(fast_dir: Path, sync: str) -> None:
    directory = fast_dir / "log"
    result = _run_child(FSIZE_CHILD, str(directory), sync)
    known = _acked_from(result)
    assert len(known) > 5
    _assert_digests(directory, known, segment_bytes=131072)
    with fastq.SegmentLog(directory, segment_bytes=131072) as log:
        assert log.committed("g") is not None


# ---- (d) EMFILE, read-only filesystem, no permission -------------------------------------

EMFILE_CHILD = CHILD_PRELUDE + textwrap.dedent(
    """
    directory, sync, free = sys.argv[1], sys.argv[2], int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    def exhaust(leave):
        fds = []
        try:
            while True:
                fds.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as e:
            assert e.errno == errno.EMFILE, e
        for _ in range(leave):
            os.close(fds.pop())
        return fds

    def release(fds):
        for fd in fds:
            os.close(fd)

    out = {"open_errors": []}
    # at open: a fresh directory with 0..3 descriptors left
    for leave in range(4):
        fresh = f"{directory}-open-{leave}"
        fds = exhaust(leave)
        try:
            fastq.SegmentLog(fresh, segment_bytes=16384, sync=sync).close()
            out["open_errors"].append(None)
        except OSError as e:
            out["open_errors"].append(str(e))
            assert e.errno == errno.EMFILE, repr(e)
            assert fresh in str(e), f"the error does not name the path: {e}"
        finally:
            release(fds)
        fastq.SegmentLog(fresh, segment_bytes=16384, sync=sync).close()   # no lock leaked

    # at a roll, with `free` descriptors left
    log = fastq.SegmentLog(directory, segment_bytes=16384, sync=sync)
    known = {}
    value = bytes([1]) * 3000       # one page used (sync="always" pads to the next page)
    known[log.append(value)] = digest(value, None)
    fds = exhaust(free)
    big = bytes([7]) * 7000         # needs more than the page left: the segment rolls
    failed = None
    try:
        for _ in range(10):
            known[log.append(big)] = digest(big, None)
    except OSError as e:
        assert not isinstance(e, fastq.LogFailedError), e
        assert e.errno == errno.EMFILE, repr(e)
        assert directory in str(e), f"the error does not name the path: {e}"
        failed = str(e)
    finally:
        release(fds)
    assert failed is not None, "no roll ran out of descriptors"
    out["roll_error"] = failed
    # descriptors are back: a small record (it fits the current segment), then the big one
    small = b"small"
    known[log.append(small)] = digest(small, None)
    known[log.append(big)] = digest(big, None)
    check(log, known)
    log.close()
    out["known"] = {str(o): d for o, d in known.items()}
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("free", [0, 1], ids=["no-fd-for-the-new-segment", "no-fd-for-dir-sync"])
@pytest.mark.parametrize("sync", ["none", "always"])
def test_emfile_at_open_and_roll(fast_dir: Path, sync: str, free: int) -> None:
    directory = fast_dir / "log"
    result = _run_child(EMFILE_CHILD, str(directory), sync, str(free))
    assert any(e is not None for e in result["open_errors"]), result["open_errors"]
    # the log stays consistent: it reopens with every acknowledged record
    try:
        _assert_digests(directory, _acked_from(result), segment_bytes=16384)
    except fastq.CorruptLogError as exc:
        pytest.fail(
            f"after a roll failed ({result['roll_error']}) the writer went on appending to the "
            f"old segment, and the cleanly closed log no longer opens: {exc}; files: "
            f"{sorted(p.name for p in directory.iterdir())}"
        )


def test_readonly_filesystem(tmp_path: Path, rng: random.Random) -> None:
    mnt = tmp_path / "ro"
    mnt.mkdir()
    _mount_tmpfs(mnt, "size=4m")
    try:
        directory = mnt / "log"
        acked = {}
        with fastq.SegmentLog(directory, segment_bytes=16384, sync="always") as log:
            for _ in range(20):
                key, value = _record(rng)
                acked[log.append(value, key=key)] = (key, value)
        _mount_tmpfs(mnt, "", MS_REMOUNT | MS_RDONLY)
        for target in (directory, mnt / "new-log"):
            with pytest.raises(OSError, match=re.escape(str(target))) as info:
                fastq.SegmentLog(target, segment_bytes=16384)
            assert info.value.errno == errno.EROFS, info.value
        with fastq.SegmentLog(directory, readonly=True) as reader:
            got = {r.offset: (r.key, r.value) for r in reader.read(0, max_records=1000)}
            assert got == acked
    finally:
        _umount(mnt)


def test_no_permission(fast_dir: Path) -> None:
    """As an unprivileged user (a forked child drops root), opening a log in a directory it
    may not write is a PermissionError naming the path."""
    directory = fast_dir / "log"
    with fastq.SegmentLog(directory, segment_bytes=16384) as log:
        log.append(b"x")
    os.chmod(fast_dir, 0o755)
    r, w = os.pipe()
    with warnings.catch_warnings():
        # 3.12+ warns about forking with threads alive (pytest's faulthandler watchdog); the
        # child only opens a log and exits
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            results: list[list[object] | None] = []
            for target in (directory, fast_dir / "new-log"):
                try:
                    fastq.SegmentLog(target, segment_bytes=16384).close()
                    results.append(None)
                except OSError as e:
                    results.append([type(e).__name__, e.errno, str(e)])
            os.write(w, json.dumps(results).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    reported: list[list[str | int] | None] = json.loads(data)
    for target, res in zip((directory, fast_dir / "new-log"), reported, strict=True):
        assert res is not None, f"an unprivileged user opened {target} for writing"
        name, err, text = res
        assert err == errno.EACCES, res
        assert name == "PermissionError", res
        assert str(target) in str(text), f"the error does not name the path: {text}"
