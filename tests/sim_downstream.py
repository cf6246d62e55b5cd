"""A discrete-event simulation of a consumer pool calling a downstream with a concurrency knee.

The downstream is a c-server FIFO queue (M/G/c-like, ``c = knee``): a request is served at once
while fewer than ``knee`` are in service, else it waits its turn. Service times are lognormal
with mean ``base`` and coefficient of variation ``cv``. So latency is ~``base`` up to ``knee``
requests in flight and grows linearly past it (``base * n / knee``) while throughput plateaus
at ``knee / base``: the best concurrency is ``knee``.

The pool has unlimited backlog and keeps ``limiter.limit`` requests in flight; each completion
is fed to ``limiter.on_sample(latency, inflight=..., error=...)``. Time is a FakeClock moved by
the simulation, never the wall clock. Requests slower than ``timeout`` (if given) count as
errors, like a handler timeout. Used by tests/unit/test_concurrency.py and the benchmark.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from fastq import FakeClock


class SimLimiter(Protocol):
    @property
    def limit(self) -> int: ...

    def on_sample(self, latency: float, *, inflight: int, error: bool = False) -> None: ...


@dataclass(frozen=True)
class SimResult:
    mean_limit_tail: float
    """Time-weighted mean of ``limiter.limit`` over the second half of the run."""
    throughput: float
    """Completions per simulated second over the second half."""
    p50: float
    p99: float
    """Latency percentiles (seconds) of requests completing in the second half."""
    completions: int
    errors: int
    limit_trace: list[tuple[float, int]]
    """(time, limit) at every change of the limit."""


def simulate(
    limiter: SimLimiter,
    knee: int,
    base: float,
    seconds: float,
    seed: int,
    *,
    cv: float = 0.3,
    timeout: float | None = None,
) -> SimResult:
    """Run the pool against the downstream for ``seconds`` of simulated time."""
    rng = random.Random(seed)
    sigma = math.sqrt(math.log(1.0 + cv * cv)) if cv > 0 else 0.0
    mu = -sigma * sigma / 2.0

    def service() -> float:
        return base * (math.exp(rng.gauss(mu, sigma)) if sigma else 1.0)

    clock = FakeClock()
    # events: (time, seq, request id); a request is (start, inflight at start, service time)
    events: list[tuple[float, int, int]] = []
    waiting: deque[int] = deque()
    starts: dict[int, tuple[float, int]] = {}
    busy = 0
    inflight = 0
    seq = 0
    half = seconds / 2.0
    tail_latencies: list[float] = []
    tail_completions = 0
    completions = errors = 0
    trace: list[tuple[float, int]] = [(0.0, limiter.limit)]
    limit_area = 0.0  # integral of limit dt over the tail
    last_t = 0.0
    last_limit = limiter.limit

    def begin_service(rid: int, now: float) -> None:
        nonlocal busy, seq
        busy += 1
        seq += 1
        heapq.heappush(events, (now + service(), seq, rid))

    def issue(now: float) -> None:
        nonlocal inflight, seq
        while inflight < limiter.limit:
            seq += 1
            rid = seq
            inflight += 1
            starts[rid] = (now, inflight)  # in flight at its start, itself included
            if busy < knee:
                begin_service(rid, now)
            else:
                waiting.append(rid)

    issue(0.0)
    while events:
        t, _, rid = heapq.heappop(events)
        if t > seconds:
            break
        clock.advance(t - clock())
        busy -= 1
        if waiting:
            begin_service(waiting.popleft(), t)
        start, at_start = starts.pop(rid)
        inflight -= 1
        latency = t - start
        error = timeout is not None and latency > timeout
        completions += 1
        errors += error
        if t >= half:
            tail_latencies.append(latency)
            tail_completions += 1
        # time-weighted limit over the tail
        if t > half:
            limit_area += last_limit * (t - max(last_t, half))
        last_t = t
        limiter.on_sample(latency, inflight=at_start, error=error)
        new_limit = limiter.limit
        if new_limit != last_limit:
            trace.append((t, new_limit))
            last_limit = new_limit
        issue(t)
    end = max(last_t, half)
    limit_area += last_limit * (seconds - end)
    tail_latencies.sort()
    n = len(tail_latencies)

    def pct(q: float) -> float:
        return tail_latencies[min(n - 1, int(q * n))] if n else math.nan

    return SimResult(
        mean_limit_tail=limit_area / (seconds - half),
        throughput=tail_completions / (seconds - half),
        p50=pct(0.50),
        p99=pct(0.99),
        completions=completions,
        errors=errors,
        limit_trace=trace,
    )
