"""Identities, pinned places, chat and known identities with real native peers.

Each person has a key file of their own (``join --identity``), made with
``mpyc-webrtc-peer identity``, whose did:key and fingerprint the others must show as
verified. The peers run in a network namespace of their own with the signaling server
(testbed/netns.py); the command-line checks at the top open no connection at all.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mpyc_webrtc.identity import Identity
from mpyc_webrtc.native.cli import main, parser
from mpyc_webrtc.native.errors import Failure
from mpyc_webrtc.sentences import say
from testbed.netns import BIN, Namespace, PeerRun, Server, start_peer

PEER = str(BIN / "mpyc-webrtc-peer")
TIMEOUT = 120
ERROR = "mpyc-webrtc-peer: error: "
LABELS = ("hospital A", "hospital B", "hospital C")


@dataclass
class Person:
    name: str
    key: Path
    did: str
    fingerprint: str


def person(tmp_path: Path, name: str, folder: str | None = None) -> Person:
    """A person with a key file of their own, as ``mpyc-webrtc-peer identity`` shows it."""
    key = tmp_path / (folder or name) / "identity.pem"
    done = subprocess.run([PEER, "identity", "--identity", str(key)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    did, shown = done.stdout.splitlines()
    assert shown.startswith("fingerprint ")
    assert did.startswith("did:key:z6Mk")
    return Person(name, key, did, shown.removeprefix("fingerprint "))


@dataclass
class Run(PeerRun):
    who: Person


def join(ns: Namespace, url: str, who: Person, *args: str, name: str | None = None):
    return start_peer(ns, url, "--identity", str(who.key), "--name", name or who.name,
                      "--connect-timeout", "20", *args)


def finish(people: list[Person], procs: list[subprocess.Popen]) -> list[Run]:
    runs = []
    for who, proc in zip(people, procs, strict=True):
        out, err = proc.communicate(timeout=TIMEOUT)
        runs.append(Run(proc.returncode, out, err, who))
    return runs


def report(runs: list[Run]) -> str:
    return "\n\n".join(f"{r.who.name} exit {r.code}:\n{r.err[-4000:]}" for r in runs)


def who(pid: int, labels: tuple[str, ...] = ()) -> str:
    """Place ``pid`` as people read it: they count parties from 1."""
    return f"'{labels[pid]}' (party {pid + 1})" if labels else f"party {pid + 1}"


def verified(run: Run, labels: tuple[str, ...] = (), name: str | None = None) -> str:
    """How the others show ``run``'s party: its place, name, did:key and fingerprint."""
    return (f"{who(run.pid, labels)}: {name or run.who.name}, {run.who.did} (verified), "
            f"fingerprint {run.who.fingerprint}")


# -- the command line, without a network -------------------------------------------------------

