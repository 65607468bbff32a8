"""Headless peers in a loopback-only network namespace: real aiortc links, real MPyC.

Every test makes its own namespace (testbed/netns.py) with the signaling server and
all parties inside it, and removes it afterwards; no packet leaves loopback.

Built-in programs run with at least 3 parties. Where a test needs 2 parties it uploads a
program and gives every opt-in (``create --no-privacy``; ``join --accept-no-privacy``); peers
pass ``--trust-program`` for the programs these tests wrote. The tests under "What a person
agrees to" show those gates refusing.
"""

from __future__ import annotations

import os
import pty
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from mpyc_webrtc import launch
from mpyc_webrtc.native.consent import (
    ACCEPT_HINT,
    CONSENT_NEEDED,
    QUESTION,
    REFUSED,
    UPLOADED,
)
from mpyc_webrtc.sealing import JoinSecret
from mpyc_webrtc.sentences import place, say
from testbed.netns import BIN, Namespace, Server, session_id, start_peer

pytestmark = pytest.mark.netns

PROGRAMS = Path(__file__).parent / "programs"
E2E_PROGRAMS = Path(__file__).parent.parent / "e2e" / "programs"
TIMEOUT = 120


@pytest.fixture
def server():
    with Namespace() as ns:
        yield Server(ns)


def run_session(server: Server, join_url: str, party_args: list[list[str]]):
    procs = [start_peer(server.ns, join_url, *args) for args in party_args]
    results = [p.communicate(timeout=TIMEOUT) + (p.returncode,) for p in procs]
    for _out, err, code in results:
        assert code == 0, f"party failed ({code}):\n{err[-3000:]}"
    return [out for out, _, _ in results]


def inputs_for(lists):
    return [["--input", ",".join(map(str, values))] for values in lists]


def test_sum_of_three_parties(server):
    lists = [[5, -3], [1000], [7, 8, 9]]
    url = server.create(3, "--program", "sum")
    outs = run_session(server, url, inputs_for(lists))
    expected = sum(sum(v) for v in lists)
    assert [out.strip() for out in outs] == [f"sum = {expected}"] * 3


def test_sort_of_three_parties(server):
    lists = [[30, -1, 4], [2], [99, 0, 17, 5]]
    url = server.create(3, "--program", "sort")
    outs = run_session(server, url, inputs_for(lists))
    expected = ",".join(map(str, sorted(v for vs in lists for v in vs)))
    assert [out.strip() for out in outs] == [f"sort = {expected}"] * 3


def test_max_of_three_parties(server):
    lists = [[-5], [-2, -9], [-7]]
    url = server.create(3, "--program", "max")
    outs = run_session(server, url, inputs_for(lists))
    assert [out.strip() for out in outs] == ["max = -2"] * 3


def test_sum_of_five_parties(server):
    """(Two parties compute only with everyone's word that nothing stays private: see
    test_two_parties_compute_once_everyone_accepts_no_privacy.)"""
    m = 5
    lists = [[i * 11 + 1] for i in range(m)]
    url = server.create(m, "--program", "sum")
    outs = run_session(server, url, inputs_for(lists))
    assert [out.strip() for out in outs] == [f"sum = {sum(v[0] for v in lists)}"] * m


@dataclass
class Party:
    """One finished peer: its pid (from its status display), input, stdout and stderr."""

    pid: int
    given: str | None
    out: str
    err: str

    def result(self) -> tuple[str, dict[str, str], list[list[str]]]:
        """A program's ``Result.to_text()``: headline, 'label: value' rows, table rows."""
        headline, *lines = self.out.strip().splitlines()
        rows: dict[str, str] = {}
        table: list[list[str]] = []
        for line in lines:
            if ": " in line and not table:
                label, value = line.split(": ", 1)
                rows[label] = value
            else:
                table.append(line.split())
        return headline, rows, table


JOINED = re.compile(r"^Joined session \S+ as party (\d+)", re.MULTILINE)


