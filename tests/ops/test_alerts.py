"""Threshold alerts: an explicit clock for ``for_seconds``, one firing and one resolved event
per episode, subject globs, failing callbacks, bad arguments, the background thread."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import pytest

from fastq import FakeClock
from fastq.metrics import Registry
from fastq.metrics.alerts import AlertEvent, Alerts
from fastq.semantics.queue import Queue
from fastq.semantics.topic import Topic

LIVENESS = 10.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Clock:
    """A settable clock: ``clock.now = 12.0``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def setup(*objs: Any) -> tuple[Registry, Clock, Alerts, list[AlertEvent]]:
    reg = Registry()
    for o in objs:
        reg.register(o)
    clock = Clock()
    events: list[AlertEvent] = []
    return reg, clock, Alerts(reg, clock=clock), events


def test_depth_fires_after_for_seconds_then_resolves_once() -> None:
    q = Queue(unique("q"))
    _reg, clock, alerts, events = setup(q)
    alerts.add("depth", 2, events.append, for_seconds=5.0)
    assert alerts.check() == []
    q.put_many(range(3))  # depth 3 > 2 from t=0
    assert alerts.check() == []
    clock.now = 4.9
    assert alerts.check() == []
    clock.now = 5.0
    fired = alerts.check()
    assert len(fired) == 1
    assert events == fired
    ev = fired[0]
    assert (ev.rule, ev.metric, ev.subject, ev.value, ev.threshold, ev.firing) == (
        "depth>2", "depth", q.name, 3.0, 2.0, True
    )
    assert ev.at > 0
    clock.now = 50.0
    assert alerts.check() == []  # still above: no second event
    q.get(timeout=0).ack()  # depth 2: at the threshold is not above it
    resolved = alerts.check()
    assert [(e.subject, e.value, e.firing) for e in resolved] == [(q.name, 2.0, False)]
    assert alerts.check() == []
    assert len(events) == 2


def test_dip_below_restarts_the_hold() -> None:
    q = Queue(unique("q"))
    _reg, clock, alerts, events = setup(q)
    alerts.add("depth", 0, events.append, for_seconds=10.0, name="backlog")
    q.put("a")
    alerts.check()  # above since t=0
    clock.now = 8.0
    q.get(timeout=0).ack()
    assert alerts.check() == []  # below before the hold ended: nothing, not even resolved
    q.put("b")
    clock.now = 9.0
    alerts.check()  # above again since t=9
    clock.now = 18.9
    assert alerts.check() == []
    clock.now = 19.0
    assert [(e.rule, e.firing) for e in alerts.check()] == [("backlog", True)]


def test_subject_glob_and_each_subject_separately() -> None:
    a, b, other = Queue(unique("orders")), Queue(unique("orders")), Queue(unique("mail"))
    for q in (a, b, other):
        q.put_many(range(5))
    _reg, _clock, alerts, events = setup(a, b, other)
    alerts.add("depth", 1, events.append, subject="orders-*")
    fired = alerts.check()
    assert sorted(e.subject for e in fired) == sorted([a.name, b.name])
    assert all(e.firing for e in fired)
    a.purge()
    assert [(e.subject, e.firing) for e in alerts.check()] == [(a.name, False)]


def test_lag_and_dlq_metrics() -> None:
    t = Topic(unique("t"), partitions=2)
    t.publish_many(range(4))
    q = Queue(unique("q"), max_deliveries=1)
    q.put("x")
    q.get(timeout=0).nack()  # dead-lettered at once
    assert q.dead_letter is not None
    with t.consumer("g", auto_commit=False) as c:
        _reg, _clock, alerts, events = setup(t, q.dead_letter)
        alerts.add("lag", 3, events.append)
        alerts.add("dlq_size", 0, events.append)
        alerts.add("age", 1e9, events.append)  # no queue registered: never anything
        fired = alerts.check()
        assert [(e.metric, e.subject, e.value, e.firing) for e in fired] == [
            ("lag", f"{t.name}/g", 4.0, True),
            ("dlq_size", q.dead_letter.name, 1.0, True),
        ]
        c.poll(max_records=10)
        c.commit({0: 2, 1: 2})
        assert [(e.metric, e.value, e.firing) for e in alerts.check()] == [("lag", 0.0, False)]


def test_dlq_growth() -> None:
    q = Queue(unique("q"), max_deliveries=1)
    assert q.dead_letter is not None
    _reg, _clock, alerts, events = setup(q.dead_letter)
    alerts.add("dlq_growth", 0, events.append)
    assert alerts.check() == []  # the first reading has no rate
    q.put("x")
    q.get(timeout=0).nack()
    fired = alerts.check()
    assert len(fired) == 1
    assert fired[0].metric == "dlq_growth"
    assert fired[0].value > 0


