"""Browser parties in the benchmark: page-open → ready time, and the workloads in a browser.

Uses the join page exactly as a person would (through testbed/browser.py's BrowserParty,
which drives it by its data-testid hooks); the browser (Chromium, testbed/chromium.py, or
Firefox, testbed/firefox.py) lives in the benchmark's network namespace.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from playwright.sync_api import expect

from testbed import chromium, firefox
from testbed.browser import LOAD_TIMEOUT_MS, BrowserParty
from testbed.netns import Namespace, Server

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = REPO / "bench" / "workload.py"
#: The testbed module that launches each browser engine in a namespace: each has
#: ``missing()``, ``launch(playwright, ns, workdir, secure_origin=...)`` and
#: ``new_context(browser, origin)``.
ENGINES = {"chromium": chromium, "firefox": firefox}


def ready_times(context, join_url: str) -> tuple[float, float]:
    """Seconds from navigation to Python being ready in a fresh ``context``: first visit
    (a fresh profile, empty cache), then a reload (warm cache). Closes the context.

    A page that is not cross-origin isolated stops saying "Loading Python…" at once (it
    only holds its place): that is an AssertionError, not a fast time."""
    try:
        page = context.new_page()
        started = time.monotonic()
        party = BrowserParty(page, join_url).wait_python()
        cold = time.monotonic() - started
        isolated(party)
        started = time.monotonic()
        page.reload()
        expect(page.get_by_test_id("ready")).not_to_have_text("Loading Python…",
                                                             timeout=LOAD_TIMEOUT_MS)
        warm = time.monotonic() - started
        isolated(party)
        return cold, warm
    finally:
        context.close()


def isolated(party: BrowserParty) -> None:
    """Fail unless the page is cross-origin isolated in a secure context (what Python in
    the page's worker needs: SharedArrayBuffer, WebCrypto)."""
    got = party.page.evaluate("[crossOriginIsolated, isSecureContext]")
    if got != [True, True]:
        raise AssertionError(party.describe(f"is not ready to compute (crossOriginIsolated, "
                                            f"isSecureContext = {got})"))


class BrowserBench:
    """One browser process for the whole benchmark; a fresh context per party."""

    def __init__(self, playwright, ns: Namespace, server: Server, workdir: Path,
                 browser: str = "chromium"):
        self.server = server
        self.engine = ENGINES[browser]
        self.browser = self.engine.launch(playwright, ns, workdir)

    def close(self) -> None:
        self.browser.close()

    def ready_times(self, join_url: str) -> tuple[float, float]:
        """Seconds from navigation to Python being ready: first visit (empty cache), then
        a reload."""
        return ready_times(self.engine.new_context(self.browser, self.server.url), join_url)

    def run(self, join_url: str, parties: int) -> dict:
        """All parties in browsers; returns party 0's JSON result line."""
        contexts = [self.engine.new_context(self.browser, self.server.url)
                    for _ in range(parties)]
        try:
            tabs = [BrowserParty(c.new_page(), join_url) for c in contexts]
            for pid, tab in enumerate(tabs):
                if tab.confirm() != pid:
                    raise RuntimeError("browser parties did not get pids in join order")
            outputs = [tab.wait_done() for tab in tabs]
        finally:
            for context in contexts:
                context.close()
        lines = [line for line in outputs[0].splitlines() if line.startswith("{")]
        if len(lines) != 1:
            raise RuntimeError(f"party 0 printed no single result line: {outputs[0]!r}")
        return json.loads(lines[0])
