"""``fastq groups DIR`` and ``fastq groups reset`` on real log and topic directories."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import snapshot
from click.testing import Result

import fastq

Run = Callable[..., Result]
LogDir = tuple[Path, list[tuple[bytes | None, bytes]]]


@pytest.fixture
def topic_dir(tmp_path: Path) -> Path:
    """A closed 3-partition topic ``orders`` with 60 messages; group ``billing`` polled and
    committed part of it, ``audit`` committed only in partition 1."""
    topic = fastq.Topic("orders", partitions=3, path=str(tmp_path))
    try:
        for i in range(60):
            topic.publish({"n": i}, key=f"customer-{i % 7}")
        consumer = topic.consumer("billing", start="earliest")
        got = consumer.poll(max_records=20)
        assert got, "nothing polled"
        consumer.close()  # commits what was polled
    finally:
        topic.close()
    with fastq.SegmentLog(str(tmp_path / "orders" / "p1")) as log:
        log.commit("audit", 1)
    return tmp_path / "orders"


def test_groups_of_a_log(cli: Run, log_dir: LogDir) -> None:
    directory, records = log_dir
    before = snapshot(directory)
    result = cli("groups", str(directory), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "log"
    assert data["partitions"] == 1
    assert [(g["group"], g["lag"]) for g in data["groups"]] == [
        ("audit", len(records) - 20), ("billing", len(records) - 150)]
    assert data["groups"][1]["partitions"] == [{
        "partition": None, "committed": 150, "start_offset": 0, "end_offset": len(records),
        "lag": len(records) - 150}]
    text = cli("groups", "list", str(directory)).stdout
    assert "billing: total lag 50" in text
    assert "audit: total lag 180" in text
    assert snapshot(directory) == before


def test_groups_of_a_topic_match_the_topic_api(cli: Run, topic_dir: Path) -> None:
    result = cli("groups", str(topic_dir), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "topic"
    assert data["partitions"] == 3
    by_group = {g["group"]: g for g in data["groups"]}
    assert set(by_group) == {"audit", "billing"}
    topic = fastq.Topic("orders", partitions=3, path=str(topic_dir.parent))
    try:
        for name, group in by_group.items():
            lag = topic.lag(name)
            committed = topic.committed(name)
            assert {p["partition"]: p["lag"] for p in group["partitions"]} == lag
            assert {p["partition"]: p["committed"] for p in group["partitions"]} == committed
            assert group["lag"] == sum(lag.values())
    finally:
        topic.close()


def test_groups_without_groups(cli: Run, tmp_path: Path) -> None:
    with fastq.SegmentLog(str(tmp_path / "l")) as log:
        log.append(b"x")
    result = cli("groups", str(tmp_path / "l"))
    assert result.exit_code == 0
    assert "no consumer groups" in result.stdout


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_groups_bad_directory(cli: Run, tmp_path: Path, make: str) -> None:
    path = tmp_path / "x"
    if make == "empty":
        path.mkdir()
    result = cli("groups", str(path))
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("fastq: error: ")
    assert str(path) in line


def test_reset_is_a_dry_run_by_default(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    before = snapshot(directory)
    result = cli("groups", "reset", str(directory), "--group", "billing", "--to", "earliest")
    assert result.exit_code == 0, result.output
    assert "would move group 'billing': 150 -> 0" in result.stdout
    assert "--apply" in result.stdout
    result = cli("groups", "reset", str(directory), "--group", "billing", "--to", "10",
                 "--dry-run", "--json")
    assert json.loads(result.stdout) == {
        "directory": str(directory), "group": "billing", "to": "10", "dry_run": True,
        "partitions": [{"partition": None, "from": 150, "to": 10, "start_offset": 0,
                        "end_offset": 200}]}
    assert snapshot(directory) == before


def _committed(directory: Path, group: str) -> int | None:
    with fastq.SegmentLog(str(directory), readonly=True) as log:
        return log.committed(group)


@pytest.mark.parametrize(("to", "expected"), [("earliest", 0), ("latest", 200), ("42", 42)])
def test_reset_apply(cli: Run, log_dir: LogDir, to: str, expected: int) -> None:
    directory, _ = log_dir
    result = cli("groups", "reset", str(directory), "--group", "billing", "--to", to,
                 "--apply", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dry_run"] is False
    assert data["partitions"][0]["to"] == expected
    assert _committed(directory, "billing") == expected
    assert _committed(directory, "audit") == 20


def test_reset_to_a_time(cli: Run, tmp_path: Path) -> None:
    directory = tmp_path / "timed"
    base = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
    with fastq.SegmentLog(str(directory)) as log:
        for i in range(10):
            log.append(b"r%d" % i, timestamp=base + i * 60 * 10**9)  # one a minute
        log.commit("g", 10)
    result = cli("groups", "reset", str(directory), "--group", "g", "--to",
                 "2026-01-01T00:03:30Z", "--apply")
    assert result.exit_code == 0, result.output
    assert _committed(directory, "g") == 4
    result = cli("groups", "reset", str(directory), "--group", "g", "--to",
                 "2026-01-01T00:05:00", "--apply")  # no zone: UTC
    assert result.exit_code == 0, result.output
    assert _committed(directory, "g") == 5


def test_reset_one_partition_of_a_topic(cli: Run, topic_dir: Path) -> None:
    result = cli("groups", "reset", str(topic_dir), "--group", "audit", "--to", "latest",
                 "--partition", "2", "--apply", "--json")
    assert result.exit_code == 0, result.output
    (change,) = json.loads(result.stdout)["partitions"]
    assert change["partition"] == 2
    assert change["from"] is None
    assert _committed(topic_dir / "p2", "audit") == change["end_offset"]
    assert _committed(topic_dir / "p0", "audit") is None
    result = cli("groups", "reset", str(topic_dir), "--group", "audit", "--to", "0",
                 "--partition", "7")
    assert result.exit_code == 1
    assert "no partition 7" in result.stderr


def test_reset_offset_out_of_range(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    before = snapshot(directory)
    result = cli("groups", "reset", str(directory), "--group", "billing", "--to", "201",
                 "--apply")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert "offset 201 is outside the log's range 0..200" in line
    assert str(directory) in line
    assert _committed(directory, "billing") == 150
    assert {k: v[0] for k, v in snapshot(directory).items() if k != ".lock"} == {
        k: v[0] for k, v in before.items() if k != ".lock"}


@pytest.mark.parametrize("to", ["bogus", "-3", ""])
def test_reset_bad_to_is_a_usage_error(cli: Run, log_dir: LogDir, to: str) -> None:
    directory, _ = log_dir
    result = cli("groups", "reset", str(directory), "--group", "billing", "--to", to)
    assert result.exit_code == 2
    assert "--to" in result.stderr


def test_reset_needs_group_and_to(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    assert cli("groups", "reset", str(directory), "--to", "0").exit_code == 2
    assert cli("groups", "reset", str(directory), "--group", "g").exit_code == 2


def test_reset_apply_while_a_writer_holds_the_log(cli: Run, log_dir: LogDir) -> None:
    directory, _ = log_dir
    with fastq.SegmentLog(str(directory)):
        result = cli("groups", "reset", str(directory), "--group", "billing", "--to", "0",
                     "--apply")
        assert result.exit_code == 1
        (line,) = result.stderr.splitlines()
        assert "open for writing in another process" in line
        assert "stop that process" in line
        dry = cli("groups", "reset", str(directory), "--group", "billing", "--to", "0")
        assert dry.exit_code == 0  # a dry run reads only
    assert _committed(directory, "billing") == 150
