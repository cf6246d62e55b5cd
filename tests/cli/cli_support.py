"""Helpers of the command-line tests: a runner over the real ``fastq`` group, and builders of
real log and durable-queue directories."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

import fastq
from fastq.cli import _build

SEGMENT_BYTES = 16384  # the smallest segment: a few records roll a new one


def run(*args: str) -> Result:
    """``fastq ARGS`` through click's runner (stdout and stderr kept apart)."""
    return CliRunner().invoke(_build(), list(args), prog_name="fastq")  # type: ignore[arg-type]



def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory``: its bytes and mtime (ns)."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = (f.read(), os.stat(path).st_mtime_ns)
    return out


def make_log(path: Path, rng: random.Random, n: int = 200) -> list[tuple[bytes | None, bytes]]:
    """A closed log of ``n`` records over several segments (even: a text value and key; odd:
    a binary value, no key) and two groups; returns ``(key, value)`` per offset."""
    records: list[tuple[bytes | None, bytes]] = []
    with fastq.SegmentLog(str(path), segment_bytes=SEGMENT_BYTES) as log:
        for i in range(n):
            if i % 2 == 0:
                key: bytes | None = f"key-{i}".encode()
                value = f"value {i} \N{SNOWMAN} {'x' * 250}".encode()
            else:
                key = None
                size = rng.randrange(120, 150)
                value = b"\xff\xfe" + bytes(rng.randrange(256) for _ in range(size))
            log.append(value, key=key)
            records.append((key, value))
        log.commit("billing", 150)
        log.commit("audit", 20)
    return records



SECRET = "s3cret-payload"


def make_queue(root: Path) -> dict[str, Any]:
    """A closed durable queue ``root/jobs`` with six dead letters: three nacked with
    ValueError (JSON payloads), two rejected with a KeyError text (one holds SECRET), one
    binary payload rejected with no error. Returns the ids by kind."""
    ids: dict[str, Any] = {"value": [], "key": [], "plain": []}
    q = fastq.Queue("jobs", path=str(root), max_deliveries=1)
    try:
        for i in range(3):
            q.put({"n": i})
        q.put(SECRET, key="k-secret")
        q.put("other")
        q.put(b"\xff\x00raw")
        for _ in range(3):
            d = q.get(timeout=5)
            d.nack(error=ValueError(f"boom {d.message.payload['n']}"))
            ids["value"].append(d.message.id)
        for _ in range(2):
            d = q.get(timeout=5)
            d.reject(error="KeyError: 'x'")
            ids["key"].append(d.message.id)
        d = q.get(timeout=5)
        d.reject()
        ids["plain"].append(d.message.id)
        q.put("still queued")
    finally:
        q.close(drain=False)
    return ids

