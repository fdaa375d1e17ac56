"""The limits that keep one lab client from hurting the others, and the counters /stats shows.

Every limit has a default a chat never reaches and a command-line option (server.py); the
front ends (app_fastapi, app_aiohttp) and the schema read them from one `Limits`. What a
limit refuses is counted in `Counters`, so that an operator sees on /stats that someone is
trying.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import re
import socket
from typing import Any, Callable, Dict, Iterator, List, Optional

from graphql import GraphQLError

log = logging.getLogger("lab.limits")

# The close code of graphql-transport-ws for a message the protocol cannot accept.
CLOSE_BAD_MESSAGE = 4400
# RFC 6455's "policy violation": used for a client that stopped reading its messages.
CLOSE_SLOW_CONSUMER = 1008
SLOW_CONSUMER_REASON = "slow consumer: too many queued bytes"  # as uvcore.wsfanout's
# How long a slow consumer gets to read the close frame queued behind its backlog.
CLOSE_GRACE = 5.0


@dataclasses.dataclass(frozen=True)
class Limits:
    """Defaults sized for a chat: far above what the page and gql clients send."""

    max_query_bytes: int = 8 * 1024  # characters of GraphQL text in one operation
    max_depth: int = 6  # nesting of selections (the chat's queries use 2)
    max_aliases: int = 15
    max_tokens: int = 1000  # lexer tokens in one document (parsing stops at the limit)
    operation_timeout: float = 5.0  # seconds an operation may wait (the broker, Redis)
    max_body_bytes: int = 64 * 1024  # an HTTP request body, and one WebSocket message
    max_rooms: int = 500  # the room idle for longest goes (with its history) beyond this
    max_history: int = 10_000  # stored messages over all rooms; the oldest go first
    history_per_room: int = 200
    max_outbound_bytes: int = 1024 * 1024  # queued for one WebSocket client that does not read
    header_timeout: float = 10.0  # for a request's head, and for graphql-transport-ws's connection_init
    idle_timeout: float = 30.0  # an idle HTTP keep-alive connection is closed after this

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            # A depth of 0 is meaningful: root fields only, no sub-selections.
            if not (value >= 0 if field.name == "max_depth" else value > 0):
                raise ValueError(f"{field.name.replace('_', '-')} must be positive, not {value!r}")


@dataclasses.dataclass
class Counters:
    """What the limits refused, for /stats. Plain ints: one loop thread updates them."""

    rejected_queries: int = 0  # over the size, depth, alias or token limit
    timed_out_operations: int = 0
    rejected_bodies: int = 0  # HTTP bodies over the cap (413), or too slow (408)
    malformed_messages: int = 0  # WebSocket messages that break the protocol (closed with 4400)
    slow_consumers_disconnected: int = 0
    header_timeouts: int = 0  # connections closed before they sent a complete request head
    rooms_evicted: int = 0
    messages_evicted: int = 0
    publish_failures: int = 0  # messages not sent (and not stored) because the broker failed

    def as_dict(self) -> Dict[str, int]:
        return dataclasses.asdict(self)


# -- GraphQL: what a query may cost ---------------------------------------------------------

# The messages of Strawberry's limiter extensions (and of graphql-core's max_tokens), so that
# their refusals are counted; tests/test_lab_limits.py fails if a release rewords them.
_LIMIT_ERRORS = re.compile(
    r"exceeds maximum operation depth|aliases found\. Allowed|Document contains more than \d+ tokens"
)


def is_limit_error(error: GraphQLError) -> bool:
    return bool(_LIMIT_ERRORS.search(error.message))


def query_size_error(query: Optional[str], limits: Limits) -> Optional[GraphQLError]:
    if query is not None and len(query) > limits.max_query_bytes:
        return GraphQLError(f"the query is {len(query)} characters long; the limit is {limits.max_query_bytes}")
    return None


def validation_extensions(limits: Limits, counters: Counters) -> List[Callable[[], Any]]:
    """Strawberry's own limiters (tokens, checked while parsing; depth; aliases) and a
    counter of what they refuse. Factories: Strawberry makes fresh ones per operation."""
    from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter, SchemaExtension

    class CountRefusals(SchemaExtension):
        def on_parse(self) -> Iterator[None]:
            yield
            self.count()

        def on_validate(self) -> Iterator[None]:
            yield
            self.count()

        def count(self) -> None:
            errors = self.execution_context.pre_execution_errors
            if errors and any(is_limit_error(error) for error in errors):
                counters.rejected_queries += 1

    return [
        functools.partial(MaxTokensLimiter, max_token_count=limits.max_tokens),
        functools.partial(QueryDepthLimiter, max_depth=limits.max_depth),
        functools.partial(MaxAliasesLimiter, max_alias_count=limits.max_aliases),
        CountRefusals,
    ]


# -- WebSocket: messages the protocol cannot accept -------------------------------------------


def protocol_problem(message: object) -> Optional[str]:
    """Why a decoded graphql-transport-ws / graphql-ws message is malformed, or None.

    Strawberry's handlers index messages as dicts and use `id` as a dict key: anything else
    raises inside them (a traceback per message). The checks are the shape, not the meaning:
    unknown types and missing fields are still answered by Strawberry itself."""
    if not isinstance(message, dict):
        return f"a message must be a JSON object, not {type(message).__name__}"
    if not isinstance(message.get("type"), str):
        return "a message needs a string 'type'"
    if "id" in message and not isinstance(message["id"], str):
        return "a message 'id' must be a string"
    payload = message.get("payload")
    if message["type"] in ("subscribe", "start"):
        if not isinstance(payload, dict):
            return f"a {message['type']} message needs an object 'payload'"
        if not isinstance(payload.get("query"), str):
            return "the payload's 'query' must be a string"
        variables = payload.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return "the payload's 'variables' must be an object"
        name = payload.get("operationName")
        if name is not None and not isinstance(name, str):
            return "the payload's 'operationName' must be a string"
    return None


def bound_send_buffer(transport: Any, limits: Limits) -> None:
    """Caps the kernel's send buffer of a WebSocket connection at max_outbound_bytes too.
    Linux grows it up to 4 MiB per socket (tcp_wmem) for a peer that does not read: memory
    the server holds for that client, and what it takes before the transport's own buffer
    fills and the cap applies."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limits.max_outbound_bytes)
        except OSError as exc:  # not a socket the kernel lets us size: the transport cap still holds
            log.debug("SO_SNDBUF not set: %s", exc)


class GuardedAdapterMixin:
    """Mixed into Strawberry's WebSocket adapter of each front end: a malformed message is
    answered with close code 4400 and one log line, and ends the connection."""

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> Any:
        async for message in super().iter_json(ignore_parsing_errors=ignore_parsing_errors):  # type: ignore[misc]
            problem = protocol_problem(message)
            if problem is not None:
                self.view.counters.malformed_messages += 1  # type: ignore[attr-defined]
                log.warning("closing a WebSocket with %d: %s", CLOSE_BAD_MESSAGE, problem)
                await self.close(CLOSE_BAD_MESSAGE, problem)  # type: ignore[attr-defined]
                return
            yield message
