# Message: the immutable unit of work, with a time-ordered id (UUIDv7, _c/fq_uuid.h) and a
# compact binary envelope for storage (docs/envelope.md). Native so that making one costs
# about as much as a small tuple: the queue's put -> get -> ack budget is one microsecond.

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport isfinite
from libc.stdint cimport INT64_MIN, int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

from types import MappingProxyType as _MappingProxy

from fastq.errors import CorruptLogError as _CorruptLogErrorM

ENVELOPE_VERSION = 1

# priority classes, most urgent first; their index is what queues and the envelope store
PRIORITIES = ("critical", "high", "normal", "low")
cdef tuple _PRIO_NAMES = PRIORITIES
cdef dict _PRIO_LEVEL = {name: i for i, name in enumerate(PRIORITIES)}
cdef object _EMPTY_HEADERS = _MappingProxy({})
cdef object _codecs = None                 # fastq.codecs, imported on first encode/decode
cdef fq_pylock _uuid_lock                  # serialises the id generator on free-threaded builds

# envelope flag bits
DEF F_KEY = 0x01
DEF F_HEADERS = 0x02
DEF F_IDEM = 0x04
DEF F_DEADLINE = 0x08
DEF F_SOURCE = 0x10
DEF F_TRACE = 0x20
DEF F_TYPE = 0x40
DEF F_TEXT_ID = 0x80
DEF HEAD = 12                              # version, flags, priority, codec, timestamp


cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void *PyUnicode_DATA(object o)
    void PyObject_GC_UnTrack(void *op)
    bint PyObject_IS_GC(object op)
    int PyObject_GC_IsTracked(object op)


cdef inline void _untrack_if_leaf(Message m):
    """A message whose payload is of a type the cyclic GC never tracks (bytes, str, numbers,
    None) and whose headers dict is untracked (str -> str only: CPython does not track such a
    dict, and the message's private copy is never changed) can never be part of a cycle, now or later (it is
    immutable): untrack it, as CPython does for tuples of such objects, so making millions of
    messages does not keep triggering collections. Its other fields (key, type, ids, source)
    are always str / bytes / int."""
    if (m._headers is None or not PyObject_GC_IsTracked(m._headers)) \
            and not PyObject_IS_GC(m.payload):
        PyObject_GC_UnTrack(<void *>m)


cdef inline str _id_text(const uint8_t *u):
    """The canonical text of a 16-byte id, written straight into a new ASCII str."""
    s = PyUnicode_New(36, 127)
    fq_uuid_format(u, <char *>PyUnicode_DATA(s))
    return s


cdef inline object _codecs_mod():
    global _codecs
    if _codecs is None:
        import fastq.codecs as m
        _codecs = m
    return _codecs


cdef int _new_id(uint8_t *out) except -1:
    cdef int rc
    fq_pylock_acquire(&_uuid_lock)
    rc = fq_uuid7(&fq_uuid_state, fq_wall_ns(), out)
    fq_pylock_release(&_uuid_lock)
    if rc:
        raise OSError(rc, "no random bytes from the operating system for a message id")
    return 0


def new_id():
    """A new time-ordered unique id (UUIDv7 text, 36 characters), as messages get by default."""
    cdef uint8_t u[16]
    _new_id(u)
    return _id_text(u)


cdef int _priority_level(object priority) except -1:
    if type(priority) is str:
        level = _PRIO_LEVEL.get(priority)
        if level is not None:
            return level
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    raise TypeError(f"priority must be a str ({', '.join(PRIORITIES)}), got {type(priority).__name__}")


cdef object _check_key(object key):
    if key is None or type(key) is bytes or type(key) is str:
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        if not -(1 << 63) <= key < (1 << 64):
            raise ValueError(f"key must fit in 64 bits (-2**63..2**64-1), got {key!r}")
        return int(key)
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    if isinstance(key, str):
        return str(key)
    raise TypeError(f"key must be bytes, str, int or None, got {type(key).__name__}")


cdef object _check_str(object value, str name):
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"{name} must be a str, got {type(value).__name__}")


cdef int64_t _deadline_ns(object deadline) except? -1:
    cdef double t
    if hasattr(deadline, "timestamp") and not isinstance(deadline, (int, float)):
        t = deadline.timestamp()              # a datetime (naive means local time)
    elif isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise TypeError(
            f"deadline must be unix seconds (int/float) or a datetime, got {type(deadline).__name__}"
        )
    else:
        t = deadline
    if not isfinite(t) or not -9.2e9 < t < 9.2e9:
        raise ValueError(f"deadline must be a finite unix time in seconds, got {deadline!r}")
    return <int64_t>(t * 1e9)


