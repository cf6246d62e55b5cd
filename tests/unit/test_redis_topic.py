"""Topic on Redis Streams (unit): ``fastq.Topic(name, partitions=n, backend=...)`` keeps the
in-process semantics across processes.

- records: one stream per partition, dense offsets (stream ids ``0-<offset+1>``), routing as
  in process, ``publish_many`` is one server script per call and gives each partition's
  messages contiguous offsets even with other producers publishing meanwhile;
- consumer groups are Redis consumer groups: the committed offset is the group's
  last-delivered-id (monotonic), ``XINFO GROUPS`` reports the lag ``Topic.lag`` returns, a
  new Topic object (another process) resumes from it; groups are independent;
- membership across Topic objects and processes: members of one group split the partitions
  (range assignment in join order) with no overlap and per-key order, a member that stops
  heartbeating loses its partitions after ``session_timeout`` (its uncommitted records are
  delivered again, its late commits are refused), real subprocesses included;
- retention by age (XTRIM MINID) with the reset policies, ``fastq.Unsupported`` for what the
  backend cannot do, statistics, ``Topic.delete``, a ConsumerPool over a Redis topic;
- the in-process topic unit tests (tests/unit/test_topic.py) run again here on Redis, with
  the same assertions.
"""

from __future__ import annotations

import collections
import datetime as dt
import random
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# the in-process topic tests, collected again here with this module's make_topic (Redis)
from test_topic import (  # noqa: F401
    drain,
    payloads,
    test_auto_commit_commits_the_previous_poll,
    test_close_commits_and_hands_partitions_over,
    test_commit_after_seek_back_keeps_committed_monotonic,
    test_context_managers_and_closed_topic,
    test_each_partition_has_one_owner,
    test_groups_are_independent,
    test_key_kwarg_overrides_message_key,
    test_keyed_routing_matches_fastq_partition,
    test_keyless_round_robin,
    test_lag_and_committed,
    test_manual_commit_only,
    test_per_key_order,
    test_publish_many_key_kwarg_and_fields,
    test_publish_many_keyed_equals_sequential_publish,
    test_publish_many_keyless_equals_sequential_publish,
    test_publish_many_mixed_keyed_keyless_equals_sequential,
    test_range_assignment_and_callbacks_on_join_and_leave,
    test_record_fields,
    test_seek_replays,
    test_start_applies_only_where_nothing_is_committed,
    test_start_from_datetime,
    test_start_policies,
    test_takeover_on_rebalance_with_auto_commit,
    test_takeover_random,
    test_takeover_redelivers_only_uncommitted,
    test_takeover_resumes_from_committed_offset,
)

import fastq
from fastq import Message, OffsetOutOfRange, Topic
from fastq.backends import RedisStreams

TopicFactory = Callable[..., Topic]


@pytest.fixture
def make_topic(redis_backend: RedisStreams) -> Iterator[TopicFactory]:
    """Topics on the test's Redis backend (the in-process tests' factory, on Redis)."""
    made: list[Topic] = []

    def make(name: str = "t", **kw: Any) -> Topic:
        t = Topic(name, backend=redis_backend, **kw)
        made.append(t)
        return t

    make.durable = False  # type: ignore[attr-defined]
    yield make
    for t in made:
        if not t.closed:
            t.close()


