"""The fastq exception hierarchy: base classes, stdlib compatibility, messages, pickling."""

from __future__ import annotations

import asyncio
import pickle
import queue
from collections.abc import Callable

import pytest

import fastq
from fastq import Closed, Empty, FastqError, Full, RingBuffer

ALL_ERRORS = [Closed, Empty, Full]


@pytest.mark.parametrize("exc", ALL_ERRORS)
def test_every_error_derives_from_fastq_error(exc: type[Exception]) -> None:
    assert issubclass(exc, FastqError)
    assert issubclass(exc, Exception)
    assert not issubclass(exc, (ValueError, TypeError))  # usage errors stay distinct


def test_fastq_error_is_a_plain_exception() -> None:
    assert FastqError.__bases__ == (Exception,)


@pytest.mark.parametrize(
    ("exc", "stdlib_bases"),
    [
        (Full, (queue.Full, asyncio.QueueFull)),
        (Empty, (queue.Empty, asyncio.QueueEmpty)),
    ],
)
def test_full_and_empty_subclass_their_stdlib_twins(
    exc: type[Exception], stdlib_bases: tuple[type[Exception], ...]
) -> None:
    for base in stdlib_bases:
        assert issubclass(exc, base), base


def test_closed_is_not_mistaken_for_full_or_empty() -> None:
    # `except queue.Empty: retry` loops must not spin forever on a closed ring.
    for base in (queue.Full, queue.Empty, asyncio.QueueFull, asyncio.QueueEmpty, Full, Empty):
        assert not issubclass(Closed, base), base
    assert not issubclass(Full, Empty)
    assert not issubclass(Empty, Full)


def test_stdlib_except_clauses_catch_ring_errors() -> None:
    ring: RingBuffer[int] = RingBuffer(1)
    with pytest.raises(queue.Empty):
        ring.get_nowait()
    with pytest.raises(asyncio.QueueEmpty):
        ring.get(block=False)
    ring.put_nowait(1)
    with pytest.raises(queue.Full):
        ring.put_nowait(2)
    with pytest.raises(asyncio.QueueFull):
        ring.put(2, block=False)


def test_one_except_fastq_error_catches_everything_fastq_raises() -> None:
    ring: RingBuffer[int] = RingBuffer(1)
    caught: list[type[BaseException]] = []
    ring.put_nowait(0)
    for action in (lambda: ring.put_nowait(1), ring.get_nowait, ring.get_nowait):
        try:
            action()
        except FastqError as e:
            caught.append(type(e))
    ring.close()
    for action in (lambda: ring.put_nowait(1), ring.get_nowait):
        try:
            action()
        except FastqError as e:
            caught.append(type(e))
    assert caught == [Full, Empty, Closed, Closed]


@pytest.mark.parametrize(
    ("action", "exc", "word"),
    [
        ("put_full", Full, "full"),
        ("get_empty", Empty, "empty"),
        ("put_closed", Closed, "closed"),
        ("get_closed", Closed, "closed"),
        ("put_many_closed", Closed, "closed"),
        ("get_many_empty", Empty, "empty"),
    ],
)
def test_raised_errors_carry_a_helpful_message(
    action: str, exc: type[Exception], word: str
) -> None:
    ring: RingBuffer[int] = RingBuffer(1)
    if action == "put_full":
        ring.put_nowait(0)
    if action.endswith("closed"):
        ring.close()
    call: Callable[[], object] = {
        "put_full": lambda: ring.put_nowait(1),
        "get_empty": ring.get_nowait,
        "put_closed": lambda: ring.put(1),
        "get_closed": ring.get,
        "put_many_closed": lambda: ring.put_many((1, 2)),
        "get_many_empty": lambda: ring.get_many(3, block=False),
    }[action]
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc
    message = str(info.value)
    assert word in message.lower()
    assert "RingBuffer" in message


@pytest.mark.parametrize("exc", [FastqError, *ALL_ERRORS])
def test_errors_pickle_round_trip(exc: type[Exception]) -> None:
    # exceptions cross process boundaries (multiprocessing, concurrent.futures)
    original = exc("some message")
    clone = pickle.loads(pickle.dumps(original))
    assert type(clone) is exc
    assert clone.args == ("some message",)


@pytest.mark.parametrize("exc", [FastqError, *ALL_ERRORS])
def test_errors_are_exported_from_the_package(exc: type[Exception]) -> None:
    assert getattr(fastq, exc.__name__) is exc
    assert getattr(fastq.errors, exc.__name__) is exc
    assert exc.__doc__  # documented
