"""DedupWindow (unit): the public contract of fastq.DedupWindow, method by method.

- seen / contains / ``in`` / forget / len / clear / statistics and the counters they keep;
- seen_many on lists, tuples, iterables, uint64/int64 arrays (any byte order, strided) and
  ``S<n>`` arrays, with repeats inside one batch new at their first occurrence only;
- one key, many spellings: "a" is b"a" (UTF-8), 5 is (5).to_bytes(8, "little"), a buffer is its
  raw bytes, in fingerprint and exact mode alike;
- time, with a fake (list-backed) clock: a key is remembered while clock() < t + ttl and new
  again at exactly t + ttl; a clock going backwards is clamped; ttl=inf never expires;
- capacity: the oldest inserted key is evicted first; memory stays within 32 B per key + 64 KiB
  while 10**7 distinct keys stream through (R10's numbers: 10**6 keys, 100% of the repeats
  inside the window rejected and 100% accepted again once the clock has moved by ttl);
- exact mode never confuses keys, even with fingerprints cut to 1, 2 or 4 bits (the private
  ``_fingerprint_bits`` hook), while fingerprint mode with 2 bits does (F21: why 64 bits);
- every bad argument raises TypeError/ValueError naming it; a window whose __init__ never ran
  raises instead of crashing; windows do not pickle;
- robustness, each in a subprocess (a crash fails that test, not the session): a clock that
  returns +-inf, and a key list emptied while the window reads a Python clock;
- snapshots: to_bytes/from_bytes round trips (settings, counters, entries, their order and
  their remaining lifetimes; ``elapsed`` ages them), and argument errors. Damaged snapshots
  are fuzzed in tests/fuzz/test_dedup_snapshot.py.

Random inputs come from the seeded ``rng`` fixture (asserts print it: FASTQ_SEED replays).
"""

from __future__ import annotations

import array
import collections
import dataclasses
import enum
import json
import math
import pickle
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from models import DedupModel, ManualClock, dedup_key_bytes

import fastq
from fastq import CorruptLogError, DedupStatistics, DedupWindow

BOUND_SLACK = 65536  # memory_bytes <= 32 * max_keys + 64 KiB (fingerprint mode)


def window(
    ttl: float = 10.0, max_keys: int = 1000, *, exact: bool = False, start: float = 0.0
) -> tuple[DedupWindow, ManualClock]:
    clock = ManualClock(start)
    return DedupWindow(ttl, max_keys, exact=exact, clock=clock), clock


def counters(w: DedupWindow) -> tuple[int, int, int, int, int]:
    s = w.statistics()
    return (s.size, s.inserted, s.hits, s.evictions, s.expiries)


def model_counters(m: DedupModel, now: float) -> tuple[int, int, int, int, int]:
    return (m.len(now), m.inserted, m.hits, m.evictions, m.expiries)


# ---- seen, contains, forget, len, clear, statistics -----------------------------------------


@pytest.mark.parametrize("exact", [False, True])
def test_seen_is_check_and_insert(exact: bool) -> None:
    w, _ = window(exact=exact)
    assert len(w) == 0
    assert w.seen(b"order-1") is False
    assert w.seen(b"order-1") is True
    assert w.seen(b"order-1") is True
    assert w.seen(b"order-2") is False
    assert len(w) == 2
    assert w.contains(b"order-1") is True
    assert (b"order-2" in w) is True
    assert (b"order-3" in w) is False
    assert counters(w) == (2, 2, 2, 0, 0)


@pytest.mark.parametrize("exact", [False, True])
def test_contains_neither_inserts_nor_counts(exact: bool) -> None:
    w, _ = window(exact=exact)
    w.seen(b"x")
    before = counters(w)
    for _ in range(3):
        assert w.contains(b"y") is False
        assert (b"y" in w) is False
        assert w.contains(b"x") is True
        assert (b"x" in w) is True
    assert counters(w) == before
    assert w.seen(b"y") is False  # contains never inserted it


@pytest.mark.parametrize("exact", [False, True])
def test_forget_makes_a_key_new_again(exact: bool) -> None:
    w, clock = window(ttl=10.0, exact=exact)
    w.seen(b"a")
    w.seen(b"b")
    assert w.forget(b"a") is True
    assert w.forget(b"a") is False  # already gone
    assert w.forget(b"never") is False
    assert w.contains(b"a") is False
    assert len(w) == 1
    assert counters(w) == (1, 2, 0, 0, 0)  # a forget is neither a hit nor an expiry
    clock.set(5.0)
    assert w.seen(b"a") is False  # new again, inserted at t=5 ...
    assert w.seen(b"a") is True
    clock.set(14.5)
    assert w.contains(b"a") is True  # ... so it expires at 15, not at 10
    assert w.contains(b"b") is False  # b (t=0) did expire at 10
    clock.set(15.0)
    assert w.contains(b"a") is False
    assert counters(w) == (0, 3, 1, 0, 2)


@pytest.mark.parametrize("exact", [False, True])
def test_clear_forgets_everything_but_the_counters(exact: bool) -> None:
    w, clock = window(ttl=10.0, max_keys=3, exact=exact)
    for k in (b"a", b"b", b"c", b"d", b"b"):  # d evicts a; b is a hit
        w.seen(k)
    clock.set(1.0)
    before = w.statistics()
    assert (before.size, before.inserted, before.hits, before.evictions) == (3, 4, 1, 1)
    w.clear()
    after = w.statistics()
    assert len(w) == 0
    assert after == dataclasses.replace(before, size=0, memory_bytes=after.memory_bytes)
    for k in (b"a", b"b", b"c", b"d"):
        assert w.contains(k) is False
        assert w.seen(k) is False
    assert w.statistics().inserted == 8  # the counters keep counting
    w.clear()
    w.clear()
    assert len(w) == 0


def test_statistics_is_a_frozen_snapshot_of_the_settings_and_counters() -> None:
    w, _ = window(ttl=2.5, max_keys=7, exact=True)
    w.seen(b"a")
    s = w.statistics()
    assert isinstance(s, DedupStatistics)
    assert s == DedupStatistics(
        size=1,
        max_keys=7,
        ttl=2.5,
        exact=True,
        inserted=1,
        hits=0,
        evictions=0,
        expiries=0,
        memory_bytes=s.memory_bytes,
    )
    assert isinstance(s.memory_bytes, int)
    assert s.memory_bytes > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.size = 5  # type: ignore[misc]
    w.seen(b"b")
    assert s.size == 1  # a snapshot: it does not follow the window
    assert w.statistics().size == 2


def test_properties() -> None:
    w = DedupWindow(5, 9, exact=True)
    assert w.ttl == 5.0
    assert type(w.ttl) is float
    assert w.max_keys == 9
    assert type(w.max_keys) is int
    assert w.exact is True
    d = DedupWindow()
    assert (d.ttl, d.max_keys, d.exact) == (300.0, 1_000_000, False)
    with pytest.raises(AttributeError):
        d.ttl = 1.0  # type: ignore[misc]
    assert DedupWindow(math.inf).ttl == math.inf
    assert DedupWindow(max_keys=2**30).max_keys == 2**30
    assert "size=0" in repr(d)