@pytest.fixture
def backends(redis_url: str) -> Iterator[Callable[..., RedisStreams]]:
    """``new(**kw)``: another RedisStreams on the same server and prefix (another process's
    connection), closed after the test."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    made: list[RedisStreams] = []

    def new(**kw: Any) -> RedisStreams:
        b = RedisStreams(redis_url, prefix=prefix, **kw)
        made.append(b)
        return b

    yield new
    for b in made:
        b.close()


def settle(*members: fastq.Consumer, limit: float = 10.0) -> None:
    """Poll every member until the partitions are all owned, each by one member."""
    deadline = time.monotonic() + limit
    n = members[0]._topic.partitions
    while True:
        for m in members:
            m.poll(max_records=1)  # may return records: callers settle before publishing
        owned = [p for m in members for p in m.assignment()]
        if sorted(owned) == list(range(n)):
            return
        assert len(owned) == len(set(owned)), owned
        assert time.monotonic() < deadline, [m.assignment() for m in members]


def evalsha_calls(client: Any) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


# ---- records and offsets ----------------------------------------------------------------------


def test_offsets_are_dense_stream_ids(redis_backend: RedisStreams) -> None:
    t = Topic("ev", partitions=3, backend=redis_backend)
    got = [t.publish(i) for i in range(5)]
    assert got == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1)]
    p, off = t.publish(b"k", key="user-1")
    assert p == fastq.partition("user-1", 3)
    client = redis_backend.client
    stream = redis_backend.key("t", "ev", str(p))
    ids = [eid for eid, _ in client.xrange(stream)]
    assert ids == [f"0-{o + 1}".encode() for o in range(off + 1)]
    assert t.end_offsets() == {
        q: len(client.xrange(redis_backend.key("t", "ev", str(q)))) for q in range(3)
    }
    assert t.start_offsets() == {0: 0, 1: 0, 2: 0}
    # the record is the message envelope (and its timestamp)
    _, fields = client.xrange(stream)[-1]
    assert Message.decode(fields[b"m"]).payload == b"k"
    assert int(fields[b"t"]) > 0
    # PartitionEngine interface
    part = t._parts[p]
    assert [m.payload for m in part.read(off, 10)] == [b"k"]
    assert part.end_offset == off + 1
    t.close()


def test_publish_many_is_one_script_and_contiguous(redis_backend: RedisStreams) -> None:
    t = Topic("ev", partitions=8, backend=redis_backend)
    msgs = [Message(i, key=f"k{i % 13}") for i in range(500)]
    before = evalsha_calls(redis_backend.client)
    out = t.publish_many(msgs)
    assert evalsha_calls(redis_backend.client) - before == 1
    assert [p for p, _ in out] == [fastq.partition(m.key, 8) for m in msgs]
    for p in range(8):
        offs = [o for q, o in out if q == p]
        assert offs == list(range(len(offs)))
    # a big batch is split into slices, each still one script
    big = [Message(b"x" * 10, key="one") for _ in range(12_000)]
    before = evalsha_calls(redis_backend.client)
    res = t.publish_many(big)
    assert evalsha_calls(redis_backend.client) - before == 3
    p = fastq.partition("one", 8)
    first = res[0][1]
    assert res == [(p, first + i) for i in range(12_000)]
    t.close()


def test_publish_many_contiguous_with_concurrent_producers(
    backends: Callable[..., RedisStreams],
) -> None:
    """Two producers (own connections) publish batches to one key at once: every batch gets a
    contiguous run of offsets and the runs do not overlap."""
    topics = [Topic("ev", partitions=2, backend=backends()) for _ in range(2)]
    results: list[list[tuple[int, int]]] = []
    lock = threading.Lock()

    def produce(t: Topic, who: int) -> None:
        for b in range(40):
            out = t.publish_many([(who, b, i) for i in range(25)], key="same")
            with lock:
                results.append(out)

    threads = [threading.Thread(target=produce, args=(t, i)) for i, t in enumerate(topics)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seen: set[int] = set()
    for out in results:
        offs = [o for _, o in out]
        assert offs == list(range(offs[0], offs[0] + 25))
        assert not seen & set(offs)
        seen |= set(offs)
    assert seen == set(range(2000))
    for t in topics:
        t.close()


def test_url_backend_and_codec(redis_url: str) -> None:
    from fastq.codecs import JsonCodec

    t = Topic("ev", partitions=2, backend=redis_url, codec=JsonCodec())
    assert isinstance(t.backend, RedisStreams)
    t.publish({"a": [1, 2]}, key="k")
    c = t.consumer("g")
    assert payloads(drain(c)) == [{"a": [1, 2]}]
    t.close()
    t.backend.close()


# ---- committed offsets ----------------------------------------------------------------------


def test_commit_is_monotonic_and_resumes_in_a_new_topic_object(
    backends: Callable[..., RedisStreams],
) -> None:
    t1 = Topic("ev", partitions=1, backend=backends())
    t1.publish_many(range(10))
    c = t1.consumer("g", auto_commit=False)
    assert payloads(c.poll(max_records=6)) == [0, 1, 2, 3, 4, 5]
    c.commit()
    assert t1.committed("g") == {0: 6}
    c.commit({0: 2})  # lower: ignored
    assert t1.committed("g") == {0: 6}
    t1._parts[0].commit("g", 3)  # the partition engine too
    assert t1.committed("g") == {0: 6}
    c.commit({0: 8})
    assert t1.committed("g") == {0: 8}
    c.close()
    t1.close()
    # another process: a new connection and Topic object resume at the committed offset
    t2 = Topic("ev", partitions=1, backend=backends())
    assert t2.committed("g") == {0: 8}
    assert t2.committed("nobody") == {0: None}
    assert payloads(drain(t2.consumer("g"))) == [8, 9]
    t2.close()
    assert Topic("ev", partitions=1, backend=backends()).committed("g") == {0: 10}


def test_lag_comes_from_xinfo_groups(redis_backend: RedisStreams) -> None:
    t = Topic("ev", partitions=2, backend=redis_backend)
    t.publish_many(range(10), key="a")
    t.publish_many(range(4), key="d")
    pa = fastq.partition("a", 2)
    c = t.consumer("g", auto_commit=False)
    assert t.lag("g") == {pa: 10, 1 - pa: 4}  # no group yet: end - start
    c.poll(max_records=3)
    c.commit()
    client = redis_backend.client

    def xinfo() -> dict[int, dict[str, Any]]:
        out = {}
        for p in range(2):
            groups = client.xinfo_groups(redis_backend.key("t", "ev", str(p)))
            out[p] = {g["name"].decode(): g for g in groups}
        return out

    info = xinfo()
    committed = t.committed("g")
    lag = t.lag("g")
    for p in range(2):
        if committed[p] is None:
            assert "g" not in info[p]
            continue
        g = info[p]["g"]
        assert g["last-delivered-id"] == f"0-{committed[p]}".encode()
        assert g["entries-read"] == committed[p]
        assert g["lag"] == lag[p]
    assert sum(lag.values()) == 11
    drain(c)
    c.commit()
    info = xinfo()
    assert [info[p]["g"]["lag"] for p in range(2)] == [0, 0]
    assert t.lag("g") == {0: 0, 1: 0}
    t.close()


def test_groups_are_independent_across_topic_objects(
    backends: Callable[..., RedisStreams],
) -> None:
    t1 = Topic("ev", partitions=3, backend=backends())
    t2 = Topic("ev", partitions=3, backend=backends())
    t1.publish_many(range(30))
    a = t1.consumer("a")
    b = t2.consumer("b")
    assert sorted(payloads(drain(a))) == list(range(30))
    a.commit()
    assert t2.lag("a") == {0: 0, 1: 0, 2: 0}
    assert t2.lag("b") == {0: 10, 1: 10, 2: 10}
    assert sorted(payloads(drain(b))) == list(range(30))
    t1.close()
    t2.close()


# ---- membership across processes --------------------------------------------------------------


def test_two_topic_objects_split_the_partitions_with_per_key_order(
    backends: Callable[..., RedisStreams],
) -> None:
    """Two "processes" (own connection and Topic object each) in one group: the partitions
    are split between them (range assignment in join order), never owned by both, every
    record is delivered once and each key in publish order."""
    producer = Topic("ev", partitions=6, backend=backends())
    t1 = Topic("ev", partitions=6, backend=backends())
    t2 = Topic("ev", partitions=6, backend=backends())
    c1 = t1.consumer("g")
    c2 = t2.consumer("g")
    settle(c1, c2)
    assert c1.assignment() == [0, 1, 2]
    assert c2.assignment() == [3, 4, 5]
    keys = [f"k{i}" for i in range(20)]
    per_key = 50
    published = {k: list(range(per_key)) for k in keys}
    stop = threading.Event()
    got: dict[str, list[int]] = collections.defaultdict(list)
    owners: dict[int, set[int]] = collections.defaultdict(set)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def consume(c: fastq.Consumer, who: int) -> None:
        try:
            while not stop.is_set():
                recs = c.poll(max_records=37, timeout=0.05)
                with lock:
                    for r in recs:
                        got[r.key].append(r.payload)
                        owners[r.partition].add(who)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(c, i)) for i, c in enumerate((c1, c2))]
    for th in threads:
        th.start()
    for i in range(per_key):
        producer.publish_many([Message(i, key=k) for k in keys])
    deadline = time.monotonic() + 20
    while sum(len(v) for v in got.values()) < len(keys) * per_key:
        assert time.monotonic() < deadline, sum(len(v) for v in got.values())
        time.sleep(0.01)
    stop.set()
    for th in threads:
        th.join()
    assert not errors, errors
    assert dict(got) == published  # once each, in publish order per key
    assert all(len(who) == 1 for who in owners.values()), owners
    assert owners[0] == {0}
    assert owners[5] == {1}
    c1.close()
    c2.close()
    assert producer.lag("g") == dict.fromkeys(range(6), 0)
    for t in (producer, t1, t2):
        t.close()


def test_members_joining_and_leaving_in_three_topic_objects(
    backends: Callable[..., RedisStreams], rng: Any
) -> None:
    """Churn: three consumer threads, each with its own connection and Topic object, keep
    joining, polling and leaving one group while two producers publish keyed records. Per
    key, first deliveries come in publish order and nothing is lost; a record comes again
    only after a member that commits by hand (and leaves without committing) had it."""
    keys = [f"k{i}" for i in range(8)]
    per_key = 120
    producer = Topic("ev", partitions=6, backend=backends())
    lock = threading.Lock()
    deliveries: list[tuple[int, str, int]] = []
    manual: set[int] = set()
    ids = iter(range(10**9))
    seen: set[tuple[str, int]] = set()
    done = threading.Event()
    errors: list[BaseException] = []
    seeds = [rng.randrange(2**32) for _ in range(5)]

    def publish(who: int) -> None:
        r = random.Random(seeds[who])
        mine = keys[who::2]
        nxt = dict.fromkeys(mine, 0)
        while any(n < per_key for n in nxt.values()):
            k = r.choice([k for k in mine if nxt[k] < per_key])
            n = min(r.randrange(1, 6), per_key - nxt[k])
            producer.publish_many(range(nxt[k], nxt[k] + n), key=k)
            nxt[k] += n

    def consume(slot: int) -> None:
        r = random.Random(seeds[2 + slot])
        topic = Topic("ev", partitions=6, backend=backends())
        try:
            while not done.is_set():
                is_manual = slot == 2
                with lock:
                    mid = next(ids)
                    if is_manual:
                        manual.add(mid)
                c = topic.consumer("g", auto_commit=not is_manual)
                for n in range(r.randrange(1, 15)):
                    recs = c.poll(max_records=r.randrange(1, 30), timeout=0.01)
                    with lock:
                        for rec in recs:
                            deliveries.append((mid, rec.key, rec.payload))
                            seen.add((rec.key, rec.payload))
                        if len(seen) == len(keys) * per_key:
                            done.set()
                    if is_manual and n % 3 == 2:
                        c.commit()
                c.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            done.set()
        finally:
            topic.close()

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=consume, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    finished = done.wait(60)
    done.set()
    for th in threads:
        th.join()
    assert not errors, errors
    assert finished, (len(seen), rng)
    delivered_to: dict[tuple[str, int], list[int]] = collections.defaultdict(list)
    next_first: dict[str, int] = {}
    for mid, key, payload in deliveries:
        earlier = delivered_to[(key, payload)]
        if not earlier:
            assert payload == next_first.get(key, 0), (key, payload, rng)
            next_first[key] = payload + 1
        else:
            assert any(m in manual for m in earlier), (key, payload, earlier, rng)
        earlier.append(mid)
    assert next_first == dict.fromkeys(keys, per_key), rng
    producer.close()


def test_a_silent_member_loses_its_partitions_after_the_session_timeout(
    backends: Callable[..., RedisStreams],
) -> None:
    ta = Topic("ev", partitions=4, backend=backends(session_timeout=1.0))
    tb = Topic("ev", partitions=4, backend=backends(session_timeout=1.0))
    revoked_a: list[list[int]] = []
    a = ta.consumer("g", auto_commit=False, on_revoke=revoked_a.append)
    b = tb.consumer("g", auto_commit=False)
    settle(a, b)
    assert a.assignment() == [0, 1]
    assert b.assignment() == [2, 3]
    ta.publish_many([Message(i, key="x") for i in range(10)])
    px = fastq.partition("x", 4)
    assert px in a.assignment()  # "x" goes to a
    assert payloads(a.poll(max_records=4)) == [0, 1, 2, 3]
    a.commit()
    assert payloads(a.poll(max_records=3)) == [4, 5, 6]  # processed, not committed
    # a goes silent (a stuck or crashed process): b takes its partitions over once a's
    # session has run out, and resumes at the committed offset
    silent = time.monotonic()
    records: list[Any] = []
    while b.assignment() != [0, 1, 2, 3]:
        records += b.poll(timeout=0.1)
        assert time.monotonic() - silent < 6, b.assignment()
    took = time.monotonic() - silent
    assert took >= 0.9, took
    records += drain(b)
    assert payloads(records) == [4, 5, 6, 7, 8, 9]  # 4..6 again: at-least-once
    b.commit()
    assert tb.committed("g")[px] == 10
    # a comes back: its late commit is refused, it hears it lost the partitions, it rejoins
    a.commit({px: 7})
    assert tb.committed("g")[px] == 10
    a.poll()
    assert revoked_a
    assert sorted(revoked_a[-1]) == [0, 1]
    settle(a, b)
    assert a.assignment() == [0, 1]
    assert b.assignment() == [2, 3]
    assert drain(a) == []  # resumes at b's commit: nothing is delivered a third time
    a.close()
    b.close()
    ta.close()
    tb.close()


def test_a_lone_member_back_from_silence_resumes_at_its_commit(
    backends: Callable[..., RedisStreams],
) -> None:
    """Nobody took the partitions of a member that was silent too long: at its next poll it
    hears they were lost (on_revoke), claims them afresh (on_assign) and resumes at the
    committed offset."""
    t = Topic("ev", partitions=2, backend=backends(session_timeout=0.5))
    log: list[tuple[str, list[int]]] = []
    c = t.consumer(
        "g",
        auto_commit=False,
        on_assign=lambda ps: log.append(("assign", ps)),
        on_revoke=lambda ps: log.append(("revoke", ps)),
    )
    t.publish_many(range(6), key="k")
    assert payloads(c.poll(max_records=2)) == [0, 1]
    c.commit()
    assert payloads(c.poll(max_records=2)) == [2, 3]
    time.sleep(0.8)
    log.clear()
    assert payloads(drain(c)) == [2, 3, 4, 5]
    assert log == [("revoke", [0, 1]), ("assign", [0, 1])]
    t.close()


def test_a_polling_member_keeps_its_partitions(backends: Callable[..., RedisStreams]) -> None:
    """Heartbeats run while a poll waits: a poll that waits longer than the session timeout
    keeps the member's partitions."""
    ta = Topic("ev", partitions=2, backend=backends(session_timeout=0.6))
    tb = Topic("ev", partitions=2, backend=backends(session_timeout=0.6))
    lost: list[list[int]] = []
    a = ta.consumer("g", on_revoke=lost.append)
    b = tb.consumer("g", on_revoke=lost.append)
    settle(a, b)
    stop = threading.Event()

    def poll_b() -> None:
        while not stop.is_set():
            b.poll(timeout=0.05)

    th = threading.Thread(target=poll_b)
    th.start()
    try:
        started = time.monotonic()
        assert a.poll(timeout=1.5) == []
        assert time.monotonic() - started >= 1.5
    finally:
        stop.set()
        th.join()
    assert lost == []
    assert a.assignment() == [0]
    assert b.assignment() == [1]
    ta.close()
    tb.close()


