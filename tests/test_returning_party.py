"""A party back in its place (issue 18): ``mpyc-webrtc-peer join`` run again with the same
link takes the same place (the resume secret of each place a key held is kept beside its
identity file, by session); a browser's worker takes a new link to a party back after a
reload for the next round."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import stat
import subprocess
import time

import pytest

from mpyc_webrtc.native.join import (
    MAX_KEPT_PLACES,
    keep_place,
    kept_place,
    kept_places_path,
    load_kept_places,
)
from testbed.netns import BIN, Namespace, Server

RESUME_A, RESUME_B = "a" * 22, "b" * 22


def test_a_kept_place_is_found_again_by_its_session(tmp_path):
    path = kept_places_path(tmp_path / "identity.pem")
    assert path == tmp_path / "places.json"
    assert kept_place(load_kept_places(path, "s1"), set()) is None  # no file yet
    keep_place(path, "s1", RESUME_A, 0)
    assert kept_place(load_kept_places(path, "s1"), set()) == (RESUME_A, 0)
    assert kept_place(load_kept_places(path, "s2"), set()) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the secret gets the place back


def test_a_place_another_peer_of_this_user_holds_now_is_not_taken(tmp_path):
    """Peers on one computer share the config directory: one that runs must not take the
    place of another that is connected."""
    path = tmp_path / "places.json"
    keep_place(path, "s1", RESUME_A, 0)
    keep_place(path, "s1", RESUME_B, 1)
    assert kept_place(load_kept_places(path, "s1"), {0}) == (RESUME_B, 1)
    assert kept_place(load_kept_places(path, "s1"), {1}) == (RESUME_A, 0)
    assert kept_place(load_kept_places(path, "s1"), {0, 1}) is None
    keep_place(path, "s1", "c" * 22, 0)  # a new secret for place 0 replaces the old one
    assert json.loads(path.read_text())["s1"] == [{"resume": RESUME_B, "pid": 1},
                                                  {"resume": "c" * 22, "pid": 0}]


def test_only_the_latest_sessions_are_kept(tmp_path):
    path = tmp_path / "places.json"
    for n in range(MAX_KEPT_PLACES + 3):
        keep_place(path, f"s{n}", RESUME_A, 0)
    records = json.loads(path.read_text())
    assert len(records) == MAX_KEPT_PLACES
    assert "s0" not in records and f"s{MAX_KEPT_PLACES + 2}" in records


@pytest.mark.parametrize("text", ["", "[]", "{\"s1\": 3}", "{\"s1\": [{\"pid\": true}]}",
                                  "{\"s1\": [{\"resume\": 1, \"pid\": 0}]}"])
def test_a_damaged_file_keeps_nothing_and_is_written_anew(tmp_path, text):
    path = tmp_path / "places.json"
    path.write_text(text)
    assert kept_place(load_kept_places(path, "s1"), set()) is None
    keep_place(path, "s1", RESUME_A, 2)
    assert kept_place(load_kept_places(path, "s1"), set()) == (RESUME_A, 2)


JOINED = re.compile(r"^Joined session \S+ as party (\d+)", re.MULTILINE)


@pytest.mark.netns
def test_join_run_again_with_the_same_link_takes_the_same_place(tmp_path):
    """Party 0's process dies in the lobby (its connection is lost, the server keeps its
    place); the same command run again takes place 0 back, and the session computes."""
    with Namespace() as ns:
        server = Server(ns)
        url = server.create(3, "--program", "sum")

        def peer(config: str, value: str):
            return ns.popen([str(BIN / "mpyc-webrtc-peer"), "join", url, "--allow-loopback",
                             "--identity", str(tmp_path / config / "identity.pem"),
                             "--input", value], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

        first = peer("alice", "5")
        server.wait_joined(url, 1)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        deadline = time.monotonic() + 30
        while [m["pid"] for m in server.info(url)["members"]]:
            assert time.monotonic() < deadline, "the server did not see party 0 go"
            time.sleep(0.1)
        bob = peer("bob", "7")
        server.wait_joined(url, 2)  # place 0 is held for alice: bob gets place 1
        again = peer("alice", "5")
        deadline = time.monotonic() + 30
        while not any("party 0: back on a new connection" in line for line in list(server.log)):
            assert time.monotonic() < deadline, "alice did not get place 0 back"
            time.sleep(0.1)
        carol = peer("carol", "30")
        results = [p.communicate(timeout=120) + (p.returncode,) for p in (again, bob, carol)]
        for _out, err, code in results:
            assert code == 0, f"party failed ({code}):\n{err[-3000:]}"
        assert [out.strip() for out, _, _ in results] == ["sum = 42"] * 3
        # As people count them: places 0, 1 and 2 are "party 1", "party 2", "party 3".
        assert [JOINED.search(err).group(1) for _, err, _ in results] == ["1", "2", "3"]


# -- a browser party's worker: the next round over a new link to a party back after a reload --

async def test_a_new_link_to_a_party_that_failed_serves_the_next_round():
    """The page reported the old link to party 2 failed (its page reloaded); when the next
    round makes a new link to it, the worker's factory takes the new channel (issue 18)."""
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).parent))
    from test_py_worker import Page

    from py_worker import ring

    page = Page()
    factory = page.factory
    factory.start()
    page.channel(2)
    page.event(2, ring.OPEN)
    factory.peer_failed(2, "the connection failed.")
    page.channel(2)  # the new link's channel
    opening = asyncio.ensure_future(factory.open_channels(0, 3, timeout=5))
    page.channel(1)
    page.event(1, ring.OPEN)
    page.event(2, ring.OPEN)
    channels = await asyncio.wait_for(opening, 1)
    assert channels[2].channel == page.ids[2] == 2  # the new one


CHAT = {"kind": "chat", "identity": "did:key:z6Mk", "name": "", "signature": "c2ln"}


def test_a_sealer_numbers_afresh_to_and_from_a_party_back_after_a_reload():
    from mpyc_webrtc.sealing import Sealer, TamperError, new_secret

    secret = new_secret()
    zero, one = Sealer(secret, "S", 0, 3), Sealer(secret, "S", 1, 3)
    for _ in range(3):
        box = one.seal(0, {"kind": "candidate", "candidate": "", "sdpMid": None,
                           "sdpMLineIndex": None})
        zero.open(1, box["seq"], box["box"])
    chat = one.seal_chat(0, CHAT | {"text": "hi", "number": "1"})
    zero.open_chat(1, chat["seq"], chat["box"])
    assert zero.seal(1, {"kind": "candidate", "candidate": "", "sdpMid": None,
                         "sdpMLineIndex": None})["seq"] == 1
    new_one = Sealer(secret, "S", 1, 3)  # party 1's new page
    box = new_one.seal(0, {"kind": "candidate", "candidate": "", "sdpMid": None,
                           "sdpMLineIndex": None})
    with pytest.raises(TamperError):
        zero.open(1, box["seq"], box["box"])  # number 1 again: a replay, until...
    zero.restart(1)
    assert zero.open(1, box["seq"], box["box"])["kind"] == "candidate"
    chat = new_one.seal_chat(0, CHAT | {"text": "back", "number": "1"})
    assert zero.open_chat(1, chat["seq"], chat["box"])["text"] == "back"
    assert zero.seal(1, {"kind": "candidate", "candidate": "", "sdpMid": None,
                         "sdpMLineIndex": None})["seq"] == 1
