"""Firefox ESR as a party: with Chromium and a native peer in one session, every built-in
program, a second round over the same connections, a party that dies, and without JSPI.

Firefox, Chromium and the native peers run in the module's loopback-only network namespace
(see conftest.py and testbed/firefox.py). Pids follow join order, so where it matters which
party is which, each party waits until the previous one has its pid before it joins. Built-in
programs need three parties.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import expect

from mpyc_webrtc.programs import CATALOG
from signaling.app import SECURITY_HEADERS
from testbed import chromium, firefox
from testbed.browser import BrowserParty
from testbed.netns import native_output, start_peer

PROGRAMS = Path(__file__).parent / "programs"
REPO = Path(__file__).resolve().parent.parent


def native_result(peer: subprocess.Popen) -> tuple[str, dict[str, str]]:
    """A native peer's ``Result.to_text()``: its headline and its 'label: value' rows."""
    headline, *lines = native_output(peer).splitlines()
    rows = dict(line.split(": ", 1) for line in lines if ": " in line)
    return headline, rows


def test_firefox_chromium_and_a_native_peer_compute_a_sum(server, new_firefox_page, new_page):
    """Both engines and aiortc in one mesh: each pair of them connects directly."""
    url = server.create(3, "--program", "sum")
    fox = BrowserParty(new_firefox_page(), url)
    chrome = BrowserParty(new_page(), url)
    assert (fox.pid, chrome.pid) == (0, 1)
    native = start_peer(server.ns, url, "--input", "100")  # party 2
    server.wait_joined(url, 3)
    fox.confirm("5,6")
    chrome.confirm("-2")
    expected = f"sum = {5 + 6 - 2 + 100}"
    assert [fox.wait_done().strip(), chrome.wait_done().strip()] == [expected] * 2
    for party in (fox, chrome):
        for a, b in ((0, 1), (0, 2), (1, 2)):
            expect(party[f"pair-{a}-{b}"]).to_have_attribute("data-path", "direct")
    assert native_output(native) == expected


@dataclass
class Case:
    """A built-in program's run: Firefox's input, the two natives' inputs, and the
    headline and rows every party must show (None: the program's own check)."""

    firefox: str | None
    natives: tuple[str | None, str | None]
    headline: str | None = None
    rows: dict[str, str] = field(default_factory=dict)


CASES = {
    "average": Case("52000", ("61500", "38250"),
                    "The average salary is 50,583.33.",  # 151,750 / 3
                    {"Parties": "3", "Total": "151,750", "Average": "50,583.33"}),
    "millionaires": Case("1000000", ("250000", "999999"), "Party 1 has the most: 1,000,000.",
                         {"Parties": "3", "Richest": "party 1", "Amount": "1,000,000"}),
    "median": Case("3,1,2", ("10", "-4,7"), "The median is 2.5.",
                   {"Count": "6", "Minimum": "-4", "Median": "2.5", "Maximum": "10"}),
    "santa": Case(None, (None, None)),
    "vote": Case("yes", ("yes", "no"),
                 "Not unanimous: at least one party voted no. Nobody learns who, or how many.",
                 {"Parties": "3", "Unanimous": "no"}),
    "sum": Case("5,-3", ("1000", "7"), "sum = 1009"),
    "max": Case("-7,3", ("5", "4"), "max = 5"),
    "sort": Case("30,-1,4", ("2", "99,0"), "sort = -1,0,2,4,30,99"),
}


def test_every_built_in_program_has_a_case():
    assert sorted(CASES) == sorted(CATALOG)


@pytest.mark.parametrize("program", CASES)
def test_built_in_program_in_firefox_with_two_native_peers(server, new_firefox_page, program):
    case = CASES[program]
    url = server.create(3, "--program", program)
    fox = BrowserParty(new_firefox_page(), url)  # party 0
    # Parties 1 and 2, in either order: no case's result depends on which is which.
    natives = [start_peer(server.ns, url, *([] if value is None else ["--input", value]))
               for value in case.natives]
    server.wait_joined(url, 3)
    assert fox.confirm(case.firefox) == 0
    fox.wait_done()
    results = [(fox.headline(), fox.rows())]
    # A page keeps its channels open for another round, and a native waits up to 10 s for
    # them to close before it exits; closing Firefox's page closes them at once.
    fox.page.close()
    results += [native_result(native) for native in natives]
    if program == "santa":  # a random derangement: each party learns only its own receiver
        receivers = {}
        for headline, rows in results:
            match = re.fullmatch(r"You give a present to party (\d)\.", headline)
            assert match, headline
            assert rows.keys() == {"You are", "Parties"} and rows["Parties"] == "3", rows
            receivers[int(rows["You are"].removeprefix("party "))] = int(match.group(1))
        assert results[0][1]["You are"] == "party 1"  # Firefox's own (pid 0)
        assert sorted(receivers) == sorted(receivers.values()) == [1, 2, 3]
        assert all(giver != receiver for giver, receiver in receivers.items())
    else:
        assert results == [(case.headline, case.rows)] * 3


