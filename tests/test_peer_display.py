"""What ``mpyc-webrtc-peer`` shows on stderr: the roster formatting (pure), the status
display in plain and terminal mode, and ``create``'s output against a real server."""

from __future__ import annotations

import asyncio
import io
import re

import pytest

from mpyc_webrtc.native import console
from mpyc_webrtc.native.cli import parser
from mpyc_webrtc.native.console import (
    StatusDisplay,
    elapsed,
    joined_line,
    pair_line,
    party_name,
    roster_changes,
    roster_lines,
)
from mpyc_webrtc.native.create import input_hint
from mpyc_webrtc.native.errors import Failure
from mpyc_webrtc.native.join import parse_join_url
from mpyc_webrtc.sealing import JoinSecret
from mpyc_webrtc.sentences import say
from testbed.netns import BIN, Namespace, Server

WELCOME = {
    "v": 1, "type": "welcome", "session": "s3ss10n", "pid": 1, "parties": 3,
    "program": {"name": "average", "args": [], "builtin": True},
    "labels": ["hospital A", "hospital B", ""], "ice_servers": [],
}


def member(pid, state="joined", ready=False, name=None, label=""):
    return {"pid": pid, "name": name or f"party {pid}", "label": label, "state": state,
            "ready": ready}


def roster(members, pairs=(), started=False, round_=0, parties=3):
    return {"v": 1, "type": "roster", "parties": parties, "members": list(members),
            "pairs": list(pairs), "started": started, "round": round_}


LOBBY = roster([member(0, ready=True, name="alice", label="hospital A"),
                member(1, label="hospital B")])
FULL = roster([member(0, ready=True, name="alice", label="hospital A"),
               member(1, ready=True, label="hospital B"), member(2, ready=True)])
STARTED = roster([member(0, label="hospital A", name="alice"),
                  member(1, "connected", label="hospital B"), member(2)],
                 pairs=[{"a": 0, "b": 1, "state": "ready", "path": "direct"},
                        {"a": 0, "b": 2, "state": "connecting", "path": None},
                        {"a": 1, "b": 2, "state": "connected", "path": "relayed"}],
                 started=True, round_=1)


def test_joined_line_names_party_label_program_and_fingerprint():
    assert joined_line(WELCOME, "abcd 1234 5678") == (
        "Joined session s3ss10n as party 2 (hospital B) of 3; program 'Average salary', "
        "fingerprint abcd 1234 5678")


def test_joined_line_of_an_uploaded_script_with_arguments():
    welcome = {**WELCOME, "pid": 2, "program": {"name": "stats.py", "args": ["-T0", "2"],
                                                "builtin": False, "source": "x = 1\n"}}
    assert joined_line(welcome, "f00d") == (
        "Joined session s3ss10n as party 3 of 3; program 'stats.py' with arguments "
        "'-T0 2', fingerprint f00d")


def test_party_names():
    assert party_name(0) == "party 1"
    assert party_name(0, "hospital A", "party 0") == "party 1 (hospital A)"
    assert party_name(1, "", "bob", me=1) == 'party 2 "bob" (you)'
    # Names come from other parties: no terminal control sequences get through.
    assert party_name(2, "", "evil\x1b[2J\nname") == 'party 3 "evil?[2J?name"'


def test_lobby_lines():
    assert roster_lines(LOBBY, me=1) == [
        'Party 1 (hospital A) "alice": ready',
        "Party 2 (hospital B) (you): in the lobby, choosing an input",
        "Waiting for 1 more party (2 of 3 here, 1 ready).",
    ]
    assert roster_lines(FULL, me=1)[-1] == "All 3 parties are here and ready."
    almost = roster([member(0, ready=True), member(1), member(2)])
    assert roster_lines(almost)[-1] == "All 3 parties are here; waiting for 2 parties to be ready."


def test_a_party_whose_browser_cannot_take_part_is_shown_with_why():
    lobby = roster([member(0, ready=True), member(1, ready=True),
                    {**member(2, "unsupported", name="carol"), "lacks": ["webrtc", "isolation"]}])
    assert roster_lines(lobby, me=0) == [
        "Party 1 (you): ready", "Party 2: ready",
        'Party 3 "carol": cannot take part: its browser lacks WebRTC data channels and '
        "cross-origin isolation (SharedArrayBuffer)",
        'Waiting for party 3 "carol" to take part from another browser (its own cannot).']


def test_started_lines_show_each_pair_and_its_path():
    assert roster_lines(STARTED, me=1) == [
        'Party 1 (hospital A) "alice": connecting',
        "Party 2 (hospital B) (you): computing",
        "Party 3: connecting",
        "Round 1 started: the parties connect to each other and compute.",
        "Link 1<->2: ready (direct)",
        "Link 1<->3: connecting",
        "Link 2<->3: connected (relayed)",
    ]
    done = roster([member(0, "done"), member(1, "done", ready=True), member(2, "left")],
                  started=True, round_=1)
    assert roster_lines(done) == ["Party 1: finished", "Party 2: finished, wants to run again",
                                  "Party 3: left the session", "Round 1 finished."]


