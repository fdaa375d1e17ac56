"""Lecture: AsyncIterator - the protocol (__aiter__/__anext__) and async generators.

A class-based countdown, the same as an async generator, and an async comprehension.
Run: python examples/lecture/03_async_iterator.py
"""
import asyncio
from typing import AsyncIterator

import uvcore


class Countdown:
    """The protocol by hand: __aiter__ returns the iterator, __anext__ is a coroutine
    that raises StopAsyncIteration at the end."""

    def __init__(self, start: int, delay: float = 0.01) -> None:
        self.current = start
        self.delay = delay

    def __aiter__(self) -> "Countdown":
        return self

    async def __anext__(self) -> int:
        if self.current <= 0:
            raise StopAsyncIteration
        await asyncio.sleep(self.delay)  # e.g. waiting for the next chunk of data
        self.current -= 1
        return self.current + 1


async def countdown(start: int, delay: float = 0.01) -> AsyncIterator[int]:
    """The same with an async generator: `yield` inside `async def`."""
    for n in range(start, 0, -1):
        await asyncio.sleep(delay)
        yield n


async def main() -> None:
    async for n in Countdown(3):
        print("class:", n)
    async for n in countdown(3):
        print("generator:", n)
    squares = [n * n async for n in countdown(4) if n % 2 == 0]
    print("async comprehension:", squares)
    assert squares == [16, 4]


if __name__ == "__main__":
    uvcore.run(main())
