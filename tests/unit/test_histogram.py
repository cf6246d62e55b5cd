"""fastq.Histogram: bucket layout, percentiles and counts against numpy, snapshots, bad input."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastq import Histogram, HistogramSnapshot

#: the layout the docs promise: 256 exact buckets, then 128 per octave up to 2**40 ns
EXACT = 256
SUB = 128
REL_ERR = 2.0**-7  # a bucket's width over its lowest value, at most
DEFAULT_TOP_NS = 1_099_500_000_000


def layout(top_ns: int) -> list[tuple[int, int]]:
    """(lowest, highest) ns of every bucket up to the one holding top_ns, from the spec."""
    buckets = [(v, v) for v in range(EXACT)]
    m = 8
    while True:
        width = 1 << (m - 7)
        for sub in range(SUB):
            lo = (1 << m) + sub * width
            if lo > top_ns:
                return buckets
            buckets.append((lo, lo + width - 1))
        m += 1


def ns_of(seconds: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, Any]:
    """The integer ns the histogram keeps for each value (rounded half up, as in C)."""
    return np.floor(seconds * 1e9 + 0.5).astype(np.int64)


def lognormal(rng: random.Random, n: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    seed = rng.getrandbits(32)
    print(f"numpy seed {seed} (from {rng!r})")
    return np.random.default_rng(seed).lognormal(mean=math.log(1e-3), sigma=1.5, size=n)


# ---- layout ---------------------------------------------------------------------------------


def test_default_layout_and_memory() -> None:
    h = Histogram()
    buckets = layout(DEFAULT_TOP_NS)
    assert len(buckets) == 256 + 32 * 128 == 4352
    assert h.memory_bytes == 8 * len(buckets) == 34_816
    assert h.highest == 1099.5
    for lo, hi in buckets[EXACT:]:
        assert hi - lo + 1 <= lo * REL_ERR
    assert Histogram(highest=2.0**40 / 1e9).memory_bytes == 8 * 4353


def test_every_bucket_boundary_round_trips() -> None:
    """Each bucket's lowest and highest value land in it (cumulative counts step by two at
    each bucket), and a percentile reports the bucket's highest value."""
    buckets = layout(DEFAULT_TOP_NS)
    h = Histogram()
    for lo, hi in buckets:
        h.record_ns(lo)
        h.record_ns(hi)
    assert h.count == 2 * len(buckets)
    assert h.overflow == 1  # the top bucket's highest value is above highest
    his = [hi / 1e9 for _, hi in buckets]
    assert h.cumulative(his) == [2 * (i + 1) for i in range(len(buckets))]
    below = [(lo - 1) / 1e9 for lo, _ in buckets[1:]]
    assert h.cumulative(below) == [2 * (i + 1) for i in range(len(buckets) - 1)]
    one = Histogram()
    for lo, hi in buckets[:-1]:
        one.reset()
        one.record_ns(lo)
        assert one.percentile(50) == lo / 1e9  # clamped to the max recorded
        one.record_ns(hi)
        assert one.percentile(0) == hi / 1e9  # the bucket's highest value
        assert one.percentile(100) == hi / 1e9


# ---- against numpy --------------------------------------------------------------------------


QS = [0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0]


def test_percentiles_match_numpy_within_the_relative_error(rng: random.Random) -> None:
    data = lognormal(rng, 100_000)
    exact_ns = ns_of(data)
    h = Histogram()
    h.record_many(data)
    for q in QS:
        exact = int(np.percentile(exact_ns, q, method="inverted_cdf"))
        got = round(h.percentile(q) * 1e9)
        assert exact <= got <= exact * (1 + REL_ERR), (q, exact, got)
    snap = h.snapshot()
    for q, field in [
        (50, snap.p50),
        (90, snap.p90),
        (95, snap.p95),
        (99, snap.p99),
        (99.9, snap.p999),
    ]:
        assert field == h.percentile(q)


