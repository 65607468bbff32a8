"""Parties on different networks: NAT traversal, TURN fallback and failing parties, on the
simulated internet of ``e2e.netsim`` (network namespaces, NAT routers, coturn).

Every scenario runs real ``mpyc-webrtc-peer`` processes (and, in one, Chromium) in the
LAN namespaces behind the home routers, with the signaling server and coturn in the
"public internet" namespace, and asserts the MPC result and how each pair connected:
"direct" or "relayed", as the peers themselves report it.

The peers run ``e2e/programs/rounds.py``, which these tests upload, with
``--trust-program``. Most NAT scenarios are about the path between two parties: those
sessions of two parties keep nothing private (MPyC's threshold is 0), so they are created
with ``--no-privacy`` and joined with ``--accept-no-privacy``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from e2e.netsim import Internet
from mpyc_webrtc import launch

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PEER = str(BIN / "mpyc-webrtc-peer")
SERVER = str(BIN / "mpyc-webrtc-server")
ROUNDS = str(Path(__file__).parent / "programs" / "rounds.py")
TURN_SECRET = "netsim-test-secret"
#: Where scenario timings go, if set (JSON lines): for the closing notes and docs.
REPORT = os.environ.get("MPYC_WEBRTC_NETSIM_REPORT")
ERROR = "mpyc-webrtc-peer: error: "

pytestmark = pytest.mark.netns


def expected_total(inputs: list[int], rounds: int) -> int:
    """What e2e/programs/rounds.py prints, computed in the clear."""
    return sum(inputs) * rounds * (rounds + 1) // 2


@dataclass
class Peer:
    """A ``mpyc-webrtc-peer join`` process in a LAN namespace, its output read as it comes."""

    proc: subprocess.Popen
    pid: int = -1
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for pipe, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda p=pipe, acc=lines: acc.extend(p), daemon=True).start()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            if exited:
                time.sleep(0.2)  # let the readers catch up
            for line in list(self.out) + list(self.err):
                if (match := re.search(pattern, line)) is not None:
                    return match
            if exited:
                raise AssertionError(f"peer exited ({self.proc.returncode}) without "
                                     f"{pattern!r}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.text()}")
            time.sleep(0.05)

    def finish(self, timeout: float = 120) -> int:
        self.proc.wait(timeout)
        time.sleep(0.1)
        return self.proc.returncode

    def text(self) -> str:
        return "".join(self.out) + "--- stderr ---\n" + "".join(self.err[-80:])

    def last_error(self) -> str:
        lines = [line.strip() for line in self.err if line.strip()]
        return lines[-1] if lines else ""

    def paths(self) -> dict[int, tuple[str, str, str]]:
        """Peer pid -> (path, our candidate type, theirs), from the peer's log."""
        found = {}
        for line in self.err:
            if m := re.search(r"link to party (\d+): (\w+) \(candidates: ours (\w+), "
                              r"theirs (\w+)\)", line):
                found[int(m[1])] = (m[2], m[3], m[4])
        return found

    def party(self) -> int:
        """The pid the server gave this peer (peers join in whatever order they get there)."""
        return int(self.wait_for(r"joined as party (\d+) of", timeout=60)[1])

    def mesh_seconds(self) -> float:
        for line in self.err:
            if m := re.search(r"are open (\d+\.\d+) s after the last party joined", line):
                return float(m[1])
        raise AssertionError(f"no mesh time in the log:\n{self.text()}")