_CHILD = """
import json, sys, time
import fastq
from fastq.backends import RedisStreams

url, prefix, out, stop = sys.argv[1:5]
backend = RedisStreams(url, prefix=prefix, session_timeout=2.0)
topic = fastq.Topic("ev", partitions=4, backend=backend)
c = topic.consumer("g")
with open(out, "w") as f:
    while not backend.client.exists(stop):
        for r in c.poll(max_records=50, timeout=0.05):
            f.write(json.dumps([r.partition, r.key, r.payload, time.monotonic_ns()]) + "\\n")
        f.flush()
c.close()
topic.close()
backend.close()
"""


def test_two_processes_share_a_group(backends: Callable[..., RedisStreams], tmp_path: Path) -> None:
    """Two consumer processes in one group: no record twice, none lost, per-key order."""
    import json

    backend = backends()
    producer = Topic("ev", partitions=4, backend=backend)
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(_CHILD))
    stop = backend.key("t", "ev", "test-stop")
    outs = [tmp_path / f"out{i}.jsonl" for i in range(2)]
    procs = [
        subprocess.Popen([sys.executable, str(script), backend.url, backend.prefix, str(o), stop])
        for o in outs
    ]
    try:
        keys = [f"k{i}" for i in range(12)]
        n = 60
        for i in range(n):
            producer.publish_many([Message(i, key=k) for k in keys])
            if i % 10 == 0:
                time.sleep(0.05)  # the children join while records arrive
        deadline = time.monotonic() + 30
        while sum(producer.lag("g").values()) or any(
            v is None for v in producer.committed("g").values()
        ):
            assert time.monotonic() < deadline, producer.lag("g")
            assert all(p.poll() is None for p in procs)
            time.sleep(0.05)
        backend.client.set(stop, 1)
        for p in procs:
            assert p.wait(30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    rows = []
    for i, o in enumerate(outs):
        for line in o.read_text().splitlines():
            part, key, payload, ts = json.loads(line)
            rows.append((ts, i, part, key, payload))
    rows.sort()
    per_key: dict[str, list[int]] = collections.defaultdict(list)
    for _, _, _, key, payload in rows:
        per_key[key].append(payload)
    assert per_key == {k: list(range(n)) for k in keys}  # once each, in order
    producer.close()


_SLOW_CHILD = """
import json, sys, time
import fastq
from fastq.backends import RedisStreams

url, prefix, out = sys.argv[1:4]
backend = RedisStreams(url, prefix=prefix, session_timeout=1.0)
topic = fastq.Topic("ev", partitions=2, backend=backend)
c = topic.consumer("g")
with open(out, "w") as f:
    while True:
        for r in c.poll(max_records=5, timeout=0.05):
            f.write(json.dumps([r.key, r.payload]) + "\\n")
            f.flush()
            time.sleep(0.01)
"""


def test_a_killed_process_partitions_are_taken_over(
    backends: Callable[..., RedisStreams], tmp_path: Path
) -> None:
    """SIGKILL a consumer process mid-stream: after its session runs out another member takes
    its partitions over from the committed offsets; every record is delivered (at least once),
    each key in order from where the dead process's commits left it."""
    import json

    backend = backends(session_timeout=1.0)
    topic = Topic("ev", partitions=2, backend=backend)
    keys = ["a", "b", "c"]
    topic.publish_many([Message(i, key=k) for i in range(100) for k in keys])
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(_SLOW_CHILD))
    out = tmp_path / "child.jsonl"
    proc = subprocess.Popen([sys.executable, str(script), backend.url, backend.prefix, str(out)])
    try:
        deadline = time.monotonic() + 30
        while not out.exists() or len(out.read_text().splitlines()) < 30:
            assert time.monotonic() < deadline
            assert proc.poll() is None
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    killed = time.monotonic()
    child = [json.loads(line) for line in out.read_text().splitlines()]
    committed = topic.committed("g")
    c = topic.consumer("g")
    got: list[Any] = []
    while sum(topic.lag("g").values()):
        got += c.poll(max_records=50, timeout=0.1)
        assert time.monotonic() - killed < 10, topic.lag("g")
    took = time.monotonic() - killed
    mine: dict[str, list[int]] = collections.defaultdict(list)
    for r in got:
        mine[r.key].append(r.payload)
    theirs: dict[str, list[int]] = collections.defaultdict(list)
    for key, payload in child:
        theirs[key].append(payload)
    for k in keys:
        # the child's deliveries, then ours from the committed offset on: nothing lost
        assert theirs[k] == list(range(len(theirs[k])))
        assert mine[k] == list(range(mine[k][0], 100)), k
        assert mine[k][0] <= len(theirs[k])  # resumed at or before where the child was
    # the child's commits stand: nothing it committed is delivered again
    for p, off in committed.items():
        first = min((r.offset for r in got if r.partition == p), default=None)
        assert off is None or first is None or first >= off
    assert took < 10
    c.close()
    topic.close()


