"""The connection to a Redis server: URL or client, key naming, server scripts, and the one
place where errors are translated and lost connections are retried (backoff with full
jitter, bounded by ``timeout``). Credentials never leave this module: ``address`` is
``host:port`` (or the socket path) and every error names only that."""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ...errors import BackendError, BackendUnavailable
from ..base import Capabilities

__all__ = ("REDIS_CAPABILITIES", "RedisStreams")

log = logging.getLogger("fastq.backends.redis")

T = TypeVar("T")

REDIS_CAPABILITIES = Capabilities(
    durable=True,  # as durable as the server's appendonly / appendfsync settings
    delay=True,  # a sorted set promoted by the consumers
    priorities=True,  # one stream per class
    delivery_counter=True,  # the pending entries' delivery counter
    dead_letter=True,  # the <name>.dlq stream, written in the script that acks
    native_dedup=True,  # SET NX PX on the idempotency key
    shared=True,  # any number of processes and machines
)

_SCHEMES = ("redis", "rediss", "unix")
_BACKOFF_BASE = 0.05  # seconds: first reconnect wait (before jitter)
_BACKOFF_CAP = 2.0  # seconds: the longest wait between two reconnects


def _redis() -> Any:
    try:
        import redis
    except ImportError:  # pragma: no cover - the extra is installed wherever this is used
        raise ImportError(
            "fastq.backends.RedisStreams needs redis-py: pip install 'fastq-queue[redis]'"
        ) from None
    return redis


