"""Turn a pytest-benchmark JSON file into the fastq-vs-peers table.

    python benchmarks/report.py [RESULTS.json ...] [--summary PATH] [--spread]

For each scenario it prints every implementation's median time per round, the throughput
derived from it (items per round / median), and how many times faster fastq is than that
peer (peer median / fastq median, i.e. fastq items/s over the peer's). Where the project set
a target for a pair, the target is printed next to the ratio and marked met or MISSED.

Medians only: this machine is noisy, and means are dragged by a few slow rounds. Given
several result files (repeated runs), each row shows the median of the runs' medians. The
summary (the same numbers as JSON) is saved next to the (first) input. Exits 0 once the report is
printed, whether or not the targets are met; 1 if the input cannot be read.

The SegmentLog benchmarks (bench_log_*.py, ``extra_info["table"] == "log"``) get a second
table: records/s and MB/s (payload bytes) per implementation, the speed-up of the scenario's
fastq row over each other row, and the targets of LOG_SCENARIOS (ratios, absolute rates,
times).

The hashing and dedup benchmarks (bench_hash.py, bench_dedup.py, ``extra_info["table"] ==
"hash"``) get a third table built the same way (rows with their own key counts, ratio and
absolute targets): keys/s and MB/s (key bytes) per implementation, the speed-up of the
scenario's fastq row over each other row, and the targets of HASH_SCENARIOS.

The work-queue benchmarks (bench_queue.py, ``extra_info["table"] == "queue"``) get a fourth:
messages/s and MB/s (payload bytes) per implementation, the speed-up of the scenario's fastq
row over each other row, and the targets of QUEUE_SCENARIOS. The topic benchmarks
(bench_topic.py) get a fifth, built the same way (TOPIC_SCENARIOS).

The pipeline benchmarks (bench_pipeline.py, ``extra_info["table"] == "pipeline"``) get a
sixth, "Pipelines": messages/s, wall and CPU microseconds per message, handler latency
percentiles and the concurrency limit per implementation, an ``overhead`` group (the
end-to-end rows as time per message) and the targets of PIPELINE_SCENARIOS plus the
overhead and adaptive-concurrency targets (pipeline_verdicts).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
DEFAULT_INPUT = HERE / "results" / "latest.json"
FASTQ = "fastq"
#: extra_info["table"] of the SegmentLog, the hashing/dedup and the work-queue benchmarks
LOG_TABLE = "log"
HASH_TABLE = "hash"
QUEUE_TABLE = "queue"
TOPIC_TABLE = "topic"
PIPELINE_TABLE = "pipeline"


@dataclass(frozen=True)
class Scenario:
    title: str
    #: peer name -> the least fastq/peer speed ratio the project aims for
    targets: dict[str, float] = field(default_factory=dict)


#: every scenario the bench_*.py files produce, in report order
SCENARIOS: dict[str, Scenario] = {
    "single-nowait": Scenario("1 thread, put_nowait/get_nowait pairs", {"SimpleQueue": 1.3}),
    "single-default": Scenario(
        "1 thread, put/get pairs (default arguments)", {"SimpleQueue": 1.0, "Queue": 20.0}
    ),
    "batch": Scenario("1 thread, put_many/get_many in batches of 1,000", {"deque": 5.0}),
    "spsc": Scenario("1 producer thread, 1 consumer thread, put/get", {"SimpleQueue": 1.0}),
    "spsc-many": Scenario(
        "1 producer thread, 1 consumer thread, put_many/get_many", {"SimpleQueue": 5.0}
    ),
    "mpmc": Scenario("2 producer threads, 2 consumer threads, put/get"),
    "async-gather": Scenario(
        "1 loop: producer and consumer coroutines (aput/aget)", {"asyncio.Queue": 2.0}
    ),
    "async-pairs": Scenario("1 loop: one coroutine, aput then aget", {"asyncio.Queue": 2.0}),
    "thread-async": Scenario("producer thread -> consumer coroutine, per item", {"janus": 5.0}),
    "thread-async-many": Scenario(
        "producer thread -> consumer coroutine, fastq takes aget_many(1000)", {"janus": 5.0}
    ),
    # latency histograms (bench_histogram.py): no issue target; the peers users would pick
    "hist-record": Scenario("latency histogram: one record call per value"),
    "hist-record-many": Scenario("latency histogram: all values in one call"),
    "hist-summary": Scenario("latency histogram: record 100k values, then p50/p90/p99/p99.9/max"),
    "redis-queue": Scenario(
        "fastq.Queue on Redis Streams, put_many(100) / get_many(100) / ack_many per round, vs"
        " hand-written redis-py XADD / XREADGROUP / XACK loops (batched and per message)",
        {"redis-py batch": 0.8, "redis-py per message": 5.0},
    ),
    "redis-e2e": Scenario(
        "no-op tasks end to end on one Redis server (enqueue, process, ack): a fastq"
        " ConsumerPool vs dramatiq's Redis broker and RQ",
        {"dramatiq": 3.0, "rq": 3.0},
    ),
}


@dataclass
class Row:
    scenario: str
    impl: str
    median_s: float
    items: int
    rounds: int
    items_per_s: float
    #: interquartile range of the round times, relative to the median (noise indicator)
    iqr_rel: float = 0.0
    #: how many result files (runs) the row combines
    runs: int = 1
    #: how many times faster fastq is than this implementation (None for fastq itself)
    fastq_speedup: float | None = None
    target: float | None = None
    met: bool | None = None


def load_rows(data: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if info.get("table") in (LOG_TABLE, HASH_TABLE, QUEUE_TABLE, TOPIC_TABLE, PIPELINE_TABLE):
            continue  # the SegmentLog, hashing, work-queue, topic, pipeline tables (load_log_rows)
        scenario = info.get("scenario") or bench.get("group") or bench["name"]
        impl = info.get("impl") or bench.get("param") or bench["name"]
        median = float(bench["stats"]["median"])
        items = int(info.get("items", 1))
        rows.append(
            Row(
                scenario=scenario,
                impl=impl,
                median_s=median,
                items=items,
                rounds=int(bench["stats"]["rounds"]),
                iqr_rel=float(bench["stats"].get("iqr", 0.0)) / median if median > 0 else 0.0,
                items_per_s=items / median if median > 0 else float("inf"),
            )
        )
    return rows


_R = TypeVar("_R", "Row", "LogRow")


def _by_scenario_impl(runs: list[list[_R]]) -> dict[tuple[str, str], list[_R]]:
    """The runs' rows grouped by (scenario, impl), in first-seen order."""
    by_key: dict[tuple[str, str], list[_R]] = {}
    for rows in runs:
        for row in rows:
            by_key.setdefault((row.scenario, row.impl), []).append(row)
    return by_key


