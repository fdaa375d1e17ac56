"""The chat page in a real browser: headless Debian Chromium driven by Selenium through
Debian's chromedriver. Two pages join one room; what one sends, the other shows live."""
from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_lab_support import lab_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="Debian chromium and chromium-driver are not installed (make deps installs them)",
)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TIMEOUT = 20


@pytest.fixture(scope="module")
def lab():
    with lab_server() as server:
        yield server


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,700"):
        options.add_argument(arg)
    # Under `make asan` libasan is preloaded into every child; Chromium has its own allocator
    # and dies with it. Only the lab server (our C code) needs the sanitizer, so the browser
    # runs without the preload.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER, env=env)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        try:
            driver.quit()
        except Exception:  # noqa: BLE001 - already quit by the test
            pass


def open_page(driver, lab, name: str, room: str) -> str:
    """Opens the chat in a new tab of `driver`, joins `room` as `name`; returns the tab."""
    driver.switch_to.new_window("tab")
    driver.get(lab.url + "/")
    wait = WebDriverWait(driver, TIMEOUT)
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "online"))
    name_box = driver.find_element(By.ID, "name")
    name_box.clear()
    name_box.send_keys(name)
    room_box = driver.find_element(By.ID, "room")
    room_box.clear()
    room_box.send_keys(room)
    driver.find_element(By.ID, "join").click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-room") == room)
    return driver.current_window_handle


def send(driver, text: str) -> None:
    box = driver.find_element(By.ID, "text")
    box.send_keys(text)
    driver.find_element(By.ID, "send").click()


def post_message(lab, room: str, author: str, text: str) -> None:
    query = "mutation($r: String!, $a: String!, $t: String!) { sendMessage(room: $r, author: $a, text: $t) { id } }"
    body = json.dumps({"query": query, "variables": {"r": room, "a": author, "t": text}}).encode()
    request = urllib.request.Request(lab.url + "/graphql", body, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert "errors" not in json.loads(response.read())


def wait_for_message(driver, author: str, text: str) -> None:
    def shown(d):
        for li in d.find_elements(By.CSS_SELECTOR, "#messages li.message"):
            if li.find_element(By.CLASS_NAME, "author").text == author and li.find_element(By.CLASS_NAME, "text").text == text:
                return True
        return False

    WebDriverWait(driver, TIMEOUT).until(shown, f"message {text!r} from {author} not shown")


def test_two_pages_exchange_messages_live(lab, browser):
    room = "browser"
    alice = open_page(browser, lab, "alice", room)
    bob = open_page(browser, lab, "bob", room)
    # Both pages hold a live subscription before anyone speaks.
    lab.wait_for_subscribers(2)

    browser.switch_to.window(alice)
    send(browser, "hello from alice")
    browser.switch_to.window(bob)
    wait_for_message(browser, "alice", "hello from alice")
    send(browser, "hi alice, bob here")
    browser.switch_to.window(alice)
    wait_for_message(browser, "bob", "hi alice, bob here")

    # A third page joining later gets the room's history.
    open_page(browser, lab, "carol", room)
    wait_for_message(browser, "alice", "hello from alice")
    wait_for_message(browser, "bob", "hi alice, bob here")
    lab.wait_for_subscribers(3)


def test_closing_the_browser_unsubscribes(lab, browser):
    lab.wait_for_subscribers(0)  # the previous test's browser is gone
    open_page(browser, lab, "dave", "closing")
    lab.wait_for_subscribers(1)
    browser.quit()
    lab.wait_for_subscribers(0)


def test_page_reconnects_and_resubscribes_after_a_server_restart(browser):
    with lab_server() as first:
        port = first.port
        open_page(browser, first, "erin", "restart")
        first.wait_for_subscribers(1)
    WebDriverWait(browser, TIMEOUT).until(lambda d: "online" != d.find_element(By.ID, "status").text)
    with lab_server(port=port) as second:
        WebDriverWait(browser, TIMEOUT).until(EC.text_to_be_present_in_element((By.ID, "status"), "online"))
        second.wait_for_subscribers(1)  # the page subscribed again by itself
        post_message(second, "restart", "frank", "welcome back")  # from another client
        wait_for_message(browser, "frank", "welcome back")
