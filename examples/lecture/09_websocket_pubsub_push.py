"""Lecture: a WebSocket server that pushes Pub/Sub events to its clients.

Each WebSocket client gets its own subscription on uvcore.PubSub and the server forwards
every event to it; POST /publish puts an event on the broker. The script starts the server
on 127.0.0.1, connects two clients, publishes three events over HTTP and shows that both
clients receive all three; when the clients leave, their subscriptions leave the broker.
Run: python examples/lecture/09_websocket_pubsub_push.py
"""
import asyncio
from typing import Any, List

from aiohttp import ClientSession, web

import uvcore

PUBSUB = web.AppKey("pubsub", uvcore.PubSub)


async def events(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    pubsub = request.app[PUBSUB]
    channel = request.query.get("channel", "events")

    async def push() -> None:
        async for event in pubsub.subscribe(channel):
            await ws.send_json(event)

    pusher = asyncio.ensure_future(push())
    await ws.send_json({"subscribed": channel})
    try:
        async for _ in ws:  # until the client goes away
            pass
    finally:
        pusher.cancel()  # ends the subscription: it leaves the broker
    return ws


async def publish(request: web.Request) -> web.Response:
    body = await request.json()
    receivers = await request.app[PUBSUB].publish(body.get("channel", "events"), body["event"])
    return web.json_response({"receivers": receivers})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[PUBSUB].stats())


async def client(base: str, name: str, count: int) -> List[Any]:
    async with ClientSession() as session, session.ws_connect(base + "/events") as ws:
        assert (await ws.receive_json()) == {"subscribed": "events"}
        received = [await ws.receive_json() for _ in range(count)]
        print(f"{name} received {[e['text'] for e in received]}")
        return received


async def main() -> None:
    app = web.Application()
    app[PUBSUB] = uvcore.PubSub()
    app.router.add_get("/events", events)
    app.router.add_post("/publish", publish)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        clients = [asyncio.ensure_future(client(base, name, 3)) for name in ("alice", "bob")]
        async with ClientSession() as http:
            # Wait until both WebSocket clients are subscribed (a condition, not a sleep).
            while (await (await http.get(base + "/stats")).json())["subscribers"] < 2:
                await asyncio.sleep(0.01)
            for text in ("deploy started", "tests passed", "deploy done"):
                async with http.post(base + "/publish", json={"event": {"text": text}}) as response:
                    print(f"published {text!r} to {(await response.json())['receivers']} subscribers")
            both = await asyncio.wait_for(asyncio.gather(*clients), 5)
            assert all([e["text"] for e in got] == ["deploy started", "tests passed", "deploy done"] for got in both)
            while (await (await http.get(base + "/stats")).json())["subscribers"] != 0:
                await asyncio.sleep(0.01)
            print("both clients left; the broker has no subscribers")
    finally:
        await app[PUBSUB].aclose()
        await runner.cleanup()


if __name__ == "__main__":
    uvcore.run(main())
