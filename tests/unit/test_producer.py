"""fastq.pipeline.producer.Producer: token bucket through the producer (fake clock), the rate
falling above the high watermark, shedding order by priority, blocking and its max_block,
schema validation, idempotency keys with the queue's dedup window, trace context, batches,
asyncio, statistics and bad input."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import threading
import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastq
from fastq import FakeClock, Message, Queue, Topic
from fastq.errors import Full, Overloaded
from fastq.pipeline import producer as producer_mod
from fastq.pipeline.producer import Producer, ProducerStatistics

PRIOS = ("critical", "high", "normal", "low")


def filled(n: int, **kw: Any) -> Queue:
    q = Queue("q", maxsize=None, **kw)
    for i in range(n):
        q.put(i)
    return q


class FakeRouter:
    """What the producer needs of a fastq.Router: publish/publish_many/apublish and lanes."""

    def __init__(self, lanes: dict[str, Queue]) -> None:
        self.lanes = lanes
        self.name = "router"
        self.seen: list[Any] = []

    def _lane(self, m: Message) -> Queue:
        return self.lanes["fast" if m.priority == "critical" else "slow"]

    def publish(self, message: Any, **fields: Any) -> str:
        self.seen.append(message)
        m = message if type(message) is Message else Message(message, **fields)
        return self._lane(m).put(m)

    def publish_many(self, messages: list[Any]) -> list[str]:
        return [self.publish(m) for m in messages]

    async def apublish(self, message: Any, **fields: Any) -> str:
        return self.publish(message, **fields)


# ---- plain sending, stamping, dedup ----------------------------------------------------------


def test_send_returns_the_targets_result_and_stamps_idempotency_keys() -> None:
    q = Queue("q")
    p = Producer(q)
    mid = p.send(b"a", type="t", priority="high", headers={"h": "1"})
    d = q.get(timeout=0)
    assert d.message.id == mid
    assert d.message.type == "t"
    assert d.message.priority == "high"
    assert d.message.headers == {"h": "1"}
    assert isinstance(d.message.idempotency_key, str)
    assert d.message.idempotency_key
    # a Message without a key gets its own id as the key; one with a key keeps it
    m = Message(b"b")
    assert p.send(m) == m.id
    got = q.get(timeout=0).message
    assert got.idempotency_key == m.id
    assert got.timestamp == m.timestamp
    k = Message(b"c", idempotency_key="mine")
    p.send(k)
    assert q.get(timeout=0).message is k
    # payloads get distinct keys
    p.send(b"d")
    p.send(b"d")
    keys = {q.get(timeout=0).message.idempotency_key for _ in range(2)}
    assert len(keys) == 2


def test_same_message_sent_twice_is_stored_once_with_a_dedup_window() -> None:
    clock = FakeClock()
    q = Queue("q", dedup_window=60.0, clock=clock)
    p = Producer(q)
    m = Message({"order": 1})
    first = p.send(m)
    again = p.send(m)  # a retry of the same send
    assert first == again == m.id
    assert len(q) == 1
    assert q.statistics().deduplicated_total == 1
    assert p.statistics().sent == 2


def test_topic_target_returns_partition_and_offset() -> None:
    t = Topic("t", partitions=2)
    p = Producer(t)
    part, off = p.send(b"x", key="k")
    assert (part, off) == (fastq.partition("k", 2), 0)
    assert p.send_many([Message(b"y", key="k"), b"z"])[0] == (part, 1)


# ---- token bucket through the producer -------------------------------------------------------


@pytest.mark.parametrize(("rate", "burst", "seconds"), [(100.0, 10.0, 5.0), (7.0, 1.0, 3.0)])
def test_token_bucket_accuracy_with_a_fake_clock(rate: float, burst: float, seconds: float) -> None:
    clock = FakeClock()
    q = Queue("q", maxsize=None)
    p = Producer(q, rate=rate, burst=burst, policy="raise", clock=clock)
    step = 0.001
    accepted = refused = 0
    reasons: set[str] = set()
    for _ in range(int(seconds / step) + 1):
        while True:
            try:
                p.send(b"x")
            except Overloaded as exc:
                reasons.add(exc.reason.split(":")[0])
                refused += 1
                break
            accepted += 1
        clock.advance(step)
    expected = burst + rate * seconds
    assert reasons == {"rate limit"}
    assert abs(accepted - expected) <= 1, (accepted, expected)
    assert len(q) == accepted
    s = p.statistics()
    assert s.sent == accepted
    assert s.overloaded_total == refused
    assert s.shed == dict.fromkeys(PRIOS, 0)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(1, 1000),
    burst=st.integers(1, 50),
    steps=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 30)), max_size=40),
)
def test_sends_admitted_match_a_token_bucket_model(
    rate: int, burst: int, steps: list[tuple[int, int]]
) -> None:
    """Each step advances the fake clock (ms) and tries some sends (policy="raise"): the
    producer admits exactly what a token bucket (the C arithmetic, in ns) would."""
    clock = FakeClock()
    q = Queue("q", maxsize=None)
    p = Producer(q, rate=rate, burst=burst, policy="raise", clock=clock)
    tokens, last, per_ns = float(burst), 0, rate * 1e-9
    for ms, tries in steps:
        clock.advance(ms / 1000)
        now = int(clock() * 1e9)
        tokens = min(float(burst), tokens + (now - last) * per_ns)
        last = now
        for _ in range(tries):
            expected = tokens >= 1.0
            if expected:
                tokens -= 1.0
            try:
                p.send(b"x")
                admitted = True
            except Overloaded:
                admitted = False
            assert admitted == expected
    assert len(q) == p.statistics().sent


def test_block_sleeps_for_tokens_on_the_producers_clock() -> None:
    clock = FakeClock()
    q = Queue("q", maxsize=None)
    p = Producer(q, rate=10.0, burst=1.0, clock=clock, sleep=clock.advance)
    for _ in range(21):
        p.send(b"x")
    assert len(q) == 21
    assert clock() == pytest.approx(2.0, abs=1e-6)  # 20 waits of 0.1 s
    assert p.statistics().blocked_seconds == pytest.approx(2.0, abs=1e-6)


def test_block_raises_overloaded_after_max_block() -> None:
    clock = FakeClock()
    q = Queue("q", maxsize=None)
    p = Producer(q, rate=1.0, burst=1.0, max_block=0.5, clock=clock, sleep=clock.advance)
    p.send(b"x")
    with pytest.raises(Overloaded) as info:
        p.send(b"y", priority="critical")
    assert "rate limit" in info.value.reason
    assert "max_block" in info.value.reason
    assert info.value.priority == "critical"
    assert clock() == pytest.approx(0.5)
    assert len(q) == 1
    s = p.statistics()
    assert s.overloaded_total == 1
    assert s.blocked_seconds == pytest.approx(0.5)


def test_a_fake_clock_wakes_a_thread_waiting_for_tokens() -> None:
    clock = FakeClock()
    q = Queue("q", maxsize=None)
    p = Producer(q, rate=1.0, burst=1.0, clock=clock)
    p.send(b"first")
    done = threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        try:
            p.send(b"second")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        done.set()

    t = threading.Thread(target=second)
    t.start()
    while not done.wait(0.01):  # time moves only when advanced: the thread sends after 1 s
        clock.advance(0.05)
    t.join()
    assert not errors
    assert len(q) == 2
    assert clock() >= 1.0


# ---- depth feedback --------------------------------------------------------------------------


def test_rate_falls_linearly_above_the_high_watermark() -> None:
    clock = FakeClock()
    q = filled(0)
    p = Producer(q, rate=100.0, burst=1.0, high_watermark=100, policy="raise", clock=clock)
    p.send(b"x")
    assert p.statistics().rate == 100.0
    assert p.statistics().depth == 0
    for depth, rate in ((150, 55.0), (199, 100.0 * (1 - 0.9 * 0.99)), (250, 10.0), (99, 100.0)):
        while len(q) < depth:
            q.put(0)
        while len(q) > depth:
            q.get(timeout=0).ack()
        clock.advance(1.0)  # a full bucket again
        p.send(b"x", priority="critical")
        assert p.statistics().rate == pytest.approx(rate)
        # the slower rate is what the bucket refills at
        q.get(timeout=0).ack()  # keep the depth where it was
        with pytest.raises(Overloaded):
            p.send(b"x", priority="critical")
        clock.advance(0.9 / rate)
        with pytest.raises(Overloaded):
            p.send(b"x", priority="critical")
        clock.advance(0.2 / rate)
        p.send(b"x", priority="critical")
        q.get(timeout=0).ack()


def test_shedding_order_by_priority_under_overload() -> None:
    q = filled(0)
    p = Producer(q, high_watermark=10, policy="shed")
    sent: dict[int, list[str]] = {}
    refusals: list[tuple[str, str | None, bool]] = []
    for depth in (9, 19, 20, 29, 30, 39, 40, 1000):
        while len(q) < depth:
            q.put(0)
        ok = []
        for prio in PRIOS:
            try:
                p.send(b"x", priority=prio)
            except Overloaded as exc:
                refusals.append((prio, exc.priority, "shed" in exc.reason))
            else:
                ok.append(prio)
                q.get(timeout=0).ack()  # the first ready message: keep the depth
        sent[depth] = ok
    assert all(p1 == p2 and shed for p1, p2, shed in refusals)
    assert sent[9] == sent[19] == ["critical", "high", "normal", "low"]
    assert sent[20] == sent[29] == ["critical", "high", "normal"]
    assert sent[30] == sent[39] == ["critical", "high"]
    assert sent[40] == sent[1000] == ["critical"]
    s = p.statistics()
    assert s.shed == {"critical": 0, "high": 2, "normal": 4, "low": 6}
    assert s.overloaded_total == 12


def test_policy_raise_refuses_without_counting_shed() -> None:
    q = filled(20)
    p = Producer(q, high_watermark=10, policy="raise")
    with pytest.raises(Overloaded) as info:
        p.send(b"x", priority="low")
    assert "refused" in info.value.reason
    p.send(b"x", priority="normal")
    s = p.statistics()
    assert s.shed["low"] == 0
    assert s.overloaded_total == 1
    assert len(q) == 21


def test_block_waits_for_the_depth_to_fall() -> None:
    clock = FakeClock()
    q = filled(25)
    calls = []

    def consume_while_waiting(seconds: float) -> None:  # a consumer at work while we wait
        calls.append(seconds)
        clock.advance(seconds)
        q.get(timeout=0).ack()

    p = Producer(q, high_watermark=10, clock=clock, sleep=consume_while_waiting)
    p.send(b"x", priority="normal")  # 25 < 30: goes at once
    assert not calls
    p.send(b"x", priority="low")  # waits until the depth is below 20
    assert len(calls) == 7  # 26 -> 19
    assert len(q) == 20
    assert p.statistics().blocked_seconds == pytest.approx(sum(calls))
    assert p.statistics().overloaded_total == 0


def test_block_on_depth_raises_after_max_block() -> None:
    clock = FakeClock()
    q = filled(20)
    p = Producer(q, high_watermark=10, max_block=1.0, clock=clock, sleep=clock.advance)
    with pytest.raises(Overloaded) as info:
        p.send(b"x", priority="low")
    assert "depth 20" in info.value.reason
    assert "max_block" in info.value.reason
    assert clock() == pytest.approx(1.0)
    assert len(q) == 20


def test_critical_into_a_full_queue_blocks_then_raises_even_when_shedding() -> None:
    q = Queue("q", maxsize=2)
    q.put(0)
    q.put(1)
    p = Producer(q, high_watermark=100, policy="shed", max_block=0.05)
    with pytest.raises(Overloaded) as info:
        p.send(b"x", priority="low")  # below every watermark, but the queue is full: shed
    assert "full" in info.value.reason
    assert p.statistics().shed["low"] == 1
    with pytest.raises(Overloaded) as info:
        p.send(b"x", priority="critical")  # never shed: waits max_block for room
    assert isinstance(info.value.__cause__, Full)
    assert info.value.priority == "critical"
    assert p.statistics().shed["critical"] == 0
    assert len(q) == 2


def test_critical_waits_for_room_and_goes_when_a_consumer_frees_it() -> None:
    q = Queue("q", maxsize=1)
    q.put(0)
    p = Producer(q, max_block=60.0)
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(p.send(b"x", priority="critical")))
    t.start()
    q.get(timeout=5).ack()  # frees the room the producer waits for
    t.join(30)
    assert result
    assert q.get(timeout=0).message.id == result[0]


def test_topic_depth_is_the_largest_group_lag() -> None:
    t = Topic("t", partitions=2)
    for i in range(25):
        t.publish(i)
    c = t.consumer("g", auto_commit=False)
    p = Producer(t, high_watermark=10, policy="shed")
    with pytest.raises(Overloaded):
        p.send(b"x", priority="low")  # lag 25 >= 20
    assert p.statistics().depth == 25
    p.send(b"x", priority="normal")
    records = c.poll(100)
    c.commit()
    assert len(records) == 26
    for _ in range(producer_mod.SAMPLE_EVERY + 1):  # re-read at least once
        p.send(b"x", priority="low")
    depth = p.statistics().depth
    assert depth is not None
    assert depth < 20


def test_router_depth_is_the_deepest_lane() -> None:
    fast, slow = Queue("fast", maxsize=None), filled(30)
    router = FakeRouter({"fast": fast, "slow": slow})
    p = Producer(router, high_watermark=10, policy="shed")
    with pytest.raises(Overloaded):
        p.send(b"x", priority="normal")  # the slow lane is 3x the watermark deep
    assert p.send(b"x", priority="critical") == fast.get(timeout=0).message.id
    assert p.statistics().depth == 30


def test_a_payload_reaches_a_router_with_its_fields() -> None:
    fast, slow = Queue("fast"), Queue("slow")
    router = FakeRouter({"fast": fast, "slow": slow})
    p = Producer(router, rate=100.0)
    mid = p.send(b"x", priority="critical", type="t")
    assert router.seen == [b"x"]  # the router builds the message itself, once
    m = fast.get(timeout=0).message
    assert (m.id, m.type) == (mid, "t")
    assert m.idempotency_key
    p.send(Message(b"y"))
    assert slow.get(timeout=0).message.idempotency_key is not None
    with pytest.raises(ValueError, match="priority"):
        p.send(b"z", priority="urgent")


def test_with_the_real_router() -> None:
    router_mod = pytest.importorskip("fastq.pipeline.router")
    fast, slow = Queue("fast", maxsize=None), filled(0)
    router = router_mod.Router({"fast": fast, "slow": slow}, default="slow")
    router.route_priority("critical", "fast")
    p = Producer(router, high_watermark=5, policy="shed")
    p.send(b"a", priority="critical")
    p.send(Message(b"b"))
    for i in range(10):
        slow.put(i)
    for _ in range(producer_mod.SAMPLE_EVERY):
        try:
            p.send(b"c", priority="low")
        except Overloaded:
            break
    else:
        pytest.fail("a low message was not shed with the slow lane at 2x the watermark")
    m = fast.get(timeout=0).message
    assert m.payload == b"a"
    assert m.idempotency_key
    assert p.statistics().shed["low"] == 1
    ids = p.send_many([Message(b"d", priority="critical"), Message(b"e", priority="critical")])
    assert [fast.get(timeout=0).message.id for _ in ids] == ids


def test_other_targets_with_put_or_publish() -> None:
    class Putter:
        def __init__(self) -> None:
            self.items: list[Message] = []

        def put(self, message: Message) -> int:
            self.items.append(message)
            return len(self.items)

        def __len__(self) -> int:
            return len(self.items)

    class Publisher:
        def publish(self, message: Message) -> str:
            return f"ok:{message.payload!r}"

    sink = Putter()
    p = Producer(sink, high_watermark=1, policy="shed")
    assert p.send(b"a") == 1
    assert p.send_many([b"b"]) == [2]  # depth 2 >= 2 x 1 sheds low only
    with pytest.raises(Overloaded):
        p.send(b"c", priority="low")
    assert all(m.idempotency_key for m in sink.items)
    pub = Producer(Publisher())
    assert pub.send(b"x") == "ok:b'x'"
    assert asyncio.run(pub.asend(b"y")) == "ok:b'y'"


# ---- schemas ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Order:
    id: int
    price: float
    note: str | None = None
    tags: list[str] = dataclasses.field(default_factory=list)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"price": 1.0}, "'id' is missing"),
        ({"id": 1, "price": 1.0, "colour": "red"}, "unexpected field 'colour'"),
        ({"id": "1", "price": 1.0}, "'id' must be int"),
        ({"id": True, "price": 1.0}, "'id' must be int"),
        ({"id": 1, "price": "cheap"}, "'price' must be int | float"),
        ({"id": 1, "price": 1.0, "note": 3}, "'note' must be str | NoneType"),
        ({"id": 1, "price": 1.0, "tags": "a"}, "'tags' must be list"),
        ([1, 2], "mapping"),
    ],
)
def test_dataclass_schema_rejects_naming_the_field(payload: Any, field: str) -> None:
    q = Queue("q")
    p = Producer(q, schema=Order)
    with pytest.raises(ValueError, match="Order") as info:
        p.send(payload)
    assert field in str(info.value)
    assert len(q) == 0
    assert p.statistics().validation_errors == 1
    assert p.statistics().sent == 0


def test_dataclass_schema_accepts_valid_payloads_and_instances() -> None:
    q = Queue("q")
    p = Producer(q, schema=Order)
    p.send({"id": 1, "price": 2})  # an int is a fine float
    p.send({"id": 1, "price": 2.5, "note": None, "tags": ["a"]})
    p.send(Message({"id": 2, "price": 1.0}, type="order"))
    p.send(Order(3, 1.0))
    assert len(q) == 4


def test_callable_schema() -> None:
    def positive(payload: Any) -> bool:
        if not isinstance(payload, int):
            raise TypeError(f"amount must be an int, got {type(payload).__name__}")
        return payload > 0

    q = Queue("q")
    p = Producer(q, schema=positive)
    p.send(5)
    with pytest.raises(ValueError, match=r"rejected by .*positive$"):
        p.send(-1)
    with pytest.raises(ValueError, match="amount must be an int"):
        p.send("x")
    assert len(q) == 1
    assert p.statistics().validation_errors == 2


@pytest.mark.msgspec
def test_msgspec_struct_schema() -> None:
    import msgspec

    class User(msgspec.Struct):  # type: ignore[misc,name-defined]
        name: str
        age: int

    q = Queue("q")
    p = Producer(q, schema=User)
    p.send({"name": "a", "age": 3})
    p.send(b'{"name": "b", "age": 4}')  # JSON bytes are checked by decoding
    p.send(User("c", 5))
    with pytest.raises(ValueError, match="field 'age'"):
        p.send({"name": "a", "age": "old"})
    with pytest.raises(ValueError, match="name"):
        p.send({"age": 1})
    with pytest.raises(ValueError, match="User"):
        p.send(b"not json")
    assert len(q) == 3


class _ValidationError(ValueError):
    """pydantic.ValidationError's shape: a ValueError with errors() -> [{loc, msg}]."""

    def errors(self) -> list[dict[str, Any]]:
        return [{"loc": ("qty",), "msg": "Input should be a valid integer"}]


