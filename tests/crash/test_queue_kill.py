"""R9 end to end across kill -9: a durable Queue consumed by 4 threads in a child process that
is SIGKILLed at random moments and restarted, loses no message (crash class C1).

The parent fills ``Queue("jobs", path=DIR)`` (sync="none", visibility_timeout=0.2,
max_deliveries=5), then runs cycles: it tops the queue up (reopening the directory itself:
the dead child's writer lock must be free), starts ``queue_worker.py`` (a subprocess; it
reopens the queue and says ``R`` on stdout once open), waits for that, sleeps U(2 ms, 80 ms)
and SIGKILLs it. A last child runs with no kill until the queue is empty. The worker logs
``H id`` per delivery and ``A id`` after ack() returned (docs in queue_worker.py). Checks:

* every message put is acked (an ``A`` line), or in the DLQ, or had an ``H`` line in a child
  that was killed (its ack may have landed just before the kill; at most 4 per kill): none lost;
* no message is acked twice (an ack returned twice: the journal let an acked message back);
* the final queue is empty; the poison message (always nacked) is in the DLQ with 5 attempts
  after crossing kills, while the others kept flowing.

The duplicate count (messages handled more than once: redelivery after a kill or a stale
lease) is printed. Seeds come from the ``rng`` fixture (FASTQ_SEED replays); kills scale with
FASTQ_STRESS_SCALE and FASTQ_SOAK.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fastq

SOAK = os.environ.get("FASTQ_SOAK") == "1"
WORKER = str(Path(__file__).with_name("queue_worker.py"))
SRC = str(Path(fastq.__file__).resolve().parent.parent)
THREADS = 4
MAX_DELIVERIES = 5
READY_DEADLINE = 30.0  # seconds a child may take to open the queue (liveness)
DRAIN_DEADLINE = 120.0  # seconds the last child may take to drain everything


def open_jobs(directory: Path) -> fastq.Queue:
    return fastq.Queue(
        "jobs",
        path=str(directory),
        sync="none",
        visibility_timeout=0.2,
        max_deliveries=MAX_DELIVERIES,
        maxsize=None,
    )


@contextlib.contextmanager
def worker(directory: Path, done: Path, poison: str, seed: int) -> Iterator[subprocess.Popen]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, WORKER, str(directory), str(done), poison, str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def read_line(proc: subprocess.Popen, deadline: float) -> bytes:
    """One line from the child's stdout ("" at EOF), waiting at most `deadline` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], deadline)
    if not ready:
        pytest.fail(f"child {proc.pid} said nothing for {deadline} s")
    return proc.stdout.readline()


def parse(done: Path) -> tuple[Counter[str], Counter[str]]:
    handled: Counter[str] = Counter()
    acked: Counter[str] = Counter()
    if not done.exists():
        return handled, acked
    for line in done.read_text().splitlines():
        tag, _, mid = line.partition(" ")
        if len(mid) != 36:
            continue  # a torn last line (the kill came mid-write)
        (handled if tag == "H" else acked)[mid] += 1
    return handled, acked


def run(tmp_path: Path, rng: Any, *, initial: int, top_up: int, kills: int, poison: bool) -> None:
    directory = tmp_path / "q"
    directory.mkdir()
    with open_jobs(directory) as q:
        ids = q.put_many([rng.randbytes(rng.randrange(1, 64)) for _ in range(initial)])
        poison_id = q.put(b"poison", priority="high") if poison else "-"
    put_ids = set(ids) | ({poison_id} if poison else set())
    handled: Counter[str] = Counter()
    acked: Counter[str] = Counter()
    maybe_acked: set[str] = set()  # handled in a killed child, no A line
    finished_early = 0
    started = time.monotonic()
    for cycle in range(kills + 1):
        last = cycle == kills
        if cycle and top_up:
            with open_jobs(directory) as q:  # the dead child's lock is free at once
                put_ids.update(q.put_many([b"more-%d" % cycle] * top_up))
        done = tmp_path / f"done-{cycle}.txt"
        with worker(directory, done, poison_id, rng.randrange(2**32)) as proc:
            line = read_line(proc, READY_DEADLINE)
            assert line == b"R\n", (line, proc.communicate(timeout=60)[1].decode())
            if last:
                line = read_line(proc, DRAIN_DEADLINE)
                assert line == b"D\n", (line, proc.communicate(timeout=60)[1].decode())
                assert proc.wait(timeout=60) == 0
            else:
                time.sleep(rng.uniform(0.002, 0.08))
                proc.send_signal(signal.SIGKILL)
                code = proc.wait(timeout=60)
                if code != -signal.SIGKILL:  # it drained everything before the kill
                    _, err = proc.communicate(timeout=60)
                    assert code == 0, (code, err.decode(), rng)
                    finished_early += 1
        h, a = parse(done)
        handled += h
        acked += a
        if not last:
            maybe_acked.update(m for m in h if m not in a)
    elapsed = time.monotonic() - started

    with open_jobs(directory) as q:
        assert len(q) == 0, (len(q), rng)
        dlq = q.dead_letter
        assert dlq is not None
        dead = Counter(e.message.id for e in dlq.list())
        entries = dlq.list()
    twice = sorted(m for m, n in acked.items() if n > 1)
    assert not twice, f"acked twice (an acked message came back): {twice[:5]} {rng}"
    lost = put_ids - set(acked) - set(dead) - maybe_acked
    assert not lost, f"{len(lost)} messages lost, e.g. {sorted(lost)[:5]} {rng}"
    unrecorded = (put_ids & maybe_acked) - set(acked) - set(dead)
    assert len(unrecorded) <= THREADS * kills, (len(unrecorded), rng)
    assert not set(dead) & set(acked), "a message both acked and dead-lettered"
    for e in entries:
        assert e.attempts == MAX_DELIVERIES, e
        assert e.reason in ("max_deliveries", "rejected"), e
    if poison:
        assert dead[poison_id] >= 1, f"poison message not in the DLQ {rng}"
        assert handled[poison_id] <= MAX_DELIVERIES, handled[poison_id]
        others = put_ids - {poison_id}
        assert len(others & (set(acked) | unrecorded)) >= len(others) - len(dead), rng
    dup = sum(1 for n in handled.values() if n > 1)
    print(
        f"\nqueue kill -9: {len(put_ids)} messages, {kills} kills ({finished_early} children"
        f" drained before the kill), {sum(handled.values())} deliveries, {dup} handled more"
        f" than once, {len(unrecorded)} acked without a record, {len(dead)} dead-lettered"
        f" ({sum(dead.values())} DLQ entries), {elapsed:.1f} s, {rng}"
    )


def test_kill9_consumers_lose_nothing(tmp_path: Path, rng: Any, stress_scale: float) -> None:
    kills = max(1, int((1000 if SOAK else 50) * stress_scale))
    run(tmp_path, rng, initial=1000, top_up=40, kills=kills, poison=False)


def test_kill9_poison_reaches_dlq_while_others_flow(
    tmp_path: Path, rng: Any, stress_scale: float
) -> None:
    kills = max(1, int((200 if SOAK else 12) * stress_scale))
    run(tmp_path, rng, initial=300, top_up=20, kills=kills, poison=True)
