"""uvcore's Server and create_server/create_connection options: host lists, port 0, sock=,
start_serving, close/wait_closed, serve_forever, async with, close_clients/abort_clients,
reuse_port, local_addr, connect_accepted_socket, connection errors."""
import asyncio
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


async def roundtrip(host, port, payload=b"ping"):
    r, w = await asyncio.open_connection(host, port)
    w.write(payload)
    data = await r.readexactly(len(payload))
    w.close()
    await w.wait_closed()
    return data


def test_server_serves_and_reports_its_state(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        assert server.get_loop() is loop
        assert server.is_serving()
        (sock,) = server.sockets
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
        assert await roundtrip(host, port) == b"ping"
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, port)

    run(loop, main())


def test_host_list_binds_every_address_once(loop):
    async def main():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = await loop.create_server(Echo, ["127.0.0.1", "127.0.0.1", "localhost"], port)
        names = {s.getsockname()[:2] for s in server.sockets}
        assert ("127.0.0.1", port) in names
        assert await roundtrip("127.0.0.1", port) == b"ping"
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_host_none_listens_on_all_families(loop):
    async def main():
        server = await loop.create_server(Echo, None, 0)
        families = {s.family for s in server.sockets}
        assert socket.AF_INET in families
        port = server.sockets[0].getsockname()[1]
        assert await roundtrip("127.0.0.1", port) == b"ping"
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_start_serving_false_listens_only_when_asked(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, start_serving=False)
        assert not server.is_serving()
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        await server.start_serving()
        assert server.is_serving()
        assert await roundtrip("127.0.0.1", port) == b"ping"
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_server_from_sock_and_async_with(loop):
    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with await loop.create_server(Echo, sock=sock, backlog=5) as server:
            assert await roundtrip("127.0.0.1", port) == b"ping"
        assert not server.is_serving()
        assert sock.fileno() == -1  # the server owned and closed it

    run(loop, main())


def test_serve_forever_stops_when_cancelled(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, start_serving=False)
        port = server.sockets[0].getsockname()[1]
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already being awaited"):
            await server.serve_forever()
        assert await roundtrip("127.0.0.1", port) == b"ping"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        with pytest.raises(RuntimeError, match="is closed"):
            await server.serve_forever()

    run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="wait_closed waits for clients from 3.12")
def test_wait_closed_waits_for_connections_and_close_clients_ends_them(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"x")
        await r.readexactly(1)
        server.close()
        waiter = asyncio.ensure_future(server.wait_closed())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        server.close_clients()
        await waiter
        assert await r.read() == b""
        w.close()

    run(loop, main())


def test_abort_clients_aborts_every_connection(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for r, w in conns:
            w.write(b"x")
            await r.readexactly(1)
        server.abort_clients()
        for r, w in conns:
            try:
                assert await r.read() == b""
            except ConnectionResetError:
                pass
            w.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_reuse_port_lets_two_servers_share_a_port(loop):
    async def main():
        s1 = await loop.create_server(Echo, "127.0.0.1", 0, reuse_port=True)
        port = s1.sockets[0].getsockname()[1]
        s2 = await loop.create_server(Echo, "127.0.0.1", port, reuse_port=True)
        assert s2.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        assert await roundtrip("127.0.0.1", port) == b"ping"
        for s in (s1, s2):
            s.close()
            await s.wait_closed()

    run(loop, main())


def test_address_in_use_is_an_oserror_with_asyncio_text(loop):
    async def main():
        s1 = await loop.create_server(Echo, "127.0.0.1", 0)
        port = s1.sockets[0].getsockname()[1]
        with pytest.raises(OSError, match="error while attempting to bind on address"):
            await loop.create_server(Echo, "127.0.0.1", port, reuse_address=False)
        s1.close()
        await s1.wait_closed()

    run(loop, main())


def test_argument_errors_are_asyncio_errors(loop):
    async def main():
        with pytest.raises(ValueError, match="Neither host/port nor sock"):
            await loop.create_server(Echo)
        with pytest.raises(TypeError, match="SSLContext"):
            await loop.create_server(Echo, "127.0.0.1", 0, ssl=True)
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await loop.create_server(Echo, "127.0.0.1", 0, ssl_handshake_timeout=1)
        with pytest.raises(ValueError, match="host and port was not specified"):
            await loop.create_connection(Echo)
        with pytest.raises(ValueError, match="server_hostname is only meaningful"):
            await loop.create_connection(Echo, "127.0.0.1", 1, server_hostname="x")
        udp = socket.socket(type=socket.SOCK_DGRAM)
        with pytest.raises(ValueError, match="Stream Socket was expected"):
            await loop.create_connection(Echo, sock=udp)
        udp.close()

    run(loop, main())


def test_create_connection_refused_and_multiple_addresses(loop):
    async def main():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(Echo, "127.0.0.1", port)
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        good = server.sockets[0].getsockname()[1]
        # happy eyeballs arguments are accepted; attempts go in turn until one works
        tr, pr = await loop.create_connection(Echo, "127.0.0.1", good,
                                              happy_eyeballs_delay=0.1, interleave=1)
        tr.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_create_connection_local_addr_and_sock(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            local_port = s.getsockname()[1]
        tr, _ = await loop.create_connection(Echo, "127.0.0.1", port,
                                             local_addr=("127.0.0.1", local_port))
        assert tr.get_extra_info("sockname") == ("127.0.0.1", local_port)
        tr.close()
        sock = socket.create_connection(("127.0.0.1", port))
        tr, _ = await loop.create_connection(Echo, sock=sock)
        assert tr.get_extra_info("socket").fileno() == sock.fileno()
        tr.close()
        await asyncio.sleep(0)
        assert sock.fileno() == -1
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_connect_accepted_socket(loop):
    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        client = socket.create_connection(lsock.getsockname())
        conn, _ = lsock.accept()
        lsock.close()
        tr, pr = await loop.connect_accepted_socket(Echo, conn)
        client.sendall(b"accepted")
        got = b""
        while len(got) < 8:
            got += await loop.run_in_executor(None, client.recv, 100)
        assert got == b"accepted"
        tr.close()
        client.close()

    run(loop, main())


def test_protocol_factory_error_drops_the_connection_only(loop):
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError
        return Echo()

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert await r.read() == b""
        w.close()
        assert await roundtrip("127.0.0.1", port) == b"ping"
        server.close()
        await server.wait_closed()

    run(loop, main())
