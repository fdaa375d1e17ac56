"""The lab served by FastAPI (ASGI, run by uvicorn): / is the chat page, /graphql the
Strawberry endpoint (HTTP and both WebSocket protocols), /stats the broker's counters.

The limits of limits.Limits that need the server itself: a request body cap (413) and a
body timeout in an ASGI middleware; a request-head timeout and a cap on the bytes queued
for a WebSocket client that stopped reading in uvicorn protocol classes (uvicorn_protocols).
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, MutableMapping, Optional

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.fastapi import GraphQLRouter

from uvcore.strawberry.fastapi import GraphQLRouter as SharedGraphQLRouter

from .common import PubSubFactory, page_html, server_stats
from .limits import Counters, GuardedAdapterMixin, Limits
from .schema import Chat, context_for, make_schema

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class GuardedASGIWebSocketAdapter(GuardedAdapterMixin, ASGIWebSocketAdapter):
    pass


class ChatRouter(GraphQLRouter):
    websocket_adapter_class = GuardedASGIWebSocketAdapter

    def __init__(self, *args: Any, counters: Counters, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counters = counters


class SharedChatRouter(SharedGraphQLRouter, ChatRouter):
    """Subscriptions marked Shared run once per cohort; the leader gets the chat's context."""


class BodyLimit:
    """ASGI middleware: an HTTP request body over `max_body_bytes` is answered with 413
    (before reading it when Content-Length says so), one that does not arrive within
    `header_timeout` with 408. The app gets the whole body at once."""

    def __init__(self, app: Callable[..., Awaitable[None]], limits: Limits, counters: Counters) -> None:
        self.app = app
        self.limits = limits
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.limits.max_body_bytes
        length = _content_length(scope)
        if length is not None and length > cap:
            await self._refuse(send, 413, f"request body over {cap} bytes")
            return
        chunks = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.header_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                await self._refuse(send, 408, "request body too slow")
                return
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > cap:
                await self._refuse(send, 413, f"request body over {cap} bytes")
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, status: int, text: str) -> None:
        self.counters.rejected_bodies += 1
        body = text.encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> Optional[int]:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def create_app(make_pubsub: PubSubFactory, limits: Optional[Limits] = None, shared: bool = True) -> "BodyLimit":
    """The FastAPI app inside the body-limit middleware. shared=False serves subscriptions
    with Strawberry's own router (one execution per subscriber), for comparison."""
    limits = limits or Limits()
    chat = Chat(pubsub=None, limits=limits)
    schema = make_schema(limits, chat.counters)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The broker is made inside the running loop, so it belongs to the loop that serves.
        chat.pubsub = make_pubsub()
        try:
            yield
        finally:
            await chat.pubsub.aclose()

    async def get_context() -> Dict[str, Any]:
        return context_for(chat)

    app = FastAPI(title="uvcore lab", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.chat = chat
    # GraphiQL loads its code from a CDN; the lab has its own page at / instead.
    options: Dict[str, Any] = dict(
        context_getter=get_context,
        graphql_ide=None,
        connection_init_wait_timeout=_seconds(limits.header_timeout),
        counters=chat.counters,
    )
    if shared:
        router: ChatRouter = SharedChatRouter(schema, scope_context_getter=lambda scope: context_for(chat), **options)
    else:
        router = ChatRouter(schema, **options)
    app.include_router(router, prefix="/graphql")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page_html())

    @app.get("/stats")
    async def stats() -> JSONResponse:
        return JSONResponse(server_stats(chat, "fastapi", router if shared else None))

    return BodyLimit(app, limits, chat.counters)


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)
