"""Router (unit): ordered routing rules, cost-aware routing, enrichment and explain.

- rules: first match wins in the order added; priority, type glob (fnmatch, case-sensitive,
  ``*`` crosses dots), predicate (its exception propagates with a note naming the rule), cost;
- cost-aware routing moves a type whose handler slows down to the slow lane and back once it
  is fast again; thresholds are tried highest first whatever the mapping's order; unknown types
  fall through (or use default_cost);
- the estimator: exact p95 of its window (equal to numpy.percentile), close to the true
  quantile of known distributions, EWMA before warm-up; observe() from 4 threads counts every
  sample; max_types forgets the least recently observed types;
- explain() for every rule kind, agrees with publish, and has no side effects;
- publish / publish_many (one put_many per lane, input order kept) / apublish, queue and topic
  lanes (keys pick partitions);
- enrichment headers (routed-at from the clock, route, schema version) and their absence;
- bad input at construction / rule time.

Random inputs come from the seeded ``rng`` fixture (asserts print it: FASTQ_SEED replays).
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fastq
from fastq import FakeClock, Message, Queue, Topic
from fastq.pipeline.cost import CostEstimate, CostEstimator
from fastq.pipeline.router import RouteDecision, Router


class Recorder:
    """A duck-typed queue lane that records what it was sent and how."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, list[Message]]] = []

    def put(self, message: Message) -> str:
        self.calls.append(("put", [message]))
        return f"{self.name}:{message.id}"

    def put_many(self, messages: list[Message]) -> list[str]:
        self.calls.append(("put_many", list(messages)))
        return [f"{self.name}:{m.id}" for m in messages]

    @property
    def sent(self) -> list[Message]:
        return [m for _, ms in self.calls for m in ms]


def recorders(*names: str) -> dict[str, Recorder]:
    return {n: Recorder(n) for n in names}


def lane_of(lanes: dict[str, Recorder], msg_id: str) -> str:
    (name,) = [n for n, r in lanes.items() if any(m.id == msg_id for m in r.sent)]
    return name


# ---- rules ---------------------------------------------------------------------------------


def test_first_matching_rule_wins_in_the_order_added() -> None:
    lanes = recorders("main", "crit", "video")
    r = Router(lanes, "main", enrich=False)
    r.route_type("video.*", "video").route_priority("critical", "crit")
    assert r.rules == ("type 'video.*'", "priority 'critical'")
    r.publish(Message(b"1", type="video.hd", priority="critical"))  # both match: the first wins
    r.publish(Message(b"2", type="image", priority="critical"))
    r.publish(Message(b"3", type="image"))
    assert [m.payload for m in lanes["video"].sent] == [b"1"]
    assert [m.payload for m in lanes["crit"].sent] == [b"2"]
    assert [m.payload for m in lanes["main"].sent] == [b"3"]

    lanes2 = recorders("main", "crit", "video")
    r2 = Router(lanes2, "main", enrich=False)
    r2.route_priority("critical", "crit").route_type("video.*", "video")  # the other order
    r2.publish(Message(b"1", type="video.hd", priority="critical"))
    assert [m.payload for m in lanes2["crit"].sent] == [b"1"]


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("video.*", ["video.", "video.hd", "video.hd.encode"], ["video", "videox", "Video.hd"]),
        ("*.created", ["user.created", "a.b.created"], ["created", "user.created.v2"]),
        ("img.?", ["img.a", "img.1"], ["img.", "img.ab"]),
        ("job.[ab]", ["job.a", "job.b"], ["job.c", "job.ab"]),
        ("job.[!ab]", ["job.c"], ["job.a"]),
        ("exact", ["exact"], ["exact.", "exac", "EXACT", "inexact"]),
        ("", [""], ["a"]),
        ("a+b(c)", ["a+b(c)"], ["aab(c)"]),  # regex characters are literal
        ("*", ["", "anything.at.all"], []),
    ],
)
def test_type_glob(pattern: str, matching: list[str], not_matching: list[str]) -> None:
    r = Router(recorders("main", "x"), "main", enrich=False).route_type(pattern, "x")
    for t in matching:
        assert r.explain(b"", type=t).lane == "x", t
        assert r.explain(b"", type=t).lane == "x", t  # served from the rule's cache
    for t in not_matching:
        assert r.explain(b"", type=t).lane == "main", t


