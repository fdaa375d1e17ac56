"""PubSub.from_url across processes: messages published in one process reach subscribers in
others, every process sees the same order, and each process holds one Redis subscription per
channel whatever its number of local subscribers."""
import asyncio
import json

import uvcore
from redis_support import redis_server, spawn_python  # noqa: F401

# A child process: subscribes (several local subscribers), says "ready" once Redis has the
# subscription, publishes its share when told "go", prints what each subscriber received.
CHILD = r"""
import asyncio, json, sys
import uvcore

async def main(url, name, expect, publish, tag, local_subs):
    async with uvcore.PubSub.from_url(url) as bus:
        subs = [bus.subscribe(name) for _ in range(local_subs)]
        await bus.sync()
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        channel = name.replace("*", "x")
        for i in range(publish):
            await bus.publish(channel, [tag, i])
        got = [[await s.__anext__() for _ in range(expect)] for s in subs]
        print(json.dumps({"got": got, "stats": bus.stats()}), flush=True)

url, name, expect, publish, tag, local_subs = sys.argv[1:7]
asyncio.run(main(url, name, int(expect), int(publish), tag, int(local_subs)))
"""


async def _start_child(url, name, expect, publish, tag, local_subs=1):
    proc = await spawn_python(CHILD, url, name, str(expect), str(publish), tag, str(local_subs))
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if line.strip() != b"ready":
        err = await proc.stderr.read()
        raise AssertionError(f"child failed: {line!r} {err.decode(errors='replace')}")
    return proc


async def _finish_child(proc):
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode(errors="replace")
    return json.loads(out.decode().strip().splitlines()[-1])


def test_messages_cross_processes_in_one_order_everywhere(redis_server):
    per_publisher = 200

    async def main():
        async with uvcore.PubSub.from_url(redis_server.url) as bus:
            mine = bus.subscribe("xproc.order", maxsize=0)
            await bus.sync()
            total = 3 * per_publisher
            children = [await _start_child(redis_server.url, "xproc.order", total, per_publisher, tag, 2)
                        for tag in ("b", "c")]
            assert redis_server.numsub("xproc.order") == 3  # one per process, not per subscriber
            finishing = [asyncio.ensure_future(_finish_child(p)) for p in children]
            for i in range(per_publisher):
                assert await bus.publish("xproc.order", ["a", i]) == 1
            here = [await asyncio.wait_for(mine.__anext__(), 10) for _ in range(total)]
            results = await asyncio.gather(*finishing)
        for tag in "abc":  # every publisher's messages in its own order
            assert [m[1] for m in here if m[0] == tag] == list(range(per_publisher))
        # ... and the same interleaving in every process and for every local subscriber
        for result in results:
            for got in result["got"]:
                assert got == here
            assert result["stats"]["subscribers"] == 2 and result["stats"]["delivered"] == 2 * total

    asyncio.run(asyncio.wait_for(main(), 120))


def test_patterns_across_processes(redis_server):
    async def main():
        child = await _start_child(redis_server.url, "xproc.room.*", 2, 0, "-", 1)
        async with uvcore.PubSub.from_url(redis_server.url) as bus:
            # no local subscriber here: the message is not coming back, 0 local receivers
            assert await bus.publish("xproc.room.1", "one") == 0
            assert await bus.publish("xproc.other", "not for the pattern") == 0
            assert await bus.publish("xproc.room.2", {"two": 2}) == 0
            result = await _finish_child(child)
        assert result["got"] == [["one", {"two": 2}]]

    asyncio.run(asyncio.wait_for(main(), 60))
