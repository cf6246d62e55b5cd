# Key hashing and partition routing: hash64, partition, hash_many, partition_many,
# group_by_partition (docs/hashing.md). The C loops are in _c/fq_hash.h and _c/fq_xxh3.h; this
# file turns Python keys and arrays into bytes for them.

from cpython.buffer cimport (
    PyBUF_RECORDS_RO,
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
    PyBuffer_IsContiguous,
    PyObject_CheckBuffer,
)
from cpython.long cimport PyLong_AsUnsignedLongLong, PyLong_Check
from cpython.object cimport PyObject_GetIter
from cpython.unicode cimport PyUnicode_Check
from libc.stdint cimport int32_t, uint64_t
from libc.stdlib cimport free, malloc

from cpython.sequence cimport PySequence_Fast_ITEMS

cdef extern from "fq_endian.h" nogil:
    void fq_st64(unsigned char *p, uint64_t v)
    uint64_t fq_ld64(const unsigned char *p)

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object o, Py_ssize_t *size) except NULL
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1
    bint PyIndex_Check(object o)
    bint PyFloat_Check(object o)

import sys as _sys

cdef bint _HOST_LE = _sys.byteorder == "little"
cdef uint64_t _U64_MAX = 0xFFFFFFFFFFFFFFFF
cdef tuple _np_state = None       # (numpy, numpy.empty, {name: dtype}), set once, atomically


cdef tuple _numpy():
    """numpy, imported by the first batch call (fastq itself imports without it)."""
    global _np_state
    if _np_state is None:
        try:
            import numpy
        except ImportError:
            raise ImportError(
                "fastq's batch APIs (hash_many, partition_many, group_by_partition, "
                "DedupWindow.seen_many) return numpy arrays: pip install numpy"
            ) from None
        dtypes = {name: numpy.dtype(name) for name in ("uint64", "int64", "int32", "bool")}
        _np_state = (numpy, numpy.empty, dtypes)      # one store: threads see all or nothing
    return _np_state


# ---- one key -------------------------------------------------------------------------------

cdef struct _Key:
    # a key's bytes: p/n, or an integer (is_int: v, also stored as 8 LE bytes in ib)
    const unsigned char *p
    Py_ssize_t n
    bint is_int
    uint64_t v
    unsigned char ib[8]
    bint has_view
    Py_buffer view


cdef inline void _key_release(_Key *k) noexcept:
    if k.has_view:
        k.has_view = False
        PyBuffer_Release(&k.view)


cdef int _key_int(object key, _Key *k, object name) except -1:
    cdef int overflow = 0
    cdef long long s = PyLong_AsLongLongAndOverflow(key, &overflow)
    if overflow == 0:
        k.v = <uint64_t>s
    elif overflow > 0 and key <= 0xFFFFFFFFFFFFFFFF:
        k.v = PyLong_AsUnsignedLongLong(key)
    else:
        raise ValueError(f"{name}: an int key must be in -2**63..2**64-1, got {key!r}")
    k.is_int = True
    fq_st64(k.ib, k.v)
    k.p = k.ib
    k.n = 8
    return 0


cdef int _key_of(object key, _Key *k, object name) except -1:
    """Fill k from one key (bytes-like, str as UTF-8, int as 8 little-endian bytes).
    The caller calls _key_release(k) afterwards (a buffer view may be held)."""
    cdef const char *p
    cdef Py_ssize_t n
    k.is_int = False
    k.has_view = False
    if fq_key_fast(<PyObject *>key, &p, &n):
        k.p = <const unsigned char *>p
        k.n = n
        return 0
    if PyLong_Check(key):                         # int, bool, IntEnum
        return _key_int(key, k, name)
    if PyUnicode_Check(key):                      # a str subclass
        p = PyUnicode_AsUTF8AndSize(key, &n)
        k.p = <const unsigned char *>p
        k.n = n
        return 0
    if PyFloat_Check(key):
        return _bad_key(key, name)
    if PyObject_CheckBuffer(key):
        return _key_buffer(key, k, name)
    if PyIndex_Check(key):                        # other integer-like objects: by value
        return _key_int(key.__index__(), k, name)
    return _bad_key(key, name)


