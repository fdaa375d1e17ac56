"""The lab's GraphQL schema: a chat with rooms, written with Strawberry.

Mutation.sendMessage stores a message and publishes it on the broker; Subscription.messageAdded
is the lecture's resolver, an `async for` over `uvcore.PubSub.subscribe()`. Both HTTP front
ends (app_fastapi, app_aiohttp) serve this one schema and put a `Chat` in the GraphQL context.
"""
from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import re
import time
import uuid
from collections import OrderedDict, deque
from typing import Any, AsyncGenerator, AsyncIterator, Deque, Dict, List, Optional

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import PreExecutionError

from uvcore.strawberry import Shared

from .limits import Counters, Limits, query_size_error, validation_extensions

log = logging.getLogger("lab")

ALL_MESSAGES = "messages"  # the channel every message goes to, whatever its room
HISTORY_PER_ROOM = Limits.history_per_room
MAX_TEXT = 2000
MAX_AUTHOR = 40
# Room names become channel names: keep glob characters (* ? [) out so that a
# subscription to one room can never turn into a pattern over all of them.
_ROOM_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class BadInput(ValueError):
    """A client's mistake: reported to that client as a GraphQL error, not logged."""


class Unavailable(RuntimeError):
    """The server could not do it now (the broker failed or was too slow): the client gets
    this generic message, the log gets the reason."""

    def __init__(self) -> None:
        super().__init__("the message could not be delivered; try again later")


def room_channel(room: str) -> str:
    return f"room.{room}"


def check_room(room: str) -> str:
    if not _ROOM_RE.match(room):
        raise BadInput("room names are 1-40 characters: letters, digits, '_' and '-'")
    return room


