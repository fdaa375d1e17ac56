"""The loop's poll timer can fire inside the GIL-held non-blocking poll that precedes the
blocking one (its deadline passed meanwhile, e.g. on a loaded machine). The loop must then
not block with no timer armed: many short random sleeps, each run bounded by a watchdog."""
import asyncio
import random
import threading

import uvcore


def test_short_sleeps_never_leave_the_loop_blocked_without_a_timer():
    rng = random.Random(3)

    async def sleeper():
        for _ in range(10):
            await asyncio.sleep(rng.uniform(0.0005, 0.01))

    async def main():
        await asyncio.gather(*(sleeper() for _ in range(100)))

    for _ in range(8):
        loop = uvcore.new_event_loop()
        # a hang shows as this wake-up being needed: the watchdog stops a stuck loop
        timer = threading.Timer(20, loop.call_soon_threadsafe, (loop.stop,))
        timer.start()
        try:
            loop.run_until_complete(main())
        finally:
            timer.cancel()
            loop.close()
