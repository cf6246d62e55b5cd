"""CircuitBreaker: the state machine on a FakeClock, the sliding window, exclusions, listeners,
validation, and exact counts under many threads."""

from __future__ import annotations

import threading

import pytest

from fastq import FakeClock
from fastq.errors import Permanent
from fastq.pipeline.breaker import CircuitBreaker


def make(clock: FakeClock, **kwargs: object) -> CircuitBreaker:
    options: dict[str, object] = {
        "failure_rate": 0.5,
        "min_calls": 10,
        "window": 30.0,
        "reset_timeout": 10.0,
    }
    options.update(kwargs)
    return CircuitBreaker(clock=clock, **options)  # type: ignore[arg-type]


def test_defaults() -> None:
    breaker = CircuitBreaker()
    assert (breaker.failure_rate, breaker.min_calls, breaker.window) == (0.5, 20, 30.0)
    assert (breaker.reset_timeout, breaker.half_open_calls) == (10.0, 5)
    assert breaker.state == "closed"
    assert breaker.allow()
    assert breaker.retry_after() == 0.0


def test_no_decision_before_min_calls() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(9):
        breaker.record_failure()
    assert breaker.state == "closed"  # 9 of 9 failing, but min_calls is 10
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()


def test_opens_exactly_at_the_threshold() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(6):
        breaker.record_success()
    for _ in range(5):
        breaker.record_failure()
    assert breaker.state == "closed"  # 5/11 < 0.5
    breaker.record_failure()
    assert breaker.state == "open"  # 6/12 >= 0.5
    stats = breaker.statistics()
    assert stats.opened_total == 1
    assert stats.last_opened_at == 0.0


def test_success_can_complete_min_calls_at_a_failing_rate() -> None:
    breaker = make(FakeClock())
    for _ in range(5):
        breaker.record_failure()
    for _ in range(4):
        breaker.record_success()
    assert breaker.state == "closed"
    breaker.record_success()  # 10 calls, 5 failures: rate 0.5 >= 0.5
    assert breaker.state == "open"


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.min_calls):
        breaker.record_failure()
    assert breaker.state == "open"


def test_stays_open_until_reset_timeout_then_half_open() -> None:
    clock = FakeClock(100.0)
    breaker = make(clock)
    open_breaker(breaker)
    assert breaker.retry_after() == 10.0
    clock.advance(9.999)
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.retry_after() == pytest.approx(0.001)
    clock.advance(0.001)
    assert breaker.state == "half_open"
    assert breaker.retry_after() == 0.0
    assert breaker.statistics().rejected_total == 1


def test_half_open_permits_probes_and_successes_close() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=3)
    open_breaker(breaker)
    clock.advance(10.0)
    assert [breaker.allow() for _ in range(4)] == [True, True, True, False]
    breaker.record_success()
    breaker.record_success()
    assert breaker.state == "half_open"
    breaker.record_success()
    assert breaker.state == "closed"
    stats = breaker.statistics()
    assert (stats.calls, stats.failures) == (0, 0)  # the window starts empty
    assert breaker.allow()


def test_half_open_reopens_when_the_trial_reaches_the_failure_rate() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=5)  # 3 failures of 5 reach 0.5
    open_breaker(breaker)
    clock.advance(10.0)
    for _ in range(5):
        assert breaker.allow()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "half_open"
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.retry_after() == 10.0  # a fresh reset_timeout from now
    assert breaker.statistics().opened_total == 2


def test_half_open_closes_below_the_failure_rate() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=5)
    open_breaker(breaker)
    clock.advance(10.0)
    for _ in range(5):
        breaker.allow()
    for ok in (True, False, True, False, True):  # 2 of 5 < 0.5
        breaker.record_success() if ok else breaker.record_failure()
    assert breaker.state == "closed"


def test_one_probe_any_failure_reopens() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=1)
    open_breaker(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    assert not breaker.allow()
    breaker.record_failure(ConnectionError())
    assert breaker.state == "open"


def test_outcomes_while_open_and_unpermitted_outcomes_are_ignored() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=2)
    open_breaker(breaker)
    breaker.record_success()  # a call that started before the breaker opened
    breaker.record_failure()
    assert breaker.statistics().ignored_total == 2
    clock.advance(10.0)
    breaker.record_success()  # half-open, but no permit was handed out
    assert breaker.state == "half_open"
    assert breaker.statistics().calls == 0