def test_pair_line_leaves_out_unknown_paths():
    assert pair_line({"a": 0, "b": 1, "state": "ready", "path": None}) == "Link 1<->2: ready"
    assert pair_line({"a": 2, "b": 3, "state": "failed", "path": None}) == (
        "Link 3<->4: could not connect")
    assert pair_line({"a": 0, "b": 1, "state": "closed", "path": "relayed"}) == (
        "Link 1<->2: closed (relayed)")


def test_changes_are_only_what_is_new():
    assert roster_changes(None, LOBBY, 1) == roster_lines(LOBBY, 1)
    assert roster_changes(LOBBY, LOBBY, 1) == []
    assert roster_changes(LOBBY, FULL, 1) == [
        "Party 2 (hospital B) (you): ready",
        "Party 3: ready",
        "All 3 parties are here and ready.",
    ]


def test_a_party_leaving_the_lobby_is_named():
    left = roster([member(1, label="hospital B")])
    assert roster_changes(LOBBY, left, 1) == [
        'Party 1 (hospital A) "alice": left the session',
        "Waiting for 2 more parties (1 of 3 here, 0 ready).",
    ]


def test_elapsed():
    assert elapsed(0.42) == "0.4 s"
    assert elapsed(12.4) == "12 s"
    assert elapsed(185) == "3 min 05 s"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_plain_display_prints_one_line_per_change():
    out, clock = io.StringIO(), Clock()
    display = StatusDisplay(out, terminal=False, clock=clock)
    display.joined(WELCOME, "abcd")
    display.roster(LOBBY)
    display.roster(LOBBY)  # nothing new: nothing printed
    display.roster(FULL)
    display.roster(STARTED)
    clock.now += 2.345
    display.finished()
    display.close()
    text = out.getvalue()
    assert "\x1b" not in text
    lines = text.splitlines()
    assert lines == [joined_line(WELCOME, "abcd"), *roster_lines(LOBBY, 1),
                     *roster_changes(LOBBY, FULL, 1), *roster_changes(FULL, STARTED, 1),
                     "Finished in 2.3 s."]


def test_plain_display_reports_progress_while_running_and_failure():
    out, clock = io.StringIO(), Clock()
    display = StatusDisplay(out, terminal=False, clock=clock)
    display.joined(WELCOME, "abcd")

    async def run():
        display.roster(STARTED)  # starts the progress timer on this loop
        await asyncio.sleep(0)
        clock.now += 11
        display._tick()
        display._tick()  # not due again before 30 s
        clock.now += 20
        display._tick()
        display.failed()

    asyncio.run(run())
    lines = out.getvalue().splitlines()
    assert lines[-3:] == ["Still computing after 11 s.", "Still computing after 31 s.",
                          "Failed after 31 s."]


def test_failure_before_the_start_adds_nothing():
    out = io.StringIO()
    display = StatusDisplay(out, terminal=False)
    display.joined(WELCOME, "abcd")
    display.failed()
    assert out.getvalue().splitlines() == [joined_line(WELCOME, "abcd")]


