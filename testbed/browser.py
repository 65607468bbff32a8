"""Driving browser parties on the pages (web/create.html, web/join.html) by their
data-testid hooks (documented in web/README.md)."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from mpyc_webrtc.sealing import JoinSecret, join_token

#: Cold Pyodide boot is ~2.5 s, but several pages load at once on few cores.
LOAD_TIMEOUT_MS = 90_000
#: From the last "I'm ready" to the result (includes connecting and the computation).
RESULT_TIMEOUT_MS = 120_000
#: Opening a link to having a party number (no Python needed for that).
JOIN_TIMEOUT_MS = 30_000


def by_id(page: Page, testid: str):
    return page.get_by_test_id(testid)


class BrowserParty:
    """One person's browser tab on a join link, with its console kept for failures.

    Opening the link joins the session (or, if the creator named the places, shows them
    to choose from); ``confirm`` types the input and presses "I'm ready".
    """

    def __init__(self, page: Page, join_url: str, *, wait_joined: bool = True):
        self.page = page
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))
        page.goto(join_url)
        self.pid: int | None = None
        if wait_joined:
            self.wait_joined()

    def __getitem__(self, testid: str):
        return by_id(self.page, testid)

    def wait_joined(self) -> int:
        """Wait until the server gave this tab its party number; returns it (the pid: the
        page shows it as people count, from 1, so "party 2" is pid 1)."""
        try:
            expect(self["pid"]).to_have_text(re.compile(r"[Pp]arty \d+"),
                                             timeout=JOIN_TIMEOUT_MS)
        except AssertionError:
            raise AssertionError(self.describe("did not join")) from None
        self.pid = int(re.search(r"[Pp]arty (\d+)", self["pid"].inner_text()).group(1)) - 1
        return self.pid

    def wait_python(self) -> BrowserParty:
        """Wait until Python is loaded (the ready button stops saying so)."""
        try:
            expect(self["ready"]).not_to_have_text("Loading Python…", timeout=LOAD_TIMEOUT_MS)
        except AssertionError:
            raise AssertionError(self.describe("did not load Python")) from None
        return self

    def enter(self, value: str | None) -> None:
        """Type (or choose) the private input."""
        if value is None:
            return
        choices = self["input-choices"]
        if choices.is_visible():
            self[f"choice-{value}"].check()
        else:
            self["party-input"].fill(value)

    def confirm(self, value: str | None = None, *, accept_no_privacy: bool = False) -> int:
        """Enter the input and press "I'm ready"; returns the party number.

        ``accept_no_privacy``: the test set up a session that keeps inputs less than fully
        private on purpose; the page must say so, and this person checks that they
        understand (without it, "I'm ready" stays disabled).
        """
        pid = self.pid if self.pid is not None else self.wait_joined()
        self.wait_python()
        self.enter(value)
        if accept_no_privacy:
            expect(self["privacy"]).to_be_visible(timeout=30_000)
            expect(self["no-privacy-box"]).to_be_visible()
            self["accept-no-privacy"].check()
        expect(self["ready"]).to_be_enabled(timeout=30_000)
        self["ready"].click()
        expect(self[f"peer-{pid}"]).to_have_attribute(
            "data-state", re.compile(r"^(ready|again|connecting|computing|done)$"))
        return pid

    def wait_done(self) -> str:
        """Wait until the program finished; returns its printed output."""
        status = self["status"]
        try:
            expect(status).to_have_text(
                re.compile(r"^(Done(: .*)?|Failed|Could not .*|Disconnected|Tampering detected)$",
                           re.S),
                timeout=RESULT_TIMEOUT_MS)
        except AssertionError:
            raise AssertionError(self.describe("did not finish")) from None
        # "Done", or with the result's headline: "Done: the average salary is 53,333.33."
        if not re.match(r"Done(: |$)", status.inner_text()):
            raise AssertionError(self.describe("failed"))
        return self["output"].text_content()

    def headline(self) -> str:
        return self["result-headline"].inner_text()

    def rows(self) -> dict[str, str]:
        """The result's label/value facts."""
        rows = self["result-rows"].locator("div")
        return {rows.nth(i).locator("dt").text_content(): rows.nth(i).locator("dd").text_content()
                for i in range(rows.count())}

    def describe(self, what: str) -> str:
        return (f"browser party {what}: status {self['status'].inner_text()!r}, "
                f"error {self['error'].inner_text()!r}, output {self['output'].inner_text()!r}"
                "\nconsole:\n" + "\n".join(self.console[-60:]))


def run_again_to(parties: list[BrowserParty], values: list[str], total: str) -> None:
    """Every party enters its value and says it is ready; each must end with the sum
    ``total`` as its result ("Done: sum = TOTAL")."""
    for party, value in zip(parties, values, strict=True):
        party.confirm(value)
    for party in parties:
        try:
            expect(party["result-headline"]).to_contain_text(total, timeout=RESULT_TIMEOUT_MS)
        except AssertionError:
            raise AssertionError(party.describe("did not run again")) from None
        expect(party["status"]).to_have_text(re.compile(rf"^Done: sum = {total}"))


def open_parties(new_page: Callable[[], Page], join_url: str, count: int) -> list[BrowserParty]:
    """``count`` tabs on the link, opened one after another (so pids follow their order)."""
    return [BrowserParty(new_page(), join_url) for _ in range(count)]


def fill_session(page: Page, server_url: str, join_url: str, count: int) -> None:
    """Take ``count`` places in a session with bare WebSockets that join and stay idle."""
    link, _, fragment = join_url.partition("#")
    session = link.rstrip("/").rsplit("/", 1)[1]
    token = join_token(JoinSecret.from_fragment(fragment).secret)
    page.goto(f"{server_url}/api/protocol")
    page.evaluate("""async ([session, token, count]) => {
        const version = JSON.parse(document.body.innerText).version;
        window.fillers = [];
        for (let i = 0; i < count; i++) {
            const ws = new WebSocket(`ws://${location.host}/ws`);
            await new Promise((resolve) => { ws.onopen = resolve; });
            const welcome = new Promise((resolve, reject) => {
                ws.onmessage = (event) => {
                    const message = JSON.parse(event.data);
                    if (message.type === 'welcome') resolve(message.pid);
                    if (message.type === 'error') reject(new Error(message.message));
                };
            });
            ws.send(JSON.stringify({v: version, type: 'join', session, token}));
            await welcome;
            window.fillers.push(ws);
        }
    }""", [session, token, count])
