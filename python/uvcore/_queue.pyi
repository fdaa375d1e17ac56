# Type stubs for uvcore._queue: the C queues re-exported.
from ._uvcore import LifoQueue as LifoQueue, PriorityQueue as PriorityQueue, Queue as Queue
from ._uvcore import QueueEmpty as QueueEmpty, QueueFull as QueueFull, QueueShutDown as QueueShutDown

__all__ = ["Queue", "LifoQueue", "PriorityQueue", "QueueEmpty", "QueueFull", "QueueShutDown"]
