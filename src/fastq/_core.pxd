# _core.pxd - the map of the native core: C declarations and class layouts, no logic.

cimport cython
from cpython.ref cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t


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


cdef extern from "fq_park.h" nogil:
    ctypedef struct fq_parker:
        pass
    int fq_parker_init(fq_parker *p)
    void fq_parker_destroy(fq_parker *p)
    uint32_t fq_parker_arm(fq_parker *p)
    int fq_parker_wait(fq_parker *p, uint32_t expected, int64_t deadline)
    void fq_parker_wake_all(fq_parker *p)


cdef extern from "fq_log.h" nogil:
    # the segment-log format (docs/log-format.md); pure decode/encode plus file primitives
    const uint32_t FQ_SEG_VERSION
    const uint64_t FQ_SEG_HEADER_BYTES
    const uint64_t FQ_SEG_META_AT
    const uint64_t FQ_SEG_DATA_AT
    const uint64_t FQ_SEG_MIN_BYTES
    const uint64_t FQ_SEG_MAX_BYTES
    const uint64_t FQ_REC_HEADER
    const uint32_t FQ_NO_KEY
    const unsigned FQ_REC_DATA
    const unsigned FQ_REC_GAP
    const uint64_t FQ_HINT_SEALED
    enum:
        FQ_HDR_OK
        FQ_HDR_SHORT
        FQ_HDR_MAGIC
        FQ_HDR_CRC
        FQ_HDR_VERSION
        FQ_HDR_SIZE
        FQ_HDR_BYTES
    enum:
        FQ_REC_OK
        FQ_REC_ZERO
        FQ_REC_SHORT
        FQ_REC_BAD_OFFSET

    ctypedef struct fq_rec:
        uint64_t offset
        uint64_t next
        int64_t timestamp
        uint64_t key_at
        uint64_t value_at
        uint32_t key_len
        uint32_t value_len
        uint64_t size
        unsigned type

    ctypedef struct fq_idx_entry:
        uint64_t offset
        uint64_t pos
        int64_t max_ts_before

    ctypedef struct fq_index:
        fq_idx_entry *e
        size_t n
        int64_t max_ts
        uint64_t count

    ctypedef struct fq_scan:
        uint64_t pos
        uint64_t next
        uint64_t records
        int status

    ctypedef struct fq_span:
        const void *p
        int64_t len

    uint64_t fq_rec_size(uint64_t key_len, uint64_t value_len)
    void fq_seg_header_write(unsigned char *h, uint64_t base_offset, uint64_t seg_bytes, int64_t created_ns)
    int fq_seg_header_check(const unsigned char *h, uint64_t len, uint64_t *base_offset,
                            uint64_t *seg_bytes, uint32_t *version)
    void fq_ckpt_write(unsigned char *meta, uint64_t seq, uint64_t pos, uint64_t next_offset)
    int fq_ckpt_read(const unsigned char *meta, uint64_t *seq, uint64_t *pos, uint64_t *next_offset)
    uint64_t fq_rec_write(unsigned char *r, uint64_t offset, int64_t ts, const void *key,
                          uint32_t key_len, const void *value, uint32_t value_len, unsigned type)
    int fq_rec_check(const unsigned char *seg, uint64_t pos, uint64_t limit, uint64_t expected, fq_rec *out)
    const char *fq_rec_reason(int rc)
    void fq_index_init(fq_index *ix)
    void fq_index_free(fq_index *ix)
    int fq_index_note(fq_index *ix, uint64_t offset, uint64_t pos, int64_t ts, int data)
    const fq_idx_entry *fq_index_seek(const fq_index *ix, uint64_t target)
    const fq_idx_entry *fq_index_seek_time(const fq_index *ix, int64_t ts)
    int fq_seg_scan(const unsigned char *seg, uint64_t pos, uint64_t limit, uint64_t expected,
                    fq_index *ix, fq_scan *out)
    uint64_t fq_seg_resync(const unsigned char *seg, uint64_t pos, uint64_t limit, uint64_t after,
                           uint64_t before, uint64_t *found_offset)
    void fq_gap_write(unsigned char *r, uint64_t offset, uint64_t count, uint64_t span)
    uint64_t fq_pad_target(uint64_t end, uint64_t seg_bytes)
    uint64_t fq_last_nonzero(const unsigned char *m, uint64_t frm, uint64_t to)
    uint64_t fq_seg_write_batch(unsigned char *map, uint64_t *pos, uint64_t limit, uint64_t *next,
                                fq_index *ix, const fq_span *vals, const fq_span *keys,
                                const int64_t *ts, int64_t ts_default, uint64_t n, int *oom)
    void fq_hint_store(unsigned char *meta, uint64_t pos, uint64_t next)
    uint64_t fq_hint_pos(const unsigned char *meta)
    int fq_file_preallocate(int fd, uint64_t size)
    int fq_map_file(int fd, uint64_t length, int writable, unsigned char **out)
    void fq_unmap(unsigned char *m, uint64_t length)
    void fq_map_readonly(unsigned char *m, uint64_t length)
    void fq_map_populate(unsigned char *m, uint64_t frm, uint64_t to)
    int fq_lock_file(int fd)
    int fq_pread_all(int fd, unsigned char *buf, uint64_t n, uint64_t at, uint64_t *got)
    int fq_file_size(int fd, uint64_t *size)
    int fq_file_sync(int fd)
    int fq_dir_sync(const char *path)
    int fq_map_sync(unsigned char *m, uint64_t frm, uint64_t to, int fd)
    int64_t fq_wall_ns()
    void fq_pin_add(long *p, long d)
    long fq_pin_load(long *p)
    fq_parker *fq_parker_new()
    void fq_parker_free(fq_parker *p)