cdef Message _copy(Message src):
    """An unfinished copy of src (every field; _ready not set: the caller finishes it)."""
    cdef Message m = Message.__new__(Message)
    m.payload = src.payload
    m.key = src.key
    m.type = src.type
    m._prio = src._prio
    m._headers = src._headers
    m.idempotency_key = src.idempotency_key
    m._deadline = src._deadline
    m.source = src.source
    m.trace_id = src.trace_id
    m.timestamp = src.timestamp
    m._id = src._id
    m._uuid = src._uuid
    m._has_uuid = src._has_uuid
    return m


@cython.final
cdef class FrozenHeaders:
    """Headers checked once and shared by many messages (a router stamps the same routing
    headers on every message of a millisecond): a Message given one keeps its dict as is,
    without copying or checking it again. Immutable."""

    cdef readonly dict _d

    def __init__(self, headers):
        d = _check_headers(headers)
        self._d = {} if d is None else d

    def __len__(self):
        return len(self._d)

    def __repr__(self):
        return f"FrozenHeaders({self._d!r})"


cdef object _check_headers(object headers):
    if headers is None:
        return None
    if type(headers) is FrozenHeaders:
        d = (<FrozenHeaders>headers)._d
        return d if d else None
    try:
        items = headers.items()
    except AttributeError:
        raise TypeError(f"headers must be a mapping of str to str, got {type(headers).__name__}") from None
    d = {}
    for k, v in items:
        if type(k) is not str:
            raise TypeError(f"headers keys must be str, got {type(k).__name__} ({k!r})")
        if type(v) is not str:
            raise TypeError(f"headers[{k!r}] must be a str, got {type(v).__name__}")
        d[k] = v
    return d if d else None


cdef object _check_idempotency_key(object value):
    if value is None or _type_of(value) is str or _type_of(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"idempotency_key must be a str, bytes or None, got {_type_of(value).__name__}")


cdef int _set_id(Message m, object id) except -1:
    m._id = _check_str(id, "id")
    if not m._id:
        raise ValueError("id must not be empty")
    m._has_uuid = False
    if len(m._id) == 36 and m._id.isascii():
        ascii_id = m._id.encode("ascii")
        m._has_uuid = fq_uuid_parse(ascii_id, 36, m._uuid) == 1
    return 0


