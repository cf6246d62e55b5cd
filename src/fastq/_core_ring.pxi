# RingBuffer: a bounded lock-free MPMC FIFO of Python objects over fq_ring.h.

from cpython.exc cimport PyErr_CheckSignals
from cpython.list cimport PyList_New
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from cpython.sequence cimport PySequence_Fast_ITEMS
from libc.math cimport isnan
from libc.stdint cimport int64_t, uint64_t

from collections import deque as _deque
from types import GenericAlias as _GenericAlias

from fastq.errors import Closed, Empty, Full

cdef extern from "Python.h":
    void Py_SET_SIZE(object o, Py_ssize_t size)

cdef extern from "pythread.h":
    unsigned long PyThread_get_thread_ident() nogil

_get_running_loop = None          # asyncio.get_running_loop, imported on first async use

# True on GIL builds: positions are claimed with plain stores under the GIL (fq_ring.h,
# FQ_SERIALIZED_MOVERS); False on free-threaded builds: lock-free CAS claims.
_SERIALIZED_MOVERS = bool(FQ_GIL_SERIALIZES)


cdef int64_t _deadline(object timeout) except? -2:
    """timeout (seconds or None) -> absolute monotonic deadline in ns (FQ_NO_DEADLINE)."""
    if timeout is None:
        return FQ_NO_DEADLINE
    cdef double t
    try:
        t = timeout
    except TypeError:
        raise TypeError(f"timeout must be a number or None, got {type(timeout).__name__}") from None
    except OverflowError:                      # an int beyond float range
        if timeout > 0:
            return FQ_NO_DEADLINE
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}") from None
    if isnan(t) or t < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    if t > 9.0e9:
        return FQ_NO_DEADLINE
    return fq_now_ns() + <int64_t>(t * 1e9)


cdef uint64_t _positive_count(object value, str name, uint64_t upper) except 0:
    """An int argument in 1..upper (bools refused), named in the error."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    v = value.__index__()
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v!r}")
    if v > upper:
        raise ValueError(f"{name} must be <= {upper}, got {v!r}")
    return <uint64_t>v


def _wake_future(fut):
    """Runs in the waiter's event loop (via call_soon_threadsafe)."""
    if not fut.done():
        fut.set_result(None)


