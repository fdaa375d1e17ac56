"""Shared GraphQL subscriptions for Strawberry: one execution per distinct subscription and event.

Subscriptions marked with the `Shared` field extension are grouped into *cohorts* by
(document, operation name, coerced variables, scope). One leader per cohort runs the
subscription through Strawberry's own `Schema.subscribe` - the resolver's async generator,
unchanged - with the scope's context, so the selection set is executed and JSON-encoded
once per event. Each member then gets its `next` (graphql-transport-ws) or `data`
(graphql-ws) message as its own prefix, with its client-chosen id, in front of the shared
payload bytes: nothing is re-encoded per subscriber.

Use the views from `uvcore.strawberry.fastapi` or `uvcore.strawberry.aiohttp`; unmarked
subscriptions (and marked ones on other transports) run exactly as Strawberry runs them.

Delivery seam: per event a cohort makes one call, `deliver(payload, targets, suffix)`, where
`targets` is a list of `(sink, prefix)` pairs. `deliver` runs each sink's `send` unless a
batch function was registered for that sink type with `register_batch_delivery`; a
connection's sink comes from the factories in `SINK_FACTORIES` (first non-None wins).
A C fan-out plugs in there without touching cohorts.
"""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import sys
import weakref
from collections import deque
from typing import (
    Any,
    AsyncGenerator,
    Awaitable,
    Callable,
    Coroutine,
    Deque,
    Dict,
    Generator,
    Hashable,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
    cast,
)

from graphql import GraphQLError
from strawberry.extensions.field_extension import FieldExtension
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.permission import PermissionExtension
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import Info
from strawberry.types.execution import ExecutionResult, PreExecutionError

from ..wsfanout import fanout as _fanout

__all__ = [
    "Shared",
    "Sink",
    "TextSink",
    "BytesSink",
    "CohortRegistry",
    "SharedSubscriptionsMixin",
    "SharedGraphQLTransportWSHandler",
    "SharedGraphQLWSHandler",
    "SINK_FACTORIES",
    "deliver",
    "deliver_each",
    "register_batch_delivery",
    "STRAWBERRY_TESTED",
]

log = logging.getLogger("uvcore.strawberry")

# The handler methods overridden below are not part of Strawberry's documented API; this is
# the range they were checked against (tests/test_strawberry_pin.py fails when it moves).
STRAWBERRY_TESTED = (">=0.341", "<0.342")

ScopeFunction = Callable[[Info, Dict[str, Any]], Hashable]
GLOBAL = "global"
SUFFIX = b"}"


# -- sinks: one WebSocket connection as a cohort sees it ------------------------------------


class Sink:
    """Where a member's messages go: one per WebSocket connection.

    `send(prefix, payload, suffix)` sends one text message made of the three parts, in
    order with everything sent before it, without blocking the caller. A sink whose
    connection failed drops messages (`broken`); the connection's own handler sees the
    disconnect and ends its subscriptions.
    """

    __slots__ = ("broken", "__weakref__")

    def __init__(self) -> None:
        self.broken = False

    def send(self, prefix: bytes, payload: bytes, suffix: bytes) -> None:
        raise NotImplementedError

    async def drain(self) -> None:
        """Wait until what `send` accepted has been handed to the connection."""


