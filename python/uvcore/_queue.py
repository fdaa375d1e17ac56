"""_queue: uvcore.Queue, LifoQueue and PriorityQueue (csrc/queue.c).

Drop-in replacements for asyncio's queues on any asyncio loop. QueueEmpty and QueueFull are
asyncio's own classes; QueueShutDown is asyncio's on Python 3.13+ and uvcore's own before.
"""
from ._uvcore import LifoQueue, PriorityQueue, Queue, QueueEmpty, QueueFull, QueueShutDown

__all__ = ["Queue", "LifoQueue", "PriorityQueue", "QueueEmpty", "QueueFull", "QueueShutDown"]
