"""Durable Queue (path=): the journal contract of docs/queue.md "Durability" (R9, R11).

- reopen keeps every un-acked message (ready, delayed with its remaining wall-clock delay,
  nack delays, priorities, every Message field) and drops acked / purged ones;
- attempt counts survive; a delivery in flight at close(drain=False) or at a kill -9 is a
  failed attempt, so at max_deliveries the message reaches the DLQ during the reopen;
- the DLQ is durable with its context (reason, attempts, last_error), pop / purge too;
- the dedup window is rebuilt; put_many / get_many / ack_many are journalled; receipts from
  before a reopen are stale; delete(); the writer lock; sync modes; close(drain=True);
- a CRC-valid record holding a bad envelope (or an unknown op) is CorruptLogError at reopen;
- retention (LogEngine with small segments): settled segments go, an unsettled one stays.

Queue clocks are FakeClocks (leases); delays are journalled as wall-clock ready times, so
delay checks use large delays and a wide margin. Random inputs come from the ``rng`` fixture.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import fastq
from fastq import Closed, Empty, FakeClock, InvalidReceipt, Message, Queue
from fastq.backends import LogEngine

SRC = str(Path(fastq.__file__).resolve().parent.parent)


def open_q(path: Path, clock: FakeClock | None = None, **kw: Any) -> Queue:
    kw.setdefault("priority_aging", None)
    return Queue("q", path=str(path), clock=clock if clock is not None else FakeClock(), **kw)


def ids_of(q: Queue) -> list[str]:
    """Drain what is ready (timeout=0), without settling; returns the ids in order."""
    out = []
    while True:
        try:
            out.append(q.get(timeout=0).message.id)
        except Empty:
            return out


# ---- what survives a reopen ------------------------------------------------------------------


def test_reopen_keeps_unacked_drops_acked_and_purged(tmp_path: Path, rng: Any) -> None:
    q = open_q(tmp_path, maxsize=None)
    ids = [q.put(rng.randbytes(rng.randrange(64))) for _ in range(40)]
    ds = q.get_many(20, timeout=0)
    acked = {d.message.id for d in ds[::2]}
    for d in ds[::2]:
        d.ack()
    q.close(drain=False)

    q = open_q(tmp_path, maxsize=None)
    s = q.statistics()
    assert (s.ready, s.delayed, s.in_flight) == (40 - len(acked), 0, 0), rng
    assert len(q) == 40 - len(acked)
    got = ids_of(q)
    assert set(got) == set(ids) - acked, rng
    assert not set(got) & acked
    # purge is settlement too: what was ready is gone for good
    q.close(drain=False)
    q = open_q(tmp_path, maxsize=None)
    assert q.purge() == 40 - len(acked)
    q.close(drain=False)
    q = open_q(tmp_path, maxsize=None)
    assert len(q) == 0
    with pytest.raises(Empty):
        q.get(timeout=0)
    q.close(drain=False)


def test_reopen_keeps_every_message_field_and_payload_type(tmp_path: Path) -> None:
    deadline = time.time() + 3600
    m = Message(
        {"a": [1, 2.5, "x"]},
        key="user-7",
        type="resize",
        priority="high",
        headers={"h": "v", "n": "2"},
        idempotency_key="idem-1",
        deadline=deadline,
        source="svc",
        trace_id="trace-9",
    )
    payloads: list[Any] = [b"\x00bytes", "str \u00e9", 12345, None, [1, {"k": True}]]
    with open_q(tmp_path) as q:
        q.put(m)
        others = [q.put(p) for p in payloads]
    with open_q(tmp_path) as q:
        d = q.get(timeout=0)  # high first
        got = d.message
        assert got == m
        assert (got.id, got.key, got.type, got.priority) == (m.id, "user-7", "resize", "high")
        assert got.headers == {"h": "v", "n": "2"}
        assert (got.idempotency_key, got.source, got.trace_id) == ("idem-1", "svc", "trace-9")
        assert got.deadline == m.deadline
        assert got.timestamp == m.timestamp
        assert got.payload == {"a": [1, 2.5, "x"]}
        rest = [q.get(timeout=0).message for _ in payloads]
        assert [r.id for r in rest] == others
        assert [r.payload for r in rest] == payloads
        assert d.attempt == 1


def test_reopen_keeps_priorities_and_fifo(tmp_path: Path, rng: Any) -> None:
    prios = ["critical", "high", "normal", "low"]
    want: dict[str, list[str]] = {p: [] for p in prios}
    with open_q(tmp_path, maxsize=None) as q:
        for i in range(60):
            p = rng.choice(prios)
            want[p].append(q.put(i, priority=p))
    with open_q(tmp_path, maxsize=None) as q:
        assert ids_of(q) == [mid for p in prios for mid in want[p]], rng


def test_delays_keep_their_wall_clock_ready_time(tmp_path: Path) -> None:
    with open_q(tmp_path) as q:
        late = q.put(b"late", delay=1000.0)
        q.put(b"now")
        d = q.get(timeout=0)
        d.nack(delay=2000.0)  # visible again ~2000 s from now (wall clock)
    clock = FakeClock(0.0)
    with open_q(tmp_path, clock) as q:
        s = q.statistics()
        assert (s.ready, s.delayed, s.in_flight) == (0, 2, 0)
        clock.advance(990.0)  # the reopen took far less than 10 s
        with pytest.raises(Empty):
            q.get(timeout=0)
        clock.advance(20.0)
        d = q.get(timeout=0)
        assert d.message.id == late
        assert d.attempt == 1
        d.ack()
        with pytest.raises(Empty):
            q.get(timeout=0)
        clock.advance(1000.0)
        d = q.get(timeout=0)
        assert d.message.payload == b"now"
        assert d.attempt == 2


# ---- attempts, in-flight deliveries and the DLQ ------------------------------------------------


def test_attempts_survive_reopen(tmp_path: Path) -> None:
    with open_q(tmp_path, max_deliveries=5) as q:
        mid = q.put(b"x")
        for attempt in (1, 2):
            d = q.get(timeout=0)
            assert d.attempt == attempt
            d.nack(error=f"fail {attempt}")
    with open_q(tmp_path, max_deliveries=5) as q:
        d = q.get(timeout=0)
        assert d.message.id == mid
        assert d.attempt == 3
        d.ack()
    with open_q(tmp_path, max_deliveries=5) as q:
        assert len(q) == 0


def test_in_flight_at_close_is_a_failed_attempt_then_dlq(tmp_path: Path) -> None:
    with open_q(tmp_path, max_deliveries=3) as q:
        mid = q.put(b"poison")
        d = q.get(timeout=0)
        d.nack(error=ValueError("bad input"))
        assert q.get(timeout=0).attempt == 2  # in flight when the queue closes
    with open_q(tmp_path, max_deliveries=3) as q:
        d = q.get(timeout=0)
        assert d.attempt == 3  # the delivery lost at close counted
        receipt = d.receipt
    assert q.dead_letter is not None
    with pytest.raises(InvalidReceipt):
        q.ack(receipt)  # closed: every receipt went stale
    with open_q(tmp_path, max_deliveries=3) as q:
        assert len(q) == 0
        assert q.statistics().dead_lettered == 1
        dlq = q.dead_letter
        assert dlq is not None
        [e] = dlq.list()
        assert e.message.id == mid
        assert e.message.payload == b"poison"
        assert (e.reason, e.queue, e.attempts) == ("max_deliveries", "q", 3)
        assert e.last_error == "ValueError: bad input"
        with pytest.raises(Empty):
            q.get(timeout=0)
    # the DLQ entry is durable; the message is not delivered again
    with open_q(tmp_path, max_deliveries=3) as q:
        assert q.statistics().dead_lettered == 0  # per process
        dlq = q.dead_letter
        assert dlq is not None
        [e2] = dlq.list()
        assert e2 == e
        assert len(q) == 0


def test_in_flight_at_kill_9_is_a_failed_attempt(tmp_path: Path) -> None:
    """C1 for real: a child gets (attempt 2 of 2) and SIGKILLs itself mid-lease."""
    with open_q(tmp_path, max_deliveries=2) as q:
        dead_id = q.put(b"dies")
        alive_id = q.put(b"lives", priority="low")
        q.get(timeout=0).nack(error="first")
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {SRC!r})
        import fastq
        q = fastq.Queue("q", path={str(tmp_path)!r}, max_deliveries=2, priority_aging=None)
        a = q.get(timeout=0)
        b = q.get(timeout=0)
        assert (a.message.payload, a.attempt) == (b"dies", 2), a
        assert (b.message.payload, b.attempt) == (b"lives", 1), b
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    with open_q(tmp_path, max_deliveries=2) as q:
        d = q.get(timeout=0)
        assert (d.message.id, d.attempt) == (alive_id, 2)
        dlq = q.dead_letter
        assert dlq is not None
        [e] = dlq.list()
        assert (e.message.id, e.reason, e.attempts, e.last_error) == (
            dead_id,
            "max_deliveries",
            2,
            "first",
        )


def test_rejected_on_last_nack_durable_with_error(tmp_path: Path) -> None:
    with open_q(tmp_path, max_deliveries=1) as q:
        mid = q.put(b"x")
        q.get(timeout=0).nack(error=KeyError("k"))
        dlq = q.dead_letter
        assert dlq is not None
        assert len(dlq) == 1
    with open_q(tmp_path, max_deliveries=1) as q:
        dlq = q.dead_letter
        assert dlq is not None
        [e] = dlq.list()
        assert (e.message.id, e.reason, e.attempts) == (mid, "rejected", 1)
        assert e.last_error is not None
        assert e.last_error.startswith("KeyError")
        assert len(q) == 0


def test_dlq_pop_and_purge_are_durable(tmp_path: Path) -> None:
    with open_q(tmp_path, max_deliveries=1) as q:
        ids = [q.put(i) for i in range(5)]
        for _ in range(5):
            q.get(timeout=0).nack()
        dlq = q.dead_letter
        assert dlq is not None
        assert [e.message.id for e in dlq.list()] == ids
    with open_q(tmp_path, max_deliveries=1) as q:
        dlq = q.dead_letter
        assert dlq is not None
        first = dlq.pop()
        assert first is not None
        assert first.message.id == ids[0]
    with open_q(tmp_path, max_deliveries=1) as q:
        dlq = q.dead_letter
        assert dlq is not None
        assert [e.message.id for e in dlq.list()] == ids[1:]
        assert dlq.purge() == 4
    with open_q(tmp_path, max_deliveries=1) as q:
        dlq = q.dead_letter
        assert dlq is not None
        assert dlq.list() == []


def test_expired_lease_at_max_reaches_dlq_across_reopen(tmp_path: Path) -> None:
    clock = FakeClock()
    with open_q(tmp_path, clock, max_deliveries=2, visibility_timeout=1.0) as q:
        mid = q.put(b"x")
        q.get(timeout=0)
        clock.advance(1.0)  # lease runs out: attempt 1 failed
        assert q.get(timeout=0).attempt == 2
        clock.advance(1.0)  # attempt 2 failed too
        s = q.statistics()  # brings the queue up to now: the message goes to the DLQ
        assert s.dead_lettered == 1
    with open_q(tmp_path, max_deliveries=2) as q:
        assert len(q) == 0
        dlq = q.dead_letter
        assert dlq is not None
        assert [(e.message.id, e.reason, e.attempts) for e in dlq.list()] == [
            (mid, "max_deliveries", 2)
        ]


def test_message_dead_lettered_in_memory_survives_retention_at_close(tmp_path: Path) -> None:
    """BUG (reported): a message whose last attempt failed in memory (here extend(0), the same
    with a lease running out) is "dead pending" until the next get/nack/statistics moves it to
    the DLQ. close() runs a retention pass first, and LogEngine._retain keeps only segments at
    or after the lowest *held* message, so the pending dead message's put record is deleted:
    after the reopen it is neither in the queue nor in the DLQ (lost; the contract says at
    least once into the DLQ). 70 MiB of payload makes the default 64 MiB segment roll."""
    with open_q(tmp_path, max_deliveries=1, visibility_timeout=30.0, maxsize=None) as q:
        mid = q.put(b"poison")
        d0 = q.get(timeout=0)
        q.put_many([b"x" * (1 << 20)] * 70)
        ds = q.get_many(100, timeout=0)
        d0.extend(0)  # gives the last attempt up: a failure at max_deliveries
        q.ack_many(ds)
    with open_q(tmp_path, max_deliveries=1) as q:
        dlq = q.dead_letter
        assert dlq is not None
        where = [e.message.id for e in dlq.list()] + ids_of(q)
        assert mid in where, "the dead-lettered message vanished (neither DLQ nor queue)"


# ---- dedup, batches, receipts ------------------------------------------------------------------


def test_dedup_window_rebuilt_after_reopen(tmp_path: Path) -> None:
    with open_q(tmp_path, dedup_window=3600.0) as q:
        first = q.put(b"a", idempotency_key="order-1")
        other = q.put(b"b", idempotency_key="order-2")
        q.get(timeout=0).ack()  # acked: the key stays taken for the window
    with open_q(tmp_path, dedup_window=3600.0) as q:
        assert q.put(b"again", idempotency_key="order-1") == first
        assert q.put(b"again", idempotency_key="order-2") == other
        assert q.statistics().deduplicated_total == 2
        assert len(q) == 1
        new = q.put(b"c", idempotency_key="order-3")
        assert new not in (first, other)
        assert len(q) == 2
    with open_q(tmp_path, dedup_window=3600.0) as q:
        assert q.put(b"x", idempotency_key="order-3") == new


def test_batches_are_durable(tmp_path: Path, rng: Any) -> None:
    n = rng.randrange(20, 60)
    with open_q(tmp_path, maxsize=None) as q:
        ids = q.put_many([rng.randbytes(8) for _ in range(n)])
        ds = q.get_many(n // 2, timeout=0)
        acked = ds[: len(ds) // 2]
        q.ack_many(acked)
        held = {d.message.id for d in ds[len(ds) // 2 :]}
    with open_q(tmp_path, maxsize=None) as q:
        ds2 = q.get_many(n, timeout=0)
        got = {d.message.id: d.attempt for d in ds2}
        assert set(got) == set(ids) - {d.message.id for d in acked}, rng
        assert {m for m, a in got.items() if a == 2} == held
        assert all(a == 1 for m, a in got.items() if m not in held)
        q.ack_many(ds2)
    with open_q(tmp_path, maxsize=None) as q:
        assert len(q) == 0


def test_receipts_from_before_a_reopen_are_stale(tmp_path: Path) -> None:
    q = open_q(tmp_path)
    q.put_many([1, 2, 3])
    old = [q.get(timeout=0) for _ in range(3)]
    q.close(drain=False)
    for d in old:
        with pytest.raises(InvalidReceipt):
            d.ack()
    q = open_q(tmp_path)
    fresh = q.get_many(3, timeout=0)
    for d in old:
        for op in (q.ack, q.nack, lambda r: q.extend(r, 1.0)):
            with pytest.raises(InvalidReceipt):
                op(d.receipt)
    with pytest.raises(InvalidReceipt):
        q.ack_many([d.receipt for d in old])
    assert q.statistics().in_flight == 3  # the stale receipts touched nothing
    q.ack_many(fresh)
    assert len(q) == 0
    q.close(drain=False)


# ---- lifecycle -------------------------------------------------------------------------------


def test_delete_removes_both_directories(tmp_path: Path) -> None:
    q = open_q(tmp_path, max_deliveries=1)
    q.put(b"a")
    q.get(timeout=0).nack()
    q.put(b"b")
    assert (tmp_path / "q").is_dir()
    assert (tmp_path / "q.dlq").is_dir()
    q.delete()
    assert not (tmp_path / "q").exists()
    assert not (tmp_path / "q.dlq").exists()
    with pytest.raises(Closed):
        q.put(b"c")
    with open_q(tmp_path) as q2:
        assert len(q2) == 0
        assert q2.dead_letter is not None
        assert len(q2.dead_letter) == 0


def test_second_open_raises_log_locked(tmp_path: Path) -> None:
    q = open_q(tmp_path)
    q.put(b"a")
    with pytest.raises(fastq.LogLockedError):
        open_q(tmp_path)
    assert q.get(timeout=0).message.payload == b"a"  # the first one is unharmed
    q.close(drain=False)
    with open_q(tmp_path) as q2:
        assert q2.get(timeout=0).attempt == 2


def test_failed_construction_releases_the_lock(tmp_path: Path) -> None:
    """BUG (reported): Queue.__init__ opens the log and the DLQ before validating
    dedup_window / dead_letter; when that validation raises, the half-built queue keeps the
    writer locks for as long as the exception (its traceback) is alive, so a corrected
    reopen right after raises LogLockedError."""
    with pytest.raises(ValueError, match="dedup_window") as excinfo:
        open_q(tmp_path, dedup_window=0)
    with open_q(tmp_path) as q:  # must not raise LogLockedError
        assert len(q) == 0
    assert excinfo.value is not None


@pytest.mark.parametrize("sync", ["always", "interval:5"])
def test_sync_modes_round_trip(tmp_path: Path, sync: str) -> None:
    with open_q(tmp_path, sync=sync, max_deliveries=2) as q:
        ids = q.put_many(list(range(10)))
        ds = q.get_many(4, timeout=0)
        ds[0].ack()
        ds[1].nack(error="e")  # ds[2], ds[3] stay in flight: failed attempts at close
    with open_q(tmp_path, sync=sync, max_deliveries=2) as q:
        got = {d.message.id: d.attempt for d in q.get_many(20, timeout=0)}
        assert got == {mid: 2 if i <= 3 else 1 for i, mid in enumerate(ids) if i}


def test_close_drain_then_closed_then_reopen_empty(tmp_path: Path) -> None:
    q = open_q(tmp_path)
    q.put_many([1, 2])
    q.close()
    with pytest.raises(Closed):
        q.put(3)
    a = q.get(timeout=0)
    q.get(timeout=0).ack()
    a.ack()
    with pytest.raises(Closed):
        q.get(timeout=0)
    # drained: the journal is closed, the directory is free
    with open_q(tmp_path) as q2:
        assert len(q2) == 0


# ---- corruption ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"P", b"garbage"),  # a put record whose envelope does not decode
        (b"P", b""),
        (b"Z", b"\x00" * 8),  # an op the journal does not know
    ],
)
def test_bad_record_inside_a_valid_crc_is_corrupt_log_error(
    tmp_path: Path, key: bytes, value: bytes
) -> None:
    with open_q(tmp_path) as q:
        q.put(b"fine")
    with fastq.SegmentLog(str(tmp_path / "q")) as log:
        log.append(value, key=key)
    with pytest.raises(fastq.CorruptLogError):
        open_q(tmp_path)


# ---- retention (LogEngine, small segments) -----------------------------------------------------

SEG = 16384  # the SegmentLog minimum


class Journalled:
    """A LogEngine after recovery: its native engine (which journals) plus close()."""

    def __init__(self, log_engine: LogEngine) -> None:
        self.log_engine = log_engine
        self.q = log_engine.engine

    def offer(self, m: Message) -> bool:
        return self.q.offer(m)

    def offer_many(self, ms: list[Message]) -> int:
        return self.q.offer_many(ms)

    def poll(self) -> Any:
        return self.q.poll()

    def poll_many(self, n: int) -> Any:
        return self.q.poll_many(n)

    def ack(self, r: int) -> None:
        self.q.ack(r)

    def ack_many(self, rs: Any) -> None:
        self.q.ack_many(rs)

    def __len__(self) -> int:
        return len(self.q)

    def close(self) -> None:
        self.log_engine.close()


def engine(directory: Path, clock: FakeClock) -> Journalled:
    e = LogEngine(
        str(directory),
        sync="none",
        segment_bytes=SEG,
        maxsize=None,
        visibility_timeout=10.0,
        max_deliveries=3,
        clock=clock,
        owner=None,
    )
    e.recover()
    return Journalled(e)


def segment_files(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".log"))


def test_retention_drops_settled_segments_keeps_unsettled(tmp_path: Path) -> None:
    clock = FakeClock()
    d = tmp_path / "log"
    e = engine(d, clock)
    assert e.offer(Message(b"keep", id="keep"))
    keep = e.poll()
    assert keep is not None
    for _ in range(400):
        assert e.offer(Message(b"y" * 100))
    ds = e.poll_many(1000)
    e.ack_many(ds)
    assert len(segment_files(d)) > 3
    e.close()
    assert len(segment_files(d)) > 3  # "keep" is unsettled: its segment and later stay
    e = engine(d, clock)
    [again] = e.poll_many(10)
    assert (again.message.id, again.attempt) == ("keep", 2)
    e.ack(again.receipt)
    e.close()
    assert len(segment_files(d)) == 1  # all settled: only the active segment is left
    e = engine(d, clock)
    assert len(e) == 0
    e.close()


def test_retention_runs_while_open_every_4096_settlements(tmp_path: Path) -> None:
    clock = FakeClock()
    d = tmp_path / "log"
    e = engine(d, clock)
    for _ in range(5):
        e.offer_many([Message(i) for i in range(1000)])
        e.ack_many(e.poll_many(1000))
    assert len(segment_files(d)) <= 3, segment_files(d)
    assert len(e) == 0
    e.close()


# ---- payload codecs ----------------------------------------------------------------------------


def test_codec_carries_payloads_json_cannot(tmp_path: Path) -> None:
    """codec= encodes what is not bytes or str in the journal and the dead-letter queue: here
    pickle, which keeps bytes inside a payload (JSON refuses them) and any object, and is read
    back because this queue passed it (a reader without it gets CodecError). Pickle, not
    MessagePack, so that this also runs where msgspec is not installed (the 3.13t stage)."""
    payload = {"raw": b"\x00\x01", "n": (1, 2.5)}
    q = open_q(tmp_path, codec=fastq.codecs.PICKLE, max_deliveries=1)
    q.put(payload, id="mp")
    q.put({"n": 2}, id="kept")
    first = q.get(timeout=0)
    assert first.message.id == "mp"
    first.nack(error="boom")  # the last attempt: into the durable DLQ, pickled inside
    q.close(drain=False)
    q = open_q(tmp_path, codec=fastq.codecs.PICKLE, max_deliveries=1)
    d = q.get(timeout=0)
    assert (d.message.id, d.message.payload) == ("kept", {"n": 2})
    [dead] = q.dead_letter.list()
    assert (dead.message.id, dead.message.payload, dead.last_error) == ("mp", payload, "boom")
    q.close(drain=False)

    pq = tmp_path / "pickled"
    q = open_q(pq, codec=fastq.codecs.PICKLE)
    q.put(frozenset({1, 2}), id="p")
    q.close(drain=False)
    with pytest.raises(fastq.CodecError):
        open_q(pq)  # no pickle unless asked for
    q = open_q(pq, codec=fastq.codecs.PICKLE)
    assert q.get(timeout=0).message.payload == frozenset({1, 2})
    q.close(drain=False)


def test_codec_must_be_a_codec(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="codec"):
        open_q(tmp_path, codec="msgpack")
