"""Lecture: an aiohttp WebSocket server and client.

The server echoes text frames upper-cased and answers "close" by closing; the client
sends a few messages and reads the replies. Both run in this script on 127.0.0.1.
Run: python examples/lecture/05_aiohttp_websocket.py
"""
from aiohttp import ClientSession, WSMsgType, web

import uvcore


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:  # a WebSocket connection is an async iterator of messages
        if msg.type == WSMsgType.TEXT:
            if msg.data == "close":
                await ws.close()
            else:
                await ws.send_str(f"echo: {msg.data.upper()}")
        elif msg.type == WSMsgType.ERROR:
            print("connection closed with", ws.exception())
    return ws


async def main() -> None:
    app = web.Application()
    app.router.add_get("/ws", websocket_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/ws"
    try:
        replies = []
        async with ClientSession() as session, session.ws_connect(url) as ws:
            for text in ("hello", "async", "world"):
                await ws.send_str(text)
                reply = await ws.receive_str()
                print("client got:", reply)
                replies.append(reply)
            await ws.send_str("close")
            closing = await ws.receive()
            print("server closed the socket:", closing.type.name)
        assert replies == ["echo: HELLO", "echo: ASYNC", "echo: WORLD"]
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    uvcore.run(main())
