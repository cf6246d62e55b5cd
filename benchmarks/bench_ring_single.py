"""Single thread: put+get pairs of small objects (the per-call overhead of each queue).

Each round moves `--bench-items` items through a fresh, empty queue, one put then one get at
a time, so the queue never holds more than one item.

single-nowait   put_nowait(x); get_nowait()   (deque: append(x); popleft())
single-default  put(x); get()                 with default arguments (block=True, no timeout)
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import Settings, make_items, measure
from peers import Peer, supporting


def _setup(peer_type: type[Peer], settings: Settings) -> Any:
    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (peer_type(settings.capacity),), {}

    return setup


def _teardown(peer: Peer) -> None:
    if peer.qsize():
        raise AssertionError(f"{peer.name}: {peer.qsize()} items left after a round of pairs")
    peer.dispose()


def _bench_pairs(
    benchmark: Any,
    settings: Settings,
    peer_type: type[Peer],
    impl: str,
    *,
    scenario: str,
    put_name: str,
    get_name: str,
) -> None:
    items = make_items(settings.items)
    last = items[-1]

    def pairs(peer: Peer) -> None:
        put = getattr(peer, put_name)
        get = getattr(peer, get_name)
        x = None
        for item in items:
            put(item)
            x = get()
        if x != last:
            raise AssertionError(f"{impl}: last item {x!r}, expected {last!r}")

    measure(
        benchmark,
        settings,
        scenario=scenario,
        impl=impl,
        items=len(items),
        target=pairs,
        setup=_setup(peer_type, settings),
        teardown=_teardown,
    )


@pytest.mark.parametrize("impl", supporting("nowait"))
def test_single_nowait(
    benchmark: Any, settings: Settings, peer_type: type[Peer], impl: str
) -> None:
    _bench_pairs(
        benchmark,
        settings,
        peer_type,
        impl,
        scenario="single-nowait",
        put_name="put_nowait",
        get_name="get_nowait",
    )


@pytest.mark.parametrize("impl", supporting("block"))
def test_single_default(
    benchmark: Any, settings: Settings, peer_type: type[Peer], impl: str
) -> None:
    _bench_pairs(
        benchmark,
        settings,
        peer_type,
        impl,
        scenario="single-default",
        put_name="put",
        get_name="get",
    )
