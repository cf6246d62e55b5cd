"""Failures: what a handler's exception leaves behind in a dead-letter entry, and the
fingerprint that groups failures from the same place (in the spirit of Sentry's grouping).

A consumer pool describes each failure as a :class:`Failure` and passes
``failure.encode()`` as the ``error=`` of ``nack``/``dead_letter``; the text is stored verbatim
in :attr:`fastq.DeadLetter.last_error` and :meth:`Failure.decode` reads it back.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import os
import re
import sysconfig
import time
import traceback as _traceback
from dataclasses import dataclass
from types import CodeType, TracebackType
from typing import Any

from ..errors import Permanent

__all__ = ("Failure", "fingerprint")

MAX_MESSAGE = 4096
"""Characters of ``str(exc)`` kept in a :class:`Failure` (longer ones are cut, marked)."""
MAX_TRACEBACK = 16384
"""Characters of formatted traceback kept (the start and the end; the middle is cut, marked)."""
FINGERPRINT_FRAMES = 5
"""In-app frames (innermost first) that take part in a fingerprint."""

_MARKER = "fastq.failure"
_VERSION = 1
_PREFIX = '{"' + _MARKER + '":'
_SCHEME = "v1"
_LEGACY = re.compile(r"([A-Za-z_][\w.]*): (.*)", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_][\w.]*")


def _stdlib_dirs() -> tuple[str, ...]:
    dirs = set()
    for key in ("stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(os.path.join(os.path.realpath(path), ""))
            dirs.add(os.path.join(os.path.abspath(path), ""))
    return tuple(sorted(dirs))


_STDLIB = _stdlib_dirs()
_THIRD_PARTY = ("site-packages", "dist-packages")


def _in_app(filename: str, module: str) -> bool:
    """True for a frame of the application: not fastq's own machinery, not an installed
    package (site-packages / dist-packages), not the standard library."""
    if module == "fastq" or module.startswith("fastq."):
        return False
    if filename.startswith("<frozen"):
        return False
    parts = re.split(r"[\\/]", filename)
    if any(p in _THIRD_PARTY for p in parts):
        return False
    return not filename.startswith(_STDLIB)


def _frames(tb: TracebackType | None) -> list[tuple[str, str, bool]]:
    """(module, function, in_app) for each frame of ``tb``, outermost first."""
    out = []
    while tb is not None:
        frame = tb.tb_frame
        code: CodeType = frame.f_code
        module = frame.f_globals.get("__name__")
        if not isinstance(module, str):
            module = "?"
        function = getattr(code, "co_qualname", code.co_name)  # 3.11+: Class.method
        out.append((module, function, _in_app(code.co_filename, module)))
        tb = tb.tb_next
    return out


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _digest(scheme_input: str) -> str:
    return hashlib.sha1(scheme_input.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def fingerprint(exc: BaseException) -> str:
    """A short hex digest grouping failures that happened at the same place: the exception's
    qualified type and the innermost :data:`FINGERPRINT_FRAMES` in-app frames as (module,
    function), without line numbers or messages. Frames of installed packages, the standard
    library and fastq itself are skipped (all frames count when none is in-app). A
    :class:`fastq.Permanent` raised ``from`` a cause also counts the cause's type."""
    if not isinstance(exc, BaseException):
        raise TypeError(f"exc must be an exception, got {type(exc).__name__}")
    parts = [_SCHEME, _type_name(type(exc))]
    if isinstance(exc, Permanent) and exc.__cause__ is not None:
        parts.append("cause:" + _type_name(type(exc.__cause__)))
    frames = _frames(exc.__traceback__)
    chosen = [f for f in frames if f[2]] or frames
    parts.extend(f"{m}:{f}" for m, f, _ in chosen[-FINGERPRINT_FRAMES:])
    return _digest("\n".join(parts))


def fingerprint_text(kind: str, text: str) -> str:
    """The fingerprint of failures known only by a ``kind`` and a text (no traceback): a
    dead letter without a structured failure, grouped by its reason or its error type."""
    return _digest(f"{_SCHEME}\n{kind}:{text}")


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    mark = f" ...[{len(text) - limit} characters cut]"
    return text[: max(0, limit - len(mark))] + mark


def _clip_middle(text: str, limit: int) -> str:
    """Keep the start (the outermost exception of a chain) and the end (the innermost frames
    and the final error line), cutting the middle."""
    if len(text) <= limit:
        return text
    mark = f"\n...[{len(text) - limit} characters cut]...\n"
    head = (limit - len(mark)) // 4
    tail = limit - len(mark) - head
    return text[:head] + mark + text[len(text) - tail :]


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__qualname__} object>"


