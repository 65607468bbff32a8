"""What people read, as they read it (issue 18): names instead of party numbers, numbers
counted from 1, whole numbers typed with grouped digits, and why their input stays secret.

One browser and two native peers per session, so both kinds of party are checked with the
same words.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from mpyc_webrtc.sentences import say
from testbed.browser import BrowserParty
from testbed.netns import start_peer

NAMES = ["Alice", "Bob", "Carol"]
PHONE = {"width": 390, "height": 844}
NARROW = "\u202f"  # the narrow no-break space "Read as 52 000." groups with


def with_role(url: str, pid: int) -> str:
    """The join link asking for place ``pid`` (as the create page sends its creator)."""
    link, _, fragment = url.partition("#")
    return f"{link}?role={pid}#{fragment}"


def finished(peers) -> list[str]:
    """The native peers' results (stdout lines), after they exited well."""
    outs = []
    for peer in peers:
        out, err = peer.communicate(timeout=120)
        assert peer.returncode == 0, err[-3000:]
        outs.append(out.splitlines())
    return outs


def test_secret_santa_names_whom_each_gives_to(server, new_page):
    """With places Alice, Bob and Carol, everyone reads a name, never "party 2"; the browser
    is Alice, the native peers Bob and Carol."""
    url = server.create(3, "--program", "santa", "--labels", *NAMES)
    alice = BrowserParty(new_page(), with_role(url, 0))
    assert alice.pid == 0
    expect(alice["pid"]).to_have_text("Alice (party 1)")  # people count from 1
    natives = [start_peer(server.ns, url, "--place", name) for name in NAMES[1:]]
    server.wait_joined(url, 3)
    alice.confirm(None)
    alice.wait_done()
    headline = alice.headline()
    match = re.fullmatch(r"You give a present to (Bob|Carol)\.", headline)
    assert match, headline
    assert alice.rows() == {"You are": "Alice", "Parties": "3"}
    receivers = {"Alice": match[1]}
    for name, lines in zip(NAMES[1:], finished(natives), strict=True):
        assert lines[1:] == [f"You are: {name}", "Parties: 3"], lines
        given = re.fullmatch(r"You give a present to (Alice|Bob|Carol)\.", lines[0])
        assert given and given[1] != name, lines
        receivers[name] = given[1]
    assert sorted(receivers.values()) == NAMES  # everyone gets one present
    expect(alice["peer-1"]).to_contain_text("Bob (party 2)")
    expect(alice["peer-2"]).to_contain_text("Carol (party 3)")


def test_the_richest_is_named_by_the_name_its_person_gave(server, new_page):
    """No labels: the names people typed ("Your name") name the richest."""
    url = server.create(3, "--program", "millionaires")
    alice = BrowserParty(new_page(), url)
    assert alice.pid == 0
    natives = [start_peer(server.ns, url, "--input", wealth, "--name", name)
               for wealth, name in (("7,000", "Bob"), ("5 000", "Carol"))]
    server.wait_joined(url, 3)
    alice["your-name"].fill("Alice")
    alice.confirm("6.000")
    alice.wait_done()
    assert alice.headline() == "Bob has the most: 7,000."
    assert alice.rows()["Richest"] == "Bob"
    for lines in finished(natives):
        assert lines[:3] == ["Bob has the most: 7,000.", "Parties: 3", "Richest: Bob"], lines


def test_whole_numbers_as_people_type_them(server, new_page):
    """52,000, 52.000 and 52 000 are read as 52000 and shown back so nobody misreads them;
    what is refused says exactly what is accepted."""
    url = server.create(3, "--program", "average")
    party = BrowserParty(new_page(), url).wait_python()
    party.enter("52.5")
    expect(party["input-help"]).to_have_text(
        "Your yearly salary must be a whole number from 0 to 1,000,000,000, in digits that "
        "may be grouped in threes, like 52000, 52,000, 52 000 or 52.000 (got '52.5').")
    expect(party["input-help"]).to_have_class(re.compile(r"\bproblem\b"))
    party.enter("2,000,000,000")
    expect(party["input-help"]).to_have_text(
        "Your yearly salary must be a whole number from 0 to 1,000,000,000 "
        "(got 2,000,000,000).")
    party.enter("52,000")
    expect(party["input-help"]).to_have_text(f"Read as 52{NARROW}000.")
    expect(party["input-help"]).not_to_have_class(re.compile(r"\bproblem\b"))
    natives = [start_peer(server.ns, url, "--input", text) for text in ("48.000", "56 900")]
    server.wait_joined(url, 3)
    party.confirm("52,000")
    party.wait_done()
    assert party.headline() == "The average salary is 52,300.00."
    assert party.rows()["Total"] == "156,900"
    for lines in finished(natives):
        assert lines[0] == "The average salary is 52,300.00.", lines


def explained(page: Page) -> None:
    """The explainer is there, closed, says what it should when opened, and fits a phone."""
    box = page.get_by_test_id("explainer")
    summary = box.locator("summary")
    expect(summary).to_have_text("How does this keep my input secret?")
    paragraphs = box.locator("p")
    expect(paragraphs.first).to_be_hidden()  # closed until asked
    page.set_viewport_size(PHONE)
    summary.click()
    expect(paragraphs).to_have_text([say("explain.mpc"), say("explain.server"),
                                     say("explain.fingerprint"), say("explain.keys")])
    expect(paragraphs.first).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the explainer makes the page {overflow}px too wide on a phone"


def test_the_lobby_and_the_create_page_explain_why_an_input_stays_secret(server, new_page):
    create = new_page()
    create.goto(server.url + "/")
    explained(create)
    url = server.create(3, "--program", "sum")
    party = BrowserParty(new_page(), url)
    explained(party.page)
    # In words a newcomer reads: what the server sees, and what the fingerprint is for.
    assert "never sees your input" in say("explain.server")
    assert "the same fingerprint means the same program" in say("explain.fingerprint")
