"""Message (unit): the public contract of fastq.Message, its ids and its envelope.

- ids: ``new_id()`` and default message ids are canonical lowercase UUIDv7 text (version 7,
  variant 0b10), unique and strictly increasing in creation order within the process, with a
  48-bit millisecond prefix that agrees with the wall clock (within a generous bound);
- ``timestamp`` is the wall clock at creation in unix ns;
- immutability: attributes are read-only and ``__init__`` cannot run twice;
- every field: accepted types, normalisation (bytearray/memoryview -> bytes, int subclasses ->
  int, datetime -> unix seconds) and the TypeError/ValueError for everything else;
- ``replace``: id and timestamp kept unless changed, unknown fields refused, exact deadline;
- ``==`` over every field (payload included), hash by id, pickle, repr truncation;
- the envelope, byte by byte (layout v1 of docs/envelope.md, asserted below), and the
  position/reason of CorruptLogError for targeted damage: unknown version, short head, bad
  priority, truncated id, unknown key kind, an impossible header count, invalid UTF-8.
  Damage in general is fuzzed in tests/fuzz/test_envelope.py; codecs in test_codecs.py.

Layout asserted here: byte 0 version (1), byte 1 flags (b0 key, b1 headers, b2 idempotency
key, b3 deadline, b4 source, b5 trace id, b6 type, b7 text id), byte 2 priority 0..3, byte 3
codec, bytes 4..11 timestamp i64 LE, bytes 12..27 the UUID (or, with b7, a uvarint-length
UTF-8 id), then type, key (kind 1 bytes / 2 str / 3 i64 / 4 u64), idempotency key (kind 1/2),
deadline i64 LE ns, source, trace id, headers (uvarint count, then name/value texts), then
the payload (every remaining byte).

Random inputs come from the seeded ``rng`` fixture (asserts print it: FASTQ_SEED replays).
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
import itertools
import math
import pickle
import re
import struct
import time
import uuid
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest

import fastq
from fastq import CorruptLogError, Message
from fastq._core import new_id

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
F_KEY, F_HEADERS, F_IDEM, F_DEADLINE = 0x01, 0x02, 0x04, 0x08
F_SOURCE, F_TRACE, F_TYPE, F_TEXT_ID = 0x10, 0x20, 0x40, 0x80
HEAD = 12
ID_END = HEAD + 16  # first byte after a binary id
SOURCE = "unit/envelope.bin"
untyped: Any = Message  # for calls that pass deliberately wrong types


def id_ms(text: str) -> int:
    """The 48-bit unix-millisecond prefix of a UUIDv7 text."""
    return int(text.replace("-", "")[:12], 16)


def full_message(**over: Any) -> Message:
    fields: dict[str, Any] = dict(
        key=b"k\x00y",
        type="order.created",
        priority="high",
        headers={"a": "1", "ü": "ß"},
        idempotency_key="idem-1",
        deadline=1_700_000_000.25,
        source="svc",
        trace_id="trace-1",
    )
    fields.update(over)
    payload = fields.pop("payload", {"n": 1, "l": [1, 2.5, "x", None, True]})
    return Message(payload, **fields)


def rejected(data: bytes, position: int = 0, **kw: Any) -> CorruptLogError:
    with pytest.raises(CorruptLogError) as info:
        Message.decode(data, source=SOURCE, position=position, **kw)
    e = info.value
    assert e.path == SOURCE
    assert type(e.position) is int
    assert isinstance(e.reason, str)
    assert e.reason
    return e


# ---- ids ----------------------------------------------------------------------------------------


def test_default_id_is_canonical_uuid7() -> None:
    for text in [Message(b"").id, new_id(), *(new_id() for _ in range(1000))]:
        assert type(text) is str
        assert len(text) == 36
        assert UUID_RE.match(text), text
        u = uuid.UUID(text)
        assert u.version == 7
        assert u.variant == uuid.RFC_4122  # variant bits 0b10
        assert str(u) == text  # canonical lowercase form


def test_ids_strictly_increase_in_creation_order() -> None:
    ids = []
    for i in range(200_000):
        ids.append(new_id() if i % 2 else Message(i).id)
    assert len(set(ids)) == len(ids)
    bad = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(ids)) if not a < b]
    assert not bad, bad[:5]
    # the byte order is the text order
    raw = [uuid.UUID(t).bytes for t in ids[:2000]]
    assert raw == sorted(raw)


def test_id_time_prefix_follows_the_wall_clock() -> None:
    for _ in range(50):
        before = time.time_ns() // 1_000_000
        m = Message(b"")
        text = new_id()
        after = time.time_ns() // 1_000_000
        for t in (m.id, text):
            assert before - 2000 <= id_ms(t) <= after + 2000, (before, t, after)
        assert abs(id_ms(m.id) - m.timestamp // 1_000_000) <= 2000
        time.sleep(0.0005)


def test_timestamp_is_wall_clock_ns() -> None:
    before = time.time_ns()
    m = Message(b"")
    after = time.time_ns()
    assert type(m.timestamp) is int
    assert before - 10**9 <= m.timestamp <= after + 10**9
    assert m.timestamp > 1_600_000_000 * 10**9


def test_given_ids_are_kept_verbatim() -> None:
    for given in ["order-1", "X" * 300, "ÄÖ-\U0001f600", "01890A5D-AC96-774B-BCCE-B302099A8057"]:
        assert Message(b"", id=given).id == given
    canonical = new_id()
    assert Message(b"", id=canonical).id == canonical
    with pytest.raises(ValueError, match="id"):
        Message(b"", id="")
    for bad in (1, b"id", uuid.uuid4()):
        with pytest.raises(TypeError, match="id"):
            untyped(b"", id=bad)


# ---- immutability -------------------------------------------------------------------------------

FIELDS = [
    "payload",
    "key",
    "type",
    "priority",
    "headers",
    "id",
    "idempotency_key",
    "deadline",
    "source",
    "trace_id",
    "timestamp",
]


@pytest.mark.parametrize("name", FIELDS)
def test_attributes_are_read_only(name: str) -> None:
    m = full_message()
    before = getattr(m, name)
    with pytest.raises(AttributeError):
        setattr(m, name, before)
    with pytest.raises(AttributeError):
        delattr(m, name)
    assert getattr(m, name) == before


def test_init_cannot_run_twice() -> None:
    m = Message(b"a", key=1)
    with pytest.raises(TypeError, match="immutable"):
        m.__init__(b"b", key=2)
    assert (m.payload, m.key) == (b"a", 1)


def test_headers_are_a_read_only_copy() -> None:
    given = {"a": "1"}
    m = Message(b"", headers=given)
    h = m.headers
    assert isinstance(h, Mapping)
    assert isinstance(h, MappingProxyType)
    assert dict(h) == {"a": "1"}
    with pytest.raises(TypeError):
        h["b"] = "2"  # type: ignore[index]
    given["b"] = "2"
    assert dict(m.headers) == {"a": "1"}


# ---- fields -------------------------------------------------------------------------------------


def test_defaults() -> None:
    m = Message("p")
    assert m.payload == "p"
    assert m.key is None
    assert m.type == ""
    assert m.priority == "normal"
    assert dict(m.headers) == {}
    assert m.idempotency_key is None
    assert m.deadline is None
    assert m.source == ""
    assert m.trace_id is None


@pytest.mark.parametrize("priority", ["critical", "high", "normal", "low"])
def test_priorities(priority: str) -> None:
    assert Message(b"", priority=priority).priority == priority


@pytest.mark.parametrize("bad", ["urgent", "", "NORMAL", "normal "])
def test_unknown_priority_is_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="priority"):
        Message(b"", priority=bad)


@pytest.mark.parametrize("bad", [2, None, b"normal", 1.0])
def test_non_str_priority_is_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="priority"):
        Message(b"", priority=bad)


class Color(enum.IntEnum):
    RED = 7


@pytest.mark.parametrize(
    ("key", "stored"),
    [
        (None, None),
        (b"", b""),
        (b"\x00\xff", b"\x00\xff"),
        ("", ""),
        ("clé", "clé"),
        (0, 0),
        (-(2**63), -(2**63)),
        (2**63 - 1, 2**63 - 1),
        (2**63, 2**63),
        (2**64 - 1, 2**64 - 1),
        (bytearray(b"ba"), b"ba"),
        (memoryview(b"mv"), b"mv"),
        (Color.RED, 7),
    ],
)
def test_key_types(key: Any, stored: Any) -> None:
    m = Message(b"", key=key)
    assert m.key == stored
    assert type(m.key) is type(stored)


@pytest.mark.parametrize("bad", [-(2**63) - 1, 2**64, 2**100, -(2**100)])
def test_key_out_of_range_is_value_error(bad: int) -> None:
    with pytest.raises(ValueError, match="key"):
        Message(b"", key=bad)


@pytest.mark.parametrize("bad", [1.0, [1], (1,), True, False, object(), {"a": 1}])
def test_key_of_other_types_is_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="key"):
        Message(b"", key=bad)


def test_headers_validation() -> None:
    assert dict(Message(b"", headers={}).headers) == {}
    assert dict(Message(b"", headers=MappingProxyType({"x": "y"})).headers) == {"x": "y"}
    with pytest.raises(TypeError, match="headers"):
        untyped(b"", headers=[("a", "b")])
    with pytest.raises(TypeError, match="headers") as info:
        untyped(b"", headers={1: "a"})
    assert "1" in str(info.value)
    with pytest.raises(TypeError, match="headers") as info:
        untyped(b"", headers={"name": b"v"})
    assert "name" in str(info.value)
    with pytest.raises(TypeError, match="headers"):
        untyped(b"", headers={"name": None})


def test_idempotency_key() -> None:
    assert Message(b"", idempotency_key="a").idempotency_key == "a"
    assert Message(b"", idempotency_key=b"a").idempotency_key == b"a"
    k = untyped(b"", idempotency_key=bytearray(b"ab")).idempotency_key
    assert k == b"ab"
    assert type(k) is bytes
    assert Message(b"", idempotency_key=None).idempotency_key is None
    for bad in (1, 1.5, ["a"]):
        with pytest.raises(TypeError, match="idempotency_key"):
            untyped(b"", idempotency_key=bad)


def test_deadline() -> None:
    assert Message(b"", deadline=None).deadline is None
    d = Message(b"", deadline=1_700_000_000).deadline
    assert type(d) is float
    assert d == 1_700_000_000.0
    assert Message(b"", deadline=1.5).deadline == 1.5
    assert Message(b"", deadline=0).deadline == 0.0
    assert Message(b"", deadline=-5.0).deadline == -5.0
    aware = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert Message(b"", deadline=aware).deadline == pytest.approx(aware.timestamp(), abs=1e-6)
    naive = dt.datetime(2030, 1, 2, 3, 4, 5)  # local time, like datetime.timestamp()
    assert Message(b"", deadline=naive).deadline == pytest.approx(naive.timestamp(), abs=1e-6)
    for bad in (math.nan, math.inf, -math.inf, 1e300):
        with pytest.raises(ValueError, match="deadline"):
            Message(b"", deadline=bad)
    for wrong in ("2030-01-01", True, b"1", [1]):
        with pytest.raises(TypeError, match="deadline"):
            untyped(b"", deadline=wrong)


@pytest.mark.parametrize("name", ["type", "source", "trace_id"])
def test_str_fields(name: str) -> None:
    m = untyped(b"", **{name: "vålue"})
    assert getattr(m, name) == "vålue"
    for bad in (1, b"x"):
        with pytest.raises(TypeError, match=name):
            untyped(b"", **{name: bad})


def test_none_is_refused_for_type_and_source() -> None:
    for name in ("type", "source"):
        with pytest.raises(TypeError, match=name):
            untyped(b"", **{name: None})
    assert Message(b"", trace_id=None).trace_id is None


# ---- replace ------------------------------------------------------------------------------------


def test_replace_keeps_id_and_timestamp() -> None:
    m = full_message()
    r = m.replace(priority="low", payload=[1])
    assert (r.id, r.timestamp) == (m.id, m.timestamp)
    assert (r.priority, r.payload) == ("low", [1])
    for name in ("key", "type", "idempotency_key", "deadline", "source", "trace_id"):
        assert getattr(r, name) == getattr(m, name), name
    assert dict(r.headers) == dict(m.headers)
    assert m.priority == "high"  # the original is unchanged
    assert m.replace() == m
    assert m.replace() is not m


def test_replace_can_change_id_and_timestamp() -> None:
    m = Message(b"")
    r = m.replace(id="custom", timestamp=5)
    assert (r.id, r.timestamp) == ("custom", 5)
    fresh = m.replace(id=None)
    assert fresh.id != m.id
    assert UUID_RE.match(fresh.id)
    with pytest.raises(TypeError, match="timestamp"):
        m.replace(timestamp=1.5)


def test_replace_keeps_the_exact_deadline() -> None:
    ns = 1_700_000_000_123_456_789  # not representable exactly as float seconds
    m = Message(b"", deadline=ns / 1e9)
    data = bytearray(m.encode())
    struct.pack_into("<q", data, ID_END, ns)
    exact = Message.decode(bytes(data))
    r = exact.replace(type="t")
    assert struct.unpack_from("<q", r.encode(), ID_END + 2)[0] == ns
    assert r.replace(type="") == exact


def test_replace_refuses_unknown_fields_and_validates() -> None:
    m = Message(b"")
    with pytest.raises(TypeError, match="colour"):
        m.replace(colour="red")
    with pytest.raises(ValueError, match="priority"):
        m.replace(priority="nope")
    with pytest.raises(TypeError, match="key"):
        m.replace(key=1.0)


# ---- equality, hash, pickle, repr ---------------------------------------------------------------


def test_equality_covers_every_field() -> None:
    m = full_message()
    assert m == m.replace()
    changes: dict[str, Any] = dict(
        payload={"n": 2},
        key=b"other",
        type="x",
        priority="low",
        headers={"a": "2"},
        id="other-id",
        idempotency_key=b"idem-1",  # same text, other type
        deadline=1.0,
        source="other",
        trace_id=None,
        timestamp=m.timestamp + 1,
    )
    for name, value in changes.items():
        other = m.replace(**{name: value})
        assert other != m, name
        assert other != m, name
    a = Message(b"", id="same")
    assert a != a.replace(key="1")
    assert a.replace(key=1) != a.replace(key="1")
    assert a.replace(key=1) != a.replace(key=b"\x01")
    assert m != (m.payload,)
    assert m != m.id


def test_hash_is_by_id() -> None:
    m = full_message()
    assert hash(m) == hash(m.id)
    assert hash(m.replace(payload=[9])) == hash(m)
    assert len({m, m.replace(), full_message()}) == 2


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(protocol: int) -> None:
    for m in [full_message(), Message(b"x"), Message("y", id="text-id", key=2**64 - 1)]:
        back = pickle.loads(pickle.dumps(m, protocol=protocol))
        assert back == m
        assert (back.id, back.timestamp, back.deadline) == (m.id, m.timestamp, m.deadline)
        assert back.encode() == m.encode()
    m = full_message()
    assert copy.copy(m) == m
    assert copy.deepcopy(m) == m


def test_repr_truncates_long_payloads() -> None:
    short = Message(b"abc", key="k", type="t", priority="low")
    r = repr(short)
    assert r.startswith("Message(")
    assert short.id in r
    assert "b'abc'" in r
    assert "'k'" in r
    assert "'low'" in r
    assert "'t'" in r
    long = Message("x" * 10_000)
    r = repr(long)
    assert len(r) < 200
    assert "..." in r
    assert "x" * 100 not in r


# ---- the envelope, byte by byte -----------------------------------------------------------------


def test_minimal_envelope_layout() -> None:
    m = Message(b"\x01" * 64)
    data = m.encode()
    assert type(data) is bytes
    assert len(data) == 28 + 64  # docs/envelope.md
    assert data[0] == 1
    assert data[1] == 0
    assert data[2] == 2  # normal
    assert data[3] == 0  # bytes
    assert struct.unpack_from("<q", data, 4)[0] == m.timestamp
    assert data[HEAD:ID_END] == uuid.UUID(m.id).bytes
    assert data[ID_END:] == m.payload
    assert Message.decode(data) == m


def test_full_envelope_layout() -> None:
    m = Message(
        "pâyload",
        key=2**64 - 1,
        type="t",
        priority="critical",
        headers={"h": "v", "i": "w"},
        idempotency_key=b"ik",
        deadline=2.5,
        source="src",
        trace_id="tr",
        id="custom-id",
    )
    data = m.encode()
    assert data[:4] == bytes([1, 0xFF, 0, 1])
    expected = (
        b"\x09custom-id"  # text id
        + b"\x01t"  # type
        + b"\x04"
        + b"\xff" * 8  # key: u64
        + b"\x01\x02ik"  # idempotency key: bytes
        + struct.pack("<q", 2_500_000_000)  # deadline
        + b"\x03src"
        + b"\x02tr"
        + b"\x02\x01h\x01v\x01i\x01w"  # headers
        + "pâyload".encode()
    )
    assert data[HEAD:] == expected
    assert Message.decode(data) == m


@pytest.mark.parametrize(
    ("key", "kind", "body"),
    [
        (b"ab", 1, b"\x02ab"),
        ("é", 2, b"\x02\xc3\xa9"),
        (-1, 3, b"\xff" * 8),
        (2**63 - 1, 3, struct.pack("<q", 2**63 - 1)),
        (2**63, 4, struct.pack("<Q", 2**63)),
        (0, 3, bytes(8)),
    ],
)
def test_key_kinds(key: Any, kind: int, body: bytes) -> None:
    m = Message(b"P", key=key)
    data = m.encode()
    assert data[1] == F_KEY
    assert data[ID_END] == kind
    assert data[ID_END + 1 :] == body + b"P"
    back = Message.decode(data)
    assert back.key == key
    assert type(back.key) is type(key)


def test_flags_one_per_field() -> None:
    cases: dict[int, dict[str, Any]] = {
        F_KEY: {"key": 1},
        F_HEADERS: {"headers": {"a": "b"}},
        F_IDEM: {"idempotency_key": "i"},
        F_DEADLINE: {"deadline": 1},
        F_SOURCE: {"source": "s"},
        F_TRACE: {"trace_id": ""},
        F_TYPE: {"type": "t"},
        F_TEXT_ID: {"id": "x"},
    }
    for flag, kw in cases.items():
        data = Message(b"", **kw).encode()
        assert data[1] == flag, kw
    # empty type/source and empty headers are absent, an empty trace id is present
    assert Message(b"", type="", source="", headers={}).encode()[1] == 0


def test_uppercase_uuid_ids_are_stored_as_text() -> None:
    canonical = new_id()
    assert Message(b"", id=canonical).encode()[1] == 0
    upper = canonical.upper()
    data = Message(b"", id=upper).encode()
    assert data[1] == F_TEXT_ID
    assert Message.decode(data).id == upper


def test_priority_and_codec_bytes() -> None:
    for level, name in enumerate(["critical", "high", "normal", "low"]):
        assert Message(b"", priority=name).encode()[2] == level
    assert Message(b"").encode()[3] == 0
    assert Message(bytearray(b"x")).encode()[3] == 0
    assert Message("x").encode()[3] == 1
    assert Message({"a": 1}).encode()[3] == 2


def test_decode_accepts_buffers_and_keeps_bytes_payloads_as_bytes() -> None:
    m = Message(memoryview(b"abc"), key=bytearray(b"k"))
    data = m.encode()
    for buf in (data, bytearray(data), memoryview(data)):
        back = Message.decode(buf)
        assert back.payload == b"abc"
        assert type(back.payload) is bytes
        assert back.key == b"k"
        assert type(back.key) is bytes


def test_decoded_messages_are_immutable_and_equal() -> None:
    m = full_message()
    back = Message.decode(m.encode())
    assert back == m
    assert back.id == m.id
    assert back.timestamp == m.timestamp
    with pytest.raises(TypeError, match="immutable"):
        back.__init__(b"")
    with pytest.raises(AttributeError):
        back.key = b"x"  # type: ignore[misc]


# ---- targeted damage: exact positions and reasons -----------------------------------------------


@pytest.mark.parametrize("base", [0, 1000])
def test_unknown_version(base: int) -> None:
    data = bytearray(Message(b"abc").encode())
    for v in (0, 2, 255):
        data[0] = v
        e = rejected(bytes(data), base)
        assert e.position == base + 0
        assert "version" in e.reason


@pytest.mark.parametrize("length", range(HEAD))
def test_shorter_than_the_head(length: int) -> None:
    e = rejected(Message(b"abc").encode()[:length], 77)
    assert e.position == 77
    assert str(length) in e.reason


def test_bad_priority() -> None:
    data = bytearray(Message(b"").encode())
    data[2] = 4
    e = rejected(bytes(data), 10)
    assert e.position == 12
    assert "priority" in e.reason


@pytest.mark.parametrize("cut", range(HEAD, ID_END))
def test_truncated_id(cut: int) -> None:
    e = rejected(Message(b"").encode()[:cut], 5)
    assert e.position == 5 + HEAD
    assert "id" in e.reason


@pytest.mark.parametrize("kind", [0, 5, 255])
def test_unknown_key_kind(kind: int) -> None:
    data = bytearray(Message(b"pp", key=b"k").encode())
    assert data[ID_END] == 1
    data[ID_END] = kind
    e = rejected(bytes(data), 100)
    assert e.position == 100 + ID_END
    assert "key kind" in e.reason
    assert str(kind) in e.reason


def test_unknown_idempotency_key_kind() -> None:
    data = bytearray(Message(b"pp", idempotency_key=b"k").encode())
    data[ID_END] = 3
    e = rejected(bytes(data))
    assert e.position == ID_END
    assert "idempotency key kind" in e.reason


def test_deadline_holding_the_none_marker() -> None:
    data = bytearray(Message(b"", deadline=5).encode())
    struct.pack_into("<q", data, ID_END, -(2**63))
    e = rejected(bytes(data))
    assert e.position == ID_END
    assert "deadline" in e.reason


def headers_envelope(count: bytes) -> bytes:
    """An envelope with flag b1 whose header section is ``count`` + one ("a", "b") pair."""
    data = Message(b"", headers={"a": "b"}).encode()
    assert data[ID_END:] == b"\x01\x01a\x01b"
    return data[:ID_END] + count + b"\x01a\x01b"


@pytest.mark.parametrize("count", [0, 2, 5, 127, 128, 2**32, 2**62])
def test_header_count_too_big(count: int) -> None:
    enc = bytearray()
    v = count
    while v >= 0x80:
        enc.append(v & 0x7F | 0x80)
        v >>= 7
    enc.append(v)
    e = rejected(headers_envelope(bytes(enc)), 50)
    if count == 2:  # fits the byte count, but the second pair is missing
        assert e.position == 50 + ID_END + 1 + 4
        assert "header name" in e.reason
        return
    # the position is that of the byte after the count
    assert e.position == 50 + ID_END + len(enc)
    assert "header count" in e.reason
    assert str(count) in e.reason


def test_header_count_beyond_int64_is_reported_as_such() -> None:
    """A 10-byte varint header count that does not fit a signed 64-bit int must be refused as
    an impossible count, like any other count larger than the bytes left."""
    count = 2**63
    enc = bytearray()
    v = count
    while v >= 0x80:
        enc.append(v & 0x7F | 0x80)
        v >>= 7
    enc.append(v)
    e = rejected(headers_envelope(bytes(enc)))
    assert e.position == ID_END + len(enc)
    assert "header count" in e.reason, e.reason


def test_repeated_header_name() -> None:
    e = rejected(headers_envelope(b"\x02") + b"\x01a\x01c")
    assert "twice" in e.reason


def test_varint_overflow() -> None:
    data = Message(b"", type="t").encode()[:ID_END] + b"\xff" * 11
    e = rejected(data)
    assert "overflows" in e.reason
    assert ID_END <= e.position <= len(data)


@pytest.mark.parametrize(
    ("field", "kw"),
    [
        ("type", {"type": "abc"}),
        ("source", {"source": "abc"}),
        ("trace id", {"trace_id": "abc"}),
        ("key", {"key": "abc"}),
        ("idempotency key", {"idempotency_key": "abc"}),
        ("id", {"id": "abc"}),
    ],
)
def test_invalid_utf8_in_a_str_field(field: str, kw: dict[str, Any]) -> None:
    data = bytearray(Message(b"", **kw).encode())
    at = data.index(b"abc")
    data[at + 1] = 0xFF
    e = rejected(bytes(data), 3)
    assert e.position == 3 + at + 1, (e.position, at)
    assert field in e.reason
    assert "UTF-8" in e.reason


def test_invalid_utf8_in_a_header() -> None:
    data = bytearray(Message(b"", headers={"nm": "val"}).encode())
    at = data.index(b"val")
    data[at + 2] = 0xC3  # a lead byte with nothing after it
    e = rejected(bytes(data))
    assert e.position == at + 2
    assert "header value" in e.reason


def test_invalid_utf8_in_a_str_payload() -> None:
    data = bytearray(Message("héllo").encode())
    at = data.index("é".encode())
    data[at + 1] = 0x41
    e = rejected(bytes(data), 9)
    assert e.position == 9 + at
    assert "payload" in e.reason


def test_blob_running_past_the_end() -> None:
    data = Message(b"", type="abc").encode()
    data = data[:ID_END] + b"\x09abc"
    e = rejected(data)
    assert "past the end" in e.reason
    assert e.position == ID_END + 1


def test_json_payload_that_no_longer_parses() -> None:
    data = Message({"a": [1, 2]}).encode()
    at = len(data) - len(b'{"a":[1,2]}')
    assert data[at:] == b'{"a":[1,2]}'
    e = rejected(data[:-1], 20)
    assert e.position == 20 + at
    assert "json" in e.reason


def test_empty_input() -> None:
    for empty in (b"", bytearray(), memoryview(b"")):
        assert rejected(bytes(empty)).position == 0


def test_decoded_out_of_range_deadline_still_replaces() -> None:
    """decode() accepts any i64 deadline, but the constructor only takes |t| < 9.2e9 s, and
    replace() re-validates the current deadline: a decoded message must still be usable
    (replace of an unrelated field works), or decode must refuse such a deadline."""
    data = bytearray(Message(b"", deadline=1.0).encode())
    struct.pack_into("<q", data, ID_END, 2**63 - 1)
    try:
        m = Message.decode(bytes(data))
    except CorruptLogError:
        return
    r = m.replace(type="x")
    assert r.type == "x"
    assert r.deadline == m.deadline


def test_errors_are_fastq_errors() -> None:
    with pytest.raises(fastq.FastqError):
        Message.decode(b"\x02" + bytes(40))


def iter_all_ids(n: int) -> Iterator[str]:
    for _ in range(n):
        yield new_id()


def test_ids_from_many_messages_are_distinct_from_new_id() -> None:
    a = {Message(i).id for i in range(5000)}
    b = set(iter_all_ids(5000))
    assert len(a) == 5000
    assert len(b) == 5000
    assert not a & b


def test_str_payload_with_a_lone_surrogate_round_trips() -> None:
    """Every other text in the envelope carries lone surrogates (surrogatepass, as
    docs/envelope.md says), and decode() reads a str payload with surrogatepass too; encode()
    must then write one rather than raise UnicodeEncodeError."""
    m = Message("a\ud800b")
    assert Message.decode(m.encode()) == m


# ---- FrozenHeaders and restamp (the router's and producer's native copies) ----------------


def test_frozen_headers_are_checked_once_and_shared() -> None:
    import gc

    from fastq._core import FrozenHeaders

    h = FrozenHeaders({"a": "1", "b": "2"})
    m1 = Message(b"x", headers=h)
    m2 = Message(b"y", headers=h)
    assert dict(m1.headers) == dict(m2.headers) == {"a": "1", "b": "2"}
    assert not gc.is_tracked(m1)  # str -> str headers: the message stays untracked
    assert Message(b"z", headers=FrozenHeaders({})).headers == {}
    assert m1.replace(headers=h).headers == m1.headers
    with pytest.raises(TypeError, match="must be a str"):
        FrozenHeaders({"a": 1})
    with pytest.raises(TypeError, match="mapping"):
        FrozenHeaders([1, 2])
    assert len(h) == 2


def test_a_message_with_a_tracked_payload_stays_tracked() -> None:
    import gc

    assert gc.is_tracked(Message([1], headers={"a": "b"}))
    assert not gc.is_tracked(Message(b"x", headers={"a": "b"}))


def test_restamp_keys_and_headers_in_one_copy() -> None:
    from fastq._core import FrozenHeaders, restamp

    h = FrozenHeaders({"route": "r"})
    plain = Message(b"1", type="t", deadline=2e9)
    keyed = Message(b"2", idempotency_key="k")
    own = Message(b"3", headers={"mine": "yes"})
    seen: list[Message] = []

    def fallback(m: Message) -> Message:
        seen.append(m)
        return m.replace(headers={**m.headers, "route": "r"})

    out = restamp([plain, keyed, own], h, True, fallback)
    assert [m.payload for m in out] == [b"1", b"2", b"3"]
    assert out[0].idempotency_key == plain.id
    assert dict(out[0].headers) == {"route": "r"}
    assert (out[0].id, out[0].timestamp, out[0].deadline, out[0].type) == (
        plain.id,
        plain.timestamp,
        plain.deadline,
        "t",
    )
    assert out[1].idempotency_key == "k"
    assert dict(out[2].headers) == {"mine": "yes", "route": "r"}
    assert seen[0].idempotency_key == own.id  # stamped before the fallback
    assert plain.idempotency_key is None  # the originals are unchanged
    assert plain.headers == {}
    # nothing to change: the same objects come back
    assert restamp([keyed], None, True)[0] is keyed
    assert restamp([plain], None, False)[0] is plain
    with pytest.raises(TypeError):
        restamp([b"not a message"], None, True)
