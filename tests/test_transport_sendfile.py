"""loop.sendfile on uvcore transports: os.sendfile after the queued writes, offset/count,
the read-and-write fallback (TLS), argument checks."""
import asyncio
import ssl

import pytest
from test.test_asyncio import utils as aio_test_utils

TIMEOUT = 15
DATA = bytes(range(256)) * 40_000  # ~10 MB


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


@pytest.fixture
def datafile(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(DATA)
    with open(p, "rb") as f:
        yield f


class Collect(asyncio.Protocol):
    def __init__(self, loop):
        self.data = bytearray()
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data

    def connection_lost(self, exc):
        self.done.set_result(bytes(self.data))


async def connect(loop, ssl_pair=None):
    sp = Collect(loop)
    server = await loop.create_server(lambda: sp, "127.0.0.1", 0, ssl=ssl_pair and ssl_pair[0])
    port = server.sockets[0].getsockname()[1]
    kw = {"ssl": ssl_pair[1], "server_hostname": "localhost"} if ssl_pair else {}
    tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, **kw)
    return server, sp, tr


def test_sendfile_sends_the_file_after_earlier_writes(loop, datafile):
    async def main():
        server, sp, tr = await connect(loop)
        tr.write(b"header:")
        n = await loop.sendfile(tr, datafile)
        tr.write(b":trailer")
        assert n == len(DATA)
        assert datafile.tell() == len(DATA)
        tr.close()
        assert await sp.done == b"header:" + DATA + b":trailer"
        server.close()

    run(loop, main())


def test_sendfile_offset_and_count(loop, datafile):
    async def main():
        server, sp, tr = await connect(loop)
        n = await loop.sendfile(tr, datafile, offset=1000, count=5000)
        assert n == 5000
        assert datafile.tell() == 6000
        tr.close()
        assert await sp.done == DATA[1000:6000]
        server.close()

    run(loop, main())


def test_sendfile_falls_back_to_reads_and_writes_over_tls(loop, datafile):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(aio_test_utils.ONLYCERT, aio_test_utils.ONLYKEY)
    client_ctx = ssl.create_default_context(cafile=aio_test_utils.ONLYCERT)

    async def main():
        server, sp, tr = await connect(loop, (server_ctx, client_ctx))
        n = await loop.sendfile(tr, datafile, count=3_000_000)
        assert n == 3_000_000
        tr.close()
        assert await sp.done == DATA[:3_000_000]
        server.close()

    run(loop, main())


def test_sendfile_argument_checks(loop, datafile, tmp_path):
    async def main():
        server, sp, tr = await connect(loop)
        with pytest.raises(ValueError, match="count"):
            await loop.sendfile(tr, datafile, count=0)
        with pytest.raises(ValueError, match="offset"):
            await loop.sendfile(tr, datafile, offset=-1)
        text = open(tmp_path / "t.txt", "w+")
        with pytest.raises(ValueError, match="binary mode"):
            await loop.sendfile(tr, text)
        text.close()
        tr.close()
        with pytest.raises(RuntimeError, match="closing"):
            await loop.sendfile(tr, datafile)
        await sp.done
        server.close()

    run(loop, main())