# ---- retention ----------------------------------------------------------------------------


def test_retention_seconds_trims_with_minid(redis_backend: RedisStreams) -> None:
    t = Topic("ev", partitions=1, backend=redis_backend, retention_seconds=0.3)
    t.publish_many(range(5))
    c = t.consumer("g", auto_commit=False)
    assert payloads(c.poll(max_records=2)) == [0, 1]
    c.commit()
    time.sleep(0.4)
    t.publish(5)  # trims what is older than 0.3 s (never the newest)
    assert t.start_offsets() == {0: 5}
    assert t.end_offsets() == {0: 6}
    assert redis_backend.client.xlen(redis_backend.key("t", "ev", "0")) == 1
    assert t.lag("g") == {0: 1}  # from the retained start
    # a position below the start follows reset (earliest by default)
    assert payloads(c.poll()) == [5]
    c.close()
    time.sleep(0.4)
    t.publish(6)
    time.sleep(0.4)
    t.publish(7)
    assert t.start_offsets() == {0: 7}  # the newest stays
    assert payloads(drain(t.consumer("g2"))) == [7]
    t.close()


@pytest.mark.parametrize(("reset", "expected"), [("earliest", [3, 4]), ("latest", [])])
def test_committed_below_start_follows_reset(
    redis_backend: RedisStreams, reset: str, expected: list[int]
) -> None:
    t = Topic("ev", partitions=1, backend=redis_backend, retention_seconds=0.2)
    t.publish_many(range(3))
    t._parts[0].commit("g", 1)
    time.sleep(0.3)
    t.publish_many([3, 4])
    assert t.start_offsets() == {0: 3}
    assert payloads(drain(t.consumer("g", reset=reset))) == expected
    t.close()


