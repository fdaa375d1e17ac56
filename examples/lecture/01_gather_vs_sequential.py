"""Lecture: awaiting one by one vs asyncio.gather.

Three simulated downloads (asyncio.sleep stands in for network waits). Awaited in turn they
take the sum of their delays; gathered they overlap and take about the longest one.
Run: python examples/lecture/01_gather_vs_sequential.py
"""
import asyncio
import time
from typing import List

import uvcore

DELAYS = {"users": 0.1, "orders": 0.2, "stock": 0.3}


async def fetch(name: str, delay: float) -> str:
    await asyncio.sleep(delay)  # the network wait: the loop runs other work meanwhile
    return f"{name} ({delay:.1f} s)"


async def sequential() -> List[str]:
    return [await fetch(name, delay) for name, delay in DELAYS.items()]


async def concurrent() -> List[str]:
    return await asyncio.gather(*(fetch(name, delay) for name, delay in DELAYS.items()))


async def main() -> None:
    start = time.perf_counter()
    results = await sequential()
    seq = time.perf_counter() - start
    print(f"sequential: {seq:.2f} s -> {results}")

    start = time.perf_counter()
    results = await concurrent()
    par = time.perf_counter() - start
    print(f"gather:     {par:.2f} s -> {results}")  # gather keeps the order of its arguments

    assert seq >= sum(DELAYS.values()) and par < seq
    print(f"gather was {seq / par:.1f}x faster")


if __name__ == "__main__":
    uvcore.run(main())
