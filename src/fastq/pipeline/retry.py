"""RetryPolicy: how long to wait before the next attempt, and whether to try again at all.

A consumer pool asks the policy two questions when a handler fails: :meth:`RetryPolicy.classify`
(is this error worth retrying, or does the message go to the dead-letter queue now?) and
:meth:`RetryPolicy.delay` (how long to wait before the next attempt; the pool passes it to
``nack(delay=)``). The queue counts attempts; the policy never holds per-message state.

Backoff (``attempt`` is the attempt that just failed, 1-based), capped at ``cap``:

- ``"exponential"``: ``base * multiplier ** (attempt - 1)``
- ``"linear"``: ``base * attempt``
- ``"constant"``: ``base``

Jitter on that capped delay ``d`` (AWS, "Exponential Backoff And Jitter"):

- ``"full"`` (default): ``uniform(0, d)``, the least total work under contention
- ``"equal"``: ``d/2 + uniform(0, d/2)``, never shorter than half
- ``"none"``: ``d``

Decorrelated jitter is not offered: it depends on the previous sleep, which a stateless
``delay(attempt)`` does not have.
"""

from __future__ import annotations

import functools
import math
import random
import sys
import threading
from collections.abc import Callable
from typing import Final, Literal, NoReturn, TypeAlias

from ..errors import Permanent

__all__ = ("ExceptionMatcher", "RetryPolicy")

ExceptionMatcher: TypeAlias = type[BaseException] | Callable[[BaseException], bool]
"""An exception type (matches instances of it) or a predicate ``exc -> bool``."""

Backoff = Literal["exponential", "linear", "constant"]
Jitter = Literal["full", "equal", "none"]
Verdict = Literal["retry", "dead_letter"]

_BACKOFFS: Final = ("exponential", "linear", "constant")
_JITTERS: Final = ("full", "equal", "none")

# (module, attribute) of validation errors from libraries we never import ourselves: if the
# module is not loaded, nothing can have raised its error.
_VALIDATION_ERRORS: Final = (
    ("msgspec", "ValidationError"),
    ("pydantic", "ValidationError"),
    ("pydantic_core", "ValidationError"),
)