class Session:
    """A signaling server in the public namespace, and the parties of one session."""

    def __init__(self, net: Internet, *server_args: str, turn: bool = True):
        self.net = net
        args = ["--host", net.server_ip, "--port", "8080"]
        if net.coturn:  # without it, the server hands out its own STUN service
            args += ["--stun", net.stun_url]
        if turn and net.coturn:
            args += [arg for url in net.turn_urls for arg in ("--turn", url)]
            args += ["--turn-secret", net.turn_secret]
        self.server = net.popen(net.public, [SERVER, *args, *server_args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.server.stdout.readline()
        if not first.startswith("mpyc-webrtc server on"):
            raise RuntimeError(f"server did not start: {first!r} {self.server.stderr.read()}")
        self.server_log: list[str] = []
        for pipe in (self.server.stdout, self.server.stderr):
            threading.Thread(target=self.server_log.extend, args=(pipe,), daemon=True).start()
        self.peers: list[Peer] = []

    def create(self, parties: int, *program: str) -> str:
        done = subprocess.run(
            self.net.exec_args(self.net.parties[0].ns, [
                PEER, "create", self.net.server_url, "--parties", str(parties), "--no-qr",
                *program]),
            capture_output=True, text=True, timeout=60, cwd=REPO)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def join(self, url: str, party: int, *args: str) -> Peer:
        proc = self.net.popen(self.net.parties[party].ns, [PEER, "join", url, *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO)
        peer = Peer(proc)
        self.peers.append(peer)
        return peer

    def run_rounds(self, inputs: list[int], rounds: int, *create_args: str,
                   party_of: list[int] | None = None,
                   join_args: tuple[str, ...] = ()) -> list[Peer]:
        """rounds.py, uploaded, with one peer per input; every opt-in a session of this
        size needs (two parties: no privacy, on purpose)."""
        args = [f"--rounds={rounds}"]
        weak = not launch.privacy(len(inputs), args)["full"]
        url = self.create(len(inputs), "--program-file", ROUNDS, *create_args,
                          *(["--no-privacy"] if weak else []), "--args", *args)
        consent = ("--trust-program", *(["--accept-no-privacy"] if weak else []))
        return [self.join(url, party_of[i] if party_of else i, "--input", str(x), *consent,
                          *join_args)
                for i, x in enumerate(inputs)]


def all_succeed(peers: list[Peer], timeout: float) -> None:
    """Every peer ends with 0; if not, every party's words are shown (the one that failed
    first need not be the first)."""
    codes = [peer.finish(timeout=timeout) for peer in peers]
    assert codes == [0] * len(peers), "\n=====\n".join(peer.text() for peer in peers)


def report(scenario: str, **numbers: object) -> None:
    if REPORT:
        with open(REPORT, "a") as file:
            file.write(json.dumps({"scenario": scenario, **numbers}) + "\n")


@pytest.fixture
def internet(request):
    """An ``Internet`` factory; everything it built is torn down after the test."""
    built: list[Internet] = []

    def make(nats: list[str], **options) -> Internet:
        net = Internet(nats=nats, turn_secret=TURN_SECRET,
                       name=f"mwi{os.getpid() % 10000}{len(built)}", **options)
        built.append(net)
        net.up()
        return net

    yield make
    for net in built:
        net.down()


# --- NAT traversal: each scenario asserts the result and the path ---------------------------

SCENARIOS = {
    # name: (NAT per party, options, expected path, session options)
    "cone-cone": (["cone", "cone"], {}, "direct", ()),
    "public-symmetric": (["public", "symmetric"], {}, "direct", ()),
    "cone-symmetric": (["cone", "symmetric"], {}, "relayed", ()),
    "symmetric-symmetric": (["symmetric", "symmetric"], {}, "relayed", ()),
    "relay-only": (["cone", "cone"], {}, "relayed", ("--relay-only",)),
    "udp-blocked": (["cone", "cone"], {"block_udp": (1,)}, "relayed", ()),
    "three-mixed": (["public", "cone", "symmetric"], {}, None, ()),
}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenario(internet, scenario):
    nats, options, path, session_options = SCENARIOS[scenario]
    net = internet(nats, **options)
    session = Session(net)
    inputs = [11 * (i + 1) for i in range(len(nats))]
    peers = session.run_rounds(inputs, 5, *session_options)
    codes = [peer.finish() for peer in peers]
    assert codes == [0] * len(peers), "\n".join(p.text() for p in peers)
    for peer in peers:
        assert f"total: {expected_total(inputs, 5)}\n" in peer.out, peer.text()
    nat_of = {peer.party(): nats[i] for i, peer in enumerate(peers)}  # by pid
    for peer in peers:
        i, paths = peer.party(), peer.paths()
        assert sorted(paths) == [j for j in range(len(peers)) if j != i], peer.text()
        for j, (got, ours, theirs) in paths.items():
            want = path or expected_path(nat_of[i], nat_of[j])
            assert got == want, f"party {i}->{j}: {got} ({ours}/{theirs}), want {want}"
            if want == "direct" and "public" not in (nat_of[i], nat_of[j]):
                # Across two NATs only the routers' mapped addresses work: srflx/prflx.
                assert theirs in ("srflx", "prflx"), (ours, theirs)
            if "--relay-only" in session_options:
                # Neither side offered anything but the relay's address.
                assert ours == theirs == "relay", (ours, theirs)
    if options.get("block_udp"):
        blocked = peers[options["block_udp"][0]]
        assert any("reaching the TURN relay over TCP" in line for line in blocked.err), \
            blocked.text()
    report(scenario, nats=nats, mesh_seconds=max(p.mesh_seconds() for p in peers),
           paths=[sorted({v[0] for v in p.paths().values()}) for p in peers])


def expected_path(a: str, b: str) -> str:
    """How two parties behind these NATs connect (with TURN available)."""
    if "public" in (a, b):
        return "direct"  # the public party's own address is reachable from anywhere
    return "relayed" if "symmetric" in (a, b) else "direct"


@pytest.mark.slow
def test_cone_nats_connect_directly_with_only_the_servers_own_stun(internet):
    """An operator who runs only mpyc-webrtc-server on a public host, no coturn: parties
    behind home routers (cone NATs) learn their routers' addresses from the server's own
    STUN service and connect directly. Without any STUN they could not: each would only
    know its private address, which the others cannot reach."""
    net = internet(["cone", "cone", "cone"], coturn=False)
    session = Session(net, turn=False)
    assert not any(rec.role == "coturn" for rec in net._recorded())
    inputs = [5, 6, 7]
    peers = session.run_rounds(inputs, 3)
    for peer in peers:
        assert peer.finish() == 0, peer.text()
        assert f"total: {expected_total(inputs, 3)}\n" in peer.out, peer.text()
    for peer in peers:
        i, paths = peer.party(), peer.paths()
        assert sorted(paths) == [j for j in range(3) if j != i], peer.text()
        for j, (path, ours, theirs) in paths.items():
            assert path == "direct", f"party {i}->{j}: {path} ({ours}/{theirs})"
            assert theirs in ("srflx", "prflx"), (ours, theirs)
    said = "".join(session.server_log)
    assert f"STUN on UDP port 3478, handed to parties as {net.stun_url}" in said, said
    assert net.stun_url == "stun:100.64.0.1:3478"
    report("cone NATs, the server's own STUN, no coturn",
           mesh_seconds=max(p.mesh_seconds() for p in peers))


@pytest.mark.slow
def test_cone_nats_without_any_stun_cannot_connect(internet):
    """The control of the test above: the same cone NATs, the server's STUN turned off."""
    net = internet(["cone", "cone"], coturn=False)
    session = Session(net, "--stun-port", "0", turn=False)
    peers = session.run_rounds([1, 2], 2, join_args=("--connect-timeout", "8"))
    assert [peer.finish(timeout=60) for peer in peers] == [1, 1]
    for peer in peers:
        assert "no direct path between you was found" in peer.last_error(), peer.text()


@pytest.mark.slow
def test_symmetric_nats_without_turn_fail_clearly_in_bounded_time(internet):
    net = internet(["symmetric", "symmetric"])
    session = Session(net, turn=False)
    peers = session.run_rounds([1, 2], 3)
    started = time.monotonic()
    codes = [peer.finish(timeout=60) for peer in peers]
    waited = time.monotonic() - started
    assert codes == [1, 1]
    for peer in peers:
        assert re.fullmatch(
            rf"{ERROR}Could not connect to party {2 - peer.party()} \(ICE \w+, connection "
            r"\w+\) within 20 s: no direct path between you was found\. A firewall or a "
            r"strict \(symmetric\) NAT is in the way; the signaling server's operator can add "
            r"a TURN relay \(mpyc-webrtc-server --turn URL --turn-secret SECRET\), which gets "
            r"through\.", peer.last_error()), peer.text()
        assert peer.out == []
    assert waited < 45  # the 20 s connect timeout, not aiortc's 63 s ICE failure


# --- parties that fail -------------------------------------------------------------------

def start_long_run(net: Internet, parties: int) -> tuple[Session, list[Peer]]:
    session = Session(net)
    peers = session.run_rounds([1] * parties, 100_000)
    for peer in peers:
        peer.wait_for(r"^round 10$", timeout=90)
    return session, peers


@pytest.mark.slow
def test_killed_party_stops_the_others_with_its_name(internet):
    net = internet(["cone", "cone", "symmetric"])
    _, peers = start_long_run(net, 3)
    victim = peers[2].party()
    peers[2].proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    for peer in peers[:2]:
        assert peer.finish(timeout=30) == 1
        took = time.monotonic() - killed
        assert took < 10, f"{took:.1f} s"
        # People count parties from 1: pid 2 is "Party 3".
        assert re.fullmatch(rf"{ERROR}.*[Pp]arty {victim + 1} (left the session|stopped "
                            r"responding).*",
                            peer.last_error()), peer.text()
    report("party killed", stop_seconds=round(time.monotonic() - killed, 2))


@pytest.mark.slow
def test_party_losing_its_network_stops_everyone(internet):
    net = internet(["cone", "cone", "cone"])
    _, peers = start_long_run(net, 3)
    victim = peers[2].party()
    net.cut(2)
    cut = time.monotonic()
    for peer in peers[:2]:
        assert peer.finish(timeout=30) == 1
        took = time.monotonic() - cut
        assert took < 10, f"{took:.1f} s"
        assert re.fullmatch(
            rf"{ERROR}Party {victim + 1} stopped responding: nothing arrived from it for 7 s\. "
            r"It may have lost its network, closed its page or crashed; the computation cannot go "
            r"on without it\.", peer.last_error()), peer.text()
    # The cut-off party learns the same about the others, instead of waiting forever.
    assert peers[2].finish(timeout=30) == 1
    assert re.fullmatch(rf"{ERROR}Party [^{victim + 1}] stopped responding: .*",
                        peers[2].last_error()), peers[2].text()
    report("party loses network", stop_seconds=round(time.monotonic() - cut, 2))


@pytest.mark.slow
def test_signaling_server_killed_after_the_mesh_is_up(internet):
    net = internet(["cone", "symmetric", "public"])
    session = Session(net)
    rounds = 150
    peers = session.run_rounds([5, 6, 7], rounds)
    for peer in peers:
        peer.wait_for(r"^round 10$", timeout=90)
    session.server.send_signal(signal.SIGKILL)
    session.server.wait(10)
    for peer in peers:
        assert peer.finish() == 0, peer.text()
        assert f"total: {expected_total([5, 6, 7], rounds)}\n" in peer.out


@pytest.mark.slow
def test_lossy_slow_links_give_correct_results(internet):
    net = internet(["cone", "cone", "symmetric"], delay_ms=50, loss=0.05)
    session = Session(net)
    inputs = [3, 4, 5]
    # Every ICE, DTLS and SCTP handshake packet may be lost and retransmitted here (after
    # 0.5 to 1 s, doubling), so connecting may take longer than the default 20 s allows on
    # a busy machine; it usually takes about 6 s.
    peers = session.run_rounds(inputs, 4, join_args=("--connect-timeout", "60"))
    all_succeed(peers, timeout=240)
    for peer in peers:
        assert f"total: {expected_total(inputs, 4)}\n" in peer.out
    report("lossy 50 ms 5%", mesh_seconds=max(p.mesh_seconds() for p in peers))


# --- a browser party ---------------------------------------------------------------------

@pytest.fixture
def chromium_in(tmp_path):
    """Chromium started inside a given namespace (a party's LAN), closed after the test."""
    from playwright.sync_api import sync_playwright

    from testbed import chromium

    if (why := chromium.missing()) is not None:
        pytest.fail(why)
    playwright = sync_playwright().start()
    browsers = []

    def launch(ns: str, origin: str):
        # The page is served over plain http from a "public" address: let Chromium treat
        # that origin as secure, as https would be in real use (sealing needs WebCrypto).
        browser = chromium.launch(playwright, ns, tmp_path, secure_origin=origin)
        browsers.append(browser)
        return chromium.new_context(browser, origin).new_page()

    yield launch
    for browser in browsers:
        browser.close()
    playwright.stop()


@pytest.mark.slow
@pytest.mark.parametrize("native_nat, relay_only", [("symmetric", False), ("cone", True)],
                         ids=["symmetric-nat", "relay-only"])
def test_browser_party_with_native_parties(internet, chromium_in, native_nat, relay_only):
    """Across a symmetric NAT a pair needs the relay; between two cone NATs it would go
    direct, unless the session is relay-only. (Three parties, as the built-in programs
    need: two natives, each behind its own NAT of that kind.)"""
    from playwright.sync_api import expect

    from testbed.browser import BrowserParty

    net = internet(["cone", native_nat, native_nat])
    session = Session(net)
    page = chromium_in(net.parties[0].ns, net.server_url)
    if relay_only:  # as a person would: on the create page, with the box checked
        page.goto(f"{net.server_url}/")
        page.get_by_test_id("program-choice-sum").check()
        page.get_by_test_id("parties-count").fill("3")
        expect(page.get_by_test_id("relay-only-help")).to_contain_text("no party learns")
        page.get_by_test_id("relay-only").check()
        page.get_by_test_id("create").click()
        expect(page.get_by_test_id("invite-link")).to_have_value(re.compile(r"#k="))
        url = page.get_by_test_id("invite-link").input_value()
    else:
        url = session.create(3, "--program", "sum")
    browser = BrowserParty(page, page.url if relay_only else url)  # party 0
    natives = [session.join(url, i, "--input", x) for i, x in ((1, "20"), (2, "10"))]
    browser.confirm("12")
    browser.wait_done()
    assert browser.headline() == "sum = 42"
    for native in natives:
        assert native.finish() == 0, native.text()
        assert any("sum = 42" in line for line in native.out), native.text()
        # Both ends say how they are connected: through the relay.
        path, ours, theirs = native.paths()[browser.pid]
        assert path == "relayed"
        pair = "pair-{}-{}".format(*sorted((browser.pid, native.party())))
        assert browser[pair].get_attribute("data-path") == "relayed"
        if relay_only:  # the browser offered nothing but the relay's address, nor did we
            assert ours == theirs == "relay", (ours, theirs)
    if relay_only:
        expect(browser["relay-note"]).to_be_visible()


@pytest.mark.slow
def test_browser_is_told_which_party_died(internet, chromium_in):
    from playwright.sync_api import expect

    from testbed.browser import BrowserParty

    net = internet(["cone", "cone", "symmetric"])
    session = Session(net)
    url = session.create(3, "--program-file", ROUNDS, "--args", "--rounds=100000")
    natives = [session.join(url, i, "--input", "1", "--trust-program") for i in (1, 2)]
    page = chromium_in(net.parties[0].ns, net.server_url)
    browser = BrowserParty(page, url)
    browser.confirm(None)
    expect(browser["output"]).to_contain_text("round 10", timeout=120_000)
    victim = natives[1].party()
    natives[1].proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    expect(browser["error"]).to_contain_text(re.compile(
        r"[Pp]arty \d (left the session|stopped responding)"), timeout=10_000)
    took = time.monotonic() - killed
    # As people count parties: pid 2 is "party 3".
    assert f"arty {victim + 1} " in browser["error"].inner_text(), browser.describe("named no one")
    assert natives[0].finish(timeout=30) == 1
    report("browser told of a killed party", stop_seconds=round(took, 2))
