"""Topic (unit): partitioned, replayable streams with consumer groups.

- routing: keyed messages go to fastq.partition(key, n) (Message.key or key=), keyless ones
  round-robin; publish_many returns (partition, offset) in input order, equal to publishing
  one by one; per-key order is kept;
- consumer groups: independent groups, start policies (committed / earliest / latest / int /
  datetime), seek replay, lag (topic and member), commit / committed, auto_commit (each poll
  commits what the previous poll returned), on_assign / on_revoke on join and leave, range
  assignment, takeover from the committed offset (duplicates only of uncommitted records,
  nothing lost), close;
- durable topics (path=) reopen with their records and committed offsets; the key tests run
  over memory and durable topics;
- retention: in-memory retention_bytes drops the oldest; a committed offset below the start
  follows the reset policy (earliest / latest / raise);
- bad arguments.

Random inputs come from the seeded ``rng`` fixture (asserts print it: FASTQ_SEED replays).
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fastq
from fastq import Closed, Message, OffsetOutOfRange, Topic

TopicFactory = Callable[..., Topic]


@pytest.fixture(params=["memory", "durable"])
def make_topic(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TopicFactory]:
    """Builds topics in memory or under tmp_path (the same name reopens the same directory)."""
    made: list[Topic] = []

    def make(name: str = "t", **kw: Any) -> Topic:
        if request.param == "durable":
            kw.setdefault("path", str(tmp_path))
        t = Topic(name, **kw)
        made.append(t)
        return t

    make.durable = request.param == "durable"  # type: ignore[attr-defined]
    yield make
    for t in made:
        if not t.closed:
            t.close()


def drain(c: fastq.Consumer, max_records: int = 500) -> list[fastq.ConsumerRecord]:
    """Poll until a poll returns nothing (rebalances settle at poll boundaries)."""
    out: list[fastq.ConsumerRecord] = []
    while True:
        got = c.poll(max_records)
        if not got:
            got = c.poll(max_records)  # a rebalance may have just handed partitions over
            if not got:
                return out
        out += got


def payloads(records: list[fastq.ConsumerRecord]) -> list[Any]:
    return [r.payload for r in records]


# ---- routing and publishing -------------------------------------------------------------------


def test_keyed_routing_matches_fastq_partition(make_topic: TopicFactory, rng: Any) -> None:
    t = make_topic(partitions=7)
    keys: list[Any] = [f"k{rng.randrange(1000)}" for _ in range(30)]
    keys += [rng.randrange(10**6) for _ in range(10)] + [b"bytes", b"", "", 0]
    for k in keys:
        p, _ = t.publish(b"x", key=k)
        assert p == fastq.partition(k, 7), (k, rng)
        p2, _ = t.publish(Message(b"y", key=k))
        assert p2 == p, (k, rng)


def test_key_kwarg_overrides_message_key(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=16)
    p, _ = t.publish(Message(b"x", key="a"), key="b")
    assert p == fastq.partition("b", 16)
    c = t.consumer("g")
    (r,) = drain(c)
    assert r.key == "b"


def test_keyless_round_robin(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=3)
    got = [t.publish(i) for i in range(7)]
    assert got == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2)]
    assert t.end_offsets() == {0: 3, 1: 2, 2: 2}
    assert t.start_offsets() == {0: 0, 1: 0, 2: 0}


def test_publish_many_keyed_equals_sequential_publish(make_topic: TopicFactory, rng: Any) -> None:
    a = make_topic("a", partitions=5)
    b = make_topic("b", partitions=5)
    items = [Message(i, key=f"k{rng.randrange(8)}") for i in range(200)]
    seq = [a.publish(m) for m in items[:100]] + [a.publish(m) for m in items[100:]]
    many = b.publish_many(items[:100]) + b.publish_many(items[100:])
    assert many == seq, rng
    assert a.end_offsets() == b.end_offsets()
    assert b.publish_many([]) == []


def test_publish_many_key_kwarg_and_fields(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=4)
    out = t.publish_many([b"a", b"b", b"c"], key="same", type="evt")
    p = fastq.partition("same", 4)
    assert out == [(p, 0), (p, 1), (p, 2)]
    recs = drain(t.consumer("g"))
    assert payloads(recs) == [b"a", b"b", b"c"]
    assert {(r.key, r.message.type) for r in recs} == {("same", "evt")}


def test_publish_many_keyless_equals_sequential_publish(make_topic: TopicFactory) -> None:
    """Round-robin state after publish_many is the same as after publishing one by one."""
    a = make_topic("a", partitions=4)
    b = make_topic("b", partitions=4)
    seq = [a.publish(i) for i in range(3)] + [a.publish(i) for i in range(3)]
    many = b.publish_many(range(3)) + b.publish_many(range(3))
    assert seq == [(0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1)]
    assert many == seq


def test_publish_many_mixed_keyed_keyless_equals_sequential(make_topic: TopicFactory) -> None:
    """Keyless messages in a mixed batch take round-robin turns like single publishes."""
    a = make_topic("a", partitions=4)
    b = make_topic("b", partitions=4)
    items = [Message(1, key="x"), Message(2), Message(3)]
    seq = [a.publish(m) for m in items]
    many = b.publish_many(items)
    assert [p for p, _ in seq] == [fastq.partition("x", 4), 0, 1]
    assert many == seq


def test_per_key_order(make_topic: TopicFactory, rng: Any) -> None:
    t = make_topic(partitions=4)
    expected: dict[str, list[int]] = {}
    for i in range(300):
        k = f"k{rng.randrange(10)}"
        expected.setdefault(k, []).append(i)
        if rng.random() < 0.5:
            t.publish(i, key=k)
        else:
            t.publish_many([i], key=k)
    got: dict[str, list[int]] = {}
    for r in drain(t.consumer("g", start="earliest"), max_records=7):
        got.setdefault(r.key, []).append(r.payload)
    assert got == expected, rng


def test_record_fields(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=2)
    m = Message(b"pay", key="k", headers={"h": "v"})
    p, off = t.publish(m)
    (r,) = drain(t.consumer("g"))
    assert (r.partition, r.offset, r.key, r.payload) == (p, off, "k", b"pay")
    assert r.message.id == m.id
    assert r.message.headers["h"] == "v"
    assert r.message.timestamp == m.timestamp


# ---- groups, start policies, replay -----------------------------------------------------------


def test_groups_are_independent(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=3)
    t.publish_many(range(30))
    a = t.consumer("a")
    b = t.consumer("b")
    ra = drain(a)
    assert sorted(payloads(ra)) == list(range(30))
    a.commit()
    assert t.lag("a") == {0: 0, 1: 0, 2: 0}
    assert t.committed("b") == {0: None, 1: None, 2: None}
    assert t.lag("b") == {0: 10, 1: 10, 2: 10}
    rb = drain(b)
    assert sorted(payloads(rb)) == list(range(30))


def test_start_policies(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=1)
    t.publish_many(range(10))
    assert payloads(drain(t.consumer("c", start="committed"))) == list(range(10))
    assert payloads(drain(t.consumer("e", start="earliest"))) == list(range(10))
    latest = t.consumer("l", start="latest")
    assert latest.poll() == []
    assert latest.position(0) == 10
    t.publish(10)
    assert payloads(latest.poll()) == [10]
    assert payloads(drain(t.consumer("i", start=4))) == list(range(4, 11))
    # an int beyond the end is clamped to the end
    assert drain(t.consumer("big", start=1000)) == []


def test_start_applies_only_where_nothing_is_committed(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=1)
    t.publish_many(range(20))
    c = t.consumer("g", auto_commit=False)
    c.poll(max_records=6)
    c.commit()
    c.close()
    for n, start in enumerate(("earliest", "latest", 0, 9)):
        c = t.consumer("g", start=start)
        assert c.poll(max_records=1)[0].payload == 6 + n, start
        c.close()  # commits 7 + n (auto_commit)
        assert t.committed("g") == {0: 7 + n}
        c = t.consumer("g", start=start, auto_commit=False)  # does not move it further
        assert c.poll(max_records=1)[0].payload == 7 + n
        c.close()


def test_start_from_datetime(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=2)
    before = [Message(i, key="k") for i in range(5)]
    t.publish_many(before)
    # wait (on the wall clock, not a sleep) until the clock has clearly moved on
    limit = time.monotonic() + 10
    while time.time_ns() < before[-1].timestamp + 200_000:
        assert time.monotonic() < limit
    after = [Message(i, key="k") for i in range(5, 10)]
    t.publish_many(after)
    assert after[0].timestamp > before[-1].timestamp + 100_000
    cut_ns = before[-1].timestamp + 100_000
    cut = dt.datetime.fromtimestamp(cut_ns / 1e9, tz=dt.timezone.utc)
    assert payloads(drain(t.consumer("g", start=cut))) == list(range(5, 10))
    early = dt.datetime.fromtimestamp(before[0].timestamp / 1e9 - 1, tz=dt.timezone.utc)
    assert payloads(drain(t.consumer("h", start=early))) == list(range(10))
    late = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    assert drain(t.consumer("i", start=late)) == []


def test_seek_replays(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=2)
    t.publish_many(range(20), key="k")
    p = fastq.partition("k", 2)
    c = t.consumer("g", auto_commit=False)
    assert payloads(drain(c)) == list(range(20))
    c.seek(p, 5)
    assert c.position(p) == 5
    assert payloads(drain(c)) == list(range(5, 20))
    c.seek(p, 20)  # the end is allowed
    assert c.poll() == []
    with pytest.raises(OffsetOutOfRange):
        c.seek(p, 21)
    with pytest.raises(OffsetOutOfRange):
        c.seek(p, -1)
    other = t.consumer("g")  # joins: range assignment gives it partition 1
    c.poll()  # c gives partition 1 up
    other.poll()
    assert c.assignment() == [0]
    assert other.assignment() == [1]
    with pytest.raises(ValueError, match="not assigned"):
        c.seek(1, 0)
    with pytest.raises(ValueError, match="not assigned"):
        c.position(1)
    with pytest.raises(TypeError):
        c.seek(0, "1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.seek(True, 0)


def test_lag_and_committed(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=2)
    t.publish_many(range(10), key="a")
    t.publish_many(range(4), key="d")
    pa, pb = fastq.partition("a", 2), fastq.partition("d", 2)
    assert pa != pb
    c = t.consumer("g", auto_commit=False)
    assert t.committed("g") == {0: None, 1: None}
    assert t.lag("g") == {pa: 10, pb: 4}
    got = c.poll(max_records=3)
    assert len(got) == 3
    lag = c.lag()
    assert sum(lag.values()) == 11
    assert t.lag("g") == {pa: 10, pb: 4}  # nothing committed yet
    c.commit()
    committed = t.committed("g")
    assert sum(v or 0 for v in committed.values()) == 3
    assert sum(t.lag("g").values()) == 11
    drain(c)
    c.commit()
    assert t.committed("g") == {pa: 10, pb: 4}
    assert t.lag("g") == {0: 0, 1: 0}
    assert c.lag() == {0: 0, 1: 0}


def test_auto_commit_commits_the_previous_poll(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=1)
    t.publish_many(range(10))
    c = t.consumer("g")
    assert len(c.poll(max_records=4)) == 4
    assert t.committed("g") == {0: None}  # not processed yet
    assert len(c.poll(max_records=3)) == 3
    assert t.committed("g") == {0: 4}
    c.poll(max_records=100)
    assert t.committed("g") == {0: 7}
    c.poll()
    assert t.committed("g") == {0: 10}


def test_manual_commit_only(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=1)
    t.publish_many(range(10))
    c = t.consumer("g", auto_commit=False)
    c.poll(max_records=4)
    c.poll(max_records=4)
    c.close()  # no commit on close either
    assert t.committed("g") == {0: None}
    c = t.consumer("g", auto_commit=False)
    assert payloads(c.poll(max_records=2)) == [0, 1]
    c.commit()
    assert t.committed("g") == {0: 2}


def test_commit_after_seek_back_keeps_committed_monotonic(make_topic: TopicFactory) -> None:
    """Replaying with seek() and committing the replayed position must not fail, and the
    committed offset never moves back (memory topics keep the max)."""
    t = make_topic(partitions=1)
    t.publish_many(range(10))
    c = t.consumer("g")
    c.poll()
    c.poll()  # auto-commits 10
    assert t.committed("g") == {0: 10}
    c.seek(0, 0)
    assert payloads(c.poll(max_records=3)) == [0, 1, 2]
    assert payloads(c.poll(max_records=3)) == [3, 4, 5]  # auto-commits position 3
    c.commit()
    assert t.committed("g") == {0: 10}


# ---- membership and rebalancing --------------------------------------------------------------


def test_range_assignment_and_callbacks_on_join_and_leave(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=5)
    log: list[tuple[str, str, list[int]]] = []

    def member(name: str) -> fastq.Consumer:
        return t.consumer(
            "g",
            on_assign=lambda ps: log.append((name, "assign", ps)),
            on_revoke=lambda ps: log.append((name, "revoke", ps)),
        )

    a = member("a")
    assert log == []  # assignment happens at poll boundaries
    a.poll()
    assert log == [("a", "assign", [0, 1, 2, 3, 4])]
    b = member("b")
    log.clear()
    b.poll()  # a still owns everything: b gets nothing yet
    assert b.assignment() == []
    assert log == []
    a.poll()  # a gives up [2, 3, 4] (range: member 0 of 2 gets [0, 5*1//2) = [0, 1])
    assert log == [("a", "revoke", [2, 3, 4])]
    assert a.assignment() == [0, 1]
    b.poll()
    assert log[-1] == ("b", "assign", [2, 3, 4])
    c = member("c")
    log.clear()
    for m in (a, b, c, a, b, c):
        m.poll()
    assert a.assignment() == [0]
    assert b.assignment() == [1, 2]
    assert c.assignment() == [3, 4]
    assert ("a", "revoke", [1]) in log
    assert ("b", "revoke", [3, 4]) in log
    assert ("b", "assign", [1]) in log
    assert ("c", "assign", [3, 4]) in log
    log.clear()
    b.close()
    assert log == [("b", "revoke", [1, 2])]
    log.clear()
    for m in (a, c, a, c):
        m.poll()
    assert a.assignment() == [0, 1]
    assert c.assignment() == [2, 3, 4]
    assert log == [("a", "assign", [1]), ("c", "assign", [2])]  # nothing else moves


def test_each_partition_has_one_owner(make_topic: TopicFactory, rng: Any) -> None:
    t = make_topic(partitions=6)
    members: list[fastq.Consumer] = []
    for _ in range(60):
        r = rng.random()
        if r < 0.3 or not members:
            members.append(t.consumer("g"))
        elif r < 0.45:
            members.pop(rng.randrange(len(members))).close()
        else:
            rng.choice(members).poll()
        owned = [p for m in members for p in m.assignment()]
        assert len(owned) == len(set(owned)), rng
    for _ in range(2):
        for m in members:
            m.poll()
    if members:
        owned = sorted(p for m in members for p in m.assignment())
        assert owned == list(range(6)), rng


def test_takeover_resumes_from_committed_offset(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=1)
    t.publish_many(range(10))
    a = t.consumer("g", auto_commit=False)
    assert payloads(a.poll(max_records=4)) == [0, 1, 2, 3]
    a.commit()
    assert payloads(a.poll(max_records=3)) == [4, 5, 6]  # not committed
    a.close()
    b = t.consumer("g", auto_commit=False)
    # 4..6 were never committed: delivered again; 0..3 are not; nothing is lost
    assert payloads(drain(b)) == [4, 5, 6, 7, 8, 9]


def test_takeover_on_rebalance_with_auto_commit(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=2)
    assert fastq.partition("a", 2) == 1
    t.publish_many(range(10), key="a")
    a = t.consumer("g")
    assert payloads(a.poll(max_records=4)) == [0, 1, 2, 3]
    b = t.consumer("g")  # b's target is partition 1, a keeps 0
    assert b.poll() == []  # a still owns it
    assert a.poll() == []  # commits 4, gives partition 1 up
    assert t.committed("g") == {0: None, 1: 4}
    assert a.assignment() == [0]
    assert payloads(b.poll()) == [4, 5, 6, 7, 8, 9]  # resumes at the committed offset


def test_takeover_redelivers_only_uncommitted(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=2)
    t.publish_many(range(10), key="a")
    a = t.consumer("g", auto_commit=False)
    assert payloads(a.poll(max_records=3)) == [0, 1, 2]
    a.commit()
    assert payloads(a.poll(max_records=3)) == [3, 4, 5]
    b = t.consumer("g", auto_commit=False)
    a.poll()  # gives partition 1 up without committing
    assert t.committed("g")[1] == 3
    assert payloads(drain(b)) == [3, 4, 5, 6, 7, 8, 9]


def test_takeover_random(make_topic: TopicFactory, rng: Any) -> None:
    """Random joins, leaves, polls and commits: per key, the delivered sequence (in poll order
    over all members) only repeats records after the committed offset, and nothing is lost."""
    t = make_topic(partitions=3)
    keys = [f"k{i}" for i in range(5)]
    published: dict[str, list[int]] = {k: [] for k in keys}
    delivered: dict[str, list[int]] = {k: [] for k in keys}
    members: list[fastq.Consumer] = []
    for i in range(200):
        r = rng.random()
        if r < 0.4:
            k = rng.choice(keys)
            t.publish(i, key=k)
            published[k].append(i)
        elif r < 0.5 or not members:
            members.append(t.consumer("g", auto_commit=rng.random() < 0.5))
        elif r < 0.6:
            members.pop(rng.randrange(len(members))).close()
        elif r < 0.7:
            rng.choice(members).commit()
        else:
            for rec in rng.choice(members).poll(max_records=rng.randrange(1, 5)):
                delivered[rec.key].append(rec.payload)
    if not members:
        members.append(t.consumer("g"))
    for m in members * 3:
        for rec in drain(m):
            delivered[rec.key].append(rec.payload)
    for k in keys:
        seq = delivered[k]
        # first deliveries in publish order, nothing lost
        first = list(dict.fromkeys(seq))
        assert first == published[k], (k, rng)
        # a repeat restarts at an earlier record and continues in order
        for x, y in itertools.pairwise(seq):
            ix, iy = published[k].index(x), published[k].index(y)
            assert iy == ix + 1 or iy <= ix, (k, seq, rng)


def test_close_commits_and_hands_partitions_over(make_topic: TopicFactory) -> None:
    t = make_topic(partitions=2)
    t.publish_many(range(10))
    a = t.consumer("g")
    b = t.consumer("g")
    ra = drain(a)
    rb = drain(b)
    a.close()
    a.close()  # idempotent
    assert a.assignment() == []
    with pytest.raises(Closed):
        a.poll()
    rest = drain(b)
    assert sorted(payloads(ra + rb + rest)) == list(range(10))
    b.close()
    assert t.lag("g") == {0: 0, 1: 0}


def test_context_managers_and_closed_topic(make_topic: TopicFactory) -> None:
    with make_topic(partitions=2) as t:
        with t.consumer("g") as c:
            t.publish(1)
            assert payloads(drain(c)) == [1]
        assert t.committed("g") == {0: 1, 1: None}
        c2 = t.consumer("g")
    assert t.closed
    with pytest.raises(Closed):
        t.publish(2)
    with pytest.raises(Closed):
        t.publish_many([2])
    with pytest.raises(Closed):
        t.consumer("g")
    with pytest.raises(Closed):
        c2.poll()


def test_durable_reopen_keeps_records_and_committed(tmp_path: Path, rng: Any) -> None:
    path = str(tmp_path)
    keys = [f"k{i}" for i in range(6)]
    items = [(i, rng.choice(keys)) for i in range(100)]
    with Topic("d", partitions=3, path=path) as t:
        placed = [t.publish(i, key=k) for i, k in items]
        c = t.consumer("g", auto_commit=False)
        first = c.poll(max_records=40)
        c.commit()
        ends = t.end_offsets()
        committed = t.committed("g")
    assert (tmp_path / "d" / "p0").is_dir()
    with Topic("d", partitions=3, path=path) as t:
        assert t.end_offsets() == ends
        assert t.committed("g") == committed
        everything = drain(t.consumer("other"))
        assert sorted((r.partition, r.offset) for r in everything) == sorted(placed)
        assert {r.payload: r.key for r in everything} == dict(items)
        rest = drain(t.consumer("g"))
        assert sorted(payloads(first + rest)) == list(range(100)), rng
        assert len(rest) == 60
        # appends continue after the old end
        p, off = t.publish(999, key="k0")
        assert off == ends[p]


# ---- retention --------------------------------------------------------------------------------


def test_memory_retention_bytes_drops_oldest() -> None:
    t = Topic("r", partitions=1, retention_bytes=100)
    for i in range(20):
        t.publish(bytes([i]) * 10)
    # 10 payload bytes each: the newest 10 stay
    assert t.start_offsets() == {0: 10}
    assert t.end_offsets() == {0: 20}
    recs = drain(t.consumer("g"))
    assert [r.offset for r in recs] == list(range(10, 20))
    assert recs[0].payload == bytes([10]) * 10
    t.publish(b"x" * 500)  # bigger than the limit: the newest record always stays
    assert t.start_offsets() == {0: 20}
    assert t.end_offsets() == {0: 21}
    assert t.lag("g") == {0: 1}


@pytest.mark.parametrize(("reset", "expected"), [("earliest", list(range(10, 20))), ("latest", [])])
def test_committed_below_start_follows_reset(reset: str, expected: list[int]) -> None:
    t = Topic("r", partitions=1, retention_bytes=100)
    for i in range(5):
        t.publish(i.to_bytes(10, "big"))
    c = t.consumer("g", auto_commit=False)
    c.poll(max_records=2)
    c.commit()
    c.close()
    assert t.committed("g") == {0: 2}
    for i in range(5, 20):
        t.publish(i.to_bytes(10, "big"))
    assert t.start_offsets() == {0: 10}
    assert t.lag("g") == {0: 10}
    c = t.consumer("g", reset=reset)
    got = [int.from_bytes(r.payload, "big") for r in drain(c)]
    assert got == expected
    t.publish((20).to_bytes(10, "big"))
    assert [int.from_bytes(r.payload, "big") for r in drain(c)] == [20]


def test_committed_below_start_raise() -> None:
    t = Topic("r", partitions=1, retention_bytes=100)
    for i in range(5):
        t.publish(i.to_bytes(10, "big"))
    c = t.consumer("g")
    c.poll(max_records=1)
    c.close()  # commits 1
    for i in range(5, 20):
        t.publish(i.to_bytes(10, "big"))
    c = t.consumer("g", reset="raise")
    with pytest.raises(OffsetOutOfRange):
        c.poll()
    c.seek(0, 10)  # a retained offset works
    assert [r.offset for r in drain(c)] == list(range(10, 20))
    with pytest.raises(OffsetOutOfRange):
        c.seek(0, 9)


# ---- bad arguments ----------------------------------------------------------------------------


def test_bad_topic_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="partitions"):
        Topic("t", partitions=0)
    with pytest.raises(ValueError, match="partitions"):
        Topic("t", partitions=-3)
    with pytest.raises(TypeError):
        Topic("t", partitions=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Topic("t", partitions=True)
    with pytest.raises(TypeError):
        Topic(5)  # type: ignore[arg-type]
    for bad_name in ("", "a/b", ".", ".."):
        with pytest.raises(ValueError, match="name"):
            Topic(bad_name)
    with pytest.raises(ValueError, match="retention_bytes"):
        Topic("t", retention_bytes=0)
    with pytest.raises(TypeError):
        Topic("t", retention_seconds="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retention_seconds"):
        Topic("t", retention_seconds=0)
    with pytest.raises(ValueError, match="sync"):
        Topic("t", sync="always")  # sync needs a path
    t = Topic("t", partitions=2)
    with pytest.raises(TypeError):
        t.publish(b"x", colour="red")
    with pytest.raises(TypeError):
        t.publish_many([b"x"], colour="red")


def test_bad_consumer_arguments() -> None:
    t = Topic("t", partitions=2)
    with pytest.raises(ValueError, match="start must be"):
        t.consumer("g", start="newest")
    with pytest.raises(ValueError, match="start offset"):
        t.consumer("g", start=-1)
    with pytest.raises(TypeError):
        t.consumer("g", start=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        t.consumer("g", start=True)
    with pytest.raises(TypeError):
        t.consumer("g", start=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reset"):
        t.consumer("g", reset="never")
    with pytest.raises(TypeError):
        t.consumer("g", on_assign=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        t.consumer("g", on_revoke="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        t.consumer("")
    with pytest.raises(TypeError):
        t.consumer(3)  # type: ignore[arg-type]
    c = t.consumer("g")
    with pytest.raises(ValueError, match="max_records"):
        c.poll(max_records=0)
    with pytest.raises(TypeError):
        c.poll(max_records=1.5)  # type: ignore[arg-type]
    # a failed construction did not join the group: c gets every partition
    c.poll()
    assert c.assignment() == [0, 1]


def test_durable_topic_codec(tmp_path: Path) -> None:
    """A durable topic stores object payloads with its codec and reads them back with it
    (pickle: bytes inside a payload, which JSON refuses; msgspec is not needed)."""
    t = Topic("c", partitions=2, path=str(tmp_path), codec=fastq.codecs.PICKLE)
    t.publish({"raw": b"\x00"}, key="k")
    t.close()
    t = Topic("c", partitions=2, path=str(tmp_path), codec=fastq.codecs.PICKLE)
    [rec] = t.consumer("g").poll()
    assert rec.payload == {"raw": b"\x00"}
    t.close()
    with pytest.raises(TypeError, match="codec"):
        Topic("d", codec=object())  # type: ignore[arg-type]


def test_commit_explicit_offsets() -> None:
    t = Topic("explicit", partitions=2)
    for i in range(6):
        t.publish(i, key=i)
    c = t.consumer("g", auto_commit=False)
    c.poll(max_records=100)
    c.commit({0: 1})  # Kafka's commitSync(offsets): exactly these positions
    assert t.committed("g")[0] == 1
    assert t.committed("g")[1] is None
    c.commit()  # the position after what was polled
    assert t.committed("g") == t.end_offsets()
    with pytest.raises(ValueError, match="not assigned"):
        c.commit({5: 0})
    with pytest.raises(ValueError, match=r"offsets\[0\]"):
        c.commit({0: -1})
    with pytest.raises(TypeError, match="offsets must be a dict"):
        c.commit([(0, 1)])  # type: ignore[arg-type]