def _matchers(
    name: str, value: object
) -> tuple[tuple[type[BaseException], ...], tuple[Callable[[BaseException], bool], ...]]:
    """Split an exception type, a predicate, or a tuple/list of them into (types, predicates)."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    types: list[type[BaseException]] = []
    predicates: list[Callable[[BaseException], bool]] = []
    for item in items:
        if isinstance(item, type):
            if not issubclass(item, BaseException):
                raise TypeError(
                    f"{name} must hold exception types or predicates, got the class "
                    f"{item.__qualname__}"
                )
            types.append(item)
        elif callable(item):
            predicates.append(item)
        else:
            raise TypeError(
                f"{name} must be an exception type, a predicate exc -> bool, or a tuple of them; "
                f"got {item!r}"
            )
    return tuple(types), tuple(predicates)


def _matches(
    exc: BaseException,
    types: tuple[type[BaseException], ...],
    predicates: tuple[Callable[[BaseException], bool], ...],
) -> bool:
    if types and isinstance(exc, types):
        return True
    return any(predicate(exc) for predicate in predicates)


def _is_validation_error(exc: BaseException) -> bool:
    for module_name, attr in _VALIDATION_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None:
            cls = getattr(module, attr, None)
            if isinstance(cls, type) and isinstance(exc, cls):
                return True
    return False


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


class RetryPolicy:
    """When and how soon a failed message is tried again. Immutable and thread-safe.

    ``max_attempts`` counts every attempt including the first (1 = never retry); the queue's
    ``max_deliveries`` stays the hard limit, so whichever is lower wins. ``retry_on`` and
    ``dead_letter_on`` take exception types, predicates ``exc -> bool``, or tuples of them;
    ``dead_letter_on`` wins over ``retry_on``. ``seed`` makes the jitter reproducible.
    """

    __slots__ = (
        "_backoff",
        "_base",
        "_cap",
        "_dead_letter_on",
        "_dl_predicates",
        "_dl_types",
        "_jitter",
        "_lock",
        "_max_attempts",
        "_multiplier",
        "_random",
        "_retry_on",
        "_retry_predicates",
        "_retry_types",
        "_seed",
    )
    _backoff: Backoff
    _base: float
    _cap: float
    _dead_letter_on: tuple[ExceptionMatcher, ...]
    _dl_predicates: tuple[Callable[[BaseException], bool], ...]
    _dl_types: tuple[type[BaseException], ...]
    _jitter: Jitter
    _lock: threading.Lock
    _max_attempts: int
    _multiplier: float
    _random: random.Random
    _retry_on: tuple[ExceptionMatcher, ...]
    _retry_predicates: tuple[Callable[[BaseException], bool], ...]
    _retry_types: tuple[type[BaseException], ...]
    _seed: int | str | bytes | None

    def __init__(
        self,
        max_attempts: int = 5,
        backoff: Backoff = "exponential",
        base: float = 0.1,
        cap: float = 900.0,
        jitter: Jitter = "full",
        retry_on: ExceptionMatcher | tuple[ExceptionMatcher, ...] = (Exception,),
        dead_letter_on: ExceptionMatcher | tuple[ExceptionMatcher, ...] = (),
        *,
        multiplier: float = 2.0,
        seed: int | str | bytes | None = None,
    ) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise TypeError(f"max_attempts must be an int, got {type(max_attempts).__name__}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if backoff not in _BACKOFFS:
            raise ValueError(f"backoff must be one of {', '.join(_BACKOFFS)}; got {backoff!r}")
        if jitter not in _JITTERS:
            raise ValueError(f"jitter must be one of {', '.join(_JITTERS)}; got {jitter!r}")
        base_f = _number("base", base)
        if base_f <= 0:
            raise ValueError(f"base must be > 0, got {base!r}")
        cap_f = _number("cap", cap)
        if cap_f < base_f:
            raise ValueError(f"cap must be >= base ({base_f!r}), got {cap!r}")
        multiplier_f = _number("multiplier", multiplier)
        if multiplier_f < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str, bytes))):
            raise TypeError(f"seed must be an int, str, bytes or None, got {type(seed).__name__}")
        set_ = object.__setattr__
        set_(self, "_max_attempts", max_attempts)
        set_(self, "_backoff", backoff)
        set_(self, "_base", base_f)
        set_(self, "_cap", cap_f)
        set_(self, "_jitter", jitter)
        set_(self, "_multiplier", multiplier_f)
        set_(self, "_seed", seed)
        retry_types, retry_predicates = _matchers("retry_on", retry_on)
        dl_types, dl_predicates = _matchers("dead_letter_on", dead_letter_on)
        set_(self, "_retry_types", retry_types)
        set_(self, "_retry_predicates", retry_predicates)
        set_(self, "_dl_types", dl_types)
        set_(self, "_dl_predicates", dl_predicates)
        set_(self, "_retry_on", (*retry_types, *retry_predicates))
        set_(self, "_dead_letter_on", (*dl_types, *dl_predicates))
        set_(self, "_random", random.Random(seed))
        set_(self, "_lock", threading.Lock())

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries: every failure dead-letters at once."""
        return cls(max_attempts=1)

    def __reduce__(self) -> tuple[object, ...]:
        # copies and pickles restart the random stream from ``seed``
        make = functools.partial(RetryPolicy, multiplier=self._multiplier, seed=self._seed)
        args = (self._max_attempts, self._backoff, self._base, self._cap, self._jitter)
        return (make, (*args, self._retry_on, self._dead_letter_on))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"RetryPolicy is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"RetryPolicy is immutable (cannot delete {name!r})")

    # -- configuration (read-only) -------------------------------------------------------------

    @property
    def max_attempts(self) -> int:
        return self._max_attempts

    @property
    def backoff(self) -> Backoff:
        return self._backoff

    @property
    def base(self) -> float:
        return self._base

    @property
    def cap(self) -> float:
        return self._cap

    @property
    def jitter(self) -> Jitter:
        return self._jitter

    @property
    def multiplier(self) -> float:
        return self._multiplier

    @property
    def retry_on(self) -> tuple[ExceptionMatcher, ...]:
        return self._retry_on

    @property
    def dead_letter_on(self) -> tuple[ExceptionMatcher, ...]:
        return self._dead_letter_on

    # -- decisions ------------------------------------------------------------------------------

    def backoff_delay(self, attempt: int) -> float:
        """The capped delay after ``attempt`` failed, before jitter (deterministic)."""
        _check_attempt(attempt)
        base, cap = self._base, self._cap
        if self._backoff == "constant":
            return base
        if self._backoff == "linear":
            return min(cap, base * attempt)
        # exponential: compare exponents first so huge attempts never overflow
        if self._multiplier == 1.0:
            return base
        if (attempt - 1) * math.log(self._multiplier) >= math.log(cap / base):
            return cap
        return min(cap, base * self._multiplier ** (attempt - 1))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the next attempt, after attempt number ``attempt`` (1-based)
        failed: the backoff, capped at ``cap``, with the policy's jitter applied."""
        d = self.backoff_delay(attempt)
        if self._jitter == "none":
            return d
        with self._lock:
            u = self._random.random()
        if self._jitter == "full":
            return d * u
        return d / 2 + (d / 2) * u

    def classify(self, exc: BaseException) -> Verdict:
        """``"dead_letter"`` or ``"retry"`` for an error a handler raised.

        In order: :class:`fastq.Permanent`, a validation error (``msgspec.ValidationError``,
        ``pydantic.ValidationError``, checked only if those libraries are loaded) or a match
        in ``dead_letter_on`` -> ``"dead_letter"``; a match in ``retry_on`` -> ``"retry"``;
        anything else -> ``"dead_letter"`` (not retryable). A predicate that raises propagates.
        """
        if isinstance(exc, Permanent) or _is_validation_error(exc):
            return "dead_letter"
        if _matches(exc, self._dl_types, self._dl_predicates):
            return "dead_letter"
        if _matches(exc, self._retry_types, self._retry_predicates):
            return "retry"
        return "dead_letter"

    def should_retry(self, attempt: int, exc: BaseException) -> bool:
        """Whether to try again after ``attempt`` (1-based) failed with ``exc``:
        ``classify(exc) == "retry" and attempt < max_attempts``."""
        _check_attempt(attempt)
        return attempt < self._max_attempts and self.classify(exc) == "retry"

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self._max_attempts}, backoff={self._backoff!r}, "
            f"base={self._base!r}, cap={self._cap!r}, jitter={self._jitter!r}, "
            f"multiplier={self._multiplier!r})"
        )


def _check_attempt(attempt: object) -> None:
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise TypeError(f"attempt must be an int, got {type(attempt).__name__}")
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
