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
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0-65535, not {args.port}")
    return args


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

    # loop="none": uvicorn serves on whatever loop is running (ours). The fan-out protocol is
    # uvicorn's own websockets protocol plus a sink per connection for uvcore.wsfanout.
    ws: Any = "auto"
    if args.fanout == "on":
        from uvcore.uvicorn import FanoutWebSocketProtocol

        ws = FanoutWebSocketProtocol
    config = uvicorn.Config(
        create_app(make_pubsub, shared=args.subscriptions == "shared"),
        host=args.host,
        port=args.port,
        loop="none",
        ws=ws,
        log_level=args.log_level,
        lifespan="on",
    )
    await uvicorn.Server(config).serve()


async def serve_aiohttp(args: argparse.Namespace, make_pubsub: Callable[[], Any]) -> None:
    from aiohttp import web

    from .app_aiohttp import create_app

    app = create_app(make_pubsub, shared=args.subscriptions == "shared", fanout=args.fanout == "on")
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    try:
        await web.TCPSite(runner, args.host, args.port).start()
        log.info("aiohttp serving on http://%s:%d", args.host, args.port)
        await stop.wait()
    finally:
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
