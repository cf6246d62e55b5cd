"""Payload codecs (unit): fastq.codecs and how Message.encode/decode use them.

- which codec a payload gets: bytes/bytearray/memoryview -> 0 (read back as bytes), str -> 1,
  anything else -> JSON (2) unless ``codec=`` says MSGPACK (3), PICKLE (4) or a user codec;
- JSON results equal a ``json`` round trip (tuples -> lists, int keys -> str keys); the
  msgspec backend (installed here) and the standard-library fallback (JsonCodec built with
  msgspec's import blocked) write compact UTF-8 JSON each reads back from the other;
- a payload the codec cannot hold raises TypeError at encode, with either JSON backend;
- pickle is never unpickled unless the reader passes ``codecs=(PICKLE,)``: CodecError
  otherwise, and the pickled object's reduce hook provably did not run;
- unknown codec ids raise CodecError (a ValueError and a FastqError);
- ``register``: ids 16..255 only (ValueError), duplicates with another codec refused,
  re-registering the same codec allowed, non-codecs refused (TypeError); ``codecs=`` extras
  take precedence over the registry. The registry is restored after every test.
"""

from __future__ import annotations

import json
import math
import pickle
import sys
from typing import Any

import msgspec
import pytest

import fastq
from fastq import CodecError, CorruptLogError, Message, codecs
from fastq.codecs import JSON, MSGPACK, PICKLE, Codec, JsonCodec

JSON_PAYLOADS: list[Any] = [
    None,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1.5,
    -0.0,
    1e300,
    True,
    False,
    [],
    {},
    [1, "two", 3.0, None, [True, {"x": []}]],
    {"a": {"b": {"c": [1, 2, 3]}}, "ü": "ß€\U0001f600", "": ""},
    (1, (2, 3)),
    {"t": (1, "a")},
    {'quote"back\\slash\n': "\x00\x1f"},
]


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codecs, "_registry", dict(codecs._registry))


