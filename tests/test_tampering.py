"""A signaling server (or network) that cheats is caught: native peers talk through
``testbed/tamper_proxy.py``, which changes what the server says, and stop with
"Tampering detected: ..." instead of connecting or computing.

Every test that runs peers makes its own network namespace (testbed/netns.py) with the
server, the proxy and the parties inside, and removes it afterwards. Sessions have 3
parties (the built-in programs need at least 3); the tests of the session's shape create
what they need (4 parties to halve, relay only, named places).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mpyc_webrtc import launch
from mpyc_webrtc.sealing import JoinSecret
from mpyc_webrtc.sentences import place, say
from testbed.netns import BIN, Namespace, PeerRun, Server, TamperProxy, start_peer

pytestmark = pytest.mark.netns

TIMEOUT = 120
ERROR = "mpyc-webrtc-peer: error: "
TAMPERED = ERROR + "Tampering detected:"
#: Peers that are left waiting for a tampered party give up this soon.
CONNECT = ("--connect-timeout", "8")


@pytest.fixture(autouse=True)
def keys_of_their_own(tmp_path, monkeypatch):
    """The peers' default key files (and known identities) in this test's own folder, not
    in the home directory of whoever runs the tests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def create(ns: Namespace, base: str, parties: int, *program: str) -> str:
    done = ns.run([str(BIN / "mpyc-webrtc-peer"), "create", base, "--parties", str(parties),
                   "--no-qr", *program])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def run_peers(ns: Namespace, url: str, inputs: list[str]) -> list[PeerRun]:
    procs = [start_peer(ns, url, "--input", x, *CONNECT) for x in inputs]
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        runs.append(PeerRun(proc.returncode, out, err))
    return runs


#: A server that offers a TURN relay, so that relay-only sessions can be created. Nothing
#: listens there: the tests that use it stop every party before it gathers a candidate.
FAKE_TURN = ("--turn", "turn:127.0.0.1:3478", "--turn-secret", "no-relay-here")


def proxied(mode: str, parties: int, *program: str, server_args: tuple[str, ...] = ()):
    """A namespace with a server and a proxy in ``mode``; the session's link leads to the
    proxy (created through it)."""
    ns = Namespace()
    ns.__enter__()
    try:
        server = Server(ns, 8080, *server_args)
        proxy = TamperProxy(ns, server, mode)
        url = create(ns, proxy.url, parties, *program)
        assert url.startswith(proxy.url + "/join/"), url
    except BaseException:
        ns.close()
        raise
    return ns, server, proxy, url


def describe(runs: list[PeerRun], proxy: TamperProxy) -> str:
    return "\n\n".join([f"exit {r.code}:\n{r.err[-2500:]}" for r in runs]
                       + ["proxy:\n" + "".join(proxy.log)])


def test_honest_proxy_changes_nothing():
    ns, _server, proxy, url = proxied("none", 3, "--program", "sum")
    try:
        runs = run_peers(ns, url, ["1,2", "30", "-4"])
    finally:
        ns.close()
    assert all(r.code == 0 for r in runs), describe(runs, proxy)
    assert [r.out.strip() for r in runs] == ["sum = 29"] * 3


@pytest.mark.parametrize("mode, parties, says", [
    ("flip-box", 3, "failed authentication"),
    ("replay", 3, "arrived again (replayed)"),
    ("swap-from", 3, "failed authentication"),
    # The same box again, its sender a string ("0", not 0): not a sender at all.
    ("replay-typed", 3, "failed authentication"),
], ids=["flip-box", "replay", "swap-from", "replay-typed"])
def test_tampered_signal_stops_its_receiver(mode, parties, says):
    ns, _server, proxy, url = proxied(mode, parties, "--program", "sum")
    try:
        runs = run_peers(ns, url, [str(i) for i in range(parties)])
    finally:
        ns.close()
    report = describe(runs, proxy)
    assert all(r.code != 0 for r in runs), report
    assert all(r.out == "" for r in runs), report
    caught = [r for r in runs if r.last.startswith(TAMPERED)]
    assert len(caught) == 1, report
    (victim,) = caught
    # The others are told the victim stopped, at once rather than after a time-out.
    for run in runs:
        assert "Traceback" not in run.err, report
        assert "destroyed but it is pending" not in run.err, report  # after its last word
        if run is not victim:
            assert re.fullmatch(rf"{ERROR}The computation cannot finish: party \d+ left the "
                                r"session\.", run.last), report
    assert victim.code == 1 and says in victim.last, report
    assert victim.last.endswith("Stop, and do not take part in this session."), report
    # The receiver named in the proxy's log is the one that stopped, for that reason.
    changed = next(line for line in proxy.log if f"{mode}: " in line)
    receiver = int(re.search(r"to party (\d+)", changed).group(1))
    # People count parties from 1 (the proxy's log, like every log, from 0).
    assert re.search(rf"^Joined session \S+ as party {receiver + 1} ", victim.err, re.M), report
    sender = int(re.search(r"from party (\d+)", changed).group(1))
    if mode == "swap-from":
        fake = int(re.search(r"now says it is from party (\d+)", changed).group(1))
        assert f"said to come from party {fake + 1} failed" in victim.last, report
    elif mode == "replay-typed":
        assert f"delivered again, from '{sender}'" in changed, report
        assert victim.last == ERROR + say("tamper.failed_authentication",
                                          who=place(str(sender))), report
    else:
        assert f"party {sender + 1}" in victim.last, report
    # It never got as far as computing: no data channel was opened.
    assert f"Link {min(sender, receiver)}<->{max(sender, receiver)}: ready" not in victim.err


