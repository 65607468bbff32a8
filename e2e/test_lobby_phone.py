"""The lobby as people use it on a phone (390x844) and at a desk (1280x800): where the news
appears when a round starts and ends, asking to run again, earlier results, copying a
result, a long round's progress, the invite card, and the pages a session can stop on.

Set MPYC_WEBRTC_SCREENSHOTS=DIR to keep what the screen shows at the moments that matter
(docs/screenshots/ holds the ones taken so).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from testbed.browser import BrowserParty, fill_session
from testbed.netns import start_peer

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SHOTS = os.environ.get("MPYC_WEBRTC_SCREENSHOTS")
PROGRAMS = Path(__file__).parent / "programs"

#: Every element that takes the focus, with where it and the status are on the screen then.
FOCUS_LOG = """
window.focusLog = [];
document.addEventListener('focusin', (event) => {
  const box = (element) => {
    const r = element.getBoundingClientRect();
    return { top: r.top, bottom: r.bottom };
  };
  const status = document.querySelector('[data-testid=status]');
  window.focusLog.push({
    testid: event.target.dataset ? event.target.dataset.testid ?? null : null,
    box: box(event.target), status: box(status), statusText: status.textContent,
    height: window.innerHeight,
  });
}, true);
"""

#: What the result card promised before the round ended, drawn by the stylesheet.
PLACEHOLDER = "The result appears here"


def shot(page: Page, name: str) -> None:
    """Keep what the screen shows (the viewport, not the whole page: where people look)."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/{name}.png")


def party_at(new_page, url: str, size: dict, *, clipboard: bool = False,
             wait_joined: bool = True) -> BrowserParty:
    """A person's tab of this size on the link, whose focus moves are recorded."""
    page = new_page()
    page.set_viewport_size(size)
    if clipboard:
        page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                       origin=url.split("/join/")[0])
    page.add_init_script(FOCUS_LOG)
    return BrowserParty(page, url, wait_joined=wait_joined)


def in_view(party: BrowserParty, testid: str) -> bool:
    """Whether the element is whole on the screen, as it is scrolled now."""
    return party[testid].evaluate(
        "e => { const r = e.getBoundingClientRect();"
        " return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }")


def focused(party: BrowserParty) -> str | None:
    """The data-testid of the element with the focus, or of the nearest one around it."""
    return party.page.evaluate(
        "(() => { const e = document.activeElement?.closest('[data-testid]');"
        " return e ? e.dataset.testid : null; })()")


def focus_log(party: BrowserParty) -> list[dict]:
    return party.page.evaluate("window.focusLog")


def shows_placeholder(party: BrowserParty) -> bool:
    """Whether the result card still draws "The result appears here when ...". """
    return party["output-box"].is_visible() and PLACEHOLDER in party["output"].evaluate(
        "e => getComputedStyle(e, '::before').content")


def assert_round_came_into_view(party: BrowserParty, headline: str) -> None:
    """When the round started, the status took the focus on the screen; when it ended,
    the result card did, below the status, both on the screen; the status says the
    headline. The focus is still there."""
    expect(party["status"]).to_have_text(f"Done: {headline[0].lower()}{headline[1:]}")
    log = focus_log(party)
    started = [e for e in log if e["testid"] == "status"
               and e["statusText"] in ("Connecting to the other parties", "Running again")]
    assert started, log
    assert 0 <= started[-1]["box"]["top"] and started[-1]["box"]["bottom"] <= started[-1]["height"]
    ended = [e for e in log if e["testid"] == "result-card"]
    assert ended, log
    assert 0 <= ended[-1]["status"]["top"] and ended[-1]["status"]["bottom"] <= ended[-1]["height"]
    assert focused(party) == "result-card"
    for testid in ("status", "result-headline", "run-again"):
        assert in_view(party, testid), f"{testid} is not on the screen"


