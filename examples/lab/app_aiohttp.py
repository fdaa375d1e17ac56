"""The lab served by aiohttp: the same routes and schema as app_fastapi, on aiohttp.web.

aiohttp caps request bodies itself (client_max_size: 413) and WebSocket messages
(max_msg_size); the view adds the cap on bytes queued for a WebSocket client that stopped
reading, and HeadTimeouts (wrapped around aiohttp's protocol factory by
server.serve_aiohttp) the request-head timeout."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Dict, Mapping, Optional

from aiohttp import WSMsgType, web
from strawberry.aiohttp.views import AiohttpWebSocketAdapter, GraphQLView

from uvcore.aiohttp import FanoutWebSocketResponse
from uvcore.strawberry import SINK_FACTORIES, BytesSink, Sink
from uvcore.strawberry.aiohttp import GraphQLView as SharedGraphQLView

from .common import PubSubFactory, page_html, server_stats
from .limits import CLOSE_GRACE, CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON, Counters, GuardedAdapterMixin, Limits, bound_send_buffer
from .schema import Chat, context_for, make_schema

CHAT_KEY = web.AppKey("chat", Chat)
HEAD_TIMEOUTS_KEY: "web.AppKey[HeadTimeouts]" = web.AppKey("head_timeouts")
log = logging.getLogger("lab.limits")


class GuardedAiohttpWebSocketAdapter(GuardedAdapterMixin, AiohttpWebSocketAdapter):
    """aiohttp writes each message straight to the transport: what the client does not read
    stays in the transport's buffer. Past max_outbound_bytes the client is closed with 1008
    (aborted if it does not take the close frame in CLOSE_GRACE) and further messages drop.
    The check runs before each message, Strawberry's own (send_json) and the shared
    subscriptions' (send_text_frame, through the sink below)."""

    ws: "GuardedWebSocketResponse"

    async def send_json(self, message: Mapping[str, object]) -> None:
        if self._writable():
            await super().send_json(message)

    async def send_text_frame(self, data: bytes) -> None:
        if self._writable():
            await self.ws.send_frame(data, WSMsgType.TEXT)

    def _writable(self) -> bool:
        if self.ws.slow:
            return False
        transport = self.request.transport
        if transport is None or transport.get_write_buffer_size() <= self.ws.max_outbound_bytes:
            return True
        self.ws.close_slow_consumer(transport.get_write_buffer_size())
        return False


class GuardedWebSocketResponse(web.WebSocketResponse):
    """The slow-consumer close of the lab: counted, logged, with the 1008 close frame, and
    the connection aborted after CLOSE_GRACE if the client does not take it."""

    def __init__(self, *args: Any, limits: Limits, counters: Counters, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_outbound_bytes = limits.max_outbound_bytes
        self.counters = counters
        self.slow = False
        self.transport: Optional[asyncio.Transport] = None

    async def prepare(self, request: web.BaseRequest) -> Any:
        self.transport = request.transport
        return await super().prepare(request)

    def close_slow_consumer(self, queued: int) -> None:
        if self.slow or self.closed:
            return
        self.slow = True
        self.counters.slow_consumers_disconnected += 1
        log.warning("closing a WebSocket with %d: its client left %d bytes unread", CLOSE_SLOW_CONSUMER, queued)
        if self.transport is not None:
            asyncio.get_running_loop().call_later(CLOSE_GRACE, self.transport.abort)
        task = asyncio.ensure_future(self.close(code=CLOSE_SLOW_CONSUMER, message=SLOW_CONSUMER_REASON.encode()))
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)


class GuardedFanoutWebSocketResponse(GuardedWebSocketResponse, FanoutWebSocketResponse):
    """uvcore.aiohttp's response, whose C fan-out sink closes at the same cap ("close"
    policy), through the lab's slow-consumer close."""

    def __init__(self, *args: Any, limits: Limits, counters: Counters, **kwargs: Any) -> None:
        super().__init__(
            *args,
            limits=limits,
            counters=counters,
            fanout_max_queued=limits.max_outbound_bytes,
            fanout_policy="close",
            **kwargs,
        )

    def _fanout_overflow(self, sink: Any) -> None:
        self.close_slow_consumer(sink.queued)


_CLOSING: "set[asyncio.Future[Any]]" = set()


def _guarded_sink(websocket: Any) -> Optional[Sink]:
    """Shared subscriptions write to this front end's connections through the guard."""
    if isinstance(websocket, GuardedAiohttpWebSocketAdapter):
        return BytesSink(websocket.send_text_frame)
    return None


def _install_guarded_sink() -> None:
    """After the fan-out sink (a connection with one has the same cap in C), before the
    plain aiohttp sink of uvcore.strawberry, which would bypass the check."""
    if _guarded_sink in SINK_FACTORIES:
        return
    names = [getattr(factory, "__name__", "") for factory in SINK_FACTORIES]
    position = names.index("_aiohttp_sink") if "_aiohttp_sink" in names else len(SINK_FACTORIES)
    SINK_FACTORIES.insert(position, _guarded_sink)


_install_guarded_sink()


