"""The lab with --redis: two lab server processes on different ports share one chat through
a real redis-server (a mutation on one reaches a subscription on the other, both ways), and
a bad or unreachable Redis stops the server at start with a clear message."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from gql import Client, GraphQLRequest
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.websockets import WebsocketsTransport

from examples.lab.harness import REPO, LabServer
from redis_support import free_port, redis_server  # noqa: F401

FIELDS = "id room author text"
SUBSCRIBE = GraphQLRequest(f"subscription($room: String) {{ messageAdded(room: $room) {{ {FIELDS} }} }}")
SEND = GraphQLRequest(
    f"mutation($room: String!, $author: String!, $text: String!) "
    f"{{ sendMessage(room: $room, author: $author, text: $text) {{ {FIELDS} }} }}"
)


def ws_client(lab: LabServer) -> Client:
    return Client(transport=WebsocketsTransport(url=lab.ws_url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]))


def http_client(lab: LabServer) -> Client:
    return Client(transport=AIOHTTPTransport(url=lab.url + "/graphql"))


async def wait_redis_numsub(redis_server, channel: str, count: int, timeout: float = 10.0) -> None:
    """Poll Redis (another process holds the subscription: no event to wait on here)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await asyncio.to_thread(redis_server.numsub, channel) != count:
        if loop.time() > deadline:
            raise AssertionError(f"Redis never had {count} subscriber(s) on {channel}")
        await asyncio.sleep(0.01)


async def one_way(redis_server, listener_lab: LabServer, sender_lab: LabServer, room: str, text: str):
    async with ws_client(listener_lab) as listener:
        messages = listener.subscribe(GraphQLRequest(SUBSCRIBE, variable_values={"room": room}))
        first = asyncio.ensure_future(messages.__anext__())
        await asyncio.to_thread(listener_lab.wait_for_subscribers, 1)
        await wait_redis_numsub(redis_server, f"room.{room}", 1)  # the listener's server subscribed
        async with http_client(sender_lab) as sender:
            sent = await sender.execute(GraphQLRequest(SEND, variable_values={"room": room, "author": "ada", "text": text}))
        received = (await asyncio.wait_for(first, 10))["messageAdded"]
        await messages.aclose()
    await asyncio.to_thread(listener_lab.wait_for_subscribers, 0)
    await wait_redis_numsub(redis_server, f"room.{room}", 0)  # and left Redis with its last client
    return sent["sendMessage"], received


def test_two_lab_servers_share_one_chat_through_redis(redis_server):
    redis = ["--redis", redis_server.url]
    with LabServer(server="fastapi", extra_args=redis) as a, LabServer(server="aiohttp", extra_args=redis) as b:
        async def scenario():
            a_to_b = await one_way(redis_server, b, a, "shared", "from a")
            b_to_a = await one_way(redis_server, a, b, "shared", "from b")
            return a_to_b, b_to_a

        (sent1, got1), (sent2, got2) = asyncio.run(asyncio.wait_for(scenario(), 60))
        assert got1 == sent1 and got1["text"] == "from a"
        assert got2 == sent2 and got2["text"] == "from b"
        assert sent1["id"] != sent2["id"]  # ids stay unique across servers
        for lab in (a, b):
            stats = lab.stats()["pubsub"]
            assert stats["backend"] == "redis" and stats["connected"] and stats["received"] >= 1


@pytest.mark.parametrize(
    "url, message",
    [("http://127.0.0.1:6379/0", "bad Redis URL"), ("redis://127.0.0.1:{port}/0", "cannot connect to Redis")],
)
def test_lab_refuses_a_bad_or_unreachable_redis(url, message):
    url = url.format(port=free_port())
    result = subprocess.run(
        [sys.executable, "-m", "examples.lab.server", "--port", str(free_port()), "--redis", url],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