def test_release_permit_gives_a_probe_back() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=1)
    open_breaker(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    assert not breaker.allow()
    breaker.release_permit()
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"


def test_window_slides_old_failures_age_out() -> None:
    clock = FakeClock()
    breaker = make(clock, min_calls=10, window=30.0)
    for _ in range(9):
        breaker.record_failure()
    clock.advance(31.0)  # all 9 failures are now older than the window
    assert breaker.statistics().calls == 0
    breaker.record_failure()
    assert breaker.state == "closed"
    stats = breaker.statistics()
    assert (stats.calls, stats.failures) == (1, 1)


def test_window_partial_slide() -> None:
    clock = FakeClock()
    breaker = make(clock, min_calls=10, window=30.0)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(15.0)
    for _ in range(4):
        breaker.record_success()
    clock.advance(15.5)  # the first 5 failures age out, the 4 successes stay
    stats = breaker.statistics()
    assert (stats.calls, stats.failures) == (4, 0)
    for _ in range(6):
        breaker.record_failure()
    assert breaker.state == "open"  # 6/10 in the window


def test_excluded_errors_are_ignored() -> None:
    breaker = make(FakeClock(), exclude=(KeyError, lambda e: "bad input" in str(e)))
    for _ in range(20):
        breaker.record_failure(Permanent("bad message"))
        breaker.record_failure(KeyError("k"))
        breaker.record_failure(RuntimeError("bad input here"))
    stats = breaker.statistics()
    assert stats.state == "closed"
    assert (stats.calls, stats.failures, stats.ignored_total) == (0, 0, 60)
    breaker.record_failure(RuntimeError("downstream is down"))
    assert breaker.statistics().failures == 1


def test_excluded_error_in_half_open_returns_the_permit() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=1)
    open_breaker(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_failure(Permanent("bad message"))
    assert breaker.state == "half_open"
    assert breaker.allow()


def test_state_change_listeners() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=1)
    seen: list[tuple[str, str]] = []

    @breaker.on_state_change
    def listener(old: str, new: str) -> None:
        seen.append((old, new))

    open_breaker(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_failure()
    clock.advance(10.0)
    breaker.allow()
    breaker.record_success()
    open_breaker(breaker)
    breaker.reset()
    assert seen == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "open"),
        ("open", "closed"),
    ]
    assert breaker.state == "closed"


def test_a_failing_listener_does_not_stop_the_others_or_the_transition() -> None:
    breaker = make(FakeClock())
    seen: list[str] = []

    def bad(old: str, new: str) -> None:
        raise RuntimeError("listener bug")

    breaker.on_state_change(bad)
    breaker.on_state_change(lambda old, new: seen.append(new))
    for _ in range(9):
        breaker.record_failure()
    with pytest.raises(RuntimeError, match="listener bug"):
        breaker.record_failure()
    assert seen == ["open"]
    assert breaker.state == "open"


def test_reset_timeout_zero_goes_half_open_at_once() -> None:
    breaker = make(FakeClock(), reset_timeout=0)
    for _ in range(10):
        breaker.record_failure()
    assert breaker.state == "half_open"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"failure_rate": 0}, ValueError, r"failure_rate must be in \(0, 1\], got 0"),
        ({"failure_rate": 1.5}, ValueError, "failure_rate must be in"),
        ({"failure_rate": float("nan")}, ValueError, "failure_rate must be in"),
        ({"failure_rate": True}, TypeError, "failure_rate must be a number"),
        ({"min_calls": 0}, ValueError, "min_calls must be >= 1, got 0"),
        ({"min_calls": 2.0}, TypeError, "min_calls must be an int"),
        ({"window": 0}, ValueError, "window must be a finite number > 0"),
        ({"window": float("inf")}, ValueError, "window must be a finite number > 0"),
        ({"reset_timeout": -1}, ValueError, "reset_timeout must be a finite number >= 0"),
        ({"half_open_calls": 0}, ValueError, "half_open_calls must be >= 1"),
        ({"exclude": "KeyError"}, TypeError, "exclude must be"),
        ({"clock": 5}, TypeError, "clock must be a callable"),
        ({"name": 5}, TypeError, "name must be a str"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_counts_are_exact_under_many_threads() -> None:
    clock = FakeClock()
    threads, per_thread = 8, 5000
    # min_calls above the total: the breaker never judges the window, so it stays closed
    # whatever order the threads' calls land in (with min_calls=1, a first recorded call
    # that failed made the rate 100% and opened it: seen on 3.13t)
    breaker = CircuitBreaker(
        failure_rate=1.0, min_calls=threads * per_thread + 1, clock=clock, name="db"
    )
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        barrier.wait()
        for n in range(per_thread):
            assert breaker.allow()
            if (n + i) % 3 == 0:
                breaker.record_failure(ConnectionError())
            else:
                breaker.record_success()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    expected_failures = sum(
        1 for i in range(threads) for n in range(per_thread) if (n + i) % 3 == 0
    )
    stats = breaker.statistics()
    assert stats.state == "closed"
    assert (stats.calls, stats.failures) == (threads * per_thread, expected_failures)
    assert stats.name == "db"
    assert repr(breaker) == "<CircuitBreaker 'db' closed>"


def test_half_open_permits_are_exact_under_many_threads() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=7)
    open_breaker(breaker)
    clock.advance(10.0)
    granted: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        mine = [breaker.allow() for _ in range(100)]
        with lock:
            granted.extend(mine)

    workers = [threading.Thread(target=work) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sum(granted) == 7
