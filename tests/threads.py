"""Thread helpers shared by the test modules: a polling wait and a result-keeping thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

LIVENESS = 10.0  # generous bound for "returns eventually"; never a speed assertion


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = LIVENESS) -> None:
    """Poll a condition (not a fixed sleep); fail with `what` if it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.001)


class Runner(threading.Thread):
    """A thread running fn() that keeps its result or exception for the test to inspect."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.started_call = threading.Event()

    def run(self) -> None:
        self.started_call.set()
        try:
            self.result = self.fn()
        except BaseException as e:
            self.error = e

    def finish(self) -> Any:
        self.join(LIVENESS)
        assert not self.is_alive(), "thread did not return"
        return self.result
