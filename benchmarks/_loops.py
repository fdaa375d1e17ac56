"""The event loops every benchmark compares, made by name (shared by the bench_* scripts)."""
import asyncio


def new_loop(name):
    """A new event loop of the named kind: "asyncio", "uvloop", "rloop" or "uvcore"."""
    if name == "asyncio":
        return asyncio.new_event_loop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if name == "rloop":
        import rloop

        return rloop.new_event_loop()
    if name == "uvcore":
        import uvcore

        return uvcore.new_event_loop()
    raise ValueError(f"unknown loop {name!r}")
