"""Command line for the lab server: `python -m examples.lab.server` (what `make lab` runs).

Picks the front end (FastAPI+uvicorn or aiohttp), the event loop (uvcore's by default,
uvloop or asyncio for comparison) and the broker (uvcore.PubSub in memory, or
uvcore.PubSub.from_url with --redis URL so several servers share one chat), then serves
until SIGINT/SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any, Awaitable, Callable, Coroutine, List, Optional

log = logging.getLogger("lab")

LOOPS = ("uvcore", "uvloop", "asyncio")
SERVERS = ("fastapi", "aiohttp")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.lab.server",
        description="The uvcore lab: a Strawberry GraphQL chat with live subscriptions.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default %(default)s)")
    parser.add_argument("--loop", choices=LOOPS, default="uvcore", help="event loop (default %(default)s)")
    parser.add_argument("--server", choices=SERVERS, default="fastapi", help="HTTP front end (default %(default)s)")
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="share the chat between servers through Redis (redis://host:port/db); default: in-memory broker",
    )
    parser.add_argument(
        "--subscriptions",
        choices=("shared", "plain"),
        default="shared",
        help="shared: one execution per room and event (uvcore.strawberry cohorts); plain: "
        "Strawberry's own, one per subscriber (default %(default)s)",
    )
    parser.add_argument(
        "--fanout",
        choices=("on", "off"),
        default="on",
        help="on: shared subscriptions' messages go out through uvcore.wsfanout (in C on uvcore, "
        "transport.write on the other loops); off: through the server's own WebSocket send "
        "(default %(default)s)",
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    add_limit_options(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0-65535, not {args.port}")
    try:
        args.limits = limits_from_args(args)
    except ValueError as exc:
        parser.error(f"--{exc}")
    return args


# What one client may cost the server (examples/lab/limits.py); option name -> help.
LIMIT_OPTIONS = {
    "max_query_bytes": "longest GraphQL query text, in characters",
    "max_depth": "deepest selection nesting in a query",
    "max_aliases": "most aliases in a query",
    "max_tokens": "most lexer tokens in a query (parsing stops there)",
    "operation_timeout": "seconds an operation may wait for the broker (Redis) before it fails",
    "max_body_bytes": "largest HTTP request body (413 above) and WebSocket message",
    "max_rooms": "most rooms; a new one evicts the room idle for longest, with its history",
    "max_history": "most stored messages over all rooms; the oldest go first",
    "max_outbound_bytes": "bytes queued for a WebSocket client that does not read before it is closed (1008)",
    "header_timeout": "seconds to send a request head (and graphql-transport-ws's connection_init)",
    "idle_timeout": "seconds an idle HTTP keep-alive connection stays open",
}


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    from .limits import Limits

    group = parser.add_argument_group("limits", "what one client may cost the server (see the README's lab section)")
    defaults = Limits()
    for name, text in LIMIT_OPTIONS.items():
        default = getattr(defaults, name)
        group.add_argument(
            "--" + name.replace("_", "-"), type=type(default), default=default, metavar="N",
            help=f"{text} (default %(default)s)",
        )


def limits_from_args(args: argparse.Namespace) -> Any:
    from .limits import Limits

    return Limits(**{name: getattr(args, name) for name in LIMIT_OPTIONS})


# -- the broker ---------------------------------------------------------------------------


def pubsub_factory(redis_url: Optional[str]) -> Callable[[], Any]:
    """Returns a function that makes the broker; called inside the serving loop."""
    import uvcore

    if not hasattr(uvcore, "PubSub"):
        raise RuntimeError("this uvcore build has no uvcore.PubSub (csrc/pubsub.c): rebuild with `make build`")
    if redis_url is None:
        return uvcore.PubSub
    from_url = uvcore.PubSub.from_url
    from_url(redis_url)  # a bad URL fails here, before anything starts (this does no I/O)
    return lambda: from_url(redis_url)


def redis_unreachable(redis_url: str) -> Optional[str]:
    """None when Redis at redis_url answers, otherwise why not: the server does not start
    against a Redis it cannot reach (once serving, the broker reconnects by itself)."""
    import uvcore

    async def probe() -> None:
        bus = uvcore.PubSub.from_url(redis_url)
        try:
            await bus.connect()
        finally:
            await bus.aclose()

    try:
        asyncio.run(probe())
    except ConnectionError as exc:
        return str(exc)
    return None


# -- the event loop -----------------------------------------------------------------------


def run_on(loop_name: str, main: Coroutine[Any, Any, None]) -> None:
    if loop_name == "uvcore":
        import uvcore

        uvcore.run(main)
        return
    if loop_name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.SelectorEventLoop
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# -- the front ends -----------------------------------------------------------------------


async def serve_fastapi(args: argparse.Namespace, make_pubsub: Callable[[], Any]) -> None:
    import uvicorn

    from .app_fastapi import create_app
    from .uvicorn_protocols import guarded_protocols

    limits = args.limits
    app = create_app(make_pubsub, limits, shared=args.subscriptions == "shared")
    # The WebSocket protocol is uvicorn's own websockets protocol, with the lab's limits and,
    # with --fanout on, a sink per connection for uvcore.wsfanout (uvcore.uvicorn).
    http_protocol, ws_protocol = guarded_protocols(limits, app.counters, fanout=args.fanout == "on")
    # loop="none": uvicorn serves on whatever loop is running (ours).
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop="none",
        log_level=args.log_level,
        lifespan="on",
        http=http_protocol,
        ws=ws_protocol,
        ws_max_size=limits.max_body_bytes,
        timeout_keep_alive=limits.idle_timeout,
    )
    await uvicorn.Server(config).serve()


async def serve_aiohttp(args: argparse.Namespace, make_pubsub: Callable[[], Any]) -> None:
    from aiohttp import web

    from .app_aiohttp import HEAD_TIMEOUTS_KEY, create_app

    app = create_app(make_pubsub, args.limits, shared=args.subscriptions == "shared", fanout=args.fanout == "on")
    # lingering_time: how long aiohttp reads (and drops) the rest of a refused request's body
    # before it closes, so that the client sees the 413 or 408 (aiohttp's default: 10 s).
    runner = web.AppRunner(
        app,
        handle_signals=False,
        keepalive_timeout=args.limits.idle_timeout,
        lingering_time=min(2.0, args.limits.header_timeout),
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    server = None
    try:
        # What web.TCPSite does, with the request-head timeout around aiohttp's protocol factory.
        assert runner.server is not None  # set by runner.setup()
        server = await loop.create_server(
            app[HEAD_TIMEOUTS_KEY].wrap(runner.server), args.host, args.port, reuse_address=True
        )
        log.info("aiohttp serving on http://%s:%d", args.host, args.port)
        await stop.wait()
    finally:
        if server is not None:
            server.close()
        await runner.cleanup()


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    try:
        make_pubsub = pubsub_factory(args.redis)
    except (RuntimeError, ImportError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    if args.redis:
        reason = redis_unreachable(args.redis)
        if reason is not None:
            log.error("--redis: %s", reason)
            return 2
    loop_name = args.loop
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    log.info(
        "the chat page: http://%s:%d/ (GraphQL at /graphql) - %s on the %s loop, %s broker",
        shown_host,
        args.port,
        args.server,
        loop_name,
        "Redis" if args.redis else "in-memory",
    )
    serve = serve_fastapi if args.server == "fastapi" else serve_aiohttp
    try:
        run_on(loop_name, serve(args, make_pubsub))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
