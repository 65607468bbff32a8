"""The whole ad hoc session, as people use it: the create page, the lobby, the result.

Set MPYC_WEBRTC_SCREENSHOTS=DIR to keep screenshots of every step at a desktop
(1280x800) and a phone (390x844) size; the layout checks run either way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from mpyc_webrtc import launch
from mpyc_webrtc.sentences import say
from testbed.browser import BrowserParty, by_id, open_parties
from testbed.netns import start_peer

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SHOTS = os.environ.get("MPYC_WEBRTC_SCREENSHOTS")
PROGRAMS = Path(__file__).parent / "programs"
#: An uploaded program for any number of parties: the total of their inputs.
TOTAL = Path(__file__).parent.parent / "tests" / "programs" / "total.py"


def look(page: Page, name: str) -> None:
    """Check the page fits both sizes without sideways scrolling; keep screenshots."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is {overflow}px too wide at {label} size"
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=f"{SHOTS}/{name}-{label}.png", full_page=True)
    page.set_viewport_size(DESKTOP)


def create(page: Page, server_url: str, program: str, parties: int,
           labels: list[str] = (), role: int = 0) -> str:
    """Fill in the create page and press Create; returns the invite link."""
    page.goto(f"{server_url}/")
    page.get_by_test_id(f"program-choice-{program}").check()
    page.get_by_test_id("parties-count").fill(str(parties))
    for pid, label in enumerate(labels):
        page.get_by_test_id(f"label-{pid}").fill(label)
    page.get_by_test_id("my-role").select_option(str(role))
    page.get_by_test_id("create").click()
    link = page.get_by_test_id("invite-link")
    # The secret travels only in the fragment, and the invite link carries it; once read,
    # it leaves the address bar (this tab keeps it for a reload).
    expect(link).to_have_value(re.compile(
        r"^http://127\.0\.0\.1:\d+/join/[A-Za-z0-9_-]+#k=[\w-]{43}&p=[0-9a-f]{64}$"))
    expect(page).to_have_url(re.compile(r"/join/[A-Za-z0-9_-]+\?role=\d+$"))
    return link.input_value()


def paste(editor, text: str) -> None:
    """Replace the code editor's content as a person pasting code does."""
    editor.click()
    editor.press("Control+A")
    editor.evaluate("""(element, text) => {
        const data = new DataTransfer();
        data.setData('text/plain', text);
        element.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data,
                                                           bubbles: true, cancelable: true}));
    }""", text)


def test_average_salary_from_the_create_page(server, new_page):
    creator_page = new_page()
    creator_page.set_viewport_size(DESKTOP)
    creator_page.goto(f"{server.url}/")
    expect(by_id(creator_page, "program-choice-average")).to_be_checked()  # the default
    expect(by_id(creator_page, "create")).to_be_enabled()
    look(creator_page, "create")
    invite = create(creator_page, server.url, "average", 3)
    creator = BrowserParty(creator_page, creator_page.url)
    assert creator.pid == 0
    expect(creator["status"]).to_have_text("Waiting for 2 more parties to join")
    # Drawn in the page (the server must not see the secret it encodes).
    expect(creator["invite-qr"]).to_have_attribute("src", re.compile(r"^data:image/"))
    creator_page.wait_for_function(
        "document.querySelector('[data-testid=invite-qr]').naturalWidth > 100")
    expect(creator["fingerprint-check"]).to_contain_text("matches the link",
                                                         timeout=90_000)
    # How private it is, before anyone commits an input: 3 parties, MPyC's threshold 1.
    expect(creator["privacy"]).to_have_text(launch.privacy_sentence(launch.privacy(3, [])))
    expect(creator["privacy"]).to_have_text(
        "Private unless 2 parties collude: nobody sees your input, not even the server, "
        "unless 2 of the 3 parties work together.")
    expect(creator["no-privacy-box"]).to_be_hidden()
    look(creator_page, "lobby-waiting")

    others = open_parties(new_page, invite, 2)
    assert [p.pid for p in others] == [1, 2]
    salaries = ["52000", "61500", "38250"]
    creator.confirm(salaries[0])
    expect(creator["status"]).to_have_text('Waiting for 2 parties to press "I\'m ready"')
    expect(others[0]["peer-0"]).to_have_attribute("data-state", "ready")
    others[0].confirm(salaries[1])
    others[1].wait_python()
    others[1].enter(salaries[2])
    look(others[1].page, "lobby-ready")
    others[1].confirm()

    values = [int(s) for s in salaries]
    average = sum(values) / len(values)
    for party in [creator, *others]:
        party.wait_done()
        assert party.headline() == f"The average salary is {average:,.2f}."
        assert party.rows() == {"Parties": "3", "Total": f"{sum(values):,}",
                                "Average": f"{average:,.2f}"}
        for a, b in ((0, 1), (0, 2), (1, 2)):
            expect(party[f"pair-{a}-{b}"]).to_have_attribute("data-state", "ready")
            expect(party[f"pair-{a}-{b}"]).to_have_attribute("data-path", "direct")
        expect(party["elapsed"]).to_contain_text(
            re.compile(r"Finished in \d+\.\d s, [\d,]+ messages"))
        expect(party["run-again"]).to_be_visible()
    look(creator_page, "result")


