"""uvcore.strawberry hooks into Strawberry's WebSocket handlers through methods that are not
documented API (run_operation, handle_async_results, cleanup_operation, the adapters' `ws`).
These tests fail loudly when the installed Strawberry is outside the range they were
checked on, or when one of those hooks changes shape: check the hooks, then move the range
in STRAWBERRY_TESTED and in pyproject.toml's `strawberry` extra."""
from __future__ import annotations

import inspect
from importlib.metadata import version

from packaging.specifiers import SpecifierSet
from strawberry.aiohttp.views import AiohttpWebSocketAdapter, GraphQLView
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

import uvcore.strawberry as us


def test_installed_strawberry_is_in_the_tested_range():
    installed = version("strawberry-graphql")
    assert installed in SpecifierSet(",".join(us.STRAWBERRY_TESTED)), (
        f"strawberry-graphql {installed} is outside the range uvcore.strawberry was checked on "
        f"({', '.join(us.STRAWBERRY_TESTED)})"
    )


def test_the_range_matches_the_strawberry_extra():
    import re
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    pinned = re.search(r'^strawberry = \["strawberry-graphql([^"]*)"\]', pyproject, re.M)
    assert pinned, "pyproject.toml has no `strawberry` extra"
    assert SpecifierSet(pinned.group(1)) == SpecifierSet(",".join(us.STRAWBERRY_TESTED))


def params(function):
    return list(inspect.signature(function).parameters)


def test_graphql_transport_ws_hooks_keep_their_shape():
    assert params(BaseGraphQLTransportWSHandler.run_operation) == ["self", "operation"]
    assert params(BaseGraphQLTransportWSHandler.cleanup_operation) == ["self", "operation_id"]
    assert {"id", "query", "variables", "operation_name"} <= set(Operation.__slots__)
    source = inspect.getsource(BaseGraphQLTransportWSHandler.handle_subscribe)
    assert "self.run_operation(operation)" in source
    assert "self.schema.stream(" in inspect.getsource(BaseGraphQLTransportWSHandler.run_operation)


def test_graphql_ws_hooks_keep_their_shape():
    assert params(BaseGraphQLWSHandler.handle_async_results) == [
        "self", "operation_id", "query", "operation_name", "variables"
    ]
    assert params(BaseGraphQLWSHandler.cleanup_operation) == ["self", "operation_id"]
    assert "self.schema.subscribe(" in inspect.getsource(BaseGraphQLWSHandler.handle_async_results)


def test_views_pick_their_handlers_from_class_attributes():
    from typing import get_origin

    for view in (GraphQLRouter, GraphQLView):
        # Strawberry sets them as parametrized generics (Handler[Context, RootValue]).
        assert get_origin(view.graphql_transport_ws_handler_class) is BaseGraphQLTransportWSHandler
        assert get_origin(view.graphql_ws_handler_class) is BaseGraphQLWSHandler
    from uvcore.strawberry.aiohttp import GraphQLView as SharedView
    from uvcore.strawberry.fastapi import GraphQLRouter as SharedRouter

    for view in (SharedRouter, SharedView):
        assert view.graphql_transport_ws_handler_class is us.SharedGraphQLTransportWSHandler
        assert view.graphql_ws_handler_class is us.SharedGraphQLWSHandler


def test_websocket_adapters_keep_the_framework_socket_in_ws():
    for adapter in (ASGIWebSocketAdapter, AiohttpWebSocketAdapter):
        assert "self.ws = " in inspect.getsource(adapter.__init__)
