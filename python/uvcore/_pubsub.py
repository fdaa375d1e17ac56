"""_pubsub: the Python face of uvcore's C broker (csrc/pubsub.c).

uvcore.PubSub is a thin subclass of the C type so that backends (the Redis bridge
behind PubSub.from_url) can be added in Python without touching the C fan-out.
"""
from typing import Any

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

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "PubSub":
        """PubSub.from_url("redis://host:6379/0", *, codec="json", ...) -> a PubSub on Redis.

        The same API, with messages going through Redis pub/sub so that several processes
        and servers share channels (see uvcore._redis.RedisPubSub for the options).
        Also rediss:// (TLS), redis://user:password@host, unix:///path/redis.sock.
        """
        from ._redis import RedisPubSub

        if not issubclass(cls, RedisPubSub):
            cls = RedisPubSub
        return cls(url, **options)