def test_bad_input_shows_the_programs_message_and_sends_nothing(server, new_page):
    url = server.create(3, "--program", "average")
    party = BrowserParty(new_page(), url).wait_python()
    party.enter("lots")
    expect(party["input-help"]).to_have_text(
        "Your yearly salary must be a whole number from 0 to 1,000,000,000, in digits that "
        "may be grouped in threes, like 52000, 52,000, 52 000 or 52.000 (got 'lots').")
    party["ready"].click()
    party.enter("-5")
    expect(party["input-help"]).to_have_text(
        "Your yearly salary must be a whole number from 0 to 1,000,000,000 (got -5).")
    party["ready"].click()
    expect(party["input-help"]).to_have_class(re.compile(r"\bproblem\b"))
    expect(party["peer-0"]).to_have_attribute("data-state", "joined")
    info = server.info(url)
    assert info["members"] == [{"pid": 0, "name": "party 0", "label": "", "ready": False}]
    party.enter("52000")
    party["ready"].click()
    expect(party["peer-0"]).to_have_attribute("data-state", "ready")
    assert server.info(url)["members"][0]["ready"] is True


def test_named_places_a_vote_and_a_native_peer(server, new_page):
    creator_page = new_page()
    labels = ["hospital A", "hospital B", "hospital C"]
    invite = create(creator_page, server.url, "vote", 3, labels, role=1)
    creator = BrowserParty(creator_page, creator_page.url)
    assert creator.pid == 1
    expect(creator["pid"]).to_have_text("hospital B (party 2)")

    second = BrowserParty(new_page(), invite, wait_joined=False)
    expect(second["status"]).to_have_text("Choose your place")
    expect(second["place-1"]).to_be_disabled()  # the creator's
    look(second.page, "choose-place")
    second["place-0"].click()
    assert second.wait_joined() == 0

    native = start_peer(server.ns, invite, "--input", "yes", "--name", "Carol")
    creator.confirm("yes")
    second.confirm("yes")
    for party in (creator, second):
        party.wait_done()
        assert party.headline() == "Everyone voted yes."
        expect(party["peer-2"]).to_contain_text("hospital C (party 3) · Carol")
    out, err = native.communicate(timeout=120)
    assert native.returncode == 0, err[-3000:]
    assert out.splitlines()[0] == "Everyone voted yes."


