"""Issue 18: a page that loses the session server for a moment after the start (a phone
between networks, a proxy that drops an idle socket) gets its own place back.

The test cuts the page's WebSocket as a lost network would (Playwright stands between the
page and the server: ``route_web_socket``), with a close code that is neither "normal" nor
"going away", so the server takes it for a lost connection, not for a party that leaves.

- during a round: the others compute on over their links, the round ends with the right
  result everywhere, and the page is back in the session;
- after a result: it is back, the others see it back, and the session runs again, over new
  links to it (it makes all of its own anew).
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, WebSocketRoute, expect

from testbed.browser import BrowserParty, open_parties, run_again_to
from testbed.netns import native_output, start_peer

BUSY = Path(__file__).resolve().parent.parent / "tests" / "programs" / "busy.py"
#: A close code of the application's own range: not 1000 (normal) or 1001 (going away).
LOST = 4000


class Sockets:
    """The page's WebSockets to the server, each relayed by the test, which can cut one."""

    def __init__(self, page: Page):
        self.routes: list[WebSocketRoute] = []
        page.route_web_socket(re.compile(r".*"), self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        self.routes.append(ws)

    def cut(self) -> None:
        """Drop the newest one, as a lost network would."""
        self.routes[-1].close(code=LOST, reason="lost")


def test_a_page_that_loses_the_server_during_a_round_comes_back_and_the_round_goes_on(
        server, new_page):
    url = server.create(3, "--program-file", str(BUSY), "--args", "--busy=8")
    page = new_page()
    sockets = Sockets(page)
    party = BrowserParty(page, url)
    assert party.confirm() == 0
    natives = []
    for pid in (1, 2):  # party 2 (pid 1) computes for 8 s after the inputs
        natives.append(start_peer(server.ns, url, "--trust-program"))
        server.wait_joined(url, pid + 1)
    expect(party["status"]).to_have_text(re.compile(r"^Computing"), timeout=120_000)
    sockets.cut()
    expected = f"total = {1 + 2 + 3}"
    assert party.wait_done().strip() == expected
    assert [native_output(native) for native in natives] == [expected] * 2
    assert len(sockets.routes) == 2  # it connected again, by itself
    assert 0 in [m["pid"] for m in server.info(url)["members"]]  # connected, in its place


def test_a_page_that_loses_the_server_after_a_result_comes_back_and_runs_again(
        server, new_page):
    url = server.create(3, "--program", "sum")
    pages = [new_page() for _ in range(3)]
    sockets = Sockets(pages[1])
    parties = open_parties(lambda: pages.pop(0), url, 3)
    for party, value in zip(parties, ("5", "7", "30"), strict=True):
        party.confirm(value)
    for party in parties:
        assert party.wait_done().strip() == "sum = 42"
    zero, one, two = parties

    sockets.cut()
    expect(one["again-help"]).to_have_text(
        "You have your place back. To compute again with the others, press \"Run again\" "
        "(if it shows) and then \"I'm ready to run again\": new connections are made when "
        "everyone agrees.", timeout=30_000)
    expect(one["status"]).to_have_text("Done: sum = 42")  # the result is still the news
    assert len(sockets.routes) == 2
    for other in (zero, two):
        expect(other["again-help"]).to_have_text(re.compile(
            r" is back after a reload or a lost connection: the session can run again once "
            r"everyone agrees, over new connections to it\.$"))
    for party in parties:
        party["run-again"].click()
    run_again_to(parties, ["100", "200", "300"], "600")