def test_default_clock_keeps_keys_for_a_long_ttl() -> None:
    w = DedupWindow(ttl=3600.0, max_keys=100)
    assert w.seen("k") is False
    assert w.seen("k") is True
    assert len(w) == 1


# ---- seen_many ---------------------------------------------------------------------------------

# Logical keys are 8 bytes whose last byte is not NUL, so each one has every spelling below:
# an int (uint64 and, as two's complement, int64), its 8 little-endian bytes, and an S8 element
# (numpy drops trailing NULs from those).


def logical_keys(values: Iterable[int]) -> list[bytes]:
    return [(v | 1 << 63).to_bytes(8, "little") for v in values]


def as_u64(keys: list[bytes]) -> list[int]:
    return [int.from_bytes(k, "little") for k in keys]


def as_i64(keys: list[bytes]) -> list[int]:
    return [int.from_bytes(k, "little", signed=True) for k in keys]


def strided(keys: list[bytes]) -> npt.NDArray[np.uint64]:
    wide = np.zeros(3 * len(keys), dtype=np.uint64)
    wide[::3] = as_u64(keys)
    return wide[::3]


BATCHES: dict[str, Callable[[list[bytes]], Any]] = {
    "list of bytes": list,
    "tuple of bytes": tuple,
    "list of ints": as_u64,
    "tuple of negative ints": lambda ks: tuple(as_i64(ks)),
    "list of bytearrays": lambda ks: [bytearray(k) for k in ks],
    "generator": lambda ks: (k for k in ks),
    "deque": collections.deque,
    "uint64 array": lambda ks: np.array(as_u64(ks), dtype=np.uint64),
    "int64 array": lambda ks: np.array(as_i64(ks), dtype=np.int64),
    "big-endian uint64 array": lambda ks: np.array(as_u64(ks), dtype=">u8"),
    "strided uint64 view": strided,
    "reversed uint64 view": lambda ks: np.array(as_u64(ks[::-1]), dtype=np.uint64)[::-1],
    "big-endian int64 array": lambda ks: np.array(as_i64(ks), dtype=">i8"),
    "column of a 2-D uint64 array": lambda ks: np.array(
        [[0, v] for v in as_u64(ks)] or np.zeros((0, 2)), dtype=np.uint64
    )[:, 1],
    "reversed S8 view": lambda ks: np.array(ks[::-1], dtype="S8")[::-1],
    "S8 array": lambda ks: np.array(ks, dtype="S8"),
    "S12 array": lambda ks: np.array(ks, dtype="S12"),
}


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("kind", sorted(BATCHES))
def test_seen_many_marks_repeats_inside_a_batch(kind: str, exact: bool) -> None:
    k = logical_keys(range(4))
    batch = [k[0], k[1], k[0], k[2], k[1], k[1], k[3], k[0]]
    w, _ = window(exact=exact)
    got = w.seen_many(BATCHES[kind](batch))
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.bool_
    assert got.shape == (len(batch),)
    assert got.tolist() == [False, False, True, False, True, True, False, True]
    assert w.seen_many(BATCHES[kind](batch)).tolist() == [True] * len(batch)
    assert counters(w) == (4, 4, 12, 0, 0)
    for key in k:  # every spelling is the same key as the plain bytes
        assert w.contains(key)
        assert w.contains(int.from_bytes(key, "little"))


@pytest.mark.parametrize("kind", sorted(BATCHES))
def test_seen_many_empty_batch(kind: str) -> None:
    w, _ = window()
    got = w.seen_many(BATCHES[kind]([]))
    assert got.dtype == np.bool_
    assert got.shape == (0,)
    assert counters(w) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("exact", [False, True])
def test_seen_many_agrees_with_the_model(exact: bool, rng: Any) -> None:
    """Random batches over a small key space with a small window: repeats inside a batch,
    across batches, evictions in the middle of a batch, expiries between batches."""
    w, clock = window(ttl=5.0, max_keys=16, exact=exact)
    m = DedupModel(5.0, 16)
    for step in range(300):
        keys = logical_keys(rng.randrange(40) for _ in range(rng.randrange(0, 30)))
        kind = rng.choice(sorted(BATCHES))
        clock.advance(rng.choice([0.0, 0.5, 1.0, 2.0]))
        got = w.seen_many(BATCHES[kind](keys)).tolist()
        want = m.seen_many(keys, clock.t[0])
        assert got == want, (rng, step, kind, keys)
        assert counters(w) == model_counters(m, clock.t[0]), (rng, step)


def test_a_bad_item_fails_the_whole_batch_before_anything_is_inserted() -> None:
    w, _ = window()
    with pytest.raises(TypeError, match=r"keys\[2\]"):
        w.seen_many([b"a", "b", None, b"c"])  # type: ignore[list-item]
    assert counters(w) == (0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match=r"keys\[1\]"):
        w.seen_many([b"a", 2**64])
    assert w.seen_many([b"a", "b", b"c"]).tolist() == [False, False, False]

    def failing() -> Iterator[bytes]:
        yield b"x"
        raise RuntimeError("the producer broke")

    with pytest.raises(RuntimeError, match="producer"):
        w.seen_many(failing())
    assert w.contains(b"x") is False


# ---- one key, many spellings ------------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 5


EQUIVALENT: dict[str, list[Any]] = {
    "str is its UTF-8": ["a", b"a", bytearray(b"a"), memoryview(b"a"), array.array("B", b"a")],
    "non-ASCII str": ["é€", "é€".encode(), bytearray("é€".encode())],
    "empty": ["", b"", bytearray(), memoryview(b"")],
    "int is 8 LE bytes": [
        5,
        (5).to_bytes(8, "little"),
        Color.RED,
        np.uint64(5),
        np.int64(5),
        np.int8(5),
        array.array("B", (5).to_bytes(8, "little")),
    ],
    "negative int is two's complement": [
        -1,
        2**64 - 1,
        b"\xff" * 8,
        np.int64(-1),
        np.uint64(2**64 - 1),
    ],
    "bool is an int": [True, 1, (1).to_bytes(8, "little")],
    "int extremes": [-(2**63), 2**63, (2**63).to_bytes(8, "little"), np.int64(-(2**63))],
}


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("group", sorted(EQUIVALENT))
def test_one_key_many_spellings(group: str, exact: bool) -> None:
    spellings = EQUIVALENT[group]
    assert len({dedup_key_bytes(s) for s in spellings}) == 1  # the test's own premise
    w, _ = window(exact=exact)
    assert w.seen(spellings[0]) is False
    for s in spellings[1:]:
        assert w.seen(s) is True, s
        assert w.contains(s) is True, s
        assert (s in w) is True, s
        assert w.seen_many([s]).tolist() == [True], s
    assert len(w) == 1
    assert w.forget(spellings[-1]) is True
    assert w.contains(spellings[0]) is False
    assert len(w) == 0


