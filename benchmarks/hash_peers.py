"""Adapters over fastq's hashing (hash64, partition_many) and fastq.DedupWindow, next to what
users write today without them (bench_hash.py, bench_dedup.py), and the workloads they share.

As in peers.py and log_peers.py, each benchmark is written once against an adapter class; each
subclass maps it onto one implementation and hands the timed loops the real callables
(``fastq.hash64``, ``xxhash.xxh3_64_intdigest``, ``window.seen``), so they pay nothing for the
adapter per key.

Hashing (``HashPeer``, the benchmarks' ``hasher`` parameter). Capabilities:

``list``   partition a list of bytes keys into n partitions
``array``  partition a 1-D numpy uint64 array (each element hashed as its 8 little-endian
           bytes, which is what fastq does with an integer key)
``call``   one 64-bit hash per call

Dedup windows (``DedupPeer``, the ``window`` parameter). Capabilities:

``seen``         check-and-insert one key per call
``many``         a batch of bytes keys per call (a list)
``many-array``   a batch of uint64 keys per call (a numpy array slice)

xxhash is optional (lazily imported, through importlib so that mypy does not need it); without
it, its rows are skipped and the expected results come from fastq.hash64, one key at a time
(the scalar path, which tests/conformance checks bit for bit against xxhash).
"""

from __future__ import annotations

import collections
import importlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from peers import Implementation

import fastq

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: partition counts: a power of two (a mask) and not one (a real modulo)
PARTITIONS = (16, 12)
#: what the bytes keys look like: b"order-0000042", 13 bytes (up to 10^7 keys)
KEY_FORMAT = b"order-%07d"
#: the idempotency keys of the dedup stream: b"req-000000042", 13 bytes (up to 10^9 keys)
DEDUP_KEY_FORMAT = b"req-%09d"
#: the dedup window under test: DedupWindow(ttl=300, max_keys=100_000)
DEDUP_TTL = 300.0
DEDUP_MAX_KEYS = 100_000
#: keys per seen_many call
DEDUP_BATCH = 1_000
#: share of the stream that repeats an earlier key...
REPEAT_SHARE = 0.10
#: ...drawn from this many most recent distinct keys (all still in the window: <= max_keys)
RECENT = 50_000
#: the multiplier that turns distinct key numbers into distinct, spread-out uint64 ids
#: (odd, so multiplication modulo 2^64 is a bijection)
ID_MULTIPLIER = 0x9E3779B97F4A7C15

#: timed rounds, as a multiple of --bench-rounds: the rounds here take milliseconds, and on a
#: shared machine the median of 45 is steadier than that of 15 (the budget still caps the slow
#: peers' rounds)
ROUNDS_FACTOR = 3

assert RECENT <= DEDUP_MAX_KEYS, "a repeat must still be in the window for the count to hold"


def _xxhash() -> Any:
    return importlib.import_module("xxhash")


# ---- workloads --------------------------------------------------------------------------


def order_keys(n: int) -> list[bytes]:
    """n distinct short bytes keys: b"order-0000000", b"order-0000001", ..."""
    return [KEY_FORMAT % k for k in range(n)]


def uint64_keys(n: int, seed: int = 7) -> npt.NDArray[np.uint64]:
    """n reproducible pseudo-random uint64 keys (the full 64-bit range)."""
    import numpy as np

    return np.random.default_rng(seed).integers(
        0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True
    )


def reference_hashes(keys: Sequence[bytes]) -> npt.NDArray[np.uint64]:
    """XXH3-64 of each key, one Python call each (untimed: the expected results)."""
    import numpy as np

    h: Callable[[bytes], int] = (
        _xxhash().xxh3_64_intdigest if XxhashCall.missing() is None else fastq.hash64
    )
    return np.fromiter(map(h, keys), dtype=np.uint64, count=len(keys))


