"""Failure (unit): what a handler's exception leaves in a dead-letter entry, and fingerprints.

- from_exception: qualified type, message, traceback (cause chain), timings, bad arguments;
- fingerprint: same place with another message or other line numbers -> same; another type or
  function -> different; only the innermost in-app frames count; frames of installed packages
  (site-packages), the stdlib and fastq itself are skipped (all frames count when none is
  in-app); fastq.Permanent raised from a cause counts the cause's type;
- encode/decode round trip, bounds on message and traceback, decode never raises on garbage;
- parse_legacy on the plain "Type: message" strings nack(error=exc) stores.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastq.errors import Permanent
from fastq.semantics import failure as failure_mod
from fastq.semantics.failure import (
    FINGERPRINT_FRAMES,
    MAX_MESSAGE,
    MAX_TRACEBACK,
    Failure,
    fingerprint,
    fingerprint_text,
    parse_legacy,
)


class Boom(Exception):
    pass


def caught(fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def load(source: str, filename: str, module: str) -> dict[str, Any]:
    """Run ``source`` as if it were module ``module`` in file ``filename`` (frames then carry
    that file name and module name, as a real import would give them)."""
    ns: dict[str, Any] = {"__name__": module}
    exec(compile(source, filename, "exec"), ns)
    return ns


APP = os.path.join(os.sep, "srv", "app", "handlers.py")
SITE = os.path.join(os.sep, "venv", "lib", "python3.11", "site-packages", "lib3p", "mod.py")


# ---- from_exception ----------------------------------------------------------------------------


def test_from_exception_describes_the_exception() -> None:
    def handler() -> None:
        try:
            {}["k"]
        except KeyError as e:
            raise Boom("bad record 42") from e

    exc = caught(handler)
    f = Failure.from_exception(
        exc, consumer="pool-1/w3", attempts=2, handler_seconds=0.25, permanent=True
    )
    assert f.error_type == f"{Boom.__module__}.Boom"
    assert f.message == "bad record 42"
    assert "KeyError: 'k'" in f.traceback  # the cause chain is kept
    assert "direct cause" in f.traceback
    assert "in handler" in f.traceback
    assert f.traceback.rstrip().endswith("Boom: bad record 42")
    assert f.fingerprint == fingerprint(exc)
    assert (f.consumer, f.attempts, f.permanent) == ("pool-1/w3", 2, True)
    assert f.handler_seconds == 0.25
    assert f.started_at == pytest.approx(f.failed_at - 0.25)
    assert f.summary == f"{Boom.__module__}.Boom: bad record 42"


def test_builtin_types_are_qualified_and_summary_drops_builtins() -> None:
    f = Failure.from_exception(caught(lambda: int("x")))
    assert f.error_type == "builtins.ValueError"
    assert f.summary.startswith("ValueError: invalid literal")
    assert Failure.from_exception(KeyError()).summary == "KeyError"  # no message


def test_from_exception_explicit_started_at_and_unraised_exception() -> None:
    f = Failure.from_exception(ValueError("never raised"), started_at=1000.0)
    assert f.started_at == 1000.0
    assert f.traceback == "ValueError: never raised\n"
    assert f.fingerprint == fingerprint(ValueError("other"))  # type only: no frames


def test_unprintable_exception_is_still_described() -> None:
    class Ugly(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    f = Failure.from_exception(caught(lambda: (_ for _ in ()).throw(Ugly())))
    assert f.message.startswith("<unprintable ")
    assert f.message.endswith("Ugly object>")
    assert f.error_type.endswith("Ugly")
    assert Failure.decode(f.encode()) == f


@pytest.mark.parametrize(
    ("kwargs", "exc_type", "needle"),
    [
        ({"attempts": -1}, ValueError, "attempts must be >= 0, got -1"),
        ({"attempts": True}, TypeError, "attempts must be an int"),
        ({"attempts": 1.0}, TypeError, "attempts must be an int"),
        ({"handler_seconds": -0.5}, ValueError, "handler_seconds must be >= 0, got -0.5"),
        ({"handler_seconds": math.nan}, ValueError, "handler_seconds must be finite"),
        ({"handler_seconds": "1"}, TypeError, "handler_seconds must be a number"),
        ({"started_at": math.inf}, ValueError, "started_at must be finite"),
        ({"consumer": 3}, TypeError, "consumer must be a str or None, got int"),
        ({"permanent": 1}, TypeError, "permanent must be a bool, got int"),
    ],
)
def test_bad_arguments_name_the_argument(
    kwargs: dict[str, Any], exc_type: type[Exception], needle: str
) -> None:
    with pytest.raises(exc_type, match=re.escape(needle)):
        Failure.from_exception(ValueError("x"), **kwargs)


def test_non_exception_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="exc must be an exception, got str"):
        Failure.from_exception("boom")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exc must be an exception, got int"):
        fingerprint(3)  # type: ignore[arg-type]


# ---- fingerprints ------------------------------------------------------------------------------


APP_SOURCE = """
def parse(record):
    return int(record["n"])

