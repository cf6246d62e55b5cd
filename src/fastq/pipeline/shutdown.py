"""Signal helpers for scripts: run consumer pools until SIGTERM/SIGINT, then stop them
gracefully (in-flight handlers finish, the rest is released untried, offsets committed)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterable
from types import FrameType

from .pool import ConsumerPool

__all__ = ("arun_until_signal", "run_until_signal")

_DEFAULT = (signal.SIGTERM, signal.SIGINT)


def _check(pools: tuple[ConsumerPool, ...], mode: str) -> None:
    if not pools:
        raise ValueError("give at least one ConsumerPool")
    for p in pools:
        if not isinstance(p, ConsumerPool):
            raise TypeError(f"pools must be fastq.ConsumerPool objects, got {type(p).__name__}")
        if p.mode != mode:
            raise ValueError(f"pool {p.name!r} is in {p.mode!r} mode; this helper runs {mode!r}")


def run_until_signal(
    *pools: ConsumerPool,
    signals: Iterable[signal.Signals] = _DEFAULT,
    timeout: float | None = 30.0,
) -> int | None:
    """Start ``pools`` (threads mode; those not started yet), block until one of ``signals``
    arrives or every pool has stopped by itself, then stop them all gracefully, each within
    ``timeout`` seconds. Returns the signal number received (None if the pools stopped by
    themselves). Must run in the main thread; the previous handlers are restored. A pool
    stopped by a handler's ``KeyboardInterrupt``/``SystemExit`` re-raises it here."""
    _check(pools, "threads")
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("run_until_signal must run in the main thread (signal handlers)")
    sigs = tuple(signals)
    got: list[int] = []
    woke = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        got.append(signum)
        woke.set()

    previous = {s: signal.signal(s, on_signal) for s in sigs}
    try:
        for p in pools:
            if p.state == "new":
                p.start()
        while not woke.is_set() and any(p.state != "stopped" for p in pools):
            woke.wait(0.2)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for p in pools:
            p.stop(graceful=True, timeout=timeout)
    for p in pools:
        if p.error is not None:
            raise p.error
    return got[0] if got else None


async def arun_until_signal(
    *pools: ConsumerPool,
    signals: Iterable[signal.Signals] = _DEFAULT,
    timeout: float | None = 30.0,
) -> int | None:
    """:func:`run_until_signal` for asyncio-mode pools, on the running loop (Unix: uses
    ``loop.add_signal_handler``)."""
    _check(pools, "asyncio")
    loop = asyncio.get_running_loop()
    got: list[int] = []
    woke = asyncio.Event()
    sigs = tuple(signals)

    def on_signal(signum: int) -> None:
        got.append(signum)
        woke.set()

    for s in sigs:
        loop.add_signal_handler(s, on_signal, s)
    try:
        for p in pools:
            if p.state == "new":
                await p.astart()
        while not woke.is_set() and any(p.state != "stopped" for p in pools):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(woke.wait(), 0.2)
    finally:
        for s in sigs:
            loop.remove_signal_handler(s)
        for p in pools:
            await p.astop(graceful=True, timeout=timeout)
    for p in pools:
        if p.error is not None:
            raise p.error
    return got[0] if got else None
