"""OpenTelemetry spans for fastq (the ``otel`` extra), per the messaging semantic conventions.

Off until :func:`instrument` is called (then on for the whole process, like OpenTelemetry's
instrumentation packages); :func:`uninstrument` turns it off again. While on:

* ``Producer.send`` / ``asend`` / ``send_many``: a ``send <destination>`` span (kind PRODUCER;
  a batch is one span with ``messaging.batch.message_count``), whose context goes into each
  message's ``traceparent`` / ``tracestate`` headers (W3C Trace Context);
* ``ConsumerPool``: a ``receive <destination>`` span (kind CLIENT) per fetch that returned
  messages; a ``process <destination>`` span (kind CONSUMER) around each handler call, the
  child of the context the message carries, so one trace crosses the queue (a batch handler's
  span links every message's context instead); exceptions are recorded on the span. Each
  acknowledgement batch of a queue pool is a ``settle <destination>`` span (kind CLIENT);
  topic pools commit offsets instead.

Attributes: ``messaging.system="fastq"``, ``messaging.destination.name``,
``messaging.operation.type`` (``send``, ``receive``, ``process``, ``settle``),
``messaging.operation.name``, ``messaging.consumer.group.name`` and
``messaging.destination.partition.id`` (topics), ``messaging.message.id``,
``messaging.batch.message_count``. A batch sent with ``send_many`` shares the send span's
context (no per-message ``create`` spans).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ("instrument", "is_instrumented", "uninstrument")

SYSTEM = "fastq"


class _Otel:
    """What the hooks need from opentelemetry-api, looked up once by :func:`instrument`."""

    def __init__(self, tracer_provider: Any) -> None:
        from opentelemetry import propagate, trace  # the ``otel`` extra

        from ._version import __version__

        self.trace = trace
        self.tracer = trace.get_tracer("fastq", __version__, tracer_provider=tracer_provider)
        self.extract = propagate.extract
        self.kind = trace.SpanKind


_active: _Otel | None = None

#: the topic partition of the record a pool's handler is about to get (set by topic pools
#: while instrumented; the process span reads it)
partition: ContextVar[int | None] = ContextVar("fastq_tracing_partition", default=None)


def instrument(tracer_provider: Any = None) -> None:
    """Turn spans on (``tracer_provider``: default, the global one). Needs opentelemetry-api
    (``pip install 'fastq-queue[otel]'``); raises ImportError naming the extra without it."""
    global _active
    try:
        _active = _Otel(tracer_provider)
    except ImportError as exc:
        raise ImportError(
            "fastq.tracing needs opentelemetry-api: pip install 'fastq-queue[otel]'"
        ) from exc


def uninstrument() -> None:
    """Turn spans off (running pools stop making them at their next batch)."""
    global _active
    _active = None


def is_instrumented() -> bool:
    return _active is not None


def active() -> _Otel | None:
    """The hooks' state (None: off). One global read: what uninstrumented code pays."""
    return _active


def _attrs(operation: str, name: str, destination: str, group: str | None) -> dict[str, Any]:
    a: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.destination.name": destination,
        "messaging.operation.type": operation,
        "messaging.operation.name": name,
    }
    if group is not None:
        a["messaging.consumer.group.name"] = group
    return a


@contextmanager
def send_span(otel: _Otel, destination: str, count: int | None) -> Iterator[Any]:
    """A PRODUCER span, current while the message(s) are stamped and sent."""
    attrs = _attrs("send", "send", destination, None)
    if count is not None:
        attrs["messaging.batch.message_count"] = count
    with otel.tracer.start_as_current_span(
        f"send {destination}", kind=otel.kind.PRODUCER, attributes=attrs
    ) as span:
        yield span


def receive_span(
    otel: _Otel, destination: str, group: str | None, start_ns: int, count: int
) -> None:
    """A CLIENT ``receive`` span for a fetch that returned ``count`` messages, from
    ``start_ns`` (unix ns, taken before the call) to now."""
    attrs = _attrs("receive", "receive", destination, group)
    attrs["messaging.batch.message_count"] = count
    span = otel.tracer.start_span(
        f"receive {destination}", kind=otel.kind.CLIENT, attributes=attrs, start_time=start_ns
    )
    span.end()


@contextmanager
def settle_span(otel: _Otel, destination: str, group: str | None, count: int) -> Iterator[Any]:
    attrs = _attrs("settle", "ack", destination, group)
    attrs["messaging.batch.message_count"] = count
    with otel.tracer.start_as_current_span(
        f"settle {destination}", kind=otel.kind.CLIENT, attributes=attrs
    ) as span:
        yield span


def wrap_handler(
    otel: _Otel,
    handler: Callable[[Any], Any],
    destination: str,
    group: str | None,
    batch: bool,
) -> Callable[[Any], Any]:
    """``handler`` inside a CONSUMER ``process`` span: the child of the message's context (a
    batch: linked to each message's context)."""
    tracer = otel.tracer
    consumer = otel.kind.CONSUMER
    extract = otel.extract
    name = f"process {destination}"
    base = _attrs("process", "process", destination, group)
    link_of = otel.trace.Link
    span_context_of = otel.trace.get_current_span

    def start(arg: Any) -> Any:
        if batch:
            links = []
            for m in arg:
                sc = span_context_of(extract(_headers(m))).get_span_context()
                if sc.is_valid:
                    links.append(link_of(sc))
            attrs = {**base, "messaging.batch.message_count": len(arg)}
            return tracer.start_as_current_span(name, kind=consumer, attributes=attrs,
                                                links=links)
        attrs = {**base, "messaging.message.id": getattr(arg, "id", "")}
        p = partition.get()
        if p is not None:
            attrs["messaging.destination.partition.id"] = str(p)
        return tracer.start_as_current_span(
            name, context=extract(_headers(arg)), kind=consumer, attributes=attrs
        )

    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004
    ):

        @functools.wraps(handler)
        async def traced_async(arg: Any) -> Any:
            with start(arg):
                return await handler(arg)

        return traced_async

    @functools.wraps(handler)
    def traced(arg: Any) -> Any:
        with start(arg):
            return handler(arg)

    return traced


def _headers(m: Any) -> Mapping[str, str]:
    h = getattr(m, "headers", None)
    return h if h is not None else {}
