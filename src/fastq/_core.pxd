# _core.pxd - the map of the native core: C declarations and class layouts, no logic.

cimport cython
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "fq_mode.h":
    # must come first: it decides FQ_SERIALIZED_MOVERS before fq_ring.h is read
    const bint FQ_GIL_SERIALIZES "FQ_SERIALIZED_MOVERS_FLAG"


cdef extern from "fq_ring.h" nogil:
    # Status codes returned by every fq_* operation (mapped to exceptions in _core_ring.pxi:
    # FQ_FULL -> Full, FQ_EMPTY/FQ_TIMEOUT -> Empty or Full, FQ_CLOSED -> Closed,
    # FQ_INTR -> run signal handlers, then retry).
    enum:
        FQ_OK
        FQ_EMPTY
        FQ_FULL
        FQ_CLOSED
        FQ_TIMEOUT
        FQ_INTR

    const int64_t FQ_NO_DEADLINE
    const uint64_t FQ_RING_MAX_CAPACITY

    ctypedef struct fq_ring:
        uint64_t capacity            # power of two

    int64_t fq_now_ns()
    uint64_t fq_ring_round_capacity(uint64_t n)
    fq_ring *fq_ring_new(uint64_t capacity, uint64_t start)
    void fq_ring_free(fq_ring *r)

    bint fq_ring_closed(fq_ring *r)
    uint64_t fq_ring_size(fq_ring *r)
    bint fq_ring_looks_empty(fq_ring *r)
    bint fq_ring_looks_full(fq_ring *r)

    int fq_ring_try_put(fq_ring *r, void *item, int *wake)
    int fq_ring_try_get(fq_ring *r, void **out, int *wake)
    uint64_t fq_ring_claim_put(fq_ring *r, uint64_t n, uint64_t *first, int *closed)
    void fq_ring_fill(fq_ring *r, uint64_t p, void *item)
    uint64_t fq_ring_claim_get(fq_ring *r, uint64_t n, uint64_t *first, int *closed)
    void *fq_ring_take(fq_ring *r, uint64_t p)
    bint fq_ring_takers_waiting(fq_ring *r)
    bint fq_ring_putters_waiting(fq_ring *r)

    void fq_ring_async_add(fq_ring *r, int for_put, int delta)
    void fq_ring_notify_not_empty(fq_ring *r)
    void fq_ring_notify_not_full(fq_ring *r)
    # waiting in three steps: spin (no GIL), arm + re-check (GIL held), park (no GIL)
    bint fq_ring_looks_blocked(fq_ring *r, int for_put)
    bint fq_ring_spin(fq_ring *r, int for_put)
    uint32_t fq_ring_arm(fq_ring *r, int for_put)
    int fq_ring_park(fq_ring *r, int for_put, uint32_t armed, int64_t deadline)
    bint fq_ring_close(fq_ring *r)


cdef extern from "fq_crc32c.h" nogil:
    # CRC-32C: fq_crc32c picks SSE4.2 when the CPU has it; fq_crc32c_sw is the table path
    void fq_crc32c_setup()
    uint32_t fq_crc32c(uint32_t crc, const void *data, size_t n)
    uint32_t fq_crc32c_sw(uint32_t crc, const void *data, size_t n)
    const bint fq_crc32c_use_hw


cdef extern from "fq_py.h":
    # hands a slot's owned reference to Cython (no extra INCREF); never NULL
    object fq_steal(void *p)
    void fq_list_set(object lst, Py_ssize_t i, void *p)
    # wraps RingBuffer's tp_traverse/tp_clear so the GC sees the items in the slots
    void fq_ring_install_gc(object ring_type, Py_ssize_t ring_field_offset)


@cython.final
cdef class RingBuffer:
    cdef fq_ring *_r               # the C ring; owns one reference per stored item
    cdef object _get_waiters       # deque of (future, loop, thread id): asyncio takers
    cdef object _put_waiters       # deque of (future, loop, thread id): asyncio putters
    cdef cython.pymutex _lock      # guards the two deques (slow path only; PyMutex)
    cdef object __weakref__

    cdef object _take_batch(self, uint64_t m)
    cdef uint64_t _put_array(self, PyObject **arr, uint64_t n, int *closed) except? 0xFFFFFFFFFFFFFFFF
    cdef int _wait(self, int for_put, int64_t deadline) except -1
    cdef int _put_wait(self, void *item, int64_t deadline, int *wake) except -1
    cdef int _get_wait(self, void **out, int64_t deadline, int *wake) except -1
    cdef int _raise_put(self, int rc) except -1
    cdef int _raise_get(self, int rc) except -1
    cdef int _wake_takers(self, uint64_t n) except -1
    cdef int _wake_putters(self, uint64_t n) except -1
    cdef int _wake_async(self, int for_put, Py_ssize_t n) except -1
    cdef object _async_register(self, int for_put)
    cdef bint _async_unregister(self, object w, int for_put) except -1
