"""``fastq dlq list|groups|show|replay|discard`` on a real durable queue's directory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_support import SECRET
from click.testing import Result

import fastq

Run = Callable[..., Result]
QueueDir = tuple[Path, dict[str, Any]]


def _ids(cli: Run, directory: Path) -> list[str]:
    result = cli("dlq", "list", str(directory), "--json")
    assert result.exit_code == 0, result.output
    return [e["id"] for e in json.loads(result.stdout)["entries"]]


def _error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("fastq: error: ")
    return line


def test_list_json(cli: Run, queue_dir: QueueDir) -> None:
    directory, ids = queue_dir
    result = cli("dlq", "list", str(directory), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"] == 6
    entries = data["entries"]
    assert [e["id"] for e in entries] == ids["value"] + ids["key"] + ids["plain"]
    assert [e["reason"] for e in entries] == ["rejected"] * 3 + ["permanent"] * 3
    assert entries[0]["error_type"] == "builtins.ValueError"
    assert entries[0]["error_message"] == "boom 0"
    assert entries[3]["summary"] == "KeyError: 'x'"
    assert all(e["queue"] == "jobs" and e["attempts"] == 1 for e in entries)
    assert "payload" not in entries[0]


def test_list_text_and_filters(cli: Run, queue_dir: QueueDir) -> None:
    directory, ids = queue_dir
    text = cli("dlq", "list", str(directory)).stdout
    assert all(i in text for group in ids.values() for i in group)
    assert "6 of 6 dead letters" in text
    result = cli("dlq", "list", str(directory), "--reason", "permanent", "--limit", "2",
                 "--json")
    assert [e["id"] for e in json.loads(result.stdout)["entries"]] == ids["key"]
    fp = json.loads(result.stdout)["entries"][0]["fingerprint"]
    result = cli("dlq", "list", str(directory), "--group", fp, "--json")
    assert [e["id"] for e in json.loads(result.stdout)["entries"]] == ids["key"]


def test_groups(cli: Run, queue_dir: QueueDir) -> None:
    directory, ids = queue_dir
    result = cli("dlq", "groups", str(directory), "--json")
    assert result.exit_code == 0, result.output
    groups = json.loads(result.stdout)["groups"]
    assert [(g["count"], g["error_type"]) for g in groups] == [
        (3, "builtins.ValueError"), (2, "builtins.KeyError"), (1, None)]
    assert groups[0]["ids"] == ids["value"]
    assert groups[0]["reasons"] == {"rejected": 3}
    assert groups[0]["sample"] == "ValueError: boom 2"
    text = cli("dlq", "groups", str(directory)).stdout
    assert groups[0]["fingerprint"] in text
    assert "builtins.KeyError" in text


def test_show(cli: Run, queue_dir: QueueDir) -> None:
    directory, ids = queue_dir
    secret_id = ids["key"][0]
    result = cli("dlq", "show", str(directory), secret_id, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["id"] == secret_id
    assert data["reason"] == "permanent"
    assert data["payload"] == SECRET
    assert data["payload_encoding"] == "text"
    assert data["key"] == "k-secret"
    assert data["redacted"] is False
    raw = json.loads(cli("dlq", "show", str(directory), ids["plain"][0], "--json").stdout)
    assert raw["payload_encoding"] == "base64"
    assert raw["payload"] == "/wByYXc="
    first = json.loads(cli("dlq", "show", str(directory), ids["value"][0], "--json").stdout)
    assert first["payload"] == {"n": 0}
    assert first["payload_encoding"] == "json"
    text = cli("dlq", "show", str(directory), ids["value"][0]).stdout
    assert "error_message:" in text
    assert "boom 0" in text
    assert '{"n": 0}' in text


def test_show_redact(cli: Run, queue_dir: QueueDir) -> None:
    directory, ids = queue_dir
    for extra in (["--json"], []):
        result = cli("dlq", "show", str(directory), ids["key"][0], "--redact", *extra)
        assert result.exit_code == 0, result.output
        assert SECRET not in result.stdout
        assert "k-secret" not in result.stdout
    data = json.loads(cli("dlq", "show", str(directory), ids["key"][0], "--redact",
                          "--json").stdout)
    assert data["payload"] is None
    assert data["key"] is None
    assert data["redacted"] is True


def test_show_unknown_id(cli: Run, queue_dir: QueueDir) -> None:
    directory, _ = queue_dir
    line = _error_line(cli("dlq", "show", str(directory), "no-such-id"))
    assert "no dead letter with id 'no-such-id'" in line
    assert "jobs.dlq" in line


def test_replay_is_a_dry_run_by_default(cli: Run, queue_dir: QueueDir) -> None:
    directory, ids = queue_dir
    result = cli("dlq", "replay", str(directory), "--reason", "rejected", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == {"directory": str(directory), "action": "replay", "dry_run": True,
                    "selected": 3, "ids": ids["value"], "moved": 0, "target": None,
                    "errors": {}, "missing": []}
    text = cli("dlq", "replay", str(directory), "--all").stdout
    assert "dry run: would replay 6 dead letters" in text
    assert "--apply" in text
    assert len(_ids(cli, directory)) == 6


def test_replay_apply_puts_back_into_the_source_queue(cli: Run, queue_dir: QueueDir) -> None:
    directory, ids = queue_dir
    fp = json.loads(cli("dlq", "groups", str(directory), "--json").stdout)["groups"][0]
    result = cli("dlq", "replay", str(directory), "--group", fp["fingerprint"], "--apply",
                 "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dry_run"] is False
    assert data["moved"] == 3
    assert data["ids"] == ids["value"]
    assert _ids(cli, directory) == ids["key"] + ids["plain"]
    q = fastq.Queue("jobs", path=str(directory.parent))
    try:
        got = [q.get(timeout=5) for _ in range(4)]
        assert len(q) == 4  # all still in flight
    finally:
        q.close(drain=False)
    replayed = [d.message for d in got if d.message.id in ids["value"]]
    assert sorted(m.id for m in replayed) == sorted(ids["value"])
    assert all(m.headers["x-fastq-replayed"] == "1" for m in replayed)
    assert all(m.headers["x-fastq-dead-reason"] == "rejected" for m in replayed)


def test_replay_by_id_and_missing_ids(cli: Run, queue_dir: QueueDir) -> None:
    directory, ids = queue_dir
    result = cli("dlq", "replay", str(directory), ids["plain"][0], "nope", "--json")
    assert result.exit_code == 1  # a dry run that would not find every id fails too
    data = json.loads(result.stdout)
    assert data["ids"] == ids["plain"]
    assert data["missing"] == ["nope"]
    result = cli("dlq", "replay", str(directory), ids["plain"][0], "--apply")
    assert result.exit_code == 0, result.output
    assert "replayed 1 of 1 dead letters" in result.stdout
    assert ids["plain"][0] not in _ids(cli, directory)


@pytest.mark.parametrize("args", [[], ["--all", "some-id"], ["--all", "--reason", "expired"]])
def test_replay_and_discard_need_a_selector(cli: Run, queue_dir: QueueDir,
                                            args: list[str]) -> None:
    directory, _ = queue_dir
    for action in ("replay", "discard"):
        result = cli("dlq", action, str(directory), *args, "--apply")
        assert result.exit_code == 2, result.output
    assert len(_ids(cli, directory)) == 6


def test_replay_while_the_queue_is_open(cli: Run, queue_dir: QueueDir) -> None:
    directory, _ = queue_dir
    q = fastq.Queue("jobs", path=str(directory.parent))
    try:
        for args in (["replay", "--all", "--apply"], ["replay", "--all"], ["list"]):
            line = _error_line(cli("dlq", *args, str(directory)))
            assert "the queue is open in another process" in line
            assert "stop that process, or use the API in-process" in line
        assert len(q.dead_letter or ()) == 6
    finally:
        q.close(drain=False)


def test_discard(cli: Run, queue_dir: QueueDir) -> None:
    directory, ids = queue_dir
    result = cli("dlq", "discard", str(directory), "--reason", "permanent")
    assert result.exit_code == 0
    assert "would discard 3" in result.stdout
    assert len(_ids(cli, directory)) == 6
    result = cli("dlq", "discard", str(directory), "--reason", "permanent", "--apply", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["action"] == "discard"
    assert data["moved"] == 3
    assert data["ids"] == ids["key"] + ids["plain"]
    assert _ids(cli, directory) == ids["value"]
    result = cli("dlq", "discard", str(directory), "--all", "--apply")
    assert "discarded 3 of 3" in result.stdout
    assert _ids(cli, directory) == []


def test_the_dlq_directory_itself_is_accepted(cli: Run, queue_dir: QueueDir) -> None:
    directory, ids = queue_dir
    assert _ids(cli, Path(f"{directory}.dlq")) == ids["value"] + ids["key"] + ids["plain"]


def test_not_a_queue_directory(cli: Run, tmp_path: Path) -> None:
    line = _error_line(cli("dlq", "list", str(tmp_path / "missing")))
    assert "no such directory" in line
    (tmp_path / "plain").mkdir()
    line = _error_line(cli("dlq", "list", str(tmp_path / "plain")))
    assert "no dead-letter queue here" in line
    assert f"{tmp_path / 'plain'}.dlq" in line
    assert not (tmp_path / "plain.dlq").exists()
