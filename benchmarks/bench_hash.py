"""Hashing keys to partitions: fastq.partition_many and fastq.hash64 against xxhash called from
a Python loop, the way users partition keys today.

partition-list-16, partition-list-12   --bench-hash-keys (1,000,000) bytes keys of 13 B
                                       (b"order-0000042") in a list, into 16 / 12 partitions
    fastq          fastq.partition_many(keys, n)
    xxhash loop    [xxhash.xxh3_64_intdigest(k) % n for k in keys]
partition-array-16, partition-array-12   a 1-D numpy uint64 array of random keys
    fastq          fastq.partition_many(arr, n) on --bench-hash-array-keys (10,000,000) keys
    xxhash loop    [xxh3_64_intdigest(k.to_bytes(8, "little")) % n for k in arr.tolist()] on
                   the first --bench-hash-keys (1,000,000) of them: the loop would take ~1 s
                   per million keys, so it gets fewer; the ratio compares per-key rates
hash64-13B     --bench-hash-calls (100,000) single calls per round, each on a distinct 13 B key,
               the function bound to a local: `for key in keys: x = h(key)`
    fastq          h = fastq.hash64
    xxhash         h = xxhash.xxh3_64_intdigest

There is no numpy-vectorised peer for the array: a multiplicative hash such as
(keys * 0x9E3779B97F4A7C15) % n is fast but is not XXH3, so it would not put a key in the
partition that every other producer (Kafka clients, other services using xxhash) computes.

Checks: each round's partitions must equal, key for key, the expected ones (XXH3 of the key
from xxhash, computed once per module, untimed, modulo n), and the per-partition counts are
printed when they do not. hash64-13B checks every hash of the key list once (untimed) and the
last hash of each round. Keys and expected results are made once per module.
"""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from harness import Settings, measure
from hash_peers import (
    KEY_FORMAT,
    PARTITIONS,
    ROUNDS_FACTOR,
    HashPeer,
    check_partitions,
    hash_info,
    hash_supporting,
    order_keys,
    reference_array_hashes,
    reference_hashes,
    uint64_keys,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

HAVE_NUMPY = importlib.util.find_spec("numpy") is not None
pytestmark = pytest.mark.skipif(not HAVE_NUMPY, reason="numpy is not installed")

#: bytes per key: b"order-0000042"
KEY_BYTES = len(KEY_FORMAT % 0)


class HashData:
    """Keys and their expected hashes, made on first use and kept for the module."""

    def __init__(self) -> None:
        self._keys: dict[int, list[bytes]] = {}
        self._hashes: dict[int, npt.NDArray[np.uint64]] = {}
        self._array: dict[int, npt.NDArray[np.uint64]] = {}
        self._array_hashes: dict[int, npt.NDArray[np.uint64]] = {}

    def keys(self, n: int) -> list[bytes]:
        if n not in self._keys:
            self._keys[n] = order_keys(n)
        return self._keys[n]

    def hashes(self, n: int) -> npt.NDArray[np.uint64]:
        if n not in self._hashes:
            self._hashes[n] = reference_hashes(self.keys(n))
        return self._hashes[n]

    def array(self, n: int) -> npt.NDArray[np.uint64]:
        if n not in self._array:
            self._array[n] = uint64_keys(n)
        return self._array[n]

    def array_hashes(self, n: int) -> npt.NDArray[np.uint64]:
        if n not in self._array_hashes:
            self._array_hashes[n] = reference_array_hashes(self.array(n))
        return self._array_hashes[n]

    def clear(self) -> None:
        for cache in (self._keys, self._hashes, self._array, self._array_hashes):
            cache.clear()


@pytest.fixture(scope="module")
def hash_data() -> Iterator[HashData]:
    """Dropped at the end of the module (10^6 bytes objects would slow every later GC pass)."""
    data = HashData()
    try:
        yield data
    finally:
        data.clear()
        gc.collect()


def _boxed() -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A round's setup: an empty box for the round's result, checked in teardown."""
    return ([],), {}


@pytest.mark.parametrize("partitions", PARTITIONS)
@pytest.mark.parametrize("hasher", hash_supporting("list"))
def test_partition_list(
    benchmark: Any,
    settings: Settings,
    hasher_type: type[HashPeer],
    hasher: str,
    partitions: int,
    hash_data: HashData,
) -> None:
    n = settings.hash_keys
    _measure_partitions(
        benchmark,
        settings,
        hasher,
        hasher_type,
        f"partition-list-{partitions}",
        hasher_type.partition_list,
        hash_data.keys(n),
        hash_data.hashes(n),
        partitions,
        KEY_BYTES,
    )


def _measure_partitions(
    benchmark: Any,
    settings: Settings,
    hasher: str,
    hasher_type: type[HashPeer],
    scenario: str,
    partition_fn: Callable[[Any, int], Any],
    keys: Any,
    hashes: Any,
    partitions: int,
    key_bytes: int,
) -> None:
    """Time partition_fn(keys, partitions) per round; check every key's partition after it."""
    import numpy as np

    n = len(keys)
    expected = (hashes % np.uint64(partitions)).astype(np.int64)

    def run(box: list[Any]) -> None:
        box.append(partition_fn(keys, partitions))

    def teardown(box: list[Any]) -> None:
        check_partitions(box.pop(), expected, partitions, f"{scenario}/{hasher}")

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=hasher,
        items=n,
        target=run,
        setup=_boxed,
        teardown=teardown,
        rounds=settings.rounds * ROUNDS_FACTOR,
        extra_info={**hash_info(hasher_type, key_bytes, n), "partitions": partitions},
    )


@pytest.mark.parametrize("partitions", PARTITIONS)
@pytest.mark.parametrize("hasher", hash_supporting("array"))
def test_partition_array(
    benchmark: Any,
    settings: Settings,
    hasher_type: type[HashPeer],
    hasher: str,
    partitions: int,
    hash_data: HashData,
) -> None:
    total = settings.hash_array_keys
    n = total if hasher_type.fast else min(settings.hash_keys, total)
    _measure_partitions(
        benchmark,
        settings,
        hasher,
        hasher_type,
        f"partition-array-{partitions}",
        hasher_type.partition_array,
        hash_data.array(total)[:n],
        hash_data.array_hashes(total)[:n],
        partitions,
        8,
    )


@pytest.mark.parametrize("hasher", hash_supporting("call"))
def test_hash64(
    benchmark: Any,
    settings: Settings,
    hasher_type: type[HashPeer],
    hasher: str,
    hash_data: HashData,
) -> None:
    n = settings.hash_calls
    keys = hash_data.keys(n)
    h = hasher_type.hash_function()
    expected = hash_data.hashes(n)
    # every hash once, untimed: a wrong hash cannot hide behind the per-round check below
    wrong = sum(1 for key, want in zip(keys, expected.tolist(), strict=True) if h(key) != want)
    if wrong:
        raise AssertionError(f"hash64-13B/{hasher}: {wrong} of {n} hashes differ from XXH3-64")
    last = int(expected[-1])

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (h, keys), {}  # arguments, so that the loop reads them as fast locals

    def run(h: Callable[[bytes], int], keys: list[bytes]) -> None:
        x = 0
        for key in keys:
            x = h(key)
        if x != last:
            raise AssertionError(f"hash64-13B/{hasher}: last hash {x:#x}, expected {last:#x}")

    measure(
        benchmark,
        settings,
        scenario="hash64-13B",
        impl=hasher,
        items=n,
        target=run,
        setup=setup,
        rounds=settings.rounds * ROUNDS_FACTOR,
        extra_info=hash_info(hasher_type, KEY_BYTES, n),
    )