def test_exact_min_max_count_sum(rng: random.Random) -> None:
    data = lognormal(rng, 10_000)
    exact_ns = ns_of(data)
    h = Histogram(name="e2e")
    for x in data.tolist():
        h.record(x)
    snap = h.snapshot()
    assert snap.count == h.count == 10_000
    assert snap.sum_ns == int(exact_ns.sum())
    assert snap.sum_seconds == h.sum_seconds == int(exact_ns.sum()) / 1e9
    assert snap.min == int(exact_ns.min()) / 1e9
    assert snap.max == int(exact_ns.max()) / 1e9
    assert snap.mean == pytest.approx(int(exact_ns.sum()) / 1e9 / 10_000, rel=1e-12)
    assert snap.overflow == 0


def test_record_many_equals_a_loop_of_record(rng: random.Random) -> None:
    data = lognormal(rng, 5_000)
    data[::97] = 0.0
    data[::101] = np.inf
    looped, arrayed, listed, strided = Histogram(), Histogram(), Histogram(), Histogram()
    for x in data.tolist():
        looped.record(x)
    arrayed.record_many(data)
    listed.record_many(data.tolist())
    both = np.repeat(data, 2)  # every other element: the same values, stride 16 bytes
    strided.record_many(both[::2])
    bounds = [b / 1e9 for _, b in layout(DEFAULT_TOP_NS)] + [math.inf]
    expected = looped.snapshot()
    assert expected.overflow == len(data[::101])
    for other in (arrayed, listed, strided):
        assert other.snapshot() == expected
        assert other.cumulative(bounds) == looped.cumulative(bounds)


def test_record_many_ns_equals_record_ns(rng: random.Random) -> None:
    values = [rng.randrange(0, 1 << 42) for _ in range(3_000)]
    a, b, c = Histogram(), Histogram(), Histogram()
    for v in values:
        a.record_ns(v)
    b.record_many(np.array(values, dtype=np.int64), unit="ns")
    c.record_many(iter(values), unit="ns")
    assert a.snapshot() == b.snapshot() == c.snapshot()
    assert a.overflow == sum(v > DEFAULT_TOP_NS for v in values) > 0


def test_cumulative_matches_numpy_within_bucket_resolution(rng: random.Random) -> None:
    data = lognormal(rng, 50_000)
    exact_ns = ns_of(data)
    h = Histogram()
    h.record_many(data)
    bounds = [
        0.0,
        0.0001,
        0.0005,
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        1.0,
        10.0,
        math.inf,
    ]
    got = h.cumulative(bounds)
    assert got[-1] == len(data)
    assert got == sorted(got)
    for bound, count in zip(bounds[:-1], got[:-1], strict=True):
        bound_ns = math.floor(bound * 1e9 + 0.5)
        most = int((exact_ns <= bound_ns).sum())
        least = int((exact_ns <= bound_ns * (1 - REL_ERR)).sum())
        assert least <= count <= most, (bound, least, count, most)


# ---- merge, reset, snapshots ----------------------------------------------------------------


def test_merge_equals_recording_into_one(rng: random.Random) -> None:
    data = lognormal(rng, 4_000)
    whole, left, right = Histogram(), Histogram(), Histogram()
    whole.record_many(data)
    left.record_many(data[:1_500])
    right.record_many(data[1_500:])
    left.merge(right)
    assert left.snapshot() == whole.snapshot()
    assert right.count == 2_500  # the source is unchanged
    left.merge(left)
    assert left.count == 8_000
    assert left.snapshot().sum_ns == 2 * whole.snapshot().sum_ns


def test_merge_into_a_smaller_range_counts_overflow() -> None:
    small, big = Histogram(highest=1.0), Histogram()
    big.record(0.5)
    big.record(30.0)
    big.record(500.0)
    small.merge(big)
    snap = small.snapshot()
    assert snap.count == 3
    assert snap.overflow == 2
    assert snap.max == 1.0
    assert snap.min == 0.5
    assert small.percentile(100) == 1.0


