"""What both HTTP front ends of the lab share: the chat page and the /stats document."""
from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any, Callable, Dict

from .schema import Chat

PubSubFactory = Callable[[], Any]


@functools.lru_cache(maxsize=1)
def page_html() -> str:
    return (Path(__file__).parent / "static" / "index.html").read_text(encoding="utf-8")


def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__qualname__}"


def server_stats(chat: Chat, server: str) -> Dict[str, Any]:
    """Broker counters, what the server runs on, how much the chat holds and what its limits
    refused (tests and the benchmark read this)."""
    return {
        "server": server,
        "loop": loop_name(),
        "pubsub": dict(chat.pubsub.stats()),
        "chat": {"rooms": len(chat.rooms()), "messages": chat.stored},
        "limits": chat.counters.as_dict(),
    }
