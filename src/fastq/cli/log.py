"""``fastq log info|dump|tail|verify DIR``: look into a SegmentLog directory without changing it
(every command opens the log read-only or only reads its files: no writer lock is taken)."""

from __future__ import annotations

import mmap
import os
import re
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import click

from fastq import _core
from fastq._core import Record, SegmentLog
from fastq.cli._errors import EXIT_DAMAGED, CliError, at
from fastq.cli._output import emit_json, encode_bytes, iso_ns, kv, line, table

__all__ = ("command", "open_readonly", "segment_files", "verify_log")

_crc32c: Callable[[Any], int] = _core._crc32c
_SEGMENT = re.compile(r"^(\d{20})\.log$")
# magic, version, header size, base offset, segment bytes, created, flags, crc
_HEADER = struct.Struct("<8sIIQQqII")
# crc, value len, offset, timestamp, key len, magic, type, version
_REC = struct.Struct("<IIQqIHBB")
_CKPT = struct.Struct("<QQQII")  # seq, position, next offset, zero, crc
_DATA_AT = 8192
_META_AT = 4096
_NO_KEY = 0xFFFFFFFF
_REC_MAGIC = 0x5146
_CRC_XOR = 0x46515243
_MIN_SEG = 16384
_MAX_SEG = 1 << 32


def segment_files(directory: str) -> list[tuple[int, str]]:
    """``(base offset, path)`` of the segment files in ``directory``, by base offset."""
    out = []
    for name in os.listdir(directory):
        m = _SEGMENT.match(name)
        if m:
            out.append((int(m.group(1)), os.path.join(directory, name)))
    out.sort()
    return out


def _require_log(directory: str) -> None:
    with at(directory):
        if not os.path.exists(directory):
            raise CliError("no such directory", directory, "check the path")
        if not os.path.isdir(directory):
            raise CliError("not a directory", directory, "pass a SegmentLog directory")
        if segment_files(directory):
            return
    if os.path.isdir(os.path.join(directory, "p0")):
        raise CliError("a topic directory, not a log", directory,
                       f"pass one partition's log, e.g. {os.path.join(directory, 'p0')}")
    raise CliError("not a fastq log: no segment files", directory,
                   "pass a SegmentLog directory (it holds 00000000000000000000.log ...)")


def open_readonly(directory: str) -> SegmentLog:
    """The log at ``directory`` opened read-only (a CliError when it is not a log)."""
    _require_log(directory)
    with at(directory):
        return SegmentLog(directory, readonly=True)


# ---- output of records -------------------------------------------------------------------------

def record_json(rec: Record, redact: bool) -> dict[str, Any]:
    """A record as a JSON object."""
    key = rec.key
    value = rec.value
    out: dict[str, Any] = {
        "offset": rec.offset,
        "timestamp": rec.timestamp,
        "time": iso_ns(rec.timestamp),
        "key_bytes": None if key is None else len(key),
        "value_bytes": len(value),
        "redacted": redact,
    }
    if redact:
        out.update(key=None, key_encoding=None, value=None, value_encoding=None)
    else:
        out["key"], out["key_encoding"] = encode_bytes(key)
        out["value"], out["value_encoding"] = encode_bytes(value)
    return out


def _show(data: bytes | None, redact: bool) -> str:
    if data is None:
        return "-"
    if redact:
        return f"<redacted {len(data)} B>"
    text, encoding = encode_bytes(data)
    return repr(text) if encoding == "utf-8" else f"base64:{text}"


def _print_records(records: Iterable[Record], as_json: bool, redact: bool,
                   limit: int | None) -> int:
    n = 0
    for rec in records:
        if limit is not None and n >= limit:
            break
        if as_json:
            emit_json(record_json(rec, redact))
        else:
            line(f"{rec.offset}  {iso_ns(rec.timestamp)}  key={_show(rec.key, redact)}  "
                 f"value={_show(rec.value, redact)}")
        n += 1
    return n


# ---- verify ----------------------------------------------------------------------------------

@dataclass
class Problem:
    """A damaged (or torn) place in a log file."""

    path: str
    position: int
    reason: str
    kind: str = "damage"  # "damage": before the recovery point; "tail": a torn tail
    first_offset: int | None = None  # offsets lost: first_offset .. next_offset - 1
    next_offset: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"file": self.path, "position": self.position, "reason": self.reason,
                "kind": self.kind, "first_offset": self.first_offset,
                "next_offset": self.next_offset}


@dataclass
class _Report:
    segments: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    records: int = 0
    gap_records: int = 0  # skip records: sync padding (count 0) or a repaired range
    repaired_offsets: int = 0  # offsets those gap records stand for (dropped by a repair)