def combine(runs: list[list[Row]]) -> list[Row]:
    """One row per (scenario, impl): the median of the runs' medians."""
    if len(runs) == 1:
        return runs[0]
    out: list[Row] = []
    for (scenario, impl), rows in _by_scenario_impl(runs).items():
        if len({r.items for r in rows}) > 1:
            raise ValueError(f"the runs moved different numbers of items in {scenario}/{impl}")
        median = statistics.median(r.median_s for r in rows)
        items = rows[0].items
        out.append(
            Row(
                scenario=scenario,
                impl=impl,
                median_s=median,
                items=items,
                rounds=sum(r.rounds for r in rows),
                items_per_s=items / median if median > 0 else float("inf"),
                iqr_rel=statistics.median(r.iqr_rel for r in rows),
                runs=len(rows),
            )
        )
    return out


def compare(rows: list[Row]) -> dict[str, list[Row]]:
    """Group by scenario (report order, unknown ones last); fastq first, then by speed."""
    by_scenario: dict[str, list[Row]] = {}
    for row in rows:
        by_scenario.setdefault(row.scenario, []).append(row)
    order = [s for s in SCENARIOS if s in by_scenario] + sorted(
        s for s in by_scenario if s not in SCENARIOS
    )
    out: dict[str, list[Row]] = {}
    for name in order:
        group = sorted(by_scenario[name], key=lambda r: (r.impl != FASTQ, -r.items_per_s))
        targets = SCENARIOS[name].targets if name in SCENARIOS else {}
        fq = next((r for r in group if r.impl == FASTQ), None)
        for row in group:
            if row.impl == FASTQ:
                continue
            row.target = targets.get(row.impl)
            if fq is not None:
                row.fastq_speedup = fq.items_per_s / row.items_per_s
                if row.target is not None:
                    row.met = row.fastq_speedup >= row.target
        out[name] = group
    return out


def _time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def _rate(per_s: float) -> str:
    if per_s >= 1e6:
        return f"{per_s / 1e6:.3g} M/s"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.3g} k/s"
    return f"{per_s:.3g} /s"


def render_meta(metas: list[dict[str, Any]], ring: bool) -> list[str]:
    """The lines above a table: machine, sizes (the ring's if ring), fastq build, peers, load."""
    lines: list[str] = []
    meta = metas[0]
    fb = meta.get("fastq_bench", {})
    machine = meta.get("machine_info", {})
    s = fb.get("settings", {})
    if fb:
        lines.append(
            f"Python {fb.get('python', '?')} ({fb.get('implementation', '?')}), "
            f"{fb.get('cpus', '?')} CPUs, {machine.get('cpu', {}).get('brand_raw', '?')}; "
            f"{meta.get('datetime', '?')}"
        )
        if ring:
            lines.append(
                f"items/round {s.get('items', '?'):,} (batch scenarios "
                f"{s.get('batch_items', '?'):,}), batch {s.get('batch_size', '?'):,}, "
                f"capacity {s.get('capacity', '?'):,} (two-thread scenarios "
                f"{s.get('thread_capacity', '?'):,}), {s.get('rounds', '?')} rounds + "
                f"{s.get('warmup', '?')} warm-up (fewer rounds, at least "
                f"{s.get('min_rounds', '?')}, past {s.get('budget', '?')} s of rounds)"
            )
        fq = fb.get("fastq", {})
        lines.append(
            f"fastq {fq.get('version', '?')} at {fq.get('commit', '?')}"
            f"{' + uncommitted src changes' if fq.get('src_dirty') else ''}, "
            f"core {fq.get('core_sha256', '?')} built {fq.get('core_built', '?')}"
        )
        if any(
            m.get("fastq_bench", {}).get("fastq", {}).get("core_rebuilt_during_run") for m in metas
        ):
            lines.append("WARNING: the core on disk was rebuilt during a run")
        cores = {m.get("fastq_bench", {}).get("fastq", {}).get("core_sha256") for m in metas}
        if len(cores) > 1:
            lines.append(
                f"WARNING: the runs measured different fastq cores: {sorted(map(str, cores))}"
            )
        peers = fb.get("peers", {})
        if ring:
            lines.append(
                "peers: "
                + ", ".join(f"{n} {p['version']}" for n, p in peers.items() if p.get("available"))
            )
        if len(metas) > 1:
            lines.append(f"{len(metas)} runs; each row is the median of the runs' medians")
        for m in metas:
            run = m.get("fastq_bench", {})
            lines.append(
                f"load average (1/5/15 min) at start {run.get('loadavg_start')}, "
                f"at end {run.get('loadavg_end')}"
                + (f"  ({m.get('datetime', '?')})" if len(metas) > 1 else "")
            )
        lines.append("")
    return lines