class RedisStreams:
    """The Redis Streams backend: ``Queue(name, backend=RedisStreams(url))`` and
    ``Topic(name, partitions=n, backend=...)`` keep their messages on a Redis server (7.0 or
    newer), so that any number of processes and machines share them.

    ``url_or_client``: a ``redis://[:password@]host:port/db`` (``rediss://``, ``unix://``) URL
    or a ready ``redis.Redis`` client. ``prefix`` starts every key this backend writes.
    ``timeout``: how long an operation keeps reconnecting (with backoff and jitter) before it
    raises :class:`fastq.BackendUnavailable`. ``socket_timeout``: one reply's time limit.
    ``session_timeout``: how long a topic consumer process may go silent before the other
    members of its group take its partitions over."""

    capabilities = REDIS_CAPABILITIES
    name = "redis"

    def __init__(
        self,
        url_or_client: Any,
        *,
        prefix: str = "fastq",
        timeout: float = 10.0,
        socket_timeout: float = 5.0,
        session_timeout: float = 10.0,
    ) -> None:
        redis = _redis()
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        if not prefix or any(c in prefix for c in "{} \t\r\n"):
            raise ValueError(
                f"prefix must be a non-empty str without braces or spaces, got {prefix!r}"
            )
        for arg, value in (
            ("timeout", timeout),
            ("socket_timeout", socket_timeout),
            ("session_timeout", session_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{arg} must be a number of seconds, got {type(value).__name__}")
            if not value > 0:
                raise ValueError(f"{arg} must be > 0 seconds, got {value!r}")
        self.prefix = prefix
        self.timeout = float(timeout)
        #: a topic consumer that has not polled (heartbeat) for this long leaves its group and
        #: its partitions go to the others (Kafka's session.timeout.ms)
        self.session_timeout = float(session_timeout)
        self._errors = redis.exceptions
        if isinstance(url_or_client, str):
            self.address, self.url = _parse(url_or_client)
            self.client: Any = redis.Redis.from_url(
                url_or_client,
                socket_connect_timeout=min(float(socket_timeout), self.timeout),
                socket_timeout=float(socket_timeout),
                health_check_interval=30,
            )
            self._own_client = True
        elif isinstance(url_or_client, redis.Redis):
            self.client = url_or_client
            kw = url_or_client.connection_pool.connection_kwargs
            if "path" in kw:
                self.address = str(kw["path"])
            else:
                self.address = f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
            self.url = f"redis://{self.address}/{kw.get('db', 0)}"
            self._own_client = False
        else:
            raise TypeError(
                "url_or_client must be a redis:// URL str or a redis.Redis client, got "
                f"{type(url_or_client).__name__}"
            )
        self._scripts: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._checked = False

    # ---- naming ---------------------------------------------------------------------------

    def key(self, kind: str, name: str, *parts: str) -> str:
        """``{prefix}:{kind}:{{name}}[:part...]``: the braces make every key of one queue or
        topic hash to one Redis Cluster slot, so its scripts may touch them together."""
        base = f"{self.prefix}:{kind}:{{{name}}}"
        return ":".join((base, *parts)) if parts else base

    # ---- calls ----------------------------------------------------------------------------

    def script(self, source: str) -> Any:
        """The registered server script of ``source`` (EVALSHA, loaded on first use)."""
        s = self._scripts.get(source)
        if s is None:
            with self._lock:
                s = self._scripts.get(source)
                if s is None:
                    s = self._scripts[source] = self.client.register_script(source)
        return s

    def call(self, fn: Callable[[], T], what: str = "call") -> T:
        """Run ``fn`` (one or more Redis commands); a lost connection is retried with
        exponential backoff and full jitter until ``timeout`` seconds have passed, then
        :class:`BackendUnavailable`. Authentication and protocol failures raise
        :class:`BackendError` at once. A retried write may have been applied before the
        connection dropped: callers that retry writes are at-least-once."""
        errors = self._errors
        deadline = None
        attempt = 0
        while True:
            try:
                if not self._checked:
                    self._check()
                return fn()
            except errors.AuthenticationError as exc:
                raise BackendError(
                    f"redis at {self.address} refused the credentials ({_first_line(exc)}): "
                    "check the password / user in the URL or client"
                ) from None
            except (errors.ConnectionError, errors.TimeoutError, OSError) as exc:
                if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                    raise BackendError(
                        f"redis at {self.address} refused the credentials: {_first_line(exc)}"
                    ) from None
                if isinstance(exc, errors.ConnectionError) and "Protocol" in str(exc):
                    raise self._not_redis(exc) from None
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.timeout
                if now >= deadline:
                    raise BackendUnavailable(
                        f"redis at {self.address} is unavailable: {type(exc).__name__} "
                        f"({_first_line(exc)}) for {self.timeout:g} s while trying to {what}"
                    ) from None
                attempt += 1
                wait = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt))
                log.debug(
                    "redis at %s: %s during %s; reconnecting in %.3f s",
                    self.address,
                    type(exc).__name__,
                    what,
                    wait,
                )
                time.sleep(min(wait, max(0.0, deadline - now)))
            except errors.InvalidResponse as exc:
                raise self._not_redis(exc) from None
            except errors.ResponseError as exc:
                text = str(exc)
                if text.startswith(("NOAUTH", "WRONGPASS")):
                    raise BackendError(
                        f"redis at {self.address} refused the credentials: {_first_line(exc)}"
                    ) from None
                raise

    def _not_redis(self, exc: BaseException) -> BackendError:
        return BackendError(
            f"the server at {self.address} did not answer as a Redis server "
            f"({type(exc).__name__}: {_first_line(exc)[:80]})"
        )

    def _check(self) -> None:
        """Once: the server answers and is Redis 7.0 or newer (streams with ``0-*`` ids,
        XAUTOCLAIM, consumer-group lag)."""
        info = self.client.info("server")
        version = str(info.get("redis_version", "0"))
        major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
        if major < 7:
            raise BackendError(
                f"redis at {self.address} is version {version}; fastq needs Redis 7.0 or newer"
            )
        self._checked = True

    def ping(self) -> None:
        """Raise :class:`BackendUnavailable` / :class:`BackendError` unless the server answers."""
        self.call(self.client.ping, "ping")

    # ---- lifecycle ------------------------------------------------------------------------

    def delete(self, name: str, kind: str | None = None) -> int:
        """Drop every key of queue or topic ``name`` (``kind``: "q" or "t"; both if None).
        Returns how many keys were removed."""
        removed = 0
        for k in ("q", "t") if kind is None else (kind,):
            pattern = self.key(k, name) + "*"
            keys: list[Any] = self.call(
                functools.partial(_scan, self.client, pattern), f"find the keys of {name!r}"
            )
            if keys:
                removed += int(self.call(functools.partial(self.client.delete, *keys), "delete"))
        return removed

    def close(self) -> None:
        """Close this backend's connections (a client passed in is left open)."""
        if not self._closed:
            self._closed = True
            if self._own_client:
                self.client.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> RedisStreams:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisStreams({self.url!r}, prefix={self.prefix!r})"


def _parse(url: str) -> tuple[str, str]:
    """(address, the URL without credentials) of a redis URL; ValueError naming it (without
    its password) if it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"url is not a valid redis URL ({exc})") from None
    if parts.scheme not in _SCHEMES:
        shown = f"{parts.scheme}://..." if parts.scheme else url.split("@")[-1]
        raise ValueError(f"url must start with redis://, rediss:// or unix://, got {shown!r}")
    if parts.scheme == "unix":
        return parts.path, f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    address = f"{host}:{port or 6379}"
    db = parts.path or "/0"
    return address, f"{parts.scheme}://{address}{db}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def as_backend(value: Any) -> RedisStreams | None:
    """A ``backend=`` argument: None (in process), a :class:`RedisStreams`, or a redis URL."""
    if value is None or isinstance(value, RedisStreams):
        return value
    if isinstance(value, str):
        if value.split("://", 1)[0] not in _SCHEMES:
            raise ValueError(f"backend must be a redis:// URL, got {value.split('@')[-1]!r}")
        return RedisStreams(value)
    raise TypeError(
        f"backend must be None, a fastq.backends.RedisStreams or a redis:// URL str, got "
        f"{type(value).__name__}"
    )


def _scan(client: Any, pattern: str) -> list[Any]:
    return list(client.scan_iter(match=pattern, count=500))
