"""DedupWindow against DedupModel (tests/models.py), one thread, a fake clock.

Every rule runs on both and compares: seen, seen_many (lists and tuples, with repeats inside
the batch), contains / ``in``, forget, clear, len, statistics (size and every counter), the
clock moving forwards and backwards (the window clamps it), and a snapshot round trip
(``from_bytes(to_bytes(), clock=<the same fake clock>, elapsed=...)`` replaces the window; the
model keeps each key's remaining lifetime the same way). Windows are tiny (max_keys 1..8) and
the key alphabet small, so repeats, evictions and expiries happen within a few steps; each key
comes in several spellings (bytes, bytearray, memoryview, str, int) that must be one key.

Three machines: fingerprint mode (64-bit fingerprints), exact mode, and exact mode with
fingerprints cut to 2 bits (the private ``_fingerprint_bits`` hook), where nearly every pair of
keys collides and only the stored key bytes keep them apart. Clock readings, ttls and elapsed
times are multiples of 1/4, so the model's float arithmetic is exact.

Hypothesis prints the failing rule sequence; replay it with the printed @reproduce_failure.
FASTQ_STRESS_SCALE scales the number of examples.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any, ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from models import DedupModel, ManualClock, dedup_key_bytes

from fastq import DedupWindow

STRESS_SCALE = float(os.environ.get("FASTQ_STRESS_SCALE", "1"))
TTLS = [0.5, 1.0, 2.5, 10.0, math.inf]
STEPS = [0.0, 0.25, 0.5, 1.0, 2.5, 10.0, -0.25, -1.0, -20.0]  # negative: the clock goes back
BASES = [
    b"a",
    b"b",
    b"",
    b"\x00",
    (7).to_bytes(8, "little"),
    (2**64 - 1).to_bytes(8, "little"),
    "é€".encode(),
    b"k" * 40,
    b"\xff\xfe",  # not UTF-8: no str spelling
]


def spellings(base: bytes) -> list[Any]:
    """Ways of passing the key `base`: every one must be the same key."""
    out: list[Any] = [base, bytearray(base), memoryview(base)]
    with contextlib.suppress(UnicodeDecodeError):
        out.append(base.decode("utf-8"))
    if len(base) == 8:
        out.append(int.from_bytes(base, "little"))
        out.append(int.from_bytes(base, "little", signed=True))
    return out


KEYS = st.sampled_from(BASES).flatmap(lambda b: st.sampled_from(spellings(b)))


class DedupMachine(RuleBasedStateMachine):
    exact: ClassVar[bool] = False
    bits: ClassVar[int] = 64

    window: DedupWindow
    model: DedupModel

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(0.0)

    @property
    def now(self) -> float:
        return self.clock.t[0]

    @initialize(
        ttl=st.sampled_from(TTLS),
        max_keys=st.integers(1, 8),
        start=st.sampled_from([0.0, -5.0, 1000.0]),
    )
    def create(self, ttl: float, max_keys: int, start: float) -> None:
        self.clock.set(start)
        self.window = DedupWindow(
            ttl, max_keys, exact=self.exact, clock=self.clock, _fingerprint_bits=self.bits
        )
        self.model = DedupModel(ttl, max_keys)

    # ---- rules ---------------------------------------------------------------------------

    @rule(key=KEYS)
    def seen(self, key: Any) -> None:
        want = self.model.seen(dedup_key_bytes(key), self.now)
        assert self.window.seen(key) is want, (key, self.now)

    @rule(keys=st.lists(KEYS, max_size=12), as_tuple=st.booleans())
    def seen_many(self, keys: list[Any], as_tuple: bool) -> None:
        want = self.model.seen_many([dedup_key_bytes(k) for k in keys], self.now)
        got = self.window.seen_many(tuple(keys) if as_tuple else keys)
        assert got.dtype == bool
        assert got.tolist() == want, (keys, self.now)

    @rule(key=KEYS, use_in=st.booleans())
    def contains(self, key: Any, use_in: bool) -> None:
        want = self.model.contains(dedup_key_bytes(key), self.now)
        got = (key in self.window) if use_in else self.window.contains(key)
        assert got is want, (key, self.now)

    @rule(key=KEYS)
    def forget(self, key: Any) -> None:
        want = self.model.forget(dedup_key_bytes(key), self.now)
        assert self.window.forget(key) is want, (key, self.now)

    @rule()
    def clear(self) -> None:
        self.window.clear()
        self.model.clear()

    @rule(step=st.sampled_from(STEPS))
    def move_clock(self, step: float) -> None:
        self.clock.advance(step)

    @rule(step=st.sampled_from(STEPS))
    def move_clock_to_an_expiry(self, step: float) -> None:
        """Land exactly on (or a quarter around) the oldest key's expiry, when it has one."""
        if self.model.entries:
            first = next(iter(self.model.entries.values()))
            if math.isfinite(first):
                self.clock.set(first + (step if abs(step) <= 0.25 else 0.0))

    @rule()
    def length(self) -> None:
        assert len(self.window) == self.model.len(self.now)

    @rule()
    def statistics(self) -> None:
        s = self.window.statistics()
        m = self.model
        want = (m.len(self.now), m.inserted, m.hits, m.evictions, m.expiries)
        assert (s.size, s.inserted, s.hits, s.evictions, s.expiries) == want
        assert (s.ttl, s.max_keys, s.exact) == (m.ttl, m.max_keys, self.exact)
        if not self.exact:
            assert s.memory_bytes <= 32 * m.max_keys + 65536

    @rule(elapsed=st.sampled_from([0.0, 0.0, 0.0, 0.25, 1.0]))
    def snapshot_and_restore(self, elapsed: float) -> None:
        data = self.window.to_bytes()
        snap = self.model.snapshot(self.now)
        self.window = DedupWindow.from_bytes(data, clock=self.clock, elapsed=elapsed)
        self.model = self.model.restored(snap, self.now, elapsed)
        assert (self.window.ttl, self.window.max_keys, self.window.exact) == (
            self.model.ttl,
            self.model.max_keys,
            self.exact,
        )

    # ---- invariants ----------------------------------------------------------------------

    @invariant()
    def size_agrees_and_is_bounded(self) -> None:
        if not hasattr(self, "window"):
            return
        size = self.model.len(self.now)
        assert len(self.window) == size <= self.model.max_keys
        assert f"size={size}" in repr(self.window)

    def teardown(self) -> None:
        # every key of the alphabet, in every spelling, is where the model says it is
        if not hasattr(self, "window"):
            return
        for base in BASES:
            want = self.model.contains(base, self.now)
            for key in spellings(base):
                assert self.window.contains(key) is want, key


class FingerprintMachine(DedupMachine):
    exact = False
    bits = 64


class ExactMachine(DedupMachine):
    exact = True
    bits = 64


class ExactCollidingMachine(DedupMachine):
    exact = True
    bits = 2


SETTINGS = settings(
    max_examples=max(1, int(200 * STRESS_SCALE)),
    stateful_step_count=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

TestDedupFingerprintAgainstModel = FingerprintMachine.TestCase
TestDedupFingerprintAgainstModel.settings = SETTINGS
TestDedupExactAgainstModel = ExactMachine.TestCase
TestDedupExactAgainstModel.settings = SETTINGS
TestDedupExactCollidingAgainstModel = ExactCollidingMachine.TestCase
TestDedupExactCollidingAgainstModel.settings = SETTINGS