cdef class Message:
    """An immutable message: ``payload`` plus routing and delivery metadata.

    ``id`` defaults to a new time-ordered unique id (UUIDv7 text); ``timestamp`` is the wall
    clock at creation in unix nanoseconds. ``key`` (bytes, str or int) picks a topic partition
    and keeps per-key order; ``priority`` is one of ``critical``, ``high``, ``normal``, ``low``;
    ``headers`` maps str to str; ``deadline`` (unix seconds or a datetime) is when the message
    stops being worth delivering; ``idempotency_key`` (str or bytes) lets a queue's dedup window
    drop a repeated put. ``replace(**changes)`` makes a changed copy.
    """

    def __init__(self, payload, *, key=None, type="", priority="normal", headers=None,
                 id=None, idempotency_key=None, deadline=None, source="", trace_id=None):
        if self._ready:
            raise TypeError("Message is immutable")
        self.payload = payload
        self.key = _check_key(key)
        self.type = _check_str(type, "type")
        self._prio = <uint8_t>_priority_level(priority)
        self._headers = _check_headers(headers)
        self.idempotency_key = _check_idempotency_key(idempotency_key)
        self._deadline = INT64_MIN if deadline is None else _deadline_ns(deadline)
        self.source = _check_str(source, "source")
        self.trace_id = None if trace_id is None else _check_str(trace_id, "trace_id")
        self.timestamp = fq_wall_ns()
        if id is None:
            _new_id(self._uuid)
            self._id = None
            self._has_uuid = True
        else:
            _set_id(self, id)
        self._ready = True
        _untrack_if_leaf(self)

    @property
    def id(self):
        """The message id (str): a UUIDv7 unless one was given."""
        if self._id is None:
            self._id = _id_text(self._uuid)
        return self._id

    @property
    def priority(self):
        """``"critical"``, ``"high"``, ``"normal"`` or ``"low"``."""
        return _PRIO_NAMES[self._prio]

    @property
    def headers(self):
        """A read-only mapping of str to str."""
        return _EMPTY_HEADERS if self._headers is None else _MappingProxy(self._headers)

    @property
    def deadline(self):
        """Unix time in seconds after which the message is not delivered, or None."""
        return None if self._deadline == INT64_MIN else self._deadline / 1e9

    def replace(self, **changes):
        """A copy with some fields changed (``id`` and ``timestamp`` are kept unless changed).
        Only the changed fields are checked, so a copy with new headers costs little."""
        cdef Message m = _copy(self)
        for name, value in changes.items():
            if name == "headers":
                m._headers = _check_headers(value)
            elif name == "idempotency_key":
                m.idempotency_key = _check_idempotency_key(value)
            elif name == "payload":
                m.payload = value
            elif name == "key":
                m.key = _check_key(value)
            elif name == "type":
                m.type = _check_str(value, "type")
            elif name == "priority":
                m._prio = <uint8_t>_priority_level(value)
            elif name == "deadline":
                m._deadline = INT64_MIN if value is None else _deadline_ns(value)
            elif name == "source":
                m.source = _check_str(value, "source")
            elif name == "trace_id":
                m.trace_id = None if value is None else _check_str(value, "trace_id")
            elif name == "id":
                if value is None:
                    _new_id(m._uuid)
                    m._id = None
                    m._has_uuid = True
                else:
                    _set_id(m, value)
            elif name == "timestamp":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"timestamp must be an int (unix ns), got {_type_of(value).__name__}")
                m.timestamp = value
            else:
                raise TypeError(f"replace() got an unexpected field {name!r}")
        m._ready = True
        _untrack_if_leaf(m)
        return m

    def __reduce__(self):
        return (_message_restore, (self.payload, self.key, self.type, self._prio, self._headers,
                                   self.id, self.idempotency_key, self._deadline, self.source,
                                   self.trace_id, self.timestamp))

    def __eq__(self, other):
        if type(other) is not Message:
            return NotImplemented
        cdef Message o = <Message>other
        return (self.id == o.id and self.timestamp == o.timestamp and self._prio == o._prio
                and self._deadline == o._deadline and self.type == o.type
                and self.source == o.source and self.trace_id == o.trace_id
                and _same_key(self.key, o.key) and _same_key(self.idempotency_key, o.idempotency_key)
                and (self._headers or None) == (o._headers or None) and self.payload == o.payload)

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        parts = [f"id={self.id!r}"]
        if self.type:
            parts.append(f"type={self.type!r}")
        if self._prio != 2:
            parts.append(f"priority={self.priority!r}")
        if self.key is not None:
            parts.append(f"key={self.key!r}")
        p = repr(self.payload)
        parts.append(f"payload={p if len(p) <= 60 else p[:57] + '...'}")
        return f"Message({', '.join(parts)})"

    # ---- the envelope ------------------------------------------------------------------------

    def encode(self, codec=None):
        """The message as envelope bytes (docs/envelope.md). bytes-like and str payloads pass
        through; other payloads use ``codec`` (default: JSON), a :class:`fastq.codecs.Codec`."""
        return _encode(self, codec)

    @staticmethod
    def decode(data, *, codecs=(), source="<envelope>", position=0):
        """The message in envelope ``data``. ``codecs``: extra codecs allowed to read the
        payload (pass ``(fastq.codecs.PICKLE,)`` to accept pickled payloads). Damage raises
        :class:`fastq.CorruptLogError` naming ``source`` and the byte (``position`` + offset)."""
        return _decode(data, tuple(codecs), source, position)


_type_of = type


cdef inline bint _same_key(a, b):
    return type(a) is type(b) and a == b


def _message_restore(payload, key, type, prio, headers, id, idem, deadline, source, trace,
                     timestamp):
    cdef Message m = Message.__new__(Message)
    Message.__init__(m, payload, key=key, type=type, priority=_PRIO_NAMES[prio],
                     headers=headers, id=id, idempotency_key=idem, source=source,
                     trace_id=trace)
    m._deadline = deadline
    m.timestamp = timestamp
    return m