cdef int _key_buffer(object key, _Key *k, object name) except -1:
    """A key exporting a buffer: its bytes, except a 0-d buffer (a numpy scalar or 0-d array),
    which is the number it holds, keyed like the Python int (floats are refused)."""
    cdef bytes fmt
    try:
        PyObject_GetBuffer(key, &k.view, PyBUF_RECORDS_RO)
    except (TypeError, BufferError):
        raise TypeError(
            f"{name}: cannot read the buffer of a {type(key).__name__} key "
            f"(a bytes-like key must be C-contiguous)"
        ) from None
    if k.view.ndim == 0:
        fmt = (k.view.format or b"B").lstrip(b"@=<>!")
        PyBuffer_Release(&k.view)
        if fmt in (b"?", b"b", b"B", b"h", b"H", b"i", b"I", b"l", b"L", b"q", b"Q", b"n", b"N"):
            return _key_int(int(key), k, name)
        return _bad_key(key, name)
    if not PyBuffer_IsContiguous(&k.view, b"C"):
        PyBuffer_Release(&k.view)
        raise TypeError(
            f"{name}: a bytes-like key must be C-contiguous, got a non-contiguous "
            f"{type(key).__name__}"
        )
    k.has_view = True
    k.p = <const unsigned char *>k.view.buf
    k.n = k.view.len
    return 0


cdef int _bad_key(object key, object name) except -1:
    raise TypeError(
        f"{name}: unsupported key type {type(key).__name__}; "
        f"expected bytes-like, str or int"
    )


cdef inline uint64_t _key_hash(const _Key *k, uint64_t seed) noexcept nogil:
    if k.is_int:
        return fq_hash_u64(k.v, seed)
    return fq_xxh3_64(k.p, <size_t>k.n, seed)


cdef uint64_t _hash_obj(object key, uint64_t seed, object name) except? 0:
    cdef _Key k
    cdef uint64_t h
    _key_of(key, &k, name)
    h = _key_hash(&k, seed)
    _key_release(&k)
    return h


cdef uint64_t _as_seed(object seed) except? 0:
    if isinstance(seed, bool) or not PyLong_Check(seed):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed <= 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"seed must be in 0..2**64-1, got {seed!r}")
    return PyLong_AsUnsignedLongLong(seed)


cdef uint32_t _as_partitions(object partitions) except 0:
    if isinstance(partitions, bool) or not PyLong_Check(partitions):
        raise TypeError(f"partitions must be an int, got {type(partitions).__name__}")
    if not 1 <= partitions <= 0x7FFFFFFF:
        raise ValueError(f"partitions must be in 1..2**31-1, got {partitions!r}")
    return <uint32_t>PyLong_AsUnsignedLongLong(partitions)


cdef int _as_strategy(object strategy) except -1:
    if strategy == "modulo":
        return FQ_STRATEGY_MODULO
    if strategy == "jump":
        return FQ_STRATEGY_JUMP
    raise ValueError(f"strategy must be 'modulo' or 'jump', got {strategy!r}")


def hash64(key, seed=0):
    """XXH3-64 of a key, bit-exact with ``xxhash.xxh3_64_intdigest``. A key is a bytes-like
    object, a ``str`` (hashed as UTF-8) or an ``int`` (hashed as its 8 little-endian bytes,
    two's complement for negatives; -2**63..2**64-1).
    """
    cdef const char *p
    cdef Py_ssize_t n
    cdef uint64_t s = 0
    if seed is not 0:
        s = _as_seed(seed)
    if fq_key_fast(<PyObject *>key, &p, &n):
        return fq_xxh3_64(p, <size_t>n, s)
    return _hash_obj(key, s, "key")


