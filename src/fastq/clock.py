"""Clocks: where queues read the time for leases, delays, deadlines, priority aging and dedup.

A clock is any zero-argument callable returning monotonic seconds (``time.monotonic`` is the
default). :class:`FakeClock` moves only when told and wakes every queue waiting on it, so tests
drive time by hand with no real sleeping (in the spirit of trio's ``MockClock``).

How blocking calls behave under an injected clock (``Queue.get(timeout=...)`` and friends):

- timeouts are measured on the queue's clock, like every other time;
- with a :class:`FakeClock`, a blocked call waits until a message arrives or
  :meth:`FakeClock.advance` moves time far enough (it never times out on its own);
- with any other callable, a blocked call re-reads the clock every 5 ms of real time.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable

__all__ = ("FakeClock",)


class FakeClock:
    """A monotonic clock for tests: ``clock()`` returns the current fake time in seconds;
    :meth:`advance` moves it forward and wakes whatever waits on it. Thread-safe."""

    def __init__(self, start: float = 0.0) -> None:
        if isinstance(start, bool) or not isinstance(start, (int, float)):
            raise TypeError(f"start must be a number of seconds, got {type(start).__name__}")
        if not math.isfinite(start):
            raise ValueError(f"start must be finite, got {start!r}")
        self._now = float(start)
        self._lock = threading.Lock()
        self._listeners: list[weakref.ref[Callable[[], None]]] = []

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0); returns the new time."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        with self._lock:
            self._now += seconds
            now = self._now
            refs = self._listeners
            listeners = [ref() for ref in refs]
            self._listeners = [ref for ref, fn in zip(refs, listeners, strict=True) if fn]
        for fn in listeners:
            if fn is not None:
                fn()
        return now

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every :meth:`advance` (held weakly: a bound method lives
        as long as its object)."""
        ref: weakref.ref[Callable[[], None]]
        if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
            ref = weakref.WeakMethod(callback)
        else:
            ref = weakref.ref(callback)
        with self._lock:
            self._listeners.append(ref)

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"
