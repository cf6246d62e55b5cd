"""Issue 8: Redis restarted mid-run (``appendonly yes``, ``appendfsync always``) under a producer
thread and 2 consumer threads; nothing acknowledged is lost and everyone recovers by itself.

A dedicated RedisServer (not the session one: this test stops it) serves one Queue object
shared by the threads (one backend, ``timeout`` 30 s: longer than any outage here, so the
backend must ride it out by reconnecting). The producer puts numbered payloads (``put`` and
``put_many`` in turn), at most ``BACKLOG`` ahead of the acks; the consumers ``get_many``,
record each delivery, then ``ack_many``. An operation that raises a :class:`fastq.BackendError`
(or InvalidReceipt for an ack whose lease ran out) is counted and retried on the SAME objects:
no reconnect by hand, no new Queue. Any other exception fails the test (a raw redis-py error
leaking out, for one).

Once work flows the server goes down 6 times (3 rounds, scaled by FASTQ_STRESS_SCALE and
FASTQ_SOAK): a clean ``restart()`` (SIGTERM), then ``restart(kill=True)`` (SIGKILL, as a
crash: appendfsync always keeps what was acknowledged), in turn. After each, the producer and
both consumers must complete new operations within ``RECOVER_DEADLINE`` seconds of the server
answering again. Then the producer stops and the consumers drain the queue. Checks, per stream
entry (a put retried by the backend after its write had landed stores the message twice: two
entries, a duplicate, counted):

* every payload whose put returned (an id) was handled, or is in the DLQ: nothing acked lost;
* a payload whose put raised may be there or not (at-least-once: counted, not an error);
* no entry is handled again after an ack of it returned (an ack that returned is durable:
  appendfsync always), and no ack returns twice for one entry; an ack that raised may be
  redelivered: that is a duplicate, counted;
* the queue is empty at the end.

Sequencing uses one Condition over the shared counters (no sleeps); all waits are liveness
bounds. The counts (puts, errors per kind, duplicates) are printed.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis_server import RedisServer

import fastq
from fastq.backends import RedisStreams

SOAK = os.environ.get("FASTQ_SOAK") == "1"
CONSUMERS = 2
BATCH = 50
BACKLOG = 2_000  # the producer stays at most this far ahead of the acks
VISIBILITY_TIMEOUT = 2.0
MAX_DELIVERIES = 50  # outages alone never dead-letter a message
WARMUP = 1_000  # acks before the first outage
AFTER = 300  # puts and acks each phase needs after an outage
RECOVER_DEADLINE = 30.0  # seconds after the server answers (liveness)
DRAIN_DEADLINE = 120.0
BACKEND_TIMEOUT = 30.0


@dataclass
class State:
    cond: threading.Condition = field(default_factory=threading.Condition)
    seq: int = 0  # a global order of events
    puts: int = 0  # puts that returned
    acks: int = 0  # acks that returned (messages)
    consumer_ops: list[int] = field(default_factory=lambda: [0] * CONSUMERS)  # ack_many returned
    put_ok: dict[bytes, str] = field(default_factory=dict)  # payload -> id
    put_failed: set[bytes] = field(default_factory=set)  # payloads whose put raised
    # keyed by (message id, stream entry id): a put retried across a dropped connection may
    # store one message twice (two entries, at-least-once); each entry is checked on its own
    handled: dict[tuple[str, bytes], list[int]] = field(default_factory=dict)  # delivery seqs
    acked: dict[tuple[str, bytes], list[int]] = field(default_factory=dict)  # ack-returned seqs
    payload_of: dict[str, bytes] = field(default_factory=dict)
    ack_raised: set[tuple[str, bytes]] = field(default_factory=set)  # in an ack_many that raised
    errors: Counter[str] = field(default_factory=Counter)
    failures: list[BaseException] = field(default_factory=list)
    stop_producing: bool = False
    stop_consuming: bool = False
    abort: bool = False  # the test is over (maybe failed): every thread returns at once

    def tick(self) -> int:
        self.seq += 1
        return self.seq

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate() or bool(self.failures), timeout)
        if self.failures:
            raise self.failures[0]
        assert ok, f"{what}: not within {timeout} s (puts={self.puts} acks={self.acks})"


def guarded(state: State, name: str, body: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            body()
        except BaseException as exc:
            with state.cond:  # the main thread re-raises it (no unhandled-thread warning)
                state.failures.append(exc)
                state.cond.notify_all()

    return run


def transient(state: State, where: str, exc: Exception) -> None:
    """Count an error the backend may raise during an outage; anything else fails the test."""
    if not isinstance(exc, (fastq.BackendError, fastq.InvalidReceipt)):
        raise AssertionError(
            f"{where}: {type(exc).__module__}.{type(exc).__name__} escaped (expected fastq errors"
            f" only): {exc}"
        ) from exc
    with state.cond:
        state.errors[f"{where}: {type(exc).__name__}"] += 1


def producer(q: fastq.Queue, state: State) -> None:
    n = 0
    while True:
        with state.cond:
            state.cond.wait_for(
                lambda: state.stop_producing or state.puts - state.acks < BACKLOG, timeout=60
            )
            if state.stop_producing or state.abort:
                return
        count = 1 if n % 2 == 0 else 20
        payloads = [b"m%d" % (n + i) for i in range(count)]
        n += count
        try:
            ids = [q.put(payloads[0])] if count == 1 else q.put_many(payloads)
        except Exception as exc:
            transient(state, "put", exc)
            with state.cond:
                state.put_failed.update(payloads)
            continue
        assert len(ids) == count
        with state.cond:
            for p, mid in zip(payloads, ids, strict=True):
                state.put_ok[p] = mid
            state.puts += count
            state.cond.notify_all()


def entry_of(q: fastq.Queue, d: fastq.Delivery) -> tuple[str, bytes]:
    """(message id, stream entry id) of a delivery. White-box: the entry id is only in the
    Redis engine's table of held leases; the test fails loudly if that moves."""
    held = q._engine._held[d.receipt]  # type: ignore[attr-defined]
    assert isinstance(held.id, bytes), held.id
    return d.message.id, held.id


