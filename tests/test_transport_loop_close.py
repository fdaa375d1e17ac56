"""Closing a loop while transports and servers are still open closes their libuv handles
first: no crash, no leak, and using them afterwards is harmless."""
import asyncio
import gc
import os
import weakref

import uvcore


class Hold(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport


def open_everything(loop, tmp_path):
    async def main():
        server = await loop.create_server(Hold, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        userver = await loop.create_unix_server(Hold, str(tmp_path / "u.sock"))
        conns = []
        for _ in range(3):
            tr, pr = await loop.create_connection(Hold, "127.0.0.1", port)
            conns.append((tr, pr))
        utr, upr = await loop.create_unix_connection(Hold, str(tmp_path / "u.sock"))
        conns.append((utr, upr))
        # a transport with a write queue (the peer is not reading)
        conns[0][0].get_extra_info("socket")
        conns[0][0].write(b"q" * 20_000_000)
        # a transport being closed (connection_lost still scheduled)
        conns[1][0].close()
        await asyncio.sleep(0.05)
        return server, userver, conns

    return loop.run_until_complete(asyncio.wait_for(main(), 10))


def count_fds():
    return len(os.listdir("/proc/self/fd"))


def test_closing_the_loop_closes_open_transports_and_servers(tmp_path):
    uvcore.new_event_loop().close()  # libuv's process-wide signal pipe, made once
    fds_before = count_fds()
    loop = uvcore.new_event_loop()
    server, userver, conns = open_everything(loop, tmp_path)
    refs = [weakref.ref(tr) for tr, _ in conns] + [weakref.ref(pr) for _, pr in conns]
    loop.close()
    assert loop.is_closed()
    # using them now is harmless
    for tr, _ in conns:
        tr.write(b"late")
        tr.close()
        tr.abort()
        assert tr.is_closing()
        assert tr.get_write_buffer_size() == 0
    server.close()
    userver.close()
    del server, userver, conns, tr, _
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    assert count_fds() <= fds_before


def test_dropping_an_unclosed_loop_with_closed_transports(tmp_path):
    loop = uvcore.new_event_loop()
    server, userver, conns = open_everything(loop, tmp_path)
    for tr, _ in conns:
        tr.abort()
    server.close()
    userver.close()
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    del loop, server, userver, conns
    gc.collect()