@pytest.mark.parametrize("exact", [False, True])
def test_spellings_of_different_keys_stay_different(exact: bool) -> None:
    keys: list[Any] = [
        b"a",
        b"a\x00",
        "A",
        97,  # 8 bytes, not b"a"
        b"",
        b"\x00",
        0,
        5,
        b"\x05",
        -1,
        b"\xff",
        "ab",
        b"ba",
    ]
    assert len({dedup_key_bytes(k) for k in keys}) == len(keys)
    w, _ = window(exact=exact)
    assert w.seen_many(keys).tolist() == [False] * len(keys)
    assert len(w) == len(keys)


@pytest.mark.parametrize("exact", [False, True])
def test_array_elements_are_the_same_keys_as_single_keys(exact: bool) -> None:
    w, _ = window(exact=exact)
    w.seen(5)
    w.seen("a")
    w.seen(-2)
    assert w.seen_many(np.array([5, 6], dtype=np.uint64)).tolist() == [True, False]
    assert w.seen_many(np.array([-2, 5], dtype=np.int64)).tolist() == [True, True]
    # S<n> elements are read as numpy reads them: without trailing NULs
    assert w.seen_many(np.array([b"a", b"a\x00", b"b"], dtype="S3")).tolist() == [
        True,
        True,
        False,
    ]
    assert w.contains(6)
    assert w.contains(b"b")
    assert w.contains(b"b\x00") is False


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize(
    ("array_key", "same_as"),
    [
        (np.frombuffer(b"ab", dtype=np.uint8), b"ab"),
        (np.array([1, 2], dtype="<u2"), b"\x01\x00\x02\x00"),
        (np.array([7], dtype=np.uint8), b"\x07"),
        (np.frombuffer(b"xyz", dtype="S1"), b"xyz"),
    ],
    ids=["uint8[2]", "uint16[2]", "uint8[1]", "S1[3]"],
)
def test_numpy_array_key_is_its_raw_bytes(array_key: Any, same_as: bytes, exact: bool) -> None:
    """hash64's key types (which DedupWindow shares): "any C-contiguous buffer: bytes, bytearray,
    memoryview, array.array, numpy array — its raw bytes"."""
    w, _ = window(exact=exact)
    assert w.seen(same_as) is False
    assert w.seen(array_key) is True
    assert w.contains(array_key) is True
    assert fastq.hash64(array_key) == fastq.hash64(same_as)


@pytest.mark.parametrize("key", [2**64, -(2**63) - 1, 10**30])
def test_int_keys_out_of_range(key: int) -> None:
    w, _ = window()
    for call in (w.seen, w.contains, w.forget):
        with pytest.raises(ValueError, match="key"):
            call(key)
    with pytest.raises(ValueError, match=r"keys\[0\]"):
        w.seen_many([key])
    assert len(w) == 0


def test_str_with_a_lone_surrogate() -> None:
    w, _ = window()
    with pytest.raises(UnicodeEncodeError):
        w.seen("a\ud800")
    with pytest.raises(ValueError, match="surrogate"):  # UnicodeEncodeError is a ValueError
        w.seen_many(["ok", "\udfff"])
    assert len(w) == 0


def test_non_contiguous_buffer_key() -> None:
    w, _ = window()
    with pytest.raises(TypeError, match="key"):
        w.seen(memoryview(b"abcdef")[::2])


# ---- time ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize(
    ("t0", "ttl"),
    [(0.0, 10.0), (100.0, 0.25), (1.0e9, 300.0), (-50.0, 1.5), (0.1, 0.2), (3.0, 1e-9)],
)
def test_expiry_is_exactly_at_insertion_plus_ttl(t0: float, ttl: float, exact: bool) -> None:
    w, clock = window(ttl=ttl, exact=exact, start=t0)
    assert w.seen(b"k") is False
    due = t0 + ttl
    clock.set(math.nextafter(due, -math.inf))  # the last instant before expiry
    assert w.contains(b"k") is True
    assert w.seen(b"k") is True  # a hit does not extend the expiry
    assert w.seen_many([b"k"]).tolist() == [True]
    assert len(w) == 1
    clock.set(due)
    assert len(w) == 0
    assert w.contains(b"k") is False
    assert w.statistics().expiries == 1
    assert w.seen(b"k") is False  # accepted again
    assert counters(w) == (1, 2, 2, 0, 1)


def test_keys_expire_one_by_one_in_insertion_order() -> None:
    w, clock = window(ttl=10.0)
    for i in range(5):
        clock.set(float(i))
        w.seen(i)
    for i in range(5):
        clock.set(10.0 + i)
        assert [w.contains(j) for j in range(5)] == [j > i for j in range(5)]
        assert len(w) == 4 - i
    assert w.statistics().expiries == 5


def test_a_clock_going_backwards_is_clamped() -> None:
    w, clock = window(ttl=10.0, start=100.0)
    w.seen(b"a")  # expires at 110
    clock.set(50.0)  # backwards: the window stays at 100
    assert w.seen(b"b") is False  # inserted at 100 (not 50): expires at 110, not 60
    clock.set(60.0)
    assert w.contains(b"b") is True
    clock.set(109.5)
    assert w.contains(b"a") is True
    assert w.contains(b"b") is True
    clock.set(110.0)
    assert len(w) == 0
    clock.set(0.0)  # far back again: nothing comes back to life
    assert len(w) == 0
    assert w.contains(b"a") is False
    assert w.seen(b"c") is False  # at 110: expires at 120
    clock.set(119.0)
    assert w.contains(b"c") is True
    clock.set(120.0)
    assert w.contains(b"c") is False
    assert counters(w) == (0, 3, 0, 0, 3)


def test_infinite_ttl_never_expires() -> None:
    w, clock = window(ttl=math.inf, max_keys=3)
    w.seen(b"a")
    clock.set(1e300)
    assert w.contains(b"a") is True
    assert w.seen(b"a") is True
    s = w.statistics()
    assert (s.ttl, s.size, s.expiries) == (math.inf, 1, 0)
    for k in (b"b", b"c", b"d"):  # capacity still applies
        w.seen(k)
    assert w.contains(b"a") is False
    assert w.statistics().evictions == 1


def test_a_clock_may_return_ints() -> None:
    now = [0]
    w = DedupWindow(2.0, 10, clock=lambda: now[0])
    assert w.seen(b"k") is False
    now[0] = 1
    assert w.seen(b"k") is True
    now[0] = 2
    assert w.seen(b"k") is False
    now[0] = 3
    assert w.seen(b"k") is True
    assert counters(w) == (1, 2, 2, 0, 1)


def test_a_clock_that_raises_leaves_the_window_unchanged() -> None:
    state = {"fail": True}

    def clock() -> float:
        if state["fail"]:
            raise ZeroDivisionError("clock failed")
        return 0.0

    w = DedupWindow(10.0, 10, clock=clock)
    with pytest.raises(ZeroDivisionError):
        w.seen(b"a")
    with pytest.raises(ZeroDivisionError):
        w.seen_many([b"a"])
    state["fail"] = False
    assert len(w) == 0
    assert w.seen(b"a") is False


INFINITE_CLOCK_SCRIPT = textwrap.dedent(
    """
    import json, math, sys
    import fastq
    readings = json.loads(sys.argv[1])
    now = [0.0]
    w = fastq.DedupWindow(10.0, 4, clock=lambda: now[0])
    out = []
    for i, t in enumerate(readings):
        now[0] = float(t)
        key = b"k%d" % (i % 6)
        try:
            out.append(["seen", key.decode(), w.seen(key)])
        except ValueError:
            out.append(["seen", key.decode(), "ValueError"])
    try:
        size = len(w)
    except ValueError:
        size = "ValueError"
    print(json.dumps({"results": out, "len": size}))
    """
)