class _Item:
    """A pydantic-style model (pydantic is not a dependency): the producer only calls the
    class's ``model_validate`` and reads ``errors()`` from what it raises."""

    @classmethod
    def model_validate(cls, payload: Any) -> _Item:
        if not isinstance(payload.get("qty"), int):
            raise _ValidationError("1 validation error for Item")
        return cls()


def test_pydantic_style_schema() -> None:
    q = Queue("q")
    p = Producer(q, schema=_Item)
    p.send({"sku": "a", "qty": 1})
    p.send(_Item())  # an instance is valid as it is
    with pytest.raises(ValueError, match="payload does not match _Item: field 'qty'"):
        p.send({"sku": "a", "qty": "many"})
    assert len(q) == 2


# ---- trace context ---------------------------------------------------------------------------


@pytest.fixture
def fake_otel(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """opentelemetry.trace / opentelemetry.propagate stand-ins; state["valid"] says whether
    a span is current."""
    state: dict[str, Any] = {"valid": True, "injected": 0}

    class Ctx:
        @property
        def is_valid(self) -> bool:
            return bool(state["valid"])

    class Span:
        def get_span_context(self) -> Ctx:
            return Ctx()

    def inject(carrier: dict[str, str]) -> None:
        state["injected"] += 1
        carrier["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        carrier["tracestate"] = "congo=t61rcWkgMzE"

    root = types.ModuleType("opentelemetry")
    trace = types.ModuleType("opentelemetry.trace")
    propagate = types.ModuleType("opentelemetry.propagate")
    context = types.ModuleType("opentelemetry.context")
    trace.get_current_span = lambda: Span()  # type: ignore[attr-defined]
    propagate.inject = inject  # type: ignore[attr-defined]
    # the current context: empty while no span is attached (the producer's cheap first test)
    context.get_current = lambda: {"span": 1} if state["valid"] else {}  # type: ignore[attr-defined]
    root.trace = trace  # type: ignore[attr-defined]
    root.propagate = propagate  # type: ignore[attr-defined]
    root.context = context  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "opentelemetry", root)
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", trace)
    monkeypatch.setitem(sys.modules, "opentelemetry.propagate", propagate)
    monkeypatch.setitem(sys.modules, "opentelemetry.context", context)
    monkeypatch.setattr(producer_mod, "_OTEL", False)  # look it up again
    return state


def test_traceparent_is_injected_when_a_span_is_current(fake_otel: dict[str, Any]) -> None:
    q = Queue("q")
    p = Producer(q)
    p.send(b"a")
    h = q.get(timeout=0).message.headers
    assert h["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert h["tracestate"] == "congo=t61rcWkgMzE"
    # what the message carries wins; other headers stay
    p.send(Message(b"b", headers={"traceparent": "mine", "x": "1"}))
    m = q.get(timeout=0).message
    assert m.headers["traceparent"] == "mine"
    assert m.headers["x"] == "1"
    assert m.headers["tracestate"] == "congo=t61rcWkgMzE"
    assert m.idempotency_key == m.id
    p.send(b"c", headers={"y": "2"})
    assert set(q.get(timeout=0).message.headers) == {"y", "traceparent", "tracestate"}
    fake_otel["valid"] = False  # no current span: nothing added, nothing injected
    n = fake_otel["injected"]
    p.send(b"d")
    assert dict(q.get(timeout=0).message.headers) == {}
    assert fake_otel["injected"] == n


def test_no_trace_headers_without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in ("opentelemetry", "opentelemetry.propagate", "opentelemetry.trace",
                "opentelemetry.context"):
        monkeypatch.setitem(sys.modules, mod, None)  # import fails (even if installed)
    monkeypatch.setattr(producer_mod, "_OTEL", False)
    q = Queue("q")
    Producer(q).send(b"a")
    assert dict(q.get(timeout=0).message.headers) == {}
    assert producer_mod._OTEL is None


# ---- batches ---------------------------------------------------------------------------------


def test_send_many_unguarded_is_one_batch_in_order() -> None:
    q = Queue("q")
    p = Producer(q)
    ids = p.send_many([b"a", Message(b"b"), b"c"])
    got = [q.get(timeout=0).message for _ in range(3)]
    assert [m.id for m in got] == ids
    assert [m.payload for m in got] == [b"a", b"b", b"c"]
    assert all(m.idempotency_key for m in got)
    assert p.statistics().sent == 3
    assert p.send_many([]) == []


def test_send_many_validates_everything_first() -> None:
    q = Queue("q")
    p = Producer(q, schema=Order)
    with pytest.raises(ValueError, match=r"messages\[1\]: .*'id' is missing"):
        p.send_many([{"id": 1, "price": 1.0}, {"price": 1.0}])
    assert len(q) == 0


def test_send_many_sheds_per_message_and_reports_results() -> None:
    q = filled(20)
    p = Producer(q, high_watermark=10, policy="shed")
    batch = [Message(b"a", priority="low"), Message(b"b"), Message(b"c", priority="low")]
    with pytest.raises(Overloaded) as info:
        p.send_many(batch)
    results = info.value.results  # type: ignore[attr-defined]
    assert results[0] is None
    assert results[2] is None
    assert results[1] == batch[1].id
    assert info.value.priority == "low"
    assert p.statistics().shed["low"] == 2
    assert p.statistics().sent == 1
    assert len(q) == 21


def test_send_many_raise_refuses_the_whole_batch() -> None:
    q = filled(20)
    p = Producer(q, high_watermark=10, policy="raise")
    with pytest.raises(Overloaded):
        p.send_many([b"a", Message(b"b", priority="low")])
    assert len(q) == 20
    p.send_many([b"a", Message(b"b", priority="high")])
    assert len(q) == 22


def test_send_many_paces_chunks_by_the_bucket() -> None:
    clock = FakeClock()
    q = Queue("q", maxsize=None)
    sizes: list[int] = []

    def sleep(s: float) -> None:
        sizes.append(len(q))
        clock.advance(s)

    p = Producer(q, rate=10.0, burst=10.0, clock=clock, sleep=sleep)
    ids = p.send_many([b"x"] * 25)
    assert len(ids) == 25
    assert len(q) == 25
    assert sizes[0] == 10  # the first chunk went at once; the next waited for its tokens
    assert 10 in sizes
    assert 20 in sizes
    assert clock() == pytest.approx(1.5, abs=1e-6)  # 10 now, 10 after 1 s, 5 after 0.5 s more
    assert p.statistics().sent == 25


def test_send_many_block_waits_for_the_depth() -> None:
    clock = FakeClock()
    q = filled(20)

    def consume(s: float) -> None:
        clock.advance(s)
        q.get(timeout=0).ack()

    p = Producer(q, high_watermark=10, clock=clock, sleep=consume)
    p.send_many([b"a", Message(b"b", priority="low")])
    assert len(q) == 21  # 20 -> 19, then both went


# ---- asyncio ---------------------------------------------------------------------------------


def test_asend_waits_for_tokens_without_blocking_the_loop() -> None:
    clock = FakeClock()
    q = Queue("q", maxsize=None)
    p = Producer(q, rate=2.0, burst=1.0, clock=clock, sleep=clock.advance)

    async def main() -> list[str]:
        ticks = 0

        async def other() -> None:
            nonlocal ticks
            for _ in range(3):
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        ids = [await p.asend(b"x") for _ in range(3)]
        await task
        assert ticks == 3
        return ids

    ids = asyncio.run(main())
    assert len(set(ids)) == 3
    assert len(q) == 3
    assert clock() == pytest.approx(1.0)


def test_asend_to_a_full_queue_and_to_other_targets() -> None:
    q = Queue("q", maxsize=1)
    q.put(0)
    p = Producer(q, policy="raise")
    fast, slow = Queue("fast"), Queue("slow")
    pr = Producer(FakeRouter({"fast": fast, "slow": slow}))
    pt = Producer(Topic("t", partitions=1))
    pb = Producer(q, max_block=0.05)

    async def main() -> None:
        with pytest.raises(Overloaded, match="full"):
            await p.asend(b"x")
        with pytest.raises(Overloaded) as info:
            await pb.asend(b"x")
        assert isinstance(info.value.__cause__, Full)
        mid = await pr.asend(b"x", priority="critical")
        assert fast.get(timeout=0).message.id == mid
        assert await pt.asend(b"x") == (0, 0)

    asyncio.run(main())


def test_asend_sheds_like_send() -> None:
    q = filled(20)
    p = Producer(q, high_watermark=10, policy="shed")

    async def main() -> None:
        with pytest.raises(Overloaded):
            await p.asend(b"x", priority="low")
        await p.asend(b"x", priority="normal")

    asyncio.run(main())
    assert p.statistics().shed["low"] == 1
    assert len(q) == 21


# ---- statistics and threads ------------------------------------------------------------------


def test_statistics_snapshot() -> None:
    q = Queue("q")
    p = Producer(q, rate=5.0, high_watermark=3, name="ingest")
    s = p.statistics()
    assert isinstance(s, ProducerStatistics)
    assert s.name == "ingest"
    assert s.sent == 0
    assert s.rate == 5.0
    assert s.depth == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.sent = 1  # type: ignore[misc]
    assert Producer(q).statistics().rate is None
    assert Producer(q).statistics().depth is None
    assert Producer(q).name == "producer(q)"
    assert "ingest" in repr(p)


def test_many_threads_send_through_one_producer() -> None:
    q = Queue("q", maxsize=None)
    p = Producer(q, rate=1e9, high_watermark=10**9)
    n, threads = 2000, 4
    workers = [
        threading.Thread(target=lambda: [p.send(i) for i in range(n)]) for _ in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(q) == n * threads
    assert p.statistics().sent == n * threads


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "text"),
    [
        (dict(policy="drop"), ValueError, "policy must be one of 'block', 'shed', 'raise'"),
        (dict(rate=-1.0), ValueError, "rate must be > 0"),
        (dict(rate=0), ValueError, "rate must be > 0"),
        (dict(rate=float("nan")), ValueError, "rate must be a number, got nan"),
        (dict(rate=True), TypeError, "rate must be a number, got bool"),
        (dict(rate="5"), TypeError, "rate must be a number, got str"),
        (dict(rate=10, burst=0.5), ValueError, "burst must be a finite number >= 1"),
        (dict(rate=10, burst=float("inf")), ValueError, "burst must be a finite number >= 1"),
        (dict(burst=5), ValueError, "burst applies to a rate limit"),
        (dict(high_watermark=0), ValueError, "high_watermark must be >= 1, got 0"),
        (dict(high_watermark=1.5), TypeError, "high_watermark must be an int"),
        (dict(high_watermark=True), TypeError, "high_watermark must be an int"),
        (dict(max_block=-1), ValueError, "max_block must be a finite number of seconds >= 0"),
        (dict(max_block=float("inf")), ValueError, "max_block must be a finite number"),
        (dict(max_block=None), TypeError, "max_block must be a number, got NoneType"),
        (dict(schema=42), TypeError, "schema must be a msgspec.Struct type"),
        (dict(schema=int), TypeError, "got the class int"),
        (dict(clock=3), TypeError, "clock must be callable"),
        (dict(sleep="no"), TypeError, "sleep must be callable"),
        (dict(name=1), TypeError, "name must be a str"),
    ],
)
def test_bad_input_at_construction(kwargs: dict[str, Any], exc: type, text: str) -> None:
    with pytest.raises(exc, match=text.replace("(", r"\(").replace("|", r"\|")):
        Producer(Queue("q"), **kwargs)


def test_bad_target() -> None:
    with pytest.raises(
        TypeError, match=r"target must be a fastq\.Queue, fastq\.Topic or fastq\.Router"
    ):
        Producer(object())

    class Putter:
        def put(self, message: Any) -> None: ...

    with pytest.raises(ValueError, match="high_watermark needs a target whose depth"):
        Producer(Putter(), high_watermark=5)


def test_rate_inf_is_unlimited_and_bad_fields_fail_at_send() -> None:
    q = Queue("q")
    p = Producer(q, rate=float("inf"))
    assert p.statistics().rate == float("inf")
    with pytest.raises(TypeError):
        p.send(b"x", colour="red")
    with pytest.raises(ValueError, match="priority"):
        p.send(b"x", priority="urgent")
    assert len(q) == 0
