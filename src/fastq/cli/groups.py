"""``fastq groups DIR`` (consumer-group lag per partition) and ``fastq groups reset DIR``
(move a group's committed offsets; a dry run unless ``--apply``)."""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any

import click

from fastq._core import SegmentLog
from fastq.cli._errors import CliError, at
from fastq.cli._output import emit_json, iso_ns, line, table
from fastq.cli.log import open_readonly
from fastq.errors import LogLockedError
from fastq.metrics.directories import log_directories

__all__ = ("command",)

def _partitions(directory: str) -> list[tuple[int | None, str]]:
    """``(partition, log directory)``: one ``(None, directory)`` for a log, the ``p<N>``
    logs of a topic directory."""
    with at(directory):
        if not os.path.exists(directory):
            raise CliError("no such directory", directory, "check the path")
        if not os.path.isdir(directory):
            raise CliError("not a directory", directory, "pass a log or topic directory")
    try:
        return log_directories(directory)
    except ValueError:
        raise CliError(
            "neither a log nor a topic directory", directory,
            "pass a SegmentLog directory or a topic's directory (holding p0, p1, ...)",
        ) from None


def _lag_report(directory: str) -> dict[str, Any]:
    parts = _partitions(directory)
    positions: dict[str, dict[int | None, int]] = {}
    ranges: dict[int | None, tuple[int, int]] = {}
    for p, path in parts:
        log = open_readonly(path)
        with at(path), log:
            ranges[p] = (log.start_offset, log.end_offset)
            for g, off in log.groups().items():
                positions.setdefault(g, {})[p] = off
    groups = []
    for g in sorted(positions):
        rows: list[dict[str, Any]] = []
        lag_total = 0
        for p, _ in parts:
            start, end = ranges[p]
            committed = positions[g].get(p)
            lag = end - max(committed if committed is not None else start, start)
            lag_total += max(lag, 0)
            rows.append({"partition": p, "committed": committed, "start_offset": start,
                         "end_offset": end, "lag": max(lag, 0)})
        groups.append({"group": g, "lag": lag_total, "partitions": rows})
    return {"directory": directory, "kind": "log" if parts[0][0] is None else "topic",
            "partitions": len(parts), "groups": groups}


class _DefaultList(click.Group):
    """``fastq groups DIR`` means ``fastq groups list DIR``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group("groups", cls=_DefaultList)
def command() -> None:
    """Consumer groups of a log or topic directory: lag per partition, and reset.

    'fastq groups DIR' is short for 'fastq groups list DIR'."""


@command.command("list")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def list_(directory: str, as_json: bool) -> None:
    """Lag per group and partition of the log or topic at DIRECTORY (the default command)."""
    report = _lag_report(directory)
    if as_json:
        emit_json(report)
        return
    if not report["groups"]:
        line(f"no consumer groups in {directory}")
        return
    rows = []
    for g in report["groups"]:
        for r in g["partitions"]:
            rows.append([g["group"], r["partition"], r["committed"], r["end_offset"], r["lag"]])
    table(["group", "partition", "committed", "end", "lag"], rows)
    for g in report["groups"]:
        line(f"{g['group']}: total lag {g['lag']}")


def _parse_to(value: str) -> tuple[str, Any]:
    """``--to``: ``("earliest"|"latest", None)``, ``("offset", int)`` or ``("time", ns)``."""
    v = value.strip()
    if v in ("earliest", "latest"):
        return v, None
    if v.isdigit():
        return "offset", int(v)
    try:
        when = _dt.datetime.fromisoformat(v)
    except ValueError:
        raise click.BadParameter(
            f"expected earliest, latest, an offset (>= 0) or an ISO 8601 time "
            f"(2026-01-31T12:00:00Z), got {value!r}", param_hint="--to") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return "time", int(when.timestamp() * 1_000_000) * 1000


@command.command("reset")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--group", "group", required=True, help="The consumer group.")
@click.option("--to", "to", required=True,
              help="earliest, latest, an OFFSET, or a TIME (ISO 8601; UTC unless it says).")
@click.option("--partition", type=click.IntRange(min=0), default=None,
              help="Only this partition of a topic (default: all).")
@click.option("--dry-run/--apply", "dry_run", default=True, show_default=True,
              help="--apply commits the new offsets; the default only shows them.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def reset(directory: str, group: str, to: str, partition: int | None, dry_run: bool,
          as_json: bool) -> None:
    """Move GROUP's committed offsets in the log or topic at DIRECTORY (backwards too).
    A dry run unless --apply; applying needs the log closed by its writer."""
    if not group:
        raise click.BadParameter("must not be empty", param_hint="--group")
    kind, arg = _parse_to(to)
    parts = _partitions(directory)
    if partition is not None:
        chosen: list[tuple[int | None, str]] = [(p, d) for p, d in parts if p == partition]
        if not chosen:
            raise CliError(f"no partition {partition}", directory,
                           f"pick one of {', '.join(str(p) for p, _ in parts)}")
        parts = chosen
    changes: list[dict[str, Any]] = []
    for p, path in parts:  # every target is computed and checked before anything changes
        log = open_readonly(path)
        with at(path), log:
            start, end = log.start_offset, log.end_offset
            if kind == "earliest":
                new = start
            elif kind == "latest":
                new = end
            elif kind == "time":
                new = log.offset_for_time(arg)
            else:
                new = arg
                if not start <= new <= end:
                    where = path if p is None else f"{path}, partition {p}"
                    raise CliError(f"offset {new} is outside the log's range {start}..{end}",
                                   where, "pick an offset in that range, earliest or latest")
            old = log.committed(group)
        changes.append({"partition": p, "from": old, "to": new, "start_offset": start,
                        "end_offset": end})
    if not dry_run:
        for (_, path), change in zip(parts, changes, strict=True):
            writer = _open_writer(path)
            with at(path), writer:
                writer.commit(group, change["to"], force=True)
    report = {"directory": directory, "group": group, "to": to, "dry_run": dry_run,
              "partitions": changes}
    if as_json:
        emit_json(report)
        return
    verb = "would move" if dry_run else "moved"
    for c in changes:
        part = "" if c["partition"] is None else f" partition {c['partition']}"
        line(f"{verb} group {group!r}{part}: {c['from'] if c['from'] is not None else '-'} "
             f"-> {c['to']}")
    if dry_run:
        line("dry run: nothing changed; rerun with --apply to commit")
    if kind == "time":
        line(f"(first offsets at or after {iso_ns(arg)})")


def _open_writer(path: str) -> SegmentLog:
    try:
        with at(path):
            return SegmentLog(path)
    except CliError as exc:
        if isinstance(exc.__cause__, LogLockedError):
            raise CliError("the log is open for writing in another process", path,
                           "stop that process (its consumers), then reset again") from exc
        raise