@pytest.mark.parametrize(
    "readings",
    [["-inf"] * 12, ["inf"] * 12, ["-inf"] * 6 + [0.0] * 12, ["-inf", 0.0] * 8],
    ids=["-inf", "+inf", "-inf then 0", "alternating"],
)
def test_infinite_clock_readings_are_rejected_or_handled(readings: list[Any]) -> None:
    """A clock returning +-inf (not NaN, so not covered by the NaN rule): every call either
    raises ValueError (as for NaN) or follows the expiry rule literally (a key inserted at
    t = -inf or +inf expires at t + ttl = t, i.e. at once), and the window never holds more
    than max_keys keys. Run in a subprocess: a crash must fail this test, not the session."""
    floats = [float(t) for t in readings]
    report = run_script(INFINITE_CLOCK_SCRIPT, json.dumps(floats))
    m = DedupModel(10.0, 4)
    for (_, key, got), t in zip(report["results"], floats, strict=True):
        if got == "ValueError":
            continue
        want = m.seen(key.encode(), t)
        assert got == want, (readings, report)
    if report["len"] != "ValueError":
        assert report["len"] <= 4, report
        assert report["len"] == m.len(floats[-1]), (readings, report)


RELEASED_KEYS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import fastq
    kind, exact = sys.argv[1], sys.argv[2] == "1"
    make = (lambda i: "original-key-%06d-" % i + "k" * 60) if kind == "str" else (
        lambda i: b"original-key-%06d-" % i + b"k" * 60)
    keys = [make(i) for i in range(2000)]  # the list holds the only reference to each key
    reused = []

    def clock():
        if keys:  # the caller drops its keys while the window reads the clock
            keys[:] = []
            fill = "Z" if kind == "str" else bytes([90])
            reused.extend(fill * 80 for _ in range(4000))  # and the memory gets reused
        return 0.0

    w = fastq.DedupWindow(10.0, 10_000, exact=exact, clock=clock)
    got = w.seen_many(keys)
    print(json.dumps({
        "new": int((~got).sum()),
        "len": len(w),
        "found": sum(w.contains(make(i)) for i in range(2000)),
        "again": int(w.seen_many([make(i) for i in range(2000)]).sum()),
    }))
    """
)


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("kind", ["bytes", "str"])
def test_keys_released_while_the_clock_runs_are_the_keys_inserted(kind: str, exact: bool) -> None:
    """seen_many(list) reads the (Python) clock after taking the keys: if the list is emptied
    meanwhile (here by the clock itself; on GIL builds any thread can do it while the clock's
    Python code runs), the window must still insert the keys it was given, not whatever
    reuses their memory. Every key reported new must be found afterwards. In a subprocess: a
    read of freed memory may crash."""
    report = run_script(RELEASED_KEYS_SCRIPT, kind, "1" if exact else "0")
    assert report == {"new": 2000, "len": 2000, "found": 2000, "again": 2000}, report


def run_script(script: str, *args: str) -> Any:
    """Run `script` in a child interpreter (a crash fails one test, not the session) and
    return the JSON it printed."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    return json.loads(proc.stdout)


# ---- capacity -----------------------------------------------------------------------------------


@pytest.mark.parametrize("exact", [False, True])
def test_the_oldest_inserted_key_is_evicted_first(exact: bool) -> None:
    w, _ = window(max_keys=3, exact=exact)
    for k in (b"a", b"b", b"c"):
        assert w.seen(k) is False
    assert w.seen(b"a") is True  # a hit does not make "a" any younger
    assert w.seen(b"d") is False  # full: "a", the oldest inserted, goes
    assert [w.contains(k) for k in (b"a", b"b", b"c", b"d")] == [False, True, True, True]
    assert w.seen(b"e") is False  # then "b"
    assert [w.contains(k) for k in (b"b", b"c", b"d", b"e")] == [False, True, True, True]
    assert len(w) == 3
    assert counters(w) == (3, 5, 1, 2, 0)
    assert w.forget(b"d") is True  # room again: the next insert evicts nothing
    assert w.seen(b"f") is False
    assert [w.contains(k) for k in (b"c", b"e", b"f")] == [True, True, True]
    assert w.statistics().evictions == 2
    assert w.seen(b"g") is False  # and then "c" is the oldest
    assert w.contains(b"c") is False
    assert counters(w) == (3, 7, 1, 3, 0)


def test_max_keys_one() -> None:
    w, _ = window(max_keys=1)
    assert w.seen_many([b"a", b"a", b"b", b"a", b"a"]).tolist() == [
        False,
        True,
        False,
        False,
        True,
    ]
    assert counters(w) == (1, 3, 2, 2, 0)


@pytest.mark.parametrize("exact", [False, True])
def test_random_operations_agree_with_the_model(exact: bool, rng: Any) -> None:
    """A seeded random mix of every operation against DedupModel (the hypothesis state
    machine in tests/property does this with shrinking; this is the quick version)."""
    ttl = rng.choice([1.0, 3.5, 10.0, math.inf])
    max_keys = rng.randint(1, 12)
    w, clock = window(ttl=ttl, max_keys=max_keys, exact=exact)
    m = DedupModel(ttl, max_keys)
    space = [b"", b"a", "a", 7, b"\x07" + bytes(7), "é", b"long key " * 20, 2**64 - 1, -1, b"z"]
    for step in range(3000):
        op = rng.randrange(10)
        key = rng.choice(space)
        kb = dedup_key_bytes(key)
        now = clock.t[0]
        where = (rng, step, op, key, now)
        if op <= 3:
            assert w.seen(key) == m.seen(kb, now), where
        elif op == 4:
            batch = [rng.choice(space) for _ in range(rng.randrange(6))]
            got = w.seen_many(batch).tolist()
            assert got == m.seen_many([dedup_key_bytes(b) for b in batch], now), where
        elif op == 5:
            assert w.contains(key) == m.contains(kb, now), where
        elif op == 6:
            assert w.forget(key) == m.forget(kb, now), where
        elif op == 7:
            clock.advance(rng.choice([0.5, 1.0, 2.0, -3.0]))
        elif op == 8 and rng.random() < 0.1:
            w.clear()
            m.clear()
        else:
            assert counters(w) == model_counters(m, now), where


