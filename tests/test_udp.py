"""create_datagram_endpoint and the C datagram transport (UDP and Unix datagram sockets)."""
import asyncio
import gc
import os
import socket
import sys
import tempfile
import threading

import pytest

import uvcore

T = 10  # seconds any single wait may take


class Recorder(asyncio.DatagramProtocol):
    """Records every callback; futures fire on the first datagram and on connection_lost."""

    def __init__(self, echo=False):
        loop = asyncio.get_running_loop()
        self.echo = echo
        self.events = []
        self.datagrams = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.lost = loop.create_future()
        self.transport = None
        self.paused = 0
        self.resumed = 0

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def datagram_received(self, data, addr):
        self.datagrams.put_nowait((data, addr))
        if self.echo:
            self.transport.sendto(b"re:" + data, addr)

    def error_received(self, exc):
        self.errors.put_nowait(exc)

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1


async def endpoint(**kwargs):
    loop = asyncio.get_running_loop()
    echo = kwargs.pop("echo", False)
    return await loop.create_datagram_endpoint(lambda: Recorder(echo), **kwargs)


async def get(q):
    return await asyncio.wait_for(q.get(), T)


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 30))


def test_echo_round_trip_ipv4(loop):
    async def main():
        st, sp = await endpoint(local_addr=("127.0.0.1", 0), echo=True)
        addr = st.get_extra_info("sockname")
        ct, cp = await endpoint(remote_addr=addr)
        assert isinstance(st, asyncio.Transport) and isinstance(st, asyncio.DatagramTransport)
        assert sp.events == ["made"] and sp.transport is st
        ct.sendto(b"ping")
        data, peer = await get(sp.datagrams)
        assert data == b"ping" and peer == ct.get_extra_info("sockname")
        assert await get(cp.datagrams) == (b"re:ping", addr)
        assert ct.get_extra_info("peername") == addr
        ct.close()
        assert await asyncio.wait_for(cp.lost, T) is None
        st.close()
        await asyncio.wait_for(sp.lost, T)
        assert sp.events == ["made", "lost"]

    run(loop, main())


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_echo_round_trip_ipv6(loop):
    async def main():
        try:
            st, sp = await endpoint(local_addr=("::1", 0), echo=True)
        except OSError:
            pytest.skip("::1 is not configured")
        host, port = st.get_extra_info("sockname")[:2]
        ct, cp = await endpoint(remote_addr=(host, port))
        ct.sendto(b"six")
        data, addr = await get(cp.datagrams)
        assert data == b"re:six" and addr[:2] == (host, port) and len(addr) == 4
        ct.close()
        st.close()
        await cp.lost

    run(loop, main())


def test_unconnected_endpoint_sends_to_any_address(loop):
    async def main():
        a, ap = await endpoint(local_addr=("127.0.0.1", 0))
        b, bp = await endpoint(local_addr=("127.0.0.1", 0))
        c, cp = await endpoint(family=socket.AF_INET)
        for tr in (b, c):
            tr.sendto(b"to-a", a.get_extra_info("sockname"))
        got = sorted([(await get(ap.datagrams))[0], (await get(ap.datagrams))[0]])
        assert got == [b"to-a", b"to-a"]
        # replying to the address object datagram_received gave (the cached fast path)
        b.sendto(b"hello", a.get_extra_info("sockname"))
        data, peer = await get(ap.datagrams)
        a.sendto(b"back", peer)
        assert (await get(bp.datagrams))[0] == b"back"
        # host names are resolved
        port = a.get_extra_info("sockname")[1]
        b.sendto(b"named", ("localhost", port))
        assert (await get(ap.datagrams))[0] == b"named"
        for tr in (a, b, c):
            tr.close()

    run(loop, main())


def test_sendto_argument_errors(loop):
    async def main():
        s, sp = await endpoint(local_addr=("127.0.0.1", 0))
        addr = s.get_extra_info("sockname")
        c, cp = await endpoint(remote_addr=addr)
        u, up = await endpoint(family=socket.AF_INET)
        with pytest.raises(TypeError, match="bytes-like"):
            c.sendto("text")
        with pytest.raises(TypeError):
            c.sendto(12)
        with pytest.raises(ValueError, match="Invalid address"):
            c.sendto(b"x", ("127.0.0.1", addr[1] + 1 if addr[1] < 65535 else 1))
        with pytest.raises(ValueError, match="needs an address"):
            u.sendto(b"x")
        with pytest.raises(TypeError):
            u.sendto(b"x", "127.0.0.1")
        with pytest.raises(TypeError):
            u.sendto(b"x", ("127.0.0.1",))
        with pytest.raises(OverflowError):
            u.sendto(b"x", ("127.0.0.1", 70000))
        with pytest.raises(TypeError):
            c.sendto()
        with pytest.raises(TypeError):
            c.sendto(b"x", None, None)
        # keyword arguments work as for asyncio's transport
        c.sendto(data=b"kw")
        assert (await get(sp.datagrams))[0] == b"kw"
        u.sendto(b"kw2", addr=addr)
        assert (await get(sp.datagrams))[0] == b"kw2"
        # other buffer types
        c.sendto(bytearray(b"ba"))
        c.sendto(memoryview(b"xmvx")[1:3])
        assert (await get(sp.datagrams))[0] == b"ba"
        assert (await get(sp.datagrams))[0] == b"mv"
        for tr in (s, c, u):
            tr.close()

    run(loop, main())


