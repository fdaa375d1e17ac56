"""10,000 connect / echo / close cycles over uvcore's TCP transports leave RSS and
len(gc.get_objects()) flat: a transport, protocol, write request or buffer leaked per cycle
would show up far above the bounds."""
import asyncio
import gc
import os

import uvcore

CYCLES = 10_000
WARMUP = 500
BATCH = 20
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class EchoClose(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)
        self.transport.close()


class Client(asyncio.Protocol):
    def __init__(self, done):
        self.done = done

    def connection_made(self, transport):
        transport.writelines([b"pi", b"ng"])

    def data_received(self, data):
        pass

    def connection_lost(self, exc):
        self.done.set_result(exc)


async def cycles(loop, port, n):
    for _ in range(0, n, BATCH):
        waits = []
        for _ in range(BATCH):
            done = loop.create_future()
            await loop.create_connection(lambda: Client(done), "127.0.0.1", port)
            waits.append(done)
        await asyncio.gather(*waits)


def test_connect_close_cycles_do_not_leak():
    loop = uvcore.new_event_loop()
    try:
        server = loop.run_until_complete(loop.create_server(EchoClose, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        loop.run_until_complete(cycles(loop, port, WARMUP))
        gc.collect()
        rss0, objs0 = rss(), len(gc.get_objects())
        loop.run_until_complete(asyncio.wait_for(cycles(loop, port, CYCLES), 120))
        gc.collect()
        rss1, objs1 = rss(), len(gc.get_objects())
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.close()
    assert objs1 - objs0 < 500, (objs0, objs1)
    if not os.environ.get("UVCORE_EXPECT_ASAN"):  # ASan's quarantine keeps freed memory
        assert rss1 - rss0 < 8 * 1024 * 1024, (rss0, rss1)