class Writes(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_each_plain_line_is_one_write():
    """The display writes from the network thread and the log from MPyC's: a line written
    in two pieces (text, then its end) let a log record land in between ("… fingerprint
    6RJM-3ZYU-3QP7-CV3H.2026-12-07 … Install package gmpy2")."""
    out = Writes()
    display = StatusDisplay(out, terminal=False)
    display.joined(WELCOME, "abcd")
    display.tell("party 2: Carol")
    assert out.writes and all(w.endswith("\n") and w.count("\n") == 1 for w in out.writes)
    assert out.writes[-1] == "party 2: Carol\n"


def test_quiet_display_prints_nothing():
    out = io.StringIO()
    display = StatusDisplay(out, enabled=False, terminal=True)
    display.joined(WELCOME, "abcd")
    display.roster(STARTED)
    display.finished()
    assert out.getvalue() == ""
    assert display.guard(out) is out


def test_terminal_display_is_styled_and_clears_its_status_line():
    out, clock = io.StringIO(), Clock()
    display = StatusDisplay(out, terminal=True, clock=clock)
    stdout = io.StringIO()
    guarded = display.guard(stdout)

    async def run():
        display.joined(WELCOME, "abcd 1234")
        display.roster(STARTED)
        clock.now += 1.5
        display._tick()  # draws the status line
        assert out.getvalue().endswith("Computing… 1.5 s")
        guarded.write("The answer\n")  # the program's output clears it first
        assert out.getvalue().endswith("\r\x1b[2K")
        display.finished()

    asyncio.run(run())
    text = out.getvalue()
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    assert "\x1b[" in text  # styled
    assert "Average salary" in plain and "abcd 1234" in plain
    assert "Link 2<->3: connected (relayed)" in plain
    assert plain.rstrip().endswith("Finished in 1.5 s.")
    assert stdout.getvalue() == "The answer\n"


def test_input_hints_follow_the_program():
    assert input_hint({"name": "vote", "builtin": True}) == " --input yes|no"
    assert input_hint({"name": "santa", "builtin": True}) == ""
    assert input_hint({"name": "average", "builtin": True}) == " --input YOUR_NUMBER"
    assert input_hint({"name": "sum", "builtin": True}) == " --input N,N,..."
    assert input_hint({"name": "x.py", "builtin": False}) == ""


def test_create_offers_every_catalog_program():
    for name in console.programs.CATALOG:
        args = parser().parse_args(["create", "http://h", "-m", "3", "--program", name])
        assert args.program == name
    with pytest.raises(SystemExit):
        parser().parse_args(["create", "http://h", "-m", "3", "--program", "nope"])


LINK = r"http://127\.0\.0\.1:8080/join/[A-Za-z0-9_-]+#k=[A-Za-z0-9_-]{43}&p=[0-9a-f]{64}"


def test_join_link_needs_its_fragment():
    secret = JoinSecret(bytes(range(32)), "ab" * 32)
    assert parse_join_url(f"http://h:1/x/join/ID#{secret.to_fragment()}") == (
        "http://h:1/x", "ID", secret)
    with pytest.raises(Failure) as excinfo:
        parse_join_url("http://h:1/join/ID")
    assert excinfo.value.code == 2 and str(excinfo.value) == say("link.missing_secret")
    with pytest.raises(Failure) as excinfo:
        parse_join_url(f"http://h:1/join/ID#{secret.to_fragment()[:-3]}")
    assert excinfo.value.code == 2 and "is damaged" in str(excinfo.value)
    with pytest.raises(Failure) as excinfo:
        parse_join_url("ftp://h/join/ID")
    assert excinfo.value.code == 2 and "is not a join link" in str(excinfo.value)


@pytest.mark.netns
def test_create_prints_the_link_last_on_stdout_and_a_qr_code_on_stderr():
    create = [str(BIN / "mpyc-webrtc-peer"), "create", "http://127.0.0.1:8080",
              "--parties", "3", "--program", "vote"]
    with Namespace() as ns:
        server = Server(ns)
        done = ns.run([*create, "--labels", "hospital A", "hospital B"])
        quiet = ns.run([*create, "--no-qr"])
        assert done.returncode == 0 and quiet.returncode == 0, done.stderr + quiet.stderr
        url = done.stdout.strip().splitlines()[-1]
        assert re.fullmatch(LINK, url)
        info = server.info(url)
    assert info["labels"] == ["hospital A", "hospital B", ""]
    assert "    party 1: hospital A" in done.stdout
    # Quoted for a shell: '#' and '&' would cut the command short.
    assert f"mpyc-webrtc-peer join '{url}' --input yes|no" in done.stdout
    assert f"fingerprint {info['program']['fingerprint']}." in done.stdout
    # The link carries the secret and the program's hash; the server knows neither the
    # secret nor the token, only the token's hash.
    secret = JoinSecret.from_fragment(url.split("#", 1)[1])
    assert secret.program_hash == info["program"]["hash"]
    assert secret.fingerprint == info["program"]["fingerprint"]
    assert secret.secret.hex() not in str(info) and secret.token not in str(info)
    # The QR code: half blocks on stderr only, as many rows as columns (/2, compact).
    assert "█" not in done.stdout
    qr = [line for line in done.stderr.splitlines() if "█" in line]
    assert len(qr) >= 10 and len({len(line) for line in qr}) == 1
    assert "█" not in quiet.stderr
    assert re.fullmatch(LINK, quiet.stdout.strip().splitlines()[-1])
    assert quiet.stdout.strip().splitlines()[-1] != url  # a new secret for every session


def _pc_with_pair(local: str, remote: str):
    from types import SimpleNamespace as NS

    pair = NS(local_candidate=NS(type=local), remote_candidate=NS(type=remote))
    connection = NS(_nominated={1: pair})
    return NS(sctp=NS(transport=NS(transport=NS(_connection=connection))))


def test_link_path_from_the_nominated_ice_pair():
    from mpyc_webrtc.native.ice import ice_path

    assert ice_path(_pc_with_pair("host", "host")) == "direct"
    assert ice_path(_pc_with_pair("srflx", "prflx")) == "direct"
    assert ice_path(_pc_with_pair("relay", "host")) == "relayed"
    assert ice_path(_pc_with_pair("host", "relay")) == "relayed"
    assert ice_path(object()) is None  # not connected (or aiortc changed): no path
