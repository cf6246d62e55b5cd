# TokenBucket: the rate limiter of producers and replays, over _c/fq_rate.h.
#
# try_acquire is the hot path: one clock read, a few float operations under the queue-style
# lock (a PyMutex on free-threaded builds, the GIL otherwise), no Python objects made.

import time as _time_r


cdef double _rate_arg(object value, str name, bint allow_inf) except -1.0:
    cdef double v
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = value
    if isnan(v) or v <= 0 or (not allow_inf and not isfinite(v)):
        raise ValueError(f"{name} must be a {'' if allow_inf else 'finite '}number > 0, got {value!r}")
    return v


cdef double _timeout_arg(object value) except -2.0:
    cdef double v
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, got {type(value).__name__}")
    v = value
    if isnan(v) or v < 0:
        raise ValueError(f"timeout must be >= 0 seconds (or None), got {value!r}")
    if v > 9.2e9:
        v = 9.2e9
    return v


cdef class TokenBucket:
    """A token bucket: ``rate`` tokens per second accrue, at most ``burst`` are held (default:
    one second's worth, at least 1); it starts full. ``rate=float('inf')`` never limits.

    ``try_acquire(n)`` takes ``n`` tokens if they are there now; ``wait_time(n)`` says how long
    until they would be; ``acquire(n, timeout)`` sleeps (GIL released) until it can take them.
    ``clock`` (seconds, default the monotonic clock) drives accrual; with a
    :class:`fastq.FakeClock` nothing sleeps for real: ``acquire`` then takes what is there or
    returns False. Thread-safe."""

    def __init__(self, rate, burst=None, *, clock=None):
        cdef double r = _rate_arg(rate, "rate", True)
        cdef double b
        if burst is None:
            b = r if r >= 1.0 else 1.0
            if not isfinite(b):
                b = 1.0
        else:
            b = _rate_arg(burst, "burst", False)
            if b < 1.0:
                raise ValueError(f"burst must be >= 1 token, got {burst!r}")
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be callable (-> seconds) or None, got {type(clock).__name__}")
        self._clock = clock
        self._fake = clock is not None and hasattr(clock, "advance")
        self._rate = r
        fq_rate_init(&self._b, r, b, self._now())

    cdef int64_t _now(self) except? -1:
        cdef double t
        if self._clock is None:
            return fq_now_ns()
        value = self._clock()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"clock() must return a number, got {type(value).__name__}")
        t = value
        if not isfinite(t) or not -9.2e9 < t < 9.2e9:
            raise ValueError(f"clock() must return a finite number of seconds, got {t!r}")
        return <int64_t>(t * 1e9)

    cdef double _count(self, object n) except -1.0:
        cdef double v
        if type(n) is int or type(n) is float:
            v = n
        elif isinstance(n, bool) or not isinstance(n, (int, float)):
            raise TypeError(f"n must be a number of tokens, got {type(n).__name__}")
        else:
            v = n
        if not (v > 0) or not isfinite(v):
            raise ValueError(f"n must be a finite number of tokens > 0, got {n!r}")
        return v

    def try_acquire(self, n=1.0):
        """Take ``n`` tokens if they are there now: True if taken."""
        cdef double k = 1.0 if n is None else self._count(n)
        cdef int64_t now = self._now()
        cdef int ok
        fq_pylock_acquire(&self._lock)
        ok = fq_rate_take(&self._b, k, now)
        fq_pylock_release(&self._lock)
        return ok != 0

    def wait_time(self, n=1.0):
        """Seconds until ``n`` tokens would be held (0.0: now; ``inf``: more than ``burst``)."""
        cdef double k = self._count(n)
        cdef int64_t now = self._now()
        cdef int64_t w
        fq_pylock_acquire(&self._lock)
        w = fq_rate_wait_ns(&self._b, k, now)
        fq_pylock_release(&self._lock)
        if w == INT64_MAX:
            return float("inf")
        return w * 1e-9

    def acquire(self, n=1.0, timeout=None):
        """Take ``n`` tokens, sleeping until they are there or ``timeout`` seconds (None: no
        limit) pass: True if taken. More than ``burst`` tokens never fit: ValueError."""
        cdef double k = self._count(n)
        cdef double limit = -1.0
        cdef int64_t now, w, deadline = INT64_MAX
        if timeout is not None:
            limit = _timeout_arg(timeout)
        if k > self._b.burst:
            raise ValueError(f"n ({n!r}) is more than the bucket holds (burst={self._b.burst!r})")
        now = self._now()
        if limit >= 0:
            deadline = now + <int64_t>(limit * 1e9)
        while True:
            fq_pylock_acquire(&self._lock)
            if fq_rate_take(&self._b, k, now):
                fq_pylock_release(&self._lock)
                return True
            w = fq_rate_wait_ns(&self._b, k, now)
            fq_pylock_release(&self._lock)
            if self._fake or now >= deadline:
                return False
            if deadline != INT64_MAX and now + w > deadline:
                w = deadline - now
            _time_r.sleep(w * 1e-9 if w > 0 else 0.0)
            now = self._now()

    @property
    def rate(self):
        """Tokens per second. Setting it keeps what accrued at the old rate."""
        return self._rate

    @rate.setter
    def rate(self, value):
        cdef double r = _rate_arg(value, "rate", True)
        cdef int64_t now = self._now()
        fq_pylock_acquire(&self._lock)
        fq_rate_set(&self._b, r, now)
        self._rate = r
        fq_pylock_release(&self._lock)

    @property
    def burst(self):
        """The most tokens held."""
        return self._b.burst

    @property
    def tokens(self):
        """Tokens held now."""
        cdef int64_t now = self._now()
        cdef double t
        fq_pylock_acquire(&self._lock)
        fq_rate_refill(&self._b, now)
        t = self._b.tokens
        fq_pylock_release(&self._lock)
        return t

    def __repr__(self):
        return f"TokenBucket(rate={self._rate!r}, burst={self._b.burst!r})"
