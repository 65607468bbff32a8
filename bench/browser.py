"""Browser parties in the benchmark: page-open → ready time, and the workloads in Chromium.

Uses the join page exactly as a person would (through testbed/browser.py's BrowserParty,
which drives it by its data-testid hooks); Chromium lives in the benchmark's network
namespace (testbed/chromium.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from playwright.sync_api import expect

from testbed import chromium
from testbed.browser import BrowserParty
from testbed.netns import Namespace, Server

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = REPO / "bench" / "workload.py"


class BrowserBench:
    """One Chromium process for the whole benchmark; a fresh context per party."""

    def __init__(self, playwright, ns: Namespace, server: Server, workdir: Path):
        self.server = server
        self.browser = chromium.launch(playwright, ns, workdir)

    def close(self) -> None:
        self.browser.close()

    def ready_times(self, join_url: str) -> tuple[float, float]:
        """Seconds from navigation to Python being ready: first visit (empty cache), then
        a reload."""
        context = chromium.new_context(self.browser, self.server.url)
        try:
            page = context.new_page()
            started = time.monotonic()
            BrowserParty(page, join_url).wait_python()
            cold = time.monotonic() - started
            started = time.monotonic()
            page.reload()
            expect(page.get_by_test_id("ready")).not_to_have_text("Loading Python…",
                                                                 timeout=90_000)
            warm = time.monotonic() - started
            return cold, warm
        finally:
            context.close()

    def run(self, join_url: str, parties: int) -> dict:
        """All parties in browsers; returns party 0's JSON result line."""
        contexts = [chromium.new_context(self.browser, self.server.url) for _ in range(parties)]
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
