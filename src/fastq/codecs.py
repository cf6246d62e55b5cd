"""Payload codecs: how a message's payload becomes bytes in the envelope and back.

The envelope records which codec wrote a payload (one byte, ``docs/envelope.md``):

== ========= ===============================================================================
id name      payloads
== ========= ===============================================================================
0  bytes     ``bytes``, ``bytearray``, ``memoryview`` (read back as ``bytes``)
1  str       ``str`` (UTF-8)
2  json      anything JSON can hold, strictly (the default for other objects)
3  msgpack   anything MessagePack can hold (needs ``msgspec``; opt in with ``codec=MSGPACK``)
4  pickle    any picklable object: **opt in twice** (to write it and to read it back), since
             unpickling runs code named by the data
16+          your own: :func:`register` a :class:`Codec` with an id from 16 to 255
== ========= ===============================================================================

Bytes and str pass through untouched. Nothing is ever unpickled unless the reader asked for
:data:`PICKLE` explicitly.
"""

from __future__ import annotations

import json
import pickle
import threading
from typing import Any, Protocol, runtime_checkable

from .errors import CodecError

__all__ = (
    "JSON",
    "MSGPACK",
    "PICKLE",
    "Codec",
    "JsonCodec",
    "MsgpackCodec",
    "PickleCodec",
    "lookup",
    "register",
)

BYTES_ID = 0
STR_ID = 1


@runtime_checkable
class Codec(Protocol):
    """Turns payload objects into bytes and back. ``id`` (0..255) is stored in the envelope."""

    id: int
    name: str

    def encode(self, obj: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class JsonCodec:
    """JSON (id 2) through the standard library: strict (NaN, infinities, bytes and sets are
    refused with TypeError rather than silently changed), compact, UTF-8. Tuples come back as
    lists. (msgspec's JSON encoder writes NaN as null and bytes as base64, so it is not used
    here; with msgspec installed, ``MSGPACK`` is the fast binary choice.)"""

    id = 2
    name = "json"

    def encode(self, obj: Any) -> bytes:
        try:
            return json.dumps(
                obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode("utf-8", "surrogatepass")
        except (TypeError, ValueError) as exc:
            raise TypeError(f"payload is not JSON-serialisable: {exc}") from None

    def decode(self, data: bytes) -> Any:
        return json.loads(data.decode("utf-8", "surrogatepass"))


class MsgpackCodec:
    """MessagePack through msgspec (id 3)."""

    id = 3
    name = "msgpack"

    def encode(self, obj: Any) -> bytes:
        import msgspec.msgpack

        try:
            return bytes(msgspec.msgpack.encode(obj))
        except (TypeError, OverflowError) as exc:
            raise TypeError(f"payload is not MessagePack-serialisable: {exc}") from None

    def decode(self, data: bytes) -> Any:
        import msgspec.msgpack

        return msgspec.msgpack.decode(data)


class PickleCodec:
    """pickle (id 4). Only for data you wrote yourself: reading it runs code the data names."""

    id = 4
    name = "pickle"

    def encode(self, obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, data: bytes) -> Any:
        return pickle.loads(data)  # opt-in only: see the class docstring


JSON = JsonCodec()
MSGPACK = MsgpackCodec()
PICKLE = PickleCodec()

_lock = threading.Lock()
_registry: dict[int, Codec] = {2: JSON, 3: MSGPACK}


def register(codec: Codec) -> None:
    """Make ``codec`` known to every decoder in this process, under ``codec.id`` (16..255)."""
    if not isinstance(codec, Codec):
        raise TypeError(f"codec must have id, name, encode and decode, got {type(codec).__name__}")
    cid = codec.id
    if isinstance(cid, bool) or not isinstance(cid, int) or not 16 <= cid <= 255:
        raise ValueError(f"codec.id must be in 16..255 (0..15 are fastq's), got {cid!r}")
    with _lock:
        old = _registry.get(cid)
        if old is not None and old is not codec:
            raise ValueError(f"codec id {cid} is already registered to {old.name!r}")
        _registry[cid] = codec


def lookup(codec_id: int, extra: tuple[Codec, ...] = ()) -> Codec:
    """The codec that reads payloads written with ``codec_id``: one of ``extra`` (which is how
    a reader opts in to pickle), else a registered one; :class:`~fastq.CodecError` if none."""
    for c in extra:
        if c.id == codec_id:
            return c
    found = _registry.get(codec_id)
    if found is None:
        if codec_id == PICKLE.id:
            raise CodecError(
                "the payload was pickled; reading it runs code named by the data, so it is "
                "refused unless you pass codecs=(fastq.codecs.PICKLE,)"
            )
        raise CodecError(f"no codec registered with id {codec_id} (see fastq.codecs.register)")
    return found
