# DedupWindow: time-windowed deduplication of idempotency keys over _c/fq_dedup.h
# (docs/hashing.md). Keys are turned into fingerprints (XXH3-64 with a per-window random seed)
# before the window's lock is taken; under it only C runs.

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport EINVAL, ENOMEM
from libc.math cimport isfinite, isnan

import os as _os_dd

from fastq.errors import CorruptLogError as _CorruptLogError
from fastq.stats import DedupStatistics as _DedupStatistics


cdef double _as_ttl(object ttl) except? -1.0:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds, got {type(ttl).__name__}")
    cdef double t = ttl
    if isnan(t) or t <= 0:
        raise ValueError(f"ttl must be > 0 seconds (inf: never expire), got {ttl!r}")
    return t


@cython.final
cdef class DedupWindow:
    """A set of recently seen keys, forgotten ``ttl`` seconds after insertion (at most
    ``max_keys``: beyond that the oldest key is evicted first). ``seen(key)`` is the
    check-and-insert: False the first time a key is offered within the window, True after.
    Keys are bytes-like, str or int, as for ``hash64``.

    Keys are stored as 64-bit fingerprints (XXH3 with a per-window random seed; about 29 bytes
    per key at ``max_keys``), so two distinct keys are confused with probability about
    n/2**64 per lookup with n keys held. ``exact=True`` also keeps every key's bytes and never
    confuses two keys. ``clock``: a callable returning seconds (default: the monotonic clock);
    it never runs backwards as far as the window is concerned. Every method is thread-safe.
    """

    def __cinit__(self):
        self._ready = False

    def __init__(self, ttl=300.0, max_keys=1_000_000, *, exact=False, clock=None,
                 _fingerprint_bits=64, _first_seq=1):
        cdef double t = _as_ttl(ttl)
        cdef uint64_t mask
        if self._ready:        # freeing the C window under another thread's feet would crash
            raise RuntimeError("DedupWindow.__init__ called on an initialised window")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int):
            raise TypeError(f"max_keys must be an int, got {type(max_keys).__name__}")
        if not 1 <= max_keys <= FQ_DD_MAX_KEYS:
            raise ValueError(f"max_keys must be in 1..{FQ_DD_MAX_KEYS}, got {max_keys!r}")
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, got {type(clock).__name__}")
        if isinstance(_fingerprint_bits, bool) or not isinstance(_fingerprint_bits, int) \
                or not 1 <= _fingerprint_bits <= 64:
            raise ValueError(f"_fingerprint_bits must be in 1..64, got {_fingerprint_bits!r}")
        mask = _U64_MAX if _fingerprint_bits == 64 else ((<uint64_t>1 << _fingerprint_bits) - 1)
        # test hook: where sequence numbers start, to reach the renumbering point quickly
        if isinstance(_first_seq, bool) or not isinstance(_first_seq, int) \
                or not 1 <= _first_seq < FQ_DD_SEQ_LIMIT:
            raise ValueError(f"_first_seq must be in 1..{FQ_DD_SEQ_LIMIT - 1}, got {_first_seq!r}")
        self._setup(t, max_keys, bool(exact), mask,
                    int.from_bytes(_os_dd.urandom(8), "little"), clock)
        self._d.head_seq = _first_seq            # the window is empty: no slot refers to any

    cdef int _setup(self, double ttl, uint64_t max_keys, bint exact, uint64_t mask,
                    uint64_t seed, object clock) except -1:
        if fq_dd_init(&self._d, ttl, max_keys, exact, mask) != 0:
            fq_dd_free(&self._d)
            raise MemoryError()
        self._seed = seed
        self._clock = clock
        self._ready = True
        return 0

    def __dealloc__(self):
        if self._ready:
            fq_dd_free(&self._d)

    cdef double _now(self) except? -1.0:
        cdef double t
        if not self._ready:
            raise ValueError("DedupWindow.__init__ was not called")
        if self._clock is None:
            return <double>fq_now_ns() * 1e-9
        value = self._clock()
        try:
            t = value
        except TypeError:
            raise TypeError(f"clock() must return a number, got {type(value).__name__}") from None
        if not isfinite(t):
            raise ValueError(f"clock() must return a finite number of seconds, got {t!r}")
        return t

    cdef int _check(self, int rc) except -1:
        if rc == ENOMEM:
            raise MemoryError("DedupWindow: out of memory")
        if rc == EINVAL:
            raise ValueError("DedupWindow: no valid clock reading")
        raise OverflowError("DedupWindow: a key longer than 4 GiB")

    # ---- one key ---------------------------------------------------------------------------

    def seen(self, key):
        """Check and insert: False if ``key`` was not in the window (it is now, for ``ttl``
        seconds), True if it was (its expiry is not extended).
        """
        cdef const char *p
        cdef Py_ssize_t n
        cdef _Key k
        cdef int rc
        cdef uint64_t fp
        cdef double now = self._now()
        if fq_key_fast(<PyObject *>key, &p, &n):
            fp = fq_xxh3_64(p, <size_t>n, self._seed)
            fq_pylock_acquire(&self._lock)
            fq_dd_advance(&self._d, now)
            rc = fq_dd_seen(&self._d, fp, p, <size_t>n)
            fq_pylock_release(&self._lock)
        else:
            _key_of(key, &k, "key")
            fp = _key_hash(&k, self._seed)
            fq_pylock_acquire(&self._lock)
            fq_dd_advance(&self._d, now)
            rc = fq_dd_seen(&self._d, fp, k.p, <size_t>k.n)
            fq_pylock_release(&self._lock)
            _key_release(&k)
        if rc < 0:
            self._check(-rc)
        return rc == 1

    cdef int _lookup(self, object key, bint forget) except -1:
        cdef _Key k
        cdef int rc
        cdef uint64_t fp
        cdef double now = self._now()
        _key_of(key, &k, "key")
        fp = _key_hash(&k, self._seed)
        fq_pylock_acquire(&self._lock)
        fq_dd_advance(&self._d, now)
        if forget:
            rc = fq_dd_forget(&self._d, fp, k.p, <size_t>k.n)
        else:
            rc = fq_dd_contains(&self._d, fp, k.p, <size_t>k.n)
        fq_pylock_release(&self._lock)
        _key_release(&k)
        return rc

    def contains(self, key):
        """Whether ``key`` is in the window, without inserting it.
        """
        return self._lookup(key, False) == 1

    def __contains__(self, key):
        return self._lookup(key, False) == 1

    def forget(self, key):
        """Remove ``key`` from the window (it is new again); True if it was there.
        """
        return self._lookup(key, True) == 1

    # ---- batches ---------------------------------------------------------------------------

    def seen_many(self, keys):
        """``seen`` for every key, in order, as a ``bool`` array: a key repeated inside the batch
        is new at its first occurrence and seen at the later ones. ``keys`` as for
        ``hash_many`` (a list or tuple, a ``uint64``/``int64`` array or an ``S<n>`` array).
        """
        cdef _Batch b
        cdef uint64_t *fps = NULL
        cdef const unsigned char **kp = NULL
        cdef size_t *kl = NULL
        cdef unsigned char *ints = NULL
        cdef void *out
        cdef Py_ssize_t i, n
        cdef int err = 0
        cdef double now
        cdef bint exact = self._d.exact
        cdef list keep
        _batch_of(keys, &b)
        try:
            n = b.n
            arr = _new_array(n, "bool", &out)
            fps = <uint64_t *>malloc(<size_t>(n if n else 1) * 8)
            if fps == NULL:
                raise MemoryError()
            if exact:
                kp = <const unsigned char **>malloc(<size_t>(n if n else 1) * sizeof(void *))
                kl = <size_t *>malloc(<size_t>(n if n else 1) * sizeof(size_t))
                if kp == NULL or kl == NULL:
                    raise MemoryError()
            if b.is_array:
                _hash_batch(&b, self._seed, fps)
                if exact:
                    _array_key_bytes(&b, kp, kl, &ints)
            elif not exact:
                _hash_batch(&b, self._seed, fps)
            else:
                _pin_items(&b)    # key pointers must outlive any Python code a key runs
                keep = []
                ints = <unsigned char *>malloc(<size_t>(n if n else 1) * 8)
                if ints == NULL:
                    raise MemoryError()
                for i in range(n):
                    _exact_key(&b, i, self._seed, fps, kp, kl, ints, keep)
            now = self._now()
            fq_pylock_acquire(&self._lock)
            fq_dd_advance(&self._d, now)
            fq_dd_seen_many(&self._d, fps, kp, kl, <size_t>n, <unsigned char *>out, &err)
            fq_pylock_release(&self._lock)
            if err:
                self._check(err)
        finally:
            free(fps)
            free(kp)
            free(kl)
            free(ints)
            _batch_release(&b)
        return arr

    # ---- the whole window ------------------------------------------------------------------

    def __len__(self):
        cdef double now = self._now()
        fq_pylock_acquire(&self._lock)
        fq_dd_advance(&self._d, now)
        cdef Py_ssize_t n = self._d.live
        fq_pylock_release(&self._lock)
        return n

    def clear(self):
        """Forget every key (the counters in ``statistics()`` keep counting).
        """
        cdef int rc
        self._now()
        fq_pylock_acquire(&self._lock)
        rc = fq_dd_clear(&self._d)
        fq_pylock_release(&self._lock)
        if rc:
            self._check(rc)

    def statistics(self):
        """Size, limits and counters: a snapshot, cheap enough to call every second.
        """
        cdef double now = self._now()
        fq_pylock_acquire(&self._lock)
        fq_dd_advance(&self._d, now)
        cdef uint64_t size = self._d.live, inserted = self._d.inserts, hits = self._d.hits
        cdef uint64_t evictions = self._d.evictions, expiries = self._d.expiries
        cdef uint64_t memory = fq_dd_memory(&self._d)
        fq_pylock_release(&self._lock)
        return _DedupStatistics(
            size=size, max_keys=self._d.max_keys, ttl=self._d.ttl, exact=bool(self._d.exact),
            inserted=inserted, hits=hits, evictions=evictions, expiries=expiries,
            memory_bytes=memory,
        )

    @property
    def ttl(self):
        """Seconds a key is remembered after its insertion."""
        return self._d.ttl

    @property
    def max_keys(self):
        """The most keys held at once (the oldest is evicted first)."""
        return self._d.max_keys

    @property
    def exact(self):
        """Whether key bytes are kept and compared (no fingerprint collisions)."""
        return bool(self._d.exact)

    def __repr__(self):
        return (f"DedupWindow(ttl={self._d.ttl!r}, max_keys={self._d.max_keys}, "
                f"exact={bool(self._d.exact)}, size={self._d.live})")

    # ---- snapshots -------------------------------------------------------------------------

    def to_bytes(self):
        """A checksummed snapshot of the window (docs/hashing.md): settings, counters, and each
        key's fingerprint (and bytes, if exact) with its remaining lifetime.
        """
        cdef double now = self._now()
        cdef unsigned char *buf = NULL
        cdef uint64_t size
        cdef int64_t wall = fq_wall_ns()
        fq_pylock_acquire(&self._lock)
        fq_dd_advance(&self._d, now)
        size = fq_dd_snapshot_size(&self._d)
        buf = <unsigned char *>malloc(<size_t>size)
        if buf != NULL:
            fq_dd_snapshot(&self._d, self._seed, wall, buf)
        fq_pylock_release(&self._lock)
        if buf == NULL:
            raise MemoryError()
        try:
            return PyBytes_FromStringAndSize(<char *>buf, <Py_ssize_t>size)
        finally:
            free(buf)

    @staticmethod
    def from_bytes(data, *, clock=None, elapsed=None, source="<bytes>"):
        """Rebuild a window from ``to_bytes()``. Entries keep aging while no process holds them:
        by default by the wall-clock time since the snapshot (never negative); ``elapsed``
        (seconds) overrides that. A damaged snapshot raises ``fastq.CorruptLogError`` naming
        ``source`` (e.g. the file it was read from) and the byte position.
        """
        cdef Py_buffer view
        cdef fq_dd_header h
        cdef const char *why
        cdef int64_t bad, dup = 0
        cdef double age, now
        cdef int rc
        cdef DedupWindow w
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, got {type(clock).__name__}")
        if elapsed is not None:
            if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)):
                raise TypeError(f"elapsed must be a number of seconds, got {type(elapsed).__name__}")
            if isnan(elapsed) or elapsed < 0:
                raise ValueError(f"elapsed must be >= 0 seconds, got {elapsed!r}")
        if isinstance(data, str) or not PyObject_CheckBuffer(data):
            raise TypeError(f"data must be a bytes-like snapshot, got {type(data).__name__}")
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        except (TypeError, BufferError):
            raise TypeError(f"data must be a contiguous bytes-like object, got {type(data).__name__}") from None
        try:
            bad = fq_dd_check(<const unsigned char *>view.buf, <uint64_t>view.len, &h, &why)
            if bad >= 0:
                raise _CorruptLogError(str(source), bad, why.decode("ascii"))
            w = DedupWindow.__new__(DedupWindow)
            w._setup(h.ttl, h.max_keys, h.exact, h.fp_mask, h.seed, clock)
            if elapsed is None:
                age = max(0.0, (<double>fq_wall_ns() - <double>h.wall_ns) * 1e-9)  # no overflow
            else:
                age = elapsed
            now = w._now()
            rc = fq_dd_restore(&w._d, <const unsigned char *>view.buf, &h, now, age, &dup, &why)
            if rc == EINVAL:
                raise _CorruptLogError(str(source), dup, why.decode("ascii"))
            if rc:
                w._check(rc)
        finally:
            PyBuffer_Release(&view)
        return w


