"""Bad input on the Redis Streams backend (issue 8): every failure is a clear fastq error, raised
at once (or after the configured timeout for an unreachable server), naming the server as
host:port and never carrying the password.

* an unreachable URL (a port bound but not listening: nothing can answer) raises
  :class:`fastq.BackendUnavailable` after about ``timeout`` seconds of reconnects;
* a server that does not speak Redis (a thread answering ``HTTP/1.1 400``) and a wrong or
  missing password raise :class:`fastq.BackendError` (not ``BackendUnavailable``: retrying
  cannot fix them) well before the timeout;
* bad arguments raise ``TypeError`` / ``ValueError`` naming the argument or the value;
* a capability the backend lacks (``clock=``, ``path=``, ``sync=``, ``max_bytes=``) raises
  :class:`fastq.Unsupported` (a ``NotImplementedError``) naming it, at construction, before
  any key is written;
* a URL string as ``backend=`` works; ``backend=123`` is a ``TypeError``.

Passwords are checked against ``str``/``repr`` of the error (and its chained causes, as a
traceback would print them), ``repr`` of the backend and every log record (DEBUG, root logger).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_server import RedisServer

import fastq
from fastq.backends import RedisStreams

SECRET = "hunter2"
TIMEOUT = 1.0  # the backend's configured timeout for the unreachable case
SLACK = 10.0  # liveness bound on top of the timeout (a loaded 2-core CI machine)
LONG = 30.0  # the backend's timeout where an error must come well before it
AT_ONCE = 5.0  # "at once", generously (a loaded 2-core CI machine)


def leaks(
    secret: str, exc: BaseException | None, *objects: object, caplog: pytest.LogCaptureFixture
) -> list[str]:
    """Where `secret` shows up: the exception (str, repr, the whole printed chain), the reprs
    of `objects`, and every captured log record (message, args, exception text)."""
    found = []
    if exc is not None:
        if secret in str(exc):
            found.append("str(exc)")
        if secret in repr(exc):
            found.append("repr(exc)")
        if secret in "".join(traceback.format_exception(exc)):
            found.append("the printed traceback (a chained cause)")
    for obj in objects:
        if secret in repr(obj):
            found.append(f"repr({type(obj).__name__})")
        if secret in str(obj):
            found.append(f"str({type(obj).__name__})")
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        if secret in text:
            found.append(f"log record {record.name}:{record.levelname}: {text[:200]!r}")
    return found


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting is refused, and no other process
    can take the port while the test runs."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()


@contextlib.contextmanager
def garbage_server(answer: bytes) -> Iterator[int]:
    """A TCP server (one thread) that reads whatever a client sends and answers `answer`, then
    closes the connection; yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:  # the accept timeout (TimeoutError) too
                continue
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()
        assert not thread.is_alive()


def connect(target: object, made: list[object], **options: object) -> None:
    """Make a backend on `target` (a URL or a client; appended to `made`) and use a queue on
    it: connecting may happen in the backend's constructor or on the queue's first use;
    either is fine, the error is what counts."""
    backend = RedisStreams(target, **options)  # type: ignore[arg-type]
    made.append(backend)
    q = fastq.Queue("q", backend=backend)
    try:
        q.put(b"x")
    finally:
        q.close(drain=False)


def close_all(made: list[object]) -> None:
    for obj in made:
        obj.close()  # type: ignore[attr-defined]


# ---- unreachable ---------------------------------------------------------------------------


def test_unreachable_url_raises_backend_unavailable_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with refused_port() as port:
        url = f"redis://:{SECRET}@127.0.0.1:{port}/0"
        made: list[object] = []
        started = time.monotonic()
        with pytest.raises(fastq.BackendUnavailable) as info:
            connect(url, made, timeout=TIMEOUT)
        elapsed = time.monotonic() - started
    exc = info.value
    assert isinstance(exc, fastq.BackendError)
    assert isinstance(exc, ConnectionError)
    assert f"127.0.0.1:{port}" in str(exc), str(exc)
    assert not leaks(SECRET, exc, *made, caplog=caplog)
    # "after the configured timeout": reconnects were tried for about TIMEOUT seconds, not one
    # refused connect (fail-fast) and not forever
    assert elapsed >= 0.8 * TIMEOUT, f"gave up after {elapsed:.2f} s, timeout was {TIMEOUT} s"
    assert elapsed < TIMEOUT + SLACK, f"took {elapsed:.2f} s, timeout was {TIMEOUT} s"
    close_all(made)


