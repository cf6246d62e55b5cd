"""SegmentLog against a list-of-records model: append, append_many, read, reopen, rolls,
commits, truncate_before, offset_for_time and flush, every read compared byte for byte.

Each example gets its own directory and the smallest segment (16 KiB), so the large appends
roll often and truncate_before has whole segments to drop. Hypothesis prints the failing rule
sequence; replay it with the printed @reproduce_failure. FASTQ_STRESS_SCALE scales the examples.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fastq import OffsetOutOfRange, Record, SegmentLog

SEG = 16384
MAX_RECORD = SEG - 8192 - 32
STRESS_SCALE = float(os.environ.get("FASTQ_STRESS_SCALE", "1"))
INT64 = st.integers(-(2**63), 2**63 - 1)
VALUES = st.binary(max_size=300)
KEYS = st.none() | st.binary(max_size=24)
TIMESTAMPS = st.none() | INT64
GROUPS = st.sampled_from(["billing", "audit", "ünï"])


@dataclass(frozen=True)
class Rec:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes


def expected_read(records: list[Rec], max_records: int, max_bytes: int | None) -> list[Rec]:
    """What read() returns: up to max_records, and up to max_bytes of key + value, but at
    least one record when there is one."""
    out: list[Rec] = []
    budget = max_bytes
    for rec in records:
        if len(out) == max_records:
            break
        size = len(rec.value) + (len(rec.key) if rec.key is not None else 0)
        if budget is not None:
            if out and size > budget:
                break
            budget -= min(size, budget)
        out.append(rec)
    return out


def as_model(records: list[Record]) -> list[Rec]:
    return [Rec(r.offset, r.timestamp, r.key, r.value) for r in records]


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="fastq-log-stateful-")
        self.model: list[Rec] = []
        self.start = 0  # the offset of model[0]: everything before it was truncated
        self.commits: dict[str, int] = {}
        self.sync = "none"
        self.log: SegmentLog | None = None

    # ---- helpers -------------------------------------------------------------------------

    @property
    def lg(self) -> SegmentLog:
        assert self.log is not None
        return self.log

    @property
    def end(self) -> int:
        return self.start + len(self.model)

    def segment_bases(self) -> list[int]:
        return sorted(int(n[:-4]) for n in os.listdir(self.directory) if n.endswith(".log"))

    def learn(
        self, first: int, items: list[tuple[bytes, bytes | None, int | None]], t0: int, t1: int
    ) -> None:
        """Add appended records to the model; a wall-clock timestamp (None) is read back and
        must lie in the window [t0, t1] around the append."""
        got = self.lg.read(first, max_records=len(items)) if items else []
        assert len(got) == len(items)
        for i, (value, key, ts) in enumerate(items):
            rec = got[i]
            assert rec.offset == first + i
            if ts is None:
                assert t0 <= rec.timestamp <= t1, (t0, rec.timestamp, t1)
                ts = rec.timestamp
            self.model.append(Rec(first + i, ts, key, value))

    # ---- rules ---------------------------------------------------------------------------

    @initialize(sync=st.sampled_from(["none", "none", "always"]))
    def open_log(self, sync: str) -> None:
        self.sync = sync
        self.log = SegmentLog(self.directory, segment_bytes=SEG, sync=sync)

    @rule(value=VALUES, key=KEYS, ts=TIMESTAMPS)
    def append(self, value: bytes, key: bytes | None, ts: int | None) -> None:
        t0 = time.time_ns()
        off = self.lg.append(value, key=key, timestamp=ts)
        t1 = time.time_ns()
        assert off == self.end
        self.learn(off, [(value, key, ts)], t0, t1)

    @rule(
        size=st.integers(3000, MAX_RECORD),
        seed=st.integers(0, 2**32 - 1),
        key=st.none() | st.binary(max_size=8),
    )
    def append_large(self, size: int, seed: int, key: bytes | None) -> None:
        """Two or three of these fill a segment: rolls, and exact fits at the largest size."""
        klen = len(key) if key is not None else 0
        value = random.Random(seed).randbytes(size - klen)
        t0 = time.time_ns()
        off = self.lg.append(value, key=key)
        t1 = time.time_ns()
        assert off == self.end
        self.learn(off, [(value, key, None)], t0, t1)

    @rule(
        items=st.lists(st.tuples(VALUES, KEYS, TIMESTAMPS), max_size=8),
        with_keys=st.booleans(),
        with_timestamps=st.booleans(),
        as_tuple=st.booleans(),
    )
    def append_many(
        self,
        items: list[tuple[bytes, bytes | None, int | None]],
        with_keys: bool,
        with_timestamps: bool,
        as_tuple: bool,
    ) -> None:
        if not with_keys:
            items = [(v, None, ts) for v, _, ts in items]
        if not with_timestamps:
            items = [(v, k, None) for v, k, _ in items]
        values = [v for v, _, _ in items]
        t0 = time.time_ns()
        first = self.lg.append_many(
            tuple(values) if as_tuple else values,
            keys=[k for _, k, _ in items] if with_keys else None,
            timestamps=[ts for _, _, ts in items] if with_timestamps else None,
        )
        t1 = time.time_ns()
        assert first == self.end
        before = len(self.model)
        self.learn(first, items, t0, t1)
        if not with_timestamps:  # one clock reading for the whole batch
            assert len({r.timestamp for r in self.model[before:]}) <= 1

    @rule(
        data=st.data(),
        max_records=st.integers(1, 50),
        max_bytes=st.none() | st.integers(0, 2000),
    )
    def read(self, data: st.DataObject, max_records: int, max_bytes: int | None) -> None:
        offset = data.draw(st.integers(self.start, self.end), label="offset")
        got = as_model(self.lg.read(offset, max_records=max_records, max_bytes=max_bytes))
        want = expected_read(self.model[offset - self.start :], max_records, max_bytes)
        assert got == want

    @rule(below=st.booleans(), distance=st.integers(1, 3))
    def read_out_of_range(self, below: bool, distance: int) -> None:
        offset = self.start - distance if below else self.end + distance
        with pytest.raises(OffsetOutOfRange, match=rf"{self.start}\.\.{self.end}"):
            self.lg.read(offset)

    @rule()
    def reopen(self) -> None:
        event(f"reopen with {min(len(self.segment_bases()), 3)}+ segments")
        self.lg.close()
        self.log = SegmentLog(self.directory, segment_bytes=SEG, sync=self.sync)
        assert self.lg.statistics()["bytes_truncated"] == 0  # a clean close leaves no tail

    @rule(group=GROUPS, data=st.data(), force=st.booleans())
    def commit(self, group: str, data: st.DataObject, force: bool) -> None:
        offset = data.draw(st.integers(0, self.end), label="offset")
        current = self.commits.get(group)
        if current is not None and offset < current and not force:
            with pytest.raises(ValueError, match="back"):
                self.lg.commit(group, offset)
        else:
            self.lg.commit(group, offset, force=force)
            self.commits[group] = offset
        assert self.lg.committed(group) == self.commits.get(group)

    @rule(data=st.data())
    def truncate_before(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.start, self.end), label="offset")
        bases = self.segment_bases()
        # whole segments wholly before `offset` go, never the active (last) one
        expected = max(b for b in bases if b <= offset)
        new_start = self.lg.truncate_before(offset)
        assert new_start == expected == self.lg.start_offset
        assert self.segment_bases() == [b for b in bases if b >= new_start]
        event("truncate_before dropped segments" if new_start > self.start else "dropped none")
        del self.model[: new_start - self.start]
        self.start = new_start

    @rule(data=st.data())
    def offset_for_time(self, data: st.DataObject) -> None:
        stamps = [r.timestamp for r in self.model]
        ts = data.draw(INT64 | st.sampled_from(stamps) if stamps else INT64, label="ts")
        want = next((r.offset for r in self.model if r.timestamp >= ts), self.end)
        assert self.lg.offset_for_time(ts) == want

    @rule()
    def flush(self) -> None:
        self.lg.flush()
        stats = self.lg.statistics()
        assert stats["durable_offset"] == self.end
        assert stats["failed"] is False

    # ---- invariants ----------------------------------------------------------------------

    @invariant()
    def offsets_match_the_model(self) -> None:
        if self.log is None:
            return
        assert self.lg.end_offset == self.end == len(self.model) + self.start
        assert self.lg.start_offset == self.start
        assert self.lg.segments == len(self.segment_bases())
        assert self.lg.groups() == self.commits

    @invariant()
    def every_record_matches_the_model(self) -> None:
        if self.log is None:
            return
        assert as_model(self.lg.read(self.start, max_records=10**6)) == self.model

    def teardown(self) -> None:
        try:
            if self.log is not None:
                assert as_model(list(self.lg.iter())) == self.model
                self.lg.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


TestLogAgainstModel = LogMachine.TestCase
TestLogAgainstModel.settings = settings(
    max_examples=max(1, int(60 * STRESS_SCALE)),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
