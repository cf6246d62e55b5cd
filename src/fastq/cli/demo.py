"""``fastq demo``: run the demo pipeline (:func:`fastq.demo.run_demo`) with a live view and
print its checked report. Exit code 0 when the accounting adds up, 1 when it does not."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import click

from fastq.cli._output import emit_json
from fastq.demo import DemoLane, DemoProgress, DemoReport, run_demo

__all__ = ("command",)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 10:
        return f"{seconds:.1f}s"
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"


def _rich_available(stream: TextIO) -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# ---- live progress --------------------------------------------------------------------------


class _PlainProgress:
    """At most one line per second on ``out``."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last = -1.0

    def __call__(self, p: DemoProgress) -> None:
        now = time.monotonic()
        if self._last >= 0 and now - self._last < 1.0:
            return
        self._last = now
        lanes = "  ".join(
            f"{lane.name} d={lane.depth} {lane.rate:.0f}/s p99={_ms(lane.p99)} c={lane.limit}"
            + (f" [{lane.breaker}]" if lane.breaker else "")
            for lane in p.lanes
        )
        print(
            f"[{p.elapsed:5.1f}s] sent {p.attempted:,}/{p.planned:,} produced {p.produced:,} "
            f"processed {p.processed:,} dlq {p.dead_lettered:,} shed {p.shed:,} "
            f"backlog {p.backlog:,} | {lanes}",
            file=self._out,
            flush=True,
        )


def _live_table(p: DemoProgress) -> Any:
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    table = Table(title=f"fastq demo: {p.elapsed:.1f}s", title_justify="left")
    for col in ("lane", "depth", "rate/s", "processed", "p99", "concurrency", "breaker"):
        table.add_column(col, justify="left" if col in ("lane", "breaker") else "right")
    for lane in p.lanes:
        breaker = lane.breaker or "-"
        if lane.breaker == "open":
            breaker = "[red]open[/red]"
        elif lane.breaker == "half_open":
            breaker = "[yellow]half_open[/yellow]"
        table.add_row(
            lane.name,
            f"{lane.depth:,}",
            f"{lane.rate:,.0f}",
            f"{lane.processed:,}",
            _ms(lane.p99),
            str(lane.limit),
            breaker,
        )
    settled = p.processed + p.dead_lettered
    line = (
        f"sent {p.attempted:,}/{p.planned:,}  produced {p.produced:,}  settled {settled:,}  "
        f"dlq {p.dead_lettered:,}  shed {p.shed:,}  topic backlog {p.backlog:,}"
        + ("" if p.producing else "  (draining)")
    )
    return Group(
        ProgressBar(total=max(p.planned, 1), completed=p.attempted, width=60),
        ProgressBar(total=max(p.produced, 1), completed=settled, width=60),
        line,
        table,
    )


# ---- the report -----------------------------------------------------------------------------

_LANE_COLUMNS = (
    "lane",
    "processed",
    "dlq",
    "retried",
    "dedup",
    "p50",
    "p95",
    "p99",
    "max",
    "limit",
    "breaker",
)


def _lane_row(lane: DemoLane) -> list[str]:
    return [
        lane.name,
        f"{lane.processed:,}",
        f"{lane.dead_lettered:,}",
        f"{lane.retried:,}",
        f"{lane.deduplicated:,}",
        _ms(lane.p50),
        _ms(lane.p95),
        _ms(lane.p99),
        _ms(lane.max),
        str(lane.limit),
        lane.breaker or "-",
    ]


def _summary_lines(r: DemoReport) -> list[str]:
    shed_by = ", ".join(f"{k} {v:,}" for k, v in r.shed_by_priority.items() if v) or "none"
    lines = [
        f"planned {r.planned:,}, produced {r.produced:,}"
        + (" (stopped early: --duration)" if r.stopped_early else "")
        + f", settled in {r.elapsed:.1f}s ({r.throughput:,.0f} msg/s)",
        f"processed {r.processed:,}, dead-lettered {r.dead_lettered:,} "
        f"(planned {r.dead_letter_expected:,}), lost {r.lost:,}, processed twice "
        f"{r.processed_twice:,}",
        f"retries {r.retried:,} (planned {r.retries_expected:,}); duplicates sent "
        f"{r.duplicates_sent:,}, refused {r.deduplicated:,}",
        f"backpressure: shed {r.shed:,} ({shed_by}); producers waited {r.blocked_seconds:.2f}s "
        "(rate limit, watermark)",
    ]
    if r.directory is not None:
        lines.append(f"data kept in {r.directory}")
    return lines


