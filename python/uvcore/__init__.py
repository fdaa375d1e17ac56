"""uvcore: an asyncio event loop, Queue and Pub/Sub broker written in C on libuv."""
from . import _uvcore
from ._loop import *  # noqa: F401,F403
from ._loop import __all__ as _loop_all
from ._queue import *  # noqa: F401,F403
from ._queue import __all__ as _queue_all
from ._pubsub import *  # noqa: F401,F403
from ._pubsub import __all__ as _pubsub_all
from ._udp import *  # noqa: F401,F403
from ._udp import __all__ as _udp_all
from ._subprocess import *  # noqa: F401,F403
from ._subprocess import __all__ as _subprocess_all

__version__ = "0.1.0"
libuv_version = _uvcore.libuv_version
__all__ = [*_loop_all, *_queue_all, *_pubsub_all, *_udp_all, *_subprocess_all, "libuv_version"]