cdef extern from "fq_xxh3.h" nogil:
    # XXH3-64 with a seed (seed 0: XXH3_64bits), bit-exact with the xxhash package
    uint64_t fq_xxh3_64(const void *data, size_t length, uint64_t seed)


cdef extern from "fq_hash.h" nogil:
    enum:
        FQ_STRATEGY_MODULO
        FQ_STRATEGY_JUMP
        FQ_KEYS_U64            # 8-byte integers in host byte order
        FQ_KEYS_U64_SWAP       # 8-byte integers in the other byte order
        FQ_KEYS_FIXED          # numpy S<n>: trailing NULs are not part of the key

    ctypedef struct fq_divisor:
        uint32_t d
    ctypedef struct fq_key_array:
        const unsigned char *base
        Py_ssize_t stride
        size_t n
        size_t itemsize
        int kind

    uint64_t fq_hash_u64(uint64_t v, uint64_t seed)        # = XXH3 of v's 8 LE bytes
    fq_divisor fq_divisor_new(uint32_t d)
    int32_t fq_jump(uint64_t key, int32_t n)
    size_t fq_fixed_len(const unsigned char *p, size_t itemsize)
    uint64_t fq_key_array_u64(const fq_key_array *a, size_t i)
    void fq_hash_array(const fq_key_array *a, uint64_t seed, uint64_t *out)
    void fq_partition_hashes(const uint64_t *h, size_t n, const fq_divisor *dv, int strategy,
                             int32_t *out)
    void fq_partition_array(const fq_key_array *a, const fq_divisor *dv, int strategy,
                            int32_t *out)
    void fq_group(const int32_t *part, size_t n, uint32_t n_parts, int64_t *counts,
                  int64_t *order, int64_t *cursor)


cdef extern from "fq_rate.h" nogil:
    ctypedef struct fq_rate:
        double per_ns
        double burst
        double tokens
        int64_t last
    void fq_rate_init(fq_rate *b, double rate, double burst, int64_t now)
    void fq_rate_refill(fq_rate *b, int64_t now)
    int fq_rate_take(fq_rate *b, double n, int64_t now)
    int64_t fq_rate_wait_ns(fq_rate *b, double n, int64_t now)
    void fq_rate_set(fq_rate *b, double rate, int64_t now)


