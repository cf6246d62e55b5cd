"""Key hashing and routing are bit-exact with the `xxhash` oracle.

`hash64` equals `xxhash.xxh3_64_intdigest` at every length 0..1024 and every XXH3 length class
boundary, for any seed; a str hashes as its UTF-8 bytes, an int (bool, IntEnum, numpy integer
scalars) as `(v % 2**64).to_bytes(8, "little")`, any other bytes-like object as its bytes.
`hash_many` equals `[hash64(k) for k in keys]` over lists, tuples, generators and every array
kind it reads (native and big-endian uint64/int64, strided, reversed, misaligned, S<n> with
trailing/embedded NULs and empty strings). `partition`/`partition_many` with "modulo" equal
`xxh3(k) % n` (the mask path for powers of two and the divide-free path otherwise, with and
without the GIL), and with "jump" equal a pure-Python jump consistent hash written from the
Lamping & Veach paper.
"""

from __future__ import annotations

import array
import enum
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

import fastq
from fastq import hash64, hash_many, partition, partition_many

SEEDS = (0, 1, 2**63 + 5, 2**64 - 1)
U64 = 2**64
I64_MIN = -(2**63)
# the integer boundaries of the int-key encoding (sign, 32-bit halves, 64-bit ends)
INT_EDGES = (
    I64_MIN,
    I64_MIN + 1,
    -(2**32),
    -1,
    0,
    1,
    2**31,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
)
# powers of two take the mask path; the rest the divide-free (Lemire) modulo
DIVISORS = (1, 2, 3, 5, 7, 8, 1000, 1024, 65537, 2**30, 2**30 + 1, 2**31 - 2, 2**31 - 1)
JUMP_BUCKETS = (1, 2, 3, 10, 1000, 2**31 - 1)
GIL_FREE = 5000  # arrays of >= 1024 keys are hashed with the GIL released


def xxh(data: bytes, seed: int = 0) -> int:
    return xxhash.xxh3_64_intdigest(data, seed=seed)


def int_bytes(v: int) -> bytes:
    """The bytes an int key hashes as: 8 little-endian bytes, two's complement."""
    return (v % U64).to_bytes(8, "little")


def jump_reference(key: int, buckets: int) -> int:
    """Jump consistent hash, Lamping & Veach 2014 ("A Fast, Minimal Memory, Consistent Hash
    Algorithm", Figure 1): a 64-bit LCG drives the jumps; the division is in doubles."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) % U64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def u64_oracle(values: npt.NDArray[Any], seed: int = 0) -> npt.NDArray[np.uint64]:
    """xxh3 of each integer element's 8 little-endian bytes (by value, whatever the dtype)."""
    return np.array([xxh(int_bytes(int(v)), seed) for v in values], dtype=np.uint64)


def random_u64(rng: random.Random, n: int) -> npt.NDArray[np.uint64]:
    """n random uint64 values followed by the four edge values 0, 1, 2**63, 2**64-1."""
    values = [rng.getrandbits(64) for _ in range(n)] + [0, 1, 2**63, 2**64 - 1]
    return np.array(values, dtype=np.uint64)


class Color(enum.IntEnum):
    RED = 1
    HUGE = 2**64 - 1
    NEGATIVE = -5


# ---- hash64 of one key -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_every_length_up_to_1024(seed: int, rng: random.Random) -> None:
    data = rng.randbytes(1024)
    for n in range(len(data) + 1):
        chunk = data[:n]
        assert hash64(chunk, seed) == xxh(chunk, seed), (n, seed, rng)
    chunks = [data[:n] for n in range(len(data) + 1)]
    expected = [xxh(c, seed) for c in chunks]
    assert hash_many(chunks, seed).tolist() == expected, (seed, rng)


# the XXH3 length classes: 0 | 1-3 | 4-8 | 9-16 | 17-128 | 129-240 | > 240 (stripes, blocks)
BOUNDARIES = (0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 127, 128, 129, 239, 240, 241, 1023, 1024)
BOUNDARIES_LARGE = (1025, 4096, 4097, 65535, 65536, 1 << 20)


@pytest.mark.parametrize("n", BOUNDARIES + BOUNDARIES_LARGE)
def test_length_class_boundaries(n: int, rng: random.Random) -> None:
    for data in (bytes(n), b"\xff" * n, rng.randbytes(n)):
        for seed in SEEDS:
            assert hash64(data, seed) == xxh(data, seed), (n, seed, rng)
            assert hash64(data, seed=seed) == xxh(data, seed), (n, seed, rng)
        assert hash64(data) == xxh(data), (n, rng)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=U64 - 1))