def run_program(server: Server, program: str, inputs: list[str | None]) -> list[Party]:
    """Run a built-in with one peer per input (None: no --input); parties by pid."""
    url = server.create(len(inputs), "--program", program)
    procs = [start_peer(server.ns, url, *([] if x is None else ["--input", x]))
             for x in inputs]
    parties = []
    for given, proc in zip(inputs, procs, strict=True):
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, f"party failed ({proc.returncode}):\n{err[-3000:]}"
        parties.append(Party(int(JOINED.search(err).group(1)) - 1, given, out, err))
    return sorted(parties, key=lambda p: p.pid)


def test_average_of_three_parties(server):
    salaries = [50001, 48000, 56900]
    parties = run_program(server, "average", [str(x) for x in salaries])
    total = sum(salaries)
    average = f"{(Decimal(total) / 3).quantize(Decimal('0.01'), ROUND_HALF_UP):,.2f}"
    assert average == "51,633.67"
    for party in parties:
        assert party.result() == (f"The average salary is {average}.",
                                  {"Parties": "3", "Total": f"{total:,}", "Average": average},
                                  [])


def test_millionaires_of_three_parties_lowest_pid_wins_a_tie(server):
    parties = run_program(server, "millionaires", ["999999", "1000000", "1000000"])
    most = max(int(p.given) for p in parties)
    richest = min(p.pid for p in parties if int(p.given) == most) + 1  # as people count
    for party in parties:
        assert party.result() == (f"Party {richest} has the most: {most:,}.",
                                  {"Parties": "3", "Richest": f"party {richest}",
                                   "Amount": f"{most:,}"}, [])


def test_median_of_three_parties(server):
    parties = run_program(server, "median", ["3,1,2", "10", "-4,7"])
    ordered = sorted(int(v) for p in parties for v in p.given.split(","))
    median = statistics.median(ordered)
    assert median == 2.5
    for party in parties:
        headline, rows, table = party.result()
        assert headline == "The median is 2.5."
        assert rows == {"Count": "6", "Minimum": "-4", "Median": "2.5", "Maximum": "10"}
        assert table == [["#", "Value"]] + [[str(i), str(v)] for i, v in
                                             enumerate(ordered, 1)]


@pytest.mark.parametrize("votes", [["yes", "Yes", "yes"], ["yes", "no", "yes"]])
def test_vote_of_three_parties(server, votes):
    parties = run_program(server, "vote", votes)
    unanimous = all(v.lower() == "yes" for v in votes)
    headline = ("Everyone voted yes." if unanimous else
                "Not unanimous: at least one party voted no. Nobody learns who, or how many.")
    for party in parties:
        assert party.result() == (headline, {"Parties": "3",
                                             "Unanimous": "yes" if unanimous else "no"}, [])


def test_santa_of_three_parties_is_a_derangement(server):
    parties = run_program(server, "santa", [None, None, None])
    receivers = {}
    for party in parties:
        headline, rows, table = party.result()
        match = re.fullmatch(r"You give a present to party (\d+)\.", headline)
        assert match, headline
        # People count parties from 1: pid 0 is "party 1".
        assert rows == {"You are": f"party {party.pid + 1}", "Parties": "3"} and table == []
        receivers[party.pid] = int(match.group(1)) - 1
    assert sorted(receivers.values()) == [0, 1, 2]
    assert all(giver != receiver for giver, receiver in receivers.items())


def test_status_display_shows_the_roster_and_direct_links(server):
    """Native peers report each link (``link`` messages); every party's roster, printed
    on stderr one line per change, shows the pairs getting ready over direct paths."""
    parties = run_program(server, "sum", ["1", "2", "3"])
    seen = set()
    for party in parties:
        lines = party.err.splitlines()
        assert any(line.startswith("Joined session ") and ", fingerprint " in line
                   for line in lines)
        assert f"Party {party.pid + 1} (you): computing" in lines
        assert "Round 1 started: the parties connect to each other and compute." in lines
        assert re.fullmatch(r"Finished in \d+\.\d s\.", next(
            line for line in lines if line.startswith("Finished")))
        links = [line for line in lines if line.startswith("Link ")]
        for line in links:
            # The pair states in the words both kinds of party use (sentences.py, pair.*).
            assert re.fullmatch(r"Link \d<->\d: (exchanging connection details|connecting|"
                                r"(connected|ready|closed) \(direct\))", line), line
        assert len(links) == len(set(links))  # once per change
        seen.update(lines)
        assert "\x1b[" not in party.err  # stderr is no terminal: plain text
    # The last to join may get its first roster only once the session started.
    assert "All 3 parties are here and ready." in seen
    for a, b in [(1, 2), (1, 3), (2, 3)]:  # as people count parties
        assert f"Link {a}<->{b}: ready (direct)" in seen


