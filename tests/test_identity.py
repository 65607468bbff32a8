"""A party's long-term identity (mpyc_webrtc/identity.py): did:key, fingerprint, signed
statements and the key file; known answers shared with the browser's web/identity.js
(tests/identity_vectors.json, written by ``python tests/test_identity.py``)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mpyc_webrtc import identity
from mpyc_webrtc.identity import Identity, IdentityError

HERE = Path(__file__).parent
VECTORS = HERE / "identity_vectors.json"


def build_vectors() -> dict:
    cases = []
    for n, fields in enumerate([
            ("session-1", "0", "1", "hospital A", "Alice", "sha-256 AB:CD"),
            ("s", "2", "0", "", "Zoë ∑", ""),
            ()]):
        me = Identity.from_seed(bytes([n] * 32))
        message = identity.statement(*fields)
        cases.append({"seed": bytes([n] * 32).hex(), "public": me.public.hex(),
                      "did": me.did, "fingerprint": me.fingerprint,
                      "fields": list(fields), "statement": message.hex(),
                      "signature": me.sign(message).hex()})
    link = ["s3ss10n", 0, 2, "hospital A", "Zoë", "sha-256 0A:FF", "ab" * 32]
    return {"cases": cases,
            "link": {"args": link, "statement": identity.link_statement(*link).hex()}}


def test_the_vectors_are_current():
    assert VECTORS.exists(), "run: python tests/test_identity.py"
    assert json.loads(VECTORS.read_text()) == build_vectors()


def test_a_did_key_names_its_public_key_and_starts_as_the_method_says():
    for case in build_vectors()["cases"]:
        assert case["did"].startswith("did:key:z6Mk")
        assert identity.public_key(case["did"]).hex() == case["public"]


def test_the_w3c_example_did_key_decodes():
    # From the did:key method specification (Ed25519 example).
    did = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    assert len(identity.public_key(did)) == 32
    assert identity.did_key(identity.public_key(did)) == did


@pytest.mark.parametrize("bad", [
    "", "did:web:example.org", "did:key:6Mk", "did:key:z0OIl",
    "did:key:z" + identity.b58encode(b"\xec\x01" + bytes(32)),   # an X25519 key
    "did:key:z" + identity.b58encode(b"\xed\x01" + bytes(31)),   # too short
    "did:key:z1" + identity.b58encode(b"\xed\x01" + bytes(32)),  # not the one way
])
def test_anything_else_is_refused_with_a_sentence(bad):
    with pytest.raises(IdentityError) as info:
        identity.public_key(bad)
    assert str(info.value).endswith(".")


def test_a_signature_verifies_for_its_statement_only():
    me = Identity.from_seed(bytes(32))
    other = Identity.from_seed(bytes([1] * 32))
    message = identity.statement("session", "0", "1", "", "Alice", "sha-256 AB")
    signature = me.sign(message)
    assert identity.verify(me.did, signature, message)
    assert not identity.verify(other.did, signature, message)
    changed = identity.statement("session", "0", "1", "", "Mallory", "sha-256 AB")
    assert not identity.verify(me.did, signature, changed)
    # Fields are length-prefixed: moving a boundary changes the statement.
    assert identity.statement("ab", "c") != identity.statement("a", "bc")
    assert not identity.verify("did:key:nonsense", signature, message)


def test_a_link_statement_binds_session_pair_place_name_connection_and_program():
    args = ["s", 0, 1, "hospital A", "Alice", "sha-256 AB", "00" * 32]
    base = identity.link_statement(*args)
    for i, other in enumerate(["t", 1, 2, "hospital B", "Mallory", "sha-256 CD", "11" * 32]):
        changed = list(args)
        changed[i] = other
        assert identity.link_statement(*changed) != base, identity.LINK_FIELDS[i + 1]
    assert base.startswith(identity.STATEMENT_CONTEXT + (4).to_bytes(4, "big") + b"link")


def test_the_fingerprint_is_four_groups_a_person_can_read_out():
    fp = Identity.from_seed(bytes(32)).fingerprint
    groups = fp.split("-")
    assert len(groups) == 4 and all(len(g) == 4 for g in groups)
    assert set(fp) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567-")


def test_the_key_file_is_made_once_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "conf" / "identity.pem"
    made, new = identity.load_or_create(path)
    assert new and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, new = identity.load_or_create(path)
    assert not new and again.did == made.did
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        identity.load_or_create(path)
    os.chmod(path, 0o600)
    path.write_text("not a key")
    with pytest.raises(IdentityError, match="is not an identity file"):
        identity.load_or_create(path)


def test_peers_started_together_on_a_new_key_file_share_one_whole_key(tmp_path):
    # Each process looks, finds nothing and makes a key: one wins, every other reads that
    # one (never half a file, never an error), and nothing else is left in the folder.
    path = tmp_path / "conf" / "identity.pem"
    script = ("import sys; from pathlib import Path; from mpyc_webrtc import identity; "
              "print(identity.load_or_create(Path(sys.argv[1]))[0].did)")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    results = [p.communicate(timeout=60) for p in procs]
    assert [err for _, err in results] == [""] * 8
    assert len({out.strip() for out, _ in results}) == 1
    assert [f.name for f in path.parent.iterdir()] == ["identity.pem"]


def test_the_browser_twin_gives_the_same_answers():
    node = shutil.which("node")
    assert node is not None, "Node.js runs the page's modules here (./run.sh installs it)"
    done = subprocess.run([node, str(HERE / "js" / "identity_vectors.mjs"), str(VECTORS)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["failures"] == [] and result["checked"] == 3 * 5 + 1


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(build_vectors(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {VECTORS}", file=sys.stderr)


def test_the_peer_shows_its_identity_and_makes_it_once(tmp_path):
    command = [sys.executable, "-m", "mpyc_webrtc.native.cli", "identity"]
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 0, first.stderr
    did, print_line = first.stdout.splitlines()
    path = tmp_path / "mpyc-webrtc" / "identity.pem"
    assert first.stderr.startswith(f"Made a new identity in {path}.")
    kept, _ = identity.load_or_create(path)
    assert did == kept.did and print_line == f"fingerprint {kept.fingerprint}"
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert again.stdout == first.stdout and again.stderr == ""
    other = tmp_path / "other.pem"
    chosen = subprocess.run([*command, "--identity", str(other)], capture_output=True,
                            text=True, timeout=60)
    assert chosen.returncode == 0 and chosen.stdout.splitlines()[0] != did
    other.chmod(0o644)
    refused = subprocess.run([*command, "--identity", str(other)], capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode != 0
    assert refused.stderr.strip() == (
        f"mpyc-webrtc-peer: error: The identity file {other} can be read by other users of "
        f"this machine; make it yours only (chmod 600 {other}).")
