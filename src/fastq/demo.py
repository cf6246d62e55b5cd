"""The ``fastq demo`` scenario as a library function: a durable pipeline with checked
exactly-once accounting.

``run_demo()`` builds, on the embedded default (durable topic and queues in a directory)::

    steady producer (rate, watermark, "block") ─┐
    bulk producer (burst, low priority, "shed") ─┴▶ Topic "orders" (keyed, 4 partitions)
        ▶ ingest stage (group "router", holds back while a lane is deep)
        ▶ Router ─▶ critical │ standard │ compute │ long   (durable Queues, dedup window)
        ▶ ConsumerPool per lane (adaptive concurrency, RetryPolicy, breaker on standard,
          idempotency ledger) ─▶ ack, or ─▶ the lane's durable dead-letter queue

and returns a :class:`DemoReport` whose verdict is *checked* from what happened: every id
the producers had accepted was processed exactly once or dead-lettered, the dead letters are
exactly the planned permanent failures, the retries are exactly the planned transient ones and
every duplicate send was refused. No output: the CLI (``fastq demo``) renders progress and the
report.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ._core import Histogram, Message
from .errors import Overloaded, Permanent
from .pipeline import (
    AdaptiveConcurrency,
    CircuitBreaker,
    ConsumerPool,
    Producer,
    RetryPolicy,
    Router,
)
from .semantics import Queue, Topic

__all__ = (
    "LANES",
    "DemoCheck",
    "DemoDeadLetterGroup",
    "DemoLane",
    "DemoLaneProgress",
    "DemoProgress",
    "DemoReport",
    "run_demo",
)

#: the lanes, in display order
LANES = ("critical", "standard", "compute", "long")

_TYPES = {
    "critical": "payment.capture",
    "standard": "order.created",
    "compute": "image.resize",
    "long": "report.monthly",
}
_BREAKER_LANE = "standard"
_PERMANENT_SHARE = 0.02
_TRANSIENT_SHARE = 0.06
_DUPLICATE_SHARE = 0.03
_BURST_SHARE = 0.10  # of the messages, sent by the bulk producer in one burst
_BURST_AT = 0.4  # after this share of the steady messages
_LANE_CAP = 400  # the ingest stage holds back while a lane is this deep
_WATERMARK = 200  # producers' high watermark on the topic's lag
_RATE = 1_800.0  # the steady producer's rate at work_scale 1, messages per second
_BLOCK = 64 * 1024  # bytes hashed per compute step
#: floors for the adaptive limits: sleeping handlers hide no CPU cost, so the limiter alone
#: would keep a slow lane narrow on a busy two-core machine
_MIN_CONCURRENCY = {"critical": 2, "standard": 4, "compute": 2, "long": 8}


# ---- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoLaneProgress:
    """One lane during the run."""

    name: str
    depth: int
    """Messages in the lane: ready, delayed and in flight."""
    processed: int
    rate: float
    """Messages processed per second since the previous progress report."""
    p99: float | None
    """Enqueue-to-ack latency p99 so far, seconds (None before the first message)."""
    limit: int
    """The pool's concurrency limit now."""
    breaker: str | None
    """The circuit breaker's state (None: the lane has none)."""


@dataclass(frozen=True)
class DemoProgress:
    """A snapshot passed to ``on_progress`` every ``progress_interval`` seconds."""

    elapsed: float
    planned: int
    """Messages the scenario will try to send (``messages``)."""
    attempted: int
    """Messages offered to the producers so far (accepted or shed)."""
    produced: int
    processed: int
    dead_lettered: int
    shed: int
    backlog: int
    """Records in the topic not yet forwarded to a lane."""
    producing: bool
    lanes: tuple[DemoLaneProgress, ...]


@dataclass(frozen=True)
class DemoLane:
    """Per-lane totals and latency (enqueue to ack, seconds) at the end."""

    name: str
    processed: int
    dead_lettered: int
    retried: int
    deduplicated: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    limit: int
    breaker: str | None


@dataclass(frozen=True)
class DemoDeadLetterGroup:
    """A dead-letter group (same fingerprint) of one lane."""

    lane: str
    fingerprint: str
    error_type: str
    count: int
    reasons: dict[str, int]
    sample: str


