"""Unix socket servers and connections: path and abstract names, sock=, the socket file
cleaned up on close (unless it was replaced), a stale file replaced on bind."""
import asyncio
import os
import socket
import sys

import pytest

TIMEOUT = 10


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def roundtrip(path):
    r, w = await asyncio.open_unix_connection(path)
    w.write(b"unix")
    data = await r.readexactly(4)
    w.close()
    await w.wait_closed()
    return data


def test_unix_server_on_a_path_cleans_up_its_file(loop, tmp_path):
    path = str(tmp_path / "s.sock")

    async def main():
        server = await loop.create_unix_server(Echo, path)
        assert os.path.exists(path)
        assert server.sockets[0].getsockname() == path
        assert await roundtrip(path) == b"unix"
        tr, pr = await loop.create_unix_connection(Echo, path)
        assert tr.get_extra_info("peername") == path
        assert tr.get_extra_info("sockname") == ""
        assert "unix" in repr(tr)
        tr.close()
        server.close()
        await server.wait_closed()
        assert not os.path.exists(path)

    run(loop, main())


def test_unix_server_keeps_a_file_that_replaced_its_socket(loop, tmp_path):
    path = str(tmp_path / "s.sock")

    async def main():
        server = await loop.create_unix_server(Echo, path)
        os.unlink(path)
        with open(path, "w") as f:
            f.write("not ours")
        server.close()
        await server.wait_closed()
        assert os.path.exists(path)

    run(loop, main())


def test_stale_socket_file_is_replaced(loop, tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()

    async def main():
        server = await loop.create_unix_server(Echo, path)
        assert await roundtrip(path) == b"unix"
        server.close()
        await server.wait_closed()

    run(loop, main())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract names are Linux-only")
def test_abstract_socket_name(loop):
    name = f"\0uvcore-test-{os.getpid()}"

    async def main():
        server = await loop.create_unix_server(Echo, name)
        assert server.sockets[0].getsockname() == name.encode()
        assert await roundtrip(name) == b"unix"
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_unix_server_and_connection_from_sock(loop, tmp_path):
    path = str(tmp_path / "s.sock")

    async def main():
        lsock = socket.socket(socket.AF_UNIX)
        lsock.bind(path)
        server = await loop.create_unix_server(Echo, sock=lsock)
        csock = socket.socket(socket.AF_UNIX)
        csock.connect(path)
        tr, pr = await loop.create_unix_connection(asyncio.Protocol, sock=csock)
        tr.close()
        server.close()
        await server.wait_closed()
        assert not os.path.exists(path)
        with pytest.raises(ValueError, match="UNIX Domain Stream Socket"):
            await loop.create_unix_server(Echo, sock=socket.socket())

    run(loop, main())


def test_unix_errors(loop, tmp_path):
    async def main():
        with pytest.raises(FileNotFoundError):
            await loop.create_unix_connection(Echo, str(tmp_path / "missing.sock"))
        with pytest.raises(ValueError, match="no path and sock"):
            await loop.create_unix_connection(Echo)
        path = str(tmp_path / "busy.sock")
        server = await loop.create_unix_server(Echo, path)
        other = socket.socket(socket.AF_UNIX)
        try:
            # a path that is not a socket file: bind fails, nothing is removed
            with pytest.raises(OSError):
                await loop.create_unix_server(Echo, str(tmp_path))
        finally:
            other.close()
        server.close()
        await server.wait_closed()

    run(loop, main())