def test_backend_repr_hides_the_password() -> None:
    with refused_port() as port:
        backend = RedisStreams(f"redis://user:{SECRET}@127.0.0.1:{port}/0", timeout=TIMEOUT)
    try:
        assert SECRET not in repr(backend), repr(backend)
        assert SECRET not in str(backend), str(backend)
    finally:
        backend.close()


# ---- not Redis / wrong password ------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", b"\x00\x01garbage\xff\r\n"],
    ids=["http", "binary"],
)
def test_a_server_that_is_not_redis_is_a_clear_backend_error(
    answer: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with garbage_server(answer) as port:
        made: list[object] = []
        started = time.monotonic()
        with pytest.raises(fastq.BackendError) as info:
            connect(f"redis://:{SECRET}@127.0.0.1:{port}/0", made, timeout=LONG)
        elapsed = time.monotonic() - started
    exc = info.value
    text = str(exc)
    assert not isinstance(exc, fastq.BackendUnavailable), (
        f"a non-Redis server is not 'unavailable' (retrying cannot fix it): {text}"
    )
    assert f"127.0.0.1:{port}" in text, text
    assert "redis" in text.lower() or "protocol" in text.lower(), text
    assert not leaks(SECRET, exc, *made, caplog=caplog)
    assert elapsed < AT_ONCE, f"a misconfiguration should fail at once, took {elapsed:.2f} s"
    close_all(made)


@pytest.fixture
def password_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A server of the test's own that wants a password."""
    return redis_server_factory(password="right-" + SECRET)


# (a client the caller made with no password is the url-missing case again, 4 s slower)
@pytest.mark.parametrize(
    ("how", "given"),
    [("url", "wrong-password"), ("url", None), ("client", "wrong-password")],
    ids=["url-wrong", "url-missing", "client-wrong"],
)
def test_wrong_password_is_a_clear_backend_error(
    password_server: RedisServer, given: str | None, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = password_server.port
    made: list[object] = []
    if how == "url":
        target: object = f"redis://{f':{given}@' if given else ''}127.0.0.1:{port}/0"
    else:
        target = redis.Redis(host="127.0.0.1", port=port, password=given)
    started = time.monotonic()
    with pytest.raises(fastq.BackendError) as info:
        connect(target, made, timeout=LONG)
    elapsed = time.monotonic() - started
    exc = info.value
    text = str(exc)
    assert not isinstance(exc, fastq.BackendUnavailable), (
        f"a wrong password is not 'unavailable' (retrying cannot fix it): {text}"
    )
    assert any(w in text.lower() for w in ("auth", "credential", "password")), (
        f"should say authentication failed: {text}"
    )
    assert f"127.0.0.1:{port}" in text, text
    for secret in ("right-" + SECRET, "wrong-password"):
        assert not leaks(secret, exc, *made, caplog=caplog), (secret, text)
    # a client the caller made retries connecting by its own policy (redis-py's default
    # Retry: about 3-5 s here), the backend must not add its `timeout` on top
    bound = AT_ONCE if how == "url" else 2 * AT_ONCE
    assert elapsed < bound, f"a wrong password should fail at once, took {elapsed:.2f} s"
    close_all(made)
    if how == "client":
        target.close()  # type: ignore[attr-defined]


def test_the_right_password_works(password_server: RedisServer) -> None:
    backend = RedisStreams(password_server.url, prefix="auth-ok", timeout=5.0)
    try:
        with fastq.Queue("q", backend=backend) as q:
            q.put(b"x")
            d = q.get(timeout=5)
            assert d.message.payload == b"x"
            d.ack()
        backend.delete("q")
    finally:
        backend.close()


# ---- bad arguments -------------------------------------------------------------------------


def test_url_or_client_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="url") as info:
        RedisStreams(42)  # type: ignore[arg-type]
    assert "int" in str(info.value), str(info.value)


@pytest.mark.parametrize("url", ["http://x", "x", "", "127.0.0.1:6379"])
def test_a_url_that_is_not_redis_is_a_value_error(url: str) -> None:
    with pytest.raises(ValueError, match="url") as info:
        RedisStreams(url)
    text = str(info.value)
    # names what was given: the whole value, or (a URL of another scheme, which may carry
    # credentials) at least its scheme
    scheme = url.split("://")[0] + "://" if "://" in url else None
    assert repr(url) in text or (scheme is not None and scheme in text), text


def test_a_bad_url_does_not_echo_its_password() -> None:
    with pytest.raises(ValueError, match="http") as info:
        RedisStreams(f"http://user:{SECRET}@127.0.0.1:1/0")
    assert SECRET not in str(info.value), str(info.value)


def test_empty_prefix_is_a_value_error(redis_url: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisStreams(redis_url, prefix="")


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan")])
def test_a_timeout_that_is_not_positive_is_a_value_error(redis_url: str, timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        RedisStreams(redis_url, timeout=timeout)


def test_backend_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="backend"):
        fastq.Queue("q", backend=123)  # type: ignore[arg-type]


def test_a_url_string_as_backend_works(redis_url: str) -> None:
    with fastq.Queue("q", backend=redis_url, visibility_timeout=5.0) as q:
        ids = q.put_many([b"a", b"b"])
        got = q.get_many(2, timeout=5)
        assert sorted(d.message.payload for d in got) == [b"a", b"b"]
        assert {d.message.id for d in got} == set(ids)
        q.ack_many(got)
        assert len(q) == 0
    with redis.Redis.from_url(redis_url) as client:
        keys = [k.decode() for k in client.keys("*")]
    assert keys, "nothing stored"
    # the default prefix; the name may be a cluster hash tag ({q})
    assert all(k.startswith(("fastq:q:q", "fastq:q:{q}")) for k in keys), keys


# ---- capabilities the backend lacks --------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"clock": "fake"},
        {"path": "tmp"},
        {"sync": "always"},
        {"max_bytes": 1 << 20},
    ],
    ids=["clock", "path", "sync", "max_bytes"],
)
def test_a_capability_redis_lacks_is_refused_at_construction(
    redis_url: str, tmp_path: Path, options: dict[str, Any]
) -> None:
    if options.get("clock") == "fake":
        options = {"clock": fastq.FakeClock()}
    if options.get("path") == "tmp":
        options = {"path": str(tmp_path)}
    backend = RedisStreams(redis_url, prefix="caps")
    try:
        with pytest.raises(fastq.Unsupported) as info:
            fastq.Queue("q", backend=backend, **options)
        exc = info.value
        assert isinstance(exc, NotImplementedError)
        assert isinstance(exc.capability, str), exc.capability
        assert exc.capability, "empty capability"
        assert exc.capability in str(exc), str(exc)
        with redis.Redis.from_url(redis_url) as client:
            assert client.keys("caps:*") == [], "refused, yet keys were written"
        if "path" in options:
            assert list(tmp_path.iterdir()) == [], "refused, yet files were written"
    finally:
        backend.close()


