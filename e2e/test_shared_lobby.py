"""A browser party whose server process is killed in the lobby, with server processes
sharing their sessions through Redis: the page reconnects to the same address, keeps its
place, and computes with the others once a process listens there again.

Chromium, the server processes and the native peers run in the module's loopback-only
network namespace (conftest.py); Redis is a throw-away ``redis-server`` on a Unix socket.
"""

from __future__ import annotations

import re
import signal
import time

from playwright.sync_api import expect

from mpyc_webrtc.sentences import say
from testbed import chromium
from testbed.browser import BrowserParty
from testbed.netns import Server, start_peer

NATIVE_TIMEOUT = 120


def members(server: Server, url: str) -> tuple[int, list[int]]:
    info = server.info(url)
    return info["joined"], sorted(m["pid"] for m in info["members"])


def wait_for(what: str, check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def test_a_page_whose_server_process_dies_in_the_lobby_keeps_its_place(
        namespace, browser, redis_url):
    shared = ["--redis", redis_url, "--stun-port", "0"]
    p0 = Server(namespace, 8090, *shared)
    p1 = Server(namespace, 8091, *shared)
    try:
        url = p0.create(3, "--program", "sum")
        through_p1 = url.replace(p0.url, p1.url, 1)
        context = chromium.new_context(browser, p1.url)
        page = BrowserParty(context.new_page(), through_p1)
        assert page.confirm("5") == 0
        native = start_peer(namespace, url, "--input", "7")
        p0.wait_joined(url, 2)
        p1.proc.send_signal(signal.SIGKILL)
        p1.proc.wait(10)
        # The page says what happens, and the other processes keep its place.
        expect(page["status"]).to_have_text(
            re.compile(re.escape(say("reconnect.lost", attempt=1)).replace("1", r"\d+")),
            timeout=15_000)
        wait_for("party 0 shown as reconnecting", lambda: members(p0, url) == (2, [1]))
        p1 = Server(namespace, 8091, *shared)
        wait_for("party 0 back", lambda: members(p0, url) == (2, [0, 1]))
        last = start_peer(namespace, url, "--input", "3")
        assert page.wait_done().strip() == "sum = 15"
        for peer in (native, last):
            out, err = peer.communicate(timeout=NATIVE_TIMEOUT)
            assert peer.returncode == 0, err[-3000:]
            assert out.strip() == "sum = 15"
        context.close()
    finally:
        for server in (p0, p1):
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGTERM)
                server.proc.wait(10)