def test_a_raising_callback_is_logged_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    q = Queue(unique("q"))
    q.put("a")
    _reg, _clock, alerts, events = setup(q)

    def boom(ev: AlertEvent) -> None:
        raise RuntimeError("callback failed")

    alerts.add("depth", 0, boom, name="first")
    alerts.add("depth", 0, events.append, name="second")
    with caplog.at_level(logging.ERROR, logger="fastq.alerts"):
        fired = alerts.check()
    assert [e.rule for e in fired] == ["first", "second"]
    assert [e.rule for e in events] == ["second"]
    recs = [r for r in caplog.records if r.name == "fastq.alerts"]
    assert len(recs) == 1
    assert "first" in recs[0].getMessage()
    assert recs[0].exc_info is not None
    assert recs[0].exc_info[0] is RuntimeError


def test_object_gone_is_forgotten_quietly() -> None:
    q = Queue(unique("q"))
    q.put("a")
    reg, _clock, alerts, events = setup(q)
    alerts.add("depth", 0, events.append)
    assert len(alerts.check()) == 1
    reg.unregister(q)
    assert alerts.check() == []  # no resolved event for an object no longer watched
    reg.register(q)
    assert [e.firing for e in alerts.check()] == [True]  # a new episode


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"metric": "size"}, ValueError, r"metric must be one of .*'size'"),
        ({"above": "3"}, TypeError, r"above must be a number, got '3'"),
        ({"above": True}, TypeError, r"above must be a number, got True"),
        ({"above": float("nan")}, TypeError, r"above must be a number, got nan"),
        ({"callback": 5}, TypeError, r"callback must be callable, got int"),
        ({"subject": 3}, TypeError, r"subject must be a str .*got int"),
        ({"for_seconds": "1"}, TypeError, r"for_seconds must be a number, got '1'"),
        ({"for_seconds": -1.0}, ValueError, r"for_seconds must be >= 0, got -1.0"),
        ({"for_seconds": float("nan")}, ValueError, r"for_seconds must be >= 0, got nan"),
    ],
)
def test_add_bad_arguments(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"metric": "depth", "above": 1, "callback": print, **kwargs}
    alerts = Alerts(Registry())
    with pytest.raises(exc, match=match):
        alerts.add(args.pop("metric"), args.pop("above"), args.pop("callback"), **args)


def test_constructor_and_start_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"registry must be a fastq\.metrics\.Registry, got dict"):
        Alerts({})  # type: ignore[arg-type]
    alerts = Alerts(Registry())
    with pytest.raises(TypeError, match="interval must be a number, got '1'"):
        alerts.start("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval must be > 0, got 0"):
        alerts.start(0)
    alerts.stop()  # never started: nothing to do


def test_start_runs_check_on_a_thread_until_stopped() -> None:
    q = Queue(unique("q"))
    q.put("a")
    reg = Registry()
    reg.register(q)
    fired = threading.Event()
    threads: list[str] = []

    def callback(ev: AlertEvent) -> None:
        threads.append(threading.current_thread().name)
        fired.set()

    alerts = Alerts(reg, clock=FakeClock())
    alerts.add("depth", 0, callback)
    assert alerts.start(interval=0.01) is alerts
    try:
        with pytest.raises(RuntimeError, match="already running"):
            alerts.start(0.01)
        assert fired.wait(LIVENESS)
    finally:
        alerts.stop()
    assert threads == ["fastq-alerts"]
    assert not any(t.name == "fastq-alerts" for t in threading.enumerate())
    # stopped: it can be started again
    alerts.start(0.01)
    alerts.stop()


def test_default_registry_is_used_without_one() -> None:
    q = Queue(unique("dflt"))
    q.put_many(range(4))
    alerts = Alerts(clock=Clock())
    events: list[AlertEvent] = []
    alerts.add("depth", 3, events.append, subject=q.name)
    assert [(e.subject, e.value) for e in alerts.check()] == [(q.name, 4.0)]


def test_a_callback_may_stop_the_alerts(caplog: pytest.LogCaptureFixture) -> None:
    """A rule that stops its Alerts from the callback (on the alerts thread) ends the thread
    without an error, and the Alerts can be started again."""
    q = Queue(unique("q"))
    q.put("a")
    reg = Registry()
    reg.register(q)
    alerts = Alerts(reg, clock=FakeClock())
    stopped = threading.Event()
    errors: list[BaseException] = []

    def callback(ev: AlertEvent) -> None:
        try:
            alerts.stop()
        except BaseException as exc:
            errors.append(exc)
        finally:
            stopped.set()

    alerts.add("depth", 0, callback)
    with caplog.at_level(logging.ERROR, logger="fastq.alerts"):
        alerts.start(interval=0.01)
        try:
            assert stopped.wait(LIVENESS)
            assert errors == []  # stop() from the alerts thread: no "cannot join current thread"
            alerts.start(interval=0.01)  # not "already running"
        finally:
            alerts.stop()  # from this thread: joins whichever alerts thread is left
