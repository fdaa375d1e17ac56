"""aiohttp front end for shared subscriptions: Strawberry's aiohttp GraphQLView whose
WebSocket subscriptions marked `uvcore.strawberry.Shared` run once per cohort."""
from __future__ import annotations

from typing import Any, Callable, Hashable, Optional

from aiohttp import web
from strawberry.aiohttp.views import GraphQLView as _StrawberryGraphQLView

from ..aiohttp import FanoutWebSocketResponse
from . import SharedSubscriptionsMixin

__all__ = ["GraphQLView"]


class GraphQLView(SharedSubscriptionsMixin, _StrawberryGraphQLView):  # type: ignore[misc]
    """`strawberry.aiohttp.views.GraphQLView` plus `scope_context_getter(scope) -> context`
    (may be async), or override `get_scope_context(scope)`: the context a cohort's leader
    runs with. With `fanout=True` (the default) each WebSocket is a
    `uvcore.aiohttp.FanoutWebSocketResponse`, so a cohort's messages are written by
    uvcore.wsfanout (in C on uvcore's own transports)."""

    def __init__(
        self,
        *args: Any,
        scope_context_getter: Optional[Callable[[Hashable], Any]] = None,
        fanout: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.scope_context_getter = scope_context_getter
        self.fanout = fanout

    async def create_websocket_response(self, request: web.Request, subprotocol: Optional[str]) -> web.WebSocketResponse:
        if not self.fanout:
            return await super().create_websocket_response(request, subprotocol)
        ws = FanoutWebSocketResponse(protocols=[subprotocol] if subprotocol else [])
        await ws.prepare(request)
        return ws