def test_committed_below_start_raise(redis_backend: RedisStreams) -> None:
    t = Topic("ev", partitions=1, backend=redis_backend, retention_seconds=0.2)
    t.publish_many(range(3))
    t._parts[0].commit("g", 1)
    time.sleep(0.3)
    t.publish(3)
    c = t.consumer("g", reset="raise")
    with pytest.raises(OffsetOutOfRange, match="retention"):
        c.poll()
    c.seek(0, 3)
    assert payloads(c.poll()) == [3]
    t.close()


def test_trimmed_to_empty_keeps_the_end(redis_backend: RedisStreams) -> None:
    t = Topic("ev", partitions=1, backend=redis_backend)
    t.publish_many(range(4))
    redis_backend.client.xtrim(redis_backend.key("t", "ev", "0"), maxlen=0)
    assert t.start_offsets() == {0: 4}
    assert t.end_offsets() == {0: 4}
    assert t.lag("g") == {0: 0}
    assert t.publish(4) == (0, 4)
    assert payloads(drain(t.consumer("g"))) == [4]
    t.close()


# ---- capabilities, statistics, lifecycle ------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "capability"),
    [
        ({"path": "/tmp/x"}, "path="),
        ({"sync": "always"}, "sync="),
        ({"segment_bytes": 1 << 20}, "segment_bytes="),
        ({"retention_bytes": 1000}, "retention_bytes="),
    ],
)
def test_unsupported_options(
    redis_backend: RedisStreams, kw: dict[str, Any], capability: str
) -> None:
    with pytest.raises(fastq.Unsupported, match="redis") as info:
        Topic("ev", partitions=2, backend=redis_backend, **kw)
    assert info.value.capability == capability
    assert isinstance(info.value, NotImplementedError)
    assert redis_backend.client.keys("*") == []  # refused before anything was stored


