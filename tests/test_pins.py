"""Pinned places, join identities and the chat relay of the signaling core (issue 17).

A session's creator may keep places for identity keys (``pins``); a join names its key
(``identity``) and proves it (``proof``: the key's signature over the session and the
party's own ``resume`` secret). These tests use real Ed25519 keys and real proofs, and run
against the in-memory registry and against sessions shared through a real Redis.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mpyc_webrtc.identity import Identity, join_statement
from mpyc_webrtc.sealing import b64url_encode
from mpyc_webrtc.wire import SERVER_MESSAGES, ErrorCode, SignalingError
from signaling.registry import Registry
from signaling.session import Session
from testbed.sans_io import TOKEN, TOKEN_HASH, Clock, Party
from testbed.shared_harness import Cluster

LABELS = ["hospital A", "hospital B", "hospital C"]
#: Where the sentences say a person finds its own key.
SHOWN = "(the join page shows it; on a terminal, mpyc-webrtc-peer identity)"
ALICE = Identity.from_seed(bytes(32))
BOB = Identity.from_seed(bytes([1]) * 32)
CAROL = Identity.from_seed(bytes([2]) * 32)
MALLORY = Identity.generate()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis"])
def make_registry(request: pytest.FixtureRequest,
                  clock: Clock) -> Iterator[Callable[..., Registry]]:
    """One process, or server processes sharing their sessions through Redis (each test
    step settles, ``testbed.shared_harness``): the rules hold alike."""
    clusters: list[Cluster] = []

    def make(size: int = 1, **limits: Any) -> Registry:
        if request.param == "memory":
            return Registry(clock=clock, **limits)
        clusters.append(Cluster(request.getfixturevalue("redis_url"), size, clock=clock,
                                **limits))
        return clusters[-1].registries[0]

    yield make
    for cluster in clusters:
        cluster.close()


@pytest.fixture
def registry(make_registry: Callable[..., Registry]) -> Registry:
    return make_registry()


def create(registry: Registry, pins: list[str], labels: list[str] = LABELS,
           **fields: Any) -> Session:
    return registry.create({"token_hash": TOKEN_HASH, "parties": 3, "program": "sum",
                            "labels": labels, "pins": pins, **fields})


def proof(who: Identity, session: str, resume: str) -> str:
    return b64url_encode(who.sign(join_statement(session, resume)))


def join(party: Party, session: Session | str, who: Identity | None, *,
         role: int | None = None, resume: str | None = None, ready: bool = False,
         **fields: Any) -> str:
    """Send ``party``'s join as an up-to-date client does: with ``who``'s did:key and its
    proof over the session and the resume secret (``fields`` override any of them); the
    resume secret it used."""
    sid = session.id if isinstance(session, Session) else session
    resume = resume or secrets.token_urlsafe(16)
    msg: dict[str, Any] = {"session": sid, "token": TOKEN, "ready": ready, "resume": resume}
    if who is not None:
        msg.update(identity=who.did, proof=proof(who, sid, resume))
    if role is not None:
        msg["role"] = role
    msg.update(fields)
    party.send("join", **{k: v for k, v in msg.items() if v is not None})
    return resume


def refused(party: Party) -> tuple[str, str]:
    """The code and sentence of the one message ``party`` got, an error."""
    (msg,) = party.take()
    assert msg["type"] == "error", msg
    assert set(msg) == {"v", "type", *SERVER_MESSAGES["error"]}
    return msg["code"], msg["message"]


def members(party: Party) -> list[tuple[int, str | None]]:
    """Who holds which place, with which key, as ``party``'s last roster says."""
    roster = [m for m in party.take() if m["type"] == "roster"][-1]
    return [(m["pid"], m["identity"]) for m in roster["members"]]


# --- pins at creation ------------------------------------------------------------------------