cdef extern from "fq_dedup.h" nogil:
    const uint64_t FQ_DD_MAX_KEYS
    const uint32_t FQ_DD_SEQ_LIMIT
    ctypedef struct fq_dedup:
        double ttl
        uint64_t max_keys
        uint64_t fp_mask
        bint exact
        uint32_t cap
        uint32_t live
        uint32_t head_seq          # sequence number of the oldest entry
        double now                 # latest clock reading
        uint64_t evictions
        uint64_t expiries
        uint64_t inserts
        uint64_t hits
    ctypedef struct fq_dd_header:
        uint64_t seed
        uint64_t fp_mask
        uint64_t max_keys
        uint64_t count
        double ttl
        int64_t wall_ns
        bint exact

    int fq_dd_init(fq_dedup *d, double ttl, uint64_t max_keys, int exact, uint64_t fp_mask)
    void fq_dd_free(fq_dedup *d)
    int fq_dd_clear(fq_dedup *d)
    void fq_dd_advance(fq_dedup *d, double now)
    int fq_dd_seen(fq_dedup *d, uint64_t fp, const void *key, size_t klen)   # 1 / 0 / -errno
    size_t fq_dd_seen_many(fq_dedup *d, const uint64_t *fp, const unsigned char *const *kp,
                           const size_t *kl, size_t n, unsigned char *out, int *err)
    bint fq_dd_contains(const fq_dedup *d, uint64_t fp, const void *key, size_t klen)
    bint fq_dd_forget(fq_dedup *d, uint64_t fp, const void *key, size_t klen)
    uint64_t fq_dd_memory(const fq_dedup *d)
    uint64_t fq_dd_snapshot_size(const fq_dedup *d)
    void fq_dd_snapshot(const fq_dedup *d, uint64_t seed, int64_t wall_ns, unsigned char *out)
    int64_t fq_dd_check(const unsigned char *b, uint64_t length, fq_dd_header *h, const char **why)
    int fq_dd_restore(fq_dedup *d, const unsigned char *b, const fq_dd_header *h, double now,
                      double elapsed, int64_t *dup_pos, const char **why)


cdef extern from "fq_hist.h" nogil:
    ctypedef struct fq_hist:
        uint64_t *counts
        uint32_t n
        uint64_t highest
    ctypedef struct fq_hist_totals:
        uint64_t count, sum, min, max, overflow
    uint64_t FQ_HIST_MAX_NS
    uint32_t fq_hist_index(uint64_t v)
    uint64_t fq_hist_lowest(uint32_t i)
    uint64_t fq_hist_highest_equiv(uint32_t i)
    int fq_hist_init(fq_hist *h, uint64_t highest)
    void fq_hist_free(fq_hist *h)
    size_t fq_hist_bytes(const fq_hist *h)
    uint64_t fq_hist_sum(fq_hist *h)
    uint64_t fq_hist_overflow(fq_hist *h)
    void fq_hist_record(fq_hist *h, uint64_t v)
    int fq_hist_ns(double s, uint64_t *out)
    int fq_hist_record_s(fq_hist *h, double s)
    int64_t fq_hist_check_f64(const char *p, int64_t n, int64_t stride)
    int64_t fq_hist_check_i64(const char *p, int64_t n, int64_t stride)
    void fq_hist_record_f64(fq_hist *h, const char *p, int64_t n, int64_t stride,
                            uint64_t *local)
    void fq_hist_record_i64(fq_hist *h, const char *p, int64_t n, int64_t stride,
                            uint64_t *local)
    void fq_hist_record_u64s(fq_hist *h, const uint64_t *v, int64_t n, uint64_t *local)
    void fq_hist_copy(fq_hist *h, uint64_t *out, fq_hist_totals *t)
    void fq_hist_drain(fq_hist *h, uint64_t *out, fq_hist_totals *t)
    void fq_hist_merge(fq_hist *h, fq_hist *src)
    uint64_t fq_hist_value_at(const uint64_t *counts, uint32_t n, uint64_t count, uint64_t max,
                              double q)
    uint64_t fq_hist_count_le(const uint64_t *counts, uint32_t n, uint64_t bound)


