"""The lab's shared subscriptions written by uvcore.wsfanout: in C on uvcore (FanoutSink),
through transport.write on asyncio and uvloop (PyFanoutSink), with the server's own send
when --fanout off. A gql client with permessage-deflate negotiated runs queries on the same
WebSocket while a subscription streams (subscriptions to a bad room name, which Strawberry
answers itself with an error message): those answers come compressed from Strawberry, the
subscription's messages uncompressed from the fan-out, all intact and in order."""
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

pytestmark = pytest.mark.timeout(180)

SUBSCRIBE = GraphQLRequest('subscription { messageAdded(room: "fan") { author text } }')
SEND = GraphQLRequest('mutation($text: String!) { sendMessage(room: "fan", author: "t", text: $text) { id } }')
BAD = GraphQLRequest('subscription { messageAdded(room: "no such room!") { text } }')
COUNT = 40

CASES = [
    ("fastapi", "uvcore", "on", "FanoutSink"),
    ("aiohttp", "uvcore", "on", "FanoutSink"),
    ("fastapi", "asyncio", "on", "PyFanoutSink"),
    ("aiohttp", "uvloop", "on", "PyFanoutSink"),
    ("fastapi", "uvcore", "off", "TextSink"),
    ("aiohttp", "uvcore", "off", "BytesSink"),
]


@pytest.mark.parametrize("server,loop,fanout,sink_type", CASES)
def test_subscription_and_queries_share_one_compressed_connection(server, loop, fanout, sink_type):
    with lab_server(server=server, loop=loop, extra_args=["--fanout", fanout]) as lab:

        async def main():
            transport = WebsocketsTransport(url=lab.ws_url)
            async with Client(transport=transport) as session:
                assert "permessage-deflate" in transport.response_headers.get("Sec-WebSocket-Extensions", "")
                messages = session.subscribe(SUBSCRIBE)
                first = asyncio.ensure_future(messages.__anext__())
                await asyncio.to_thread(lab.wait_for_subscribers, 1)
                stats = await asyncio.to_thread(lab.stats)
                assert stats["sinks"] == {sink_type: 1}, stats

                async def mutate():
                    async with Client(transport=AIOHTTPTransport(url=lab.url + "/graphql")) as http:
                        for i in range(COUNT):
                            await http.execute(GraphQLRequest(SEND, variable_values={"text": f"m{i}"}))

                async def query():
                    # answers that Strawberry sends itself, on the same WebSocket
                    for _ in range(COUNT):
                        with pytest.raises(TransportQueryError, match="room"):
                            async for _ in session.subscribe(BAD):
                                pass

                async def receive():
                    got = [(await first)["messageAdded"]["text"]]
                    while len(got) < COUNT:
                        got.append((await messages.__anext__())["messageAdded"]["text"])
                    return got

                receiver = asyncio.ensure_future(receive())
                await asyncio.gather(mutate(), query())
                assert await asyncio.wait_for(receiver, 30) == [f"m{i}" for i in range(COUNT)]
                await messages.aclose()
            await asyncio.to_thread(lab.wait_for_subscribers, 0)

        asyncio.run(asyncio.wait_for(main(), 120))
        assert "Traceback" not in lab.output() and "ERROR" not in lab.output(), lab.output()
