"""R3: simulated power loss (crash class C2) for SegmentLog, page-granularity model.

Adapted to mmap from SQLite's crash VFS and LevelDB's FaultInjectionEnv. While a workload runs,
the private hook ``log._set_barrier_hook(fn)`` calls ``fn(kind)`` after every durability barrier
(``create``, ``sync``, ``offsets``, ``retention``); it snapshots every file of the directory
(the bytes a reader of the page cache sees) and how many records were acknowledged
(``append`` returned) so far. A crash "after barrier k" is then modelled as:

* the disk holds the state of barrier k (``old``), and each 4 KiB page that differs between it
  and the in-memory state at the crash (``new``: the state of barrier k+1, or the final state
  for the last barrier) is, independently, new, old, torn (the first k x 512 bytes new, the rest
  old) or random garbage;
* a file created after barrier k may vanish or stay; a file deleted after barrier k may
  reappear; stray ``*.tmp`` files may exist;
* ``offsets`` is replaced by rename, so it is whole: old or new. (The stricter POSIX model, where
  a renamed file whose data was never fsynced may be empty or partial, is the last test.)

Causality: a checkpoint (bytes 4096..4159 of a segment) is written only after the sync it
describes completed, i.e. just before that sync's barrier. So in ``new`` the checkpoint slots
are those of ``old``: a crash before barrier k+1 cannot have checkpoint k+1 on disk.

Each image is written to a fresh directory and opened as a writer (normal, not repair). The
contract checked (TESTING.md §1, R3):

* opening never raises: the expected result of a power loss is tail damage, which is truncated
  (``CorruptLogError`` on such an image is a violation);
* ``sync="always"``: every record acknowledged before the crash point, and every record a reader
  could have seen (the published hint), is present and byte-identical;
* nothing invalid: every record returned is exactly what was written at its offset, offsets are
  contiguous, and anything below ``start_offset`` went only through retention;
* the committed group offset is >= the last durable commit and <= ``end_offset``;
* new appends work after recovery, and reopening again gives the same log (no resurrected
  bytes: F11);
* ``sync="interval:<ms>"``: only records acknowledged after the last sync that must have covered
  them can be missing; the worst loss is measured and printed.

The snapshots also check two design invariants directly: a segment's static header page never
changes, and a data page below a segment's checkpoint is never rewritten.

Barrier snapshots assume a barrier made everything written so far durable. The last test drops
that assumption where it matters most, a writer reopening after a kill -9: it records the
exact byte ranges the reopened writer msyncs (strace) and builds the power-loss image from them.

The PR tier builds about 12,000 images from 8 recorded workloads; ``FASTQ_SOAK=1`` builds
100,000 from 50.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import crc32c
import pytest

import fastq

SOAK = os.environ.get("FASTQ_SOAK") == "1"
IMAGES_PER_ROUND = 2_000 if SOAK else 1_500  # images per recorded workload
ROUNDS_ALWAYS = 20 if SOAK else 3  # workloads per segment size (two sizes)
ROUNDS_INTERVAL = 10 if SOAK else 2
TIMEOUT = 4 * 3600 if SOAK else 300  # seconds per test (pytest-timeout)
ALICE_IMAGES = 2_000 if SOAK else 100

PAGE = 4096
SECTOR = 512
GROUP = "billing"
WAIT_BOUND = 10.0  # seconds: liveness bound for waiting on the background sync

# the on-disk format (docs/log-format.md)
SEGMENT_NAME = re.compile(r"^([0-9]{20})\.log$")
HEADER_PAGE = range(0, PAGE)
CHECKPOINTS = slice(4096, 4160)
HINT_AT = 4160
HINT_SEALED = 1 << 63
DATA_AT = 8192
RECORD_HEADER = 32

Files = dict[str, bytes]


# ---- format helpers (from the spec, independent of the implementation) ------------------------


def checkpoint(segment: bytes) -> tuple[int, int, int] | None:
    """The valid checkpoint slot with the highest seq: (seq, position, next_offset)."""
    best = None
    for at in (4096, 4128):
        slot = segment[at : at + 32]
        seq, pos, nxt, zero, crc = struct.unpack("<QQQII", slot)
        if seq == 0 or zero != 0 or crc != crc32c.crc32c(slot[:28]):
            continue
        if best is None or seq > best[0]:
            best = (seq, pos, nxt)
    return best


def hint_next(segment: bytes) -> int:
    """The published next offset (what readers in other processes may see)."""
    return struct.unpack_from("<Q", segment, HINT_AT + 8)[0] if len(segment) >= DATA_AT else 0


def parse_offsets(data: bytes) -> dict[str, int] | None:
    """Committed offsets from an `offsets` file, or None when it does not validate."""
    if len(data) < 20 or data[:8] != b"FQOFFSET":
        return None
    if struct.unpack_from("<I", data, len(data) - 4)[0] != crc32c.crc32c(data[:-4]):
        return None
    _, count = struct.unpack_from("<II", data, 8)
    pos, out = 16, {}
    for _ in range(count):
        (n,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2 : pos + 2 + n].decode()
        (out[name],) = struct.unpack_from("<Q", data, pos + 2 + n)
        pos += 2 + n + 8
    return out


def segment_base(name: str) -> int | None:
    m = SEGMENT_NAME.match(name)
    return int(m.group(1)) if m else None


# ---- recording ----------------------------------------------------------------------------


@dataclass
class Barrier:
    kind: str
    files: Files
    acked: int  # records acknowledged (append returned) when the barrier completed
    appender: bool  # ran in the appending thread (else: the background sync thread)
    at: float  # time.monotonic()


#: offsets file contents that were fsynced before being renamed into place
CONTENT_DURABLE: set[bytes] = set()


class Recorder:
    """The barrier hook: snapshots the directory after every durability barrier."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.barriers: list[Barrier] = []
        self.acked_at: list[float] = []  # ack time of offset i (one appending thread)
        self.errors: list[str] = []
        self.background = threading.Event()  # set by every barrier of the sync thread
        self.frozen = False
        self._appender = threading.get_ident()
        self._last: Files = {}
        self._lock = threading.Lock()

    def snapshot(self) -> Files:
        files: Files = {}
        for name in os.listdir(self.directory):
            if not (SEGMENT_NAME.match(name) or name == "offsets"):
                continue  # .lock is empty; *.tmp files are never read
            try:
                with open(os.path.join(self.directory, name), "rb") as f:
                    data = f.read()
            except FileNotFoundError:  # retention unlinked it meanwhile
                continue
            prev = self._last.get(name)
            files[name] = prev if prev == data else data  # share unchanged files
        self._last = files
        return files

    def hook(self, kind: str) -> None:
        if kind == "offsets-content":
            # offsets.tmp was fsynced before its rename: whatever name it ends up under, its
            # bytes are whole (the "posix" model must not tear this version)
            try:
                with open(os.path.join(self.directory, "offsets.tmp"), "rb") as f:
                    CONTENT_DURABLE.add(f.read())
            except BaseException as exc:  # never let the hook break the log under test
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            return
        appender = threading.get_ident() == self._appender
        try:
            with self._lock:
                if not self.frozen:
                    files = self.snapshot()
                    self.barriers.append(
                        Barrier(kind, files, len(self.acked_at), appender, time.monotonic())
                    )
        except BaseException as exc:  # never let the hook break the log under test
            self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
        if not appender:
            self.background.set()

    def freeze(self) -> Files:
        """The final in-memory state; later barriers are not recorded."""
        with self._lock:
            self.frozen = True
            return self.snapshot()

    def acked(self, n: int) -> None:
        now = time.monotonic()
        self.acked_at.extend([now] * n)