cdef class RingBuffer:
    """RingBuffer(capacity)
--

    A bounded multi-producer multi-consumer FIFO of Python objects.

    Vyukov's per-slot sequence numbers over C11 atomics: lock-free on free-threaded builds;
    on GIL builds the GIL (already held by every call) orders the position claims. Safe from
    any mix of threads and asyncio event loops. ``capacity`` is rounded up to a power of two
    (read the real value back from :attr:`capacity`); the maximum is 2**30. Blocking calls
    spin briefly, then sleep with the GIL released until woken.
    """

    def __cinit__(self, capacity):
        cdef uint64_t cap = _positive_count(capacity, "capacity", FQ_RING_MAX_CAPACITY)
        self._r = fq_ring_new(fq_ring_round_capacity(cap), 0)
        if self._r is NULL:
            raise MemoryError(f"cannot allocate a RingBuffer of capacity {capacity}")
        self._get_waiters = _deque()
        self._put_waiters = _deque()

    def __dealloc__(self):
        cdef uint64_t first, k, j
        cdef int closed
        if self._r is NULL:
            return
        k = fq_ring_claim_get(self._r, self._r.capacity, &first, &closed)
        for j in range(k):
            Py_DECREF(<object><PyObject *>fq_ring_take(self._r, first + j))
        fq_ring_free(self._r)
        self._r = NULL

    __class_getitem__ = classmethod(_GenericAlias)

    # ---- observers ----------------------------------------------------------------------

    @property
    def capacity(self):
        """The real capacity: the requested one rounded up to a power of two."""
        return self._r.capacity

    @property
    def closed(self):
        """True once close() was called."""
        return fq_ring_closed(self._r)

    def qsize(self):
        """The number of items in the ring (a snapshot: other threads may change it)."""
        return fq_ring_size(self._r)

    def __len__(self):
        return fq_ring_size(self._r)

    def empty(self):
        """True if the ring holds no items (a snapshot)."""
        return fq_ring_size(self._r) == 0

    def full(self):
        """True if the ring holds capacity items (a snapshot)."""
        return fq_ring_size(self._r) >= self._r.capacity

    def __repr__(self):
        return (f"<fastq.RingBuffer capacity={self._r.capacity} size={fq_ring_size(self._r)}"
                f"{' closed' if fq_ring_closed(self._r) else ''}>")

    def __reduce__(self):
        raise TypeError("cannot pickle a fastq.RingBuffer: it holds live in-process references")

    # ---- single items -------------------------------------------------------------------

    def put_nowait(self, item):
        """Put item if there is room, else raise Full (Closed once closed)."""
        cdef int wake = 0
        Py_INCREF(item)
        cdef int rc = fq_ring_try_put(self._r, <void *>item, &wake)
        if rc == FQ_OK:
            if wake:
                self._wake_takers(1)
            return
        Py_DECREF(item)
        self._raise_put(rc)

    def put(self, item, block=True, timeout=None):
        """Put item, waiting for room if block is true (up to timeout seconds; None: forever).

        Raises Full when non-blocking or the timeout expires, Closed once closed."""
        cdef int wake = 0
        cdef int64_t deadline = FQ_NO_DEADLINE
        if timeout is not None:
            deadline = _deadline(timeout)          # validated even when no wait is needed
        Py_INCREF(item)
        cdef int rc = fq_ring_try_put(self._r, <void *>item, &wake)
        if rc == FQ_FULL and block:
            try:
                rc = self._put_wait(<void *>item, deadline, &wake)
            except BaseException:
                Py_DECREF(item)
                raise
        if rc == FQ_OK:
            if wake:
                self._wake_takers(1)
            return
        Py_DECREF(item)
        self._raise_put(rc)

    def get_nowait(self):
        """Remove and return the oldest item, or raise Empty (Closed once closed and drained)."""
        cdef void *out
        cdef int wake = 0
        cdef int rc = fq_ring_try_get(self._r, &out, &wake)
        if rc == FQ_OK:
            if wake:
                self._wake_putters(1)
            return fq_steal(out)
        self._raise_get(rc)

    def get(self, block=True, timeout=None):
        """Remove and return the oldest item, waiting if block is true (up to timeout seconds).

        Raises Empty when non-blocking or the timeout expires; Closed once closed and drained."""
        cdef void *out
        cdef int wake = 0
        cdef int64_t deadline = FQ_NO_DEADLINE
        if timeout is not None:
            deadline = _deadline(timeout)          # validated even when no wait is needed
        cdef int rc = fq_ring_try_get(self._r, &out, &wake)
        if rc == FQ_EMPTY and block:
            rc = self._get_wait(&out, deadline, &wake)
        if rc == FQ_OK:
            if wake:
                self._wake_putters(1)
            return fq_steal(out)
        self._raise_get(rc)

    # ---- batches ------------------------------------------------------------------------

    def put_many(self, items, block=True, timeout=None):
        """Put the items in order; returns how many were put (always a prefix of items).

        Blocking (the default, no timeout) puts all of them, waiting for room as needed.
        With block=False it puts as many as fit now; with a timeout, as many as fit before it
        expires: the rest (items[n:]) are left to the caller. Raises Closed if the ring is
        closed before any item was put; a close part-way returns the count put so far."""
        cdef uint64_t n, done = 0
        cdef int closed = 0
        cdef int64_t deadline = _deadline(timeout)
        if not block:
            deadline = 0
        if type(items) is list:
            # Fast path without a copy; the critical section keeps other threads from
            # resizing the list under us on free-threaded builds (a no-op with the GIL).
            with cython.critical_section(items):
                n = len(items)
                done = self._put_array(PySequence_Fast_ITEMS(items), n, &closed)
            if closed and done == 0 and n:
                raise Closed("put_many() on a closed RingBuffer")
            if done == n or not block or closed:
                return done
            items = tuple(items[done:n])       # waiting releases the list: keep a snapshot
        else:
            if type(items) is not tuple:
                items = tuple(items)
            n = len(items)
        cdef uint64_t base = done              # items[0] is now the item at index `base`
        while done < n:
            done += self._put_array(PySequence_Fast_ITEMS(items) + (done - base), n - done, &closed)
            if done == n:
                break
            if closed:
                if done == 0:
                    raise Closed("put_many() on a closed RingBuffer")
                break
            if self._wait(1, deadline) == FQ_TIMEOUT:
                done += self._put_array(PySequence_Fast_ITEMS(items) + (done - base),
                                        n - done, &closed)        # one last look
                break
        return done

    cdef uint64_t _put_array(self, PyObject **arr, uint64_t n, int *closed) except? 0xFFFFFFFFFFFFFFFF:
        """Put a prefix of arr[0:n] without waiting; returns its length (0: full or closed)."""
        cdef uint64_t done = 0, k, j, first
        while done < n:
            k = fq_ring_claim_put(self._r, n - done, &first, closed)
            if k == 0:
                break
            for j in range(k):
                Py_INCREF(<object>arr[done + j])
                fq_ring_fill(self._r, first + j, arr[done + j])
            done += k
        if done and fq_ring_takers_waiting(self._r):
            self._wake_takers(done)
        return done

    def get_many(self, max_items, timeout=None, block=True):
        """Remove and return up to max_items of the oldest items, as a list.

        Returns as soon as at least one item is available (waiting up to timeout seconds when
        block is true); raises Empty when none arrived in time (or at once when block is false),
        Closed once closed and drained."""
        cdef uint64_t m = _positive_count(max_items, "max_items", <uint64_t>1 << 62)
        cdef int64_t deadline = _deadline(timeout)
        if not block:
            deadline = 0
        while True:
            batch = self._take_batch(m)
            if batch is not None:
                return batch
            if self._wait(0, deadline) == FQ_TIMEOUT:
                batch = self._take_batch(m)                      # one last look
                if batch is not None:
                    return batch
                raise Empty("get_many() timed out" if block else "RingBuffer is empty")

    cdef object _take_batch(self, uint64_t m):
        """Take up to m items now: a list, None when empty; raises Closed when drained."""
        cdef uint64_t avail = fq_ring_size(self._r), first, k, j
        cdef int closed = 0
        if avail == 0:
            if fq_ring_closed(self._r) and fq_ring_size(self._r) == 0:
                self._raise_get(FQ_CLOSED)
            return None
        if m > avail:
            m = avail
        batch = PyList_New(<Py_ssize_t>m)        # allocate before claiming: never drop items
        k = fq_ring_claim_get(self._r, m, &first, &closed)
        if k == 0:
            if closed:
                self._raise_get(FQ_CLOSED)
            return None
        for j in range(k):
            fq_list_set(batch, <Py_ssize_t>j, fq_ring_take(self._r, first + j))
        if k < m:
            # another taker got the rest: shrink in place (the tail slots are still NULL;
            # a list never reads past its size, and frees only what it holds)
            Py_SET_SIZE(batch, <Py_ssize_t>k)
        if fq_ring_putters_waiting(self._r):
            self._wake_putters(k)
        return batch

    # ---- closing and iteration ------------------------------------------------------------

    def close(self):
        """Close the ring: later puts raise Closed; gets drain what is left, then raise Closed.

        Wakes every waiting thread and coroutine. Closing twice is harmless."""
        if fq_ring_close(self._r):
            self._wake_async(0, -1)
            self._wake_async(1, -1)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return None

    def __iter__(self):
        return self

    def __next__(self):
        """Blocking get(); stops once the ring is closed and drained."""
        cdef void *out
        cdef int wake = 0
        cdef int rc = fq_ring_try_get(self._r, &out, &wake)
        if rc == FQ_EMPTY:
            rc = self._get_wait(&out, FQ_NO_DEADLINE, &wake)
        if rc == FQ_OK:
            if wake:
                self._wake_putters(1)
            return fq_steal(out)
        raise StopIteration

    # ---- asyncio ------------------------------------------------------------------------

    async def aput(self, item):
        """Put item, waiting (without blocking the event loop) for room. Closed once closed."""
        cdef int wake = 0, rc
        while True:
            Py_INCREF(item)
            rc = fq_ring_try_put(self._r, <void *>item, &wake)
            if rc == FQ_OK:
                if wake:
                    self._wake_takers(1)
                return
            Py_DECREF(item)
            if rc == FQ_CLOSED:
                self._raise_put(rc)
            w = self._async_register(1)
            if w is not None:
                await self._async_wait(w, 1)

    async def aget(self):
        """Remove and return the oldest item, waiting without blocking the event loop.

        Raises Closed once closed and drained. Cancelling a waiting aget never loses an item."""
        cdef void *out
        cdef int wake = 0, rc
        while True:
            rc = fq_ring_try_get(self._r, &out, &wake)
            if rc == FQ_OK:
                if wake:
                    self._wake_putters(1)
                return fq_steal(out)
            if rc == FQ_CLOSED:
                self._raise_get(rc)
            w = self._async_register(0)
            if w is not None:
                await self._async_wait(w, 0)

    async def aget_many(self, max_items):
        """Like get_many(max_items), awaiting at least one item without blocking the loop."""
        cdef uint64_t m = _positive_count(max_items, "max_items", <uint64_t>1 << 62)
        while True:
            batch = self._take_batch(m)
            if batch is not None:
                return batch
            w = self._async_register(0)
            if w is not None:
                await self._async_wait(w, 0)

    # ---- internals: waiting and waking ----------------------------------------------------

    cdef int _wait(self, int for_put, int64_t deadline) except -1:
        """After a failed try (GIL held): wait until the ring may have room (for_put) or items.

        FQ_OK: try again; FQ_TIMEOUT: the deadline passed. Spins and parks without the GIL,
        but arms the eventcount with it held: on GIL builds that is what orders a sleeper
        against movers, which claim positions with plain stores (see fq_ring.h)."""
        cdef bint ready
        cdef uint32_t armed
        cdef int rc
        if deadline != FQ_NO_DEADLINE and fq_now_ns() >= deadline:
            return FQ_TIMEOUT                  # includes block=False (deadline 0): no spin
        with nogil:
            ready = fq_ring_spin(self._r, for_put)
        if ready:
            return FQ_OK
        if deadline != FQ_NO_DEADLINE and fq_now_ns() >= deadline:
            return FQ_TIMEOUT
        armed = fq_ring_arm(self._r, for_put)
        if not fq_ring_looks_blocked(self._r, for_put):
            return FQ_OK
        with nogil:
            rc = fq_ring_park(self._r, for_put, armed, deadline)
        if rc == FQ_INTR:
            PyErr_CheckSignals()   # raises KeyboardInterrupt & co; else just look again
            return FQ_OK
        return rc

    cdef int _put_wait(self, void *item, int64_t deadline, int *wake) except -1:
        """Blocking put of an item whose reference the caller already took."""
        cdef int rc
        while True:
            if self._wait(1, deadline) == FQ_TIMEOUT:
                rc = fq_ring_try_put(self._r, item, wake)        # one last look
                return FQ_TIMEOUT if rc == FQ_FULL else rc
            rc = fq_ring_try_put(self._r, item, wake)
            if rc != FQ_FULL:
                return rc

    cdef int _get_wait(self, void **out, int64_t deadline, int *wake) except -1:
        cdef int rc
        while True:
            if self._wait(0, deadline) == FQ_TIMEOUT:
                rc = fq_ring_try_get(self._r, out, wake)
                return FQ_TIMEOUT if rc == FQ_EMPTY else rc
            rc = fq_ring_try_get(self._r, out, wake)
            if rc != FQ_EMPTY:
                return rc

    cdef int _raise_put(self, int rc) except -1:
        if rc == FQ_CLOSED:
            raise Closed("put on a closed RingBuffer")
        raise Full("RingBuffer is full")

    cdef int _raise_get(self, int rc) except -1:
        if rc == FQ_CLOSED:
            raise Closed("RingBuffer is closed and drained")
        raise Empty("RingBuffer is empty")

    cdef int _wake_takers(self, uint64_t n) except -1:
        fq_ring_notify_not_empty(self._r)
        self._wake_async(0, <Py_ssize_t>n)
        return 0

    cdef int _wake_putters(self, uint64_t n) except -1:
        fq_ring_notify_not_full(self._r)
        self._wake_async(1, <Py_ssize_t>n)
        return 0

    cdef int _wake_async(self, int for_put, Py_ssize_t n) except -1:
        """Wake up to n asyncio waiters (n < 0: all of them)."""
        waiters = self._put_waiters if for_put else self._get_waiters
        cdef unsigned long me = PyThread_get_thread_ident()
        while n != 0:
            with self._lock:
                if not waiters:
                    return 0
                w = waiters.popleft()
                fq_ring_async_add(self._r, for_put, -1)
            fut, loop, tid = w
            try:
                if tid != me:
                    # the future belongs to another thread's loop: resolve it there
                    loop.call_soon_threadsafe(_wake_future, fut)
                elif not fut.done():
                    fut.set_result(None)
                else:
                    continue          # cancelled meanwhile; it unregisters itself
            except RuntimeError:      # its event loop is closed: nobody to wake there
                continue
            n -= 1
        return 0

    cdef object _async_register(self, int for_put):
        """Register the running task as a waiter; None if the ring changed meanwhile."""
        global _get_running_loop
        if _get_running_loop is None:
            from asyncio import get_running_loop
            _get_running_loop = get_running_loop
        loop = _get_running_loop()
        w = (loop.create_future(), loop, PyThread_get_thread_ident())
        waiters = self._put_waiters if for_put else self._get_waiters
        with self._lock:
            waiters.append(w)
            fq_ring_async_add(self._r, for_put, 1)
        # Re-check after registering (seq_cst): a mover that missed our registration must
        # have moved before it, so we see its move here and do not sleep.
        if fq_ring_looks_full(self._r) if for_put else fq_ring_looks_empty(self._r):
            return w
        if self._async_unregister(w, for_put):
            return None
        return w                    # already popped by a waker: its future is (being) resolved

    cdef bint _async_unregister(self, object w, int for_put) except -1:
        waiters = self._put_waiters if for_put else self._get_waiters
        with self._lock:
            try:
                waiters.remove(w)
            except ValueError:
                return False
            fq_ring_async_add(self._r, for_put, -1)
        return True

    async def _async_wait(self, w, int for_put):
        try:
            await w[0]
        except BaseException:
            # Cancelled (or the loop is shutting down). If a waker already picked us, pass
            # its wake-up on, so an item (or free slot) never sits while others wait.
            if not self._async_unregister(w, for_put):
                if for_put:
                    if not fq_ring_looks_full(self._r):
                        self._wake_putters(1)
                elif not fq_ring_looks_empty(self._r):
                    self._wake_takers(1)
            raise


cdef _install_gc():
    cdef RingBuffer probe = RingBuffer(1)
    fq_ring_install_gc(RingBuffer, <Py_ssize_t>(<char *>&probe._r - <char *><PyObject *>probe))


_install_gc()


def _ring_at(capacity, start):
    """A RingBuffer whose positions start at `start` (tests cross the 63-bit wrap with it)."""
    cdef RingBuffer ring = RingBuffer(capacity)
    cdef fq_ring *fresh = fq_ring_new(ring._r.capacity, <uint64_t>start)
    if fresh is NULL:
        raise MemoryError
    fq_ring_free(ring._r)
    ring._r = fresh
    return ring
