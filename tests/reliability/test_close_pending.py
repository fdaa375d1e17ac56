"""Closing the loop with work still pending: timers, transports, servers, readers, executor
jobs. close() succeeds, the resources are released (no fd or object leak), and the only
warnings are asyncio's own ResourceWarnings for transports the user never closed."""
from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import socket
import threading
import warnings
import weakref

import uvcore


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_close_with_pending_timers_and_handles_releases_them(tally):
    class Marker:
        pass

    loop = uvcore.new_event_loop()
    markers = [Marker() for _ in range(200)]
    refs = [weakref.ref(m) for m in markers]
    for i, m in enumerate(markers):
        if i % 2:
            loop.call_later(3600, print, m)
        else:
            loop.call_soon(print, m)
    del markers, m
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loop.close()
    gc.collect()
    tally["faults"] += 200
    assert all(r() is None for r in refs)


def test_close_with_a_pending_executor_job_waits_for_nothing_and_leaks_no_thread(tally):
    release = threading.Event()
    loop = uvcore.new_event_loop()
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    loop.set_default_executor(executor)
    loop.run_in_executor(None, release.wait, 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loop.close()
    release.set()
    executor.shutdown(wait=True)
    tally["faults"] += 1
    assert not any(t.name.startswith("ThreadPoolExecutor") and t.is_alive() for t in threading.enumerate()
                   if t in getattr(executor, "_threads", ()))


def test_close_with_open_transports_servers_and_readers_frees_their_fds(tally):
    before = open_fds()

    async def setup(loop):
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transports = []
        for _ in range(20):
            tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            tr.write(b"x" * 100_000)  # leave writes pending too
            transports.append(tr)
        udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        a, b = socket.socketpair()
        loop.add_reader(a.fileno(), print)
        loop.add_writer(b.fileno(), print)
        loop.call_later(3600, print)
        return server, transports, udp, (a, b)

    loop = uvcore.new_event_loop()
    server, transports, udp, pair = loop.run_until_complete(setup(loop))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop.close()
        assert all(tr.is_closing() for tr in transports) and udp.is_closing()
        for s in pair:
            s.close()
        del server, transports, udp, pair
        gc.collect()
    tally["faults"] += 25
    # Unclosed transports may be reported (asyncio does), nothing else may be.
    unexpected = [w for w in caught if not (issubclass(w.category, ResourceWarning) and "nclosed" in str(w.message))]
    assert not unexpected, [str(w.message) for w in unexpected]
    assert open_fds() <= before


def test_close_while_tasks_are_suspended_on_queue_and_pubsub(tally):
    loop = uvcore.new_event_loop()
    q = uvcore.Queue()
    bus = uvcore.PubSub()

    async def setup():
        tasks = [asyncio.ensure_future(q.get()) for _ in range(10)]
        subs = [bus.subscribe("c") for _ in range(10)]
        tasks += [asyncio.ensure_future(s.__anext__()) for s in subs]
        await asyncio.sleep(0)
        return tasks, subs

    tasks, subs = loop.run_until_complete(setup())
    loop.run_until_complete(loop.shutdown_asyncgens())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Task was destroyed but it is pending" is asyncio's own
        loop.close()
        del tasks
        gc.collect()
    tally["faults"] += 20
    # Closing the subscriptions afterwards is silent (their waiters' loop is gone) and the
    # broker is usable from a new loop.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for s in subs:
            s.aclose()
        del subs
        gc.collect()
    assert bus.stats()["subscribers"] == 0

    async def again():
        sub = bus.subscribe("c")
        await bus.publish("c", 2)
        return await sub.__anext__()

    assert uvcore.run(again()) == 2


def test_repeatedly_closing_busy_loops_leaks_no_objects_or_fds(tally):
    """35 loops closed with a server, connections, pending writes, timers, readers, suspended
    Queue/PubSub waiters and executor jobs: after warm-up, object and fd counts stay flat."""

    async def busy(loop, q, bus):
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for _ in range(3):
            tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            tr.write(b"x" * 70_000)
        loop.call_later(3600, print)
        loop.run_in_executor(None, sum, range(10))
        asyncio.ensure_future(q.get())
        sub = bus.subscribe("c")
        asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0.001)
        return server

    def cycle():
        loop = uvcore.new_event_loop()
        q, bus = uvcore.Queue(), uvcore.PubSub()
        server = loop.run_until_complete(busy(loop, q, bus))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # asyncio's own "destroyed pending" and unclosed-transport notes
            server.close()
            loop.close()
            del server, q, bus, loop
            gc.collect()

    import logging

    logging.getLogger("asyncio").disabled = True
    try:
        for _ in range(5):
            cycle()
        gc.collect()
        objects, fds = len(gc.get_objects()), open_fds()
        for _ in range(30):
            cycle()
        gc.collect()
        grown_objects, grown_fds = len(gc.get_objects()) - objects, open_fds() - fds
    finally:
        logging.getLogger("asyncio").disabled = False
    print(f"busy loop cycles: {grown_objects} objects, {grown_fds} fds more")
    tally["faults"] += 35 * 8
    assert grown_fds <= 0
    assert grown_objects < 500, f"{grown_objects} objects more after 30 busy loops"