def test_reset_and_snapshot_reset() -> None:
    h = Histogram()
    for v in (0.001, 0.002, 0.004):
        h.record(v)
    h.record(math.inf)
    moved = h.snapshot(reset=True)
    assert (moved.count, moved.sum_ns, moved.overflow) == (4, 1_099_507_000_000, 1)
    assert moved.min == 0.001
    assert moved.max == 1099.5
    empty = h.snapshot()
    assert empty == HistogramSnapshot(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0)
    assert (h.count, h.overflow, h.sum_seconds) == (0, 0, 0.0)
    assert h.percentile(99) == 0.0
    h.record(0.003)
    assert h.snapshot().min == h.snapshot().max == 0.003  # min/max start over too
    h.reset()
    assert h.snapshot() == empty
    assert h.cumulative([1.0, math.inf]) == [0, 0]


def test_overflow_is_clamped_to_highest() -> None:
    h = Histogram(highest=0.25, name="db")
    h.record(0.1)
    h.record(7.0)
    h.record(math.inf)
    h.record_ns(1 << 70)
    h.record(10**400)  # an int beyond the float range
    assert h.count == 5
    assert h.overflow == 4
    assert h.snapshot().max == 0.25
    assert h.percentile(100) == 0.25
    assert h.sum_seconds == pytest.approx(0.1 + 4 * 0.25)
    assert repr(h) == "Histogram(name='db', count=5, highest=0.25, overflow=4)"
    assert h.name == "db"


def test_not_picklable() -> None:
    with pytest.raises(TypeError, match="cannot pickle"):
        pickle.dumps(Histogram())


# ---- bad input ------------------------------------------------------------------------------


H = Histogram()
HA: Any = H  # the bad calls are typed wrong on purpose
AnyHistogram: Any = Histogram

BAD: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("highest zero", lambda: AnyHistogram(highest=0), ValueError, r"highest .*got 0"),
    ("highest nan", lambda: AnyHistogram(highest=math.nan), ValueError, r"highest .*got nan"),
    ("highest big", lambda: AnyHistogram(highest=1100.0), ValueError, r"highest .*got 1100\.0"),
    ("highest str", lambda: AnyHistogram(highest="1"), TypeError, r"highest .*got str"),
    ("name int", lambda: AnyHistogram(name=3), TypeError, r"name .*got int"),
    ("positional", lambda: AnyHistogram(1.0), TypeError, r"positional"),
    ("record negative", lambda: HA.record(-0.5), ValueError, r"seconds .*got -0\.5"),
    ("record nan", lambda: HA.record(math.nan), ValueError, r"seconds .*got nan"),
    ("record str", lambda: HA.record("1"), TypeError, r"seconds .*got str"),
    ("record bool", lambda: HA.record(True), TypeError, r"seconds .*got bool"),
    ("record None", lambda: HA.record(None), TypeError, r"seconds .*got NoneType"),
    ("record -huge", lambda: HA.record(-(10**400)), ValueError, r"seconds .*got -1000"),
    ("record_ns negative", lambda: HA.record_ns(-1), ValueError, r"ns .*got -1"),
    ("record_ns float", lambda: HA.record_ns(1.5), TypeError, r"ns .*got float"),
    ("record_ns bool", lambda: HA.record_ns(False), TypeError, r"ns .*got bool"),
    ("many unit", lambda: HA.record_many([1.0], unit="ms"), ValueError, r"unit .*got 'ms'"),
    ("many negative", lambda: HA.record_many([1.0, -2.0]), ValueError, r"values\[1\] .*-2\.0"),
    (
        "many nan array",
        lambda: HA.record_many(np.array([0.0, 1.0, np.nan])),
        ValueError,
        r"values\[2\] .*nan",
    ),
    (
        "many negative ns",
        lambda: HA.record_many(np.array([5, -5]), unit="ns"),
        ValueError,
        r"values\[1\] .*-5",
    ),
    ("many str item", lambda: HA.record_many([0.1, "x"]), TypeError, r"values\[1\] .*got str"),
    (
        "many int array as s",
        lambda: HA.record_many(np.array([1, 2])),
        TypeError,
        r"values must be a 1-D float64 array for unit='s'.*'l'",
    ),
    (
        "many float array as ns",
        lambda: HA.record_many(np.array([1.0]), unit="ns"),
        TypeError,
        r"values must be a 1-D int64 array for unit='ns'",
    ),
    ("many 2-D", lambda: HA.record_many(np.zeros((2, 2))), TypeError, r"values .*ndim 2"),
    (
        "many float32",
        lambda: HA.record_many(np.zeros(3, dtype=np.float32)),
        TypeError,
        r"values .*'f'",
    ),
    ("many int", lambda: HA.record_many(5), TypeError, r"values .*got int"),
    ("many str", lambda: HA.record_many("0.1"), TypeError, r"values .*got str"),
    ("percentile high", lambda: HA.percentile(100.5), ValueError, r"q .*got 100\.5"),
    ("percentile nan", lambda: HA.percentile(math.nan), ValueError, r"q .*got nan"),
    ("percentile str", lambda: HA.percentile("50"), TypeError, r"q .*got str"),
    ("snapshot reset int", lambda: HA.snapshot(reset=1), TypeError, r"reset .*got int"),
    (
        "cumulative unsorted",
        lambda: HA.cumulative([0.2, 0.1]),
        ValueError,
        r"bounds must be sorted ascending, got 0\.1 after 0\.2",
    ),
    ("cumulative negative", lambda: HA.cumulative([-1.0]), ValueError, r"bounds\[0\] .*-1\.0"),
    ("cumulative item", lambda: HA.cumulative([0.1, None]), TypeError, r"bounds\[1\] .*NoneType"),
    ("cumulative int", lambda: HA.cumulative(3), TypeError, r"bounds .*got int"),
    ("merge other", lambda: HA.merge([1.0]), TypeError, r"other must be a Histogram, got list"),
]


