"""Exit codes and the one-line error report of the command line."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import click

from fastq.errors import CorruptLogError, FastqError, LogLockedError, OffsetOutOfRange

__all__ = (
    "EXIT_DAMAGED",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "CliGroup",
    "at",
    "translate",
)

EXIT_OK = 0
"""Success (also every dry run that found nothing wrong)."""
EXIT_ERROR = 1
"""An error: not found, locked, damaged (outside ``log verify``), a bad value, a failed replay."""
EXIT_USAGE = 2
"""Bad usage: an unknown option, a missing argument, a value of the wrong form (click)."""
EXIT_DAMAGED = 3
"""``log verify`` found damage."""


class CliError(Exception):
    """An error reported as ``fastq: error: <what> (<where>): <what to do>``."""

    def __init__(self, what: str, where: str | None = None, hint: str | None = None,
                 code: int = EXIT_ERROR) -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.hint = hint
        self.code = code

    def line(self) -> str:
        """The one line printed on stderr."""
        text = f"fastq: error: {self.what}"
        if self.where:
            text += f" ({self.where})"
        if self.hint:
            text += f": {self.hint}"
        return text


def translate(exc: BaseException, where: str | None = None) -> CliError:
    """The CliError reporting ``exc`` (raised while working on ``where``)."""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, CorruptLogError):
        return CliError(
            f"damaged log: {exc.reason}", f"{exc.path}, byte {exc.position}",
            "run 'fastq log verify DIR' to list every damaged place; the API's "
            "SegmentLog(DIR, repair=True) keeps every later valid record",
        )
    if isinstance(exc, LogLockedError):
        return CliError(
            "the log is open for writing in another process", where,
            "stop that process first, or do this in-process through the API",
        )
    if isinstance(exc, OffsetOutOfRange):
        return CliError(f"offset out of range: {exc}", where, "pick an offset in that range")
    if isinstance(exc, FileNotFoundError):
        return CliError("no such file or directory", exc.filename or where,
                        "check the path")
    if isinstance(exc, NotADirectoryError):
        return CliError("not a directory", exc.filename or where, "pass a directory")
    if isinstance(exc, PermissionError):
        return CliError("permission denied", exc.filename or where,
                        "run as a user who may read (and, to change it, write) it")
    if isinstance(exc, OSError):
        return CliError(exc.strerror or str(exc) or type(exc).__name__,
                        exc.filename or where, "check the path and the file system")
    if isinstance(exc, FastqError):
        return CliError(f"{type(exc).__name__}: {exc}", where, "see 'fastq --help'")
    if isinstance(exc, ValueError):
        return CliError(f"bad value: {exc}", where, "fix the value and run again")
    return CliError(f"{type(exc).__name__}: {exc}", where, "rerun with --debug and report it")


@contextlib.contextmanager
def at(where: str) -> Iterator[None]:
    """Report fastq, OS and value errors raised inside as working on ``where``."""
    try:
        yield
    except (CliError, BrokenPipeError):
        raise
    except (FastqError, OSError, ValueError) as exc:
        raise translate(exc, where) from exc


def _debug(ctx: click.Context) -> bool:
    obj: Any = ctx.find_root().obj
    return bool(isinstance(obj, dict) and obj.get("debug"))


class CliGroup(click.Group):
    """The root group: turns errors into one line on stderr and an exit code; lists the
    commands in the order they were added."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:  # the reader went away (| head): stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(EXIT_ERROR) from None
        except (CliError, FastqError, OSError, ValueError) as exc:
            error = translate(exc)
            if _debug(ctx):
                traceback.print_exc(file=sys.stderr)
            click.echo(error.line(), err=True)
            raise click.exceptions.Exit(error.code) from exc
