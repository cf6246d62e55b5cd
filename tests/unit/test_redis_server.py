"""The test helper itself (tests/redis_server.py): start, PING, restart, kill, stop, and what
survives a restart with ``appendonly yes`` + ``appendfsync always``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from redis_server import LOG_NAME, RedisServer, RedisServerError
from threads import LIVENESS, wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) still answers kill(0): check its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_session_fixture_and_url(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_server.running
    assert redis_server.ping()
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis_server.client()
    try:
        assert client.ping() is True
        assert client.dbsize() == 0  # redis_url flushed it
        info = client.info("persistence")
        assert info["aof_enabled"] == 1
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        client.set("left-over", 1)
    finally:
        client.close()
    assert str(redis_server.directory) in repr(redis_server)


def test_redis_url_flushes_between_tests(redis_server: RedisServer, redis_url: str) -> None:
    client = redis_server.client()
    try:
        assert client.get("left-over") is None  # set by the previous test, then FLUSHALL
    finally:
        client.close()


def test_start_ping_restart_kill(
    redis_server_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    server = redis_server_factory()
    port, pid = server.port, server.pid
    assert pid is not None
    assert _alive(pid)
    assert server.directory.is_relative_to(tmp_path)
    assert (server.directory / LOG_NAME).exists()
    client = server.client()
    try:
        for i in range(100):
            client.xadd("s", {"i": i})
        client.set("k", "v")
    finally:
        client.close()

    # SIGTERM, then start on the same port and data directory
    server.restart()
    assert server.port == port
    assert server.pid != pid
    assert not _alive(pid)
    client = server.client()
    try:
        assert client.xlen("s") == 100
        assert client.get("k") == b"v"
        client.xadd("s", {"i": 100})  # acknowledged: with appendfsync always, on disk now
    finally:
        client.close()

    # SIGKILL, as a crash: every acknowledged write is still there
    pid = server.pid
    assert pid is not None
    server.kill()
    assert not server.running
    assert not server.ping()
    assert not _alive(pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    server.start()
    client = server.client()
    try:
        assert client.xlen("s") == 101
        assert client.xrevrange("s", count=1)[0][1] == {b"i": b"100"}
    finally:
        client.close()
    pid = server.pid
    assert pid is not None
    server.stop()
    assert not server.running
    assert not _alive(pid)
    server.stop()  # idempotent
    server.kill()


def test_restart_with_kill_keeps_data(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory()
    client = server.client()
    try:
        client.rpush("l", *range(50))
    finally:
        client.close()
    server.restart(kill=True)
    client = server.client()
    try:
        assert client.llen("l") == 50
    finally:
        client.close()


def test_appendonly_off_keeps_nothing(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory(appendonly=False)
    client = server.client()
    try:
        client.set("k", "v")
    finally:
        client.close()
    server.restart()
    client = server.client()
    try:
        assert client.get("k") is None  # no AOF, no RDB (--save ""): a restart starts empty
    finally:
        client.close()


def test_password(redis_server_factory: Callable[..., RedisServer]) -> None:
    import redis

    server = redis_server_factory(password="s3cr:t@/x")
    assert server.url == f"redis://:s3cr%3At%40%2Fx@127.0.0.1:{server.port}/0"
    client = server.client()
    try:
        assert client.ping() is True
    finally:
        client.close()
    anonymous = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("k")
    finally:
        anonymous.close()


def test_failure_to_start_shows_the_log(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = RedisServer(tmp_path, port=busy.getsockname()[1])  # a fixed port in use
        with pytest.raises(RedisServerError, match="exited with status") as info:
            server.start()
    assert "Address already in use" in str(info.value)
    assert not server.running


def test_missing_binary(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, executable=str(tmp_path / "no-such-redis-server"))
    with pytest.raises(RedisServerError, match=r"cannot run .*apt-get install redis-server"):
        server.start()
    assert not server.running


def test_server_dies_with_its_parent(tmp_path: Path) -> None:
    """A pytest killed with SIGKILL runs no finalizer: the kernel stops the server (PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    tests = Path(__file__).resolve().parents[1]
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(tests)!r})
        from redis_server import RedisServer
        server = RedisServer({str(tmp_path)!r}).start()
        print(server.pid, flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        pid = int(child.stdout.readline())
        assert _alive(pid)
        child.send_signal(signal.SIGKILL)
        child.wait(LIVENESS)
        wait_until(lambda: not _alive(pid), "the orphaned redis-server exits")
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_atexit_stops_the_server(tmp_path: Path) -> None:
    """A process that exits without stopping its server (no fixture) does not leave it behind."""
    tests = Path(__file__).resolve().parents[1]
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tests)!r})
        from redis_server import RedisServer
        print(RedisServer({str(tmp_path)!r}).start().pid, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=LIVENESS * 3
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout)
    wait_until(lambda: not _alive(pid), "the server started by an exited process is gone")
