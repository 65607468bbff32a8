"""Issue 18: reloads and long waits, as people really do them (Chromium, at phone and desktop
size where it concerns what is on the screen).

- a reload after the result takes the party's own place back and shows its last result and
  who is still there; the others see it back, and the session runs again over new links to
  it;
- a reload during a round is warned against (``beforeunload``);
- an open lobby keeps its session open past the idle timeout, and says when it would close;
- a session that closed offers "Create it again with the same settings", to the party in
  its lobby and to a late joiner alike: the create page is filled in with the settings.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from testbed.browser import BrowserParty, open_parties, run_again_to
from testbed.netns import Server, session_id, start_peer

PROGRAMS = Path(__file__).parent / "programs"
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
#: Set to a folder (docs/screenshots) to keep what the person sees at the states shown there.
SCREENSHOTS = os.environ.get("MPYC_WEBRTC_SCREENSHOTS")


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


def http_status(server: Server, join_url: str) -> int:
    """The HTTP status of ``GET /api/sessions/ID``, asked from inside the namespace."""
    done = server.ns.run([sys.executable, "-c",
                          "import sys, urllib.request, urllib.error\n"
                          "try:\n    print(urllib.request.urlopen(sys.argv[1]).status)\n"
                          "except urllib.error.HTTPError as e:\n    print(e.code)",
                          f"{server.url}/api/sessions/{session_id(join_url)}"])
    return int(done.stdout.strip())


@pytest.fixture(scope="module")
def short_server(namespace):
    """A second server in the module's namespace whose sessions close soon: after 6 s with
    nobody connected, and 20 s after they were created in any case."""
    return Server(namespace, 8082, "--idle-timeout", "6", "--max-age", "20", "--stun-port", "0")


@pytest.mark.parametrize("size", SIZES)
def test_a_reload_after_the_result_takes_the_place_back_and_runs_again(server, new_page, size):
    url = server.create(3, "--program", "sum")
    parties = open_parties(new_page, url, 3)
    for party in parties:
        party.page.set_viewport_size(SIZES[size])
    for party, value in zip(parties, ("5", "7", "30"), strict=True):
        party.confirm(value)
    for party in parties:
        party.wait_done()
    zero, one, two = parties
    headline = one.headline()
    assert "42" in headline

    one.page.reload()
    assert one.wait_joined() == 1
    expect(one.page).to_have_url(re.compile(r"\?role=1$"))
    expect(one["status"]).to_have_text(re.compile(
        r"^Back in the session after a reload: all the others are still here \(.+, .+\)\. "
        r"Press \"I'm ready to run again\" to compute again with them\.$"))
    expect(one["result-headline"]).to_have_text(headline)
    expect(one["result-headline"]).to_be_visible()
    expect(one["elapsed"]).to_have_text(re.compile(
        r"^Your result of round 1, as this page showed it at .+, before it was reloaded\.$"))
    expect(one["again-help"]).to_have_text(
        "You have your place back. To compute again with the others, enter your input and "
        "press \"I'm ready to run again\": new connections are made when everyone agrees.")
    screenshot(one.page, f"reload-{size}")
    assert sorted(m["pid"] for m in server.info(url)["members"]) == [0, 1, 2]

    # The others see it back (it was "left" for a moment: the page closed its connection
    # as it unloaded), and the session runs again over new links to it.
    for other in (zero, two):
        expect(other["peer-1"]).not_to_have_attribute("data-state", "left")
        expect(other["again-help"]).to_have_text(re.compile(
            r" is back after a reload or a lost connection: the session can run again once "
            r"everyone agrees, over new connections to it\.$"))
        other["run-again"].click()
    one.pid = 1
    run_again_to(parties, ["100", "200", "300"], "600")
    expect(zero["pair-0-1"]).to_have_attribute("data-state", "ready")


def test_a_reload_during_a_round_is_warned_against_and_keeps_the_place(server, new_page):
    url = server.create(3, "--program-file", str(PROGRAMS / "rounds.py"),
                        "--args", "--rounds=100000")
    page = new_page()
    page.set_viewport_size(SIZES["phone"])
    party = BrowserParty(page, url)
    natives = []
    for pid in (1, 2):
        natives.append(start_peer(server.ns, url, "--input", "1", "--trust-program"))
        server.wait_joined(url, pid + 1)
    warns = ("() => { const e = new Event('beforeunload', { cancelable: true });"
             " window.dispatchEvent(e); return e.defaultPrevented; }")
    party.wait_python()
    assert page.evaluate(warns) is False  # in the lobby a reload loses nothing
    party.confirm(None)
    expect(party["output"]).to_contain_text("round 10", timeout=120_000)
    assert page.evaluate(warns) is True
    dialogs: list[str] = []

    def answer(dialog) -> None:
        dialogs.append(dialog.type)
        dialog.accept()

    page.on("dialog", answer)
    page.reload()
    assert dialogs == ["beforeunload"]
    assert party.wait_joined() == 0
    expect(party["status"]).to_have_text(re.compile(r"^Back in the session after a reload: "))
    expect(party["elapsed"]).to_have_text(
        "This page was reloaded before the computation finished, so it has no result to "
        "show. A reload during a computation ends it for every party.")
    for native in natives:
        native.communicate(timeout=60)
        assert native.returncode == 1  # the round ended with the page that ran it
    expect(party["status"]).to_have_text(
        "Back in the session after a reload: none of the others is still here.")


@pytest.mark.parametrize("size", SIZES)
def test_an_open_lobby_outlives_the_idle_timeout_and_offers_to_create_it_again(
        short_server, new_page, size):
    url = short_server.create(3, "--program", "sum", "--labels", "Alice", "Bob", "Carol")
    page = new_page()
    page.set_viewport_size(SIZES[size])
    party = BrowserParty(page, url, wait_joined=False)
    party["place-1"].click()
    assert party.wait_joined() == 1
    expect(party["session-closes"]).to_have_text(re.compile(
        r"^This session stays open while anyone is on this page; once everyone has left, it "
        r"closes after 6 seconds\. It closes at \d\d:\d\d( [AP]M)? in any case\.$"))
    time.sleep(8)  # more than the idle timeout, with nothing said
    assert short_server.info(url)["members"][0]["pid"] == 1
    expect(party["status"]).not_to_have_text("Session closed")
    # At the server's --max-age the session closes all the same; the lobby offers it again.
    expect(party["status"]).to_have_text("Session closed", timeout=30_000)
    expect(party["error"]).to_have_text(
        "This session was closed because it has been open longer than the server allows.")
    again = party["create-again"]
    expect(again).to_have_text("Create it again with the same settings")
    expect(again).to_be_in_viewport()
    screenshot(page, f"closed-{size}")
    again.click()
    expect(page).to_have_url(f"{short_server.url}/?again")
    expect(party["again-note"]).to_be_visible()
    expect(party["program-choice-sum"]).to_be_checked()
    expect(party["parties-count"]).to_have_value("3")
    for pid, label in enumerate(("Alice", "Bob", "Carol")):
        expect(party[f"label-{pid}"]).to_have_value(label)
    expect(party["my-role"]).to_have_value("1")  # the place this person had
    party["create"].click()
    expect(page).to_have_url(re.compile(r"/join/[^/?#]+\?role=1$"), timeout=30_000)
    new_id = page.url.split("/join/", 1)[1].split("?", 1)[0]
    assert new_id != session_id(url)
    expect(party["pid"]).to_have_text(re.compile("Bob"), timeout=30_000)


def test_a_late_joiner_of_a_closed_session_can_create_it_again(short_server, new_page):
    url = short_server.create(3, "--program", "sum", "--labels", "Ann", "Ben", "Cy")
    deadline = time.monotonic() + 30
    while http_status(short_server, url) != 410:
        assert time.monotonic() < deadline, "the idle session did not close"
        time.sleep(0.5)
    page = new_page()
    page.set_viewport_size(SIZES["phone"])
    party = BrowserParty(page, url, wait_joined=False)
    expect(party["status"]).to_have_text("Session closed")
    expect(party["error"]).to_have_text(
        "This session was closed because it was idle for too long.")
    expect(party["create-again"]).to_be_in_viewport()
    party["create-again"].click()
    expect(party["again-note"]).to_be_visible()
    for pid, label in enumerate(("Ann", "Ben", "Cy")):
        expect(party[f"label-{pid}"]).to_have_value(label)