def _check(buf: Any, pos: int, limit: int) -> tuple[str | None, tuple[int, int, int, int]]:
    """Validate the record at ``pos`` (not its offset): ``(None, (offset, next, size, type))``
    when valid, else ``(reason, ...)``; the reason ``"zero"`` means a zero-filled header."""
    none = (0, 0, 0, 0)
    if limit - pos < 32:
        tail = buf[pos:limit]
        return ("zero" if not any(tail) else "record header runs past the end of the file"), none
    crc, vlen, offset, ts, klen_raw, magic, rtype, version = _REC.unpack_from(buf, pos)
    if magic != _REC_MAGIC:
        if not any(buf[pos:pos + 32]):
            return "zero", none
        return "bad record magic", none
    if version != 1:
        return "unknown record version", none
    if rtype not in (0, 1):
        return "unknown record type", none
    klen = 0 if klen_raw == _NO_KEY else klen_raw
    room = limit - pos - 32
    if klen > room or vlen > room - klen:
        return "record length runs past the end of the segment", none
    body = klen + vlen
    if crc != _crc32c(buf[pos + 4:pos + 32 + body]) ^ _CRC_XOR:
        return "record CRC mismatch", none
    size = (32 + body + 7) & ~7
    nxt = offset + 1 if rtype == 0 else offset + max(ts, 0)
    return None, (offset, nxt, size, rtype)


def _resync(buf: Any, start: int, limit: int,
            min_offset: int) -> tuple[int, tuple[int, int, int, int]] | None:
    """The next valid record at or after ``start`` whose offset is >= ``min_offset``."""
    i = start + 28
    while True:
        i = buf.find(b"FQ", i, limit)
        if i < 0:
            return None
        pos = i - 28
        if pos % 8 == 0 and pos >= start:
            reason, info = _check(buf, pos, limit)
            if reason is None and info[0] >= min_offset:
                return pos, info
        i += 1


def _checkpoint(buf: Any) -> tuple[int, int] | None:
    """``(position, next offset)`` of the newest valid checkpoint slot, or None."""
    best: tuple[int, int, int] | None = None
    for slot in (0, 1):
        at_ = _META_AT + 32 * slot
        if len(buf) < at_ + 32:
            return None
        seq, pos, nxt, zero, crc = _CKPT.unpack_from(buf, at_)
        if seq == 0 or zero != 0 or crc != _crc32c(buf[at_:at_ + 28]):
            continue
        if best is None or seq > best[0]:
            best = (seq, pos, nxt)
    return None if best is None else (best[1], best[2])


def _verify_segment(report: _Report, base: int, path: str, next_base: int | None) -> None:
    active = next_base is None
    seg: dict[str, Any] = {"file": path, "base_offset": base, "records": 0, "ok": True}
    report.segments.append(seg)
    before = len(report.problems)

    def problem(position: int, reason: str, kind: str = "damage", first: int | None = None,
                nxt: int | None = None) -> None:
        report.problems.append(Problem(path, position, reason, kind, first, nxt))

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        seg["bytes"] = size
        if size < _HEADER.size:
            problem(0, "segment header runs past the end of the file", first=base, nxt=next_base)
            seg["ok"] = False
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            magic, version, hsize, hbase, declared, _created, _flags, crc = _HEADER.unpack_from(buf)
            reason = None
            if magic != b"FQLOGSEG":
                reason = "bad segment magic"
            elif crc != _crc32c(buf[:44]):
                reason = "segment header CRC mismatch"
            elif version != 1:
                reason = f"segment format version {version} is newer than this fastq supports"
            elif hsize != 256:
                reason = f"bad segment header size {hsize}"
            elif declared < _MIN_SEG or declared > _MAX_SEG or declared % 8:
                reason = f"bad segment size {declared} in the header"
            elif hbase != base:
                reason = f"base offset {hbase} in the header does not match the file name"
            if reason is not None:
                problem(0, reason, first=base, nxt=next_base)
                seg["ok"] = False
                return
            limit = min(declared, size)
            if size < declared:
                problem(size, f"file is {size} bytes, its header says {declared}",
                        kind="damage" if not active else "tail")
            ckpt = _checkpoint(buf) if active else None
            recovery = ckpt[0] if ckpt is not None else None
            expected, pos = base, _DATA_AT
            while True:
                if next_base is not None and expected >= next_base:
                    if expected > next_base:
                        problem(pos, f"records run to offset {expected}, past the next "
                                     f"segment's base offset {next_base}")
                    break
                reason, info = _check(buf, pos, limit)
                if reason is None and info[0] != expected:
                    reason = (f"record offset {info[0]} is not the expected next offset "
                              f"{expected}")
                if reason is None:
                    expected, pos = info[1], pos + info[2]
                    if info[3] == 0:
                        seg["records"] += 1
                        report.records += 1
                    else:
                        report.gap_records += 1
                        report.repaired_offsets += info[1] - info[0]
                    continue
                if reason == "zero":
                    if not active:
                        problem(pos, f"segment ends at offset {expected} but the next segment "
                                     f"starts at {next_base} (a missing or truncated segment)",
                                first=expected, nxt=next_base)
                    elif recovery is not None and pos < recovery:
                        problem(pos, f"records end at byte {pos}, before the recovery point "
                                     f"at byte {recovery}", first=expected)
                    break
                if active and (recovery is None or pos >= recovery):
                    problem(pos, f"torn tail after the recovery point ({reason}; the next "
                                 f"writer open truncates it)", kind="tail", first=expected)
                    break
                found = _resync(buf, pos + 8, limit, expected)
                if found is None:
                    problem(pos, reason, first=expected, nxt=next_base)
                    break
                problem(pos, f"{reason} (bytes {pos}..{found[0] - 1} unreadable)",
                        first=expected, nxt=found[1][0])
                pos, expected = found[0], found[1][0]
            seg["next_offset"] = expected
    seg["ok"] = all(p.kind != "damage" for p in report.problems[before:])