def test_bytes_match_the_oracle(data: bytes, seed: int) -> None:
    expected = xxh(data, seed)
    assert hash64(data, seed) == expected
    assert hash64(bytearray(data), seed) == expected
    assert hash64(memoryview(data), seed) == expected
    assert hash_many([data, data], seed).tolist() == [expected, expected]


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(min_value=0, max_value=U64 - 1))
def test_str_is_its_utf8(text: str, seed: int) -> None:
    class Sub(str):
        pass

    expected = xxh(text.encode("utf-8"), seed)
    assert hash64(text, seed) == expected
    assert hash64(Sub(text), seed) == expected  # a str subclass takes the slow path
    assert hash_many([text, Sub(text)], seed).tolist() == [expected, expected]
    assert hash64(text) == xxh(text.encode("utf-8"))


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(st.integers(min_value=I64_MIN, max_value=U64 - 1), st.sampled_from(INT_EDGES)),
    st.integers(min_value=0, max_value=U64 - 1),
)
def test_int_is_its_8_little_endian_bytes(value: int, seed: int) -> None:
    expected = xxh(int_bytes(value), seed)
    assert hash64(value, seed) == expected
    assert hash64(value) == xxh(int_bytes(value))
    assert hash_many([value], seed).tolist() == [expected]
    if value < 2**63:
        assert hash64(np.int64(value), seed) == expected
    if value >= 0:
        assert hash64(np.uint64(value), seed) == expected


@pytest.mark.parametrize("seed", SEEDS)
def test_int_edges_and_int_like_scalars(seed: int) -> None:
    for v in INT_EDGES:
        assert hash64(v, seed) == xxh(int_bytes(v), seed), (v, seed)
    cases: list[tuple[Any, int]] = [
        (True, 1),
        (False, 0),
        (Color.RED, 1),
        (Color.HUGE, 2**64 - 1),
        (Color.NEGATIVE, -5),
        (np.int64(I64_MIN), I64_MIN),
        (np.int64(-1), -1),
        (np.int64(2**63 - 1), 2**63 - 1),
        (np.uint64(0), 0),
        (np.uint64(2**63), 2**63),
        (np.uint64(2**64 - 1), 2**64 - 1),
        (np.int32(-7), -7),  # any numpy integer scalar hashes by value, as an 8-byte int
        (np.uint8(200), 200),
    ]
    for key, value in cases:
        expected = xxh(int_bytes(value), seed)
        assert hash64(key, seed) == expected, (key, seed)
        assert hash64(key, seed) == hash64(value, seed), (key, seed)
        assert partition(key, 1000) == xxh(int_bytes(value)) % 1000, key
    keys = [key for key, _ in cases]
    expected_all = [xxh(int_bytes(value), seed) for _, value in cases]
    assert hash_many(keys, seed).tolist() == expected_all, seed
    assert hash_many(tuple(keys), seed).tolist() == expected_all, seed


def test_bytes_like_keys_hash_as_their_bytes(rng: random.Random) -> None:
    data = rng.randbytes(301)
    u32 = array.array("I", [rng.getrandbits(32) for _ in range(50)])
    f64 = array.array("d", [rng.random() for _ in range(33)])
    cases: list[tuple[Any, bytes]] = [
        (bytearray(data), data),
        (memoryview(data), data),
        (memoryview(data)[5:250], data[5:250]),
        (memoryview(bytearray(data))[1:], data[1:]),
        (u32, u32.tobytes()),
        (f64, f64.tobytes()),
        (memoryview(u32), u32.tobytes()),
        (bytearray(), b""),
        (memoryview(b""), b""),
    ]
    for seed in SEEDS:
        for key, raw in cases:
            assert hash64(key, seed) == xxh(raw, seed), (type(key).__name__, seed, rng)
            assert hash64(key, seed) == hash64(raw, seed), (type(key).__name__, seed, rng)
        listed = [key for key, _ in cases]
        assert hash_many(listed, seed).tolist() == [xxh(raw, seed) for _, raw in cases], rng


