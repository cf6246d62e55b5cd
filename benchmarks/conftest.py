"""pytest configuration for the fastq benchmarks (not part of the default test run).

Run them with ``python benchmarks/run.py`` (which also prints the report), or directly with
``python -m pytest benchmarks`` from the repository root. Options scale the workloads:

    --bench-items N        items per round in the per-item scenarios   (default 100,000)
    --bench-batch-items N  items per round in the batch scenarios      (default 1,000,000)
    --bench-batch-size N   put_many/get_many batch size                (default 1,000)
    --bench-capacity N     ring capacity (bounded peers: same maxsize) (default 1,024)
    --bench-thread-capacity N  ring capacity in the two-thread scenarios   (default 65,536)
    --bench-rounds N       timed rounds per benchmark                  (default 15)
    --bench-warmup N       untimed rounds first                        (default 1)
    --bench-budget S       seconds of timed rounds per benchmark       (default 5.0)
    --bench-min-rounds N   but at least this many rounds               (default 3)

and for the SegmentLog benchmarks (bench_log_*.py) the --bench-log-* sizes of harness.Settings
(records per round, bytes per round, threads...) and --bench-log-dir (where their stores live;
default: the system temporary directory, which should be on a real disk, not tmpfs), for
the hashing and dedup benchmarks (bench_hash.py, bench_dedup.py) --bench-hash-keys,
--bench-hash-array-keys, --bench-hash-calls and --bench-dedup-keys, and for the work-queue
benchmarks (bench_queue.py) --bench-queue-items and --bench-queue-slow-items (their on-disk
queues live under --bench-log-dir too).

Fixtures: ``settings`` (those sizes), ``peer_type`` (the peer class named by the test's
``impl`` parameter, skipping peers that are not installed), ``aio_loop`` (a fresh event loop),
``store_type`` (the log store class named by the test's ``store`` parameter), ``log_dir``
(a directory for the session's log stores and on-disk work queues, removed at the end),
``hasher_type`` and ``window_type`` (the hashing implementation and dedup window named by the
test's ``hasher`` and ``window`` parameters), ``queue_type`` (the work queue named by the
test's ``queue_impl`` parameter).

The pipeline benchmarks (bench_pipeline.py) take --bench-pipeline-items (messages per round end
to end), --bench-pipeline-adaptive-items (the adaptive scenario's backlog) and
--bench-pipeline-workers (worker threads or tasks per lane of the hand-written pipelines).
"""

from __future__ import annotations

import asyncio
import datetime
import fnmatch
import hashlib
import importlib.metadata
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

# One BLAS thread, set before anything imports numpy (bench_hash, bench_dedup, bench_log_*).
# numpy's OpenBLAS starts a worker thread per extra core when numpy is imported. It sleeps
# until a BLAS call (a matmul, say) wakes it, and afterwards busy-waits for more work before
# sleeping again (~0.1 s of CPU measured here after one 200x200 matmul). On this 2-core
# machine a spinning thread competes with the benchmark's own threads for the cores
# (blas_thread_server had shown up in perf profiles of earlier runs), and no benchmark needs
# BLAS threads, so there is nothing to lose. setdefault: a value set in the environment wins
# (the JSON records the values in effect).
_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
for _var in _BLAS_ENV:
    os.environ.setdefault(_var, "1")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # bench_*.py import these helpers as top-level modules
    sys.path.insert(0, str(HERE))

from harness import Settings  # noqa: E402
from hash_peers import DEDUP_REGISTRY, HASH_REGISTRY, DedupPeer, HashPeer  # noqa: E402
from log_peers import LOG_REGISTRY, LogPeer  # noqa: E402
from peers import REGISTRY, Implementation, Peer  # noqa: E402
from queue_peers import QUEUE_REGISTRY, WorkQueuePeer  # noqa: E402
from topic_peers import TOPIC_REGISTRY  # noqa: E402