def reference_array_hashes(
    keys: npt.NDArray[np.uint64], chunk: int = 1 << 20
) -> npt.NDArray[np.uint64]:
    """The same for a uint64 array, element by element as its 8 little-endian bytes (in
    chunks, so that no list of 10^7 Python ints is ever alive)."""
    import numpy as np

    out = np.empty(len(keys), dtype=np.uint64)
    for start in range(0, len(keys), chunk):
        part = keys[start : start + chunk].tolist()
        out[start : start + len(part)] = reference_hashes([k.to_bytes(8, "little") for k in part])
    return out


@dataclass(frozen=True)
class DedupStream:
    """A stream of idempotency keys with a known set of repeats.

    Every key is new except at REPEAT_SHARE of the positions (chosen at random, exactly that
    many), which repeat one of the RECENT most recent distinct keys. A window of
    DEDUP_MAX_KEYS >= RECENT keys with a TTL longer than the round therefore reports exactly
    the repeats as duplicates, in both implementations.
    """

    #: the keys as bytes (13 B each)
    keys: list[bytes]
    #: the same stream as uint64 ids (distinct key k -> (k + 1) * ID_MULTIPLIER mod 2^64)
    ids: npt.NDArray[np.uint64]
    #: True where the key repeats an earlier one: what seen()/seen_many() must answer
    repeats: npt.NDArray[np.bool_]
    #: distinct keys in the stream
    distinct: int

    @property
    def duplicates(self) -> int:
        return int(self.repeats.sum())


def dedup_stream(n: int, seed: int = 4) -> DedupStream:
    import numpy as np

    rng = random.Random(seed)
    repeats = np.zeros(n, dtype=np.bool_)
    if n > 1:
        repeats[rng.sample(range(1, n), round((n - 1) * REPEAT_SHARE))] = True
    index = np.empty(n, dtype=np.int64)  # which distinct key each position holds
    distinct = 0
    for pos, repeat in enumerate(repeats.tolist()):
        if repeat:
            index[pos] = distinct - 1 - rng.randrange(min(RECENT, distinct))
        else:
            index[pos] = distinct
            distinct += 1
    names = [DEDUP_KEY_FORMAT % k for k in range(distinct)]
    ids = (np.arange(1, distinct + 1, dtype=np.uint64) * np.uint64(ID_MULTIPLIER))[index]
    return DedupStream(
        keys=[names[k] for k in index.tolist()], ids=ids, repeats=repeats, distinct=distinct
    )


def batches(keys: Any, size: int = DEDUP_BATCH) -> list[Any]:
    """keys (a list or a 1-D array) in consecutive slices of `size` (arrays: views)."""
    return [keys[k : k + size] for k in range(0, len(keys), size)]


# ---- hashing ----------------------------------------------------------------------------


class HashPeer(Implementation):
    """One way to hash or partition keys (stateless: classmethods only)."""

    caps: ClassVar[frozenset[str]] = frozenset()
    #: True: fast enough for the full array (hash_array_keys); False: hash_keys of it
    fast: ClassVar[bool] = False
    #: one line on how it is used, for the report and README
    note: ClassVar[str] = ""

    @classmethod
    def partition_list(cls, keys: list[bytes], partitions: int) -> Any:
        """Partition (0..partitions-1) of each key, in order."""
        raise NotImplementedError

    @classmethod
    def partition_array(cls, keys: npt.NDArray[np.uint64], partitions: int) -> Any:
        raise NotImplementedError

    @classmethod
    def hash_function(cls) -> Callable[[bytes], int]:
        """The one-key hash function itself (the timed loop binds it to a local)."""
        raise NotImplementedError


class FastqHash(HashPeer):
    name = "fastq"
    dist = "fastq-queue"
    caps = frozenset({"list", "array", "call"})
    fast = True
    note = "fastq.partition_many(keys, n) (modulo strategy); fastq.hash64(key)"

    @classmethod
    def partition_list(cls, keys: list[bytes], partitions: int) -> Any:
        return fastq.partition_many(keys, partitions)

    @classmethod
    def partition_array(cls, keys: npt.NDArray[np.uint64], partitions: int) -> Any:
        return fastq.partition_many(keys, partitions)

    @classmethod
    def hash_function(cls) -> Callable[[bytes], int]:
        return fastq.hash64


