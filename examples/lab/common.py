"""What both HTTP front ends of the lab share: the chat page and the /stats document."""
from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from .schema import Chat

PubSubFactory = Callable[[], Any]


@functools.lru_cache(maxsize=1)
def page_html() -> str:
    return (Path(__file__).parent / "static" / "index.html").read_text(encoding="utf-8")


def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__qualname__}"


def server_stats(chat: Chat, server: str, view: Optional[Any] = None) -> Dict[str, Any]:
    """Broker counters, live GraphQL subscriptions, what the server runs on, how much the
    chat holds and what its limits refused (tests and the benchmark read this). `view` is
    the GraphQL view when it shares subscriptions."""
    pubsub = dict(chat.pubsub.stats())
    stats: Dict[str, Any] = {
        "server": server,
        "loop": loop_name(),
        "pubsub": pubsub,
        "chat": {"rooms": len(chat.rooms()), "messages": chat.stored},
        "limits": chat.counters.as_dict(),
    }
    if view is None:
        # One broker subscription per GraphQL subscription.
        stats["subscriptions"] = pubsub["subscribers"]
        return stats
    cohorts = view.cohort_registry().stats()
    # Each cohort's leader holds one broker subscription for all its members; a cohort counts
    # (with all its members) once that subscription is registered, so that a client waiting
    # for `subscriptions` to reach n knows a message published now reaches all n.
    stats["subscriptions"] = pubsub["subscribers"] - cohorts["cohorts"] + cohorts["members"]
    stats["cohorts"] = cohorts
    # FanoutSink: written by uvcore.wsfanout in C; PyFanoutSink: its transport.write fallback
    # (TLS, other loops); TextSink/BytesSink: the server's own WebSocket send (--fanout off).
    stats["sinks"] = view.cohort_registry().sink_types()
    return stats
