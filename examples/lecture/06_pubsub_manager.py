"""Lecture: the Pub/Sub manager - and the same thing with uvcore.PubSub.

The lecture's PubSubManager keeps, per channel, a list of asyncio.Queue (one per
subscriber); subscribe() is an async generator, publish() puts the message in every
queue. uvcore.PubSub has the same shape, with the broker and the iterators in C.
Run: python examples/lecture/06_pubsub_manager.py
"""
import asyncio
from collections import defaultdict
from typing import Any, AsyncGenerator, Dict, List, Tuple

import uvcore


class PubSubManager:
    """The lecture's version, in plain asyncio."""

    def __init__(self) -> None:
        self.channels: Dict[str, List["asyncio.Queue[Any]"]] = defaultdict(list)

    async def publish(self, channel: str, message: Any) -> int:
        for queue in self.channels[channel]:
            await queue.put(message)
        return len(self.channels[channel])

    async def subscribe(self, channel: str) -> AsyncGenerator[Any, None]:
        queue: "asyncio.Queue[Any]" = asyncio.Queue()
        self.channels[channel].append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self.channels[channel].remove(queue)


async def listener(pubsub: Any, name: str, count: int, ready: asyncio.Event,
                   received: List[Tuple[str, str]]) -> None:
    ready.set()
    # The lecture's loop. (PubSubManager registers its queue when the generator first runs,
    # i.e. as this `async for` starts, in this same step: before the publisher wakes up.)
    async for message_data in pubsub.subscribe("messages"):
        received.append((name, message_data["text"]))
        if sum(who == name for who, _ in received) == count:
            break


async def demo(pubsub: Any, label: str) -> List[Tuple[str, str]]:
    received: List[Tuple[str, str]] = []
    readies = [asyncio.Event() for _ in range(2)]
    tasks = [
        asyncio.ensure_future(listener(pubsub, name, 3, ready, received))
        for name, ready in zip(("alice", "bob"), readies)
    ]
    for ready in readies:
        await ready.wait()
    for text in ("one", "two", "three"):
        receivers = await pubsub.publish("messages", {"text": text})
        print(f"{label}: published {text!r} to {receivers} subscribers")
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    return sorted(received)


async def main() -> None:
    lecture = await demo(PubSubManager(), "PubSubManager")
    bus = uvcore.PubSub()
    core = await demo(bus, "uvcore.PubSub")
    print("received:", core)
    assert lecture == core == sorted((n, t) for n in ("alice", "bob") for t in ("one", "two", "three"))
    print("broker after the listeners left:", bus.stats())
    await bus.aclose()


if __name__ == "__main__":
    uvcore.run(main())