def test_unresolvable_address_goes_to_error_received(loop):
    async def main():
        u, up = await endpoint(family=socket.AF_INET)
        u.sendto(b"x", ("no-such-host.invalid", 9))
        exc = await get(up.errors)
        assert isinstance(exc, OSError)
        assert not u.is_closing()
        u.close()

    run(loop, main())


def test_empty_datagram_follows_the_python_version(loop):
    async def main():
        s, sp = await endpoint(local_addr=("127.0.0.1", 0))
        c, cp = await endpoint(remote_addr=s.get_extra_info("sockname"))
        c.sendto(b"")
        c.sendto(b"after")
        first = (await get(sp.datagrams))[0]
        if sys.version_info >= (3, 13):
            assert first == b""  # 3.13 sends empty datagrams
            assert (await get(sp.datagrams))[0] == b"after"
        else:
            assert first == b"after"
        s.close()
        c.close()

    run(loop, main())


def test_connection_refused_is_reported_to_error_received(loop):
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            closed_addr = probe.getsockname()
        c, cp = await endpoint(remote_addr=closed_addr)
        c.sendto(b"anyone?")
        exc = await get(cp.errors)
        assert isinstance(exc, ConnectionRefusedError)
        assert not c.is_closing()  # an ICMP error is not fatal
        c.close()
        await cp.lost

    run(loop, main())


def test_sock_argument(loop):
    async def main():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        tr, pr = await asyncio.get_running_loop().create_datagram_endpoint(Recorder, sock=sock)
        assert tr.get_extra_info("socket").fileno() == sock.fileno()
        assert tr.get_extra_info("sockname") == sock.getsockname()
        assert tr.get_extra_info("peername") is None
        assert tr.get_extra_info("nothing", "dflt") == "dflt"
        assert tr.get_extra_info(name="nothing", default=3) == 3
        tr.close()
        await pr.lost
        assert sock.fileno() == -1  # the transport owned (and closed) the descriptor

    run(loop, main())


def test_create_datagram_endpoint_argument_errors(loop):
    async def main():
        lp = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            with pytest.raises(ValueError):
                await lp.create_datagram_endpoint(Recorder, sock=s)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with pytest.raises(ValueError, match="local_addr"):
                await lp.create_datagram_endpoint(Recorder, sock=s, local_addr=("127.0.0.1", 0))
        with pytest.raises(ValueError, match="unexpected address family"):
            await lp.create_datagram_endpoint(Recorder)
        with pytest.raises(TypeError, match="2-tuple"):
            await lp.create_datagram_endpoint(Recorder, local_addr="127.0.0.1")
        with pytest.raises(TypeError, match="string is expected"):
            await lp.create_datagram_endpoint(Recorder, family=socket.AF_UNIX, local_addr=("a", 1))
        with pytest.raises(OSError):
            await lp.create_datagram_endpoint(Recorder, local_addr=("192.0.2.1", 0))  # not ours
        with pytest.raises(TypeError):
            await lp.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0), reuse_address=True)

    run(loop, main())


def test_reuse_port_lets_two_endpoints_share_a_port(loop):
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT")

    async def main():
        a, _ = await endpoint(local_addr=("127.0.0.1", 0), reuse_port=True)
        port = a.get_extra_info("sockname")[1]
        b, _ = await endpoint(local_addr=("127.0.0.1", port), reuse_port=True)
        assert b.get_extra_info("sockname")[1] == port
        sock = b.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        a.close()
        b.close()

    run(loop, main())


def test_allow_broadcast_keeps_the_socket_unconnected(loop):
    async def main():
        s, sp = await endpoint(local_addr=("127.0.0.1", 0))
        addr = s.get_extra_info("sockname")
        b, bp = await endpoint(remote_addr=addr, allow_broadcast=True)
        sock = b.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        assert b.get_extra_info("peername") is None  # not connected...
        b.sendto(b"via remote_addr")  # ...but sendto() without address goes to remote_addr
        assert (await get(sp.datagrams))[0] == b"via remote_addr"
        s.close()
        b.close()

    run(loop, main())


