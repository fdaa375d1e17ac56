"""Unix socket servers and connections: path and abstract names, sock=, the socket file
cleaned up on close as the running Python's asyncio does (from 3.13, unless it was replaced),
a stale file replaced on bind."""
import asyncio
import os
import socket
import sys

import pytest

import uvcore

TIMEOUT = 10
# asyncio removes the socket file on close() from 3.13 on (cleanup_socket); 3.11/3.12 keep it
CLEANS_UP = sys.version_info >= (3, 13)


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


def test_unix_server_on_a_path_cleans_up_as_the_running_asyncio(loop, tmp_path):
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
        assert os.path.exists(path) is not CLEANS_UP

    run(loop, main())


def test_unix_server_keeps_a_file_that_replaced_its_socket(loop, tmp_path):
    path = str(tmp_path / "s.sock")

    async def main():
        server = await loop.create_unix_server(Echo, path, cleanup_socket=True)
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
        assert os.path.exists(path) is not CLEANS_UP
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


@pytest.fixture(params=["uvcore", "asyncio"])
def any_loop(request):
    lp = uvcore.new_event_loop() if request.param == "uvcore" else asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.mark.parametrize("how", ["path", "sock"])
def test_socket_file_after_close_is_the_running_asyncios(any_loop, tmp_path, how):
    path = str(tmp_path / "s.sock")

    async def main():
        if how == "path":
            server = await any_loop.create_unix_server(Echo, path)
        else:
            lsock = socket.socket(socket.AF_UNIX)
            lsock.bind(path)
            server = await any_loop.create_unix_server(Echo, sock=lsock)
        assert os.path.exists(path)
        server.close()
        await server.wait_closed()
        return os.path.exists(path)

    assert run(any_loop, main()) is not CLEANS_UP


@pytest.mark.skipif(not CLEANS_UP, reason="asyncio has cleanup_socket from Python 3.13")
def test_cleanup_socket_false_keeps_the_file(any_loop, tmp_path):
    path = str(tmp_path / "s.sock")

    async def main():
        server = await any_loop.create_unix_server(Echo, path, cleanup_socket=False)
        server.close()
        await server.wait_closed()
        return os.path.exists(path)

    assert run(any_loop, main()) is True


def test_cleanup_socket_can_be_asked_for_on_any_python(loop, tmp_path):
    """uvcore accepts asyncio 3.13's cleanup_socket on older Pythons too (only the default
    follows the running asyncio)."""
    path = str(tmp_path / "s.sock")

    async def main():
        server = await loop.create_unix_server(Echo, path, cleanup_socket=True)
        server.close()
        await server.wait_closed()
        assert not os.path.exists(path)
        server = await loop.create_unix_server(Echo, path, cleanup_socket=False)
        server.close()
        await server.wait_closed()
        assert os.path.exists(path)

    run(loop, main())