@pytest.mark.parametrize(("exact", "bits"), [(False, 64), (True, 64), (True, 3)])
def test_a_larger_window_under_heavy_forgetting_agrees_with_the_model(
    exact: bool, bits: int, rng: Any
) -> None:
    """Hundreds of keys: the ring and index grow, forgotten entries pile up in the middle and
    are squeezed out, keys of 0..3000 bytes come and go (exact mode keeps their bytes), all
    while keys expire and get evicted; every answer and counter matches the model."""
    ttl, max_keys = 40.0, 300
    clock = ManualClock(0.0)
    w = DedupWindow(ttl, max_keys, exact=exact, clock=clock, _fingerprint_bits=bits)
    m = DedupModel(ttl, max_keys)
    sizes = [0, 1, 8, 17, 100, 3000]
    space = [b"%d:" % i + bytes([i % 251]) * rng.choice(sizes) for i in range(1200)]
    for step in range(2500):
        now = clock.t[0]
        op = rng.randrange(6)
        where = (rng, step, op, now)
        if op <= 1:
            batch = [rng.choice(space) for _ in range(rng.randrange(1, 40))]
            assert w.seen_many(batch).tolist() == m.seen_many(batch, now), where
        elif op <= 3:
            for _ in range(rng.randrange(1, 20)):
                k = (
                    rng.choice(space)
                    if rng.random() < 0.5
                    else rng.choice(list(m.entries) or space)
                )
                assert w.forget(k) == m.forget(k, now), (*where, k[:10])
        elif op == 4:
            k = rng.choice(space)
            assert w.contains(k) == m.contains(k, now), (*where, k[:10])
            assert w.seen(k) == m.seen(k, now), (*where, k[:10])
        else:
            clock.advance(rng.choice([0.0, 0.25, 1.0, 4.0]))
        if step % 50 == 0:
            assert counters(w) == model_counters(m, clock.t[0]), where
    assert [w.contains(k) for k in space] == [m.contains(k, clock.t[0]) for k in space], rng
    if not exact:
        assert w.statistics().memory_bytes <= 32 * max_keys + BOUND_SLACK


# ---- R10: catch every repeat, then accept every key again ----------------------------------------


def r10_keys(kind: str, n: int, seed: int) -> tuple[Any, npt.NDArray[np.bool_]]:
    """n random keys (a uint64 array, or a list of bytes of up to 12 random bytes) and, for
    each, whether it repeats an earlier one (almost never: the spaces are 2**64 and 2**96)."""
    g = np.random.default_rng(seed)
    if kind == "uint64 array":
        arr = g.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)
    else:
        arr = np.frombuffer(g.bytes(12 * n), dtype="S12")  # elements: trailing NULs dropped
    _, first = np.unique(arr, return_index=True)
    keys: Any = arr if kind == "uint64 array" else arr.tolist()
    repeat = np.ones(n, dtype=np.bool_)
    repeat[first] = False
    return keys, repeat


