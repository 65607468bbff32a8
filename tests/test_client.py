"""The signaling client's rules (``mpyc_webrtc.client``) and their browser twin
(``web/client.js``), both driven by ``tests/client_scenarios.json``: the same calls must
give the same events, with the same whole sentences."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mpyc_webrtc import identity, launch, sentences, wire
from mpyc_webrtc.client import SignalingClient, member_state, member_words
from mpyc_webrtc.identity import Identity
from mpyc_webrtc.sealing import JoinSecret, b64url_encode

HERE = Path(__file__).resolve().parent
DOC = json.loads((HERE / "client_scenarios.json").read_text())


@pytest.mark.parametrize("scenario", DOC["scenarios"], ids=lambda s: s["name"])
def test_scenario(scenario):
    client = SignalingClient(**scenario["client"])
    for index, step in enumerate(scenario["steps"]):
        got = getattr(client, step["call"])(*step.get("args", []))
        # As JSON carries it (tuples become lists, and so on).
        assert json.loads(json.dumps(got)) == step.get("expect", []), (
            f"step {index}: {step['call']}")


@pytest.mark.parametrize(("member", "started", "expected"), DOC["member_states"])
def test_member_state(member, started, expected):
    assert member_state(member, started) == expected
    assert f"member.{expected}" in sentences.SENTENCES


@pytest.mark.parametrize(("member", "started", "expected"), DOC["member_words"])
def test_member_words(member, started, expected):
    assert member_words(member, started) == expected


@pytest.mark.parametrize("link", DOC["links"], ids=lambda link: link["fragment"] or "empty")
def test_link_fragment(link):
    if "error" in link:
        with pytest.raises(ValueError) as excinfo:
            JoinSecret.from_fragment(link["fragment"])
        assert str(excinfo.value) == link["error"]
    else:
        secret = JoinSecret.from_fragment(link["fragment"])
        assert (b64url_encode(secret.secret), secret.program_hash) == (
            link["secret"], link["program_hash"])


def test_browser_twin_follows_the_same_scenarios(tmp_path):
    node = shutil.which("node")
    assert node is not None, "Node.js runs the page's modules here (./run.sh installs it)"
    table = tmp_path / "sentences.json"
    table.write_text(json.dumps(sentences.document()))
    done = subprocess.run([node, str(HERE / "js" / "client_scenarios.mjs"),
                           str(HERE / "client_scenarios.json"), str(table)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["failures"] == []
    steps = sum(len(s["steps"]) for s in DOC["scenarios"])
    assert report["checked"] == (steps + len(DOC["member_states"]) + len(DOC["member_words"])
                                 + len(DOC["links"]))


def test_the_browser_twin_speaks_this_wire_version():
    source = (HERE.parent / "web" / "client.js").read_text()
    assert f"const VERSION = {wire.VERSION};" in source


def test_every_sentence_fills_in_as_the_page_does():
    # Only {name} fields: no format specs or escaped braces the page would not understand.
    for key, template in sentences.SENTENCES.items():
        stripped = sentences._FIELD.sub("", template)
        assert "{" not in stripped and "}" not in stripped, key


def test_native_signaling_stops_at_a_peer_offering_another_program():
    """A sealed offer that names another program than this party runs (no network: the
    native signaling layer, with the rules of mpyc_webrtc.client, fed by hand)."""
    from mpyc_webrtc.native.signaling import Signaling

    program = {"name": "sum", "args": [], "builtin": True}
    ours, theirs = launch.program_hash(program), "cd" * 32

    def started() -> Signaling:
        signaling = Signaling("http://127.0.0.1:9", "S", secret=bytes(32), token="t",
                              link_hash=ours)
        signaling.client.identity = Identity.from_seed(bytes(32)).did
        signaling.handle(signaling.client.receive({
            "v": 1, "type": "welcome", "session": "S", "pid": 1, "parties": 2,
            "program": program, "labels": ["", ""], "ice_servers": [], "relay_only": False,
            "pins": ["", ""], "descriptor": JoinSecret(bytes(32), ours).descriptor(2, [])}))
        signaling.handle(signaling.client.receive(
            {"v": 1, "type": "start", "parties": 2, "round": 1}))
        return signaling

    signaling = started()
    signaling.handle(signaling.client.opened(0, {"kind": "offer", "sdp": "v=0",
                                                 "program": theirs}))
    assert signaling.stopped.is_set()
    assert str(signaling.tampered) == (
        "Tampering detected: party 1 runs a different program than this party (fingerprint "
        f"cdcd cdcd cdcd cdcd cdcd; this party runs {launch.fingerprint(ours)}). The parties "
        "were given different programs. Stop, and do not take part in this session.")
    signaling = started()
    peer = Identity.from_seed(bytes(range(32)))
    signature = peer.sign(identity.link_statement("S", 0, 1, "", "Alice", "", ours))
    signaling.handle(signaling.client.opened(0, {
        "kind": "offer", "sdp": "v=0", "program": ours, "identity": peer.did, "name": "Alice",
        "signature": b64url_encode(signature)}))
    assert signaling.tampered is None
    assert {"event": "remote", "peer": 0, "kind": "offer", "sdp": "v=0"} in (
        signaling._link_events)
    # The same offer, claiming a name its key did not sign: the native layer checks it.
    signaling = started()
    signaling.handle(signaling.client.opened(0, {
        "kind": "offer", "sdp": "v=0", "program": ours, "identity": peer.did, "name": "Mallory",
        "signature": b64url_encode(signature)}))
    assert str(signaling.tampered) == sentences.say(
        "tamper.bad_signature", who="party 1", kind="offer", identity=peer.did)


def test_the_page_seals_with_its_own_constants_which_are_wire_py_s():
    """The page never takes the sealing's constants from the server (which could serve the
    key's label as the token's); its own must be wire.py's."""
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, "--input-type=module", "-e",
         "import { SEALING, differingRules } from './web/sealing.js';"
         "console.log(JSON.stringify({ SEALING, same: differingRules(SEALING),"
         " swapped: differingRules({ ...SEALING, token_info: SEALING.key_info }),"
         " none: differingRules(undefined) }));"],
        capture_output=True, text=True, timeout=60, cwd=HERE.parent)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["SEALING"] == wire.schema_document()["sealing"]
    assert (got["same"], got["swapped"], got["none"]) == (None, "token_info", "token_info")