_OPTIONS: dict[str, str] = {
    "items": "items moved per round by the per-item scenarios",
    "batch_items": "items moved per round by the batch scenarios",
    "batch_size": "put_many/get_many batch size",
    "capacity": "ring capacity (bounded peers get the same maxsize)",
    "thread_capacity": "ring capacity in the two-thread scenarios",
    "rounds": "timed rounds per benchmark",
    "warmup": "untimed warm-up rounds per benchmark",
    "budget": "seconds of timed rounds per benchmark (slower ones get fewer rounds)",
    "min_rounds": "the fewest timed rounds a benchmark gets",
    "log_items": "SegmentLog: records per round, per-record appends (fastq and fast peers)",
    "log_slow_items": "SegmentLog: records per round, SQLite/file peers and fsync per record",
    "log_many_bytes": "SegmentLog: payload bytes per round, append_many (fastq, memcpy)",
    "log_read_records": "SegmentLog: records in the log read() scans each round",
    "log_threads": "SegmentLog: appending threads in the group-commit scenarios",
    "log_commit_batches": "SegmentLog: batches of 100 per thread per round (group commit)",
    "log_thread_records": "SegmentLog: single appends per thread per round (group commit)",
    "log_crash_bytes": "SegmentLog: log bytes the killed writer leaves unflushed",
    "hash_keys": "hashing: bytes keys per round (partition-list; the array scenarios' loop)",
    "hash_array_keys": "hashing: uint64 keys per round, fastq partition_many on an array",
    "hash_calls": "hashing: single hash64 calls per round",
    "dedup_keys": "dedup: keys in the stream each round checks",
    "queue_items": "work queue: messages per round (fastq, the in-memory lease table)",
    "queue_slow_items": "work queue: messages per round (the SQLite peers)",
    "topic_items": "topic: messages per round (fastq.Topic, the dict of lists)",
    "topic_slow_items": "topic: messages per round (the SQLite topic)",
    "pipeline_items": "pipelines: messages per round, end to end (e2e_threads, e2e_asyncio)",
    "pipeline_adaptive_items": "pipelines: backlog per round in the adaptive scenario",
    "pipeline_workers": "pipelines: worker threads (asyncio: tasks) per lane, hand-written",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fastq-bench", "fastq benchmark sizes")
    defaults = Settings()
    for field, help_text in _OPTIONS.items():
        default = getattr(defaults, field)
        group.addoption(
            "--bench-" + field.replace("_", "-"),
            type=type(default),
            default=default,
            dest="bench_" + field,
            help=f"{help_text} (default {default:,})",
        )
    group.addoption(
        "--bench-log-dir",
        default=None,
        dest="bench_log_dir",
        help="where the SegmentLog benchmarks create their stores: a real disk, not tmpfs "
        f"(default: {tempfile.gettempdir()})",
    )


def _settings(config: pytest.Config) -> Settings:
    values = {field: config.getoption("bench_" + field) for field in _OPTIONS}
    for field, value in values.items():
        least = 0 if field in ("warmup", "budget") else 1
        if value < least:
            option = "--bench-" + field.replace("_", "-")
            raise pytest.UsageError(f"{option} must be >= {least}, got {value}")
    return Settings(**values)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """Collect bench_*.py even under the root config's python_files (test_*.py).

    If python_files already matches (run.py passes ``-o python_files=bench_*.py``) or the file
    was named on the command line, pytest's python plugin collects it and we stay out.
    """
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    patterns = parent.config.getini("python_files")
    if parent.session.isinitpath(file_path) or any(
        fnmatch.fnmatch(file_path.name, pattern) for pattern in patterns
    ):
        return None
    module: pytest.Module = pytest.Module.from_parent(parent, path=file_path)
    return module


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = _settings(config)
    peers = ", ".join(
        f"{name} {cls.version()}" if cls.missing() is None else f"{name} (missing)"
        for name, cls in REGISTRY.items()
    )
    log_peers = ", ".join(
        f"{name} {cls.version()}" if cls.missing() is None else f"{name} (missing)"
        for name, cls in LOG_REGISTRY.items()
        if cls.dist not in (None, "fastq-queue")
    )
    hash_peers = ", ".join(
        sorted(
            {
                f"{cls.dist} {cls.version()}" if cls.missing() is None else f"{cls.dist} (missing)"
                for cls in (*HASH_REGISTRY.values(), *DEDUP_REGISTRY.values())
                if cls.dist not in (None, "fastq-queue")
            }
        )
    )
    queue_peers = ", ".join(
        f"{cls.dist} {cls.version()}" if cls.missing() is None else f"{cls.dist} (missing)"
        for cls in {cls.dist: cls for cls in QUEUE_REGISTRY.values()}.values()
        if cls.dist not in (None, "fastq-queue")
    )
    where = _log_base(config)
    fs = _filesystem(where)
    return [
        f"fastq bench: items={s.items:,} batch_items={s.batch_items:,} "
        f"batch_size={s.batch_size:,} capacity={s.capacity:,} rounds={s.rounds} "
        f"warmup={s.warmup} budget={s.budget}s min_rounds={s.min_rounds}",
        f"fastq bench peers: {peers}",
        f"fastq log bench: items={s.log_items:,} slow_items={s.log_slow_items:,} "
        f"many_bytes={s.log_many_bytes:,} read_records={s.log_read_records:,} "
        f"threads={s.log_threads} commit_batches={s.log_commit_batches} "
        f"thread_records={s.log_thread_records} crash_bytes={s.log_crash_bytes:,}; "
        f"stores in {where} ({fs.get('fstype', '?')} on {fs.get('device', '?')})",
        f"fastq log bench peers: {log_peers}",
        f"fastq hash bench: hash_keys={s.hash_keys:,} hash_array_keys={s.hash_array_keys:,} "
        f"hash_calls={s.hash_calls:,} dedup_keys={s.dedup_keys:,}; peers: {hash_peers}",
        f"fastq work-queue bench: items={s.queue_items:,} slow_items={s.queue_slow_items:,}; "
        f"peers: {queue_peers}",
        f"fastq topic bench: items={s.topic_items:,} slow_items={s.topic_slow_items:,}",
        f"fastq pipeline bench: items={s.pipeline_items:,} "
        f"adaptive_items={s.pipeline_adaptive_items:,} hand-written workers/lane="
        f"{s.pipeline_workers}",
    ]


def _log_base(config: pytest.Config) -> str:
    value = config.getoption("bench_log_dir")
    return os.path.abspath(value if value else tempfile.gettempdir())


def _filesystem(path: str) -> dict[str, str]:
    """The mount that holds path: device, mount point, filesystem type (Linux; else {})."""
    best: dict[str, str] = {}
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best.get("mount", "")):
                    best = {"device": fields[0], "mount": point, "fstype": fields[2]}
    except OSError:
        pass
    return best


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return []