@pytest.mark.parametrize("options", [{"path": "tmp"}, {"sync": "always"}], ids=["path", "sync"])
def test_a_topic_capability_redis_lacks_is_refused_at_construction(
    redis_url: str, tmp_path: Path, options: dict[str, Any]
) -> None:
    if options.get("path") == "tmp":
        options = {"path": str(tmp_path)}
    backend = RedisStreams(redis_url, prefix="caps")
    try:
        with pytest.raises(fastq.Unsupported) as info:
            fastq.Topic("t", partitions=2, backend=backend, **options)
        assert isinstance(info.value, NotImplementedError)
        assert info.value.capability in str(info.value)
        with redis.Redis.from_url(redis_url) as client:
            assert client.keys("caps:*") == [], "refused, yet keys were written"
    finally:
        backend.close()


def test_extend_beyond_the_visibility_timeout_is_a_value_error_naming_the_limit(
    redis_url: str,
) -> None:
    backend = RedisStreams(redis_url, prefix="ext")
    try:
        with fastq.Queue("q", backend=backend, visibility_timeout=2.0) as q:
            q.put(b"x")
            d = q.get(timeout=5)
            q.extend(d.receipt, 1.5)  # within the limit: fine
            with pytest.raises(ValueError, match="visibility_timeout") as info:
                q.extend(d.receipt, 10.0)
            assert "2" in str(info.value), str(info.value)
            d.ack()
    finally:
        backend.close()