def _check_time(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Failure:
    """One handler failure, as a dead-letter entry keeps it. Times are unix seconds.

    ``message`` is bounded to :data:`MAX_MESSAGE` and ``traceback`` to :data:`MAX_TRACEBACK`
    characters (longer ones are cut with a marker saying how much)."""

    error_type: str
    """The exception's qualified type, e.g. ``builtins.ValueError``, ``mypkg.errors.Boom``."""
    message: str
    """``str(exc)``."""
    traceback: str
    """The formatted traceback, causes and contexts included."""
    fingerprint: str
    """Groups failures from the same place (:func:`fingerprint`)."""
    consumer: str | None = None
    """The consumer (pool name / worker) that failed, when known."""
    attempts: int = 0
    """The attempt that failed (1 for the first delivery); 0 when unknown."""
    started_at: float = 0.0
    failed_at: float = 0.0
    handler_seconds: float = 0.0
    """How long the handler ran before it raised."""
    permanent: bool = False
    """True when retrying could not help (``fastq.Permanent``, a validation error...)."""

    def __post_init__(self) -> None:
        for name in ("error_type", "message", "traceback", "fingerprint"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        if self.consumer is not None and not isinstance(self.consumer, str):
            raise TypeError(f"consumer must be a str or None, got {type(self.consumer).__name__}")
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"attempts must be an int, got {type(self.attempts).__name__}")
        if self.attempts < 0:
            raise ValueError(f"attempts must be >= 0, got {self.attempts!r}")
        for name in ("started_at", "failed_at", "handler_seconds"):
            object.__setattr__(self, name, _check_time(getattr(self, name), name))
        if self.handler_seconds < 0:
            raise ValueError(f"handler_seconds must be >= 0, got {self.handler_seconds!r}")
        if not isinstance(self.permanent, bool):
            raise TypeError(f"permanent must be a bool, got {type(self.permanent).__name__}")
        object.__setattr__(self, "message", _clip(self.message, MAX_MESSAGE))
        object.__setattr__(self, "traceback", _clip_middle(self.traceback, MAX_TRACEBACK))

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        *,
        consumer: str | None = None,
        attempts: int = 0,
        started_at: float | None = None,
        handler_seconds: float = 0.0,
        permanent: bool = False,
    ) -> Failure:
        """Describe ``exc``, which failed now. ``started_at`` defaults to now minus
        ``handler_seconds``."""
        if not isinstance(exc, BaseException):
            raise TypeError(f"exc must be an exception, got {type(exc).__name__}")
        failed_at = time.time()
        seconds = _check_time(handler_seconds, "handler_seconds")
        if seconds < 0:
            raise ValueError(f"handler_seconds must be >= 0, got {handler_seconds!r}")
        start = failed_at - seconds if started_at is None else started_at
        try:
            text = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        except Exception:  # a broken __str__ deep in a chain: keep what we can
            text = f"{_type_name(type(exc))}: {_safe_str(exc)}\n"
        return cls(
            error_type=_type_name(type(exc)),
            message=_safe_str(exc),
            traceback=text,
            fingerprint=fingerprint(exc),
            consumer=consumer,
            attempts=attempts,
            started_at=start,
            failed_at=failed_at,
            handler_seconds=seconds,
            permanent=permanent,
        )

    @property
    def summary(self) -> str:
        """``"ValueError: boom"`` (builtin types unqualified), as a log line would say it."""
        name = self.error_type.removeprefix("builtins.")
        return f"{name}: {self.message}" if self.message else name

    def encode(self) -> str:
        """Compact JSON starting ``{"fastq.failure":1,``: pass it as ``nack(error=...)``."""
        return json.dumps(
            {
                _MARKER: _VERSION,
                "error_type": self.error_type,
                "message": self.message,
                "traceback": self.traceback,
                "fingerprint": self.fingerprint,
                "consumer": self.consumer,
                "attempts": self.attempts,
                "started_at": self.started_at,
                "failed_at": self.failed_at,
                "handler_seconds": self.handler_seconds,
                "permanent": self.permanent,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def decode(cls, text: object) -> Failure | None:
        """The Failure :meth:`encode` wrote, or None for anything else (a plain error string
        such as ``"ValueError: boom"``, None, garbage). Never raises."""
        if not isinstance(text, str) or not text.startswith(_PREFIX):
            return None
        try:
            d = json.loads(text)
            version = d[_MARKER]
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                return None
            return cls(
                error_type=d["error_type"],
                message=d["message"],
                traceback=d["traceback"],
                fingerprint=d["fingerprint"],
                consumer=d.get("consumer"),
                attempts=d.get("attempts", 0),
                started_at=d.get("started_at", 0.0),
                failed_at=d.get("failed_at", 0.0),
                handler_seconds=d.get("handler_seconds", 0.0),
                permanent=d.get("permanent", False),
            )
        except Exception:
            return None


def parse_legacy(text: str) -> tuple[str | None, str]:
    """(qualified error type or None, message) of a plain ``"Type: message"`` error string,
    as ``nack(error=exc)`` stores it; a builtin name gains ``builtins.``."""
    m = _LEGACY.fullmatch(text)
    if m is not None and _is_exception_name(m.group(1)):
        return _qualify(m.group(1)), m.group(2)
    if _NAME.fullmatch(text) and _is_exception_name(text):
        return _qualify(text), ""  # an exception without a message
    return None, text


def _is_exception_name(name: str) -> bool:
    """A builtin exception's name, or one that looks like a class (``Boom``, ``pkg.Boom``)."""
    if name.rsplit(".", 1)[-1][:1].isupper():
        return True
    obj = getattr(builtins, name, None)
    return isinstance(obj, type) and issubclass(obj, BaseException)


def _qualify(name: str) -> str:
    obj = getattr(builtins, name, None)
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return f"builtins.{name}"
    return name