def consumer(q: fastq.Queue, state: State, index: int) -> None:
    while not state.abort:
        try:
            got = q.get_many(BATCH, timeout=0.2)
        except fastq.Empty:
            got = []
        except Exception as exc:
            transient(state, "get", exc)
            continue
        if not got:
            with state.cond:
                if not state.stop_consuming:
                    continue
            try:
                if len(q) == 0:
                    return
            except Exception as exc:
                transient(state, "len", exc)
            continue
        entries = [entry_of(q, d) for d in got]
        with state.cond:
            for d, entry in zip(got, entries, strict=True):
                state.handled.setdefault(entry, []).append(state.tick())
                state.payload_of[d.message.id] = d.message.payload
        try:
            q.ack_many(got)
        except Exception as exc:
            transient(state, "ack", exc)
            with state.cond:
                state.ack_raised.update(entries)
            continue  # not said which were acked: any of them may come back (a duplicate)
        with state.cond:
            for entry in entries:
                state.acked.setdefault(entry, []).append(state.tick())
            state.acks += len(got)
            state.consumer_ops[index] += 1
            state.cond.notify_all()


@pytest.fixture
def server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A server of this test's own (it is restarted), appendonly yes, appendfsync always."""
    srv = redis_server_factory(appendonly=True, appendfsync="always")
    with srv.client() as client:
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "always"
    return srv


def outage(server: RedisServer, how: str) -> None:
    server.restart(kill=how == "kill")


def describe(server: RedisServer, q: fastq.Queue) -> str:
    """What the server holds (for a failure message): len(q), and per key its type and size,
    the streams' pending entries and group, the meta hash."""
    out = []
    try:
        out.append(f"len(q)={len(q)}")
    except Exception as exc:
        out.append(f"len(q) raised {exc!r}")
    with server.client() as c:
        for key in sorted(c.scan_iter(count=1000)):
            kind = c.type(key).decode()
            if kind == "stream":
                groups = c.xinfo_groups(key)
                pending = [c.xpending(key, g["name"]) for g in groups]
                out.append(f"{key.decode()}: stream xlen={c.xlen(key)} groups={groups} {pending}")
            elif kind == "hash":
                out.append(f"{key.decode()}: {c.hgetall(key)}")
            elif kind == "zset":
                out.append(f"{key.decode()}: zset {c.zcard(key)}")
            else:
                out.append(f"{key.decode()}: {kind}")
    return "\n".join(out)


def check_recovery(state: State, how: str) -> float:
    """Wait until the producer and every consumer completed new work after the outage."""
    started = time.monotonic()
    with state.cond:
        puts, acks, ops = state.puts, state.acks, list(state.consumer_ops)
    state.wait(lambda: state.puts >= puts + AFTER, RECOVER_DEADLINE, f"producer after {how}")
    state.wait(lambda: state.acks >= acks + AFTER, RECOVER_DEADLINE, f"consumers after {how}")
    for i in range(CONSUMERS):
        state.wait(
            lambda i=i: state.consumer_ops[i] > ops[i],  # type: ignore[misc]
            RECOVER_DEADLINE,
            f"consumer {i} after {how}",
        )
    return time.monotonic() - started


