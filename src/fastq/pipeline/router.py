"""Router: send each message to one of several lanes (queues or topics) by ordered rules:
priority, type glob, predicate, and the observed handler cost of its type. docs/pipeline.md."""

from __future__ import annotations

import fnmatch
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .._core import PRIORITIES, FrozenHeaders, Message, new_message, restamp
from ..semantics.queue import message_from
from .cost import CostEstimate, CostEstimator, check_seconds

__all__ = ("RouteDecision", "Router")

# rule kinds
_PRIORITY = 0
_TYPE = 1
_WHEN = 2
_COST = 3

_GLOB_CHARS = frozenset("*?[")


def _message_of(obj: Any) -> Message:
    """``obj`` if it is a Message, else a Message of payload ``obj`` with default fields."""
    return obj if type(obj) is Message else new_message(obj)


def _set_headers(msg: Message, headers: dict[str, str] | FrozenHeaders) -> Message:
    """A copy of ``msg`` with other headers (same id, timestamp and everything else)."""
    return msg.replace(headers=headers)


@dataclass(frozen=True)
class RouteDecision:
    """Where :meth:`Router.explain` would send a message. ``lane``: the lane's name;
    ``rule``: the matching rule's description (as in :attr:`Router.rules`), or ``"default"``;
    ``index``: its position in :attr:`Router.rules` (None for the default); ``reason``: why it
    matched; ``estimate``: the type's cost estimate when a cost rule decided, else None."""

    lane: str
    rule: str
    index: int | None
    reason: str
    estimate: CostEstimate | None = None


class _Lane:
    """A lane's send functions, looked up once."""

    __slots__ = ("asend", "name", "send", "send_many", "target")

    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self.target = target
        put = getattr(target, "put", None)
        if callable(put):
            self.send: Callable[[Message], Any] = put
            self.send_many: Callable[[list[Message]], list[Any]] | None = getattr(
                target, "put_many", None
            )
            self.asend: Callable[[Message], Any] | None = getattr(target, "aput", None)
        else:
            self.send = target.publish
            self.send_many = getattr(target, "publish_many", None)
            self.asend = None  # a topic's publish never waits: called directly


class _Hit:
    """A rule's outcome for one lane: the lane and the ``fastq-route`` header value."""

    __slots__ = ("header", "index", "lane", "rule", "send", "stamped")

    def __init__(self, index: int | None, rule: str, lane: _Lane) -> None:
        self.index = index
        self.rule = rule
        self.lane = lane
        self.send = lane.send
        self.header = f"{rule} -> {lane.name}"
        # (unix ms, the routing headers of that ms): every message of a millisecond shares
        # one checked, immutable headers object (no copy, and the messages stay untracked)
        self.stamped: tuple[int, FrozenHeaders | None] = (-1, None)


class _Rule:
    """One rule. ``arg``: the priority name (priority rules), a bounded cache type -> bool
    (type rules, ``match`` computes a miss), the predicate (when rules), or the
    ``(threshold, hit)`` levels, highest first (cost rules)."""

    __slots__ = ("arg", "default_cost", "desc", "hit", "kind", "match", "name")

    def __init__(self, kind: int, desc: str, arg: Any, hit: _Hit) -> None:
        self.kind = kind
        self.desc = desc
        self.arg = arg
        self.hit = hit  # cost rules: the highest level's (only its index is used)
        self.match: Callable[[str], object] = _no_match
        self.default_cost: float | None = None
        self.name = ""


_TYPE_CACHE_SIZE = 4096  # distinct types remembered per type rule
_MEMO_SIZE = 4096  # (type, priority) decisions remembered while the rules are static


def _no_match(type_: str) -> bool:
    return False


def _type_matches(cache: dict[str, bool], match: Callable[[str], object], type_: str) -> bool:
    ok = bool(match(type_))
    if len(cache) >= _TYPE_CACHE_SIZE:
        cache.clear()  # many distinct types: start over (a dict stays cheaper than the regex)
    cache[type_] = ok
    return ok


