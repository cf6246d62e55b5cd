"""R4: on-disk corruption fuzzing of SegmentLog (TESTING.md R4, format in docs/log-format.md).

A reference log is written once per module and closed cleanly: 3 segments of 16 KiB (the
minimum; records start at byte 8192), two sealed ones of about 35 records and the active one of
about 18 (values 0..300 B, keys absent, empty or 1..16 B, explicit timestamps, a flush in the
middle of each sealed segment so that gap records pad them), plus an ``offsets`` file with two
groups. The active segment's records end on its first record page, so the zeros after the end
are there to be damaged too. Each case changes one scratch copy of the files and opens it:

- ``readonly=True`` for every case (nothing is written back, so the copy is restored by
  rewriting just the bytes the case changed);
- writable and ``repair=True`` opens for a sample, each on a fresh copy (they rewrite files),
  each followed by a second, plain writable open that must see the same records (recovery is
  idempotent; a repaired or truncated log opens cleanly afterwards).

Oracle for every case: opening and reading everything (``list(log)``, ``committed(group)``,
``start_offset``/``end_offset``) either yields exactly a prefix of the written records (same
offset, timestamp, key, value; contiguous from 0) with each group's committed offset as stored
(a writable open clamps it to that end), or raises ``fastq.CorruptLogError`` (at open or while
reading; the records read before it must be a prefix too). Any other exception (MemoryError
included), a case slower than 5 s, or a record that differs from what was written fails the
case. A segfault or SIGBUS kills the run: pytest's faulthandler (switched on here if it is off)
prints the stack, and ``<pytest basetemp>/log-corruption-case.txt`` names the case that was
running. A hang trips a faulthandler watchdog after 5-6 s that prints all stacks and exits.

Where the format decides the outcome the expectation is sharper, from the class of each byte
the case changed:

- CRC-covered bytes (segment header bytes 0..47, every record's header, key and value, gap
  records): every record of the reference is before its recovery point (sealed segments must
  reach the next base offset, the active one has a checkpoint covering all of it), so the
  damage must raise CorruptLogError: 100% of single-bit flips there, asserted with counts,
  in readonly and writable opens alike;
- ignored bytes (reserved header bytes, record padding, the zeros after the end, checkpoint
  slots, the mutable page of sealed segments): exactly the full list. One exception: a readonly
  reader shows the active segment only up to the writer's published hint (4160..4175), so damage
  to the hint may shorten what it shows (a prefix); writable opens ignore the hint.

Repair (``repair=True``, sampled): the open succeeds (CorruptLogError is allowed only for a
damaged segment header or file-level damage), the records are a subsequence of the written ones
(each identical to what was written at its offset), every record whose bytes were not touched
is kept (for flips and random bursts), and ``statistics()["repaired"]`` is non-empty when
anything was dropped.

Truncation is stricter than the plain oracle in one place: segment files are preallocated
before they are named and never shrink, so an active segment cut below its checkpointed records
must raise, not come back as a silent prefix (test_truncated_active_segment_never_hides_records).

Sizes: about 237,000 cases in the PR tier (~25 s on an idle 2-core machine, ~35 s with both
cores busy); FASTQ_SOAK=1 runs ten times the random cases (bursts, splices). FASTQ_SEED (in the
report header) replays the random ones; the reference itself is fixed (REFERENCE_SEED), so the
exhaustive categories are the same on every run. Scratch directories live on tmpfs (/dev/shm)
when there is one: msync and fsync cost nothing there, and this module tests decoding and
recovery, not durability.
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import faulthandler
import logging
import os
import random
import re
import shutil
import struct
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import fastq
from fastq._core import _crc32c

# ---- the format (docs/log-format.md) ----------------------------------------------------------

SEG = 16384  # segment_bytes of the reference: the minimum
HEADER = 256  # static header; bytes 0..47 are CRC-covered (44..47 hold the CRC)
HEADER_COVERED = 48
META_AT = 4096  # checkpoint slots A and B
HINT_AT = 4160  # published hint (position, next offset)
META_END = 4176
DATA_AT = 8192  # first record
PAGE = 4096
REC = 32  # record header
CRC_XOR = 0x46515243
NO_KEY = 0xFFFFFFFF
REC_MAGIC = 0x5146
OFFSETS = "offsets"

# ---- sizes ------------------------------------------------------------------------------------

SOAK = os.environ.get("FASTQ_SOAK", "") not in ("", "0")
RANDOM_FACTOR = 10 if SOAK else 1
BURSTS = 10_000 * RANDOM_FACTOR
SPLICES = 1_000 * RANDOM_FACTOR
BEYOND = 64  # flip this many bytes of zeros after each segment's used end
HANG_S = 5.0
PR_MIN_CASES = 40_000
REFERENCE_SEED = 0x5E6_106
ACTIVE_PAGE_END = DATA_AT + PAGE  # the active segment's records stay below this
T0 = 1_700_000_000_000_000_000

Rec = tuple[int, int, "bytes | None", bytes]  # offset, timestamp, key, value


class Expect(enum.IntEnum):
    """What a case must produce; a change of several bytes takes the largest of its bytes."""

    FULL = 0  # exactly the written records
    INTACT_OR_CORRUPT = 1  # the full list or CorruptLogError, never a shorter prefix
    ANY = 2  # a prefix or CorruptLogError
    CORRUPT = 3  # CorruptLogError


class Cls(enum.IntEnum):
    """The class of one byte of a reference segment."""

    IGNORED = 0  # reserved header bytes, zeros before the records, padding, sealed meta page
    COVERED = 1  # CRC-covered (or the CRC itself): header 0..47, records
    CKPT = 2  # the active segment's checkpoint slots
    HINT = 3  # the active segment's published hint
    BEYOND = 4  # zeros after the used end


def expect_of(cls: int, *, active: bool, readonly: bool, splice: bool = False) -> Expect:
    if cls == Cls.COVERED:
        return Expect.CORRUPT
    if cls == Cls.HINT and readonly:
        return Expect.ANY
    if cls == Cls.BEYOND and splice and not active:
        # a sealed segment's scan does not stop at the next base offset: a stale copy of the
        # next segment's first record right after its end reads as an overlap (a refusal, not
        # a wrong record)
        return Expect.INTACT_OR_CORRUPT
    return Expect.FULL


# ---- the reference ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecInfo:
    pos: int
    body_end: int  # pos + 32 + key + value: the end of the CRC-covered bytes
    end: int  # with padding to 8 bytes
    offset: int
    gap: bool


@dataclass
class SegInfo:
    name: str
    base: int
    data: bytes
    active: bool
    records: list[RecInfo]
    used_end: int
    last_data_end: int
    checkpoints: list[tuple[int, int, int]]  # valid slots: (seq, position, next offset)
    cls: bytes = b""

    def offsets(self) -> range:
        return range(self.base, self.records[-1].offset + (0 if self.records[-1].gap else 1))


@dataclass
class Reference:
    files: dict[str, bytes]
    records: list[Rec]
    commits: dict[str, int]
    segments: list[SegInfo]

    @property
    def seg_names(self) -> list[str]:
        return [s.name for s in self.segments]

    def seg(self, name: str) -> SegInfo:
        return next(s for s in self.segments if s.name == name)


def seg_name(base: int) -> str:
    return f"{base:020d}.log"


def _value(r: random.Random) -> bytes:
    if r.random() < 0.2:
        return r.randbytes(r.choice((0, 1, 7, 8, 9)))
    return r.randbytes(r.randint(150, 300))


def _key(r: random.Random) -> bytes | None:
    k = r.random()
    if k < 0.4:
        return None
    return b"" if k < 0.5 else r.randbytes(r.randint(1, 16))


def _timestamp(r: random.Random, i: int) -> int:
    if r.random() < 0.1:  # out of order, negative, extremes
        return r.choice((-(2**63), 2**63 - 1, -1, 0, r.randrange(-(2**63), 2**63)))
    return T0 + i * 1000 + r.randint(-400, 400)


def _rec_size(key: bytes | None, value: bytes) -> int:
    return (REC + (len(key) if key is not None else 0) + len(value) + 7) & ~7


def write_reference(path: str, *, mid_flush_active: bool) -> tuple[list[Rec], dict[str, int]]:
    """Append records until 3 segments exist, flushing mid-way through each sealed one.

    ``mid_flush_active=False`` (the main reference): the active segment's records stay on its
    first record page, so its checkpoint and padding end at 12288 and zeros follow.
    ``mid_flush_active=True``: the active segment gets a flush mid-way too, so both checkpoint
    slots are valid at different positions (the fallback tests)."""
    r = random.Random(REFERENCE_SEED + mid_flush_active)
    written: list[Rec] = []
    with fastq.SegmentLog(path, segment_bytes=SEG, sync="none") as log:
        in_seg = 0
        flushed = False
        pos = DATA_AT
        while True:
            key, value = _key(r), _value(r)
            if (
                not mid_flush_active
                and log.segments == 3
                and pos + _rec_size(key, value) > ACTIVE_PAGE_END - REC
            ):
                break
            ts = _timestamp(r, len(written))
            segs = log.segments
            off = log.append(value, key=key, timestamp=ts)
            assert off == len(written)
            written.append((off, ts, key, value))
            if log.segments != segs:
                in_seg, flushed, pos = 0, False, DATA_AT
            in_seg += 1
            pos += _rec_size(key, value)
            if in_seg == 15 and not flushed and (log.segments < 3 or mid_flush_active):
                log.flush()
                flushed = True
            if mid_flush_active and log.segments == 3 and in_seg == 22:
                break
        log.flush()
        commits = {"billing": len(written) // 2, "audit": len(written)}
        for group, off in commits.items():
            log.commit(group, off)
    return written, commits


def parse_segment(name: str, data: bytes, *, active: bool) -> SegInfo:
    """Decode a reference segment independently of the library (struct + CRC-32C)."""
    magic, version, hsize, base, seg_bytes = struct.unpack_from("<8sIIQQ", data, 0)
    assert (magic, version, hsize, seg_bytes) == (b"FQLOGSEG", 1, HEADER, SEG)
    assert struct.unpack_from("<I", data, 44)[0] == _crc32c(data[:44])
    records: list[RecInfo] = []
    pos = DATA_AT
    expected = base
    while pos + REC <= len(data):
        crc, vlen, off, ts, klen, rmagic, kind, rver = struct.unpack_from("<IIQqIHBB", data, pos)
        if rmagic != REC_MAGIC:
            break
        body_end = pos + REC + (0 if klen == NO_KEY else klen) + vlen
        assert (rver, off) == (1, expected)
        assert crc == _crc32c(data[pos + 4 : body_end]) ^ CRC_XOR
        end = (body_end + 7) & ~7
        records.append(RecInfo(pos, body_end, end, off, kind == 1))
        expected = off + 1 if kind == 0 else off + ts
        pos = end
    checkpoints = []
    for slot in range(2):
        seq, cpos, cnext, zero, ccrc = struct.unpack_from("<QQQII", data, META_AT + 32 * slot)
        at = META_AT + 32 * slot
        if seq and zero == 0 and ccrc == _crc32c(data[at : at + 28]):
            checkpoints.append((seq, cpos, cnext))
    data_recs = [x for x in records if not x.gap]
    seg = SegInfo(
        name=name,
        base=base,
        data=data,
        active=active,
        records=records,
        used_end=pos,
        last_data_end=data_recs[-1].body_end,
        checkpoints=sorted(checkpoints),
    )
    cls = bytearray(SEG)  # IGNORED
    cls[0:HEADER_COVERED] = bytes([Cls.COVERED]) * HEADER_COVERED
    if active:
        cls[META_AT : META_AT + 64] = bytes([Cls.CKPT]) * 64
        cls[HINT_AT:META_END] = bytes([Cls.HINT]) * (META_END - HINT_AT)
    for rec in records:
        cls[rec.pos : rec.body_end] = bytes([Cls.COVERED]) * (rec.body_end - rec.pos)
    cls[pos:SEG] = bytes([Cls.BEYOND]) * (SEG - pos)
    seg.cls = bytes(cls)
    return seg


def load_reference(path: str, written: list[Rec], commits: dict[str, int]) -> Reference:
    files = {}
    for name in sorted(os.listdir(path)):
        if name != ".lock":
            files[name] = Path(path, name).read_bytes()
    names = sorted(n for n in files if n.endswith(".log"))
    segments = [parse_segment(n, files[n], active=n == names[-1]) for n in names]
    return Reference(files=files, records=written, commits=commits, segments=segments)


def fixed_header(data: bytes, **fields: int) -> bytes:
    """The segment with header fields replaced and the header CRC recomputed."""
    at = {
        "version": (8, "<I"),
        "hsize": (12, "<I"),
        "base": (16, "<Q"),
        "seg_bytes": (24, "<Q"),
        "flags": (40, "<I"),
    }
    b = bytearray(data)
    for name, value in fields.items():
        where, fmt = at[name]
        struct.pack_into(fmt, b, where, value)
    struct.pack_into("<I", b, 44, _crc32c(bytes(b[:44])))
    return bytes(b)


def fix_record_crc(b: bytearray, rec: RecInfo) -> None:
    """Recompute a (patched) record's CRC over what its length fields now say, if they fit."""
    vlen, klen = (
        struct.unpack_from("<I", b, rec.pos + 4)[0],
        struct.unpack_from("<I", b, rec.pos + 24)[0],
    )
    body = REC + (0 if klen == NO_KEY else klen) + vlen
    if rec.pos + body <= len(b):
        struct.pack_into(
            "<I", b, rec.pos, _crc32c(bytes(b[rec.pos + 4 : rec.pos + body])) ^ CRC_XOR
        )