def test_two_firefox_pages_and_chromium_run_again_over_the_same_connections(
        server, new_firefox_page, new_page):
    """Run again is for browsers: two Firefox pages (a Firefox-Firefox pair too) and one
    Chromium page, twice, with no new connection for the second round."""
    url = server.create(3, "--program", "sort")
    parties = [BrowserParty(new_firefox_page(), url), BrowserParty(new_firefox_page(), url),
               BrowserParty(new_page(), url)]
    for pid, (party, value) in enumerate(zip(parties, ["3,1", "2", "-5"], strict=True)):
        assert party.confirm(value) == pid
    assert [p.wait_done().strip() for p in parties] == ["sort = -5,1,2,3"] * 3
    for pid, (party, value) in enumerate(zip(parties, ["40", "-1,0", "7"], strict=True)):
        party["run-again"].click()
        expect(party["ready"]).to_have_text("I'm ready to run again")
        party.confirm(value)
        if pid < 2:
            expect(parties[pid + 1][f"peer-{pid}"]).to_have_attribute("data-state", "again")
    for party in parties:
        expect(party["status"]).to_have_text("Done: sort = -1,0,7,40", timeout=120_000)
        expect(party["output"]).to_have_text("sort = -1,0,7,40\n")
        expect(party["roster-summary"]).to_have_text("Round 2.")
    for pid, party in enumerate(parties[:2]):  # the Firefox pages
        log = party["log"].text_content()
        for other in {0, 1, 2} - {pid}:
            assert log.count(f"connection to party {other}: connected") == 1, log


def long_run(server, new_firefox_page) -> tuple[BrowserParty, list[subprocess.Popen]]:
    """Firefox (party 0) and two native peers in many rounds; returns once they are under
    way."""
    url = server.create(3, "--program-file", str(PROGRAMS / "rounds.py"),
                        "--args", "--rounds=100000")
    fox = BrowserParty(new_firefox_page(), url)
    natives = []
    for pid in (1, 2):
        natives.append(start_peer(server.ns, url, "--input", "1", "--trust-program"))
        server.wait_joined(url, pid + 1)
    fox.confirm(None)
    expect(fox["output"]).to_contain_text("round 10", timeout=120_000)
    return fox, natives


def test_firefox_is_told_which_party_died(server, new_firefox_page):
    fox, natives = long_run(server, new_firefox_page)
    natives[1].send_signal(signal.SIGKILL)  # party 2, a peer this test started, by its pid
    killed = time.monotonic()
    expect(fox["error"]).to_contain_text(re.compile(
        r"[Pp]arty 3 (left the session|stopped responding)"), timeout=10_000)
    assert time.monotonic() - killed < 10
    expect(fox["status"]).not_to_have_text("Done")
    natives[0].communicate(timeout=30)
    assert natives[0].returncode == 1


def test_firefox_is_told_when_a_chromium_page_closes(server, new_firefox_page, new_page):
    url = server.create(3, "--program-file", str(PROGRAMS / "rounds.py"),
                        "--args", "--rounds=100000")
    fox = BrowserParty(new_firefox_page(), url)
    chrome = BrowserParty(new_page(), url)
    native = start_peer(server.ns, url, "--input", "1", "--trust-program")  # party 2
    server.wait_joined(url, 3)
    fox.confirm(None)
    chrome.confirm(None)
    expect(fox["output"]).to_contain_text("round 10", timeout=120_000)
    chrome.page.close()
    expect(fox["error"]).to_contain_text(re.compile(
        r"[Pp]arty 2 (left the session|stopped responding)"), timeout=10_000)
    native.communicate(timeout=30)
    assert native.returncode == 1


# -- browsers without JSPI (as Safari and Chrome on Android are) ---------------------------

#: Chromium has no switch for JSPI: the worker loses it before Pyodide loads.
NO_JSPI_WORKER = "delete WebAssembly.Suspending; delete WebAssembly.promising;\n"


def chromium_without_jspi(context) -> None:
    """Serve this context's pages a worker script that first takes JSPI away, with the
    server's headers (its isolation among them). Read from the checkout: Playwright's own
    requests come from outside the namespace the server is in."""
    body = NO_JSPI_WORKER + (REPO / "web" / "worker.js").read_text()
    headers = {**SECURITY_HEADERS, "Content-Type": "text/javascript; charset=utf-8"}
    context.route(re.compile(r"/web/worker\.js$"),
                  lambda route: route.fulfill(body=body, headers=headers))


def test_without_jspi_firefox_chromium_and_a_native_peer_run_a_classic_mpc_run_script(
        playwright, namespace, server, browser, tmp_path):
    """An unmodified script in the classic style (``mpc.run(...)`` throughout) in Firefox
    with JSPI switched off, Chromium without JSPI and a native peer: Python in the workers
    blocks on the page's inbox instead, and every party gets the plain computation's
    result."""
    url = server.create(3, "--program-file", str(PROGRAMS / "above_average.py"))
    fox_browser = firefox.launch(playwright, namespace, tmp_path, jspi=False)
    chrome_context = chromium.new_context(browser, server.url)
    chromium_without_jspi(chrome_context)
    try:
        fox = BrowserParty(firefox.new_context(fox_browser, server.url).new_page(), url)
        assert fox.confirm("12") == 0
        chrome = BrowserParty(chrome_context.new_page(), url)
        assert chrome.confirm("30") == 1
        native = start_peer(server.ns, url, "--input", "3", "--trust-program")
        values = [12, 30, 3]
        total = sum(values)
        above = sum(len(values) * v > total for v in values)
        expected = f"total = {total}\nmax = {max(values)}\nabove average = {above}"
        assert fox.wait_done().strip() == expected
        assert chrome.wait_done().strip() == expected
        assert native_output(native) == expected
        for party in (fox, chrome):  # what the workers said when Python was ready
            expect(party["log"]).to_contain_text("worker: JSPI absent (not needed); "
                                                 "cross-origin isolated: true")
    finally:
        chrome_context.close()
        fox_browser.close()
