"""Issue 8 on Redis Streams: 4 consumer processes share one queue of 20,000 messages and are
SIGKILLed at random 20 times (each replaced at once, so 4 keep running). Every message ends
acked or dead-lettered, none is lost; duplicates (at-least-once redeliveries) are counted and
printed.

The parent puts the messages (5 of them poison: always nacked, so they must reach the DLQ after
``MAX_DELIVERIES`` attempts across the kills), starts 4 ``redis_worker.py`` children and reads
their stdout: ``R`` (open), ``B <n>`` (a batch of n deliveries handled), ``D`` (nothing left,
exiting). Kills are placed at 20 random points of the delivery count (5 %..85 % of the
messages), each on a random child that has said ``R`` and handled a batch (so it holds leases),
after U(0, 5 ms); a replacement starts at once. The workers record every delivery in Redis
(``HINCRBY <check>:handled``) BEFORE acking, and ``<check>:acked`` after ``ack_many``
returned (docs in redis_worker.py). ``visibility_timeout`` is 1 s, so a killed child's leases
come back within about a second; ``max_deliveries`` (25) is far above what kills alone cost.

Checks once every child said ``D``:

* the queue is empty (nothing ready, delayed or in flight);
* no message lost: every message put was handled at least once, or is in the DLQ;
* no message whose ack returned was acked again (a stale receipt or a redelivery after an ack
  that returned would show here), and none is both acked and dead-lettered;
* messages handled with no ack record (a child killed between ``ack_many`` and its record)
  number at most one batch per kill;
* the poison messages are in the DLQ with ``MAX_DELIVERIES`` attempts.

Duplicates (messages handled more than once), dead-lettered messages and the run time are
printed. Seeds come from the ``rng`` fixture (FASTQ_SEED replays); the kill count scales with
FASTQ_STRESS_SCALE and FASTQ_SOAK.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_worker import MAX_DELIVERIES, POISON, open_queue

import fastq

SOAK = os.environ.get("FASTQ_SOAK") == "1"
WORKER = str(Path(__file__).with_name("redis_worker.py"))
SRC = str(Path(fastq.__file__).resolve().parent.parent)
PROCESSES = 4
MESSAGES = 20_000
POISONS = 5
BATCH = 50  # get_many(1..BATCH) per call in the workers
READY_DEADLINE = 30.0  # seconds a child may take to say R (liveness)
SILENCE_DEADLINE = 30.0  # seconds all children together may stay silent (liveness)
RUN_DEADLINE = 240.0  # the whole run (liveness; it takes about 20-40 s on 2 cores)


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    started: float
    ready: bool = False
    batches: int = 0
    done: bool = False
    buffer: bytes = b""
    lines: list[bytes] = field(default_factory=list)


def spawn(url: str, prefix: str, check: str, seed: int) -> Child:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, WORKER, url, prefix, check, str(BATCH), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    return Child(proc, time.monotonic())


def read_lines(child: Child) -> bool:
    """Move what the child wrote into child.lines (os.read on the raw fd: a buffered readline
    would hide lines from select). False at EOF."""
    assert child.proc.stdout is not None
    data = os.read(child.proc.stdout.fileno(), 65536)
    if not data:
        return False
    child.buffer += data
    *complete, child.buffer = child.buffer.split(b"\n")
    child.lines.extend(complete)
    return True


def reap(child: Child) -> tuple[int, str]:
    """Wait for a finished (or killed) child; its exit code and stderr."""
    try:
        _, err = child.proc.communicate(timeout=60)
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.communicate(timeout=60)
    return child.proc.returncode, err.decode(errors="replace")


def hash_counts(client: redis.Redis, key: str) -> Counter[str]:
    return Counter({k.decode(): int(v) for k, v in client.hgetall(key).items()})


def run(redis_url: str, rng: Any, *, messages: int, kills: int) -> None:
    tag = f"{rng.randrange(2**32):08x}"
    prefix, check = f"kill{tag}", f"check{tag}"
    backend, q = open_queue(redis_url, prefix)
    payloads = [b"%d" % i for i in range(messages)]
    for i in rng.sample(range(messages), POISONS):
        payloads[i] = POISON + b"-%d" % i
    ids: list[str] = []
    started = time.monotonic()
    for i in range(0, messages, 1000):
        ids.extend(q.put_many(payloads[i : i + 1000]))
    put_seconds = time.monotonic() - started
    q.close(drain=False)
    assert len(set(ids)) == messages
    poison_ids = {m for m, p in zip(ids, payloads, strict=True) if p.startswith(POISON)}

    points = sorted(rng.sample(range(messages * 5 // 100, messages * 85 // 100), kills))
    children = [spawn(redis_url, prefix, check, rng.randrange(2**32)) for _ in range(PROCESSES)]
    finished: list[Child] = []
    progress = 0  # deliveries handled, as the children reported them
    done_kills = 0
    started = time.monotonic()
    try:
        while children:
            assert time.monotonic() - started < RUN_DEADLINE, (
                f"run took over {RUN_DEADLINE} s: {progress} deliveries, {done_kills} kills {rng}"
            )
            for c in children:
                if not c.ready and time.monotonic() - c.started > READY_DEADLINE:
                    _, err = reap(c)
                    pytest.fail(f"child {c.proc.pid} not ready after {READY_DEADLINE} s: {err}")
            fds = {c.proc.stdout.fileno(): c for c in children}  # type: ignore[union-attr]
            ready, _, _ = select.select(list(fds), [], [], SILENCE_DEADLINE)
            if not ready:
                pytest.fail(f"no child said anything for {SILENCE_DEADLINE} s ({progress=}) {rng}")
            for fd in ready:
                c = fds[fd]
                alive = read_lines(c)
                for line in c.lines:
                    if line == b"R":
                        c.ready = True
                    elif line.startswith(b"B "):
                        c.batches += 1
                        progress += int(line[2:])
                    elif line == b"D":
                        c.done = True
                    else:
                        pytest.fail(f"child {c.proc.pid} said {line!r}")
                c.lines.clear()
                if not alive:  # EOF: it finished (or crashed)
                    code, err = reap(c)
                    assert code == 0, f"child {c.proc.pid} exited {code}: {err}"
                    assert c.done, f"child {c.proc.pid} exited without saying D: {err}"
                    children.remove(c)
                    finished.append(c)
            if done_kills < kills and progress >= points[done_kills]:
                victims = [c for c in children if c.ready and c.batches and not c.done]
                if victims:
                    victim = rng.choice(victims)
                    time.sleep(rng.uniform(0.0, 0.005))
                    victim.proc.send_signal(signal.SIGKILL)
                    code, err = reap(victim)
                    if code != -signal.SIGKILL:  # it finished just before the kill
                        assert code == 0, (code, err)
                    children.remove(victim)
                    done_kills += 1
                    children.append(spawn(redis_url, prefix, check, rng.randrange(2**32)))
    finally:
        for c in children:
            if c.proc.poll() is None:
                c.proc.kill()
            reap(c)
    elapsed = time.monotonic() - started
    assert done_kills == kills, (
        f"the queue drained after {done_kills} of {kills} kills: the workers are too fast for"
        f" the kill points; {rng}"
    )

    backend, q = open_queue(redis_url, prefix)
    try:
        remaining = len(q)
        dlq = q.dead_letter
        assert dlq is not None
        entries = dlq.list()
    finally:
        q.close(drain=False)
        backend.close()
    with redis.Redis.from_url(redis_url) as client:
        handled = hash_counts(client, f"{check}:handled")
        acked = hash_counts(client, f"{check}:acked")
        uncertain = hash_counts(client, f"{check}:uncertain")
    dead = Counter(e.message.id for e in entries)
    all_ids = set(ids)

    assert remaining == 0, f"{remaining} messages left in the queue after every child said D {rng}"
    assert set(handled) <= all_ids, "a message nobody put was delivered"
    assert set(dead) <= all_ids, "a message nobody put was dead-lettered"
    lost = all_ids - set(handled) - set(dead)
    assert not lost, (
        f"{len(lost)} messages lost (never handled, not dead): {sorted(lost)[:5]} {rng}"
    )
    twice = sorted(m for m, n in acked.items() if n > 1)
    assert not twice, f"{len(twice)} acks returned twice (an acked message came back): {twice[:5]}"
    both = set(acked) & set(dead)
    assert not both, f"{len(both)} messages both acked and dead-lettered: {sorted(both)[:5]}"
    unknown = all_ids - set(acked) - set(uncertain) - set(dead)  # handled, ack not recorded
    assert len(unknown) <= kills * BATCH, (len(unknown), rng)
    assert poison_ids <= set(dead), f"poison not in the DLQ: {poison_ids - set(dead)} {rng}"
    for e in entries:
        if e.message.id in poison_ids:
            assert e.attempts == MAX_DELIVERIES, e
            assert e.reason in ("rejected", "max_deliveries"), e
            # every hand-out is an attempt (one to a child killed before its record too)
            assert 1 <= handled[e.message.id] <= MAX_DELIVERIES, (e, handled[e.message.id])
    dup = {m: n for m, n in handled.items() if n > 1 and m not in poison_ids}
    other_dead = set(dead) - poison_ids
    print(
        f"\nredis kill -9: {messages} messages ({put_seconds:.1f} s to put), {PROCESSES}"
        f" processes, {kills} kills, {sum(handled.values())} deliveries, {len(dup)} messages"
        f" handled more than once ({sum(dup.values()) - len(dup)} extra deliveries),"
        f" {len(set(dead))} dead-lettered ({len(poison_ids)} poison, {len(other_dead)} others;"
        f" {len(entries)} DLQ entries), {len(set(uncertain))} in batches whose ack_many was"
        f" partly stale, {len(unknown)} acked without a record, {elapsed:.1f} s, {rng}"
    )


def test_sigkill_consumer_processes_lose_nothing(
    redis_url: str, rng: Any, stress_scale: float
) -> None:
    kills = max(1, int((200 if SOAK else 20) * stress_scale))
    messages = max(MESSAGES, kills * 1000) if SOAK else MESSAGES
    run(redis_url, rng, messages=messages, kills=kills)
