"""fastq on Redis Streams (issue 8) next to hand-written redis-py loops, dramatiq's Redis broker
and RQ, all on one redis-server that this module starts for the run (tests/redis_server.py:
127.0.0.1, a free port, a fresh directory; ``appendonly yes`` + ``appendfsync everysec`` unless
FASTQ_BENCH_REDIS_FSYNC says ``always`` or ``no`` (no AOF at all)). Payloads are 64 B bytes
objects, distinct per message. One redis-py client per implementation (hiredis parser when
installed).

redis-queue    one thread, messages through one queue (put -> get -> ack)
    fastq                 per 100: q.put_many(batch); ds = q.get_many(100); q.ack_many(ds)
                          (q = fastq.Queue(name, backend=RedisStreams(url, prefix=...)))
    fastq per message     q.put(p); q.get().ack()
    redis-py batch        per 100: a pipeline of 100 XADD; XREADGROUP COUNT 100; XACK of the
                          100 ids (3 round trips per 100 messages)
    redis-py per message  XADD; XREADGROUP COUNT 1; XACK (3 round trips per message)
redis-e2e      no-op tasks: enqueue all, handled and acked by the implementation's workers;
               the round ends when the last one is acked
    fastq                 put_many per 100 onto the queue that a fastq.ConsumerPool(q, handler)
                          (threads, default AdaptiveConcurrency) started in setup consumes
    fastq loop            put_many per 100, then one thread: get_many(100), call the handler
                          on each, ack_many
    dramatiq              actor.send(i) per task to RedisBroker; a dramatiq Worker (8 threads,
                          its default; started in setup) runs the actor; worker_timeout=10 ms
                          so an idle consumer's back-off (up to 1 s by default) does not delay
                          the start of the round
    rq                    Queue.enqueue_many (prepare_data, one pipeline per 100), then
                          SimpleWorker([queue]).work(burst=True) in this thread (RQ's
                          forking Worker would add a fork per job)

Every round works on fresh keys (setup, untimed) and teardown (untimed) checks that every
message or task was delivered and acked exactly as many times as put (hand-written loops:
XPENDING is empty; fastq: the queue is empty and nothing is in flight; dramatiq: its queue
size is 0; RQ: N finished jobs, none failed), then FLUSHALLs. Messages per round:
FASTQ_BENCH_REDIS_ITEMS (default 20,000) in the batch rows, FASTQ_BENCH_REDIS_SLOW_ITEMS
(default 5,000) in the per-message rows, FASTQ_BENCH_REDIS_E2E (default 2,000) end to end;
all scaled by --bench-items / 100,000 when that is smaller (run.py --quick: a fifth).

The rows land in report.py's main table (scenarios redis-queue and redis-e2e; "fastq speed-up"
against each scenario's fastq row); at the end of the module a short table with the issue's
targets is printed as well. Select these with ``-k redis``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import JOIN_TIMEOUT, Settings, measure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from redis_server import RedisServer, find_executable

ITEMS = int(os.environ.get("FASTQ_BENCH_REDIS_ITEMS", "20000"))
SLOW_ITEMS = int(os.environ.get("FASTQ_BENCH_REDIS_SLOW_ITEMS", "5000"))
E2E_ITEMS = int(os.environ.get("FASTQ_BENCH_REDIS_E2E", "2000"))
FSYNC = os.environ.get("FASTQ_BENCH_REDIS_FSYNC", "everysec")
BATCH = 100
PAYLOAD_BYTES = 64

#: the issue's targets: scenario -> {peer impl: least fastq/peer speed ratio}
TARGETS: dict[str, dict[str, float]] = {
    "redis-queue": {"redis-py batch": 0.8, "redis-py per message": 5.0},
    "redis-e2e": {"dramatiq": 3.0, "rq": 3.0},
}


def _missing(module: str, dist: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"{dist} is not installed (pip install -e '.[bench]')"
    return None


def _fastq_missing() -> str | None:
    try:
        from fastq.backends import RedisStreams  # noqa: F401
    except ImportError as exc:
        return f"fastq.backends.RedisStreams is not importable: {exc}"
    return None


_SERVER_MISSING = (
    "redis-server is not on PATH (apt-get install redis-server)"
    if find_executable() is None
    else _missing("redis", "redis-py")
)
pytestmark = pytest.mark.skipif(_SERVER_MISSING is not None, reason=str(_SERVER_MISSING))


def _param(scenario: str, impl: str, why: str | None) -> Any:
    return pytest.param(
        scenario,
        impl,
        id=f"{scenario}-{impl.replace(' ', '-')}",
        marks=[pytest.mark.skipif(why is not None, reason=str(why))],
    )


# ---- the server and the workloads ----------------------------------------------------------


@pytest.fixture(scope="module")
def redis_bench(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """One redis-server for every row of this module; stopped (and its directory removed)
    at the end, whatever happened. Then prints the ratio table (output capture off)."""
    with tempfile.TemporaryDirectory(prefix="fastq-bench-redis-") as directory:
        server = RedisServer(
            directory, appendonly=FSYNC != "no", appendfsync="everysec" if FSYNC == "no" else FSYNC
        )
        server.start()
        _SERVER["rtt_us"] = _ping_rtt(server) * 1e6
        try:
            yield server
        finally:
            server.stop()
            capture = request.config.pluginmanager.getplugin("capturemanager")
            if capture is None:
                _print_summary()
            else:
                with capture.global_and_fixture_disabled():
                    _print_summary()


#: what the module measured about its server (the summary's header)
_SERVER: dict[str, float] = {}


def _ping_rtt(server: RedisServer, n: int = 200) -> float:
    """The median PING round trip over the loopback (seconds): the floor of one command."""
    client = server.client()
    try:
        client.ping()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            client.ping()
            times.append(time.perf_counter() - t0)
    finally:
        client.close()
    return sorted(times)[n // 2]


def _size(n: int, settings: Settings) -> int:
    """n scaled like the other benchmarks' item counts (--quick: a fifth), in whole batches."""
    factor = min(1.0, settings.items / Settings().items)
    return max(BATCH, round(n * factor / BATCH) * BATCH)