def test_numpy_array_as_one_key_hashes_as_its_bytes(rng: random.Random) -> None:
    """A contiguous 1-D numpy array is a bytes-like object like array.array: as ONE key (not a
    batch) it hashes as its raw bytes, the same as its memoryview."""
    arrays: list[Any] = [  # Any: numpy arrays are Buffer only for mypy on Python >= 3.12
        np.frombuffer(rng.randbytes(33), dtype=np.uint8),
        np.arange(40, dtype=np.uint32),
        np.array([5], dtype=np.uint32),
    ]
    for arr in arrays:
        raw = arr.tobytes()
        assert hash64(memoryview(arr)) == xxh(raw), (arr.dtype, rng)
        assert hash64(arr) == xxh(raw), (arr.dtype, rng)
        assert hash_many([b"x", arr]).tolist() == [xxh(b"x"), xxh(raw)], (arr.dtype, rng)


# ---- hash_many ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_hash_many_sequences_and_iterables(seed: int, rng: random.Random) -> None:
    keys: list[Any] = []
    for i in range(3000):
        kind = i % 4
        if kind == 0:
            keys.append(rng.randbytes(rng.randrange(300)))
        elif kind == 1:
            keys.append(f"k\u00e9y-{rng.getrandbits(40)}-\U0001f600")
        elif kind == 2:
            keys.append(rng.randrange(I64_MIN, U64))
        else:
            keys.append(bytearray(rng.randbytes(rng.randrange(20))))
    expected = [hash64(k, seed) for k in keys]

    def gen() -> Iterator[Any]:
        yield from keys

    for source in (keys, tuple(keys), gen(), iter(keys)):
        out = hash_many(source, seed)
        assert out.dtype == np.uint64
        assert out.shape == (len(keys),)
        assert out.tolist() == expected, (type(source).__name__, seed, rng)
    assert hash_many(keys).tolist() == [hash64(k) for k in keys], rng
    assert hash_many(keys, seed=seed).tolist() == expected, rng


def u64_arrays(rng: random.Random, n: int) -> dict[str, npt.NDArray[Any]]:
    """Every integer array layout hash_many reads, holding the same kinds of values."""
    base = random_u64(rng, n)
    signed = base.view(np.int64)
    raw = bytearray(base.size * 8 + 1)
    misaligned = np.frombuffer(raw, dtype=np.uint64, count=base.size, offset=1)
    misaligned[:] = base  # 8-byte elements at an odd address
    tripled = np.repeat(base, 3)
    return {
        "uint64": base,
        "int64": signed,
        ">u8": base.astype(">u8"),
        ">i8": signed.astype(">i8"),
        "<u8": base.astype("<u8"),
        "strided": random_u64(rng, 3 * n)[::3],
        "strided >i8": signed.astype(">i8")[::3],
        "reversed": base[::-1],
        "repeated view": tripled[1::3],
        "misaligned": misaligned,
    }


@pytest.mark.parametrize("n", [0, 10, GIL_FREE])
@pytest.mark.parametrize("seed", SEEDS)
def test_hash_many_integer_arrays(n: int, seed: int, rng: random.Random) -> None:
    for name, arr in u64_arrays(rng, n).items():
        expected = u64_oracle(arr, seed)
        out = hash_many(arr, seed)
        assert out.dtype == np.uint64, name
        assert np.array_equal(out, expected), (name, n, seed, rng)
        # the same as hashing each element as a Python int
        assert out.tolist() == [hash64(int(v), seed) for v in arr], (name, n, seed, rng)


@pytest.mark.parametrize("seed", SEEDS)
def test_hash_many_buffer_protocol_integer_arrays(seed: int, rng: random.Random) -> None:
    values = [rng.getrandbits(64) for _ in range(1500)]
    signed = [v - U64 if v >= 2**63 else v for v in values]
    expected = [xxh(int_bytes(v), seed) for v in values]
    q = array.array("Q", values)
    assert hash_many(q, seed).tolist() == expected, rng
    assert hash_many(array.array("q", signed), seed).tolist() == expected, rng
    assert hash_many(memoryview(q), seed).tolist() == expected, rng
    assert hash_many(memoryview(q.tobytes()).cast("Q"), seed).tolist() == expected, rng
    assert hash_many(memoryview(q)[::7], seed).tolist() == expected[::7], rng


def fixed_keys(rng: random.Random, n: int, width: int) -> list[bytes]:
    """Keys for an S<width> array: empty, all-NUL, trailing/leading/embedded NULs, full."""
    keys = [b"", b"\x00" * width, b"a" * width, b"\x00" + b"b" * (width - 1)]
    while len(keys) < n:
        k = bytes(rng.choice(b"\x00\x00ab\xff") for _ in range(rng.randrange(width + 1)))
        keys.append(k)
    return keys[:n]