def test_type_rule_cache_is_bounded_and_stays_correct() -> None:
    r = Router(recorders("main", "x"), "main", enrich=False).route_type("t.*7", "x")
    for i in range(10_000):  # more distinct types than the cache holds
        expected = "x" if str(i).endswith("7") else "main"
        assert r.explain(b"", type=f"t.{i}").lane == expected


def test_predicate_rule_gets_the_message_and_routes_on_a_true_value() -> None:
    lanes = recorders("main", "big")
    seen: list[Message] = []

    def big(m: Message) -> int:
        seen.append(m)
        return len(m.payload)  # truthy/falsy, not only bool

    r = Router(lanes, "main").route_when(lambda m: len(m.payload) > 3, "big", name="big")
    r.route_when(big, "main")
    assert r.rules == ("when big", f"when {big.__qualname__}")
    r.publish(b"12345", type="t")
    r.publish(b"1", type="t")
    assert [m.payload for m in lanes["big"].sent] == [b"12345"]
    assert [m.payload for m in lanes["main"].sent] == [b"1"]
    assert [m.payload for m in seen] == [b"1"]  # the second rule only ran for the second
    assert isinstance(seen[0], Message)
    assert seen[0].type == "t"


def test_predicate_exception_propagates_with_a_note_naming_the_rule() -> None:
    lanes = recorders("main", "x")

    def boom(m: Message) -> bool:
        raise KeyError("no field")

    r = Router(lanes, "main").route_when(boom, "x", name="has_field")
    for call in (lambda: r.publish(b"p"), lambda: r.explain(b"p")):
        with pytest.raises(KeyError, match="no field") as info:
            call()
        if sys.version_info >= (3, 11):  # exception notes
            assert info.value.__notes__ == [
                "raised by the predicate of router rule 'when has_field'"
            ]
    assert lanes["x"].sent == []
    assert lanes["main"].sent == []


def test_rules_after_a_non_matching_cost_rule_still_apply() -> None:
    r = Router(recorders("main", "slow", "video"), "main")
    r.route_by_cost({"slow": 1.0}).route_type("video.*", "video")
    for _ in range(100):
        r.observe("video.hd", 0.01)
    assert r.explain(b"", type="video.hd").lane == "video"  # cost exceeded nothing: fall through
    assert r.explain(b"", type="never.seen").lane == "main"  # unknown type: no cost match


# ---- cost-aware routing ------------------------------------------------------------------


def test_cost_routing_moves_a_type_that_slows_down_and_back() -> None:
    lanes = recorders("main", "long")
    r = Router(lanes, "main", enrich=False).route_by_cost({"long": 1.0})

    def lane_now() -> str:
        m = Message(b"", type="resize")
        r.publish(m)
        return lane_of(lanes, m.id)

    assert lane_now() == "main"  # never observed
    for _ in range(200):
        r.observe("resize", 0.02)
    assert lane_now() == "main"
    steps = 0
    while r.explain(b"", type="resize").lane == "main":
        r.observe("resize", 2.5)  # the handler slowed down
        steps += 1
        assert steps < 200, "the slow type never moved"
    assert lane_now() == "long"
    est = r.cost("resize")
    assert est is not None
    assert est.p95 is not None
    assert est.p95 > 1.0
    # fast again: it moves back once fewer than 5% of the window are slow
    steps = 0
    while r.explain(b"", type="resize").lane == "long":
        r.observe("resize", 0.02)
        steps += 1
        assert steps < 2000, "the type never moved back"
    assert lane_now() == "main"
    assert steps > 100  # it did not flap back after one fast sample


def test_cost_thresholds_are_tried_highest_first_whatever_the_order() -> None:
    for thresholds in ({"long": 1.0, "compute": 0.05}, {"compute": 0.05, "long": 1.0}):
        r = Router(recorders("main", "long", "compute"), "main").route_by_cost(thresholds)
        assert r.rules == ("cost long > 1s, compute > 0.05s",)
        for t, seconds in (("fast", 0.001), ("medium", 0.2), ("slow", 3.0)):
            for _ in range(64):
                r.observe(t, seconds)
        assert r.explain(b"", type="fast").lane == "main"
        assert r.explain(b"", type="medium").lane == "compute"
        assert r.explain(b"", type="slow").lane == "long"


