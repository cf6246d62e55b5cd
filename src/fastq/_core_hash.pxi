# XXH3-64 over any bytes-like object: groundwork for hashing and partition routing (issue 4).

from libc.stdint cimport uint64_t


def _xxh3_64(data, seed=0):
    """XXH3-64 of a bytes-like object (as xxhash.xxh3_64_intdigest(data, seed))."""
    cdef Py_buffer view
    cdef uint64_t h, s
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed <= 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"seed must be in 0..2**64-1, got {seed!r}")
    s = seed
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