@pytest.mark.parametrize("width", [1, 2, 8, 17, 240, 300])
@pytest.mark.parametrize("seed", [0, 2**64 - 1])
def test_hash_many_fixed_width_bytes(width: int, seed: int, rng: random.Random) -> None:
    for n in (0, 1, 7, 1500):
        arr = np.array(fixed_keys(rng, n, width), dtype=f"S{width}")
        assert arr.dtype.itemsize == width
        for view_name, view in (("contiguous", arr), ("strided", arr[::3]), ("rev", arr[::-1])):
            elements = [bytes(e) for e in view]  # numpy strips the trailing NULs
            assert all(not e.endswith(b"\x00") for e in elements)
            expected = [xxh(e, seed) for e in elements]
            out = hash_many(view, seed)
            assert out.tolist() == expected, (view_name, width, n, seed, rng)
            assert out.tolist() == [hash64(e, seed) for e in elements]


def test_fixed_width_nul_rules() -> None:
    arr = np.array([b"ab\x00\x00", b"a\x00b", b"\x00ab", b"", b"\x00\x00"], dtype="S4")
    assert arr.tolist() == [b"ab", b"a\x00b", b"\x00ab", b"", b""]
    expected = [xxh(b"ab"), xxh(b"a\x00b"), xxh(b"\x00ab"), xxh(b""), xxh(b"")]
    assert hash_many(arr).tolist() == expected
    assert partition_many(arr, 1000).tolist() == [h % 1000 for h in expected]


def test_empty_inputs() -> None:
    empties: list[Any] = [
        [],
        (),
        iter([]),
        (k for k in b""),
        np.empty(0, np.uint64),
        np.empty(0, np.int64),
        np.empty(0, ">u8"),
        np.empty(0, "S4"),
        np.arange(10, dtype=np.uint64)[5:5],
        array.array("Q"),
    ]
    for keys in empties:
        out = hash_many(keys, 7)
        assert out.dtype == np.uint64, keys
        assert out.shape == (0,), keys
    for keys in empties[:2] + empties[4:]:
        for strategy in ("modulo", "jump"):
            parts = partition_many(keys, 5, strategy=strategy)
            assert parts.dtype == np.int32, keys
            assert parts.shape == (0,), keys


# ---- partition (modulo) ---------------------------------------------------------------------


