"""Corruption fuzzing of DedupWindow snapshots (``to_bytes`` / ``from_bytes``).

The format: a 96-byte header (magic b"FQDEDUP\\0" at 0..7, version u32 @8, flags u32 @12 (bit 0:
exact), seed u64 @16, fingerprint mask u64 @24, ttl f64 @32, max_keys u64 @40, count u64 @48,
evictions @56, expiries @64, inserts @72, hits @80, wall-clock ns i64 @88), then ``count``
entries of (fingerprint u64, remaining lifetime f64) oldest first, then in exact mode ``count``
keys of (u32 length, bytes), then a CRC-32C (little-endian) of everything before it.

Reference snapshots are built once per module from windows driven by a fake clock: fingerprint
and exact mode, with 0, 1 and 100 entries (every damage case below is exhaustive for them),
plus two large ones (5,000 and 2,000 entries) where the cases are sampled (FASTQ_STRESS_SCALE
scales the samples; FASTQ_SEED replays them). Damage cases:

- every single-bit flip (and, sampled, two-bit flips and bursts of up to 4 bytes: a CRC-32C
  detects all of those);
- every truncation, bytes appended, random garbage (with and without the magic, with and
  without a valid CRC);
- content no DedupWindow writes, with the CRC recomputed so that only the meaning is wrong:
  unknown version or flags, ttl 0/negative/NaN, max_keys out of range, more entries than
  max_keys, a count that disagrees with the data, lifetimes out of order, negative, NaN or
  longer than ttl, the same fingerprint (or, exact, the same key) twice, key lengths that run
  past the end.

Oracle for every damaged case: ``from_bytes`` raises ``fastq.CorruptLogError`` whose ``.path`` is
the ``source`` passed in, whose ``.position`` is an int in ``[0, len(data)]`` and whose
``.reason`` is a non-empty str. Any other exception, a returned window, or a crash fails.
Positive controls: every reference restores, and a CRC-recomputed snapshot with an edited
counter restores with that counter, so the rejections are not an artefact of the helper.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import crc32c
import pytest
from models import ManualClock

from fastq import CorruptLogError, DedupWindow

HEADER = 96
ENTRY = 16
MAGIC = b"FQDEDUP\x00"
VERSION, FLAGS, SEED, MASK, TTL, MAX_KEYS, COUNT = 8, 12, 16, 24, 32, 40, 48
EVICTIONS, EXPIRIES, INSERTS, HITS, WALL_NS = 56, 64, 72, 80, 88
EXHAUSTIVE_MAX = 4096  # snapshots up to this size get every bit flipped and every truncation
SAMPLES = 10_000  # per sampled category at FASTQ_STRESS_SCALE=1


def reseal(data: bytes | bytearray) -> bytes:
    """The same bytes with the CRC-32C trailer recomputed (the last 4 bytes)."""
    body = bytes(data[:-4])
    return body + struct.pack("<I", crc32c.crc32c(body))


@dataclass(frozen=True)
class Ref:
    name: str
    data: bytes
    exact: bool
    count: int
    keys: tuple[bytes, ...]

    @property
    def exhaustive(self) -> bool:
        return len(self.data) <= EXHAUSTIVE_MAX


def make_ref(name: str, *, exact: bool, n: int, ttl: float = 10.0) -> Ref:
    """A window that saw n keys of varying length at distinct times (so the lifetimes differ),
    some hits and a forget (so the counters are not zero); n keys are left in it."""
    clock = ManualClock(0.0)
    w = DedupWindow(ttl, n + 1, exact=exact, clock=clock)
    keys = [b"key-%d-" % i + b"x" * (i % 7) for i in range(n)]
    step = 1.0 / max(n, 1) if math.isinf(ttl) else ttl / (2 * max(n, 1))
    for i, k in enumerate(keys):
        clock.set(i * step)
        assert w.seen(k) is False
        assert w.seen(k) is True
    w.seen(b"forgotten")
    w.forget(b"forgotten")
    data = w.to_bytes()
    return Ref(name, data, exact, len(w), tuple(keys))


@pytest.fixture(scope="module")
def refs() -> dict[str, Ref]:
    out = {}
    for exact in (False, True):
        mode = "exact" if exact else "fp"
        for n in (0, 1, 100):
            out[f"{mode}-{n}"] = make_ref(f"{mode}-{n}", exact=exact, n=n)
    out["fp-5000"] = make_ref("fp-5000", exact=False, n=5000)
    out["exact-2000"] = make_ref("exact-2000", exact=True, n=2000)
    out["fp-inf-ttl"] = make_ref("fp-inf-ttl", exact=False, n=20, ttl=math.inf)
    return out


REF_NAMES = ["fp-0", "fp-1", "fp-100", "exact-0", "exact-1", "exact-100", "fp-inf-ttl"]
REF_NAMES_LARGE = ["fp-5000", "exact-2000"]
ALL_REFS = REF_NAMES + REF_NAMES_LARGE


class Rejections:
    """Runs damaged cases through from_bytes and checks each raises a proper CorruptLogError."""

    def __init__(self, ref_name: str, category: str) -> None:
        self.source = f"fuzz/{ref_name}/{category}.snap"
        self.cases = 0
        self.clock = ManualClock(0.0)

    def check(self, data: bytes, what: Any) -> CorruptLogError:
        self.cases += 1
        e = outcome(data, source=self.source, clock=self.clock, elapsed=0)
        if isinstance(e, DedupWindow):
            pytest.fail(f"{self.source}: {what}: from_bytes accepted it and returned {e!r}")
        assert e.path == self.source, (what, e.path)
        assert type(e.position) is int, (what, e.position)
        assert 0 <= e.position <= len(data), (what, e.position, len(data))
        assert isinstance(e.reason, str), (what, e.reason)
        assert e.reason, what
        return e


def outcome(data: bytes, **kwargs: Any) -> DedupWindow | CorruptLogError:
    """from_bytes(data, **kwargs): the window, or the CorruptLogError it raised (any other
    exception propagates and fails the test)."""
    try:
        return DedupWindow.from_bytes(data, **kwargs)
    except CorruptLogError as e:
        return e


def flip_positions(ref: Ref, rng: Any, samples: int) -> Iterator[tuple[int, int]]:
    """(byte, bit) pairs: all of them for small snapshots; for large ones every bit of the
    header, the first and last entries, the key section's start and the trailer, plus a
    random sample of the rest."""
    n = len(ref.data)
    if ref.exhaustive:
        for pos in range(n):
            for bit in range(8):
                yield pos, bit
        return
    fixed = [*range(HEADER + 2 * ENTRY), *range(n - 64, n)]
    if ref.exact:
        keys_at = HEADER + ENTRY * ref.count
        fixed += range(keys_at - ENTRY, keys_at + 64)
    for pos in sorted(set(fixed)):
        for bit in range(8):
            yield pos, bit
    for _ in range(samples):
        yield rng.randrange(n), rng.randrange(8)


# ---- positive controls --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_REFS)
def test_reference_snapshots_restore(refs: dict[str, Ref], name: str) -> None:
    ref = refs[name]
    assert ref.data[:8] == MAGIC
    assert reseal(ref.data) == ref.data  # the helper computes the very CRC the window wrote
    w = DedupWindow.from_bytes(ref.data, clock=ManualClock(0.0), elapsed=0)
    assert len(w) == ref.count == struct.unpack_from("<Q", ref.data, COUNT)[0]
    assert w.exact is ref.exact
    assert all(w.contains(k) for k in ref.keys)
    assert w.contains(b"forgotten") is False


@pytest.mark.parametrize("name", ["fp-100", "exact-100"])
def test_a_resealed_counter_edit_is_accepted(refs: dict[str, Ref], name: str) -> None:
    """The CRC helper makes valid snapshots: an edited counter comes back as written."""
    data = bytearray(refs[name].data)
    struct.pack_into("<QQQQ", data, EVICTIONS, 11, 22, 33, 44)
    w = DedupWindow.from_bytes(reseal(data), clock=ManualClock(0.0), elapsed=0)
    s = w.statistics()
    assert (s.evictions, s.expiries, s.inserted, s.hits) == (11, 22, 33, 44)
    assert len(w) == refs[name].count


# ---- bit flips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_REFS)
def test_every_single_bit_flip_is_rejected(
    refs: dict[str, Ref], name: str, rng: Any, stress_scale: float
) -> None:
    ref = refs[name]
    rej = Rejections(name, "bit-flip")
    damaged = bytearray(ref.data)
    flips = 0
    for pos, bit in flip_positions(ref, rng, int(SAMPLES * stress_scale)):
        damaged[pos] ^= 1 << bit
        rej.check(bytes(damaged), (rng, "flip", pos, bit))
        damaged[pos] ^= 1 << bit
        flips += 1
    assert damaged == ref.data
    if ref.exhaustive:
        assert rej.cases == flips == 8 * len(ref.data)
    else:
        assert rej.cases >= SAMPLES * stress_scale


@pytest.mark.parametrize("name", ALL_REFS)
def test_double_flips_and_short_bursts_are_rejected(
    refs: dict[str, Ref], name: str, rng: Any, stress_scale: float
) -> None:
    ref = refs[name]
    n = len(ref.data)
    rej = Rejections(name, "burst")
    for _ in range(int(SAMPLES * stress_scale)):
        damaged = bytearray(ref.data)
        if rng.random() < 0.5:  # two distinct bits anywhere
            a, b = rng.sample(range(8 * n), 2)
            damaged[a // 8] ^= 1 << (a % 8)
            damaged[b // 8] ^= 1 << (b % 8)
            what: tuple[Any, ...] = (rng, "bits", a, b)
        else:  # a burst: 1..4 bytes overwritten with different values
            size = rng.randint(1, min(4, n))
            at = rng.randrange(n - size + 1)
            for i in range(at, at + size):
                damaged[i] ^= rng.randint(1, 255)
            what = (rng, "burst", at, size)
        rej.check(bytes(damaged), what)


# ---- truncation, trailing bytes, garbage --------------------------------------------------------


@pytest.mark.parametrize("name", ALL_REFS)
def test_every_truncation_is_rejected(
    refs: dict[str, Ref], name: str, rng: Any, stress_scale: float
) -> None:
    ref = refs[name]
    n = len(ref.data)
    rej = Rejections(name, "truncated")
    if ref.exhaustive:
        lengths = list(range(n))
    else:
        keys_at = HEADER + ENTRY * ref.count
        wanted = {*range(HEADER + 40), *range(keys_at - 20, keys_at + 40), *range(n - 40, n)}
        wanted |= {rng.randrange(n) for _ in range(int(SAMPLES * stress_scale))}
        lengths = sorted(x for x in wanted if x < n)
    for length in lengths:
        e = rej.check(ref.data[:length], (rng, "truncated to", length))
        assert e.position <= length
    # cutting the CRC off and resealing the rest does not make a snapshot either
    for cut in (1, 4, 15, 16, 17):
        if n - cut >= 4:
            rej.check(reseal(ref.data[: n - cut]), ("resealed after cutting", cut))


@pytest.mark.parametrize("name", ALL_REFS)
def test_appended_bytes_are_rejected(refs: dict[str, Ref], name: str, rng: Any) -> None:
    ref = refs[name]
    rej = Rejections(name, "appended")
    tails = [b"\x00", b"\x00" * 4, b"\xff" * 16, ref.data[-4:], ref.data, MAGIC]
    tails += [rng.randbytes(rng.randint(1, 64)) for _ in range(200)]
    for tail in tails:
        rej.check(ref.data + tail, (rng, "appended", tail[:16], len(tail)))
        rej.check(reseal(ref.data + tail), (rng, "appended then resealed", tail[:16], len(tail)))


def test_garbage_is_rejected(rng: Any, stress_scale: float) -> None:
    rej = Rejections("garbage", "random")
    version_flags = [struct.pack("<II", 1, f) for f in (0, 1)]
    for i in range(int(SAMPLES * stress_scale)):
        size = rng.choice([0, 1, 7, 8, 9, 50, 95, 96, 99, 100, 101, 116, 200, rng.randrange(2000)])
        junk = rng.randbytes(size)
        kind = i % 4
        if kind == 1:  # the right magic
            junk = (MAGIC + junk)[: max(size, 8)]
        elif kind == 2:  # the right magic, version and flags
            junk = (MAGIC + rng.choice(version_flags) + junk)[: max(size, 16)]
        elif kind == 3 and len(junk) >= 4:  # ... and a valid CRC
            junk = reseal(MAGIC + rng.choice(version_flags) + junk)
        rej.check(junk, (rng, "garbage", kind, size))
    for empty in (b"", bytearray(), memoryview(b"")):
        rej.check(bytes(empty), "empty")


# ---- valid CRC, impossible content --------------------------------------------------------------


@pytest.fixture(scope="module")
def staggered() -> dict[str, bytes]:
    """Windows with 3 keys inserted at t=0, 1, 2 (ttl 10, max_keys 3), snapshot at t=2: the
    lifetimes are 8, 9 and 10 s, in that order; keys of 3 bytes each."""
    out = {}
    for exact in (False, True):
        clock = ManualClock(0.0)
        w = DedupWindow(10.0, 3, exact=exact, clock=clock)
        for i, k in enumerate((b"k-0", b"k-1", b"k-2")):
            clock.set(float(i))
            w.seen(k)
        out["exact" if exact else "fp"] = w.to_bytes()
    return out


def put(fmt: str, offset: int, *values: Any) -> Callable[[bytearray], None]:
    def edit(b: bytearray) -> None:
        struct.pack_into(fmt, b, offset, *values)

    return edit


def lifetime_at(k: int) -> int:
    return HEADER + ENTRY * k + 8


def swap_lifetimes(b: bytearray) -> None:
    x, y = b[lifetime_at(0) : lifetime_at(0) + 8], b[lifetime_at(2) : lifetime_at(2) + 8]
    b[lifetime_at(0) : lifetime_at(0) + 8], b[lifetime_at(2) : lifetime_at(2) + 8] = y, x


def same_fingerprint(b: bytearray) -> None:
    b[HEADER + ENTRY : HEADER + ENTRY + 8] = b[HEADER : HEADER + 8]


def same_key_and_fingerprint(b: bytearray) -> None:
    """Exact mode: entry 1 becomes a copy of entry 0 (fingerprint and key bytes)."""
    same_fingerprint(b)
    keys = HEADER + 3 * ENTRY  # (u32 length 3, 3 bytes) per key
    b[keys + 7 : keys + 14] = b[keys : keys + 7]


def exact_key_length(value: int, k: int = 0) -> Callable[[bytearray], None]:
    return put("<I", HEADER + 3 * ENTRY + 7 * k, value)


IMPOSSIBLE: list[Any] = [
    pytest.param("fp", put("<8s", 0, b"FQDEDUQ\x00"), id="magic"),
    pytest.param("fp", put("<8s", 0, b"fqdedup\x00"), id="magic-lowercase"),
    pytest.param("fp", put("<I", VERSION, 0), id="version-0"),
    pytest.param("fp", put("<I", VERSION, 2), id="version-2"),
    pytest.param("exact", put("<I", VERSION, 0xFFFFFFFF), id="version-max"),
    pytest.param("fp", put("<I", FLAGS, 2), id="flags-2"),
    pytest.param("exact", put("<I", FLAGS, 3), id="flags-3"),
    pytest.param("fp", put("<I", FLAGS, 0x80000000), id="flags-high-bit"),
    pytest.param("fp", put("<I", FLAGS, 1), id="fingerprint-snapshot-claims-exact"),
    pytest.param("exact", put("<I", FLAGS, 0), id="exact-snapshot-claims-fingerprint"),
    pytest.param("fp", put("<d", TTL, 0.0), id="ttl-0"),
    pytest.param("fp", put("<d", TTL, -0.0), id="ttl-minus-0"),
    pytest.param("exact", put("<d", TTL, -10.0), id="ttl-negative"),
    pytest.param("fp", put("<d", TTL, math.nan), id="ttl-nan"),
    pytest.param("fp", put("<d", TTL, -math.inf), id="ttl-minus-inf"),
    pytest.param("fp", put("<d", TTL, 9.5), id="ttl-below-the-longest-lifetime"),
    pytest.param("exact", put("<d", TTL, 1.0), id="ttl-below-every-lifetime"),
    pytest.param("fp", put("<Q", MAX_KEYS, 0), id="max_keys-0"),
    pytest.param("fp", put("<Q", MAX_KEYS, 2**30 + 1), id="max_keys-2**30+1"),
    pytest.param("exact", put("<Q", MAX_KEYS, 2**64 - 1), id="max_keys-2**64-1"),
    pytest.param("fp", put("<Q", MAX_KEYS, 2), id="count-above-max_keys"),
    pytest.param("exact", put("<Q", MAX_KEYS, 1), id="count-above-max_keys-exact"),
    pytest.param("fp", put("<Q", COUNT, 2), id="count-one-short"),
    pytest.param("fp", put("<Q", COUNT, 4), id="count-one-over"),
    pytest.param("exact", put("<Q", COUNT, 2), id="count-one-short-exact"),
    pytest.param("exact", put("<Q", COUNT, 4), id="count-one-over-exact"),
    pytest.param("fp", put("<Q", COUNT, 0), id="count-0"),
    pytest.param("fp", put("<Q", COUNT, 2**30 + 1), id="count-2**30+1"),
    pytest.param("fp", put("<Q", COUNT, 2**64 - 1), id="count-2**64-1"),
    pytest.param("exact", put("<Q", COUNT, 2**60), id="count-2**60"),
    pytest.param("fp", swap_lifetimes, id="lifetimes-out-of-order"),
    pytest.param("exact", swap_lifetimes, id="lifetimes-out-of-order-exact"),
    pytest.param("fp", put("<d", lifetime_at(2), 10.5), id="lifetime-above-ttl"),
    pytest.param("fp", put("<d", lifetime_at(2), math.inf), id="lifetime-inf"),
    pytest.param("fp", put("<d", lifetime_at(1), math.nan), id="lifetime-nan"),
    pytest.param("exact", put("<d", lifetime_at(0), -1.0), id="lifetime-negative"),
    pytest.param("fp", put("<d", lifetime_at(0), -math.inf), id="lifetime-minus-inf"),
    pytest.param("fp", put("<d", lifetime_at(1), 7.0), id="lifetime-below-its-predecessor"),
    pytest.param("fp", same_fingerprint, id="same-fingerprint-twice"),
    pytest.param("exact", same_key_and_fingerprint, id="same-key-twice-exact"),
    pytest.param("exact", exact_key_length(4), id="key-length-one-over"),
    pytest.param("exact", exact_key_length(2), id="key-length-one-short"),
    pytest.param("exact", exact_key_length(0xFFFFFFFF), id="key-length-max"),
    pytest.param("exact", exact_key_length(0xFFFFFFFF, 2), id="last-key-length-max"),
    pytest.param("exact", exact_key_length(1000, 2), id="last-key-runs-past-the-end"),
]


@pytest.mark.parametrize(("mode", "edit"), IMPOSSIBLE)
def test_crc_valid_but_impossible_content_is_rejected(
    staggered: dict[str, bytes], mode: str, edit: Callable[[bytearray], None]
) -> None:
    data = bytearray(staggered[mode])
    edit(data)
    assert bytes(data) != staggered[mode]
    rej = Rejections(mode, "impossible")
    # also with the default elapsed (wall clock): validation must not depend on it
    rej.check(reseal(data), "resealed")
    with pytest.raises(CorruptLogError):
        DedupWindow.from_bytes(reseal(data), clock=ManualClock(0.0))


def test_the_same_key_under_two_fingerprints_is_rejected_or_deduplicated(
    staggered: dict[str, bytes],
) -> None:
    """Exact mode, CRC valid: entry 1's key bytes replaced by entry 0's (same length), its
    fingerprint left alone, so one key appears twice under different fingerprints. Either the
    snapshot is rejected, or the restored window holds that key once: len() counts distinct
    keys and one forget() makes it new again."""
    data = bytearray(staggered["exact"])
    keys = HEADER + 3 * ENTRY
    data[keys + 7 : keys + 14] = data[keys : keys + 7]  # key 1 := key 0 (b"k-0")
    w = outcome(reseal(data), clock=ManualClock(0.0), elapsed=0)
    if isinstance(w, CorruptLogError):
        assert 0 <= w.position <= len(data)
        return
    assert len(w) == 2, f"restored {len(w)} keys from a snapshot holding b'k-0' twice and b'k-2'"
    assert w.forget(b"k-0") is True
    assert w.contains(b"k-0") is False
    assert len(w) == 1


@pytest.mark.parametrize(
    "wall_ns",
    [-(2**63), -(2**62), 0, 2**63 - 1],
    ids=["int64-min", "-2**62", "epoch", "int64-max"],
)
def test_snapshot_time_far_from_now(staggered: dict[str, bytes], wall_ns: int) -> None:
    """With the default ``elapsed`` (wall-clock time since the snapshot, never negative), a
    snapshot stamped at the epoch or centuries ago has aged out entirely (ttl is 10 s), and one
    stamped in the future has not aged at all; either way the snapshot may also be refused as
    corrupt. Never: ancient entries restored as if fresh."""
    data = bytearray(staggered["fp"])
    struct.pack_into("<q", data, WALL_NS, wall_ns)
    w = outcome(reseal(data), clock=ManualClock(0.0))
    if isinstance(w, CorruptLogError):
        assert 0 <= w.position <= len(data)
        return
    if wall_ns < time.time_ns():
        assert len(w) == 0, f"a snapshot stamped {wall_ns} ns restored {len(w)} live keys"
    else:
        assert len(w) == 3


def test_fuzz_budget(refs: dict[str, Ref]) -> None:
    """The exhaustive categories are as large as planned (a sanity check on the references)."""
    small = [refs[n] for n in REF_NAMES]
    assert all(r.exhaustive for r in small)
    assert not any(refs[n].exhaustive for n in REF_NAMES_LARGE)
    assert sum(8 * len(r.data) for r in small) >= 40_000
    assert [refs[n].count for n in ("fp-0", "fp-1", "fp-100", "exact-100")] == [0, 1, 100, 100]