class XxhashLoop(HashPeer):
    name = "xxhash loop"
    dist = "xxhash"
    module = "xxhash"
    caps = frozenset({"list", "array"})
    note = (
        "[xxh3_64_intdigest(k) % n for k in keys]; uint64 arrays: "
        "[xxh3_64_intdigest(k.to_bytes(8, 'little')) % n for k in arr.tolist()]"
    )

    @classmethod
    def partition_list(cls, keys: list[bytes], partitions: int) -> Any:
        h = _xxhash().xxh3_64_intdigest
        return [h(k) % partitions for k in keys]

    @classmethod
    def partition_array(cls, keys: npt.NDArray[np.uint64], partitions: int) -> Any:
        # tolist() (C) then int.to_bytes: the fastest way from the array's elements to the
        # bytes fastq hashes (iterating the array itself makes a numpy scalar per element)
        h = _xxhash().xxh3_64_intdigest
        return [h(k.to_bytes(8, "little")) % partitions for k in keys.tolist()]


class XxhashCall(HashPeer):
    name = "xxhash"
    dist = "xxhash"
    module = "xxhash"
    caps = frozenset({"call"})
    note = "xxhash.xxh3_64_intdigest(key), one call per key"

    @classmethod
    def hash_function(cls) -> Callable[[bytes], int]:
        h: Callable[[bytes], int] = _xxhash().xxh3_64_intdigest
        return h


#: every hashing implementation, fastq first
HASH_REGISTRY: dict[str, type[HashPeer]] = {
    cls.name: cls for cls in (FastqHash, XxhashLoop, XxhashCall)
}


def hash_supporting(*caps: str) -> list[str]:
    """Names of the hashing implementations with every capability in caps."""
    return [name for name, cls in HASH_REGISTRY.items() if set(caps) <= cls.caps]


# ---- dedup windows ----------------------------------------------------------------------


class DedupPeer(Implementation):
    """One fresh dedup window of one implementation, for one benchmark round."""

    caps: ClassVar[frozenset[str]] = frozenset()
    note: ClassVar[str] = ""

    #: check-and-insert: False the first time a key is seen within the window, True after
    seen: Callable[[Any], bool]

    def __init__(self, ttl: float, max_keys: int) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self._open()

    def _open(self) -> None:
        raise NotImplementedError

    def seen_many(self, keys: Any) -> Sequence[bool] | npt.NDArray[np.bool_]:
        """seen() of each key, in order."""
        raise NotImplementedError

    def size(self) -> int:
        """Keys remembered now (the round's check)."""
        raise NotImplementedError


class FastqDedup(DedupPeer):
    name = "fastq"
    dist = "fastq-queue"
    caps = frozenset({"seen", "many"})
    note = "fastq.DedupWindow(ttl, max_keys): seen(key); seen_many(batch of bytes)"

    def _open(self) -> None:
        self.window = fastq.DedupWindow(self.ttl, self.max_keys)
        self.seen = self.window.seen
        self.seen_many = self.window.seen_many  # type: ignore[method-assign]

    def size(self) -> int:
        return len(self.window)


class FastqDedupArray(FastqDedup):
    name = "fastq uint64"
    caps = frozenset({"many-array"})
    note = "fastq.DedupWindow(ttl, max_keys).seen_many(slice of a uint64 array)"


