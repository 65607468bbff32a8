"""A signaling server (or network) that cheats is caught: native peers talk through
``testbed/tamper_proxy.py``, which changes what the server says, and stop with
"Tampering detected: ..." instead of connecting or computing.

Every test that runs peers makes its own network namespace (testbed/netns.py) with the
server, the proxy and the parties inside, and removes it afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from mpyc_webrtc import launch
from mpyc_webrtc.sealing import JoinSecret
from mpyc_webrtc.sentences import say
from testbed.netns import BIN, Namespace, Server, TamperProxy, start_peer

pytestmark = pytest.mark.netns

TIMEOUT = 120
ERROR = "mpyc-webrtc-peer: error: "
TAMPERED = ERROR + "Tampering detected:"
#: Peers that are left waiting for a tampered party give up this soon.
CONNECT = ("--connect-timeout", "8")


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def last(self) -> str:
        lines = self.err.strip().splitlines()
        return lines[-1] if lines else ""


def create(ns: Namespace, base: str, parties: int, *program: str) -> str:
    done = ns.run([str(BIN / "mpyc-webrtc-peer"), "create", base, "--parties", str(parties),
                   "--no-qr", *program])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def run_peers(ns: Namespace, url: str, inputs: list[str]) -> list[Run]:
    procs = [start_peer(ns, url, "--input", x, *CONNECT) for x in inputs]
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        runs.append(Run(proc.returncode, out, err))
    return runs


def proxied(mode: str, parties: int, *program: str):
    """A namespace with a server and a proxy in ``mode``; the session's link leads to the
    proxy (created through it)."""
    ns = Namespace()
    ns.__enter__()
    try:
        server = Server(ns)
        proxy = TamperProxy(ns, server, mode)
        url = create(ns, proxy.url, parties, *program)
        assert url.startswith(proxy.url + "/join/"), url
    except BaseException:
        ns.close()
        raise
    return ns, server, proxy, url


def describe(runs: list[Run], proxy: TamperProxy) -> str:
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
    ("flip-box", 2, "failed authentication"),
    ("replay", 2, "arrived again (replayed)"),
    ("swap-from", 3, "failed authentication"),
])
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
        if run is not victim:
            assert re.fullmatch(rf"{ERROR}Party \d+ left the session before the computation "
                                r"finished\.", run.last), report
    assert victim.code == 1 and says in victim.last, report
    assert victim.last.endswith("Stop, and do not take part in this session."), report
    # The receiver named in the proxy's log is the one that stopped, for that reason.
    changed = next(line for line in proxy.log if f"{mode}: " in line)
    receiver = int(re.search(r"to party (\d+)", changed).group(1))
    assert re.search(rf"^Joined session \S+ as party {receiver} ", victim.err, re.M), report
    sender = int(re.search(r"from party (\d+)", changed).group(1))
    if mode == "swap-from":
        fake = re.search(r"now says it is from party (\d+)", changed).group(1)
        assert f"said to come from party {fake} failed" in victim.last, report
    else:
        assert f"party {sender}" in victim.last, report
    # It never got as far as computing: no data channel was opened.
    assert f"Link {min(sender, receiver)}<->{max(sender, receiver)}: ready" not in victim.err


@pytest.mark.parametrize("mode", ["swap-program", "swap-welcome"])
def test_swapped_program_is_refused_before_connecting(mode):
    ns, server, proxy, url = proxied(mode, 2, "--program", "sum")
    try:
        runs = run_peers(ns, url, ["1", "2"])
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
        assert "Link 0<->1" not in run.err, report
    assert run.last == (
        f"{ERROR}Tampering detected: the server gave this party a different program than "
        f"the one the session's creator chose (fingerprint {launch.fingerprint(max_hash)}; "
        f"the link says {launch.fingerprint(sum_hash)}). Stop, and do not take part in this "
        "session.")
    if mode == "swap-program":  # the session's page lied too: caught before joining
        assert joined == 0


def test_swapped_uploaded_source_is_refused(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("from mpyc.runtime import mpc\nmpc.run(mpc.start())\nprint('hi')\n"
                      "mpc.run(mpc.shutdown())\n")
    ns, _server, proxy, url = proxied("swap-welcome", 2, "--program-file", str(script))
    try:
        runs = [Run(p.wait(TIMEOUT), p.stdout.read(), p.stderr.read())
                for p in [start_peer(ns, url, *CONNECT) for _ in range(2)]]
    finally:
        ns.close()
    for run in runs:
        assert run.code == 1 and run.last.startswith(TAMPERED), describe(runs, proxy)
        assert "a different program than the one the session's creator chose" in run.last


def test_link_without_its_secret_is_refused_before_contacting_the_server():
    with Namespace() as ns:
        server = Server(ns)
        url = server.create(2, "--program", "sum")
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
        url = server.create(2, "--program", "sum")
        real = JoinSecret.from_fragment(url.split("#", 1)[1])
        wrong = JoinSecret(bytes(32), real.program_hash).link(url)
        done = ns.run([str(BIN / "mpyc-webrtc-peer"), "join", wrong, "--input", "1"])
        joined = server.info(url)["joined"]
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].startswith(
        ERROR + "This link is incomplete or wrong")
    assert joined == 0