cdef extern from "fq_uuid.h" nogil:
    ctypedef struct fq_uuid_gen:
        pass
    fq_uuid_gen fq_uuid_state
    int fq_uuid7(fq_uuid_gen *g, int64_t now_ns, unsigned char *out)
    void fq_uuid_format(const unsigned char *u, char *out)
    int fq_uuid_parse(const char *s, size_t n, unsigned char *out)


cdef extern from "fq_wq.h" nogil:
    enum:
        FQ_WQ_OK
        FQ_WQ_FULL
        FQ_WQ_EMPTY
        FQ_WQ_STALE
        FQ_WQ_NOMEM
    enum:
        FQ_WQ_DEAD_PERMANENT
        FQ_WQ_DEAD_MAX_ATTEMPTS
    const uint32_t FQ_WQ_MAX_SLOTS
    ctypedef struct fq_wq_entry:
        void *msg
        void *err
    ctypedef struct fq_wq_heap:
        uint32_t n
    ctypedef struct fq_wq_dead:
        void *msg
        void *err
        uint64_t tag
        int64_t first_delivery, last_delivery, put_at
        uint32_t deliveries
        int reason
    ctypedef struct fq_wq_grant:
        void *msg
        uint64_t receipt, tag
        int64_t lease_deadline
        uint32_t attempt
    ctypedef struct fq_wq:
        fq_wq_entry *e
        uint32_t hw
        fq_wq_heap delayed, leases
        uint64_t n_inflight
        fq_wq_dead *dead
        uint32_t n_dead, cap_dead
        uint64_t held
        int64_t bytes
        uint64_t maxsize
        int64_t max_bytes
        int64_t vt, age_step
        uint32_t max_deliveries
        int64_t now
        int64_t wall_offset
        uint64_t put_total, acked_total, redelivered_total, dead_total, nacked_total, lease_expiries
        uint64_t released_total
    int fq_wq_init(fq_wq *q, uint64_t maxsize, int64_t max_bytes, int64_t vt,
                   uint32_t max_deliveries, int64_t age_step, uint64_t first_gen)
    void fq_wq_destroy(fq_wq *q)
    int fq_wq_advance(fq_wq *q, int64_t now)
    int fq_wq_has_room(const fq_wq *q, int64_t nbytes)
    int fq_wq_put(fq_wq *q, void *msg, int prio, int64_t delay, int64_t nbytes, int64_t deadline_wall,
                  uint64_t tag, uint32_t deliveries)
    int fq_wq_take(fq_wq *q, fq_wq_grant *g)
    int fq_wq_ack(fq_wq *q, uint64_t receipt, void **msg, void **err, uint64_t *tag)
    int fq_wq_nack(fq_wq *q, uint64_t receipt, int64_t delay, void *err, void **old_err, uint64_t *tag)
    int fq_wq_extend(fq_wq *q, uint64_t receipt, int64_t by, int64_t *deadline)
    int fq_wq_giveback(fq_wq *q, uint64_t receipt, int64_t delay, uint64_t *tag, uint32_t *attempts)
    int fq_wq_reject(fq_wq *q, uint64_t receipt, int reason, void *err, void **old_err, uint64_t *tag)
    int fq_wq_pop_ready(fq_wq *q, void **msg, void **err, uint64_t *tag)
    uint64_t fq_wq_min_tag(const fq_wq *q)
    int64_t fq_wq_next_due(const fq_wq *q)
    int64_t fq_wq_oldest_ready(const fq_wq *q)
    uint64_t fq_wq_ready(const fq_wq *q)