@dataclass
class Workload:
    """What was written: records[offset] = (key, value), in offset order."""

    segment_bytes: int
    sync: str
    retention_bytes: int
    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)

    @property
    def max_record(self) -> int:
        return self.segment_bytes - DATA_AT - RECORD_HEADER

    def open(self, directory: str | Path) -> fastq.SegmentLog:
        return fastq.SegmentLog(
            directory,
            segment_bytes=self.segment_bytes,
            sync=self.sync,
            retention_bytes=self.retention_bytes,
        )


def _remainder(directory: str, segment_bytes: int) -> int:
    names = sorted(n for n in os.listdir(directory) if SEGMENT_NAME.match(n))
    with open(os.path.join(directory, names[-1]), "rb") as f:
        f.seek(HINT_AT)
        pos = int.from_bytes(f.read(8), "little") & ~HINT_SEALED
    return segment_bytes - pos if DATA_AT <= pos <= segment_bytes else 0


def _record(
    rng: random.Random, w: Workload, directory: str, small: int
) -> tuple[bytes | None, bytes]:
    key = None if rng.random() < 0.4 else rng.randbytes(rng.randint(0, 24))
    klen = len(key) if key else 0
    r = rng.random()
    if r < 0.1:
        size = 0
    elif r < 0.2:
        size = 1
    elif r < 0.3:
        size = max(0, _remainder(directory, w.segment_bytes) - RECORD_HEADER - klen)
    elif r < 0.35:
        size = rng.randint(0, w.max_record - klen)
    else:
        size = rng.randint(2, small)
    return key, rng.randbytes(size)


def _append_some(
    log: fastq.SegmentLog,
    rec: Recorder,
    w: Workload,
    rng: random.Random,
    directory: str,
    small: int,
) -> None:
    if rng.random() < 0.2:
        batch = [_record(rng, w, directory, small) for _ in range(rng.randint(2, 6))]
        first = len(w.records)
        w.records.extend(batch)
        got = log.append_many([v for _, v in batch], keys=[k for k, _ in batch])
        assert got == first
        rec.acked(len(batch))
    else:
        key, value = _record(rng, w, directory, small)
        w.records.append((key, value))
        assert log.append(value, key=key) == len(w.records) - 1
        rec.acked(1)


