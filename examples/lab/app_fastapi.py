"""The lab served by FastAPI (ASGI, run by uvicorn): / is the chat page, /graphql the
Strawberry endpoint (HTTP and both WebSocket protocols), /stats the broker's counters."""
from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Dict

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from strawberry.fastapi import GraphQLRouter

from uvcore.strawberry.fastapi import GraphQLRouter as SharedGraphQLRouter

from .common import PubSubFactory, page_html, server_stats
from .schema import Chat, context_for, schema


def create_app(make_pubsub: PubSubFactory, shared: bool = True) -> FastAPI:
    """shared=False serves subscriptions with Strawberry's own router (one execution per
    subscriber), for comparison."""
    chat = Chat(pubsub=None)

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
    if shared:
        router: GraphQLRouter = SharedGraphQLRouter(
            schema, context_getter=get_context, graphql_ide=None, scope_context_getter=lambda scope: context_for(chat)
        )
    else:
        router = GraphQLRouter(schema, context_getter=get_context, graphql_ide=None)
    app.include_router(router, prefix="/graphql")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page_html())

    @app.get("/stats")
    async def stats() -> JSONResponse:
        return JSONResponse(server_stats(chat, "fastapi", router if shared else None))

    return app
