"""Topic conformance: the stream contract (docs/topic.md), one set of assertions run on every
backend (memory, log, redis; see conftest.py).

- publish / publish_many return (partition, offset); the partition is fastq.partition(key, n);
  offsets are dense per partition; end_offsets / start_offsets;
- a consumer polls each partition in offset order, payloads and Message fields intact;
- commit, then a new member of the group resumes after the committed offset; committed / lag;
- two groups each see every record; seek replays;
- two members of one group split the partitions, no record delivered to both.
- Redis only: durable-log options are refused at construction with fastq.Unsupported.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

import pytest
from threads import LIVENESS

import fastq
from fastq import ConsumerRecord, Message, Topic

pytestmark = pytest.mark.timeout(30)

MakeTopic = Callable[..., Topic]


def poll_n(consumer: fastq.Consumer, n: int, batch: int = 500) -> list[ConsumerRecord]:
    """Exactly ``n`` records from ``consumer`` (polling with a liveness bound)."""
    out: list[ConsumerRecord] = []
    deadline = time.monotonic() + LIVENESS
    while len(out) < n:
        assert time.monotonic() < deadline, f"polled {len(out)} of {n} records"
        out += consumer.poll(max_records=min(batch, n - len(out)), timeout=0.1)
    assert len(out) == n
    return out


def assert_nothing_more(consumer: fastq.Consumer) -> None:
    assert consumer.poll(timeout=0.05) == []


def keyed(n: int, keys: int) -> list[Message]:
    return [Message({"i": i}, key=f"user-{i % keys}") for i in range(n)]


# ---- publishing ------------------------------------------------------------------------------


def test_publish_returns_partition_and_dense_offsets(make_topic: MakeTopic) -> None:
    t = make_topic("events", partitions=4)
    assert t.partitions == 4
    next_offset = collections.Counter[int]()
    for i in range(20):
        key = f"user-{i % 7}"
        p, off = t.publish({"i": i}, key=key)
        assert p == fastq.partition(key, 4)
        assert off == next_offset[p]
        next_offset[p] += 1
    batch = [*keyed(12, 5), Message(b"raw", key=b"bytes-key"), Message("int", key=99)]
    results = t.publish_many(batch)
    assert len(results) == len(batch)
    for m, (p, off) in zip(batch, results, strict=True):  # in input order
        assert p == fastq.partition(m.key, 4)
        assert off == next_offset[p]
        next_offset[p] += 1
    assert t.end_offsets() == {p: next_offset[p] for p in range(4)}
    assert t.start_offsets() == dict.fromkeys(range(4), 0)
    assert t.publish_many([]) == []


def test_keyless_messages_spread_over_the_partitions(make_topic: MakeTopic) -> None:
    t = make_topic("events", partitions=4)
    parts = [t.publish(i)[0] for i in range(8)]
    parts += [p for p, _ in t.publish_many(list(range(8)))]
    assert collections.Counter(parts) == dict.fromkeys(range(4), 4)


# ---- consuming -------------------------------------------------------------------------------


def test_poll_returns_each_partition_in_offset_order(make_topic: MakeTopic) -> None:
    t = make_topic("events", partitions=4)
    sent = keyed(40, 9)
    sent[3] = sent[3].replace(headers={"h": "v"}, type="t.x", priority="high")
    results = t.publish_many(sent)
    by_position = {r: m for r, m in zip(results, sent, strict=True)}
    c = t.consumer("billing")
    got = poll_n(c, 40, batch=7)
    assert_nothing_more(c)
    per_partition: dict[int, list[int]] = collections.defaultdict(list)
    for rec in got:
        per_partition[rec.partition].append(rec.offset)
        m = by_position[(rec.partition, rec.offset)]
        assert rec.message.id == m.id
        assert rec.payload == m.payload
        assert rec.key == m.key
        assert rec.message.headers == m.headers
        assert (rec.message.type, rec.message.priority) == (m.type, m.priority)
        assert rec.message.timestamp == m.timestamp
    for p, offsets in per_partition.items():
        assert offsets == list(range(t.end_offsets()[p])), p
    # one key's records in publish order
    for k in range(9):
        key = f"user-{k}"
        mine = [r.payload["i"] for r in got if r.key == key]
        assert mine == sorted(mine)
        assert len({r.partition for r in got if r.key == key}) == 1


def test_poll_waits_for_a_record(make_topic: MakeTopic) -> None:
    t = make_topic("events", partitions=2)
    c = t.consumer("g")
    assert c.poll(timeout=0.05) == []
    t.publish("late", key="k")
    (rec,) = poll_n(c, 1)
    assert (rec.payload, rec.partition, rec.offset) == ("late", fastq.partition("k", 2), 0)


def test_commit_then_a_new_member_resumes_after_it(make_topic: MakeTopic) -> None:
    t = make_topic("events", partitions=1)
    t.publish_many([f"r{i}" for i in range(10)])
    assert t.committed("g") == {0: None}
    assert t.lag("g") == {0: 10}
    c1 = t.consumer("g", auto_commit=False)
    first = poll_n(c1, 4, batch=4)
    assert [r.offset for r in first] == [0, 1, 2, 3]
    c1.commit()
    assert t.committed("g") == {0: 4}
    assert t.lag("g") == {0: 6}
    poll_n(c1, 3, batch=3)  # read, never committed
    c1.close()
    assert t.committed("g") == {0: 4}
    c2 = t.consumer("g", auto_commit=False)
    rest = poll_n(c2, 6)
    assert [r.offset for r in rest] == list(range(4, 10))
    assert [r.payload for r in rest] == [f"r{i}" for i in range(4, 10)]
    assert_nothing_more(c2)
    c2.commit()
    assert t.committed("g") == {0: 10}
    assert t.lag("g") == {0: 0}
    c2.close()


def test_committed_lag_and_end_offsets_per_partition(make_topic: MakeTopic) -> None:
    t = make_topic("events", partitions=2)
    results = t.publish_many(keyed(30, 6))
    ends = t.end_offsets()
    assert sum(ends.values()) == 30
    assert ends == dict(collections.Counter(p for p, _ in results))
    assert t.committed("g") == {0: None, 1: None}
    assert t.lag("g") == ends
    c = t.consumer("g")  # auto_commit: each poll commits what the previous one returned
    poll_n(c, 30)
    c.commit()
    assert t.committed("g") == ends
    assert t.lag("g") == {0: 0, 1: 0}
    t.publish_many(keyed(6, 6))
    new_ends = t.end_offsets()
    assert t.lag("g") == {p: new_ends[p] - ends[p] for p in (0, 1)}
    assert t.committed("other") == {0: None, 1: None}


def test_auto_commit_on_close(make_topic: MakeTopic) -> None:
    t = make_topic("events", partitions=1)
    t.publish_many(list(range(5)))
    c = t.consumer("g")
    poll_n(c, 5)
    c.close()  # auto_commit: what the polls returned counts as processed
    assert t.committed("g") == {0: 5}
    t.publish(5)
    c2 = t.consumer("g")
    (rec,) = poll_n(c2, 1)
    assert (rec.offset, rec.payload) == (5, 5)


def test_two_groups_each_see_everything(make_topic: MakeTopic) -> None:
    t = make_topic("events", partitions=4)
    results = t.publish_many(keyed(24, 8))
    a = t.consumer("billing")
    b = t.consumer("audit")
    got_a = poll_n(a, 24)
    got_b = poll_n(b, 24)
    assert {(r.partition, r.offset) for r in got_a} == set(results)
    assert {(r.partition, r.offset) for r in got_b} == set(results)
    assert_nothing_more(a)
    assert_nothing_more(b)


def test_seek_replays(make_topic: MakeTopic) -> None:
    t = make_topic("events", partitions=1)
    t.publish_many([f"r{i}" for i in range(10)])
    c = t.consumer("g")
    poll_n(c, 10)
    assert c.position(0) == 10
    c.seek(0, 3)
    assert c.position(0) == 3
    again = poll_n(c, 7)
    assert [r.offset for r in again] == list(range(3, 10))
    assert [r.payload for r in again] == [f"r{i}" for i in range(3, 10)]
    c.seek(0, 10)
    assert_nothing_more(c)
    with pytest.raises(fastq.OffsetOutOfRange):
        c.seek(0, 11)


def test_two_members_of_a_group_split_the_partitions(make_topic: MakeTopic) -> None:
    t = make_topic("events", partitions=4)
    c1 = t.consumer("g")
    c2 = t.consumer("g")
    deadline = time.monotonic() + LIVENESS
    while True:  # rebalancing settles at poll boundaries
        c1.poll(timeout=0)
        c2.poll(timeout=0)
        a1, a2 = set(c1.assignment()), set(c2.assignment())
        if a1 and a2 and not a1 & a2 and a1 | a2 == {0, 1, 2, 3}:
            break
        assert time.monotonic() < deadline, f"assignments did not settle: {a1} {a2}"
        time.sleep(0.01)
    results = t.publish_many(keyed(80, 16))
    seen: dict[tuple[int, int], str] = {}
    deadline = time.monotonic() + LIVENESS
    while len(seen) < 80:
        assert time.monotonic() < deadline, f"got {len(seen)} of 80 records"
        for name, c in (("c1", c1), ("c2", c2)):
            for rec in c.poll(timeout=0.02):
                where = (rec.partition, rec.offset)
                assert where not in seen, f"{where} delivered to {seen[where]} and {name}"
                seen[where] = name
    assert set(seen) == set(results)
    assert {p for p, _ in seen if seen[(p, _)] == "c1"} == a1
    assert {p for p, _ in seen if seen[(p, _)] == "c2"} == a2
    assert_nothing_more(c1)
    assert_nothing_more(c2)


def test_a_member_leaving_hands_its_partitions_over(make_topic: MakeTopic) -> None:
    t = make_topic("events", partitions=2)
    c1 = t.consumer("g")
    c2 = t.consumer("g")
    deadline = time.monotonic() + LIVENESS
    while not (c1.assignment() and c2.assignment()):
        c1.poll(timeout=0)
        c2.poll(timeout=0)
        assert time.monotonic() < deadline, "assignments did not settle"
    t.publish_many(keyed(10, 4))
    c2.close()
    got = poll_n(c1, 10)
    assert {r.partition for r in got} == {0, 1}
    assert c1.assignment() == [0, 1]


# ---- Redis only: what belongs to the durable log is refused at construction ------------------


def test_redis_refuses_a_topic_path(redis_backend: Any, tmp_path: Any) -> None:
    with pytest.raises(fastq.Unsupported) as ei:
        fastq.Topic("events", partitions=2, path=str(tmp_path), backend=redis_backend)
    assert isinstance(ei.value, NotImplementedError)
    assert "path" in ei.value.capability
    assert "redis" in str(ei.value).lower()
