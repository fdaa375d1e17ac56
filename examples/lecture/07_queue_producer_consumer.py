"""Lecture: producer/consumer with a queue - here uvcore.Queue, asyncio.Queue's C twin.

Two producers put jobs, three consumers take them; `join()` waits until every job was
marked done with `task_done()`, then the consumers are cancelled. A bounded queue
(maxsize) makes fast producers wait for slow consumers: back-pressure.
Run: python examples/lecture/07_queue_producer_consumer.py
"""
import asyncio
import random
from typing import List, Tuple

import uvcore


async def producer(queue: "uvcore.Queue[str]", name: str, jobs: int) -> None:
    for n in range(jobs):
        await queue.put(f"{name}-job{n}")  # waits while the queue is full
        await asyncio.sleep(random.uniform(0, 0.005))


async def consumer(queue: "uvcore.Queue[str]", name: str, done: List[Tuple[str, str]]) -> None:
    while True:
        job = await queue.get()
        try:
            await asyncio.sleep(random.uniform(0, 0.01))  # the work
            done.append((name, job))
        finally:
            queue.task_done()


async def main() -> None:
    queue: "uvcore.Queue[str]" = uvcore.Queue(maxsize=4)
    done: List[Tuple[str, str]] = []
    consumers = [asyncio.ensure_future(consumer(queue, f"worker{i}", done)) for i in range(3)]
    await asyncio.gather(producer(queue, "A", 10), producer(queue, "B", 10))
    await queue.join()  # every job taken *and* finished
    for task in consumers:
        task.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    per_worker = {name: sum(1 for who, _ in done if who == name) for name, _ in done}
    print(f"{len(done)} jobs done, per worker: {dict(sorted(per_worker.items()))}")
    assert sorted(job for _, job in done) == sorted(f"{p}-job{n}" for p in "AB" for n in range(10))
    assert queue.empty()


if __name__ == "__main__":
    uvcore.run(main())