def test_unix_datagram_endpoints_by_path(loop):
    async def main():
        with tempfile.TemporaryDirectory() as d:
            server_path = os.path.join(d, "srv.sock")
            client_path = os.path.join(d, "cli.sock")
            s, sp = await endpoint(family=socket.AF_UNIX, local_addr=server_path, echo=True)
            c, cp = await endpoint(family=socket.AF_UNIX, local_addr=client_path, remote_addr=server_path)
            assert s.get_extra_info("sockname") == server_path
            c.sendto(b"unix")
            assert await get(sp.datagrams) == (b"unix", client_path)
            assert await get(cp.datagrams) == (b"re:unix", server_path)
            c.close()
            s.close()
            await cp.lost
            await sp.lost
            # a stale socket file is replaced, as asyncio does
            s2, _ = await endpoint(family=socket.AF_UNIX, local_addr=server_path)
            s2.close()

    run(loop, main())


def test_unix_datagram_socketpair_and_unbound_sender(loop):
    async def main():
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        tr, pr = await asyncio.get_running_loop().create_datagram_endpoint(Recorder, sock=a)
        b.send(b"from the pair")
        data, addr = await get(pr.datagrams)
        assert data == b"from the pair" and addr in ("", None)
        tr.sendto(b"reply")  # connected: no address needed
        b.setblocking(False)
        assert await asyncio.get_running_loop().sock_recv(b, 100) == b"reply"
        tr.close()
        b.close()

    run(loop, main())


def _fill_unix_pair(tr, size=4096, limit=100000):
    """Send until the transport queues (the peer does not read): return datagrams sent."""
    n = 0
    while tr.get_write_buffer_size() == 0 and n < limit:
        tr.sendto(b"x" * size)
        n += 1
    return n


def test_write_flow_control_pauses_and_resumes_the_protocol(loop):
    async def main():
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        tr, pr = await asyncio.get_running_loop().create_datagram_endpoint(Recorder, sock=a)
        assert tr.get_write_buffer_limits() == (16384, 65536)
        tr.set_write_buffer_limits(high=8192)
        assert tr.get_write_buffer_limits() == (2048, 8192)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=1, low=2)
        sent = _fill_unix_pair(tr)
        assert tr.get_write_buffer_size() > 0, sent
        while pr.paused == 0:
            tr.sendto(b"y" * 4096)
        assert tr.get_write_buffer_size() > 8192
        # drain the peer: the queue is sent and the protocol resumes
        b.setblocking(False)
        deadline = asyncio.get_running_loop().time() + T
        while tr.get_write_buffer_size() and asyncio.get_running_loop().time() < deadline:
            try:
                while True:
                    b.recv(65536)
            except BlockingIOError:
                pass
            await asyncio.sleep(0.001)
        assert tr.get_write_buffer_size() == 0
        assert pr.resumed == 1
        tr.close()
        await pr.lost
        b.close()

    run(loop, main())


def test_close_waits_for_queued_datagrams_abort_drops_them(loop):
    async def main():
        lp = asyncio.get_running_loop()
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        tr, pr = await lp.create_datagram_endpoint(Recorder, sock=a)
        _fill_unix_pair(tr)
        queued = tr.get_write_buffer_size()
        assert queued > 0
        tr.close()
        assert tr.is_closing()
        await asyncio.sleep(0.01)
        assert not pr.lost.done()  # still flushing
        b.setblocking(False)
        while not pr.lost.done():
            try:
                while True:
                    b.recv(65536)
            except BlockingIOError:
                pass
            await asyncio.sleep(0.001)
        assert tr.get_write_buffer_size() == 0
        b.close()

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        tr, pr = await lp.create_datagram_endpoint(Recorder, sock=a)
        _fill_unix_pair(tr)
        tr.abort()
        assert await asyncio.wait_for(pr.lost, T) is None
        assert tr.get_write_buffer_size() == 0
        assert pr.events == ["made", "lost"]
        b.close()

    run(loop, main())


def test_close_and_abort_are_idempotent_and_sendto_after_close_is_dropped(loop):
    async def main():
        s, sp = await endpoint(local_addr=("127.0.0.1", 0))
        c, cp = await endpoint(remote_addr=s.get_extra_info("sockname"))
        c.close()
        c.close()
        c.abort()
        c.sendto(b"dropped")
        await cp.lost
        for _ in range(6):
            c.sendto(b"dropped")  # logs a warning after a few, as asyncio does
        assert cp.events == ["made", "lost"]
        assert "closed" in repr(c)
        s.close()

    run(loop, main())


def test_pause_and_resume_reading(loop):
    async def main():
        s, sp = await endpoint(local_addr=("127.0.0.1", 0))
        c, cp = await endpoint(remote_addr=s.get_extra_info("sockname"))
        assert s.is_reading()
        s.pause_reading()
        assert not s.is_reading()
        c.sendto(b"held")
        await asyncio.sleep(0.05)
        assert sp.datagrams.empty()
        s.resume_reading()
        assert (await get(sp.datagrams))[0] == b"held"
        s.close()
        c.close()

    run(loop, main())


