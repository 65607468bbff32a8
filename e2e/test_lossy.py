"""Lossy links that also reorder: MPC results stay right, and a party that vanishes is still
named within 10 s.

Loss alone never reorders packets, and a transport's loss recovery (SCTP's fast retransmit
in aiortc, our own message recovery, Chromium's dcSCTP) has to tell a late packet from a
lost one: so every access link here drops 5% per direction and holds back another 10% for
10 ms (``Internet(reorder=...)``, the userspace wire of ``e2e.netsim``), with a 10 ms
round trip between parties. Each party's path to another crosses two such links.

The workload is ``e2e/programs/rounds.py`` (many small rounds, each waiting for the
previous one), the worst case for loss recovery: one message in flight, so a lost packet
waits for a retransmission timer rather than for duplicate acknowledgements. The sizes keep
each scenario well under a minute even while aiortc's SCTP waits a full second (RTO.min)
per lost packet; with faster recovery they only get faster.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from e2e import test_internet as scenarios
from e2e.test_internet import ERROR, ROUNDS, Session, all_succeed, expected_total, report

# The simulated-internet scenarios' fixtures, shared: a torn-down-after Internet factory
# and Chromium started inside a party's namespace.
internet = scenarios.internet
chromium_in = scenarios.chromium_in

pytestmark = [pytest.mark.netns, pytest.mark.slow]

#: Every access link, each direction: 2.5 ms one way (10 ms RTT party to party), 5% loss,
#: and 10% of packets held back 10 ms so that later ones overtake them.
LOSSY = {"delay_ms": 2.5, "loss": 0.05, "reorder": 0.1, "reorder_ms": 10.0}
#: Rounds of rounds.py in the correctness scenarios: each round is one secure
#: multiplication's worth of messages between all three parties.
ROUNDS_LOSSY = 12
#: ICE, DTLS and SCTP handshakes lose packets too and retry after 0.5-1 s (doubling):
#: more than the peer's default 20 s to connect on a busy machine.
CONNECT = ("--connect-timeout", "60")
#: How soon the others must name a party that vanished (kill or cut).
NAMED_WITHIN = 10.0


def lossy_net(internet, nats: list[str]):
    return internet(nats, seed=15, **LOSSY)


@pytest.mark.parametrize("with_browser", [False, True], ids=["native", "chromium"])
def test_mpc_under_loss_and_reordering_is_correct(internet, chromium_in, with_browser):
    """Three parties, one of them Chromium (in the second case), across a cone NAT, a
    symmetric one (relayed through TURN) and a public address: the total equals the
    plain computation."""
    net = lossy_net(internet, ["cone", "symmetric", "public"])
    session = Session(net)
    started = time.monotonic()
    if not with_browser:
        inputs = [3, 4, 5]
        peers = session.run_rounds(inputs, ROUNDS_LOSSY, join_args=CONNECT)
        all_succeed(peers, timeout=180)
        for peer in peers:
            assert f"total: {expected_total(inputs, ROUNDS_LOSSY)}\n" in peer.out, peer.text()
        mesh = max(p.mesh_seconds() for p in peers)
    else:
        from testbed.browser import BrowserParty

        url = session.create(3, "--program-file", ROUNDS, "--args", f"--rounds={ROUNDS_LOSSY}")
        natives = [session.join(url, i, "--input", x, "--trust-program", *CONNECT)
                   for i, x in ((1, "20"), (2, "10"))]
        page = chromium_in(net.parties[0].ns, net.server_url)
        browser = BrowserParty(page, url)
        browser.confirm("7")
        output = browser.wait_done()
        want = f"total: {expected_total([7, 20, 10], ROUNDS_LOSSY)}"
        assert want in output, browser.describe(f"printed no {want!r}")
        for native in natives:
            assert native.finish(timeout=180) == 0, native.text()
            assert f"{want}\n" in native.out, native.text()
        mesh = max(p.mesh_seconds() for p in natives)
    took = time.monotonic() - started
    report(f"lossy 5% reorder 10% {'chromium' if with_browser else 'native'}",
           seconds=round(took, 1), mesh_seconds=mesh, rounds=ROUNDS_LOSSY)


@pytest.mark.parametrize("how", ["killed", "cut"])
def test_vanished_party_is_named_within_10_s_under_loss(internet, how):
    """A party whose process is killed, or whose access link goes dead (``Internet.cut``),
    while every link is lossy: the others stop with its name within 10 s. Loss must not
    hide a real departure, nor make the detector wait for retransmissions."""
    net = lossy_net(internet, ["cone", "cone", "public"])
    session = Session(net)
    peers = session.run_rounds([1, 1, 1], 100_000, join_args=CONNECT)
    for peer in peers:
        peer.wait_for(r"^round 10$", timeout=120)
    victim = peers[2].party()
    if how == "killed":
        peers[2].proc.send_signal(signal.SIGKILL)
        # As people count parties (from 1); a departure is said in the shared sentence.
        said = (rf"(Party {victim + 1} stopped responding|The computation cannot finish: "
                rf"party {victim + 1} left the session)")
    else:
        net.cut(2)
        said = (rf"Party {victim + 1} stopped responding: nothing arrived from it for 7 s\. It may "
                r"have lost its network, closed its page or crashed; the computation cannot go "
                r"on without it\.")
    gone = time.monotonic()
    stops, said_by = [], []
    for peer in peers[:2]:
        assert peer.finish(timeout=60) == 1, peer.text()
        stops.append(time.monotonic() - gone)
        said_by.append(peer.last_error())
    # Both finished within the bound; the later one's time is an upper bound for both
    # (they are waited for one after the other).
    assert max(stops) < NAMED_WITHIN, f"stopped after {max(stops):.1f} s: {said_by}"
    report(f"lossy party {how}", stop_seconds=round(max(stops), 2))
    # The party that noticed first tells the other why it stops (an "abort" message on
    # each link), and waits for it to be acknowledged before it closes its links: so both
    # name the party that vanished, not the one that stopped first.
    named = [re.fullmatch(rf"{ERROR}{said}.*", text) is not None for text in said_by]
    assert all(named), "\n\n".join(p.text() for p in peers[:2])