def partition(key, partitions, *, strategy="modulo"):
    """The partition in ``range(partitions)`` for a key: ``hash64(key) % partitions``
    ("modulo", reproducible in any language with XXH3) or jump consistent hashing of
    ``hash64(key)`` ("jump": growing n to n+1 partitions moves only ~1/(n+1) of the keys).
    """
    cdef const char *p
    cdef Py_ssize_t n
    cdef uint64_t h
    cdef uint32_t d = _as_partitions(partitions)
    cdef int strat = FQ_STRATEGY_MODULO
    if strategy is not "modulo":
        strat = _as_strategy(strategy)
    if fq_key_fast(<PyObject *>key, &p, &n):
        h = fq_xxh3_64(p, <size_t>n, 0)
    else:
        h = _hash_obj(key, 0, "key")
    if strat == FQ_STRATEGY_JUMP:
        return fq_jump(h, <int32_t>d)
    return h % d


def _xxh3_64(data, seed=0):
    """XXH3-64 of a bytes-like object (as xxhash.xxh3_64_intdigest(data, seed))."""
    cdef Py_buffer view
    cdef uint64_t h, s = _as_seed(seed)
    try:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    except (TypeError, BufferError):
        raise TypeError(
            f"data must be a contiguous bytes-like object, got {type(data).__name__}"
        ) from None
    try:
        if view.len >= 65536:
            with nogil:
                h = fq_xxh3_64(view.buf, <size_t>view.len, s)
        else:
            h = fq_xxh3_64(view.buf, <size_t>view.len, s)
    finally:
        PyBuffer_Release(&view)
    return h


# ---- batches of keys -----------------------------------------------------------------------

cdef struct _Batch:
    # keys as Python objects (items/n, kept alive by `owner`, a list or tuple we hold a
    # reference to) or as an array (arr, read through `view`)
    PyObject **items
    PyObject *owner
    bint is_array
    fq_key_array arr
    Py_ssize_t n
    bint has_view
    Py_buffer view


cdef inline void _batch_release(_Batch *b) noexcept:
    if b.has_view:
        b.has_view = False
        PyBuffer_Release(&b.view)
    if b.owner != NULL:
        Py_DECREF(<object>b.owner)
        b.owner = NULL


cdef int _pin_items(_Batch *b) except -1:
    """Before the first key whose conversion may run Python code (__index__, a buffer
    export): read the rest from a tuple copy, so that code cannot mutate the list under us
    (or free items whose bytes we still point at). Bytes and str keys run no Python code, so
    a list of them is read in place."""
    if b.owner == NULL or type(<object>b.owner) is tuple:
        return 0
    t = tuple(<object>b.owner)          # nothing ran since we read items: same items ...
    if len(t) != b.n:                   # ... unless a finalizer run by this very allocation
        raise RuntimeError("keys changed size during the call")
    Py_INCREF(t)
    Py_DECREF(<object>b.owner)
    b.owner = <PyObject *>t
    b.items = PySequence_Fast_ITEMS(t)
    return 0


