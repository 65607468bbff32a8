"""A browser that lacks what taking part needs says so as the lobby opens, before "I'm
ready" and before any Python is downloaded, and still joins: it holds its place, and the
other parties (a native peer, another browser) see why it cannot take part.

Each case takes something away with an init script that runs before the page's own
scripts.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from playwright.sync_api import Page, expect

from mpyc_webrtc.sentences import say
from testbed.browser import BrowserParty
from testbed.netns import StderrLines, start_peer

NO_WEBRTC = "delete window.RTCPeerConnection;"
NO_WASM = "delete globalThis.WebAssembly;"
NO_WORKERS = "delete window.Worker;"
#: A current browser whose page came without the isolating headers.
NOT_ISOLATED = ("Object.defineProperty(window, 'crossOriginIsolated', "
                "{value: false, configurable: true});")
#: An isolated page in a browser without SharedArrayBuffer.
NO_SHARED_MEMORY = ("Object.defineProperty(window, 'crossOriginIsolated', "
                    "{value: true, configurable: true}); delete globalThis.SharedArrayBuffer;")

LACKS_WORDS = {
    "webrtc": "WebRTC data channels",
    "webassembly": "WebAssembly",
    "workers": "Web Workers",
    "isolation": "cross-origin isolation (SharedArrayBuffer)",
}


def lacking_party(page: Page, url: str, script: str) -> tuple[BrowserParty, list[str]]:
    """A party on ``url`` whose browser ``script`` took something away; the URLs it asked for."""
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.add_init_script(script)
    party = BrowserParty(page, url, wait_joined=False)
    return party, requests


def check_says_so_and_loads_nothing(party: BrowserParty, requests: list[str],
                                    sentence: str) -> int:
    """The page said ``sentence`` at once, joined, and stays unable to be ready; returns its
    pid."""
    expect(party["status"]).to_have_text("Cannot take part here")
    expect(party["error"]).to_have_text(sentence)
    pid = party.wait_joined()
    expect(party[f"peer-{pid}"]).to_have_attribute("data-state", "unsupported")
    expect(party["ready"]).to_be_disabled()
    expect(party["ready"]).to_have_text("I'm ready")
    expect(party["party-input"]).to_be_disabled()
    expect(party["progress-box"]).to_be_hidden()
    party.page.wait_for_timeout(1500)  # a page that loads Python asks for it by now
    expect(party["ready"]).to_be_disabled()
    python = re.compile(r"/pyodide/|/assets/python-|/web/worker\.js")
    assert [url for url in requests if python.search(url)] == []
    return pid


def native_sees(peer: subprocess.Popen, stderr: StderrLines, party_pid: int,
                lacks: list[str]) -> None:
    """The native peer's roster names what party ``party_pid`` lacks; then it is stopped."""
    words = " and ".join(LACKS_WORDS[name] for name in lacks)
    try:
        # People count parties from 1: pid 1 is "party 2".
        stderr.wait_for(f"Party {party_pid + 1}: cannot take part: its browser lacks {words}")
        stderr.wait_for(f"Waiting for party {party_pid + 1} to take part from another browser "
                        "(its own cannot).")
    finally:
        peer.terminate()
        peer.wait(timeout=30)


def test_without_webrtc_the_page_says_so_and_a_native_peer_sees_why(server, new_page):
    url = server.create(3, "--program", "sum")
    peer = start_peer(server.ns, url, "--input", "5")  # party 0, ready at once
    stderr = StderrLines(peer)
    server.wait_joined(url, 1)
    party, requests = lacking_party(new_page(), url, NO_WEBRTC)
    pid = check_says_so_and_loads_nothing(
        party, requests, say("browser.unsupported", lacks="WebRTC data channels"))
    assert pid == 1
    expect(party["peer-1"]).to_contain_text(
        "cannot take part: its browser lacks WebRTC data channels")
    native_sees(peer, stderr, 1, ["webrtc"])


@pytest.mark.parametrize(("script", "lacks"), [(NO_WASM, "webassembly"),
                                              (NO_WORKERS, "workers")])
def test_a_browser_that_cannot_run_python_holds_its_place_until_closed(
        server, new_page, script, lacks):
    """Another browser's roster shows why; once the page closes, the place is free for the
    same person in a browser that can take part."""
    url = server.create(3, "--program", "sum")
    other = BrowserParty(new_page(), url)
    assert other.pid == 0
    page = new_page()
    party, requests = lacking_party(page, url, script)
    check_says_so_and_loads_nothing(
        party, requests, say("browser.unsupported", lacks=LACKS_WORDS[lacks]))
    expect(other["peer-1"]).to_have_attribute("data-state", "unsupported")
    expect(other["peer-1"]).to_contain_text(
        f"cannot take part: its browser lacks {LACKS_WORDS[lacks]}")
    expect(other["status"]).to_have_text(
        "Waiting for Party 2 to take part from another browser (its own cannot)")
    page.close()
    expect(other["peer-1"]).to_have_attribute("data-state", "waiting")
    assert BrowserParty(new_page(), url).pid == 1


@pytest.mark.parametrize(("script", "sentence"), [
    (NOT_ISOLATED, say("browser.not_isolated")),
    (NO_SHARED_MEMORY, say("browser.unsupported", lacks=LACKS_WORDS["isolation"])),
], ids=["page-not-isolated", "no-shared-array-buffer"])
def test_without_cross_origin_isolation_the_page_says_whose_it_is(
        server, new_page, script, sentence):
    """A page the server did not isolate says that no browser would
    do better; a browser that lacks SharedArrayBuffer says to use another one."""
    url = server.create(3, "--program", "sum")
    peer = start_peer(server.ns, url, "--input", "5")
    stderr = StderrLines(peer)
    server.wait_joined(url, 1)
    page = new_page()
    party, requests = lacking_party(page, url, script)
    assert check_says_so_and_loads_nothing(party, requests, sentence) == 1
    native_sees(peer, stderr, 1, ["isolation"])
