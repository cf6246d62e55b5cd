# Histogram: a bounded, lock-free latency histogram over _c/fq_hist.h (docs/operations.md).
#
# record() converts one number and does a few relaxed atomic adds in C: no lock, no allocation,
# safe from any number of threads (free-threaded builds too: the object's fields never change
# after __init__, and every counter is only touched through __atomic builtins).

from cpython.buffer cimport (
    PyBUF_FORMAT,
    PyBUF_STRIDES,
    PyBuffer_Release,
    PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc

# fq_hist.h's declarations are in _core.pxd (the work-queue engine records into one too)

cdef extern from "Python.h":
    bint PyFloat_CheckExact(object o)
    double PyFloat_AS_DOUBLE(object o)
    bint PyLong_CheckExact(object o)
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1

import numbers as _numbers_h

from fastq.stats import HistogramSnapshot as _HistogramSnapshot

#: the most `highest` may be: 2^40 ns, in seconds
_HIST_MAX_SECONDS = 1099.511627776
#: snapshot percentiles, in the order of HistogramSnapshot's fields
cdef double[5] _HIST_QS = [50.0, 90.0, 95.0, 99.0, 99.9]
#: arrays at least this long are recorded without the GIL
cdef Py_ssize_t _HIST_NOGIL_MIN = 512
#: batches at least this long count into a private array first (one atomic add per bucket
#: used instead of one per value; measured ~2x faster at 100,000 values)
cdef Py_ssize_t _HIST_LOCAL_MIN = 8192


cdef double _hist_number(object value, str name) except? -1.0:
    """value as a float; TypeError naming `name` unless it is a real number (not a bool)."""
    if PyFloat_CheckExact(value):
        return PyFloat_AS_DOUBLE(value)
    if isinstance(value, bool) or not isinstance(value, _numbers_h.Real):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:                 # an int beyond the float range
        return float("inf") if value > 0 else float("-inf")


cdef uint64_t _hist_seconds_ns(object value, str name) except? 0xFFFFFFFFFFFFFFFF:
    """A number of seconds (>= 0; inf saturates) as ns; ValueError naming `name` otherwise."""
    cdef double s = _hist_number(value, name)
    cdef uint64_t v
    if fq_hist_ns(s, &v):
        raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
    return v


cdef uint64_t _hist_int_ns(object value, str name) except? 0xFFFFFFFFFFFFFFFF:
    """A non-negative int (or __index__ object) of ns; larger than 2^63 - 1 saturates."""
    cdef int over = 0
    cdef long long v
    if not PyLong_CheckExact(value):
        if isinstance(value, bool) or not hasattr(type(value), "__index__"):
            raise TypeError(f"{name} must be an int of nanoseconds, got {type(value).__name__}")
        value = value.__index__()
    v = PyLong_AsLongLongAndOverflow(value, &over)
    if over > 0:
        return 0xFFFFFFFFFFFFFFFF
    if over < 0 or v < 0:
        raise ValueError(f"{name} must be >= 0 ns, got {value!r}")
    return <uint64_t>v


cdef int64_t _hist_array(fq_hist *h, const char *p, int64_t n, int64_t stride,
                         bint is_s, uint64_t *local) noexcept nogil:
    """Check then record a strided array: -1, or the index of the first bad value (then
    nothing is recorded)."""
    cdef int64_t bad = fq_hist_check_f64(p, n, stride) if is_s else fq_hist_check_i64(p, n, stride)
    if bad < 0:
        if is_s:
            fq_hist_record_f64(h, p, n, stride, local)
        else:
            fq_hist_record_i64(h, p, n, stride, local)
    return bad


cdef uint64_t *_hist_local(fq_hist *h, Py_ssize_t n) except? NULL:
    """A zeroed private count array for a batch of n values, or NULL for a short batch."""
    cdef uint64_t *local
    if n < _HIST_LOCAL_MIN:
        return NULL
    local = <uint64_t *>calloc(h.n, 8)
    if local == NULL:
        raise MemoryError()
    return local


cdef inline double _hist_s(uint64_t ns) noexcept nogil:
    return <double>ns / 1e9


@cython.final
cdef class Histogram:
    """A bounded latency histogram (HDR-style log-linear buckets, <= 0.78% relative error).

    Values are durations from 0 to ``highest`` seconds (default 1099.5, the most is 2**40 ns,
    about 18.3 minutes), kept as integer nanoseconds. A larger value (or ``inf``) counts as
    ``highest`` and in ``overflow``. The buckets are one array allocated here (about 34 KiB
    with the default ``highest``); ``record`` is a few relaxed atomic adds: thread-safe without
    a lock, never allocates. Not picklable (TypeError).
    """

    cdef fq_hist _h
    cdef readonly object name

    def __cinit__(self, *, highest=1099.5, name=None):
        cdef double top
        cdef uint64_t top_ns
        self._h.counts = NULL
        top = _hist_number(highest, "highest")
        if not (top > 0.0) or top > _HIST_MAX_SECONDS:
            raise ValueError(
                f"highest must be > 0 and <= {_HIST_MAX_SECONDS} seconds (2**40 ns), "
                f"got {highest!r}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        fq_hist_ns(top, &top_ns)
        if top_ns < 1:
            top_ns = 1
        if top_ns > FQ_HIST_MAX_NS:
            top_ns = FQ_HIST_MAX_NS
        if fq_hist_init(&self._h, top_ns):
            raise MemoryError()
        self.name = name

    def __dealloc__(self):
        fq_hist_free(&self._h)

    def record(self, seconds):
        """Record one duration in seconds (>= 0; ``inf`` counts as overflow)."""
        if PyFloat_CheckExact(seconds):
            if fq_hist_record_s(&self._h, PyFloat_AS_DOUBLE(seconds)) == 0:
                return
        fq_hist_record(&self._h, _hist_seconds_ns(seconds, "seconds"))

    def record_ns(self, ns):
        """Record one duration in integer nanoseconds (>= 0)."""
        fq_hist_record(&self._h, _hist_int_ns(ns, "ns"))

    def record_many(self, values, *, unit="s"):
        """Record many durations: a 1-D float64 array of seconds (``unit="s"``) or int64 array
        of nanoseconds (``unit="ns"``), recorded without the GIL, or any iterable of numbers
        in ``unit``. All values are checked first: on a bad one nothing is recorded."""
        cdef Py_buffer view
        cdef bint is_s
        cdef const char *p
        cdef int64_t n, stride, bad
        cdef uint64_t *tmp
        cdef uint64_t *local = NULL
        cdef Py_ssize_t i
        if unit == "s":
            is_s = True
        elif unit == "ns":
            is_s = False
        else:
            raise ValueError(f"unit must be 's' or 'ns', got {unit!r}")
        if PyObject_CheckBuffer(values) and not isinstance(values, (bytes, bytearray, str)):
            PyObject_GetBuffer(values, &view, PyBUF_STRIDES | PyBUF_FORMAT)
            try:
                fmt = (<bytes>view.format).decode("ascii") if view.format != NULL else "B"
                if fmt[:1] in ("@", "=", "<"):
                    fmt = fmt[1:]
                if view.ndim != 1 or view.itemsize != 8 or \
                        fmt not in (("d",) if is_s else ("l", "q")):
                    raise TypeError(
                        f"values must be a 1-D {'float64' if is_s else 'int64'} array for "
                        f"unit={unit!r} (or a sequence of numbers), got a buffer of format "
                        f"{fmt!r}, ndim {view.ndim}"
                    )
                p = <const char *>view.buf
                n = view.shape[0]
                stride = view.strides[0]
                local = _hist_local(&self._h, n)
                if n >= _HIST_NOGIL_MIN:
                    with nogil:
                        bad = _hist_array(&self._h, p, n, stride, is_s, local)
                else:
                    bad = _hist_array(&self._h, p, n, stride, is_s, local)
                if bad >= 0:
                    raise ValueError(
                        f"values[{bad}] must be >= 0 {'seconds' if is_s else 'ns'}, "
                        f"got {values[bad]!r}"
                    )
            finally:
                free(local)
                PyBuffer_Release(&view)
            return
        if not hasattr(values, "__iter__") or isinstance(values, (str, bytes, bytearray)):
            raise TypeError(
                f"values must be an array or an iterable of numbers, got {type(values).__name__}"
            )
        items = values if isinstance(values, tuple) else list(values)  # a snapshot of a list
        tmp = <uint64_t *>malloc(<size_t>(len(items) if len(items) else 1) * 8)
        if tmp == NULL:
            raise MemoryError()
        try:
            for i in range(len(items)):
                if is_s:
                    tmp[i] = _hist_seconds_ns(items[i], f"values[{i}]")
                else:
                    tmp[i] = _hist_int_ns(items[i], f"values[{i}]")
            local = _hist_local(&self._h, len(items))
            fq_hist_record_u64s(&self._h, tmp, len(items), local)
        finally:
            free(local)
            free(tmp)

    @property
    def count(self):
        """Values recorded (overflows included)."""
        cdef fq_hist_totals t
        cdef uint64_t *c
        c = self._scratch()
        try:
            fq_hist_copy(&self._h, c, &t)
        finally:
            free(c)
        return t.count

    @property
    def overflow(self):
        """Values above ``highest`` (counted as ``highest``)."""
        return fq_hist_overflow(&self._h)

    @property
    def sum_seconds(self):
        """The sum of the values recorded, in seconds."""
        return _hist_s(fq_hist_sum(&self._h))

    @property
    def highest(self):
        """The largest value kept apart from overflow, in seconds."""
        return _hist_s(self._h.highest)

    @property
    def memory_bytes(self):
        """Bytes of the bucket array."""
        return fq_hist_bytes(&self._h)

    cdef uint64_t *_scratch(self) except NULL:
        cdef uint64_t *c = <uint64_t *>malloc(fq_hist_bytes(&self._h))
        if c == NULL:
            raise MemoryError()
        return c

    def percentile(self, q):
        """The value at percentile ``q`` (0..100), in seconds: the highest value of its bucket,
        at most the largest value recorded (0.0 when empty)."""
        cdef double qq = _hist_number(q, "q")
        cdef fq_hist_totals t
        cdef uint64_t *c
        cdef uint64_t v
        if not (0.0 <= qq <= 100.0):
            raise ValueError(f"q must be in 0..100, got {q!r}")
        c = self._scratch()
        try:
            fq_hist_copy(&self._h, c, &t)
            v = fq_hist_value_at(c, self._h.n, t.count, t.max, qq)
        finally:
            free(c)
        return _hist_s(v)

    def snapshot(self, *, reset=False):
        """A :class:`fastq.HistogramSnapshot`. With ``reset=True`` the counts move into it:
        each counter is swapped with 0 atomically, so a concurrent ``record`` is counted by
        exactly one snapshot (its sum may land in the next one; totals are exact)."""
        cdef fq_hist_totals t
        cdef uint64_t *c
        cdef double[5] ps
        cdef int k
        if not isinstance(reset, bool):
            raise TypeError(f"reset must be a bool, got {type(reset).__name__}")
        c = self._scratch()
        try:
            if reset:
                fq_hist_drain(&self._h, c, &t)
            else:
                fq_hist_copy(&self._h, c, &t)
            for k in range(5):
                ps[k] = _hist_s(fq_hist_value_at(c, self._h.n, t.count, t.max, _HIST_QS[k]))
        finally:
            free(c)
        if t.count == 0:
            return _HistogramSnapshot(0, _hist_s(t.sum), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                                      t.sum, t.overflow)
        return _HistogramSnapshot(
            t.count, _hist_s(t.sum),
            _hist_s(t.min if t.min != 0xFFFFFFFFFFFFFFFF else 0), _hist_s(t.max),
            _hist_s(t.sum) / t.count, ps[0], ps[1], ps[2], ps[3], ps[4], t.sum, t.overflow,
        )

    def cumulative(self, bounds):
        """For each bound (seconds, ascending; ``inf`` allowed), how many values are <= it, at
        bucket resolution: a value within 0.78% below a bound may be left out. For
        Prometheus ``le`` buckets."""
        cdef fq_hist_totals t
        cdef uint64_t *c
        cdef uint64_t b
        cdef list ns = []
        cdef list out = []
        cdef double prev = -1.0, s
        cdef Py_ssize_t i
        if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__iter__"):
            raise TypeError(f"bounds must be a sequence of seconds, got {type(bounds).__name__}")
        for i, bound in enumerate(bounds):
            s = _hist_number(bound, f"bounds[{i}]")
            if not (s >= 0.0):
                raise ValueError(f"bounds[{i}] must be >= 0 seconds, got {bound!r}")
            if s < prev:
                raise ValueError(f"bounds must be sorted ascending, got {bound!r} after {prev!r}")
            prev = s
            fq_hist_ns(s, &b)
            ns.append(b)
        c = self._scratch()
        try:
            fq_hist_copy(&self._h, c, &t)
            for b in ns:
                out.append(t.count if b == 0xFFFFFFFFFFFFFFFF else
                           fq_hist_count_le(c, self._h.n, b))
        finally:
            free(c)
        return out

    def merge(self, other):
        """Add the values recorded by ``other`` (a Histogram) to this one."""
        if not isinstance(other, Histogram):
            raise TypeError(f"other must be a Histogram, got {type(other).__name__}")
        fq_hist_merge(&self._h, &(<Histogram>other)._h)

    def reset(self):
        """Forget every value recorded (each counter swapped with 0)."""
        cdef fq_hist_totals t
        fq_hist_drain(&self._h, NULL, &t)

    def __reduce__(self):
        raise TypeError("cannot pickle a fastq.Histogram: take a snapshot() instead")

    def __repr__(self):
        return (f"Histogram(name={self.name!r}, count={self.count}, "
                f"highest={self.highest!r}, overflow={self.overflow})")