def test_cost_threshold_is_exceeded_strictly() -> None:
    r = Router(recorders("main", "slow"), "main").route_by_cost({"slow": 0.5})
    for _ in range(64):
        r.observe("t", 0.5)
    assert r.explain(b"", type="t").lane == "main"  # equal is not "exceeds"
    r.observe("u", 0.75)
    assert r.explain(b"", type="u").lane == "slow"


def test_cost_default_cost_for_unknown_types() -> None:
    r = Router(recorders("main", "slow"), "main").route_by_cost({"slow": 0.5}, default_cost=1.0)
    d = r.explain(b"", type="unknown")
    assert d.lane == "slow"
    assert "no observations" in d.reason
    assert d.estimate is None
    for _ in range(64):
        r.observe("unknown", 0.01)
    assert r.explain(b"", type="unknown").lane == "main"  # observations replace the default


def test_ewma_decides_before_warmup_then_p95() -> None:
    r = Router(recorders("main", "slow"), "main").route_by_cost({"slow": 1.0})
    r.observe("t", 5.0)  # one slow sample: EWMA = 5.0
    d = r.explain(b"", type="t")
    assert d.lane == "slow"
    assert d.estimate == CostEstimate(ewma=5.0, p95=None, samples=1)
    assert "ewma" in d.reason
    for _ in range(31):
        r.observe("t", 0.001)  # the 32nd sample warms it up: p95 decides from now on
    e = r.cost("t")
    assert e is not None
    assert e.samples == 32
    assert e.statistic == "p95"
    assert e.p95 == pytest.approx(np.percentile([5.0] + [0.001] * 31, 95))


# ---- the estimator -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "draw", "true_p95"),
    [
        ("uniform", lambda g: g.uniform(0.0, 1.0), 0.95),
        ("exponential", lambda g: g.expovariate(10.0), math.log(20.0) / 10.0),
        ("lognormal", lambda g: g.lognormvariate(-3.0, 0.5), math.exp(-3.0 + 0.5 * 1.6448536)),
    ],
)
def test_estimator_p95_is_numpy_percentile_of_its_window(
    rng: random.Random, name: str, draw: Callable[[random.Random], float], true_p95: float
) -> None:
    est = CostEstimator()
    xs = [draw(rng) for _ in range(5000)]
    ewma = 0.0
    for i, x in enumerate(xs, 1):
        est.add(x)
        ewma = x if i == 1 else ewma + 0.1 * (x - ewma)
        if i >= est.warmup and (i % est.refresh == 0):
            window = xs[max(0, i - est.window) : i]
            e = est.estimate()
            assert e.p95 == pytest.approx(np.percentile(window, 95), rel=1e-12, abs=0), (rng, i)
            assert e.ewma == pytest.approx(ewma, rel=1e-9)
            assert e.samples == i
    # and the window's p95 is a fair estimate of the distribution's (512 samples: ~4.5 sigma)
    e = est.estimate()
    assert e.p95 is not None
    assert abs(e.p95 - true_p95) / true_p95 < 0.3, (rng, name, e.p95, true_p95)


def test_estimator_p95_lags_by_less_than_refresh_samples() -> None:
    est = CostEstimator(window=64, refresh=8, warmup=8)
    for _ in range(64):
        est.add(0.01)
    for _ in range(7):
        est.add(10.0)  # 7 of 64 slow: above 5%, but not yet recomputed
    assert est.estimate().p95 == pytest.approx(0.01)
    est.add(10.0)
    p95 = est.estimate().p95
    assert p95 is not None
    assert p95 > 1.0


def test_estimator_arguments() -> None:
    with pytest.raises(ValueError, match="alpha"):
        CostEstimator(alpha=0.0)
    with pytest.raises(TypeError, match="alpha"):
        CostEstimator(alpha=True)
    with pytest.raises(ValueError, match="warmup"):
        CostEstimator(window=8, warmup=9)
    with pytest.raises(ValueError, match="window"):
        CostEstimator(window=0)
    with pytest.raises(TypeError, match="refresh"):
        CostEstimator(refresh=1.5)  # type: ignore[arg-type]
    est = CostEstimator(window=4, warmup=1, refresh=1)
    for x in (4, 1, 3, 2, 0):  # ints accepted; the window keeps the last 4
        est.add(x)
    assert est.estimate() == CostEstimate(
        ewma=pytest.approx(3.1203),  # 4, 3.7, 3.63, 3.467, 3.1203  # type: ignore[arg-type]
        p95=pytest.approx(np.percentile([1, 3, 2, 0], 95)),  # type: ignore[arg-type]
        samples=5,
    )
    assert "samples=5" in repr(est)