def test_every_process_must_use_the_same_partition_count(redis_backend: RedisStreams) -> None:
    Topic("ev", partitions=4, backend=redis_backend).close()
    with pytest.raises(ValueError, match="4 partitions, not 8"):
        Topic("ev", partitions=8, backend=redis_backend)
    Topic("ev", partitions=4, backend=redis_backend).delete()
    Topic("ev", partitions=8, backend=redis_backend).close()  # a new topic after delete


def test_bad_backend_argument() -> None:
    with pytest.raises(TypeError, match="backend"):
        Topic("ev", backend=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="redis://"):
        Topic("ev", backend="http://127.0.0.1:1/")


def test_statistics(backends: Callable[..., RedisStreams]) -> None:
    t1 = Topic("ev", partitions=2, backend=backends())
    t2 = Topic("ev", partitions=2, backend=backends())
    a = t1.consumer("g", auto_commit=False)
    b = t2.consumer("g", auto_commit=False)
    settle(a, b)
    t1.publish_many(range(10), key="a")
    owner = a if fastq.partition("a", 2) in a.assignment() else b
    owner.poll(max_records=4)
    owner.commit()
    s = t2.statistics()
    assert s.records == 10
    assert s.end_offsets == {fastq.partition("a", 2): 10, 1 - fastq.partition("a", 2): 0}
    g = s.groups["g"]
    assert g.members == 2  # members in every process
    assert g.total_lag == 6
    assert g.oldest_uncommitted_age is not None
    assert 0 <= g.oldest_uncommitted_age < 60
    a.close()
    assert t2.group_statistics("g").members == 1
    assert "other" not in t2.statistics().groups
    b.close()
    t1.close()
    t2.close()


