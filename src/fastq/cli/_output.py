"""Output of the command line: rich tables on a terminal (when rich is installed), plain
aligned text otherwise, and JSON with sorted keys for ``--json``."""

from __future__ import annotations

import base64
import datetime as _dt
import json
import sys
from collections.abc import Sequence
from typing import Any

import click

__all__ = ("emit_json", "encode_bytes", "iso_ns", "iso_s", "kv", "line", "table")


def _rich() -> bool:
    if not sys.stdout.isatty():
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def emit_json(obj: Any) -> None:
    """One JSON document on one line (keys sorted, so the output is stable)."""
    click.echo(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str))


def line(text: str = "") -> None:
    """One line of plain output."""
    click.echo(text)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """A table: rich on a terminal, else columns separated by two spaces."""
    cells = [[_cell(v) for v in row] for row in rows]
    if _rich():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title)
        for h in headers:
            t.add_column(h)
        for row in cells:
            t.add_row(*row)
        Console().print(t)
        return
    if title:
        click.echo(title)
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def kv(pairs: Sequence[tuple[str, Any]]) -> None:
    """``name: value`` lines, the names aligned."""
    width = max((len(k) for k, _ in pairs), default=0)
    for k, v in pairs:
        click.echo(f"{(k + ':').ljust(width + 1)} {_cell(v)}")


def encode_bytes(data: bytes | None) -> tuple[str | None, str | None]:
    """``(text, encoding)``: UTF-8 text when ``data`` decodes, else base64; (None, None)
    for None."""
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def iso_ns(ns: int | None) -> str | None:
    """A nanosecond unix timestamp as ISO 8601 UTC."""
    if ns is None:
        return None
    return iso_s(ns / 1e9)


def iso_s(seconds: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (None stays None)."""
    if seconds is None:
        return None
    try:
        when = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
        return when.isoformat(timespec="microseconds")
    except (OverflowError, OSError, ValueError):
        return str(seconds)