def handler(record):
    return parse(record)

def other_handler(record):
    return parse(record)

def wrong_type(record):
    raise KeyError(record)
"""


def test_same_place_different_message_same_fingerprint() -> None:
    ns = load(APP_SOURCE, APP, "app.handlers")
    a = caught(lambda: ns["handler"]({"n": "abc"}))
    b = caught(lambda: ns["handler"]({"n": "completely different"}))
    assert str(a) != str(b)
    assert fingerprint(a) == fingerprint(b)
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint(a))


def test_line_numbers_do_not_matter() -> None:
    ns1 = load(APP_SOURCE, APP, "app.handlers")
    ns2 = load("\n\n\n# a comment moved everything\n" + APP_SOURCE, APP, "app.handlers")
    a = caught(lambda: ns1["handler"]({"n": "x"}))
    b = caught(lambda: ns2["handler"]({"n": "y"}))
    assert a.__traceback__ is not None
    assert b.__traceback__ is not None
    assert fingerprint(a) == fingerprint(b)


def test_different_type_or_function_differs() -> None:
    ns = load(APP_SOURCE, APP, "app.handlers")
    base = fingerprint(caught(lambda: ns["handler"]({"n": "x"})))
    via_other = fingerprint(caught(lambda: ns["other_handler"]({"n": "x"})))
    other_type = fingerprint(caught(lambda: ns["handler"]({})))  # KeyError in parse
    assert len({base, via_other, other_type}) == 3
    # another module with the same function names is another place
    ns2 = load(APP_SOURCE, APP.replace("handlers", "billing"), "app.billing")
    assert fingerprint(caught(lambda: ns2["handler"]({"n": "x"}))) != base


def test_only_the_innermost_in_app_frames_count() -> None:
    depth = FINGERPRINT_FRAMES + 3
    src = "def f0(x):\n    raise ValueError(x)\n" + "".join(
        f"def f{i}(x):\n    return f{i - 1}(x)\n" for i in range(1, depth)
    )
    src += f"def entry_a(x):\n    return f{depth - 1}(x)\n"
    src += f"def entry_b(x):\n    return f{depth - 1}(x)\n"
    ns = load(src, APP, "app.deep")
    a = caught(lambda: ns["entry_a"]("1"))
    b = caught(lambda: ns["entry_b"]("2"))
    assert fingerprint(a) == fingerprint(b)  # entry_* are beyond the last 5 frames
    shallow = load(src.replace(f"return f{depth - 1}(x)", "return f2(x)"), APP, "app.deep")
    c = caught(lambda: shallow["entry_a"]("1"))
    d = caught(lambda: shallow["entry_b"]("1"))
    assert fingerprint(c) != fingerprint(d)  # now within reach


LIB_SOURCE = """
def strict_int(value):
    return _convert(value)

def lenient_int(value):
    return _convert(value)

def _convert(value):
    raise ValueError("library says no: %r" % (value,))

def catch(fn, value):
    try:
        fn(value)
    except Exception as e:
        return e