def test_set_protocol_redirects_datagrams(loop):
    async def main():
        s, sp = await endpoint(local_addr=("127.0.0.1", 0))
        c, cp = await endpoint(remote_addr=s.get_extra_info("sockname"))
        other = Recorder()
        s.set_protocol(other)
        assert s.get_protocol() is other
        c.sendto(b"moved")
        assert (await get(other.datagrams))[0] == b"moved"
        s.close()
        await other.lost
        c.close()

    run(loop, main())


def test_raising_datagram_received_is_reported_and_reading_continues(loop):
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    class Bad(Recorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if data == b"boom":
                raise ValueError("protocol bug")

    async def main():
        s, sp = await asyncio.get_running_loop().create_datagram_endpoint(Bad, local_addr=("127.0.0.1", 0))
        c, cp = await endpoint(remote_addr=s.get_extra_info("sockname"))
        c.sendto(b"boom")
        c.sendto(b"fine")
        assert (await get(sp.datagrams))[0] == b"boom"
        assert (await get(sp.datagrams))[0] == b"fine"
        assert len(errors) == 1
        assert isinstance(errors[0]["exception"], ValueError)
        assert errors[0]["transport"] is s
        s.close()
        c.close()

    run(loop, main())


def test_raising_error_received_is_reported(loop):
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    class Bad(Recorder):
        def error_received(self, exc):
            super().error_received(exc)
            raise RuntimeError("in error_received")

    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            closed_addr = probe.getsockname()
        c, cp = await asyncio.get_running_loop().create_datagram_endpoint(Bad, remote_addr=closed_addr)
        c.sendto(b"x")
        await get(cp.errors)
        for _ in range(100):
            if errors:
                break
            await asyncio.sleep(0.01)
        assert isinstance(errors[0]["exception"], RuntimeError)
        c.close()

    run(loop, main())


def test_keyboard_interrupt_in_a_protocol_stops_the_loop(loop):
    class Interrupting(Recorder):
        def datagram_received(self, data, addr):
            raise KeyboardInterrupt

    async def setup():
        s, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Interrupting, local_addr=("127.0.0.1", 0))
        c, _ = await endpoint(remote_addr=s.get_extra_info("sockname"))
        return s, c

    s, c = run(loop, setup())
    c.sendto(b"^C")
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    s.close()
    c.close()
    loop.run_until_complete(asyncio.sleep(0))


def test_transport_methods_from_another_thread_raise_runtime_error(loop):
    async def main():
        s, sp = await endpoint(local_addr=("127.0.0.1", 0))
        errors = []

        def other_thread():
            for call in (lambda: s.sendto(b"x", ("127.0.0.1", 9)), s.close, s.abort, s.pause_reading):
                try:
                    call()
                except RuntimeError as exc:
                    errors.append(str(exc))

        t = threading.Thread(target=other_thread)
        t.start()
        await asyncio.get_running_loop().run_in_executor(None, t.join)
        assert len(errors) == 4 and all("thread" in e or "loop" in e for e in errors)
        assert not s.is_closing()
        s.close()

    run(loop, main())


def test_transport_cannot_be_made_directly():
    with pytest.raises(TypeError):
        uvcore.UDPTransport()


def test_closing_the_loop_with_open_endpoints_releases_them():
    lp = uvcore.new_event_loop()
    made = []

    async def main():
        for _ in range(5):
            tr, pr = await lp.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
            made.append((tr, tr.get_extra_info("socket").fileno()))
        made[0][0].sendto(b"pending", made[1][0].get_extra_info("sockname"))

    lp.run_until_complete(main())
    lp.close()
    for tr, fd in made:
        assert "closed" in repr(tr)
        with pytest.raises(OSError):
            os.fstat(fd)
    # methods on a transport of a closed loop do not crash
    made[0][0].close()
    made[0][0].abort()
    made[0][0].sendto(b"x", ("127.0.0.1", 9))


def test_endpoints_do_not_leak(loop):
    async def cycle(n):
        for _ in range(n):
            s, sp = await endpoint(local_addr=("127.0.0.1", 0))
            c, cp = await endpoint(remote_addr=s.get_extra_info("sockname"))
            c.sendto(b"x")
            await get(sp.datagrams)
            c.close()
            s.abort()
            await cp.lost
            await sp.lost

    def fds():
        return len(os.listdir("/proc/self/fd"))

    run(loop, cycle(50))
    gc.collect()
    before_fds, before_objs = fds(), len(gc.get_objects())
    run(loop, cycle(500))
    gc.collect()
    assert fds() <= before_fds + 2
    assert len(gc.get_objects()) < before_objs + 500
