"""Concurrency limiters: how many handlers a consumer pool runs at once.

:class:`AdaptiveConcurrency` follows the downstream in the spirit of Netflix's
concurrency-limits: it is fed one sample per completed handler call (latency, how many were in
flight when it started, whether it failed with an overload error) and moves ``limit`` between
``min`` and ``max``. Two algorithms: ``"gradient"`` (limit scaled by no-load latency / current
latency, plus a little headroom) and ``"aimd"`` (x0.9 on congestion, +1 per round otherwise).

Where we depart from the Java library, and why (see docs/pipeline.md for the numbers):

- Decisions are made per *round* of samples (about one latency period, and enough samples for
  the round's mean latency to be within ~5%), not per sample: per-sample ratios of noisy
  latencies pull a clamped gradient below 1 and make the limit drift down.
- The no-load latency is *measured* in a probe round (the limit halved for one round every
  ``probe_interval`` rounds), not taken from a long EWMA (Gradient2) or an all-time minimum.
  Against a closed-loop downstream Gradient2's long-vs-short EWMA never settles (the long
  average catches up with whatever latency the current limit causes, so the limit creeps up),
  and a minimum of noisy samples is biased low (the limit creeps down).
- AIMD also treats ``latency > tolerance * no-load`` as congestion (the Java AIMD only sees
  drops and an absolute timeout), so it finds a latency knee without errors.
- Slow start: the limit doubles per round until the first congestion signal.

:class:`FixedConcurrency` is a constant limit; :func:`as_limiter` turns an ``int`` into one.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Final, Literal, Protocol, runtime_checkable

__all__ = (
    "AdaptiveConcurrency",
    "ConcurrencyStatistics",
    "FixedConcurrency",
    "Limiter",
    "as_limiter",
)

Algorithm = Literal["aimd", "gradient"]
_ALGORITHMS: Final = ("aimd", "gradient")
_DEFAULT_TOLERANCE: Final = {"aimd": 1.1, "gradient": 1.05}
_PRECISION: Final = 0.05
_MAX_ROUND: Final = 2048
_CPU_HOT: Final = 0.9


@dataclass(frozen=True, slots=True)
class ConcurrencyStatistics:
    """A snapshot of a limiter (``limiter.statistics()``)."""

    algorithm: str
    """``"aimd"``, ``"gradient"`` or ``"fixed"``."""
    limit: int
    min: int
    max: int
    samples: int
    """Completed calls fed to :meth:`on_sample`."""
    errors: int
    """Samples with ``error=True``."""
    rounds: int
    """Rounds evaluated (the limit changes at most once per round)."""
    last_rtt: float | None
    """Latency of the last sample (seconds)."""
    round_rtt: float | None
    """Mean latency of the last complete round."""
    long_rtt: float | None
    """Slow EWMA of round latencies."""
    noload_rtt: float | None
    """Estimated latency without queueing: the lowest round mean in the recent window."""
    cpu: float | None
    """Last CPU utilisation passed to :meth:`on_cpu` (0..1)."""


@runtime_checkable
class Limiter(Protocol):
    """What a consumer pool needs from a concurrency limiter (all methods thread-safe)."""

    @property
    def limit(self) -> int: ...

    @property
    def min(self) -> int: ...

    @property
    def max(self) -> int: ...

    def on_sample(self, latency: float, *, inflight: int, error: bool = False) -> None: ...

    def on_cpu(self, utilization: float) -> None: ...

    def statistics(self) -> ConcurrencyStatistics: ...


def _int_at_least(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _float_in(name: str, value: object, low: float, high: float, *, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    ok = (low < v if low_open else low <= v) and v <= high
    if not ok:  # also NaN
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
    return v


class FixedConcurrency:
    """A constant limit of ``n`` handlers. Thread-safe."""

    def __init__(self, n: int) -> None:
        self._n = _int_at_least("n", n, 1)
        self._lock = threading.Lock()
        self._samples = 0
        self._errors = 0
        self._last: float | None = None
        self._cpu: float | None = None

    @property
    def limit(self) -> int:
        return self._n

    @property
    def min(self) -> int:
        return self._n

    @property
    def max(self) -> int:
        return self._n

    def on_sample(self, latency: float, *, inflight: int, error: bool = False) -> None:
        with self._lock:
            self._samples += 1
            self._errors += bool(error)
            self._last = latency

    def on_cpu(self, utilization: float) -> None:
        """Recorded for :meth:`statistics`; a fixed limit does not react."""
        self._cpu = utilization

    def statistics(self) -> ConcurrencyStatistics:
        with self._lock:
            return ConcurrencyStatistics(
                algorithm="fixed",
                limit=self._n,
                min=self._n,
                max=self._n,
                samples=self._samples,
                errors=self._errors,
                rounds=0,
                last_rtt=self._last,
                round_rtt=None,
                long_rtt=None,
                noload_rtt=None,
                cpu=self._cpu,
            )

    def __repr__(self) -> str:
        return f"FixedConcurrency({self._n})"


class AdaptiveConcurrency:
    """A concurrency limit that follows the downstream: it grows while handler latency stays
    near its no-load value and shrinks when latency rises past ``tolerance`` times that, or
    handlers fail with overload errors. Thread-safe (one lock, a few operations per sample);
    it needs no clock: it works per completed call.

    ``algorithm="gradient"``: once per round, ``new = limit * clamp(tolerance * noload / rtt,
    0.5, 1) + queue_size``; increases apply at once, decreases are smoothed
    (``limit += (new - limit) * smoothing``); an overload error multiplies by ``backoff_ratio``.
    ``algorithm="aimd"``: once per round, if an error was seen or ``rtt > tolerance * noload``
    (or ``> timeout`` when given), ``limit *= backoff_ratio``; else ``limit += 1`` if at least
    half the limit was in use.

    A *round* is one batch of samples: at least ``round_samples``, at least the limit (about one
    latency period), and enough for the round's mean latency to be within ~5% given the observed
    latency spread (up to 2048). ``noload`` (latency without queueing) is measured in a *probe*
    round every ``probe_interval`` rounds, where the limit is halved and only calls started
    under the halved limit count; later rounds no busier than that probe, and rounds at the
    floor, measure it too; each measurement is averaged with the previous one. The first round
    (at ``initial``) gives the first guess. Until the first congestion signal the limit doubles
    per round (slow start).
    """

    def __init__(
        self,
        min: int = 1,
        max: int = 64,
        *,
        algorithm: Algorithm = "gradient",
        initial: int | None = None,
        backoff_ratio: float = 0.9,
        tolerance: float | None = None,
        smoothing: float = 0.2,
        queue_size: float = 0.5,
        timeout: float | None = None,
        round_samples: int = 16,
        probe_interval: int = 30,
    ) -> None:
        lo = _int_at_least("min", min, 1)
        hi = _int_at_least("max", max, 1)
        if lo > hi:
            raise ValueError(f"min must be <= max, got min={lo} > max={hi}")
        if algorithm not in _ALGORITHMS:
            raise ValueError(
                f"algorithm must be one of {', '.join(_ALGORITHMS)}; got {algorithm!r}"
            )
        if initial is None:
            start = lo
        else:
            start = _int_at_least("initial", initial, 1)
            if not lo <= start <= hi:
                raise ValueError(f"initial must be in [min, max] = [{lo}, {hi}], got {start}")
        self._min = lo
        self._max = hi
        self._algorithm: Algorithm = algorithm
        self._backoff_ratio = _float_in("backoff_ratio", backoff_ratio, 0.5, 1.0, low_open=False)
        if tolerance is None:
            tolerance = _DEFAULT_TOLERANCE[algorithm]
        self._tolerance = _float_in("tolerance", tolerance, 1.0, 10.0, low_open=False)
        self._smoothing = _float_in("smoothing", smoothing, 0.0, 1.0, low_open=True)
        self._queue_size = _float_in("queue_size", queue_size, 0.0, 1e6, low_open=False)
        self._timeout: float | None = None
        if timeout is not None:
            self._timeout = _float_in("timeout", timeout, 0.0, 1e9, low_open=True)
        self._round_samples = _int_at_least("round_samples", round_samples, 1)
        self._probe_interval = _int_at_least("probe_interval", probe_interval, 1)

        self._lock = threading.Lock()
        self._limit = float(start)
        self._samples = 0
        self._errors = 0
        self._rounds = 0
        self._last: float | None = None
        self._round_rtt: float | None = None
        self._long: float | None = None
        self._noload: float | None = None
        self._noload_at = 0  # the concurrency the no-load latency was measured at
        self._cv2 = 0.0  # EWMA of the squared coefficient of variation of latency in rounds
        self._cpu: float | None = None
        self._cpu_hot = False
        self._slow_start = True
        self._shrunk = False  # the last round lowered the limit: skip calls started above it
        self._probe_in = self._probe_interval  # rounds until the next no-load probe
        self._probing = 0  # the probe's limit while probing, else 0
        # the round being filled
        self._r_n = 0
        self._r_sum = 0.0
        self._r_sq = 0.0
        self._r_peak = 0
        self._r_errors = 0
        self._skipped = 0
        self._r_size = self._round_size()

    @classmethod
    def fixed(cls, n: int) -> FixedConcurrency:
        """A constant limit of ``n`` (a :class:`FixedConcurrency`)."""
        return FixedConcurrency(n)

    @property
    def algorithm(self) -> Algorithm:
        return self._algorithm

    @property
    def min(self) -> int:
        return self._min

    @property
    def max(self) -> int:
        return self._max

    @property
    def limit(self) -> int:
        """How many handlers may run now (``min <= limit <= max``)."""
        return self._probing or int(self._limit)

    def on_sample(self, latency: float, *, inflight: int, error: bool = False) -> None:
        """One completed handler call: ``latency`` seconds, ``inflight`` handlers running when
        it started (itself included), ``error=True`` if it failed in a way that signals overload
        (a timeout, :class:`fastq.Overloaded`, a downstream error; not a bad message)."""
        if not latency >= 0:  # also NaN
            raise ValueError(f"latency must be >= 0 seconds, got {latency!r}")
        with self._lock:
            self._samples += 1
            self._last = latency
            if error:
                self._errors += 1
            # calls that started above the current limit (before a probe or a decrease) say
            # nothing about it: skip them, but never starve the round (a caller whose
            # ``inflight`` overshoots the limit must not freeze the limiter)
            if (
                (self._probing and inflight > self._probing)
                or (self._shrunk and inflight > self._limit)
            ) and self._skipped < 4 * self._r_size:
                self._skipped += 1
                return
            self._r_n += 1
            self._r_sum += latency
            self._r_sq += latency * latency
            if inflight > self._r_peak:
                self._r_peak = inflight
            if error:
                self._r_errors += 1
            if self._r_n >= self._r_size and self._precise_enough():
                self._end_round()

    def on_cpu(self, utilization: float) -> None:
        """The process's CPU use as a fraction of the cores available (0..1; above 1 counts as
        1). At 0.9 or more the limit stops growing, and shrinks by ``backoff_ratio`` per round
        while latency is also above ``tolerance`` times the no-load latency."""
        if isinstance(utilization, bool) or not isinstance(utilization, (int, float)):
            raise TypeError(f"utilization must be a number, got {type(utilization).__name__}")
        if not utilization >= 0:  # also NaN
            raise ValueError(f"utilization must be >= 0, got {utilization!r}")
        with self._lock:
            self._cpu = min(1.0, float(utilization))
            self._cpu_hot = self._cpu >= _CPU_HOT

    def statistics(self) -> ConcurrencyStatistics:
        with self._lock:
            return ConcurrencyStatistics(
                algorithm=self._algorithm,
                limit=self._probing or int(self._limit),
                min=self._min,
                max=self._max,
                samples=self._samples,
                errors=self._errors,
                rounds=self._rounds,
                last_rtt=self._last,
                round_rtt=self._round_rtt,
                long_rtt=self._long,
                noload_rtt=self._noload,
                cpu=self._cpu,
            )

    def __repr__(self) -> str:
        return (
            f"AdaptiveConcurrency(min={self._min}, max={self._max}, "
            f"algorithm={self._algorithm!r}, limit={self.limit})"
        )

    # -- internals (lock held) -------------------------------------------------------------------

    def _round_size(self) -> int:
        # enough samples for the round's mean latency to have a standard error of ~_PRECISION
        n = max(self._round_samples, min(_MAX_ROUND, math.ceil(self._cv2 / _PRECISION**2)))
        if self._probing:
            return 2 * n
        return max(n, math.ceil(self._limit))

    def _precise_enough(self) -> bool:
        """Whether the round's own spread says its mean is known to ~_PRECISION; if not,
        extend the round (up to _MAX_ROUND samples)."""
        n = self._r_n
        if n >= _MAX_ROUND or n < 2:
            return True
        mean = self._r_sum / n
        if mean <= 0:
            return True
        cv2 = max(0.0, (self._r_sq - n * mean * mean) / (n - 1)) / (mean * mean)
        needed = math.ceil(cv2 / _PRECISION**2)
        if n >= needed:
            return True
        self._r_size = min(_MAX_ROUND, needed)
        return False

    def _measured(self, rtt: float) -> None:
        """A no-load measurement: averaged with the previous one, so one unlucky round (its
        slowest calls still running when it ends) cannot drag the estimate far down."""
        self._noload = rtt if self._noload is None else (self._noload + rtt) / 2

    def _end_round(self) -> None:
        n = self._r_n
        rtt = self._r_sum / n
        if n > 1 and rtt > 0:
            var = max(0.0, (self._r_sq - n * rtt * rtt) / (n - 1))
            self._cv2 += (var / (rtt * rtt) - self._cv2) * (0.5 if self._rounds < 4 else 0.1)
        peak = self._r_peak
        errors = self._r_errors
        self._r_n = self._r_peak = self._r_errors = self._skipped = 0
        self._r_sum = self._r_sq = 0.0
        self._rounds += 1
        if self._probing:  # a probe round: its mean is the no-load latency
            self._noload_at = self._probing
            self._probing = 0
            self._measured(rtt)
            self._probe_in = self._probe_interval
            self._r_size = self._round_size()
            return
        self._round_rtt = rtt
        self._long = rtt if self._long is None else self._long + (rtt - self._long) / 20
        limit = self._limit
        if self._noload is None:
            self._noload = rtt  # the first round: a guess until the first probe
        elif peak <= self._noload_at or int(limit) // 2 < self._min:
            # no busier than the last probe, or at the floor (no probe can go lower): this
            # round measures the no-load latency too
            self._measured(rtt)
            self._noload_at = max(self._noload_at, min(peak, int(limit)))
        noload = self._noload
        assert noload is not None
        over = rtt > self._tolerance * noload or (self._timeout is not None and rtt > self._timeout)
        busy = peak * 2 >= limit  # not app-limited: at least half the limit was in use
        if self._slow_start and (errors or over):
            self._slow_start = False
        if self._slow_start:
            if busy and not self._cpu_hot:
                limit *= 2.0
        elif self._algorithm == "aimd":
            if errors or over:
                limit *= self._backoff_ratio
            elif busy and not self._cpu_hot:
                limit += 1.0
        elif errors:
            limit *= self._backoff_ratio
        elif busy:
            gradient = max(0.5, min(1.0, self._tolerance * noload / rtt))
            new = limit * gradient + self._queue_size
            if self._cpu_hot:
                new = min(new, limit * (self._backoff_ratio if over else 1.0))
            # grow at once, shrink smoothly (one noisy round must not halve the pool)
            limit = new if new >= limit else limit + (new - limit) * self._smoothing
        limit = max(float(self._min), min(float(self._max), limit))
        self._shrunk = int(limit) < int(self._limit)
        self._limit = limit
        self._probe_in -= 1
        if self._probe_in <= 0:
            probe = max(self._min, int(limit) // 2)
            if probe < int(limit):
                self._probing = probe
            else:
                self._probe_in = self._probe_interval
        self._r_size = self._round_size()


def as_limiter(obj: object) -> Limiter:
    """An int ``n`` -> ``FixedConcurrency(n)``; a limiter -> itself; anything else TypeError."""
    if isinstance(obj, bool):
        raise TypeError("concurrency must be an int or a limiter, got bool")
    if isinstance(obj, int):
        return FixedConcurrency(obj)
    if isinstance(obj, (AdaptiveConcurrency, FixedConcurrency, Limiter)):
        return obj
    raise TypeError(
        f"concurrency must be an int or a limiter (AdaptiveConcurrency, FixedConcurrency), "
        f"got {type(obj).__name__}"
    )