"""


def test_site_packages_frames_are_skipped() -> None:
    lib = load(LIB_SOURCE, SITE, "lib3p.mod")
    app_src = "def handler(lib_fn, v):\n    return lib_fn(v)\n"
    app = load(app_src, APP, "app.handlers")
    a = caught(lambda: app["handler"](lib["strict_int"], "x"))
    b = caught(lambda: app["handler"](lib["lenient_int"], "y"))
    # only the app frame counts: which library function failed inside does not split groups
    assert fingerprint(a) == fingerprint(b)
    # ... and it is the app frame that counts
    app2 = load(app_src.replace("handler", "other"), APP, "app.handlers")
    c = caught(lambda: app2["other"](lib["strict_int"], "x"))
    assert fingerprint(c) != fingerprint(a)
    dist = load(LIB_SOURCE, SITE.replace("site-packages", "dist-packages"), "lib3p.mod")
    assert fingerprint(caught(lambda: app["handler"](dist["strict_int"], "z"))) == fingerprint(a)


def test_all_frames_count_when_none_is_in_app() -> None:
    lib = load(LIB_SOURCE, SITE, "lib3p.mod")
    # caught inside the library: no frame of the traceback is in-app
    a = fingerprint(lib["catch"](lib["strict_int"], "x"))
    b = fingerprint(lib["catch"](lib["lenient_int"], "y"))
    assert a != b
    assert a == fingerprint(lib["catch"](lib["strict_int"], "z"))


def test_stdlib_frames_are_skipped() -> None:
    app_src = "import json\ndef handler(text):\n    return json.loads(text)\n"
    app = load(app_src, APP, "app.handlers")
    a = caught(lambda: app["handler"]("{"))
    b = caught(lambda: app["handler"]("[1,"))  # fails deeper/elsewhere inside json
    assert type(a).__name__ == "JSONDecodeError"
    assert fingerprint(a) == fingerprint(b)
    tail = load("\ndef handler(text):\n    raise __import__('json').JSONDecodeError('m', '', 0)\n",
                APP, "app.handlers")  # fmt: skip
    assert fingerprint(caught(lambda: tail["handler"]("x"))) == fingerprint(a)


def test_fastq_machinery_frames_are_skipped() -> None:
    app = load(APP_SOURCE, APP, "app.handlers")
    pool_src = "def run(handler, item):\n    return handler(item)\n"
    pool = load(pool_src, "/src/fastq/pipeline/pool.py", "fastq.pipeline.pool")
    direct = caught(lambda: app["handler"]({"n": "x"}))
    via_pool = caught(lambda: pool["run"](app["handler"], {"n": "y"}))
    assert fingerprint(direct) == fingerprint(via_pool)


def test_permanent_counts_its_cause_type() -> None:
    src = """
from fastq.errors import Permanent
def handler(exc):
    try:
        raise exc
    except Exception as e:
        raise Permanent("cannot process") from e
def bare():
    raise Permanent("cannot process")
