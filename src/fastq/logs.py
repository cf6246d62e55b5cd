"""Structured logging: the ``fastq`` logger hierarchy and the fields every record about a
message carries.

fastq logs through stdlib :mod:`logging` only (never ``print``), under ``fastq``:
``fastq.log`` (segment logs), ``fastq.queue``, ``fastq.pool``, ``fastq.producer``,
``fastq.dlq``. A record about a message has these attributes (``extra=`` fields), which a JSON
formatter or structlog's ``ExtraAdder`` picks up as they are:

* ``message_id``, ``trace_id`` (None when the message carries no trace), ``queue`` (the queue,
  topic or lane name), ``fastq_event`` (what happened: ``retry``, ``dead_letter``,
  ``lost_lease``, ``handler_error``, ``pool_stopped``...).

:class:`ContextFilter` gives every record those attributes (None where not about a message)
so a format string such as ``"%(levelname)s %(queue)s %(message_id)s %(message)s"`` works for
all records; :func:`message_fields` builds them for your own records about a message.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ("FIELDS", "ContextFilter", "MessageLoggerAdapter", "logger", "message_fields")

# a library's loggers stay quiet until the application configures logging (no "last resort"
# output to stderr from a library)
logging.getLogger("fastq").addHandler(logging.NullHandler())

FIELDS = ("message_id", "trace_id", "queue", "fastq_event")
"""The attributes fastq puts on a record about a message."""


def logger(name: str = "") -> logging.Logger:
    """``fastq`` or one of its children: ``logger("pool")`` is ``fastq.pool``."""
    return logging.getLogger(f"fastq.{name}" if name else "fastq")


def message_fields(
    message: Any, queue: str | None = None, event: str | None = None
) -> dict[str, Any]:
    """The ``extra=`` fields of a record about ``message`` (a :class:`fastq.Message`, or a
    delivery or record holding one)."""
    m = getattr(message, "message", message)
    return {
        "message_id": getattr(m, "id", None),
        "trace_id": _trace_id(m),
        "queue": queue,
        "fastq_event": event,
    }


class MessageLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger bound to a queue name: ``log.info("...", message=msg, event="retry")`` adds
    the message fields to the record (as ``extra``)."""

    def __init__(self, logger: logging.Logger, queue: str | None = None) -> None:
        super().__init__(logger, {"queue": queue})

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        message = kwargs.pop("message", None)
        event = kwargs.pop("event", None)
        extra = dict(kwargs.get("extra") or {})
        queue = self.extra.get("queue") if self.extra else None
        fields = message_fields(message, None if queue is None else str(queue), event)
        for k, v in fields.items():
            extra.setdefault(k, v)
        kwargs["extra"] = extra
        return msg, kwargs


class ContextFilter(logging.Filter):
    """Gives every record the message fields (None where absent). Add it to a handler:
    ``handler.addFilter(fastq.logs.ContextFilter())``."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, None)
        return True


def _trace_id(m: Any) -> str | None:
    tid = getattr(m, "trace_id", None)
    if tid:
        return str(tid)
    headers = getattr(m, "headers", None)
    tp = headers.get("traceparent") if headers else None
    # W3C traceparent: version-traceid-spanid-flags
    if isinstance(tp, str) and len(tp) >= 55 and tp[2] == "-":
        return tp[3:35]
    return None