def fails(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as ended:
        main(list(argv))
    return ended.value.code, capsys.readouterr().err.strip().splitlines()[-1]


def test_create_refuses_a_pin_it_cannot_use(capsys, tmp_path):
    nowhere = ("create", "http://127.0.0.1:9", "--parties", "3", "--program", "sum",
               "--no-qr", "--labels", *LABELS)
    did = Identity.from_seed(bytes(32)).did
    assert fails(capsys, *nowhere, "--pin", "hospital A") == (2, (
        f"{ERROR}--pin wants PLACE=did:key:..., as in --pin \"hospital A=did:key:z6Mk...\" "
        "(or PLACE=me for your own key); not 'hospital A'."))
    assert fails(capsys, *nowhere, "--pin", f"hospital Z={did}") == (2, (
        f"{ERROR}--pin 'hospital Z={did}': this session has no place 'hospital Z'; its places "
        "are 'hospital A' (party 1), 'hospital B' (party 2), 'hospital C' (party 3)."))
    # Places are numbered as people count them, from 1: "party 2" is the second.
    assert fails(capsys, *nowhere, "--pin", "party 2=did:key:z6MkNOPE") == (2, (
        f"{ERROR}--pin for the place 'hospital B' (party 2): 'did:key:z6MkNOPE' is not a key "
        "('O' is not a base58 character); give the whole did:key that mpyc-webrtc-peer "
        "identity prints."))
    assert fails(capsys, *nowhere, "--pin", f"hospital a={did}", "--pin", f"1={did}") == (
        2, f"{ERROR}--pin: the place 'hospital A' (party 1) is given a key twice.")
    # All of it before contacting the server (nothing listens at port 9), and without
    # making a key: only PLACE=me needs one.
    assert fails(capsys, *nowhere, "--pin", f"HOSPITAL  c={did}")[1].startswith(
        f"{ERROR}Could not reach the signaling server")
    key = tmp_path / "me" / "identity.pem"
    assert fails(capsys, *nowhere, "--pin", "party 3=me", "--identity", str(key))[1].startswith(
        f"{ERROR}Could not reach the signaling server")
    assert key.exists()


def test_join_refuses_a_damaged_known_identities_file(tmp_path):
    known = tmp_path / "known.json"
    known.write_text("{")
    args = parser().parse_args(["join", "http://127.0.0.1:9/join/abc#k=" + "A" * 43 + "&p="
                                + "0" * 64, "--identity", str(tmp_path / "key.pem"),
                                "--known", str(known)])
    with pytest.raises(Failure) as failed:  # before contacting anyone
        args.run(args)
    assert failed.value.code == 2
    assert str(failed.value).startswith(
        f"The known identities file {known} cannot be used (it is not JSON")


# -- real peers ----------------------------------------------------------------------------------

@pytest.mark.netns
def test_three_peers_show_each_others_verified_keys_and_chat(tmp_path):
    people = [person(tmp_path, name) for name in ("Alice", "Bob", "Carol")]
    inputs = ["5", "-3", "1000"]
    says = {"Alice": ["hello from Alice"], "Bob": ["Bob here", "two\nlines \x1b[31mred"]}
    with Namespace() as ns:
        server = Server(ns)
        url = server.create(3, "--program", "sum")
        procs = [join(ns, url, p, "--input", x,
                      *(arg for text in says.get(p.name, []) for arg in ("--say", text)))
                 for p, x in zip(people, inputs, strict=True)]
        runs = finish(people, procs)
    text = report(runs)
    assert [r.code for r in runs] == [0, 0, 0], text
    assert [r.out.strip() for r in runs] == ["sum = 1002"] * 3, text
    for run in runs:
        me = run.who
        assert f"You are {me.did} (fingerprint {me.fingerprint})." in run.lines(), text
        for other in runs:
            if other is run:
                continue
            # Who the other party is: its key, checked on the connection to it; and new.
            assert f"{verified(other)}: new key" in run.lines(), text
            # What it wrote, as text (control characters escaped), with its fingerprint.
            for said in says.get(other.who.name, []):
                shown = said.replace("\n", "\\n").replace("\x1b", "\\x1b")
                assert re.search(rf"^party {other.pid + 1} {other.who.name} "
                                 rf"\[{other.who.fingerprint}(, verified)?\]: "
                                 rf"{re.escape(shown)}$", run.err, re.M), text
        assert "\x1b" not in run.err, text
        # Nobody is shown its own words as someone else's.
        assert not re.search(rf"\[{me.fingerprint}.*\]: ", run.err), text
    # Known identities were recorded next to each key.
    alice = json.loads((people[0].key.parent / "known.json").read_text())["identities"]
    assert {did: entry["name"] for did, entry in alice.items()} == {
        people[1].did: "Bob", people[2].did: "Carol"}


@pytest.mark.netns
def test_a_pinned_place_admits_only_its_key(tmp_path):
    alice, bob, carol = (person(tmp_path, name) for name in ("Alice", "Bob", "Carol"))
    with Namespace() as ns:
        server = Server(ns)
        created = ns.run([PEER, "create", server.url, "--parties", "3", "--program", "sum",
                          "--no-qr", "--labels", *LABELS, "--pin", f"hospital A={alice.did}"])
        assert created.returncode == 0, created.stderr
        url = created.stdout.strip().splitlines()[-1]
        # No such place: the person is told which there are.
        nowhere = join(ns, url, bob, "--input", "1", "--place", "hospital Z")
        # Alice's place, with Bob's key: the server refuses.
        taken = join(ns, url, bob, "--input", "1", "--place", "HOSPITAL  a")
        early = finish([bob, bob], [nowhere, taken])
        joined = server.info(url)["joined"]
        runs = finish([alice, bob, carol], [join(ns, url, alice, "--input", "2", "--place",
                                                 "hospital a"),
                                            join(ns, url, bob, "--input", "3"),
                                            join(ns, url, carol, "--input", "4", "--place",
                                                 "party 3")])
    assert (f"    party 1: hospital A, kept for {alice.did} (fingerprint {alice.fingerprint})"
            in created.stdout.splitlines())
    text = report(early + runs)
    assert (early[0].code, early[0].last) == (2, (
        f"{ERROR}This session has no place 'hospital Z'. Its places are 'hospital A' (party 1), "
        "'hospital B' (party 2), 'hospital C' (party 3); give one as --place LABEL or "
        "--place 'party N'.")), text
    assert (early[1].code, early[1].last) == (1, (
        f"{ERROR}The place 'hospital A' (party 1) is kept for someone else's key (fingerprint "
        f"{alice.fingerprint}); you joined with {bob.fingerprint}. If it should be yours, ask "
        "the person who created the session to pin your key (the join page shows it; on a "
        "terminal, mpyc-webrtc-peer identity).")), text
    assert joined == 0
    assert [r.code for r in runs] == [0, 0, 0], text
    assert [r.out.strip() for r in runs] == ["sum = 9"] * 3, text
    assert [r.pid for r in runs] == [0, 1, 2], text
    for run in runs[1:]:
        assert f"{verified(runs[0], LABELS)}: new key" in run.lines(), text


@pytest.mark.netns
def test_known_identities_are_recognised_the_next_time(tmp_path):
    alice, bob, carol = (person(tmp_path, name) for name in ("Alice", "Bob", "Carol"))
    # Someone else, with a key of their own, who calls themselves Carol.
    mallory = person(tmp_path, "Carol", folder="Mallory")
    with Namespace() as ns:
        server = Server(ns)
        url = server.create(3, "--program", "sum")
        first = finish([alice, bob, carol],
                       [join(ns, url, p, "--input", "1") for p in (alice, bob, carol)])
        text = report(first)
        assert [r.code for r in first] == [0, 0, 0], text
        records = json.loads((alice.key.parent / "known.json").read_text())["identities"]
        day = records[bob.did]["last"][:10]
        url = server.create(3, "--program", "sum")
        second = finish([alice, bob, mallory],
                        [join(ns, url, alice, "--input", "1"),
                         join(ns, url, bob, "--input", "1", name="Robert"),
                         join(ns, url, mallory, "--input", "1")])
    text = report(second)
    assert [r.code for r in second] == [0, 0, 0], text
    a, b, m = second
    lines = a.lines()
    assert (f"{verified(b, name='Robert')}: you computed with this key before, as 'Bob', "
            "now 'Robert'") in lines, text
    assert f"{verified(m)}." in lines, text
    assert say("known.name_reused", name="Carol", fingerprint=carol.fingerprint) in lines, text
    assert (f"{verified(a)}: you computed with this key before, as 'Alice' (once, last on "
            f"{day})") in b.lines(), text
    assert f"{verified(a)}: new key" in m.lines(), text
    records = json.loads((alice.key.parent / "known.json").read_text())["identities"]
    assert records[bob.did]["count"] == 2 and records[bob.did]["name"] == "Robert"
    assert records[mallory.did]["name"] == "Carol" and records[carol.did]["count"] == 1


#: An uploaded program that keeps the parties connected for a while after they connect.
LINGER = """\
import asyncio
from mpyc.runtime import mpc

mpc.run(mpc.start())
mpc.run(asyncio.sleep(4))
mpc.run(mpc.shutdown())
print("done")
"""


@pytest.mark.netns
def test_lines_typed_in_a_terminal_go_over_the_chat_channel(tmp_path):
    people = [person(tmp_path, name) for name in ("Alice", "Bob", "Carol")]
    program = tmp_path / "linger.py"
    program.write_text(LINGER)
    with Namespace() as ns:
        server = Server(ns)
        url = server.create(3, "--program-file", str(program))
        ours, theirs = pty.openpty()
        typist = ns.popen([PEER, "join", url, "--allow-loopback", "--identity",
                           str(people[0].key), "--name", "Alice", "--trust-program",
                           "--place", "party 1"], stdin=theirs, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        os.close(theirs)
        shown: list[str] = []
        reader = threading.Thread(target=shown.extend, args=(typist.stderr,), daemon=True)
        reader.start()
        others = [join(ns, url, p, "--trust-program", "--place", f"party {pid + 1}")
                  for pid, p in enumerate(people[1:], start=1)]
        deadline = time.monotonic() + 60
        while not any("data channels to all 2 other parties are open" in line
                      for line in shown):
            assert time.monotonic() < deadline and typist.poll() is None, "".join(shown)
            time.sleep(0.05)
        os.write(ours, b"over the channel\n")
        runs = finish(people[1:], others)
        typist.wait(TIMEOUT)
        reader.join(5)
        os.close(ours)
    text = report(runs) + "\n\nAlice:\n" + "".join(shown)
    assert typist.returncode == 0 and [r.code for r in runs] == [0, 0], text
    assert "Type a line and press Enter to write to the other parties.\n" in shown, text
    for pid in (1, 2):
        assert f"chat to party {pid} over the peer connection" in "".join(shown), text
    for run in runs:
        # Over a connection whose key was verified: shown as verified.
        assert f"party 1 Alice [{people[0].fingerprint}, verified]: over the channel" in (
            run.lines()), text
