"""Sequencer / GapDetector (unit): per-producer sequence numbers and consumer-side gap detection.

- Sequencer stamps fastq-producer / fastq-seq headers from ``start``, keeps other headers and
  the payload, wraps plain payloads, and is safe to share between threads;
- GapDetector: in-order release, duplicates counted and dropped, the first message of a
  producer sets its start, producers are independent, unsequenced messages pass through;
- reorder_buffer=0 reports a gap at once; >0 holds out-of-order messages and releases them in
  order when the hole fills, or declares the gap on overflow or after gap_timeout (FakeClock,
  via feed and expire); held() counts what waits;
- a random permutation with drops, checked against a simple oracle (seeded ``rng``);
- bad arguments.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import fastq
from fastq import FakeClock, Gap, GapDetector, Message, Sequencer

P, S = "fastq-producer", "fastq-seq"


def seqs(msgs: list[Message]) -> list[int]:
    return [int(m.headers[S]) for m in msgs]


def stamped(producer: str, n: int, start: int = 0) -> list[Message]:
    s = Sequencer(producer, start=start)
    return [s.stamp(Message(i)) for i in range(n)]


# ---- Sequencer --------------------------------------------------------------------------------


def test_sequencer_stamps_consecutive_numbers_and_keeps_the_message() -> None:
    s = Sequencer("p1", start=5)
    m = Message(b"x", key="k", headers={"a": "b"}, type="t")
    out = [s.stamp(m) for _ in range(3)]
    assert [o.headers[S] for o in out] == ["5", "6", "7"]
    assert all(o.headers[P] == "p1" for o in out)
    assert all(o.headers["a"] == "b" for o in out)
    assert all((o.payload, o.key, o.type) == (b"x", "k", "t") for o in out)
    assert S not in m.headers  # the original is untouched
    assert s.producer_id == "p1"


def test_sequencer_wraps_plain_payloads_and_default_start_is_zero() -> None:
    s = Sequencer("p")
    m = s.stamp(b"raw")
    assert isinstance(m, Message)
    assert m.payload == b"raw"
    assert m.headers[S] == "0"


def test_sequencer_is_thread_safe() -> None:
    s = Sequencer("p")
    results: list[list[int]] = [[] for _ in range(4)]
    go = threading.Event()

    def work(out: list[int]) -> None:
        go.wait()
        for i in range(500):
            out.append(int(s.stamp(Message(i)).headers[S]))

    ts = [threading.Thread(target=work, args=(r,)) for r in results]
    for t in ts:
        t.start()
    go.set()
    for t in ts:
        t.join(10)
    allseq = sorted(x for r in results for x in r)
    assert allseq == list(range(2000))  # no number twice, none skipped
    for r in results:
        assert r == sorted(r)


@pytest.mark.parametrize("bad", ["", None, 3])
def test_sequencer_bad_producer(bad: Any) -> None:
    with pytest.raises(TypeError):
        Sequencer(bad)


@pytest.mark.parametrize("bad", [-1, True, 1.5, "0"])
def test_sequencer_bad_start(bad: Any) -> None:
    with pytest.raises(ValueError, match="start must be"):
        Sequencer("p", start=bad)


# ---- GapDetector: in order, duplicates, pass-through -----------------------------------------


def test_in_order_released_at_once() -> None:
    d = GapDetector()
    msgs = stamped("p", 10)
    for m in msgs:
        assert d.feed(m) == [m]
    assert d.gaps == []
    assert d.duplicates == 0
    assert d.held() == 0


def test_first_message_sets_the_start() -> None:
    d = GapDetector()
    msgs = stamped("p", 5, start=100)
    out = [x for m in msgs[2:] for x in d.feed(m)]
    assert seqs(out) == [102, 103, 104]
    assert d.gaps == []
    # earlier numbers arriving afterwards are below the start: duplicates (dropped)
    assert d.feed(msgs[0]) == []
    assert d.duplicates == 1


def test_duplicates_are_dropped_and_counted() -> None:
    d = GapDetector()
    msgs = stamped("p", 3)
    assert d.feed(msgs[0]) == [msgs[0]]
    assert d.feed(msgs[0]) == []
    assert d.feed(msgs[1]) == [msgs[1]]
    assert d.feed(msgs[0]) == []
    assert d.feed(msgs[1]) == []
    assert d.feed(msgs[2]) == [msgs[2]]
    assert d.duplicates == 3
    assert d.gaps == []


def test_duplicate_of_a_held_message_is_dropped() -> None:
    d = GapDetector(reorder_buffer=4)
    msgs = stamped("p", 4)
    d.feed(msgs[0])
    assert d.feed(msgs[2]) == []
    assert d.feed(msgs[2]) == []
    assert d.duplicates == 1
    assert d.held() == 1
    assert d.feed(msgs[1]) == [msgs[1], msgs[2]]
    assert d.held() == 0


def test_unsequenced_messages_pass_through() -> None:
    d = GapDetector(reorder_buffer=3)
    plain = Message(b"x")
    only_producer = Message(b"y", headers={P: "p"})
    only_seq = Message(b"z", headers={S: "4"})
    for m in (plain, only_producer, only_seq, plain):
        assert d.feed(m) == [m]
    assert d.gaps == []
    assert d.duplicates == 0
    assert d.held() == 0


def test_producers_are_independent() -> None:
    d = GapDetector()
    a = stamped("a", 3)
    b = stamped("b", 3, start=50)
    out = []
    for x, y in zip(a, b, strict=True):
        out += d.feed(x)
        out += d.feed(y)
    assert out == [a[0], b[0], a[1], b[1], a[2], b[2]]
    assert d.gaps == []


def test_non_int_sequence_header_raises() -> None:
    d = GapDetector()
    with pytest.raises(ValueError, match="fastq-seq"):
        d.feed(Message(b"x", headers={P: "p", S: "seven"}))


# ---- gaps -------------------------------------------------------------------------------------


def test_no_reorder_buffer_reports_gap_at_once() -> None:
    d = GapDetector()
    msgs = stamped("p", 10)
    assert d.feed(msgs[0]) == [msgs[0]]
    assert d.feed(msgs[4]) == [msgs[4]]
    assert d.gaps == [Gap("p", 1, 3)]
    assert d.feed(msgs[5]) == [msgs[5]]
    # a late one after its gap was declared is not released again
    assert d.feed(msgs[2]) == []
    assert d.gaps == [Gap("p", 1, 3)]
    g = d.gaps[0]
    assert (g.producer, g.first, g.last) == ("p", 1, 3)


def test_reorder_buffer_waits_and_releases_in_order() -> None:
    d = GapDetector(reorder_buffer=3)
    msgs = stamped("p", 5)
    assert d.feed(msgs[0]) == [msgs[0]]
    assert d.feed(msgs[3]) == []
    assert d.feed(msgs[2]) == []
    assert d.held() == 2
    assert d.feed(msgs[1]) == [msgs[1], msgs[2], msgs[3]]
    assert d.feed(msgs[4]) == [msgs[4]]
    assert d.gaps == []
    assert d.held() == 0


def test_reorder_buffer_overflow_declares_the_gap() -> None:
    d = GapDetector(reorder_buffer=2)
    msgs = stamped("p", 8)
    d.feed(msgs[0])
    assert d.feed(msgs[3]) == []
    assert d.feed(msgs[4]) == []
    assert d.held() == 2
    # a third held message overflows: 1..2 are given up, 3, 4, 5 come out in order
    assert seqs(d.feed(msgs[5])) == [3, 4, 5]
    assert d.gaps == [Gap("p", 1, 2)]
    assert d.held() == 0
    assert d.feed(msgs[1]) == []  # too late now
    assert d.duplicates == 1


def test_overflow_skips_only_to_the_lowest_held() -> None:
    d = GapDetector(reorder_buffer=2)
    msgs = stamped("p", 10)
    d.feed(msgs[0])
    d.feed(msgs[2])
    d.feed(msgs[5])
    out = d.feed(msgs[8])  # overflow: gap 1..1, release 2; 5 and 8 still wait
    assert seqs(out) == [2]
    assert d.gaps == [Gap("p", 1, 1)]
    assert d.held() == 2
    assert seqs(d.feed(msgs[3]) + d.feed(msgs[4])) == [3, 4, 5]
    assert d.held() == 1


def test_gap_timeout_on_fake_clock_via_expire() -> None:
    clock = FakeClock(10.0)
    d = GapDetector(reorder_buffer=10, gap_timeout=2.0, clock=clock)
    msgs = stamped("p", 6)
    d.feed(msgs[0])
    assert d.feed(msgs[2]) == []
    clock.advance(1.0)
    assert d.feed(msgs[4]) == []
    assert d.expire() == []
    clock.advance(0.5)
    assert d.expire() == []
    assert d.gaps == []
    clock.advance(0.5)  # msgs[2] waited exactly 2.0 s: gap 1..1 declared, 2 released
    assert seqs(d.expire()) == [2]
    assert d.gaps == [Gap("p", 1, 1)]
    assert d.held() == 1
    clock.advance(1.0)  # msgs[4] waited 2.0 s now
    assert seqs(d.expire()) == [4]
    assert d.gaps == [Gap("p", 1, 1), Gap("p", 3, 3)]
    assert d.held() == 0
    assert seqs(d.feed(msgs[5])) == [5]


def test_gap_timeout_checked_by_feed() -> None:
    clock = FakeClock()
    d = GapDetector(reorder_buffer=10, gap_timeout=1.0, clock=clock)
    a = stamped("a", 3)
    b = stamped("b", 2)
    d.feed(a[0])
    d.feed(a[2])
    clock.advance(5.0)
    out = d.feed(b[0])  # another producer's feed also expires a's wait
    assert out == [b[0], a[2]]
    assert d.gaps == [Gap("a", 1, 1)]


def test_no_timeout_means_wait_forever() -> None:
    clock = FakeClock()
    d = GapDetector(reorder_buffer=5, clock=clock)
    msgs = stamped("p", 3)
    d.feed(msgs[0])
    d.feed(msgs[2])
    clock.advance(1e6)
    assert d.expire() == []
    assert d.held() == 1
    assert d.gaps == []


def test_random_permutation_with_drops_against_oracle(rng: Any) -> None:
    """Shuffled within a window smaller than the buffer and with drops: every delivered number
    is released once, in increasing order, and the gaps are exactly the dropped numbers."""
    n, window = 300, 4
    msgs = stamped("p", n)
    dropped = {i for i in range(1, n - 1) if rng.random() < 0.1}
    kept = [m for i, m in enumerate(msgs) if i not in dropped]
    arrival: list[Message] = []
    for i in range(0, len(kept), window):
        chunk = kept[i : i + window]
        rng.shuffle(chunk)
        arrival += chunk
    # the first arrival sets the start: make it number 0
    arrival.remove(msgs[0])
    arrival.insert(0, msgs[0])
    clock = FakeClock()
    d = GapDetector(reorder_buffer=2 * window, gap_timeout=1.0, clock=clock)
    out: list[Message] = []
    for m in arrival:
        out += d.feed(m)
        clock.advance(0.01)
    clock.advance(10.0)
    out += d.expire()
    got = seqs(out)
    assert got == sorted(got), rng
    assert sorted(got) == sorted(i for i in range(n) if i not in dropped), rng
    declared = {x for g in d.gaps for x in range(g.first, g.last + 1)}
    assert declared == dropped, rng
    assert d.duplicates == 0
    assert d.held() == 0


# ---- bad arguments ----------------------------------------------------------------------------


def test_bad_arguments() -> None:
    with pytest.raises(TypeError):
        GapDetector(reorder_buffer=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        GapDetector(reorder_buffer=True)
    with pytest.raises(ValueError, match="reorder_buffer"):
        GapDetector(reorder_buffer=-1)
    with pytest.raises(ValueError, match="gap_timeout"):
        GapDetector(gap_timeout=-0.5)
    with pytest.raises(ValueError, match="gap_timeout"):
        GapDetector(gap_timeout=float("nan"))
    with pytest.raises(ValueError, match="gap_timeout"):
        GapDetector(gap_timeout="1")  # type: ignore[arg-type]
    assert isinstance(fastq.Gap("p", 1, 2), Gap)
