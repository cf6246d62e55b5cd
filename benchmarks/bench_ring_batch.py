"""Single thread: move `--bench-batch-items` (1,000,000) items in batches of 1,000.

Each batch is put, then taken out again, before the next one:

fastq        ring.put_many(batch); ring.get_many(1000, block=False)
deque        dq.extend(batch); [dq.popleft() for _ in range(min(1000, len(dq)))]
SimpleQueue  no batch API: put_nowait per item, then get_nowait per item
faster-fifo  q.put_many(batch); q.get_many_nowait(max_messages_to_get=1000)

A get that returns fewer items than asked is repeated until the batch is out (faster-fifo's
get_many is capped by its read buffer), and the total taken is checked.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import Settings, check_count, chunked, make_items, measure
from peers import Peer, supporting


@pytest.mark.parametrize("impl", supporting("batch"))
def test_batch(benchmark: Any, settings: Settings, peer_type: type[Peer], impl: str) -> None:
    items = make_items(settings.batch_items)
    batches = chunked(items, settings.batch_size)
    size = settings.batch_size
    # The ring must hold one whole batch (put_many without room would wait forever here).
    capacity = max(settings.capacity, size)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (peer_type(capacity),), {}

    def transfer(peer: Peer) -> int:
        put_many = peer.put_many
        get_many = peer.get_many
        taken = 0
        for batch in batches:
            put_many(batch)
            want = len(batch)
            while want:
                got = len(get_many(size))
                if not got:
                    raise AssertionError(f"{impl}: get_many returned nothing mid-batch")
                want -= got
                taken += got
        return check_count(taken, len(items), impl)

    def teardown(peer: Peer) -> None:
        if peer.qsize():
            raise AssertionError(f"{impl}: {peer.qsize()} items left after the round")
        peer.dispose()

    measure(
        benchmark,
        settings,
        scenario="batch",
        impl=impl,
        items=len(items),
        target=transfer,
        setup=setup,
        teardown=teardown,
    )