def test_observe_from_four_threads_counts_every_sample() -> None:
    r = Router(recorders("main", "slow"), "main").route_by_cost({"slow": 1.0})
    n, threads = 50_000, 4
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            barrier.wait()
            for i in range(n):
                r.observe("shared", 0.001 * (i % 7))
                if i % 1000 == 0:
                    r.observe(f"own-{k}", 0.5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    e = r.cost("shared")
    assert e is not None
    assert e.samples == n * threads
    assert e.p95 == pytest.approx(0.006)
    for k in range(threads):
        own = r.cost(f"own-{k}")
        assert own is not None
        assert own.samples == n // 1000


def test_max_types_forgets_the_least_recently_observed() -> None:
    r = Router(recorders("main"), "main", max_types=16)
    for i in range(16):
        r.observe(f"t{i}", 0.1)
    r.observe("t0", 0.1)  # t0 is recent again; t1 is now the oldest
    r.observe("new", 0.1)  # full: the least recently observed eighth (2 types) goes
    costs = r.costs()
    assert len(costs) == 15
    assert "new" in costs
    assert "t0" in costs
    assert "t1" not in costs
    assert "t2" not in costs
    assert r.cost("t1") is None


@pytest.mark.parametrize(
    ("type_", "seconds", "exc", "match"),
    [
        ("t", -0.1, ValueError, "seconds must be a finite number >= 0, got -0.1"),
        ("t", math.nan, ValueError, "got nan"),
        ("t", math.inf, ValueError, "got inf"),
        ("t", True, TypeError, "seconds must be a number"),
        ("t", "1", TypeError, "seconds must be a number"),
        (1, 0.1, TypeError, "type must be a str"),
    ],
)
def test_observe_bad_input(type_: Any, seconds: Any, exc: type[Exception], match: str) -> None:
    r = Router(recorders("main"), "main")
    with pytest.raises(exc, match=match):
        r.observe(type_, seconds)
    assert r.costs() == {}  # a bad first observation tracks nothing
    r.observe("t", 0.1)
    with pytest.raises(ValueError, match="got -1"):
        r.observe("t", -1)  # a known type: refused too, the estimate unchanged
    assert r.cost("t") == CostEstimate(ewma=0.1, p95=None, samples=1)


# ---- explain ---------------------------------------------------------------------------------


def make_full_router(lanes: dict[str, Any]) -> Router:
    r = Router(lanes, "main")
    r.route_priority("critical", "crit")
    r.route_type("video.*", "video")
    r.route_when(lambda m: m.key == "vip", "crit", name="is_vip")
    r.route_by_cost({"long": 1.0, "compute": 0.05})
    return r


def test_explain_each_rule_kind() -> None:
    r = make_full_router(recorders("main", "crit", "video", "long", "compute"))
    for _ in range(64):
        r.observe("render", 1.8)
    assert r.explain(b"", priority="critical") == RouteDecision(
        "crit", "priority 'critical'", 0, "priority is 'critical'"
    )
    assert r.explain(b"", type="video.hd") == RouteDecision(
        "video", "type 'video.*'", 1, "type 'video.hd' matches 'video.*'"
    )
    assert r.explain(b"", key="vip") == RouteDecision(
        "crit", "when is_vip", 2, "predicate is_vip returned a true value"
    )
    d = r.explain(Message(b"", type="render"))
    assert (d.lane, d.rule, d.index) == ("long", "cost long > 1s, compute > 0.05s", 3)
    assert d.reason == "cost p95 1.8s > 1s (long) for type 'render' over 64 samples"
    assert d.estimate == CostEstimate(ewma=pytest.approx(1.8), p95=pytest.approx(1.8), samples=64)  # type: ignore[arg-type]
    assert r.explain(b"", type="other") == RouteDecision(
        "main", "default", None, "no rule matched: default lane 'main'"
    )


def test_explain_has_no_side_effects_and_agrees_with_publish(rng: random.Random) -> None:
    lanes = recorders("main", "crit", "video", "long", "compute")
    r = make_full_router(lanes)
    for t, s in (("render", 2.0), ("thumb", 0.1), ("ping", 0.001)):
        for _ in range(40):
            r.observe(t, s)
    before = r.costs()
    types = ["render", "thumb", "ping", "video.x", "video", "other", ""]
    for _ in range(300):
        m = Message(
            b"x",
            type=rng.choice(types),
            priority=rng.choice(fastq._core.PRIORITIES),
            key=rng.choice([None, "vip", "bob"]),
        )
        sent = sum(len(x.calls) for x in lanes.values())
        decision = r.explain(m)
        assert sum(len(x.calls) for x in lanes.values()) == sent  # explain sent nothing
        r.publish(m)
        assert lane_of(lanes, m.id) == decision.lane, (rng, m)
    assert r.costs() == before  # neither explain nor publish observed anything
    r2 = make_full_router(recorders("main", "crit", "video", "long", "compute"))
    r2.explain(Message(b"", type="render"))
    assert r2.costs() == {}
    assert all(not x.calls for x in r2.lanes.values())


# ---- publishing ----------------------------------------------------------------------------


def test_publish_many_one_call_per_lane_and_input_order(rng: random.Random) -> None:
    lanes = recorders("main", "a", "b")
    r = Router(lanes, "main", enrich=False).route_type("a.*", "a").route_type("b.*", "b")
    msgs = [Message(i.to_bytes(2, "big"), type=rng.choice(["a.x", "b.y", "c"])) for i in range(200)]
    out = r.publish_many(iter(msgs))  # any iterable
    assert out == [f"{lane_of(lanes, m.id)}:{m.id}" for m in msgs]
    for name, rec in lanes.items():
        assert [kind for kind, _ in rec.calls] == (["put_many"] if rec.sent else [])
        expected = [m for m in msgs if r.explain(m).lane == name]
        assert rec.sent == expected  # same messages (enrich=False: the objects), input order
    assert r.publish_many([]) == []


def test_publish_many_with_real_queues_and_topics() -> None:
    q, dq = Queue("q"), Queue("d")
    topic = Topic("t", partitions=4)
    r = Router({"q": q, "t": topic, "d": dq}, "d").route_type("q.*", "q").route_type("t.*", "t")
    items = [
        Message(b"1", type="q.a"),
        Message(b"2", type="t.a", key="k1"),
        Message(b"3", type="x"),
        Message(b"4", type="q.b"),
        Message(b"5", type="t.b", key="k1"),
    ]
    out = r.publish_many(items)
    assert out[0] == items[0].id
    assert out[3] == items[3].id
    assert out[2] == items[2].id
    p = fastq.partition("k1", 4)
    assert out[1] == (p, 0)
    assert out[4] == (p, 1)
    assert [q.get(0).message.payload for _ in range(2)] == [b"1", b"4"]
    assert dq.get(0).message.payload == b"3"
    recs = topic.consumer("g").poll()
    assert [(x.partition, x.payload) for x in recs] == [(p, b"2"), (p, b"5")]
    assert recs[0].message.headers["fastq-route"] == "type 't.*' -> t"


def test_publish_accepts_payloads_and_message_fields() -> None:
    q, v = Queue("q"), Queue("v")
    r = Router({"q": q, "v": v}, "q").route_type("video.*", "v")
    mid = r.publish(b"raw", type="video.hd", key="k", priority="high", headers={"h": "1"})
    d = v.get(0)
    assert d.message.id == mid
    assert (d.message.payload, d.message.key, d.message.priority) == (b"raw", "k", "high")
    assert d.message.headers["h"] == "1"
    with pytest.raises(TypeError, match="colour"):
        r.publish(b"raw", colour="red")
    with pytest.raises(ValueError, match="priority"):
        r.publish(b"raw", priority="urgent")
    # with a predicate rule present the message is built before routing
    r.route_when(lambda m: m.payload == b"p", "v", name="is_p")
    r.publish(b"p", type="other", headers={"h": "2"})
    got = v.get(0).message
    assert (got.payload, got.headers["h"], got.headers["fastq-route"]) == (
        b"p",
        "2",
        "when is_p -> v",
    )
    assert len(q) == 0


def test_topic_lane_publish_uses_the_key() -> None:
    topic = Topic("events", partitions=8)
    r = Router({"events": topic, "q": Queue("q")}, "q").route_type("evt.*", "events")
    results = [r.publish(f"{i}".encode(), type="evt.x", key=f"user-{i % 3}") for i in range(9)]
    for i, (partition, _offset) in enumerate(results):
        assert partition == fastq.partition(f"user-{i % 3}", 8)
    by_key: dict[str, list[int]] = {}
    for i, (_p, off) in enumerate(results):
        by_key.setdefault(f"user-{i % 3}", []).append(off)
    assert all(offs == sorted(offs) for offs in by_key.values())


def test_apublish_waits_for_room_on_a_full_queue_and_publishes_topics() -> None:
    q = Queue("q", maxsize=1)
    topic = Topic("t", partitions=2)
    r = Router({"q": q, "t": topic}, "q").route_type("t", "t")

    async def main() -> None:
        first = await r.apublish(b"1")
        d = q.get(0)
        assert d.message.id == first
        d.ack()
        q.put(b"filler", block=False)  # now full
        task = asyncio.ensure_future(r.apublish(b"2", type="x"))
        await asyncio.sleep(0)
        assert not task.done()  # waiting for room, the loop is free
        q.get(0).ack()
        mid = await asyncio.wait_for(task, 30)
        assert q.get(0).message.id == mid
        part, off = await r.apublish(b"3", type="t", key="k")
        assert (part, off) == (fastq.partition("k", 2), 0)

    asyncio.run(main())


# ---- enrichment ------------------------------------------------------------------------------


def test_enrichment_headers() -> None:
    clock = FakeClock(1_700_000_000.1239)
    q, v = Queue("q"), Queue("v")
    r = Router({"q": q, "v": v}, "q", schema_version=3, clock=clock).route_type("video.*", "v")
    r.publish(b"a", type="video.hd")
    h = dict(v.get(0).message.headers)
    assert h == {
        "fastq-routed-at": "1700000000.123",
        "fastq-route": "type 'video.*' -> v",
        "fastq-schema-version": "3",
    }
    clock.advance(2.5)
    original = Message(
        b"b",
        key=7,
        headers={"user": "x", "fastq-route": "stale", "fastq-schema-version": "1"},
        deadline=2_000_000_000.5,
        idempotency_key="idem",
    )
    mid = r.publish(original)
    got = q.get(0).message
    assert mid == original.id
    assert (got.id, got.timestamp, got.key, got.deadline, got.idempotency_key) == (
        original.id,
        original.timestamp,
        7,
        original.deadline,
        "idem",
    )
    assert dict(got.headers) == {
        "user": "x",
        "fastq-route": "default -> q",  # routing headers are the router's: overwritten
        "fastq-routed-at": "1700000002.623",
        "fastq-schema-version": "1",  # describes the payload: the message's own is kept
    }


def test_no_enrichment_sends_the_message_itself() -> None:
    rec = recorders("main")
    r = Router(rec, "main", enrich=False)
    m = Message(b"x", headers={"a": "b"})
    r.publish(m)
    assert rec["main"].sent[0] is m
    r.publish(b"y")
    assert dict(rec["main"].sent[1].headers) == {}
    rec2 = recorders("main")
    Router(rec2, "main").publish(b"z")
    assert set(rec2["main"].sent[0].headers) == {"fastq-routed-at", "fastq-route"}


# ---- introspection and bad input -------------------------------------------------------------


def test_lanes_rules_and_repr() -> None:
    q = Queue("q")
    t = Topic("t", partitions=1)
    r = Router({"q": q, "t": t}, "t")
    assert dict(r.lanes) == {"q": q, "t": t}
    with pytest.raises(TypeError):
        r.lanes["x"] = q  # type: ignore[index]
    assert r.default == "t"
    assert r.rules == ()
    r.route_priority("low", "q").route_when(callable, "q", name="c").route_by_cost({"q": 2})
    assert r.rules == ("priority 'low'", "when c", "cost q > 2s")
    assert repr(r) == (
        "Router(lanes=['q', 't'], default='t', rules=[\"priority 'low'\", 'when c', 'cost q > 2s'])"
    )


def test_a_lane_with_put_and_publish_is_sent_with_put() -> None:
    class Both(Recorder):
        def publish(self, message: Message) -> None:  # pragma: no cover - must not be used
            raise AssertionError("publish used")

    lane = Both("b")
    Router({"b": lane}, "b").publish(b"x")
    assert len(lane.sent) == 1


class NotALane:
    pass


def _router(**kw: Any) -> Router:
    args: dict[str, Any] = {"lanes": recorders("main", "slow"), "default": "main"}
    args.update(kw)
    return Router(args.pop("lanes"), args.pop("default"), **args)


@pytest.mark.parametrize(
    ("build", "exc", "match"),
    [
        (lambda: _router(lanes={}), ValueError, "lanes must name at least one lane"),
        (lambda: _router(lanes=[("main", Queue("q"))]), TypeError, "lanes must be a mapping"),
        (lambda: _router(lanes={"main": NotALane()}), TypeError, "lane 'main' must be a Queue"),
        (lambda: _router(lanes={"": Queue("q")}, default=""), TypeError, "lane names"),
        (
            lambda: _router(default="nope"),
            ValueError,
            "unknown lane 'nope'; the lanes are 'main', 'slow'",
        ),
        (lambda: _router(default=None), TypeError, "default must be a lane name"),
        (lambda: _router(enrich=1), TypeError, "enrich must be a bool"),
        (lambda: _router(schema_version=1.5), TypeError, "schema_version"),
        (lambda: _router(schema_version=""), ValueError, "schema_version"),
        (lambda: _router(clock=5), TypeError, "clock must be callable"),
        (lambda: _router(max_types=0), ValueError, "max_types must be >= 1, got 0"),
        (lambda: _router(max_types=True), TypeError, "max_types"),
        (lambda: _router().route_priority("urgent", "slow"), ValueError, "priority must be one of"),
        (lambda: _router().route_priority(1, "slow"), TypeError, "priority must be a str"),
        (lambda: _router().route_priority("low", "fast"), ValueError, "unknown lane 'fast'"),
        (lambda: _router().route_type(b"x.*", "slow"), TypeError, "pattern must be a str"),
        (lambda: _router().route_type("x.*", "fast"), ValueError, "unknown lane 'fast'"),
        (
            lambda: _router().route_when("not callable", "slow"),
            TypeError,
            "predicate must be callable",
        ),
        (lambda: _router().route_when(callable, "fast"), ValueError, "unknown lane 'fast'"),
        (lambda: _router().route_when(callable, "slow", name=""), TypeError, "name"),
        (lambda: _router().route_by_cost({}), ValueError, "thresholds must name at least one"),
        (
            lambda: _router().route_by_cost([("slow", 1.0)]),
            TypeError,
            "thresholds must be a mapping",
        ),
        (lambda: _router().route_by_cost({"fast": 1.0}), ValueError, "unknown lane 'fast'"),
        (
            lambda: _router().route_by_cost({"slow": 0}),
            ValueError,
            r"thresholds\['slow'\] .* got 0",
        ),
        (lambda: _router().route_by_cost({"slow": -1.0}), ValueError, r"thresholds\['slow'\]"),
        (lambda: _router().route_by_cost({"slow": math.nan}), ValueError, "got nan"),
        (lambda: _router().route_by_cost({"slow": math.inf}), ValueError, "got inf"),
        (lambda: _router().route_by_cost({"slow": True}), TypeError, r"thresholds\['slow'\]"),
        (lambda: _router().route_by_cost({"slow": 1, "main": 1.0}), ValueError, "repeats"),
        (lambda: _router().route_by_cost({"slow": 1}, default_cost=-1), ValueError, "default_cost"),
    ],
)
def test_bad_input(build: Callable[[], object], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        build()


def test_a_failed_rule_adds_nothing() -> None:
    r = _router().route_type("a", "slow")
    with pytest.raises(ValueError, match="unknown lane"):
        r.route_by_cost({"slow": 1.0, "fast": 2.0})
    assert r.rules == ("type 'a'",)


def test_publish_many_falls_back_to_one_send_per_message() -> None:
    class PutOnly:
        def __init__(self) -> None:
            self.got: list[Message] = []

        def put(self, message: Message) -> int:
            self.got.append(message)
            return len(self.got)

    lane = PutOnly()
    r = Router({"p": lane}, "p")
    assert r.publish_many([b"a", b"b", Message(b"c")], type="t") == [1, 2, 3]
    assert [(m.payload, m.type) for m in lane.got] == [(b"a", "t"), (b"b", "t"), (b"c", "t")]


def test_publish_many_with_a_predicate_rule_decides_per_message() -> None:
    lanes = recorders("main", "odd")
    r = Router(lanes, "main", enrich=False)
    r.route_when(lambda m: m.payload[0] % 2 == 1, "odd", name="odd")
    msgs = [Message(bytes([i]), type="same") for i in range(10)]  # one type, lanes differ
    r.publish_many(msgs)
    assert lanes["odd"].sent == msgs[1::2]
    assert lanes["main"].sent == msgs[0::2]