def offsets_file(
    entries: list[tuple[bytes, int]],
    *,
    version: int = 1,
    count: int | None = None,
    trailer: bytes = b"",
) -> bytes:
    body = b"FQOFFSET" + struct.pack("<II", version, len(entries) if count is None else count)
    for name, off in entries:
        body += struct.pack("<H", len(name)) + name + struct.pack("<Q", off)
    body += trailer
    return body + struct.pack("<I", _crc32c(body))


# ---- scratch directories ------------------------------------------------------------------------


class Scratch:
    """A directory with the reference files. Cases change some files and restore them."""

    def __init__(self, path: str, ref: Reference) -> None:
        self.path = path
        self.ref = ref
        os.makedirs(path)
        self.fds: dict[str, int] = {}
        for name in ref.files:
            self._create(name, ref.files[name])

    def _create(self, name: str, data: bytes) -> None:
        fd = os.open(os.path.join(self.path, name), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        self.fds[name] = fd

    def write(self, name: str, data: bytes | None) -> None:
        fd = self.fds.get(name)
        if data is None:
            if fd is not None:
                os.close(self.fds.pop(name))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.path, name))
        elif fd is None:
            self._create(name, data)
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)

    def patch(self, name: str, pos: int, data: bytes) -> None:
        os.pwrite(self.fds[name], data, pos)

    def apply(self, files: Mapping[str, bytes | None]) -> None:
        for name, data in files.items():
            self.write(name, data)

    def undo(self, files: Mapping[str, bytes | None]) -> None:
        for name in files:
            self.write(name, self.ref.files.get(name))

    def reset(self) -> None:
        """Back to exactly the reference files after a writable open, which may have replaced
        any of them (offsets: temp file + rename; a new segment) or added others."""
        self.close()
        for name in os.listdir(self.path):
            if name not in self.ref.files and name != ".lock":
                os.unlink(os.path.join(self.path, name))
        for name, data in self.ref.files.items():
            self._create(name, data)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


# ---- observing one open -------------------------------------------------------------------------