cdef extern from "fq_py.h":
    # hands a slot's owned reference to Cython (no extra INCREF); never NULL
    object fq_steal(void *p)
    void fq_list_set(object lst, Py_ssize_t i, void *p)
    # wraps RingBuffer's tp_traverse/tp_clear so the GC sees the items in the slots
    void fq_ring_install_gc(object ring_type, Py_ssize_t ring_field_offset)
    # bytes / str keys without reference counting: 1 fast type, 0 other type, -1 error set
    int fq_key_fast(PyObject *o, const char **p, Py_ssize_t *n) except -1
    # a PyMutex on free-threaded builds, nothing on GIL builds (the GIL serialises callers)
    ctypedef struct fq_pylock:
        pass
    void fq_pylock_acquire(fq_pylock *m) nogil
    void fq_pylock_release(fq_pylock *m) nogil


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


@cython.final
cdef class _Segment:
    # one mapped segment file; unmapped when the last reference (log, Record, iterator) goes
    cdef unsigned char *map
    cdef uint64_t map_len          # bytes mapped
    cdef uint64_t seg_bytes        # declared size (header)
    cdef uint64_t file_size        # size found on disk when opened
    cdef uint64_t base             # base offset
    cdef uint64_t end_pos          # where valid records end (writer: the append position)
    cdef uint64_t next             # offset after the last record
    cdef uint64_t visible_pos      # readers see records before this position ...
    cdef uint64_t visible_next     # ... and offsets before this one
    cdef uint64_t synced_pos       # durable up to here
    cdef uint64_t populated        # pages before this are faulted in (writer)
    cdef long pins                 # live Records on this segment (fq_pin_add / fq_pin_load)
    cdef bint meta_dirty           # checkpoint page written since the last sync
    cdef bint writable             # mapped read-write (the active segment of a writer)
    cdef int fd                    # open only while this is the writer's active segment
    cdef fq_index ix
    cdef object path

    cdef inline unsigned char *meta(self)


@cython.final
cdef class Record:
    cdef readonly uint64_t offset
    cdef readonly int64_t timestamp
    cdef _Segment _seg
    cdef uint64_t _key_at
    cdef uint64_t _value_at
    cdef uint32_t _key_len
    cdef uint32_t _value_len


@cython.final
cdef class SegmentLog:
    cdef cython.pymutex _lock      # guards every field below and the writer side of _Segment
    cdef object _dir
    cdef bytes _dir_b
    cdef list _segs                # oldest first; the last one is the active segment
    cdef _Segment _active
    cdef uint64_t _seg_bytes
    cdef uint64_t _max_record      # key + value bytes
    cdef int _sync                 # _SYNC_NONE / _SYNC_INTERVAL / _SYNC_ALWAYS
    cdef double _interval
    cdef object _sync_text
    cdef object _retention_bytes
    cdef object _retention_seconds
    cdef bint _readonly
    cdef bint _repair
    cdef bint _closed
    cdef bint _forked
    cdef object _failed            # the LogFailedError once a sync failed
    cdef int _lock_fd
    cdef fq_parker *_appended      # tail() readers park here
    cdef fq_parker *_durable       # group-commit waiters park here
    cdef bint _syncing
    cdef uint64_t _durable_next
    cdef uint64_t _ckpt_seq
    cdef uint64_t _appends
    cdef uint64_t _bytes_appended
    cdef uint64_t _fsyncs
    cdef uint64_t _records_durable
    cdef uint64_t _bytes_truncated
    cdef uint64_t _segments_removed
    cdef list _truncations
    cdef list _repaired
    cdef list _unsynced            # sealed segments not yet synced (sync "none"/"interval")
    cdef object _offsets           # dict group -> offset
    cdef object _offsets_lock
    cdef bint _offsets_dirty
    cdef list _offsets_clamped
    cdef object _flusher
    cdef object _stop
    cdef object _hook
    cdef int _fail_after
    cdef int _fail_errno
    cdef object __weakref__

    cdef uint64_t _append_raw(self, const char *kp, Py_ssize_t kl, const char *vp, Py_ssize_t vl,
                              int64_t ts) except? 0xFFFFFFFFFFFFFFFF

    cdef int _check_write(self) except -1
    cdef int _check_open(self) except -1
    cdef uint64_t _visible_next(self)
    cdef int _publish(self) except -1
    cdef uint64_t _next_seg_bytes(self, uint64_t prev, uint64_t need)
    cdef int _roll(self, _Segment seg, uint64_t need=*) except -1
    cdef int _retention(self, int64_t now_ns) except -1
    cdef int _await_durable(self, uint64_t target) except -1
    cdef int _fail(self, int err, object path) except -1
    cdef int _refresh(self) except -1
    cdef _Segment _locate(self, uint64_t offset, uint64_t *pos, uint64_t *expected, uint64_t *limit)
    cdef int _injected_failure(self)
    cdef bint _held(self, _Segment seg)
    cdef int _delete_oldest(self) except -1
    cdef list _read(self, uint64_t offset, Py_ssize_t max_records, uint64_t max_bytes)
    cdef bint _wait_for(self, uint64_t pos, int64_t deadline) except -1


