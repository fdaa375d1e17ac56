"""The lab's GraphQL schema: a chat with rooms, written with Strawberry.

Mutation.sendMessage stores a message and publishes it on the broker; Subscription.messageAdded
is the lecture's resolver, an `async for` over `uvcore.PubSub.subscribe()`. Both HTTP front
ends (app_fastapi, app_aiohttp) serve this one schema and put a `Chat` in the GraphQL context.
"""
from __future__ import annotations

import itertools
import re
import time
import uuid
from collections import deque
from typing import Any, AsyncGenerator, Deque, Dict, List, Optional

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from uvcore.strawberry import Shared

ALL_MESSAGES = "messages"  # the channel every message goes to, whatever its room
HISTORY_PER_ROOM = 200
MAX_TEXT = 2000
MAX_AUTHOR = 40
# Room names become channel names: keep glob characters (* ? [) out so that a
# subscription to one room can never turn into a pattern over all of them.
_ROOM_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class BadInput(ValueError):
    """A client's mistake: reported to that client as a GraphQL error, not logged."""


def room_channel(room: str) -> str:
    return f"room.{room}"


def check_room(room: str) -> str:
    if not _ROOM_RE.match(room):
        raise BadInput("room names are 1-40 characters: letters, digits, '_' and '-'")
    return room


class Chat:
    """The server's state: recent messages per room and the broker that carries new ones."""

    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub
        self._history: Dict[str, Deque[Dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        # Ids must stay unique when several servers share a chat through Redis (the page
        # drops ids it has seen): each server numbers its messages under its own prefix.
        self._node = uuid.uuid4().hex[:6]

    def rooms(self) -> List[str]:
        return sorted(self._history)

    def history(self, room: str, limit: int) -> List[Dict[str, Any]]:
        messages = self._history.get(room, ())
        return list(messages)[-limit:] if limit > 0 else []

    def store(self, room: str, author: str, text: str) -> Dict[str, Any]:
        author = author.strip()[:MAX_AUTHOR] or "anonymous"
        if not text.strip():
            raise BadInput("a message needs some text")
        if len(text) > MAX_TEXT:
            raise BadInput(f"messages are at most {MAX_TEXT} characters")
        message_data = {
            "id": f"{self._node}-{next(self._ids)}",
            "room": room,
            "author": author,
            "text": text,
            "sent_at": time.time(),
        }
        self._history.setdefault(room, deque(maxlen=HISTORY_PER_ROOM)).append(message_data)
        return message_data


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
        message_data = chat.store(check_room(room), author, text)
        await chat.pubsub.publish(room_channel(room), message_data)
        await chat.pubsub.publish(ALL_MESSAGES, message_data)
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


class ChatSchema(strawberry.Schema):
    def process_errors(self, errors: List[GraphQLError], execution_context: Optional[ExecutionContext] = None) -> None:
        # Strawberry logs every error with a traceback; a bad room name is not the server's.
        errors = [error for error in errors if not isinstance(error.original_error, BadInput)]
        super().process_errors(errors, execution_context)


schema = ChatSchema(query=Query, mutation=Mutation, subscription=Subscription)


def context_for(chat: Chat) -> Dict[str, Any]:
    """What every resolver finds in info.context (besides the framework's request/response).
    Also the context a shared subscription's leader runs with: nothing per connection."""
    return {"chat": chat, "pubsub": chat.pubsub}
