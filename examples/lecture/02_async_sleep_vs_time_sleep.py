"""Lecture: asyncio.sleep vs time.sleep.

A heartbeat task ticks every 50 ms. While another coroutine waits with asyncio.sleep the
heartbeat keeps ticking; while it calls time.sleep the whole loop is frozen and no tick
happens: one blocking call stalls every task on the loop.
Run: python examples/lecture/02_async_sleep_vs_time_sleep.py
"""
import asyncio
import time
from typing import Awaitable, Callable, List

import uvcore

TICK = 0.05
WAIT = 0.3


async def heartbeat(ticks: List[float]) -> None:
    while True:
        await asyncio.sleep(TICK)
        ticks.append(time.perf_counter())


async def measure(label: str, wait: Callable[[], Awaitable[None]]) -> int:
    ticks: List[float] = []
    beat = asyncio.ensure_future(heartbeat(ticks))
    await asyncio.sleep(0)  # let the heartbeat start
    await wait()
    beat.cancel()
    print(f"{label:<14} heartbeat ticked {len(ticks)} times in {WAIT} s")
    return len(ticks)


async def polite_wait() -> None:
    await asyncio.sleep(WAIT)


async def blocking_wait() -> None:
    time.sleep(WAIT)  # never do this in async code: it blocks the event loop


async def main() -> None:
    polite = await measure("asyncio.sleep:", polite_wait)
    rude = await measure("time.sleep:", blocking_wait)
    assert polite >= 3 and rude == 0, (polite, rude)
    print("time.sleep froze the loop; asyncio.sleep let it run")


if __name__ == "__main__":
    uvcore.run(main())