cdef object _batch_of(object keys, _Batch *b):
    """Describe `keys` in b (_batch_release(b) afterwards): its items (keeping a reference to
    the sequence that holds them) or, for an array, a buffer view."""
    cdef object seq
    b.has_view = False
    b.is_array = False
    b.owner = NULL
    if type(keys) is list or type(keys) is tuple:
        # Free-threaded builds copy a list first: another thread may mutate it meanwhile.
        seq = keys if FQ_GIL_SERIALIZES or type(keys) is tuple else tuple(keys)
    elif isinstance(keys, (str, bytes, bytearray)):
        raise TypeError(
            f"keys must be a list, tuple or 1-D array of keys, not a single "
            f"{type(keys).__name__} (wrap one key in a list)"
        )
    elif PyObject_CheckBuffer(keys):
        try:
            PyObject_GetBuffer(keys, &b.view, PyBUF_RECORDS_RO)
        except (TypeError, BufferError, ValueError) as exc:
            raise TypeError(f"keys: cannot read the array ({exc})") from None
        b.has_view = True
        try:
            _array_kind(b, keys)
        except BaseException:
            _batch_release(b)
            raise
        b.is_array = True
        b.n = b.view.shape[0]
        b.arr.base = <const unsigned char *>b.view.buf
        b.arr.stride = b.view.strides[0]
        b.arr.n = <size_t>b.n
        b.arr.itemsize = <size_t>b.view.itemsize
        return None
    else:
        try:
            it = PyObject_GetIter(keys)
        except TypeError:
            raise TypeError(
                f"keys must be a list, tuple, iterable or 1-D array of keys, got "
                f"{type(keys).__name__}"
            ) from None
        seq = list(it)
    b.items = PySequence_Fast_ITEMS(seq)
    b.n = len(seq)
    Py_INCREF(seq)
    b.owner = <PyObject *>seq
    return None


cdef int _array_kind(_Batch *b, object keys) except -1:
    cdef bytes fmt = (b.view.format or b"B")
    cdef bint swap = False
    cdef str dtype
    if b.view.ndim != 1:
        raise TypeError(f"keys must be a 1-dimensional array, got ndim={b.view.ndim}")
    if fmt[:1] in (b"@", b"=", b"<", b">", b"!"):
        swap = (fmt[:1] in (b">", b"!")) if _HOST_LE else (fmt[:1] == b"<")
        fmt = fmt[1:]
    if fmt in (b"Q", b"q", b"L", b"l", b"N", b"n") and b.view.itemsize == 8:
        b.arr.kind = FQ_KEYS_U64_SWAP if swap else FQ_KEYS_U64
        return 0
    if fmt.endswith(b"s") and fmt[:-1].isdigit() or fmt == b"s":
        b.arr.kind = FQ_KEYS_FIXED
        return 0
    dtype = str(getattr(keys, "dtype", fmt.decode("ascii", "replace")))
    raise TypeError(
        f"keys: unsupported array dtype {dtype} (buffer format {fmt.decode('ascii', 'replace')!r},"
        f" itemsize {b.view.itemsize}); expected uint64, int64 or fixed-width bytes S<n> "
        f"(a str array: .astype('S') or a list)"
    )


cdef object _new_array(Py_ssize_t n, object dtype, void **data, object out=None):
    """A fresh 1-D array of n `dtype` items (or `out`, checked), and its data pointer."""
    cdef Py_buffer v
    cdef tuple np = _numpy()
    if out is None:
        arr = np[1](n, np[2][dtype])      # cached: a dtype given by name costs a lookup
    else:
        arr = out
        if not isinstance(out, np[0].ndarray) or out.dtype != np[2][dtype] or out.ndim != 1 \
                or not out.flags.c_contiguous or not out.flags.writeable:
            raise TypeError(
                f"out must be a writable, C-contiguous 1-D {dtype} numpy array, got "
                f"{type(out).__name__}"
                + (f" of dtype {out.dtype}, ndim {out.ndim}" if isinstance(out, np[0].ndarray) else "")
            )
        if out.shape[0] != n:
            raise ValueError(f"out has {out.shape[0]} items, keys has {n}")
    PyObject_GetBuffer(arr, &v, PyBUF_WRITABLE)
    data[0] = v.buf
    PyBuffer_Release(&v)              # the array owns its memory; the pointer stays valid
    return arr


cdef int _hash_batch(_Batch *b, uint64_t seed, uint64_t *out) except -1:
    """out[i] = hash of key i, seeded"""
    cdef Py_ssize_t i
    cdef const char *p
    cdef Py_ssize_t n
    cdef int rc
    if b.is_array:
        if b.n >= 1024:
            with nogil:
                fq_hash_array(&b.arr, seed, out)
        else:
            fq_hash_array(&b.arr, seed, out)
        return 0
    for i in range(b.n):
        rc = fq_key_fast(b.items[i], &p, &n)
        if rc:
            out[i] = fq_xxh3_64(p, <size_t>n, seed)
        else:
            _pin_items(b)
            out[i] = _hash_obj(<object>b.items[i], seed, f"keys[{i}]")
    return 0