def _print_plain(r: DemoReport, out: TextIO) -> None:
    rows = [list(_LANE_COLUMNS)] + [_lane_row(lane) for lane in r.lanes]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_LANE_COLUMNS))]
    for line in _summary_lines(r):
        print(line, file=out)
    print(file=out)
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ),
            file=out,
        )
    if r.dlq_groups:
        print("\ndead-letter groups:", file=out)
        for g in r.dlq_groups:
            print(f"  {g.lane:<9} {g.count:>6,}  {g.fingerprint}  {g.sample}", file=out)
    failed = [c for c in r.checks if not c.ok]
    if failed:
        print("\nfailed checks:", file=out)
        for c in failed:
            print(f"  {c.name}: {c.detail}", file=out)
    print(f"\n{r.verdict}", file=out)


def _print_rich(r: DemoReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for line in _summary_lines(r):
        console.print(line, highlight=False)
    table = Table(title="lanes (latency: enqueue to ack)", title_justify="left")
    for col in _LANE_COLUMNS:
        table.add_column(col, justify="left" if col in ("lane", "breaker") else "right")
    for lane in r.lanes:
        table.add_row(*_lane_row(lane))
    console.print(table)
    if r.dlq_groups:
        groups = Table(title="dead-letter groups", title_justify="left")
        for col in ("lane", "count", "fingerprint", "reasons", "sample"):
            groups.add_column(col, justify="right" if col == "count" else "left")
        for g in r.dlq_groups:
            reasons = ", ".join(f"{k} {v}" for k, v in g.reasons.items())
            groups.add_row(g.lane, f"{g.count:,}", g.fingerprint, reasons, g.sample)
        console.print(groups)
    checks = Table(title="checks", title_justify="left")
    checks.add_column("check")
    checks.add_column("")
    checks.add_column("figures")
    for c in r.checks:
        checks.add_row(c.name, "[green]ok[/green]" if c.ok else "[red]FAILED[/red]", c.detail)
    console.print(checks)
    style = "bold green" if r.ok else "bold red"
    console.print(r.verdict, style=style, highlight=False)


class _QuietPlannedFailures(logging.Filter):
    """Drops the pools' dead-letter warnings while the demo runs: its permanent failures are
    planned, and the report groups them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "fastq_event", None) != "dead_letter"


# ---- the command ----------------------------------------------------------------------------


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the durable data in a new demo-* folder here (default: a temporary "
    "folder, removed).",
)
@click.option(
    "--messages",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="Messages to send (about 10% of them in a low-priority burst).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop sending after this many seconds, then drain.",
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Which messages fail, retry and repeat."
)
@click.option("--json", "as_json", is_flag=True, help="Print only the report, as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress; print only the verdict.")
@click.option(
    "--work-scale",
    type=click.FloatRange(min=0),
    default=1.0,
    hidden=True,
    help="Scale the handlers' simulated work (tests use a small value).",
)
def command(
    directory: str | None,
    messages: int,
    duration: float | None,
    seed: int,
    as_json: bool,
    quiet: bool,
    work_scale: float,
) -> None:
    """Run a realistic pipeline and check that every message was processed exactly once or
    dead-lettered as planned.

    A durable topic feeds a router with four lanes (critical, standard, compute-heavy,
    long-running), each drained by an adaptive consumer pool; some handlers fail transiently
    (retried with backoff) or permanently (dead-lettered), some sends are duplicates
    (deduplicated) and a burst engages backpressure. Exits 1 when the accounting does not add
    up.
    """
    out = sys.stdout
    live = None
    progress: Callable[[DemoProgress], None] | None = None
    if not (as_json or quiet):
        if _rich_available(out):
            from rich.live import Live

            live = Live(refresh_per_second=4, transient=False)

            def progress(p: DemoProgress) -> None:
                assert live is not None
                live.update(_live_table(p))
        else:
            progress = _PlainProgress(out)
    pool_log = logging.getLogger("fastq.pool")
    quiet_failures = _QuietPlannedFailures()
    pool_log.addFilter(quiet_failures)
    if live is not None:
        live.start()
    try:
        report = run_demo(
            directory,
            messages=messages,
            duration=duration,
            seed=seed,
            on_progress=progress,
            progress_interval=0.25,
            work_scale=work_scale,
        )
    finally:
        if live is not None:
            live.stop()
        pool_log.removeFilter(quiet_failures)
    if as_json:
        emit_json(report.to_dict())  # one line, keys sorted: as the other commands
    elif quiet:
        print(report.verdict, file=out)
    elif live is not None:
        _print_rich(report)
    else:
        print(file=out)
        _print_plain(report, out)
    if not report.ok:
        sys.exit(1)