def test_pins_are_padded_and_shown_in_the_description_welcome_and_roster(registry):
    session = create(registry, ["", BOB.did])
    assert session.pins == ["", BOB.did, ""]
    assert registry.get(session.id).describe()["pins"] == ["", BOB.did, ""]
    bob = Party(registry)
    join(bob, session, BOB)
    welcome, roster = bob.take()
    assert welcome["type"] == "welcome" and welcome["pid"] == 1
    assert welcome["pins"] == ["", BOB.did, ""]
    assert roster["members"] == [{"pid": 1, "name": "party 1", "label": "hospital B",
                                  "state": "joined", "ready": False, "identity": BOB.did}]


def test_a_session_without_pins_says_so_with_empty_ones(registry):
    session = registry.create({"token_hash": TOKEN_HASH, "parties": 3, "program": "sum"})
    assert session.describe()["pins"] == ["", "", ""]
    a = Party(registry)
    join(a, session, None)
    welcome, roster = a.take()
    assert welcome["pins"] == ["", "", ""]
    assert roster["members"][0]["identity"] is None


def invalid(registry: Registry, pins: Any, labels: list[str] = LABELS) -> str:
    with pytest.raises(SignalingError) as info:
        create(registry, pins, labels)
    assert info.value.code == ErrorCode.INVALID_REQUEST
    assert registry.sessions == {}
    return info.value.message


def test_a_pin_that_is_not_a_did_key_names_the_place(registry):
    assert invalid(registry, ["", "did:key:zXYZ"]) == (
        "The place 'hospital B' (party 2) is pinned to 'did:key:zXYZ', which is not the "
        "did:key of an Ed25519 key.")
    assert invalid(registry, ["", "", "alice"], ["", "", ""]) == (
        "The place of party 3 is pinned to 'alice', which is not a did:key identifier "
        "(did:key:z6Mk...).")
    assert invalid(registry, ["did:key:z0OIl"]) == (
        "The place 'hospital A' (party 1) is pinned to 'did:key:z0OIl', which is not a "
        "did:key ('0' is not a base58 character).")
    # A key with a byte more in front (base58's leading "1") is no Ed25519 did:key.
    other = "did:key:z1" + ALICE.did[len("did:key:z"):]
    assert invalid(registry, [other]) == (
        f"The place 'hospital A' (party 1) is pinned to {other!r}, which is not the did:key "
        "of an Ed25519 key.")


def test_a_pin_far_longer_than_a_did_key_is_refused_before_it_is_decoded(registry):
    text = invalid(registry, ["did:key:z" + "z" * 400_000])
    assert text == ("The place 'hospital A' (party 1) is pinned to 'did:key:z" + "z" * 51
                    + "'..., which is far longer than a did:key (did:key:z6Mk... of 56 "
                    "characters).")


@pytest.mark.parametrize("pins", ["did:key:z6Mk", {"0": ""}, [None], [1], ["", ["x"]]],
                         ids=repr)
def test_pins_must_be_a_list_of_texts(registry, pins):
    assert invalid(registry, pins) == (
        "'pins' must be a list with one text per place, in party order: \"\" for a place "
        "anyone with the link may take, or the did:key of the person it is kept for.")


def test_at_most_one_pin_per_place(registry):
    assert invalid(registry, [ALICE.did, "", "", ""]) == (
        "There are 4 pins for 3 parties: at most one per place.")


def test_one_key_may_be_pinned_to_several_places(registry):
    """One person's key, several places: as when one person runs several native peers
    with the same key file to try a session out."""
    session = create(registry, [ALICE.did, ALICE.did, ""])
    first, second = Party(registry), Party(registry)
    join(first, session, ALICE)
    join(second, session, ALICE)
    assert first.take()[0]["pid"] == 0 and second.take()[0]["pid"] == 1


# --- the join's identity and proof -----------------------------------------------------------

BAD_PROOF = ("The join's identity proof does not verify: it must be the signature of the "
             "key it names over this session and this party's resume secret.")


