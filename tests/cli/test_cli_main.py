"""``fastq.cli.main``, ``python -m fastq`` as a subprocess, exit codes and output modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import snapshot
from click.testing import Result

import fastq
from fastq.cli import main

Run = Callable[..., Result]
LogDir = tuple[Path, list[tuple[bytes | None, bytes]]]
LIVENESS = 60.0  # seconds: a generous bound for a subprocess on a busy 2-core box


def _fastq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastq", *args], capture_output=True,
                          text=True, timeout=LIVENESS, check=False)


def test_main_returns_the_exit_codes(log_dir: LogDir, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    directory, _ = log_dir
    assert main(["log", "info", str(directory)]) == 0
    assert "segment" in capsys.readouterr().out
    assert main(["log", "info", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("fastq: error: no such directory")
    assert main(["log", "nosuchcommand"]) == 2
    assert "No such command" in capsys.readouterr().err
    assert main(["log", "dump", str(directory), "--limit", "x"]) == 2
    assert main(["--help"]) == 0
    assert "dlq" in capsys.readouterr().out
    with open(directory / "00000000000000000000.log", "r+b") as f:
        f.seek(8192 + 28)
        f.write(b"??")
    assert main(["log", "verify", str(directory)]) == 3
    assert "DAMAGE " in capsys.readouterr().out


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "log", "info", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "CliError" in err
    assert err.rstrip().splitlines()[-1].startswith("fastq: error: no such directory")


def test_help_lists_every_command(cli: Run) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for name in ("log", "groups", "dlq"):
        assert f"  {name} " in result.stdout
    for group, subs in {"log": ["info", "dump", "tail", "verify"], "groups": ["list", "reset"],
                        "dlq": ["list", "groups", "show", "replay", "discard"]}.items():
        text = cli(group, "--help").stdout
        assert all(f"  {s} " in text for s in subs), (group, text)


def test_rich_tables_on_a_terminal(cli: Run, log_dir: LogDir,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    directory, _ = log_dir
    monkeypatch.setattr("fastq.cli._output._rich", lambda: True)
    result = cli("groups", str(directory))
    assert result.exit_code == 0, result.output
    assert "billing" in result.stdout
    assert "\u2503" in result.stdout  # a rich box border


def test_subprocess_verify_a_damaged_log(log_dir: LogDir) -> None:
    directory, _ = log_dir
    names = sorted(f for f in os.listdir(directory) if f.endswith(".log"))
    with open(directory / names[1], "r+b") as f:
        f.seek(8192 + 100)
        f.write(b"\x00\xff\x00\xff")
    before = snapshot(directory)
    proc = _fastq("log", "verify", str(directory))
    assert proc.returncode == 3, proc
    assert f"DAMAGE {directory / names[1]}: byte 8192: record CRC mismatch" in proc.stdout
    assert proc.stderr == ""
    proc = _fastq("log", "dump", str(directory))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"fastq: error: damaged log: record CRC mismatch "
                                  f"({directory / names[1]}, byte 8192)")
    assert proc.stderr.count("\n") == 1
    assert snapshot(directory) == before


def test_subprocess_dump_json(log_dir: LogDir) -> None:
    directory, records = log_dir
    proc = _fastq("log", "dump", str(directory), "--json", "--from", "10", "--limit", "3")
    assert proc.returncode == 0, proc
    rows = [json.loads(s) for s in proc.stdout.splitlines()]
    assert [r["offset"] for r in rows] == [10, 11, 12]
    assert rows[0]["value"].encode() == records[10][1]


def test_subprocess_dlq_and_version(queue_dir: tuple[Path, dict[str, list[str]]]) -> None:
    directory, _ = queue_dir
    proc = _fastq("dlq", "list", str(directory), "--json")
    assert proc.returncode == 0, proc
    assert json.loads(proc.stdout)["total"] == 6
    proc = _fastq("dlq", "discard", str(directory), "--all", "--apply", "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["moved"] == 6
    proc = _fastq("--version")
    assert proc.returncode == 0
    assert fastq.__version__ in proc.stdout
    proc = _fastq("dlq", "replay", str(directory))
    assert proc.returncode == 2
    assert "say which entries" in proc.stderr


def test_subprocess_tail_follows_a_live_writer(tmp_path: Path) -> None:
    directory = tmp_path / "live"
    with fastq.SegmentLog(str(directory)) as log:
        log.append_many([b"a0", b"a1"])
        child = subprocess.Popen(
            [sys.executable, "-m", "fastq", "log", "tail", str(directory), "--follow",
             "--from", "1", "--limit", "4", "--timeout", str(LIVENESS), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            assert json.loads(child.stdout.readline())["offset"] == 1  # it is running
            log.append(b"b2")
            assert json.loads(child.stdout.readline())["value"] == "b2"  # it followed
            log.append_many([b"b3", b"b4", b"b5"])
            out, err = child.communicate(timeout=LIVENESS)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 0, err
    assert [json.loads(s)["value"] for s in out.splitlines()] == ["b3", "b4"]


def test_subprocess_tail_follow_stops_on_ctrl_c(tmp_path: Path) -> None:
    directory = tmp_path / "live"
    with fastq.SegmentLog(str(directory)) as log:
        log.append(b"x")
        child = subprocess.Popen(
            [sys.executable, "-m", "fastq", "log", "tail", str(directory), "-f"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            assert child.stdout.readline().startswith("0  ")  # waiting for more now
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=LIVENESS)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 0, err
    assert out == ""
    assert err == ""
