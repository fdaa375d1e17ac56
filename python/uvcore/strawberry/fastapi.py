"""FastAPI front end for shared subscriptions: Strawberry's GraphQLRouter whose WebSocket
subscriptions marked `uvcore.strawberry.Shared` run once per cohort."""
from __future__ import annotations

from typing import Any, Callable, Hashable, Optional

from strawberry.fastapi import GraphQLRouter as _StrawberryGraphQLRouter

from . import SharedSubscriptionsMixin

__all__ = ["GraphQLRouter"]


class GraphQLRouter(SharedSubscriptionsMixin, _StrawberryGraphQLRouter):  # type: ignore[misc]
    """`strawberry.fastapi.GraphQLRouter` plus `scope_context_getter(scope) -> context`
    (may be async): the context a cohort's leader runs with."""

    def __init__(
        self, *args: Any, scope_context_getter: Optional[Callable[[Hashable], Any]] = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.scope_context_getter = scope_context_getter
