"""Known identities (``mpyc_webrtc.known``): the verdicts, and the file a native peer keeps."""

from __future__ import annotations

import datetime
import json
import stat

import pytest

from mpyc_webrtc import known
from mpyc_webrtc.identity import Identity
from mpyc_webrtc.sentences import say

ALICE = Identity.from_seed(bytes(range(32)))
BOB = Identity.from_seed(bytes(range(1, 33)))
MALLORY = Identity.from_seed(bytes(32))
MONDAY = datetime.datetime(2026, 12, 7, 9, 30, tzinfo=datetime.UTC)
TUESDAY = datetime.datetime(2026, 12, 8, 16, 5, tzinfo=datetime.UTC)


def verdict(records: known.Records, who: Identity, name: str) -> str:
    key, fields = known.recognise(records, who.did, name)
    return say(key, **fields)


def test_a_key_never_seen_is_new():
    assert known.recognise({}, ALICE.did, "Alice") == ("known.new", {})
    assert verdict({}, ALICE, "") == "new key"


def test_a_key_seen_before_is_known_with_its_name_and_when():
    records = known.record({}, ALICE.did, "Alice", MONDAY)
    assert records[ALICE.did] == {"name": "Alice", "first": "2026-12-07T09:30:00Z",
                                  "last": "2026-12-07T09:30:00Z", "count": 1}
    assert verdict(records, ALICE, "Alice") == (
        "you computed with this key before, as 'Alice' (once, last on 2026-12-07)")
    records = known.record(records, ALICE.did, "Alice", TUESDAY)
    assert records[ALICE.did]["first"] == "2026-12-07T09:30:00Z"
    assert records[ALICE.did]["count"] == 2
    # Case and white space do not make another name; no name now is the same person.
    assert verdict(records, ALICE, "  alice ") == (
        "you computed with this key before, as 'Alice' (twice, last on 2026-12-08)")
    assert known.recognise(records, ALICE.did, "")[0] == "known.known"


def test_a_known_key_with_another_name_is_renamed():
    records = known.record({}, ALICE.did, "Alice", MONDAY)
    assert known.recognise(records, ALICE.did, "Alice B.") == (
        "known.renamed", {"before": "Alice", "name": "Alice B."})
    assert verdict(records, ALICE, "Alice B.") == (
        "you computed with this key before, as 'Alice', now 'Alice B.'")
    # The record takes the new name; no name keeps the old one.
    assert known.record(records, ALICE.did, "Alice B.", TUESDAY)[ALICE.did]["name"] == (
        "Alice B.")
    assert known.record(records, ALICE.did, "", TUESDAY)[ALICE.did]["name"] == "Alice"


def test_a_new_key_with_a_known_name_is_flagged():
    records = known.record(known.record({}, ALICE.did, "Alice", MONDAY), BOB.did, "Bob",
                           MONDAY)
    key, fields = known.recognise(records, MALLORY.did, "ALICE")
    assert key == "known.name_reused"
    assert fields == {"name": "ALICE", "fingerprint": ALICE.fingerprint}
    assert verdict(records, MALLORY, "Alice").startswith(
        "Careful: you computed with someone called 'Alice' before, with another key ("
        + ALICE.fingerprint)
    assert known.recognise(records, MALLORY.did, "Carol")[0] == "known.new"
    assert known.recognise(records, MALLORY.did, "")[0] == "known.new"


def test_record_leaves_its_argument_alone():
    records: known.Records = {}
    known.record(records, ALICE.did, "Alice", MONDAY)
    assert records == {}


def test_the_file_round_trip(tmp_path):
    path = known.path_for(tmp_path / "keys" / "identity.pem")
    assert path == tmp_path / "keys" / "known.json"
    assert known.load(path) == {}
    records = known.record(known.record({}, ALICE.did, "Alice", MONDAY), BOB.did, "Bøb",
                           TUESDAY)
    known.save(path, records)
    assert known.load(path) == records
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["version"] == known.VERSION
    known.save(path, known.record(records, ALICE.did, "Alice", TUESDAY))
    assert known.load(path)[ALICE.did]["count"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["known.json"]  # no temporary left


@pytest.mark.parametrize("content, why", [
    ("{not json", "it is not JSON"),
    ("[]", "it is not version 1 of the format"),
    ('{"version": 1}', "it has no identities"),
    ('{"version": 1, "identities": {"did:key:nope": {}}}', "'did:key:nope' is not a did:key"),
    (json.dumps({"version": 1, "identities": {ALICE.did: {"name": "A"}}}),
     f"the record of {ALICE.did} is not {{name, first, last, count}}"),
], ids=["not-json", "not-an-object", "no-identities", "bad-did", "bad-record"])
def test_a_damaged_file_is_a_sentence_not_a_crash(tmp_path, content, why):
    path = tmp_path / "known.json"
    path.write_text(content)
    with pytest.raises(known.KnownError) as caught:
        known.load(path)
    message = str(caught.value)
    assert message.startswith(f"The known identities file {path} cannot be used ({why}")
    assert message.endswith("Move it away or delete it to start a new one (you lose the record "
                            "of whom you computed with), or give another file with --known.")


def test_an_unreadable_place_is_a_sentence(tmp_path):
    (tmp_path / "known.json").mkdir()
    with pytest.raises(known.KnownError, match="cannot be used"):
        known.load(tmp_path / "known.json")
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(known.KnownError, match="Cannot write the known identities file"):
        known.save(blocked / "known.json", {})
