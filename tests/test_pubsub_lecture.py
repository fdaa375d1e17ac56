"""The lecture's Strawberry code runs verbatim on uvcore.PubSub: the subscription resolver
is `async for message_data in pubsub.subscribe("messages"): yield MessageType(**message_data)`
and the mutation does `await pubsub.publish("messages", data)`. A client leaving (the
resolver generator being closed) leaves no subscription behind."""
import asyncio
from typing import AsyncGenerator

import pytest

import uvcore
from pubsub_support import run, until  # noqa: F401

strawberry = pytest.importorskip("strawberry")

pubsub = uvcore.PubSub()


@strawberry.type
class MessageType:
    id: int
    author: str
    text: str


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def send_message(self, author: str, text: str) -> MessageType:
        data = {"id": 1, "author": author, "text": text}
        await pubsub.publish("messages", data)
        return MessageType(**data)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def messages(self) -> AsyncGenerator[MessageType, None]:
        async for message_data in pubsub.subscribe("messages"):
            yield MessageType(**message_data)


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)

SUBSCRIBE = "subscription { messages { id author text } }"
SEND = 'mutation { sendMessage(author: "ada", text: "%s") { id text } }'


async def _open_subscription():
    stream = await schema.subscribe(SUBSCRIBE)
    if not hasattr(stream, "__anext__"):  # an error result instead of a stream
        raise AssertionError(stream)
    return stream


def test_lecture_subscription_receives_published_messages_and_cleans_up(run):
    async def main():
        clients = [await _open_subscription() for _ in range(3)]
        firsts = [asyncio.ensure_future(c.__anext__()) for c in clients]
        await until(lambda: pubsub.numsub("messages") == 3)
        for i in range(3):
            result = await schema.execute(SEND % f"hello {i}")
            assert result.errors is None, result.errors
        for fut in firsts:
            res = await fut
            assert res.errors is None
            assert res.data == {"messages": {"id": 1, "author": "ada", "text": "hello 0"}}
        for c in clients:
            for i in (1, 2):
                res = await c.__anext__()
                assert res.data["messages"]["text"] == f"hello {i}"
        # The clients disconnect: Strawberry closes their resolvers.
        for c in clients:
            await c.aclose()
        assert pubsub.numsub("messages") == 0
        assert pubsub.stats()["subscribers"] == 0

    run(main)


def test_lecture_client_disconnecting_while_waiting_leaves_nothing_behind(run):
    async def main():
        stream = await _open_subscription()
        waiting = asyncio.ensure_future(stream.__anext__())
        await until(lambda: pubsub.numsub("messages") == 1)
        waiting.cancel()  # the WebSocket handler task is cancelled
        await asyncio.gather(waiting, return_exceptions=True)
        await stream.aclose()
        assert pubsub.stats()["subscribers"] == 0

    run(main)
