"""XXH3-64: our own implementation (`_c/fq_xxh3.h`) is bit-exact with the `xxhash` package, the
oracle, for every length class (0, 1-3, 4-8, 9-16, 17-128, 129-240, > 240 bytes: one and many
1 KiB blocks), with and without a seed, on any buffer type and alignment."""

from __future__ import annotations

import random

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from fastq._core import _xxh3_64  # type: ignore[attr-defined]  # private until issue 4

SEEDS = (0, 1, 0x9E3779B185EBCA87, 2**64 - 1)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_length_up_to_2100(seed: int, rng: random.Random) -> None:
    data = rng.randbytes(2100)
    for n in range(len(data) + 1):
        chunk = data[:n]
        assert _xxh3_64(chunk, seed) == xxhash.xxh3_64_intdigest(chunk, seed=seed), (n, seed, rng)


@pytest.mark.parametrize(
    "n", [0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1024, 1025, 65536, 1 << 20]
)
def test_class_boundaries_on_large_and_structured_inputs(n: int, rng: random.Random) -> None:
    for data in (bytes(n), b"\xff" * n, rng.randbytes(n)):
        for seed in SEEDS:
            assert _xxh3_64(data, seed) == xxhash.xxh3_64_intdigest(data, seed=seed), (n, seed)


def test_buffer_types_and_alignments(rng: random.Random) -> None:
    data = rng.randbytes(600)
    for offset in range(16):
        for n in (3, 7, 15, 100, 200, 300):
            view = memoryview(data)[offset : offset + n]
            expected = xxhash.xxh3_64_intdigest(bytes(view))
            assert _xxh3_64(view) == expected
            assert _xxh3_64(bytearray(view)) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=2**64 - 1))
def test_matches_the_oracle(data: bytes, seed: int) -> None:
    assert _xxh3_64(data, seed) == xxhash.xxh3_64_intdigest(data, seed=seed)


@pytest.mark.parametrize(
    ("data", "seed", "error"),
    [
        ("text", 0, TypeError),
        (None, 0, TypeError),
        (b"x", -1, ValueError),
        (b"x", 2**64, ValueError),
        (b"x", 1.5, TypeError),
        (b"x", True, TypeError),
    ],
)
def test_bad_arguments(data: object, seed: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        _xxh3_64(data, seed)
