"""The lecture's in-memory PubSubManager, kept as the baseline for bench_pubsub.py.

Each channel has a list of asyncio.Queue, one per subscriber; subscribe() is an async
generator that registers its queue when first iterated and removes it when closed;
publish() puts the message into every queue.
"""
import asyncio
from typing import Any, AsyncGenerator, Dict, List


class PubSubManager:
    def __init__(self) -> None:
        self.subscribers: Dict[str, List[asyncio.Queue]] = {}

    async def subscribe(self, channel: str) -> AsyncGenerator[Any, None]:
        queue: asyncio.Queue = asyncio.Queue()
        self.subscribers.setdefault(channel, []).append(queue)
        try:
            while True:
                message = await queue.get()
                yield message
        finally:
            self.subscribers[channel].remove(queue)
            if not self.subscribers[channel]:
                del self.subscribers[channel]

    async def publish(self, channel: str, message: Any) -> None:
        for queue in self.subscribers.get(channel, []):
            await queue.put(message)


pubsub = PubSubManager()