@pytest.mark.parametrize("mode", ["swap-program", "swap-welcome"])
def test_swapped_program_is_refused_before_connecting(mode):
    ns, server, proxy, url = proxied(mode, 3, "--program", "sum")
    try:
        runs = run_peers(ns, url, ["1", "2", "3"])
        joined = server.info(url)["joined"]
    finally:
        ns.close()
    report = describe(runs, proxy)
    sum_hash = launch.program_hash({"name": "sum", "args": [], "builtin": True})
    max_hash = launch.program_hash({"name": "max", "args": [], "builtin": True})
    assert JoinSecret.from_fragment(url.split("#")[1]).program_hash == sum_hash
    for run in runs:
        assert run.code == 1 and run.out == "", report
        assert run.last == ERROR + say("tamper.server_program", ours=launch.fingerprint(max_hash),
                                         link=launch.fingerprint(sum_hash)), report
        assert "Link " not in run.err, report
    assert run.last == (
        f"{ERROR}Tampering detected: the server gave this party a different program than "
        f"the one the session's creator chose (fingerprint {launch.fingerprint(max_hash)}; "
        f"the link says {launch.fingerprint(sum_hash)}). Stop, and do not take part in this "
        "session.")
    if mode == "swap-program":  # the session's page lied too: caught before joining
        assert joined == 0