class Chat:
    """The server's state: recent messages per room and the broker that carries new ones.

    Memory is bounded twice: at most `limits.max_rooms` rooms (a new room evicts the one idle
    for longest, history and all) and at most `limits.max_history` messages over all rooms
    (the oldest go first), besides `limits.history_per_room` per room."""

    def __init__(self, pubsub: Any, limits: Optional[Limits] = None, counters: Optional[Counters] = None) -> None:
        self.pubsub = pubsub
        self.limits = limits or Limits()
        self.counters = counters or Counters()
        # Least recently active room first: the next one to evict.
        self._history: "OrderedDict[str, Deque[Dict[str, Any]]]" = OrderedDict()
        # Every stored message in order, for the global cap. It may still hold messages gone
        # with their room or the room's own cap (skipped when their turn comes), at most a
        # quarter of max_history of them: then it is rebuilt from the rooms.
        self._all: Deque[Dict[str, Any]] = deque()
        self._stored = 0
        self._ids = itertools.count(1)
        # Ids must stay unique when several servers share a chat through Redis (the page
        # drops ids it has seen): each server numbers its messages under its own prefix.
        self._node = uuid.uuid4().hex[:6]

    def rooms(self) -> List[str]:
        return sorted(self._history)

    @property
    def stored(self) -> int:
        return self._stored

    @property
    def held(self) -> int:
        """Messages this chat keeps alive: the stored ones and those awaiting the rebuild."""
        return len(self._all)

    def history(self, room: str, limit: int) -> List[Dict[str, Any]]:
        messages = self._history.get(room, ())
        return list(messages)[-limit:] if limit > 0 else []

    def new_message(self, room: str, author: str, text: str) -> Dict[str, Any]:
        """A checked message, not stored yet: it is stored once it has been published."""
        author = author.strip()[:MAX_AUTHOR] or "anonymous"
        if not text.strip():
            raise BadInput("a message needs some text")
        if len(text) > MAX_TEXT:
            raise BadInput(f"messages are at most {MAX_TEXT} characters")
        return {
            "id": f"{self._node}-{next(self._ids)}",
            "room": room,
            "author": author,
            "text": text,
            "sent_at": time.time(),
        }

    def store(self, message_data: Dict[str, Any]) -> None:
        room = message_data["room"]
        messages = self._history.get(room)
        if messages is None:
            while len(self._history) >= self.limits.max_rooms:
                self._evict_room()
            messages = self._history[room] = deque()
        else:
            self._history.move_to_end(room)
        messages.append(message_data)
        self._all.append(message_data)
        self._stored += 1
        if len(messages) > self.limits.history_per_room:
            messages.popleft()
            self._stored -= 1
        while self._stored > self.limits.max_history:
            self._evict_oldest()
        if len(self._all) - self._stored > max(16, self.limits.max_history // 4):
            # Forget the messages already gone (O(max_history), once per max_history/4
            # messages dropped: a constant cost per message).
            live = {id(m) for messages in self._history.values() for m in messages}
            self._all = deque(m for m in self._all if id(m) in live)

    def _evict_room(self) -> None:
        _, messages = self._history.popitem(last=False)
        self._stored -= len(messages)
        self.counters.rooms_evicted += 1
        self.counters.messages_evicted += len(messages)

    def _evict_oldest(self) -> None:
        while True:
            oldest = self._all.popleft()
            messages = self._history.get(oldest["room"])
            # Rooms keep their messages in order: a live oldest message is its room's first.
            if messages and messages[0] is oldest:
                break
        messages.popleft()
        self._stored -= 1
        self.counters.messages_evicted += 1
        if not messages:
            del self._history[oldest["room"]]
            self.counters.rooms_evicted += 1

    async def publish(self, message_data: Dict[str, Any]) -> None:
        """Publish on the room's channel and the all-rooms one, then store: a message the
        broker did not take (Redis down, or slower than the operation budget) is not kept."""
        try:
            await asyncio.wait_for(self._publish_both(message_data), self.limits.operation_timeout)
        except (Exception, asyncio.TimeoutError) as exc:
            self.counters.publish_failures += 1
            if isinstance(exc, asyncio.TimeoutError):
                self.counters.timed_out_operations += 1
            log.warning("message %s not delivered: %s", message_data["id"], exc or type(exc).__name__)
            raise Unavailable() from None
        self.store(message_data)

    async def _publish_both(self, message_data: Dict[str, Any]) -> None:
        await self.pubsub.publish(room_channel(message_data["room"]), message_data)
        await self.pubsub.publish(ALL_MESSAGES, message_data)


@strawberry.type
class Message:
    id: strawberry.ID
    room: str
    author: str
    text: str
    sent_at: float = strawberry.field(description="Server time (Unix seconds) when it was sent")


@strawberry.type
class Query:
    @strawberry.field
    def rooms(self, info: strawberry.Info) -> List[str]:
        rooms: List[str] = info.context["chat"].rooms()
        return rooms

    @strawberry.field
    def messages(self, info: strawberry.Info, room: str, limit: int = 50) -> List[Message]:
        chat: Chat = info.context["chat"]
        return [Message(**message_data) for message_data in chat.history(check_room(room), limit)]


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def send_message(self, info: strawberry.Info, room: str, author: str, text: str) -> Message:
        chat: Chat = info.context["chat"]
        message_data = chat.new_message(check_room(room), author, text)
        await chat.publish(message_data)
        return Message(**message_data)


def room_scope(info: strawberry.Info, arguments: Dict[str, Any]) -> str:
    """Subscribers of one room share one execution per message: the selection set reads only
    the message, never who is subscribed (None: the subscription to every room)."""
    return arguments.get("room") or "*"


@strawberry.type
class Subscription:
    # (strawberry types the called form strawberry.subscription(...) as Any)
    @strawberry.subscription(extensions=[Shared(scope=room_scope)])  # type: ignore[untyped-decorator]
    async def message_added(
        self, info: strawberry.Info, room: Optional[str] = None
    ) -> AsyncGenerator[Message, None]:
        pubsub = info.context["pubsub"]
        channel = room_channel(check_room(room)) if room else ALL_MESSAGES
        # The lecture's resolver, verbatim in spirit. Shared: one broker subscription per
        # cohort (subscribers of the same room and selection), run by the cohort's leader with
        # the scope's context; when its last subscriber leaves, the generator is closed and
        # the subscription leaves the broker with it.
        async for message_data in pubsub.subscribe(channel):
            yield Message(**message_data)


def _client_safe(error: GraphQLError) -> bool:
    """Errors whose message the client may read: its own mistakes (bad input, GraphQL
    syntax and validation, limits) and Unavailable's generic text. Anything else is an
    internal error and reaches the client as "Unexpected error." (the log has it)."""
    return error.original_error is None or isinstance(error.original_error, (BadInput, Unavailable, GraphQLError))


class ChatSchema(strawberry.Schema):
    """The chat's schema with its limits: the query size is checked before anything else,
    Strawberry's limiter extensions check tokens, depth and aliases."""

    def __init__(self, *args: Any, limits: Optional[Limits] = None, counters: Optional[Counters] = None, **kwargs: Any) -> None:
        self.limits = limits or Limits()
        self.counters = counters or Counters()
        mask = functools.partial(MaskErrors, should_mask_error=lambda error: not _client_safe(error))
        kwargs["extensions"] = [*validation_extensions(self.limits, self.counters), mask]
        super().__init__(*args, **kwargs)

    def _refused(self, query: Optional[str]) -> Optional[GraphQLError]:
        error = query_size_error(query, self.limits)
        if error is not None:
            self.counters.rejected_queries += 1
        return error

    async def execute(self, query: Optional[str], *args: Any, **kwargs: Any) -> ExecutionResult:
        error = self._refused(query)
        if error is not None:
            return ExecutionResult(data=None, errors=[error])
        return await super().execute(query, *args, **kwargs)

    async def stream(self, query: Optional[str], *args: Any, **kwargs: Any) -> Any:
        error = self._refused(query)
        if error is not None:
            return _one(PreExecutionError(data=None, errors=[error]))
        return await super().stream(query, *args, **kwargs)

    def process_errors(self, errors: List[GraphQLError], execution_context: Optional[ExecutionContext] = None) -> None:
        # Strawberry logs every error with a traceback; a client's mistake is not the server's.
        errors = [error for error in errors if not _client_safe(error)]
        super().process_errors(errors, execution_context)


async def _one(result: Any) -> AsyncIterator[Any]:
    yield result


def make_schema(limits: Optional[Limits] = None, counters: Optional[Counters] = None) -> ChatSchema:
    return ChatSchema(query=Query, mutation=Mutation, subscription=Subscription, limits=limits, counters=counters)


schema = make_schema()


def context_for(chat: Chat) -> Dict[str, Any]:
    """What every resolver finds in info.context (besides the framework's request/response).
    Also the context a shared subscription's leader runs with: nothing per connection."""
    return {"chat": chat, "pubsub": chat.pubsub}