@dataclass
class Outcome:
    records: list[Rec]
    error: fastq.CorruptLogError | None = None
    stage: str = ""
    committed: dict[str, int | None] = field(default_factory=dict)
    start: int = 0
    end: int = 0
    stats: dict[str, object] = field(default_factory=dict)
    warnings: int = 0


class LogWatch(logging.Filter):
    """Counts the fastq.log warnings (truncation reports) and drops them: thousands of them
    would pile up in pytest's log capture."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        self.count += record.levelno >= logging.WARNING
        return False


def observe(path: str, mode: str, groups: list[str], watch: LogWatch) -> Outcome:
    """Open the log in `mode` ("readonly", "writable", "repair") and read everything."""
    before = watch.count
    try:
        log = fastq.SegmentLog(
            path, segment_bytes=SEG, readonly=mode == "readonly", repair=mode == "repair"
        )
    except fastq.CorruptLogError as exc:
        return Outcome([], exc.with_traceback(None), "open")
    out = Outcome([])
    with log:
        try:
            append = out.records.append
            for r in log:
                append((r.offset, r.timestamp, r.key, r.value))
            out.committed = {g: log.committed(g) for g in groups}
            out.start, out.end = log.start_offset, log.end_offset
        except fastq.CorruptLogError as exc:
            out.error, out.stage = exc.with_traceback(None), "read"
        out.stats = log.statistics()
    out.warnings = watch.count - before
    return out


# ---- the runner ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepairSpec:
    allow_error: bool = False  # header or file-level damage that repair does not handle
    keep: frozenset[int] | None = None  # offsets whose bytes were not touched: must survive
    offsets_reset: bool = False  # the offsets file is damaged: repair forgets the groups
    gone: frozenset[int] = frozenset()  # offsets absent by design (no repair report needed)
    reopen: bool = True  # check that a plain reopen afterwards sees the same records


class HangGuard:
    """A faulthandler watchdog re-armed about every second: a case that runs 5-6 s without
    returning dumps every thread's stack to the real stderr and ends the process."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.armed_at = 0.0

    def tick(self, now: float) -> None:
        if now - self.armed_at > 1.0:
            faulthandler.dump_traceback_later(HANG_S + 1.0, exit=True, file=self.fd)
            self.armed_at = now

    def cancel(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        self.armed_at = 0.0


class Fuzz:
    """Runs the cases of one test and collects counts and failures."""

    def __init__(self, ref: Reference, env: Env, guard: HangGuard) -> None:
        self.ref = ref
        self.env = env
        self.guard = guard
        self.groups = sorted(ref.commits)
        self.counts: Counter[str] = Counter()  # cases per category
        self.opens: Counter[str] = Counter()  # opens per mode
        self.outcomes: Counter[tuple[str, str, str]] = Counter()  # (category, mode, result)
        self.failures: dict[str, list[str]] = defaultdict(list)
        self.nfail = 0
        self.slowest = 0.0

    # one case: a mutation, opened in each of `modes`; returns mode -> raised CorruptLogError
    def case(
        self,
        category: str,
        label: str,
        expect: Expect,
        *,
        patch: tuple[str, int, bytes] | None = None,
        files: Mapping[str, bytes | None] | None = None,
        expect_rw: Expect | None = None,
        modes: tuple[str, ...] = ("readonly",),
        expected: list[Rec] | None = None,
        commits: Mapping[str, int | None] | None = None,
        repair: RepairSpec | None = None,
        check: Callable[[str, Outcome], str | None] | None = None,
    ) -> dict[str, bool]:
        self.counts[category] += 1
        self.env.breadcrumb(f"{category}: {label}")
        raised: dict[str, bool] = {}
        for mode in modes:
            out = self._open(mode, patch, files, category, label)
            if out is None:
                continue
            raised[mode] = out.error is not None
            self.outcomes[category, mode, _result(out, expected or self.ref.records)] += 1
            if mode == "repair":
                msg = self._repair_verdict(out, repair or RepairSpec(), commits)
            else:
                want = expect if mode == "readonly" or expect_rw is None else expect_rw
                msg = self._verdict(want, out, expected, commits, readonly=mode == "readonly")
            if msg is None and check is not None:
                msg = check(mode, out)
            reopen = mode == "writable" or (mode == "repair" and (repair is None or repair.reopen))
            if msg is None and reopen and out.error is None:
                msg = self._reopen_verdict(out)
            if msg is not None:
                self.fail(category, label, mode, msg)
        return raised

    def _open(
        self,
        mode: str,
        patch: tuple[str, int, bytes] | None,
        files: Mapping[str, bytes | None] | None,
        category: str,
        label: str,
    ) -> Outcome | None:
        env = self.env
        if mode == "readonly":
            scratch = env.ro
            if patch is not None:
                scratch.patch(*patch)
            if files is not None:
                scratch.apply(files)
        else:
            scratch = env.rw
            scratch.reset()
            if patch is not None:
                name, pos, data = patch
                orig = self.ref.files[name]
                scratch.write(name, orig[:pos] + data + orig[pos + len(data) :])
            if files is not None:
                scratch.apply(files)
        self.opens[mode] += 1
        t0 = time.perf_counter()
        self.guard.tick(t0)
        try:
            return observe(scratch.path, mode, self.groups, env.watch)
        except Exception as exc:  # anything but CorruptLogError is a failure
            self.fail(category, label, mode, f"raised {type(exc).__name__}: {exc}")
            return None
        finally:
            dt = time.perf_counter() - t0
            self.slowest = max(self.slowest, dt)
            if dt > HANG_S:
                self.fail(category, label, mode, f"took {dt:.1f} s (> {HANG_S} s)")
            if mode == "readonly":
                if patch is not None:
                    name, pos, data = patch
                    scratch.patch(name, pos, self.ref.files[name][pos : pos + len(data)])
                if files is not None:
                    scratch.undo(files)

    def _verdict(
        self,
        expect: Expect,
        out: Outcome,
        expected: list[Rec] | None,
        commits: Mapping[str, int | None] | None,
        *,
        readonly: bool,
    ) -> str | None:
        want = self.ref.records if expected is None else expected
        n = len(out.records)
        if out.records != want[:n]:
            return _first_difference(out.records, want)
        if out.error is not None:
            if expect == Expect.FULL:
                return (
                    f"CorruptLogError ({out.stage}) where nothing relevant was damaged: {out.error}"
                )
            return None
        if expect == Expect.CORRUPT:
            return f"damage not detected: {n} of {len(want)} records returned, no CorruptLogError"
        if expect <= Expect.INTACT_OR_CORRUPT and n != len(want):
            return f"only {n} of {len(want)} records returned, without CorruptLogError"
        start = want[0][0] if want else 0
        end = want[n - 1][0] + 1 if n else start
        if (out.start, out.end) != (start, end):
            return f"start/end_offset {out.start}/{out.end}, but the records span {start}..{end}"
        for group, c in (self.ref.commits if commits is None else commits).items():
            # a writer clamps a committed offset to the recovered end (and rewrites it); a
            # readonly reader shows what is stored (its view may lag a live writer's commits)
            exp = c if c is None or readonly else min(c, end)
            if out.committed.get(group) != exp:
                return f"committed({group!r}) = {out.committed.get(group)}, expected {exp}"
        return None

    def _repair_verdict(
        self, out: Outcome, spec: RepairSpec, commits: Mapping[str, int | None] | None
    ) -> str | None:
        if out.error is not None:
            if spec.allow_error:
                return None
            return f"repair=True raised on record-level damage: {out.error}"
        prev = -1
        written = self.ref.records
        for rec in out.records:
            off = rec[0]
            if off <= prev or off >= len(written) or rec != written[off]:
                return f"repair returned {_short(rec)}, not a record written at that offset"
            prev = off
        got = {rec[0] for rec in out.records}
        unexplained = set(range(len(written))) - got - spec.gone
        if unexplained and not out.stats.get("repaired"):
            return (
                f"{len(unexplained)} records dropped (e.g. {min(unexplained)}), "
                f"statistics()['repaired'] is empty"
            )
        if spec.keep is not None and not spec.keep <= got:
            return f"repair dropped intact records {sorted(spec.keep - got)[:10]}"
        for group, c in (self.ref.commits if commits is None else commits).items():
            exp = None if c is None or spec.offsets_reset else min(c, out.end)
            if out.committed.get(group) != exp:
                return f"committed({group!r}) = {out.committed.get(group)}, expected {exp}"
        return None

    def _reopen_verdict(self, first: Outcome) -> str | None:
        """After a successful writable open: a plain writable reopen sees the same records and
        has nothing left to truncate or repair."""
        try:
            again = observe(self.env.rw.path, "writable", self.groups, self.env.watch)
        except Exception as exc:
            return f"reopen raised {type(exc).__name__}: {exc}"
        if again.error is not None:
            return f"reopen after a successful open raised {again.error}"
        if again.records != first.records:
            return f"reopen shows {len(again.records)} records, the first open {len(first.records)}"
        if again.stats["bytes_truncated"] or again.stats["repaired"]:
            return (
                f"reopen truncated/repaired again: {again.stats['truncations']} "
                f"{again.stats['repaired']}"
            )
        if first.stats["bytes_truncated"] and not first.warnings:
            return "bytes were truncated without a warning on the fastq.log logger"
        return None

    def fail(self, category: str, label: str, mode: str, msg: str) -> None:
        self.nfail += 1
        examples = self.failures[f"{category} [{mode}]: {re.sub(r'[0-9]+', 'N', msg)[:60]}"]
        examples.append(f"{label}: {msg}" if len(examples) < 5 else "")

    def report(self) -> str:
        lines = [f"{self.nfail} failures"]
        for kind, examples in self.failures.items():
            shown = [e for e in examples if e]
            lines.append(f"- {kind} ({len(examples)} cases), e.g.:")
            lines.extend(f"    {e}" for e in shown)
        return "\n".join(lines)

    def summary(self, title: str) -> str:
        res = Counter({(m, r): n for (_, m, r), n in self.outcomes.items()})
        return (
            f"{title}: {sum(self.counts.values())} cases {dict(self.counts)}; opens "
            f"{dict(self.opens)}; outcomes {dict(res)}; slowest open {self.slowest * 1e3:.1f} ms"
        )

    def finish(self, title: str, minimum: int) -> None:
        self.guard.cancel()
        total = sum(self.counts.values())
        print(self.summary(title))
        TALLY[title] = total
        assert self.nfail == 0, f"{title}: {self.report()}\n(seed: see the report header)"
        assert total >= minimum, f"{title}: {total} cases, planned at least {minimum}"


def _result(out: Outcome, want: list[Rec]) -> str:
    if out.error is not None:
        return f"corrupt@{out.stage}"
    return "full" if len(out.records) == len(want) else "prefix"


def _short(rec: Rec) -> str:
    off, ts, key, value = rec
    return f"(offset={off}, ts={ts}, key={key!r:.20}, value={len(value)} B)"


def _first_difference(got: list[Rec], want: list[Rec]) -> str:
    for i, rec in enumerate(got):
        if i >= len(want):
            return f"extra record #{i} {_short(rec)} beyond the {len(want)} written"
        if rec != want[i]:
            return f"record #{i} is {_short(rec)}, but {_short(want[i])} was written"
    return "records differ"


# Repair forgets a damaged offsets file. It does not rewrite it, so a plain reopen afterwards
# fails again: test_file_level_damage holds that expectation; the bulk categories skip it.
def offsets_repaired(ref: Reference) -> RepairSpec:
    return RepairSpec(keep=frozenset(range(len(ref.records))), offsets_reset=True, reopen=False)


TALLY: dict[str, int] = {}
CATEGORY_MIN = {
    "flips": 150_000,
    "truncations": 49_000,
    "tails": 400,
    "bursts": BURSTS,
    "splices": SPLICES,
    "pages": 48,
    "length fields": 1_000,
    "file-level": 40,
    "checkpoints": 600,
}


# ---- fixtures -----------------------------------------------------------------------------------


def _tmpfs_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> str:
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return tempfile.mkdtemp(prefix=f"fastq-{name}-", dir=shm)
    return str(tmp_path_factory.mktemp(name))


@dataclass
class Env:
    ro: Scratch
    rw: Scratch
    watch: LogWatch
    crumb_fd: int

    def breadcrumb(self, label: str) -> None:
        os.pwrite(self.crumb_fd, label.encode()[:250].ljust(256), 0)


def _make_env(
    tmp_path_factory: pytest.TempPathFactory, ref: Reference, name: str, watch: LogWatch
) -> Iterator[Env]:
    root = _tmpfs_dir(tmp_path_factory, name)
    crumb = os.open(
        tmp_path_factory.getbasetemp() / "log-corruption-case.txt",
        os.O_RDWR | os.O_CREAT | os.O_TRUNC,
        0o644,
    )
    env = Env(
        Scratch(os.path.join(root, "ro"), ref), Scratch(os.path.join(root, "rw"), ref), watch, crumb
    )
    try:
        yield env
    finally:
        env.ro.close()
        env.rw.close()
        os.close(crumb)
        shutil.rmtree(root, ignore_errors=True)


def _build(
    tmp_path_factory: pytest.TempPathFactory, *, mid_flush_active: bool
) -> Iterator[Reference]:
    root = _tmpfs_dir(tmp_path_factory, "log-ref")
    path = os.path.join(root, "log")
    try:
        written, commits = write_reference(path, mid_flush_active=mid_flush_active)
        yield load_reference(path, written, commits)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    yield from _build(tmp_path_factory, mid_flush_active=False)


@pytest.fixture(scope="module")
def watch() -> Iterator[LogWatch]:
    w = LogWatch()
    logger = logging.getLogger("fastq.log")
    logger.addFilter(w)
    try:
        yield w
    finally:
        logger.removeFilter(w)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, ref: Reference, watch: LogWatch) -> Iterator[Env]:
    yield from _make_env(tmp_path_factory, ref, "log-fuzz", watch)


