"""Instance attributes on transports: asyncio's transports are Python objects, and test
suites patch their methods (uvicorn's keep-alive tests use mock.patch.object(transport,
"write")). uvcore's C transports accept the same, and the patched attribute wins."""
import asyncio
import gc
import os
import socket
import sys
import weakref
from unittest import mock

import pytest

import uvcore

LOOPS = {"uvcore": uvcore.new_event_loop, "asyncio": asyncio.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def any_loop(request):
    lp = LOOPS[request.param]()
    yield lp
    lp.close()


async def _tcp(loop):
    a, b = socket.socketpair()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
    return transport, b.close


async def _udp(loop):
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    return transport, lambda: None


async def _write_pipe(loop):
    r, w = os.pipe()
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(w, "wb", buffering=0))
    return transport, lambda: os.close(r)


async def _read_pipe(loop):
    r, w = os.pipe()
    transport, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(r, "rb", buffering=0))
    return transport, lambda: os.close(w)


async def _subprocess(loop):
    transport, _ = await loop.subprocess_exec(asyncio.SubprocessProtocol, sys.executable, "-c", "pass")
    return transport, lambda: None


KINDS = {"tcp": (_tcp, "write"), "udp": (_udp, "sendto"), "write_pipe": (_write_pipe, "write"),
         "read_pipe": (_read_pipe, "pause_reading"), "subprocess": (_subprocess, "kill")}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_methods_can_be_patched_and_attributes_set(any_loop, kind):
    make, method = KINDS[kind]

    async def main():
        transport, cleanup = await make(any_loop)
        original = getattr(transport, method)
        with mock.patch.object(transport, method) as fake:
            getattr(transport, method)(b"data")
            fake.assert_called_once_with(b"data")
        assert getattr(transport, method) == original  # the C method is back
        transport.marker = 42
        assert transport.marker == 42 and vars(transport)["marker"] == 42
        del transport.marker
        assert not hasattr(transport, "marker")
        transport.close()
        await asyncio.sleep(0.01)
        cleanup()
        if kind == "subprocess":
            await transport._wait()

    any_loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_patched_write_is_what_protocol_code_calls(any_loop):
    # uvicorn's pattern: the server protocol writes through its transport attribute
    sent = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data.upper())

    async def main():
        a, b = socket.socketpair()
        transport, proto = await any_loop.create_connection(Echo, sock=a)
        transport.write = sent.append
        b.send(b"hello")
        for _ in range(200):
            if sent:
                break
            await asyncio.sleep(0.005)
        del transport.write
        transport.write(b"real")
        b.settimeout(2)
        assert b.recv(10) == b"real"
        transport.close()
        b.close()

    any_loop.run_until_complete(asyncio.wait_for(main(), 5))
    assert sent == [b"HELLO"]


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_a_cycle_through_the_instance_dict_is_collected(loop, kind):
    make, _ = KINDS[kind]

    async def main():
        transport, cleanup = await make(loop)
        transport.myself = transport  # a reference cycle only the GC can break
        transport.write_hook = lambda: transport
        ref = weakref.ref(transport)
        transport.close()
        await asyncio.sleep(0.01)
        cleanup()
        return ref

    ref = loop.run_until_complete(main())
    for _ in range(3):
        gc.collect()
    assert ref() is None
