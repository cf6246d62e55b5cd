"""fastq.demo.run_demo and ``fastq demo``: the scenario in a short mode (fast handlers) checks
its own exactly-once accounting against the plan; the same through click's CliRunner (--json),
in a given --dir, in a subprocess; and a run whose handler drops a message must fail the
verdict (exit code 1). The demo seed is derived from FASTQ_SEED and shown in every assert."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import fastq
from fastq import demo as demo_mod
from fastq.cli import demo as cli_demo
from fastq.cli import main as cli_main
from fastq.demo import DemoProgress, DemoReport, run_demo

N = 1500
FAST = 0.05  # work_scale: handlers sleep/hash 5% of the default work


@pytest.fixture
def seed(rng: Any) -> int:
    s: int = rng.randrange(2**31)
    print(f"demo seed={s} ({rng!r})")
    return s


def expected(messages: int, seed: int) -> dict[str, int]:
    """What the plan says, computed independently of the run."""
    plan = demo_mod._plan(messages, seed)
    steady = [p for p in plan if not p.bulk]
    return {
        "permanent": sum(p.permanent for p in steady),
        "duplicates": sum(p.duplicate for p in steady),
        "retries": sum(p.transient for p in steady if not p.permanent),
        "bulk": len(plan) - len(steady),
    }


def assert_exact(report: DemoReport, messages: int, seed: int) -> None:
    want = expected(messages, seed)
    why = f"seed={seed}: {report.verdict}"
    assert report.ok, why
    assert report.lost == 0, why
    assert report.processed_twice == 0, why
    assert report.produced + report.shed == messages, why
    assert report.shed <= want["bulk"], why  # only the low-priority burst may be shed
    assert report.processed + report.dead_lettered == report.produced, why
    assert report.dead_lettered == report.dead_letter_expected == want["permanent"], why
    assert report.retried == report.retries_expected == want["retries"], why
    assert report.deduplicated == report.duplicates_sent == want["duplicates"], why
    assert sum(g.count for g in report.dlq_groups) == want["permanent"], why
    assert {lane.name for lane in report.lanes} == set(demo_mod.LANES)
    assert sum(lane.processed for lane in report.lanes) == report.processed
    for lane in report.lanes:
        assert lane.p50 is not None, why
        assert lane.p99 is not None, why
        assert lane.max is not None, why
        assert 0 <= lane.p50 <= lane.p99 <= lane.max, why


def test_run_demo_accounts_for_every_message(seed: int) -> None:
    snapshots: list[DemoProgress] = []
    report = run_demo(
        messages=N, seed=seed, work_scale=FAST, on_progress=snapshots.append, progress_interval=0.05
    )
    assert_exact(report, N, seed)
    assert report.directory is None
    assert report.stopped_early is False
    assert report.dlq_groups
    assert all(
        g.error_type == "fastq.errors.Permanent" and g.reasons == {"permanent": g.count}
        for g in report.dlq_groups
    )
    assert snapshots, "on_progress is always called at least once (the final snapshot)"
    last = snapshots[-1]
    assert last.producing is False
    assert last.attempted == N
    assert last.planned == N
    assert last.produced == report.produced
    assert last.processed == report.processed
    assert [lane.name for lane in last.lanes] == list(demo_mod.LANES)
    assert all(s.lanes[1].breaker == "closed" for s in snapshots)  # the standard lane's breaker
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["ok"] is True
    assert data["lost"] == 0
    assert data["verdict"].startswith("OK")


def test_run_demo_keeps_durable_data_in_dir(tmp_path: Path, seed: int) -> None:
    report = run_demo(str(tmp_path), messages=600, seed=seed, work_scale=FAST)
    assert_exact(report, 600, seed)
    assert report.directory is not None
    run_dir = Path(report.directory)
    assert run_dir.parent == tmp_path
    assert run_dir.name.startswith("demo-")
    names = {p.name for p in run_dir.iterdir()}
    assert {"orders", *demo_mod.LANES, *(f"{n}.dlq" for n in demo_mod.LANES)} <= names
    # the dead letters are durable: reopening the lanes finds them again, nothing else
    reopened = 0
    for lane in report.lanes:
        q = fastq.Queue(lane.name, path=str(run_dir), maxsize=None)
        try:
            assert len(q) == 0, f"seed={seed}: {lane.name} kept messages"
            assert q.dead_letter is not None
            assert len(q.dead_letter.list()) == lane.dead_lettered, f"seed={seed}"
            reopened += lane.dead_lettered
        finally:
            q.close()
            q.dead_letter.close() if q.dead_letter is not None else None
    assert reopened == report.dead_lettered
    # a second run in the same directory gets a folder of its own: the accounting stays exact
    again = run_demo(str(tmp_path), messages=300, seed=seed, work_scale=FAST)
    assert_exact(again, 300, seed)
    assert again.directory != report.directory


def test_duration_stops_sending_and_still_accounts_exactly(seed: int) -> None:
    # the steady producer's rate (1,800/s, bucket of 90) cannot send 5,000 in 0.3 s
    report = run_demo(messages=5000, seed=seed, duration=0.3, work_scale=1.0)
    why = f"seed={seed}: {report.verdict}"
    assert report.stopped_early, why
    assert report.ok, why
    assert report.lost == 0, why
    assert 0 < report.produced < 5000, why
    assert report.processed + report.dead_lettered == report.produced, why


def test_verdict_fails_when_a_message_is_dropped(seed: int) -> None:
    dropped: list[str] = []
    lock = threading.Lock()

    def lose_first(mid: str) -> bool:
        with lock:
            if dropped:
                return False
            dropped.append(mid)
            return True

    report = run_demo(messages=400, seed=seed, work_scale=FAST, _lose=lose_first)
    assert len(dropped) == 1
    assert report.ok is False
    assert report.lost == 1
    failed = {c.name for c in report.checks if not c.ok}
    assert failed == {"nothing lost"}, (seed, report.checks)
    assert report.verdict.startswith("FAILED")
    assert "lost=1" in report.verdict
    assert report.to_dict()["ok"] is False


@pytest.mark.parametrize(
    ("kwargs", "exc", "text"),
    [
        ({"messages": 0}, ValueError, "messages"),
        ({"messages": "10"}, TypeError, "messages"),
        ({"messages": True}, TypeError, "messages"),
        ({"duration": -1.0}, ValueError, "duration"),
        ({"duration": float("nan")}, ValueError, "duration"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"progress_interval": 0}, ValueError, "progress_interval"),
        ({"on_progress": 3}, TypeError, "on_progress"),
        ({"work_scale": -1}, ValueError, "work_scale"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], exc: type[Exception], text: str) -> None:
    with pytest.raises(exc, match=text):
        run_demo(**kwargs)


def test_bad_directory(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="directory"):
        run_demo(3)  # type: ignore[arg-type]
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(FileExistsError):  # makedirs on a path that is a file
        run_demo(str(a_file), messages=10)


def test_cli_json(seed: int) -> None:
    result = CliRunner().invoke(
        cli_demo.command,
        ["--messages", str(N), "--seed", str(seed), "--json", "--work-scale", str(FAST)],
    )
    assert result.exit_code == 0, (seed, result.output, result.exception)
    data = json.loads(result.output)  # nothing but the JSON report
    want = expected(N, seed)
    assert data["ok"] is True, (seed, data["verdict"])
    assert data["lost"] == 0
    assert data["dead_lettered"] == want["permanent"]
    assert data["deduplicated"] == data["duplicates_sent"] == want["duplicates"]
    assert data["retried"] == want["retries"]
    assert data["produced"] + data["shed"] == N
    assert data["processed"] + data["dead_lettered"] == data["produced"]
    assert {lane["name"] for lane in data["lanes"]} == set(demo_mod.LANES)
    assert all({"p50", "p95", "p99", "max"} <= set(lane) for lane in data["lanes"])


def test_cli_plain_output_and_dir(tmp_path: Path, seed: int) -> None:
    result = CliRunner().invoke(
        cli_demo.command,
        [
            "--messages",
            "600",
            "--seed",
            str(seed),
            "--dir",
            str(tmp_path),
            "--work-scale",
            str(FAST),
        ],
    )
    assert result.exit_code == 0, (seed, result.output, result.exception)
    lines = result.output.splitlines()
    assert lines[-1].startswith("OK: all ")
    assert any(line.startswith("critical ") for line in lines)  # the lane table
    assert "dead-letter groups:" in result.output
    assert f"data kept in {tmp_path}" in result.output
    assert [p.name[:5] for p in tmp_path.iterdir()] == ["demo-"]


def test_cli_exit_code_1_when_accounting_breaks(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    lose_all = functools.partial(run_demo, _lose=lambda mid: True)
    monkeypatch.setattr(cli_demo, "run_demo", lose_all)
    result = CliRunner().invoke(
        cli_demo.command,
        ["--messages", "300", "--seed", str(seed), "--quiet", "--work-scale", str(FAST)],
    )
    assert result.exit_code == 1, (seed, result.output, result.exception)
    assert result.output.startswith("FAILED: the accounting does not add up")
    result = CliRunner().invoke(
        cli_demo.command,
        ["--messages", "300", "--seed", str(seed), "--json", "--work-scale", str(FAST)],
    )
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False
    assert data["lost"] == data["produced"] - data["dead_lettered"] > 0


def test_cli_bad_option() -> None:
    result = CliRunner().invoke(cli_demo.command, ["--messages", "0"])
    assert result.exit_code == 2
    assert "--messages" in result.output


def test_entry_point_exit_codes(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    args = ["demo", "--messages", "300", "--seed", str(seed), "--quiet", "--work-scale", str(FAST)]
    assert cli_main(args) == 0
    monkeypatch.setattr(cli_demo, "run_demo", functools.partial(run_demo, _lose=lambda mid: True))
    assert cli_main(args) == 1
    assert cli_main(["demo", "--messages", "0"]) == 2


def test_subprocess_run(seed: int) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastq",
            "demo",
            "--messages",
            "800",
            "--seed",
            str(seed),
            "--work-scale",
            str(FAST),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, (seed, proc.stdout, proc.stderr)
    assert proc.stdout.splitlines()[-1].startswith("OK: all ")
    assert "Traceback" not in proc.stderr, proc.stderr


def test_error_in_on_progress_stops_the_run(tmp_path: Path, seed: int) -> None:
    calls: list[DemoProgress] = []

    def boom(p: DemoProgress) -> None:
        calls.append(p)
        raise RuntimeError("viewer crashed")

    # rate limited to about 10 s of sending: only a prompt abort lets this return quickly
    with pytest.raises(RuntimeError, match="viewer crashed"):
        run_demo(
            str(tmp_path), messages=20_000, seed=seed, on_progress=boom, progress_interval=0.05
        )
    assert len(calls) == 1
    assert calls[0].attempted < 20_000