@dataclass(frozen=True)
class DemoCheck:
    """One accounting check: its name, whether it held, and the figures behind it."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class DemoReport:
    """What the demo did and whether its accounting adds up (``ok``)."""

    directory: str | None
    """Where the durable data was (None: a temporary directory, removed)."""
    seed: int
    planned: int
    elapsed: float
    """Seconds from the first send to the last settlement."""
    produced: int
    """Distinct messages the producers accepted."""
    processed: int
    """Distinct messages handled successfully (and acked)."""
    retried: int
    """Transient failures retried (from the pools' statistics)."""
    retries_expected: int
    dead_lettered: int
    """Distinct messages read back from the dead-letter queues."""
    dead_letter_expected: int
    duplicates_sent: int
    deduplicated: int
    """Duplicate sends refused (queues' dedup windows plus the pools' ledgers)."""
    shed: int
    shed_by_priority: dict[str, int]
    blocked_seconds: float
    """Time the producers spent held back (rate, watermark)."""
    lost: int
    """Produced, yet neither processed nor dead-lettered: must be 0."""
    processed_twice: int
    """Messages whose handler succeeded more than once: must be 0."""
    stopped_early: bool
    """``duration`` ran out before every planned message was sent."""
    throughput: float
    """Settled messages (processed + dead-lettered) per second."""
    lanes: tuple[DemoLane, ...]
    dlq_groups: tuple[DemoDeadLetterGroup, ...]
    checks: tuple[DemoCheck, ...]

    @property
    def ok(self) -> bool:
        """True when every accounting check held."""
        return all(c.ok for c in self.checks)

    @property
    def verdict(self) -> str:
        """One line: the checked outcome."""
        if self.ok:
            return (
                f"OK: all {self.produced:,} produced messages accounted for: "
                f"{self.processed:,} processed exactly once, {self.dead_lettered:,} "
                f"dead-lettered as planned, {self.deduplicated:,} duplicates refused, "
                f"{self.shed:,} shed before entry, 0 lost"
            )
        failed = ", ".join(f"{c.name} ({c.detail})" for c in self.checks if not c.ok)
        return f"FAILED: the accounting does not add up: {failed}"

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready plain data (``ok`` and ``verdict`` included)."""
        out: dict[str, Any] = _lists(asdict(self))
        out["ok"] = self.ok
        out["verdict"] = self.verdict
        return out


def _lists(obj: Any) -> Any:
    """Tuples become lists, recursively (what JSON gives back)."""
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lists(v) for v in obj]
    return obj


# ---- latency recording ------------------------------------------------------------------------


class _Latencies:
    """Per-lane latency in a native :class:`fastq.Histogram` (lock-free; ``record`` is called
    from handler threads)."""

    def __init__(self) -> None:
        self._hist = Histogram()

    def record(self, seconds: float) -> None:
        self._hist.record(seconds)

    def count(self) -> int:
        return int(self._hist.count)

    def percentiles(self) -> tuple[float, float, float, float] | None:
        """(p50, p95, p99, max), or None without samples."""
        snap = self._hist.snapshot()
        if not snap.count:
            return None
        return snap.p50, snap.p95, snap.p99, snap.max


# ---- the plan -------------------------------------------------------------------------------


@dataclass
class _Planned:
    index: int
    lane: str
    priority: str
    transient: int = 0  # failures before success
    permanent: bool = False
    duplicate: bool = False
    bulk: bool = False


def _plan(messages: int, seed: int) -> list[_Planned]:
    rng = random.Random(seed)
    bulk = int(messages * _BURST_SHARE)
    steady = messages - bulk
    out: list[_Planned] = []
    for i in range(steady):
        r = rng.random()
        if r < 0.10:
            lane, priority = "critical", "critical"
        elif r < 0.25:
            lane, priority = "compute", "normal"
        elif r < 0.30:
            lane, priority = "long", "normal"
        else:
            lane, priority = "standard", "normal"
        p = _Planned(i, lane, priority)
        f = rng.random()
        if f < _PERMANENT_SHARE:
            p.permanent = True
        elif f < _PERMANENT_SHARE + _TRANSIENT_SHARE:
            p.transient = 2 if rng.random() < 0.3 else 1
        p.duplicate = rng.random() < _DUPLICATE_SHARE
        out.append(p)
    burst_at = int(steady * _BURST_AT)
    burst = [_Planned(steady + j, "standard", "low", bulk=True) for j in range(bulk)]
    return out[:burst_at] + burst + out[burst_at:]


# ---- validation -----------------------------------------------------------------------------


def _check_args(
    directory: str | None,
    messages: int,
    duration: float | None,
    seed: int,
    on_progress: object,
    progress_interval: float,
    work_scale: float,
) -> None:
    if directory is not None and not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a str or None, got {type(directory).__name__}")
    if isinstance(messages, bool) or not isinstance(messages, int):
        raise TypeError(f"messages must be an int, got {type(messages).__name__}")
    if messages < 1:
        raise ValueError(f"messages must be >= 1, got {messages!r}")
    for name, value, allow_none in (
        ("duration", duration, True),
        ("progress_interval", progress_interval, False),
        ("work_scale", work_scale, False),
    ):
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not (math.isfinite(value) and value > 0) and not (name == "work_scale" and value == 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if on_progress is not None and not callable(on_progress):
        raise TypeError(f"on_progress must be callable or None, got {type(on_progress).__name__}")


# ---- the run --------------------------------------------------------------------------------


class _Ledger:
    """What the handlers saw: calls and successes per message id, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.successes: dict[str, int] = {}
        self.transient_failures = 0


@dataclass
class _State:
    produced: set[str] = field(default_factory=set)
    attempted: int = 0
    refused: int = 0  # offered messages a producer refused (shed, or held back too long)
    duplicates_sent: int = 0
    refused_duplicates: int = 0
    producing: bool = True
    stopped_early: bool = False
    error: BaseException | None = None


def run_demo(
    directory: str | None = None,
    *,
    messages: int = 20_000,
    duration: float | None = None,
    seed: int = 1,
    on_progress: Callable[[DemoProgress], None] | None = None,
    progress_interval: float = 0.25,
    work_scale: float = 1.0,
    _lose: Callable[[str], bool] | None = None,
) -> DemoReport:
    """Run the demo pipeline once and return its checked report.

    ``directory``: where the durable topic and queues go (a fresh ``demo-*`` folder is made
    inside it and kept); None uses a temporary folder, removed afterwards. ``messages``: how
    many to send (about 10% of them in a low-priority burst). ``duration``: stop sending after
    that many seconds, then drain (the accounting stays exact). ``seed``: which messages fail,
    retry and repeat. ``on_progress`` is called from this thread every ``progress_interval``
    seconds with a :class:`DemoProgress`. ``work_scale`` scales the handlers' simulated work
    and divides the steady producer's rate (1,800 messages/s at 1.0, so the default run takes
    about 10 s; 0: no work and no rate limit).
    ``_lose`` is a test hook: a handler "succeeds" on ids it returns True for without
    recording them, so the accounting must fail.
    """
    _check_args(directory, messages, duration, seed, on_progress, progress_interval, work_scale)
    if directory is None:
        root = tempfile.mkdtemp(prefix="fastq-demo-")
        keep = False
    else:
        base = os.fspath(directory)
        os.makedirs(base, exist_ok=True)
        root = tempfile.mkdtemp(prefix="demo-", dir=base)
        keep = True
    try:
        return _run(
            root if keep else None,
            root,
            messages,
            duration,
            seed,
            on_progress,
            progress_interval,
            work_scale,
            _lose,
        )
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _run(
    shown_dir: str | None,
    root: str,
    messages: int,
    duration: float | None,
    seed: int,
    on_progress: Callable[[DemoProgress], None] | None,
    progress_interval: float,
    work_scale: float,
    lose: Callable[[str], bool] | None,
) -> DemoReport:
    plan = _plan(messages, seed)
    rate = _RATE / work_scale if work_scale > 0 else None  # 18,000 steady messages: ~10 s

    topic = Topic("orders", partitions=4, path=root)
    lanes = {
        name: Queue(
            name,
            path=root,
            maxsize=None,
            dedup_window=3600.0,
            max_deliveries=5,
            visibility_timeout=30.0,
        )
        for name in LANES
    }
    router = (
        Router(lanes, "standard")
        .route_priority("critical", "critical")
        .route_type("image.*", "compute")
        .route_type("report.*", "long")
    )
    steady = Producer(
        topic,
        rate=rate,
        burst=None if rate is None else max(1, int(rate / 20)),
        high_watermark=_WATERMARK,
        policy="block",
        max_block=30.0,
        name="orders",
    )
    bulk = Producer(topic, high_watermark=_WATERMARK, policy="shed", name="bulk-import")

    by_id: dict[str, _Planned] = {}
    ledger = _Ledger()
    latencies = {name: _Latencies() for name in LANES}
    block = hashlib.sha256(str(seed).encode()).digest() * (_BLOCK // 32)
    sleeps = {"critical": 0.001, "standard": 0.002, "long": 0.025}

    def make_handler(lane: str) -> Callable[[Message], None]:
        rec = latencies[lane].record
        nap = sleeps.get(lane, 0.0) * work_scale
        hash_rounds = max(1, round(4 * work_scale)) if work_scale > 0 else 0

        def handle(message: Message) -> None:
            mid = message.id
            p = by_id[mid]
            with ledger.lock:
                calls = ledger.calls[mid] = ledger.calls.get(mid, 0) + 1
            if lane == "compute":
                for _ in range(hash_rounds):
                    hashlib.sha256(block).digest()  # real CPU work (releases the GIL)
            elif nap:
                time.sleep(nap)
            if p.permanent:  # two causes, so the dead letters form two groups
                if p.index % 3:
                    try:
                        raise KeyError(f"sku-{p.index % 50}")
                    except KeyError as exc:
                        raise Permanent(f"order {p.index}: unknown SKU") from exc
                try:
                    raise ValueError(f"amount {-p.index}")
                except ValueError as exc:
                    raise Permanent(f"order {p.index}: negative amount") from exc
            if calls <= p.transient:
                with ledger.lock:
                    ledger.transient_failures += 1
                raise ConnectionError(f"order {p.index}: downstream timed out (planned)")
            if lose is not None and lose(mid):
                return  # the test hook: acked, never recorded
            with ledger.lock:
                ledger.successes[mid] = ledger.successes.get(mid, 0) + 1
            rec(max(0.0, (time.time_ns() - message.timestamp) / 1e9))

        return handle

    breaker = CircuitBreaker(
        failure_rate=0.5, min_calls=50, window=5.0, reset_timeout=0.5, name=_BREAKER_LANE
    )
    pools = {
        name: ConsumerPool(
            lanes[name],
            make_handler(name),
            concurrency=AdaptiveConcurrency(min=_MIN_CONCURRENCY[name], max=32),
            retry=RetryPolicy(
                max_attempts=4, base=0.005, cap=0.05, seed=seed, retry_on=(ConnectionError,)
            ),
            circuit_breaker=breaker if name == _BREAKER_LANE else None,
            idempotent=True,
            name=f"demo-{name}",
        )
        for name in LANES
    }
    state = _State()
    produced_done = threading.Event()
    ingest_done = threading.Event()
    abort = threading.Event()

    def produce() -> None:
        rng = random.Random(seed ^ 0x5EED)
        pending: list[tuple[int, Message]] = []  # duplicates, resent a little later
        started = time.monotonic()
        try:
            for n, p in enumerate(plan):
                if abort.is_set():
                    break
                if duration is not None and time.monotonic() - started >= duration:
                    state.stopped_early = True
                    break
                msg = Message(
                    {"order": p.index, "amount": rng.randint(1, 500)},
                    key=f"customer-{p.index % 97}",
                    type=_TYPES[p.lane],
                    priority=p.priority,
                )
                msg = msg.replace(idempotency_key=msg.id)
                by_id[msg.id] = p
                state.attempted += 1
                try:
                    (bulk if p.bulk else steady).send(msg)
                except Overloaded:
                    state.refused += 1
                    continue  # shed: never entered, not produced
                state.produced.add(msg.id)
                if p.duplicate:
                    pending.append((n + 1 + rng.randrange(50), msg))
                while pending and pending[0][0] <= n:
                    _, dup = pending.pop(0)
                    resend(dup)
            for _, dup in pending:
                if abort.is_set():
                    break
                resend(dup)
        except BaseException as exc:  # surfaced by run_demo
            state.error = exc
        finally:
            state.producing = False
            produced_done.set()

    def resend(dup: Message) -> None:
        try:
            steady.send(dup)  # the same Message again: same id and idempotency key
        except Overloaded:
            state.refused_duplicates += 1
            return
        state.duplicates_sent += 1

    def ingest() -> None:
        consumer = topic.consumer("router", auto_commit=True)
        try:
            while True:
                records = consumer.poll(max_records=256, timeout=0.02)
                if records:
                    while max(len(q) for q in lanes.values()) >= _LANE_CAP:
                        if abort.wait(0.002):
                            break
                    router.publish_many([r.message for r in records])
                    continue
                if produced_done.is_set() and not any(topic.lag("router").values()):
                    consumer.commit()
                    if not any(topic.lag("router").values()):
                        break
                if abort.is_set():
                    break
        except BaseException as exc:
            state.error = exc
        finally:
            consumer.close()
            ingest_done.set()

    last_counts = {name: 0 for name in LANES}
    last_time = [time.monotonic()]

    def lane_processed(name: str) -> int:
        return latencies[name].count()

    def dead_count() -> int:
        return sum(s.dead_lettered for s in (q.statistics() for q in lanes.values()))

    def snapshot(started: float) -> DemoProgress:
        now = time.monotonic()
        dt = max(now - last_time[0], 1e-9)
        last_time[0] = now
        out = []
        for name in LANES:
            done = lane_processed(name)
            pct = latencies[name].percentiles()
            ps = pools[name].statistics()
            out.append(
                DemoLaneProgress(
                    name=name,
                    depth=len(lanes[name]),
                    processed=done,
                    rate=(done - last_counts[name]) / dt,
                    p99=None if pct is None else pct[2],
                    limit=ps.limit,
                    breaker=ps.breaker_state,
                )
            )
            last_counts[name] = done
        shed = sum(steady.statistics().shed.values()) + sum(bulk.statistics().shed.values())
        return DemoProgress(
            elapsed=now - started,
            planned=len(plan),
            attempted=state.attempted,
            produced=len(state.produced),
            processed=len(ledger.successes),
            dead_lettered=dead_count(),
            shed=shed,
            backlog=sum(topic.lag("router").values()),
            producing=state.producing,
            lanes=tuple(out),
        )

    for pool in pools.values():
        pool.start()
    started = time.monotonic()
    last_time[0] = started
    producer_thread = threading.Thread(target=produce, name="demo-producer", daemon=True)
    ingest_thread = threading.Thread(target=ingest, name="demo-ingest", daemon=True)
    producer_thread.start()
    ingest_thread.start()
    try:
        while state.error is None and not (
            ingest_done.is_set() and all(len(q) == 0 for q in lanes.values())
        ):
            time.sleep(0.01)  # lanes signal nothing when they empty: look every 10 ms
            if on_progress is not None and time.monotonic() - last_time[0] >= progress_interval:
                on_progress(snapshot(started))
        elapsed = time.monotonic() - started
        if on_progress is not None:
            on_progress(snapshot(started))
    finally:
        abort.set()
        producer_thread.join()
        ingest_thread.join()
        for q in lanes.values():
            q.close()
        for pool in pools.values():
            pool.stop(graceful=True, timeout=30.0)
    if state.error is not None:
        _close(topic, lanes)
        raise state.error
    report = _report(
        shown_dir,
        seed,
        plan,
        state,
        ledger,
        latencies,
        lanes,
        pools,
        steady,
        bulk,
        by_id,
        elapsed,
    )
    _close(topic, lanes)
    return report


def _close(topic: Topic, lanes: dict[str, Queue]) -> None:
    for q in lanes.values():
        q.close()
        if q.dead_letter is not None:
            q.dead_letter.close()
    topic.close()


def _report(
    shown_dir: str | None,
    seed: int,
    plan: list[_Planned],
    state: _State,
    ledger: _Ledger,
    latencies: dict[str, _Latencies],
    lanes: dict[str, Queue],
    pools: dict[str, ConsumerPool],
    steady: Producer,
    bulk: Producer,
    by_id: dict[str, _Planned],
    elapsed: float,
) -> DemoReport:
    produced = state.produced
    processed = {mid for mid, n in ledger.successes.items() if n > 0}
    twice = sorted(mid for mid, n in ledger.successes.items() if n > 1)
    dead_ids: list[str] = []
    groups: list[DemoDeadLetterGroup] = []
    lane_reports: list[DemoLane] = []
    for name in LANES:
        q = lanes[name]
        dlq = q.dead_letter
        lane_dead: list[str] = []
        if dlq is not None:
            lane_dead = [e.id for e in dlq.list()]
            for g in dlq.groups():
                groups.append(
                    DemoDeadLetterGroup(
                        lane=name,
                        fingerprint=g.fingerprint,
                        error_type=g.error_type or "",
                        count=g.count,
                        reasons=dict(g.reasons),
                        sample=g.sample,
                    )
                )
        dead_ids += lane_dead
        ps = pools[name].statistics()
        qs = q.statistics()
        pct = latencies[name].percentiles()
        lane_reports.append(
            DemoLane(
                name=name,
                processed=sum(1 for mid in processed if by_id[mid].lane == name),
                dead_lettered=len(lane_dead),
                retried=ps.retried,
                deduplicated=qs.deduplicated_total + ps.duplicates,
                p50=None if pct is None else pct[0],
                p95=None if pct is None else pct[1],
                p99=None if pct is None else pct[2],
                max=None if pct is None else pct[3],
                limit=ps.limit,
                breaker=ps.breaker_state,
            )
        )
    dead = set(dead_ids)
    expected_dead = {mid for mid in produced if by_id[mid].permanent}
    lost = produced - processed - dead
    retries_expected = sum(by_id[mid].transient for mid in produced if not by_id[mid].permanent)
    retried = sum(lane.retried for lane in lane_reports)
    deduplicated = sum(lane.deduplicated for lane in lane_reports)
    shed_by = dict(steady.statistics().shed)
    for k, v in bulk.statistics().shed.items():
        shed_by[k] = shed_by.get(k, 0) + v
    shed = sum(shed_by.values())
    refused_by_producers = steady.statistics().overloaded_total + bulk.statistics().overloaded_total
    blocked = steady.statistics().blocked_seconds + bulk.statistics().blocked_seconds
    depth_left = sum(len(q) for q in lanes.values())

    def check(name: str, ok: bool, detail: str) -> DemoCheck:
        return DemoCheck(name, bool(ok), detail)

    checks = (
        check("nothing lost", not lost, f"lost={len(lost)}"),
        check("processed at most once", not twice, f"processed twice={len(twice)}"),
        check(
            "processed and dead-lettered are disjoint",
            not (processed & dead),
            f"both={len(processed & dead)}",
        ),
        check(
            "nothing unexpected",
            not ((processed | dead) - produced),
            f"never produced={len((processed | dead) - produced)}",
        ),
        check(
            "dead letters are the planned permanent failures",
            dead == expected_dead,
            f"dead-lettered={len(dead)}, planned={len(expected_dead)}",
        ),
        check(
            "each dead letter once",
            len(dead_ids) == len(dead),
            f"entries={len(dead_ids)}, ids={len(dead)}",
        ),
        check(
            "retries match the planned transient failures",
            retried == retries_expected == ledger.transient_failures,
            f"retried={retried}, planned={retries_expected}, seen={ledger.transient_failures}",
        ),
        check(
            "duplicates refused",
            deduplicated == state.duplicates_sent,
            f"refused={deduplicated}, sent={state.duplicates_sent}",
        ),
        check("lanes drained", depth_left == 0, f"left={depth_left}"),
        check(
            "producer accounting",
            state.attempted == len(produced) + state.refused
            and state.refused + state.refused_duplicates == refused_by_producers,
            f"offered={state.attempted}, produced={len(produced)}, refused={state.refused}, "
            f"producers refused={refused_by_producers}",
        ),
    )
    settled = len(processed) + len(dead)
    return DemoReport(
        directory=shown_dir,
        seed=seed,
        planned=len(plan),
        elapsed=elapsed,
        produced=len(produced),
        processed=len(processed),
        retried=retried,
        retries_expected=retries_expected,
        dead_lettered=len(dead),
        dead_letter_expected=len(expected_dead),
        duplicates_sent=state.duplicates_sent,
        deduplicated=deduplicated,
        shed=shed,
        shed_by_priority=shed_by,
        blocked_seconds=blocked,
        lost=len(lost),
        processed_twice=len(twice),
        stopped_early=state.stopped_early,
        throughput=settled / elapsed if elapsed > 0 else 0.0,
        lanes=tuple(lane_reports),
        dlq_groups=tuple(sorted(groups, key=lambda g: (-g.count, g.lane))),
        checks=checks,
    )