@cython.final
cdef class _LogIterator:
    cdef SegmentLog _log
    cdef uint64_t _pos
    cdef list _buf
    cdef Py_ssize_t _i
    cdef bint _follow
    cdef int64_t _deadline_kind
    cdef int64_t _timeout

    @staticmethod
    cdef _LogIterator _new(SegmentLog log, uint64_t pos, bint follow, int64_t kind, int64_t timeout)


@cython.final
cdef class DedupWindow:
    cdef fq_dedup _d               # the C window (fq_dedup.h); guarded by _lock
    cdef fq_pylock _lock           # free-threaded builds only; GIL builds need none
    cdef bint _ready               # _d initialised (a failed __init__ leaves it unset)
    cdef uint64_t _seed            # fingerprint seed: random per window, kept by snapshots
    cdef object _clock             # None: the C monotonic clock; else a callable -> seconds

    cdef int _setup(self, double ttl, uint64_t max_keys, bint exact, uint64_t mask,
                    uint64_t seed, object clock) except -1
    cdef double _now(self) except? -1.0
    cdef int _lookup(self, object key, bint forget) except -1
    cdef int _check(self, int rc) except -1


@cython.final
@cython.freelist(64)
cdef class Message:
    cdef readonly object payload
    cdef readonly object key            # None, bytes, str or int
    cdef readonly str type
    cdef readonly object idempotency_key
    cdef readonly str source
    cdef readonly object trace_id
    cdef readonly int64_t timestamp     # unix ns at creation
    cdef object _headers                # dict of str -> str, or None (no headers)
    cdef object _id                     # str, or None until formatted from _uuid
    cdef int64_t _deadline              # unix ns; INT64_MIN = none
    cdef unsigned char _uuid[16]        # the id's bytes when it is a canonical UUID
    cdef unsigned char _prio            # 0 critical .. 3 low
    cdef bint _has_uuid
    cdef bint _ready                    # __init__ done: the message is frozen


cdef class _Cursor:
    cdef const unsigned char *p
    cdef Py_ssize_t n, pos, base
    cdef object source

    cdef int fail(self, str reason) except -1
    cdef uint64_t uvarint(self, str what) except? 0xFFFFFFFFFFFFFFFF
    cdef int64_t i64(self, str what) except? -1
    cdef Py_ssize_t blob(self, str what) except -1
    cdef bytes take_bytes(self, str what)
    cdef str take_str(self, str what)
    cdef str take_rest_str(self)