@pytest.fixture
def u64_keys(rng: random.Random) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Random uint64 keys (>= GIL_FREE of them) and their oracle hashes."""
    keys = random_u64(rng, 4 * GIL_FREE)
    return keys, u64_oracle(keys)


@pytest.mark.parametrize("n", DIVISORS)
def test_modulo_arrays(
    n: int,
    u64_keys: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]],
    rng: random.Random,
) -> None:
    keys, hashes = u64_keys
    expected = (hashes % np.uint64(n)).astype(np.int32)
    layouts: dict[str, npt.NDArray[Any]] = {
        "uint64": keys,  # the hash-and-reduce fast loop
        "int64": keys.view(np.int64),
        ">u8": keys.astype(">u8"),  # the general loop
        "small": keys[:100],  # with the GIL
    }
    for name, arr in layouts.items():
        out = partition_many(arr, n)
        assert out.dtype == np.int32, name
        want = expected[: arr.size]
        assert np.array_equal(out, want), (name, n, rng, np.flatnonzero(out != want)[:5])
        assert np.array_equal(partition_many(arr, n, strategy="modulo"), want), (name, n)
    strided = partition_many(keys[::2], n)
    assert np.array_equal(strided, expected[::2]), (n, rng)
    assert np.array_equal(partition_many(keys[::-1], n), expected[::-1]), (n, rng)


@pytest.mark.parametrize("n", DIVISORS)
def test_modulo_lists_and_single_keys(n: int, rng: random.Random) -> None:
    byte_keys = [rng.randbytes(rng.randrange(1, 40)) for _ in range(GIL_FREE)]
    int_keys = [rng.randrange(I64_MIN, U64) for _ in range(GIL_FREE)]
    cases: list[tuple[list[Any], list[bytes]]] = [
        (byte_keys, byte_keys),
        (int_keys, [int_bytes(v) for v in int_keys]),
    ]
    for keys, raw in cases:
        expected = [xxh(r) % n for r in raw]
        assert partition_many(keys, n).tolist() == expected, (n, rng)
        assert partition_many(tuple(keys), n, strategy="modulo").tolist() == expected, (n, rng)
        for k, e in zip(keys[:300], expected[:300], strict=True):
            assert partition(k, n) == e, (k, n, rng)
            assert partition(k, n, strategy="modulo") == e, (k, n, rng)
    fixed = np.array(byte_keys, dtype="S40")
    expected_fixed = [xxh(bytes(e)) % n for e in fixed]
    assert partition_many(fixed, n).tolist() == expected_fixed, (n, rng)


def test_modulo_random_divisors(rng: random.Random) -> None:
    """The divide-free remainder is exact for any divisor, not only the listed ones."""
    keys = random_u64(rng, 2 * GIL_FREE)
    hashes = u64_oracle(keys)
    key_list = [int(v) for v in keys[:500]]
    divisors = [rng.randrange(1, 2**31) for _ in range(40)]
    divisors += [rng.randrange(1, 2**k) | 1 for k in range(2, 32)]
    for n in divisors:
        expected = hashes % np.uint64(n)
        assert np.array_equal(partition_many(keys, n), expected), (n, rng)
        assert partition_many(key_list, n).tolist() == expected[:500].tolist(), (n, rng)
        assert partition(key_list[0], n) == int(expected[0]), (n, rng)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=2**31 - 1))
def test_modulo_property(data: bytes, n: int) -> None:
    expected = xxh(data) % n
    assert partition(data, n) == expected
    assert partition_many([data], n).tolist() == [expected]


# ---- partition (jump) -----------------------------------------------------------------------


def test_jump_reference_sanity() -> None:
    """The reference itself: in range, 0 for one bucket, and monotone in the bucket count
    (a key only ever moves to the newly added bucket)."""
    for key in (0, 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15):
        assert jump_reference(key, 1) == 0
        previous = 0
        for n in range(1, 200):
            b = jump_reference(key, n)
            assert 0 <= b < n
            assert b in (previous, n - 1)
            previous = b


@pytest.mark.parametrize("n", JUMP_BUCKETS)
def test_jump_matches_reference(n: int, rng: random.Random) -> None:
    keys = random_u64(rng, GIL_FREE)
    hashes = u64_oracle(keys)
    expected = np.array([jump_reference(int(h), n) for h in hashes], dtype=np.int32)
    assert np.array_equal(partition_many(keys, n, strategy="jump"), expected), (n, rng)
    assert np.array_equal(partition_many(keys[:100], n, strategy="jump"), expected[:100])
    assert np.array_equal(partition_many(keys[::3], n, strategy="jump"), expected[::3]), rng
    assert np.array_equal(partition_many(keys.astype(">u8"), n, strategy="jump"), expected)
    key_list = [int(v) for v in keys]
    assert partition_many(key_list, n, strategy="jump").tolist() == expected.tolist(), rng
    for v, e in zip(key_list[:300], expected[:300].tolist(), strict=True):
        assert partition(v, n, strategy="jump") == e, (v, n, rng)

    byte_keys = [rng.randbytes(rng.randrange(60)) for _ in range(1000)]
    byte_expected = [jump_reference(xxh(k), n) for k in byte_keys]
    assert partition_many(byte_keys, n, strategy="jump").tolist() == byte_expected, (n, rng)
    fixed = np.array(byte_keys, dtype="S60")
    fixed_expected = [jump_reference(xxh(bytes(e)), n) for e in fixed]
    assert partition_many(fixed, n, strategy="jump").tolist() == fixed_expected, (n, rng)
    for k, e in zip(byte_keys[:200], byte_expected[:200], strict=True):
        assert partition(k, n, strategy="jump") == e, (k, n, rng)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.binary(max_size=64), st.integers(min_value=I64_MIN, max_value=U64 - 1)),
    st.integers(min_value=1, max_value=2**31 - 1),
)
def test_jump_property(key: bytes | int, n: int) -> None:
    raw = key if isinstance(key, bytes) else int_bytes(key)
    expected = jump_reference(xxh(raw), n)
    assert partition(key, n, strategy="jump") == expected
    assert partition_many([key], n, strategy="jump").tolist() == [expected]


# ---- large input ------------------------------------------------------------------------


def test_one_mib_key(rng: random.Random) -> None:
    data = rng.randbytes(1 << 20)
    expected = xxhash.xxh3_64_intdigest(data)
    assert fastq.hash64(data) == expected, rng
    assert fastq.hash64(bytearray(data)) == expected, rng
    assert fastq.hash64(memoryview(data)) == expected, rng
    assert fastq.hash64(data, 12345) == xxhash.xxh3_64_intdigest(data, seed=12345), rng
    assert fastq.partition(data, 1000) == expected % 1000, rng
    assert fastq.hash_many([data, data[1:]]).tolist() == [
        expected,
        xxhash.xxh3_64_intdigest(data[1:]),
    ], rng