def test_a_pinned_place_admits_its_key_with_a_valid_proof(registry):
    session = create(registry, [ALICE.did, BOB.did, ""])
    a, b = Party(registry), Party(registry)
    join(b, session, BOB, role=1)
    assert b.take()[0]["pid"] == 1
    join(a, session, ALICE, role=0)
    assert a.take()[0]["pid"] == 0
    assert members(b) == [(0, ALICE.did), (1, BOB.did)]
    assert session.members[0].identity == ALICE.did


def test_a_valid_did_with_a_proof_by_another_key_is_refused(registry):
    session = create(registry, [ALICE.did, "", ""])
    mallory = Party(registry)
    resume = secrets.token_urlsafe(16)
    join(mallory, session, ALICE, role=0, resume=resume,
         proof=proof(MALLORY, session.id, resume))
    assert refused(mallory) == (ErrorCode.INVALID_MESSAGE, BAD_PROOF)
    assert session.members == {} and mallory.endpoint.session is None


@pytest.mark.parametrize("why", ["another session", "another resume", "not base64url",
                                 "too short", "missing"])
def test_a_proof_that_is_not_this_join_s_is_refused(registry, why):
    session = create(registry, ["", "", ""])
    party = Party(registry)
    resume = secrets.token_urlsafe(16)
    bad = {"another session": proof(ALICE, "another", resume),
           "another resume": proof(ALICE, session.id, secrets.token_urlsafe(16)),
           "not base64url": "not base64url!",
           "too short": b64url_encode(bytes(32)),
           "missing": None}[why]
    join(party, session, ALICE, resume=resume, proof=bad)
    assert refused(party) == (ErrorCode.INVALID_MESSAGE, BAD_PROOF)
    assert session.members == {}


def test_an_identity_needs_a_resume_secret_and_a_proof_needs_an_identity(registry):
    session = create(registry, ["", "", ""])
    party = Party(registry)
    party.send("join", session=session.id, token=TOKEN, identity=ALICE.did,
               proof=proof(ALICE, session.id, ""))
    assert refused(party) == (
        ErrorCode.INVALID_MESSAGE,
        "A join with an 'identity' needs its 'resume' secret too: the proof is a signature "
        "over it.")
    party.send("join", session=session.id, token=TOKEN, resume="r" * 22,
               proof=proof(ALICE, session.id, "r" * 22))
    assert refused(party) == (ErrorCode.INVALID_MESSAGE,
                              "The join has a 'proof' but no 'identity' that it proves.")
    party.send("join", session=session.id, token=TOKEN, resume="r" * 22,
               identity="did:key:zXYZ", proof=proof(ALICE, session.id, "r" * 22))
    assert refused(party) == (
        ErrorCode.INVALID_MESSAGE,
        "The join's identity is not usable: 'did:key:zXYZ' is not the did:key of an Ed25519 "
        "key.")
    assert session.members == {}


def test_a_join_with_an_identity_into_an_unpinned_place_shows_the_key(registry):
    session = create(registry, [])
    a, b = Party(registry), Party(registry)
    join(a, session, CAROL)
    join(b, session, None)
    assert members(b) == [(0, CAROL.did), (1, None)]


# --- place assignment ------------------------------------------------------------------------

def test_a_place_pinned_to_another_key_is_refused_in_words(registry):
    session = create(registry, [ALICE.did, "", ""])
    watcher = Party(registry)
    join(watcher, session, CAROL, role=2)
    watcher.take()
    bob = Party(registry)
    join(bob, session, BOB, role=0)
    assert refused(bob) == (
        ErrorCode.PLACE_PINNED,
        f"The place 'hospital A' (party 1) is kept for someone else's key (fingerprint "
        f"{ALICE.fingerprint}); you joined with {BOB.fingerprint}. If it should be yours, "
        f"ask the person who created the session to pin your key {SHOWN}.")
    assert watcher.take() == []  # nobody else hears of it
    assert sorted(session.members) == [2]
    join(bob, session, BOB, role=1)  # the connection can still take a free place
    assert bob.take()[0]["pid"] == 1