def render(groups: dict[str, list[Row]], metas: list[dict[str, Any]], spread: bool = False) -> str:
    """A Markdown table (it reads fine in a terminal too), then the verdict on the targets.

    spread adds each row's interquartile range as a share of its median."""
    lines = render_meta(metas, ring=True)
    header = ["scenario", "impl", "rounds", "median", "items/s", "fastq speed-up", "target", ""]
    if spread:
        header.insert(4, "IQR")
    table: list[list[str]] = []
    for name, group in groups.items():
        for k, row in enumerate(group):
            table.append(
                [
                    name if k == 0 else "",
                    row.impl,
                    str(row.rounds),
                    _time(row.median_s),
                    _rate(row.items_per_s),
                    "" if row.fastq_speedup is None else f"{row.fastq_speedup:.2f}x",
                    "" if row.target is None else f">= {row.target:g}x",
                    {None: "", True: "met", False: "MISSED"}[row.met],
                ]
            )
            if spread:
                table[-1].insert(4, f"{row.iqr_rel:.0%}")
    widths = [max(len(c) for c in col) for col in zip(header, *table, strict=False)]
    right = set(range(2, len(header) - 1))

    def fmt(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    lines.append(fmt(header))
    lines.append(
        "|"
        + "|".join(
            "-" * (w + 1) + ":" if i in right else "-" * (w + 2) for i, w in enumerate(widths)
        )
        + "|"
    )
    lines.extend(fmt(r) for r in table)
    lines.append("")
    lines.append("fastq speed-up = peer median / fastq median (> 1: fastq is faster).")
    for name in groups:
        title = SCENARIOS[name].title if name in SCENARIOS else "(no description)"
        lines.append(f"  {name}: {title}")
    lines.append("")
    judged = [r for g in groups.values() for r in g if r.target is not None]
    missed = [r for r in judged if r.met is False]
    unknown = [r for r in judged if r.met is None]
    lines.append(f"targets: {len(judged) - len(missed) - len(unknown)}/{len(judged)} met")
    for r in missed:
        lines.append(
            f"  MISSED {r.scenario}: fastq {r.fastq_speedup:.2f}x {r.impl}, target {r.target:g}x"
        )
    for r in unknown:
        lines.append(f"  n/a    {r.scenario}: no fastq row to compare with {r.impl}")
    expected = {(s, p) for s, sc in SCENARIOS.items() for p in sc.targets}
    absent = sorted(expected - {(r.scenario, r.impl) for r in judged})
    if absent:
        lines.append("  not measured: " + ", ".join(f"{s} vs {p}" for s, p in absent))
    return "\n".join(lines)


def summarize(groups: dict[str, list[Row]], metas: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "sources": [m.get("datetime") for m in metas],
        "fastq_bench": [m.get("fastq_bench", {}) for m in metas],
        "scenarios": {
            name: {
                "title": SCENARIOS[name].title if name in SCENARIOS else None,
                "rows": [asdict(r) for r in group],
            }
            for name, group in groups.items()
        },
    }


# ---- SegmentLog table ------------------------------------------------------------------------


@dataclass(frozen=True)
class LogTarget:
    """One SegmentLog target. With `impl`, a ratio: the scenario's fastq row must be at least
    `speedup` times faster than impl's row. Without, an absolute bound on the fastq row."""

    impl: str | None = None
    speedup: float | None = None
    min_records_per_s: float | None = None
    min_bytes_per_s: float | None = None
    max_seconds: float | None = None
    #: the fastq row judged, when not the scenario's ref (e.g. its batch-API row)
    subject: str | None = None

    def label(self) -> str:
        if self.speedup is not None:
            return f">= {self.speedup:g}x"
        if self.min_records_per_s is not None:
            return f">= {_rate(self.min_records_per_s)}"
        if self.min_bytes_per_s is not None:
            return f">= {_bytes_rate(self.min_bytes_per_s)}"
        if self.max_seconds is not None:
            return f"< {_time(self.max_seconds)}"
        return "?"

    def judge(self, ref: LogRow, row: LogRow) -> bool:
        """Whether the target is met (row: impl's row for a ratio, else the fastq row)."""
        if self.speedup is not None:
            return ref.items_per_s / row.items_per_s >= self.speedup
        if self.min_records_per_s is not None:
            return row.items_per_s >= self.min_records_per_s
        if self.min_bytes_per_s is not None:
            return row.bytes_per_s >= self.min_bytes_per_s
        if self.max_seconds is not None:
            return row.median_s < self.max_seconds
        return False


@dataclass(frozen=True)
class LogScenario:
    title: str
    #: the fastq row the others are compared with (None: no comparison)
    ref: str | None = "fastq"
    targets: tuple[LogTarget, ...] = ()
    #: met when any one target is (a target stated as "X, or Y"); else each one counts
    any_of: bool = False
    #: print records/s and MB/s (False for timings that are not throughput)
    rates: bool = True


def _ratio(impl: str, speedup: float) -> LogTarget:
    return LogTarget(impl=impl, speedup=speedup)


_MANY_TARGETS = (LogTarget(min_bytes_per_s=1.5e9), _ratio("memcpy", 0.6))

#: every SegmentLog scenario bench_log_*.py produce, in report order, with the issue's targets
LOG_SCENARIOS: dict[str, LogScenario] = {
    "log-append-100B": LogScenario(
        "1 thread, append() per record, 100 B; fastq sync=none",
        targets=(
            _ratio("mmap.write", 0.5),
            _ratio("queuelib", 10.0),
            _ratio("litequeue", 100.0),
            _ratio("diskcache", 100.0),
        ),
    ),
    "log-append-1KiB": LogScenario("1 thread, append() per record, 1 KiB; fastq sync=none"),
    "log-append-many-100B": LogScenario(
        "1 thread, append_many() of 1,000 x 100 B (list of bytes); fastq sync=none"
    ),
    "log-append-many-1KiB": LogScenario(
        "1 thread, append_many() of 1,000 x 1 KiB (list of bytes); fastq sync=none",
        targets=_MANY_TARGETS,
        any_of=True,
    ),
    "log-append-many-1KiB-numpy": LogScenario(
        "1 thread, append_many() of 1,000 x 1 KiB (2-D uint8 array rows); fastq sync=none",
        targets=_MANY_TARGETS,
        any_of=True,
    ),
    "log-read-100B": LogScenario(
        "read(offset, 1000) over 10^6 x 100 B, len() per record (.value: a copy each)",
        targets=(LogTarget(min_records_per_s=10e6),),
    ),
    "log-append-durable-100B": LogScenario(
        "1 thread, append() per record, 100 B, each durable on return",
        ref="fastq always",
    ),
    "log-append-durable-1KiB": LogScenario(
        "1 thread, append() per record, 1 KiB, each durable on return", ref="fastq always"
    ),
    "log-append-many-durable-100B": LogScenario(
        "1 thread, append_many() of 1,000 x 100 B, each batch durable on return",
        ref="fastq always",
    ),
    "log-append-many-durable-1KiB": LogScenario(
        "1 thread, append_many() of 1,000 x 1 KiB, each batch durable on return",
        ref="fastq always",
    ),
    "log-group-commit": LogScenario(
        "8 threads, append_many() of 100 x 100 B, each batch durable on return",
        ref="fastq always",
        targets=(LogTarget(min_records_per_s=100e3), _ratio("litequeue FULL", 10.0)),
    ),
    "log-group-commit-single": LogScenario(
        "8 threads, append() per 100 B record, each durable on return", ref="fastq always"
    ),
    "fsync": LogScenario(
        "one sync of a small file just appended to (median of single calls)",
        ref=None,
        rates=False,
    ),
    "log-reopen-crash": LogScenario(
        "SegmentLog(dir) after a sync=none writer left 64 MiB unflushed and was killed",
        targets=(LogTarget(max_seconds=1.0),),
        rates=False,
    ),
}


@dataclass
class LogRow:
    scenario: str
    impl: str
    median_s: float
    items: int
    #: payload bytes per round (record values)
    bytes: int
    rounds: int
    items_per_s: float
    bytes_per_s: float
    iqr_rel: float = 0.0
    runs: int = 1
    #: how many times faster the scenario's fastq row is than this one
    fastq_speedup: float | None = None
    #: the targets judged on this row, and whether each was met
    targets: list[str] = field(default_factory=list)
    met: list[bool] = field(default_factory=list)
    #: records per fsync (fastq, sync="always"), and what else the round recorded
    extra: dict[str, Any] = field(default_factory=dict)


_LOG_EXTRA = (
    "records_per_fsync",
    "fsyncs_per_round",
    "records_in_log",
    "bytes_truncated",
    # the pipeline table (bench_pipeline.py): medians over the rounds
    "cpu_s",
    "limit",
    "p50_s",
    "p99_s",
    "tail_limit",
    "tail_inflight",
)


def load_log_rows(data: dict[str, Any], table: str = LOG_TABLE) -> list[LogRow]:
    """The rows of one rate table: the SegmentLog one, or (table=HASH_TABLE, QUEUE_TABLE) the
    hashing or the work-queue one."""
    rows: list[LogRow] = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if info.get("table") != table:
            continue
        median = float(bench["stats"]["median"])
        items = int(info.get("items", 1))
        nbytes = int(info.get("bytes", 0))
        rows.append(
            LogRow(
                scenario=info.get("scenario") or bench.get("group") or bench["name"],
                impl=info.get("impl") or bench["name"],
                median_s=median,
                items=items,
                bytes=nbytes,
                rounds=int(bench["stats"]["rounds"]),
                items_per_s=items / median if median > 0 else float("inf"),
                bytes_per_s=nbytes / median if median > 0 else float("inf"),
                iqr_rel=float(bench["stats"].get("iqr", 0.0)) / median if median > 0 else 0.0,
                extra={k: info[k] for k in _LOG_EXTRA if k in info},
            )
        )
    return rows


def combine_log(runs: list[list[LogRow]]) -> list[LogRow]:
    """One row per (scenario, impl): the median of the runs' medians (and of their extras)."""
    if len(runs) == 1:
        return runs[0]
    out: list[LogRow] = []
    for (scenario, impl), rows in _by_scenario_impl(runs).items():
        if len({(r.items, r.bytes) for r in rows}) > 1:
            raise ValueError(f"the runs did different amounts of work in {scenario}/{impl}")
        median = statistics.median(r.median_s for r in rows)
        keys = {k for r in rows for k in r.extra}
        out.append(
            LogRow(
                scenario=scenario,
                impl=impl,
                median_s=median,
                items=rows[0].items,
                bytes=rows[0].bytes,
                rounds=sum(r.rounds for r in rows),
                items_per_s=rows[0].items / median if median > 0 else float("inf"),
                bytes_per_s=rows[0].bytes / median if median > 0 else float("inf"),
                iqr_rel=statistics.median(r.iqr_rel for r in rows),
                runs=len(rows),
                extra={
                    k: statistics.median(r.extra[k] for r in rows if k in r.extra) for k in keys
                },
            )
        )
    return out


@dataclass
class LogVerdict:
    scenario: str
    #: what was asked, e.g. ">= 10x queuelib" or ">= 1.5 GB/s, or >= 0.6x memcpy"
    target: str
    #: None: a row it needs was not measured
    met: bool | None
    #: what was measured, in the target's terms
    measured: str


def compare_log(
    rows: list[LogRow], scenarios: dict[str, LogScenario] | None = None
) -> tuple[dict[str, list[LogRow]], list[LogVerdict]]:
    """Group by scenario (report order; unknown ones last), the fastq row first, then by
    speed; fill in speed-ups and targets. Returns the groups and one verdict per target
    (per scenario, for an any-of target). scenarios: LOG_SCENARIOS unless given."""
    scenarios = LOG_SCENARIOS if scenarios is None else scenarios
    by_scenario: dict[str, list[LogRow]] = {}
    for row in rows:
        by_scenario.setdefault(row.scenario, []).append(row)
    order = [s for s in scenarios if s in by_scenario] + sorted(
        s for s in by_scenario if s not in scenarios
    )
    groups: dict[str, list[LogRow]] = {}
    verdicts: list[LogVerdict] = []
    for name in order:
        spec = scenarios.get(name, LogScenario("(no description)", ref=None))
        group = sorted(by_scenario[name], key=lambda r: (r.impl != spec.ref, -r.items_per_s))
        ref = next((r for r in group if r.impl == spec.ref), None)
        if ref is not None:
            for row in group:
                if row is not ref:
                    row.fastq_speedup = ref.items_per_s / row.items_per_s
        parts: list[tuple[str, bool | None, str]] = []
        for target in spec.targets:
            subject = ref
            if target.subject is not None:
                subject = next((r for r in group if r.impl == target.subject), None)
            judged = (
                next((r for r in group if r.impl == target.impl), None) if target.impl else subject
            )
            what = target.label() + (f" {target.impl}" if target.impl else "")
            if target.subject is not None:
                what += f" ({target.subject})"
            if subject is None or judged is None:
                parts.append((what, None, "not measured"))
                continue
            ok = target.judge(subject, judged)
            judged.targets.append(target.label())
            judged.met.append(ok)
            if target.speedup is not None:
                measured = f"{subject.items_per_s / judged.items_per_s:.2f}x"
            elif target.min_bytes_per_s is not None:
                measured = _bytes_rate(judged.bytes_per_s)
            elif target.max_seconds is not None:
                measured = _time(judged.median_s)
            else:
                measured = _rate(judged.items_per_s)
            parts.append((what, ok, measured))
        if spec.any_of and parts:
            known = [ok for _, ok, _ in parts if ok is not None]
            verdicts.append(
                LogVerdict(
                    name,
                    ", or ".join(what for what, _, _ in parts),
                    True if any(known) else (None if len(known) < len(parts) else False),
                    ", ".join(measured for _, _, measured in parts),
                )
            )
        else:
            verdicts.extend(LogVerdict(name, what, ok, m) for what, ok, m in parts)
        groups[name] = group
    return groups, verdicts


def _bytes_rate(per_s: float) -> str:
    if per_s >= 1e9:
        return f"{per_s / 1e9:.3g} GB/s"
    if per_s >= 1e6:
        return f"{per_s / 1e6:.3g} MB/s"
    return f"{per_s / 1e3:.3g} kB/s"


def _count(n: float) -> str:
    if n >= 1e6 and n % 1e5 == 0:
        return f"{n / 1e6:g}M"
    if n >= 1e4 and n % 1e3 == 0:
        return f"{n / 1e3:g}k"
    return f"{n:,.0f}"


def _notes(row: LogRow) -> str:
    notes: list[str] = []
    if "records_per_fsync" in row.extra:
        per = float(row.extra["records_per_fsync"])
        notes.append(f"{per:,.0f} records/fsync" if per >= 100 else f"{per:.3g} records/fsync")
    if "records_in_log" in row.extra:
        notes.append(f"{_count(row.extra['records_in_log'])} records")
    if row.extra.get("bytes_truncated"):
        notes.append(f"{row.extra['bytes_truncated']:,} B truncated")
    return ", ".join(notes)


def render_log(
    groups: dict[str, list[LogRow]],
    verdicts: list[LogVerdict],
    metas: list[dict[str, Any]],
    spread: bool = False,
    meta: bool = True,
) -> str:
    """The SegmentLog table (Markdown), its legend, and the verdict on its targets; with
    meta, the machine, build and load lines first (when no ring table printed them)."""
    lines: list[str] = render_meta(metas, ring=False)[:-1] if meta else []
    fb = metas[0].get("fastq_bench", {})
    s = fb.get("settings", {})
    where = fb.get("log_dir", {})
    if fb:
        lines.append(
            f"{s.get('rounds', '?')} rounds + {s.get('warmup', '?')} warm-up (fewer rounds, at "
            f"least {s.get('min_rounds', '?')}, past {s.get('budget', '?')} s of rounds)"
        )
        lines.append(
            f"SegmentLog: stores in {where.get('path', '?')} ({where.get('fstype', '?')} on "
            f"{where.get('device', '?')}); per round {s.get('log_items', '?'):,} records "
            f"(slow peers {s.get('log_slow_items', '?'):,}), append_many "
            f"{s.get('log_many_bytes', 0) / 2**20:g} MiB, read log "
            f"{s.get('log_read_records', '?'):,} records, {s.get('log_threads', '?')} threads"
        )
        peers = fb.get("log_peers", {})
        versions = sorted(
            {
                f"{n.split()[0]} {p['version']}"
                for n, p in peers.items()
                if p.get("available")
                and p.get("version") not in ("stdlib", "?")
                and not n.startswith("fastq")
            }
        )
        if versions:
            lines.append("log peers: " + ", ".join(versions))
        lines.append("")
    lines += _rate_table(
        groups,
        verdicts,
        LOG_SCENARIOS,
        unit="records",
        legend="fastq speed-up = the row's median per record / that of the scenario's first "
        "(fastq) row (> 1: fastq is faster); MB/s counts record values only.",
        label="SegmentLog",
        spread=spread,
    )
    return "\n".join(lines)


def _rate_table(
    groups: dict[str, list[LogRow]],
    verdicts: list[LogVerdict],
    scenarios: dict[str, LogScenario],
    *,
    unit: str,
    legend: str,
    label: str,
    spread: bool = False,
    notes: bool = True,
) -> list[str]:
    """A rate table (Markdown: `unit`/round, `unit`/s, MB/s, speed-up, targets), its legend,
    each scenario's title, and the verdict on its targets (the SegmentLog and hashing tables)."""
    lines: list[str] = []
    header = [
        "scenario",
        "impl",
        "rounds",
        f"{unit}/round",
        "median",
        f"{unit}/s",
        "MB/s",
        "fastq speed-up",
        "target",
        "",
        "notes",
    ]
    if not notes:
        header.pop()
    if spread:
        header.insert(5, "IQR")
    table: list[list[str]] = []
    for name, group in groups.items():
        spec = scenarios.get(name, LogScenario("(no description)", ref=None))
        for k, row in enumerate(group):
            cells = [
                name if k == 0 else "",
                row.impl,
                str(row.rounds),
                _count(row.items),
                _time(row.median_s),
                _rate(row.items_per_s) if spec.rates else "",
                f"{row.bytes_per_s / 1e6:,.1f}" if spec.rates else "",
                "" if row.fastq_speedup is None else f"{row.fastq_speedup:.2f}x",
                ", ".join(row.targets),
                ", ".join("met" if ok else "MISSED" for ok in row.met),
                _notes(row),
            ]
            if not notes:
                cells.pop()
            if spread:
                cells.insert(5, f"{row.iqr_rel:.0%}")
            table.append(cells)
    widths = [max(len(c) for c in col) for col in zip(header, *table, strict=False)]
    left = {0, 1, len(header) - 2, len(header) - 1} if notes else {0, 1, len(header) - 1}

    def fmt(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    lines.append(fmt(header))
    lines.append(
        "|"
        + "|".join(
            "-" * (w + 2) if i in left else "-" * (w + 1) + ":" for i, w in enumerate(widths)
        )
        + "|"
    )
    lines.extend(fmt(r) for r in table)
    lines.append("")
    lines.append(legend)
    for name in groups:
        spec = scenarios.get(name, LogScenario("(no description)", ref=None))
        lines.append(f"  {name}: {spec.title}")
    lines.append("")
    met = sum(1 for v in verdicts if v.met)
    lines.append(f"{label} targets: {met}/{len(verdicts)} met")
    for v in verdicts:
        mark = {True: "met   ", False: "MISSED", None: "n/a   "}[v.met]
        lines.append(f"  {mark} {v.scenario}: {v.target} (measured {v.measured})")
    expected = {s for s, spec in scenarios.items() if spec.targets}
    absent = sorted(expected - set(groups))
    if absent:
        lines.append("  not measured: " + ", ".join(absent))
    return lines


# ---- hashing and dedup table ----------------------------------------------------------------

#: every hashing/dedup scenario bench_hash.py and bench_dedup.py produce, in report order, with
#: the targets (the fastq row is the reference; rows may hash different numbers of keys)
HASH_SCENARIOS: dict[str, LogScenario] = {
    "partition-list-16": LogScenario(
        "partition_many(list of 13 B bytes keys, 16) vs [xxh3_64_intdigest(k) % 16 for k in keys]",
        targets=(_ratio("xxhash loop", 5.0),),
    ),
    "partition-list-12": LogScenario(
        "the same, 12 partitions (not a power of two)",
        targets=(_ratio("xxhash loop", 5.0),),
    ),
    "partition-array-16": LogScenario(
        "partition_many(uint64 array, 16); the xxhash loop (k.to_bytes(8, 'little') per "
        "element of arr.tolist()) runs on fewer keys: the ratio is of per-key rates",
        targets=(LogTarget(min_records_per_s=300e6),),
    ),
    "partition-array-12": LogScenario(
        "the same, 12 partitions (not a power of two)",
        targets=(LogTarget(min_records_per_s=300e6),),
    ),
    "hash64-13B": LogScenario(
        "one call per 13 B key, the function bound to a local: hash64 vs xxh3_64_intdigest",
        targets=(_ratio("xxhash", 1.0),),
    ),
    "dedup-many": LogScenario(
        "DedupWindow(300, 100_000).seen_many(1,000 keys) over a stream with 10% repeats, vs "
        "a dict + deque window in Python (fastq uint64: the same stream as a uint64 array)",
        targets=(_ratio("dict+deque", 10.0),),
    ),
    "dedup-seen": LogScenario(
        "the same stream, one seen(key) call per key", targets=(_ratio("dict+deque", 3.0),)
    ),
}


def render_hash(
    groups: dict[str, list[LogRow]],
    verdicts: list[LogVerdict],
    metas: list[dict[str, Any]],
    spread: bool = False,
    meta: bool = True,
) -> str:
    """The hashing and dedup table, like the SegmentLog one; with meta, the machine, build
    and load lines first (when no other table printed them)."""
    lines: list[str] = render_meta(metas, ring=False)[:-1] if meta else []
    fb = metas[0].get("fastq_bench", {})
    s = fb.get("settings", {})
    if fb:
        rounds = s.get("rounds")
        lines.append(
            f"{3 * rounds if isinstance(rounds, int) else '?'} rounds (3 x --bench-rounds, "
            f"hash_peers.ROUNDS_FACTOR) + {s.get('warmup', '?')} warm-up (fewer rounds, at "
            f"least {s.get('min_rounds', '?')}, past {s.get('budget', '?')} s of rounds)"
        )
        lines.append(
            f"hashing: per round {s.get('hash_keys', '?'):,} bytes keys (lists), "
            f"{s.get('hash_array_keys', '?'):,} uint64 keys (fastq on arrays; the xxhash loop: "
            f"{min(s.get('hash_keys', 0), s.get('hash_array_keys', 0)):,}), "
            f"{s.get('hash_calls', '?'):,} single calls; dedup: a stream of "
            f"{s.get('dedup_keys', '?'):,} keys"
        )
        peers = [*fb.get("hash_peers", {}).items(), *fb.get("dedup_peers", {}).items()]
        versions = sorted(
            {
                f"{n.split()[0]} {p['version']}"
                for n, p in peers
                if p.get("available")
                and p.get("version") not in ("stdlib", "?")
                and not n.startswith("fastq")
            }
        )
        blas = fb.get("blas_env", {})
        lines.append(
            "hash peers: "
            + ", ".join([*versions, f"numpy {fb.get('numpy', '?')}"])
            + (f"; {', '.join(f'{k}={v}' for k, v in blas.items())}" if blas else "")
        )
        lines.append("")
    lines += _rate_table(
        groups,
        verdicts,
        HASH_SCENARIOS,
        unit="keys",
        legend="fastq speed-up = the row's median per key / that of the scenario's fastq row "
        "(> 1: fastq is faster); MB/s counts key bytes hashed.",
        label="hashing/dedup",
        spread=spread,
        notes=False,
    )
    return "\n".join(lines)


# ---- work-queue table ------------------------------------------------------------------------

#: every work-queue scenario bench_queue.py produces, in report order, with issue 5's targets
#: (the fastq row is the reference; the SQLite peers move fewer messages per round)
QUEUE_SCENARIOS: dict[str, LogScenario] = {
    "memory_single": LogScenario(
        "in memory, per message: put(64 B); get(); ack()",
        targets=(LogTarget(min_records_per_s=1e6),),
    ),
    "memory_batch100": LogScenario(
        "in memory, per batch: put_many(100 x 64 B); get_many(100); ack_many(them)",
        targets=(LogTarget(min_records_per_s=5e6),),
    ),
    "durable_single": LogScenario(
        'on disk, per message: put(64 B); get(); ack(); fastq sync="none"',
        targets=(
            LogTarget(min_records_per_s=500e3),
            _ratio("litequeue", 100.0),
            _ratio("persist-queue", 100.0),
        ),
    ),
    "durable_batch100": LogScenario(
        'on disk, per batch: put_many(100 x 64 B); get_many(100); ack_many(); fastq sync="none"'
    ),
    # the topic scenarios (bench_topic.py) have their own table: TOPIC_SCENARIOS
}


def _render_messages(
    groups: dict[str, list[LogRow]],
    verdicts: list[LogVerdict],
    metas: list[dict[str, Any]],
    *,
    scenarios: dict[str, LogScenario],
    label: str,
    workload: str,
    peers_key: str,
    peers_label: str,
    spread: bool,
    meta: bool,
) -> str:
    """A per-message table (work queue, topics): with meta, the machine, build and load lines
    first (when no other table printed them), then the rounds, the ``workload`` line (settings
    and the log directory's {path}, {fstype}, {device} formatted in) and the peers' versions."""
    lines: list[str] = render_meta(metas, ring=False)[:-1] if meta else []
    fb = metas[0].get("fastq_bench", {})
    s = fb.get("settings", {})
    where = fb.get("log_dir", {})
    if fb:
        lines.append(
            f"{s.get('rounds', '?')} rounds + {s.get('warmup', '?')} warm-up (fewer rounds, at "
            f"least {s.get('min_rounds', '?')}, past {s.get('budget', '?')} s of rounds)"
        )
        fields = {
            k: s.get(k, "?")
            for k in ("queue_items", "queue_slow_items", "topic_items", "topic_slow_items")
        }
        lines.append(
            workload.format(
                **fields,
                path=where.get("path", "?"),
                fstype=where.get("fstype", "?"),
                device=where.get("device", "?"),
            )
        )
        versions = sorted(
            {
                f"{p.get('dist', n.split()[0])} {p['version']}"
                for n, p in fb.get(peers_key, {}).items()
                if p.get("available")
                and p.get("version") not in ("stdlib", "?")
                and not n.startswith("fastq")
            }
        )
        lines.append(f"{peers_label}: " + ", ".join([*versions, f"SQLite {fb.get('sqlite', '?')}"]))
        lines.append("")
    lines += _rate_table(
        groups,
        verdicts,
        scenarios,
        unit="msgs",
        legend="fastq speed-up = the row's median per message / that of the scenario's fastq "
        "row (> 1: fastq is faster); MB/s counts payload bytes.",
        label=label,
        spread=spread,
        notes=False,
    )
    return "\n".join(lines)


def render_queue(
    groups: dict[str, list[LogRow]],
    verdicts: list[LogVerdict],
    metas: list[dict[str, Any]],
    spread: bool = False,
    meta: bool = True,
) -> str:
    """The work-queue table, like the SegmentLog one."""
    return _render_messages(
        groups,
        verdicts,
        metas,
        scenarios=QUEUE_SCENARIOS,
        label="work queue",
        workload="work queue: per round {queue_items:,} messages of 64 B (SQLite peers "
        "{queue_slow_items:,}); on-disk queues in {path} ({fstype} on {device})",
        peers_key="queue_peers",
        peers_label="queue peers",
        spread=spread,
        meta=meta,
    )


# ---- topic table ----------------------------------------------------------------------------

#: every topic scenario bench_topic.py produces, in report order, with issue 5's targets (the
#: fastq row is the reference; the SQLite topic moves fewer messages per round)
TOPIC_SCENARIOS: dict[str, LogScenario] = {
    "topic_publish_keyed": LogScenario(
        "in memory, per message: publish(pre-built Message(64 B, key=k)); 8 partitions",
        targets=(LogTarget(min_records_per_s=2e6),),
    ),
    "topic_publish_key_kwarg": LogScenario(
        "in memory, per message: publish(payload, key=k) (fastq builds the Message)"
    ),
    "topic_publish_many": LogScenario("in memory, per batch: publish_many(1,000 keyed messages)"),
    "topic_poll_batch": LogScenario(
        "in memory, a fresh consumer of a filled topic: poll(max_records=1000) until []",
        targets=(LogTarget(min_records_per_s=5e6),),
    ),
    "topic_durable_publish_keyed": LogScenario(
        'on disk, per message: publish(Message); fastq sync="none", SQLite WAL NORMAL'
    ),
    "topic_durable_poll_batch": LogScenario(
        "on disk, a fresh consumer of a filled, reopened topic: poll(max_records=1000) until []"
    ),
}


def render_topic(
    groups: dict[str, list[LogRow]],
    verdicts: list[LogVerdict],
    metas: list[dict[str, Any]],
    spread: bool = False,
    meta: bool = True,
) -> str:
    """The "Topics" table, like the work-queue one."""
    return _render_messages(
        groups,
        verdicts,
        metas,
        scenarios=TOPIC_SCENARIOS,
        label="Topics",
        workload="topics: 8 partitions, 10,000 str keys, per round {topic_items:,} messages of "
        "64 B (SQLite topic {topic_slow_items:,}); on-disk topics in {path} ({fstype} on "
        "{device})",
        peers_key="topic_peers",
        peers_label="topic peers",
        spread=spread,
        meta=meta,
    )


# ---- pipeline table -------------------------------------------------------------------------

#: the end-to-end targets of issue 6; the overhead and adaptive targets are judged in
#: pipeline_verdicts (they are not rates)
PIPELINE_SCENARIOS: dict[str, LogScenario] = {
    "e2e_threads": LogScenario(
        "producer -> router -> 4 lanes -> a consumer pool per lane (threads) -> ack, no-op "
        "handler, one send at a time (send_many: batches of 1,000)",
        targets=(
            LogTarget(min_records_per_s=300e3),
            LogTarget(impl="hand-written", speedup=3.0, subject="fastq send_many"),
        ),
    ),
    "e2e_asyncio": LogScenario(
        "the same on one event loop (asyncio-mode pools, async handlers)",
        targets=(LogTarget(impl="hand-written", speedup=3.0, subject="fastq send_many"),),
    ),
    "overhead": LogScenario(
        "the end-to-end rows as wall (and CPU, all threads) microseconds per message",
        ref=None,
    ),
    "metrics": LogScenario(
        "e2e_threads (fastq, one send per message) with the queues' and pools' latency "
        "histograms on and off (issue 7: metrics cost <= 5% of throughput)",
        ref="metrics on",
        targets=(LogTarget(impl="metrics off", speedup=0.95),),
    ),
    "adaptive": LogScenario(
        "a backlog on one queue, one pool, a downstream with a knee at 8 concurrent calls "
        "(2 ms each up to 8, 2 ms x k/8 past it)",
        ref="fastq gradient",
    ),
}
#: framework overhead per message, end to end (fastq e2e_threads, default pools)
PIPELINE_MAX_US = 3.0
#: the adaptive scenario's best concurrency, and how close the adaptive pools must settle
PIPELINE_KNEE = 8
PIPELINE_SETTLE = 0.2
_ADAPTIVE_IMPLS = ("fastq gradient", "fastq aimd")
_ADAPTIVE_MAX = "fixed 64 (max)"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f}"


def _ms(seconds: Any) -> str:
    return "" if seconds is None else f"{float(seconds) * 1e3:.1f} ms"


def pipeline_groups(
    groups: dict[str, list[LogRow]], verdicts: list[LogVerdict]
) -> tuple[dict[str, list[LogRow]], list[LogVerdict]]:
    """Add the ``overhead`` group (copies of the end-to-end rows, impl "<impl> (<mode>)")
    and the overhead and adaptive verdicts to what compare_log made."""
    out: dict[str, list[LogRow]] = {}
    overhead: list[LogRow] = []
    for name, group in groups.items():
        out[name] = group
        if name in ("e2e_threads", "e2e_asyncio"):
            mode = name.split("_")[1]
            for row in group:
                copy = LogRow(**{**asdict(row), "targets": [], "met": [], "fastq_speedup": None})
                copy.impl = f"{row.impl} ({mode})"
                copy.scenario = "overhead"
                overhead.append(copy)
    verdicts = list(verdicts)
    ref = next((r for r in overhead if r.impl == "fastq (threads)"), None)
    what = f"<= {PIPELINE_MAX_US:g} us/message (fastq, threads)"
    if ref is not None:
        per = ref.median_s / ref.items
        ok = per * 1e6 <= PIPELINE_MAX_US
        ref.targets.append(f"<= {PIPELINE_MAX_US:g} us")
        ref.met.append(ok)
        cpu = ref.extra.get("cpu_s")
        measured = f"{per * 1e6:.2f} us" + (
            f" (CPU {float(cpu) / ref.items * 1e6:.2f} us)" if cpu is not None else ""
        )
        verdicts.append(LogVerdict("overhead", what, ok, measured))
    elif "e2e_threads" in groups:
        verdicts.append(LogVerdict("overhead", what, None, "not measured"))
    if overhead:
        items = list(out.items())
        at = next((k + 1 for k, (n, _) in enumerate(items) if n == "e2e_asyncio"), None)
        if at is None:
            at = next((k + 1 for k, (n, _) in enumerate(items) if n == "e2e_threads"), len(items))
        items.insert(at, ("overhead", overhead))
        out = dict(items)
    adaptive = groups.get("adaptive")
    if adaptive:
        by = {r.impl: r for r in adaptive}
        worst = by.get(_ADAPTIVE_MAX)
        lo, hi = PIPELINE_KNEE * (1 - PIPELINE_SETTLE), PIPELINE_KNEE * (1 + PIPELINE_SETTLE)
        for impl in _ADAPTIVE_IMPLS:
            arow = by.get(impl)
            settle = f"{impl}: settles within {PIPELINE_SETTLE:.0%} of {PIPELINE_KNEE}"
            below = f"{impl}: p99 below {_ADAPTIVE_MAX}"
            if arow is None or "tail_limit" not in arow.extra:
                verdicts.append(LogVerdict("adaptive", settle, None, "not measured"))
                verdicts.append(LogVerdict("adaptive", below, None, "not measured"))
                continue
            limit = float(arow.extra["tail_limit"])
            ok = lo <= limit <= hi
            arow.targets.append(f"limit {lo:g}-{hi:g}")
            arow.met.append(ok)
            verdicts.append(LogVerdict("adaptive", settle, ok, f"mean limit {limit:.1f}"))
            if worst is None or "p99_s" not in worst.extra or "p99_s" not in arow.extra:
                verdicts.append(LogVerdict("adaptive", below, None, "not measured"))
                continue
            p99, p99_max = float(arow.extra["p99_s"]), float(worst.extra["p99_s"])
            ok = p99 < p99_max
            arow.targets.append("p99 < max's")
            arow.met.append(ok)
            verdicts.append(LogVerdict("adaptive", below, ok, f"{_ms(p99)} vs {_ms(p99_max)}"))
    return out, verdicts


def render_pipeline(
    groups: dict[str, list[LogRow]],
    verdicts: list[LogVerdict],
    metas: list[dict[str, Any]],
    spread: bool = False,
    meta: bool = True,
) -> str:
    """The "Pipelines" table (groups and verdicts from pipeline_groups)."""
    lines: list[str] = render_meta(metas, ring=False)[:-1] if meta else []
    fb = metas[0].get("fastq_bench", {})
    s = fb.get("settings", {})
    if fb:
        lines.append(
            f"{s.get('rounds', '?')} rounds + {s.get('warmup', '?')} warm-up (fewer rounds, at "
            f"least {s.get('min_rounds', '?')}, past {s.get('budget', '?')} s of rounds)"
        )
        lines.append(
            f"pipelines: {s.get('pipeline_items', '?'):,} messages per round end to end, 4 "
            f"lanes; hand-written: {s.get('pipeline_workers', '?')} workers per lane; adaptive: "
            f"a backlog of {s.get('pipeline_adaptive_items', '?'):,}, knee {PIPELINE_KNEE}"
        )
        lines.append("")
    header = [
        "scenario",
        "impl",
        "rounds",
        "msgs/round",
        "median",
        "msgs/s",
        "fastq speed-up",
        "us/msg",
        "CPU us/msg",
        "p50",
        "p99",
        "limit",
        "target",
        "",
    ]
    if spread:
        header.insert(5, "IQR")
    table: list[list[str]] = []
    for name, group in groups.items():
        for k, row in enumerate(group):
            cpu = row.extra.get("cpu_s")
            if name == "adaptive":
                limit = row.extra.get("tail_limit")
                busy = row.extra.get("tail_inflight")
                lim = "" if limit is None else f"{float(limit):.1f}"
                if busy is not None:
                    lim += f" ({float(busy):.1f} busy)"
            else:
                limit = row.extra.get("limit")
                lim = "" if limit is None else f"{float(limit):.1f}"
            over = name == "overhead"
            cells = [
                name if k == 0 else "",
                row.impl,
                str(row.rounds),
                _count(row.items),
                _time(row.median_s),
                _rate(row.items_per_s),
                "" if row.fastq_speedup is None else f"{row.fastq_speedup:.2f}x",
                _us(row.median_s / row.items) if over else "",
                _us(float(cpu) / row.items) if over and cpu is not None else "",
                _ms(row.extra.get("p50_s")),
                _ms(row.extra.get("p99_s")),
                lim if not over else "",
                ", ".join(row.targets),
                ", ".join("met" if ok else "MISSED" for ok in row.met),
            ]
            if spread:
                cells.insert(5, f"{row.iqr_rel:.0%}")
            table.append(cells)
    widths = [max(len(c) for c in col) for col in zip(header, *table, strict=False)]
    left = {0, 1, len(header) - 2, len(header) - 1}

    def fmt(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    lines.append(fmt(header))
    lines.append(
        "|"
        + "|".join(
            "-" * (w + 2) if i in left else "-" * (w + 1) + ":" for i, w in enumerate(widths)
        )
        + "|"
    )
    lines.extend(fmt(r) for r in table)
    lines.append("")
    lines.append(
        "fastq speed-up = the row's median per message / that of the scenario's fastq row "
        "(> 1: fastq is faster); us/msg = wall time per message end to end; CPU = process CPU "
        "time (all threads) per message; p50/p99 = handler latency; limit = the pools' "
        "concurrency limit (e2e: at the end of the round, mean of the 4 lanes; adaptive: mean "
        "over the round's second half, and the calls actually in flight)."
    )
    for name in groups:
        spec = PIPELINE_SCENARIOS.get(name, LogScenario("(no description)", ref=None))
        lines.append(f"  {name}: {spec.title}")
    lines.append("")
    met = sum(1 for v in verdicts if v.met)
    lines.append(f"pipeline targets: {met}/{len(verdicts)} met")
    for v in verdicts:
        mark = {True: "met   ", False: "MISSED", None: "n/a   "}[v.met]
        lines.append(f"  {mark} {v.scenario}: {v.target} (measured {v.measured})")
    return "\n".join(lines)


def summarize_log(
    groups: dict[str, list[LogRow]],
    verdicts: list[LogVerdict],
    scenarios: dict[str, LogScenario] | None = None,
) -> dict[str, Any]:
    scenarios = LOG_SCENARIOS if scenarios is None else scenarios
    return {
        "scenarios": {
            name: {
                "title": scenarios[name].title if name in scenarios else None,
                "rows": [asdict(r) for r in group],
            }
            for name, group in groups.items()
        },
        "targets": [asdict(v) for v in verdicts],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "json",
        nargs="*",
        type=Path,
        default=[DEFAULT_INPUT],
        help=f"pytest-benchmark result files (default: {DEFAULT_INPUT.relative_to(HERE.parent)})",
    )
    parser.add_argument(
        "--summary",
        type=Path,
        default=None,
        help="where to save the summary JSON (default: <input>.summary.json beside the input)",
    )
    parser.add_argument(
        "--spread",
        action="store_true",
        help="add a column with each row's interquartile range, as a share of the median",
    )
    args = parser.parse_args(argv)
    metas: list[dict[str, Any]] = []
    for path in args.json:
        try:
            metas.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            print(f"report: cannot read {path}: {exc}", file=sys.stderr)
            return 1
    try:
        groups = compare(combine([load_rows(m) for m in metas]))
        log_groups, log_verdicts = compare_log(combine_log([load_log_rows(m) for m in metas]))
        hash_groups, hash_verdicts = compare_log(
            combine_log([load_log_rows(m, HASH_TABLE) for m in metas]), HASH_SCENARIOS
        )
        queue_groups, queue_verdicts = compare_log(
            combine_log([load_log_rows(m, QUEUE_TABLE) for m in metas]), QUEUE_SCENARIOS
        )
        topic_groups, topic_verdicts = compare_log(
            combine_log([load_log_rows(m, TOPIC_TABLE) for m in metas]), TOPIC_SCENARIOS
        )
        pipe_groups, pipe_verdicts = pipeline_groups(
            *compare_log(
                combine_log([load_log_rows(m, PIPELINE_TABLE) for m in metas]),
                PIPELINE_SCENARIOS,
            )
        )
    except ValueError as exc:
        print(f"report: cannot combine these runs: {exc}", file=sys.stderr)
        return 1
    if not (groups or log_groups or hash_groups or queue_groups or topic_groups or pipe_groups):
        print(f"report: {', '.join(map(str, args.json))} hold no benchmarks", file=sys.stderr)
        return 1
    summary = summarize(groups, metas)
    if groups:
        print(render(groups, metas, spread=args.spread))
    if log_groups:
        if groups:
            print("\n")
        print(render_log(log_groups, log_verdicts, metas, spread=args.spread, meta=not groups))
        summary["log"] = summarize_log(log_groups, log_verdicts)
    if hash_groups:
        if groups or log_groups:
            print("\n")
        meta = not groups and not log_groups
        print(render_hash(hash_groups, hash_verdicts, metas, spread=args.spread, meta=meta))
        summary["hash"] = summarize_log(hash_groups, hash_verdicts, HASH_SCENARIOS)
    if queue_groups:
        if groups or log_groups or hash_groups:
            print("\n")
        meta = not groups and not log_groups and not hash_groups
        print(render_queue(queue_groups, queue_verdicts, metas, spread=args.spread, meta=meta))
        summary["queue"] = summarize_log(queue_groups, queue_verdicts, QUEUE_SCENARIOS)
    if topic_groups:
        before = groups or log_groups or hash_groups or queue_groups
        if before:
            print("\n")
        print("Topics\n")
        meta = not before
        print(render_topic(topic_groups, topic_verdicts, metas, spread=args.spread, meta=meta))
        summary["topic"] = summarize_log(topic_groups, topic_verdicts, TOPIC_SCENARIOS)
    if pipe_groups:
        before = groups or log_groups or hash_groups or queue_groups or topic_groups
        if before:
            print("\n")
        print("Pipelines\n")
        print(
            render_pipeline(pipe_groups, pipe_verdicts, metas, spread=args.spread, meta=not before)
        )
        summary["pipeline"] = summarize_log(pipe_groups, pipe_verdicts, PIPELINE_SCENARIOS)
    summary_path = args.summary or args.json[0].with_suffix(".summary.json")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nsummary saved to {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
