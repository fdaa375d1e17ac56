"""The lab served by aiohttp: the same routes and schema as app_fastapi, on aiohttp.web."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from strawberry.aiohttp.views import GraphQLView

from uvcore.strawberry.aiohttp import GraphQLView as SharedGraphQLView

from .common import PubSubFactory, page_html, server_stats
from .schema import Chat, context_for, schema

CHAT_KEY = web.AppKey("chat", Chat)


class ChatGraphQLView(GraphQLView):
    def __init__(self, chat: Chat, **kwargs: Any) -> None:
        super().__init__(schema, graphql_ide=None, **kwargs)
        self.chat = chat

    async def get_context(self, request: web.Request, response: Any) -> Any:
        return {"request": request, "response": response, **context_for(self.chat)}


class SharedChatGraphQLView(SharedGraphQLView, ChatGraphQLView):
    """Subscriptions marked Shared run once per cohort; the leader gets the chat's context."""

    def get_scope_context(self, scope: Any) -> Any:
        return context_for(self.chat)


def create_app(make_pubsub: PubSubFactory, shared: bool = True, fanout: bool = True) -> web.Application:
    """shared=False serves subscriptions with Strawberry's own view, for comparison;
    fanout=False sends a cohort's messages with aiohttp's send_frame instead of
    uvcore.wsfanout (C on uvcore, transport.write on other loops)."""
    chat = Chat(pubsub=None)
    app = web.Application()
    app[CHAT_KEY] = chat

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
