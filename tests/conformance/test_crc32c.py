"""CRC-32C: our own implementation (SSE4.2 and the portable tables) is bit-exact with the
`crc32c` package, the oracle, on every length class, alignment and chaining."""

from __future__ import annotations

import random
from collections.abc import Callable

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastq._core import _CRC32C_HARDWARE, _crc32c, _crc32c_sw  # type: ignore[attr-defined]

IMPLS: dict[str, Callable[..., int]] = {"best": _crc32c, "portable": _crc32c_sw}


@pytest.fixture(params=sorted(IMPLS))
def crc(request: pytest.FixtureRequest) -> Callable[..., int]:
    return IMPLS[request.param]


def test_check_value(crc: Callable[..., int]) -> None:
    # the catalogued check value of CRC-32C ("123456789"), and the empty input
    assert crc(b"123456789") == 0xE3069283
    assert crc(b"") == 0


def test_every_length_up_to_1024_with_and_without_a_start_value(
    crc: Callable[..., int], rng: random.Random
) -> None:
    data = rng.randbytes(1024 + 8)
    for n in range(1025):
        chunk = data[:n]
        assert crc(chunk) == crc32c.crc32c(chunk), (n, rng)
        assert crc(chunk, 0xDEADBEEF) == crc32c.crc32c(chunk, 0xDEADBEEF), (n, rng)


def test_unaligned_views_and_buffer_types(crc: Callable[..., int], rng: random.Random) -> None:
    data = rng.randbytes(4096)
    view = memoryview(data)
    for offset in range(16):
        for n in (0, 1, 7, 8, 9, 63, 64, 65, 1000):
            piece = view[offset : offset + n]
            assert crc(piece) == crc32c.crc32c(bytes(piece)), (offset, n)
    assert crc(bytearray(data)) == crc32c.crc32c(data)


def test_chaining_equals_one_pass(crc: Callable[..., int], rng: random.Random) -> None:
    data = rng.randbytes(10_000)
    for _ in range(50):
        cut = rng.randrange(len(data) + 1)
        assert crc(data[cut:], crc(data[:cut])) == crc32c.crc32c(data)


def test_large_buffer_runs_without_the_gil_and_matches(crc: Callable[..., int]) -> None:
    data = random.Random(7).randbytes((1 << 20) + 3)  # above the 64 KiB GIL-release threshold
    assert crc(data) == crc32c.crc32c(data)


def test_every_single_bit_flip_changes_the_crc(rng: random.Random) -> None:
    data = bytearray(rng.randbytes(64))
    base = _crc32c(data)
    for bit in range(len(data) * 8):
        data[bit // 8] ^= 1 << (bit % 8)
        assert _crc32c(data) != base, bit
        data[bit // 8] ^= 1 << (bit % 8)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2048), value=st.integers(0, 2**32 - 1))
def test_matches_the_oracle_on_arbitrary_input(data: bytes, value: int) -> None:
    expected = crc32c.crc32c(data, value)
    assert _crc32c(data, value) == expected
    assert _crc32c_sw(data, value) == expected


@pytest.mark.parametrize(
    ("args", "exc", "fragment"),
    [
        (("abc",), TypeError, "data must be a contiguous bytes-like object, got str"),
        ((None,), TypeError, "got NoneType"),
        ((memoryview(b"abcdef")[::2],), TypeError, "contiguous"),
        ((b"x", -1), ValueError, "value must be in 0..2**32-1, got -1"),
        ((b"x", 2**32), ValueError, "got 4294967296"),
        ((b"x", True), TypeError, "value must be an int, got bool"),
        ((b"x", 1.0), TypeError, "got float"),
    ],
)
def test_bad_input_names_the_argument(args: tuple[object, ...], exc: type, fragment: str) -> None:
    with pytest.raises(exc) as info:
        _crc32c(*args)
    assert fragment in str(info.value)


def test_hardware_path_is_used_where_the_cpu_has_it() -> None:
    # x86-64 machines here all have SSE4.2; elsewhere the flag may be False, both paths agree
    assert isinstance(_CRC32C_HARDWARE, bool)
    assert _crc32c(b"fastq") == _crc32c_sw(b"fastq")