def hash_many(keys, seed=0, *, out=None):
    """``hash64`` of every key, as a ``uint64`` array. ``keys``: a list or tuple (or any
    iterable) of keys, a ``uint64``/``int64`` array (each element hashes like the same Python
    int) or a fixed-width bytes array ``S<n>`` (each element hashes like its bytes without
    trailing NULs, as numpy itself reads them). Arrays are hashed without the GIL. ``out``: a
    ``uint64`` array of the same length to write into (saves allocating a fresh one).
    """
    cdef _Batch b
    cdef void *data
    cdef uint64_t s = _as_seed(seed)
    _batch_of(keys, &b)
    try:
        arr = _new_array(b.n, "uint64", &data, out)
        _hash_batch(&b, s, <uint64_t *>data)
    finally:
        _batch_release(&b)
    return arr


cdef int _partition_batch(_Batch *b, uint32_t d, int strat, int32_t *out) except -1:
    cdef fq_divisor dv = fq_divisor_new(d)
    cdef uint64_t *h
    cdef Py_ssize_t i
    if b.is_array:
        if b.n >= 1024:
            with nogil:
                fq_partition_array(&b.arr, &dv, strat, out)
        else:
            fq_partition_array(&b.arr, &dv, strat, out)
        return 0
    h = <uint64_t *>malloc(<size_t>(b.n if b.n else 1) * 8)
    if h == NULL:
        raise MemoryError()
    try:
        _hash_batch(b, 0, h)
        fq_partition_hashes(h, <size_t>b.n, &dv, strat, out)
    finally:
        free(h)
    return 0


def partition_many(keys, partitions, *, strategy="modulo", out=None):
    """``partition(key, partitions, strategy=...)`` of every key, as an ``int32`` array. Keys as
    for ``hash_many``; ``out``: an ``int32`` array of the same length to write into.
    """
    cdef _Batch b
    cdef void *data
    cdef uint32_t d = _as_partitions(partitions)
    cdef int strat = _as_strategy(strategy)
    _batch_of(keys, &b)
    try:
        arr = _new_array(b.n, "int32", &data, out)
        _partition_batch(&b, d, strat, <int32_t *>data)
    finally:
        _batch_release(&b)
    return arr


def group_by_partition(keys, partitions, *, strategy="modulo"):
    """Split a batch per partition without a Python loop. ``counts[p]`` (``int64``, one per
    partition) is how many keys go to partition p; ``order`` (``int64``) lists the indices of
    partition 0's keys in their input order, then partition 1's, and so on (a stable sort), so
    partition p's keys are ``order[starts[p]:starts[p] + counts[p]]`` with
    ``starts = numpy.cumsum(counts) - counts``.
    """
    cdef _Batch b
    cdef void *o
    cdef void *c
    cdef int32_t *part = NULL
    cdef int64_t *cursor = NULL
    cdef uint32_t d = _as_partitions(partitions)
    cdef int strat = _as_strategy(strategy)
    _batch_of(keys, &b)
    try:
        order = _new_array(b.n, "int64", &o)
        counts = _new_array(d, "int64", &c)
        part = <int32_t *>malloc(<size_t>(b.n if b.n else 1) * 4)
        cursor = <int64_t *>malloc(<size_t>d * 8)
        if part == NULL or cursor == NULL:
            raise MemoryError()
        _partition_batch(&b, d, strat, part)
        with nogil:
            fq_group(part, <size_t>b.n, d, <int64_t *>c, <int64_t *>o, cursor)
    finally:
        free(part)
        free(cursor)
        _batch_release(&b)
    return order, counts