def _verify_offsets(report: _Report, directory: str) -> None:
    path = os.path.join(directory, "offsets")
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 20 or data[:8] != b"FQOFFSET":
        report.problems.append(Problem(path, 0, "bad consumer-offsets file magic or size"))
        return
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if crc != _crc32c(data[:-4]):
        report.problems.append(Problem(path, len(data) - 4, "consumer-offsets CRC mismatch"))


def verify_log(directory: str) -> dict[str, Any]:
    """Check every segment and the offsets file of ``directory`` (reading only); the report
    as a JSON-ready dict (``ok`` is False when any damage was found)."""
    report = _Report()
    segments = segment_files(directory)
    for i, (base, path) in enumerate(segments):
        next_base = segments[i + 1][0] if i + 1 < len(segments) else None
        _verify_segment(report, base, path, next_base)
    _verify_offsets(report, directory)
    damage = [p for p in report.problems if p.kind == "damage"]
    return {
        "directory": directory,
        "ok": not damage,
        "segments": report.segments,
        "records": report.records,
        "gap_records": report.gap_records,
        "repaired_offsets": report.repaired_offsets,
        "damaged": len(damage),
        "problems": [p.as_json() for p in report.problems],
    }


# ---- commands --------------------------------------------------------------------------------

@click.group("log")
def command() -> None:
    """Inspect a SegmentLog directory (read-only: nothing is changed, no lock taken)."""


def _segments_info(log: SegmentLog, directory: str) -> list[dict[str, Any]]:
    files = segment_files(directory)
    out = []
    end = log.end_offset
    for i, (base, path) in enumerate(files):
        nxt = files[i + 1][0] if i + 1 < len(files) else end
        declared = None
        with open(path, "rb") as f:
            head = f.read(_HEADER.size)
            size = os.fstat(f.fileno()).st_size
        if len(head) == _HEADER.size:
            declared = _HEADER.unpack(head)[4]
        out.append({"name": os.path.basename(path), "base_offset": base,
                    "offsets": max(nxt - base, 0), "file_bytes": size,
                    "segment_bytes": declared})
    return out


@command.command("info")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def info(directory: str, as_json: bool) -> None:
    """Segments, offsets, sizes, retention and consumer groups of the log at DIRECTORY."""
    log = open_readonly(directory)
    with at(directory), log:
        start, end = log.start_offset, log.end_offset
        first = log.read(start, 1) if end > start else []
        last = log.read(end - 1, 1) if end > start else []
        groups = {g: {"committed": o, "lag": max(end - o, 0)} for g, o in log.groups().items()}
        segments = _segments_info(log, directory)
        first_ts = first[0].timestamp if first else None
        last_ts = last[0].timestamp if last else None
        size = log.size_bytes
        data: dict[str, Any] = {
            "directory": directory,
            "start_offset": start,
            "end_offset": end,
            "records": end - start,
            "size_bytes": size,
            "segments": segments,
            "first_timestamp": first_ts,
            "last_timestamp": last_ts,
            "retention": {"bytes": None, "seconds": None, "known": False},
            "groups": groups,
        }
    if as_json:
        emit_json(data)
        return
    kv([("directory", directory), ("offsets", f"{start} .. {end} ({end - start} records)"),
        ("size", f"{size} bytes in {len(segments)} segments"),
        ("first record", iso_ns(first_ts)),
        ("last record", iso_ns(last_ts)),
        ("retention", "not stored in the log (the writer's retention_bytes/_seconds apply)")])
    table(["segment", "base offset", "offsets", "file bytes", "segment bytes"],
          [[s["name"], s["base_offset"], s["offsets"], s["file_bytes"], s["segment_bytes"]]
           for s in segments])
    if groups:
        table(["group", "committed", "lag"],
              [[g, v["committed"], v["lag"]] for g, v in sorted(groups.items())])
    else:
        line("groups: none")