def payloads(n: int) -> list[bytes]:
    """n distinct 64 B payloads."""
    return [b"%08d" % i + b"." * (PAYLOAD_BYTES - 8) for i in range(n)]


def chunked(items: list[Any], size: int = BATCH) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _flush(server: RedisServer) -> None:
    client = server.client()
    try:
        client.flushall()
    finally:
        client.close()


def _new_name(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:8]}"


class ServerMeter:
    """What one round cost, per message: the server's commands (a Lua script and each command
    it runs count; INFO commandstats) and CPU time (INFO cpu: user + system), and this
    process's CPU time (all its threads: the client side). Sampled at the end of setup and at
    the start of teardown, so the round's checks are left out (an idle consumer's polls
    between setup and the timing are not)."""

    def __init__(self, server: RedisServer, n: int) -> None:
        self.client = server.client()
        self.n = n
        self.rounds: dict[str, list[float]] = {
            "server_cmds_per_msg": [],
            "server_cpu_us_per_msg": [],
            "client_cpu_us_per_msg": [],
        }
        self._start: tuple[int, float, float] | None = None

    def _sample(self) -> tuple[int, float, float]:
        own = time.process_time()
        stats = self.client.info("commandstats")
        calls = sum(int(v["calls"]) for v in stats.values())
        cpu = self.client.info("cpu")
        return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), own

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> None:
        if self._start is None:
            return
        calls, cpu, own = self._sample()
        calls0, cpu0, own0 = self._start
        self._start = None
        self.rounds["server_cmds_per_msg"].append((calls - calls0 - 2) / self.n)  # - the INFOs
        self.rounds["server_cpu_us_per_msg"].append((cpu - cpu0) * 1e6 / self.n)
        self.rounds["client_cpu_us_per_msg"].append((own - own0) * 1e6 / self.n)

    def finish(self, benchmark: Any) -> None:
        """Medians over the rounds into extra_info; closes the client."""
        for key, values in self.rounds.items():
            if values:
                benchmark.extra_info[key] = round(sorted(values)[len(values) // 2], 2)
        self.client.close()


# ---- redis-queue: hand-written redis-py loops ----------------------------------------------


class HandStream:
    """A stream with one consumer group, driven by hand with redis-py."""

    def __init__(self, server: RedisServer) -> None:
        self.r = server.client()
        self.stream = _new_name("stream")
        self.group = "g"
        self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)

    def batched(self, chunks: list[list[bytes]]) -> int:
        r, stream, group = self.r, self.stream, self.group
        got = 0
        for chunk in chunks:
            pipe = r.pipeline(transaction=False)
            for p in chunk:
                pipe.xadd(stream, {"d": p})
            pipe.execute()
            entries = r.xreadgroup(group, "c", {stream: ">"}, count=BATCH)[0][1]
            r.xack(stream, group, *[mid for mid, _ in entries])
            got += len(entries)
        return got

    def single(self, items: list[bytes]) -> int:
        r, stream, group = self.r, self.stream, self.group
        got = 0
        for p in items:
            r.xadd(stream, {"d": p})
            mid = r.xreadgroup(group, "c", {stream: ">"}, count=1)[0][1][0][0]
            r.xack(stream, group, mid)
            got += 1
        return got

    def check(self, n: int) -> None:
        length = self.r.xlen(self.stream)
        pending = self.r.xpending(self.stream, self.group)["pending"]
        if length != n or pending != 0:
            raise AssertionError(f"stream holds {length} entries (want {n}), {pending} pending")

    def close(self) -> None:
        self.r.close()


# ---- redis-queue: fastq ---------------------------------------------------------------------


class FastqQueue:
    """fastq.Queue on RedisStreams, one per round."""

    def __init__(self, server: RedisServer) -> None:
        import fastq
        from fastq.backends import RedisStreams

        self.backend = RedisStreams(server.url, prefix=_new_name("fq"))
        self.q = fastq.Queue(_new_name("q"), backend=self.backend)

    def batched(self, chunks: list[list[bytes]]) -> int:
        q = self.q
        got = 0
        for chunk in chunks:
            q.put_many(chunk)
            want = len(chunk)
            while want:
                ds = q.get_many(want)
                q.ack_many(ds)
                want -= len(ds)
                got += len(ds)
        return got

    def single(self, items: list[bytes]) -> int:
        q = self.q
        got = 0
        for p in items:
            q.put(p)
            q.get().ack()
            got += 1
        return got

    def check(self, n: int) -> None:
        s = self.q.statistics()
        if s.ready or s.in_flight or s.delayed:
            raise AssertionError(f"queue not drained: {s}")
        if s.put_total != n or s.acked_total != n:
            raise AssertionError(f"put {s.put_total}, acked {s.acked_total}, want {n} each")

    def close(self) -> None:
        self.q.close()
        self.backend.close()


QUEUE_IMPLS: dict[str, tuple[Callable[[RedisServer], Any], bool, str | None]] = {
    # impl -> (factory, batched?, why it cannot run)
    "fastq": (FastqQueue, True, _fastq_missing()),
    "fastq per message": (FastqQueue, False, _fastq_missing()),
    "redis-py batch": (HandStream, True, None),
    "redis-py per message": (HandStream, False, None),
}


@pytest.mark.parametrize(
    ("scenario", "impl"), [_param("redis-queue", i, QUEUE_IMPLS[i][2]) for i in QUEUE_IMPLS]
)
def test_redis_queue(
    benchmark: Any, settings: Settings, redis_bench: RedisServer, scenario: str, impl: str
) -> None:
    make, batched, _ = QUEUE_IMPLS[impl]
    n = _size(ITEMS if batched else SLOW_ITEMS, settings)
    items = payloads(n)
    chunks = chunked(items)

    meter = ServerMeter(redis_bench, n)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        peer = make(redis_bench)
        meter.start()
        return (peer,), {}

    def run(peer: Any) -> None:
        got = peer.batched(chunks) if batched else peer.single(items)
        if got != n:
            raise AssertionError(f"{impl}: received {got} messages, expected {n}")

    def teardown(peer: Any) -> None:
        meter.stop()
        try:
            peer.check(n)
        finally:
            peer.close()
            _flush(redis_bench)

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=impl,
        items=n,
        target=run,
        setup=setup,
        teardown=teardown,
        extra_info=_info(redis_bench),
    )
    meter.finish(benchmark)
    _record(benchmark, scenario, impl, n)