def test_the_round_comes_into_view_on_a_phone_and_at_a_desk(server, new_page):
    """Two browsers (a phone, a desk) and a native peer: "I'm ready" is far down on the
    phone, yet the round's start and its result appear where the person looks."""
    url = server.create(3, "--program", "average")
    phone = party_at(new_page, url, PHONE, clipboard=True)
    desk = party_at(new_page, url, DESKTOP)
    # Places are free: the invite card is open, on the phone above the input.
    expect(phone["invite-details"]).to_have_js_property("open", True)
    expect(phone["invite-title"]).to_have_text("Invite the others")
    native = start_peer(server.ns, url, "--input", "38250", "--name", "Carol")
    server.wait_joined(url, 3)
    # Every place is taken: it folds to one line, and opens again on a click.
    expect(phone["invite-details"]).to_have_js_property("open", False)
    expect(phone["invite-title"]).to_have_text("Invite link (every place is taken)")
    desk.confirm("61500")
    phone.wait_python()
    phone.enter("52000")
    # The person scrolled down to "I'm ready": the status is far above.
    phone["ready"].evaluate("e => e.scrollIntoView({block: 'start'})")
    assert not in_view(phone, "status")
    phone.confirm()
    shown = "The average salary is 50,583.33."
    for party in (phone, desk):
        party.wait_done()
        assert party.headline() == shown
        assert_round_came_into_view(party, shown)
    shot(phone.page, "result-in-view-phone")
    shot(desk.page, "result-in-view-desktop")
    out, err = native.communicate(timeout=60)
    assert native.returncode == 0, err[-3000:]
    assert out.splitlines()[0] == shown
    # Done: the invite card stays folded.
    expect(phone["invite-details"]).to_have_js_property("open", False)

    # Copy: the result as text, and "Copied." for a moment.
    expect(phone["result-copied"]).to_have_text("")
    phone["result-copy"].click()
    expect(phone["result-copied"]).to_have_text("Copied.")
    assert phone.page.evaluate("navigator.clipboard.readText()") == (
        f"{shown}\nParties: 3\nTotal: 151,750\nAverage: 50,583.33")
    expect(phone["result-copied"]).to_have_text("", timeout=15_000)


def test_run_again_says_who_wants_it_and_keeps_the_history(server, new_page):
    """Three browsers, one of them a phone: when Alice asks to run again, the others' status
    says so; round 1's result stays below round 2's."""
    url = server.create(3, "--program", "average")
    alice = party_at(new_page, url, PHONE)
    bob = party_at(new_page, url, DESKTOP)
    carol = party_at(new_page, url, PHONE)
    alice.wait_python()
    alice["your-name"].fill("Alice")
    alice.confirm("52000")
    bob.confirm("61500")
    carol.confirm("38250")
    first = "The average salary is 50,583.33."
    for party in (alice, bob, carol):
        party.wait_done()
        assert party.headline() == first
    expect(bob["history-box"]).to_be_hidden()

    alice["run-again"].click()
    alice.confirm("70000")
    wish = "Alice wants to run again: press Run again to join"
    for party in (bob, carol):
        expect(party["status"]).to_have_text(wish)
        expect(party["peer-0"]).to_have_attribute("data-state", "again")
    assert in_view(carol, "status")  # the phone: the status is where the result left it
    shot(carol.page, "run-again-wish-phone")
    for party, salary in ((bob, "61500"), (carol, "38250")):
        party["run-again"].click()
        party.confirm(salary)
    second = "The average salary is 56,583.33."
    for party in (alice, bob, carol):
        expect(party["roster-summary"]).to_have_text("Round 2.", timeout=120_000)
        party.wait_done()
        assert party.headline() == second
        expect(party["history"].locator("li")).to_have_count(1)
        expect(party["history-1"]).to_have_text(f"Round 1: {first}")
        expect(party["history-box"]).to_be_visible()
    assert_round_came_into_view(alice, second)
    assert_round_came_into_view(carol, second)
    shot(alice.page, "run-again-history-phone")


