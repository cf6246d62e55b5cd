"""``fastq metrics``: metrics of durable directories, printed or served to Prometheus."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading

import click

from ..metrics.directories import read_directory

__all__ = ("command",)


@click.group("metrics")
def command() -> None:
    """Metrics of logs and topics on disk (read-only)."""


@command.command("show")
@click.argument("directories", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def show(directories: tuple[str, ...], as_json: bool) -> None:
    """Offsets, sizes and consumer-group lag of each DIRECTORY (a log or a topic)."""
    readings = [r for d in directories for r in read_directory(d)]
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in readings], indent=2))
        return
    for r in readings:
        click.echo(f"{r.name}: offsets {r.start_offset}..{r.end_offset}, {r.segments} "
                   f"segment(s), {r.size_bytes} bytes")
        for g, off in sorted(r.groups.items()):
            click.echo(f"  group {g}: committed {off}, lag {r.lag(g)}")


@command.command("serve")
@click.argument("directories", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--port", type=click.IntRange(0, 65535), default=9464, show_default=True)
@click.option("--addr", default="0.0.0.0", show_default=True)
def serve(directories: tuple[str, ...], port: int, addr: str) -> None:
    """Serve each DIRECTORY's metrics for Prometheus (re-read at every scrape) until Ctrl-C."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as exc:
        raise click.ClickException(
            "fastq metrics serve needs prometheus-client: pip install 'fastq-queue[prometheus]'"
        ) from exc
    from ..metrics.directories import DirectoryCollector

    for d in directories:
        read_directory(d)  # fail now, not at the first scrape
    registry = CollectorRegistry()
    registry.register(DirectoryCollector(list(directories)))
    server, _ = start_http_server(port, addr=addr, registry=registry)
    bound = server.server_address[1]  # the one chosen when --port 0 was asked
    click.echo(f"serving {len(directories)} directories on http://{addr}:{bound}/metrics",
               err=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