@pytest.mark.parametrize(
    ("kind", "exact"),
    [("uint64 array", False), ("list of bytes", False), ("list of bytes", True)],
)
def test_r10_every_repeat_inside_the_window_is_caught(kind: str, exact: bool, rng: Any) -> None:
    n = 10**6
    ttl = 60.0
    keys, repeat = r10_keys(kind, n, rng.randrange(2**32))
    w, clock = window(ttl=ttl, max_keys=2 * n, exact=exact)
    first = w.seen_many(keys)
    assert np.array_equal(first, repeat), (rng, int(np.count_nonzero(first != repeat)))
    distinct = n - int(np.count_nonzero(repeat))
    assert len(w) == distinct
    # a shuffled mix of repeats and fresh keys, half-way through the window
    clock.set(ttl / 2)
    g = np.random.default_rng(rng.randrange(2**32))
    pick = g.integers(0, n, size=n // 10)
    if kind == "uint64 array":
        mixed: Any = np.concatenate([keys[pick], np.arange(n // 10, dtype=np.uint64)])
        fresh = ~np.isin(mixed, keys)
    else:
        mixed = [keys[i] for i in pick.tolist()] + [b"fresh-%d" % i for i in range(n // 10)]
        fresh = np.array([False] * len(pick) + [True] * (n // 10))
    got = w.seen_many(mixed)
    assert np.array_equal(got, ~fresh), (rng, int(np.count_nonzero(got != ~fresh)))
    # every key again, at the last instant of its window: 100% rejected
    clock.set(math.nextafter(ttl, 0.0))
    again = w.seen_many(keys)
    caught = int(np.count_nonzero(again))
    assert caught == n, (rng, f"{n - caught} of {n} repeats accepted")
    # once the clock has moved on by ttl, every key is accepted again: 100%
    clock.set(ttl)
    back = w.seen_many(keys)
    assert np.array_equal(back, repeat), (rng, int(np.count_nonzero(back != repeat)))
    s = w.statistics()
    assert (s.expiries, s.evictions) == (distinct, 0), rng
    assert s.size == distinct + int(np.count_nonzero(fresh)), rng


# ---- memory -------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_keys", [100_000, 1_000_000])
def test_memory_stays_bounded_while_ten_million_keys_stream_through(max_keys: int) -> None:
    bound = 32 * max_keys + BOUND_SLACK
    w, clock = window(ttl=3600.0, max_keys=max_keys)
    batch = 100_000
    total = 10**7
    for start in range(0, total, batch):
        keys = np.arange(start, start + batch, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        got = w.seen_many(keys)
        s = w.statistics()
        assert not got.any(), start  # all distinct (an odd multiplier is a bijection)
        assert len(w) == s.size <= max_keys, (start, s)
        assert s.memory_bytes <= bound, (start, s.memory_bytes, bound)
        clock.advance(0.001)
    s = w.statistics()
    assert (s.size, s.inserted, s.evictions, s.expiries) == (
        max_keys,
        total,
        total - max_keys,
        0,
    )


# ---- exact mode and fingerprint collisions ------------------------------------------------


def collision_keys(n: int) -> list[bytes]:
    return [b"key-%d" % i for i in range(n)]


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_exact_mode_never_confuses_keys_with_colliding_fingerprints(bits: int) -> None:
    keys = collision_keys(2000)
    clock = ManualClock(0.0)
    w = DedupWindow(100.0, 4000, exact=True, clock=clock, _fingerprint_bits=bits)
    assert [w.seen(k) for k in keys] == [False] * len(keys)
    assert w.seen_many(keys).tolist() == [True] * len(keys)
    assert all(w.contains(k) for k in keys)
    assert w.contains(b"key-2000") is False
    assert len(w) == 2000
    # forget every third key: exactly those become new again
    assert [w.forget(k) for k in keys[::3]] == [True] * len(keys[::3])
    assert [w.contains(k) for k in keys] == [i % 3 != 0 for i in range(len(keys))]
    # snapshot round trip keeps every key apart
    clock.set(5.0)
    r = DedupWindow.from_bytes(w.to_bytes(), clock=clock, elapsed=0)
    assert r.exact is True
    assert len(r) == len(w)
    assert [r.contains(k) for k in keys] == [i % 3 != 0 for i in range(len(keys))]
    assert r.seen_many(keys).tolist() == [i % 3 != 0 for i in range(len(keys))]
    assert len(r) == 2000
    s = r.statistics()
    assert (s.inserted, s.evictions, s.expiries) == (2000 + len(keys[::3]), 0, 0)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_exact_mode_with_colliding_fingerprints_evicts_and_expires_the_right_keys(
    bits: int,
) -> None:
    clock = ManualClock(0.0)
    w = DedupWindow(10.0, 50, exact=True, clock=clock, _fingerprint_bits=bits)
    m = DedupModel(10.0, 50)
    keys = collision_keys(200)
    for i, k in enumerate(keys):
        clock.set(i * 0.25)
        assert w.seen(k) == m.seen(k, clock.t[0]), (bits, i)
        if i % 7 == 0:
            victim = keys[i // 2]
            assert w.forget(victim) == m.forget(victim, clock.t[0]), (bits, i)
    assert [w.contains(k) for k in keys] == [m.contains(k, clock.t[0]) for k in keys]
    assert counters(w) == model_counters(m, clock.t[0])


def test_fingerprint_mode_with_two_bit_fingerprints_confuses_distinct_keys() -> None:
    """F21, the other side: without the key bytes, 2-bit fingerprints leave 4 distinguishable
    keys, so 2000 distinct keys cannot all be accepted: most are wrongly reported as seen.
    (With the default 64 bits the same keys are all new: see the exact-mode tests.)"""
    keys = collision_keys(2000)
    w = DedupWindow(100.0, 4000, clock=ManualClock(), _fingerprint_bits=2)
    got = w.seen_many(keys)
    accepted = int(np.count_nonzero(~got))
    assert accepted == 4  # one key per 2-bit fingerprint (2000 keys take all four)
    assert len(w) == accepted
    assert w.contains(b"never inserted") is True  # its 2-bit fingerprint is taken
    full = DedupWindow(100.0, 4000, clock=ManualClock())
    assert not full.seen_many(keys).any()


@pytest.mark.parametrize("bits", [0, 65, -1, True, 1.5, "2"])
def test_fingerprint_bits_hook_is_checked(bits: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="_fingerprint_bits"):
        DedupWindow(_fingerprint_bits=bits)


# ---- bad input ----------------------------------------------------------------------------------


def _seen_with_nan_clock() -> object:
    return DedupWindow(clock=lambda: math.nan).seen(b"a")


def _len_with_nan_clock() -> object:
    return len(DedupWindow(clock=lambda: math.nan))


def _statistics_with_nan_clock() -> object:
    return DedupWindow(clock=lambda: math.nan).statistics()


def _seen_with_str_clock() -> object:
    return DedupWindow(clock=lambda: "soon").seen(b"a")  # type: ignore[arg-type,return-value]


BAD_INPUT: list[Any] = [
    pytest.param(lambda: DedupWindow(0), ValueError, "ttl", id="ttl=0"),
    pytest.param(lambda: DedupWindow(-1), ValueError, "ttl", id="ttl=-1"),
    pytest.param(lambda: DedupWindow(-math.inf), ValueError, "ttl", id="ttl=-inf"),
    pytest.param(lambda: DedupWindow(math.nan), ValueError, "ttl", id="ttl=nan"),
    pytest.param(lambda: DedupWindow("3"), TypeError, "ttl", id="ttl='3'"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow(None), TypeError, "ttl", id="ttl=None"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow(True), TypeError, "ttl", id="ttl=True"),
    pytest.param(lambda: DedupWindow(ttl=[1.0]), TypeError, "ttl", id="ttl=[1.0]"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow(max_keys=0), ValueError, "max_keys", id="max_keys=0"),
    pytest.param(lambda: DedupWindow(max_keys=-5), ValueError, "max_keys", id="max_keys=-5"),
    pytest.param(
        lambda: DedupWindow(max_keys=2**30 + 1), ValueError, "max_keys", id="max_keys=2**30+1"
    ),
    pytest.param(lambda: DedupWindow(max_keys=2**64), ValueError, "max_keys", id="max_keys=2**64"),
    pytest.param(lambda: DedupWindow(max_keys=1.5), TypeError, "max_keys", id="max_keys=1.5"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow(max_keys=True), TypeError, "max_keys", id="max_keys=True"),
    pytest.param(lambda: DedupWindow(max_keys="9"), TypeError, "max_keys", id="max_keys='9'"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow(clock=5), TypeError, "clock", id="clock=5"),  # type: ignore[arg-type]
    pytest.param(_seen_with_nan_clock, ValueError, "clock", id="clock()=nan:seen"),
    pytest.param(_len_with_nan_clock, ValueError, "clock", id="clock()=nan:len"),
    pytest.param(_statistics_with_nan_clock, ValueError, "clock", id="clock()=nan:statistics"),
    pytest.param(_seen_with_str_clock, TypeError, "clock", id="clock()='soon'"),
    pytest.param(lambda: DedupWindow().seen(None), TypeError, "key.*NoneType", id="seen(None)"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow().seen(1.5), TypeError, "key.*float", id="seen(1.5)"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow().seen([1]), TypeError, "key.*list", id="seen([1])"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow().seen({}), TypeError, "key.*dict", id="seen({})"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow().seen(object()), TypeError, "key", id="seen(object())"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow().contains(None), TypeError, "key", id="contains(None)"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow().contains(1.5), TypeError, "key", id="contains(1.5)"),  # type: ignore[arg-type]
    pytest.param(lambda: None in DedupWindow(), TypeError, "key", id="None in window"),
    pytest.param(lambda: [1] in DedupWindow(), TypeError, "key", id="[1] in window"),
    pytest.param(lambda: DedupWindow().forget({}), TypeError, "key", id="forget({})"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow().forget(None), TypeError, "key", id="forget(None)"),  # type: ignore[arg-type]
    pytest.param(
        lambda: DedupWindow().seen_many(b"abc"), TypeError, "keys", id="seen_many(b'abc')"
    ),
    pytest.param(lambda: DedupWindow().seen_many("abc"), TypeError, "keys", id="seen_many('abc')"),
    pytest.param(
        lambda: DedupWindow().seen_many(bytearray(b"ab")),
        TypeError,
        "keys",
        id="seen_many(bytearray)",
    ),
    pytest.param(
        lambda: DedupWindow().seen_many(np.zeros(3)),
        TypeError,
        "float64",
        id="seen_many(float64 array)",
    ),
    pytest.param(
        lambda: DedupWindow().seen_many(np.array(["a", "b"])),
        TypeError,
        "keys",
        id="seen_many(unicode array)",
    ),
    pytest.param(
        lambda: DedupWindow().seen_many(np.zeros((2, 2), dtype=np.uint64)),
        TypeError,
        "ndim",
        id="seen_many(2-D array)",
    ),
    pytest.param(
        lambda: DedupWindow().seen_many(np.zeros(3, dtype=np.uint32)),
        TypeError,
        "keys",
        id="seen_many(uint32 array)",
    ),
    pytest.param(lambda: DedupWindow().seen_many(5), TypeError, "keys", id="seen_many(5)"),  # type: ignore[arg-type]
    pytest.param(lambda: DedupWindow().seen_many(None), TypeError, "keys", id="seen_many(None)"),  # type: ignore[arg-type]
    pytest.param(
        lambda: DedupWindow().seen_many([None]),  # type: ignore[list-item]
        TypeError,
        r"keys\[0\]",
        id="seen_many([None])",
    ),
    pytest.param(
        lambda: DedupWindow().seen_many([b"ok", 1.5]),  # type: ignore[list-item]
        TypeError,
        r"keys\[1\].*float",
        id="seen_many([b'ok', 1.5])",
    ),
]


@pytest.mark.parametrize(("call", "exc", "fragment"), BAD_INPUT)
def test_bad_input(call: Callable[[], object], exc: type[Exception], fragment: str) -> None:
    with pytest.raises(exc, match=fragment):
        call()


def test_nan_clock_rejects_every_clocked_call_and_leaves_the_window_empty() -> None:
    clock = ManualClock(0.0)
    w = DedupWindow(10.0, 10, clock=clock)
    w.seen(b"before")
    clock.set(math.nan)
    calls: list[Callable[[], object]] = [
        lambda: w.seen(b"a"),
        lambda: w.seen_many([b"a"]),
        lambda: w.contains(b"before"),
        lambda: b"before" in w,
        lambda: w.forget(b"before"),
        lambda: len(w),
        w.statistics,
        w.to_bytes,
    ]
    for call in calls:
        with pytest.raises(ValueError, match="clock"):
            call()
    clock.set(1.0)
    assert counters(w) == (1, 1, 0, 0, 0)
    assert w.contains(b"before") is True
    assert w.contains(b"a") is False
    snap = w.to_bytes()
    clock.set(math.nan)
    with pytest.raises(ValueError, match="clock"):
        DedupWindow.from_bytes(snap, clock=clock, elapsed=0)


def test_uninitialised_window_raises_instead_of_crashing() -> None:
    blank = DedupWindow.__new__(DedupWindow)
    with pytest.raises(ValueError, match="__init__"):
        blank.seen(b"x")
    calls: list[Callable[[], object]] = [
        lambda: blank.seen_many([b"x"]),
        lambda: blank.seen_many(np.arange(3, dtype=np.uint64)),
        lambda: blank.contains(b"x"),
        lambda: b"x" in blank,
        lambda: blank.forget(b"x"),
        lambda: len(blank),
        blank.clear,
        blank.statistics,
        blank.to_bytes,
    ]
    for call in calls:
        with pytest.raises(ValueError, match="__init__"):
            call()
    assert isinstance(repr(blank), str)
    # __init__ afterwards makes it a working window
    blank.__init__(5.0, 3, clock=ManualClock())
    assert blank.seen(b"x") is False
    assert blank.seen(b"x") is True


def test_windows_do_not_pickle() -> None:
    w, _ = window()
    w.seen(b"a")
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(w, protocol)
    assert pickle.loads(pickle.dumps(w.statistics())) == w.statistics()


# ---- snapshots ----------------------------------------------------------------------------------


def same_window(a: DedupWindow, b: DedupWindow, keys: Iterable[Any]) -> None:
    sa, sb = a.statistics(), b.statistics()
    assert dataclasses.replace(sa, memory_bytes=0) == dataclasses.replace(sb, memory_bytes=0)
    for k in keys:
        assert a.contains(k) == b.contains(k), k


def populated(kind: str, exact: bool) -> tuple[DedupWindow, ManualClock, DedupModel, list[bytes]]:
    """A window in a given state, the model that mirrors it, and the keys it ever saw."""
    ttl = math.inf if kind == "ttl=inf" else 10.0
    max_keys = 8 if kind == "evictions and forgets" else 1000
    w, clock = window(ttl=ttl, max_keys=max_keys, exact=exact)
    m = DedupModel(ttl, max_keys)
    keys: list[bytes] = []
    if kind == "empty":
        return w, clock, m, keys
    n = {"one key": 1, "ttl=inf": 30, "evictions and forgets": 30, "many keys": 300}[kind]
    step = 0.03125 if kind == "many keys" else 0.125
    for i in range(n):
        clock.set(i * step)
        k = b"k%d" % i + b"x" * (i % 5)
        keys.append(k)
        assert w.seen(k) == m.seen(k, clock.t[0])
        if kind == "evictions and forgets" and i % 4 == 3:
            assert w.forget(keys[i - 1]) == m.forget(keys[i - 1], clock.t[0])
        if i % 3 == 0:
            assert w.seen(keys[i // 2]) == m.seen(keys[i // 2], clock.t[0])
    if kind == "many keys":
        clock.set(10.5)  # the keys inserted at t <= 0.5 expire
    return w, clock, m, keys


SNAPSHOT_STATES = ["empty", "one key", "many keys", "ttl=inf", "evictions and forgets"]


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("kind", SNAPSHOT_STATES)
def test_snapshot_round_trip(kind: str, exact: bool) -> None:
    w, clock, m, keys = populated(kind, exact)
    snap = w.to_bytes()
    assert isinstance(snap, bytes)
    assert snap[:8] == b"FQDEDUP\x00"
    now = clock.t[0]
    r = DedupWindow.from_bytes(snap, clock=clock, elapsed=0)
    assert isinstance(r, DedupWindow)
    assert (r.ttl, r.max_keys, r.exact) == (w.ttl, w.max_keys, w.exact)
    same_window(w, r, [*keys, b"other"])
    assert counters(r) == model_counters(m, now)
    # the same remaining lifetimes and the same order: restored and original (and the model)
    # keep agreeing as time moves on and new keys evict old ones
    rm = m.restored(m.snapshot(now), now, 0.0)
    for step in range(40):
        clock.advance(0.5)
        k = b"new%d" % step
        assert r.seen(k) == w.seen(k) == rm.seen(k, clock.t[0]), step
        assert [r.contains(x) for x in keys] == [rm.contains(x, clock.t[0]) for x in keys]
        same_window(w, r, keys)
    # and a snapshot of the restored window restores to the same thing again
    r2 = DedupWindow.from_bytes(r.to_bytes(), clock=clock, elapsed=0)
    same_window(r, r2, keys)


@pytest.mark.parametrize("exact", [False, True])
def test_snapshot_of_a_restored_window_is_the_same_snapshot(exact: bool) -> None:
    """Same settings, seed, counters, fingerprints and lifetimes: only the wall-clock time
    (bytes 88..95) and so the CRC (the last 4 bytes) may differ."""
    w, clock, _, _ = populated("evictions and forgets", exact)
    snap = w.to_bytes()
    again = DedupWindow.from_bytes(snap, clock=clock, elapsed=0).to_bytes()
    assert len(again) == len(snap)
    assert again[:88] == snap[:88]
    assert again[96:-4] == snap[96:-4]


@pytest.mark.parametrize("exact", [False, True])
def test_elapsed_ages_the_entries(exact: bool) -> None:
    """ttl=10, keys inserted at t=0 and t=1; restored with elapsed=6 at fake time 0, the first
    ones have 4 s left (gone at 4) and the others 5 s (gone at 5)."""
    w, clock = window(ttl=10.0, exact=exact)
    w.seen_many([b"a", b"b"])
    clock.set(1.0)
    w.seen(b"c")
    snap = w.to_bytes()  # at t=1: a, b have 9 s left, c has 10 s
    restored_clock = ManualClock(0.0)
    r = DedupWindow.from_bytes(snap, clock=restored_clock, elapsed=7.0)
    # a, b: 9 - 7 = 2 s left; c: 10 - 7 = 3 s left
    restored_clock.set(math.nextafter(2.0, 0.0))
    assert [r.contains(k) for k in (b"a", b"b", b"c")] == [True, True, True]
    restored_clock.set(2.0)
    assert [r.contains(k) for k in (b"a", b"b", b"c")] == [False, False, True]
    restored_clock.set(3.0)
    assert len(r) == 0
    assert r.statistics().expiries == 3
    # the brief's numbers: inserted at 0, restored with elapsed=6 at fake time 0: gone at 4
    w2, _ = window(ttl=10.0, exact=exact)
    w2.seen_many([b"x", b"y"])
    c2 = ManualClock(0.0)
    r2 = DedupWindow.from_bytes(w2.to_bytes(), clock=c2, elapsed=6)
    c2.set(3.999)
    assert r2.seen(b"x") is True
    assert len(r2) == 2
    c2.set(4.0)
    assert r2.contains(b"x") is False
    assert r2.seen(b"y") is False


@pytest.mark.parametrize("exact", [False, True])
def test_entries_with_no_lifetime_left_are_dropped_on_restore(exact: bool) -> None:
    w, clock = window(ttl=10.0, exact=exact)
    for i in range(10):
        clock.set(float(i))
        w.seen(i)
    snap = w.to_bytes()  # at t=9: key i has 1 + i seconds left
    before = w.statistics()
    for elapsed, kept in [(0.0, 10), (0.5, 10), (1.0, 9), (5.5, 5), (10.0, 0), (math.inf, 0)]:
        r = DedupWindow.from_bytes(snap, clock=ManualClock(100.0), elapsed=elapsed)
        assert len(r) == kept, elapsed
        assert [r.contains(i) for i in range(10)] == [i >= 10 - kept for i in range(10)]
        s = r.statistics()  # counters carry over; what was dropped on the way is not counted
        assert (s.inserted, s.hits, s.evictions, s.expiries) == (
            before.inserted,
            before.hits,
            before.evictions,
            before.expiries,
        )


def test_infinite_ttl_entries_survive_any_finite_elapsed() -> None:
    w, _ = window(ttl=math.inf)
    w.seen_many([b"a", b"b"])
    r = DedupWindow.from_bytes(w.to_bytes(), clock=ManualClock(), elapsed=1e300)
    assert r.ttl == math.inf
    assert len(r) == 2
    assert r.contains(b"a")


def test_default_elapsed_is_the_wall_clock_time_since_the_snapshot() -> None:
    """Taken a moment ago, with ttl=3600: nothing can have aged out (whatever the wall clock
    did, the age is never negative, so nothing gets extra life either)."""
    w, clock = window(ttl=3600.0)
    w.seen_many([b"a", b"b", b"c"])
    r = DedupWindow.from_bytes(w.to_bytes(), clock=clock)
    assert len(r) == 3
    clock.set(3600.0)  # at most the full ttl is left
    assert len(r) == 0


def test_from_bytes_uses_the_default_clock_when_none_is_given() -> None:
    w, _ = window(ttl=3600.0)
    w.seen(b"a")
    r = DedupWindow.from_bytes(w.to_bytes())
    assert r.seen(b"a") is True
    assert r.seen(b"b") is False


@pytest.mark.parametrize(
    "wrap",
    [bytes, bytearray, memoryview, lambda b: np.frombuffer(b, dtype=np.uint8)],
    ids=["bytes", "bytearray", "memoryview", "uint8 array"],
)
def test_from_bytes_accepts_any_bytes_like(wrap: Callable[[bytes], Any]) -> None:
    w, clock = window()
    w.seen_many([b"a", b"b"])
    r = DedupWindow.from_bytes(wrap(w.to_bytes()), clock=clock, elapsed=0)
    assert len(r) == 2


@pytest.mark.parametrize(
    "data",
    ["FQDEDUP", 5, None, [1, 2], memoryview(b"FQDEDUP\x00" * 20)[::2]],
    ids=["str", "int", "None", "list", "non-contiguous"],
)
def test_from_bytes_needs_a_bytes_like_object(data: Any) -> None:
    with pytest.raises(TypeError, match="data"):
        DedupWindow.from_bytes(data)


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"elapsed": -1}, ValueError, "elapsed"),
        ({"elapsed": -1e-9}, ValueError, "elapsed"),
        ({"elapsed": math.nan}, ValueError, "elapsed"),
        ({"elapsed": -math.inf}, ValueError, "elapsed"),
        ({"elapsed": "1"}, TypeError, "elapsed"),
        ({"elapsed": True}, TypeError, "elapsed"),
        ({"clock": 5}, TypeError, "clock"),
    ],
)
def test_from_bytes_argument_errors(
    kwargs: dict[str, Any], exc: type[Exception], fragment: str
) -> None:
    snap = window()[0].to_bytes()
    with pytest.raises(exc, match=fragment):
        DedupWindow.from_bytes(snap, **kwargs)


def test_a_damaged_snapshot_names_its_source() -> None:
    w, _ = window()
    w.seen(b"a")
    snap = bytearray(w.to_bytes())
    snap[100] ^= 1
    with pytest.raises(CorruptLogError) as info:
        DedupWindow.from_bytes(bytes(snap), source="/var/lib/app/dedup.snap")
    err = info.value
    assert err.path == "/var/lib/app/dedup.snap"
    assert isinstance(err.position, int)
    assert 0 <= err.position <= len(snap)
    assert isinstance(err.reason, str)
    assert err.reason
    assert "/var/lib/app/dedup.snap" in str(err)
    assert isinstance(err, fastq.FastqError)
    with pytest.raises(CorruptLogError) as info:
        DedupWindow.from_bytes(b"not a snapshot")
    assert info.value.path == "<bytes>"
    assert 0 <= info.value.position <= len(b"not a snapshot")


# ---- sequence numbers ---------------------------------------------------------------------

SEQ_LIMIT = 0xFFFFFF00  # fq_dedup.h: the index is renumbered before a sequence number gets here


@pytest.mark.parametrize("exact", [False, True])
def test_renumbering_before_sequence_numbers_wrap_keeps_every_answer(
    exact: bool, rng: random.Random
) -> None:
    """Index slots name entries by sequence number; before the numbers reach 2**32 the window
    renumbers itself. Starting the numbers just below that point (a test hook), a stream with
    repeats, forgets, expiries and evictions crosses it and must answer exactly like the model
    before, across and after it."""
    clock = ManualClock(0.0)
    w = DedupWindow(5.0, 300, exact=exact, clock=clock, _first_seq=SEQ_LIMIT - 700)
    model = DedupModel(5.0, 300)
    for step in range(6000):
        clock.advance(rng.choice((0.0, 0.0, 0.01, 0.5)))
        key = b"k%d" % rng.randrange(900)
        if rng.random() < 0.05:
            assert w.forget(key) == model.forget(key, clock()), (step, rng)
        else:
            assert w.seen(key) == model.seen(key, clock()), (step, rng)
        if step % 500 == 0:
            assert len(w) == model.len(clock()), (step, rng)
    assert len(w) == model.len(clock()), rng


def test_first_seq_hook_is_checked() -> None:
    for bad in (0, -1, SEQ_LIMIT, 2**40, 1.5, True):
        with pytest.raises(ValueError, match="_first_seq"):
            DedupWindow(_first_seq=bad)  # type: ignore[arg-type]