@pytest.fixture
def guard(capfd: pytest.CaptureFixture[str]) -> Iterator[HangGuard]:
    """The hang watchdog, writing to the real stderr; also makes sure a segfault is reported."""
    with capfd.disabled():
        fd = os.dup(2)
    was_enabled = faulthandler.is_enabled()
    if not was_enabled:
        faulthandler.enable(file=fd)
    g = HangGuard(fd)
    try:
        yield g
    finally:
        g.cancel()
        if not was_enabled:
            faulthandler.disable()
        os.close(fd)


@pytest.fixture
def fz(ref: Reference, env: Env, guard: HangGuard) -> Fuzz:
    assert faulthandler.is_enabled(), "a segfault in the fuzz loop must be reported"
    return Fuzz(ref, env, guard)


# ---- the reference itself -----------------------------------------------------------------------


def test_reference_shape(ref: Reference, tmp_path: Path) -> None:
    """The reference is what the cases assume: 3 segments, checkpoints covering everything."""
    assert len(ref.segments) == 3
    s0, s1, s2 = ref.segments
    assert [s.base for s in ref.segments] == [0, s0.offsets().stop, s1.offsets().stop]
    assert s2.offsets().stop == len(ref.records)
    for s in (s0, s1):
        assert 25 <= len([r for r in s.records if not r.gap]) <= 50
        assert any(r.gap for r in s.records), "the mid-segment flush padded with a gap record"
    assert 10 <= len([r for r in s2.records if not r.gap]) <= 30
    # the active segment: a checkpoint covering every record, zeros after its used end
    assert s2.checkpoints[-1][1:] == (s2.used_end, len(ref.records))
    assert s2.used_end == ACTIVE_PAGE_END
    assert not any(s2.data[s2.used_end :])
    keys = [k for _, _, k, _ in ref.records]
    assert None in keys
    assert b"" in keys
    assert any(k for k in keys)
    assert {len(v) for *_, v in ref.records} & {0, 1}
    assert max(len(v) for *_, v in ref.records) > 250
    assert set(ref.files) == {*ref.seg_names, OFFSETS}
    for name, data in ref.files.items():
        (tmp_path / name).write_bytes(data)
    with fastq.SegmentLog(tmp_path, segment_bytes=SEG, readonly=True) as log:
        got = [(r.offset, r.timestamp, r.key, r.value) for r in log]
        assert got == ref.records
        assert {g: log.committed(g) for g in ref.commits} == ref.commits