def test_unmodified_script_with_mpc_run_calls(server):
    url = server.create(3, "--program-file", str(PROGRAMS / "dot_sync.py"))
    outs = run_session(server, url, [["--trust-program"]] * 3)
    vectors = [[(pid + 1) * (i + 1) - 3 for i in range(4)] for pid in range(3)]
    summed = [sum(v[i] for v in vectors) for i in range(4)]
    dot = sum(s * w for s, w in zip(summed, [1, 2, 3, 4], strict=True))
    largest = max(x for v in vectors for x in v)
    assert [out.split() for out in outs] == [["dot", "=", str(dot), "max", "=",
                                              str(largest)]] * 3


def test_unmodified_script_with_async_with_and_args(server):
    url = server.create(3, "--program-file", str(PROGRAMS / "stats_async.py"), "--args", "2")
    outs = run_session(server, url, [["--trust-program"]] * 3)
    values = [pid + 0.5 + k for pid in range(3) for k in range(2)]
    for out in outs:
        lines = dict(line.split(" = ") for line in out.strip().splitlines())
        assert float(lines["total"]) == pytest.approx(sum(values), abs=1e-3)
        assert float(lines["mean"]) == pytest.approx(sum(values) / len(values), abs=1e-3)


def test_fourth_party_gets_the_full_error(server):
    url = server.create(3, "--program", "sum")
    procs = [start_peer(server.ns, url, "--input", str(i)) for i in range(3)]
    try:
        server.wait_joined(url, 3)
        late = server.ns.run([str(BIN / "mpyc-webrtc-peer"), "join", url, "--input", "1",
                              "--allow-loopback"], timeout=TIMEOUT)
    finally:
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    assert late.returncode == 1
    assert late.stdout == ""
    assert late.stderr.strip().splitlines()[-1] == (
        "mpyc-webrtc-peer: error: This session already has all 3 parties. "
        "Ask the person who created it for a new link.")
    assert [out.strip() for out, _ in outs] == ["sum = 3"] * 3


def test_peer_that_never_connects_times_out_with_a_clear_error(server):
    """Party 1 joins over signaling but never answers the WebRTC offer. (Two parties: an
    uploaded program with every opt-in; party 0 is a bare WebSocket that checks nothing.)"""
    url = server.create(2, "--program-file", str(PROGRAMS / "dot_sync.py"), "--no-privacy")
    session = session_id(url)
    token = JoinSecret.from_fragment(url.split("#", 1)[1]).token
    silent = server.ns.popen([sys.executable, "-c", f"""
import asyncio, aiohttp, json
async def main():
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect("{server.url}/ws") as ws:
            await ws.send_str(json.dumps({{"v": 1, "type": "join", "session": "{session}",
                                          "token": "{token}", "ready": True}}))
            await asyncio.sleep(60)
asyncio.run(main())
"""])
    server.wait_joined(url, 1)
    done = server.ns.run([str(BIN / "mpyc-webrtc-peer"), "join", url, "--trust-program",
                          "--accept-no-privacy", "--allow-loopback", "--connect-timeout", "3"],
                         timeout=TIMEOUT)
    silent.kill()
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "mpyc-webrtc-peer: error: Could not connect to party 1 (ICE new, connection new) "
        "within 3 s: it never answered. A party may have closed its page, lost its network "
        "or stopped.")


