"""Run by tests/test_wheel.py inside a fresh virtualenv that has only the uvcore wheel, with
the system libuv hidden: the loop, a Queue and a PubSub, then proof from /proc/self/maps
that the libuv in this process is the one inside the wheel. Prints what it saw."""
import asyncio
import re
import sys

import uvcore


async def main() -> dict:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, uvcore.Loop), type(loop)
    fut = loop.create_future()
    loop.call_later(0.01, fut.set_result, "timer")
    timer = await fut

    q: uvcore.Queue[int] = uvcore.Queue(maxsize=2)

    async def producer() -> None:
        for i in range(5):
            await q.put(i)
        q.shutdown()

    task = asyncio.ensure_future(producer())
    got = [item async for item in q]
    await task

    bus = uvcore.PubSub()
    async with bus.subscribe("news.*") as sub:
        receivers = await bus.publish("news.today", {"n": 1})
        message = await sub.__anext__()
    await bus.aclose()
    return {"timer": timer, "queue": got, "receivers": receivers, "message": message}


result = uvcore.run(main())
print("smoke:", result)
assert result == {"timer": "timer", "queue": [0, 1, 2, 3, 4], "receivers": 1, "message": {"n": 1}}, result

maps = open("/proc/self/maps").read()
libuv = sorted({line.split()[-1] for line in maps.splitlines() if re.search(r"/libuv[^/]*\.so", line)})
print("libuv mapped:", libuv)
print("libuv version:", uvcore.libuv_version, "uvcore from:", uvcore.__file__)
assert libuv and all("/uvcore.libs/" in path for path in libuv), f"not the wheel's libuv: {libuv}"
assert uvcore.__file__.startswith(sys.prefix), f"uvcore imported from outside the venv: {uvcore.__file__}"
print("ok")
