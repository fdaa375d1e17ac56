"""_pubsub: the Python face of uvcore's C broker (csrc/pubsub.c).

uvcore.PubSub is a thin subclass of the C type so that backends (the Redis bridge of
issue 7: PubSub.from_url) can be added in Python without touching the C fan-out.
"""
from . import _uvcore

__all__ = ["PubSub", "Subscription", "SubscriberOverflow"]

Subscription = _uvcore.Subscription
SubscriberOverflow = _uvcore.SubscriberOverflow


class PubSub(_uvcore.PubSub):
    """PubSub(*, maxsize=1024, overflow="drop_oldest")

    An in-memory publish/subscribe broker, any event loop::

        bus = uvcore.PubSub()
        async with bus.subscribe("chat.*") as sub:   # registered now; glob pattern
            n = await bus.publish("chat.room1", {"text": "hi"})   # local receivers
            msg = await anext(sub)

    ``maxsize``/``overflow`` are the defaults for :meth:`subscribe`.
    """

    __slots__ = ()
