"""uvcore.strawberry's cohort registry without a server: subscribers are `CohortRegistry.
subscribe` streams whose events go to recording sinks. One execution per cohort and event,
keys (document, operation, coerced variables, scope), the leader's context, permissions per
subscriber, errors and completion reaching every member, and the lifetime of the leader."""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncGenerator, Dict, List, Optional

import pytest
import strawberry
from strawberry.permission import BasePermission
from strawberry.types.execution import PreExecutionError

import uvcore
from uvcore.strawberry import CohortRegistry, Shared, Sink, deliver, register_batch_delivery


class RecordingSink(Sink):
    """Keeps every message it is sent, as the text a client would receive."""

    __slots__ = ("messages",)

    def __init__(self) -> None:
        super().__init__()
        self.messages: List[Dict[str, Any]] = []

    def send(self, prefix: bytes, payload: bytes, suffix: bytes) -> None:
        self.messages.append(json.loads(prefix + payload + suffix))


class Counters:
    def __init__(self) -> None:
        self.sources = 0  # source generators started
        self.closed = 0  # source generators closed
        self.text_resolved = 0  # selection-set executions of Event.text
        self.contexts: List[Any] = []
        self.permission_checks: List[Any] = []


COUNTERS = Counters()


class IsMember(BasePermission):
    message = "not a member"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        COUNTERS.permission_checks.append(info.context)
        return bool(info.context.get("member"))


@strawberry.type
class Event:
    value: int

    @strawberry.field
    def text(self) -> str:
        COUNTERS.text_resolved += 1
        return f"event {self.value}"

    @strawberry.field
    def broken(self) -> Optional[str]:
        raise ValueError("field failed")


def tenant_scope(info: strawberry.Info, arguments: Dict[str, Any]) -> Any:
    return info.context["tenant"]


@strawberry.type
class Query:
    hello: str = "hi"


@strawberry.type
class Subscription:
    @strawberry.subscription(extensions=[Shared(scope=tenant_scope)])
    async def events(self, info: strawberry.Info, channel: str = "main", fail_after: int = -1) -> AsyncGenerator[Event, None]:
        COUNTERS.sources += 1
        COUNTERS.contexts.append(info.context)
        bus = info.context["bus"]
        try:
            async with bus.subscribe(f"{info.context['tenant']}.{channel}") as sub:
                async for value in sub:
                    if value == fail_after:
                        raise RuntimeError("source failed")
                    if value is None:
                        return
                    yield Event(value=value)
        finally:
            COUNTERS.closed += 1

    @strawberry.subscription(extensions=[Shared()], permission_classes=[IsMember])
    async def members_only(self, info: strawberry.Info) -> AsyncGenerator[Event, None]:
        async with info.context["bus"].subscribe("members") as sub:
            async for value in sub:
                yield Event(value=value)

    @strawberry.subscription(extensions=[Shared()])
    async def refuses(self, info: strawberry.Info) -> AsyncGenerator[Event, None]:
        # Not a generator: fails when called, before any source exists.
        raise ValueError("no events for you")

    @strawberry.subscription
    async def plain(self, info: strawberry.Info) -> AsyncGenerator[Event, None]:
        COUNTERS.sources += 1
        async with info.context["bus"].subscribe("plain") as sub:
            async for value in sub:
                yield Event(value=value)


schema = strawberry.Schema(query=Query, subscription=Subscription)
EVENTS = "subscription($channel: String! = \"main\", $failAfter: Int! = -1) { events(channel: $channel, failAfter: $failAfter) { value text } }"


class Harness:
    def __init__(self) -> None:
        global COUNTERS
        COUNTERS = Counters()
        self.bus = uvcore.PubSub()
        self.registry = CohortRegistry(schema, scope_context=lambda scope: {"tenant": scope, "bus": self.bus, "leader": True})
        self.streams: List[Any] = []
        self.pending: List[asyncio.Task] = []

    def subscribe(self, query: str = EVENTS, *, tenant: str = "t1", op_id: str = "1", sink: Optional[Sink] = None,
                  variables: Optional[Dict[str, Any]] = None, protocol: str = "graphql-transport-ws",
                  **context: Any):
        sink = sink or RecordingSink()
        stream = self.registry.subscribe(
            sink, self.registry.prefix(op_id, protocol), query, variables,
            context={"tenant": tenant, "bus": self.bus, **context},
        )
        # Drive the stream in a task, as a connection's operation task does.
        results: List[Any] = []

        async def run() -> None:
            async for result in stream:
                results.append(result)

        task = asyncio.ensure_future(run())
        self.pending.append(task)
        return sink, task, results

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    async def publish(self, channel: str, value: Any) -> int:
        n = await self.bus.publish(channel, value)
        await self.settle()
        return n