@pytest.mark.parametrize(
    ("call", "exc", "match"), [row[1:] for row in BAD], ids=[row[0] for row in BAD]
)
def test_bad_input(call: Callable[[], object], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        call()
    assert H.count == 0  # nothing was recorded by a rejected call


def test_accepted_number_types() -> None:
    h = Histogram(highest=10)
    h.record(1)
    h.record(np.float32(0.5))
    h.record(np.float64(0.25))
    h.record_ns(np.int64(7))
    h.record_many(np.array([3, 4], dtype=np.int64), unit="ns")
    h.record_many((0.1, 2))
    assert h.count == 8
    assert (
        h.snapshot().sum_ns
        == 1_000_000_000 + 500_000_000 + 250_000_000 + 7 + 3 + 4 + 100_000_000 + 2_000_000_000
    )


# ---- property -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(min_value=0, max_value=1 << 41), max_size=300),
    qs=st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=1, max_size=5),
)
def test_count_and_percentile_bounds_hold(values: list[int], qs: list[float]) -> None:
    h = Histogram()
    h.record_many(values, unit="ns")
    kept = sorted(min(v, DEFAULT_TOP_NS) for v in values)
    assert h.count == len(values)
    assert h.overflow == sum(v > DEFAULT_TOP_NS for v in values)
    snap = h.snapshot()
    assert snap.sum_ns == sum(kept)
    if not kept:
        assert snap == HistogramSnapshot(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0)
        assert all(h.percentile(q) == 0.0 for q in qs)
        return
    assert (snap.min, snap.max) == (kept[0] / 1e9, kept[-1] / 1e9)
    for q in qs:
        rank = min(max(math.ceil(q / 100.0 * len(kept)), 1), len(kept))
        exact = kept[rank - 1]
        got = round(h.percentile(q) * 1e9)
        assert exact <= got <= min(exact + exact * REL_ERR, kept[-1]), (q, exact, got)
