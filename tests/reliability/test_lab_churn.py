"""Thousands of clients connecting to the lab server and vanishing mid-subscription (the TCP
connection aborted, no graphql-transport-ws `complete`, no WebSocket close), while messages
are being published to them. The broker's subscriber count returns to zero after each wave
and the server's RSS stays bounded. The server is a child process on uvcore's loop."""
from __future__ import annotations

import asyncio
import json
import os
import sys

import psutil
import pytest
import websockets

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from test_lab_support import lab_server  # noqa: E402

SUBSCRIBE = "subscription($room: String) { messageAdded(room: $room) { id text } }"
SEND = "mutation($room: String!, $text: String!) { sendMessage(room: $room, author: \"churn\", text: $text) { id } }"
UNDER_ASAN = bool(os.environ.get("UVCORE_EXPECT_ASAN"))


async def subscribe_client(url, room):
    """A graphql-transport-ws client subscribed to `room`; returns its open connection."""
    ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"], open_timeout=30, ping_interval=None)
    await ws.send(json.dumps({"type": "connection_init"}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert ack["type"] == "connection_ack", ack
    await ws.send(json.dumps({"id": "1", "type": "subscribe",
                              "payload": {"query": SUBSCRIBE, "variables": {"room": room}}}))
    return ws


def vanish(ws):
    """Drop the connection as a killed browser or a lost network does: no close frame."""
    ws.transport.abort()


async def churn(lab, clients, wave):
    sender = await websockets.connect(lab.ws_url, subprotocols=["graphql-transport-ws"], ping_interval=None)
    await sender.send(json.dumps({"type": "connection_init"}))
    await sender.recv()
    sent = 0
    for start in range(0, clients, wave):
        n = min(wave, clients - start)
        conns = await asyncio.gather(*(subscribe_client(lab.ws_url, f"churn{i % 7}") for i in range(n)))
        await asyncio.to_thread(lab.wait_for_subscribers, n, 60)
        # Messages in flight towards clients that are about to vanish.
        for k in range(3):
            sent += 1
            await sender.send(json.dumps({"id": f"m{sent}", "type": "subscribe",
                                          "payload": {"query": SEND, "variables": {"room": f"churn{k}", "text": "x"}}}))
            while json.loads(await asyncio.wait_for(sender.recv(), 30))["type"] != "complete":
                pass
        for ws in conns:
            vanish(ws)
        await asyncio.to_thread(lab.wait_for_subscribers, 0, 60)
    await sender.close()


def rss(lab):
    return psutil.Process(lab.proc.pid).memory_info().rss


def run_churn(clients, wave, tally):
    with lab_server(server="fastapi") as lab:
        asyncio.run(churn(lab, wave, wave))  # warm up: imports, caches, buffers
        before = rss(lab)
        asyncio.run(churn(lab, clients, wave))
        after = rss(lab)
        stats = lab.stats()
        output = lab.output()
    tally["faults"] += clients + wave
    assert stats["pubsub"]["subscribers"] == 0
    assert "Traceback" not in output, output[-3000:]
    if not UNDER_ASAN:  # ASan's quarantine keeps freed memory on purpose
        growth = after - before
        assert growth < 40 * 1024 * 1024, f"server RSS grew by {growth / 1e6:.1f} MB over {clients} clients"
    return before, after


def test_clients_vanishing_mid_subscription_leave_no_subscriber(tally):
    run_churn(clients=600, wave=100, tally=tally)


@pytest.mark.slow
def test_thousands_of_clients_vanishing_keep_rss_bounded(tally):
    before, after = run_churn(clients=5_000, wave=250, tally=tally)
    print(f"lab server RSS {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB over 5,000 vanishing clients")