def run(coro):
    return uvcore.run(asyncio.wait_for(coro, 20))


def test_subscribers_of_one_cohort_share_one_source_and_one_execution_per_event():
    async def scenario():
        h = Harness()
        sinks = [h.subscribe(op_id=str(i))[0] for i in range(5)]
        await h.settle()
        assert h.registry.stats() == {"cohorts": 1, "members": 5}
        assert h.bus.stats()["subscribers"] == 1
        await h.publish("t1.main", 1)
        await h.publish("t1.main", 2)
        assert COUNTERS.sources == 1
        assert COUNTERS.text_resolved == 2  # once per event, not per subscriber
        for i, sink in enumerate(sinks):
            assert sink.messages == [
                {"id": str(i), "type": "next", "payload": {"data": {"events": {"value": v, "text": f"event {v}"}}}}
                for v in (1, 2)
            ]
        for task in h.pending:
            task.cancel()
        await h.settle()
        assert h.registry.stats() == {"cohorts": 0, "members": 0}
        assert h.bus.stats()["subscribers"] == 0
        assert COUNTERS.closed == 1

    run(scenario())


def test_legacy_protocol_prefix_and_ids_are_spliced_without_reencoding():
    async def scenario():
        h = Harness()
        odd_id = 'a "quoted" id \u00e9'
        legacy, _, _ = h.subscribe(op_id=odd_id, protocol="graphql-ws")
        modern, _, _ = h.subscribe(op_id="x")
        await h.settle()
        await h.publish("t1.main", 7)
        payload = {"data": {"events": {"value": 7, "text": "event 7"}}}
        assert legacy.messages == [{"type": "data", "id": odd_id, "payload": payload}]
        assert modern.messages == [{"id": "x", "type": "next", "payload": payload}]
        for task in h.pending:
            task.cancel()

    run(scenario())


def test_cohort_key_is_document_operation_coerced_variables_and_scope():
    async def scenario():
        h = Harness()
        h.subscribe()  # channel defaults to "main"
        h.subscribe(variables={"channel": "main"})  # the same coerced variables: same cohort
        h.subscribe(variables={"channel": "other"})
        h.subscribe(EVENTS.replace("value text", "value"))  # another document
        h.subscribe(tenant="t2")  # another scope
        await h.settle()
        assert h.registry.stats() == {"cohorts": 4, "members": 5}
        assert sorted(len(c) for c in h.registry.cohorts()) == [1, 1, 1, 2]
        for task in h.pending:
            task.cancel()
        await h.settle()
        assert h.bus.stats()["subscribers"] == 0

    run(scenario())


def test_two_scopes_never_see_each_others_events():
    async def scenario():
        h = Harness()
        one, _, _ = h.subscribe(tenant="t1")
        two, _, _ = h.subscribe(tenant="t2")
        await h.settle()
        await h.publish("t1.main", 1)
        await h.publish("t2.main", 2)
        assert [m["payload"]["data"]["events"]["value"] for m in one.messages] == [1]
        assert [m["payload"]["data"]["events"]["value"] for m in two.messages] == [2]
        for task in h.pending:
            task.cancel()

    run(scenario())


def test_leader_runs_with_the_scope_context_never_a_members():
    async def scenario():
        h = Harness()
        h.subscribe(secret="alice's token")
        h.subscribe(secret="bob's token")
        await h.settle()
        assert len(COUNTERS.contexts) == 1
        context = COUNTERS.contexts[0]
        assert context.get("leader") is True and "secret" not in context
        for task in h.pending:
            task.cancel()

    run(scenario())


def test_permissions_run_per_subscriber_at_subscribe_time_and_not_in_the_leader():
    async def scenario():
        h = Harness()
        query = "subscription { membersOnly { value } }"
        ok, ok_task, _ = h.subscribe(query, member=True, op_id="ok")
        denied, denied_task, denied_results = h.subscribe(query, member=False, op_id="no")
        await h.settle()
        assert denied_task.done()
        assert isinstance(denied_results[0], PreExecutionError)
        assert denied_results[0].errors[0].message == "not a member"
        assert [ctx.get("member") for ctx in COUNTERS.permission_checks] == [True, False]
        await h.publish("members", 3)
        assert ok.messages == [{"id": "ok", "type": "next", "payload": {"data": {"membersOnly": {"value": 3}}}}]
        assert denied.messages == []
        assert len(COUNTERS.permission_checks) == 2  # the leader never checked
        ok_task.cancel()

    run(scenario())