class _Resume:
    """Awaits the rest of a coroutine that was stepped once by hand and suspended on
    `yielded`: lets a send that completed at once cost no Task, and one that must wait
    finish in a Task without being restarted."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro: Optional[Coroutine[Any, Any, Any]] = coro
        self.yielded: Any = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.yielded
        self.coro = self.yielded = None
        if coro is None:
            raise RuntimeError("cannot reuse already awaited coroutine")
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # noqa: BLE001 - the Task throws CancelledError
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                value = coro.send(sent)
            except StopIteration as stop:
                return stop.value


class _CoroutineSink(Sink):
    """A sink over an `async def send(message)`: each send is stepped synchronously; only a
    send that has to wait (the connection pushes back) gets a Task, and later messages queue
    behind it so a connection never sees them out of order."""

    __slots__ = ("_backlog", "_task")

    def __init__(self) -> None:
        super().__init__()
        self._backlog: Optional[Deque[Any]] = None
        self._task: Optional[asyncio.Task[None]] = None

    def _message(self, prefix: bytes, payload: bytes, suffix: bytes) -> Any:
        raise NotImplementedError

    def _send(self, message: Any) -> Coroutine[Any, Any, Any]:
        raise NotImplementedError

    def send(self, prefix: bytes, payload: bytes, suffix: bytes) -> None:
        if self.broken:
            return
        message = self._message(prefix, payload, suffix)
        if self._backlog is not None:
            self._backlog.append(message)
            return
        coro = self._send(message)
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
        except Exception:  # noqa: BLE001 - a closed connection: its handler cleans up
            self.broken = True
            return
        self._backlog = deque()
        self._task = asyncio.get_running_loop().create_task(self._finish(coro, yielded))

    async def _finish(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        backlog = self._backlog
        assert backlog is not None
        try:
            await _Resume(coro, yielded)
            while backlog:
                await self._send(backlog.popleft())
        except Exception:  # noqa: BLE001
            self.broken = True
        finally:
            self._backlog = None
            self._task = None

    async def drain(self) -> None:
        task = self._task
        if task is not None:
            await asyncio.shield(task)


class TextSink(_CoroutineSink):
    """For servers whose WebSocket API takes `str` (ASGI's `websocket.send`)."""

    __slots__ = ("_send_text",)

    def __init__(self, send_text: Callable[[str], Coroutine[Any, Any, Any]]) -> None:
        super().__init__()
        self._send_text = send_text

    def _message(self, prefix: bytes, payload: bytes, suffix: bytes) -> str:
        return (prefix + payload + suffix).decode()

    def _send(self, message: str) -> Coroutine[Any, Any, Any]:
        return self._send_text(message)


class BytesSink(_CoroutineSink):
    """For servers that send an already UTF-8 encoded text frame (aiohttp's `send_frame`)."""

    __slots__ = ("_send_bytes",)

    def __init__(self, send_bytes: Callable[[bytes], Coroutine[Any, Any, Any]]) -> None:
        super().__init__()
        self._send_bytes = send_bytes

    def _message(self, prefix: bytes, payload: bytes, suffix: bytes) -> bytes:
        return prefix + payload + suffix

    def _send(self, message: bytes) -> Coroutine[Any, Any, Any]:
        return self._send_bytes(message)


def _asgi_sink(websocket: Any) -> Optional[Sink]:
    module = sys.modules.get("strawberry.asgi")
    if module is None or not isinstance(websocket, module.ASGIWebSocketAdapter):
        return None
    return TextSink(websocket.ws.send_text)


def _aiohttp_sink(websocket: Any) -> Optional[Sink]:
    module = sys.modules.get("strawberry.aiohttp.views")
    if module is None or not isinstance(websocket, module.AiohttpWebSocketAdapter):
        return None
    from aiohttp import WSMsgType

    send_frame = websocket.ws.send_frame
    text = WSMsgType.TEXT
    return BytesSink(lambda data: send_frame(data, text))


def _fanout_sink(websocket: Any) -> Optional[Sink]:
    """The connection's uvcore.wsfanout sink, when the server made one: uvicorn with
    `uvcore.uvicorn.FanoutWebSocketProtocol` (in the ASGI scope's extensions) or aiohttp with
    `uvcore.aiohttp.FanoutWebSocketResponse`. Frames then go straight to the transport, in C
    on uvcore's own transports."""
    asgi = sys.modules.get("strawberry.asgi")
    views = sys.modules.get("strawberry.aiohttp.views")
    sink: Any = None
    if asgi is not None and isinstance(websocket, asgi.ASGIWebSocketAdapter):
        extensions = websocket.ws.scope.get("extensions") or {}
        entry = extensions.get("uvcore.fanout")
        sink = entry.get("sink") if entry else None
    elif views is not None and isinstance(websocket, views.AiohttpWebSocketAdapter):
        sink = getattr(websocket.ws, "fanout_sink", None)
    if sink is None or sink.closed:
        return None
    return sink  # type: ignore[no-any-return]


SinkFactory = Callable[[Any], Optional[Sink]]
# Tried in order with Strawberry's WebSocket adapter for a connection; the first sink wins.
# A connection no factory recognises runs its shared subscriptions unshared.
SINK_FACTORIES: List[SinkFactory] = [_fanout_sink, _asgi_sink, _aiohttp_sink]


def sink_for(websocket: Any) -> Optional[Sink]:
    for factory in SINK_FACTORIES:
        sink = factory(websocket)
        if sink is not None:
            return sink
    return None


# -- delivery: the one call per event and cohort ------------------------------------------

Target = Tuple[Sink, bytes]
BatchDelivery = Callable[[bytes, Sequence[Target], bytes], None]
_BATCH: Dict[type, BatchDelivery] = {}


def deliver_each(payload: bytes, targets: Sequence[Target], suffix: bytes) -> None:
    """Send prefix + payload + suffix to every target, one sink at a time."""
    for sink, prefix in targets:
        sink.send(prefix, payload, suffix)


def deliver(payload: bytes, targets: Sequence[Target], suffix: bytes) -> None:
    """What a cohort calls once per event: `payload` is the shared JSON payload, each
    target a (sink, prefix) pair, `suffix` what closes every message. Sinks of a type with
    a registered batch function go to it in one call (in member order), the rest to
    `deliver_each`. Must not raise, block, or keep `targets` (the list is reused).

    The default is `uvcore.wsfanout.fanout`, which is `deliver_each` in C: fan-out sinks
    (uvcore.wsfanout.FanoutSink) queue their frame without running Python, any other sink
    gets its `send` called."""
    if not _BATCH:
        try:
            _fanout(payload, targets, suffix)
        except Exception:  # noqa: BLE001 - sinks do not raise; a bug must not end the cohort
            log.exception("delivery failed")
        return
    groups: Dict[type, List[Target]] = {}
    for target in targets:
        groups.setdefault(type(target[0]), []).append(target)
    for sink_type, group in groups.items():
        batch = _BATCH.get(sink_type, _fanout)
        try:
            batch(payload, group, suffix)
        except Exception:  # noqa: BLE001 - one transport's failure never stops the others
            log.exception("delivery to %s sinks failed", sink_type.__name__)


def register_batch_delivery(sink_type: type, batch: Optional[BatchDelivery]) -> None:
    """Route every event for sinks of exactly `sink_type` to `batch(payload, targets,
    suffix)`; None removes the route."""
    if batch is None:
        _BATCH.pop(sink_type, None)
    else:
        _BATCH[sink_type] = batch


# -- cohorts --------------------------------------------------------------------------------

# Set in a subscriber's operation task by the shared handlers: who is subscribing, and where
# its messages go. Read by `Shared` when the resolver chain reaches it.
_SUBSCRIBER: contextvars.ContextVar[Optional["_Subscriber"]] = contextvars.ContextVar(
    "uvcore_strawberry_subscriber", default=None
)
# Set in a cohort's leader task: `Shared` then calls the real resolver.
_LEADER: contextvars.ContextVar[Optional["Cohort"]] = contextvars.ContextVar(
    "uvcore_strawberry_leader", default=None
)


class _Subscriber:
    __slots__ = ("registry", "sink", "prefix", "query", "variables", "operation_name", "member", "done")

    def __init__(
        self,
        registry: "CohortRegistry",
        sink: Sink,
        prefix: bytes,
        query: str,
        variables: Optional[Dict[str, Any]],
        operation_name: Optional[str],
    ) -> None:
        self.registry = registry
        self.sink = sink
        self.prefix = prefix
        self.query = query
        self.variables = variables
        self.operation_name = operation_name
        self.member: Optional[Tuple[Cohort, Target]] = None
        self.done = False

    def leave(self) -> None:
        """Leave the cohort now (idempotent): nothing more is sent for this subscription."""
        self.done = True
        member = self.member
        if member is not None:
            self.member = None
            member[0].discard(member[1])


def _freeze(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((key, _freeze(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    hash(value)  # TypeError for values that cannot key a cohort
    return (type(value), value)


class Cohort:
    """The subscribers of one (document, operation, variables, scope): one leader task runs
    `Schema.subscribe` with the scope's context and hands each event to `deliver`."""

    def __init__(self, registry: "CohortRegistry", key: Hashable, first: _Subscriber, scope: Hashable) -> None:
        loop = asyncio.get_running_loop()
        self.registry = registry
        self.key = key
        self.scope = scope
        self._members: Dict[Target, None] = {}
        self._targets: Optional[List[Target]] = None
        self.started: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()
        self.events = 0
        coro = self._lead(first.query, first.variables, first.operation_name)
        if sys.version_info >= (3, 11):
            # A fresh context: the leader sees none of the first member's context variables.
            self.task = loop.create_task(coro, context=contextvars.Context())
        else:  # pragma: no cover - Python < 3.11: _lead resets the two that matter
            self.task = loop.create_task(coro)

    def __len__(self) -> int:
        return len(self._members)

    def add(self, target: Target) -> None:
        self._members[target] = None
        self._targets = None

    def discard(self, target: Target) -> None:
        if self._members.pop(target, 0) is None:
            self._targets = None
            if not self._members:
                self.registry._forget(self)
                self.task.cancel()

    async def _lead(self, query: str, variables: Optional[Dict[str, Any]], operation_name: Optional[str]) -> None:
        _SUBSCRIBER.set(None)
        _LEADER.set(self)
        registry = self.registry
        encode = registry.encode_json
        try:
            context = registry.scope_context(self.scope)
            if inspect.isawaitable(context):
                context = await context
            stream = await registry.schema.subscribe(
                query, variable_values=variables, context_value=context, operation_name=operation_name
            )
            try:
                async for result in stream:
                    if not self.started.done():
                        # The operation failed before its resolver ran (or the resolver
                        # raised): every member fails the same way at subscribe time.
                        self.started.set_exception(_first_error(result))
                        return
                    payload = encode(_payload_of(result))
                    if isinstance(payload, str):
                        payload = payload.encode()
                    self.events += 1
                    targets = self._targets
                    if targets is None:
                        targets = self._targets = list(self._members)
                    if targets:
                        deliver(payload, targets, SUFFIX)
            finally:
                await stream.aclose()
        except asyncio.CancelledError:
            if not self.started.done():
                self.started.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - reaches every member as their own error
            if not self.started.done():
                self.started.set_exception(exc)
            elif not self.ended.done():
                self.ended.set_exception(exc)
        finally:
            self.registry._forget(self)
            if not self.started.done():  # the stream ended without ever starting
                self.started.set_exception(GraphQLError("The subscription ended before it started."))
            if not self.ended.done():
                self.ended.set_result(None)
            # Retrieved here so an unawaited failure is never logged as "never retrieved".
            for future in (self.started, self.ended):
                if not future.cancelled():
                    future.exception()

    async def follow(self, subscriber: _Subscriber, target: Target) -> AsyncGenerator[Any, None]:
        """The member's own event stream: it yields nothing (the leader writes events to the
        member's sink) and ends as the cohort ends - normally, or with the cohort's error."""
        try:
            await asyncio.shield(self.ended)
            await target[0].drain()  # everything delivered goes out before `complete`
        finally:
            subscriber.leave()
        return
        yield  # pragma: no cover - makes this an async generator


def _first_error(result: Any) -> BaseException:
    errors = getattr(result, "errors", None) or []
    if not errors:
        return GraphQLError("The subscription could not start.")
    error = errors[0]
    original = getattr(error, "original_error", None)
    if isinstance(original, Exception) and not isinstance(original, GraphQLError):
        return original
    return GraphQLError(error.message, extensions=error.extensions)


def _payload_of(result: Any) -> Dict[str, Any]:
    """The same payload dict Strawberry's handlers build for a `next`/`data` message."""
    payload: Dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if isinstance(result, ExecutionResult) and result.extensions:
        payload["extensions"] = result.extensions
    return payload


class CohortRegistry:
    """The cohorts of one schema on one event loop, keyed by (document, operation name,
    coerced variables, scope). Views keep one per loop; tests may use one directly."""

    def __init__(
        self,
        schema: Any,
        scope_context: Callable[[Hashable], Any] = lambda scope: {"scope": scope},
        encode_json: Optional[Callable[[Any], Union[str, bytes]]] = None,
    ) -> None:
        import json

        self.schema = schema
        self.scope_context = scope_context
        self.encode_json = encode_json or (lambda data: json.dumps(data, separators=(",", ":")))
        self._cohorts: Dict[Hashable, Cohort] = {}

    def __len__(self) -> int:
        return len(self._cohorts)

    def cohorts(self) -> List[Cohort]:
        return list(self._cohorts.values())

    def stats(self) -> Dict[str, int]:
        return {
            "cohorts": len(self._cohorts),
            "members": sum(len(cohort) for cohort in self._cohorts.values()),
        }

    def sink_types(self) -> Dict[str, int]:
        """How many members write through each sink type (e.g. FanoutSink: the C fan-out)."""
        counts: Dict[str, int] = {}
        for cohort in self._cohorts.values():
            for sink, _ in cohort._members:
                name = type(sink).__name__
                counts[name] = counts.get(name, 0) + 1
        return counts

    def _forget(self, cohort: Cohort) -> None:
        if self._cohorts.get(cohort.key) is cohort:
            del self._cohorts[cohort.key]

    def _join(self, key: Hashable, subscriber: _Subscriber, scope: Hashable) -> Tuple[Cohort, Target]:
        cohort = self._cohorts.get(key)
        if cohort is None or cohort.ended.done():
            cohort = self._cohorts[key] = Cohort(self, key, subscriber, scope)
        target = (subscriber.sink, subscriber.prefix)
        cohort.add(target)
        subscriber.member = (cohort, target)
        return cohort, target

    def prefix(self, operation_id: str, protocol: str) -> bytes:
        """The bytes in front of the shared payload for one subscription's messages."""
        encoded = self.encode_json(operation_id)
        if isinstance(encoded, str):
            encoded = encoded.encode()
        if protocol == "graphql-ws":
            return b'{"type":"data","id":' + encoded + b',"payload":'
        return b'{"id":' + encoded + b',"type":"next","payload":'

    def subscribe(
        self,
        sink: Sink,
        prefix: bytes,
        query: str,
        variables: Optional[Dict[str, Any]] = None,
        operation_name: Optional[str] = None,
        context: Any = None,
        root_value: Any = None,
    ) -> AsyncGenerator[Any, None]:
        """`Schema.subscribe` for one subscriber whose messages go to `sink` after `prefix`.
        Yields what Strawberry yields; a shared subscription's events go to the sink
        instead. Closing the generator leaves the cohort."""
        subscriber = _Subscriber(self, sink, prefix, query, variables, operation_name)
        return self._subscribe(subscriber, context, root_value)

    async def _subscribe(self, subscriber: _Subscriber, context: Any, root_value: Any) -> AsyncGenerator[Any, None]:
        token = _SUBSCRIBER.set(subscriber)
        try:
            stream = await self.schema.subscribe(
                subscriber.query,
                variable_values=subscriber.variables,
                context_value=context,
                root_value=root_value,
                operation_name=subscriber.operation_name,
            )
            try:
                async for result in stream:
                    yield result
            finally:
                await stream.aclose()
        finally:
            _SUBSCRIBER.reset(token)
            subscriber.leave()


# -- the field extension -------------------------------------------------------------------


class _PerSubscriber(FieldExtension):
    """A field's permission extension, run for each subscriber at subscribe time and
    skipped by the leader (which runs with the scope's context, not a subscriber's)."""

    def __init__(self, inner: PermissionExtension) -> None:
        self.inner = inner

    def apply(self, field: Any) -> None:
        self.inner.apply(field)

    async def resolve_async(self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any) -> Any:
        if _LEADER.get() is not None:
            result = next_(source, info, **kwargs)
            return await result if inspect.isawaitable(result) else result
        return await self.inner.resolve_async(next_, source, info, **kwargs)


class Shared(FieldExtension):
    """Marks a subscription field as shared between the subscribers of a scope.

        @strawberry.subscription(extensions=[Shared(scope=lambda info, args: info.context["tenant"])])

    `scope(info, arguments)` receives the subscriber's Info (its connection context is
    `info.context`) and the field's arguments, and returns a hashable scope key; "global"
    shares across all connections. Subscribers with the same document, operation name,
    coerced variables and scope share one execution. The leader runs with the context the
    view's `get_scope_context(scope)` returns, never with a subscriber's, so nothing the
    selection set reads may depend on who is subscribed. The field's permission classes run
    for every subscriber when it subscribes.
    """

    def __init__(self, scope: Union[ScopeFunction, str] = GLOBAL) -> None:
        if not callable(scope) and scope != GLOBAL:
            raise TypeError(f'scope must be a function (info, arguments) -> hashable, or "global", not {scope!r}')
        self.scope = scope

    def apply(self, field: Any) -> None:
        if not getattr(field, "is_subscription", False):
            raise TypeError(f"Shared() applies to subscription fields, not to {field.python_name!r}")
        # Replaced in place: Strawberry is iterating this list to call apply().
        for index, extension in enumerate(field.extensions):
            if isinstance(extension, PermissionExtension):
                field.extensions[index] = _PerSubscriber(extension)

    async def resolve_async(self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any) -> Any:
        leader = _LEADER.get()
        subscriber = _SUBSCRIBER.get()
        if leader is not None or subscriber is None or subscriber.done:
            result = next_(source, info, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            if leader is not None and not leader.started.done():
                leader.started.set_result(None)
            return result
        scope = self.scope(info, kwargs) if callable(self.scope) else GLOBAL
        try:
            key: Hashable = (subscriber.query, subscriber.operation_name, _freeze(info.variable_values), scope)
            hash(key)
        except TypeError:
            key = object()  # variables or a scope that cannot key a cohort: not shared
        cohort, target = subscriber.registry._join(key, subscriber, scope)
        try:
            await asyncio.shield(cohort.started)
        except BaseException:
            subscriber.leave()
            raise
        return cohort.follow(subscriber, target)


# -- the WebSocket handlers and the view mixin ---------------------------------------------


class SharedGraphQLTransportWSHandler(BaseGraphQLTransportWSHandler):  # type: ignore[type-arg]
    """graphql-transport-ws with shared subscriptions: each operation runs Strawberry's own
    `run_operation` with the subscriber recorded for `Shared`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink_for(self.websocket)
        self._subscribers: Dict[str, _Subscriber] = {}

    async def run_operation(self, operation: Operation) -> None:  # type: ignore[type-arg]
        subscriber = None
        if self._sink is not None:
            registry = cast("SharedSubscriptionsMixin", self.view).cohort_registry()
            subscriber = _Subscriber(
                registry,
                self._sink,
                registry.prefix(operation.id, "graphql-transport-ws"),
                operation.query,
                operation.variables,
                operation.operation_name,
            )
            self._subscribers[operation.id] = subscriber
            _SUBSCRIBER.set(subscriber)
        try:
            await super().run_operation(operation)
        finally:
            if subscriber is not None:
                subscriber.leave()
                if self._subscribers.get(operation.id) is subscriber:
                    del self._subscribers[operation.id]

    async def cleanup_operation(self, operation_id: str) -> None:
        subscriber = self._subscribers.pop(operation_id, None)
        if subscriber is not None:
            subscriber.leave()  # at once: no `next` after the client's `complete`
        await super().cleanup_operation(operation_id)


class SharedGraphQLWSHandler(BaseGraphQLWSHandler):  # type: ignore[type-arg]
    """The legacy graphql-ws protocol with shared subscriptions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink_for(self.websocket)
        self._subscribers: Dict[str, _Subscriber] = {}

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: Optional[str],
        variables: Optional[Dict[str, object]],
    ) -> None:
        subscriber = None
        if self._sink is not None:
            registry = cast("SharedSubscriptionsMixin", self.view).cohort_registry()
            subscriber = _Subscriber(
                registry,
                self._sink,
                registry.prefix(operation_id, "graphql-ws"),
                query,
                variables,
                operation_name,
            )
            self._subscribers[operation_id] = subscriber
            _SUBSCRIBER.set(subscriber)
        try:
            await super().handle_async_results(operation_id, query, operation_name, variables)
        except WebSocketDisconnected:
            # A member's `complete` comes a loop iteration after the cohort's last message,
            # so a client that stops and disconnects at once can make it fail; the
            # connection's own handler is ending everything, and nobody may await this task.
            pass
        finally:
            if subscriber is not None:
                subscriber.leave()
                if self._subscribers.get(operation_id) is subscriber:
                    del self._subscribers[operation_id]

    async def cleanup_operation(self, operation_id: str) -> None:
        subscriber = self._subscribers.pop(operation_id, None)
        if subscriber is not None:
            subscriber.leave()
        await super().cleanup_operation(operation_id)


class SharedSubscriptionsMixin:
    """Mixed into a Strawberry view: WebSocket subscriptions marked `Shared` run in cohorts.

    `get_scope_context(scope)` returns the context a cohort's leader runs with (by default
    `{"scope": scope}`, or what the `scope_context_getter` given to the view returns)."""

    # Any: strawberry declares these generic in the view's context and root value types
    graphql_transport_ws_handler_class: Any = SharedGraphQLTransportWSHandler
    graphql_ws_handler_class: Any = SharedGraphQLWSHandler
    schema: Any
    scope_context_getter: Optional[Callable[[Hashable], Any]] = None

    def get_scope_context(self, scope: Hashable) -> Any:
        getter = self.scope_context_getter
        if getter is not None:
            return getter(scope)
        return {"scope": scope}

    def cohort_registry(self) -> CohortRegistry:
        """This view's cohorts on the running loop."""
        loop = asyncio.get_running_loop()
        registries: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CohortRegistry]"
        registries = self.__dict__.setdefault("_uvcore_cohorts", weakref.WeakKeyDictionary())
        registry = registries.get(loop)
        if registry is None:
            registry = registries[loop] = CohortRegistry(
                self.schema, self.get_scope_context, getattr(self, "encode_json", None)
            )
        return registry
