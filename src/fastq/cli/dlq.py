"""``fastq dlq list|groups|show|replay|discard DIR``: a durable queue's dead letters.

DIR is the queue's directory (``Queue(name, path=ROOT)`` keeps it at ``ROOT/name``); its
dead-letter log is ``DIR.dlq``. ``replay`` and ``discard`` are dry runs unless ``--apply``."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import click

from fastq._core import Message
from fastq.cli._errors import EXIT_ERROR, CliError, at
from fastq.cli._output import emit_json, encode_bytes, iso_s, kv, line, table
from fastq.errors import LogLockedError
from fastq.semantics.dlq import DeadLetter, DeadLetterQueue, ReplayReport

__all__ = ("command",)


def _paths(directory: str) -> tuple[str, str, str]:
    """``(queue directory, dead-letter directory, queue name)``; DIR.dlq is accepted too."""
    d = os.path.normpath(directory)
    if d.endswith(".dlq") and os.path.isdir(d):
        d = d[: -len(".dlq")]
    name = os.path.basename(d)
    dlq = d + ".dlq"
    if not os.path.isdir(dlq):
        if not os.path.exists(d):
            raise CliError("no such directory", directory, "check the path")
        raise CliError("no dead-letter queue here", dlq,
                       "pass a durable queue's directory (Queue(name, path=ROOT) keeps it at "
                       "ROOT/name, its dead letters at ROOT/name.dlq)")
    return d, dlq, name


def _locked(where: str) -> CliError:
    return CliError("the queue is open in another process", where,
                    "stop that process, or use the API in-process "
                    "(queue.dead_letter.list/replay/discard)")


def _open(directory: str) -> tuple[DeadLetterQueue, str]:
    _, dlq, name = _paths(directory)
    try:
        with at(dlq):
            return DeadLetterQueue(f"{name}.dlq", path=dlq), dlq
    except CliError as exc:
        if isinstance(exc.__cause__, LogLockedError):
            raise _locked(directory) from exc
        raise


def _payload(msg: Message, redact: bool) -> tuple[Any, str | None]:
    """The payload for output and how it is encoded: utf-8, base64, json or repr."""
    if redact:
        return None, None
    p = msg.payload
    if isinstance(p, (bytes, bytearray, memoryview)):
        return encode_bytes(bytes(p))
    if isinstance(p, str):
        return p, "text"
    try:
        json.dumps(p)
    except (TypeError, ValueError):
        return repr(p), "repr"
    return p, "json"


def _key(msg: Message, redact: bool) -> Any:
    k = msg.key
    if k is None or redact:
        return None
    if isinstance(k, bytes):
        return encode_bytes(k)[0]
    return k


def _entry(e: DeadLetter, detail: bool, redact: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": e.id,
        "reason": e.reason,
        "queue": e.queue,
        "attempts": e.attempts,
        "first_delivery": e.first_delivery,
        "last_delivery": e.last_delivery,
        "dead_lettered_at": e.dead_lettered_at,
        "error_type": e.error_type,
        "error_message": e.error_message,
        "fingerprint": e.fingerprint,
        "summary": e.summary,
    }
    if detail:
        m = e.message
        payload, encoding = _payload(m, redact)
        out.update(
            payload=payload, payload_encoding=encoding, key=_key(m, redact), redacted=redact,
            type=m.type, priority=m.priority, headers=dict(m.headers),
            idempotency_key=None if redact or m.idempotency_key is None
            else (m.idempotency_key if isinstance(m.idempotency_key, str)
                  else encode_bytes(m.idempotency_key)[0]),
            deadline=m.deadline, source=m.source, trace_id=m.trace_id, timestamp=m.timestamp,
            consumer=e.consumer, traceback=e.traceback, last_error=e.last_error,
        )
    return out


def _where(reason: str | None, queue: str | None) -> Callable[[DeadLetter], bool] | None:
    if reason is None and queue is None:
        return None

    def where(e: DeadLetter) -> bool:
        return (reason is None or e.reason == reason) and (queue is None or e.queue == queue)

    return where


@click.group("dlq")
def command() -> None:
    """A durable queue's dead letters (DIR: the queue's directory; its DLQ is DIR.dlq)."""


_json_option = click.option("--json", "as_json", is_flag=True, help="Output JSON.")
_reason_option = click.option("--reason", default=None,
                              help="Only entries dead-lettered for this reason "
                                   "(max_deliveries, expired, rejected, permanent, max_attempts).")
_group_option = click.option("--group", "group", default=None,
                             help="Only entries with this failure fingerprint (see 'dlq groups').")


@command.command("list")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most N entries.")
@_reason_option
@_group_option
@_json_option
def list_(directory: str, limit: int | None, reason: str | None, group: str | None,
          as_json: bool) -> None:
    """The dead letters, oldest first."""
    dlq, where = _open(directory)
    with at(where):
        try:
            pick = _where(reason, None)
            entries = dlq.list(where=lambda e: (group is None or e.fingerprint == group)
                               and (pick is None or pick(e)))
            total = len(dlq)
        finally:
            dlq.close()
    if limit is not None:
        entries = entries[:limit]
    if as_json:
        emit_json({"directory": directory, "total": total,
                   "entries": [_entry(e, False, False) for e in entries]})
        return
    table(["id", "reason", "queue", "attempts", "dead lettered at", "error"],
          [[e.id, e.reason, e.queue, e.attempts, iso_s(e.dead_lettered_at), e.summary]
           for e in entries])
    line(f"{len(entries)} of {total} dead letters")


@command.command("groups")
@click.argument("directory", type=click.Path(file_okay=False))
@_json_option
def groups(directory: str, as_json: bool) -> None:
    """Dead letters grouped by failure fingerprint, the largest group first."""
    dlq, where = _open(directory)
    with at(where):
        try:
            found = dlq.groups()
        finally:
            dlq.close()
    rows = [{"fingerprint": g.fingerprint, "error_type": g.error_type, "sample": g.sample,
             "count": g.count, "first_seen": g.first_seen, "last_seen": g.last_seen,
             "reasons": g.reasons, "queues": g.queues, "ids": list(g.ids)} for g in found]
    if as_json:
        emit_json({"directory": directory, "groups": rows})
        return
    table(["fingerprint", "count", "error type", "last seen", "sample"],
          [[g.fingerprint, g.count, g.error_type, iso_s(g.last_seen), g.sample] for g in found])


@command.command("show")
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("message_id")
@click.option("--redact", is_flag=True, help="Hide the payload, key and idempotency key.")
@_json_option
def show(directory: str, message_id: str, redact: bool, as_json: bool) -> None:
    """One dead letter in full: failure, traceback and message."""
    dlq, where = _open(directory)
    with at(where):
        try:
            entry = dlq.show(message_id)
        except KeyError:
            raise CliError(f"no dead letter with id {message_id!r}", where,
                           "'fastq dlq list DIR' shows the ids") from None
        finally:
            dlq.close()
    data = _entry(entry, True, redact)
    if as_json:
        emit_json(data)
        return
    tb = data.pop("traceback")
    for k in ("first_delivery", "last_delivery", "dead_lettered_at", "deadline"):
        if data[k] is not None:
            data[k] = f"{data[k]} ({iso_s(data[k])})"
    payload = data.pop("payload")
    if data["payload_encoding"] == "json":
        payload = json.dumps(payload, sort_keys=True)
    kv([(k, v) for k, v in data.items()] + [("payload", "<redacted>" if redact else payload)])
    if tb:
        line("traceback:")
        line(tb.rstrip("\n"))


def _selectors(ids: tuple[str, ...], reason: str | None, group: str | None,
               select_all: bool) -> None:
    if select_all and (ids or reason or group):
        raise click.UsageError("--all selects every entry: do not combine it with ids, "
                               "--reason or --group")
    if not (ids or reason or group or select_all):
        raise click.UsageError("say which entries: message ids, --reason, --group, or --all")


def _report(directory: str, report: ReplayReport, as_json: bool) -> None:
    if as_json:
        emit_json({"directory": directory, "action": report.action, "dry_run": report.dry_run,
                   "selected": report.selected, "ids": list(report.ids), "moved": report.moved,
                   "target": report.target, "errors": report.errors,
                   "missing": list(report.missing)})
    else:
        verb = {"replay": "replayed", "discard": "discarded"}[report.action]
        if report.dry_run:
            line(f"dry run: would {report.action} {report.selected} dead letters"
                 + (f" into {report.target!r}" if report.target else ""))
            for mid in report.ids:
                line(f"  {mid}")
            line("nothing changed; rerun with --apply to do it")
        else:
            line(f"{verb} {report.moved} of {report.selected} dead letters")
        for mid, why in report.errors.items():
            line(f"failed {mid}: {why}")
        for mid in report.missing:
            line(f"missing {mid}: not in the dead-letter queue")
    if report.errors or report.missing:
        raise click.exceptions.Exit(EXIT_ERROR)


class _DryTarget:
    """Stands for the source queue in a dry-run replay (which never puts)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def put(self, message: Message, /) -> None:
        raise AssertionError("a dry run must not put")