def test_program_error_is_reported_in_one_line(server, tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("from mpyc.runtime import mpc\nmpc.run(mpc.start())\n"
                      "raise ValueError('no data today')\n")
    url = server.create(2, "--program-file", str(script), "--no-privacy")
    procs = [start_peer(server.ns, url, "--trust-program", "--accept-no-privacy")
             for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 1
        assert err.strip().splitlines()[-1] == (
            "mpyc-webrtc-peer: error: The program 'broken.py' stopped with an error: "
            "ValueError: no data today")


def test_builtin_without_input_is_refused_before_joining(server):
    url = server.create(3, "--program", "sum")
    done = server.ns.run([str(BIN / "mpyc-webrtc-peer"), "join", url], timeout=TIMEOUT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        "mpyc-webrtc-peer: error: Please enter your numbers: ")
    assert done.stderr.strip().endswith("Give it with --input.")
    assert server.info(url)["joined"] == 0


def test_bad_input_is_refused_before_joining(server):
    url = server.create(3, "--program", "sum")
    done = server.ns.run([str(BIN / "mpyc-webrtc-peer"), "join", url, "--input", "3,x"])
    assert done.returncode == 2
    assert "whole numbers separated by commas" in done.stderr
    assert server.info(url)["joined"] == 0


def test_input_is_checked_by_the_sessions_program(server):
    url = server.create(3, "--program", "vote")
    done = server.ns.run([str(BIN / "mpyc-webrtc-peer"), "join", url, "--input", "maybe"])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "mpyc-webrtc-peer: error: Your vote must be yes or no (got 'maybe').")
    assert server.info(url)["joined"] == 0


def some_fragment() -> str:
    return JoinSecret(bytes(32), "ab" * 32).to_fragment()


def test_unreachable_server_is_a_clear_error():
    with Namespace() as ns:
        done = ns.run([str(BIN / "mpyc-webrtc-peer"), "join",
                       f"http://127.0.0.1:9/join/abc#{some_fragment()}", "--input", "1"])
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "mpyc-webrtc-peer: error: Could not reach the signaling server at ws://127.0.0.1:9/ws")


def test_create_against_unreachable_server():
    with Namespace() as ns:
        done = ns.run([str(BIN / "mpyc-webrtc-peer"), "create", "http://127.0.0.1:9",
                       "--parties", "3", "--program", "sum"])
    assert done.returncode == 1 and done.stdout == ""
    assert "Could not reach the signaling server" in done.stderr


def test_unknown_session(server):
    done = server.ns.run([str(BIN / "mpyc-webrtc-peer"), "join",
                          f"{server.url}/join/nosuchsession#{some_fragment()}", "--input",
                          "1"])
    assert done.returncode == 1
    assert "There is no session 'nosuchsession'" in done.stderr


def test_party_vanishing_mid_computation_stops_the_others(server):
    url = server.create(3, "--program-file", str(PROGRAMS / "vanish.py"))
    procs = [start_peer(server.ns, url, "--trust-program") for _ in range(3)]
    results = [p.communicate(timeout=TIMEOUT) + (p.returncode,) for p in procs]
    codes = sorted(code for _, _, code in results)
    assert codes == [1, 1, 3]
    for out, err, code in results:
        if code == 1:
            assert out == ""
            last = err.strip().splitlines()[-1]
            assert re.fullmatch(r"mpyc-webrtc-peer: error: (The computation cannot finish: "
                                r"party \d left the session|Party \d disconnected before the "
                                r"computation finished)\.", last), last


def test_a_party_busy_for_longer_than_the_silence_limit_is_waited_for(server):
    """Party 2's program computes for twice the silence limit without letting its event
    loop run (so its MPyC sends nothing, keepalives included): its peer connections still
    answer, and the others wait for its share instead of calling it gone."""
    from mpyc_webrtc.mesh import SILENCE_LIMIT

    url = server.create(3, "--program-file", str(PROGRAMS / "busy.py"),
                        "--args", f"--busy={2 * SILENCE_LIMIT}")
    outs = run_session(server, url, [["--trust-program"]] * 3)
    assert [out.strip() for out in outs] == [f"total = {1 + 2 + 3}"] * 3


def udp_datagrams_sent(ns: Namespace) -> int:
    snmp = ns.run(["cat", "/proc/net/snmp"]).stdout.splitlines()
    header, values = (line.split() for line in snmp if line.startswith("Udp:"))
    return int(values[header.index("OutDatagrams")])