cdef Message _message_of(object payload, int64_t wall=0):
    """A Message with every field at its default (the queue's fast path for a bare payload);
    ``wall``: its creation time (unix ns) when the caller already read the clock."""
    cdef Message m = Message.__new__(Message)
    cdef int rc
    m.payload = payload
    m.type = ""
    m.source = ""
    m._prio = 2
    m._deadline = INT64_MIN
    m.timestamp = wall if wall else fq_wall_ns()
    fq_pylock_acquire(&_uuid_lock)
    rc = fq_uuid7(&fq_uuid_state, m.timestamp, m._uuid)
    fq_pylock_release(&_uuid_lock)
    if rc:
        raise OSError(rc, "no random bytes from the operating system for a message id")
    m._has_uuid = True
    m._ready = True
    _untrack_if_leaf(m)
    return m


# ---- envelope encoding ---------------------------------------------------------------------

cdef inline Py_ssize_t _uvarint_size(uint64_t v) noexcept:
    cdef Py_ssize_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline uint8_t *_put_uvarint(uint8_t *p, uint64_t v) noexcept:
    while v >= 0x80:
        p[0] = <uint8_t>(v | 0x80)
        v >>= 7
        p += 1
    p[0] = <uint8_t>v
    return p + 1


cdef inline uint8_t *_put_i64(uint8_t *p, int64_t v) noexcept:
    cdef uint64_t u = <uint64_t>v
    cdef int i
    for i in range(8):
        p[i] = <uint8_t>(u >> (8 * i))
    return p + 8


cdef inline uint8_t *_put_blob(uint8_t *p, const char *s, Py_ssize_t n) noexcept:
    p = _put_uvarint(p, <uint64_t>n)
    memcpy(p, s, <size_t>n)
    return p + n


cdef bytes _utf8(object s):
    return (<str>s).encode("utf-8", "surrogatepass")


