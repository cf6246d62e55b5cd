"""Partition routing: group_by_partition, distribution, jump-hash movement, errors, threads.

`group_by_partition` returns a stable grouping (order == argsort(partition_many(...),
stable), counts == bincount) for one and many partitions and for empty input; both strategies
spread 10**6 sequential keys evenly (chi-square); growing jump hashing from n to n+1
partitions moves ~1/(n+1) of the keys, all to the new partition (modulo moves ~n/(n+1));
every bad argument raises TypeError/ValueError naming the argument (and, for a TypeError, the
offending type); and concurrent batch calls on shared arrays and lists give the
single-threaded results. (No xxhash here: this file also runs on the free-threaded build.)
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest

import fastq
from fastq import group_by_partition, hash64, hash_many, partition, partition_many

Strategy = Literal["modulo", "jump"]
STRATEGIES: tuple[Strategy, ...] = ("modulo", "jump")
N_CHI = 10**6
# Chi-square critical values at p = 0.0001 (upper tail) for df = partitions - 1. scipy is not
# a test dependency; these are scipy.stats.chi2.isf(1e-4, df), reproduced by bisecting the
# regularized upper incomplete gamma Q(df/2, x/2) = 1e-4 with its power series (math.lgamma),
# which gives 16.919 at p = 0.05, df = 9, the textbook value. The keys are fixed, so each case
# is deterministic: it passes or fails the same way on every run.
CHI2_CRITICAL_P0001 = {10: 33.72, 16: 44.26, 100: 160.06, 1024: 1199.83}


def partition_keys(rng: random.Random) -> dict[str, Any]:
    """One batch of each kind: bytes/str/int lists, uint64 (GIL-free size), S<n>, strided."""
    big = np.array([rng.getrandbits(64) for _ in range(6000)], dtype=np.uint64)
    byte_keys = [rng.randbytes(rng.randrange(30)) for _ in range(3000)]
    return {
        "bytes list": byte_keys,
        "str tuple": tuple(f"user-{rng.getrandbits(32)}" for _ in range(2000)),
        "int list": [rng.randrange(-(2**63), 2**64) for _ in range(2000)],
        "uint64": big,
        "int64 small": big[:300].view(np.int64),
        "strided": big[::3],
        "S30": np.array(byte_keys, dtype="S30"),
    }


# ---- group_by_partition -----------------------------------------------------------------


@pytest.mark.parametrize("partitions", [1, 2, 7, 16, 1000])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_group_by_partition_is_a_stable_grouping(
    partitions: int, strategy: Strategy, rng: random.Random
) -> None:
    for name, keys in partition_keys(rng).items():
        parts = partition_many(keys, partitions, strategy=strategy)
        order, counts = group_by_partition(keys, partitions, strategy=strategy)
        n = len(parts)
        assert order.dtype == np.int64, name
        assert counts.dtype == np.int64, name
        assert order.shape == (n,), name
        assert counts.shape == (partitions,), name
        assert int(counts.sum()) == n, (name, rng)
        assert np.array_equal(np.sort(order), np.arange(n)), (name, "not a permutation", rng)
        assert np.array_equal(counts, np.bincount(parts, minlength=partitions)), (name, rng)
        # the stable sort by partition: p's keys in input order, then p + 1's
        assert np.array_equal(order, np.argsort(parts, kind="stable")), (name, rng)
        starts = np.cumsum(counts) - counts
        for p in range(min(partitions, 20)):
            block = order[starts[p] : starts[p] + counts[p]]
            assert (parts[block] == p).all(), (name, p, rng)
            assert (np.diff(block) > 0).all(), (name, p, "not ascending", rng)
            assert int(counts[p]) == int((parts == p).sum()), (name, p, rng)


def test_group_by_partition_single_partition_is_identity(rng: random.Random) -> None:
    for name, keys in partition_keys(rng).items():
        order, counts = group_by_partition(keys, 1)
        assert np.array_equal(order, np.arange(len(order))), name
        assert counts.tolist() == [len(order)], name


@pytest.mark.parametrize("partitions", [1, 3, 64])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_group_by_partition_empty(partitions: int, strategy: Strategy) -> None:
    empties: list[Any] = [[], (), iter([]), np.empty(0, np.uint64), np.empty(0, "S3")]
    for keys in empties:
        order, counts = group_by_partition(keys, partitions, strategy=strategy)
        assert order.dtype == np.int64
        assert order.shape == (0,)
        assert counts.dtype == np.int64
        assert counts.tolist() == [0] * partitions


def test_group_by_partition_generator_and_one_key() -> None:
    order, counts = group_by_partition((b"k%d" % i for i in range(100)), 4)
    parts = partition_many([b"k%d" % i for i in range(100)], 4)
    assert np.array_equal(order, np.argsort(parts, kind="stable"))
    assert np.array_equal(counts, np.bincount(parts, minlength=4))
    order, counts = group_by_partition([b"only"], 5)
    assert order.tolist() == [0]
    assert counts.tolist() == [int(i == partition(b"only", 5)) for i in range(5)]


# ---- distribution -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sequential_keys() -> dict[str, Any]:
    """10**6 keys of the kinds that expose weak mixing: b"key-<i>" and 0..N-1 as uint64."""
    return {
        "b'key-%d'": [b"key-%d" % i for i in range(N_CHI)],
        "uint64 arange": np.arange(N_CHI, dtype=np.uint64),
    }


def chi_square(parts: npt.NDArray[np.int32], partitions: int) -> float:
    counts = np.bincount(parts, minlength=partitions).astype(np.float64)
    expected = len(parts) / partitions
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("partitions", sorted(CHI2_CRITICAL_P0001))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_distribution_chi_square(
    partitions: int, strategy: Strategy, sequential_keys: dict[str, Any]
) -> None:
    for name, keys in sequential_keys.items():
        parts = partition_many(keys, partitions, strategy=strategy)
        assert parts.min() >= 0
        assert parts.max() < partitions
        stat = chi_square(parts, partitions)
        critical = CHI2_CRITICAL_P0001[partitions]
        assert stat < critical, (name, strategy, partitions, stat, critical)


# ---- jump hashing: growing n -> n + 1 ---------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 10, 63, 100])
def test_jump_moves_about_one_in_n_plus_one_all_to_the_new_partition(
    n: int, rng: random.Random
) -> None:
    keys = np.array([rng.getrandbits(64) for _ in range(10**5)], dtype=np.uint64)
    before = partition_many(keys, n, strategy="jump")
    after = partition_many(keys, n + 1, strategy="jump")
    moved = before != after
    fraction = float(moved.mean())
    assert 0.8 / (n + 1) <= fraction <= 1.2 / (n + 1), (n, fraction, rng)
    assert (after[moved] == n).all(), (n, "a key moved to an old partition", rng)
    byte_keys = [b"key-%d" % i for i in range(20000)]
    b0 = partition_many(byte_keys, n, strategy="jump")
    b1 = partition_many(byte_keys, n + 1, strategy="jump")
    assert (b1[b0 != b1] == n).all(), n


@pytest.mark.parametrize("n", [1, 5, 10, 63, 100])
def test_modulo_moves_most_keys(n: int, rng: random.Random) -> None:
    """Documents why "jump" exists: with "modulo" a key stays only when h % n == h % (n + 1),
    i.e. for ~1/(n + 1) of the hashes, so ~n/(n + 1) of the keys move on a resize."""
    keys = np.array([rng.getrandbits(64) for _ in range(10**5)], dtype=np.uint64)
    moved = partition_many(keys, n) != partition_many(keys, n + 1)
    fraction = float(moved.mean())
    assert abs(fraction - n / (n + 1)) < 0.02, (n, fraction, rng)


# ---- bad arguments ----------------------------------------------------------------------

PARTITIONERS: dict[str, Callable[..., object]] = {
    "partition": lambda partitions, **kw: partition(b"k", partitions, **kw),
    "partition_many": lambda partitions, **kw: partition_many([b"k"], partitions, **kw),
    "group_by_partition": lambda partitions, **kw: group_by_partition([b"k"], partitions, **kw),
    "partition_many array": lambda partitions, **kw: partition_many(
        np.arange(3, dtype=np.uint64), partitions, **kw
    ),
}


@pytest.mark.parametrize(
    ("partitions", "error", "fragments"),
    [
        (0, ValueError, ["partitions", "0"]),
        (-1, ValueError, ["partitions", "-1"]),
        (2**31, ValueError, ["partitions", str(2**31)]),
        (2**64, ValueError, ["partitions"]),
        (True, TypeError, ["partitions", "bool"]),
        (1.5, TypeError, ["partitions", "float"]),
        ("3", TypeError, ["partitions", "str"]),
        (None, TypeError, ["partitions", "NoneType"]),
    ],
)
@pytest.mark.parametrize("fn", PARTITIONERS)
def test_bad_partitions(
    fn: str, partitions: object, error: type[Exception], fragments: list[str]
) -> None:
    with pytest.raises(error) as info:
        PARTITIONERS[fn](partitions)
    for fragment in fragments:
        assert fragment in str(info.value), (fn, partitions, str(info.value))


@pytest.mark.parametrize("strategy", ["mod", None, "Modulo", "", 0, "jump "])
@pytest.mark.parametrize("fn", PARTITIONERS)
def test_bad_strategy(fn: str, strategy: object) -> None:
    with pytest.raises(ValueError, match="strategy") as info:
        PARTITIONERS[fn](4, strategy=strategy)
    assert repr(strategy) in str(info.value), (fn, str(info.value))


def test_strategy_is_keyword_only() -> None:
    functions: list[Callable[..., object]] = [partition, partition_many, group_by_partition]
    for fn, key in zip(functions, [b"k", [b"k"], [b"k"]], strict=True):
        with pytest.raises(TypeError):
            fn(key, 4, "jump")


BATCH_FUNCTIONS: dict[str, Callable[[object], object]] = {
    "hash_many": lambda keys: hash_many(keys),  # type: ignore[arg-type]
    "partition_many": lambda keys: partition_many(keys, 3),  # type: ignore[arg-type]
    "partition_many jump": lambda keys: partition_many(keys, 3, strategy="jump"),  # type: ignore[arg-type]
    "group_by_partition": lambda keys: group_by_partition(keys, 3),  # type: ignore[arg-type]
}


@pytest.mark.parametrize(
    ("keys", "fragments"),
    [
        (None, ["keys", "NoneType"]),
        (3.5, ["keys", "float"]),
        (7, ["keys", "int"]),
        ([None], ["keys[0]", "NoneType"]),
        ([1.5], ["keys[0]", "float"]),
        ([[1]], ["keys[0]", "list"]),
        ([b"ok", None], ["keys[1]", "NoneType"]),
        ([b"ok", 2.5, b"ok"], ["keys[1]", "float"]),
        ((b"ok", {}), ["keys[1]", "dict"]),
        (b"abc", ["keys", "bytes"]),
        ("abc", ["keys", "str"]),
        (bytearray(b"abc"), ["keys", "bytearray"]),
        (np.zeros(3, float), ["keys", "float64"]),
        (np.zeros(3, np.int32), ["keys", "int32"]),
        (np.zeros(3, bool), ["keys", "bool"]),
        (np.zeros((2, 2), np.uint64), ["keys", "ndim=2"]),
        (np.array(["a"]), ["keys", "<U1"]),
        (np.array([b"a"], dtype=object), ["keys", "object"]),
        (memoryview(b"abc"), ["keys"]),
    ],
    ids=repr,
)
@pytest.mark.parametrize("fn", BATCH_FUNCTIONS)
def test_bad_keys(fn: str, keys: object, fragments: list[str]) -> None:
    with pytest.raises(TypeError) as info:
        BATCH_FUNCTIONS[fn](keys)
    for fragment in fragments:
        assert fragment in str(info.value), (fn, keys, str(info.value))


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 2**100, -(2**100)])
def test_int_keys_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="key") as info:
        hash64(value)
    assert repr(value) in str(info.value)
    with pytest.raises(ValueError, match="key"):
        partition(value, 3)
    with pytest.raises(ValueError, match="key"):
        partition(value, 3, strategy="jump")
    for name, fn in BATCH_FUNCTIONS.items():
        with pytest.raises(ValueError, match=r"keys\[1\]") as info:
            fn([0, value, 1])
        assert repr(value) in str(info.value), name


@pytest.mark.parametrize(
    ("key", "type_name"),
    [(None, "NoneType"), (3.5, "float"), ([1], "list"), ({}, "dict"), (object(), "object")],
)
def test_bad_single_key(key: object, type_name: str) -> None:
    calls: list[Callable[[object], object]] = [
        lambda k: hash64(k),  # type: ignore[arg-type]
        lambda k: hash64(k, 5),  # type: ignore[arg-type]
        lambda k: partition(k, 3),  # type: ignore[arg-type]
        lambda k: partition(k, 3, strategy="jump"),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(TypeError) as info:
            call(key)
        message = str(info.value)
        assert "key" in message, message
        assert type_name in message, message


def test_non_contiguous_buffer_key_is_a_type_error() -> None:
    view = memoryview(bytes(range(20)))[::2]
    with pytest.raises(TypeError, match="key") as info:
        hash64(view)
    assert "memoryview" in str(info.value)
    with pytest.raises(TypeError, match=r"keys\[0\]"):
        hash_many([view])


@pytest.mark.parametrize(
    ("seed", "error", "fragments"),
    [
        (-1, ValueError, ["seed", "-1"]),
        (2**64, ValueError, ["seed", str(2**64)]),
        (1.5, TypeError, ["seed", "float"]),
        (True, TypeError, ["seed", "bool"]),
        ("1", TypeError, ["seed", "str"]),
        (None, TypeError, ["seed", "NoneType"]),
        (np.uint64(1), TypeError, ["seed", "uint64"]),
    ],
)
def test_bad_seed(seed: object, error: type[Exception], fragments: list[str]) -> None:
    calls: list[Callable[[], object]] = [
        lambda: hash64(b"k", seed),  # type: ignore[arg-type]
        lambda: hash64(7, seed=seed),  # type: ignore[arg-type]
        lambda: hash_many([b"k"], seed),  # type: ignore[arg-type]
        lambda: hash_many(np.arange(3, dtype=np.uint64), seed=seed),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(error) as info:
            call()
        for fragment in fragments:
            assert fragment in str(info.value), (seed, str(info.value))


# ---- a key that runs Python code ------------------------------------------------------

MUTATING_KEY = """
    import fastq

    class ClearsTheList:
        # an int-like key: hashing it calls __index__, which empties the batch being hashed
        def __init__(self, keys):
            self.keys = keys

        def __index__(self):
            self.keys.clear()
            return 1

    keys = [b"first"]
    keys.append(ClearsTheList(keys))
    keys.extend(b"k%d" % i for i in range(100000))
    try:
        fastq.{call}
    except Exception as exc:  # an error is acceptable, a crash is not
        print("raised", type(exc).__name__)
    print("survived")