_apply_option = click.option("--dry-run/--apply", "dry_run", default=True, show_default=True,
                             help="--apply does it; the default only reports what it would do.")


@command.command("replay")
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("ids", nargs=-1)
@_reason_option
@_group_option
@click.option("--all", "select_all", is_flag=True, help="Every entry.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="At most this many puts per second.")
@_apply_option
@_json_option
def replay(directory: str, ids: tuple[str, ...], reason: str | None, group: str | None,
           select_all: bool, rate: float | None, dry_run: bool, as_json: bool) -> None:
    """Put the selected dead letters back into the queue at DIRECTORY (a dry run unless
    --apply). Applying opens the queue, so no other process may have it open."""
    _selectors(ids, reason, group, select_all)
    qdir, dlq_dir, name = _paths(directory)
    kwargs: dict[str, Any] = dict(ids=list(ids) or None, where=_where(reason, None),
                                  group=group, rate=rate)
    if dry_run:
        dlq, where = _open(directory)
        with at(where):
            try:
                report = dlq.replay(to=_DryTarget(name), dry_run=True, **kwargs)
            finally:
                dlq.close()
        # each entry goes back to its own source queue, as with --apply
        _report(directory, dataclasses.replace(report, target=None), as_json)
        return
    from fastq.semantics.queue import Queue

    try:
        with at(qdir):
            queue = Queue(name, path=os.path.dirname(qdir) or ".", maxsize=None)
    except CliError as exc:
        if isinstance(exc.__cause__, LogLockedError):
            raise _locked(directory) from exc
        raise
    with at(dlq_dir):
        try:
            assert queue.dead_letter is not None
            report = queue.dead_letter.replay(dry_run=False, **kwargs)
        finally:
            queue.close(drain=False)  # keep what it holds on disk; close the logs now
    _report(directory, report, as_json)


@command.command("discard")
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("ids", nargs=-1)
@_reason_option
@_group_option
@click.option("--all", "select_all", is_flag=True, help="Every entry.")
@_apply_option
@_json_option
def discard(directory: str, ids: tuple[str, ...], reason: str | None, group: str | None,
            select_all: bool, dry_run: bool, as_json: bool) -> None:
    """Remove the selected dead letters for good (a dry run unless --apply)."""
    _selectors(ids, reason, group, select_all)
    dlq, where = _open(directory)
    with at(where):
        try:
            report = dlq.discard(ids=list(ids) or None, where=_where(reason, None),
                                 group=group, dry_run=dry_run)
        finally:
            dlq.close()
    _report(directory, report, as_json)
