"""``fastq log info|dump|tail|verify`` against real log directories."""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import snapshot
from click.testing import Result

import fastq

Run = Callable[..., Result]
LogDir = tuple[Path, list[tuple[bytes | None, bytes]]]


def _lines(result: Result) -> list[dict[str, object]]:
    return [json.loads(s) for s in result.stdout.splitlines()]


def _one_error_line(result: Result, *parts: str) -> str:
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fastq: error: "), lines
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def _segments(directory: Path) -> list[str]:
    return sorted(f for f in os.listdir(directory) if f.endswith(".log"))


# ---- info ------------------------------------------------------------------------------------

def test_info_json_describes_segments_offsets_and_groups(cli: Run, log_dir: LogDir) -> None:
    directory, records = log_dir
    before = snapshot(directory)
    result = cli("log", "info", str(directory), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["start_offset"] == 0
    assert data["end_offset"] == len(records) == data["records"]
    names = [s["name"] for s in data["segments"]]
    assert names == _segments(directory)
    assert sum(s["offsets"] for s in data["segments"]) == len(records)
    assert [s["base_offset"] for s in data["segments"]] == [int(n[:20]) for n in names]
    assert all(s["segment_bytes"] >= 16384 for s in data["segments"])
    assert data["groups"] == {"audit": {"committed": 20, "lag": 180},
                              "billing": {"committed": 150, "lag": 50}}
    assert data["retention"] == {"bytes": None, "seconds": None, "known": False}
    assert 0 < data["first_timestamp"] <= data["last_timestamp"]
    assert data["size_bytes"] > 0
    assert snapshot(directory) == before  # read-only: no byte, no mtime changed


def test_info_text(cli: Run, log_dir: LogDir) -> None:
    directory, records = log_dir
    result = cli("log", "info", str(directory))
    assert result.exit_code == 0, result.output
    assert f"0 .. {len(records)} ({len(records)} records)" in result.stdout
    for name in _segments(directory):
        assert name in result.stdout
    assert "billing" in result.stdout
    assert "audit" in result.stdout


def test_info_alongside_a_writer_takes_no_lock(cli: Run, tmp_path: Path) -> None:
    with fastq.SegmentLog(str(tmp_path / "live")) as log:
        log.append(b"one")
        result = cli("log", "info", str(tmp_path / "live"), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["end_offset"] == 1
        log.append(b"two")  # the writer is undisturbed
        assert log.end_offset == 2


def test_info_missing_directory_is_one_error_line(cli: Run, tmp_path: Path) -> None:
    result = cli("log", "info", str(tmp_path / "nope"))
    assert result.exit_code == 1
    _one_error_line(result, "no such directory", str(tmp_path / "nope"), "check the path")
    assert not (tmp_path / "nope").exists()


def test_info_on_a_directory_without_segments(cli: Run, tmp_path: Path) -> None:
    result = cli("log", "info", str(tmp_path))
    assert result.exit_code == 1
    _one_error_line(result, "not a fastq log", str(tmp_path))
    (tmp_path / "p0").mkdir()
    result = cli("log", "info", str(tmp_path))
    assert result.exit_code == 1
    _one_error_line(result, "a topic directory", str(tmp_path / "p0"))


def test_info_on_a_file_is_a_usage_error(cli: Run, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    result = cli("log", "info", str(tmp_path / "f"))
    assert result.exit_code == 2
    assert "is a file" in result.stderr


# ---- dump ------------------------------------------------------------------------------------

def test_dump_json_round_trips_every_record(cli: Run, log_dir: LogDir) -> None:
    directory, records = log_dir
    before = snapshot(directory)
    result = cli("log", "dump", str(directory), "--json")
    assert result.exit_code == 0, result.stderr
    rows = _lines(result)
    assert [r["offset"] for r in rows] == list(range(len(records)))
    for row, (key, value) in zip(rows, records, strict=True):
        if row["value_encoding"] == "utf-8":
            assert str(row["value"]).encode() == value
        else:
            assert row["value_encoding"] == "base64"
            assert base64.b64decode(str(row["value"])) == value
        if key is None:
            assert row["key"] is None
            assert row["key_encoding"] is None
            assert row["key_bytes"] is None
        else:
            assert row["key"] == key.decode()
            assert row["key_encoding"] == "utf-8"
        assert row["value_bytes"] == len(value)
        assert row["redacted"] is False
        assert isinstance(row["timestamp"], int)
        assert str(row["time"]).endswith("+00:00")
    assert {r["value_encoding"] for r in rows} == {"utf-8", "base64"}
    assert snapshot(directory) == before


def test_dump_from_and_limit(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    result = cli("log", "dump", str(directory), "--from", "37", "--limit", "5", "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["offset"] for r in _lines(result)] == [37, 38, 39, 40, 41]
    result = cli("log", "dump", str(directory), "--from", "198", "--limit", "5", "--json")
    assert [r["offset"] for r in _lines(result)] == [198, 199]
    result = cli("log", "dump", str(directory), "--from", "200")
    assert result.exit_code == 0
    assert result.stdout == ""


def test_dump_text(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    result = cli("log", "dump", str(directory), "--limit", "2")
    assert result.exit_code == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.startswith("0  ")
    assert "key='key-0'" in first
    assert "value='value 0 \u2603 xxx" in first
    assert second.startswith("1  ")
    assert "key=-" in second
    assert "value=base64:" in second


def test_dump_redact_hides_keys_and_payloads(cli: Run, log_dir: LogDir) -> None:
    directory, records = log_dir
    result = cli("log", "dump", str(directory), "--json", "--redact", "--limit", "4")
    assert result.exit_code == 0, result.stderr
    for row, (key, value) in zip(_lines(result), records, strict=False):
        assert row["redacted"] is True
        assert row["value"] is None
        assert row["key"] is None
        assert row["value_encoding"] is None
        assert row["value_bytes"] == len(value)
        assert row["key_bytes"] == (None if key is None else len(key))
    text = cli("log", "dump", str(directory), "--redact", "--limit", "4").stdout
    assert "value" in text
    assert "key-0" not in text
    assert "value 0" not in text
    assert "<redacted" in text


@pytest.mark.parametrize("offset", ["201", "5000"])
def test_dump_offset_out_of_range_is_an_error(cli: Run, log_dir: LogDir, offset: str) -> None:
    directory, _ = log_dir
    result = cli("log", "dump", str(directory), "--from", offset)
    assert result.exit_code == 1
    _one_error_line(result, "offset out of range", str(directory))


@pytest.mark.parametrize("bad", ["-1", "abc"])
def test_dump_bad_offset_is_a_usage_error(cli: Run, log_dir: LogDir, bad: str) -> None:
    directory, _ = log_dir
    result = cli("log", "dump", str(directory), "--from", bad)
    assert result.exit_code == 2
    assert "--from" in result.stderr


# ---- tail ------------------------------------------------------------------------------------

def test_tail_prints_the_last_records(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    result = cli("log", "tail", str(directory), "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["offset"] for r in _lines(result)] == list(range(190, 200))
    result = cli("log", "tail", str(directory), "-n", "3", "--json", "--redact")
    rows = _lines(result)
    assert [r["offset"] for r in rows] == [197, 198, 199]
    assert all(r["value"] is None for r in rows)
    result = cli("log", "tail", str(directory), "--from", "5", "--limit", "2", "--json")
    assert [r["offset"] for r in _lines(result)] == [5, 6]


def test_tail_follow_stops_at_limit_and_timeout(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    result = cli("log", "tail", str(directory), "-f", "-n", "5", "--limit", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["offset"] for r in _lines(result)] == [195, 196, 197]
    result = cli("log", "tail", str(directory), "-f", "-n", "2", "--timeout", "0.2", "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["offset"] for r in _lines(result)] == [198, 199]


def test_tail_bad_from(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    result = cli("log", "tail", str(directory), "--from", "999")
    assert result.exit_code == 1
    _one_error_line(result, "offset out of range")


# ---- verify ----------------------------------------------------------------------------------

def test_verify_clean_log(cli: Run, log_dir: LogDir) -> None:
    directory, records = log_dir
    result = cli("log", "verify", str(directory))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: ")
    assert f"{len(records)} records" in result.stdout
    data = json.loads(cli("log", "verify", str(directory), "--json").stdout)
    assert data["ok"] is True
    assert data["problems"] == []
    assert data["damaged"] == 0
    assert data["records"] == len(records)
    assert len(data["segments"]) == len(_segments(directory))


def _damage(directory: Path) -> list[tuple[str, int, str]]:
    """Damage three sealed segments; returns (file, byte, reason) of each place."""
    names = _segments(directory)
    assert len(names) >= 4
    places = []
    path = str(directory / names[0])
    with open(path, "r+b") as f:  # the first record's magic
        f.seek(8192 + 28)
        f.write(b"XX")
    places.append((path, 8192, "bad record magic"))
    path = str(directory / names[1])
    with open(path, "r+b") as f:  # a byte of the first record's value
        f.seek(8192 + 40)
        byte = f.read(1)
        f.seek(8192 + 40)
        f.write(bytes([byte[0] ^ 0x55]))
    places.append((path, 8192, "record CRC mismatch"))
    path = str(directory / names[2])
    with open(path, "r+b") as f:  # the static header's base offset
        f.seek(16)
        f.write(b"\x01")
    places.append((path, 0, "segment header CRC mismatch"))
    return places


def test_verify_reports_every_damaged_place_and_changes_nothing(
    cli: Run, log_dir: LogDir
) -> None:
    directory, _ = log_dir
    places = _damage(directory)
    with pytest.raises(fastq.CorruptLogError) as info:
        fastq.SegmentLog(str(directory), readonly=True)
    assert info.value.path == places[0][0]
    assert info.value.position == places[0][1]
    before = snapshot(directory)

    result = cli("log", "verify", str(directory))
    assert result.exit_code == 3, result.output
    damage = [s for s in result.stdout.splitlines() if s.startswith("DAMAGE ")]
    assert len(damage) == 3, result.stdout
    for text, (path, position, reason) in zip(damage, places, strict=True):
        assert f"{path}: byte {position}: {reason}" in text
    assert "DAMAGED (3 places)" in result.stdout

    result = cli("log", "verify", str(directory), "--json")
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["damaged"] == 3
    got = [(p["file"], p["position"], p["kind"]) for p in data["problems"]]
    assert got == [(path, position, "damage") for path, position, _ in places]
    base = int(os.path.basename(places[0][0])[:20])
    assert (data["problems"][0]["first_offset"], data["problems"][0]["next_offset"]) == (
        base, base + 1)
    assert snapshot(directory) == before  # not one byte or mtime changed


def test_verify_finds_a_missing_middle_segment(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    names = _segments(directory)
    os.remove(directory / names[1])
    result = cli("log", "verify", str(directory), "--json")
    assert result.exit_code == 3
    (problem,) = json.loads(result.stdout)["problems"]
    assert problem["file"] == str(directory / names[0])
    assert "missing or truncated segment" in problem["reason"]
    assert (problem["first_offset"], problem["next_offset"]) == (int(names[1][:20]),
                                                                int(names[2][:20]))


def test_verify_finds_a_damaged_offsets_file(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    with open(directory / "offsets", "r+b") as f:
        f.seek(20)
        f.write(b"\x00\x00")
    result = cli("log", "verify", str(directory))
    assert result.exit_code == 3
    assert f"DAMAGE {directory / 'offsets'}: byte" in result.stdout


def test_other_commands_report_damage_as_one_line(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    path, position, reason = _damage(directory)[0]
    result = cli("log", "info", str(directory))
    assert result.exit_code == 1
    _one_error_line(result, f"damaged log: {reason}", f"({path}, byte {position})",
                    "fastq log verify")
    result = cli("--debug", "log", "dump", str(directory))
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "CorruptLogError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("fastq: error: damaged log")


def _recovery_point(segment: Path) -> int:
    """The active segment's checkpoint position (log-format.md: two 32-byte slots at 4096)."""
    with open(segment, "rb") as f:
        f.seek(4096)
        meta = f.read(64)
    slots = [struct.unpack_from("<QQ", meta, 32 * i) for i in (0, 1)]
    seq, position = max(slots)
    assert seq >= 1
    return int(position)


def test_verify_reports_a_torn_tail_without_failing(cli: Run, tmp_path: Path) -> None:
    directory = tmp_path / "torn"
    with fastq.SegmentLog(str(directory)) as log:  # a 1 MiB segment, mostly free
        log.append_many([b"a", b"b", b"c"])
    active = directory / _segments(directory)[-1]
    position = _recovery_point(active)
    assert position < os.path.getsize(active) - 64
    with open(active, "r+b") as f:  # a half-written record after the recovery point
        f.seek(position)
        f.write(b"\x01" * 40)
    result = cli("log", "verify", str(directory), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    (problem,) = data["problems"]
    assert problem["kind"] == "tail"
    assert (problem["file"], problem["position"]) == (str(active), position)
    assert "TAIL " in cli("log", "verify", str(directory)).stdout
    with fastq.SegmentLog(str(directory)) as log:  # the writer agrees: a tail, truncated
        assert log.end_offset == 3
        assert log.statistics()["bytes_truncated"] > 0


def test_verify_accepts_a_repaired_log(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    _damage(directory)
    header = directory / _segments(directory)[2]
    with open(header, "r+b") as f:  # repair keeps refusing a bad header: undo that one
        f.seek(16)
        f.write(struct.pack("<Q", int(header.name[:20])))
    with fastq.SegmentLog(str(directory), repair=True) as log:
        assert log.statistics()["repaired"]
    result = cli("log", "verify", str(directory), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["repaired_offsets"] > 0
