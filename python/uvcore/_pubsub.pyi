# Type stubs for uvcore._pubsub: the Python face of the C broker.
from typing import Any

from . import _uvcore
from ._redis import RedisPubSub

__all__ = ["PubSub", "Subscription", "SubscriberOverflow"]

Subscription = _uvcore.Subscription
SubscriberOverflow = _uvcore.SubscriberOverflow

class PubSub(_uvcore.PubSub):
    """An in-memory publish/subscribe broker, any event loop."""
    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisPubSub: ...