def test_field_error_reaches_every_member_as_it_would_each_subscriber():
    async def scenario():
        h = Harness()
        query = "subscription { events { value broken } }"
        sinks = [h.subscribe(query, op_id=str(i))[0] for i in range(3)]
        await h.settle()
        await h.publish("t1.main", 5)
        expected = await unshared_payloads(query, 5)
        for sink in sinks:
            assert [m["payload"] for m in sink.messages] == expected
            assert sink.messages[0]["payload"]["errors"][0]["message"] == "field failed"
        for task in h.pending:
            task.cancel()

    run(scenario())


async def unshared_payloads(query: str, value: int) -> List[Dict[str, Any]]:
    """What Strawberry itself sends one subscriber (unshared) for one event."""
    bus = uvcore.PubSub()
    stream = await schema.subscribe(query, context_value={"tenant": "solo", "bus": bus})
    first = asyncio.ensure_future(stream.__anext__())
    for _ in range(10):
        await asyncio.sleep(0)
    await bus.publish("solo.main", value)
    result = await first
    await stream.aclose()
    payload: Dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [e.formatted for e in result.errors]
    return [payload]


def test_a_source_that_raises_reaches_every_member_then_completes_them():
    async def scenario():
        h = Harness()
        subs = [h.subscribe(variables={"failAfter": 9}, op_id=str(i)) for i in range(3)]
        await h.settle()
        await h.publish("t1.main", 1)
        await h.publish("t1.main", 9)
        for sink, task, results in subs:
            await asyncio.wait_for(task, 5)  # the member's stream ended: `complete` follows
            assert results == []  # events went to the sink, nothing through the stream
            assert len(sink.messages) == 2
            error = sink.messages[1]["payload"]
            assert error["data"] is None and error["errors"][0]["message"] == "source failed"
        assert h.registry.stats() == {"cohorts": 0, "members": 0}
        assert h.bus.stats()["subscribers"] == 0

    run(scenario())


def test_a_source_that_ends_completes_every_member():
    async def scenario():
        h = Harness()
        subs = [h.subscribe(op_id=str(i)) for i in range(3)]
        await h.settle()
        await h.publish("t1.main", 1)
        await h.publish("t1.main", None)  # the resolver returns
        for sink, task, results in subs:
            await asyncio.wait_for(task, 5)
            assert len(sink.messages) == 1 and results == []
        assert h.registry.stats()["cohorts"] == 0
        # A new subscriber after the end starts a new cohort.
        sink, task, _ = h.subscribe(op_id="late")
        await h.settle()
        await h.publish("t1.main", 2)
        assert [m["payload"]["data"]["events"]["value"] for m in sink.messages] == [2]
        assert COUNTERS.sources == 2
        task.cancel()

    run(scenario())


def test_a_resolver_that_refuses_fails_every_member_at_subscribe_time():
    async def scenario():
        h = Harness()
        subs = [h.subscribe("subscription { refuses { value } }", op_id=str(i)) for i in range(3)]
        await h.settle()
        expected = await unshared_first("subscription { refuses { value } }")
        for sink, task, results in subs:
            await asyncio.wait_for(task, 5)
            assert sink.messages == []
            assert [(type(r), r.data, [e.formatted for e in r.errors]) for r in results] == expected
        assert h.registry.stats()["cohorts"] == 0

    run(scenario())


async def unshared_first(query: str) -> List[Any]:
    stream = await schema.subscribe(query, context_value={"tenant": "solo", "bus": uvcore.PubSub()})
    results = [r async for r in stream]
    return [(type(r), r.data, [e.formatted for e in r.errors]) for r in results]


def test_members_join_and_leave_at_any_time_without_disturbing_others():
    async def scenario():
        h = Harness()
        first, first_task, _ = h.subscribe(op_id="first")
        await h.settle()
        await h.publish("t1.main", 1)
        second, second_task, _ = h.subscribe(op_id="second")
        await h.settle()
        await h.publish("t1.main", 2)
        first_task.cancel()
        await h.settle()
        await h.publish("t1.main", 3)
        values = lambda sink: [m["payload"]["data"]["events"]["value"] for m in sink.messages]  # noqa: E731
        assert values(first) == [1, 2]
        assert values(second) == [2, 3]
        assert COUNTERS.sources == 1 and COUNTERS.closed == 0
        second_task.cancel()
        await h.settle()
        assert COUNTERS.closed == 1
        assert h.bus.stats()["subscribers"] == 0

    run(scenario())