def test_redis_restart_loses_nothing_acknowledged(
    server: RedisServer, rng: Any, stress_scale: float
) -> None:
    rounds = max(1, int((20 if SOAK else 3) * stress_scale))
    backend = RedisStreams(
        server.url, prefix=f"restart{rng.randrange(2**32):08x}", timeout=BACKEND_TIMEOUT
    )
    q = fastq.Queue(
        "jobs",
        backend=backend,
        visibility_timeout=VISIBILITY_TIMEOUT,
        max_deliveries=MAX_DELIVERIES,
        maxsize=None,
    )
    state = State()
    threads = [
        threading.Thread(target=guarded(state, "producer", lambda: producer(q, state)), daemon=True)
    ]
    threads += [
        threading.Thread(
            target=guarded(state, f"consumer{i}", lambda i=i: consumer(q, state, i)), daemon=True
        )
        for i in range(CONSUMERS)
    ]
    started = time.monotonic()
    recoveries: dict[str, float] = {}  # the slowest recovery of each kind
    try:
        for t in threads:
            t.start()
        state.wait(lambda: state.acks >= WARMUP, RECOVER_DEADLINE, "warm-up")
        for how in ("restart", "kill") * rounds:
            outage(server, how)
            took = check_recovery(state, how)
            recoveries[how] = max(recoveries.get(how, 0.0), took)
        with state.cond:
            state.stop_producing = True
            state.cond.notify_all()
        threads[0].join(timeout=RECOVER_DEADLINE)
        assert not threads[0].is_alive(), "the producer did not stop"
        with state.cond:
            state.stop_consuming = True
            state.cond.notify_all()
        for t in threads[1:]:
            t.join(timeout=DRAIN_DEADLINE)
            if t.is_alive():
                pytest.fail(
                    f"a consumer did not drain within {DRAIN_DEADLINE} s: {describe(server, q)}"
                    f" {rng}"
                )
        if state.failures:
            raise state.failures[0]
        remaining = len(q)
        dlq = q.dead_letter
        assert dlq is not None
        entries = dlq.list()
    finally:
        with state.cond:
            state.abort = True
            state.cond.notify_all()
        for t in threads:  # at most one backend call each: BACKEND_TIMEOUT
            t.join(timeout=BACKEND_TIMEOUT + RECOVER_DEADLINE)
        q.close(drain=False)
        backend.close()
    elapsed = time.monotonic() - started

    assert remaining == 0, f"{remaining} messages left in the queue"
    dead = {e.message.id for e in entries}
    dead_payloads = {e.message.payload for e in entries}
    handled_payloads = set(state.payload_of.values())
    lost = [p for p in state.put_ok if p not in handled_payloads and p not in dead_payloads]
    assert not lost, f"{len(lost)} acknowledged puts lost, e.g. {lost[:5]} {rng}"
    handled_ids = {mid for mid, _ in state.handled}
    for p, mid in state.put_ok.items():
        assert mid in handled_ids or mid in dead, (p, mid, "handled under another id?")
    stray = handled_payloads - set(state.put_ok) - state.put_failed
    assert not stray, f"delivered payloads nobody put: {sorted(stray)[:5]}"
    twice = [e for e, seqs in state.acked.items() if len(seqs) > 1]
    assert not twice, f"{len(twice)} stream entries whose ack returned twice: {twice[:5]}"
    back = [e for e, seqs in state.acked.items() if any(s > seqs[0] for s in state.handled[e])]
    assert not back, f"{len(back)} entries delivered again after their ack returned: {back[:5]}"
    per_message = Counter(mid for mid, _ in state.handled)
    stored_twice = sum(1 for n in per_message.values() if n > 1)  # put retried: 2 entries
    dup = sum(1 for seqs in state.handled.values() if len(seqs) > 1)  # one entry redelivered
    came_back = sum(1 for e in state.ack_raised if len(state.handled[e]) > 1)
    maybe = len(state.put_failed)
    landed = len(state.put_failed & handled_payloads)
    print(
        f"\nredis restart: {len(state.put_ok)} puts returned, {maybe} raised ({landed} of those"
        f" landed anyway), {stored_twice} stored twice (a put retried after its write landed),"
        f" {sum(len(s) for s in state.handled.values())} deliveries, {dup} entries"
        f" handled more than once, {len(dead)} dead-lettered, errors {dict(state.errors)}"
        f" ({len(state.ack_raised)} entries in acks that raised, {came_back} of them came back),"
        f" {rounds} x (restart, kill), slowest recovery"
        f" {', '.join(f'{k} {v:.1f} s' for k, v in recoveries.items())},"
        f" {elapsed:.1f} s, {rng}"
    )