def test_a_pinned_place_is_refused_to_a_join_without_a_key(registry):
    session = create(registry, ["", "", BOB.did], labels=[])
    old = Party(registry)
    join(old, session, None, role=2)
    assert refused(old) == (
        ErrorCode.PLACE_PINNED,
        f"The place of party 3 is kept for someone else's key (fingerprint "
        f"{BOB.fingerprint}); you joined without proving a key, as pages and peers older "
        f"than pinned places do: join with an up-to-date one. If it should be yours, ask the "
        f"person who created the session to pin your key {SHOWN}.")
    join(old, session, None)  # without a role: an unpinned place
    assert old.take()[0]["pid"] == 0


def test_a_pinned_place_refuses_another_key_even_when_it_is_taken(registry):
    """Kept for another key is the reason to give, not "taken", which suggests waiting."""
    session = create(registry, [ALICE.did, "", ""])
    join(Party(registry), session, ALICE, role=0)
    bob = Party(registry)
    join(bob, session, BOB, role=0)
    assert refused(bob)[0] == ErrorCode.PLACE_PINNED


def test_without_a_role_a_join_lands_in_its_own_pinned_place(registry):
    session = create(registry, ["", "", BOB.did])
    bob = Party(registry)
    join(bob, session, BOB)
    assert bob.take()[0]["pid"] == 2


def test_without_a_role_others_get_the_lowest_unpinned_place(registry):
    session = create(registry, [ALICE.did, "", BOB.did])
    carol = Party(registry)
    join(carol, session, CAROL)
    assert carol.take()[0]["pid"] == 1
    old = Party(registry)
    join(old, session, None)
    assert refused(old)[0] == ErrorCode.PLACE_PINNED
    alice = Party(registry)
    join(alice, session, ALICE)
    assert alice.take()[0]["pid"] == 0


def test_when_only_others_pinned_places_are_free_the_join_is_refused_in_words(registry):
    session = create(registry, [ALICE.did, "", BOB.did])
    join(Party(registry), session, None)  # the one unpinned place
    mallory = Party(registry)
    join(mallory, session, MALLORY)
    assert refused(mallory) == (
        ErrorCode.PLACE_PINNED,
        f"The free places of this session are kept for other people's keys ('hospital A' "
        f"(party 1) for {ALICE.fingerprint}; 'hospital C' (party 3) for {BOB.fingerprint}); "
        f"you joined with {MALLORY.fingerprint}. If one of them should be yours, ask the "
        f"person who created the session to pin your key {SHOWN}.")
    assert sorted(session.members) == [1]


def test_a_full_session_is_full_whatever_the_pins(registry):
    session = create(registry, [ALICE.did, "", ""])
    for who in (ALICE, BOB, CAROL):
        join(Party(registry), session, who)
    late = Party(registry)
    join(late, session, ALICE)
    assert refused(late)[0] == ErrorCode.SESSION_FULL


def test_a_pinned_key_already_seated_gets_no_second_pinned_place(registry):
    """Its key joins again on another connection with another resume secret: today's
    rules, nothing more (the place is taken; without a role, an unpinned one)."""
    session = create(registry, [ALICE.did, "", ""])
    first = Party(registry)
    join(first, session, ALICE)
    again = Party(registry)
    join(again, session, ALICE, role=0)
    assert refused(again)[0] == ErrorCode.ROLE_TAKEN
    join(again, session, ALICE)
    assert again.take()[0]["pid"] == 1
    assert first.take()[-1]["type"] == "roster" and first.closed == 0


