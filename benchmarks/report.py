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
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_INPUT = HERE / "results" / "latest.json"
FASTQ = "fastq"


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


def combine(runs: list[list[Row]]) -> list[Row]:
    """One row per (scenario, impl): the median of the runs' medians."""
    if len(runs) == 1:
        return runs[0]
    by_key: dict[tuple[str, str], list[Row]] = {}
    for rows in runs:
        for row in rows:
            by_key.setdefault((row.scenario, row.impl), []).append(row)
    out: list[Row] = []
    for (scenario, impl), rows in by_key.items():
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


def render(groups: dict[str, list[Row]], metas: list[dict[str, Any]], spread: bool = False) -> str:
    """A Markdown table (it reads fine in a terminal too), then the verdict on the targets.

    spread adds each row's interquartile range as a share of its median."""
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
        lines.append(
            f"items/round {s.get('items', '?'):,} (batch scenarios "
            f"{s.get('batch_items', '?'):,}), batch {s.get('batch_size', '?'):,}, "
            f"capacity {s.get('capacity', '?'):,} (two-thread scenarios "
            f"{s.get('thread_capacity', '?'):,}), {s.get('rounds', '?')} rounds + "
            f"{s.get('warmup', '?')} warm-up (fewer rounds, at least {s.get('min_rounds', '?')}, "
            f"past {s.get('budget', '?')} s of rounds)"
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
    except ValueError as exc:
        print(f"report: cannot combine these runs: {exc}", file=sys.stderr)
        return 1
    if not groups:
        print(f"report: {', '.join(map(str, args.json))} hold no benchmarks", file=sys.stderr)
        return 1
    print(render(groups, metas, spread=args.spread))
    summary_path = args.summary or args.json[0].with_suffix(".summary.json")
    summary_path.write_text(json.dumps(summarize(groups, metas), indent=2) + "\n")
    print(f"\nsummary saved to {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
