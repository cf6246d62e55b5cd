# MemoryPartition: an in-memory topic partition (messages by offset, retention, committed
# offsets), and route_publish, the native path of Topic.publish for in-memory topics
# (docs/topic.md). Locking as elsewhere: the GIL, or a per-partition PyMutex on
# free-threaded builds, never held while Python code runs.

import time as _time_t


@cython.final
cdef class MemoryPartition:
    """Messages in a list (offset - start = index past a dropped head); retention by payload
    bytes and by age (the message timestamp) runs on append and never drops the newest
    record. Committed offsets per group are monotonic. Thread-safe."""

    def __init__(self, retention_bytes=None, *, retention_seconds=None):
        self._items = []
        self._sizes = []
        self._head = 0
        self._start = 0
        self._bytes = 0
        self._retention_bytes = -1 if retention_bytes is None else retention_bytes
        self._retention_ns = -1 if retention_seconds is None else <int64_t>(retention_seconds * 1e9)
        self._retain = retention_bytes is not None or retention_seconds is not None
        self._committed = {}

    cdef uint64_t _append(self, Message m) except? 0xFFFFFFFFFFFFFFFF:
        cdef uint64_t offset
        if self._retain:
            return self._append_retained([m])
        fq_pylock_acquire(&self._lock)
        offset = self._start + <uint64_t>(len(self._items) - self._head)
        self._items.append(m)           # a list append: no Python code runs
        fq_pylock_release(&self._lock)
        return offset

    cdef uint64_t _append_retained(self, list msgs) except? 0xFFFFFFFFFFFFFFFF:
        """Append with retention (sizes are measured first, outside the lock)."""
        cdef list sizes = []
        cdef list dropped = []                  # released after the lock: finalizers may run
        cdef uint64_t offset
        cdef int64_t horizon = 0
        for m in msgs:
            p = (<Message>m).payload
            sizes.append(len(p) if isinstance(p, (bytes, bytearray)) else
                         len(str(p).encode("utf-8", "surrogatepass")))
        if self._retention_ns >= 0:
            horizon = fq_wall_ns() - self._retention_ns
        fq_pylock_acquire(&self._lock)
        offset = self._start + <uint64_t>(len(self._items) - self._head)
        self._items.extend(msgs)
        self._sizes.extend(sizes)
        for n in sizes:
            self._bytes += <int64_t>n
        while len(self._items) - self._head > 1 and (
                (self._retention_bytes >= 0 and self._bytes > self._retention_bytes) or
                (self._retention_ns >= 0 and
                 (<Message>self._items[self._head]).timestamp < horizon)):
            self._bytes -= <int64_t>self._sizes[self._head]
            dropped.append(self._items[self._head])
            self._items[self._head] = None
            self._head += 1
            self._start += 1
        if self._head > 4096 and self._head * 2 > len(self._items):
            del self._items[:self._head]
            del self._sizes[:self._head]
            self._head = 0
        fq_pylock_release(&self._lock)
        return offset

    def append(self, Message message not None):
        """Append one message; returns its offset."""
        return self._append(message)

    def append_many(self, list messages not None):
        """Append messages in order; returns the offset of the first."""
        cdef uint64_t offset
        for m in messages:
            if type(m) is not Message:
                raise TypeError(f"messages must be fastq.Message objects, got {type(m).__name__}")
        if self._retain:
            return self._append_retained(messages)
        fq_pylock_acquire(&self._lock)
        offset = self._start + <uint64_t>(len(self._items) - self._head)
        self._items.extend(messages)
        fq_pylock_release(&self._lock)
        return offset

    def read(self, uint64_t offset, Py_ssize_t max_records):
        """Up to max_records messages from offset (from the start if offset is older)."""
        cdef Py_ssize_t i
        fq_pylock_acquire(&self._lock)
        i = self._head + (<Py_ssize_t>(offset - self._start) if offset > self._start else 0)
        out = self._items[i:i + max_records]
        fq_pylock_release(&self._lock)
        return out

    @property
    def start_offset(self):
        return self._start

    @property
    def end_offset(self):
        return self._start + <uint64_t>(len(self._items) - self._head)

    def offset_for_time(self, int64_t timestamp_ns):
        """The first offset whose message timestamp is >= timestamp_ns (end if none);
        creation times grow with offsets when one process publishes."""
        cdef Py_ssize_t lo, hi, mid
        fq_pylock_acquire(&self._lock)
        lo = self._head
        hi = len(self._items)
        while lo < hi:
            mid = (lo + hi) // 2
            if (<Message>self._items[mid]).timestamp < timestamp_ns:
                lo = mid + 1
            else:
                hi = mid
        fq_pylock_release(&self._lock)
        return self._start + <uint64_t>(lo - self._head)

    def commit(self, str group not None, uint64_t offset):
        fq_pylock_acquire(&self._lock)
        old = self._committed.get(group)
        if old is None or offset > old:
            self._committed[group] = offset
        fq_pylock_release(&self._lock)

    def committed(self, str group not None):
        return self._committed.get(group)

    def close(self):
        pass


def route_publish(list parts not None, Message message not None, uint64_t rr):
    """Append ``message`` to its partition among ``parts`` (MemoryPartition objects):
    ``partition(key, len(parts))``, or ``rr % len(parts)`` when it has no key. Returns
    (partition, offset)."""
    cdef Py_ssize_t n = len(parts)
    cdef uint64_t h
    cdef Py_ssize_t p
    cdef const char *kp
    cdef Py_ssize_t kn
    key = message.key
    if key is None:
        p = <Py_ssize_t>(rr % <uint64_t>n)
    elif fq_key_fast(<PyObject *>key, &kp, &kn):
        h = fq_xxh3_64(kp, <size_t>kn, 0)
        p = <Py_ssize_t>(h % <uint64_t>n)
    else:
        p = partition(key, n)
    return p, (<MemoryPartition>parts[p])._append(message)


def publish_grouped(list parts not None, list msgs not None, order, counts):
    """Append ``msgs`` to ``parts`` grouped as ``group_by_partition`` returned them
    (``order``, ``counts``: int64 arrays): one append_many per partition, the gathering and
    the ``(partition, offset)`` results (in input order) built here in C."""
    cdef const int64_t[::1] o = order
    cdef const int64_t[::1] c = counts
    cdef Py_ssize_t n = len(msgs), pos = 0, p, j, k, i
    cdef list out = [None] * n
    cdef list batch
    if o.shape[0] != n or c.shape[0] != len(parts):
        raise ValueError("order must have one entry per message and counts one per partition")
    for p in range(c.shape[0]):
        k = <Py_ssize_t>c[p]
        if k == 0:
            continue
        if k < 0 or pos + k > n:
            raise ValueError("counts do not add up to the number of messages")
        batch = [None] * k
        for j in range(k):
            i = <Py_ssize_t>o[pos + j]
            if not 0 <= i < n:
                raise ValueError(f"order holds {i}, outside 0..{n - 1}")
            batch[j] = msgs[i]
        part = parts[p]
        if type(part) is MemoryPartition:
            first = (<MemoryPartition>part).append_many(batch)
        else:
            first = part.append_many(batch)
        for j in range(k):
            out[<Py_ssize_t>o[pos + j]] = (p, first + j)
        pos += k
    return out