# ---- (a) single-bit flips -----------------------------------------------------------------------


def _kept(ref: Reference, seg: SegInfo, pos: int) -> frozenset[int] | None:
    """The records repair must keep when byte `pos` of `seg` is damaged (None: any)."""
    if pos < HEADER:
        return None
    hit = {r.offset for r in seg.records if r.pos <= pos < r.body_end}
    return frozenset(range(len(ref.records))) - hit


def test_single_bit_flips(ref: Reference, fz: Fuzz) -> None:
    """Every bit of every segment's header, checkpoint/hint page and record area (up to the
    used end + 64 bytes of zeros), and of the offsets file. CRC-covered bytes: 100% detected."""
    detect: Counter[tuple[str, str]] = Counter()
    for seg in ref.segments:
        ranges = ((0, HEADER), (META_AT, META_END), (DATA_AT, min(SEG, seg.used_end + BEYOND)))
        for lo, hi in ranges:
            for pos in range(lo, hi):
                c = seg.cls[pos]
                orig = seg.data[pos]
                for bit in range(8):
                    i = pos * 8 + bit
                    modes: tuple[str, ...] = ("readonly",)
                    spec = None
                    if bit == pos % 8:
                        modes = ("readonly", "writable")
                    if i % 89 == 0:
                        modes = (*modes, "repair")
                        spec = RepairSpec(allow_error=pos < HEADER, keep=_kept(ref, seg, pos))
                    raised = fz.case(
                        "flips",
                        f"{seg.name} byte {pos} bit {bit} ({Cls(c).name})",
                        expect_of(c, active=seg.active, readonly=True),
                        expect_rw=expect_of(c, active=seg.active, readonly=False),
                        patch=(seg.name, pos, bytes((orig ^ (1 << bit),))),
                        modes=modes,
                        repair=spec,
                    )
                    if c == Cls.COVERED:
                        for mode, r in raised.items():
                            if mode != "repair":
                                detect[mode, "total"] += 1
                                detect[mode, "detected"] += r
    data = ref.files[OFFSETS]
    for pos in range(len(data)):
        for bit in range(8):
            raised = fz.case(
                "flips",
                f"offsets byte {pos} bit {bit}",
                Expect.CORRUPT,
                patch=(OFFSETS, pos, bytes((data[pos] ^ (1 << bit),))),
                modes=("readonly", "writable", "repair") if bit == pos % 8 else ("readonly",),
                repair=offsets_repaired(ref),
            )
            for mode, r in raised.items():
                if mode != "repair":
                    detect[mode, "total"] += 1
                    detect[mode, "detected"] += r
    print(
        "CRC-covered flips detected: "
        + ", ".join(
            f"{m} {detect[m, 'detected']}/{detect[m, 'total']}" for m in ("readonly", "writable")
        )
    )
    fz.finish("flips", CATEGORY_MIN["flips"])
    for mode in ("readonly", "writable"):
        assert detect[mode, "total"] > 0
        assert detect[mode, "detected"] == detect[mode, "total"], f"{mode}: {detect}"


# ---- (b) truncation -----------------------------------------------------------------------------


def _truncation_expect(seg: SegInfo, t: int) -> Expect:
    if t < HEADER:
        return Expect.CORRUPT
    if t >= seg.used_end:
        return Expect.FULL
    if not seg.active:
        return Expect.CORRUPT if t < seg.last_data_end else Expect.FULL
    # the active segment: the oracle of R4 (a prefix or CorruptLogError); the stricter
    # expectation lives in test_truncated_active_segment_never_hides_records
    return Expect.ANY if t < seg.last_data_end else Expect.INTACT_OR_CORRUPT


def _boundaries(seg: SegInfo) -> set[int]:
    marks = {HEADER, HEADER_COVERED, META_AT, HINT_AT, META_END, DATA_AT, seg.used_end}
    for r in seg.records:
        marks |= {r.pos, r.body_end, r.end}
    return {m + d for m in marks for d in (-1, 0, 1)}


def test_truncation_at_every_offset(ref: Reference, fz: Fuzz) -> None:
    """Each segment file cut at every byte offset 0..16383, the offsets file at every offset."""
    for seg in ref.segments:
        marks = _boundaries(seg)
        for t in range(SEG):
            modes: tuple[str, ...] = ("readonly",)
            if t % 61 == 0 or t in marks:
                modes = ("readonly", "writable")
            if t % 397 == 0:
                modes = (*modes, "repair")
            lost = frozenset(r.offset for r in seg.records if r.body_end > t and not r.gap)
            # a cut through the active segment's checkpoint page drops its records without a
            # report: test_truncated_active_segment_never_hides_records holds that expectation
            hidden = seg.active and t < META_END
            fz.case(
                "truncations",
                f"{seg.name} cut at {t}",
                _truncation_expect(seg, t),
                files={seg.name: seg.data[:t]},
                modes=modes,
                repair=RepairSpec(
                    allow_error=t < HEADER,
                    keep=frozenset(range(len(ref.records))) - lost,
                    gone=lost if hidden else frozenset(),
                ),
            )
    data = ref.files[OFFSETS]
    for t in range(len(data)):
        fz.case(
            "truncations",
            f"offsets cut at {t}",
            Expect.CORRUPT,
            files={OFFSETS: data[:t]},
            modes=("readonly", "writable", "repair"),
            repair=offsets_repaired(ref),
        )
    fz.finish("truncations", CATEGORY_MIN["truncations"])


def test_truncated_active_segment_never_hides_records(ref: Reference, fz: Fuzz) -> None:
    """A segment file is created at full size and never shrinks, so an active segment cut
    below the end of its checkpointed records is damage before the recovery point: it must
    raise CorruptLogError, in readonly and writable opens alike, not come back as a silent
    prefix (F2: truncation that went undetected). Cuts inside the checkpoint page (which take
    the checkpoint with them) included."""
    seg = ref.segments[-1]
    for t in range(HEADER, seg.last_data_end, 7):
        fz.case(
            "truncations",
            f"{seg.name} cut at {t}",
            Expect.CORRUPT,
            files={seg.name: seg.data[:t]},
            modes=("readonly", "writable"),
        )
    fz.finish("truncations (active, strict)", 500)


# ---- (c) tails ----------------------------------------------------------------------------------


def _tail(kind: str, n: int, r: random.Random) -> bytes:
    if kind == "zeros":
        return bytes(n)
    if kind == "0xff":
        return b"\xff" * n
    return r.randbytes(n)


def test_appended_tails(ref: Reference, fz: Fuzz, rng: random.Random) -> None:
    """1..1024 bytes (random, zeros, 0xFF) appended to each file, and written over the zeros
    right after the active segment's end (a torn tail: truncated, reported, zeroed)."""
    lengths = [1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 255, 256, 511, 512]
    lengths += [1000, 1023, 1024] + [rng.randint(1, 1024) for _ in range(16)]
    for name, data in ref.files.items():
        for kind in ("random", "zeros", "0xff"):
            for n in lengths:
                fz.case(
                    "tails",
                    f"{name} + {n} B {kind}",
                    Expect.CORRUPT if name == OFFSETS else Expect.FULL,
                    files={name: data + _tail(kind, n, rng)},
                    modes=("readonly", "writable", "repair"),
                    repair=offsets_repaired(ref) if name == OFFSETS else None,
                )
    seg = ref.segments[-1]
    for kind in ("random", "0xff"):
        for n in lengths:
            tail = _tail(kind, n, rng)
            if kind == "random" and not any(tail):
                tail = b"\x01" + tail[1:]
            torn = len(tail.rstrip(b"\0"))

            def reported(mode: str, out: Outcome, torn: int = torn) -> str | None:
                got = out.stats.get("bytes_truncated")
                if mode == "readonly" or out.error is not None or got == torn:
                    return None
                return f"bytes_truncated {got}, expected {torn}"

            fz.case(
                "tails",
                f"{seg.name}: {n} B {kind} after the used end",
                Expect.FULL,
                patch=(seg.name, seg.used_end, tail),
                modes=("readonly", "writable", "repair"),
                check=reported,
            )
    fz.finish("tails", CATEGORY_MIN["tails"])