def test_a_party_that_leaves_mid_computation_leaves_a_next_step(server, new_page):
    """A long computation with two browsers and a native peer: its progress shows, and when
    a tab closes in the middle, the others' lobby stops promising a result, shows no stale
    connection as ready, and offers the next step, in view."""
    url = server.create(3, "--program-file", str(PROGRAMS / "rounds.py"),
                        "--args", "--rounds=100000")
    phone = party_at(new_page, url, PHONE)
    leaver = party_at(new_page, url, DESKTOP)
    native = start_peer(server.ns, url, "--input", "1", "--trust-program")  # party 2
    server.wait_joined(url, 3)
    phone.confirm(None)
    leaver.confirm(None)
    expect(phone["output"]).to_contain_text("round 10", timeout=120_000)
    # Progress as it goes: a bar and the messages, in units people read.
    expect(phone["round-progress-box"]).to_be_visible()
    expect(phone["activity"]).to_have_text(re.compile(
        r"^Computing: \d+\.\d s, [\d,]+ messages \(\d+(\.\d)?\u00a0(bytes|KiB|MiB|GiB)\) exchanged"
        r"(, [\d,]+ a second now)?\.$"))
    expect(phone["activity"]).to_contain_text(" a second now.")
    shot(phone.page, "computing-phone")
    leaver.page.close()
    expect(phone["status"]).to_have_text("Failed", timeout=30_000)
    expect(phone["error"]).to_be_visible()
    expect(phone["no-result"]).to_have_text(
        "This round stopped before it finished, so there is no result. "
        "What went wrong is said above.")
    assert not shows_placeholder(phone)
    expect(phone["elapsed"]).to_contain_text("Stopped after")
    # The departed party's connection is no more, whatever it last reported.
    expect(phone["pair-0-1"]).not_to_have_attribute("data-state", "ready")
    expect(phone["next-step-link"]).to_have_text("Start a new session")
    expect(phone["next-step-link"]).to_have_attribute("href", "/")
    expect(phone["next-step-help"]).to_have_text(
        "To compute again, start a new session and send its link to everyone.")
    for gone in ("invite", "input-form", "round-progress-box"):
        expect(phone[gone]).to_be_hidden()
    assert focused(phone) == "status"
    assert in_view(phone, "status") and in_view(phone, "next-step")
    shot(phone.page, "failed-phone")
    native.communicate(timeout=60)
    assert native.returncode == 1


def test_a_full_session_and_an_incomplete_link_hide_what_does_not_apply(server, new_page):
    """The pages a link can stop on before taking a place: no parties that are "not here
    yet", no invite, no empty fingerprint; the way on instead. At both sizes."""
    url = server.create(3, "--program", "average")
    fill_session(new_page(), server.url, url, 3)
    for size, label in ((PHONE, "phone"), (DESKTOP, "desktop")):
        late = party_at(new_page, url, size, wait_joined=False)
        expect(late["status"]).to_have_text("Session full")
        for gone in ("invite", "me", "parties-card", "chat", "places"):
            expect(late[gone]).to_be_hidden()
        expect(late["program-card"]).to_be_visible()  # what the session was about
        expect(late["fingerprint-check"]).to_have_text("(from the link)")  # no check to come
        expect(late["next-step-link"]).to_have_text("Start a new session")
        expect(late["next-step-link"]).to_have_attribute("href", "/")
        expect(late["next-step-help"]).to_have_text(
            "This link cannot be used any more: start a new session, or ask the person who "
            "sent it for a new link.")
        assert in_view(late, "next-step")
        shot(late.page, f"session-full-{label}")

        cut = party_at(new_page, url.split("#")[0], size, wait_joined=False)
        expect(cut["status"]).to_have_text("Incomplete link")
        for gone in ("invite", "me", "parties-card", "program-card", "fingerprint"):
            expect(cut[gone]).to_be_hidden()
        expect(cut["next-step-link"]).to_be_visible()
        expect(cut["next-step-link"]).to_have_attribute("href", "/")
        assert in_view(cut, "next-step")
        shot(cut.page, f"incomplete-link-{label}")
        late.page.close()
        cut.page.close()


def test_duplicate_place_names_are_said_at_the_field(server, new_page):
    page = new_page()
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        page.goto(f"{server.url}/")
        page.get_by_test_id("parties-count").fill("3")
        page.get_by_test_id("label-0").fill("Alice")
        page.get_by_test_id("label-1").fill("Bob")
        expect(page.get_by_test_id("label-help-1")).to_be_hidden()
        page.get_by_test_id("label-2").press_sequentially("Alice  ")  # spaces count as none
        help_ = page.get_by_test_id("label-help-2")
        expect(help_).to_have_text(
            'Another place is already called "Alice": each place needs a name of its own.')
        expect(page.get_by_test_id("label-2")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_test_id("label-help-0")).to_be_hidden()
        expect(page.get_by_test_id("create")).to_be_disabled()
        # Said at the field: right under it, not at the bottom of the form.
        field = page.get_by_test_id("label-2").bounding_box()
        said = help_.bounding_box()
        assert 0 <= said["y"] - (field["y"] + field["height"]) < 24, (field, said)
        assert abs(said["x"] - field["x"]) < 2, (field, said)
        if size is PHONE:
            shot(page, "duplicate-place-name-phone")
        page.get_by_test_id("label-2").fill("Carol")
        expect(help_).to_be_hidden()
        expect(page.get_by_test_id("create")).to_be_enabled()
