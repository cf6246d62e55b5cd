# MemoryQueue: the in-memory work-queue engine over _c/fq_wq.h (docs/queue.md), and
# Delivery, the leased hand-out a consumer settles with ack / nack / extend.
#
# Locking: GIL builds run the C state machine under the GIL; free-threaded builds under a
# per-queue PyMutex. No Python code runs while it is held: the clock is read before, message
# references are dropped and Delivery objects built after.

from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF, PyObject
from libc.math cimport isfinite, isnan
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

import os as _os_q

import struct as _struct_q

from fastq.errors import InvalidReceipt as _InvalidReceipt

cdef object _NACK_HEAD = _struct_q.Struct("<Qq")

cdef tuple _DEAD_REASONS = (None, "max_deliveries", "expired", "rejected", "permanent",
                             "max_attempts")
cdef object _RELEASE_REC = _struct_q.Struct("<QIq")
DEF RETAIN_EVERY = 4096                    # journal settlements between retention passes


cdef inline void _le64(unsigned char *p, uint64_t v) noexcept:
    cdef int i
    for i in range(8):
        p[i] = <unsigned char>(v >> (8 * i))


cdef int64_t _seconds_ns(object value, str name, bint allow_zero) except? -1:
    """A duration argument in seconds as ns: a finite number >= 0 (> 0 unless allow_zero)."""
    cdef double t
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    t = value
    if isnan(t) or not isfinite(t) or t < 0 or (t == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number of seconds {'>=' if allow_zero else '>'} 0, got {value!r}")
    if t > 9.2e9:
        raise ValueError(f"{name} is too large ({value!r} s)")
    return <int64_t>(t * 1e9 + 0.5)


cdef int64_t _payload_bytes(Message m) except -1:
    p = m.payload
    if type(p) is bytes:
        return len(<bytes>p)
    if type(p) is str:
        return len((<str>p).encode("utf-8", "surrogatepass"))
    if isinstance(p, (bytes, bytearray)):
        return len(p)
    if isinstance(p, memoryview):
        return (<memoryview>p).nbytes
    if isinstance(p, str):
        return len(str(p).encode("utf-8", "surrogatepass"))
    return len(_codecs_mod().JSON.encode(p))


@cython.no_gc
cdef class Delivery:
    """One hand-out of a message: settle it with :meth:`ack`, :meth:`nack` or keep it with
    :meth:`extend` before ``lease_deadline`` (seconds on the queue's clock). ``attempt`` is 1
    on the first delivery. ``receipt`` names this hand-out only: once it is settled or its
    lease has run out, it is stale and settling it raises :class:`fastq.InvalidReceipt`."""

    def __init__(self, message, attempt, receipt, lease_deadline, queue):
        if not isinstance(message, Message):
            raise TypeError(f"message must be a fastq.Message, got {type(message).__name__}")
        self.message = message
        self.attempt = attempt
        self.receipt = receipt
        self.lease_deadline = lease_deadline
        self._queue = queue
        self._engine = None

    def ack(self):
        """The message is done: it is never delivered again."""
        if self._engine is not None:
            (<MemoryQueue>self._engine)._ack_u64(self.receipt)
        else:
            self._queue.ack(self.receipt)

    def nack(self, delay=None, *, error=None):
        """A failed attempt: deliver again after ``delay`` seconds (default: now), or move it to
        the dead-letter queue if this was the last allowed attempt. ``error`` (an exception or
        text) is kept as the last error for the dead-letter context."""
        self._queue.nack(self.receipt, delay=delay, error=error)

    def release(self, delay=None):
        """Give the message back untried: visible again after ``delay`` seconds (default: now)
        and this hand-out does not count as an attempt (a consumer that is stopping, or whose
        downstream is known to be down)."""
        self._queue.release(self.receipt, delay=delay)

    def reject(self, error=None, reason="permanent"):
        """Move the message to the dead-letter queue now (retrying cannot help). ``reason``:
        ``"permanent"`` or ``"max_attempts"`` (the consumer's own attempt limit)."""
        self._queue.reject(self.receipt, error=error, reason=reason)

    def extend(self, seconds):
        """Heartbeat: the lease now runs out ``seconds`` from now. Returns the new deadline."""
        self.lease_deadline = self._queue.extend(self.receipt, seconds)
        return self.lease_deadline

    @property
    def queue(self):
        """The queue this delivery came from."""
        return self._queue

    def __repr__(self):
        return (f"Delivery(attempt={self.attempt}, receipt={self.receipt:#x}, "
                f"lease_deadline={self.lease_deadline!r}, message={self.message!r})")


cdef class MemoryQueue:
    """The in-memory work-queue engine: priorities with aging, delays, leases, attempts and
    dead-lettering, in C (fastq.backends.MemoryEngine is this class). Non-blocking: waiting
    is the job of :class:`fastq.Queue`. Thread-safe."""

    def __cinit__(self):
        self._ready = False

    def __init__(self, maxsize=None, *, max_bytes=None, visibility_timeout=30.0,
                 max_deliveries=5, priority_aging=10.0, clock=None, owner=None):
        cdef uint64_t cap = <uint64_t>-1
        cdef int64_t mb = INT64_MAX, vt, age = 0
        if self._ready:
            raise RuntimeError("MemoryQueue.__init__ called twice")
        if maxsize is not None:
            if isinstance(maxsize, bool) or not isinstance(maxsize, int):
                raise TypeError(f"maxsize must be an int or None, got {type(maxsize).__name__}")
            if not 1 <= maxsize < FQ_WQ_MAX_SLOTS:
                raise ValueError(f"maxsize must be in 1..{FQ_WQ_MAX_SLOTS - 1} (or None), got {maxsize!r}")
            cap = maxsize
        if max_bytes is not None:
            if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
                raise TypeError(f"max_bytes must be an int or None, got {type(max_bytes).__name__}")
            if max_bytes < 1:
                raise ValueError(f"max_bytes must be >= 1 (or None), got {max_bytes!r}")
            mb = min(max_bytes, INT64_MAX - 1)
        vt = _seconds_ns(visibility_timeout, "visibility_timeout", False)
        if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int):
            raise TypeError(f"max_deliveries must be an int, got {type(max_deliveries).__name__}")
        if not 1 <= max_deliveries <= 0xFFFFFFFF:
            raise ValueError(f"max_deliveries must be >= 1, got {max_deliveries!r}")
        if priority_aging is not None:
            age = _seconds_ns(priority_aging, "priority_aging", False)
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, got {type(clock).__name__}")
        fq_wq_init(&self._q, cap, mb, vt, <uint32_t>max_deliveries, age,
                   int.from_bytes(_os_q.urandom(8), "little"))
        self._clock = clock
        self._count_bytes = max_bytes is not None
        self._owner = owner
        self.on_room = None
        self.room_waiters = 0
        self.direct_ack = owner is None
        self._ready = True
        if clock is not None:
            now = self._now()
            self._q.wall_offset = fq_wall_ns() - now
            fq_wq_advance(&self._q, now)
        else:
            fq_wq_advance(&self._q, fq_now_ns())

    def __dealloc__(self):
        cdef uint32_t s
        if not self._ready:
            return
        for s in range(self._q.hw):
            Py_XDECREF(<PyObject *>self._q.e[s].msg)
            Py_XDECREF(<PyObject *>self._q.e[s].err)
        for s in range(self._q.n_dead):
            Py_XDECREF(<PyObject *>self._q.dead[s].msg)
            Py_XDECREF(<PyObject *>self._q.dead[s].err)
        fq_wq_destroy(&self._q)

    cdef int64_t _now(self) except? -1:
        cdef double t
        if self._clock is None:
            return fq_now_ns()
        value = self._clock()
        try:
            t = value
        except TypeError:
            raise TypeError(f"clock() must return a number, got {type(value).__name__}") from None
        if not isfinite(t) or not -9.2e9 < t < 9.2e9:
            raise ValueError(f"clock() must return a finite number of seconds, got {t!r}")
        return <int64_t>(t * 1e9)

    cdef int _nomem(self) except -1:
        raise MemoryError("MemoryQueue: out of memory")

    # ---- put ------------------------------------------------------------------------------

    def offer(self, Message message not None, delay=0.0):
        """Store ``message`` (visible after ``delay`` seconds) if there is room; True if stored."""
        cdef int64_t d = 0 if delay == 0.0 else _seconds_ns(delay, "delay", True)
        return self._offer(message, d, self._now())

    cdef bint _offer(self, Message m, int64_t delay, int64_t now, uint64_t tag=0,
                     uint32_t deliveries=0, bint force=False) except -1:
        cdef int64_t nbytes = _payload_bytes(m) if self._count_bytes else 0
        cdef int rc
        cdef uint64_t saved_max = 0
        cdef int64_t saved_bytes = 0
        cdef bint journalled = self._journal is not None and not force
        if journalled:
            if not fq_wq_has_room(&self._q, nbytes):
                return False
            tag = self._j_put(m, delay)           # the put is durable (per sync) before it counts
        Py_INCREF(m)
        fq_pylock_acquire(&self._lock)
        rc = fq_wq_advance(&self._q, now)
        if rc == FQ_WQ_OK:
            if force:                       # restoring a durable queue: room is not a question
                saved_max = self._q.maxsize
                saved_bytes = self._q.max_bytes
                self._q.maxsize = <uint64_t>-1
                self._q.max_bytes = INT64_MAX
            rc = fq_wq_put(&self._q, <void *>m, m._prio, delay, nbytes, m._deadline, tag,
                           deliveries)
            if force:
                self._q.maxsize = saved_max
                self._q.max_bytes = saved_bytes
        fq_pylock_release(&self._lock)
        if rc == FQ_WQ_OK:
            return True
        Py_DECREF(m)
        if journalled:                             # lost the race for the last room: void it
            self._j_tags(b"A", &tag, 1)
        if rc == FQ_WQ_FULL:
            return False
        return self._nomem()

    # ---- the journal of a durable queue (record layouts: fastq/backends/log.py) ------------

    def attach_journal(self, SegmentLog log not None, codec=None):
        """Journal every change to ``log`` from now on (a durable queue, after recovery);
        ``codec`` encodes payloads that are not bytes or str (default: JSON)."""
        self._journal = log
        self._codec = codec
        self.direct_ack = True

    cdef uint64_t _j_put(self, Message m, int64_t delay) except? 0xFFFFFFFFFFFFFFFF:
        cdef unsigned char key[9]
        cdef bytes env = _encode(m, self._codec)
        key[0] = b"P"
        if delay > 0:
            _le64(key + 1, <uint64_t>(fq_wall_ns() + delay))
        return self._journal._append_raw(<const char *>key, 9 if delay > 0 else 1,
                                         PyBytes_AS_STRING(env), len(env), m.timestamp)

    cdef int _j_tags(self, char op, uint64_t *tags, Py_ssize_t n) except -1:
        cdef char key = op
        cdef unsigned char small[64]
        cdef bytes value = None
        cdef unsigned char *p = small
        cdef Py_ssize_t i, m, per = <Py_ssize_t>((self._journal._max_record - 1) // 8)
        if n > per:                                  # records fit the log's largest
            for i in range(0, n, per):
                self._j_tags(op, tags + i, min(per, n - i))
            return 0
        if n > 8:
            value = PyBytes_FromStringAndSize(NULL, 8 * n)
            p = <unsigned char *>PyBytes_AS_STRING(value)
        for i in range(n):
            _le64(p + 8 * i, tags[i])
        self._journal._append_raw(&key, 1, <const char *>p, 8 * n, fq_wall_ns())
        self._settled += <uint64_t>n
        if self._settled >= RETAIN_EVERY:
            self.retain()
        return 0

    cdef int _j_tag_list(self, char op, list tags) except -1:
        cdef Py_ssize_t i, n = len(tags)
        cdef uint64_t *arr = <uint64_t *>malloc(<size_t>n * sizeof(uint64_t) + 8)
        if arr == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                arr[i] = tags[i]
            self._j_tags(op, arr, n)
        finally:
            free(arr)
        return 0

    cdef int _j_deliver_many(self, fq_wq_grant *gs, Py_ssize_t k) except -1:
        """Deliver records: (tag, attempt) pairs, as many per record as the log allows."""
        cdef char key = b"D"
        cdef Py_ssize_t per = <Py_ssize_t>((self._journal._max_record - 1) // 12)
        cdef Py_ssize_t i, j, m
        cdef unsigned char small[120]
        cdef bytes value
        cdef unsigned char *p
        i = 0
        while i < k:
            m = min(per, k - i)
            p = small
            if m > 10:
                value = PyBytes_FromStringAndSize(NULL, 12 * m)
                p = <unsigned char *>PyBytes_AS_STRING(value)
            for j in range(m):
                _le64(p + 12 * j, gs[i + j].tag)
                p[12 * j + 8] = <unsigned char>gs[i + j].attempt
                p[12 * j + 9] = <unsigned char>(gs[i + j].attempt >> 8)
                p[12 * j + 10] = <unsigned char>(gs[i + j].attempt >> 16)
                p[12 * j + 11] = <unsigned char>(gs[i + j].attempt >> 24)
            self._journal._append_raw(&key, 1, <const char *>p, 12 * m, fq_wall_ns())
            i += m
        return 0

    def shutdown(self):
        """Drop every message and make every receipt stale (the queue was closed); the
        journal, if any, is detached (a durable queue's messages stay in it)."""
        cdef fq_wq old
        cdef uint32_t i
        fq_pylock_acquire(&self._lock)
        old = self._q
        fq_wq_init(&self._q, old.maxsize, old.max_bytes, old.vt, old.max_deliveries,
                   old.age_step, int.from_bytes(_os_q.urandom(8), "little"))
        self._q.wall_offset = old.wall_offset
        self._journal = None
        fq_pylock_release(&self._lock)
        fq_wq_advance(&self._q, old.now)
        for i in range(old.hw):
            Py_XDECREF(<PyObject *>old.e[i].msg)
            Py_XDECREF(<PyObject *>old.e[i].err)
        for i in range(old.n_dead):
            Py_XDECREF(<PyObject *>old.dead[i].msg)
            Py_XDECREF(<PyObject *>old.dead[i].err)
        fq_wq_destroy(&old)

    def retain(self):
        """Durable: delete the journal's segments that hold only settled messages."""
        cdef uint64_t low
        self._settled = 0
        if self._journal is None or self._journal.closed:
            return
        fq_pylock_acquire(&self._lock)
        low = fq_wq_min_tag(&self._q)
        fq_pylock_release(&self._lock)
        self._journal.truncate_before(self._journal.end_offset if low == <uint64_t>-1 else low)

    def restore(self, Message message not None, delay, uint64_t tag, uint32_t deliveries):
        """Put back a message a durable queue recovered, with its attempt count, ignoring the
        capacity limits (it was admitted before the restart)."""
        cdef int64_t d = 0 if delay <= 0 else _seconds_ns(delay, "delay", True)
        self._offer(message, d, self._now(), tag, deliveries, True)
        self._q.put_total -= 1                      # put in an earlier process, not this one

    def min_tag(self):
        """The smallest tag held, or None when the queue holds nothing."""
        cdef uint64_t t
        fq_pylock_acquire(&self._lock)
        t = fq_wq_min_tag(&self._q)
        fq_pylock_release(&self._lock)
        return None if t == <uint64_t>-1 else t

    def offer_payload(self, item, delay=0.0):
        """Store ``item`` (a Message, or a payload for a Message with default fields) if there
        is room; returns the message id, or None when full."""
        cdef int64_t d = 0 if delay == 0.0 else _seconds_ns(delay, "delay", True)
        cdef Message m = <Message>item if type(item) is Message else _message_of(item)
        if not self._offer(m, d, self._now()):
            return None
        return m._id if m._id is not None else _id_text(m._uuid)

    def offer_payloads(self, items, delay=0.0):
        """Store items (Messages or payloads, as offer_payload) in order while there is
        room; returns the ids of those stored (a prefix of items)."""
        cdef int64_t d = 0 if delay == 0.0 else _seconds_ns(delay, "delay", True)
        cdef int64_t now = self._now()
        cdef int64_t wall = fq_wall_ns()           # one creation time for the batch
        cdef Message m
        cdef list ids = []
        for item in items:
            m = <Message>item if type(item) is Message else _message_of(item, wall)
            if not self._offer(m, d, now):
                break
            ids.append(m._id if m._id is not None else _id_text(m._uuid))
        return ids

    def offer_many(self, messages, delay=0.0):
        """Store messages in order while there is room; returns how many were stored."""
        cdef int64_t d = 0 if delay == 0.0 else _seconds_ns(delay, "delay", True)
        cdef int64_t now = self._now()
        cdef Py_ssize_t i = 0
        for m in messages:
            if not isinstance(m, Message):
                raise TypeError(f"messages[{i}] must be a fastq.Message, got {type(m).__name__}")
            if not self._offer(<Message>m, d, now):
                break
            i += 1
        return i

    # ---- get ------------------------------------------------------------------------------

    def poll(self):
        """Hand out the next message as a Delivery, or None if nothing is ready."""
        cdef fq_wq_grant g
        cdef int rc
        cdef int64_t now = self._now()
        fq_pylock_acquire(&self._lock)
        rc = fq_wq_advance(&self._q, now)
        if rc == FQ_WQ_OK:
            rc = fq_wq_take(&self._q, &g)
        fq_pylock_release(&self._lock)
        if rc == FQ_WQ_EMPTY:
            return None
        if rc != FQ_WQ_OK:
            self._nomem()
        d = self._delivery(&g)                      # owns the message before any I/O
        if self._journal is not None:
            self._j_deliver_many(&g, 1)
        return d

    cdef Delivery _delivery(self, fq_wq_grant *g):
        cdef Delivery d = Delivery.__new__(Delivery)
        d.message = <Message>g.msg
        d.attempt = g.attempt
        d.receipt = g.receipt
        d.lease_deadline = g.lease_deadline * 1e-9
        d._tag = g.tag
        d._queue = self._owner if self._owner is not None else self
        d._engine = self if self._owner is None or self.direct_ack else None
        return d

    def poll_many(self, Py_ssize_t max_messages):
        """Hand out up to ``max_messages`` messages (a list, empty if none is ready)."""
        cdef fq_wq_grant *gs
        cdef Py_ssize_t k = 0, i
        cdef int rc = FQ_WQ_OK
        cdef int64_t now = self._now()
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages!r}")
        if max_messages > 65536:
            max_messages = 65536
        gs = <fq_wq_grant *>malloc(<size_t>max_messages * sizeof(fq_wq_grant))
        if gs == NULL:
            raise MemoryError()
        fq_pylock_acquire(&self._lock)
        rc = fq_wq_advance(&self._q, now)
        while rc == FQ_WQ_OK and k < max_messages:
            rc = fq_wq_take(&self._q, &gs[k])
            if rc == FQ_WQ_OK:
                k += 1
        fq_pylock_release(&self._lock)
        try:
            out = [self._delivery(&gs[i]) for i in range(k)]
            if self._journal is not None and k:
                self._j_deliver_many(gs, k)         # one record for the batch
        finally:
            free(gs)
        if rc == FQ_WQ_NOMEM:
            self._nomem()
        return out

    # ---- settle ---------------------------------------------------------------------------

    cdef int _receipt_error(self, object receipt) except -1:
        raise _InvalidReceipt(
            f"receipt {receipt!r} is stale: the lease ran out, it was settled already, "
            f"or it belongs to another queue"
        )

    cdef uint64_t _as_receipt(self, object receipt) except? 0:
        if isinstance(receipt, bool) or not isinstance(receipt, int):
            raise TypeError(f"receipt must be an int (Delivery.receipt), got {type(receipt).__name__}")
        if not 0 <= receipt < (1 << 64):
            self._receipt_error(receipt)
        return receipt

    cdef int _ack(self, object receipt) except -1:
        return self._ack_u64(self._as_receipt(receipt))

    cdef int _ack_u64(self, uint64_t r, int64_t now=INT64_MIN, uint64_t *tag=NULL,
                      bint journal=True, int64_t wall=0) except -1:
        cdef void *msg = NULL
        cdef void *err = NULL
        cdef uint64_t t
        cdef int rc
        cdef int64_t age
        if now == INT64_MIN:
            now = self._now()
        fq_pylock_acquire(&self._lock)
        rc = fq_wq_advance(&self._q, now)
        if rc == FQ_WQ_OK:
            rc = fq_wq_ack(&self._q, r, &msg, &err, &t)
        fq_pylock_release(&self._lock)
        if rc == FQ_WQ_OK:
            if self._latency != NULL:               # enqueue -> ack, on the wall clock
                age = (wall if wall else fq_wall_ns()) - (<Message>msg).timestamp
                fq_hist_record(self._latency, <uint64_t>(age if age > 0 else 0))
            Py_DECREF(<object>msg)
            Py_XDECREF(<PyObject *>err)
            if journal and self._journal is not None:
                self._j_tags(b"A", &t, 1)
            if tag != NULL:
                tag[0] = t
            if self.room_waiters:
                self.on_room()
            return 0
        if rc == FQ_WQ_STALE:
            return self._receipt_error(r)
        return self._nomem()

    def ack(self, receipt):
        """Settle a delivery as done. InvalidReceipt if the receipt is stale."""
        self._ack(receipt)

    def _set_latency(self, Histogram hist):
        """Record every ack's enqueue -> ack time into ``hist`` from now on (None: stop)."""
        self._latency = NULL if hist is None else &hist._h
        self._latency_owner = hist

    def ack_many(self, receipts):
        """Ack each receipt (or Delivery); every valid one is acked even when some are stale
        (then InvalidReceipt names how many and the first)."""
        cdef Py_ssize_t bad = 0, n = 0
        cdef int64_t now = self._now()             # one clock read for the batch
        cdef int64_t wall = fq_wall_ns() if self._latency != NULL else 0
        cdef uint64_t t
        cdef list tags = [] if self._journal is not None else None
        cdef bint per_ack = tags is None
        first = None
        for r in receipts:
            try:
                if type(r) is Delivery:
                    self._ack_u64((<Delivery>r).receipt, now, &t, per_ack, wall)
                else:
                    self._ack_u64(self._as_receipt(r), now, &t, per_ack, wall)
                if tags is not None:
                    tags.append(t)
            except _InvalidReceipt:
                if bad == 0:
                    first = r
                bad += 1
        if tags:                                    # a durable queue: one record for the batch
            self._j_tag_list(b"A", tags)
        if bad:
            raise _InvalidReceipt(f"{bad} stale receipt(s), the first {first!r}; the others were acked")

    def nack(self, receipt, delay=None, error=None):
        """A failed attempt (see Delivery.nack). Returns True if the message was dead-lettered."""
        cdef void *old = NULL
        cdef uint64_t tag = 0
        cdef uint64_t r = self._as_receipt(receipt)
        cdef int64_t d = 0 if delay is None else _seconds_ns(delay, "delay", True)
        cdef int64_t now = self._now()
        cdef int rc
        cdef uint64_t dead0
        cdef bint dead
        err = None if error is None else (error if isinstance(error, str) else _describe(error))
        if err is not None:
            Py_INCREF(err)
        fq_pylock_acquire(&self._lock)
        rc = fq_wq_advance(&self._q, now)
        dead0 = self._q.dead_total
        if rc == FQ_WQ_OK:
            rc = fq_wq_nack(&self._q, r, d, <void *>err if err is not None else NULL, &old, &tag)
        dead = self._q.dead_total != dead0
        fq_pylock_release(&self._lock)
        if rc == FQ_WQ_OK:
            Py_XDECREF(<PyObject *>old)
            if self._journal is not None and not dead:
                value = _NACK_HEAD.pack(tag, fq_wall_ns() + d)
                if err is not None:
                    value += (<str>err).encode("utf-8", "surrogatepass")
                self._journal.append(value, key=b"N")
            if dead and self.room_waiters:
                self.on_room()
            return dead
        if err is not None:
            Py_DECREF(err)
        if rc == FQ_WQ_STALE:
            return self._receipt_error(receipt)
        return self._nomem()

    def release(self, receipt, delay=None):
        """Give back untried (see Delivery.release): no attempt is counted."""
        cdef uint64_t tag = 0
        cdef uint32_t attempts = 0
        cdef uint64_t r = self._as_receipt(receipt)
        cdef int64_t d = 0 if delay is None else _seconds_ns(delay, "delay", True)
        cdef int64_t now = self._now()
        cdef int rc
        fq_pylock_acquire(&self._lock)
        rc = fq_wq_advance(&self._q, now)
        if rc == FQ_WQ_OK:
            rc = fq_wq_giveback(&self._q, r, d, &tag, &attempts)
        fq_pylock_release(&self._lock)
        if rc == FQ_WQ_OK:
            if self._journal is not None:
                self._journal.append(_RELEASE_REC.pack(tag, attempts, fq_wall_ns() + d), key=b"R")
            return None
        if rc == FQ_WQ_STALE:
            return self._receipt_error(receipt)
        return self._nomem()

    def reject(self, receipt, reason="permanent", error=None):
        """Dead-letter now (see Delivery.reject); the entry is then in take_dead()."""
        cdef void *old = NULL
        cdef uint64_t tag = 0
        cdef uint64_t r = self._as_receipt(receipt)
        cdef int64_t now
        cdef int rc, code
        if reason == "permanent":
            code = FQ_WQ_DEAD_PERMANENT
        elif reason == "max_attempts":
            code = FQ_WQ_DEAD_MAX_ATTEMPTS
        else:
            raise ValueError(f"reason must be 'permanent' or 'max_attempts', got {reason!r}")
        now = self._now()
        err = None if error is None else (error if isinstance(error, str) else _describe(error))
        if err is not None:
            Py_INCREF(err)
        fq_pylock_acquire(&self._lock)
        rc = fq_wq_advance(&self._q, now)
        if rc == FQ_WQ_OK:
            rc = fq_wq_reject(&self._q, r, code, <void *>err if err is not None else NULL, &old, &tag)
        elif err is not None:
            old = <void *>err                       # not taken: release it below
        fq_pylock_release(&self._lock)
        if rc == FQ_WQ_STALE:
            Py_XDECREF(<PyObject *>old)
            if err is not None:
                Py_DECREF(err)
            return self._receipt_error(receipt)
        Py_XDECREF(<PyObject *>old)
        if rc == FQ_WQ_OK:
            if self.room_waiters:
                self.on_room()
            return None
        return self._nomem()

    def extend(self, receipt, seconds):
        """The lease now runs out ``seconds`` after now; returns the new deadline (seconds)."""
        cdef uint64_t r = self._as_receipt(receipt)
        cdef int64_t by = _seconds_ns(seconds, "seconds", True)
        cdef int64_t now = self._now()
        cdef int64_t deadline = 0
        cdef int rc
        fq_pylock_acquire(&self._lock)
        rc = fq_wq_advance(&self._q, now)
        if rc == FQ_WQ_OK:
            rc = fq_wq_extend(&self._q, r, by, &deadline)
        fq_pylock_release(&self._lock)
        if rc == FQ_WQ_OK:
            return deadline * 1e-9
        if rc == FQ_WQ_STALE:
            return self._receipt_error(receipt)
        return self._nomem()

    # ---- housekeeping ---------------------------------------------------------------------

    def advance(self):
        """Bring the queue to the clock's now (expire leases, promote due messages)."""
        cdef int64_t now = self._now()
        cdef int rc
        fq_pylock_acquire(&self._lock)
        rc = fq_wq_advance(&self._q, now)
        fq_pylock_release(&self._lock)
        if rc != FQ_WQ_OK:
            self._nomem()

    @property
    def dead_pending(self):
        """True when messages are waiting to be written to the dead-letter queue."""
        return self._q.n_dead != 0

    def take_dead(self):
        """Messages that left for the dead-letter queue since the last call, as tuples
        ``(message, reason, deliveries, first_delivery, last_delivery, put_at, last_error)``
        (times in seconds on the queue's clock, None when never delivered)."""
        cdef fq_wq_dead *items
        cdef uint32_t n, i
        fq_pylock_acquire(&self._lock)
        items = self._q.dead
        n = self._q.n_dead
        self._q.dead = NULL
        self._q.n_dead = 0
        self._q.cap_dead = 0
        fq_pylock_release(&self._lock)
        out = []
        for i in range(n):
            d = &items[i]
            out.append((
                fq_steal(d.msg), _DEAD_REASONS[d.reason], d.deliveries,
                d.first_delivery * 1e-9 if d.deliveries and d.first_delivery != INT64_MIN else None,
                d.last_delivery * 1e-9 if d.deliveries and d.last_delivery != INT64_MIN else None,
                d.put_at * 1e-9,
                fq_steal(d.err) if d.err != NULL else None,
                d.tag,
            ))
        free(items)
        return out

    def purge(self):
        """Drop every ready message (not delayed, not in flight); returns how many."""
        cdef void *msg
        cdef void *err
        cdef uint64_t tag
        cdef list dropped = []
        cdef list tags = []
        cdef int64_t now = self._now()
        fq_pylock_acquire(&self._lock)
        fq_wq_advance(&self._q, now)
        while fq_wq_pop_ready(&self._q, &msg, &err, &tag) == FQ_WQ_OK:
            dropped.append(fq_steal(msg))
            tags.append(tag)
            if err != NULL:
                Py_DECREF(<object>err)
        fq_pylock_release(&self._lock)
        if self._journal is not None and tags:
            self._j_tag_list(b"A", tags)
        if dropped and self.room_waiters:
            self.on_room()
        return len(tags)

    def now(self):
        """The queue clock's now, in seconds."""
        return self._now() * 1e-9

    def next_due(self):
        """When something next happens by itself (a delayed message is due, a lease runs
        out), in seconds on the queue's clock; None if nothing is pending."""
        cdef int64_t t = fq_wq_next_due(&self._q)
        return None if t == INT64_MAX else t * 1e-9

    def counts(self):
        """(ready, delayed, in_flight, held, bytes, oldest_ready_at or None, put_total,
        acked_total, redelivered_total, dead_total, nacked_total, lease_expiries,
        released_total)."""
        cdef int64_t now = self._now()
        cdef int64_t oldest
        fq_pylock_acquire(&self._lock)
        fq_wq_advance(&self._q, now)
        oldest = fq_wq_oldest_ready(&self._q)
        t = (fq_wq_ready(&self._q), self._q.delayed.n, self._q.n_inflight, self._q.held,
             self._q.bytes, None if oldest == INT64_MAX else oldest * 1e-9,
             self._q.put_total, self._q.acked_total, self._q.redelivered_total,
             self._q.dead_total, self._q.nacked_total, self._q.lease_expiries,
             self._q.released_total)
        fq_pylock_release(&self._lock)
        return t

    def __len__(self):
        """Messages held: ready + delayed + in flight."""
        return self._q.held

    def has_room(self, Message message=None):
        """True if a put of ``message`` (or of an empty message) would fit now."""
        cdef int64_t nbytes = _payload_bytes(message) if self._count_bytes and message is not None else 0
        return bool(fq_wq_has_room(&self._q, nbytes))


cdef object _describe(object error):
    if isinstance(error, BaseException):
        text = str(error)
        return f"{type(error).__qualname__}: {text}" if text else type(error).__qualname__
    return str(error)


def handle_each(handler, list deliveries, Py_ssize_t start, double budget,
                Histogram timings=None):
    """Consumer pools' inner loop: ``handler(d.message)`` for ``deliveries[start:]`` in
    order, until one raises or ``budget`` seconds have passed (checked after each call).
    Returns ``(done, next, error, seconds)``: the deliveries whose handler returned, the index
    to go on from, the exception ``deliveries[next]`` raised (None if none did) and how long
    that failed call ran. ``timings``: a Histogram that gets every call's duration (the clock
    is read between calls anyway, so this costs one record per call)."""
    cdef Py_ssize_t i, n = len(deliveries)
    cdef int64_t now = fq_now_ns()
    cdef int64_t until = now + <int64_t>(budget * 1e9)
    cdef int64_t began
    cdef Delivery d
    cdef list done = []
    cdef fq_hist *h = NULL if timings is None else &timings._h
    i = start if start > 0 else 0
    while i < n:
        d = <Delivery?>deliveries[i]
        began = now
        try:
            handler(d.message)
        except BaseException as exc:
            now = fq_now_ns()
            if h != NULL:
                fq_hist_record(h, <uint64_t>(now - began))
            return done, i, exc, (now - began) * 1e-9
        done.append(d)
        i += 1
        now = fq_now_ns()
        if h != NULL:
            fq_hist_record(h, <uint64_t>(now - began))
        if now >= until:
            break
    return done, i, None, 0.0


def record_ages(Histogram hist not None, items, int64_t now_ns):
    """Record ``now_ns - message.timestamp`` (unix ns; 0 if negative) for each of ``items``:
    Deliveries, ConsumerRecords or Messages (the pools' end-to-end latency at ack)."""
    cdef object it
    cdef Message m
    cdef int64_t age
    for it in items:
        if type(it) is Delivery:
            m = (<Delivery>it).message
        elif type(it) is ConsumerRecord:
            m = (<ConsumerRecord>it).message
        else:
            m = <Message?>it
        age = now_ns - m.timestamp
        fq_hist_record(&hist._h, <uint64_t>(age if age > 0 else 0))
