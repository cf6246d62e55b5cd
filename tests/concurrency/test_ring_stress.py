"""R7: RingBuffer delivery under thread contention (no loss, no duplicate, per-producer FIFO).

Every configuration crosses the 63-bit position wrap (the private ``_ring_at`` hook starts the
positions just below 2**63). Consumers stop on ``fastq.Closed`` (or ``StopIteration`` from
iteration) once the producers are done and the main thread has closed the ring. Sizes scale
with FASTQ_STRESS_SCALE; FASTQ_SEED (printed in the report header) replays the random choices
of a failed run (not its thread interleaving).
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import threading
import time

import pytest
from checker import Crew, DeliveryChecker, Item, gil_enabled, ring_at

import fastq

pytestmark = pytest.mark.stress

WRAP = 2**63
# a safety net for hangs, scaled with the work: healthy runs take well under a second or two
# at scale 1 (the 3.13t soak at scale 10 moved 10M items through 4P4C in ~150 s)
JOIN_TIMEOUT = 120.0 * max(1.0, float(os.environ.get("FASTQ_STRESS_SCALE", "1")))
TOPOLOGIES: dict[str, tuple[int, int]] = {"spsc": (1, 1), "2p2c": (2, 2), "4p4c": (4, 4)}
MODES = ("single", "batch", "mixed")
CAPACITIES = (1, 2, 64, 1024)
# items per configuration at FASTQ_STRESS_SCALE=1 (tiny rings hand over about one item per
# wake-up, so they get fewer). Measured on 2 cores: the whole file takes ~15 s on 3.11 and
# ~25 s on 3.13t; FASTQ_STRESS_SCALE=10 is a soak run.
ITEMS_SMALL_RING = 40_000
ITEMS_LARGE_RING = 200_000
HEADLINE_ITEMS = 1_000_000
SHORT = 0.0005  # timeout (s) used by the timed variants in "mixed" mode
CLOSE_RACE_EXTRA = 2000  # items a close-race producer puts at most beyond the close signal


def _batch_size(r: random.Random) -> int:
    return r.randint(1, r.choice((4, 32, 200)))


# ---- producers: put (pid, seq) for seq in 0..count-1, recording acknowledgements ----------


def _produce(
    ring: fastq.RingBuffer[Item],
    pid: int,
    count: int,
    mode: str,
    r: random.Random,
    acked: list[int],
    start: threading.Barrier,
) -> None:
    start.wait()
    s = 0
    if mode == "single":
        put = ring.put
        while s < count:
            put((pid, s))
            s += 1
            acked[pid] = s
        return
    while s < count:
        op = r.randrange(7) if mode == "mixed" else 4
        if op == 0:
            ring.put((pid, s))
            s += 1
        elif op == 1:
            try:
                ring.put_nowait((pid, s))
            except fastq.Full:
                ring.put((pid, s))
            s += 1
        elif op == 2:
            while True:
                try:
                    ring.put((pid, s), timeout=SHORT)
                    break
                except fastq.Full:
                    continue
            s += 1
        else:
            k = min(_batch_size(r), count - s)
            batch = [(pid, x) for x in range(s, s + k)]
            if op == 3:  # tuple, timed: returns the prefix that fit before the deadline
                n = ring.put_many(tuple(batch), timeout=SHORT)
            elif op == 4:  # list, blocking: puts all of them
                n = ring.put_many(batch)
            elif op == 5:  # generator, non-blocking: puts what fits now
                n = ring.put_many(iter(batch), block=False)
            else:  # list, timed
                n = ring.put_many(batch, timeout=SHORT)
            assert 0 <= n <= k, f"put_many returned {n} for {k} items (op {op})"
            s += n
            acked[pid] = s
            # blocking put_many puts everything unless the ring is closed (a failed run)
            assert n == k or op != 4, f"blocking put_many returned {n} for {k} items"
            continue
        acked[pid] = s


# ---- consumers: take until Closed (or StopIteration), appending to their own sink ---------


def _consume(
    ring: fastq.RingBuffer[Item],
    sink: list[Item],
    mode: str,
    r: random.Random,
    start: threading.Barrier,
) -> None:
    start.wait()
    append = sink.append
    try:
        if mode == "single":
            get = ring.get
            while True:
                append(get())
        elif mode == "batch":
            while True:
                sink.extend(ring.get_many(_batch_size(r)))
        else:
            while True:
                op = r.randrange(7)
                if op == 0:
                    append(ring.get())
                elif op == 1:
                    try:
                        append(ring.get_nowait())
                    except fastq.Empty:
                        append(ring.get())
                elif op == 2:
                    with contextlib.suppress(fastq.Empty):
                        append(ring.get(timeout=SHORT))
                elif op == 3:
                    sink.extend(ring.get_many(_batch_size(r)))
                elif op == 4:
                    with contextlib.suppress(fastq.Empty):
                        sink.extend(ring.get_many(_batch_size(r), timeout=SHORT))
                elif op == 5:
                    try:
                        sink.extend(ring.get_many(_batch_size(r), block=False))
                    except fastq.Empty:
                        append(ring.get())
                else:
                    append(next(ring))
    except (fastq.Closed, StopIteration):
        return


def _run(
    ring: fastq.RingBuffer[Item],
    producers: int,
    consumers: int,
    per_producer: int,
    mode: str,
    rng: random.Random,
    context: str,
) -> tuple[DeliveryChecker, float]:
    """Run producers and consumers to completion; return the checker and the elapsed time."""
    checker = DeliveryChecker(producers, consumers, context=f"{context} rng={rng!r}")
    acked = [0] * producers
    start = threading.Barrier(producers + consumers + 1)
    crew = Crew(on_error=ring.close)
    prods = [
        crew.spawn(
            f"producer-{p}",
            _produce,
            ring,
            p,
            per_producer,
            mode,
            random.Random(rng.getrandbits(64)),
            acked,
            start,
        )
        for p in range(producers)
    ]
    cons = [
        crew.spawn(
            f"consumer-{c}",
            _consume,
            ring,
            checker.sink(c),
            mode,
            random.Random(rng.getrandbits(64)),
            start,
        )
        for c in range(consumers)
    ]
    # The run keeps every delivered (producer, seq) tuple alive for the checker. 3.13t's GC is
    # not generational: with millions of live tuples each collection rescans all of them, and
    # a x10 soak then spends its time in the GC, not the ring. Nothing here makes cycles.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start.wait()
        t0 = time.perf_counter()
        hung = crew.join(JOIN_TIMEOUT, prods)
        ring.close()
        hung += crew.join(JOIN_TIMEOUT, cons)
        elapsed = time.perf_counter() - t0
    finally:
        if gc_was_enabled:
            gc.enable()
    for p in range(producers):
        checker.expect_range(p, acked[p])
    report = checker.verify(total_fifo=producers == consumers == 1)
    assert not hung, f"threads still running after {JOIN_TIMEOUT}s: {hung}\n{report}"
    assert not crew.errors, f"worker errors: {crew.describe_errors()}\n{report}"
    assert acked == [per_producer] * producers, f"acked {acked}\n{report}"
    assert report.ok, str(report)
    assert len(ring) == 0, f"ring not drained: {ring!r}"
    return checker, elapsed


@pytest.mark.parametrize("capacity", CAPACITIES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_delivery(
    topology: str, mode: str, capacity: int, rng: random.Random, stress_scale: float
) -> None:
    producers, consumers = TOPOLOGIES[topology]
    base = ITEMS_SMALL_RING if capacity <= 2 else ITEMS_LARGE_RING
    per_producer = max(1, int(base * stress_scale) // producers)
    total = per_producer * producers
    start = WRAP - total // 2  # the run crosses the 63-bit wrap half-way
    ring: fastq.RingBuffer[Item] = ring_at(capacity, start)
    assert ring.capacity == capacity
    checker, _ = _run(
        ring,
        producers,
        consumers,
        per_producer,
        mode,
        rng,
        f"{topology} {mode} capacity={capacity} start=2**63-{total // 2}",
    )
    assert checker.delivered == total


def test_headline_4p4c_million(rng: random.Random, stress_scale: float) -> None:
    """4 producers x 4 consumers, >= 1,000,000 (producer, seq) items across the 63-bit wrap."""
    per_producer = int(max(HEADLINE_ITEMS, HEADLINE_ITEMS * stress_scale)) // 4
    ring: fastq.RingBuffer[Item] = ring_at(1024, WRAP - 500_000)
    checker, elapsed = _run(
        ring, 4, 4, per_producer, "single", rng, "headline 4P4C capacity=1024 start=2**63-500000"
    )
    assert checker.delivered == 4 * per_producer >= HEADLINE_ITEMS
    # every consumer took part (a consumer starved for the whole run would hide races)
    assert all(n > 0 for n in map(len, checker.received)), checker.verify()
    print(
        f"headline: {checker.delivered} items in {elapsed:.2f}s "
        f"({checker.delivered / elapsed / 1e6:.2f} M items/s), GIL enabled: {gil_enabled()}"
    )


# ---- close() racing producers and consumers -----------------------------------------------


def _produce_until_closed(
    ring: fastq.RingBuffer[Item],
    pid: int,
    r: random.Random,
    acked: list[int],
    progress: threading.Event,
    signal_after: int,
    start: threading.Barrier,
    interrupted: list[bool],
) -> None:
    """Put until Closed (or a cap: the main thread may be slow to get a core); acked[pid] is
    the length of the acknowledged prefix of seqs; interrupted[pid] whether Closed stopped it."""
    start.wait()
    s = 0
    if signal_after == 0:
        progress.set()
    try:
        while s < signal_after + CLOSE_RACE_EXTRA:
            op = r.randrange(4)
            if op == 0:
                ring.put((pid, s))
                s += 1
            elif op == 1:
                try:
                    ring.put((pid, s), timeout=SHORT)
                    s += 1
                except fastq.Full:
                    pass
            else:
                k = _batch_size(r)
                batch = [(pid, x) for x in range(s, s + k)]
                # a close part-way returns the prefix put so far; the next call raises Closed
                n = ring.put_many(batch if op == 2 else tuple(batch))
                assert 0 <= n <= k, f"put_many returned {n} for {k} items"
                s += n
            acked[pid] = s
            if s >= signal_after:
                progress.set()
    except fastq.Closed:
        interrupted[pid] = True
    finally:
        progress.set()


def test_close_races_mid_flight(rng: random.Random, stress_scale: float) -> None:
    """close() while producers and consumers run: an acknowledged put is delivered exactly
    once, a put that raised Closed is never delivered, everybody stops."""
    iterations = max(1, int(200 * stress_scale))
    closed_with_items = 0  # iterations where close() found items still queued
    put_interrupted = 0  # iterations where close() stopped a producer (put raised Closed)
    for it in range(iterations):
        capacity = rng.choice((1, 2, 4, 8))
        producers, consumers = rng.randint(1, 3), rng.randint(1, 3)
        near_wrap = rng.random() < 0.5
        start_pos = WRAP - rng.randint(0, 64) if near_wrap else 0
        signal_after = rng.choice((0, 1, rng.randint(2, 64), rng.randint(64, 512)))
        ring: fastq.RingBuffer[Item] = (
            ring_at(capacity, start_pos) if near_wrap else fastq.RingBuffer(capacity)
        )
        context = (
            f"iteration {it}: capacity={capacity} {producers}P{consumers}C "
            f"start={start_pos} close after {signal_after} acked rng={rng!r}"
        )
        checker = DeliveryChecker(producers, consumers, context=context)
        acked = [0] * producers
        interrupted = [False] * producers
        progress = threading.Event()
        start = threading.Barrier(producers + consumers + 1)
        crew = Crew(on_error=ring.close)
        for p in range(producers):
            crew.spawn(
                f"producer-{p}",
                _produce_until_closed,
                ring,
                p,
                random.Random(rng.getrandbits(64)),
                acked,
                progress if p == 0 else threading.Event(),
                signal_after,
                start,
                interrupted,
            )
        for c in range(consumers):
            crew.spawn(
                f"consumer-{c}",
                _consume,
                ring,
                checker.sink(c),
                "mixed",
                random.Random(rng.getrandbits(64)),
                start,
            )
        start.wait()
        assert progress.wait(JOIN_TIMEOUT), f"producer 0 made no progress: {context}"
        closed_with_items += len(ring) > 0
        ring.close()
        hung = crew.join(JOIN_TIMEOUT)
        put_interrupted += any(interrupted)
        for p in range(producers):
            checker.expect_range(p, acked[p])
        report = checker.verify()
        assert not hung, f"still running after close(): {hung}\n{report}"
        assert not crew.errors, f"worker errors: {crew.describe_errors()}\n{report}"
        assert report.ok, str(report)
        assert ring.closed
        assert len(ring) == 0
        with pytest.raises(fastq.Closed):
            ring.put((0, -1))
        with pytest.raises(fastq.Closed):
            ring.get_nowait()
    print(
        f"close races: {iterations} iterations, close() found items queued in "
        f"{closed_with_items}, interrupted a producer in {put_interrupted}"
    )
    # the interesting cases must have happened (they do in most iterations)
    if iterations >= 20:
        assert closed_with_items >= iterations // 10, f"{closed_with_items}/{iterations}"
        assert put_interrupted >= iterations // 10, f"{put_interrupted}/{iterations}"


def test_checker_catches_loss_duplicate_reorder_and_phantom() -> None:
    """The oracle itself: a hand-made bad delivery is reported on every count."""
    checker = DeliveryChecker(2, 2, context="self-test")
    checker.expect_range(0, 5)
    checker.expect(1, [0, 2, 4])  # seqs 1 and 3 were refused (raised Closed)
    checker.sink(0).extend([(0, 0), (0, 2), (0, 1), (1, 0), (1, 3)])  # reorder; phantom (1, 3)
    checker.sink(1).extend([(0, 2), (1, 4), "torn"])  # duplicate (0, 2); malformed
    rep = checker.verify()
    assert not rep.ok
    assert (rep.lost, rep.duplicated, rep.reordered, rep.phantom, rep.malformed) == (3, 1, 1, 1, 1)
    assert rep.lost_examples == [(0, 3), (0, 4), (1, 2)]
    assert "lost=3" in str(rep)
    with pytest.raises(AssertionError, match="DELIVERY FAILURE"):
        checker.assert_ok()
    spsc = DeliveryChecker(1, 1, context="spsc self-test")
    spsc.expect_range(0, 3)
    spsc.sink(0).extend([(0, 0), (0, 2), (0, 1)])
    rep = spsc.verify(total_fifo=True)
    assert rep.total_fifo_break == 1
    assert rep.reordered == 1
    good = DeliveryChecker(1, 1)
    good.expect_range(0, 3)
    good.sink(0).extend([(0, 0), (0, 1), (0, 2)])
    assert good.assert_ok(total_fifo=True).ok