def _fmt_seconds(s: float) -> str:
    return f"{s:.6g}s"


class Router:
    """Route messages to ``lanes`` (name -> :class:`~fastq.Queue` or :class:`~fastq.Topic`, or
    any object with ``put`` or ``publish``) by rules tried in the order they were added; the
    first that matches wins, ``default`` takes the rest.

    ``enrich``: add the headers ``fastq-routed-at`` (unix seconds, millisecond precision, from
    ``clock``, default :func:`time.time`), ``fastq-route`` (``"<rule> -> <lane>"``) and, with
    ``schema_version``, ``fastq-schema-version`` (kept if the message already has one).
    ``max_types``: how many message types :meth:`observe` tracks; when full, the least
    recently observed eighth is forgotten.

    ``publish``/``publish_many``/``apublish``/``explain``/``observe`` are thread-safe; add the
    rules before publishing from several threads (adding is safe, but which publishes see a
    new rule is a race).
    """

    def __init__(
        self,
        lanes: Mapping[str, Any],
        default: str,
        *,
        enrich: bool = True,
        schema_version: str | int | None = None,
        clock: Callable[[], float] | None = None,
        max_types: int = 10_000,
    ) -> None:
        if not isinstance(lanes, Mapping):
            raise TypeError(
                "lanes must be a mapping of lane name to Queue or Topic, "
                f"got {type(lanes).__name__}"
            )
        if not lanes:
            raise ValueError("lanes must name at least one lane, got an empty mapping")
        self._lanes: dict[str, _Lane] = {}
        for name, target in lanes.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"lane names must be non-empty str, got {name!r}")
            if not (
                callable(getattr(target, "put", None)) or callable(getattr(target, "publish", None))
            ):
                raise TypeError(
                    f"lane {name!r} must be a Queue or a Topic (an object with put or publish), "
                    f"got {type(target).__name__}"
                )
            self._lanes[name] = _Lane(name, target)
        self._lane_view = MappingProxyType({n: lane.target for n, lane in self._lanes.items()})
        if not isinstance(default, str):
            raise TypeError(f"default must be a lane name (str), got {type(default).__name__}")
        self._default = _Hit(None, "default", self._lane(default, "default"))
        if not isinstance(enrich, bool):
            raise TypeError(f"enrich must be a bool, got {type(enrich).__name__}")
        self._enrich = enrich
        self._schema: str | None = None
        if schema_version is not None:
            if isinstance(schema_version, bool) or not isinstance(schema_version, (str, int)):
                raise TypeError(
                    f"schema_version must be a str or an int, got {type(schema_version).__name__}"
                )
            self._schema = str(schema_version)
            if not self._schema:
                raise ValueError("schema_version must not be empty")
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be callable, got {type(clock).__name__}")
        self._clock: Callable[[], float] = time.time if clock is None else clock
        if isinstance(max_types, bool) or not isinstance(max_types, int):
            raise TypeError(f"max_types must be an int, got {type(max_types).__name__}")
        if max_types < 1:
            raise ValueError(f"max_types must be >= 1, got {max_types!r}")
        self._max_types = max_types
        self._rules: tuple[_Rule, ...] = ()
        self._plan: tuple[tuple[int, Any, _Hit, _Rule], ...] = ()  # what _select walks
        self._has_when = False
        # (type, priority) -> hit, while every rule decides from those two alone (no
        # predicate, no cost rule: their answers change); cleared when a rule is added
        self._memo: dict[tuple[str, str], _Hit] | None = {}
        self._lock = threading.Lock()  # rule changes, estimator creation and eviction
        self._costs: dict[str, CostEstimator] = {}
        self._tick = 0  # observation counter: recency for eviction (approximate across threads)
        self._stamp: tuple[int, str] = (-1, "")  # (unix ms, its text): one format per ms

    # ---- rules ----------------------------------------------------------------------------

    def _lane(self, name: Any, what: str) -> _Lane:
        lane = self._lanes.get(name) if isinstance(name, str) else None
        if lane is None:
            known = ", ".join(repr(n) for n in self._lanes)
            raise ValueError(f"{what} names an unknown lane {name!r}; the lanes are {known}")
        return lane

    def _add(self, rule: _Rule) -> Router:
        with self._lock:
            index = len(self._rules)
            rule.hit.index = index
            if rule.kind == _COST:
                for _, hit in rule.arg:
                    hit.index = index
            self._rules = (*self._rules, rule)
            self._plan = (*self._plan, (rule.kind, rule.arg, rule.hit, rule))
            self._has_when = self._has_when or rule.kind == _WHEN
            static = self._memo is not None and rule.kind in (_PRIORITY, _TYPE)
            self._memo = {} if static else None
        return self

    def route_priority(self, priority: str, lane: str) -> Router:
        """Send messages of ``priority`` (``critical``, ``high``, ``normal``, ``low``) to
        ``lane``. Returns the router (calls chain)."""
        if not isinstance(priority, str):
            raise TypeError(f"priority must be a str, got {type(priority).__name__}")
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
        target = self._lane(lane, "lane")
        desc = f"priority {priority!r}"
        return self._add(_Rule(_PRIORITY, desc, priority, _Hit(0, desc, target)))

    def route_type(self, pattern: str, lane: str) -> Router:
        """Send messages whose ``type`` matches the glob ``pattern`` (:mod:`fnmatch` syntax,
        case-sensitive; ``*`` also matches dots: ``"video.*"`` matches ``"video.hd.encode"``)
        to ``lane``."""
        if not isinstance(pattern, str):
            raise TypeError(f"pattern must be a str, got {type(pattern).__name__}")
        target = self._lane(lane, "lane")
        if _GLOB_CHARS.isdisjoint(pattern):
            match: Callable[[str], object] = pattern.__eq__  # a plain name: compare
        else:
            match = re.compile(fnmatch.translate(pattern)).match
        desc = f"type {pattern!r}"
        rule = _Rule(_TYPE, desc, {}, _Hit(0, desc, target))
        rule.match = match
        return self._add(rule)

    def route_when(
        self, predicate: Callable[[Message], object], lane: str, *, name: str | None = None
    ) -> Router:
        """Send messages for which ``predicate(message)`` is true to ``lane``. ``name`` (default:
        the predicate's ``__name__``) describes the rule. An exception from the predicate
        propagates from publish/explain, with a note naming the rule."""
        if not callable(predicate):
            raise TypeError(f"predicate must be callable, got {type(predicate).__name__}")
        if name is None:
            name = getattr(predicate, "__qualname__", None) or repr(predicate)
        elif not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        target = self._lane(lane, "lane")
        desc = f"when {name}"
        rule = _Rule(_WHEN, desc, predicate, _Hit(0, desc, target))
        rule.name = name
        return self._add(rule)

    def route_by_cost(
        self, thresholds: Mapping[str, float], *, default_cost: float | None = None
    ) -> Router:
        """Send a message to the lane with the highest threshold (seconds) that the estimated
        handler cost of its ``type`` exceeds; thresholds are tried from the highest down,
        whatever their order in the mapping. The estimate (see :meth:`observe`) is the p95 of
        the type's recent handler times once it has enough samples, the EWMA before. A type
        with no observations uses ``default_cost`` (None: the rule does not match); a cost
        that exceeds no threshold does not match either: later rules and the default apply."""
        if not isinstance(thresholds, Mapping):
            raise TypeError(
                f"thresholds must be a mapping of lane to seconds, got {type(thresholds).__name__}"
            )
        if not thresholds:
            raise ValueError("thresholds must name at least one lane, got an empty mapping")
        levels: list[tuple[float, _Lane]] = []
        seen: dict[float, str] = {}
        for lane_name, seconds in thresholds.items():
            target = self._lane(lane_name, "thresholds")
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                raise TypeError(
                    f"thresholds[{lane_name!r}] must be a number of seconds, "
                    f"got {type(seconds).__name__}"
                )
            if not 0 < seconds < math.inf:
                raise ValueError(
                    f"thresholds[{lane_name!r}] must be a finite number of seconds > 0, "
                    f"got {seconds!r}"
                )
            s = float(seconds)
            if s in seen:
                raise ValueError(
                    f"thresholds[{lane_name!r}] = {seconds!r} repeats the threshold of "
                    f"lane {seen[s]!r}"
                )
            seen[s] = lane_name
            levels.append((s, target))
        levels.sort(key=lambda lv: -lv[0])
        cost = None if default_cost is None else check_seconds(default_cost, "default_cost")
        desc = "cost " + ", ".join(f"{t.name} > {_fmt_seconds(s)}" for s, t in levels)
        hits = tuple((s, _Hit(0, desc, t)) for s, t in levels)
        rule = _Rule(_COST, desc, hits, hits[0][1])
        rule.default_cost = cost
        return self._add(rule)

    # ---- routing --------------------------------------------------------------------------

    def _select(self, type_: str, priority: str, msg: Message | None) -> _Hit:
        """The hit for a message (``msg`` may be None when no predicate rule exists)."""
        memo = self._memo
        if memo is None:
            return self._walk(type_, priority, msg)
        key = (type_, priority)
        hit = memo.get(key)
        if hit is None:
            hit = self._walk(type_, priority, msg)
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[key] = hit
        return hit

    def _walk(self, type_: str, priority: str, msg: Message | None) -> _Hit:
        """The rules in order: the first that matches."""
        for kind, arg, hit, rule in self._plan:
            if kind == _TYPE:
                ok = arg.get(type_)
                if ok is None:
                    ok = _type_matches(arg, rule.match, type_)
                if ok:
                    return hit
            elif kind == _PRIORITY:
                if priority == arg:
                    return hit
            elif kind == _WHEN:
                try:
                    if arg(msg):
                        return hit
                except Exception as exc:
                    if hasattr(exc, "add_note"):
                        exc.add_note(f"raised by the predicate of router rule {rule.desc!r}")
                    raise
            else:
                est = self._costs.get(type_)
                value = rule.default_cost if est is None else est.value
                if value is not None:
                    for threshold, level_hit in arg:
                        if value > threshold:
                            return level_hit  # type: ignore[no-any-return]
        return self._default

    def _headers(self, hit: _Hit, base: Mapping[str, str] | None) -> dict[str, str] | FrozenHeaders:
        """The routing headers (over ``base``, the message's own headers, if any)."""
        ms = int(self._clock() * 1000.0)
        if not base:
            stamped = hit.stamped
            if stamped[0] == ms and stamped[1] is not None:
                return stamped[1]
        stamp = self._stamp
        if stamp[0] != ms:
            stamp = (ms, f"{ms // 1000}.{ms % 1000:03d}")
            self._stamp = stamp
        h = dict(base) if base else {}
        h["fastq-routed-at"] = stamp[1]
        h["fastq-route"] = hit.header
        if self._schema is not None and "fastq-schema-version" not in h:
            h["fastq-schema-version"] = self._schema
        if base:
            return h
        frozen = FrozenHeaders(h)
        hit.stamped = (ms, frozen)
        return frozen

    def _prepare(self, message: Any, fields: dict[str, Any]) -> tuple[Message, _Hit]:
        """The message to send (enriched if asked) and its hit."""
        if type(message) is not Message and self._enrich and not self._has_when:
            # route from the fields, then build the message once, headers included
            type_ = fields.get("type", "")
            priority = fields.get("priority", "normal")
            headers = fields.get("headers")
            if type(type_) is str and type(priority) is str:
                hit = self._select(type_, priority, None)
                if headers is None or isinstance(headers, Mapping):
                    # ``fields`` is this call's own kwargs dict: completed in place, and
                    # Message refuses a name that is not one of its fields
                    fields["headers"] = self._headers(hit, headers)
                    return Message(message, **fields), hit
        msg = message_from(message, fields) if fields else _message_of(message)
        hit = self._select(msg.type, msg.priority, msg)
        if self._enrich:
            msg = _set_headers(msg, self._headers(hit, msg.headers))
        return msg, hit

    def _publish_owned(self, payload: Any, fields: dict[str, Any]) -> Any:
        """:meth:`publish` for a caller that hands over ``fields`` (a Producer): the dict
        is completed in place rather than re-packed as keywords."""
        msg, hit = self._prepare(payload, fields)
        return hit.send(msg)

    def publish(self, message: Any, /, **fields: Any) -> Any:
        """Route and send a :class:`~fastq.Message` (or a payload, with Message ``fields`` as
        keywords, as :meth:`Queue.put` takes them). Returns what the lane returns: the
        message id for a queue, ``(partition, offset)`` for a topic. A full queue lane blocks
        as :meth:`Queue.put` does."""
        if type(message) is Message and not fields and not self._enrich:
            return self._select(message.type, message.priority, message).send(message)
        msg, hit = self._prepare(message, fields)
        return hit.send(msg)

    def publish_many(self, messages: Iterable[Any], /, **fields: Any) -> list[Any]:
        """Route and send several messages (``fields`` apply to all): one ``put_many`` /
        ``publish_many`` per lane, lanes in the order of their first message, each lane's
        messages in input order. Returns each message's result, in input order. If a lane
        fails, the lanes sent before it keep their messages."""
        return self._publish_many_owned(messages, fields, False)

    def _publish_many_owned(
        self, messages: Iterable[Any], fields: dict[str, Any], stamp_key: bool
    ) -> list[Any]:
        """:meth:`publish_many`; ``stamp_key`` (a Producer): a message without an
        idempotency key gets its own id as key, in the same native copy as the headers."""
        groups: dict[str, tuple[_Lane, list[int], list[Message], list[_Hit]]] = {}
        n = 0
        # without predicates a decision depends on (type, priority) only: decide once per
        # pair per batch (cost rules then see one estimate per type for the whole batch)
        memo: dict[tuple[str, str], _Hit] | None = None if self._has_when else {}
        for i, item in enumerate(messages):
            msg = item if type(item) is Message and not fields else message_from(item, fields)
            if memo is None:
                hit = self._select(msg.type, msg.priority, msg)
            else:
                pair = (msg.type, msg.priority)
                found = memo.get(pair)
                if found is None:
                    found = memo[pair] = self._select(pair[0], pair[1], msg)
                hit = found
            g = groups.get(hit.lane.name)
            if g is None:
                g = groups[hit.lane.name] = (hit.lane, [], [], [])
            g[1].append(i)
            g[2].append(msg)
            g[3].append(hit)
            n = i + 1
        out: list[Any] = [None] * n
        for lane, positions, msgs, hits in groups.values():
            if self._enrich or stamp_key:
                msgs = self._stamped(msgs, hits, stamp_key)
            if lane.send_many is not None:
                results = lane.send_many(msgs)
            else:
                results = [lane.send(m) for m in msgs]
            for p, r in zip(positions, results, strict=True):
                out[p] = r
        return out

    def _stamped(self, msgs: list[Message], hits: list[_Hit], stamp_key: bool) -> list[Message]:
        """One lane's messages with their routing headers (and keys), copied natively, one
        call per run of messages that matched the same rule."""
        out: list[Message] = []
        start = 0
        n = len(msgs)
        while start < n:
            hit = hits[start]
            end = start + 1
            while end < n and hits[end] is hit:
                end += 1

            def own(m: Message, hit: _Hit = hit) -> Message:
                return _set_headers(m, self._headers(hit, m.headers))

            headers = self._headers(hit, None) if self._enrich else None
            out.extend(restamp(msgs[start:end], headers, stamp_key, own))  # type: ignore[arg-type]
            start = end
        return out

    async def apublish(self, message: Any, /, **fields: Any) -> Any:
        """:meth:`publish` for asyncio: a full queue lane is waited on with ``aput``, without
        blocking the event loop (a topic lane's ``publish`` never waits)."""
        msg, hit = self._prepare(message, fields)
        lane = hit.lane
        if lane.asend is not None:
            return await lane.asend(msg)
        return lane.send(msg)

    def explain(self, message: Any, /, **fields: Any) -> RouteDecision:
        """Which lane :meth:`publish` would choose now, which rule matched and why. Sends
        nothing and changes nothing."""
        msg = message_from(message, fields)
        type_ = msg.type
        hit = self._select(type_, msg.priority, msg)
        lane = hit.lane.name
        if hit.index is None:
            return RouteDecision(lane, "default", None, f"no rule matched: default lane {lane!r}")
        rule = self._rules[hit.index]
        kind = rule.kind
        if kind == _PRIORITY:
            reason = f"priority is {msg.priority!r}"
        elif kind == _TYPE:
            pattern = rule.desc[5:]
            reason = f"type {type_!r} matches {pattern}"
        elif kind == _WHEN:
            reason = f"predicate {rule.name} returned a true value"
        else:
            est = self._costs.get(type_)
            threshold = next(s for s, h in rule.arg if h is hit)
            if est is None:
                value = rule.default_cost
                assert value is not None
                reason = (
                    f"type {type_!r} has no observations: default_cost "
                    f"{_fmt_seconds(value)} > {_fmt_seconds(threshold)} ({lane})"
                )
                return RouteDecision(lane, rule.desc, hit.index, reason)
            e = est.estimate()
            reason = (
                f"cost {e.statistic} {_fmt_seconds(e.value)} > {_fmt_seconds(threshold)} "
                f"({lane}) for type {type_!r} over {e.samples} samples"
            )
            return RouteDecision(lane, rule.desc, hit.index, reason, e)
        return RouteDecision(lane, rule.desc, hit.index, reason)

    # ---- cost estimates -------------------------------------------------------------------

    def observe(self, type: str, seconds: float) -> None:
        """Record that a handler took ``seconds`` (finite, >= 0) for a message of ``type``:
        feeds the estimate :meth:`route_by_cost` uses. Thread-safe and cheap (consumer pools
        call it after each message)."""
        est = self._costs.get(type)
        if est is None:
            est = self._new_estimator(type, seconds)
        tick = self._tick + 1
        self._tick = tick
        est.last_used = tick
        est.add(seconds)

    def _new_estimator(self, type_: Any, seconds: Any) -> CostEstimator:
        if not isinstance(type_, str):
            raise TypeError(f"type must be a str, got {type(type_).__name__}")
        check_seconds(seconds)  # a bad first observation creates no estimator
        with self._lock:
            est = self._costs.get(type_)
            if est is None:
                costs = self._costs
                if len(costs) >= self._max_types:
                    # forget the least recently observed eighth: amortised O(log n) per new type
                    drop = max(1, self._max_types // 8)
                    oldest = sorted(costs.items(), key=lambda kv: kv[1].last_used)[:drop]
                    for name, _ in oldest:
                        del costs[name]
                est = costs[type_] = CostEstimator()
            return est

    def cost(self, type: str) -> CostEstimate | None:
        """The current estimate for ``type``, or None if it was never observed (or forgotten)."""
        est = self._costs.get(type)
        return None if est is None else est.estimate()

    def costs(self) -> dict[str, CostEstimate]:
        """Every tracked type's estimate."""
        return {t: est.estimate() for t, est in list(self._costs.items())}

    # ---- introspection --------------------------------------------------------------------

    @property
    def lanes(self) -> Mapping[str, Any]:
        """The lanes by name (read-only)."""
        return self._lane_view

    @property
    def default(self) -> str:
        return self._default.lane.name

    @property
    def rules(self) -> tuple[str, ...]:
        """The rules' descriptions, in the order they are tried."""
        return tuple(r.desc for r in self._rules)

    def __repr__(self) -> str:
        return (
            f"Router(lanes={list(self._lanes)!r}, default={self.default!r}, "
            f"rules={list(self.rules)!r})"
        )