class ChatGraphQLView(GraphQLView):
    websocket_adapter_class = GuardedAiohttpWebSocketAdapter

    def __init__(self, chat: Chat, **kwargs: Any) -> None:
        from datetime import timedelta

        self.limits: Limits = chat.limits
        self.counters: Counters = chat.counters
        super().__init__(
            make_schema(chat.limits, chat.counters),
            graphql_ide=None,
            connection_init_wait_timeout=timedelta(seconds=chat.limits.header_timeout),
            **kwargs,
        )
        self.chat = chat

    async def get_context(self, request: web.Request, response: Any) -> Any:
        return {"request": request, "response": response, **context_for(self.chat)}

    async def create_websocket_response(self, request: web.Request, subprotocol: Any) -> web.WebSocketResponse:
        protocols = [subprotocol] if subprotocol else []
        # With the fan-out (a shared view's `fanout`), uvcore.aiohttp's response and its sink.
        response_class = GuardedFanoutWebSocketResponse if getattr(self, "fanout", False) else GuardedWebSocketResponse
        ws = response_class(
            protocols=protocols, max_msg_size=self.limits.max_body_bytes, limits=self.limits, counters=self.counters
        )
        await ws.prepare(request)
        if request.transport is not None:
            # aiohttp waits for the buffer to drain only above the high-water mark: keep it
            # above the cap, so that the cap (checked before each message) decides.
            request.transport.set_write_buffer_limits(high=4 * self.limits.max_outbound_bytes)
            bound_send_buffer(request.transport, self.limits)
        return ws



class SharedChatGraphQLView(SharedGraphQLView, ChatGraphQLView):
    """Subscriptions marked Shared run once per cohort; the leader gets the chat's context."""

    # Ours, not SharedGraphQLView's: the guarded response (a fan-out one when `fanout`).
    create_websocket_response = ChatGraphQLView.create_websocket_response

    def get_scope_context(self, scope: Any) -> Any:
        return context_for(self.chat)

def create_app(
    make_pubsub: PubSubFactory, limits: Optional[Limits] = None, shared: bool = True, fanout: bool = True
) -> web.Application:
    """shared=False serves subscriptions with Strawberry's own view, for comparison;
    fanout=False sends a cohort's messages with aiohttp's send_frame instead of
    uvcore.wsfanout (C on uvcore, transport.write on other loops)."""
    limits = limits or Limits()
    chat = Chat(pubsub=None, limits=limits)
    head_timeouts = HeadTimeouts(limits, chat.counters)
    app = web.Application(
        client_max_size=limits.max_body_bytes, middlewares=[head_timeouts.middleware, read_bodies_in_time]
    )
    app[CHAT_KEY] = chat
    app[HEAD_TIMEOUTS_KEY] = head_timeouts

    async def broker(app: web.Application) -> Any:
        chat.pubsub = make_pubsub()  # made inside the running loop that serves
        yield
        await chat.pubsub.aclose()

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page_html(), content_type="text/html")

    view = SharedChatGraphQLView(chat, fanout=fanout) if shared else ChatGraphQLView(chat)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(server_stats(chat, "aiohttp", view if shared else None))

    app.cleanup_ctx.append(broker)
    app.router.add_get("/", index)
    app.router.add_get("/stats", stats)
    app.router.add_route("*", "/graphql", view)
    return app


@web.middleware
async def read_bodies_in_time(request: web.Request, handler: Callable[..., Any]) -> Any:
    """The body is read (and kept for the handler) before the handler runs: over
    client_max_size aiohttp answers 413; one that takes longer than header_timeout to
    arrive is answered with 408 and the connection closed. Both are counted."""
    chat = request.app[CHAT_KEY]
    if request.can_read_body:
        try:
            await asyncio.wait_for(request.read(), chat.limits.header_timeout)
        except web.HTTPRequestEntityTooLarge:
            chat.counters.rejected_bodies += 1
            raise
        except asyncio.TimeoutError:
            chat.counters.rejected_bodies += 1
            response = web.Response(status=408, text="request body too slow")
            response.force_close()
            return response
    return await handler(request)


class HeadTimeouts:
    """A connection that has not delivered a complete request head within header_timeout
    is closed: `wrap` aiohttp's protocol factory (AppRunner.server), and `middleware` sees
    each head arrive. aiohttp's own keep-alive timer (keepalive_timeout) covers the time
    between requests."""

    def __init__(self, limits: Limits, counters: Counters) -> None:
        self.limits = limits
        self.counters = counters
        self.waiting: Dict[Any, asyncio.TimerHandle] = {}

    def wrap(self, server: Callable[[], Any]) -> Callable[[], Any]:
        loop = asyncio.get_running_loop()

        def factory() -> Any:
            handler = server()
            self.waiting[handler] = loop.call_later(self.limits.header_timeout, self._expire, handler)
            return handler

        return factory

    def _expire(self, handler: Any) -> None:
        if self.waiting.pop(handler, None) is not None and handler.transport is not None:
            self.counters.header_timeouts += 1
            log.info("closing a connection that sent no complete request head in %gs", self.limits.header_timeout)
            handler.force_close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[..., Any]) -> Any:
        timer = self.waiting.pop(request.protocol, None)
        if timer is not None:
            timer.cancel()
        return await handler(request)
