"""Chromium (headless, through Selenium) receives uncompressed fan-out frames interleaved with
the server's own permessage-deflate compressed messages on one connection, in order and
intact, from uvicorn with uvcore.uvicorn.FanoutWebSocketProtocol on uvcore and on asyncio."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading

import pytest
import uvicorn

import uvcore
from uvcore.uvicorn import FanoutWebSocketProtocol, fanout_sink
from uvcore.wsfanout import FanoutSink, PyFanoutSink, fanout

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
        reason="Debian chromium and chromium-driver are not installed (make deps installs them)",
    ),
]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

COUNT = 90
SIZES = [3, 200, 70000, 0, 126, 65536]

PAGE = """<!doctype html><meta charset="utf-8"><title>waiting</title><script>
const want = %d, got = [];
const ws = new WebSocket("ws://" + location.host + "/ws");
ws.onopen = () => ws.send("go " + want);
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  got.push(m);
  if (got.length === want) {
    const inOrder = got.every((m, i) => m.n === i);
    const sizes = got.map((m) => m.fill.length).join(",");
    document.title = (inOrder ? "ok" : "bad") + "|" + ws.extensions + "|" + sizes;
  }
};
ws.onerror = () => { document.title = "error"; };
</script>""" % COUNT


def body(i: int) -> str:
    size = SIZES[i % len(SIZES)]
    return json.dumps({"n": i, "fill": "ab" * (size // 2)})


def make_app(sinks):
    async def app(scope, receive, send):
        if scope["type"] == "http":
            await receive()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html; charset=utf-8")]})
            await send({"type": "http.response.body", "body": PAGE.encode()})
            return
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        sink = fanout_sink(scope)
        sinks.append(sink)
        while (msg := await receive())["type"] == "websocket.receive":
            n = int(msg["text"].split()[1])
            for i in range(n):
                text = body(i)
                if i % 3 == 0:  # the server's own message: compressed by uvicorn
                    await send({"type": "websocket.send", "text": text})
                else:  # fan-out frames, two in a row, held and written together
                    fanout(text[5:].encode(), [(sink, text[:5].encode())])

    return app


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # see test_lab_browser
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER, env=env),
                              options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.parametrize("loop_name", ["uvcore", "asyncio"])
def test_chromium_gets_fanout_frames_between_compressed_messages(browser, loop_name):
    sinks = []
    started = threading.Event()
    box = {}

    async def serve():
        config = uvicorn.Config(make_app(sinks), host="127.0.0.1", port=0, ws=FanoutWebSocketProtocol,
                                loop="none", lifespan="off", log_level="warning")
        server = uvicorn.Server(config)
        box["server"] = server
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        box["port"] = server.servers[0].sockets[0].getsockname()[1]
        started.set()
        await task

    def target():
        lp = uvcore.new_event_loop() if loop_name == "uvcore" else asyncio.new_event_loop()
        try:
            lp.run_until_complete(serve())
        finally:
            lp.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        browser.get(f"http://127.0.0.1:{box['port']}/")
        WebDriverWait(browser, 60).until(lambda d: d.title != "waiting")
        status, extensions, sizes = browser.title.split("|")
        assert status == "ok", browser.title[:200]
        assert "permessage-deflate" in extensions
        assert sizes == ",".join(str(len(json.loads(body(i))["fill"])) for i in range(COUNT))
        [sink] = sinks
        assert type(sink) is (FanoutSink if loop_name == "uvcore" else PyFanoutSink)
        assert sink.sent == COUNT - len(range(0, COUNT, 3))
    finally:
        box["server"].should_exit = True
        thread.join(30)
