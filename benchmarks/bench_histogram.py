"""Latency histograms: fastq.Histogram against what a user would pick to get p50/p99.

Values: --bench-hash-calls (100,000) log-normal latencies around 1 ms (seed 1), made once per
module, as float seconds and as int nanoseconds.

hist-record       one call per value, the method bound to a local: `for x in xs: rec(x)`
    fastq            rec = h.record              (float seconds)
    fastq ns         rec = h.record_ns           (int ns)
    hdrhistogram     rec = h.record_value        (int ns; HdrHistogram(1, 2**40, 2), pure Python)
    list             rec = samples.append        (float seconds; statistics.quantiles later)
hist-record-many  all values in one call
    fastq            h.record_many(array)        (float64 numpy array, GIL released)
    hdrhistogram     for v in ns: rec(v)         (no bulk API)
    list             samples.extend(xs)
hist-summary      record everything, then p50/p90/p99/p99.9/max once
    fastq            h.record_many(array); h.snapshot()
    hdrhistogram     loop of record_value; get_value_at_percentile x4, get_max_value
    list             extend; statistics.quantiles(samples, n=1000, method="inclusive"), max

Each round starts from a fresh, empty histogram (setup, untimed). Checks (teardown, untimed):
the histogram holds exactly the values recorded; in hist-summary, fastq's and hdrhistogram's
p99 are within 1% of the exact one. Report medians per element with --benchmark-columns.
"""

from __future__ import annotations

import importlib
import importlib.util
import statistics
from collections.abc import Callable
from typing import Any

import pytest
from harness import Settings, measure

import fastq

HAVE_NUMPY = importlib.util.find_spec("numpy") is not None
HAVE_HDR = importlib.util.find_spec("hdrh") is not None
pytestmark = pytest.mark.skipif(not HAVE_NUMPY, reason="numpy is not installed")

#: the peers that are installed here (a missing one is left out, not skipped: a skipped
#: parametrization would leave pytest-benchmark's fixture unused, and warnings are errors)
IMPLS = ["fastq", "fastq ns", *(["hdrhistogram"] if HAVE_HDR else []), "list"]
MANY_IMPLS = [i for i in IMPLS if i != "fastq ns"]


class Data:
    def __init__(self, n: int) -> None:
        import numpy as np

        rng = np.random.default_rng(1)
        self.array = rng.lognormal(mean=-6.9, sigma=1.0, size=n)  # ~1 ms median, seconds
        self.seconds: list[float] = self.array.tolist()
        self.ns: list[int] = [round(x * 1e9) for x in self.seconds]
        self.p99 = float(np.percentile(self.array, 99, method="inverted_cdf"))


_DATA: dict[int, Data] = {}


def data(n: int) -> Data:
    if n not in _DATA:
        _DATA[n] = Data(n)
    return _DATA[n]


def _hdr() -> Any:
    hdr_type = importlib.import_module("hdrh.histogram").HdrHistogram  # untyped: Any
    return hdr_type(1, 2**40, 2)


def _count(impl: str, h: Any) -> int:
    if impl.startswith("fastq"):
        return int(h.count)
    if impl == "hdrhistogram":
        return int(h.get_total_count())
    return len(h)


def _fresh(impl: str) -> Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]:
    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        if impl.startswith("fastq"):
            return (fastq.Histogram(), []), {}
        if impl == "hdrhistogram":
            return (_hdr(), []), {}
        return ([], []), {}

    return setup


def _measure(
    benchmark: Any,
    settings: Settings,
    scenario: str,
    impl: str,
    n: int,
    run: Callable[[Any, list[Any]], None],
    check: Callable[[Any, list[Any]], None] | None = None,
) -> None:
    """One scenario row: a fresh histogram per round; the teardown checks it holds all n."""

    def teardown(h: Any, out: list[Any]) -> None:
        assert _count(impl, h) == n
        if check is not None:
            check(h, out)

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=impl,
        items=n,
        target=run,
        setup=_fresh(impl),
        teardown=teardown,
    )


@pytest.mark.parametrize("impl", IMPLS)
def test_hist_record(benchmark: Any, settings: Settings, impl: str) -> None:
    d = data(settings.hash_calls)
    n = len(d.seconds)

    def run(h: Any, out: list[Any]) -> None:
        if impl == "fastq":
            rec = h.record
            for x in d.seconds:
                rec(x)
        elif impl == "fastq ns":
            rec = h.record_ns
            for v in d.ns:
                rec(v)
        elif impl == "hdrhistogram":
            rec = h.record_value
            for v in d.ns:
                rec(v)
        else:
            rec = h.append
            for x in d.seconds:
                rec(x)

    _measure(benchmark, settings, "hist-record", impl, n, run)


@pytest.mark.parametrize("impl", MANY_IMPLS)
def test_hist_record_many(benchmark: Any, settings: Settings, impl: str) -> None:
    d = data(settings.hash_calls)
    n = len(d.seconds)

    def run(h: Any, out: list[Any]) -> None:
        if impl == "fastq":
            h.record_many(d.array)
        elif impl == "hdrhistogram":
            rec = h.record_value
            for v in d.ns:
                rec(v)
        else:
            h.extend(d.seconds)

    _measure(benchmark, settings, "hist-record-many", impl, n, run)


@pytest.mark.parametrize("impl", MANY_IMPLS)
def test_hist_summary(benchmark: Any, settings: Settings, impl: str) -> None:
    d = data(settings.hash_calls)
    n = len(d.seconds)

    def run(h: Any, out: list[Any]) -> None:
        if impl == "fastq":
            h.record_many(d.array)
            s = h.snapshot()
            out.append((s.p50, s.p90, s.p99, s.p999, s.max))
        elif impl == "hdrhistogram":
            rec = h.record_value
            for v in d.ns:
                rec(v)
            ps = [h.get_value_at_percentile(q) / 1e9 for q in (50, 90, 99, 99.9)]
            out.append((*ps, h.get_max_value() / 1e9))
        else:
            h.extend(d.seconds)
            qs = statistics.quantiles(h, n=1000, method="inclusive")
            out.append((qs[499], qs[899], qs[989], qs[998], max(h)))

    def check(h: Any, out: list[Any]) -> None:
        p99 = out[0][2]
        assert abs(p99 - d.p99) <= 0.01 * d.p99, (impl, p99, d.p99)

    _measure(benchmark, settings, "hist-summary", impl, n, run, check)