"""


@pytest.mark.parametrize(
    "call",
    [
        "hash_many(keys)",
        "partition_many(keys, 7)",
        "group_by_partition(keys, 7)",
        "DedupWindow().seen_many(keys)",
        "DedupWindow(exact=True).seen_many(keys)",
    ],
)
def test_key_that_mutates_the_batch_list_does_not_crash(call: str) -> None:
    """A batch list is read in place while keys are converted, and converting an int-like key
    runs its __index__: a key that empties the list must not leave the loop reading freed
    item pointers. Run in a child so a crash fails this test only."""
    code = textwrap.dedent(MUTATING_KEY).replace("{call}", call)
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (call, proc.returncode, proc.stderr[-2000:])
    assert "survived" in proc.stdout, (call, proc.stdout, proc.stderr[-2000:])


def test_numpy_keys_are_the_values_they_hold_or_their_bytes() -> None:
    """A numpy scalar (or 0-d array) is keyed like the Python number it holds; an array of
    one or more dimensions exports its bytes like any buffer; floats are refused like float."""
    assert fastq.hash64(np.uint32(7)) == fastq.hash64(7) == fastq.hash64(np.array(7, np.int8))
    assert fastq.hash64(np.True_) == fastq.hash64(True) == fastq.hash64(1)
    arr = np.arange(40, dtype=np.uint32)
    assert fastq.hash64(arr) == fastq.hash64(arr.tobytes())
    assert fastq.hash64(np.zeros(3)) == fastq.hash64(bytes(24))
    for bad in (np.float32(1.5), np.float64(1.5), np.complex128(1j), np.array(2.5)):
        with pytest.raises(TypeError, match="key"):
            fastq.hash64(bad)
    with pytest.raises(TypeError, match="key"):
        fastq.hash64(arr[::2])  # not contiguous


# ---- threads ----------------------------------------------------------------------------

THREADS = 4


def test_concurrent_batches_match_single_threaded(rng: random.Random, stress_scale: float) -> None:
    """4 threads run every batch call on the same shared arrays and lists at once (the array
    calls release the GIL); each result equals the single-threaded one."""
    big = np.array([rng.getrandbits(64) for _ in range(200_000)], dtype=np.uint64)
    byte_list = [rng.randbytes(rng.randrange(40)) for _ in range(30_000)]
    shared: dict[str, Any] = {
        "uint64": big,
        "strided": big[::3],
        ">u8": big.astype(">u8"),
        "S16": np.array(byte_list, dtype="S16"),
        "bytes list": byte_list,
        "int list": [int(v) for v in big[:30_000]],
    }
    calls: dict[str, Callable[[Any], Any]] = {
        "hash_many": lambda k: hash_many(k),
        "hash_many seed": lambda k: hash_many(k, 2**64 - 1),
        "modulo 1000": lambda k: partition_many(k, 1000),
        "modulo 1024": lambda k: partition_many(k, 1024),
        "jump 37": lambda k: partition_many(k, 37, strategy="jump"),
        "group 13": lambda k: np.concatenate(group_by_partition(k, 13)),
    }
    expected = {(c, s): calls[c](keys) for c in calls for s, keys in shared.items()}
    rounds = max(1, int(3 * stress_scale))
    start = threading.Barrier(THREADS)

    def worker(index: int) -> list[str]:
        start.wait(timeout=10)
        mismatches = []
        jobs = list(expected)
        for r in range(rounds):
            order = jobs[index + r :] + jobs[: index + r]  # threads run different calls at once
            for call_name, source in order:
                out = calls[call_name](shared[source])
                if not np.array_equal(out, expected[call_name, source]):
                    mismatches.append(f"{call_name} on {source} (thread {index}, round {r})")
        return mismatches

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(worker, i) for i in range(THREADS)]
        results = [f.result(timeout=120) for f in futures]
    assert results == [[]] * THREADS, (results, rng)
    # the shared inputs were only read
    assert np.array_equal(shared["uint64"], big)
    assert shared["bytes list"] == byte_list


# ---- out= ---------------------------------------------------------------------------------


def test_out_receives_the_results(rng: random.Random) -> None:
    keys = np.array([rng.getrandbits(64) for _ in range(3000)], dtype=np.uint64)
    parts = np.full(len(keys), -1, dtype=np.int32)
    assert partition_many(keys, 12, out=parts) is parts
    assert (parts == partition_many(keys, 12)).all(), rng
    hashes = np.zeros(len(keys), dtype=np.uint64)
    assert hash_many(keys, out=hashes) is hashes
    assert (hashes == hash_many(keys)).all(), rng
    listed = [b"k%d" % i for i in range(100)]
    assert (
        partition_many(listed, 5, out=np.empty(100, np.int32)) == partition_many(listed, 5)
    ).all()


@pytest.mark.parametrize(
    ("out", "error", "fragment"),
    [
        (np.empty(10, np.int64), TypeError, "int32"),
        (np.empty((2, 5), np.int32), TypeError, "ndim 2"),
        (np.empty(20, np.int32)[::2], TypeError, "C-contiguous"),
        ([0] * 10, TypeError, "list"),
        (np.empty(9, np.int32), ValueError, "9 items"),
    ],
)
def test_bad_out(out: object, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        partition_many(np.arange(10, dtype=np.uint64), 3, out=out)  # type: ignore[arg-type]


def test_read_only_out_is_refused() -> None:
    out = np.empty(10, np.uint64)
    out.flags.writeable = False
    with pytest.raises(TypeError, match="writable"):
        hash_many(np.arange(10, dtype=np.uint64), out=out)