# ---- (d) random bursts and stale-record splices -----------------------------------------------


@dataclass(frozen=True)
class Change:
    """What writing some bytes over a reference segment changes."""

    ro: Expect  # expectation for readonly opens
    rw: Expect  # for writable opens
    header: bool  # CRC-covered header bytes changed
    hit: frozenset[int]  # data records whose CRC-covered bytes changed
    first: int | None  # offset of the first record (data or gap) with changed bytes

    def keep(self, nrec: int) -> frozenset[int] | None:
        """The records repair must keep (None: no promise, the segment header is damaged)."""
        return None if self.header else frozenset(range(nrec)) - self.hit


def _classify(seg: SegInfo, pos: int, new: bytes, *, splice: bool) -> Change:
    ro = rw = Expect.FULL
    touched: list[int] = []
    header = False
    for i, b in enumerate(new):
        p = pos + i
        if seg.data[p] == b:
            continue
        c = seg.cls[p]
        ro = max(ro, expect_of(c, active=seg.active, readonly=True, splice=splice))
        rw = max(rw, expect_of(c, active=seg.active, readonly=False, splice=splice))
        if p < HEADER_COVERED:
            header = True
        elif c == Cls.COVERED:
            touched.append(p)
    damaged = [r for r in seg.records if _overlaps(touched, r.pos, r.body_end)]
    hit = frozenset(r.offset for r in damaged if not r.gap)
    return Change(ro, rw, header, hit, damaged[0].offset if damaged else None)


def _overlaps(sorted_positions: list[int], lo: int, hi: int) -> bool:
    i = bisect.bisect_left(sorted_positions, lo)
    return i < len(sorted_positions) and sorted_positions[i] < hi


def _burst_target(ref: Reference, r: random.Random) -> tuple[str, int, int]:
    if r.random() < 0.05:
        size = len(ref.files[OFFSETS])
        pos = r.randrange(size)
        return OFFSETS, pos, min(r.randint(1, 64), size - pos)
    seg = r.choice(ref.segments)
    n = r.randint(1, 64)
    where = r.random()
    if where < 0.7:
        pos = r.randrange(DATA_AT, min(SEG, seg.used_end + 128))
    elif where < 0.85:
        pos = r.randrange(0, HEADER + 64)
    elif where < 0.95:
        pos = r.randrange(META_AT - 64, META_END + 64)
    else:
        pos = r.randrange(SEG)
    return seg.name, pos, min(n, SEG - pos)


def test_random_bursts(ref: Reference, fz: Fuzz, rng: random.Random) -> None:
    """1..64 random bytes at random places (records mostly, headers, the checkpoint page,
    the offsets file); expectations from the bytes that actually changed."""
    for i in range(BURSTS):
        name, pos, n = _burst_target(ref, rng)
        new = bytearray(rng.randbytes(n))
        orig = ref.files[name][pos : pos + n]
        if new == orig:
            new[0] ^= 1 + rng.randrange(255)
        modes: tuple[str, ...] = ("readonly", "writable") if i % 4 == 0 else ("readonly",)
        if i % 16 == 0:
            modes = (*modes, "repair")
        if name == OFFSETS:
            fz.case(
                "bursts",
                f"offsets {n} B at {pos}",
                Expect.CORRUPT,
                patch=(name, pos, bytes(new)),
                modes=modes,
                repair=offsets_repaired(ref),
            )
            continue
        seg = ref.seg(name)
        ch = _classify(seg, pos, bytes(new), splice=False)
        fz.case(
            "bursts",
            f"{name} {n} B at {pos}",
            ch.ro,
            expect_rw=ch.rw,
            patch=(name, pos, bytes(new)),
            modes=modes,
            repair=RepairSpec(allow_error=ch.header, keep=ch.keep(len(ref.records))),
        )
    fz.finish("bursts", CATEGORY_MIN["bursts"])


def test_stale_record_splices(ref: Reference, fz: Fuzz, rng: random.Random) -> None:
    """F11: a valid record's bytes copied over another place: onto another record's start,
    at a random 8-aligned place among the records, or into the zeros after a segment's end
    (stale-but-valid bytes beyond the logical end must never be resurrected)."""
    sources = [(s, r) for s in ref.segments for r in s.records]
    for i in range(SPLICES):
        src_seg, src = rng.choice(sources)
        blob = src_seg.data[src.pos : src.end]
        dst = rng.choice(ref.segments)
        where = rng.random()
        if where < 0.35:
            pos = rng.choice(dst.records).pos
        elif where < 0.7:
            pos = rng.randrange(DATA_AT, dst.used_end, 8)
        else:
            room = SEG - dst.used_end
            if room < len(blob):
                dst = ref.segments[-1]
                room = SEG - dst.used_end
            pos = dst.used_end + rng.randrange(0, room - len(blob) + 1, 8)
        blob = blob[: SEG - pos]
        ch = _classify(dst, pos, blob, splice=True)
        modes = ("readonly", "writable", "repair") if i % 2 == 0 else ("readonly",)
        # Repair resyncs at the next record that validates with a larger offset. A stale copy
        # of an older record is not one, so every intact record must survive; a copy of a newer
        # one is, and the records between may be dropped (docs/log-format.md) - but repair
        # must still succeed and return only records that were written.
        older = ch.first is None or src.offset < ch.first
        fz.case(
            "splices",
            f"record {src.offset} of {src_seg.name} ({len(blob)} B) onto {dst.name} at {pos}",
            ch.ro,
            expect_rw=ch.rw,
            patch=(dst.name, pos, blob),
            modes=modes,
            repair=RepairSpec(keep=ch.keep(len(ref.records)) if older else None),
        )
    fz.finish("splices", CATEGORY_MIN["splices"])


# ---- (e) whole pages ----------------------------------------------------------------------------


def test_page_zeroing_and_duplication(ref: Reference, fz: Fuzz) -> None:
    """Each 4 KiB page of each segment zeroed; each page copied over each other page of the
    same segment; record pages copied over the same page of another segment."""
    npages = SEG // PAGE
    for seg in ref.segments:
        jobs: list[tuple[str, int, bytes]] = [
            (f"page {p} zeroed", p, bytes(PAGE)) for p in range(npages)
        ]
        for src in range(npages):
            for dst in range(npages):
                if src != dst:
                    page = seg.data[src * PAGE : (src + 1) * PAGE]
                    jobs.append((f"page {src} copied over page {dst}", dst, page))
        for other in ref.segments:
            if other is not seg:
                for p in (0, 2, 3):
                    page = other.data[p * PAGE : (p + 1) * PAGE]
                    jobs.append((f"page {p} of {other.name} copied over page {p}", p, page))
        for label, p, page in jobs:
            ch = _classify(seg, p * PAGE, page, splice=True)
            fz.case(
                "pages",
                f"{seg.name}: {label}",
                ch.ro,
                expect_rw=ch.rw,
                patch=(seg.name, p * PAGE, page),
                modes=("readonly", "writable", "repair"),
                repair=RepairSpec(allow_error=ch.header),
            )
    fz.finish("pages", CATEGORY_MIN["pages"])


# ---- (f) length fields and other header fields with and without fixed-up CRCs --------------------


