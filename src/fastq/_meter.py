"""Throughput from a growing counter, for ``statistics()``: events per second over a window."""

from __future__ import annotations

import threading
import time
from collections import deque

__all__ = ("RateMeter",)


class RateMeter:
    """Events per second over about the last ``window`` seconds.

    Fed by the ``statistics()`` call that reads the counter (no thread, no per-event cost):
    each call may keep a sample (at most ``window / 10`` apart) and the rate is the counter's
    growth since the oldest sample still inside the window. Called less often than that, the
    rate covers the time since the previous call; the first call, the time since the meter
    was made (``start``, default now, when the counter was 0). Thread-safe.
    """

    __slots__ = ("_lock", "_samples", "_step", "_window")

    def __init__(self, window: float = 10.0, *, start: float | None = None) -> None:
        self._window = window
        self._step = window / 10.0
        # the counter was 0 when its object was made: the first reading already has a rate
        self._samples: deque[tuple[float, int]] = deque(
            [(time.monotonic() if start is None else start, 0)]
        )
        self._lock = threading.Lock()

    def rate(self, total: int, now: float) -> float:
        """Record ``total`` at ``now`` (seconds, any monotonic clock); events per second."""
        with self._lock:
            s = self._samples
            if not s or now - s[-1][0] >= self._step:
                s.append((now, total))
            while len(s) > 2 and now - s[1][0] >= self._window:
                s.popleft()
            t0, c0 = s[0]
            if now <= t0:
                return 0.0
            return max(0, total - c0) / (now - t0)
