# SegmentLog: the durable, memory-mapped segment log (issue 3).
#
# Format and recovery rules: docs/log-format.md (the C side is _c/fq_log.h). Locking: every
# SegmentLog field and the writer-side fields of its segments are guarded by the log's
# pymutex. Readers take it only to find where to start; they decode published bytes outside
# it (published bytes never change while mapped, and a Record keeps its segment mapped).

from cpython.buffer cimport (
    PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_SIMPLE, PyBuffer_FillInfo, PyBuffer_Release,
    PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from libc.stdint cimport INT64_MAX, INT64_MIN, uint16_t
from libc.string cimport memcpy, memset

import errno as _errno
import logging as _logging
import os as _os
import re as _re
import struct as _struct
import threading as _threading
import weakref as _weakref

from fastq.errors import (
    CorruptLogError, LogFailedError, LogLockedError, OffsetOutOfRange,
)

_logger = _logging.getLogger("fastq.log")

cdef enum:
    _SYNC_NONE = 0
    _SYNC_INTERVAL = 1
    _SYNC_ALWAYS = 2

cdef int _O_CLOEXEC = getattr(_os, "O_CLOEXEC", 0)
_SEGMENT_NAME = _re.compile(r"^([0-9]{20})\.log$")
_OFFSETS_MAGIC = b"FQOFFSET"
_OFFSETS_VERSION = 1
_HDR_REASONS = {
    FQ_HDR_SHORT: "segment header is truncated",
    FQ_HDR_MAGIC: "bad segment magic (not a fastq segment, or the header is damaged)",
    FQ_HDR_CRC: "segment header CRC mismatch",
    FQ_HDR_SIZE: "bad segment header size",
    FQ_HDR_BYTES: "bad segment size in the header",
}
_open_logs = _weakref.WeakSet()           # for the after-fork hook


def _after_fork_in_child():
    # The child inherits the mappings and the lock fd; writing through them would corrupt the
    # parent's log. Mark every log unusable and close the inherited lock fd (the flock stays
    # with the parent, which still holds the same open file description).
    for log in list(_open_logs):
        (<SegmentLog>log)._mark_forked()


if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_after_fork_in_child)


cdef int _dir_sync(bytes path):
    cdef const char *p = path
    cdef int rc
    with nogil:
        rc = fq_dir_sync(p)
    return rc


cdef int _raise_forked() except -1:
    # checked before taking the log's mutex: another thread of the parent may have held it at
    # fork() time, and it would stay locked forever in the child
    raise Closed("this SegmentLog was opened before fork(); open the log again in the child "
                 "process")


cdef inline uint64_t _start_of(SegmentLog log):
    # the first offset held: the base of the oldest segment (lock held)
    return (<_Segment>log._segs[0]).base if log._segs else 0


cdef object _out_of_range(str what, object value, uint64_t start, uint64_t end):
    return OffsetOutOfRange(
        f"{what} {value} is out of range: the log holds offsets {start}..{end} (end exclusive)")


cdef object _oserror(int err, object path):
    return OSError(err, _os.strerror(err), path)


cdef object _parse_sync(object sync):
    if not isinstance(sync, str):
        raise TypeError(f"sync must be a str, got {type(sync).__name__}")
    if sync == "none":
        return (_SYNC_NONE, 0.0)
    if sync == "always":
        return (_SYNC_ALWAYS, 0.0)
    m = _re.fullmatch(r"interval:([0-9]+(?:\.[0-9]*)?)", sync)
    if m is not None:
        ms = float(m.group(1))
        if 0 < ms <= 86_400_000:
            return (_SYNC_INTERVAL, ms / 1000.0)
    raise ValueError(
        f"sync must be 'none', 'always' or 'interval:<ms>' with 0 < ms <= 86400000, got {sync!r}"
    )


cdef int64_t _ts_arg(object ts, str name) except? -1:
    if ts is None:
        return fq_wall_ns()
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise TypeError(f"{name} must be an int (nanoseconds) or None, got {type(ts).__name__}")
    if not INT64_MIN <= ts <= INT64_MAX:
        raise ValueError(f"{name} must fit in 64 signed bits, got {ts!r}")
    return <int64_t>ts


cdef int _get_buffer(object obj, Py_buffer *view, str name) except -1:
    if isinstance(obj, str):
        raise TypeError(f"{name} must be a bytes-like object, got str (encode it first)")
    try:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
    except (TypeError, BufferError):
        raise TypeError(
            f"{name} must be a contiguous bytes-like object, got {type(obj).__name__}"
        ) from None
    return 0


# --------------------------------------------------------------------------------------------
# segments


@cython.final
@cython.no_gc
cdef class _Segment:
    def __cinit__(self):
        self.fd = -1
        fq_index_init(&self.ix)

    def __dealloc__(self):
        fq_unmap(self.map, self.map_len)
        self.map = NULL
        if self.fd >= 0:
            _close_fd(self.fd)
            self.fd = -1
        fq_index_free(&self.ix)

    cdef inline unsigned char *meta(self):
        return self.map + FQ_SEG_META_AT

    def __repr__(self):
        return f"<segment {self.path} base={self.base} next={self.next}>"


cdef extern from "unistd.h" nogil:
    int _c_close "close"(int fd)


cdef void _close_fd(int fd) noexcept nogil:
    _c_close(fd)


cdef enum:
    _POPULATE_AHEAD = 4 << 20
    _FIRST_SEG_BYTES = 1 << 20        # a log's segments start here and double (see _next_seg_bytes)


cdef void _populate(_Segment seg, uint64_t upto) noexcept:
    # fault in pages ahead of the writer in big steps (see fq_map_populate)
    cdef uint64_t frm = seg.populated, to = upto + _POPULATE_AHEAD
    if to > seg.map_len:
        to = seg.map_len
    if frm < seg.end_pos:
        frm = seg.end_pos
    if to > frm:
        with nogil:
            fq_map_populate(seg.map, frm, to)
    seg.populated = to


cdef void _seal(_Segment seg) noexcept:
    # no more writes: drop write access to the mapping and the fd
    if seg.writable:
        fq_map_readonly(seg.map, seg.map_len)
        seg.writable = False
    if seg.fd >= 0:
        _close_fd(seg.fd)
        seg.fd = -1


cdef _Segment _open_segment(object path, uint64_t name_base, bint active_writer, bint readonly):
    """Open and map an existing segment (header validated; records are scanned by the caller)."""
    cdef _Segment seg = _Segment.__new__(_Segment)
    cdef unsigned char hdr[256]
    cdef uint64_t got = 0, size = 0, base = 0, seg_bytes = 0
    cdef uint32_t version = 0
    cdef int rc, fd
    seg.path = path
    fd = _os.open(path, (_os.O_RDWR if active_writer else _os.O_RDONLY) | _O_CLOEXEC)
    try:
        rc = fq_file_size(fd, &size)
        if rc == 0:
            rc = fq_pread_all(fd, hdr, FQ_SEG_HEADER_BYTES, 0, &got)
        if rc:
            raise _oserror(rc, path)
        rc = fq_seg_header_check(hdr, got, &base, &seg_bytes, &version)
        if rc == FQ_HDR_VERSION and version > FQ_SEG_VERSION:
            raise CorruptLogError(
                path, 8, f"segment format version {version} is newer than this fastq "
                         f"supports ({FQ_SEG_VERSION}); upgrade fastq to read it")
        if rc == FQ_HDR_VERSION:
            raise CorruptLogError(path, 8, f"unknown segment format version {version}")
        if rc != FQ_HDR_OK:
            raise CorruptLogError(path, 0, _HDR_REASONS.get(rc, "bad segment header"))
        if base != name_base:
            raise CorruptLogError(
                path, 16, f"base offset {base} in the header does not match the file name")
        seg.base = base
        seg.next = base
        seg.seg_bytes = seg_bytes
        seg.file_size = size
        if active_writer:
            if size < seg_bytes:            # the tail of the file is missing: put zeros back
                rc = fq_file_preallocate(fd, seg_bytes)
                if rc:
                    raise _oserror(rc, path)
            seg.map_len = seg_bytes
        else:
            seg.map_len = size if size < seg_bytes else seg_bytes
        rc = fq_map_file(fd, seg.map_len, active_writer, &seg.map)
        if rc:
            seg.map = NULL
            raise _oserror(rc, path)
        seg.writable = active_writer
    except BaseException:
        _os.close(fd)
        raise
    if active_writer:
        seg.fd = fd
    else:
        _os.close(fd)
    return seg


# --------------------------------------------------------------------------------------------
# records


