"""``fastq metrics show|serve`` against real log and topic directories, and ``fastq bench``'s
own logic (finding benchmarks/, the command it runs, the JSON it copies)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from prometheus_client.parser import text_string_to_metric_families

import fastq
from fastq.cli import bench as bench_mod

LIVENESS = 30.0


@pytest.fixture
def topic_dir(tmp_path: Path) -> Path:
    """A durable topic "orders" (3 partitions): 30 records, group "billing" committed 4 per
    partition it saw, group "audit" on partition 0 only."""
    with fastq.Topic("orders", partitions=3, path=str(tmp_path)) as t:
        for i in range(30):
            t.publish(i, key=f"k{i}")
        ends = t.end_offsets()
        c = t.consumer("billing", auto_commit=False)
        c.poll(max_records=1000, timeout=0)
        c.commit({p: min(4, e) for p, e in ends.items()})
        c.close()
        a = t.consumer("audit", auto_commit=False)
        a.poll(max_records=1000, timeout=0)
        a.commit({0: 1})
        a.close()
    return tmp_path / "orders"


def _expected(topic_dir: Path) -> dict[str, Any]:
    with fastq.Topic("orders", partitions=3, path=str(topic_dir.parent)) as t:
        return {
            "ends": t.end_offsets(),
            "billing": t.lag("billing"),
            "audit": t.committed("audit"),
        }


def test_show_json_matches_the_topic(cli: Callable[..., Result], topic_dir: Path) -> None:
    want = _expected(topic_dir)
    res = cli("metrics", "show", str(topic_dir), "--json")
    assert res.exit_code == 0, res.output
    readings = json.loads(res.stdout)
    assert [r["name"] for r in readings] == ["orders/p0", "orders/p1", "orders/p2"]
    for r in readings:
        p = r["partition"]
        assert r["topic"] == "orders"
        assert r["end_offset"] == want["ends"][p]
        billing = r["groups"]["billing"]
        assert r["end_offset"] - billing == want["billing"][p]
        assert r["groups"].get("audit") == want["audit"][p]
        assert r["segments"] >= 1
        assert r["size_bytes"] > 0


def test_show_text_and_a_plain_log(cli: Callable[..., Result], tmp_path: Path) -> None:
    with fastq.SegmentLog(str(tmp_path / "log")) as log:
        log.append_many([b"a", b"b", b"c"])
        log.commit("g", 1)
    res = cli("metrics", "show", str(tmp_path / "log"))
    assert res.exit_code == 0, res.output
    assert "log: offsets 0..3" in res.stdout
    assert "group g: committed 1, lag 2" in res.stdout


def test_show_refuses_a_directory_that_is_neither(cli: Callable[..., Result],
                                                  tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = cli("metrics", "show", str(tmp_path / "empty"))
    assert res.exit_code == 1
    assert "neither a segment log nor a topic" in res.stderr


def test_show_changes_nothing(cli: Callable[..., Result], topic_dir: Path) -> None:
    def snap() -> dict[str, tuple[int, int]]:
        out = {}
        for root, _, files in os.walk(topic_dir):
            for f in files:
                st = os.stat(os.path.join(root, f))
                out[os.path.join(root, f)] = (st.st_size, st.st_mtime_ns)
        return out

    before = snap()
    assert cli("metrics", "show", str(topic_dir), "--json").exit_code == 0
    assert snap() == before


def test_serve_exposes_lag_over_http(topic_dir: Path) -> None:
    want = _expected(topic_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastq", "metrics", "serve", str(topic_dir),
         "--port", "0", "--addr", "127.0.0.1"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "serving 1 directories on http://127.0.0.1:PORT/metrics"
        m = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert m, line
        with urllib.request.urlopen(m.group(0), timeout=LIVENESS) as resp:
            text = resp.read().decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        lag = {(s.labels["group"], s.labels["partition"]): s.value
               for s in fams["fastq_consumergroup_lag"].samples}
        for p, n in want["billing"].items():
            assert lag[("billing", str(p))] == n
        ends = {s.labels["log"]: s.value for s in fams["fastq_log_end_offset"].samples}
        assert ends == {f"orders/p{p}": float(e) for p, e in want["ends"].items()}
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=LIVENESS)  # closes the pipes
    assert proc.returncode == 0, err


def test_bench_outside_a_checkout_says_what_to_do(cli: Callable[..., Result],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_mod, "_benchmarks_dir", lambda: None)
    res = cli("bench", "--quick")
    assert res.exit_code == 1
    assert "source checkout" in res.stderr


def test_bench_runs_run_py_and_copies_the_summary(cli: Callable[..., Result], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bench = tmp_path / "benchmarks"
    (bench / "results").mkdir(parents=True)
    calls: list[list[str]] = []

    def fake_call(args: list[str], cwd: Path) -> int:
        calls.append(args)
        (bench / "results" / "latest.summary.json").write_text('{"scenarios": {}}')
        return 0

    monkeypatch.setattr(bench_mod, "_benchmarks_dir", lambda: bench)
    monkeypatch.setattr(bench_mod.subprocess, "call", fake_call)
    out = tmp_path / "tables.json"
    res = cli("bench", "--quick", "-k", "pipeline", "--repeat", "3", "--json", str(out))
    assert res.exit_code == 0, res.output
    assert calls == [[sys.executable, str(bench / "run.py"), "--quick", "-k", "pipeline",
                      "--repeat", "3"]]
    assert json.loads(out.read_text()) == {"scenarios": {}}


def test_bench_finds_this_checkout() -> None:
    found = bench_mod._benchmarks_dir()
    assert found is not None
    assert (found / "run.py").is_file()