def _fastq_build() -> dict[str, Any]:
    """Which native core was measured: the working tree may be rebuilt between runs."""
    import fastq
    import fastq._core

    so = Path(fastq._core.__file__ or "")
    info: dict[str, Any] = {"version": fastq.__version__, "core": so.name}
    try:
        info["core_sha256"] = hashlib.sha256(so.read_bytes()).hexdigest()[:16]
        mtime = so.stat().st_mtime
        info["core_built"] = datetime.datetime.fromtimestamp(
            mtime, datetime.timezone.utc
        ).isoformat(timespec="seconds")
    except OSError:
        pass
    root = HERE.parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        info["commit"] = git("rev-parse", "--short", "HEAD")
        info["src_dirty"] = bool(git("status", "--porcelain", "--", "src"))
    except (OSError, subprocess.SubprocessError):
        pass
    return info


_LOAD_AT_START = pytest.StashKey[list[float]]()
_BUILD_AT_START = pytest.StashKey[dict[str, Any]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_LOAD_AT_START] = _load()
    session.config.stash[_BUILD_AT_START] = _fastq_build()


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    """Record the sizes, peers and machine next to the numbers, for report.py."""
    build = config.stash.get(_BUILD_AT_START, {})
    now = _fastq_build()
    # the module loaded is the one from the start; a rebuild on disk means results may mix
    build["core_rebuilt_during_run"] = now.get("core_sha256") != build.get("core_sha256")
    output_json["fastq_bench"] = {
        "settings": _settings(config).as_dict(),
        "fastq": build,
        "loadavg_start": config.stash.get(_LOAD_AT_START, []),
        "loadavg_end": _load(),
        "peers": {
            name: {
                "version": cls.version(),
                "available": cls.missing() is None,
                "note": cls.note,
            }
            for name, cls in REGISTRY.items()
        },
        "log_peers": {
            name: {
                "version": cls.version(),
                "available": cls.missing() is None,
                "durable": cls.durable,
                "mode": cls.mode,
            }
            for name, cls in LOG_REGISTRY.items()
        },
        "log_dir": {"path": _log_base(config), **_filesystem(_log_base(config))},
        "hash_peers": {
            name: {"version": cls.version(), "available": cls.missing() is None, "note": cls.note}
            for name, cls in HASH_REGISTRY.items()
        },
        "dedup_peers": {
            name: {"version": cls.version(), "available": cls.missing() is None, "note": cls.note}
            for name, cls in DEDUP_REGISTRY.items()
        },
        "queue_peers": {
            name: {
                "version": cls.version(),
                "available": cls.missing() is None,
                "memory_mode": cls.memory_mode,
                "durable_mode": cls.durable_mode,
            }
            for name, cls in QUEUE_REGISTRY.items()
        },
        "topic_peers": {
            name: {
                "dist": cls.dist,
                "version": cls.version(),
                "available": cls.missing() is None,
                "memory_mode": cls.memory_mode,
                "durable_mode": cls.durable_mode,
            }
            for name, cls in TOPIC_REGISTRY.items()
        },
        "sqlite": sqlite3.sqlite_version,
        "numpy": _version("numpy"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        "switch_interval": sys.getswitchinterval(),
        "blas_env": {var: os.environ.get(var) for var in _BLAS_ENV},
    }


#: test parameters naming a hashing implementation, a dedup window or a work queue, and their
#: registries
_NAMED_PARAMS: dict[str, Mapping[str, type[Implementation]]] = {
    "hasher": HASH_REGISTRY,
    "window": DEDUP_REGISTRY,
    "queue_impl": QUEUE_REGISTRY,
    "topic_impl": TOPIC_REGISTRY,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the benchmarks of peers that are not installed, before any fixture runs.

    (Skipping later, once the benchmark fixture exists, makes pytest-benchmark warn that the
    fixture was not used, and warnings are errors in this project.)
    """
    for item in items:
        callspec = getattr(item, "callspec", None)
        impl = callspec.params.get("impl") if callspec is not None else None
        if impl in REGISTRY:
            reason = REGISTRY[impl].missing()
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
        store = callspec.params.get("store") if callspec is not None else None
        if store in LOG_REGISTRY:
            reason = LOG_REGISTRY[store].missing()
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
        for param, registry in _NAMED_PARAMS.items():
            name = callspec.params.get(param) if callspec is not None else None
            if isinstance(name, str) and name in registry:
                reason = registry[name].missing()
                if reason is not None:
                    item.add_marker(pytest.mark.skip(reason=reason))
        params = callspec.params if callspec is not None else {}
        queue_impl = params.get("queue_impl")
        if queue_impl in QUEUE_REGISTRY and QUEUE_REGISTRY[queue_impl].missing() is None:
            # a work queue may exist and still lack a mode (fastq's durable queue, for a while)
            reason = QUEUE_REGISTRY[queue_impl].unsupported(params.get("mode") == "durable")
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> Settings:
    return _settings(pytestconfig)


_Impl = TypeVar("_Impl", bound=type[Implementation])


def _available(cls: _Impl) -> _Impl:
    """cls, or skip the test when its implementation is not installed here."""
    reason = cls.missing()
    if reason is not None:
        pytest.skip(reason)
    return cls


@pytest.fixture
def peer_type(impl: str) -> type[Peer]:
    """The adapter class for the test's `impl` parameter; skips peers not installed."""
    return _available(REGISTRY[impl])


@pytest.fixture
def store_type(store: str) -> type[LogPeer]:
    """The log store class for the test's `store` parameter; skips stores not installed."""
    return _available(LOG_REGISTRY[store])


@pytest.fixture
def hasher_type(hasher: str) -> type[HashPeer]:
    """The hashing implementation for the test's `hasher` parameter; skips it if missing."""
    return _available(HASH_REGISTRY[hasher])


@pytest.fixture
def window_type(window: str) -> type[DedupPeer]:
    """The dedup window class for the test's `window` parameter; skips it if missing."""
    return _available(DEDUP_REGISTRY[window])


@pytest.fixture
def queue_type(queue_impl: str) -> type[WorkQueuePeer]:
    """The work queue class for the test's `queue_impl` parameter; skips it if missing."""
    return _available(QUEUE_REGISTRY[queue_impl])


@pytest.fixture(scope="session")
def log_dir(pytestconfig: pytest.Config) -> Iterator[str]:
    """A fresh directory for the session's log stores (each round makes its own inside it),
    removed at the end of the session, whatever happened."""
    base = _log_base(pytestconfig)
    os.makedirs(base, exist_ok=True)
    path = tempfile.mkdtemp(prefix="fastq-bench-log-", dir=base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def aio_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop for one benchmark, closed (with its async generators) afterwards."""
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
