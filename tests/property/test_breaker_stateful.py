"""CircuitBreaker against a naive model (a list of timestamped outcomes instead of a bucket
ring), one thread, a FakeClock, random operations."""

from __future__ import annotations

import math

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fastq import FakeClock
from fastq.errors import Permanent
from fastq.pipeline.breaker import CircuitBreaker

BUCKETS = 30


class BreakerModel:
    """The documented semantics, written the obvious way."""

    def __init__(self, rate: float, min_calls: int, window: float, reset: float, probes: int):
        self.rate, self.min_calls, self.reset_timeout, self.probes = rate, min_calls, reset, probes
        self.width = window / BUCKETS
        self.state = "closed"
        self.events: list[tuple[float, bool]] = []
        self.opened_at = 0.0
        self.permits = self.trial_calls = self.trial_failures = 0

    def window(self, now: float) -> list[tuple[float, bool]]:
        head = math.floor(now / self.width)
        return [(t, f) for t, f in self.events if head - math.floor(t / self.width) < BUCKETS]

    def poll(self, now: float) -> None:
        if self.state == "open" and now >= self.opened_at + self.reset_timeout:
            self.state = "half_open"
            self.permits = self.trial_calls = self.trial_failures = 0

    def allow(self, now: float) -> bool:
        self.poll(now)
        if self.state == "closed":
            return True
        if self.state == "half_open" and self.permits < self.probes:
            self.permits += 1
            return True
        return False

    def record(self, now: float, failed: bool) -> None:
        self.poll(now)
        if self.state == "closed":
            self.events = [*self.window(now), (now, failed)]
            calls, failures = len(self.events), sum(f for _, f in self.events)
            if calls >= self.min_calls and failures >= self.rate * calls:
                self.state, self.opened_at = "open", now
        elif self.state == "half_open" and self.trial_calls < self.permits:
            self.trial_calls += 1
            self.trial_failures += failed
            if self.trial_failures >= self.rate * self.probes:
                self.state, self.opened_at = "open", now
            elif self.trial_calls >= self.probes:
                self.close()

    def give_back(self, now: float) -> None:
        self.poll(now)
        if self.state == "half_open" and self.permits > self.trial_calls:
            self.permits -= 1

    def close(self) -> None:
        self.state = "closed"
        self.events = []
        self.permits = self.trial_calls = self.trial_failures = 0

    def counts(self, now: float) -> tuple[int, int]:
        self.poll(now)
        if self.state == "closed":
            events = self.window(now)
            return len(events), sum(f for _, f in events)
        if self.state == "half_open":
            return self.trial_calls, self.trial_failures
        return 0, 0


class BreakerMachine(RuleBasedStateMachine):
    @initialize(
        rate=st.sampled_from([0.25, 0.5, 1.0]),
        min_calls=st.integers(1, 6),
        window=st.sampled_from([3.0, 7.5]),
        reset=st.sampled_from([0.0, 0.5, 2.0]),
        probes=st.integers(1, 4),
    )
    def setup(self, rate: float, min_calls: int, window: float, reset: float, probes: int) -> None:
        self.clock = FakeClock()
        self.breaker = CircuitBreaker(
            rate, min_calls, window, reset, half_open_calls=probes, clock=self.clock
        )
        self.model = BreakerModel(rate, min_calls, window, reset, probes)

    @rule(dt=st.sampled_from([0.0, 0.05, 0.25, 0.5, 1.0, 2.5, 10.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule()
    def allow(self) -> None:
        assert self.breaker.allow() == self.model.allow(self.clock())

    @rule(failed=st.booleans())
    def record(self, failed: bool) -> None:
        if failed:
            self.breaker.record_failure(ConnectionError())
        else:
            self.breaker.record_success()
        self.model.record(self.clock(), failed)

    @rule()
    def permanent(self) -> None:
        self.breaker.record_failure(Permanent("bad message"))
        self.model.give_back(self.clock())

    @rule()
    def release(self) -> None:
        self.breaker.release_permit()
        self.model.give_back(self.clock())

    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.model.close()

    @invariant()
    def same_state(self) -> None:
        now = self.clock()
        stats = self.breaker.statistics()
        assert stats.state == self.breaker.state
        calls, failures = self.model.counts(now)
        assert (stats.state, stats.calls, stats.failures) == (self.model.state, calls, failures)
        expected = (
            max(0.0, self.model.opened_at + self.model.reset_timeout - now)
            if self.model.state == "open"
            else 0.0
        )
        assert stats.retry_after == expected


TestBreakerStateful = BreakerMachine.TestCase
TestBreakerStateful.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