class DictDequeWindow(DedupPeer):
    """The window users write in pure Python, with DedupWindow's semantics.

    A dict key -> expiry time and a deque of (key, expiry) in insertion order. On every key
    (``seen``) or batch (``seen_many``, which reads the clock once per batch exactly as
    DedupWindow.seen_many does): read time.monotonic(); drop keys from the front while their
    expiry <= now; a key still in the dict is a duplicate (its expiry is not extended);
    otherwise, when the window is full, evict the oldest key, then remember this one until
    now + ttl.
    """

    name = "dict+deque"
    caps = frozenset({"seen", "many"})
    note = (
        "dict key -> expiry + deque of (key, expiry); expire from the front, evict the "
        "oldest when full; time.monotonic() per key, per batch in seen_many (as fastq)"
    )

    def _open(self) -> None:
        self._expiry: dict[Any, float] = {}
        self._order: collections.deque[tuple[Any, float]] = collections.deque()
        self._clock: Callable[[], float] = time.monotonic
        self.seen = self._seen

    def _seen(self, key: Any) -> bool:
        expiry = self._expiry
        order = self._order
        now = self._clock()
        while order and order[0][1] <= now:
            del expiry[order.popleft()[0]]
        if key in expiry:
            return True
        if len(expiry) >= self.max_keys:
            del expiry[order.popleft()[0]]
        until = now + self.ttl
        expiry[key] = until
        order.append((key, until))
        return False

    def seen_many(self, keys: Any) -> list[bool]:
        # _seen's body inlined (no method call per key), with its lookups bound once per batch
        expiry = self._expiry
        order = self._order
        popleft = order.popleft
        push = order.append
        clock = self._clock
        ttl = self.ttl
        max_keys = self.max_keys
        out: list[bool] = []
        answer = out.append
        now = clock()  # one reading per batch, as DedupWindow.seen_many does
        while order and order[0][1] <= now:
            del expiry[popleft()[0]]
        for key in keys:
            if key in expiry:
                answer(True)
                continue
            if len(expiry) >= max_keys:
                del expiry[popleft()[0]]
            until = now + ttl
            expiry[key] = until
            push((key, until))
            answer(False)
        return out

    def size(self) -> int:
        return len(self._expiry)


#: every dedup window, fastq first
DEDUP_REGISTRY: dict[str, type[DedupPeer]] = {
    cls.name: cls for cls in (FastqDedup, FastqDedupArray, DictDequeWindow)
}


def dedup_supporting(*caps: str) -> list[str]:
    """Names of the dedup windows with every capability in caps."""
    return [name for name, cls in DEDUP_REGISTRY.items() if set(caps) <= cls.caps]


# ---- checks and round helpers (shared by bench_hash.py and bench_dedup.py) ---------------


def hash_info(peer: type[Implementation], key_bytes: int, keys: int) -> dict[str, Any]:
    """extra_info for a hashing/dedup benchmark: what report.py's hashing table is built from."""
    return {"table": "hash", "key_bytes": key_bytes, "bytes": key_bytes * keys, "dist": peer.dist}


def check_partitions(got: Any, expected: npt.NDArray[Any], partitions: int, what: str) -> None:
    """The round's result: one partition per key, each the expected one."""
    import numpy as np

    result = np.asarray(got)
    if result.shape != expected.shape:
        raise AssertionError(f"{what}: {result.size} partitions returned for {expected.size} keys")
    wrong = int(np.count_nonzero(result != expected))
    if wrong:
        counts = np.bincount(np.clip(result, 0, partitions), minlength=partitions + 1)
        raise AssertionError(
            f"{what}: {wrong} of {expected.size} keys in the wrong partition (per-partition "
            f"counts {counts.tolist()}, expected "
            f"{np.bincount(expected, minlength=partitions).tolist()})"
        )


def check_duplicates(got: Sequence[Any], stream: DedupStream, what: str) -> None:
    """The round's answers (a list of per-batch results, or one list): exactly the stream's
    repeats are duplicates."""
    import numpy as np

    parts = [np.asarray(part, dtype=np.bool_) for part in got]
    answers = np.concatenate(parts) if parts else np.zeros(0, dtype=np.bool_)
    if answers.shape != stream.repeats.shape:
        raise AssertionError(f"{what}: {answers.size} answers for {stream.repeats.size} keys")
    found = int(answers.sum())
    if found != stream.duplicates:
        raise AssertionError(
            f"{what}: {found} duplicates reported, the stream has {stream.duplicates}"
        )
    wrong = int(np.count_nonzero(answers != stream.repeats))
    if wrong:
        raise AssertionError(f"{what}: {wrong} keys answered wrongly (the count matched)")


def check_window(peer: DedupPeer, stream: DedupStream, what: str) -> None:
    """The window remembers every distinct key, up to max_keys (nothing expired)."""
    expected = min(stream.distinct, peer.max_keys)
    if peer.size() != expected:
        raise AssertionError(f"{what}: the window holds {peer.size()} keys, expected {expected}")
