# Type stubs for the uvcore package: the public API (the C core's stubs are in _uvcore.pyi).
from . import _uvcore as _uvcore
from ._loop import EventLoopPolicy as EventLoopPolicy, Loop as Loop, install as install
from ._loop import new_event_loop as new_event_loop, run as run
from ._pubsub import PubSub as PubSub, SubscriberOverflow as SubscriberOverflow, Subscription as Subscription
from ._queue import LifoQueue as LifoQueue, PriorityQueue as PriorityQueue, Queue as Queue
from ._queue import QueueEmpty as QueueEmpty, QueueFull as QueueFull, QueueShutDown as QueueShutDown
from ._udp import UDPTransport as UDPTransport

__version__: str
libuv_version: str
__all__ = [
    "Loop", "new_event_loop", "run", "EventLoopPolicy", "install",
    "Queue", "LifoQueue", "PriorityQueue", "QueueEmpty", "QueueFull", "QueueShutDown",
    "PubSub", "Subscription", "SubscriberOverflow", "UDPTransport", "libuv_version",
]