# ---- redis-e2e ------------------------------------------------------------------------------


class Countdown:
    """Counts handled tasks from any thread; `done` is set at the n-th."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def __call__(self, *_: Any) -> None:
        with self.lock:
            self.count += 1
            if self.count == self.n:
                self.done.set()

    def wait(self, what: str) -> None:
        if not self.done.wait(JOIN_TIMEOUT):
            raise AssertionError(f"{what}: {self.count} of {self.n} tasks handled")


def _poll(predicate: Callable[[], bool], what: str, interval: float = 0.0005) -> None:
    deadline = time.monotonic() + JOIN_TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(interval)


class FastqPool:
    """put_many onto a Queue consumed by a ConsumerPool started in setup."""

    def __init__(self, server: RedisServer, n: int) -> None:
        import fastq
        from fastq.backends import RedisStreams

        self.n = n
        self.backend = RedisStreams(server.url, prefix=_new_name("fq"))
        self.q = fastq.Queue(_new_name("q"), backend=self.backend)
        self.handled = Countdown(n)
        self.pool = fastq.ConsumerPool(self.q, self.handled, mode="threads")
        self.pool.start()

    def run(self, chunks: list[list[int]]) -> None:
        for chunk in chunks:
            self.q.put_many(chunk)
        self.handled.wait("fastq pool")
        # the handler returned; the round ends when the pool has acked the last one
        _poll(lambda: self.pool.statistics().processed >= self.n, "fastq pool acks")

    def check(self) -> None:
        s = self.q.statistics()
        if s.ready or s.in_flight or s.acked_total != self.n or self.handled.count != self.n:
            raise AssertionError(f"handled {self.handled.count} of {self.n}; {s}")

    def close(self) -> None:
        self.pool.stop(graceful=True, timeout=JOIN_TIMEOUT)
        self.q.close()
        self.backend.close()


class FastqLoop(FastqPool):
    """put_many, then one thread: get_many(100), handler on each, ack_many."""

    def __init__(self, server: RedisServer, n: int) -> None:
        import fastq
        from fastq.backends import RedisStreams

        self.n = n
        self.backend = RedisStreams(server.url, prefix=_new_name("fq"))
        self.q = fastq.Queue(_new_name("q"), backend=self.backend)
        self.handled = Countdown(n)

    def run(self, chunks: list[list[int]]) -> None:
        q, handler = self.q, self.handled
        for chunk in chunks:
            q.put_many(chunk)
        left = self.n
        while left:
            ds = q.get_many(min(BATCH, left))
            for d in ds:
                handler(d.message.payload)
            q.ack_many(ds)
            left -= len(ds)

    def close(self) -> None:
        self.q.close()
        self.backend.close()


class Dramatiq:
    """actor.send per task; a dramatiq Worker started in setup."""

    def __init__(self, server: RedisServer, n: int) -> None:
        import dramatiq
        from dramatiq.brokers.redis import RedisBroker

        self.n = n
        self.broker = RedisBroker(url=server.url, namespace=_new_name("dq"))
        self.handled = Countdown(n)
        self.queue_name = "bench"
        handled = self.handled

        def noop(i: int) -> None:
            handled()

        self.actor = dramatiq.actor(
            noop,
            actor_name=_new_name("noop"),
            queue_name=self.queue_name,
            broker=self.broker,
            max_retries=0,
        )
        self.worker = dramatiq.Worker(self.broker, worker_timeout=10)
        self.worker.start()

    def run(self, items: list[int]) -> None:
        send = self.actor.send
        for i in items:
            send(i)
        self.handled.wait("dramatiq")
        # the actor returned; the worker acks after it: wait until the queue holds nothing
        self.broker.join(self.queue_name, interval=1)

    def check(self) -> None:
        size = self.broker.do_qsize(self.queue_name)
        if size or self.handled.count != self.n:
            raise AssertionError(f"dramatiq: handled {self.handled.count} of {self.n}, {size} left")

    def close(self) -> None:
        self.worker.stop()
        self.broker.close()


class RQ:
    """enqueue_many (a pipeline per 100), then SimpleWorker.work(burst=True)."""

    def __init__(self, server: RedisServer, n: int) -> None:
        import _redis_tasks
        import rq

        self.n = n
        self.conn = server.client()
        self.queue = rq.Queue(_new_name("rq"), connection=self.conn)
        self.worker = rq.SimpleWorker([self.queue], connection=self.conn)
        self.func = _redis_tasks.noop

    def run(self, chunks: list[list[int]]) -> None:
        import rq

        queue, func = self.queue, self.func
        for chunk in chunks:
            with self.conn.pipeline() as pipe:
                queue.enqueue_many(
                    [rq.Queue.prepare_data(func, (i,)) for i in chunk], pipeline=pipe
                )
                pipe.execute()
        self.worker.work(burst=True, logging_level="ERROR")

    def check(self) -> None:
        finished = self.queue.finished_job_registry.count
        failed = self.queue.failed_job_registry.count
        if self.queue.count or finished != self.n or failed:
            raise AssertionError(
                f"rq: {finished} finished of {self.n}, {failed} failed, {self.queue.count} left"
            )

    def close(self) -> None:
        self.conn.close()


E2E_IMPLS: dict[str, tuple[Callable[[RedisServer, int], Any], bool, str | None]] = {
    # impl -> (factory, takes chunks?, why it cannot run)
    "fastq": (FastqPool, True, _fastq_missing()),
    "fastq loop": (FastqLoop, True, _fastq_missing()),
    "dramatiq": (Dramatiq, False, _missing("dramatiq", "dramatiq[redis]")),
    "rq": (RQ, True, _missing("rq", "rq")),
}


@pytest.mark.parametrize(
    ("scenario", "impl"), [_param("redis-e2e", i, E2E_IMPLS[i][2]) for i in E2E_IMPLS]
)
def test_redis_e2e(
    benchmark: Any, settings: Settings, redis_bench: RedisServer, scenario: str, impl: str
) -> None:
    make, takes_chunks, _ = E2E_IMPLS[impl]
    n = _size(E2E_ITEMS, settings)
    items = list(range(n))
    work: Any = chunked(items) if takes_chunks else items

    meter = ServerMeter(redis_bench, n)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        peer = make(redis_bench, n)
        meter.start()
        return (peer,), {}

    def teardown(peer: Any) -> None:
        meter.stop()
        try:
            peer.check()
        finally:
            peer.close()
            _flush(redis_bench)

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=impl,
        items=n,
        target=lambda peer: peer.run(work),
        setup=setup,
        teardown=teardown,
        extra_info=_info(redis_bench),
    )
    meter.finish(benchmark)
    _record(benchmark, scenario, impl, n)


# ---- reporting ------------------------------------------------------------------------------


def _info(server: RedisServer) -> dict[str, Any]:
    client = server.client()
    try:
        version = client.info("server").get("redis_version")
    finally:
        client.close()
    return {
        "redis_version": version,
        "redis_ping_rtt_us": round(_SERVER.get("rtt_us", 0.0), 1),
        "redis_fsync": FSYNC,
        "redis_py": _dist_version("redis"),
        "hiredis": _dist_version("hiredis"),
        "dramatiq": _dist_version("dramatiq"),
        "rq": _dist_version("rq"),
    }


def _dist_version(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


#: (scenario, impl) -> (median seconds per round, messages per round; per message: server
#: commands, server and client CPU microseconds), from this module's rows
_RESULTS: dict[tuple[str, str], tuple[float, int, float, float, float]] = {}


def _record(benchmark: Any, scenario: str, impl: str, n: int) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    info = benchmark.extra_info
    _RESULTS[(scenario, impl)] = (
        float(stats.stats.median),
        n,
        info.get("server_cmds_per_msg", float("nan")),
        info.get("server_cpu_us_per_msg", float("nan")),
        info.get("client_cpu_us_per_msg", float("nan")),
    )


def _print_summary() -> None:
    """The issue's ratios (fastq messages/s over the peer's), printed at the end of the module."""
    if not _RESULTS:
        return
    lines = [
        "",
        f"Redis Streams (redis-server, appendfsync {FSYNC}; PING round trip "
        f"{_SERVER.get('rtt_us', float('nan')):.0f} us): medians, fastq speed-up = "
        "fastq msgs/s / row msgs/s",
    ]
    for scenario in ("redis-queue", "redis-e2e"):
        rows = {impl: v for (s, impl), v in _RESULTS.items() if s == scenario}
        if not rows:
            continue
        fq = rows.get("fastq")
        for impl, (median, n, cmds, cpu, own) in rows.items():
            rate = n / median
            cell = (
                f"  {scenario:<12} {impl:<21} {median * 1e3:9.1f} ms  {rate / 1e3:8.1f} k msgs/s"
                f"  per msg: server {cmds:4.1f} cmds {cpu:5.1f} us CPU, client {own:5.1f} us CPU"
            )
            if fq is not None and impl != "fastq":
                ratio = (fq[1] / fq[0]) / rate
                cell += f"  fastq {ratio:5.2f}x"
                target = TARGETS.get(scenario, {}).get(impl)
                if target is not None:
                    cell += f"  (target >= {target:g}x: {'met' if ratio >= target else 'MISSED'})"
            lines.append(cell)
    print("\n".join(lines), flush=True)
    _RESULTS.clear()
