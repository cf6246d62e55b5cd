"""SIGTERM/SIGINT to a script running a ConsumerPool through ``run_until_signal`` /
``arun_until_signal``: the pool stops gracefully, the script exits 0, and the durable queue
it consumed loses nothing: every message was handled (and acked) or is still there, and the
ones given back untried kept their attempts.

The child (``pool_worker.py``) says ``ready`` from its first handler call; the parent then
signals it, waits for it (liveness bound) and reopens the queue.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastq.errors import Empty
from fastq.semantics.queue import Queue

WORKER = str(Path(__file__).with_name("pool_worker.py"))
N = 2000
DEADLINE = 60.0  # liveness bound for the child to get ready / to exit


def open_jobs(directory: Path) -> Queue:
    return Queue(
        "jobs", path=str(directory), visibility_timeout=30.0, max_deliveries=3, maxsize=None
    )


def read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.1)
        if r:
            return proc.stdout.readline()
        if proc.poll() is not None:
            break
    return ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    ("mode", "sig"),
    [("threads", signal.SIGTERM), ("asyncio", signal.SIGINT), ("threads", signal.SIGINT)],
)
def test_signal_stops_the_pool_gracefully(tmp_path: Path, mode: str, sig: signal.Signals) -> None:
    qdir = tmp_path / "q"
    qdir.mkdir()
    log = tmp_path / "handled.log"
    q = open_jobs(qdir)
    q.put_many(range(N))
    q.close(drain=False)  # keeps the messages on disk for the child

    proc = subprocess.Popen(
        [sys.executable, WORKER, str(qdir), str(log), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = read_line(proc, time.monotonic() + DEADLINE)
        assert line.strip() == "ready", (
            f"child said {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        )  # type: ignore[union-attr]
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"exit {proc.returncode}; stderr:\n{err}"
    assert f"stopped {int(sig)}" in out, out
    print(out.strip())

    handled = [int(x.split()[1]) for x in log.read_text().splitlines()]
    assert len(handled) == len(set(handled)), "a message was handled twice"
    assert 0 < len(handled) < N, "the signal came too late to test anything"

    q = open_jobs(qdir)
    try:
        left: list[int] = []
        attempts: list[int] = []
        while True:
            try:
                ds = q.get_many(1000, timeout=0)
            except Empty:
                break
            left.extend(d.message.payload for d in ds)
            attempts.extend(d.attempt for d in ds)
        assert set(handled).isdisjoint(left), "a handled (acked) message came back"
        assert sorted(handled + left) == list(range(N)), "a message was lost"
        assert set(attempts) == {1}, "a message given back untried used an attempt"
        assert q.dead_letter is not None
        assert len(q.dead_letter) == 0
    finally:
        q.close(drain=False)
