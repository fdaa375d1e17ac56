"""Lecture: an aiohttp server and an aiohttp client, concurrently.

The script starts a small aiohttp web server on 127.0.0.1 (a free port), then a
ClientSession fetches several of its URLs at once with gather. No internet needed.
Run: python examples/lecture/04_aiohttp_client_server.py
"""
import asyncio
import time
from typing import Any, Dict, Tuple

from aiohttp import ClientSession, web

import uvcore

USERS = {1: "ada", 2: "grace", 3: "linus"}
# How many /users requests the server is handling at this moment, and the most at once:
# the proof that gather() really sent them concurrently (a wall-clock bound would not hold
# on a loaded machine).
in_flight = {"now": 0, "peak": 0}


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"message": "hello"})


async def user(request: web.Request) -> web.Response:
    in_flight["now"] += 1
    in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
    try:
        await asyncio.sleep(0.1)  # a slow database, say
    finally:
        in_flight["now"] -= 1
    user_id = int(request.match_info["user_id"])
    if user_id not in USERS:
        raise web.HTTPNotFound(text=f"no user {user_id}")
    return web.json_response({"id": user_id, "name": USERS[user_id]})


async def start_server() -> Tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/users/{user_id}", user)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def fetch_json(session: ClientSession, url: str) -> Dict[str, Any]:
    async with session.get(url) as response:
        response.raise_for_status()
        body: Dict[str, Any] = await response.json()
        return body


async def main() -> None:
    runner, base = await start_server()
    try:
        async with ClientSession() as session:
            print("GET /:", await fetch_json(session, base + "/"))
            start = time.perf_counter()
            users = await asyncio.gather(*(fetch_json(session, f"{base}/users/{i}") for i in USERS))
            took = time.perf_counter() - start
            print(f"3 users in {took:.2f} s, {in_flight['peak']} handled at once:", [u["name"] for u in users])
            async with session.get(base + "/users/99") as response:
                print("GET /users/99:", response.status, await response.text())
        assert [u["name"] for u in users] == list(USERS.values())
        assert in_flight["peak"] == len(USERS)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    uvcore.run(main())
