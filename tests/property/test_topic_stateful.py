"""Topic consumer groups against a model: one thread, random publishes and membership changes.

Rules: publish and publish_many (keys from a small set, plus keyless), members of group "g"
joining (auto_commit on or off), leaving, polling (small max_records), committing, and a second
group "h" polling and committing on its own; a drain rule makes every member poll until
nothing is left. After every step:

- each partition is owned by at most one member of a group;
- per key, a group's deliveries (in poll order across its members) follow publish order: no
  record is delivered before every earlier record of its key was delivered at least once, and
  a record delivered again is never below the committed offset that the takeover resumed from
  (redelivery only of uncommitted records);
- committed offsets never move back, and never pass what was delivered;
- after a drain every published record has been delivered to each group (nothing lost).

Hypothesis prints the failing rule sequence; FASTQ_STRESS_SCALE scales the number of examples.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import fastq
from fastq import Consumer, Topic

STRESS_SCALE = float(os.environ.get("FASTQ_STRESS_SCALE", "1"))
KEYS = ["a", "b", "c", "d", None]
PARTS = 3
GROUPS = ("g", "h")


class TopicMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.topic = Topic("t", partitions=PARTS)
        self.members: dict[str, list[Consumer]] = {g: [] for g in GROUPS}
        self.n = 0
        # (partition, offset) -> (key, payload), in publish order per partition
        self.published: dict[tuple[int, int], tuple[object, int]] = {}
        self.delivered: dict[str, set[tuple[int, int]]] = {g: set() for g in GROUPS}
        self.redelivered = 0
        self.last_committed: dict[str, dict[int, int]] = {g: {} for g in GROUPS}

    # ---- publishing ---------------------------------------------------------------------------

    def _record(self, placed: tuple[int, int], key: object, payload: int) -> None:
        p, off = placed
        assert (p, off) not in self.published
        if key is not None:
            assert p == fastq.partition(key, PARTS)
        self.published[(p, off)] = (key, payload)

    @rule(key=st.sampled_from(KEYS))
    def publish(self, key: object) -> None:
        self.n += 1
        self._record(self.topic.publish(self.n, key=key), key, self.n)

    @rule(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=6))
    def publish_many(self, keys: list[object]) -> None:
        msgs = []
        for k in keys:
            self.n += 1
            msgs.append(fastq.Message(self.n, key=k))
        placed = self.topic.publish_many(msgs)
        assert len(placed) == len(msgs)
        for pl, m in zip(placed, msgs, strict=True):
            self._record(pl, m.key, m.payload)

    # ---- membership -----------------------------------------------------------------------------

    @rule(group=st.sampled_from(GROUPS), auto_commit=st.booleans())
    def join(self, group: str, auto_commit: bool) -> None:
        if len(self.members[group]) < 4:
            self.members[group].append(self.topic.consumer(group, auto_commit=auto_commit))

    @precondition(lambda self: any(self.members.values()))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        group = data.draw(st.sampled_from([g for g in GROUPS if self.members[g]]))
        i = data.draw(st.integers(0, len(self.members[group]) - 1))
        self.members[group].pop(i).close()

    @precondition(lambda self: any(self.members.values()))
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        group = data.draw(st.sampled_from([g for g in GROUPS if self.members[g]]))
        data.draw(st.sampled_from(self.members[group])).commit()

    @precondition(lambda self: any(self.members.values()))
    @rule(data=st.data(), max_records=st.integers(1, 4))
    def poll(self, data: st.DataObject, max_records: int) -> None:
        group = data.draw(st.sampled_from([g for g in GROUPS if self.members[g]]))
        member = data.draw(st.sampled_from(self.members[group]))
        self._poll(group, member, max_records)

    def _poll(self, group: str, member: Consumer, max_records: int) -> int:
        committed_before = self.topic.committed(group)
        records = member.poll(max_records)
        assert len(records) <= max_records
        seen = self.delivered[group]
        owned = set(member.assignment())
        for r in records:
            where = (r.partition, r.offset)
            assert r.partition in owned
            assert where in self.published, where
            assert (r.key, r.payload) == self.published[where]
            if r.offset > 0:
                # per key (and per partition): the previous record was delivered before
                assert (r.partition, r.offset - 1) in seen, (where, sorted(seen))
            if where in seen:
                self.redelivered += 1
                c = committed_before[r.partition]
                assert c is None or r.offset >= c, (where, c)
            seen.add(where)
        return len(records)

    @rule()
    def drain(self) -> None:
        for group in GROUPS:
            if not self.members[group]:
                self.members[group].append(self.topic.consumer(group))
            idle_rounds = 0
            for _ in range(1000):
                got = sum(self._poll(group, m, 50) for m in self.members[group])
                idle_rounds = idle_rounds + 1 if got == 0 else 0
                if idle_rounds == 2:
                    break
            assert self.delivered[group] >= set(self.published), (
                group,
                sorted(set(self.published) - self.delivered[group]),
            )

    # ---- invariants -----------------------------------------------------------------------------

    @invariant()
    def one_owner_per_partition(self) -> None:
        for group in GROUPS:
            owned = [p for m in self.members[group] for p in m.assignment()]
            assert len(owned) == len(set(owned)), (group, owned)

    @invariant()
    def committed_monotonic_and_not_past_delivery(self) -> None:
        for group in GROUPS:
            for p, c in self.topic.committed(group).items():
                last = self.last_committed[group].get(p)
                if c is None:
                    assert last is None
                    continue
                assert last is None or c >= last, (group, p, last, c)
                self.last_committed[group][p] = c
                # everything below the committed offset was delivered to the group
                assert all((p, o) in self.delivered[group] for o in range(c)), (group, p, c)

    def teardown(self) -> None:
        try:
            self.drain()
        finally:
            self.topic.close()


TopicMachine.TestCase.settings = settings(
    max_examples=int(100 * STRESS_SCALE),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_topic_groups = TopicMachine.TestCase