def _commit_some(log: fastq.SegmentLog, rng: random.Random, committed: list[int]) -> None:
    end = log.end_offset
    lo = committed[-1] if committed else 0
    if end > lo:
        c = rng.randint(lo + 1, end)
        log.commit(GROUP, c)
        committed.append(c)


def record_always(
    directory: str, w: Workload, rng: random.Random, ops: int
) -> tuple[Recorder, Files]:
    rec = Recorder(directory)
    committed: list[int] = []
    log = w.open(directory)
    try:
        log._set_barrier_hook(rec.hook)
        for _ in range(ops):
            if rng.random() < 0.08:
                _commit_some(log, rng, committed)
            else:
                _append_some(log, rec, w, rng, directory, small=3000)
            # sync="always": whatever a reader can see is durable, and all acked is visible
            assert log.end_offset == len(w.records)
        final = rec.freeze()
        log._set_barrier_hook(None)
    finally:
        log.close()
    return rec, final


def record_interval(
    directory: str, w: Workload, rng: random.Random, steps: int
) -> tuple[Recorder, Files]:
    rec = Recorder(directory)
    committed: list[int] = []
    log = w.open(directory)
    try:
        log._set_barrier_hook(rec.hook)
        for step in range(steps):
            rec.background.clear()  # any background barrier after this point wakes us
            for _ in range(rng.randint(1, 10)):
                _append_some(log, rec, w, rng, directory, small=2000)
            if rng.random() < 0.15:
                _commit_some(log, rng, committed)
            if step < steps - 1 and rng.random() < 0.7:
                assert rec.background.wait(WAIT_BOUND), "the background sync never ran"
        final = rec.freeze()  # the last appends are (most likely) not synced yet
        log._set_barrier_hook(None)
    finally:
        log.close()
    return rec, final


# ---- crash images ---------------------------------------------------------------------------


@dataclass
class CrashPoint:
    k: int  # the crash happens after barrier k (and before barrier k + 1 completes)
    old: Files
    new: Files
    kind: str  # what barrier k + 1 is ("final" for the end of the workload)
    guaranteed: int  # records that must survive: offsets < guaranteed
    acked_by_crash: int  # records acknowledged at the latest possible crash time
    crash_by: float  # the latest possible crash time
    durable_offsets: bytes | None  # `offsets` as of the last "offsets" barrier (fsynced)
    ack_times: list[float]  # ack time of each offset

    @property
    def durable_commit(self) -> int | None:
        if self.durable_offsets is None:
            return None
        parsed = parse_offsets(self.durable_offsets)
        assert parsed is not None, "an fsynced offsets file does not validate"
        return parsed.get(GROUP)

    def offsets_versions(self) -> list[bytes | None]:
        """What `offsets` may hold on disk: the durable version, the one at barrier k, and
        the one at the crash."""
        out: list[bytes | None] = []
        for v in (self.durable_offsets, self.old.get("offsets"), self.new.get("offsets")):
            if v not in out:
                out.append(v)
        return out

    def diff_units(self) -> int:
        """How many independent choices an image of this crash point has."""
        n = len(self.offsets_versions()) - 1
        for name in (set(self.old) | set(self.new)) - {"offsets"}:
            old, new = self.old.get(name), self.new.get(name)
            if old is None or new is None:
                n += 1
            elif old is not new:
                n += len(_diff_pages(old, new))
        return n


def _diff_pages(old: bytes, new: bytes) -> list[int]:
    a, b = memoryview(old), memoryview(new)
    return [p for p in range(0, len(new), PAGE) if a[p : p + PAGE] != b[p : p + PAGE]]


def _with_old_checkpoints(old: bytes | None, new: bytes) -> bytes:
    if old is None or len(new) < DATA_AT or new[CHECKPOINTS] == old[CHECKPOINTS]:
        return new
    fixed = bytearray(new)
    fixed[CHECKPOINTS] = old[CHECKPOINTS]
    return bytes(fixed)


