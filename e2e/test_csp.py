"""The server's Content-Security-Policy, in Chromium: the create page, the lobby with its QR
code and highlighted code, the worker with Pyodide, and a whole three-party computation run
under it without a single violation. In firefox-esr (./run.sh test installs it; where it
is missing the test skips, and fails under CI=true), the lobby, the worker and a computation
with two Chromium parties run without a violation either.

The server here is the real app with one addition for the test: its policy also says
``report-uri /csp-report``, where every violation (of a page or of the worker) arrives and
is printed. That the reports do arrive is shown at the end with a deliberate violation.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
import threading
import time

import pytest
from playwright.sync_api import expect

from testbed import chromium, firefox
from testbed.browser import BrowserParty
from testbed.netns import BIN

PORT = 8091

# The app as mpyc-webrtc-server builds it, plus a place for violation reports; the policy
# less the words given after the port, if any (to show that they are needed).
SERVER = r"""
import sys
from aiohttp import web
from signaling.app import CONTENT_SECURITY_POLICY, create_app

policy = CONTENT_SECURITY_POLICY
for word in sys.argv[2:]:
    policy = policy.replace(" " + word, "")

@web.middleware
async def log_paths(request, handler):
    print("PATH " + request.path, flush=True)
    return await handler(request)

app = create_app()
app.middlewares.append(log_paths)

async def report(request):
    print("CSP-REPORT " + (await request.read()).decode(errors="replace"), flush=True)
    return web.Response(status=204)

async def with_report_uri(request, response):
    if response.headers.get("Content-Security-Policy") == CONTENT_SECURITY_POLICY:
        response.headers["Content-Security-Policy"] = policy + "; report-uri /csp-report"

app.router.add_post("/csp-report", report)
app.on_response_prepare.append(with_report_uri)  # after the app's own headers
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None,
            print=lambda *args: print("serving", flush=True))
"""


class ReportingServer:
    def __init__(self, ns, port: int, *without: str):
        self.ns = ns
        self.url = f"http://127.0.0.1:{port}"
        self.proc = ns.popen([sys.executable, "-c", SERVER, str(port), *without],
                             stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "serving"
        self.reports: collections.deque[dict] = collections.deque()
        self.paths: collections.deque[str] = collections.deque()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("CSP-REPORT "):
                self.reports.append(json.loads(line.split(" ", 1)[1]).get("csp-report", {}))
            elif line.startswith("PATH "):
                self.paths.append(line.split(" ", 1)[1].strip())

    def create(self, parties: int, *program: str) -> str:
        done = self.ns.run([str(BIN / "mpyc-webrtc-peer"), "create", self.url,
                            "--parties", str(parties), "--no-qr", *program])
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        self.proc.terminate()  # the server this test started, by its pid
        self.proc.wait(10)


def check_a_violation_is_reported(page, reporting: ReportingServer) -> None:
    """Add an inline script, which the policy forbids: it must not run, and its report
    must reach the server (so that no report elsewhere means no violation)."""
    reporting.reports.clear()
    ran = page.evaluate("""() => {
        const script = document.createElement('script');
        script.textContent = 'window.inlineRan = true;';
        document.head.append(script);
        return window.inlineRan === true;
    }""")
    assert ran is False
    deadline = time.monotonic() + 10
    while not reporting.reports and time.monotonic() < deadline:
        time.sleep(0.1)
    (report,) = reporting.reports
    assert report["effective-directive"] in ("script-src", "script-src-elem"), report
    assert report["blocked-uri"] == "inline", report


@pytest.fixture(scope="module")
def reporting(namespace):
    server = ReportingServer(namespace, PORT)
    yield server
    server.stop()


def test_pages_worker_and_a_computation_violate_nothing(reporting, browser):
    contexts = [chromium.new_context(browser, reporting.url) for _ in range(4)]
    try:
        create = contexts[0].new_page()
        create.goto(f"{reporting.url}/")
        # The library with a highlighted preview, and the editor (CodeJar, Prism) for
        # your own program.
        expect(create.get_by_test_id("program-preview")).to_contain_text("mpc", timeout=30_000)
        create.get_by_test_id("program-choice-own").check()
        expect(create.get_by_test_id("source-editor")).to_be_visible()
        create.get_by_test_id("source-editor").press("End")
        create.get_by_test_id("source-editor").type("\nprint(1)\n")
        url = reporting.create(3, "--program", "sum")
        parties = [BrowserParty(context.new_page(), url) for context in contexts[1:]]
        # The lobby draws the invite's QR code as a data: image.
        expect(parties[0]["invite-qr"]).to_have_attribute("src", re.compile(r"^data:image/"))
        for pid, (party, value) in enumerate(zip(parties, ["10", "12", "20"], strict=True)):
            assert party.confirm(value) == pid
        assert [p.wait_done().strip() for p in parties] == ["sum = 42"] * 3
        time.sleep(1.0)  # reports are sent asynchronously
        assert list(reporting.reports) == [], list(reporting.reports)
        # A deliberate violation: the policy forbids inline script; its report comes here.
        check_a_violation_is_reported(create, reporting)
    finally:
        for context in contexts:
            context.close()


def test_without_wasm_unsafe_eval_the_worker_cannot_start_python(namespace, browser):
    """The one word beyond 'self' that scripts need: Pyodide compiles WebAssembly in the
    worker, whose own policy (that of web/worker.js) forbids it without the word."""
    server = ReportingServer(namespace, PORT + 1, "'wasm-unsafe-eval'")
    context = chromium.new_context(browser, server.url)
    try:
        party = BrowserParty(context.new_page(), server.create(3, "--program", "sum"))
        deadline = time.monotonic() + 60
        while not server.reports and time.monotonic() < deadline:
            time.sleep(0.2)
        report = server.reports[0]
        assert report["document-uri"].endswith("/web/worker.js"), report
        assert report["blocked-uri"] == "wasm-eval", report
        expect(party["ready"]).to_have_text("Loading Python…")
    finally:
        context.close()
        server.stop()


def test_firefox_lobby_worker_and_a_computation_violate_nothing(reporting, firefox_browser,
                                                                 browser):
    """Firefox (party 0) under the same policy: its lobby joins over the WebSocket, its worker
    boots Pyodide and computes with two Chromium parties over WebRTC, with no report from
    either engine."""
    url = reporting.create(3, "--program", "sum")
    reporting.reports.clear()
    reporting.paths.clear()
    contexts = [firefox.new_context(firefox_browser, reporting.url),
                *(chromium.new_context(browser, reporting.url) for _ in range(2))]
    try:
        parties = [BrowserParty(context.new_page(), url) for context in contexts]
        parties[0].wait_python()
        assert any(p.startswith("/assets/python-") for p in reporting.paths)
        assert "/pyodide/" in " ".join(reporting.paths)
        for pid, (party, value) in enumerate(zip(parties, ["10", "12", "20"], strict=True)):
            assert party.confirm(value) == pid
        assert [p.wait_done().strip() for p in parties] == ["sum = 42"] * 3
        time.sleep(1.0)  # reports are sent asynchronously
        assert list(reporting.reports) == [], list(reporting.reports)
        # Firefox does report: a deliberate violation's report arrives.
        check_a_violation_is_reported(parties[0].page, reporting)
    finally:
        for context in contexts:
            context.close()