def test_length_fields(ref: Reference, fz: Fuzz) -> None:
    """Every data record's value and key length set to 0 / 0xFFFFFFFF / > segment / one past
    the room left / 2**31, with the record CRC left alone or recomputed (so only the length
    checks can catch it); and magic, version and type patched with the CRC recomputed."""
    for seg in ref.segments:
        for ri, rec in enumerate(seg.records):
            if rec.gap:
                continue
            room = SEG - rec.pos - REC
            vlen, klen = (
                struct.unpack_from("<I", seg.data, rec.pos + 4)[0],
                struct.unpack_from("<I", seg.data, rec.pos + 24)[0],
            )
            klen0 = 0 if klen == NO_KEY else klen
            variants: list[tuple[str, int, bytes, bool]] = []
            for v in (0, 0xFFFFFFFF, SEG + 1, room - klen0 + 1, 2**31):
                for fix in (False, True):
                    if v == 0 and fix:
                        continue  # a valid record with a forged CRC: undetectable by design
                    if v != vlen:
                        variants.append((f"value_len={v}", 4, struct.pack("<I", v), fix))
            for k in (0xFFFFFFFE, SEG + 1, room - vlen + 1):
                for fix in (False, True):
                    variants.append((f"key_len={k}", 24, struct.pack("<I", k), fix))
            last_data = ri == max(i for i, r in enumerate(seg.records) if not r.gap)
            if not last_data:
                # the value runs to the segment's end with a valid CRC: the records after it
                # are gone, so the offsets (sealed) or the checkpoint (active) must object. (Over
                # a segment's last record that is a valid record with a forged CRC: no check can
                # tell, so it is not a case.)
                variants.append(("value_len=to the end", 4, struct.pack("<I", room - klen0), True))
            variants += [
                ("magic=0x4651", 28, struct.pack("<H", 0x4651), True),
                ("version=2", 31, b"\x02", True),
                ("version=0", 31, b"\x00", True),
                ("type=2", 30, b"\x02", True),
                ("type=255", 30, b"\xff", True),
            ]
            for label, at, raw, fix in variants:
                b = bytearray(seg.data)
                b[rec.pos + at : rec.pos + at + len(raw)] = raw
                if fix:
                    fix_record_crc(b, rec)
                fz.case(
                    "length fields",
                    f"{seg.name} record {rec.offset}: {label}{' (CRC fixed)' if fix else ''}",
                    Expect.CORRUPT,
                    files={seg.name: bytes(b)},
                    modes=("readonly", "writable") if ri % 5 == 0 else ("readonly",),
                )
    fz.finish("length fields", CATEGORY_MIN["length fields"])


def _reason(part: str) -> Callable[[str, Outcome], str | None]:
    def check(mode: str, out: Outcome) -> str | None:
        if out.error is None or part in out.error.reason or mode == "repair":
            return None
        return f"reason {out.error.reason!r} does not mention {part!r}"

    return check


def _clamped(mode: str, out: Outcome) -> str | None:
    if mode != "readonly" and out.error is None and not out.stats.get("offsets_clamped"):
        return "an offset beyond the end was clamped without a report in offsets_clamped"
    return None


