"""Dead-letter tooling (unit): DeadLetter's failure view, and DeadLetterQueue's list(where=),
groups(), show(), replay() and discard(), in memory and durable (path=).

- DeadLetter: id, failure (decoded from last_error), error_type / error_message / traceback /
  consumer / fingerprint, for structured failures, plain "Type: message" errors and none;
- list(limit, where=), groups() (by fingerprint, largest first, bounded ids), show(id);
- replay / discard: dry runs change nothing; selectors (ids, where, group) combine with AND;
  replayed entries leave the DLQ only once their put returned (a failing put keeps the entry
  and reports it); headers record the replay; attempts start again in the source queue;
  rate= paces with a TokenBucket; bad selectors and arguments raise at the call;
- durable: removals at any position survive a reopen (tombstones), the committed position
  advances when the oldest entries go, pop/purge/maxsize still work alongside;
- concurrent add during replay, concurrent discards never handle an entry twice.

Random choices come from the seeded ``rng`` fixture (asserts print it: FASTQ_SEED replays).
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from threads import LIVENESS

from fastq import (
    DeadLetter,
    DeadLetterQueue,
    Empty,
    FakeClock,
    Message,
    Queue,
    SegmentLog,
    Topic,
)
from fastq.semantics import dlq as dlq_mod
from fastq.semantics.dlq import DeadLetterGroup, ReplayReport
from fastq.semantics.failure import Failure, fingerprint_text


def boom(kind: type[Exception] = ValueError, text: str = "boom", **kw: Any) -> Failure:
    try:
        raise kind(text)
    except Exception as exc:
        return Failure.from_exception(exc, **kw)


def boom_elsewhere(text: str = "boom") -> Failure:
    try:
        raise ValueError(text)
    except Exception as exc:
        return Failure.from_exception(exc)


def entry(
    payload: Any = b"p",
    *,
    error: str | None = None,
    reason: str = "rejected",
    queue: str = "src",
    at: float = 1000.0,
    attempts: int = 3,
    **fields: Any,
) -> DeadLetter:
    return DeadLetter(
        message=Message(payload, **fields),
        reason=reason,
        queue=queue,
        attempts=attempts,
        first_delivery=at - 10,
        last_delivery=at - 1,
        dead_lettered_at=at,
        last_error=error,
    )


@pytest.fixture(params=["memory", "durable"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """make() -> a DeadLetterQueue (memory or durable); make(reopen=True) reopens the durable
    one (the memory one is returned as is)."""
    opened: list[DeadLetterQueue] = []
    path = str(tmp_path / "dlq")

    def factory(*, reopen: bool = False, **kw: Any) -> DeadLetterQueue:
        if request.param == "memory":
            if reopen:
                return opened[-1]
            d = DeadLetterQueue("d", **kw)
        else:
            if opened:
                opened[-1].close()
            d = DeadLetterQueue("d", path=path, **kw)
        opened.append(d)
        return d

    factory.durable = request.param == "durable"  # type: ignore[attr-defined]
    yield factory
    for d in opened:
        d.close()


class Sink:
    """A replay target: anything with put(message)."""

    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.name = "sink"
        self.got: list[Message] = []
        self.fail_on = fail_on or set()

    def put(self, message: Message) -> str:
        if message.id in self.fail_on:
            raise RuntimeError(f"sink refuses {message.id}")
        self.got.append(message)
        return message.id


def ids_of(d: DeadLetterQueue) -> list[str]:
    return [e.id for e in d.list()]


# ---- DeadLetter: the failure view --------------------------------------------------------------


def test_dead_letter_fields_are_unchanged() -> None:
    names = [f.name for f in dataclasses.fields(DeadLetter)]
    assert names == [
        "message",
        "reason",
        "queue",
        "attempts",
        "first_delivery",
        "last_delivery",
        "dead_lettered_at",
        "last_error",
    ]
    e = entry()
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.reason = "x"  # type: ignore[misc]


def test_dead_letter_with_structured_failure() -> None:
    f = boom(consumer="pool/w1", attempts=3)
    e = entry(error=f.encode())
    assert e.id == e.message.id
    assert e.failure == f
    assert e.error_type == "builtins.ValueError"
    assert e.error_message == "boom"
    assert e.traceback is not None
    assert "ValueError: boom" in e.traceback
    assert e.consumer == "pool/w1"
    assert e.fingerprint == f.fingerprint
    assert e.summary == "ValueError: boom"


def test_dead_letter_with_plain_error_or_none() -> None:
    plain = entry(error="KeyError: 'user'")
    assert plain.failure is None
    assert plain.error_type == "builtins.KeyError"
    assert plain.error_message == "'user'"
    assert plain.traceback is None
    assert plain.consumer is None
    assert plain.fingerprint == entry(error="KeyError: 'other'").fingerprint  # by type
    assert plain.fingerprint != entry(error="ValueError: 'user'").fingerprint
    assert plain.summary == "KeyError: 'user'"
    text = entry(error="the disk is on fire")
    assert text.error_type is None
    assert text.error_message == "the disk is on fire"
    assert text.fingerprint != entry(error="something else").fingerprint
    none = entry(reason="max_deliveries")
    assert none.error_type is none.error_message is none.failure is None
    assert none.fingerprint == fingerprint_text("reason", "max_deliveries")
    assert none.fingerprint == entry(reason="max_deliveries", queue="other").fingerprint
    assert none.fingerprint != entry(reason="expired").fingerprint
    assert none.summary == "max_deliveries"


# ---- list / show / groups ----------------------------------------------------------------------


def test_list_with_limit_and_where(make: Any) -> None:
    d = make()
    es = [
        entry(i, reason="expired" if i % 3 == 0 else "rejected", at=1000.0 + i) for i in range(10)
    ]
    for e in es:
        d.add(e)
    assert ids_of(d) == [e.id for e in es]
    assert [e.id for e in d.list(3)] == [e.id for e in es[:3]]
    expired = d.list(where=lambda e: e.reason == "expired")
    assert [e.message.payload for e in expired] == [0, 3, 6, 9]
    assert [e.message.payload for e in d.list(2, where=lambda e: e.reason == "expired")] == [0, 3]
    assert d.list(0, where=lambda e: True) == []
    assert d.list(where=lambda e: False) == []
    with pytest.raises(TypeError, match="where must be a callable"):
        d.list(where="expired")
    with pytest.raises(TypeError, match="limit must be an int or None, got bool"):
        d.list(True)
    with pytest.raises(ValueError, match="limit must be >= 0, got -1"):
        d.list(-1)


def test_show(make: Any) -> None:
    d = make()
    first = entry(b"a", id="m-1", at=1.0)
    again = entry(b"a", id="m-1", at=2.0, reason="expired")
    d.add(first)
    d.add(entry(b"b", id="m-2"))
    assert d.show("m-2").message.payload == b"b"
    d.add(again)
    assert d.show("m-1").reason == "expired"  # the newest of the same id
    with pytest.raises(KeyError, match="no dead letter with id 'nope' in 'd'"):
        d.show("nope")
    with pytest.raises(TypeError, match="id must be a str, got int"):
        d.show(3)  # type: ignore[arg-type]


def test_groups(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dlq_mod, "GROUP_IDS", 2)
    d = make()
    a = [boom(text=f"bad {i}") for i in range(3)]  # same place, different messages
    assert len({f.fingerprint for f in a}) == 1
    other = boom_elsewhere()
    for i, f in enumerate(a):
        d.add(entry(i, error=f.encode(), at=100.0 + i, queue="q1" if i else "q2"))
    d.add(entry("x", error=other.encode(), at=50.0))
    d.add(entry("y", reason="max_deliveries", at=10.0))
    d.add(entry("z", reason="max_deliveries", at=20.0, queue="q2"))
    d.add(entry("w", reason="expired", at=30.0))
    gs = d.groups()
    assert [g.count for g in gs] == [3, 2, 1, 1]
    top = gs[0]
    assert isinstance(top, DeadLetterGroup)
    assert top.fingerprint == a[0].fingerprint
    assert top.error_type == "builtins.ValueError"
    assert top.sample == "ValueError: bad 2"  # the newest
    assert (top.first_seen, top.last_seen) == (100.0, 102.0)
    assert top.reasons == {"rejected": 3}
    assert top.queues == {"q2": 1, "q1": 2}
    assert top.ids == tuple(e.id for e in d.list(2))  # bounded, oldest first
    lease = gs[1]
    assert lease.fingerprint == fingerprint_text("reason", "max_deliveries")
    assert lease.error_type is None
    assert lease.sample == "max_deliveries"
    assert lease.reasons == {"max_deliveries": 2}
    # equal counts: the most recently seen first
    assert [g.sample for g in gs[2:]] == ["ValueError: boom", "expired"]
    assert make(reopen=True).groups() == gs


def test_groups_of_empty_queue() -> None:
    assert DeadLetterQueue("d").groups() == []


# ---- discard -----------------------------------------------------------------------------------


def test_discard_dry_run_changes_nothing(make: Any) -> None:
    d = make()
    es = [entry(i) for i in range(5)]
    for e in es:
        d.add(e)
    r = d.discard()
    assert r == ReplayReport("discard", True, tuple(e.id for e in es), 0, None, {}, ())
    assert r.selected == 5
    assert ids_of(d) == [e.id for e in es]
    d = make(reopen=True)
    assert ids_of(d) == [e.id for e in es]


def test_discard_selectors_and_reopen(make: Any, rng: Any) -> None:
    d = make()
    failures = [boom(), boom_elsewhere()]
    es = []
    for i in range(40):
        f = failures[rng.randrange(2)]
        es.append(entry(i, error=f.encode(), reason=rng.choice(["rejected", "max_deliveries"])))
        d.add(es[-1])
    fp = failures[0].fingerprint
    want = [e.id for e in es if e.fingerprint == fp and e.reason == "rejected"]
    r = d.discard(group=fp, where=lambda e: e.reason == "rejected", dry_run=False)
    assert (r.action, r.dry_run, list(r.ids), r.moved) == ("discard", False, want, len(want)), rng
    left = [e.id for e in es if e.id not in set(want)]
    assert ids_of(d) == left
    assert ids_of(make(reopen=True)) == left, rng


def test_discard_by_ids_reports_missing(make: Any) -> None:
    d = make()
    es = [entry(i) for i in range(6)]
    for e in es:
        d.add(e)
    r = d.discard([es[4].id, es[1].id, "gone"], dry_run=False)
    assert r.ids == (es[1].id, es[4].id)  # oldest first
    assert r.missing == ("gone",)
    assert r.moved == 2
    assert ids_of(make(reopen=True)) == [es[i].id for i in (0, 2, 3, 5)]


def test_discard_group_object_and_unknown_group(make: Any) -> None:
    d = make()
    d.add(entry(1, error=boom().encode()))
    d.add(entry(2, reason="expired"))
    unknown = d.discard(group="0123456789abcdef", dry_run=False)
    assert (unknown.selected, unknown.moved) == (0, 0)
    assert len(d) == 2
    (g,) = [g for g in d.groups() if g.error_type is None]
    r = d.discard(group=g, dry_run=False)
    assert r.moved == 1
    assert [e.reason for e in make(reopen=True).list()] == ["rejected"]


def test_no_selector_selects_everything(make: Any) -> None:
    d = make()
    for i in range(4):
        d.add(entry(i))
    assert d.discard(dry_run=False).moved == 4
    assert len(d) == 0
    assert len(make(reopen=True)) == 0


# ---- replay ------------------------------------------------------------------------------------


def test_replay_into_a_target_records_the_replay(make: Any) -> None:
    d = make()
    f = boom()
    e = entry(b"payload", error=f.encode(), headers={"tenant": "t1"}, key="k", priority="high")
    d.add(e)
    d.add(entry(b"other", reason="expired"))
    sink = Sink()
    dry = d.replay(to=sink, where=lambda x: x.failure is not None)
    assert dry.dry_run
    assert dry.ids == (e.id,)
    assert dry.target == "sink"
    assert sink.got == []
    assert len(d) == 2
    before = time.time()
    r = d.replay(to=sink, where=lambda x: x.failure is not None, dry_run=False)
    assert (r.moved, r.errors, r.target) == (1, {}, "sink")
    (m,) = sink.got
    assert (m.id, m.payload, m.key, m.priority) == (e.id, b"payload", "k", "high")
    h = dict(m.headers)
    assert h["tenant"] == "t1"
    assert h["x-fastq-replayed"] == "1"
    assert float(h["x-fastq-replayed-at"]) >= before - 1
    assert h["x-fastq-dead-reason"] == "rejected"
    assert h["x-fastq-dead-fingerprint"] == f.fingerprint
    assert h["x-fastq-dead-queue"] == "src"
    assert h["x-fastq-dead-attempts"] == "3"
    assert [x.reason for x in d.list()] == ["expired"]
    assert [x.reason for x in make(reopen=True).list()] == ["expired"]


def test_replay_counts_previous_replays() -> None:
    d = DeadLetterQueue("d")
    d.add(entry(headers={"x-fastq-replayed": "4"}))
    d.add(entry(headers={"x-fastq-replayed": "garbage"}))
    sink = Sink()
    d.replay(to=sink, dry_run=False)
    assert [m.headers["x-fastq-replayed"] for m in sink.got] == ["5", "1"]


def test_replay_failure_keeps_the_entry(make: Any) -> None:
    d = make()
    es = [entry(i) for i in range(5)]
    for e in es:
        d.add(e)
    sink = Sink(fail_on={es[1].id, es[3].id})
    r = d.replay(to=sink, dry_run=False)
    assert r.moved == 3
    assert set(r.errors) == {es[1].id, es[3].id}
    assert r.errors[es[1].id] == f"RuntimeError: sink refuses {es[1].id}"
    assert [m.id for m in sink.got] == [es[i].id for i in (0, 2, 4)]
    assert ids_of(d) == [es[1].id, es[3].id]
    assert ids_of(make(reopen=True)) == [es[1].id, es[3].id]


def test_replay_interrupted_keeps_what_was_not_put(make: Any) -> None:
    d = make()
    es = [entry(i) for i in range(4)]
    for e in es:
        d.add(e)

    class Stop(BaseException):
        pass

    class Interrupting(Sink):
        def put(self, message: Message) -> str:
            if message.id == es[2].id:
                raise Stop
            return super().put(message)

    with pytest.raises(Stop):
        d.replay(to=Interrupting(), dry_run=False)
    assert ids_of(d) == [es[2].id, es[3].id]  # the two put are gone, the rest stays
    assert not d._claimed  # nothing is left claimed
    d = make(reopen=True)
    assert ids_of(d) == [es[2].id, es[3].id]
    assert d.replay(to=Sink(), dry_run=False).moved == 2


def test_replay_into_the_source_queue_resets_attempts() -> None:
    clock = FakeClock()
    q = Queue("jobs", clock=clock, max_deliveries=2)
    assert q.dead_letter is not None
    mid = q.put(b"work", headers={"tenant": "t1"})
    for attempt in (1, 2):
        d = q.get(timeout=0)
        assert d.attempt == attempt
        try:
            raise ValueError(f"boom on attempt {attempt}")
        except ValueError as exc:
            f = Failure.from_exception(exc, consumer="pool-a", attempts=attempt)
        q.nack(d.receipt, error=f.encode())
    (dl,) = q.dead_letter.list()
    assert (dl.id, dl.reason, dl.attempts) == (mid, "rejected", 2)
    assert dl.error_type == "builtins.ValueError"
    assert dl.error_message == "boom on attempt 2"
    assert dl.traceback is not None
    assert "ValueError: boom on attempt 2" in dl.traceback
    assert dl.consumer == "pool-a"
    assert dl.failure is not None
    assert dl.failure.attempts == 2
    assert dl.fingerprint == f.fingerprint
    with pytest.raises(Empty):  # nothing to get while it is dead
        q.get(timeout=0)

    r = q.dead_letter.replay(dry_run=False)
    assert (r.moved, r.target, r.errors) == (1, None, {})
    assert len(q.dead_letter) == 0
    d = q.get(timeout=0)
    assert d.attempt == 1  # a fresh put: attempts start again
    assert (d.message.id, d.message.payload) == (mid, b"work")
    assert d.message.headers["x-fastq-replayed"] == "1"
    assert d.message.headers["tenant"] == "t1"
    d.nack()
    q.nack(q.get(timeout=0).receipt)
    q.dead_letter.replay(dry_run=False)
    assert q.get(timeout=0).message.headers["x-fastq-replayed"] == "2"


def test_replay_into_source_by_queue_name() -> None:
    shared = DeadLetterQueue("shared")
    a = Queue("a", clock=FakeClock(), max_deliveries=1, dead_letter=shared)
    b = Queue("b", clock=FakeClock(), max_deliveries=1, dead_letter=shared)
    for q, payload in ((a, b"for-a"), (b, b"for-b")):
        q.put(payload)
        q.get(timeout=0).nack()
    shared.add(entry(b"orphan", queue="gone"))
    r = shared.replay(dry_run=False)
    assert r.moved == 2
    assert list(r.errors.values()) == [
        "no source queue named 'gone' is bound to 'shared': pass to="
    ]
    assert a.get(timeout=0).message.payload == b"for-a"
    assert b.get(timeout=0).message.payload == b"for-b"
    assert [e.queue for e in shared.list()] == ["gone"]


def test_replay_without_source_needs_to() -> None:
    d = DeadLetterQueue("d")
    d.add(entry())
    with pytest.raises(ValueError, match="to= is required: this dead-letter queue has no source"):
        d.replay()
    assert len(d) == 1


def test_replay_through_a_dedup_window_is_not_dropped() -> None:
    q = Queue("q", clock=FakeClock(), max_deliveries=1, dedup_window=3600.0)
    q.put(b"once", idempotency_key="k-1")
    q.get(timeout=0).nack()
    assert q.dead_letter is not None
    assert q.dead_letter.replay(dry_run=False).moved == 1
    d = q.get(timeout=0)
    assert d.message.idempotency_key == "k-1"
    d.ack()
    assert q.put(b"once", idempotency_key="k-1") == d.message.id  # the window still holds


def test_replay_of_an_expired_message_drops_the_passed_deadline() -> None:
    q = Queue("q", clock=FakeClock())
    q.put(b"late", deadline=time.time() - 5)
    q.put(b"kept", deadline=time.time() + 3600)
    assert q.get(timeout=0).message.payload == b"kept"
    assert q.dead_letter is not None
    (dl,) = q.dead_letter.list()
    assert dl.reason == "expired"
    q.dead_letter.replay(dry_run=False)
    d = q.get(timeout=0)
    assert d.message.payload == b"late"
    assert d.message.deadline is None
    assert d.message.headers["x-fastq-dead-reason"] == "expired"


def test_replay_into_a_closed_queue_keeps_entries(tmp_path: Path) -> None:
    q = Queue("q", clock=FakeClock(), max_deliveries=1)
    q.put(b"x")
    q.get(timeout=0).nack()
    q.close(drain=False)
    assert q.dead_letter is not None
    r = q.dead_letter.replay(dry_run=False)
    assert r.moved == 0
    assert next(iter(r.errors.values())).startswith("Closed")
    assert len(q.dead_letter) == 1


def test_rate_paces_with_a_token_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, float]] = []

    class Recorder:
        def __init__(self, rate: float) -> None:
            calls.append(("new", rate))

        def acquire(self, n: float = 1.0, timeout: float | None = None) -> bool:
            calls.append(("acquire", n))
            return True

    monkeypatch.setattr(dlq_mod, "_bucket", Recorder)
    d = DeadLetterQueue("d")
    for i in range(3):
        d.add(entry(i))
    d.replay(to=Sink(), rate=7, dry_run=False)
    assert calls == [("new", 7.0)] + [("acquire", 1.0)] * 3
    calls.clear()
    d.add(entry())
    d.replay(to=Sink(), rate=float("inf"), dry_run=False)  # unlimited: no bucket
    assert calls == []


def test_rate_with_the_real_token_bucket() -> None:
    bucket = dlq_mod._bucket(1e6)
    assert type(bucket).__name__ == "TokenBucket"
    d = DeadLetterQueue("d")
    for i in range(20):
        d.add(entry(i))
    sink = Sink()
    assert d.replay(to=sink, rate=1e6, dry_run=False).moved == 20
    assert [m.payload for m in sink.got] == list(range(20))


# ---- bad arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc_type", "needle"),
    [
        ({"ids": "abc"}, TypeError, "ids must be an iterable of message ids (str), not a single"),
        ({"ids": 3}, TypeError, "ids must be an iterable of message ids (str) or None, got int"),
        ({"ids": [1]}, TypeError, "ids must hold message ids (str), got 1"),
        ({"where": 3}, TypeError, "where must be a callable"),
        ({"group": 3}, TypeError, "group must be a fingerprint (str), a DeadLetterGroup or None"),
        ({"dry_run": "no"}, TypeError, "dry_run must be a bool, got 'no'"),
        ({"to": object()}, TypeError, "to must be a queue or topic (anything with put(message)"),
        ({"rate": 0}, ValueError, "rate must be > 0 messages per second (or None), got 0"),
        ({"rate": -1.5}, ValueError, "rate must be > 0 messages per second (or None), got -1.5"),
        ({"rate": float("nan")}, ValueError, "rate must be > 0"),
        (
            {"rate": True},
            TypeError,
            "rate must be a number of messages per second or None, got True",
        ),
        ({"rate": "5"}, TypeError, "rate must be a number"),
    ],
)
def test_bad_replay_arguments(
    kwargs: dict[str, Any], exc_type: type[Exception], needle: str
) -> None:
    d = DeadLetterQueue("d")
    d.add(entry())
    kwargs.setdefault("to", Sink())
    with pytest.raises(exc_type, match=re.escape(needle)):
        d.replay(dry_run=kwargs.pop("dry_run", False), **kwargs)
    assert len(d) == 1


def test_bad_discard_arguments() -> None:
    d = DeadLetterQueue("d")
    d.add(entry())
    with pytest.raises(TypeError, match="ids must be an iterable"):
        d.discard(ids="x", dry_run=False)
    with pytest.raises(TypeError, match="dry_run must be a bool"):
        d.discard(dry_run=None)  # type: ignore[arg-type]
    assert len(d) == 1


# ---- durable specifics -------------------------------------------------------------------------


def test_durable_random_removals_survive_reopen(tmp_path: Path, rng: Any) -> None:
    path = str(tmp_path / "dlq")
    model: list[str] = []
    d = DeadLetterQueue("d", path=path)
    try:
        for round_ in range(6):
            for i in range(rng.randrange(5, 30)):
                e = entry(f"{round_}-{i}")
                d.add(e)
                model.append(e.id)
            op = rng.choice(["discard", "replay", "pop", "reopen"])
            if op in ("discard", "replay") and model:
                pick = set(rng.sample(model, rng.randrange(len(model) + 1)))
                if op == "discard":
                    d.discard(pick, dry_run=False)
                else:
                    d.replay(pick, to=Sink(), dry_run=False)
                model = [m for m in model if m not in pick]
            elif op == "pop" and model:
                popped = d.pop()
                assert popped is not None, rng
                assert popped.id == model.pop(0), rng
            elif op == "reopen":
                d.close()
                d = DeadLetterQueue("d", path=path)
            assert ids_of(d) == model, rng
        d.close()
        d = DeadLetterQueue("d", path=path)
        assert ids_of(d) == model, rng
    finally:
        d.close()


def test_durable_position_advances_past_removed_prefix(tmp_path: Path) -> None:
    path = str(tmp_path / "dlq")
    d = DeadLetterQueue("d", path=path)
    es = [entry(i) for i in range(6)]
    for e in es:
        d.add(e)
    d.discard([es[2].id, es[4].id], dry_run=False)  # the middle: tombstones
    d.discard([es[0].id, es[1].id], dry_run=False)  # now a prefix: the position moves to es[3]
    d.close()
    with SegmentLog(path) as log:
        kinds = [r.key for r in log.iter()]
        assert kinds == [b"L"] * 6 + [b"T"]  # one tombstone; the prefix needed none
        assert log.committed("popped") == 3  # the offset of es[3]
    d = DeadLetterQueue("d", path=path)
    assert ids_of(d) == [es[3].id, es[5].id]
    d.discard(dry_run=False)
    d.close()
    with SegmentLog(path) as log:
        assert log.committed("popped") == log.end_offset
    d = DeadLetterQueue("d", path=path)
    assert len(d) == 0
    d.add(es[0])
    d.close()
    assert ids_of(DeadLetterQueue("d", path=path)) == [es[0].id]


def test_durable_maxsize_and_purge_with_tombstones(tmp_path: Path) -> None:
    path = str(tmp_path / "dlq")
    d = DeadLetterQueue("d", path=path, maxsize=4)
    es = [entry(i) for i in range(6)]
    for e in es[:4]:
        d.add(e)
    d.discard([es[1].id], dry_run=False)
    for e in es[4:]:
        d.add(e)  # 5 held -> the oldest (es[0]) is dropped
    assert ids_of(d) == [es[i].id for i in (2, 3, 4, 5)]
    assert d.statistics().dropped_total == 1
    d.close()
    d = DeadLetterQueue("d", path=path, maxsize=4)
    assert ids_of(d) == [es[i].id for i in (2, 3, 4, 5)]
    assert d.purge() == 4
    d.close()
    d = DeadLetterQueue("d", path=path)
    assert len(d) == 0
    d.close()


def test_durable_unknown_record_kind_is_corruption(tmp_path: Path) -> None:
    import fastq

    path = str(tmp_path / "dlq")
    with SegmentLog(path) as log:
        log.append(b"?", key=b"Z")
    with pytest.raises(fastq.CorruptLogError, match="unknown dead-letter record kind"):
        DeadLetterQueue("d", path=path)
    with SegmentLog(path) as log:
        pass  # the failed open released the log's lock
    path2 = str(tmp_path / "dlq2")
    with SegmentLog(path2) as log:
        log.append(b"12345", key=b"T")
    with pytest.raises(fastq.CorruptLogError, match="tombstone"):
        DeadLetterQueue("d", path=path2)


def test_durable_queue_replay_round_trip(tmp_path: Path) -> None:
    q = Queue("jobs", path=str(tmp_path), max_deliveries=1)
    try:
        mids = [q.put(f"m{i}".encode()) for i in range(4)]
        for _ in mids:
            d = q.get(timeout=0)
            d.nack(error=boom(text=d.message.payload.decode()).encode())
        assert q.dead_letter is not None
        assert len(q.dead_letter) == 4
        (g,) = q.dead_letter.groups()
        assert g.count == 4
        assert g.error_type == "builtins.ValueError"
        r = q.dead_letter.replay([mids[1], mids[2]], dry_run=False)
        assert r.moved == 2
    finally:
        q.close(drain=False)
    q = Queue("jobs", path=str(tmp_path), max_deliveries=1)
    try:
        assert q.dead_letter is not None
        assert [e.id for e in q.dead_letter.list()] == [mids[0], mids[3]]
        got = sorted(q.get(timeout=0).message.id for _ in range(2))
        assert got == sorted([mids[1], mids[2]])
    finally:
        q.close(drain=False)


# ---- threads -----------------------------------------------------------------------------------


def test_concurrent_add_during_replay_loses_nothing(make: Any) -> None:
    d = make()
    first = [entry(("old", i)) for i in range(300)]
    for e in first:
        d.add(e)
    later = [entry(("new", i)) for i in range(300)]
    start = threading.Event()

    def adder() -> None:
        start.wait(LIVENESS)
        for e in later:
            d.add(e)

    t = threading.Thread(target=adder)
    t.start()
    sink = Sink()
    start.set()
    r = d.replay({e.id for e in first}, to=sink, dry_run=False)
    t.join(LIVENESS)
    assert not t.is_alive()
    assert r.moved == 300
    assert len(sink.got) == 300
    assert ids_of(d) == [e.id for e in later]
    assert ids_of(make(reopen=True)) == [e.id for e in later]


def test_concurrent_discards_never_double_count(make: Any) -> None:
    d = make()
    for i in range(500):
        d.add(entry(i))
    reports: list[ReplayReport] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait(LIVENESS)
        reports.append(d.discard(dry_run=False))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LIVENESS)
    assert sum(r.moved for r in reports) == 500
    assert len(d) == 0


def test_many_removals_against_a_model(make: Any, rng: Any) -> None:
    """Out-of-order removals past the compaction threshold, mixed with adds, pops and maxsize
    drops, always agree with a plain list."""
    d = make(maxsize=2500)
    model: list[DeadLetter] = []
    dropped = 0
    for step in range(12):
        for i in range(rng.randrange(100, 800)):
            e = entry((step, i), reason=rng.choice(["rejected", "expired"]))
            d.add(e)
            model.append(e)
            if len(model) > 2500:
                model.pop(0)
                dropped += 1
        op = rng.choice(["discard", "discard", "pop", "where"])
        if op == "discard" and model:
            pick = {e.id for e in model if rng.random() < 0.6}
            assert d.discard(pick, dry_run=False).moved == len(pick), rng
            model = [e for e in model if e.id not in pick]
        elif op == "pop" and model:
            got = d.pop()
            assert got is not None, rng
            assert got.id == model.pop(0).id, rng
        elif op == "where":
            r = d.discard(where=lambda e: e.reason == "expired", dry_run=False)
            assert r.moved == sum(e.reason == "expired" for e in model), rng
            model = [e for e in model if e.reason != "expired"]
        assert len(d) == len(model), rng
        assert ids_of(d) == [e.id for e in model], rng
        assert [e.id for e in d.list(7)] == [e.id for e in model[:7]], rng
        st = d.statistics()
        assert st.size == len(model), rng
        assert st.dropped_total == dropped, rng
        if model:
            probe = rng.choice(model)
            assert d.show(probe.id).id == probe.id, rng
    assert ids_of(make(reopen=True, maxsize=2500)) == [e.id for e in model], rng


def test_failure_survives_a_durable_reopen(tmp_path: Path) -> None:
    """The nack's encoded Failure is journalled: a message in flight at close dies on the
    reopen (max_deliveries) with that failure as its last error."""
    q = Queue("j", path=str(tmp_path), max_deliveries=2)
    try:
        q.put(b"x")
        d = q.get(timeout=0)
        f = boom(text="y" * 20_000, consumer="c", attempts=1)
        d.nack(error=f.encode())
        q.get(timeout=0)  # attempt 2 is in flight when the process "dies"
    finally:
        q.close(drain=False)
    q = Queue("j", path=str(tmp_path), max_deliveries=2)
    try:
        assert q.dead_letter is not None
        (e,) = q.dead_letter.list()
        assert (e.reason, e.attempts) == ("max_deliveries", 2)
        assert e.failure == f
        assert e.fingerprint == f.fingerprint
    finally:
        q.close(drain=False)


def test_replay_dropped_by_another_messages_key_stays() -> None:
    clock = FakeClock()
    q = Queue("q", clock=clock, max_deliveries=1, dedup_window=60.0)
    q.put(b"first", idempotency_key="k")
    q.get(timeout=0).nack()
    assert q.dead_letter is not None
    (dead,) = q.dead_letter.list()
    clock.advance(61.0)  # the window forgot the key; a newer message takes it
    newer = q.put(b"resent", idempotency_key="k")
    r = q.dead_letter.replay(dry_run=False)
    assert r.moved == 0
    assert r.errors[dead.id].startswith(f"deduplicated: message {newer!r} put idempotency key")
    assert len(q.dead_letter) == 1
    assert q.get(timeout=0).message.id == newer
    with pytest.raises(Empty):
        q.get(timeout=0)


def test_replay_into_a_topic() -> None:
    """A topic (publish, no put) is a target; a topic consumer pool's entries
    (``topic[partition]@offset``) go back to the topic bound as their source."""
    topic = Topic("events", partitions=2)
    d = DeadLetterQueue("events.pool.dlq")
    keyed = entry(b"k", key="user-1", queue="events[1]@7")
    d.add(keyed)
    d.add(entry(b"other", queue="elsewhere[0]@1"))
    with pytest.raises(ValueError, match="to= is required"):
        d.replay()
    d._bind_source(topic)
    r = d.replay(dry_run=False)
    assert r.moved == 1
    assert list(r.errors) == [d.list()[0].id]
    got = d.replay(to=topic, dry_run=False)
    assert got.target == "events"
    c = topic.consumer("g", start="earliest")
    records = c.poll(timeout=0)
    assert sorted(rec.payload for rec in records) == [b"k", b"other"]
    (k,) = [rec for rec in records if rec.payload == b"k"]
    assert k.key == "user-1"
    assert k.message.id == keyed.id
    assert k.message.headers["x-fastq-dead-queue"] == "events[1]@7"
    c.close()
