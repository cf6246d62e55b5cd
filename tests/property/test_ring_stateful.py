"""RingBuffer against the deque model (tests/models.py), one thread, non-blocking operations.

Starts are drawn near the 63-bit position wrap too, so the laps cross it within a few steps.
Hypothesis prints the failing rule sequence; replay it with the printed @reproduce_failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from models import RingModel

from fastq import RingBuffer
from fastq._core import _ring_at  # type: ignore[attr-defined]  # private test hook

WRAP = 2**63
CAPACITIES = [1, 2, 3, 4, 8, 64]
STARTS = st.one_of(
    st.just(0), st.just(WRAP - 3), st.integers(WRAP - 200, WRAP - 1), st.integers(0, WRAP - 1)
)
ITERABLES: dict[str, Callable[[list[Any]], Iterable[Any]]] = {
    "list": list,
    "tuple": tuple,
    "generator": lambda xs: (x for x in xs),
}


class Token:
    """A unique payload: the ring must hand back this very object."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"T{self.n}"


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", value) or ("raise", exception type): comparable between ring and model."""
    try:
        return ("ok", call())
    except Exception as e:
        return ("raise", type(e))


def same_items(got: Any, want: Any) -> bool:
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(a is b for a, b in zip(got, want, strict=True))
        )
    return got is want


class RingMachine(RuleBasedStateMachine):
    ring: RingBuffer[Token]
    model: RingModel[Token]

    def __init__(self) -> None:
        super().__init__()
        self.counter = 0

    @initialize(capacity=st.sampled_from(CAPACITIES), start=STARTS)
    def create(self, capacity: int, start: int) -> None:
        self.ring = _ring_at(capacity, start)
        self.model = RingModel(capacity)

    def fresh(self, n: int) -> list[Token]:
        tokens = [Token(self.counter + i) for i in range(n)]
        self.counter += n
        return tokens

    def check(self, call: str, ring_call: Callable[[], Any], model_call: Callable[[], Any]) -> None:
        want = outcome(model_call)
        got = outcome(ring_call)
        assert got[0] == want[0], f"{call}: ring {got}, model {want}"
        if want[0] == "raise":
            assert got[1] is want[1], f"{call}: ring raised {got[1]}, model raised {want[1]}"
        else:
            assert same_items(got[1], want[1]), f"{call}: ring returned {got[1]}, model {want[1]}"

    @rule()
    def put_nowait(self) -> None:
        (token,) = self.fresh(1)
        self.check(
            f"put_nowait({token})",
            lambda: self.ring.put_nowait(token),
            lambda: self.model.put_nowait(token),
        )

    @rule(block=st.booleans())
    def put_nonblocking(self, block: bool) -> None:
        # block=False, or block=True with timeout=0: both try exactly once
        (token,) = self.fresh(1)
        kwargs: dict[str, Any] = {"timeout": 0} if block else {"block": False}
        ring_call = partial(self.ring.put, token, **kwargs)
        self.check(f"put({token}, {kwargs})", ring_call, lambda: self.model.put_nowait(token))

    @rule()
    def get_nowait(self) -> None:
        self.check("get_nowait()", self.ring.get_nowait, self.model.get_nowait)

    @rule(block=st.booleans())
    def get_nonblocking(self, block: bool) -> None:
        kwargs: dict[str, Any] = {"timeout": 0} if block else {"block": False}
        ring_call = partial(self.ring.get, **kwargs)
        self.check(f"get({kwargs})", ring_call, self.model.get_nowait)

    @rule(size=st.integers(1, 70), kind=st.sampled_from(sorted(ITERABLES)))
    def put_many(self, size: int, kind: str) -> None:
        batch = self.fresh(size)
        self.check(
            f"put_many({kind} of {size}, block=False)",
            lambda: self.ring.put_many(ITERABLES[kind](batch), block=False),
            lambda: self.model.put_many(batch),
        )

    @rule(max_items=st.integers(1, 70), block=st.booleans())
    def get_many(self, max_items: int, block: bool) -> None:
        kwargs: dict[str, Any] = {"timeout": 0} if block else {"block": False}
        self.check(
            f"get_many({max_items}, {kwargs})",
            partial(self.ring.get_many, max_items, **kwargs),
            partial(self.model.get_many, max_items),
        )

    @precondition(lambda self: not self.model.closed)
    @rule()
    def close(self) -> None:
        self.ring.close()
        self.model.close()

    @precondition(lambda self: self.model.closed)
    @rule()
    def close_again(self) -> None:
        self.ring.close()
        assert self.ring.closed

    @invariant()
    def observers_agree(self) -> None:
        if not hasattr(self, "ring"):
            return
        size = self.model.qsize()
        assert self.ring.qsize() == size
        assert len(self.ring) == size
        assert self.ring.empty() == self.model.empty()
        assert self.ring.full() == self.model.full()
        assert self.ring.closed == self.model.closed
        assert self.ring.capacity == self.model.capacity
        assert f"size={size}" in repr(self.ring)

    def teardown(self) -> None:
        # whatever is left comes out in model order, exactly once
        if not hasattr(self, "ring"):
            return
        self.ring.close()
        left = list(self.ring)
        assert same_items(left, list(self.model.items))


TestRingAgainstModel = RingMachine.TestCase
TestRingAgainstModel.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