def test_run_again_over_the_same_connections(server, new_page):
    """Two browsers (run again is for browsers), so an uploaded program in a session
    created and joined with every opt-in: the built-in programs need three parties."""
    url = server.create(2, "--program-file", str(TOTAL), "--no-privacy")
    parties = open_parties(new_page, url, 2)
    parties[0].confirm("5", accept_no_privacy=True)
    parties[1].confirm("3", accept_no_privacy=True)
    for party in parties:
        assert party.wait_done().strip() == "total = 8"
    parties[0]["run-again"].click()
    expect(parties[0]["ready"]).to_have_text("I'm ready to run again")
    parties[0].confirm("10")
    expect(parties[1]["peer-0"]).to_have_attribute("data-state", "again")
    parties[1]["run-again"].click()
    parties[1].confirm("40")
    for party in parties:
        expect(party["status"]).to_have_text("Done", timeout=120_000)
        expect(party["output"]).to_have_text("total = 50\n")
        expect(party["roster-summary"]).to_have_text("Round 2.")
        expect(party["pair-0-1"]).to_have_attribute("data-state", "ready")
    log = parties[0]["log"].text_content()
    assert log.count("connection to party 1: connected") == 1  # no new connection


def test_own_program_written_on_the_create_page(server, new_page):
    page = new_page()
    page.goto(f"{server.url}/")
    page.get_by_test_id("program-choice-own").check()
    editor = page.get_by_test_id("source-editor")
    expect(editor).to_contain_text("from mpyc.runtime import mpc")
    page.get_by_test_id("parties-count").fill("2")
    # Two parties keep nothing private: the creator says that is what they want.
    page.get_by_text("Advanced: program arguments").click()
    page.get_by_test_id("no-privacy").check()
    paste(editor, "from mpyc.runtime import mpc\nprint('oops'\n")
    page.get_by_test_id("create").click()
    expect(page.get_by_test_id("create-error")).to_have_text(
        re.compile(r"^The program has a syntax error on line 2: .+\.$"))
    look(page, "create-own-program")
    paste(editor,
        "import sys\nfrom mpyc.runtime import mpc\n\n"
        "value = int(sys.argv[-1].split('=')[1])\n"
        "mpc.run(mpc.start())\n"
        "total = mpc.run(mpc.output(mpc.sum(mpc.input(mpc.SecInt(32)(value)))))\n"
        "print('total', total)\n"
        "mpc.run(mpc.shutdown())\n")
    page.get_by_test_id("create").click()
    invite = page.get_by_test_id("invite-link")
    expect(invite).to_have_value(re.compile(r"/join/"))
    first = BrowserParty(page, page.url)
    second = BrowserParty(new_page(), invite.input_value())
    expect(second["program-source"]).to_contain_text("print('total', total)")
    expect(second["party-input"]).to_have_attribute("placeholder", "e.g. 42 or 3,1,2")
    first.confirm("20", accept_no_privacy=True)
    second.confirm("22", accept_no_privacy=True)
    expect(second["privacy"]).to_have_text(say("privacy.none"))
    assert [first.wait_done().strip(), second.wait_done().strip()] == ["total 42"] * 2


def test_create_page_says_why_a_session_without_privacy_is_refused(server, new_page):
    """The server's privacy rule, as the person on the create page meets it: a built-in
    program for 2 parties is refused, and so is an own program for 2 until the creator ticks
    the box that allows less privacy."""
    page = new_page()
    page.goto(f"{server.url}/")
    page.get_by_test_id("program-choice-sum").check()
    page.get_by_test_id("parties-count").fill("2")
    page.get_by_test_id("create").click()
    expect(page.get_by_test_id("create-error")).to_have_text(launch.BUILTIN_NEEDS_PARTIES)
    page.get_by_test_id("program-choice-own").check()
    page.get_by_test_id("create").click()
    error = page.get_by_test_id("create-error")
    expect(error).to_contain_text(launch.privacy_sentence(launch.privacy(2, [])))
    expect(error).not_to_have_text(launch.BUILTIN_NEEDS_PARTIES)
    expect(page.get_by_test_id("invite-link")).to_be_hidden()
    page.get_by_text("Advanced: program arguments").click()
    page.get_by_test_id("no-privacy").check()
    page.get_by_test_id("create").click()
    expect(page.get_by_test_id("invite-link")).to_have_value(re.compile(r"/join/"))