def test_swapped_uploaded_source_is_refused(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("print('the program ran')\nfrom mpyc.runtime import mpc\n"
                      "mpc.run(mpc.start())\nmpc.run(mpc.shutdown())\n")
    ns, _server, proxy, url = proxied("swap-welcome", 3, "--program-file", str(script))
    try:
        # They trust the program this test wrote (and GET /api/sessions/ID shows it), not
        # the welcome's other one, which is refused before anything runs.
        runs = [PeerRun(p.wait(TIMEOUT), p.stdout.read(), p.stderr.read())
                for p in [start_peer(ns, url, "--trust-program", *CONNECT) for _ in range(3)]]
    finally:
        ns.close()
    for run in runs:
        assert run.code == 1 and run.last.startswith(TAMPERED), describe(runs, proxy)
        assert "a different program than the one the session's creator chose" in run.last
        assert run.out == "" and "the program ran" not in run.err and "Link " not in run.err


def test_link_without_its_secret_is_refused_before_contacting_the_server():
    with Namespace() as ns:
        server = Server(ns)
        url = server.create(3, "--program", "sum")
        bare = url.split("#", 1)[0]
        done = ns.run([str(BIN / "mpyc-webrtc-peer"), "join", bare, "--input", "1"])
        # Nothing listens here: contacting a server would fail differently (exit 1).
        nowhere = ns.run([str(BIN / "mpyc-webrtc-peer"), "join",
                          "http://127.0.0.1:9/join/abc", "--input", "1"])
        damaged = ns.run([str(BIN / "mpyc-webrtc-peer"), "join", url[:-10], "--input", "1"])
        joined = server.info(url)["joined"]
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == ERROR + say("link.missing_secret")
    assert say("link.missing_secret").startswith("The join link lacks its secret part (after the # "
                                          "sign).")
    assert nowhere.returncode == 2
    assert nowhere.stderr.strip().splitlines()[-1] == ERROR + say("link.missing_secret")
    assert damaged.returncode == 2
    assert damaged.stderr.strip().splitlines()[-1].startswith(
        ERROR + "The join link's secret part (after the # sign) is damaged: ")
    assert joined == 0


def test_wrong_secret_is_refused_by_the_server():
    with Namespace() as ns:
        server = Server(ns)
        url = server.create(3, "--program", "sum")
        real = JoinSecret.from_fragment(url.split("#", 1)[1])
        wrong = JoinSecret(bytes(32), real.program_hash).link(url)
        done = ns.run([str(BIN / "mpyc-webrtc-peer"), "join", wrong, "--input", "1"])
        joined = server.info(url)["joined"]
    assert done.returncode == 1 and done.stdout == ""
    # The # part was there: the link is wrong, not incomplete.
    assert done.stderr.strip().splitlines()[-1] == ERROR + say("link.wrong_secret")
    assert joined == 0


# -- the session's shape: what the creator chose is sealed, and every party checks it ---------

LABELS = ("hospital A", "hospital B", "hospital C")


def shape(what: str, chosen: str, said: str) -> str:
    return say("tamper.shape", what=say(f"shape.{what}"), chosen=chosen, said=said)


#: mode: (parties, create options, server options, peers that join, what each says)
SHAPE_LIES = {
    # Two parties of a session created for four: each would compute as "party N of 2".
    "halve-parties": (4, ("--program", "sum"), (), 2, shape("parties", "4", "2")),
    "drop-relay-only": (3, ("--program", "sum", "--relay-only"), FAKE_TURN, 3,
                        shape("relay_only", "yes", "no")),
    "rename-places": (3, ("--program", "sum", "--labels", *LABELS), (), 3,
                      shape("labels", '"hospital A", "hospital B", "hospital C"',
                            '"hospital C", "hospital B", "hospital A"')),
    "drop-descriptor": (3, ("--program", "sum"), (), 3, say("tamper.no_descriptor")),
}


@pytest.mark.parametrize("mode", list(SHAPE_LIES))
def test_a_lie_about_the_sessions_shape_stops_every_party_before_it_connects(mode):
    parties, options, server_args, peers, says = SHAPE_LIES[mode]
    ns, _server, proxy, url = proxied(mode, parties, *options, server_args=server_args)
    try:
        runs = run_peers(ns, url, [str(i) for i in range(peers)])
    finally:
        ns.close()
    report = describe(runs, proxy)
    assert proxy.logged(f"tamper proxy: {mode}: "), report
    for run in runs:
        assert (run.code, run.out) == (1, ""), report
        assert run.last == ERROR + says, report
        # Stopped at the welcome: before showing the session, linking to anyone or computing.
        assert "Joined session" not in run.err and "Link " not in run.err, report
        assert "Traceback" not in run.err, report
    if mode == "halve-parties":
        assert runs[0].last == (
            f"{ERROR}Tampering detected: the server changed the number of parties: the "
            "session's creator chose 4, the server says 2. Stop, and do not take part in this "
            "session.")


def test_a_start_the_party_did_not_agree_to_stops_it():
    """A native peer is ready for round 1 only (it joins ready, and runs once): a server
    that starts round 2 right after round 1 has started is caught."""
    ns, _server, proxy, url = proxied("unprompted-start", 3, "--program", "sum")
    try:
        runs = run_peers(ns, url, ["1", "2", "3"])
    finally:
        ns.close()
    report = describe(runs, proxy)
    assert sum("unprompted-start: round 2 started" in line for line in proxy.log) == 3, report
    for run in runs:
        assert (run.code, run.out) == (1, ""), report
        assert run.last == ERROR + say("tamper.unprompted_start", round=2), report
        assert not re.search(r"^Link \d<->\d: ready", run.err, re.M), report
    assert runs[0].last == (
        f"{ERROR}Tampering detected: the server started round 2, which this party did not "
        "agree to (it had not said it was ready). Stop, and do not take part in this session.")


# -- identities: a relay cannot change who a verified party is -------------------------------

NAMES = ("Alice", "Bob", "Carol")


def key(tmp_path: Path, name: str) -> tuple[Path, str]:
    """A key file of ``name``'s own, and its did:key."""
    path = tmp_path / name / "identity.pem"
    done = subprocess.run([str(BIN / "mpyc-webrtc-peer"), "identity", "--identity", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return path, done.stdout.splitlines()[0]


def run_people(ns: Namespace, url: str, tmp_path: Path) -> tuple[list[PeerRun], list[str]]:
    """Alice, Bob and Carol, each with a key of their own, in places 0, 1 and 2; their
    runs and did:keys."""
    keys = [key(tmp_path, name) for name in NAMES]
    procs = [start_peer(ns, url, "--input", str(pid), "--name", name, "--place",
                        f"party {pid + 1}", "--identity", str(path), *CONNECT)
             for pid, (name, (path, _)) in enumerate(zip(NAMES, keys, strict=True))]
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        runs.append(PeerRun(proc.returncode, out, err))
    return runs, [did for _, did in keys]


def stopped_by(runs: list[PeerRun], proxy: TamperProxy, sentences: set[str]) -> list[PeerRun]:
    """The parties that caught the lie (with one of ``sentences``); every other one was
    told that a party left. Nobody computed, nobody crashed."""
    report = describe(runs, proxy)
    caught = [r for r in runs if r.last.startswith(TAMPERED)]
    assert caught, report
    for run in runs:
        assert run.code == 1 and run.out == "", report
        assert "Traceback" not in run.err, report
        if run in caught:
            assert run.last.removeprefix(ERROR) in sentences, report
        else:
            assert re.fullmatch(rf"{ERROR}The computation cannot finish: party \d+ left the "
                                r"session\.", run.last), report
    return caught


def test_a_roster_that_swaps_two_keys_stops_who_verified_them(tmp_path):
    ns, _server, proxy, url = proxied("swap-roster-identity", 3, "--program", "sum")
    try:
        runs, dids = run_people(ns, url, tmp_path)
    finally:
        ns.close()
    assert proxy.logged("swap-roster-identity: rosters to party"), list(proxy.log)
    # Parties 0 and 1 swapped: whoever verified one of them sees the roster lie about it.
    stopped_by(runs, proxy, {say("tamper.roster_identity", who=place(p), said=dids[1 - p],
                                 signed=dids[p]) for p in (0, 1)})
    assert say("tamper.roster_identity", who=place(0), said=dids[1], signed=dids[0]) == (
        f"Tampering detected: the server shows party 1 with the key {dids[1]}, but that party "
        f"signed with {dids[0]}. Stop, and do not take part in this session.")


def test_a_roster_that_renames_a_verified_party_stops_who_verified_it(tmp_path):
    ns, _server, proxy, url = proxied("rename-member", 3, "--program", "sum")
    try:
        runs, _dids = run_people(ns, url, tmp_path)
    finally:
        ns.close()
    sentence = say("tamper.roster_name", who=place(0), said='"Mallory"', signed='"Alice"')
    caught = stopped_by(runs, proxy, {sentence})
    assert runs[0] not in caught  # party 0 itself has nobody to check its own name against
    assert sentence == ('Tampering detected: the server shows party 1 as "Mallory", but '
                        'that party signed the name "Alice". Stop, and do not take part in this '
                        "session.")


@pytest.mark.parametrize("mode", ["reseal-name", "reseal-identity"])
def test_an_insider_who_reseals_an_offer_cannot_sign_it(mode, tmp_path, monkeypatch):
    """Someone with the join link (a party, or whoever it shared the link with) running the
    relay can open and seal every signal, but not sign for another key."""
    ns = Namespace()
    ns.__enter__()
    try:
        server = Server(ns)
        url = server.create(3, "--program", "sum")
        monkeypatch.setenv("TAMPER_PROXY_LINK", url)  # what the insider knows
        proxy = TamperProxy(ns, server, mode)
        runs, dids = run_people(ns, proxy.link(url), tmp_path)
    finally:
        ns.close()
    changed = next(line for line in proxy.log if f"{mode}: the offer" in line)
    sender = int(re.search(r"from party (\d+)", changed).group(1))
    receiver = int(re.search(r"to party (\d+)", changed).group(1))
    named = dids[sender]
    if mode == "reseal-identity":
        named = re.search(r"says identity '(did:key:\w+)'", changed).group(1)
        assert named not in dids
    else:
        assert "says name 'Mallory' instead of" in changed
    sentence = say("tamper.bad_signature", who=place(sender), kind="offer", identity=named)
    (victim,) = stopped_by(runs, proxy, {sentence})
    assert victim is runs[receiver], describe(runs, proxy)
    assert sentence == (
        f"Tampering detected: the offer from party {sender + 1} is not signed by the identity "
        f"key it names ({named}), so it may come from anyone who has the join link. Stop, and do "
        "not take part in this session.")
    # Nothing was connected on the strength of it.
    assert not re.search(r"^Link \d<->\d: ready", victim.err, re.M)
    assert f"{named} (verified)" not in victim.err


def test_closing_while_connecting_leaves_no_unretrieved_task(monkeypatch, caplog):
    """aiortc connects (ICE, DTLS, SCTP) in a task it forgets; a party that stops while
    that runs (the victim in test_tampered_signal_stops_its_receiver) made it fail with
    "Cannot send data, not connected", and asyncio logged "Task exception was never
    retrieved" with a traceback. The peer's connections read that task's outcome. (No
    connection is opened here: the connecting itself is replaced by its failure.)"""
    import asyncio
    import gc
    import logging

    from aiortc import RTCConfiguration, RTCPeerConnection

    from mpyc_webrtc.native.links import PeerConnection

    async def fails(self):
        await asyncio.sleep(0)
        raise ConnectionError("Cannot send data, not connected")

    monkeypatch.setattr(RTCPeerConnection, "_RTCPeerConnection__connect", fails)

    async def scenario() -> None:
        pc = PeerConnection(RTCConfiguration(iceServers=[]))
        asyncio.ensure_future(pc._RTCPeerConnection__connect())  # as aiortc does
        await pc.close()
        await asyncio.sleep(0.05)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
        gc.collect()
    assert "never retrieved" not in caplog.text
    assert "connecting ended by closing: ConnectionError('Cannot send data, not connected')" \
        in caplog.text
