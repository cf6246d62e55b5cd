"""Dedup of idempotency keys: fastq.DedupWindow against the dict + deque window users write in
pure Python, with the same semantics (hash_peers.DictDequeWindow).

The stream: --bench-dedup-keys (1,000,000) keys of 13 B (b"req-000000042"); 10% of the
positions (exactly, chosen at random) repeat one of the 50,000 most recent distinct keys, the
rest are new. Each round checks the whole stream against a fresh window with ttl=300 s and
max_keys=100,000 (setup, untimed), so every repeat is still in the window: both
implementations must report exactly the stream's repeats as duplicates.

dedup-many     seen_many on consecutive batches of 1,000 keys
    fastq          window.seen_many(batch)             (batch: a list of bytes)
    fastq uint64   window.seen_many(batch)             (batch: a slice of a uint64 array; the
                                                         same stream as ids; for information)
    dict+deque     the same loop as seen, inline, one time.monotonic() per key; returns a list
dedup-seen     one key per call: [seen(key) for key in keys]
    fastq          seen = window.seen
    dict+deque     seen = window.seen (a Python method)

Checks (teardown, untimed): the number of duplicates reported equals the number of repeats in
the stream, every answer matches the stream's (False for a new key, True for a repeat), and the
window holds min(distinct keys, max_keys) keys.
"""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from harness import Settings, measure
from hash_peers import (
    DEDUP_BATCH,
    DEDUP_KEY_FORMAT,
    DEDUP_MAX_KEYS,
    DEDUP_TTL,
    ROUNDS_FACTOR,
    DedupPeer,
    DedupStream,
    FastqDedupArray,
    batches,
    check_duplicates,
    check_window,
    dedup_stream,
    dedup_supporting,
    hash_info,
)

HAVE_NUMPY = importlib.util.find_spec("numpy") is not None
pytestmark = pytest.mark.skipif(not HAVE_NUMPY, reason="numpy is not installed")

#: bytes per key: b"req-000000042"
KEY_BYTES = len(DEDUP_KEY_FORMAT % 0)


@pytest.fixture(scope="module")
def stream(settings: Settings) -> Iterator[DedupStream]:
    """Made once per module; dropped at its end (10^6 bytes objects slow every GC pass)."""
    data = dedup_stream(settings.dedup_keys)
    try:
        yield data
    finally:
        del data
        gc.collect()


def _window_info(window_type: type[DedupPeer], key_bytes: int, n: int) -> dict[str, Any]:
    return {
        **hash_info(window_type, key_bytes, n),
        "ttl": DEDUP_TTL,
        "max_keys": DEDUP_MAX_KEYS,
    }


@pytest.mark.parametrize("window", [*dedup_supporting("many"), FastqDedupArray.name])
def test_dedup_many(
    benchmark: Any,
    settings: Settings,
    window_type: type[DedupPeer],
    window: str,
    stream: DedupStream,
) -> None:
    array = "many-array" in window_type.caps
    chunks = batches(stream.ids if array else stream.keys)

    def run(peer: DedupPeer, out: list[Any]) -> None:
        seen_many = peer.seen_many
        answer = out.append
        for chunk in chunks:
            answer(seen_many(chunk))

    _measure_window(
        benchmark,
        settings,
        window_type,
        window,
        stream,
        "dedup-many",
        run,
        {
            **_window_info(window_type, 8 if array else KEY_BYTES, len(stream.repeats)),
            "batch": DEDUP_BATCH,
        },
    )


def _measure_window(
    benchmark: Any,
    settings: Settings,
    window_type: type[DedupPeer],
    window: str,
    stream: DedupStream,
    scenario: str,
    run: Callable[[DedupPeer, list[Any]], None],
    extra_info: dict[str, Any],
) -> None:
    """Time run(fresh window, answers) per round; check every answer and the window after it."""
    what = f"{scenario}/{window}"

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (window_type(DEDUP_TTL, DEDUP_MAX_KEYS), []), {}

    def teardown(peer: DedupPeer, out: list[Any]) -> None:
        check_duplicates(out, stream, what)
        check_window(peer, stream, what)

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=window,
        items=len(stream.repeats),
        target=run,
        setup=setup,
        teardown=teardown,
        rounds=settings.rounds * ROUNDS_FACTOR,
        extra_info=extra_info,
    )


@pytest.mark.parametrize("window", dedup_supporting("seen"))
def test_dedup_seen(
    benchmark: Any,
    settings: Settings,
    window_type: type[DedupPeer],
    window: str,
    stream: DedupStream,
) -> None:
    keys = stream.keys

    def run(peer: DedupPeer, out: list[Any]) -> None:
        seen = peer.seen
        out.append([seen(key) for key in keys])

    _measure_window(
        benchmark,
        settings,
        window_type,
        window,
        stream,
        "dedup-seen",
        run,
        _window_info(window_type, KEY_BYTES, len(keys)),
    )
