"""asyncio streams (open_connection, start_server, their Unix versions, StreamReader and
StreamWriter with drain, readline, write_eof) on uvcore transports."""
import asyncio

TIMEOUT = 10


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


async def upper_handler(reader, writer):
    async for line in reader:
        writer.write(line.upper())
        await writer.drain()
    writer.write(b"BYE\n")
    writer.close()
    await writer.wait_closed()


def test_streams_over_tcp(loop):
    async def main():
        server = await asyncio.start_server(upper_handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        for word in (b"one\n", b"two\n", b"three\n"):
            w.write(word)
            await w.drain()
            assert await r.readline() == word.upper()
        w.write_eof()
        assert await r.readline() == b"BYE\n"
        assert await r.read() == b""
        w.close()
        await w.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_streams_drain_with_large_writes(loop):
    async def sink(reader, writer):
        total = 0
        while chunk := await reader.read(1 << 20):
            total += len(chunk)
        writer.write(str(total).encode())
        writer.close()

    async def main():
        server = await asyncio.start_server(sink, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        block = b"z" * (1 << 20)
        for _ in range(32):
            w.write(block)
            await w.drain()
        w.write_eof()
        assert int(await r.read()) == 32 << 20
        w.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_streams_over_unix(loop, tmp_path):
    path = str(tmp_path / "streams.sock")

    async def main():
        server = await asyncio.start_unix_server(upper_handler, path)
        r, w = await asyncio.open_unix_connection(path)
        w.write(b"unix\n")
        assert await r.readline() == b"UNIX\n"
        w.close()
        await w.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())
