"""The ``fastq`` command line (``fastq ...`` or ``python -m fastq ...``).

Needs the ``cli`` extra (click; rich is optional and only makes the output prettier). Each
sub-command lives in its own module of this package and exposes ``command`` (a click command or
group); ``_COMMANDS`` lists them in the order ``fastq --help`` shows them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ("main",)

_COMMANDS = ("demo", "log", "groups", "dlq", "metrics", "bench")


def _build() -> object:
    import click

    from fastq._version import __version__
    from fastq.cli._errors import CliGroup

    @click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="fastq")
    @click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
    @click.pass_context
    def cli(ctx: click.Context, debug: bool) -> None:
        """fastq: native-accelerated, in-process message queues."""
        ctx.ensure_object(dict)
        ctx.obj["debug"] = debug

    for name in _COMMANDS:
        module = importlib.import_module(f"fastq.cli.{name}")
        cli.add_command(module.command)
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (``fastq`` calls ``sys.exit`` with it)."""
    try:
        import click
    except ImportError:
        print("fastq: the command line needs click: pip install 'fastq-queue[cli]'",
              file=sys.stderr)
        return 1
    from fastq.cli._errors import EXIT_ERROR, EXIT_OK

    cli = _build()
    try:
        rv = cli.main(args=list(argv) if argv is not None else None,  # type: ignore[attr-defined]
                      prog_name="fastq", standalone_mode=False)
    except click.ClickException as exc:  # usage errors (exit 2) and the like
        exc.show()
        return exc.exit_code
    except click.Abort:  # Ctrl-C or EOF at a prompt
        click.echo("fastq: aborted", err=True)
        return EXIT_ERROR
    except SystemExit as exc:  # click's exit paths
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    return rv if isinstance(rv, int) else EXIT_OK