@pytest.mark.parametrize("count", ["1", "33", "", "2.5"])
def test_create_page_refuses_bad_party_counts(server, new_page, count):
    page = new_page()
    page.goto(f"{server.url}/")
    expect(page.get_by_test_id("create")).to_be_enabled()
    page.get_by_test_id("parties-count").fill(count)
    expect(page.get_by_test_id("parties-help")).to_have_text(
        "The number of parties must be a whole number from 2 to 32.")
    expect(page.get_by_test_id("create")).to_be_disabled()


def test_create_page_offers_relay_only_only_with_a_relay(server, new_page):
    """This server has no TURN relay: hiding addresses cannot be offered (e2e/test_internet.py
    runs relay-only sessions on a server that has one)."""
    page = new_page()
    page.goto(f"{server.url}/")
    expect(page.get_by_test_id("relay-only-help")).to_have_text(
        "This server has no relay, so your computers connect directly and can see each "
        "other's network addresses. Your inputs stay secret either way.")
    expect(page.get_by_test_id("relay-only")).to_be_disabled()


def test_the_secret_leaves_the_address_bar_and_a_reload_keeps_the_place(server, new_page):
    url = server.create(3, "--program", "sum")
    secret = url.split("#k=", 1)[1].split("&", 1)[0]
    page = new_page()
    party = BrowserParty(page, url)
    assert party.pid == 0
    # Read once, then gone from the address bar and from every history entry.
    expect(page).to_have_url(f"{url.split('#')[0]}?role=0")
    history = page.context.new_cdp_session(page).send("Page.getNavigationHistory")
    urls = [entry["url"] for entry in history["entries"]]
    assert urls[history["currentIndex"]] == page.url
    assert not [u for u in urls if "#" in u or secret in u], urls
    expect(party["invite-link"]).to_have_value(url)  # the page still has the whole link
    # Another tab, even of the same browser, has no secret: it stays with this tab.
    other = page.context.new_page()
    other.goto(page.url)
    expect(other.get_by_test_id("status")).to_have_text("Incomplete link")
    other.close()
    # A reload in the same tab joins the same place again, with the same link.
    page.reload()
    assert party.wait_joined() == 0
    expect(page).to_have_url(f"{url.split('#')[0]}?role=0")
    expect(party["invite-link"]).to_have_value(url)
    expect(party["fingerprint-check"]).to_contain_text("matches the link", timeout=90_000)
    expect(party["roster-summary"]).to_contain_text("1 of 3 here")
    assert [m["pid"] for m in server.info(url)["members"]] == [0]


def test_a_weak_session_says_so_and_ready_waits_for_the_persons_word(server, new_page):
    """Two parties (an uploaded program, created with --no-privacy): MPyC's threshold is 0,
    so the page says there is no privacy and "I'm ready" waits for the accept box."""
    url = server.create(2, "--program-file", str(PROGRAMS / "second_price_async.py"),
                        "--no-privacy")
    party = BrowserParty(new_page(), url).wait_python()
    party.enter("40")
    expect(party["privacy"]).to_have_text(say("privacy.none"), timeout=30_000)
    expect(party["privacy"]).to_have_text(
        "No privacy: with these settings MPyC keeps no input secret from the other parties "
        "(its threshold is 0, as with 2 parties or -T0). Every other party can learn what "
        "you enter.")
    expect(party["privacy"]).to_have_class(re.compile(r"\bproblem\b"))
    expect(party["no-privacy-box"]).to_be_visible()
    expect(party["ready"]).to_be_disabled()
    party["accept-no-privacy"].check()
    expect(party["ready"]).to_be_enabled()
    party["accept-no-privacy"].uncheck()
    expect(party["ready"]).to_be_disabled()
    assert server.info(url)["members"][0]["ready"] is False
    party.confirm("40", accept_no_privacy=True)
    expect(party["peer-0"]).to_have_attribute("data-state", "ready")
    assert server.info(url)["members"][0]["ready"] is True
