"""The lab server with real GraphQL peers: gql clients over graphql-transport-ws and the
legacy graphql-ws protocol, on both front ends (FastAPI+uvicorn and aiohttp), each server
a child process on a free port. The clients run on asyncio in the test process."""
from __future__ import annotations

import asyncio
import os
import sys

import pytest
from gql import Client, GraphQLRequest
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

sys.path.insert(0, os.path.dirname(__file__))
from test_lab_support import lab_server  # noqa: E402

TRANSPORT_WS = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL  # "graphql-transport-ws"
LEGACY_WS = WebsocketsTransport.APOLLO_SUBPROTOCOL  # "graphql-ws"

FIELDS = "id room author text sentAt"
SUBSCRIBE = GraphQLRequest(f"subscription($room: String) {{ messageAdded(room: $room) {{ {FIELDS} }} }}")
SEND = GraphQLRequest(
    f"mutation($room: String!, $author: String!, $text: String!) "
    f"{{ sendMessage(room: $room, author: $author, text: $text) {{ {FIELDS} }} }}"
)
HISTORY = GraphQLRequest(f"query($room: String!) {{ rooms messages(room: $room) {{ {FIELDS} }} }}")


@pytest.fixture(scope="module", params=["fastapi", "aiohttp"])
def lab(request):
    with lab_server(server=request.param) as server:
        yield server
        # Nothing went wrong on the server side either (client errors are not logged).
        assert "Traceback" not in server.output() and "ERROR" not in server.output(), server.output()


def client(lab, protocol=TRANSPORT_WS) -> Client:
    return Client(transport=WebsocketsTransport(url=lab.ws_url, subprotocols=[protocol]))


def http_client(lab) -> Client:
    return Client(transport=AIOHTTPTransport(url=lab.url + "/graphql"))


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def with_vars(request: GraphQLRequest, **variables) -> GraphQLRequest:
    return GraphQLRequest(request, variable_values=variables)


async def subscribed(lab, session, subscribers_after: int, **variables):
    """Starts a subscription and waits until the server's broker has registered it."""
    messages = session.subscribe(with_vars(SUBSCRIBE, **variables))
    first = asyncio.ensure_future(messages.__anext__())
    await asyncio.to_thread(lab.wait_for_subscribers, subscribers_after)
    return messages, first


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
def test_gql_subscriber_receives_another_clients_mutation(lab, protocol):
    room = f"gql-{protocol}"

    async def scenario():
        async with client(lab, protocol) as listener:
            messages, first = await subscribed(lab, listener, 1, room=room)
            # Strawberry's legacy graphql-ws accepts subscriptions only: mutate over HTTP there.
            async with (client(lab, protocol) if protocol == TRANSPORT_WS else http_client(lab)) as sender:
                sent = await sender.execute(with_vars(SEND, room=room, author="ada", text="hello"))
            received = (await first)["messageAdded"]
            second = asyncio.ensure_future(messages.__anext__())
            async with http_client(lab) as sender:
                await sender.execute(with_vars(SEND, room=room, author="bob", text="again"))
            received_again = (await second)["messageAdded"]
            await messages.aclose()
        return sent["sendMessage"], received, received_again

    sent, received, received_again = run(scenario())
    assert received == sent
    assert (received["room"], received["author"], received["text"]) == (room, "ada", "hello")
    assert (received_again["author"], received_again["text"]) == ("bob", "again")
    lab.wait_for_subscribers(0)


def test_room_subscription_sees_only_its_room_and_the_all_rooms_one_sees_both(lab):
    async def scenario():
        async with client(lab) as listener:
            red_msgs, red_first = await subscribed(lab, listener, 1, room="red")
            all_msgs, all_first = await subscribed(lab, listener, 2)
            async with client(lab) as sender:
                await sender.execute(with_vars(SEND, room="blue", author="x", text="to blue"))
                await sender.execute(with_vars(SEND, room="red", author="x", text="to red"))
            got_red = (await red_first)["messageAdded"]["text"]
            got_all = [(await all_first)["messageAdded"]["text"], (await all_msgs.__anext__())["messageAdded"]["text"]]
            await red_msgs.aclose()
            await all_msgs.aclose()
        return got_red, got_all

    got_red, got_all = run(scenario())
    assert got_red == "to red"
    assert got_all == ["to blue", "to red"]
    lab.wait_for_subscribers(0)


def test_history_and_rooms_queries_return_stored_messages(lab):
    async def scenario():
        async with client(lab) as session:
            for n in range(3):
                await session.execute(with_vars(SEND, room="history", author="h", text=f"m{n}"))
            return await session.execute(with_vars(HISTORY, room="history"))

    result = run(scenario())
    assert "history" in result["rooms"]
    assert [m["text"] for m in result["messages"]] == ["m0", "m1", "m2"]


def test_bad_room_name_is_a_graphql_error_not_a_pattern_subscription(lab):
    async def scenario():
        async with client(lab) as session:
            with pytest.raises(TransportQueryError, match="room names"):
                await session.execute(with_vars(SEND, room="*", author="x", text="everywhere"))
            with pytest.raises(TransportQueryError, match="room names"):
                async for _ in session.subscribe(with_vars(SUBSCRIBE, room="room.*")):
                    pass

    run(scenario())
    assert lab.subscribers() == 0


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
def test_client_disconnect_returns_broker_subscriber_count_to_zero(lab, protocol):
    async def scenario():
        transport = WebsocketsTransport(url=lab.ws_url, subprotocols=[protocol])
        session = await Client(transport=transport).connect_async()
        _, first = await subscribed(lab, session, 1, room="leaving")
        _, second = await subscribed(lab, session, 2)
        # Drop the connection without unsubscribing, as a closed browser tab does.
        await transport.adapter.websocket.close()
        for pending in (first, second):
            pending.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        await asyncio.to_thread(lab.wait_for_subscribers, 0)

    run(scenario())
    assert lab.stats()["pubsub"]["subscribers"] == 0


def test_connection_lost_without_close_frame_unsubscribes(lab):
    """A client that vanishes (TCP reset, no WebSocket close) still leaves the broker."""
    import json

    import websockets

    async def scenario():
        ws = await websockets.connect(lab.ws_url, subprotocols=[TRANSPORT_WS])
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = 'subscription { messageAdded(room: "vanish") { id } }'
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        await asyncio.to_thread(lab.wait_for_subscribers, 1)
        ws.transport.abort()
        await asyncio.to_thread(lab.wait_for_subscribers, 0)

    run(scenario())