def test_a_broken_sink_does_not_disturb_the_others():
    class FailingSink(Sink):
        def send(self, prefix: bytes, payload: bytes, suffix: bytes) -> None:
            raise ConnectionResetError("gone")

    calls = []

    def batch(payload, targets, suffix):
        calls.append(len(targets))
        for sink, prefix in targets:
            sink.send(prefix, payload, suffix)

    async def scenario():
        h = Harness()
        h.subscribe(sink=FailingSink(), op_id="bad")
        good, _, _ = h.subscribe(op_id="good")
        await h.settle()
        await h.publish("t1.main", 1)
        assert len(good.messages) == 1
        for task in h.pending:
            task.cancel()

    register_batch_delivery(FailingSink, batch)
    try:
        run(scenario())
    finally:
        register_batch_delivery(FailingSink, None)
    assert calls == [1]


def test_batch_delivery_gets_its_sink_type_in_one_call_per_event():
    class BatchSink(RecordingSink):
        pass

    batches = []

    def batch(payload, targets, suffix):
        batches.append((payload, [prefix for _, prefix in targets], suffix))

    register_batch_delivery(BatchSink, batch)
    try:
        plain, batched = RecordingSink(), [BatchSink(), BatchSink()]
        deliver(b'{"data":1}', [(batched[0], b"<a>"), (plain, b'{"x":'), (batched[1], b"<b>")], b"}")
    finally:
        register_batch_delivery(BatchSink, None)
    assert batches == [(b'{"data":1}', [b"<a>", b"<b>"], b"}")]
    assert plain.messages == [{"x": {"data": 1}}]
    assert batched[0].messages == []  # the batch function owns its sinks' delivery


def test_unmarked_subscriptions_are_strawberrys_own():
    async def scenario():
        h = Harness()
        sink, task, results = h.subscribe("subscription { plain { value } }")
        await h.settle()
        assert h.registry.stats()["cohorts"] == 0
        await h.publish("plain", 4)
        assert sink.messages == []
        assert [r.data for r in results] == [{"plain": {"value": 4}}]
        task.cancel()

    run(scenario())


def test_shared_subscription_outside_a_shared_view_runs_unshared():
    async def scenario():
        bus = uvcore.PubSub()
        streams = [await schema.subscribe(EVENTS, context_value={"tenant": "t", "bus": bus}) for _ in range(2)]
        firsts = [asyncio.ensure_future(s.__anext__()) for s in streams]
        for _ in range(10):
            await asyncio.sleep(0)
        assert bus.stats()["subscribers"] == 2
        await bus.publish("t.main", 1)
        results = [await f for f in firsts]
        assert [r.data for r in results] == [{"events": {"value": 1, "text": "event 1"}}] * 2
        for s in streams:
            await s.aclose()

    run(scenario())


def test_shared_applies_to_subscriptions_only():
    with pytest.raises(TypeError, match="subscription"):

        @strawberry.type
        class Q:
            @strawberry.field(extensions=[Shared()])
            def x(self) -> int:
                return 1

        strawberry.Schema(query=Q)
    with pytest.raises(TypeError, match="scope"):
        Shared(scope="tenant")  # a scope is a function or "global"


def test_a_slow_connection_gets_its_messages_in_order_and_others_are_not_held_up():
    from uvcore.strawberry import TextSink

    async def scenario():
        gate = asyncio.Event()
        slow_received: List[str] = []

        async def slow_send(text: str) -> None:
            await gate.wait()
            slow_received.append(text)

        fast_received: List[str] = []

        async def fast_send(text: str) -> None:
            fast_received.append(text)

        h = Harness()
        slow = TextSink(slow_send)
        h.subscribe(sink=slow, op_id="slow")
        h.subscribe(sink=TextSink(fast_send), op_id="fast")
        await h.settle()
        for value in range(3):
            await h.publish("t1.main", value)
        assert len(fast_received) == 3 and slow_received == []
        gate.set()
        await slow.drain()
        assert [json.loads(t)["payload"]["data"]["events"]["value"] for t in slow_received] == [0, 1, 2]
        for task in h.pending:
            task.cancel()

    run(scenario())


def test_import_uvcore_does_not_import_the_strawberry_integration():
    import subprocess
    import sys

    code = "import sys, uvcore; print('uvcore.strawberry' in sys.modules, 'strawberry' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