def test_sacks_ride_on_data_packets(server):
    """With the SCTP tuning a multiplication round needs fewer UDP packets than
    aiortc's one-SACK-per-packet; counted in the namespace, both ways, same workload."""
    workload = str(Path(__file__).parent.parent / "bench" / "workload.py")
    sent = {}
    for tuning in ("0", "1"):
        url = server.create(3, "--program-file", workload, "--args", "--workload", "mul",
                            "--size", "300")
        before = udp_datagrams_sent(server.ns)
        procs = [server.ns.popen(["env", f"MPYC_WEBRTC_SCTP_TUNING={tuning}",
                                  str(BIN / "mpyc-webrtc-peer"), "join", url,
                                  "--allow-loopback", "--trust-program", "-q"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
        outs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs)
        assert '"ok": true' in "".join(outs)
        sent[tuning] = udp_datagrams_sent(server.ns) - before
    # Untuned: a DATA and a SACK per peer per round (about 4 per party per multiplication).
    assert sent["1"] < 0.85 * sent["0"], sent


def test_waiting_party_is_told_when_the_session_expires():
    with Namespace() as ns:
        # Long enough for the peer to start and join even on a busy machine (it must join
        # before the session expires to be told so), short enough to keep the test short.
        # (A party waiting in the lobby keeps a session from closing for idleness: it
        # closes at its --max-age.)
        server = Server(ns, 8080, "--max-age", "3")
        url = server.create(3, "--program", "sum")
        done = ns.run([str(BIN / "mpyc-webrtc-peer"), "join", url, "--input", "1"])
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "mpyc-webrtc-peer: error: The signaling server ended the session before all 3 "
        "parties joined: This session was closed because it has been open longer than the "
        "server allows.")


def test_waiting_party_is_told_when_the_server_shuts_down():
    import signal

    from mpyc_webrtc.sentences import say

    with Namespace() as ns:
        server = Server(ns, 8080, "--shutdown-timeout", "3")
        url = server.create(3, "--program", "sum")
        peer = ns.popen([str(BIN / "mpyc-webrtc-peer"), "join", url, "--input", "1"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        server.wait_joined(url, 1)
        server.proc.send_signal(signal.SIGTERM)
        _, err = peer.communicate(timeout=30)
        assert server.proc.wait(5) == 0
    assert peer.returncode == 1
    assert err.strip().splitlines()[-1] == (
        "mpyc-webrtc-peer: error: The signaling server ended the session before all 3 "
        f"parties joined: {say('server.shutting_down.lobby')}")


#: A TCP proxy (argv: listen port, upstream port) that prints "accepted" for each connection
#: and, on SIGUSR1, cuts every connection it carries ("cut N"), as a lost network would.
CUTTING_PROXY = """
import asyncio, signal, sys

listen, upstream = int(sys.argv[1]), int(sys.argv[2])
carried = set()

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

async def carry(reader, writer):
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
    pair = (writer, up_writer)
    carried.add(pair)
    print("accepted", flush=True)
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    carried.discard(pair)

def cut():
    for pair in list(carried):
        for writer in pair:
            writer.transport.abort()
    print("cut", len(carried), flush=True)
    carried.clear()

async def main():
    server = await asyncio.start_server(carry, "127.0.0.1", listen)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, cut)
    print("proxy on", listen, flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def test_a_party_that_loses_the_server_in_the_lobby_rejoins_and_keeps_its_place(server):
    """Party 0 reaches the server through a proxy that cuts its connection while it waits
    in the lobby: it reconnects with its resume secret, gets its place back, and the
    session computes with its input."""
    import signal

    proxy = server.ns.popen([sys.executable, "-c", CUTTING_PROXY, "8081", "8080"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proxy.stdout.readline().startswith("proxy on")
    url = server.create(3, "--program", "sum")
    first = start_peer(server.ns, url.replace("127.0.0.1:8080/", "127.0.0.1:8081/"),
                       "--input", "5")
    server.wait_joined(url, 1)
    proxy.send_signal(signal.SIGUSR1)
    lines = []
    while not lines or not lines[-1].startswith("cut"):
        lines.append(proxy.stdout.readline())
    assert int(lines[-1].split()[1]) >= 1  # the party's WebSocket, at least
    assert proxy.stdout.readline() == "accepted\n"  # it comes back...
    # ... and has its place again before the others come.
    deadline = time.monotonic() + 30
    while not any("back on a new connection" in line for line in list(server.log)):
        assert time.monotonic() < deadline, "party 0 did not get its place back"
        time.sleep(0.1)
    others = [start_peer(server.ns, url, "--input", x) for x in ("7", "30")]
    results = [p.communicate(timeout=TIMEOUT) + (p.returncode,) for p in [first, *others]]
    for _out, err, code in results:
        assert code == 0, f"party failed ({code}):\n{err[-3000:]}"
    assert [out.strip() for out, _, _ in results] == ["sum = 42"] * 3
    err = results[0][1]
    assert JOINED.search(err).group(1) == "1"  # pid 0: people count from 1
    assert say("reconnect.lost", attempt=1) in err
    assert say("reconnect.back", who=place(0)) in err
    assert not any(JOINED.search(e).group(1) == "1" for _, e, _ in results[1:])


def test_join_timeout(server):
    url = server.create(3, "--program", "sum")
    done = server.ns.run([str(BIN / "mpyc-webrtc-peer"), "join", url, "--input", "1",
                          "--join-timeout", "1"])
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "mpyc-webrtc-peer: error: Not all 3 parties joined within 1 s.")


# -- What a person agrees to: how private the session is, and an uploaded program --------------

ERROR = "mpyc-webrtc-peer: error: "


def create_output(server: Server, parties: int, *options: str) -> tuple[str, str]:
    """``create`` as a person runs it: (all it printed, the join link)."""
    done = server.ns.run([str(BIN / "mpyc-webrtc-peer"), "create", server.url, "--parties",
                          str(parties), "--no-qr", *options])
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stdout.strip().splitlines()[-1]


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_create_says_how_private_the_session_is(server):
    out, _ = create_output(server, 3, "--program", "sum")
    assert launch.privacy_sentence(launch.privacy(3, [])) in out.splitlines()
    assert ("Private unless 2 parties collude: nobody sees your input, not even the server, "
            "unless 2 of the 3 parties work together.") in out.splitlines()
    out, _ = create_output(server, 2, "--program-file", str(PROGRAMS / "total.py"),
                           "--no-privacy")
    assert say("privacy.none") in out.splitlines()


@pytest.mark.parametrize("parties, program, args", [
    (2, ("--program-file", str(PROGRAMS / "total.py")), []),  # two parties: threshold 0
    (3, ("--program", "sum"), ["-T0"]),
    (5, ("--program", "sum"), ["-T1"]),  # below MPyC's default of 2
], ids=["two-parties", "T0", "T-below-default"])
def test_joining_a_weak_session_needs_the_persons_word(server, parties, program, args):
    # The creator opted in (without --no-privacy, create refuses: tests/test_consent.py).
    _, url = create_output(server, parties, *program, "--no-privacy",
                           *(["--args", *args] if args else []))
    done = server.ns.run([str(BIN / "mpyc-webrtc-peer"), "join", url, "--input", "1",
                          "--trust-program", "--allow-loopback"], timeout=TIMEOUT)
    sentence = launch.privacy_sentence(launch.privacy(parties, args))
    assert (done.returncode, done.stdout) == (2, "")
    assert last_line(done.stderr) == f"{ERROR}{sentence} {ACCEPT_HINT}"
    assert server.info(url)["joined"] == 0  # refused before it took a place
    if parties == 5:
        assert sentence == ("Less private than it could be: your input stays secret only "
                            "unless 2 parties collude, where with 5 parties it could take 3.")
    else:
        assert sentence == say("privacy.none")


def test_two_parties_compute_once_everyone_accepts_no_privacy(server):
    _, url = create_output(server, 2, "--program-file", str(PROGRAMS / "total.py"),
                           "--no-privacy")
    procs = [start_peer(server.ns, url, "--input", x, "--trust-program", "--accept-no-privacy")
             for x in ("20", "22")]
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err[-3000:]
        assert out.strip() == "total = 42"
        # Told right after joining, before anything was computed.
        lines = err.splitlines()
        joined = next(i for i, line in enumerate(lines) if line.startswith("Joined session "))
        assert lines[joined + 1] == say("privacy.none")


def saved_program(url: str, name: str) -> Path:
    """Where a native peer saves the uploaded program it was asked to run."""
    return Path(tempfile.gettempdir()) / f"mpyc-webrtc-{session_id(url)}-{name}"


def test_uploaded_program_runs_only_with_trust_program_without_a_terminal(server):
    url = server.create(3, "--program-file", str(PROGRAMS / "total.py"))
    done = server.ns.run([str(BIN / "mpyc-webrtc-peer"), "join", url, "--input", "1",
                          "--allow-loopback"], timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    path = saved_program(url, "total.py")
    program = {"name": "total.py", "args": [], "builtin": False,
               "source": (PROGRAMS / "total.py").read_text()}
    assert (done.returncode, done.stdout) == (2, "")
    assert last_line(done.stderr) == ERROR + CONSENT_NEEDED.format(
        path=path, fingerprint=launch.fingerprint(program))
    assert last_line(done.stderr) == (
        f"{ERROR}This session runs a program uploaded by the session's creator (fingerprint "
        f"{launch.fingerprint(program)}), which would run on this computer with your rights. "
        f"It is saved in {path}: read it, and if you trust it, join again with "
        "--trust-program.")
    assert path.read_text() == program["source"]  # to be read first
    assert server.info(url)["joined"] == 0  # before it took a place


class Terminal:
    """The other end of a pseudo-terminal a peer's stdin and stderr are attached to: what
    it shows the person, and what they type."""

    def __init__(self, fd: int):
        self.fd = fd
        self.shown = b""
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the peer closed its end
                chunk = b""
            with self._changed:
                self.shown += chunk
                self._changed.notify_all()
            if not chunk:
                return

    def wait_until(self, shown: Callable[[str], bool], what: str,
                   timeout: float = TIMEOUT) -> str:
        with self._changed:
            if not self._changed.wait_for(lambda: shown(self.text()), timeout):
                raise AssertionError(f"the terminal never showed {what}:\n{self.text()}")
        return self.text()

    def wait_for(self, text: str, timeout: float = TIMEOUT) -> str:
        return self.wait_until(lambda shown: text in shown, repr(text), timeout)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def text(self) -> str:
        return self.shown.decode(errors="replace").replace("\r\n", "\n")


def join_on_a_terminal(server: Server, url: str, *args: str) -> tuple[subprocess.Popen, Terminal]:
    """``join`` with a terminal as its stdin and stderr (stdout, the result, is a pipe)."""
    ours, theirs = pty.openpty()
    proc = server.ns.popen([str(BIN / "mpyc-webrtc-peer"), "join", url, "--allow-loopback",
                            *args], stdin=theirs, stdout=subprocess.PIPE, stderr=theirs,
                           text=True)
    os.close(theirs)
    return proc, Terminal(ours)


def ask(server: Server) -> tuple[str, subprocess.Popen, Terminal]:
    """A session of an uploaded program, and a peer on a terminal that was just asked
    whether to run it (checked: before it joined, it showed what the person must see)."""
    url = server.create(3, "--program-file", str(PROGRAMS / "total.py"))
    source = (PROGRAMS / "total.py").read_text()
    shown = launch.fingerprint({"name": "total.py", "args": [], "builtin": False,
                                "source": source})
    path = saved_program(url, "total.py")
    proc, terminal = join_on_a_terminal(server, url, "--input", "5")
    asked = terminal.wait_for("[y/N]")
    # Its code, where it is saved, its fingerprint and the question, before it joins.
    assert UPLOADED.format(path=path, fingerprint=shown) in asked
    assert f"----- {path.name} -----\n{source.rstrip()}\n----- end of {path.name} -----" in asked
    assert asked.rstrip().endswith(QUESTION.format(fingerprint=shown))
    assert server.info(url)["joined"] == 0
    return url, proc, terminal


def test_on_a_terminal_answering_n_runs_nothing(server):
    url, proc, terminal = ask(server)
    terminal.type("n\n")
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert (proc.returncode, out) == (2, "")
    said = terminal.wait_for("nothing was run")
    assert said.rstrip().endswith(ERROR + REFUSED.format(path=saved_program(url, "total.py")))
    assert server.info(url)["joined"] == 0


def test_on_a_terminal_answering_y_runs_the_program(server):
    url, proc, terminal = ask(server)
    terminal.type("y\n")
    others = [start_peer(server.ns, url, "--input", x, "--trust-program") for x in ("10", "27")]
    try:
        # join.py asks once more after the welcome (test_on_a_terminal_the_person_is_asked_
        # only_once): the person gives the same answer.
        answered = 1
        while proc.poll() is None:
            if terminal.text().count("[y/N]") > answered:
                terminal.type("y\n")
                answered += 1
            time.sleep(0.1)
        outs = [p.communicate(timeout=TIMEOUT)[0] for p in [proc, *others]]
    finally:
        for p in [proc, *others]:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in [proc, *others]] == [0, 0, 0], terminal.text()
    assert [out.strip() for out in outs] == ["total = 42"] * 3


def test_on_a_terminal_the_person_is_asked_only_once(server):
    _url, proc, terminal = ask(server)
    try:
        terminal.type("y\n")
        # Joined (the session's panel: "You are party 0 of 3 ..."), or asked again.
        shown = terminal.wait_until(
            lambda text: "You are " in text or text.count("[y/N]") > 1,
            "the session's panel or a second question")
    finally:
        proc.kill()
        proc.wait()
    assert shown.count("[y/N]") == 1, shown[-2000:]


def test_a_script_that_starts_mpyc_twice(server):
    """Two ``async with mpc:`` blocks, as several of MPyC's demos have: each block
    starts and shuts down MPyC; both compute."""
    url = server.create(3, "--program-file", str(E2E_PROGRAMS / "two_blocks.py"))
    outs = run_session(server, url, [["--trust-program", "--input", str(n)] for n in (2, 3, 4)])
    assert [out.split("\n")[:2] for out in outs] == [["sum = 9", "product = 24"]] * 3


def test_message_recovery_switched_off_on_every_party_still_computes(server):
    url = server.create(3, "--program", "sum")
    env = {**os.environ, "MPYC_WEBRTC_RECOVERY": "0"}
    procs = [server.ns.popen([str(BIN / "mpyc-webrtc-peer"), "join", url, "--allow-loopback",
                              "--input", str(n)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for n in (1, 2, 3)]
    outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    assert all(out.startswith("sum = 6") for out, _ in outs)


def test_a_party_without_message_recovery_is_refused_in_words(server):
    """Party 0 switched message recovery off (or runs an old version): the others, which
    frame their messages, say what is wrong as soon as its first bytes come, and nobody
    computes on garbled bytes."""
    url = server.create(3, "--program", "sum")

    def join(n: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        return server.ns.popen([str(BIN / "mpyc-webrtc-peer"), "join", url,
                                "--allow-loopback", "--input", str(n)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    plain = join(1, {**os.environ, "MPYC_WEBRTC_RECOVERY": "0"})
    assert plain.stderr is not None
    # Its own key comes first (made for this test), then: joined, as party 0, the first to
    # send.
    said = [plain.stderr.readline() for _ in range(3)]
    assert any("joined as party 0 of 3" in line for line in said), said
    framing = [join(2), join(3)]
    outs = [p.communicate(timeout=TIMEOUT) for p in framing]
    plain.communicate(timeout=TIMEOUT)
    assert plain.returncode != 0
    for proc, (out, err) in zip(framing, outs, strict=True):
        assert proc.returncode == 1 and out == "", err
        assert err.strip().splitlines()[-1] == (
            "mpyc-webrtc-peer: error: The link to party 1 broke: the two sides send their "
            "messages differently (it is not a frame of mpyc-webrtc's message recovery). One "
            "side has message recovery switched off, or runs another version of mpyc-webrtc.")
