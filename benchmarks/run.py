"""Run the fastq benchmark suite and print the fastq-vs-peers table.

    python benchmarks/run.py            # full run (a few minutes on 2 cores)
    python benchmarks/run.py --quick    # smaller workloads and fewer rounds (about 2 minutes)
    python benchmarks/run.py -k spsc    # only some scenarios (a pytest -k expression)
    python benchmarks/run.py --capacity 65536 -- -x   # sizes, then raw pytest arguments
    python benchmarks/run.py --repeat 3  # three runs; the table shows medians of their medians
    python benchmarks/run.py -k log      # the SegmentLog benchmarks only
    python benchmarks/run.py -k "not log and not hash and not dedup and not workqueue and not
                                 topic and not pipeline"   # the RingBuffer benchmarks only
    python benchmarks/run.py -k "hash or dedup"   # the hashing and dedup benchmarks only
    python benchmarks/run.py -k workqueue         # the work-queue (fastq.Queue) benchmarks only
    python benchmarks/run.py -k topic             # the topic (fastq.Topic) benchmarks only
    python benchmarks/run.py -k pipeline          # the pipeline (issue 6) benchmarks only
    python benchmarks/run.py -k redis             # fastq on Redis Streams vs redis-py, dramatiq, RQ

It runs pytest-benchmark on benchmarks/ in a child process (this interpreter, no shell),
writes benchmarks/results/latest.json (with --repeat, also latest.run2.json, ...), then
prints report.py's table. The exit status is pytest's (0 when every benchmark ran and checked
its item counts), whatever the ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402

#: sizes for --quick; the defaults live in harness.Settings (conftest.py turns them into options)
QUICK: dict[str, float] = {
    "items": 20_000,
    "batch_items": 200_000,
    "rounds": 5,
    "budget": 1.5,
    "log_items": 50_000,
    "log_slow_items": 1_000,
    "log_many_bytes": 16 << 20,
    "log_commit_batches": 20,
    "log_thread_records": 200,
    # hashing and dedup: half the keys (200k keys per round flattered the per-key rates by
    # ~1.8x); -k "hash or dedup" takes ~17-23 s here, the full sizes about 60 s
    "hash_keys": 500_000,
    "hash_array_keys": 5_000_000,
    "dedup_keys": 500_000,
    # work queues: the SQLite peers' rate depends on how many messages a round moves
    # (persist-queue scans past every acked row), so they keep the full count
    "queue_items": 20_000,
    # topics: a quarter of the messages (the SQLite topic keeps its count)
    "topic_items": 50_000,
    # pipelines: a quarter of the end-to-end messages; half the adaptive backlog (still long
    # enough for the adaptive pool to climb from 1 to the knee and settle)
    "pipeline_items": 50_000,
    "pipeline_adaptive_items": 1_500,
}
SIZES = (
    "items",
    "batch_items",
    "batch_size",
    "capacity",
    "thread_capacity",
    "rounds",
    "warmup",
    "budget",
    "log_items",
    "log_slow_items",
    "log_many_bytes",
    "log_read_records",
    "log_threads",
    "hash_keys",
    "hash_array_keys",
    "hash_calls",
    "dedup_keys",
    "queue_items",
    "queue_slow_items",
    "topic_items",
    "topic_slow_items",
    "pipeline_items",
    "pipeline_adaptive_items",
    "pipeline_workers",
)


def pytest_command(args: argparse.Namespace, json_path: Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE),
        # The root config collects test_*.py from tests/; collect bench_*.py here instead.
        "-o",
        "python_files=bench_*.py",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--benchmark-json={json_path}",
        "--benchmark-group-by=group",
        "--benchmark-sort=name",
        "--benchmark-columns=min,median,max,rounds",
        # filterwarnings=error is on; a run where -k selects nothing must not crash on this
        "-W",
        "ignore:Not saving anything:pytest_benchmark.logger.PytestBenchmarkWarning",
    ]
    if not args.verbose:
        cmd.append("--benchmark-quiet")  # report.py prints the table that matters
    if importlib.util.find_spec("pytest_timeout") is not None:
        cmd.append(f"--timeout={args.timeout}")  # the root's 300 s is for unit tests
    else:
        # pyproject sets `timeout` (a pytest-timeout option) with --strict-config and
        # filterwarnings=error, which turn the unknown option into an error when the plugin
        # is missing (the `bench` extra does not pull it in): relax exactly that.
        cmd += [
            "-o",
            "addopts=-ra --strict-markers",
            "-W",
            "ignore:Unknown config option:pytest.PytestConfigWarning",
        ]
    sizes = dict(QUICK) if args.quick else {}
    for name in SIZES:
        value = getattr(args, name)
        if value is not None:
            sizes[name] = value
    for name, value in sizes.items():
        cmd.append(f"--bench-{name.replace('_', '-')}={value}")
    if args.log_dir is not None:
        cmd.append(f"--bench-log-dir={args.log_dir}")
    if args.k:
        cmd += ["-k", args.k]
    extra: list[str] = args.pytest_args
    return cmd + extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the fastq benchmarks and print medians and fastq/peer ratios.",
        epilog="Arguments after -- go to pytest unchanged.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small workloads, fewer rounds (about 2 minutes)"
    )
    parser.add_argument("-k", metavar="EXPR", help="pytest -k expression to pick benchmarks")
    parser.add_argument("--items", type=int, help="items per round, per-item scenarios")
    parser.add_argument("--batch-items", type=int, help="items per round, batch scenarios")
    parser.add_argument("--batch-size", type=int, help="put_many/get_many batch size")
    parser.add_argument("--capacity", type=int, help="ring capacity (and peers' maxsize)")
    parser.add_argument(
        "--thread-capacity", type=int, help="ring capacity in the two-thread scenarios"
    )
    parser.add_argument("--rounds", type=int, help="timed rounds per benchmark")
    parser.add_argument("--warmup", type=int, help="untimed rounds per benchmark")
    parser.add_argument(
        "--budget", type=float, help="seconds of timed rounds per benchmark (slow peers: fewer)"
    )
    parser.add_argument(
        "--log-items", type=int, help="SegmentLog: records per round (fastq, fast peers)"
    )
    parser.add_argument(
        "--log-slow-items", type=int, help="SegmentLog: records per round (SQLite/file peers)"
    )
    parser.add_argument(
        "--log-many-bytes", type=int, help="SegmentLog: payload bytes per round, append_many"
    )
    parser.add_argument(
        "--log-read-records", type=int, help="SegmentLog: records in the log read() scans"
    )
    parser.add_argument(
        "--log-threads", type=int, help="SegmentLog: threads in the group-commit scenarios"
    )
    parser.add_argument(
        "--log-dir", help="SegmentLog: where the stores live (a real disk; default: $TMPDIR)"
    )
    parser.add_argument(
        "--hash-keys", type=int, help="hashing: bytes keys per round (and the array loop's keys)"
    )
    parser.add_argument(
        "--hash-array-keys", type=int, help="hashing: uint64 keys per round, fastq on an array"
    )
    parser.add_argument("--hash-calls", type=int, help="hashing: single hash64 calls per round")
    parser.add_argument("--dedup-keys", type=int, help="dedup: keys in the stream per round")
    parser.add_argument(
        "--queue-items", type=int, help="work queue: messages per round (fastq, lease table)"
    )
    parser.add_argument(
        "--queue-slow-items", type=int, help="work queue: messages per round (SQLite peers)"
    )
    parser.add_argument(
        "--topic-items", type=int, help="topic: messages per round (fastq, the dict of lists)"
    )
    parser.add_argument(
        "--topic-slow-items", type=int, help="topic: messages per round (the SQLite topic)"
    )
    parser.add_argument(
        "--pipeline-items", type=int, help="pipelines: messages per round, end to end"
    )
    parser.add_argument(
        "--pipeline-adaptive-items", type=int, help="pipelines: the adaptive scenario's backlog"
    )
    parser.add_argument(
        "--pipeline-workers", type=int, help="pipelines: hand-written workers per lane"
    )
    parser.add_argument("--timeout", type=int, default=1800, help="per-benchmark timeout (s)")
    parser.add_argument(
        "--json", type=Path, default=HERE / "results" / "latest.json", help="results file"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print pytest-benchmark's tables"
    )
    parser.add_argument(
        "--spread", action="store_true", help="report each row's interquartile range too"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the suite N times; report medians of medians"
    )
    parser.add_argument("pytest_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    first: Path = args.json.resolve()
    first.parent.mkdir(parents=True, exist_ok=True)
    paths = [first] + [
        first.with_name(f"{first.stem}.run{k}{first.suffix}") for k in range(2, args.repeat + 1)
    ]
    for stale in [first, *first.parent.glob(f"{first.stem}.run*{first.suffix}")]:
        stale.unlink(missing_ok=True)  # never report a previous run's numbers
    rc = 0
    for k, json_path in enumerate(paths, 1):
        cmd = pytest_command(args, json_path)
        if args.repeat > 1:
            print(f"run {k} of {args.repeat}")
        print("+ " + " ".join(cmd), flush=True)
        rc = subprocess.call(cmd, cwd=ROOT) or rc
        if not json_path.exists():
            print(f"run: pytest exited {rc} and wrote no results", file=sys.stderr)
            return rc or 1
    print()
    report.main([*map(str, paths), *(["--spread"] if args.spread else [])])
    if rc != 0:
        print(f"\nrun: pytest exited {rc}: some benchmarks failed (see above)", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
