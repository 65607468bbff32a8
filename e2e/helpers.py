"""Driving browser parties on the join page (web/join.html) by its data-testid hooks."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

#: Cold Pyodide boot is ~2.5 s, but several pages load at once on few cores.
LOAD_TIMEOUT_MS = 90_000
#: From clicking Run to the result (includes connecting and the computation).
RESULT_TIMEOUT_MS = 120_000


def by_id(page: Page, testid: str):
    return page.get_by_test_id(testid)


class BrowserParty:
    """One person's browser tab on a join link, with its console kept for failures."""

    def __init__(self, page: Page, join_url: str):
        self.page = page
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))
        page.goto(join_url)

    def __getitem__(self, testid: str):
        return by_id(self.page, testid)

    def wait_ready(self) -> BrowserParty:
        expect(self["status"]).to_have_text("Ready", timeout=LOAD_TIMEOUT_MS)
        return self

    def join(self, value: str | None = None) -> int:
        """Type the input, press Run, and wait for the pid; returns it."""
        self.wait_ready()
        if value is not None:
            self["party-input"].fill(value)
        expect(self["run"]).to_be_enabled()
        self["run"].click()
        expect(self["pid"]).to_have_text(re.compile(r"Party \d+"), timeout=30_000)
        return int(re.search(r"Party (\d+)", self["pid"].inner_text()).group(1))

    def wait_done(self) -> str:
        """Wait until the program finished; returns its output."""
        status = self["status"]
        try:
            expect(status).to_have_text(re.compile(r"^(Done|Failed|Could not .*)$"),
                                        timeout=RESULT_TIMEOUT_MS)
        except AssertionError:
            raise AssertionError(self.describe("did not finish")) from None
        if status.inner_text() != "Done":
            raise AssertionError(self.describe("failed"))
        return self["output"].inner_text()

    def describe(self, what: str) -> str:
        return (f"browser party {what}: status {self['status'].inner_text()!r}, "
                f"error {self['error'].inner_text()!r}, output {self['output'].inner_text()!r}"
                "\nconsole:\n" + "\n".join(self.console[-60:]))


def open_parties(new_page: Callable[[], Page], join_url: str, count: int) -> list[BrowserParty]:
    return [BrowserParty(new_page(), join_url) for _ in range(count)]


def fill_session(page: Page, server_url: str, join_url: str, count: int) -> None:
    """Take ``count`` places in a session with bare WebSockets that join and stay idle."""
    session = join_url.rstrip("/").rsplit("/", 1)[1]
    page.goto(f"{server_url}/api/protocol")
    page.evaluate("""async ([session, count]) => {
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
            ws.send(JSON.stringify({v: version, type: 'join', session}));
            await welcome;
            window.fillers.push(ws);
        }
    }""", [session, count])