cdef object _encode(Message m, object codec):
    cdef uint8_t flags = 0
    cdef uint8_t codec_id
    cdef Py_ssize_t size = HEAD
    cdef bytes id_text = None, type_b = None, key_b = None, idem_b = None
    cdef bytes source_b = None, trace_b = None, out
    cdef list hdrs = None
    cdef uint8_t key_kind = 0, idem_kind = 0
    cdef uint8_t *p
    cdef Py_ssize_t body_n
    payload = m.payload
    # payload bytes
    if type(payload) is bytes:
        codec_id = 0
        body = payload
    elif type(payload) is str:
        codec_id = 1
        body = (<str>payload).encode("utf-8", "surrogatepass")
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        codec_id = 0
        body = bytes(payload)
    elif isinstance(payload, str):
        codec_id = 1
        body = str(payload).encode("utf-8", "surrogatepass")
    else:
        c = _codecs_mod().JSON if codec is None else codec
        codec_id = c.id
        body = c.encode(payload)
        if type(body) is not bytes:
            body = bytes(body)
    # id
    if m._has_uuid:
        size += 16
    else:
        flags |= F_TEXT_ID
        id_text = _utf8(m._id)
        size += _uvarint_size(len(id_text)) + len(id_text)
    if m.type:
        flags |= F_TYPE
        type_b = _utf8(m.type)
        size += _uvarint_size(len(type_b)) + len(type_b)
    if m.key is not None:
        flags |= F_KEY
        k = m.key
        size += 1
        if type(k) is bytes:
            key_kind = 1
            key_b = k
            size += _uvarint_size(len(key_b)) + len(key_b)
        elif type(k) is str:
            key_kind = 2
            key_b = _utf8(k)
            size += _uvarint_size(len(key_b)) + len(key_b)
        else:
            key_kind = 3 if k < (1 << 63) else 4
            size += 8
    if m.idempotency_key is not None:
        flags |= F_IDEM
        if type(m.idempotency_key) is bytes:
            idem_kind = 1
            idem_b = m.idempotency_key
        else:
            idem_kind = 2
            idem_b = _utf8(m.idempotency_key)
        size += 1 + _uvarint_size(len(idem_b)) + len(idem_b)
    if m._deadline != INT64_MIN:
        flags |= F_DEADLINE
        size += 8
    if m.source:
        flags |= F_SOURCE
        source_b = _utf8(m.source)
        size += _uvarint_size(len(source_b)) + len(source_b)
    if m.trace_id is not None:
        flags |= F_TRACE
        trace_b = _utf8(m.trace_id)
        size += _uvarint_size(len(trace_b)) + len(trace_b)
    if m._headers:
        flags |= F_HEADERS
        hdrs = []
        for hk, hv in (<dict>m._headers).items():
            hdrs.append(_utf8(hk))
            hdrs.append(_utf8(hv))
        size += _uvarint_size(len(hdrs) // 2)
        for hb in hdrs:
            size += _uvarint_size(len(<bytes>hb)) + len(<bytes>hb)
    body_n = PyBytes_GET_SIZE(body)              # body is a bytes object by now
    size += body_n
    out = PyBytes_FromStringAndSize(NULL, size)
    p = <uint8_t *>PyBytes_AS_STRING(out)
    p[0] = ENVELOPE_VERSION
    p[1] = flags
    p[2] = m._prio
    p[3] = codec_id
    p = _put_i64(p + 4, m.timestamp)
    if m._has_uuid:
        memcpy(p, m._uuid, 16)
        p += 16
    else:
        p = _put_blob(p, id_text, len(id_text))
    if type_b is not None:
        p = _put_blob(p, type_b, len(type_b))
    if key_kind:
        p[0] = key_kind
        p += 1
        if key_kind <= 2:
            p = _put_blob(p, key_b, len(key_b))
        elif key_kind == 3:
            p = _put_i64(p, <int64_t>m.key)
        else:
            p = _put_i64(p, <int64_t><uint64_t>m.key)
    if idem_kind:
        p[0] = idem_kind
        p = _put_blob(p + 1, idem_b, len(idem_b))
    if flags & F_DEADLINE:
        p = _put_i64(p, m._deadline)
    if source_b is not None:
        p = _put_blob(p, source_b, len(source_b))
    if trace_b is not None:
        p = _put_blob(p, trace_b, len(trace_b))
    if hdrs is not None:
        p = _put_uvarint(p, <uint64_t>(len(hdrs) // 2))
        for hb in hdrs:
            p = _put_blob(p, hb, len(<bytes>hb))
    if body_n:
        memcpy(p, PyBytes_AS_STRING(body), <size_t>body_n)
    return out


# ---- envelope decoding: a pure function of the bytes (fuzzed in tests/fuzz) ------------------

cdef class _Cursor:
    """Bounds-checked reading of one envelope; every failure names the byte."""

    cdef int fail(self, str reason) except -1:
        raise _CorruptLogErrorM(self.source, self.base + self.pos, f"message envelope: {reason}")

    cdef uint64_t uvarint(self, str what) except? 0xFFFFFFFFFFFFFFFF:
        cdef uint64_t v = 0
        cdef int shift = 0
        cdef uint8_t b
        while True:
            if self.pos >= self.n:
                self.fail(f"truncated {what} length")
            b = self.p[self.pos]
            if shift == 63 and b > 1:
                self.fail(f"{what} length overflows 64 bits")
            v |= <uint64_t>(b & 0x7F) << shift
            self.pos += 1
            if not (b & 0x80):
                return v
            shift += 7
            if shift > 63:
                self.fail(f"{what} length overflows 64 bits")

    cdef int64_t i64(self, str what) except? -1:
        cdef uint64_t u = 0
        cdef int i
        if self.n - self.pos < 8:
            self.fail(f"truncated {what}")
        for i in range(8):
            u |= <uint64_t>self.p[self.pos + i] << (8 * i)
        self.pos += 8
        return <int64_t>u

    cdef Py_ssize_t blob(self, str what) except -1:
        """Length of the next length-prefixed field; self.pos is left at its first byte."""
        cdef uint64_t k = self.uvarint(what)
        if k > <uint64_t>(self.n - self.pos):
            self.fail(f"{what} runs past the end ({k} bytes, {self.n - self.pos} left)")
        return <Py_ssize_t>k

    cdef bytes take_bytes(self, str what):
        cdef Py_ssize_t k = self.blob(what)
        b = PyBytes_FromStringAndSize(<const char *>self.p + self.pos, k)
        self.pos += k
        return b

    cdef str take_str(self, str what):
        cdef Py_ssize_t k = self.blob(what)
        try:
            s = PyUnicode_DecodeUTF8(<const char *>self.p + self.pos, k, "surrogatepass")
        except UnicodeDecodeError as exc:
            self.pos += exc.start
            self.fail(f"{what} is not UTF-8")
        self.pos += k
        return s

    cdef str take_rest_str(self):
        try:
            s = PyUnicode_DecodeUTF8(<const char *>self.p + self.pos, self.n - self.pos, "surrogatepass")
        except UnicodeDecodeError as exc:
            self.pos += exc.start
            self.fail("the str payload is not UTF-8")
        self.pos = self.n
        return s


cdef Message _decode(object data, tuple codecs, object source, object position):
    cdef Py_buffer buf
    PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
    try:
        return _decode_raw(<const uint8_t *>buf.buf, buf.len, codecs, source, position)
    finally:
        PyBuffer_Release(&buf)


cdef Message _decode_raw(const uint8_t *data, Py_ssize_t n, tuple codecs, object source,
                         object position):
    cdef _Cursor c = _Cursor.__new__(_Cursor)
    cdef Message m = Message.__new__(Message)
    cdef uint8_t flags, codec_id, kind
    cdef Py_ssize_t count, i
    cdef uint64_t ucount
    c.p = data
    c.n = n
    c.pos = 0
    c.base = position
    c.source = source
    if c.n < HEAD:
        c.fail(f"{c.n} bytes, shorter than the {HEAD}-byte head")
    if c.p[0] != ENVELOPE_VERSION:
        c.fail(f"unknown format version {c.p[0]} (this fastq reads {ENVELOPE_VERSION})")
    flags = c.p[1]
    if c.p[2] > 3:
        c.pos = 2
        c.fail(f"priority {c.p[2]} is not 0..3")
    m._prio = c.p[2]
    codec_id = c.p[3]
    c.pos = 4
    m.timestamp = c.i64("timestamp")
    if flags & F_TEXT_ID:
        m._id = c.take_str("id")
        m._has_uuid = False
        if not m._id:
            c.fail("empty id")
    else:
        if c.n - c.pos < 16:
            c.fail("truncated id")
        memcpy(m._uuid, c.p + c.pos, 16)
        m._has_uuid = True
        c.pos += 16
    m.type = c.take_str("type") if flags & F_TYPE else ""
    if flags & F_KEY:
        if c.pos >= c.n:
            c.fail("truncated key")
        kind = c.p[c.pos]
        c.pos += 1
        if kind == 1:
            m.key = c.take_bytes("key")
        elif kind == 2:
            m.key = c.take_str("key")
        elif kind == 3:
            m.key = c.i64("key")
        elif kind == 4:
            m.key = <uint64_t>c.i64("key")
        else:
            c.pos -= 1
            c.fail(f"unknown key kind {kind}")
    if flags & F_IDEM:
        if c.pos >= c.n:
            c.fail("truncated idempotency key")
        kind = c.p[c.pos]
        c.pos += 1
        if kind == 1:
            m.idempotency_key = c.take_bytes("idempotency key")
        elif kind == 2:
            m.idempotency_key = c.take_str("idempotency key")
        else:
            c.pos -= 1
            c.fail(f"unknown idempotency key kind {kind}")
    m._deadline = c.i64("deadline") if flags & F_DEADLINE else INT64_MIN
    if flags & F_DEADLINE and not -9200000000000000000 < m._deadline < 9200000000000000000:
        c.pos -= 8
        c.fail(f"deadline {m._deadline} ns is outside the range a Message accepts")
    m.source = c.take_str("source") if flags & F_SOURCE else ""
    m.trace_id = c.take_str("trace id") if flags & F_TRACE else None
    if flags & F_HEADERS:
        ucount = c.uvarint("header count")
        if ucount == 0 or ucount > <uint64_t>(c.n - c.pos):
            c.fail(f"header count {ucount} is impossible here")
        count = <Py_ssize_t>ucount
        h = {}
        for i in range(count):
            hk = c.take_str("header name")
            h[hk] = c.take_str("header value")
        if len(h) != count:
            c.fail("a header name appears twice")
        m._headers = h
    # the payload: every remaining byte
    body_at = c.pos
    if codec_id == 0:
        m.payload = PyBytes_FromStringAndSize(<const char *>c.p + c.pos, c.n - c.pos)
    elif codec_id == 1:
        m.payload = c.take_rest_str()
    else:
        codec = _codecs_mod().lookup(codec_id, codecs)
        raw = PyBytes_FromStringAndSize(<const char *>c.p + c.pos, c.n - c.pos)
        try:
            m.payload = codec.decode(raw)
        except Exception as exc:
            c.fail(f"payload does not decode with codec {codec.name!r}: {exc}")
    m._ready = True
    _untrack_if_leaf(m)
    return m


# ---- topic records -----------------------------------------------------------------------

@cython.no_gc
cdef class ConsumerRecord:
    """One record a topic consumer polled: ``message`` at ``offset`` of ``partition``."""

    def __init__(self, partition, offset, message):
        if not isinstance(message, Message):
            raise TypeError(f"message must be a fastq.Message, got {type(message).__name__}")
        self.partition = partition
        self.offset = offset
        self.message = message

    @property
    def key(self):
        return self.message.key

    @property
    def payload(self):
        return self.message.payload

    def __eq__(self, other):
        if type(other) is not ConsumerRecord:
            return NotImplemented
        cdef ConsumerRecord o = <ConsumerRecord>other
        return self.partition == o.partition and self.offset == o.offset and self.message == o.message

    def __hash__(self):
        return hash((self.partition, self.offset))

    def __repr__(self):
        return f"ConsumerRecord(partition={self.partition}, offset={self.offset}, message={self.message!r})"


def consumer_records(int partition, uint64_t first_offset, list messages):
    """[ConsumerRecord(partition, first_offset + i, m) for i, m in enumerate(messages)], in C."""
    cdef Py_ssize_t i, n = len(messages)
    cdef ConsumerRecord r
    cdef list out = [None] * n
    for i in range(n):
        r = ConsumerRecord.__new__(ConsumerRecord)
        r.partition = partition
        r.offset = first_offset + <uint64_t>i
        r.message = <Message?>messages[i]
        out[i] = r
    return out


def new_message(payload, key=None):
    """Message(payload, key=key) with every other field at its default, without keyword
    parsing (the queue's and the topic's fast path)."""
    cdef Message m = _message_of(payload)
    if key is not None:
        m.key = _check_key(key)
    return m


def make_messages(items):
    """Messages for ``items`` (each a Message, kept, or a payload for a Message with default
    fields, made here with one clock read) and the list of their keys."""
    cdef int64_t wall = fq_wall_ns()
    cdef list msgs = []
    cdef list keys = []
    cdef Message m
    for item in items:
        m = <Message>item if type(item) is Message else _message_of(item, wall)
        msgs.append(m)
        keys.append(m.key)
    return msgs, keys


def decode_records(list records not None, source, codecs=()):
    """The messages in SegmentLog records whose values are envelopes (a durable topic's
    read), decoded in one loop without copying the values. Damage raises CorruptLogError
    naming ``source``, the record's offset and the byte within its envelope."""
    cdef Record r
    cdef list out = []
    cdef tuple extra = tuple(codecs)
    for rec in records:
        r = <Record?>rec
        _check_record(r)
        try:
            out.append(_decode_raw(<const uint8_t *>(r._seg.map + r._value_at), r._value_len,
                                   extra, source, 0))
        except _CorruptLogErrorM as exc:
            raise _CorruptLogErrorM(f"{source} (record {r.offset})", exc.position,
                                    exc.reason) from None
    return out


def restamp(list messages, headers=None, bint stamp_key=False, fallback=None):
    """Copies of ``messages`` for a producer and router, made in one pass: with
    ``stamp_key``, a message without an idempotency key gets its own id as key; with
    ``headers`` (a FrozenHeaders), a message without headers gets those, shared (one with
    headers of its own goes through ``fallback(message)`` instead). Messages that need no
    change are returned as they are; everything else (id, timestamp...) is kept."""
    cdef Py_ssize_t i, n = len(messages)
    cdef list out = [None] * n
    cdef Message m, c
    cdef FrozenHeaders fh = None
    cdef object shared = None
    if headers is not None:
        fh = <FrozenHeaders?>headers
        shared = fh._d if fh._d else None
    for i in range(n):
        m = <Message?>messages[i]
        c = m
        if stamp_key and m.idempotency_key is None:
            c = _copy(m)
            c.idempotency_key = m.id
        if fh is not None:
            if c._headers is None:
                if c is m:
                    c = _copy(m)
                c._headers = shared
            elif fallback is not None:
                if c is not m:
                    c._ready = True
                    _untrack_if_leaf(c)
                c = fallback(c)
                out[i] = c
                continue
        if c is not m:
            c._ready = True
            _untrack_if_leaf(c)
        out[i] = c
    return out
