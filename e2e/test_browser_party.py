"""Browser parties on the join page, with each other and with native peers.

Chromium and every native peer run in the module's loopback-only network namespace
(see conftest.py). Pids follow join order, so each party waits until the previous one
has its pid before it joins. Native peers run the programs these tests upload with
--trust-program.
"""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import expect

from testbed.browser import BrowserParty, fill_session, open_parties
from testbed.netns import native_output, start_peer

PROGRAMS = Path(__file__).parent / "programs"


def run_browsers(parties: list[BrowserParty], inputs: list[str]) -> list[str]:
    for pid, (party, value) in enumerate(zip(parties, inputs, strict=True)):
        assert party.confirm(value) == pid
    return [party.wait_done().strip() for party in parties]


def test_three_browsers_sum(server, new_page):
    url = server.create(3, "--program", "sum")
    parties = open_parties(new_page, url, 3)
    outputs = run_browsers(parties, ["5", "1000,-3", "7"])
    assert outputs == [f"sum = {5 + 1000 - 3 + 7}"] * 3
    for party in parties:
        for pid in range(3):
            expect(party[f"peer-{pid}"]).to_have_attribute("data-state", "done")


def test_three_browsers_sort(server, new_page):
    url = server.create(3, "--program", "sort")
    lists = [[30, -1, 4], [2], [99, 0, 17, 5]]
    parties = open_parties(new_page, url, 3)
    outputs = run_browsers(parties, [",".join(map(str, values)) for values in lists])
    expected = ",".join(map(str, sorted(v for values in lists for v in values)))
    assert outputs == [f"sort = {expected}"] * 3


def test_two_browsers_and_a_native_peer(server, new_page):
    url = server.create(3, "--program", "max")
    first = BrowserParty(new_page(), url)
    assert first.confirm("-7,3") == 0
    native = start_peer(server.ns, url, "--input", "5")  # party 1: answers 0, offers to 2
    server.wait_joined(url, 2)
    last = BrowserParty(new_page(), url)
    assert last.confirm("4") == 2
    assert [first.wait_done().strip(), last.wait_done().strip()] == ["max = 5"] * 2
    assert native_output(native) == "max = 5"


def test_a_script_that_starts_mpyc_twice_in_browsers_and_a_native_peer(server, new_page):
    """Two ``async with mpc:`` blocks (as several of MPyC's demos have), in a session of two
    browsers and a native peer: the channels stay open from one block to the next."""
    url = server.create(3, "--program-file", str(PROGRAMS / "two_blocks.py"))
    first = BrowserParty(new_page(), url)
    assert first.confirm("2") == 0
    native = start_peer(server.ns, url, "--input", "3", "--trust-program")
    server.wait_joined(url, 2)
    last = BrowserParty(new_page(), url)
    assert last.confirm("4") == 2
    expected = "sum = 9\nproduct = 24"
    assert [first.wait_done().strip(), last.wait_done().strip()] == [expected] * 2
    assert native_output(native) == expected


def test_bulk_traffic_through_the_pages_inbox_in_both_directions(server, new_page):
    """Megabytes each way between a browser and two native peers (inner product of vectors
    of 60,000: every party shares 120,000 inputs with each other party at once), more than
    the channels' high-water mark: Python waits for the page to report its channels drained,
    and the right answer comes out."""
    workload = Path(__file__).resolve().parent.parent / "bench" / "workload.py"
    url = server.create(3, "--program-file", str(workload), "--no-qr", "--args",
                        "--workload", "inner", "--size", "60000")
    browser = BrowserParty(new_page(), url)
    assert browser.confirm() == 0  # party 0 checks the result against plain Python
    natives = [start_peer(server.ns, url, "--trust-program") for _ in range(2)]
    line = next(line for line in browser.wait_done().splitlines() if line.startswith("{"))
    result = json.loads(line)
    assert result["workload"] == "inner" and result["ok"] is True, result
    for native in natives:
        native_output(native)  # exits 0


def test_a_busy_browser_party_is_waited_for(server, new_page):
    """The browser's Python computes for twice the silence limit without a turn for its
    event loop (MPyC does that when it shares a big input); the page keeps its links alive,
    and the native peers wait for its share instead of calling it gone."""
    from mpyc_webrtc.mesh import SILENCE_LIMIT

    busy = Path(__file__).resolve().parent.parent / "tests" / "programs" / "busy.py"
    url = server.create(3, "--program-file", str(busy), "--args",
                        f"--busy={2 * SILENCE_LIMIT}")
    first = start_peer(server.ns, url, "--trust-program")
    server.wait_joined(url, 1)
    browser = BrowserParty(new_page(), url)
    assert browser.confirm() == 1  # party 2: the busy one
    last = start_peer(server.ns, url, "--trust-program")
    expected = f"total = {1 + 2 + 3}"
    assert browser.wait_done().strip() == expected
    assert [native_output(first), native_output(last)] == [expected] * 2


def test_browser_and_two_native_peers_run_an_uploaded_mpc_run_script(server, new_page):
    url = server.create(3, "--program-file", str(PROGRAMS / "above_average.py"))
    first = start_peer(server.ns, url, "--input", "12", "--trust-program")
    server.wait_joined(url, 1)
    browser = BrowserParty(new_page(), url)
    assert browser.confirm("30") == 1  # between the natives: answers party 0, offers to 2
    last = start_peer(server.ns, url, "--input", "3", "--trust-program")
    values = [12, 30, 3]
    total = sum(values)
    above = sum(len(values) * v > total for v in values)
    expected = f"total = {total}\nmax = {max(values)}\nabove average = {above}"
    assert browser.wait_done().strip() == expected
    assert native_output(first) == expected
    assert native_output(last) == expected


def test_uploaded_script_with_top_level_await(server, new_page):
    """Browser (party 0) and native peers (parties 1 and 2) all run a top-level-await
    script. (Three parties, so that nobody's bid is the other's to see.)"""
    url = server.create(3, "--program-file", str(PROGRAMS / "second_price_async.py"))
    browser = BrowserParty(new_page(), url)
    assert browser.confirm("40") == 0
    natives = [start_peer(server.ns, url, "--input", "75", "--trust-program")]
    server.wait_joined(url, 2)  # the highest bid is party 1's
    natives.append(start_peer(server.ns, url, "--input", "10", "--trust-program"))
    expected = "winner = party 1\nprice = 40"
    assert browser.wait_done().strip() == expected
    assert [native_output(native) for native in natives] == [expected] * 2


def test_joining_a_full_session_shows_why(server, new_page):
    url = server.create(3, "--program", "sum")
    fill_session(new_page(), server.url, url, 3)
    late = BrowserParty(new_page(), url, wait_joined=False)  # opened after it filled up
    expect(late["status"]).to_have_text("Session full")
    expect(late["error"]).to_have_text(
        "This session already has all 3 parties, so nobody else can join it. "
        "Ask the person who created it for a new link.")
    expect(late["me"]).to_be_hidden()


def test_unknown_session(server, new_page):
    fragment = f"#k={'A' * 43}&p={'0' * 64}"  # a well-formed link to a session that is not
    party = BrowserParty(new_page(), f"{server.url}/join/no-such-session{fragment}",
                         wait_joined=False)
    expect(party["status"]).to_have_text("No such session")
    expect(party["error"]).to_contain_text("There is no session 'no-such-session'")
    expect(party["me"]).to_be_hidden()