def test_file_level_damage(ref: Reference, fz: Fuzz) -> None:
    """Deleted, duplicated and renamed segments, header fields (future version, wrong magic,
    big-endian, sizes) with fixed-up CRCs, and offsets files beyond the end or garbage."""
    s0, s1, s2 = ref.segments
    n = len(ref.records)
    all_offsets = frozenset(range(n))
    modes = ("readonly", "writable", "repair")
    ok = RepairSpec(keep=all_offsets)
    hdr = RepairSpec(allow_error=True)

    def case(label: str, expect: Expect, files: Mapping[str, bytes | None], **kw: Any) -> None:
        fz.case("file-level", label, expect, files=files, modes=modes, **kw)

    # segments deleted / renamed. Losing the oldest segment looks like retention, losing the
    # newest one like never having written it: nothing is left to tell (by design).
    first_gone = frozenset(s0.offsets())
    last_gone = frozenset(s2.offsets())
    as_retention = {
        "expected": ref.records[s1.base :],
        "repair": RepairSpec(keep=all_offsets - first_gone, gone=first_gone),
    }
    as_unwritten = {
        "expected": ref.records[: s2.base],
        "repair": RepairSpec(keep=all_offsets - last_gone, gone=last_gone),
    }
    case(
        "middle segment deleted",
        Expect.CORRUPT,
        {s1.name: None},
        repair=RepairSpec(keep=all_offsets - set(s1.offsets())),
    )
    case("first segment deleted", Expect.FULL, {s0.name: None}, **as_retention)
    case("active segment deleted", Expect.FULL, {s2.name: None}, **as_unwritten)
    case(
        "every segment deleted",
        Expect.FULL,
        {s.name: None for s in ref.segments},
        expected=[],
        repair=RepairSpec(keep=frozenset(), gone=all_offsets),
    )
    for seg in ref.segments:
        wrong = {
            "a .bak suffix": seg.name + ".bak",
            "19 digits": seg.name[1:],
            "the next base offset": seg_name(seg.base + 1),
        }
        for why, new in wrong.items():
            label = f"{seg.name} renamed ({why})"
            renamed = {seg.name: None, new: seg.data}
            if why == "the next base offset":  # the header disagrees with the name
                case(label, Expect.CORRUPT, renamed, repair=hdr)
            elif seg is s0:
                case(label, Expect.FULL, renamed, **as_retention)
            elif seg is s2:
                case(label, Expect.FULL, renamed, **as_unwritten)
            else:
                case(
                    label,
                    Expect.CORRUPT,
                    renamed,
                    repair=RepairSpec(keep=all_offsets - set(seg.offsets())),
                )
    # duplicates under other base offsets
    case(
        "sealed segment copied under a later name",
        Expect.CORRUPT,
        {seg_name(n + 1000): s1.data},
        repair=hdr,
    )
    case(
        "first segment copied under a name inside its range",
        Expect.CORRUPT,
        {seg_name(5): s0.data},
        repair=hdr,
    )
    case(
        "first segment rebased inside its own range",
        Expect.CORRUPT,
        {seg_name(5): fixed_header(s0.data, base=5)},
        repair=hdr,
    )
    case(
        "sealed segment rebased after the end",
        Expect.INTACT_OR_CORRUPT,
        {seg_name(n): fixed_header(s1.data, base=n)},
        repair=hdr,
    )
    case(
        "active segment rebased after the end",
        Expect.CORRUPT,
        {seg_name(n): fixed_header(s2.data, base=n)},
        repair=hdr,
    )
    case(
        "empty segment file after the active one",
        Expect.INTACT_OR_CORRUPT,
        {seg_name(n): b""},
        repair=hdr,
    )
    case(
        "stray .tmp files",
        Expect.FULL,
        {seg_name(n) + ".tmp": b"\xff" * 5000, "offsets.tmp": b"garbage", "README": b"x"},
        repair=ok,
    )
    # headers
    for seg in ref.segments:
        d = seg.data
        case(
            f"{seg.name}: wrong magic", Expect.CORRUPT, {seg.name: b"FQLOGSEH" + d[8:]}, repair=hdr
        )
        case(f"{seg.name}: zero magic", Expect.CORRUPT, {seg.name: bytes(8) + d[8:]}, repair=hdr)
        case(
            f"{seg.name}: future version 2",
            Expect.CORRUPT,
            {seg.name: fixed_header(d, version=2)},
            repair=hdr,
            check=_reason("newer"),
        )
        case(
            f"{seg.name}: future version 2**32-1",
            Expect.CORRUPT,
            {seg.name: fixed_header(d, version=0xFFFFFFFF)},
            repair=hdr,
            check=_reason("newer"),
        )
        case(
            f"{seg.name}: version 0",
            Expect.CORRUPT,
            {seg.name: fixed_header(d, version=0)},
            repair=hdr,
        )
        be = bytearray(d)
        struct.pack_into(
            ">IIQQq", be, 8, 1, HEADER, seg.base, SEG, struct.unpack_from("<q", d, 32)[0]
        )
        struct.pack_into(">I", be, 44, _crc32c(bytes(be[:44])))
        case(f"{seg.name}: big-endian header", Expect.CORRUPT, {seg.name: bytes(be)}, repair=hdr)
        for v in (0, 255, 512, 0xFFFFFFFF):
            case(
                f"{seg.name}: header size {v}",
                Expect.CORRUPT,
                {seg.name: fixed_header(d, hsize=v)},
                repair=hdr,
            )
        for v in (0, 8, SEG - 1, SEG - 8, SEG + 4, 2**32 + 8, 2**64 - 1):
            case(
                f"{seg.name}: segment bytes {v}",
                Expect.CORRUPT,
                {seg.name: fixed_header(d, seg_bytes=v)},
                repair=hdr,
            )
        case(
            f"{seg.name}: segment bytes 32768 (more than the file)",
            Expect.INTACT_OR_CORRUPT,
            {seg.name: fixed_header(d, seg_bytes=2 * SEG)},
            repair=hdr,
        )
        case(
            f"{seg.name}: base offset {seg.base + 1} (CRC fixed)",
            Expect.CORRUPT,
            {seg.name: fixed_header(d, base=seg.base + 1)},
            repair=hdr,
        )
        case(
            f"{seg.name}: flags 1 (CRC fixed)",
            Expect.INTACT_OR_CORRUPT,
            {seg.name: fixed_header(d, flags=1)},
            repair=hdr,
        )
        case(
            f"{seg.name}: header CRC zeroed",
            Expect.CORRUPT,
            {seg.name: d[:44] + bytes(4) + d[48:]},
            repair=hdr,
        )
    # the offsets file
    reset = RepairSpec(keep=all_offsets, offsets_reset=True)
    case(
        "offsets beyond the end",
        Expect.FULL,
        {OFFSETS: offsets_file([(b"audit", n + 1000), (b"billing", 2**64 - 1)])},
        commits={"audit": n + 1000, "billing": 2**64 - 1},
        repair=ok,
        check=_clamped,
    )
    case(
        "offsets file deleted",
        Expect.FULL,
        {OFFSETS: None},
        commits={g: None for g in ref.commits},
        repair=ok,
    )
    case("offsets file empty", Expect.CORRUPT, {OFFSETS: b""}, repair=reset)
    case(
        "offsets file of random bytes",
        Expect.CORRUPT,
        {OFFSETS: random.Random(7).randbytes(64)},
        repair=reset,
    )
    case("offsets file: magic only", Expect.CORRUPT, {OFFSETS: b"FQOFFSET"}, repair=reset)
    entries = [(b"audit", n), (b"billing", n // 2)]
    for label, raw in {
        "future version": offsets_file(entries, version=2),
        "count 2**32-1": offsets_file(entries, count=0xFFFFFFFF),
        "count 3 for 2 entries": offsets_file(entries, count=3),
        "count 1 for 2 entries": offsets_file(entries, count=1),
        "name length 0xFFFF": offsets_file([(b"audit", n)])[:16] + b"\xff\xff" + b"x" * 40,
        "trailing bytes": offsets_file(entries, trailer=b"\0\0\0"),
        "group name not UTF-8": offsets_file([(b"\xff\xfe", 1), *entries]),
    }.items():
        if label == "name length 0xFFFF":
            raw = raw + struct.pack("<I", _crc32c(raw))
        case(f"offsets file (CRC valid): {label}", Expect.CORRUPT, {OFFSETS: raw}, repair=reset)
    fz.finish("file-level", CATEGORY_MIN["file-level"])


# ---- checkpoint slots: which one recovery trusts ------------------------------------------------


@pytest.fixture(scope="module")
def ref2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    yield from _build(tmp_path_factory, mid_flush_active=True)


@pytest.fixture
def fz2(
    ref2: Reference, tmp_path_factory: pytest.TempPathFactory, watch: LogWatch, guard: HangGuard
) -> Iterator[Fuzz]:
    for env2 in _make_env(tmp_path_factory, ref2, "log-fuzz-ckpt", watch):
        yield Fuzz(ref2, env2, guard)


def test_checkpoint_slots(ref2: Reference, fz2: Fuzz) -> None:
    """An active segment with two valid checkpoints (an older one mid-way, the newest at the
    end): every bit of both slots and the hint flipped; the newest or both slots destroyed
    together with damage to one record, which then lies after (a torn tail: an exact prefix
    up to it) or before (CorruptLogError) whatever recovery point is left."""
    fz = fz2
    seg = ref2.segments[-1]
    assert len(seg.checkpoints) == 2
    (old_seq, old_pos, _), (new_seq, new_pos, new_next) = seg.checkpoints
    assert old_pos < new_pos
    assert new_next == len(ref2.records)
    slot_at = {seq: META_AT + 32 * (seq % 2) for seq in (old_seq, new_seq)}
    for pos in range(META_AT, META_END):
        for bit in range(8):
            c = seg.cls[pos]
            fz.case(
                "checkpoints",
                f"byte {pos} bit {bit} ({Cls(c).name})",
                expect_of(c, active=True, readonly=True),
                expect_rw=expect_of(c, active=True, readonly=False),
                patch=(seg.name, pos, bytes((seg.data[pos] ^ (1 << bit),))),
                modes=("readonly", "writable"),
            )
    swapped = bytearray(seg.data)
    swapped[META_AT : META_AT + 32], swapped[META_AT + 32 : META_AT + 64] = (
        seg.data[META_AT + 32 : META_AT + 64],
        seg.data[META_AT : META_AT + 32],
    )
    fz.case(
        "checkpoints",
        "slots swapped",
        Expect.FULL,
        files={seg.name: bytes(swapped)},
        modes=("readonly", "writable", "repair"),
    )
    for rec in seg.records:
        if rec.gap:
            continue
        mid = (rec.pos + rec.body_end) // 2
        for lost in ("newest", "both"):
            b = bytearray(seg.data)
            b[slot_at[new_seq] : slot_at[new_seq] + 32] = bytes(32)
            if lost == "both":
                b[slot_at[old_seq] : slot_at[old_seq] + 32] = bytes(32)
            b[mid] ^= 0x10
            point = old_pos if lost == "newest" else DATA_AT
            before = rec.pos < point
            fz.case(
                "checkpoints",
                f"{lost} checkpoint lost, record {rec.offset} damaged",
                Expect.CORRUPT if before else Expect.ANY,
                files={seg.name: bytes(b)},
                expected=None if before else ref2.records[: rec.offset],
                modes=("readonly", "writable", "repair"),
                check=None if before else _exact_prefix(rec.offset),
                repair=RepairSpec(
                    keep=frozenset(range(len(ref2.records))) - {rec.offset} if before else None,
                    gone=frozenset() if before else frozenset(range(rec.offset, len(ref2.records))),
                ),
            )
    fz.finish("checkpoints", CATEGORY_MIN["checkpoints"])


def _exact_prefix(n: int) -> Callable[[str, Outcome], str | None]:
    def check(mode: str, out: Outcome) -> str | None:
        if mode == "repair" or out.error is not None:
            return f"a torn tail after the recovery point raised {out.error}" if out.error else None
        if len(out.records) != n:
            return f"{len(out.records)} records, expected the {n} before the torn one"
        if mode == "writable" and not out.stats["bytes_truncated"]:
            return "the torn tail was dropped without a truncation report"
        return None

    return check


# ---- the budget ---------------------------------------------------------------------------------


def test_case_count_meets_the_pr_budget() -> None:
    """The planned minimum per category adds up to R4's PR tier (>= 40,000 cases), and when
    the whole module ran, the cases that actually ran do too."""
    assert sum(CATEGORY_MIN.values()) >= PR_MIN_CASES
    if set(CATEGORY_MIN) <= set(TALLY):
        assert sum(TALLY[c] for c in CATEGORY_MIN) >= PR_MIN_CASES, TALLY