@pytest.fixture
def stdlib_json(monkeypatch: pytest.MonkeyPatch) -> JsonCodec:
    """A JsonCodec built while msgspec cannot be imported (the fallback backend)."""
    with monkeypatch.context() as mp:
        for name in [n for n in sys.modules if n == "msgspec" or n.startswith("msgspec.")]:
            mp.setitem(sys.modules, name, None)  # import raises ImportError
        mp.setitem(sys.modules, "msgspec", None)
        mp.setitem(sys.modules, "msgspec.json", None)
        with pytest.raises(ImportError):
            import msgspec.json  # noqa: F401
        c = JsonCodec()
        # JSON never needs msgspec: the codec works the same with it blocked
        assert c.encode({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    return c


def json_round_trip(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


# ---- which codec --------------------------------------------------------------------------------


def test_builtin_codec_ids_and_names() -> None:
    assert (JSON.id, JSON.name) == (2, "json")
    assert (MSGPACK.id, MSGPACK.name) == (3, "msgpack")
    assert (PICKLE.id, PICKLE.name) == (4, "pickle")
    assert (codecs.BYTES_ID, codecs.STR_ID) == (0, 1)
    for c in (JSON, MSGPACK, PICKLE):
        assert isinstance(c, Codec)
    assert codecs.lookup(2) is JSON
    assert codecs.lookup(3) is MSGPACK


@pytest.mark.parametrize("payload", [b"", b"\x00\xff" * 50, bytearray(b"ba"), memoryview(b"mv")])
def test_bytes_like_payloads_pass_through(payload: Any) -> None:
    data = Message(payload).encode()
    assert data[3] == 0
    assert data.endswith(bytes(payload))
    back = Message.decode(data).payload
    assert back == bytes(payload)
    assert type(back) is bytes


def test_non_contiguous_memoryview_payload() -> None:
    mv = memoryview(b"abcdef")[::2]
    back = Message.decode(Message(mv).encode()).payload
    assert back == b"ace"


@pytest.mark.parametrize("payload", ["", "plain", "ü€\U0001f600", "\x00"])
def test_str_payloads_are_utf8(payload: str) -> None:
    data = Message(payload).encode()
    assert data[3] == 1
    assert data.endswith(payload.encode())
    back = Message.decode(data).payload
    assert back == payload
    assert type(back) is str


def test_bytes_and_str_ignore_the_codec_argument() -> None:
    assert Message(b"x").encode(codec=PICKLE)[3] == 0
    assert Message("x").encode(codec=MSGPACK)[3] == 1


@pytest.mark.parametrize("payload", JSON_PAYLOADS, ids=repr)
def test_default_codec_is_json(payload: Any) -> None:
    m = Message(payload)
    data = m.encode()
    assert data[3] == 2
    body = data[28:]
    assert json.loads(body) == json_round_trip(payload)
    back = Message.decode(data).payload
    assert back == json_round_trip(payload)
    assert type(back) is type(json_round_trip(payload))


def test_json_int_keys_come_back_as_str() -> None:
    assert Message.decode(Message({1: "a"}).encode()).payload == {"1": "a"}


def test_json_is_compact_utf8() -> None:
    body = JSON.encode({"a": [1, 2], "é": "€"})
    assert body == '{"a":[1,2],"é":"€"}'.encode()


@pytest.mark.parametrize("payload", [object(), 1j, Message, print])
def test_non_json_payload_is_type_error_at_encode(payload: Any) -> None:
    with pytest.raises(TypeError, match="JSON"):
        Message(payload).encode()
    with pytest.raises(TypeError, match="JSON"):
        JSON.encode(payload)


@pytest.mark.parametrize("big", [2**64, -(2**63) - 1, 10**30, -(10**40)])
def test_ints_beyond_64_bits_round_trip(stdlib_json: JsonCodec, big: int) -> None:
    """JSON numbers have no size limit: both backends write and read back big ints."""
    assert Message.decode(Message([big]).encode()).payload == [big]
    assert Message.decode(Message([big]).encode(codec=stdlib_json)).payload == [big]
    assert stdlib_json.decode(JSON.encode({"n": big})) == {"n": big}


# ---- the standard-library fallback --------------------------------------------------------------


@pytest.mark.parametrize("payload", JSON_PAYLOADS, ids=repr)
def test_stdlib_fallback_matches_msgspec(stdlib_json: JsonCodec, payload: Any) -> None:
    a = stdlib_json.encode(payload)
    b = JSON.encode(payload)
    assert type(a) is bytes
    expected = json_round_trip(payload)
    # each backend reads what the other wrote
    assert stdlib_json.decode(a) == expected
    assert stdlib_json.decode(b) == expected
    assert JSON.decode(a) == expected
    assert json.loads(a) == expected
    assert a == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def test_stdlib_fallback_through_the_envelope(stdlib_json: JsonCodec) -> None:
    m = Message({"k": [1, "ü", None]}, key=1)
    data = m.encode(codec=stdlib_json)
    assert data[3] == 2
    assert data.endswith('{"k":[1,"ü",null]}'.encode())
    back = Message.decode(data)
    assert back == m
    # and a reader with only the fallback reads msgspec's output
    back2 = Message.decode(m.encode(), codecs=(stdlib_json,))
    assert back2.payload == m.payload


@pytest.mark.parametrize("payload", [object(), 1j, {"x": math.nan}, [math.inf], {b"k": 1}])
def test_stdlib_fallback_refuses_non_json_with_type_error(
    stdlib_json: JsonCodec, payload: Any
) -> None:
    with pytest.raises(TypeError, match="JSON"):
        stdlib_json.encode(payload)
    with pytest.raises(TypeError, match="JSON"):
        Message(payload).encode(codec=stdlib_json)


def test_stdlib_fallback_decode_errors_become_corrupt_log_errors(stdlib_json: JsonCodec) -> None:
    data = Message([1, 2]).encode()[:-1]
    with pytest.raises(CorruptLogError) as info:
        Message.decode(data, codecs=(stdlib_json,), source="s")
    assert info.value.path == "s"
    assert "json" in info.value.reason


@pytest.mark.parametrize(
    "payload",
    [{"x": math.nan}, [math.inf], {"b": b"raw"}, {"s": frozenset({1})}],
    ids=["nan", "inf", "bytes", "frozenset"],
)
def test_json_backends_agree_on_what_is_json(stdlib_json: JsonCodec, payload: Any) -> None:
    """The default (msgspec) backend must not silently store a payload the stdlib fallback
    refuses as not JSON (NaN/inf become null, bytes become base64 text, sets become lists):
    either both raise TypeError or the value round-trips unchanged."""
    with pytest.raises(TypeError):
        stdlib_json.encode(payload)
    try:
        data = Message(payload).encode()
    except TypeError:
        return
    back = Message.decode(data).payload
    assert repr(back) == repr(payload), f"{payload!r} was stored as {back!r}"


# ---- msgpack ------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", JSON_PAYLOADS, ids=repr)
def test_msgpack_round_trip(payload: Any) -> None:
    data = Message(payload).encode(codec=MSGPACK)
    assert data[3] == 3
    assert data[28:] == msgspec.msgpack.encode(payload)
    back = Message.decode(data).payload
    assert back == json_round_trip(payload)


def test_msgpack_holds_bytes_and_nan() -> None:
    back = Message.decode(Message({"b": b"\x00\xff"}).encode(codec=MSGPACK)).payload
    assert back == {"b": b"\x00\xff"}
    back = Message.decode(Message([math.nan]).encode(codec=MSGPACK)).payload
    assert math.isnan(back[0])


def test_msgpack_refuses_non_serialisable() -> None:
    with pytest.raises(TypeError, match="MessagePack"):
        Message(object()).encode(codec=MSGPACK)
    with pytest.raises(TypeError, match="MessagePack"):
        Message([2**64]).encode(codec=MSGPACK)


def test_damaged_msgpack_is_corrupt_log_error() -> None:
    data = Message({"a": [1, 2, 3]}).encode(codec=MSGPACK)
    with pytest.raises(CorruptLogError) as info:
        Message.decode(data[:-1])
    assert "msgpack" in info.value.reason


# ---- pickle -------------------------------------------------------------------------------------

RAN: list[str] = []


def _side_effect(tag: str) -> str:
    RAN.append(tag)
    return tag


class Loud:
    """Unpickling it calls _side_effect: proof of whether pickle.loads ran."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_side_effect, (self.tag,))


def test_pickle_is_refused_unless_asked_for() -> None:
    RAN.clear()
    data = Message(Loud("boom")).encode(codec=PICKLE)
    assert data[3] == 4
    assert pickle.loads(data[28:]) == "boom"  # the payload is a plain pickle ...
    RAN.clear()
    with pytest.raises(CodecError, match="pickle"):
        Message.decode(data)
    with pytest.raises(CodecError, match="PICKLE"):
        Message.decode(data, codecs=(MSGPACK,))
    assert RAN == []  # ... and refusing never unpickled it
    back = Message.decode(data, codecs=(PICKLE,))
    assert back.payload == "boom"
    assert RAN == ["boom"]


def test_pickle_round_trip_with_opt_in() -> None:
    payload = {"set": {1, 2}, "tuple": (1, 2), "bytes": b"x", "nan": math.inf, "c": 1j}
    back = Message.decode(Message(payload).encode(codec=PICKLE), codecs=[PICKLE]).payload
    assert back == payload


def test_codec_error_is_value_error_and_fastq_error() -> None:
    assert issubclass(CodecError, ValueError)
    assert issubclass(CodecError, fastq.FastqError)
    assert not issubclass(CodecError, CorruptLogError)


@pytest.mark.parametrize("codec_id", [5, 15, 16, 200, 255])
def test_unknown_codec_id_is_codec_error(codec_id: int) -> None:
    data = bytearray(Message([1]).encode())
    data[3] = codec_id
    with pytest.raises(CodecError, match=str(codec_id)):
        Message.decode(bytes(data))
    with pytest.raises(CodecError):
        codecs.lookup(codec_id)


# ---- register -----------------------------------------------------------------------------------


class Reversed:
    """A user codec: UTF-8 text of repr, reversed."""

    name = "reversed"

    def __init__(self, cid: Any) -> None:
        self.id: int = cid

    def encode(self, obj: Any) -> bytes:
        return str(obj).encode()[::-1]

    def decode(self, data: bytes) -> Any:
        return data[::-1].decode()


def test_register_and_use_a_user_codec() -> None:
    c = Reversed(17)
    data = Message(12345).encode(codec=c)
    assert data[3] == 17
    assert data.endswith(b"54321")
    with pytest.raises(CodecError, match="17"):
        Message.decode(data)
    assert Message.decode(data, codecs=(c,)).payload == "12345"  # extras need no registry
    codecs.register(c)
    assert codecs.lookup(17) is c
    assert Message.decode(data).payload == "12345"
    codecs.register(c)  # the same codec again is fine


def test_register_bounds() -> None:
    for cid in (16, 255):
        codecs.register(Reversed(cid))
        assert codecs.lookup(cid).id == cid
    for cid in (-1, 0, 2, 4, 15, 256, 1000):
        with pytest.raises(ValueError, match=r"16\.\.255"):
            codecs.register(Reversed(cid))
    odd: list[Any] = [True, 16.0, "16"]
    for bad in odd:
        with pytest.raises(ValueError, match=r"codec\.id"):
            codecs.register(Reversed(bad))
    assert 15 not in codecs._registry
    assert 256 not in codecs._registry


def test_register_refuses_a_second_codec_for_an_id() -> None:
    first = Reversed(40)
    codecs.register(first)
    with pytest.raises(ValueError, match="reversed"):
        codecs.register(Reversed(40))
    assert codecs.lookup(40) is first


def test_register_refuses_non_codecs() -> None:
    class NoDecode:
        id = 50
        name = "x"

        def encode(self, obj: Any) -> bytes:
            return b""

    with pytest.raises(TypeError, match="codec"):
        codecs.register(NoDecode())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        codecs.register(object())  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        codecs.lookup(50)


def test_extra_codecs_take_precedence() -> None:
    class Upper(Reversed):
        def decode(self, data: bytes) -> Any:
            return "override"

    data = Message({"a": 1}).encode()
    assert Message.decode(data, codecs=(Upper(2),)).payload == "override"
    assert Message.decode(data).payload == {"a": 1}


def test_a_user_codec_that_raises_on_decode_is_corrupt_log_error() -> None:
    class Broken(Reversed):
        def decode(self, data: bytes) -> Any:
            raise RuntimeError("nope")

    c = Broken(99)
    data = Message(1).encode(codec=c)
    with pytest.raises(CorruptLogError) as info:
        Message.decode(data, codecs=(c,), source="src", position=7)
    assert info.value.path == "src"
    assert info.value.position == 7 + 28
    assert "nope" in info.value.reason
    assert "reversed" in info.value.reason


def test_a_user_codec_returning_a_buffer() -> None:
    class Buf(Reversed):
        def encode(self, obj: Any) -> bytes:
            return bytearray(b"abc")  # type: ignore[return-value]

    data = Message(1).encode(codec=Buf(30))
    assert type(data) is bytes
    assert data.endswith(b"abc")