def test_the_owner_of_a_pinned_place_gets_it_back_with_its_resume_secret(registry):
    session = create(registry, [ALICE.did, "", ""])
    alice, bob = Party(registry), Party(registry)
    resume = join(alice, session, ALICE)
    join(bob, session, BOB)
    bob.take()
    alice.endpoint.disconnected()  # lost, not left: the place is kept
    (roster,) = bob.take()
    assert [(m["pid"], m["state"], m["identity"]) for m in roster["members"]] == [
        (0, "reconnecting", ALICE.did), (1, "joined", BOB.did)]
    back = Party(registry)
    join(back, session, ALICE, role=0, resume=resume)
    assert back.take()[0]["pid"] == 0
    assert members(bob) == [(0, ALICE.did), (1, BOB.did)]


def test_a_resume_secret_alone_does_not_open_a_pinned_place_to_another_key(registry):
    session = create(registry, [ALICE.did, "", ""])
    alice = Party(registry)
    resume = join(alice, session, ALICE)
    alice.endpoint.disconnected()
    other = Party(registry)
    join(other, session, BOB, resume=resume)
    assert refused(other)[0] == ErrorCode.PLACE_PINNED
    assert not session.members[0].connected


# --- chat ------------------------------------------------------------------------------------

def lobby(registry: Registry, n: int = 3) -> tuple[Session, list[Party]]:
    session = create(registry, [])
    parties = [Party(registry) for _ in range(n)]
    for party in parties:
        join(party, session, None)
    for party in parties:
        party.take()
    return session, parties


def test_chat_is_relayed_in_the_lobby_with_only_its_fields(registry):
    session, (a, b, c) = lobby(registry)
    a.endpoint.receive(json.dumps({"v": 1, "type": "chat", "to": 2, "seq": 4, "box": "sealed",
                                   "from": 1, "text": "plain"}))
    assert c.take() == [{"v": 1, "type": "chat", "from": 0, "seq": 4, "box": "sealed"}]
    assert a.take() == b.take() == []


def test_chat_to_a_party_that_is_not_there_is_dropped_without_a_word(registry, clock):
    session, (a, b, c) = lobby(registry)
    c.endpoint.disconnected(leaving=True)
    b.take()
    a.take()
    clock.now += 5
    a.send("chat", to=2, seq=1, box="for nobody")
    assert a.take() == b.take() == []
    assert registry.get(session.id).last_activity == clock.now  # it counts as activity
    a.send("chat", to=1, seq=2, box="hi")
    assert b.take() == [{"v": 1, "type": "chat", "from": 0, "seq": 2, "box": "hi"}]


@pytest.mark.parametrize("to", [0, 3, -1])
def test_chat_to_oneself_or_outside_the_session_is_refused(registry, to):
    session, (a, b, c) = lobby(registry)
    a.send("chat", to=to, seq=1, box="x")
    assert refused(a)[0] == ErrorCode.UNKNOWN_PID
    assert b.take() == c.take() == []


def test_chat_during_and_after_the_computation(registry):
    session, (a, b, c) = lobby(registry)
    for party in (a, b, c):
        party.send("ready", ready=True)
    assert registry.get(session.id).started
    for party in (a, b, c):
        party.take()
    b.send("chat", to=0, seq=1, box="running")
    assert a.take() == [{"v": 1, "type": "chat", "from": 1, "seq": 1, "box": "running"}]
    for party in (a, b, c):
        party.send("status", state="done")
    c.endpoint.disconnected(leaving=True)
    for party in (a, b):
        party.take()
    a.send("chat", to=1, seq=2, box="done")
    a.send("chat", to=2, seq=1, box="gone")  # left: dropped
    assert b.take() == [{"v": 1, "type": "chat", "from": 0, "seq": 2, "box": "done"}]
    assert a.take() == []


def test_chat_falls_under_the_per_connection_message_limits(make_registry):
    registry = make_registry(message_rate=1.0, message_burst=3)
    session = create(registry, [])
    a, b = Party(registry), Party(registry)
    join(a, session, None)
    join(b, session, None)
    a.take(), b.take()
    for seq in (1, 2, 3):
        a.send("chat", to=1, seq=seq, box="x")
    # The join took one of a's three; the third chat is over the burst.
    assert [m["seq"] for m in b.take()] == [1, 2]
    assert [m["code"] for m in a.take()] == [ErrorCode.RATE_LIMITED]


