"""Callback order: what was ready before a poll runs before the I/O callbacks of that poll
(as in asyncio, where I/O events queue behind the ready callbacks)."""
import asyncio
import socket


def test_ready_callbacks_run_before_io_that_was_already_pending(loop):
    r, w = socket.socketpair()
    order = []

    def on_readable():
        order.append("io")
        r.recv(10)
        loop.remove_reader(r)

    with r, w:
        loop.add_reader(r, on_readable)
        w.send(b"x")  # readable before the loop runs
        loop.call_soon(order.append, "ready")
        loop.call_later(0.05, loop.stop)
        loop.run_forever()
    assert order == ["ready", "io"]


def test_task_started_before_a_datagram_arrives_receives_it(loop):
    # The pattern of CPython's test_datagram_send_to_non_listening_address.
    class Proto(asyncio.DatagramProtocol):
        waiter = None

        def datagram_received(self, data, addr):
            self.waiter.set_result(data)

        async def receive(self):
            self.waiter = loop.create_future()
            return await asyncio.wait_for(self.waiter, 5)

    async def endpoint():
        return await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))

    t1, _ = loop.run_until_complete(endpoint())
    t2, p2 = loop.run_until_complete(endpoint())
    try:
        t1.sendto(b"a", t2.get_extra_info("sockname"))
        assert loop.run_until_complete(p2.receive()) == b"a"
    finally:
        t1.close()
        t2.close()
        loop.run_until_complete(asyncio.sleep(0))


def test_call_soon_stop_then_run_forever_still_polls_io(loop):
    # test_utils.run_once's idiom: one iteration, pending I/O included.
    r, w = socket.socketpair()
    seen = []
    with r, w:
        loop.add_reader(r, lambda: seen.append(r.recv(10)))
        w.send(b"x")
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.remove_reader(r)
    assert seen == [b"x"]
