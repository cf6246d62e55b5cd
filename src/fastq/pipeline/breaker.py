"""CircuitBreaker: stop calling a downstream that keeps failing, then probe it before resuming.

States (resilience4j's model, with a time-based window):

- ``"closed"``: every call is allowed; outcomes go into a sliding window of the last ``window``
  seconds (30 buckets of ``window/30`` s: O(1) memory whatever the call rate). Once the window
  holds at least ``min_calls`` outcomes and ``failures / calls >= failure_rate``, it opens.
- ``"open"``: :meth:`CircuitBreaker.allow` says no for ``reset_timeout`` seconds; outcomes that
  still arrive (calls that started earlier) are ignored.
- ``"half_open"``: after ``reset_timeout`` the next read of :attr:`~CircuitBreaker.state` (or
  :meth:`~CircuitBreaker.allow`, ...) moves it here; there is no timer thread, the injected
  clock drives it. ``half_open_calls`` trial calls are permitted. The trial is judged with the
  same threshold as the closed state: it reopens (with a fresh ``reset_timeout``) as soon as
  ``failures / half_open_calls >= failure_rate`` (with the defaults: the 3rd failure of 5, and
  with ``half_open_calls=1`` any failure), and closes (empty window) once all
  ``half_open_calls`` outcomes are in below it.

Excluded errors (:class:`fastq.Permanent` always, plus ``exclude``) are *ignored*: neither a
failure nor a success (a bad message says nothing about the downstream); in half-open they give
their permit back. Calls refused while open are not recorded.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from ..errors import Permanent
from .retry import ExceptionMatcher, _matchers, _matches

__all__ = ("BreakerState", "CircuitBreaker", "CircuitBreakerStatistics")

BreakerState = Literal["closed", "open", "half_open"]
StateListener = Callable[[BreakerState, BreakerState], object]

_BUCKETS: Final = 30


@dataclass(frozen=True, slots=True)
class CircuitBreakerStatistics:
    """A snapshot of a :class:`CircuitBreaker` (``breaker.statistics()``)."""

    name: str | None
    state: BreakerState
    calls: int
    """Outcomes recorded in the current window (closed) or trial (half-open)."""
    failures: int
    """Failures among ``calls``."""
    failure_rate: float
    """``failures / calls`` (0.0 when there are no calls)."""
    opened_total: int
    """How many times the breaker has opened."""
    last_opened_at: float | None
    """Clock time of the last opening (None if never)."""
    retry_after: float
    """Seconds until an open breaker turns half-open (0.0 when not open)."""
    rejected_total: int
    """Calls refused by :meth:`CircuitBreaker.allow`."""
    ignored_total: int
    """Outcomes ignored: excluded errors, and outcomes arriving while open."""


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _seconds(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result) or result < 0 or (positive and result == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return result


class CircuitBreaker:
    """A failure-rate circuit breaker over a time-based sliding window. Thread-safe: every
    method takes one lock for a few operations; state-change listeners run outside it.

    The pool calls :meth:`allow` before taking work (False: leave messages parked in the
    queue), then :meth:`record_success` or :meth:`record_failure` for each permitted call
    (or :meth:`release_permit` if it never ran).
    """

    def __init__(
        self,
        failure_rate: float = 0.5,
        min_calls: int = 20,
        window: float = 30.0,
        reset_timeout: float = 10.0,
        *,
        half_open_calls: int = 5,
        exclude: ExceptionMatcher | tuple[ExceptionMatcher, ...] = (),
        clock: Callable[[], float] | None = None,
        name: str | None = None,
    ) -> None:
        if isinstance(failure_rate, bool) or not isinstance(failure_rate, (int, float)):
            raise TypeError(f"failure_rate must be a number, got {type(failure_rate).__name__}")
        if not 0 < failure_rate <= 1:  # also rejects NaN
            raise ValueError(f"failure_rate must be in (0, 1], got {failure_rate!r}")
        self._failure_rate = float(failure_rate)
        self._min_calls = _positive_int("min_calls", min_calls)
        self._window = _seconds("window", window, positive=True)
        self._reset_timeout = _seconds("reset_timeout", reset_timeout, positive=False)
        self._half_open_calls = _positive_int("half_open_calls", half_open_calls)
        types, predicates = _matchers("exclude", exclude)
        self._exclude_types: tuple[type[BaseException], ...] = (Permanent, *types)
        self._exclude_predicates = predicates
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, got {clock!r}")
        self._clock: Callable[[], float] = clock if clock is not None else time.monotonic
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        self.name = name

        self._lock = threading.Lock()
        self._listeners: list[StateListener] = []
        self._state: BreakerState = "closed"
        # closed: ring of buckets; bucket i covers [i*width, (i+1)*width) of clock time
        self._width = self._window / _BUCKETS
        self._bucket_calls = [0] * _BUCKETS
        self._bucket_failures = [0] * _BUCKETS
        self._head = math.floor(self._clock() / self._width)  # newest bucket's index
        self._calls = 0
        self._failures = 0
        # open
        self._opened_at = 0.0
        self._opened_total = 0
        self._last_opened_at: float | None = None
        # half-open trial
        self._permits = 0  # permits handed out in this trial
        self._trial_calls = 0
        self._trial_failures = 0
        self._rejected = 0
        self._ignored = 0

    # -- configuration --------------------------------------------------------------------------

    @property
    def failure_rate(self) -> float:
        return self._failure_rate

    @property
    def min_calls(self) -> int:
        return self._min_calls

    @property
    def window(self) -> float:
        return self._window

    @property
    def reset_timeout(self) -> float:
        return self._reset_timeout

    @property
    def half_open_calls(self) -> int:
        return self._half_open_calls

    # -- the calls the pool makes ---------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """``"closed"``, ``"open"`` or ``"half_open"`` (an expired open turns half-open here)."""
        with self._lock:
            changes = self._poll()
            state = self._state
        self._notify(changes)
        return state

    def allow(self) -> bool:
        """May one call go ahead now? Closed: yes. Open: no. Half-open: yes while trial
        permits remain (each True is one permit: record its outcome or release it)."""
        with self._lock:
            changes = self._poll()
            if self._state == "closed":
                ok = True
            elif self._state == "half_open" and self._permits < self._half_open_calls:
                self._permits += 1
                ok = True
            else:
                self._rejected += 1
                ok = False
        self._notify(changes)
        return ok

    def record_success(self) -> None:
        """A permitted call succeeded."""
        self._record(False)

    def record_failure(self, exc: BaseException | None = None) -> None:
        """A permitted call failed with ``exc`` (None: an unspecified failure). Excluded errors
        (``fastq.Permanent`` and ``exclude``) are ignored instead."""
        if exc is not None and (
            isinstance(exc, self._exclude_types) or _matches(exc, (), self._exclude_predicates)
        ):
            with self._lock:
                changes = self._poll()
                self._ignored += 1
                if self._state == "half_open":
                    self._give_back()
            self._notify(changes)
            return
        self._record(True)

    def release_permit(self) -> None:
        """A permitted call did not run after all (shutdown, message released): in half-open
        its trial permit becomes available again; otherwise nothing happens."""
        with self._lock:
            if self._state == "half_open":
                self._give_back()

    def retry_after(self) -> float:
        """Seconds until an open breaker turns half-open; 0.0 when it is not open."""
        with self._lock:
            changes = self._poll()
            result = self._remaining() if self._state == "open" else 0.0
        self._notify(changes)
        return result

    def reset(self) -> None:
        """Back to closed with an empty window (counters of openings are kept)."""
        with self._lock:
            old = self._state
            self._close()
        changes: list[tuple[BreakerState, BreakerState]] = []
        if old != "closed":
            changes.append((old, "closed"))
        self._notify(changes)

    def on_state_change(self, listener: StateListener) -> StateListener:
        """Call ``listener(old, new)`` after every state change (from the thread that caused
        or observed it, outside the breaker's lock). Returns ``listener`` (decorator use).
        If listeners raise, all still run and the first error propagates to the caller."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        with self._lock:
            self._listeners.append(listener)
        return listener

    def statistics(self) -> CircuitBreakerStatistics:
        with self._lock:
            changes = self._poll()
            if self._state == "half_open":
                calls, failures = self._trial_calls, self._trial_failures
            elif self._state == "closed":
                self._advance(self._clock())
                calls, failures = self._calls, self._failures
            else:
                calls = failures = 0
            stats = CircuitBreakerStatistics(
                name=self.name,
                state=self._state,
                calls=calls,
                failures=failures,
                failure_rate=failures / calls if calls else 0.0,
                opened_total=self._opened_total,
                last_opened_at=self._last_opened_at,
                retry_after=self._remaining() if self._state == "open" else 0.0,
                rejected_total=self._rejected,
                ignored_total=self._ignored,
            )
        self._notify(changes)
        return stats

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<CircuitBreaker{label} {self._state}>"

    # -- internals (called with the lock held) ---------------------------------------------------

    def _record(self, failed: bool) -> None:
        with self._lock:
            changes = self._poll()
            if self._state == "closed":
                now = self._clock()
                self._advance(now)
                i = self._head % _BUCKETS
                self._bucket_calls[i] += 1
                self._calls += 1
                if failed:
                    self._bucket_failures[i] += 1
                    self._failures += 1
                if (
                    self._calls >= self._min_calls
                    and self._failures >= self._failure_rate * self._calls
                ):
                    self._open(now)
                    changes.append(("closed", "open"))
            elif self._state == "half_open" and self._trial_calls < self._permits:
                self._trial_calls += 1
                if failed:
                    self._trial_failures += 1
                if self._trial_failures >= self._failure_rate * self._half_open_calls:
                    self._open(self._clock())
                    changes.append(("half_open", "open"))
                elif self._trial_calls >= self._half_open_calls:
                    self._close()
                    changes.append(("half_open", "closed"))
            else:  # open, or a half-open outcome nobody was permitted: a call from before
                self._ignored += 1
        self._notify(changes)

    def _poll(self) -> list[tuple[BreakerState, BreakerState]]:
        if self._state == "open" and self._remaining() <= 0.0:
            self._state = "half_open"
            self._permits = self._trial_calls = self._trial_failures = 0
            return [("open", "half_open")]
        return []

    def _remaining(self) -> float:
        return max(0.0, self._opened_at + self._reset_timeout - self._clock())

    def _advance(self, now: float) -> None:
        """Move the ring's head to ``now``'s bucket, emptying the buckets that aged out."""
        head = math.floor(now / self._width)
        if head <= self._head:
            return
        for index in range(max(self._head + 1, head - _BUCKETS + 1), head + 1):
            i = index % _BUCKETS
            self._calls -= self._bucket_calls[i]
            self._failures -= self._bucket_failures[i]
            self._bucket_calls[i] = self._bucket_failures[i] = 0
        self._head = head

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._opened_total += 1
        self._last_opened_at = now

    def _close(self) -> None:
        self._state = "closed"
        self._bucket_calls = [0] * _BUCKETS
        self._bucket_failures = [0] * _BUCKETS
        self._calls = self._failures = 0
        self._head = math.floor(self._clock() / self._width)
        self._permits = self._trial_calls = self._trial_failures = 0

    def _give_back(self) -> None:
        if self._permits > self._trial_calls:
            self._permits -= 1

    def _notify(self, changes: list[tuple[BreakerState, BreakerState]]) -> None:
        if not changes:
            return
        listeners = list(self._listeners)
        error: BaseException | None = None
        for old, new in changes:
            for listener in listeners:
                try:
                    listener(old, new)
                except Exception as exc:
                    if error is None:
                        error = exc
        if error is not None:
            raise error