@cython.final
@cython.no_gc          # holds only its segment, which holds no Python objects: no cycles
@cython.freelist(1024)
cdef class Record:
    """One record of a SegmentLog: ``offset``, ``timestamp`` (ns), ``key``, ``value``.

    ``value`` and ``key`` are copies (``bytes``); ``value_view`` is a read-only memoryview into
    the mapped segment (no copy). A Record, and any view of it, keeps its segment mapped, so a
    view never dangles; while one is alive, retention does not delete that segment.
    ``bytes(record)`` and ``memoryview(record)`` give the value too.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("Record objects are created by SegmentLog.read() and iteration")

    def __dealloc__(self):
        if self._seg is not None:
            fq_pin_add(&self._seg.pins, -1)

    @property
    def key(self):
        """The key as bytes, or None when the record has none."""
        _check_record(self)
        if self._key_len == FQ_NO_KEY:
            return None
        return PyBytes_FromStringAndSize(<char *>self._seg.map + self._key_at, self._key_len)

    @property
    def value(self):
        """The value as bytes (a copy)."""
        _check_record(self)
        return PyBytes_FromStringAndSize(<char *>self._seg.map + self._value_at, self._value_len)

    @property
    def value_view(self):
        """The value as a read-only memoryview into the mapped segment (zero-copy)."""
        return memoryview(self)

    def __len__(self):
        return self._value_len

    def __getbuffer__(self, Py_buffer *view, int flags):
        _check_record(self)
        PyBuffer_FillInfo(view, self, <void *>(self._seg.map + self._value_at),
                          self._value_len, 1, flags)

    def __eq__(self, other):
        if not isinstance(other, Record):
            return NotImplemented
        cdef Record o = <Record>other
        return (self.offset == o.offset and self.timestamp == o.timestamp
                and self.key == o.key and self.value == o.value)

    def __hash__(self):
        return hash((self.offset, self.timestamp))

    def __repr__(self):
        v = self.value
        shown = repr(v[:32]) + ("..." if len(v) > 32 else "")
        return (f"Record(offset={self.offset}, timestamp={self.timestamp}, key={self.key!r}, "
                f"value={shown})")


cdef inline int _check_record(Record r) except -1:
    if r._seg is None:                # Record.__new__(Record): no segment behind it
        raise ValueError("this Record was not produced by a SegmentLog")
    return 0


cdef inline Record _make_record(_Segment seg, fq_rec *rec):
    cdef Record r = Record.__new__(Record)
    fq_pin_add(&seg.pins, 1)
    r._seg = seg
    r.offset = rec.offset
    r.timestamp = rec.timestamp
    r._key_at = rec.key_at
    r._value_at = rec.value_at
    r._key_len = rec.key_len
    r._value_len = rec.value_len
    return r


# --------------------------------------------------------------------------------------------
# the log


def _flusher_loop(ref, stop, double interval):
    # background syncs for sync="interval:<ms>"; holds the log only weakly between ticks
    while not stop.wait(interval):
        log = ref()
        if log is None:
            return
        try:
            (<SegmentLog>log)._background_sync()
        except Exception:               # the log is failed or closed: stop quietly
            return
        finally:
            log = None


@cython.final
cdef class SegmentLog:
    """An append-only log of records in memory-mapped segment files (see docs/log.md).

    ``SegmentLog(directory, *, segment_bytes=64 MiB, sync="none", retention_bytes=None,
    retention_seconds=None, readonly=False, repair=False)``
    """

    def __cinit__(self):
        self._lock_fd = -1
        self._fail_after = -1
        self._segs = []
        self._unsynced = []
        self._truncations = []
        self._repaired = []
        self._offsets_clamped = []
        self._offsets = {}
        self._appended = fq_parker_new()
        self._durable = fq_parker_new()
        if self._appended == NULL or self._durable == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self._stop is not None:
            self._stop.set()
        if self._lock_fd >= 0:
            _close_fd(self._lock_fd)
            self._lock_fd = -1
        fq_parker_free(self._appended)
        fq_parker_free(self._durable)

    def __init__(self, directory, *, segment_bytes=64 << 20, sync="none",
                 retention_bytes=None, retention_seconds=None, readonly=False, repair=False):
        if self._dir is not None:
            raise RuntimeError("SegmentLog.__init__ called twice")
        try:
            path = _os.fspath(directory)
        except TypeError:
            raise TypeError(
                f"directory must be a str or os.PathLike, got {type(directory).__name__}"
            ) from None
        if isinstance(path, bytes):
            path = _os.fsdecode(path)
        if not path:
            raise ValueError("directory must not be empty")
        if isinstance(segment_bytes, bool) or not isinstance(segment_bytes, int):
            raise TypeError(f"segment_bytes must be an int, got {type(segment_bytes).__name__}")
        if not (FQ_SEG_MIN_BYTES <= segment_bytes <= FQ_SEG_MAX_BYTES) or segment_bytes % 8:
            raise ValueError(
                f"segment_bytes must be a multiple of 8 in {FQ_SEG_MIN_BYTES}..{FQ_SEG_MAX_BYTES},"
                f" got {segment_bytes!r}")
        mode, interval = _parse_sync(sync)
        if retention_bytes is not None:
            if isinstance(retention_bytes, bool) or not isinstance(retention_bytes, int):
                raise TypeError(
                    f"retention_bytes must be an int or None, got {type(retention_bytes).__name__}")
            if retention_bytes < 0:
                raise ValueError(f"retention_bytes must be >= 0, got {retention_bytes!r}")
        if retention_seconds is not None:
            if isinstance(retention_seconds, bool) or not isinstance(retention_seconds, (int, float)):
                raise TypeError(
                    f"retention_seconds must be a number or None, "
                    f"got {type(retention_seconds).__name__}")
            if not 0 <= retention_seconds < float("inf"):
                raise ValueError(
                    f"retention_seconds must be finite and >= 0, got {retention_seconds!r}")
        for name, flag in (("readonly", readonly), ("repair", repair)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        if readonly and repair:
            raise ValueError("repair=True needs a writable log (readonly=False)")

        self._dir = _os.path.abspath(path)
        self._dir_b = _os.fsencode(self._dir)
        self._seg_bytes = segment_bytes
        self._max_record = segment_bytes - FQ_SEG_DATA_AT - FQ_REC_HEADER
        self._sync = mode
        self._interval = interval
        self._sync_text = sync
        self._retention_bytes = retention_bytes
        self._retention_seconds = retention_seconds
        self._readonly = readonly
        self._repair = repair
        self._offsets_lock = _threading.Lock()

        if readonly:
            if not _os.path.isdir(self._dir):
                raise _oserror(_errno.ENOENT if not _os.path.exists(self._dir) else _errno.ENOTDIR,
                               self._dir)
        else:
            _os.makedirs(self._dir, exist_ok=True)
            lock_path = _os.path.join(self._dir, ".lock")
            fd = _os.open(lock_path, _os.O_RDWR | _os.O_CREAT | _O_CLOEXEC, 0o644)
            rc = fq_lock_file(fd)
            if rc:
                _os.close(fd)
                if rc in (_errno.EWOULDBLOCK, _errno.EAGAIN, _errno.EACCES):
                    raise LogLockedError(
                        f"{self._dir} is open for writing by another SegmentLog "
                        f"(open it with readonly=True to read alongside)")
                raise _oserror(rc, lock_path)
            self._lock_fd = fd
        try:
            self._recover()
            self._load_offsets()
            if not readonly:
                if self._forked:
                    _raise_forked()
                with self._lock:
                    self._retention(fq_wall_ns())
        except BaseException:
            self._release_all()
            raise
        _open_logs.add(self)
        if mode == _SYNC_INTERVAL and not readonly:
            self._stop = _threading.Event()
            self._flusher = _threading.Thread(
                target=_flusher_loop, args=(_weakref.ref(self), self._stop, interval),
                name=f"fastq-log-sync:{self._dir}", daemon=True)
            self._flusher.start()

    # ---- opening and recovery ------------------------------------------------------------

    def _list_segments(self):
        found = []
        for name in _os.listdir(self._dir):
            m = _SEGMENT_NAME.match(name)
            if m is not None:
                found.append((int(m.group(1)), _os.path.join(self._dir, name)))
            elif name.endswith(".tmp") and not self._readonly:
                try:
                    _os.unlink(_os.path.join(self._dir, name))   # an unfinished create/commit
                except FileNotFoundError:
                    pass
        found.sort()
        return found

    def _recover(self):
        cdef _Segment seg
        cdef fq_scan sc
        cdef uint64_t expected = 0, ck_seq = 0, ck_pos = 0, ck_next = 0, tail_end, q, found
        cdef bint last, damaged
        cdef bint have_ck = False            # set per segment; read only after the loop ran
        found_list = self._list_segments()
        segs = []
        for i, (base, path) in enumerate(found_list):
            last = i == len(found_list) - 1
            if i and base < expected:
                raise CorruptLogError(
                    path, 16, f"segment base offset {base} overlaps the previous segment, "
                              f"which ends at offset {expected}")
            if i and base > expected:
                if not self._repair:
                    raise CorruptLogError(
                        path, 16, f"offsets {expected}..{base - 1} are missing (a segment "
                                  f"before this one was deleted or renamed); open with "
                                  f"repair=True to accept the gap")
                self._repaired.append((expected, base, "missing segment"))
                gap = self._create_segment(expected, FQ_SEG_MIN_BYTES, base - expected)
                _seal(gap)
                segs.append(gap)
            seg = _open_segment(path, base, last and not self._readonly, self._readonly)
            have_ck = False
            if last and seg.map_len >= FQ_SEG_DATA_AT:
                have_ck = fq_ckpt_read(seg.meta(), &ck_seq, &ck_pos, &ck_next) != 0
                if have_ck and not (FQ_SEG_DATA_AT <= ck_pos <= seg.map_len and ck_next >= base):
                    have_ck = False
                if have_ck:
                    self._ckpt_seq = ck_seq
            if last and not have_ck and seg.file_size < seg.seg_bytes:
                # segments are preallocated before they get their name, so a short active
                # segment was cut after the fact; without a checkpoint to say what it held,
                # records may be gone without a trace
                reason = (f"segment file is {seg.file_size} bytes, shorter than the "
                          f"{seg.seg_bytes} its header declares, and has no valid checkpoint")
                if not self._repair:
                    raise CorruptLogError(path, seg.file_size, reason)
                self._repaired.append((None, None, f"{path}: {reason}; kept the valid prefix"))
            # scan from the first record, repairing or refusing damage before the recovery point
            seg.end_pos = FQ_SEG_DATA_AT
            expected = base
            while True:
                if seg.map_len <= FQ_SEG_DATA_AT:
                    sc.pos = seg.end_pos; sc.next = expected; sc.status = FQ_REC_SHORT
                    if seg.map_len < seg.end_pos:
                        sc.pos = seg.map_len
                elif fq_seg_scan(seg.map, seg.end_pos, seg.map_len, expected, &seg.ix, &sc):
                    raise MemoryError()
                seg.end_pos = sc.pos
                expected = sc.next
                if not last:
                    nb = found_list[i + 1][0]
                    damaged = expected < nb
                else:
                    damaged = have_ck and (sc.pos < ck_pos or expected < ck_next)
                if not damaged:
                    break
                reason = fq_rec_reason(sc.status).decode()
                if sc.status in (FQ_REC_ZERO, FQ_REC_SHORT):
                    reason = f"records end at offset {expected}, expected them to reach " + (
                        f"the next segment's base offset {nb}" if not last
                        else f"the checkpointed offset {ck_next}")
                if not self._repair:
                    raise CorruptLogError(path, sc.pos, reason)
                # repair: drop the damaged range up to the next record that validates
                found = 0
                q = fq_seg_resync(seg.map, sc.pos, seg.map_len, expected - 1 if expected else 0,
                                  <uint64_t>nb if not last else 0xFFFFFFFFFFFFFFFF,
                                  &found) if sc.pos + FQ_REC_HEADER <= seg.map_len else seg.map_len
                if q < seg.map_len and q - sc.pos >= FQ_REC_HEADER:
                    if not seg.writable:
                        seg = self._reopen_writable(seg, path, base)
                    self._repaired.append((expected, found, f"{path}: bytes {sc.pos}..{q}: {reason}"))
                    fq_gap_write(seg.map + sc.pos, expected, found - expected, q - sc.pos)
                    continue                          # rescan from the gap record
                # nothing valid follows in this segment
                if not last:
                    # the next segment carries on; a gap segment would be needed only when the
                    # dropped range is not covered: record it (the next loop creates it)
                    self._repaired.append((expected, nb, f"{path}: bytes {sc.pos}..: {reason}"))
                    if not seg.writable:
                        seg = self._reopen_writable(seg, path, base)
                    tail_end = fq_last_nonzero(seg.map, sc.pos, seg.map_len)
                    memset(seg.map + sc.pos, 0, tail_end - sc.pos)
                    fq_map_sync(seg.map, sc.pos, tail_end, -1)
                    fq_map_readonly(seg.map, seg.map_len)
                    seg.writable = False
                else:
                    self._repaired.append((expected, ck_next, f"{path}: bytes {sc.pos}..: {reason}"))
                    have_ck = False                   # the rest is cut below, like a torn tail
                break
            seg.next = expected
            seg.visible_pos = seg.end_pos
            seg.visible_next = expected
            if last:
                tail_end = fq_last_nonzero(seg.map, seg.end_pos, seg.map_len)
                if tail_end > seg.end_pos and not self._readonly:
                    # a torn or garbage tail past the recovery point: the expected crash result
                    self._truncations.append((path, seg.end_pos, tail_end - seg.end_pos))
                    self._bytes_truncated += tail_end - seg.end_pos
                    _logger.warning(
                        "%s: truncated %d bytes of torn or unfinished records after "
                        "offset %d (byte %d)", path, tail_end - seg.end_pos, expected,
                        seg.end_pos)
                    memset(seg.map + seg.end_pos, 0, tail_end - seg.end_pos)
                if self._readonly:
                    hp = fq_hint_pos(seg.meta()) & ~FQ_HINT_SEALED if seg.map_len >= FQ_SEG_DATA_AT else 0
                    if hp < seg.visible_pos and hp >= FQ_SEG_DATA_AT:
                        self._trim_visible(seg, hp)
            else:
                if seg.writable:
                    fq_map_readonly(seg.map, seg.map_len)
                    seg.writable = False
                if seg.fd >= 0:
                    _close_fd(seg.fd)
                    seg.fd = -1
            segs.append(seg)
        if not segs:
            if self._readonly:
                self._segs = []
                self._active = None
                return
            segs.append(self._create_segment(0, self._next_seg_bytes(0, 0), 0))
        self._segs = segs
        self._active = segs[-1]
        self._durable_next = self._active.next
        if self._readonly:
            return
        seg = self._active
        if not found_list or (have_ck and ck_pos == seg.end_pos and ck_next == seg.next
                              and not self._truncations and not self._repaired):
            seg.synced_pos = seg.end_pos        # closed cleanly: the checkpoint covers it all
        elif self._sync == _SYNC_NONE:
            # a crash left records that may never have been synced: the next flush() or
            # close() covers all of them (this mode promises nothing for power loss before)
            seg.synced_pos = FQ_SEG_DATA_AT
            seg.meta_dirty = True
            self._durable_next = ck_next if have_ck else (<_Segment>segs[0]).base
            self._unsynced = list(segs[:-1])
        else:
            # make everything recovered durable before anything new is acknowledged on top
            # of it (and before readers in sync="always" may see it)
            for s in segs[:-1]:
                rc = fq_map_sync((<_Segment>s).map, FQ_SEG_META_AT, (<_Segment>s).end_pos, -1)
                if rc:
                    raise _oserror(rc, (<_Segment>s).path)
            self._ckpt_seq += 1
            fq_ckpt_write(seg.meta(), self._ckpt_seq, seg.end_pos, seg.next)
            self._ckpt_seq += 1
            fq_ckpt_write(seg.meta(), self._ckpt_seq, seg.end_pos, seg.next)
            rc = fq_map_sync(seg.map, FQ_SEG_META_AT, seg.end_pos, seg.fd)
            if rc:
                raise _oserror(rc, seg.path)
            seg.synced_pos = seg.end_pos
            self._fsyncs += 1
        fq_hint_store(seg.meta(), seg.end_pos, seg.next)

    def _trim_visible(self, _Segment seg, uint64_t hp):
        # readonly: show only records before the writer's published position
        cdef fq_scan sc
        cdef fq_index ix
        fq_index_init(&ix)
        try:
            if fq_seg_scan(seg.map, FQ_SEG_DATA_AT, hp, seg.base, &ix, &sc):
                raise MemoryError()
            fq_index_free(&seg.ix)
            seg.ix = ix
            fq_index_init(&ix)
            seg.end_pos = sc.pos
            seg.next = sc.next
            seg.visible_pos = sc.pos
            seg.visible_next = sc.next
        finally:
            fq_index_free(&ix)

    def _reopen_writable(self, _Segment seg, path, uint64_t base):
        # repair needs to write into a sealed segment: map it read-write for the repair
        cdef _Segment w = _open_segment(path, base, True, False)
        fq_index_free(&w.ix)
        w.ix = seg.ix
        fq_index_init(&seg.ix)
        w.end_pos = seg.end_pos
        return w

    def _create_segment(self, uint64_t base, uint64_t seg_bytes, uint64_t gap):
        """Create, preallocate, map and publish a new segment (tmp + fsync + rename + dir fsync).

        ``gap > 0`` makes a gap segment (repair): one gap record dropping that many offsets."""
        seg = self._prepare_segment(base, seg_bytes, gap)
        self._publish_segment(seg)
        return seg

    def _prepare_segment(self, uint64_t base, uint64_t seg_bytes, uint64_t gap):
        """Everything that can run out of space, under the temporary name: preallocate, map,
        write and sync the header. Nothing a reader or recovery looks at changes yet."""
        cdef _Segment seg = _Segment.__new__(_Segment)
        cdef int rc, fd
        cdef unsigned char *m = NULL
        path = _os.path.join(self._dir, f"{base:020d}.log")
        tmp = path + ".tmp"
        fd = _os.open(tmp, _os.O_RDWR | _os.O_CREAT | _os.O_TRUNC | _O_CLOEXEC, 0o644)
        try:
            with nogil:
                rc = fq_file_preallocate(fd, seg_bytes)
            if rc:
                raise _oserror(rc, tmp)
            rc = fq_map_file(fd, seg_bytes, 1, &m)
            if rc:
                m = NULL
                raise _oserror(rc, tmp)
            fq_seg_header_write(m, base, seg_bytes, fq_wall_ns())
            seg.map = m
            seg.map_len = seg_bytes
            seg.seg_bytes = seg_bytes
            seg.file_size = seg_bytes
            seg.base = base
            seg.next = base
            seg.end_pos = FQ_SEG_DATA_AT
            seg.path = path
            seg.fd = fd
            seg.writable = True
            if gap:
                fq_gap_write(m + FQ_SEG_DATA_AT, base, gap, FQ_REC_HEADER)
                fq_index_note(&seg.ix, base, FQ_SEG_DATA_AT, 0, 0)
                seg.end_pos += FQ_REC_HEADER
                seg.next = base + gap
            seg.visible_pos = seg.end_pos
            seg.visible_next = seg.next
            seg.synced_pos = seg.end_pos
            rc = self._injected_failure()
            if rc == 0:
                with nogil:
                    rc = fq_map_sync(m, 0, seg.end_pos, fd)
            if rc:
                self._fail(rc, tmp)             # an I/O error: the device is failing
        except BaseException:
            if seg.map == NULL and m != NULL:
                fq_unmap(m, seg_bytes)
            if seg.fd < 0:
                _os.close(fd)
            try:
                _os.unlink(tmp)
            except OSError:
                pass
            raise
        return seg

    def _discard_segment(self, _Segment seg):
        # a prepared segment that will not be used: remove its temporary file
        try:
            _os.unlink(seg.path + ".tmp")
        except OSError:
            pass
        _seal(seg)

    def _publish_segment(self, _Segment seg):
        """Give a prepared segment its name: rename + directory fsync."""
        cdef int rc
        tmp = seg.path + ".tmp"
        try:
            _os.rename(tmp, seg.path)
        except BaseException:
            self._discard_segment(seg)
            raise
        rc = _dir_sync(self._dir_b)
        if rc == 0:
            self._barrier("create")
            return
        # the name may or may not be durable: take it back, so appends can go on in the
        # previous segment without ever overlapping this one
        try:
            _os.unlink(seg.path)
            unlinked = True
        except OSError:
            unlinked = False
        _seal(seg)
        if unlinked and rc in (_errno.EMFILE, _errno.ENFILE, _errno.ENOMEM):
            raise _oserror(rc, self._dir)      # out of descriptors: nothing changed
        self._fail(rc, self._dir)

    def _release_all(self):
        self._segs = []
        self._active = None
        if self._lock_fd >= 0:
            _os.close(self._lock_fd)
            self._lock_fd = -1

    def _mark_forked(self):
        # runs in the child right after fork(): touch no lock (another parent thread may have
        # held it); the parent's interval thread does not exist here
        self._forked = True
        if self._lock_fd >= 0:
            _close_fd(self._lock_fd)
            self._lock_fd = -1

    # ---- state checks --------------------------------------------------------------------

    cdef int _check_open(self) except -1:
        if self._dir is None:
            raise Closed("this SegmentLog was never opened (SegmentLog.__init__ did not run)")
        if self._forked:
            raise Closed("this SegmentLog was opened before fork(); open the log again in the "
                         "child process")
        if self._closed:
            raise Closed("the SegmentLog is closed")
        return 0

    cdef int _check_write(self) except -1:
        self._check_open()
        if self._readonly:
            raise PermissionError(_errno.EACCES, "the log is open readonly", self._dir)
        if self._failed is not None:
            raise LogFailedError(
                self._failed.errno,
                f"the log failed an earlier sync and refuses writes until it is reopened "
                f"({self._failed})", self._dir)
        return 0

    cdef uint64_t _visible_next(self):
        if self._active is None:
            return 0
        return self._active.visible_next

    def _barrier(self, kind):
        if self._hook is not None:
            self._hook(kind)

    # ---- appending -----------------------------------------------------------------------

    cdef int _publish(self) except -1:
        # make everything appended visible (sync "none"/"interval"); called with the lock held
        cdef _Segment seg = self._active
        seg.visible_pos = seg.end_pos
        seg.visible_next = seg.next
        fq_hint_store(seg.meta(), seg.end_pos, seg.next)
        fq_parker_wake_all(self._appended)
        return 0

    cdef uint64_t _next_seg_bytes(self, uint64_t prev, uint64_t need):
        # segments grow: the first is 1 MiB (or segment_bytes if smaller), each next one twice
        # the previous, up to segment_bytes, and always big enough for a record of `need`
        # bytes; a small log costs little disk, while a busy one soon rolls at full size
        cdef uint64_t size = prev * 2 if prev else _FIRST_SEG_BYTES
        while size < FQ_SEG_DATA_AT + need and size < self._seg_bytes:
            size *= 2
        return size if size < self._seg_bytes else self._seg_bytes

    cdef int _roll(self, _Segment seg, uint64_t need=0) except -1:
        # the active segment is full: seal it and continue in `seg` (prepared by the caller
        # under its temporary name) or in a new segment with room for a record of `need` bytes
        cdef _Segment old = self._active
        cdef int rc
        cdef uint64_t frm
        if self._sync != _SYNC_NONE and old.end_pos > old.synced_pos:
            frm = FQ_SEG_META_AT if old.meta_dirty else old.synced_pos
            rc = self._injected_failure()
            if rc == 0:
                with nogil:
                    rc = fq_map_sync(old.map, frm, old.end_pos, old.fd)
            if rc:
                self._fail(rc, old.path)
            self._fsyncs += 1
            if old.next > self._durable_next:
                self._records_durable += old.next - self._durable_next
                self._durable_next = old.next
            old.synced_pos = old.end_pos
            self._barrier("sync")
        if seg is None:
            seg = self._prepare_segment(old.next, self._next_seg_bytes(old.seg_bytes, need), 0)
        self._publish_segment(seg)
        if self._sync != _SYNC_ALWAYS and old.end_pos > old.synced_pos:
            self._unsynced.append(old)          # the next flush (or interval tick) syncs it
        old.visible_pos = old.end_pos
        old.visible_next = old.next
        fq_hint_store(old.meta(), old.end_pos | FQ_HINT_SEALED, old.next)
        fq_map_readonly(old.map, old.map_len)
        old.writable = False
        if old.fd >= 0:
            _close_fd(old.fd)
            old.fd = -1
        self._segs.append(seg)
        self._active = seg
        self._retention(fq_wall_ns())
        return 0

    cdef int _injected_failure(self):
        if self._fail_after < 0:
            return 0
        if self._fail_after == 0:
            self._fail_after = -1
            return self._fail_errno
        self._fail_after -= 1
        return 0

    cdef int _fail(self, int err, object path) except -1:
        exc = _oserror(err, path)
        self._failed = exc
        fq_parker_wake_all(self._durable)
        _logger.error("%s: sync failed (%s); the log refuses writes until reopened", path, exc)
        raise LogFailedError(
            err, f"sync failed ({_os.strerror(err)}); nothing after the last successful sync is "
                 f"acknowledged and the log refuses writes until it is reopened", path) from exc

    cdef uint64_t _append_raw(self, const char *kp, Py_ssize_t kl, const char *vp, Py_ssize_t vl,
                              int64_t ts) except? 0xFFFFFFFFFFFFFFFF:
        """Append one record from raw bytes (kl < 0: no key); returns its offset. In
        sync="always" it returns once the record is durable. The native work queue journals
        through here without building Python objects."""
        cdef uint64_t size, off
        cdef _Segment seg
        if <uint64_t>vl + <uint64_t>(kl if kl > 0 else 0) > self._max_record:
            raise ValueError(
                f"record of {vl + (kl if kl > 0 else 0)} bytes (key + value) exceeds the "
                f"maximum of {self._max_record} for segment_bytes={self._seg_bytes}")
        size = fq_rec_size(kl if kl > 0 else 0, vl)
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_write()
            seg = self._active
            if size > seg.seg_bytes - seg.end_pos or not seg.writable:
                self._roll(None, size)
                seg = self._active
            off = seg.next
            if seg.end_pos + size > seg.populated:
                _populate(seg, seg.end_pos + size)
            fq_rec_write(seg.map + seg.end_pos, off, ts, kp,
                         FQ_NO_KEY if kl < 0 else <uint32_t>kl, vp, <uint32_t>vl, FQ_REC_DATA)
            if fq_index_note(&seg.ix, off, seg.end_pos, ts, 1):
                raise MemoryError()
            seg.end_pos += size
            seg.next = off + 1
            self._appends += 1
            self._bytes_appended += size
            if self._sync != _SYNC_ALWAYS:
                self._publish()
        if self._sync == _SYNC_ALWAYS:
            self._await_durable(off + 1)
        return off

    def append(self, value, *, key=None, timestamp=None):
        """Append one record; returns its offset."""
        cdef Py_buffer vb, kb
        cdef const char *vp
        cdef const char *kp = NULL
        cdef Py_ssize_t vl, kl = -1
        cdef bint vheld = False, kheld = False
        cdef int64_t ts
        cdef uint64_t off
        if PyBytes_CheckExact(value):
            vp = PyBytes_AS_STRING(value)
            vl = PyBytes_GET_SIZE(value)
        else:
            _get_buffer(value, &vb, "value")
            vheld = True
            vp = <const char *>vb.buf
            vl = vb.len
        try:
            if key is not None:
                if PyBytes_CheckExact(key):
                    kp = PyBytes_AS_STRING(key)
                    kl = PyBytes_GET_SIZE(key)
                else:
                    _get_buffer(key, &kb, "key")
                    kheld = True
                    kp = <const char *>kb.buf
                    kl = kb.len
            ts = _ts_arg(timestamp, "timestamp")
            off = self._append_raw(kp, kl, vp, vl, ts)
        finally:
            if vheld:
                PyBuffer_Release(&vb)
            if kheld:
                PyBuffer_Release(&kb)
        return off

    def append_many(self, values, *, keys=None, timestamps=None):
        """Append a batch in one call; returns the offset of the first record.

        ``values``: a list/tuple of bytes-like objects, or a 2-D C-contiguous uint8 buffer (a
        numpy array: one record per row). ``keys``: None, a list/tuple (items bytes-like or
        None) or a 2-D buffer of the same length. ``timestamps``: None (now, for all), a
        list/tuple of ints or a 1-D int64 buffer. Everything is checked before anything is
        written; an empty batch writes nothing and returns ``end_offset``."""
        cdef Py_ssize_t n, i
        cdef fq_span *vs = NULL
        cdef fq_span *ks = NULL
        cdef int64_t *tss = NULL
        cdef Py_buffer *held = NULL
        cdef Py_ssize_t nheld = 0
        cdef int64_t ts_default = 0
        cdef uint64_t total = 0, kl0, first = 0, wrote, pos, nxt = 0
        cdef int oom = 0
        cdef _Segment seg
        cdef uint64_t r_pos, r_next, r_count
        cdef size_t r_ixn
        cdef int64_t r_maxts
        cdef bint rolled
        cdef Py_ssize_t j, k
        cdef list prepared
        n = _batch_len(values, "values")
        if keys is not None:
            nk = _batch_len(keys, "keys")
            if nk != n:
                raise ValueError(f"keys has {nk} entries, values has {n}")
        if n == 0:
            if self._forked:
                _raise_forked()
            with self._lock:
                self._check_write()
                return self._active.next
        try:
            held = <Py_buffer *>PyMem_Calloc(2 * n + 3, sizeof(Py_buffer))
            vs = <fq_span *>PyMem_Malloc(n * sizeof(fq_span))
            if held == NULL or vs == NULL:
                raise MemoryError()
            vkeep = _fill_spans(values, vs, n, held, &nheld, "values", False)
            if keys is not None:
                ks = <fq_span *>PyMem_Malloc(n * sizeof(fq_span))
                if ks == NULL:
                    raise MemoryError()
                kkeep = _fill_spans(keys, ks, n, held, &nheld, "keys", True)
            if timestamps is None:
                ts_default = fq_wall_ns()
            else:
                tss = <int64_t *>PyMem_Malloc(n * sizeof(int64_t))
                if tss == NULL:
                    raise MemoryError()
                _fill_timestamps(timestamps, tss, n)
            for i in range(n):
                kl0 = <uint64_t>ks[i].len if ks != NULL and ks[i].len > 0 else 0
                if <uint64_t>vs[i].len + kl0 > self._max_record:
                    raise ValueError(
                        f"values[{i}]: record of {vs[i].len + kl0} bytes (key + value) exceeds "
                        f"the maximum of {self._max_record} for segment_bytes={self._seg_bytes}")
                total += fq_rec_size(kl0, <uint64_t>vs[i].len)
            if self._forked:
                _raise_forked()
            with self._lock:
                self._check_write()
                first = self._active.next
                prepared = _prepare_batch_segments(self, vs, ks, n)
                seg = self._active
                # what to restore if the batch fails before any segment was sealed
                r_pos = seg.end_pos
                r_next = seg.next
                r_ixn = seg.ix.n
                r_maxts = seg.ix.max_ts
                r_count = seg.ix.count
                rolled = False
                i = 0
                j = 0
                try:
                    while True:
                        seg = self._active
                        if not seg.writable:
                            self._roll(prepared[j])
                            j += 1
                            rolled = True
                            seg = self._active
                        pos = seg.end_pos
                        nxt = seg.next
                        if pos + total > seg.populated:
                            _populate(seg, pos + total)
                        if total >= 65536:
                            with nogil:
                                wrote = fq_seg_write_batch(
                                    seg.map, &pos, seg.seg_bytes, &nxt, &seg.ix, vs + i,
                                    ks + i if ks != NULL else NULL,
                                    tss + i if tss != NULL else NULL,
                                    ts_default, <uint64_t>(n - i), &oom)
                        else:
                            wrote = fq_seg_write_batch(
                                seg.map, &pos, seg.seg_bytes, &nxt, &seg.ix, vs + i,
                                ks + i if ks != NULL else NULL,
                                tss + i if tss != NULL else NULL,
                                ts_default, <uint64_t>(n - i), &oom)
                        seg.end_pos = pos
                        seg.next = nxt
                        i += <Py_ssize_t>wrote
                        if oom or i >= n:
                            break
                        self._roll(prepared[j])
                        j += 1
                        rolled = True
                except BaseException:
                    if not rolled and seg is self._active and seg.writable:
                        # nothing was sealed: take the partial batch back out
                        memset(seg.map + r_pos, 0, seg.end_pos - r_pos)
                        seg.end_pos = r_pos
                        seg.next = r_next
                        seg.ix.n = r_ixn
                        seg.ix.max_ts = r_maxts
                        seg.ix.count = r_count
                    for k in range(j, len(prepared)):
                        self._discard_segment(prepared[k])
                    raise
                self._appends += <uint64_t>i
                self._bytes_appended += total
                if self._sync != _SYNC_ALWAYS:
                    self._publish()
                nxt = self._active.next
            if oom:
                raise MemoryError()
        finally:
            for i in range(nheld):
                PyBuffer_Release(&held[i])
            PyMem_Free(held)
            PyMem_Free(vs)
            PyMem_Free(ks)
            PyMem_Free(tss)
        if self._sync == _SYNC_ALWAYS:
            self._await_durable(nxt)
        return first

    # ---- durability ----------------------------------------------------------------------

    cdef int _await_durable(self, uint64_t target) except -1:
        """Return once offsets before `target` are durable. The first waiter to find no sync
        running becomes the syncer; everyone who arrives meanwhile shares the next one."""
        cdef _Segment seg = None
        cdef _Segment s
        cdef uint64_t frm = 0, to = 0, nxt = 0, pt
        cdef uint32_t armed = 0
        cdef int rc = 0, fd = -1
        cdef bint syncer
        cdef list pending
        while True:
            syncer = False
            pending = None
            if self._forked:
                _raise_forked()
            with self._lock:
                if self._durable_next >= target and not self._unsynced:
                    return 0
                if self._failed is not None:
                    raise LogFailedError(
                        self._failed.errno,
                        f"the log failed a sync ({self._failed}); this write is not "
                        f"acknowledged and the log refuses writes until it is reopened", self._dir)
                if not self._syncing:
                    self._syncing = True
                    syncer = True
                    seg = self._active
                    pending = self._unsynced
                    self._unsynced = []
                    if seg.end_pos > seg.synced_pos:
                        # pad to a fresh page: later appends never rewrite a page that holds
                        # records made durable by this sync (a torn rewrite could destroy them)
                        pt = fq_pad_target(seg.end_pos, seg.seg_bytes)
                        if pt > seg.end_pos:
                            fq_gap_write(seg.map + seg.end_pos, seg.next, 0, pt - seg.end_pos)
                            fq_index_note(&seg.ix, seg.next, seg.end_pos, 0, 0)
                            seg.end_pos = pt
                    frm = FQ_SEG_META_AT if seg.meta_dirty else seg.synced_pos
                    to = seg.end_pos
                    nxt = seg.next
                    fd = seg.fd
                    rc = self._injected_failure()
                else:
                    armed = fq_parker_arm(self._durable)
            if not syncer:
                with nogil:
                    rc = fq_parker_wait(self._durable, armed, FQ_NO_DEADLINE)
                if rc == FQ_INTR:
                    PyErr_CheckSignals()
                continue
            failed_path = seg.path
            if rc == 0:
                for s in pending:
                    with nogil:
                        rc = fq_map_sync(s.map, FQ_SEG_META_AT, s.end_pos, -1)
                    if rc:
                        failed_path = s.path
                        break
            if rc == 0 and to > frm:
                with nogil:
                    rc = fq_map_sync(seg.map, frm, to, fd)
            if self._forked:
                _raise_forked()
            with self._lock:
                self._syncing = False
                if rc:
                    self._fail(rc, failed_path)
                self._fsyncs += 1
                if to > seg.synced_pos:
                    seg.synced_pos = to
                if nxt > self._durable_next:
                    self._records_durable += nxt - self._durable_next
                    self._durable_next = nxt
                if seg is self._active:
                    self._ckpt_seq += 1
                    fq_ckpt_write(seg.meta(), self._ckpt_seq, to, nxt)
                    seg.meta_dirty = True
                    if self._sync == _SYNC_ALWAYS:
                        if to > seg.visible_pos:
                            seg.visible_pos = to
                        if nxt > seg.visible_next:
                            seg.visible_next = nxt
                        fq_hint_store(seg.meta(), seg.visible_pos, seg.visible_next)
                        fq_parker_wake_all(self._appended)
            fq_parker_wake_all(self._durable)
            self._barrier("sync")

    def flush(self):
        """Make everything appended so far durable (msync/fsync), and the committed offsets."""
        cdef uint64_t target
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_write()
            target = self._active.next
        self._await_durable(target)
        self._sync_offsets()

    def _background_sync(self):
        cdef uint64_t target
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_write()
            target = self._active.next
            if self._retention_seconds is not None:
                self._retention(fq_wall_ns())
        self._await_durable(target)
        self._sync_offsets()

    def close(self):
        """Flush, unmap and release the directory lock. Idempotent."""
        cdef uint64_t target = 0
        cdef bint do_flush
        if self._forked:                 # the child of a fork: nothing of this log is ours
            self._closed = True
            return
        with self._lock:
            if self._closed or self._forked:
                self._closed = True
                return
            self._closed = True
            do_flush = not self._readonly and self._failed is None and self._active is not None
            if do_flush:
                target = self._active.next
        if self._stop is not None:
            self._stop.set()
            if self._flusher is not None and self._flusher is not _threading.current_thread():
                self._flusher.join()
        try:
            if do_flush:
                self._await_durable(target)
                self._sync_offsets()
        finally:
            if self._forked:
                _raise_forked()
            with self._lock:
                fq_parker_wake_all(self._appended)
                fq_parker_wake_all(self._durable)
                self._segs = []
                self._active = None
                self._unsynced = []
            _open_logs.discard(self)
            if self._lock_fd >= 0:
                _os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- reading -------------------------------------------------------------------------

    cdef _Segment _locate(self, uint64_t offset, uint64_t *pos, uint64_t *expected, uint64_t *limit):
        # the segment holding `offset` and where to start scanning for it; lock held
        cdef list segs = self._segs
        cdef Py_ssize_t lo = 0, hi = len(segs), mid
        cdef _Segment seg
        cdef const fq_idx_entry *e
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if (<_Segment>segs[mid]).base <= offset:
                lo = mid
            else:
                hi = mid
        seg = <_Segment>segs[lo]
        if seg.ix.n == 0:
            pos[0] = FQ_SEG_DATA_AT
            expected[0] = seg.base
        else:
            e = fq_index_seek(&seg.ix, offset)
            pos[0] = e.pos
            expected[0] = e.offset
        limit[0] = seg.visible_pos
        return seg

    cdef list _read(self, uint64_t offset, Py_ssize_t max_records, uint64_t max_bytes):
        cdef list out = []
        cdef uint64_t want = offset, pos = 0, exp = 0, limit = 0, size, start, end, seg_next = 0
        cdef _Segment seg
        cdef fq_rec rec
        cdef int rc
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_open()
            if self._readonly:
                self._refresh()
            start = _start_of(self)
            end = self._visible_next()
            if offset < start or offset > end:
                raise _out_of_range("offset", offset, start, end)
        while max_records > 0:
            if self._forked:
                _raise_forked()
            with self._lock:
                if self._closed and not out:
                    self._check_open()
                if self._active is None or want >= self._visible_next():
                    break
                start = (<_Segment>self._segs[0]).base
                if want < start:
                    # retention removed the segment between two of our steps: never skip
                    if out:
                        break
                    raise _out_of_range("offset", want, start, self._visible_next())
                seg = self._locate(want, &pos, &exp, &limit)
                seg_next = seg.visible_next
            while pos < limit:
                rc = fq_rec_check(seg.map, pos, limit, exp, &rec)
                if rc != FQ_REC_OK:
                    raise CorruptLogError(seg.path, pos, fq_rec_reason(rc).decode())
                pos += rec.size
                exp = rec.next
                if rec.type != FQ_REC_DATA or rec.offset < want:
                    continue
                size = rec.value_len + (rec.key_len if rec.key_len != FQ_NO_KEY else 0)
                if out and size > max_bytes:
                    max_records = 0
                    break
                out.append(_make_record(seg, &rec))
                max_bytes -= size if size < max_bytes else max_bytes
                max_records -= 1
                if max_records == 0:
                    break
            if exp > want:
                want = exp
            elif pos >= limit:
                break                           # no progress: nothing more to read here
            if max_records and pos >= limit and want < seg_next:
                break                           # nothing more visible in the active segment
        return out

    def read(self, offset, max_records=1000, max_bytes=None):
        """Records from `offset` on: at most `max_records`, and at most `max_bytes` of key +
        value (always at least one record when any is available). ``read(end_offset)`` is
        ``[]``; an offset outside ``start_offset..end_offset`` raises OffsetOutOfRange."""
        cdef uint64_t mb = 0xFFFFFFFFFFFFFFFF
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, got {type(offset).__name__}")
        if isinstance(max_records, bool) or not isinstance(max_records, int):
            raise TypeError(f"max_records must be an int, got {type(max_records).__name__}")
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records!r}")
        if max_bytes is not None:
            if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
                raise TypeError(f"max_bytes must be an int or None, got {type(max_bytes).__name__}")
            if max_bytes < 0:
                raise ValueError(f"max_bytes must be >= 0, got {max_bytes!r}")
            mb = max_bytes if max_bytes < 0xFFFFFFFFFFFFFFFF else 0xFFFFFFFFFFFFFFFF
        if offset < 0 or offset > 0x7FFFFFFFFFFFFFFF:
            if self._forked:
                _raise_forked()
            with self._lock:
                self._check_open()
                start = _start_of(self)
                end = self._visible_next()
            raise _out_of_range("offset", offset, start, end)
        return self._read(<uint64_t>offset, min(max_records, 1 << 30), mb)

    cdef bint _wait_for(self, uint64_t pos, int64_t deadline) except -1:
        # wait until an offset >= pos is visible; False on timeout or close
        cdef uint32_t armed = 0
        cdef int rc
        cdef int64_t dl
        while True:
            with self._lock:
                if self._closed or self._forked:
                    return False
                if self._readonly:
                    self._refresh()
                if self._visible_next() > pos:
                    return True
                armed = fq_parker_arm(self._appended)
            dl = deadline
            if self._readonly:
                # another process appends: poll the published hint every 2 ms
                if dl == FQ_NO_DEADLINE or dl - fq_now_ns() > 2000000:
                    dl = fq_now_ns() + 2000000
            with nogil:
                rc = fq_parker_wait(self._appended, armed, dl)
            if rc == FQ_INTR:
                PyErr_CheckSignals()
            elif rc == FQ_TIMEOUT and deadline != FQ_NO_DEADLINE and fq_now_ns() >= deadline:
                if self._forked:
                    _raise_forked()
                with self._lock:
                    if self._readonly and not self._closed:
                        self._refresh()
                    return not self._closed and self._visible_next() > pos

    def iter(self, start=None):
        """Iterate the records from `start` (default: start_offset) to the current end."""
        return _LogIterator._new(self, self._start_arg(start, False), False, FQ_NO_DEADLINE, 0)

    def __iter__(self):
        return self.iter()

    def tail(self, start=None, timeout=None):
        """Iterate from `start` (default: end_offset), waiting for new appends. Stops when
        no record arrives within `timeout` seconds (None: wait forever) or the log closes."""
        cdef int64_t t = 0
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"timeout must be a number or None, got {type(timeout).__name__}")
            if not timeout >= 0:
                raise ValueError(f"timeout must be >= 0, got {timeout!r}")
            t = <int64_t>(min(timeout, 1e9) * 1e9)
        return _LogIterator._new(self, self._start_arg(start, True), True,
                                 FQ_NO_DEADLINE if timeout is None else 0, t)

    def _start_arg(self, start, bint at_end):
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_open()
            if self._readonly:
                self._refresh()
            lo = _start_of(self)
            hi = self._visible_next()
        if start is None:
            return hi if at_end else lo
        if isinstance(start, bool) or not isinstance(start, int):
            raise TypeError(f"start must be an int or None, got {type(start).__name__}")
        if not lo <= start <= hi:
            raise _out_of_range("start", start, lo, hi)
        return start

    def offset_for_time(self, timestamp):
        """The first offset whose record timestamp is >= `timestamp` (ns); end_offset if none."""
        cdef int64_t ts
        cdef _Segment seg
        cdef const fq_idx_entry *e
        cdef uint64_t pos, exp
        cdef fq_rec rec
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            raise TypeError(f"timestamp must be an int (ns), got {type(timestamp).__name__}")
        if timestamp > INT64_MAX:
            return self.end_offset          # later than any timestamp a record can hold
        if timestamp < INT64_MIN:
            timestamp = INT64_MIN
        ts = timestamp
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_open()
            if self._readonly:
                self._refresh()
            for seg in self._segs:
                if seg.ix.n == 0 or seg.ix.max_ts < ts:
                    continue
                e = fq_index_seek_time(&seg.ix, ts)
                pos = e.pos
                exp = e.offset
                while pos < seg.visible_pos:
                    if fq_rec_check(seg.map, pos, seg.visible_pos, exp, &rec) != FQ_REC_OK:
                        raise CorruptLogError(seg.path, pos, "record fails validation")
                    if rec.type == FQ_REC_DATA and rec.timestamp >= ts:
                        return rec.offset
                    pos += rec.size
                    exp = rec.next
            return self._visible_next()

    # ---- readonly readers ----------------------------------------------------------------

    cdef int _refresh(self) except -1:
        # readonly: pick up what the writer published since we last looked; lock held
        cdef _Segment seg = self._active
        cdef uint64_t hp, sealed
        cdef fq_scan sc
        if seg is None:
            self._open_new_segments(0)
            return 0
        while True:
            if seg.map_len < FQ_SEG_DATA_AT:
                return 0
            hp = fq_hint_pos(seg.meta())
            sealed = hp & FQ_HINT_SEALED
            hp &= ~FQ_HINT_SEALED
            if hp > seg.map_len:
                hp = seg.map_len
            if hp > seg.end_pos:
                if fq_seg_scan(seg.map, seg.end_pos, hp, seg.next, &seg.ix, &sc):
                    raise MemoryError()
                seg.end_pos = sc.pos
                seg.next = sc.next
                seg.visible_pos = sc.pos
                seg.visible_next = sc.next
            if not sealed or hp > seg.end_pos:
                return 0
            if not self._open_new_segments(seg.next):
                return 0
            seg = self._active

    def _open_new_segments(self, uint64_t after):
        cdef _Segment seg
        cdef fq_scan sc
        cdef uint64_t hp
        opened = False
        for base, path in self._list_segments():
            if base < after or (self._segs and base < (<_Segment>self._segs[-1]).next):
                continue
            if self._segs and base > (<_Segment>self._segs[-1]).next:
                # the writer's retention removed segments we never saw: everything we hold
                # is older than a hole, so start over from this segment
                self._segs = []
            try:
                seg = _open_segment(path, base, False, True)
            except FileNotFoundError:
                continue
            hp = FQ_SEG_DATA_AT
            if seg.map_len >= FQ_SEG_DATA_AT:
                hp = fq_hint_pos(seg.meta()) & ~FQ_HINT_SEALED
                if hp > seg.map_len:
                    hp = seg.map_len
            seg.end_pos = FQ_SEG_DATA_AT
            if hp > FQ_SEG_DATA_AT:
                if fq_seg_scan(seg.map, FQ_SEG_DATA_AT, hp, base, &seg.ix, &sc):
                    raise MemoryError()
                seg.end_pos = sc.pos
                seg.next = sc.next
            seg.visible_pos = seg.end_pos
            seg.visible_next = seg.next
            self._segs.append(seg)
            self._active = seg
            opened = True
        return opened

    # ---- positions -----------------------------------------------------------------------

    @property
    def start_offset(self):
        """The first offset still held (the base offset of the oldest segment)."""
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_open()
            if self._readonly:
                self._refresh()
            return _start_of(self)

    @property
    def end_offset(self):
        """The offset the next record will get (in sync="always": the durable end)."""
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_open()
            if self._readonly:
                self._refresh()
            return self._visible_next()

    @property
    def size_bytes(self):
        """Bytes of segment headers and records held (not counting preallocated space)."""
        cdef _Segment seg
        cdef uint64_t total = 0
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_open()
            for seg in self._segs:
                total += seg.end_pos
            return total

    @property
    def segments(self):
        """The number of segment files."""
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_open()
            return len(self._segs)

    @property
    def directory(self):
        return self._dir

    @property
    def closed(self):
        return self._closed

    @property
    def readonly(self):
        return self._readonly

    # ---- retention -----------------------------------------------------------------------

    cdef bint _held(self, _Segment seg):
        # a live Record (or a view of one, or an iterator's buffered batch) reads from it
        return fq_pin_load(&seg.pins) > 0

    cdef int _delete_oldest(self) except -1:
        cdef _Segment seg = <_Segment>self._segs[0]
        try:
            _os.unlink(seg.path)
        except FileNotFoundError:
            pass
        del self._segs[0]
        if seg in self._unsynced:
            self._unsynced.remove(seg)
        self._segments_removed += 1
        if self._sync != _SYNC_NONE:
            _dir_sync(self._dir_b)
        self._barrier("retention")
        return 0

    cdef int _retention(self, int64_t now_ns) except -1:
        cdef _Segment seg
        cdef uint64_t total = 0
        cdef int64_t cutoff
        if self._readonly:
            return 0
        if self._retention_bytes is not None:
            for seg in self._segs:
                total += seg.end_pos
            while len(self._segs) > 1 and total > <uint64_t>self._retention_bytes:
                seg = <_Segment>self._segs[0]
                if self._held(seg):
                    break
                total -= seg.end_pos
                seg = None
                self._delete_oldest()
        if self._retention_seconds is not None:
            r = self._retention_seconds * 1e9
            c = now_ns - int(r) if r < 1e19 else INT64_MIN     # Python ints: no overflow
            cutoff = INT64_MIN if c < INT64_MIN else (INT64_MAX if c > INT64_MAX else c)
            while len(self._segs) > 1:
                seg = <_Segment>self._segs[0]
                if seg.ix.max_ts >= cutoff or self._held(seg):
                    break
                seg = None
                self._delete_oldest()
        return 0

    def apply_retention(self, *, now=None):
        """Run retention now (it also runs at every roll); `now` in ns overrides the clock.
        Returns the number of segments removed."""
        cdef uint64_t before
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_write()
            before = self._segments_removed
            self._retention(_ts_arg(now, "now"))
            return self._segments_removed - before

    def truncate_before(self, offset):
        """Delete whole segments whose records are all before `offset` (never the active one,
        never one a Record or iterator still holds). Returns the new start_offset."""
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, got {type(offset).__name__}")
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_write()
            end = self._visible_next()
            if offset < 0 or offset > end:
                raise OffsetOutOfRange(
                    f"offset {offset} is out of range: truncate_before takes 0..{end}")
            while len(self._segs) > 1:
                if (<_Segment>self._segs[1]).base > offset:
                    break
                if self._held(<_Segment>self._segs[0]):
                    break
                self._delete_oldest()
            return (<_Segment>self._segs[0]).base

    # ---- consumer positions --------------------------------------------------------------

    def commit(self, group, offset, *, force=False):
        """Store `offset` (the next offset the group will read) for `group`; monotonic unless
        ``force=True``; durable like the records (sync mode)."""
        if not isinstance(group, str):
            raise TypeError(f"group must be a str, got {type(group).__name__}")
        if not group or len(group.encode("utf-8", "surrogatepass")) > 1024:
            raise ValueError(f"group must be 1..1024 bytes of UTF-8, got {group!r:.80}")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, got {type(offset).__name__}")
        if not isinstance(force, bool):
            raise TypeError(f"force must be a bool, got {type(force).__name__}")
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_write()
            end = self._visible_next()
        if offset < 0 or offset > end:
            raise OffsetOutOfRange(
                f"offset {offset} is out of range: commits take 0..{end} (the end offset)")
        with self._offsets_lock:
            cur = self._offsets.get(group)
            if cur is not None and offset < cur and not force:
                raise ValueError(
                    f"commit({group!r}, {offset}) would move the group back from {cur}; "
                    f"pass force=True to rewind it")
            if cur == offset:
                return
            new = dict(self._offsets)
            new[group] = offset
            # "always": file and directory synced now; "interval": the file's content is synced
            # before the rename (so a power loss leaves the old or the new file, never an
            # empty one) and the directory at the next tick; "none": rename only
            self._write_offsets(new, 2 if self._sync == _SYNC_ALWAYS else
                                (1 if self._sync == _SYNC_INTERVAL else 0))
            self._offsets = new
            self._offsets_dirty = self._sync != _SYNC_ALWAYS

    def committed(self, group):
        """The offset committed for `group`, or None."""
        if not isinstance(group, str):
            raise TypeError(f"group must be a str, got {type(group).__name__}")
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_open()
        if self._readonly:
            self._load_offsets()
        return self._offsets.get(group)

    def groups(self):
        """Every committed group and its offset."""
        if self._forked:
            _raise_forked()
        with self._lock:
            self._check_open()
        if self._readonly:
            self._load_offsets()
        return dict(self._offsets)

    def _offsets_path(self):
        return _os.path.join(self._dir, "offsets")

    def _write_offsets(self, offsets, int level):
        # level 0: write + rename; 1: also sync the file before the rename; 2: also the directory
        parts = [_OFFSETS_MAGIC, _struct.pack("<II", _OFFSETS_VERSION, len(offsets))]
        for name, off in sorted(offsets.items()):
            raw = name.encode("utf-8", "surrogatepass")
            parts.append(_struct.pack("<H", len(raw)))
            parts.append(raw)
            parts.append(_struct.pack("<Q", off))
        body = b"".join(parts)
        data = body + _struct.pack("<I", _crc32c(body))
        path = self._offsets_path()
        tmp = path + ".tmp"
        fd = _os.open(tmp, _os.O_WRONLY | _os.O_CREAT | _os.O_TRUNC | _O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            try:
                while view:
                    view = view[_os.write(fd, view):]
            except OSError as e:
                raise _oserror(e.errno, tmp) from None   # name the file (ENOSPC, EIO...)
            if level >= 1:
                rc = fq_file_sync(fd)
                if rc:
                    self._fail_offsets(rc, tmp)
                self._barrier("offsets-content")   # this content is durable (not yet named)
        except BaseException:
            _os.close(fd)
            try:
                _os.unlink(tmp)
            except OSError:
                pass
            raise
        _os.close(fd)
        _os.replace(tmp, path)
        if level >= 2:
            rc = _dir_sync(self._dir_b)
            if rc:
                self._fail_offsets(rc, self._dir)
            self._barrier("offsets")

    def _fail_offsets(self, int rc, path):
        # a failed sync of the offsets file fails the log like a failed data sync
        if self._forked:
            _raise_forked()
        with self._lock:
            self._fail(rc, path)

    def _sync_offsets(self):
        cdef int rc
        with self._offsets_lock:
            if self._offsets_dirty:
                if self._sync == _SYNC_INTERVAL:
                    rc = _dir_sync(self._dir_b)     # the content was synced at commit
                    if rc:
                        self._fail_offsets(rc, self._dir)
                    self._barrier("offsets")
                else:
                    self._write_offsets(self._offsets, 2)
                self._offsets_dirty = False

    def _load_offsets(self):
        path = self._offsets_path()
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            self._offsets = {}
            return
        try:
            offsets = _parse_offsets(data)
        except ValueError as e:
            pos, reason = e.args
            if self._repair:
                self._repaired.append((None, None, f"{path}: byte {pos}: {reason}; offsets reset"))
                offsets = {}
                self._write_offsets(offsets, 2 if self._sync != _SYNC_NONE else 0)
            else:
                raise CorruptLogError(path, pos, reason) from None
        if self._readonly:
            self._offsets = offsets         # the writer clamps; a reader only reports
            return
        end = self._visible_next()
        clamped = False
        for name, off in list(offsets.items()):
            if off > end:
                self._offsets_clamped.append((name, off, end))
                _logger.warning("%s: group %r committed offset %d is beyond the log end %d "
                                "(the tail was truncated); clamped to %d", path, name, off, end, end)
                offsets[name] = end
                clamped = True
        self._offsets = offsets
        if clamped and not self._readonly:
            self._write_offsets(offsets, 2 if self._sync != _SYNC_NONE else 0)

    # ---- introspection -------------------------------------------------------------------

    def statistics(self):
        """Counters and state, cheap to call (no I/O). See docs/log.md for each key."""
        cdef _Segment seg
        cdef uint64_t size = 0
        if self._forked:
            _raise_forked()
        with self._lock:
            for seg in self._segs:
                size += seg.end_pos
            return {
                "directory": self._dir,
                "sync": self._sync_text,
                "start_offset": _start_of(self),
                "end_offset": self._visible_next(),
                "durable_offset": self._durable_next,
                "segments": len(self._segs),
                "size_bytes": size,
                "appends": self._appends,
                "bytes_appended": self._bytes_appended,
                "fsyncs": self._fsyncs,
                "records_durable": self._records_durable,
                "records_per_fsync": (self._records_durable / self._fsyncs) if self._fsyncs else 0.0,
                "bytes_truncated": self._bytes_truncated,
                "truncations": list(self._truncations),
                "repaired": list(self._repaired),
                "offsets_clamped": list(self._offsets_clamped),
                "segments_removed": self._segments_removed,
                "failed": self._failed is not None,
                "closed": self._closed,
            }

    def __repr__(self):
        state = "closed" if self._closed else ("failed" if self._failed is not None else "open")
        return (f"<fastq.SegmentLog {self._dir!r} sync={self._sync_text!r} "
                f"{'readonly ' if self._readonly else ''}{state}>")

    # ---- test hooks (private) ------------------------------------------------------------

    def _set_barrier_hook(self, hook):
        """Call hook(kind) after every durability barrier ("create", "sync", "offsets",
        "retention"; "offsets-content" when offsets.tmp is synced but not yet renamed): the
        power-loss simulator snapshots the files there."""
        self._hook = hook

    def _inject_sync_error(self, int err, int after=0):
        """Make the sync after `after` more successful ones fail with errno `err`."""
        if self._forked:
            _raise_forked()
        with self._lock:
            self._fail_errno = err
            self._fail_after = after

    def __reduce__(self):
        raise TypeError("cannot pickle a SegmentLog; pass its directory instead")


# --------------------------------------------------------------------------------------------
# helpers


cdef list _prepare_batch_segments(SegmentLog log, fq_span *vs, fq_span *ks, Py_ssize_t n):
    """Plan where a batch lands and prepare (under temporary names) every segment it will roll
    into, so running out of space fails the batch before any record is written."""
    cdef _Segment seg = log._active
    cdef uint64_t pos = seg.end_pos, lim = seg.seg_bytes, off = seg.next, size, kl
    cdef Py_ssize_t i
    cdef list bases = []
    cdef list sizes = []
    cdef list prepared = []
    cdef bint sealed = not seg.writable
    for i in range(n):
        kl = <uint64_t>ks[i].len if ks != NULL and ks[i].len > 0 else 0
        size = fq_rec_size(kl, <uint64_t>vs[i].len)
        if sealed or size > lim - pos:
            sealed = False
            lim = log._next_seg_bytes(lim, size)
            bases.append(off)
            sizes.append(lim)
            pos = FQ_SEG_DATA_AT
        pos += size
        off += 1
    try:
        for i in range(len(bases)):
            prepared.append(log._prepare_segment(bases[i], sizes[i], 0))
    except BaseException:
        for p in prepared:
            log._discard_segment(p)
        raise
    return prepared


cdef Py_ssize_t _batch_len(object obj, str name) except -1:
    if isinstance(obj, (list, tuple)):
        return len(obj)
    if isinstance(obj, (bytes, bytearray, str, memoryview)) and not (
            isinstance(obj, memoryview) and obj.ndim == 2):
        raise TypeError(
            f"{name} must be a list/tuple of bytes-like objects or a 2-D uint8 array, "
            f"got {type(obj).__name__}")
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError(
            f"{name} must be a list/tuple of bytes-like objects or a 2-D uint8 array, "
            f"got {type(obj).__name__}") from None
    with mv:
        if mv.ndim != 2 or mv.itemsize != 1 or not mv.c_contiguous:
            raise TypeError(
                f"{name} as an array must be 2-D, C-contiguous, with 1-byte items "
                f"(numpy uint8), got ndim={mv.ndim} itemsize={mv.itemsize} "
                f"c_contiguous={mv.c_contiguous}")
        return mv.shape[0]


cdef object _fill_spans(object obj, fq_span *out, Py_ssize_t n, Py_buffer *held,
                        Py_ssize_t *nheld, str name, bint allow_none):
    cdef Py_ssize_t i, rowlen
    cdef Py_buffer *b
    cdef char *base
    if isinstance(obj, (list, tuple)):
        seq = tuple(obj)              # a snapshot: no other thread can drop an item under us
        if len(seq) != n:
            raise ValueError(f"{name} changed size during append_many")
        for i in range(n):
            item = seq[i]
            if item is None and allow_none:
                out[i].p = NULL
                out[i].len = -1
            elif PyBytes_CheckExact(item):
                out[i].p = PyBytes_AS_STRING(item)
                out[i].len = PyBytes_GET_SIZE(item)
            else:
                b = &held[nheld[0]]
                _get_buffer(item, b, f"{name}[{i}]")
                nheld[0] += 1
                out[i].p = b.buf
                out[i].len = b.len
        return seq
    b = &held[nheld[0]]
    PyObject_GetBuffer(obj, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    nheld[0] += 1
    if b.ndim != 2 or b.itemsize != 1 or b.shape[0] != n:
        raise TypeError(f"{name} must be a 2-D uint8 array with {n} rows")
    rowlen = b.shape[1]
    base = <char *>b.buf
    for i in range(n):
        out[i].p = base + i * rowlen
        out[i].len = rowlen
    return obj


cdef int _fill_timestamps(object obj, int64_t *out, Py_ssize_t n) except -1:
    cdef Py_ssize_t i
    cdef Py_buffer b
    if isinstance(obj, (list, tuple)):
        seq = tuple(obj)
        if len(seq) != n:
            raise ValueError(f"timestamps has {len(seq)} entries, values has {n}")
        for i in range(n):
            out[i] = _ts_arg(seq[i], f"timestamps[{i}]")
        return 0
    try:
        PyObject_GetBuffer(obj, &b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except (TypeError, BufferError):
        raise TypeError(
            f"timestamps must be None, a list/tuple of ints or a 1-D int64 array, "
            f"got {type(obj).__name__}") from None
    try:
        fmt = (<bytes>b.format).decode() if b.format != NULL else "B"
        if b.ndim != 1 or b.itemsize != 8 or fmt.lstrip("@=<") not in ("q", "l"):
            raise TypeError(
                f"timestamps as an array must be 1-D int64, got ndim={b.ndim} format={fmt!r}")
        if b.shape[0] != n:
            raise ValueError(f"timestamps has {b.shape[0]} entries, values has {n}")
        memcpy(out, b.buf, n * 8)
    finally:
        PyBuffer_Release(&b)
    return 0


def _parse_offsets(bytes data):
    """Decode an offsets file; ValueError((byte position, reason)) when it is invalid."""
    if len(data) < 20:
        raise ValueError(0, f"offsets file is {len(data)} bytes, shorter than its header")
    if data[:8] != _OFFSETS_MAGIC:
        raise ValueError(0, "bad offsets magic")
    if _struct.unpack_from("<I", data, len(data) - 4)[0] != _crc32c(data[:-4]):
        raise ValueError(len(data) - 4, "offsets CRC mismatch")
    version, count = _struct.unpack_from("<II", data, 8)
    if version != _OFFSETS_VERSION:
        raise ValueError(8, f"offsets format version {version} is not supported")
    pos = 16
    out = {}
    for _ in range(count):
        if pos + 2 > len(data) - 4:
            raise ValueError(pos, "offsets entry runs past the end")
        (n,) = _struct.unpack_from("<H", data, pos)
        if pos + 2 + n + 8 > len(data) - 4:
            raise ValueError(pos, "offsets entry runs past the end")
        try:
            name = data[pos + 2:pos + 2 + n].decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise ValueError(pos + 2, "group name is not UTF-8") from None
        (off,) = _struct.unpack_from("<Q", data, pos + 2 + n)
        out[name] = off
        pos += 2 + n + 8
    if pos != len(data) - 4:
        raise ValueError(pos, "trailing bytes in the offsets file")
    return out


@cython.final
cdef class _LogIterator:
    @staticmethod
    cdef _LogIterator _new(SegmentLog log, uint64_t pos, bint follow, int64_t kind, int64_t timeout):
        cdef _LogIterator it = _LogIterator.__new__(_LogIterator)
        it._log = log
        it._pos = pos
        it._buf = []
        it._follow = follow
        it._deadline_kind = kind
        it._timeout = timeout
        return it

    def __iter__(self):
        return self

    def __next__(self):
        cdef Record r
        cdef int64_t deadline
        if self._i < len(self._buf):
            r = <Record>self._buf[self._i]
            self._i += 1
            return r
        while True:
            if self._follow and (self._log._closed or self._log._forked):
                raise StopIteration
            if self._follow:
                try:
                    self._buf = self._log._read(self._pos, 1000, 0xFFFFFFFFFFFFFFFF)
                except Closed:
                    raise StopIteration from None    # closed by another thread meanwhile
            else:
                self._buf = self._log._read(self._pos, 1000, 0xFFFFFFFFFFFFFFFF)
            self._i = 0
            if self._buf:
                r = <Record>self._buf[-1]
                self._pos = r.offset + 1
                self._i = 1
                return self._buf[0]
            if not self._follow:
                raise StopIteration
            deadline = FQ_NO_DEADLINE if self._deadline_kind == FQ_NO_DEADLINE \
                else fq_now_ns() + self._timeout
            if not self._log._wait_for(self._pos, deadline):
                raise StopIteration