def _batches(log: SegmentLog, offset: int, limit: int | None) -> Iterator[Record]:
    left = limit
    end = log.end_offset
    while offset < end and (left is None or left > 0):
        batch = log.read(offset, 1000 if left is None else min(left, 1000))
        if not batch:
            return
        yield from batch
        if left is not None:
            left -= len(batch)
        offset = batch[-1].offset + 1


_SLICE = 0.2  # seconds a follow waits inside the native tail before Python sees signals


def _follow(log: SegmentLog, offset: int, timeout: float | None) -> Iterator[Record]:
    """Records from ``offset`` on, waiting for new ones; stops after ``timeout`` seconds
    without a record (None: never). Waits in short slices, so Ctrl-C is seen at once."""
    last = time.monotonic()
    while True:
        wait = _SLICE
        if timeout is not None:
            wait = min(wait, max(timeout - (time.monotonic() - last), 0.0))
        for rec in log.tail(offset, timeout=wait):
            yield rec
            offset = rec.offset + 1
            last = time.monotonic()
        if timeout is not None and time.monotonic() - last >= timeout:
            return


_redact_option = click.option("--redact", is_flag=True, help="Hide keys and payloads (sizes stay).")
_json_option = click.option("--json", "as_json", is_flag=True,
                            help="One JSON object per record (JSON Lines).")


@command.command("dump")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--from", "start", type=click.IntRange(min=0), default=None,
              help="First offset (default: the log start).")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most N records.")
@_json_option
@_redact_option
def dump(directory: str, start: int | None, limit: int | None, as_json: bool,
         redact: bool) -> None:
    """Print the records of the log at DIRECTORY."""
    log = open_readonly(directory)
    with at(directory), log:
        first = log.start_offset if start is None else start
        if start is not None:
            log.read(start, 1)  # OffsetOutOfRange names the valid range
        _print_records(_batches(log, first, limit), as_json, redact, None)


@command.command("tail")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=10, show_default=True,
              help="Start this many records before the end.")
@click.option("--from", "start", type=click.IntRange(min=0), default=None,
              help="Start at this offset instead (overrides --lines).")
@click.option("-f", "--follow", is_flag=True, help="Keep waiting for new records (Ctrl-C stops).")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Stop after printing N records.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="With --follow: stop when no record arrives for this many seconds.")
@_json_option
@_redact_option
def tail(directory: str, count: int, start: int | None, follow: bool, limit: int | None,
         timeout: float | None, as_json: bool, redact: bool) -> None:
    """Print the last records of the log at DIRECTORY; with --follow, new ones as they come."""
    log = open_readonly(directory)
    with at(directory), log:
        if start is not None:
            log.read(start, 1)  # OffsetOutOfRange names the valid range
            first = start
        else:
            first = max(log.start_offset, log.end_offset - count)
        records = _follow(log, first, timeout) if follow else _batches(log, first, None)
        try:
            _print_records(records, as_json, redact, limit)
        except KeyboardInterrupt:
            return


@command.command("verify")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def verify(directory: str, as_json: bool) -> None:
    """Check every record's CRC and offset in DIRECTORY and report all damage (reads only).
    Exit status 3 when damage was found."""
    _require_log(directory)
    with at(directory):
        report = verify_log(directory)
    if as_json:
        emit_json(report)
    else:
        for p in report["problems"]:
            lost = ""
            if p["first_offset"] is not None:
                lost = (f" (offsets {p['first_offset']}..{p['next_offset'] - 1} lost)"
                        if p["next_offset"] is not None and p["next_offset"] > p["first_offset"]
                        else f" (from offset {p['first_offset']})")
            label = "DAMAGE" if p["kind"] == "damage" else "TAIL"
            line(f"{label} {p['file']}: byte {p['position']}: {p['reason']}{lost}")
        status = "OK" if report["ok"] else f"DAMAGED ({report['damaged']} places)"
        line(f"{status}: {len(report['segments'])} segments, {report['records']} records "
             f"checked in {directory}")
    if not report["ok"]:
        raise click.exceptions.Exit(EXIT_DAMAGED)