def test_close_keeps_the_records_and_delete_drops_them(
    backends: Callable[..., RedisStreams],
) -> None:
    backend = backends()
    t = Topic("ev", partitions=2, backend=backend)
    t.publish_many(range(4))
    c = t.consumer("g")
    drain(c)
    t.close()
    with pytest.raises(fastq.Closed):
        c.poll()
    t2 = Topic("ev", partitions=2, backend=backend)
    assert sum(t2.end_offsets().values()) == 4
    assert t2.committed("g") == {0: 2, 1: 2}
    t2.delete()
    assert backend.client.keys(f"{backend.prefix}:t:*") == []
    assert Topic("ev", partitions=2, backend=backend).end_offsets() == {0: 0, 1: 0}


def test_consumer_pool_over_a_redis_topic(redis_backend: RedisStreams) -> None:
    t = Topic("ev", partitions=4, backend=redis_backend)
    t.publish_many([Message(i, key=f"k{i % 7}") for i in range(200)])
    seen: dict[str, list[int]] = collections.defaultdict(list)
    lock = threading.Lock()

    def handler(m: Message) -> None:
        with lock:
            seen[m.key].append(m.payload)  # type: ignore[index]

    pool = fastq.ConsumerPool(t, handler, group="workers", concurrency=3)
    pool.start()
    try:
        deadline = time.monotonic() + 20
        while sum(t.lag("workers").values()):
            assert time.monotonic() < deadline, t.lag("workers")
            time.sleep(0.02)
    finally:
        assert pool.stop(timeout=20)
    assert {k: v for k, v in seen.items()} == {
        f"k{j}": [i for i in range(200) if i % 7 == j] for j in range(7)
    }
    assert t.committed("workers") == t.end_offsets()
    t.close()


def test_start_from_datetime_on_redis(redis_backend: RedisStreams) -> None:
    t = Topic("ev", partitions=1, backend=redis_backend)
    first = [Message(i) for i in range(5)]
    t.publish_many(first)
    cut = first[-1].timestamp + 500_000  # microsecond datetimes: cut well between the two
    while time.time_ns() <= cut + 500_000:
        pass
    t.publish_many(range(5, 8))
    when = dt.datetime.fromtimestamp(cut / 1e9, tz=dt.timezone.utc)
    assert t._parts[0].offset_for_time(cut) == 5
    assert payloads(drain(t.consumer("g", start=when))) == [5, 6, 7]
    t.close()
