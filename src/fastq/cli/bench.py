"""``fastq bench``: the side-by-side benchmark tables (fastq vs the peers, as ratios).

It runs ``benchmarks/run.py`` of a source checkout (the benchmarks and their peers are not
part of the wheel) with this interpreter; the peers come with the ``bench`` extra
(``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click

__all__ = ("command",)


def _benchmarks_dir() -> Path | None:
    """``benchmarks/`` beside ``src/`` when fastq runs from a source checkout."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "benchmarks" / "run.py"
        if candidate.is_file() and (parent / "src" / "fastq").is_dir():
            return candidate.parent
    return None


@click.command("bench")
@click.option("--quick", is_flag=True, help="Smaller workloads and fewer rounds (~2-4 min).")
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the tables (rows with medians and ratios) as JSON to this file.",
)
@click.option("-k", "select", metavar="EXPR", help="Only the benchmarks a pytest -k EXPR picks.")
@click.option("--repeat", type=click.IntRange(1, 10), default=1, show_default=True,
              help="Runs; the tables show the medians of their medians.")
def command(quick: bool, json_file: Path | None, select: str | None, repeat: int) -> None:
    """Benchmark fastq against the queues users would pick instead, in one run."""
    bench = _benchmarks_dir()
    if bench is None:
        raise click.ClickException(
            "fastq bench runs benchmarks/ of a source checkout, and none is beside this "
            f"installation ({Path(__file__).resolve().parents[1]}): clone the repository and "
            "pip install -e '.[bench]' there"
        )
    args = [sys.executable, str(bench / "run.py")]
    if quick:
        args.append("--quick")
    if select:
        args += ["-k", select]
    if repeat > 1:
        args += ["--repeat", str(repeat)]
    rc = subprocess.call(args, cwd=bench.parent)
    if json_file is not None:
        summary = bench / "results" / "latest.summary.json"
        if not summary.is_file():
            raise click.ClickException(f"the run wrote no summary ({summary}); see above")
        shutil.copyfile(summary, json_file)
        click.echo(f"tables written to {json_file}", err=True)
    if rc:
        raise SystemExit(rc)