@cython.final
@cython.freelist(64)
@cython.no_gc            # as ConsumerRecord: untracked, so get_many does not feed the GC
cdef class Delivery:
    cdef readonly Message message
    cdef readonly uint32_t attempt          # 1 on the first delivery
    cdef readonly uint64_t receipt          # (slot << 40) | hand-out number
    cdef readonly double lease_deadline     # seconds on the queue's clock
    cdef object _queue                      # the queue facade (ack/nack/extend by receipt)
    cdef object _engine                     # a MemoryQueue to ack directly, or None
    cdef readonly uint64_t _tag             # the engine's tag (a durable queue: log offset)


@cython.final
cdef class MemoryQueue:
    cdef fq_wq _q                           # the C state machine; guarded by _lock
    cdef fq_pylock _lock                    # free-threaded builds only
    cdef bint _ready
    cdef bint _count_bytes                  # max_bytes set: payload sizes are measured
    cdef object _clock                      # None: the C monotonic clock; else -> seconds
    cdef object _owner                      # the Queue facade that Deliveries point to
    cdef public object on_room              # called after room was freed, if room_waiters
    cdef public int room_waiters            # > 0 while puts wait for room
    cdef public bint direct_ack             # Delivery.ack may settle here without the facade
    cdef SegmentLog _journal                # a durable queue's journal (backends/log.py), or None
    cdef object _codec                      # the journal's payload codec (None: JSON)
    cdef uint64_t _settled                  # settlements since the last retention pass
    cdef fq_hist *_latency                  # enqueue -> ack times (a Histogram's), or NULL
    cdef object _latency_owner              # that Histogram, kept alive

    cdef int64_t _now(self) except? -1
    cdef int _nomem(self) except -1
    cdef bint _offer(self, Message m, int64_t delay, int64_t now, uint64_t tag=*,
                     uint32_t deliveries=*, bint force=*) except -1
    cdef Delivery _delivery(self, fq_wq_grant *g)
    cdef int _receipt_error(self, object receipt) except -1
    cdef uint64_t _as_receipt(self, object receipt) except? 0
    cdef int _ack(self, object receipt) except -1
    cdef int _ack_u64(self, uint64_t r, int64_t now=*, uint64_t *tag=*, bint journal=*,
                      int64_t wall=*) except -1
    cdef int _j_tag_list(self, char op, list tags) except -1
    cdef uint64_t _j_put(self, Message m, int64_t delay) except? 0xFFFFFFFFFFFFFFFF
    cdef int _j_tags(self, char op, uint64_t *tags, Py_ssize_t n) except -1
    cdef int _j_deliver_many(self, fq_wq_grant *gs, Py_ssize_t k) except -1


@cython.final
@cython.freelist(64)
@cython.no_gc            # a leaf: it cannot start a cycle, and tracking it made polls 3x slower
cdef class ConsumerRecord:
    cdef readonly int partition
    cdef readonly uint64_t offset
    cdef readonly Message message


@cython.final
cdef class MemoryPartition:
    cdef list _items                    # messages; offsets start at _start for _items[_head]
    cdef list _sizes                    # payload bytes per item (with retention only)
    cdef Py_ssize_t _head
    cdef uint64_t _start
    cdef int64_t _bytes
    cdef int64_t _retention_bytes       # -1: none
    cdef int64_t _retention_ns          # -1: none
    cdef bint _retain
    cdef dict _committed
    cdef fq_pylock _lock

    cdef uint64_t _append(self, Message m) except? 0xFFFFFFFFFFFFFFFF
    cdef uint64_t _append_retained(self, list msgs) except? 0xFFFFFFFFFFFFFFFF


@cython.final
cdef class TokenBucket:
    cdef fq_rate _b                         # the C bucket (fq_rate.h); guarded by _lock
    cdef fq_pylock _lock                    # free-threaded builds only
    cdef object _clock                      # None: the C monotonic clock; else -> seconds
    cdef bint _fake                         # the clock is a FakeClock: never sleep for real
    cdef double _rate

    cdef int64_t _now(self) except? -1
    cdef double _count(self, object n) except -1.0
