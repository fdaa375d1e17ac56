"""The lab served by aiohttp: the same routes and schema as app_fastapi, on aiohttp.web.

aiohttp caps request bodies itself (client_max_size: 413) and WebSocket messages
(max_msg_size); the view adds the cap on bytes queued for a WebSocket client that stopped
reading, and server.serve_aiohttp the request-head timeout (header_timeout_factory)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Dict, Mapping, Optional

from aiohttp import web
from strawberry.aiohttp.views import AiohttpWebSocketAdapter, GraphQLView

from .common import PubSubFactory, page_html, server_stats
from .limits import CLOSE_GRACE, CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON, Counters, GuardedAdapterMixin, Limits, bound_send_buffer
from .schema import Chat, context_for, make_schema

CHAT_KEY = web.AppKey("chat", Chat)
HEAD_TIMEOUTS_KEY: "web.AppKey[HeadTimeouts]" = web.AppKey("head_timeouts")
log = logging.getLogger("lab.limits")


class GuardedAiohttpWebSocketAdapter(GuardedAdapterMixin, AiohttpWebSocketAdapter):
    """aiohttp writes each message straight to the transport: what the client does not read
    stays in the transport's buffer. Past max_outbound_bytes the client is closed with 1008
    (aborted if it does not take the close frame in CLOSE_GRACE) and further messages drop."""

    _slow = False

    async def send_json(self, message: Mapping[str, object]) -> None:
        if self._slow:
            return
        transport = self.request.transport
        view: ChatGraphQLView = self.view  # type: ignore[assignment]
        if transport is not None and transport.get_write_buffer_size() > view.limits.max_outbound_bytes:
            self._slow = True
            view.counters.slow_consumers_disconnected += 1
            log.warning(
                "closing a WebSocket with %d: its client left %d bytes unread",
                CLOSE_SLOW_CONSUMER, transport.get_write_buffer_size(),
            )
            asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)
            task = asyncio.ensure_future(self.ws.close(code=CLOSE_SLOW_CONSUMER, message=SLOW_CONSUMER_REASON.encode()))
            view.closing.add(task)
            task.add_done_callback(view.closing.discard)
            return
        await super().send_json(message)


class ChatGraphQLView(GraphQLView):
    websocket_adapter_class = GuardedAiohttpWebSocketAdapter  # type: ignore[assignment]

    def __init__(self, chat: Chat, **kwargs: Any) -> None:
        from datetime import timedelta

        self.limits: Limits = chat.limits
        self.counters: Counters = chat.counters
        self.closing: set = set()
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
        ws = web.WebSocketResponse(protocols=protocols, max_msg_size=self.limits.max_body_bytes)
        await ws.prepare(request)
        if request.transport is not None:
            # aiohttp waits for the buffer to drain only above the high-water mark: keep it
            # above the cap, so that the cap (checked before each message) decides.
            request.transport.set_write_buffer_limits(high=4 * self.limits.max_outbound_bytes)
            bound_send_buffer(request.transport, self.limits)
        return ws


def create_app(make_pubsub: PubSubFactory, limits: Optional[Limits] = None) -> web.Application:
    limits = limits or Limits()
    chat = Chat(pubsub=None, limits=limits)
    head_timeouts = HeadTimeouts(limits, chat.counters)
    app = web.Application(
        client_max_size=limits.max_body_bytes, middlewares=[head_timeouts.middleware, count_refused_bodies]
    )
    app[CHAT_KEY] = chat
    app[HEAD_TIMEOUTS_KEY] = head_timeouts

    async def broker(app: web.Application) -> Any:
        chat.pubsub = make_pubsub()  # made inside the running loop that serves
        yield
        await chat.pubsub.aclose()

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page_html(), content_type="text/html")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(server_stats(chat, "aiohttp"))

    app.cleanup_ctx.append(broker)
    app.router.add_get("/", index)
    app.router.add_get("/stats", stats)
    app.router.add_route("*", "/graphql", ChatGraphQLView(chat))
    return app


@web.middleware
async def count_refused_bodies(request: web.Request, handler: Callable[..., Any]) -> Any:
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        request.app[CHAT_KEY].counters.rejected_bodies += 1
        raise


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