def crash_points(rec: Recorder, final: Files, sync: str) -> list[CrashPoint]:
    """One crash point after every barrier, with what it guarantees."""
    bars = rec.barriers
    points = []
    guaranteed = 0
    durable_offsets: bytes | None = None
    prev_background: Barrier | None = None
    for k, b in enumerate(bars):
        # records covered by barrier k
        if sync == "always":
            covered = b.acked  # acked means synced
        elif b.appender:
            # a roll syncs the sealed segment before it creates the next one (and flush()
            # syncs everything): all acked records are durable at those barriers
            covered = b.acked if b.kind in ("sync", "create") else 0
        else:
            # background sync: it took its target after the previous background barrier
            covered = prev_background.acked if (b.kind == "sync" and prev_background) else 0
            prev_background = b
        guaranteed = max(guaranteed, covered)
        if sync == "always":
            # a reader may have seen up to the published hint: it must be durable too
            for name, data in b.files.items():
                if SEGMENT_NAME.match(name):
                    guaranteed = max(guaranteed, hint_next(data))
        if b.kind == "offsets":
            durable_offsets = b.files.get("offsets")
        if k + 1 < len(bars):
            new_state, kind = bars[k + 1].files, bars[k + 1].kind
            acked_by, crash_by = bars[k + 1].acked, bars[k + 1].at
        else:
            new_state, kind = final, "final"
            acked_by, crash_by = len(rec.acked_at), time.monotonic()
        new = {n: _with_old_checkpoints(b.files.get(n), d) for n, d in new_state.items()}
        points.append(
            CrashPoint(
                k,
                b.files,
                new,
                kind,
                guaranteed,
                acked_by,
                crash_by,
                durable_offsets,
                rec.acked_at,
            )
        )
    return points


def check_invariants(rec: Recorder, final: Files) -> list[str]:
    """Static header pages never change; a data page below the checkpoint is never rewritten."""
    problems: list[str] = []
    states = [b.files for b in rec.barriers] + [final]
    for k in range(len(states) - 1):
        for name, old in states[k].items():
            new = states[k + 1].get(name)
            if new is None or new is old or not SEGMENT_NAME.match(name):
                continue
            if len(new) != len(old):
                problems.append(f"barrier {k}: {name} changed size {len(old)} -> {len(new)}")
                continue
            ck = checkpoint(old)
            for p in _diff_pages(old, new):
                if p in HEADER_PAGE:
                    problems.append(f"barrier {k}: {name}: the static header page was rewritten")
                elif ck is not None and p >= DATA_AT and p < ck[1]:
                    problems.append(
                        f"barrier {k}: {name}: page {p} below the checkpoint position {ck[1]} "
                        f"was rewritten (a torn write there destroys durable records)"
                    )
    return problems


