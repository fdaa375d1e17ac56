"""aiohttp front end for shared subscriptions: Strawberry's aiohttp GraphQLView whose
WebSocket subscriptions marked `uvcore.strawberry.Shared` run once per cohort."""
from __future__ import annotations

from typing import Any, Callable, Hashable, Optional

from strawberry.aiohttp.views import GraphQLView as _StrawberryGraphQLView

from . import SharedSubscriptionsMixin

__all__ = ["GraphQLView"]


class GraphQLView(SharedSubscriptionsMixin, _StrawberryGraphQLView):  # type: ignore[misc]
    """`strawberry.aiohttp.views.GraphQLView` plus `scope_context_getter(scope) -> context`
    (may be async), or override `get_scope_context(scope)`: the context a cohort's leader
    runs with."""

    def __init__(
        self, *args: Any, scope_context_getter: Optional[Callable[[Hashable], Any]] = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.scope_context_getter = scope_context_getter