"""
    ns = load(src, APP, "app.handlers")
    v1 = caught(lambda: ns["handler"](ValueError("a")))
    v2 = caught(lambda: ns["handler"](ValueError("b")))
    k = caught(lambda: ns["handler"](KeyError("a")))
    assert isinstance(v1, Permanent)
    assert fingerprint(v1) == fingerprint(v2)
    assert fingerprint(v1) != fingerprint(k)
    assert fingerprint(v1) != fingerprint(caught(ns["bare"]))
    f = Failure.from_exception(v1, permanent=True)
    assert f.error_type == "fastq.errors.Permanent"
    assert "ValueError: a" in f.traceback


def test_fingerprint_text_is_versioned_and_distinct() -> None:
    assert fingerprint_text("reason", "max_deliveries") == fingerprint_text(
        "reason", "max_deliveries"
    )
    assert fingerprint_text("reason", "max_deliveries") != fingerprint_text("reason", "expired")
    assert fingerprint_text("reason", "x") != fingerprint_text("type", "x")
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint_text("reason", "expired"))


# ---- encode / decode ---------------------------------------------------------------------------


def test_encode_decode_round_trip() -> None:
    ns = load(APP_SOURCE, APP, "app.handlers")
    f = Failure.from_exception(
        caught(lambda: ns["handler"]({"n": "ünïcødé ✓"})), consumer="c", attempts=3
    )
    text = f.encode()
    assert text.startswith('{"fastq.failure":1,')
    assert "\n" not in text  # one line: fits a log line and a journal record
    assert Failure.decode(text) == f
    assert json.loads(text)["error_type"] == "builtins.ValueError"


def test_decode_ignores_unknown_fields_and_fills_defaults() -> None:
    d = {
        "fastq.failure": 1,
        "error_type": "a.B",
        "message": "m",
        "traceback": "",
        "fingerprint": "00",
        "from_the_future": [1, 2],
    }
    f = Failure.decode(json.dumps(d, separators=(",", ":")))
    assert f is not None
    assert (f.error_type, f.attempts, f.consumer, f.permanent) == ("a.B", 0, None, False)


def test_bounds_on_message_and_traceback() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("x" * (MAX_TRACEBACK + 100))
        deep(n - 1)

    f = Failure.from_exception(caught(lambda: deep(300)))
    assert len(f.message) <= MAX_MESSAGE
    assert "characters cut" in f.message
    assert len(f.traceback) <= MAX_TRACEBACK
    assert f.traceback.startswith("Traceback (most recent call last):")
    assert "characters cut]" in f.traceback
    assert f.traceback.rstrip().endswith("x" * 10)  # the end (the innermost error) is kept
    assert Failure.decode(f.encode()) == f
    # direct construction is bounded too
    g = Failure("t", "m" * (MAX_MESSAGE + 1), "tb" * MAX_TRACEBACK, "fp")
    assert len(g.message) <= MAX_MESSAGE
    assert len(g.traceback) <= MAX_TRACEBACK


GARBAGE: list[object] = [
    None,
    3,
    b'{"fastq.failure":1}',
    "",
    "ValueError: boom",
    '{"fastq.failure":1',
    '{"fastq.failure":1}',
    '{"fastq.failure":"1","error_type":"a","message":"","traceback":"","fingerprint":""}',
    '{"fastq.failure":true,"error_type":"a","message":"","traceback":"","fingerprint":""}',
    '{"fastq.failure":0,"error_type":"a","message":"","traceback":"","fingerprint":""}',
    '{"fastq.failure":1,"error_type":5,"message":"","traceback":"","fingerprint":""}',
    '{"fastq.failure":1,"error_type":"a","message":"","traceback":"","fingerprint":"",'
    '"attempts":-3}',
    '{"fastq.failure":1,"error_type":"a","message":"","traceback":"","fingerprint":"",'
    '"handler_seconds":"NaN"}',
    '{"fastq.failure":1,"error_type":"a","message":"","traceback":"","fingerprint":"",'
    '"started_at":Infinity}',
    '{"fastq.failure":' + "[" * 100_000,
    '{"fastq.failure":1,"error_type":"\\ud800","message":"","traceback":"","fingerprint":"",'
    '"consumer":{}}',
]


@pytest.mark.parametrize("text", GARBAGE)
def test_decode_garbage_is_none(text: object) -> None:
    assert Failure.decode(text) is None


@given(st.text(max_size=200))
def test_decode_never_raises(tail: str) -> None:
    assert Failure.decode(tail) is None or isinstance(Failure.decode(tail), Failure)
    result = Failure.decode('{"fastq.failure":' + tail)
    assert result is None or isinstance(result, Failure)


# ---- plain error strings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ValueError: boom", ("builtins.ValueError", "boom")),
        ("ValueError: multi\nline: text", ("builtins.ValueError", "multi\nline: text")),
        ("mypkg.errors.Boom: x", ("mypkg.errors.Boom", "x")),
        ("Boom: x", ("Boom", "x")),
        ("KeyError", ("builtins.KeyError", "")),
        ("timeout: 5s", (None, "timeout: 5s")),
        ("something went wrong", (None, "something went wrong")),
        ("", (None, "")),
    ],
)
def test_parse_legacy(text: str, expected: tuple[str | None, str]) -> None:
    assert parse_legacy(text) == expected


def test_module_exports() -> None:
    assert set(failure_mod.__all__) == {"Failure", "fingerprint"}