# --- several server processes (Redis) --------------------------------------------------------

def test_two_keys_racing_for_the_last_unpinned_place_agree_everywhere(redis_url, clock):
    cluster = Cluster(redis_url, 3, clock=clock)
    try:
        p0, p1, p2 = cluster.registries
        session = create(p0, [ALICE.did, "", ""])
        join(Party(p0), session, None)
        bob, carol = Party(p1), Party(p2)
        with cluster.hold():  # both joins are on their way before either is applied
            join(bob, session, BOB)
            join(carol, session, CAROL)
        outcomes = sorted((m[0]["type"], m[0].get("code")) for m in (bob.take(), carol.take()))
        assert outcomes == [("error", ErrorCode.PLACE_PINNED), ("welcome", None)]
        owners = {(r.sessions[session.id].members[2].endpoint.conn,
                   r.sessions[session.id].members[2].identity)
                  for r in cluster.registries if session.id in r.sessions}
        assert len(owners) == 1  # every replica gave the place to the same connection
        assert sorted(p0.sessions[session.id].members) == [1, 2]
    finally:
        cluster.close()


def test_chat_crosses_server_processes(redis_url, clock):
    cluster = Cluster(redis_url, 3, clock=clock)
    try:
        p0, p1, p2 = cluster.registries
        session = create(p0, [])
        a, b, c = Party(p0), Party(p1), Party(p2)
        for party in (a, b, c):
            join(party, session, None)
        c.endpoint.disconnected(leaving=True)
        for party in (a, b):
            party.take()
        a.send("chat", to=1, seq=1, box="across")
        a.send("chat", to=2, seq=1, box="gone")
        assert b.take() == [{"v": 1, "type": "chat", "from": 0, "seq": 1, "box": "across"}]
        assert a.take() == []
    finally:
        cluster.close()


def test_a_restarted_process_still_keeps_pinned_places(redis_url, clock):
    first = Cluster(redis_url, 1, clock=clock)
    session = create(first.registries[0], [ALICE.did, "", ""])
    join(Party(first.registries[0]), session, BOB)
    first.close()  # the whole server stops
    second = Cluster(redis_url, 1, clock=clock)
    try:
        registry = second.registries[0]
        seen = second.loop.run_until_complete(registry.store.describe(session.id))
        assert seen.pins == [ALICE.did, "", ""]
        mallory = Party(registry)
        join(mallory, session.id, MALLORY, role=0)
        assert refused(mallory)[0] == ErrorCode.PLACE_PINNED
        join(mallory, session.id, MALLORY)
        assert mallory.take()[0]["pid"] == 2  # 1 is still Bob's (reconnecting)
        alice = Party(registry)
        join(alice, session.id, ALICE)
        welcome = alice.take()[0]
        assert (welcome["pid"], welcome["pins"]) == (0, [ALICE.did, "", ""])
    finally:
        second.close()


def test_redis_keeps_the_key_a_join_proved_but_not_its_proof(redis_url, clock):
    cluster = Cluster(redis_url, 2, clock=clock)
    try:
        p0, p1 = cluster.registries
        session = create(p0, [ALICE.did, "", ""])
        resume = secrets.token_urlsafe(16)
        sent = proof(ALICE, session.id, resume)
        join(Party(p1), session, ALICE, resume=resume)
        assert p0.sessions[session.id].members[0].identity == ALICE.did
        store = cluster.loop.run_until_complete(
            p0.store.redis.lrange(p0.store.log_key(session.id), 0, -1))
        text = "".join(store)
        assert ALICE.did in text
        assert sent not in text and resume not in text and '"proof"' not in text
    finally:
        cluster.close()
