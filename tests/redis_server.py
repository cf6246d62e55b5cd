"""A throwaway redis-server for the tests (and the Redis benchmarks): own directory, own port.

    server = RedisServer(tmp_path)          # free loopback port, appendonly yes, fsync always
    server.start()                          # returns once PING answers (or raises, log attached)
    server.url                              # redis://127.0.0.1:PORT/0 (with the password, if set)
    server.restart(); server.kill(); server.stop()

The server runs in the foreground (``--daemonize no``) as a child of this process, in its own
session (a Ctrl-C in the terminal reaches pytest, whose fixtures stop it, not the server
directly), with stdout and stderr in ``<directory>/redis-server.log``. It is stopped whatever
happens: by ``stop()`` (the fixtures' finalizers), by an ``atexit`` hook, and, when it was
started from the main thread, by the kernel (``PR_SET_PDEATHSIG``) if this process dies
without running either (SIGKILL, a fatal signal). It needs no third-party package; ``client()``
needs redis-py.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

#: how long start() waits for PING to answer and stop() for the process to exit
LIVENESS = 10.0
LOG_NAME = "redis-server.log"
INSTALL_HINT = (
    "install it: Debian/Ubuntu `apt-get install redis-server` (.ci/run does this), "
    "macOS `brew install redis`; or put a redis-server binary on PATH"
)


class RedisServerError(RuntimeError):
    """The server did not start (the message holds the tail of its log) or is missing."""


def find_executable() -> str | None:
    """The redis-server binary on PATH (or in /usr/sbin, /usr/local/bin), or None."""
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in (
        "/usr/bin/redis-server",
        "/usr/sbin/redis-server",
        "/usr/local/bin/redis-server",
    ):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


_INSTALL_LOCK = threading.Lock()


def install_if_missing(timeout: float = 900.0) -> str | None:
    """The redis-server binary; when there is none and this process may install Debian
    packages (root, apt-get), install Debian's redis-server first, as .ci/run does, so the
    README's test command works on a fresh Debian machine too. None if still missing."""
    found = find_executable()
    if found is not None or os.name != "posix" or shutil.which("apt-get") is None:
        return found
    if os.geteuid() != 0:
        return None
    with _INSTALL_LOCK:
        found = find_executable()
        if found is not None:
            return found
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        policy = Path("/usr/sbin/policy-rc.d")
        made_policy = not policy.exists()
        if made_policy:  # keep the package's own service from starting
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"]
            for cmd in (install, ["apt-get", "update", "-qq"], install):
                done = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout)
                if done.returncode == 0 and find_executable() is not None:
                    break
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if made_policy:
                policy.unlink(missing_ok=True)
        return find_executable()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pdeathsig() -> Any:
    """A preexec_fn asking the kernel to SIGTERM the child when its parent thread dies (Linux).

    Resolved before fork: the child only makes one libc call. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    PR_SET_PDEATHSIG = 1
    sig = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


#: servers started and not yet stopped (strong references: a dropped object still gets stopped)
_LIVE: set[RedisServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.kill()


class RedisServer:
    """One redis-server process on 127.0.0.1, data and log in ``directory``.

    ``port=None`` picks a free port at the first start and keeps it across restarts (clients
    reconnect to the same URL). ``appendonly=True`` runs with ``appendonly yes`` and
    ``appendfsync`` (default ``always``: a write is on disk before the reply); RDB snapshots
    are off (``--save ""``), so with ``appendonly=False`` nothing survives a restart.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        port: int | None = None,
        appendonly: bool = True,
        password: str | None = None,
        appendfsync: str = "always",
        executable: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port is not None
        self.port: int = port if port is not None else 0
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self.executable = executable
        self.extra_args = tuple(extra_args)
        self.log_path = self.directory / LOG_NAME
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._lock = threading.RLock()

    # ---- state ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port == 0:
            raise RedisServerError("the server has no port until it is started")
        auth = f":{urllib.parse.quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process is not None else None

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"RedisServer(127.0.0.1:{self.port}, {self.directory}, {state})"

    def __enter__(self) -> RedisServer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- lifecycle ------------------------------------------------------------------------

    def command_line(self) -> list[str]:
        exe = self.executable or find_executable()
        if exe is None:
            raise RedisServerError(f"redis-server not found on PATH; {INSTALL_HINT}")
        args = [
            exe,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--daemonize", "no",
            "--logfile", "",  # log to stdout, which goes to the log file
            "--protected-mode", "no" if self.password is None else "yes",
        ]  # fmt: skip
        if self.password is not None:
            args += ["--requirepass", self.password]
        return args + list(self.extra_args)

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING (LIVENESS seconds at most).

        With an automatic port, a port taken between choosing and binding is retried with
        another (first start only: a restart keeps the port)."""
        with self._lock:
            if self.running:
                raise RedisServerError(f"{self!r} is already running")
            attempts = 3 if (not self._fixed_port and self.port == 0) else 1
            for attempt in range(attempts):
                if not self._fixed_port and self.starts == 0:
                    self.port = free_port()
                try:
                    self._spawn_and_wait()
                    break
                except RedisServerError:
                    if attempt == attempts - 1 or "Address already in use" not in self.log_tail():
                        raise
            self.starts += 1
            _LIVE.add(self)
            return self

    def _spawn_and_wait(self) -> None:
        cmd = self.command_line()
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {self.starts + 1}: {' '.join(cmd)}\n".encode())
            log.flush()
            main = threading.current_thread() is threading.main_thread()
            try:
                self.process = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    start_new_session=True,
                    # PDEATHSIG fires when the *thread* that forked exits: main thread only
                    preexec_fn=_pdeathsig() if main else None,
                )
            except OSError as exc:
                raise RedisServerError(f"cannot run {cmd[0]}: {exc}; {INSTALL_HINT}") from exc
        deadline = time.monotonic() + LIVENESS
        last = "no answer yet"
        while True:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise RedisServerError(
                    f"redis-server exited with status {code} while starting "
                    f"(127.0.0.1:{self.port}, {self.directory}); log:\n{self.log_tail()}"
                )
            answer = self._ping()
            if answer == "+PONG":
                return
            last = answer
            if time.monotonic() > deadline:
                self.kill()
                raise RedisServerError(
                    f"redis-server on 127.0.0.1:{self.port} did not answer PING within "
                    f"{LIVENESS:g} s (last: {last}); log:\n{self.log_tail()}"
                )
            time.sleep(0.01)

    def _ping(self) -> str:
        """One PING over a raw socket (no redis-py needed): '+PONG', an error line, or why not."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                request = b""
                if self.password is not None:
                    pw = self.password.encode()
                    request += b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw)
                request += b"*1\r\n$4\r\nPING\r\n"
                sock.sendall(request)
                data = b""
                want = 2 if self.password is not None else 1
                while data.count(b"\r\n") < want:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        lines = data.decode(errors="replace").split("\r\n")
        return lines[want - 1] if len(lines) >= want else repr(data)

    def ping(self) -> bool:
        return self.running and self._ping() == "+PONG"

    def stop(self, timeout: float = LIVENESS) -> None:
        """SIGTERM (redis fsyncs the AOF and exits), wait; SIGKILL if it takes longer."""
        with self._lock:
            proc = self.process
            if proc is None:
                return
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            self.process = None
            _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL, as a crash would (what appendfsync always wrote survives), and reap it."""
        with self._lock:
            proc = self.process
            if proc is None:
                return
            if proc.poll() is None:
                proc.kill()
                proc.wait(LIVENESS)
            self.process = None
            _LIVE.discard(self)

    def restart(self, *, kill: bool = False) -> RedisServer:
        """Stop (SIGTERM; SIGKILL with kill=True) and start again on the same port and data."""
        with self._lock:
            if kill:
                self.kill()
            else:
                self.stop()
            return self.start()

    # ---- helpers --------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> Any:
        """A redis.Redis on this server (redis-py must be installed)."""
        import redis

        return redis.Redis.from_url(self.url, **kwargs)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])