cdef int _exact_key(_Batch *b, Py_ssize_t i, uint64_t seed, uint64_t *fps,
                    const unsigned char **kp, size_t *kl, unsigned char *ints,
                    list keep) except -1:
    """fingerprint and bytes of batch key i (exact mode); `keep` holds any copies alive"""
    cdef const char *p
    cdef Py_ssize_t n
    cdef _Key k
    if fq_key_fast(b.items[i], &p, &n):
        kp[i] = <const unsigned char *>p        # kept alive by the batch's sequence
        kl[i] = <size_t>n
        fps[i] = fq_xxh3_64(p, <size_t>n, seed)
        return 0
    _pin_items(b)
    key = <object>b.items[i]
    _key_of(key, &k, f"keys[{i}]")
    try:
        fps[i] = _key_hash(&k, seed)
        if k.is_int:
            memcpy(ints + 8 * i, k.ib, 8)
            kp[i] = ints + 8 * i
            kl[i] = 8
        else:                                    # a buffer: keep a copy (views are released)
            copy = PyBytes_FromStringAndSize(<const char *>k.p, k.n)
            keep.append(copy)
            kp[i] = <const unsigned char *>PyBytes_AS_STRING(copy)
            kl[i] = <size_t>k.n
    finally:
        _key_release(&k)
    return 0


cdef int _array_key_bytes(_Batch *b, const unsigned char **kp, size_t *kl,
                          unsigned char **ints) except -1:
    """the bytes of each array element (exact mode): integers as 8 LE bytes in *ints"""
    cdef Py_ssize_t i
    cdef const unsigned char *p
    if b.arr.kind == FQ_KEYS_FIXED:
        for i in range(b.n):
            p = b.arr.base + i * b.arr.stride
            kp[i] = p
            kl[i] = fq_fixed_len(p, b.arr.itemsize)
        return 0
    ints[0] = <unsigned char *>malloc(<size_t>(b.n if b.n else 1) * 8)
    if ints[0] == NULL:
        raise MemoryError()
    for i in range(b.n):
        fq_st64(ints[0] + 8 * i, fq_key_array_u64(&b.arr, <size_t>i))
        kp[i] = ints[0] + 8 * i
        kl[i] = 8
    return 0