def build_image(
    cp: CrashPoint, rng: random.Random, offsets_model: str
) -> tuple[Files, dict[str, bytes], list[str]]:
    """Files of one crash image, stray *.tmp files, and a description of the choices."""
    files: Files = {}
    notes: list[str] = []
    for name in sorted(set(cp.old) | set(cp.new)):
        old, new = cp.old.get(name), cp.new.get(name)
        if name == "offsets":
            continue
        if old is None:
            # a segment is preallocated and its header synced before it is renamed into
            # place: if the name survives, so does the file as it was created
            assert new is not None
            if rng.random() < 0.4:
                notes.append(f"{name}: created, vanished")
            else:
                files[name] = new
                notes.append(f"{name}: created, kept")
            continue
        if new is None:
            if rng.random() < 0.5:
                files[name] = old
                notes.append(f"{name}: deleted, reappeared")
            continue
        if old is new or len(old) != len(new):
            files[name] = new if len(old) != len(new) else old
            continue
        out = bytearray(new)
        for p in _diff_pages(old, new):
            r = rng.random()
            if r < 0.3:
                what = "new"
            elif r < 0.6:
                out[p : p + PAGE] = old[p : p + PAGE]
                what = "old"
            elif r < 0.8:
                cut = rng.randint(1, PAGE // SECTOR - 1) * SECTOR
                out[p + cut : p + PAGE] = old[p + cut : p + PAGE]
                what = f"torn@{cut}"
            else:
                out[p : p + PAGE] = rng.randbytes(PAGE)
                what = "garbage"
            notes.append(f"{name}[{p // PAGE}]={what}")
        files[name] = bytes(out)
    offsets, label = _offsets_state(cp, rng, offsets_model)
    if offsets is not None:
        files["offsets"] = offsets
    notes.append(f"offsets={label}")
    stray: dict[str, bytes] = {}
    if rng.random() < 0.1:
        bases = [b for b in map(segment_base, files) if b is not None] or [0]
        name = rng.choice([f"{max(bases) + 1:020d}.log.tmp", "offsets.tmp"])
        stray[name] = rng.randbytes(rng.randint(0, 2 * PAGE))
        notes.append(f"stray {name}")
    return files, stray, notes


def _offsets_state(cp: CrashPoint, rng: random.Random, model: str) -> tuple[bytes | None, str]:
    """`offsets` on disk. "atomic": one whole version (rename is atomic, and ext4 flushes a
    file renamed over another). "posix": a version renamed into place without an fsync of its
    data may also be empty or partial."""
    versions = cp.offsets_versions()
    options: list[tuple[bytes | None, str]] = [
        (v, "absent" if v is None else f"version {i}") for i, v in enumerate(versions)
    ]
    if model == "posix":
        for i, v in enumerate(versions):
            if v is not None and v != cp.durable_offsets and v not in CONTENT_DURABLE:
                options.append((b"", f"version {i} renamed, data lost (empty)"))
                options.append((v[: rng.randint(1, len(v) - 1)], f"version {i} partial"))
    return rng.choice(options)


# ---- checking one image -------------------------------------------------------------------


@dataclass
class Tally:
    images: int = 0
    points: int = 0
    violations: list[str] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    worst_loss: int = 0
    worst_loss_ms: float = 0.0
    images_with_loss: int = 0
    truncated_images: int = 0
    clamped_images: int = 0
    open_ms: list[float] = field(default_factory=list)


def _write_image(directory: Path, files: Files, stray: dict[str, bytes]) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for name, data in {**files, **stray}.items():
        (directory / name).write_bytes(data)


def _read_all(log: fastq.SegmentLog) -> list[fastq.Record]:
    out: list[fastq.Record] = []
    pos, end = log.start_offset, log.end_offset
    while pos < end:
        batch = log.read(pos, max_records=1000)
        if not batch:
            raise AssertionError(f"read({pos}) returned nothing before end_offset {end}")
        out.extend(batch)
        pos = batch[-1].offset + 1
    return out


class Warnings(logging.Handler):
    """Collects what fastq.log reports (truncated tails) instead of pytest's capture."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_image(
    directory: Path, files: Files, cp: CrashPoint, w: Workload, tally: Tally, logged: Warnings
) -> list[str]:
    """Open a crash image and check the contract; returns the violations found."""
    bad: list[str] = []
    bases = sorted(b for b in map(segment_base, files) if b is not None)
    logged.messages.clear()
    t0 = time.perf_counter()
    try:
        log = w.open(directory)
    except Exception as exc:
        return [f"open raised {type(exc).__name__}: {exc}"]
    tally.open_ms.append((time.perf_counter() - t0) * 1e3)
    try:
        leftovers = [n for n in os.listdir(directory) if n.endswith(".tmp")]
        if leftovers:
            bad.append(f"temp files left after open: {leftovers}")
        stats = log.statistics()
        start, end = log.start_offset, log.end_offset
        tally.truncated_images += stats["bytes_truncated"] > 0
        # a truncated tail is the expected crash result: cut silently, but logged with its size
        for path, _, nbytes in stats["truncations"]:
            if not any(path in m and f"truncated {nbytes} bytes" in m for m in logged.messages):
                bad.append(f"truncating {nbytes} bytes of {path} was not logged")
        tally.clamped_images += bool(stats["offsets_clamped"])
        if bases and start != bases[0] and not stats["segments_removed"]:
            bad.append(f"start_offset {start} but the oldest segment file starts at {bases[0]}")
        records = _read_all(log)
        got = [r.offset for r in records]
        if got != list(range(start, end)):
            bad.append(f"offsets not contiguous from {start} to {end}: {got[:8]}...")
        for r in records:
            if r.offset >= len(w.records) or (r.key, r.value) != w.records[r.offset]:
                bad.append(f"offset {r.offset}: a record that was never written there")
                break
        if end < cp.guaranteed:
            bad.append(
                f"lost durable records: the log ends at {end}, but offsets < {cp.guaranteed} "
                f"were acknowledged or visible before the crash"
            )
        if end < cp.acked_by_crash:
            tally.images_with_loss += 1
            tally.worst_loss = max(tally.worst_loss, cp.acked_by_crash - end)
            window = (cp.crash_by - cp.ack_times[end]) * 1e3
            tally.worst_loss_ms = max(tally.worst_loss_ms, window)
        committed = log.committed(GROUP)
        if cp.durable_commit is not None and (
            committed is None or committed < min(cp.durable_commit, end)
        ):
            bad.append(f"committed offset {committed} < durable commit {cp.durable_commit}")
        if committed is not None and committed > end:
            bad.append(f"committed offset {committed} beyond end_offset {end}")
        contents = [(r.offset, r.key, r.value) for r in records]
        del records
        # new appends work after recovery
        off = log.append(b"after the crash", key=b"pl")
        if off != end or log.end_offset != end + 1:
            bad.append(f"append after recovery got offset {off}, end {log.end_offset} (was {end})")
        log.commit(GROUP, end + 1)
        start = log.start_offset  # the append may have rolled, and retention run
    except Exception as exc:
        bad.append(f"{type(exc).__name__} after open: {exc}")
        contents = []
    finally:
        log.close()
    if bad:
        return bad
    # reopening is stable: same records (retention may drop whole old segments), the
    # post-crash append and commit, nothing resurrected past the recovered end
    before = [*contents, (end, b"pl", b"after the crash")]
    try:
        with w.open(directory) as again:
            now = [(r.offset, r.key, r.value) for r in _read_all(again)]
            first = again.start_offset
            if now != [c for c in before if c[0] >= first] or (
                first > start and not again.statistics()["segments_removed"]
            ):
                bad.append(f"reopening changed the log: {start}..{end + 1} -> {first}..")
            if again.committed(GROUP) != end + 1:
                bad.append(f"reopening lost the post-crash commit: {again.committed(GROUP)}")
    except Exception as exc:
        bad.append(f"reopen after recovery raised {type(exc).__name__}: {exc}")
    return bad


def run_images(
    scratch: Path,
    keep: Path,
    rec: Recorder,
    final: Files,
    w: Workload,
    rng: random.Random,
    target: int,
    offsets_model: str = "atomic",
    points_filter: Callable[[CrashPoint], bool] = lambda cp: True,
) -> Tally:
    tally = Tally()
    tally.violations.extend(rec.errors)
    tally.violations.extend(check_invariants(rec, final))
    points = [cp for cp in crash_points(rec, final, w.sync) if points_filter(cp)]
    tally.points = len(points)
    varied = [cp for cp in points if cp.diff_units()]
    image_dir = scratch / "image"
    logger = logging.getLogger("fastq.log")
    logged = Warnings()
    logger.addHandler(logged)
    propagate, logger.propagate = logger.propagate, False
    try:
        _run_plan(points, varied, target, rng, offsets_model, image_dir, keep, w, tally, logged)
    finally:
        logger.removeHandler(logged)
        logger.propagate = propagate
    return tally


def _run_plan(
    points: list[CrashPoint],
    varied: list[CrashPoint],
    target: int,
    rng: random.Random,
    offsets_model: str,
    image_dir: Path,
    keep: Path,
    w: Workload,
    tally: Tally,
    logged: Warnings,
) -> None:
    seen: set[bytes] = set()
    # every crash point once, then round-robin over the ones whose images can differ
    plan = [*points, *(varied[i % len(varied)] for i in range(4 * target) if varied)]
    for n, cp in enumerate(plan):
        if n >= len(points) and tally.images >= target:
            break
        files, stray, notes = build_image(cp, rng, offsets_model)
        h = hashlib.sha1()
        for name in sorted(files):
            h.update(name.encode() + b"\0" + hashlib.sha1(files[name]).digest())
        h.update(repr(sorted(stray)).encode())
        if h.digest() in seen:
            continue
        seen.add(h.digest())
        _write_image(image_dir, files, stray)
        tally.images += 1
        bad = check_image(image_dir, files, cp, w, tally, logged)
        if bad:
            where = f"crash after barrier {cp.k} (next: {cp.kind}); image: {', '.join(notes)}"
            tally.violations.append(f"{where}: {'; '.join(bad)}")
            if len(tally.saved) < 3:
                saved = keep / f"violation-{len(tally.saved)}"
                _write_image(saved, files, stray)
                tally.saved.append(str(saved))


def _report(title: str, w: Workload, rec: Recorder, t: Tally) -> str:
    ms = sorted(t.open_ms) or [0.0]
    kinds: dict[str, int] = {}
    for b in rec.barriers:
        kinds[b.kind] = kinds.get(b.kind, 0) + 1
    return (
        f"\nR3 {title}: {len(w.records)} records, {len(rec.barriers)} barriers {kinds}, "
        f"{t.points} crash points, {t.images} distinct images ({t.truncated_images} with a "
        f"truncated tail, {t.clamped_images} with a clamped commit); images losing acked "
        f"records: {t.images_with_loss}, worst loss {t.worst_loss} records "
        f"({t.worst_loss_ms:.1f} ms of acks); recovery open median {ms[len(ms) // 2]:.2f} ms, "
        f"max {ms[-1]:.2f} ms; violations: {len(t.violations)}"
    )


def _fail_message(t: Tally) -> str:
    head = "\n".join(t.violations[:8])
    return (
        f"{len(t.violations)} violations (first {min(8, len(t.violations))} below); "
        f"images saved in {t.saved}\n{head}"
    )


# ---- tests ---------------------------------------------------------------------------------


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A directory in RAM when /dev/shm is available (thousands of images are written and
    synced; on a disk that is I/O bound), else under tmp_path."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="fastq-r3-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(
    ("segment_bytes", "retention_bytes", "ops"),
    [(16384, 48 * 1024, 260), (65536, 192 * 1024, 300)],
    ids=["seg16k", "seg64k"],
)
@pytest.mark.timeout(TIMEOUT)
def test_power_loss_sync_always(
    tmp_path: Path,
    scratch: Path,
    rng: random.Random,
    segment_bytes: int,
    retention_bytes: int,
    ops: int,
) -> None:
    violations: list[str] = []
    for r in range(ROUNDS_ALWAYS):  # independent workloads: different shapes of the log
        directory = scratch / f"log-{r}"
        w = Workload(segment_bytes, "always", retention_bytes)
        rec, final = record_always(str(directory), w, rng, ops)
        t = run_images(scratch, tmp_path / f"round-{r}", rec, final, w, rng, IMAGES_PER_ROUND)
        print(_report(f"sync=always segment_bytes={segment_bytes} round {r}", w, rec, t))
        assert t.images >= IMAGES_PER_ROUND * 0.9, f"only {t.images} distinct images"
        assert t.truncated_images > 0, "no image had a torn tail: the model is too kind"
        if t.violations:
            violations.append(f"round {r}: {_fail_message(t)}")
        shutil.rmtree(directory)
    if violations:
        pytest.fail("\n".join(violations))


@pytest.mark.timeout(TIMEOUT)
def test_power_loss_sync_interval(tmp_path: Path, scratch: Path, rng: random.Random) -> None:
    violations: list[str] = []
    worst = 0
    for r in range(ROUNDS_INTERVAL):
        directory = scratch / f"log-{r}"
        w = Workload(32768, "interval:5", 128 * 1024)
        rec, final = record_interval(str(directory), w, rng, steps=120)
        t = run_images(scratch, tmp_path / f"round-{r}", rec, final, w, rng, IMAGES_PER_ROUND)
        print(_report(f"sync=interval:5 segment_bytes=32768 round {r}", w, rec, t))
        background = sum(not b.appender for b in rec.barriers)
        assert background > 10, f"only {background} background syncs: nothing was measured"
        assert t.images >= IMAGES_PER_ROUND * 0.9, f"only {t.images} distinct images"
        worst = max(worst, t.worst_loss)
        if t.violations:
            violations.append(f"round {r}: {_fail_message(t)}")
        shutil.rmtree(directory)
    # unsynced records are lost in some images, but never a record an earlier sync covered
    assert worst > 0, "no image lost unsynced records: the model is too kind"
    if violations:
        pytest.fail("\n".join(violations))


def test_power_loss_interval_commit_renamed_before_fsync(
    tmp_path: Path, scratch: Path, rng: random.Random
) -> None:
    """ALICE-style (F15): in sync="interval" a commit replaces `offsets` by rename. If the new
    file's data was not fsynced before the rename (no "offsets" barrier for it), a power loss
    may leave the renamed file empty or partial (ext4 delayed allocation does this for a newly
    created name; XFS for replacements). The group offset must still be old-or-new, never a
    CorruptLogError that makes the whole log unopenable."""
    directory = scratch / "log"
    w = Workload(32768, "interval:5", 1 << 30)
    rec = Recorder(str(directory))
    log = w.open(directory)
    try:
        log._set_barrier_hook(rec.hook)
        for round_ in range(3):
            rec.background.clear()
            for _ in range(5):
                _append_some(log, rec, w, rng, str(directory), small=500)
            assert rec.background.wait(WAIT_BOUND), "the background sync never ran"
            # the records are durable now; commit (round 0 creates `offsets`, later ones
            # replace it); the next background tick syncs it, except after the last round
            rec.background.clear()
            log.commit(GROUP, len(w.records) - 2 + round_ % 2)
            if round_ < 2:
                assert rec.background.wait(WAIT_BOUND), "the background sync never ran"
        final = rec.freeze()
        log._set_barrier_hook(None)
    finally:
        log.close()

    def around_commits(cp: CrashPoint) -> bool:
        return len(cp.offsets_versions()) > 1

    t = run_images(
        scratch,
        tmp_path,
        rec,
        final,
        w,
        rng,
        ALICE_IMAGES,
        offsets_model="posix",
        points_filter=around_commits,
    )
    print(_report("sync=interval:5, offsets renamed before fsync", w, rec, t))
    assert t.points >= 1
    if t.violations:
        pytest.fail(_fail_message(t))


# ---- a kill -9, a reopen, then a power loss: what the reopened writer really synced ----------

DEAD_WRITER = """
import os, signal, sys
import fastq
w = fastq.SegmentLog(sys.argv[1], segment_bytes=65536, sync="none")
w.append(b"B" * 6000)   # spans two pages; only in the page cache (never synced)
os.kill(os.getpid(), signal.SIGKILL)
"""

REOPENED_WRITER = """
import json, os, sys
import fastq
d = sys.argv[1]

def maps():
    out = {}
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith(d + os.sep):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out[os.path.basename(parts[5])] = [lo, hi, int(parts[2], 16)]
    return out

log = fastq.SegmentLog(d, segment_bytes=65536, sync="always")
print(json.dumps({"event": "open", "end": log.end_offset, "maps": maps()}), flush=True)
off = log.append(b"C" * 100)
print(json.dumps({"event": "append", "offset": off, "maps": maps()}), flush=True)
os._exit(0)   # the machine loses power here: no close(), no further sync
"""

MSYNC = re.compile(r"msync\((0x[0-9a-f]+), (\d+), MS_SYNC\)\s+= 0")
EVENT = re.compile(r'write\(1, "\{')  # the child reports an event (JSON on stdout)


def _read_dir(directory: Path) -> Files:
    return {p.name: p.read_bytes() for p in directory.iterdir() if SEGMENT_NAME.match(p.name)}


def test_power_loss_after_kill_and_reopen_sync_always(tmp_path: Path, scratch: Path) -> None:
    """A ``sync="none"`` writer dies (kill -9) with record B only in the page cache; a
    ``sync="always"`` writer reopens the log, shows B to readers and acknowledges C; then the
    power fails. The durable state is the one before the dead writer plus exactly the ranges
    the reopened writer msynced (recorded with strace). B and C were visible, C acknowledged:
    both must be on synced pages and survive."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is not installed (TESTING.md §4 lists it as available)")
    directory = scratch / "log"
    with fastq.SegmentLog(directory, segment_bytes=65536, sync="always") as log:
        assert log.append(b"A" * 100) == 0
    durable = _read_dir(directory)  # close() synced everything
    env = dict(os.environ, PYTHONPATH=str(Path(fastq.__file__).resolve().parent.parent))
    python = os.path.realpath(sys.executable)
    dead = subprocess.run(
        [python, "-c", DEAD_WRITER, str(directory)], env=env, timeout=60, capture_output=True
    )
    assert dead.returncode == -signal.SIGKILL, dead.stderr
    trace = scratch / "strace.out"
    proc = subprocess.run(
        [strace, "-qq", "-o", str(trace), "-e", "trace=msync,write",
         python, "-c", REOPENED_WRITER, str(directory)],
        env=env, timeout=60, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    final = _read_dir(directory)

    # which file pages were msynced, and which of them before each reported event
    reported = [json.loads(line) for line in proc.stdout.splitlines()]
    events: list[dict[str, Any]] = []
    synced: dict[str, set[int]] = {}
    ranges: list[tuple[int, int]] = []
    for line in trace.read_text().splitlines():
        if m := MSYNC.search(line):
            ranges.append((int(m.group(1), 16), int(m.group(2))))
        elif EVENT.search(line):
            event = reported[len(events)]
            for addr, length in ranges:
                for name, (lo, hi, file_off) in event["maps"].items():
                    if lo <= addr < hi:
                        first = addr - lo + file_off
                        covered = range(first // PAGE, (first + length + PAGE - 1) // PAGE)
                        synced.setdefault(name, set()).update(covered)
            ranges.clear()
            events.append({**event, "synced": {n: set(p) for n, p in synced.items()}})
    assert [e["event"] for e in events] == ["open", "append"], proc.stdout
    assert events[0]["end"] == 2, "recovery dropped the dead writer's complete record B"
    assert events[1]["offset"] == 2

    name = f"{0:020d}.log"
    changed = set(_diff_pages(durable[name], final[name]))  # dirty since the last clean close
    problems: list[str] = []
    for rec_offset, pos, size in _scan(final[name]):
        holding = {p * PAGE for p in range(pos // PAGE, (pos + size - 1) // PAGE + 1)}
        # B is visible from the reopen on, C from its append: by then they must be synced
        event = events[0] if rec_offset < events[0]["end"] else events[1]
        done = event["synced"].get(name, set())
        unsynced = sorted(p // PAGE for p in holding & changed if p // PAGE not in done)
        if unsynced:
            problems.append(
                f"offset {rec_offset} (bytes {pos}..{pos + size}) was visible after the "
                f"{event['event']} but pages {unsynced} holding it were never msynced"
            )

    # the consequence: the power fails now; unsynced pages hold what they held before
    image = {n: bytearray(durable.get(n, data)) for n, data in final.items()}
    for n, synced_pages in synced.items():
        for page in synced_pages:
            image[n][page * PAGE : (page + 1) * PAGE] = final[n][page * PAGE : (page + 1) * PAGE]
    image_dir = scratch / "image"
    _write_image(image_dir, {n: bytes(d) for n, d in image.items()}, {})
    with fastq.SegmentLog(image_dir, segment_bytes=65536, sync="always") as log:
        survived = [(r.offset, r.value[:1]) for r in _read_all(log)]
    if survived != [(0, b"A"), (1, b"B"), (2, b"C")]:
        problems.append(
            f"after a power loss the log holds {survived}: the acknowledged C (offset 2) and the "
            f"visible B (offset 1) are lost (msynced pages: {sorted(synced.get(name, set()))})"
        )
    assert not problems, "\n".join(problems)


def _scan(segment: bytes) -> list[tuple[int, int, int]]:
    """(offset, position, size) of the data records of a segment, per the format spec."""
    out, pos = [], DATA_AT
    while pos + RECORD_HEADER <= len(segment):
        vlen, offset = struct.unpack_from("<IQ", segment, pos + 4)
        klen, magic, kind = struct.unpack_from("<IHB", segment, pos + 24)
        if magic != 0x5146:
            break
        size = (RECORD_HEADER + (0 if klen == 0xFFFFFFFF else klen) + vlen + 7) & ~7
        if kind == 0:
            out.append((offset, pos, size))
        pos += size
    return out
