"""The sans-I/O signaling core (signaling.session, .registry, .endpoint), with plain strings
and a fake clock."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mpyc_webrtc import launch, programs
from mpyc_webrtc.wire import SERVER_MESSAGES, ErrorCode, SignalingError
from signaling.registry import Registry
from signaling.session import MAX_SOURCE_BYTES, Session
from testbed.sans_io import (
    MISSING,
    TINY_SOURCE,
    TOKEN,
    TOKEN_HASH,
    TWO_PARTIES,
    Clock,
    Party,
    create_request,
)
from testbed.shared_harness import Cluster

STUN = {"urls": "stun:127.0.0.1:3478"}
#: The session's join token (base64url of 32 bytes is 43 characters) and what the server keeps.
#: What every create request needs besides the party count and the program.
AUTH = {"token_hash": TOKEN_HASH}
#: A sealed box as a party sends it: the server relays it without looking inside.
BOX = "bm9uY2Utbm9uY2UtY2lwaGVydGV4dA"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis"])
def make_registry(request: pytest.FixtureRequest) -> Iterator[Callable[..., Registry]]:
    """The core's rules hold alike in one process and in sessions shared through Redis
    (``signaling.shared``; ``testbed.shared_harness`` settles after each step): every
    test that makes its registry with this runs against both."""
    clusters: list[Cluster] = []

    def make(**limits: Any) -> Registry:
        if request.param == "memory":
            return Registry(**limits)
        clusters.append(Cluster(request.getfixturevalue("redis_url"), **limits))
        return clusters[-1].registries[0]

    yield make
    for cluster in clusters:
        cluster.close()


@pytest.fixture
def registry(make_registry: Callable[..., Registry], clock: Clock) -> Registry:
    return make_registry(clock=clock, idle_timeout=60.0, ice_servers=[STUN])


def invalid(registry: Registry, request: Any) -> str:
    with pytest.raises(SignalingError) as info:
        registry.create(request)
    assert info.value.code == ErrorCode.INVALID_REQUEST
    return info.value.message


def joined(registry: Registry, session: Session, n: int) -> list[Party]:
    parties = [Party(registry) for _ in range(n)]
    for p in parties:
        p.join(session)
    for p in parties:
        p.take()
    return parties


def roster_members(msg: dict[str, Any]) -> list[tuple[int, str, str]]:
    assert msg["type"] == "roster"
    return [(m["pid"], m["name"], m["state"]) for m in msg["members"]]


# --- create() --------------------------------------------------------------------------------

@pytest.mark.parametrize("parties", [1, 0, -3, 33, 1000, "3", 3.0, True, False, None, [3]],
                         ids=repr)
def test_create_rejects_bad_party_counts(registry, parties):
    text = invalid(registry, {**AUTH, "parties": parties, "program": "sum"})
    assert "'parties'" in text
    assert registry.sessions == {}


def test_create_rejects_missing_parties(registry):
    invalid(registry, {**AUTH, "program": "sum"})


@pytest.mark.parametrize("body", [[], "sum", 3, None])
def test_create_rejects_non_object_bodies(registry, body):
    invalid(registry, body)


@pytest.mark.parametrize("parties", [2, 3, 32])
def test_create_accepts_party_counts_in_range(registry, parties):
    # With 2 parties, an uploaded program and the creator's no_privacy (see create_request).
    session = registry.create(create_request(parties))
    assert session.parties == parties
    assert registry.sessions == {session.id: session}


def test_create_rejects_unknown_program(registry):
    text = invalid(registry, {**AUTH, "parties": 3, "program": "nope"})
    assert "'nope'" in text
    for name in programs.BUILTIN:
        assert name in text


def test_create_rejects_missing_program(registry):
    invalid(registry, {**AUTH, "parties": 3})


@pytest.mark.parametrize("args", ["--no-log", [1], ["ok", None], {"a": "b"}], ids=repr)
def test_create_rejects_args_that_are_not_a_list_of_strings(registry, args):
    assert "'args'" in invalid(registry, {**AUTH, "parties": 3, "program": "sum", "args": args})


@pytest.mark.parametrize("arg", ["-M3", "-M", "-I", "-I0", "--index=2", "--index", "-P",
                                 "-Plocalhost", "--config=x.ini", "-C", "--base-port=9000",
                                 "-B", "--ssl", "-h", "--help", "-H", "-V"])
def test_create_rejects_reserved_args(registry, arg):
    text = invalid(registry, {**AUTH, "parties": 3, "program": "sum", "args": ["--no-log", arg]})
    assert repr(arg) in text


@pytest.mark.parametrize("arg", ["--ind=2", "--inde", "--conf=x.ini", "--base=9000", "--HEL"])
def test_create_rejects_abbreviated_reserved_args(registry, arg):
    # MPyC's argparse parser accepts unambiguous prefixes of long options (allow_abbrev), and
    # the peer puts the session's args after "-M m -I pid", so "--ind=2" would override the pid.
    invalid(registry, {**AUTH, "parties": 3, "program": "sum", "args": [arg]})


def test_create_rejects_too_many_or_too_long_args(registry):
    invalid(registry, {**AUTH, "parties": 3, "program": "sum", "args": ["--no-log"] * 65})
    invalid(registry, {**AUTH, "parties": 3, "program": "sum", "args": ["x" * 1001]})


def test_create_valid_builtin(registry, clock):
    session = registry.create({**AUTH, "parties": 3, "program": "max",
                               "args": ["--no-log", "-L64"]})
    assert session.program.name == "max"
    assert session.program.args == ["--no-log", "-L64"]
    assert session.program.source is None
    assert session.program.to_wire() == {"name": "max", "args": ["--no-log", "-L64"],
                                         "builtin": True}
    assert session.created == session.last_activity == clock.now
    assert session.members == {}
    assert not session.started
    assert session.ice_servers(0) == [STUN]
    assert not session.relay_only
    description = session.describe()
    program = description.pop("program")
    assert description == {
        "session": session.id, "parties": 3, "labels": ["", "", ""],
        "joined": 0, "members": [], "started": False, "round": 0, "relay_only": False,
        "descriptor": None, "pins": ["", "", ""],
        # Never for idleness while a party is connected; at the latest at max_age.
        "closes": {"idle": 60.0, "at": session.ends},
        # As a create request, to create it again with a new link.
        "settings": {"parties": 3, "program": "max", "args": ["--no-log", "-L64"],
                     "labels": ["", "", ""], "pins": ["", "", ""], "relay_only": False,
                     "no_privacy": False},
    }
    assert program == {
        "name": "max", "args": ["--no-log", "-L64"], "builtin": True,
        "title": programs.CATALOG["max"].title, "summary": programs.CATALOG["max"].summary,
        "input": programs.CATALOG["max"].input.to_json(),
        "source": programs.source("max"), "hash": program["hash"],
        "fingerprint": program["fingerprint"],
    }
    assert program["hash"] == launch.program_hash(session.program.to_wire())
    assert re.fullmatch(r"[0-9a-f]{64}", program["hash"])
    assert re.fullmatch(r"[0-9a-f]{4}( [0-9a-f]{4}){4}", program["fingerprint"])
    assert program["fingerprint"].replace(" ", "") == program["hash"][:20]
    assert session.token_hash == TOKEN_HASH


def test_create_gives_distinct_url_safe_ids(registry):
    ids = {registry.create({**AUTH, "parties": 3, "program": "sum"}).id for _ in range(50)}
    assert len(ids) == 50
    for sid in ids:
        assert sid and all(c.isalnum() or c in "-_" for c in sid)
        assert len(sid) <= 64  # fits the join message's session field


SOURCE = "from mpyc.runtime import mpc\n\nmpc.run(mpc.start())\nmpc.run(mpc.shutdown())\n"


def test_create_valid_source(registry):
    session = registry.create({**AUTH, "parties": 3, "source": SOURCE, "program": "mine.py",
                               "args": ["--no-log"]})
    assert session.program.name == "mine.py"
    assert session.program.source == SOURCE
    assert session.program.to_wire() == {"name": "mine.py", "args": ["--no-log"],
                                         "builtin": False, "source": SOURCE}
    shown = session.describe()["program"]
    assert (shown["name"], shown["args"], shown["builtin"]) == ("mine.py", ["--no-log"], False)
    assert shown["source"] == SOURCE
    assert shown["input"]["kind"] == "text"


def test_create_source_without_name_is_program_py(registry):
    session = registry.create({**AUTH, "parties": 3, "source": SOURCE})
    assert session.program.name == "program.py"


def test_create_source_may_shadow_a_builtin_name(registry):
    session = registry.create({**AUTH, "parties": 3, "source": SOURCE, "program": "sum"})
    assert session.program.source == SOURCE
    assert session.program.to_wire()["builtin"] is False


def test_create_source_with_syntax_error_names_the_line(registry):
    text = invalid(registry, {**AUTH, "parties": 3, "source": "x = 1\ny = 2\ndef f(:\n    pass\n"})
    assert "syntax error" in text
    assert "line 3" in text


@pytest.mark.parametrize("source", ["", "   \n\t", 5, ["x = 1"]], ids=repr)
def test_create_rejects_empty_or_non_text_source(registry, source):
    assert "'source'" in invalid(registry, {**AUTH, "parties": 3, "source": source})


def test_create_source_at_the_size_limit_is_accepted(registry):
    source = "#" * MAX_SOURCE_BYTES
    assert registry.create({**AUTH, "parties": 3, "source": source}).program.source == source


def test_create_source_too_large(registry):
    text = invalid(registry, {**AUTH, "parties": 3, "source": "#" * (MAX_SOURCE_BYTES + 1)})
    assert f"{MAX_SOURCE_BYTES // 1024} KiB" in text


def test_create_source_size_is_counted_in_bytes(registry):
    source = "#" + "é" * (MAX_SOURCE_BYTES // 2)
    assert len(source) < MAX_SOURCE_BYTES < len(source.encode())
    invalid(registry, {**AUTH, "parties": 3, "source": source})


@pytest.mark.parametrize("name", ["", "x" * 101, []], ids=repr)
def test_create_source_rejects_bad_program_names(registry, name):
    assert "'program'" in invalid(registry, {**AUTH, "parties": 3, "source": SOURCE,
                                             "program": name})


@pytest.mark.parametrize("name", [5, True, {"a": 1}], ids=repr)
def test_create_source_with_non_string_program_name_is_invalid_request(registry, name):
    # Must be a clean invalid_request (HTTP 400), not a TypeError from compile() (HTTP 500).
    invalid(registry, {**AUTH, "parties": 3, "source": SOURCE, "program": name})


def test_create_source_args_are_checked_too(registry):
    invalid(registry, {**AUTH, "parties": 3, "source": SOURCE, "args": ["-I1"]})


def test_max_sessions_gives_server_busy(make_registry, clock):
    registry = make_registry(clock=clock, max_sessions=2)
    registry.create({**AUTH, "parties": 3, "program": "sum"})
    registry.create({**AUTH, "parties": 3, "program": "sum"})
    with pytest.raises(SignalingError) as info:
        registry.create({**AUTH, "parties": 3, "program": "sum"})
    assert info.value.code == ErrorCode.SERVER_BUSY
    assert len(registry.sessions) == 2


def test_server_busy_clears_once_sessions_expire(make_registry, clock):
    registry = make_registry(clock=clock, max_sessions=1, idle_timeout=10)
    registry.create({**AUTH, "parties": 3, "program": "sum"})
    with pytest.raises(SignalingError):
        registry.create({**AUTH, "parties": 3, "program": "sum"})
    clock.now += 11
    assert len(registry.expire()) == 1
    assert registry.create({**AUTH, "parties": 3, "program": "sum"}).id in registry.sessions


def test_invalid_request_is_reported_before_server_busy(make_registry, clock):
    registry = make_registry(clock=clock, max_sessions=0)
    invalid(registry, {**AUTH, "parties": 1, "program": "sum"})


# --- privacy: built-ins need 3 parties, less privacy needs the creator's no_privacy ----------

@pytest.mark.parametrize("no_privacy", [MISSING, False, True], ids=["absent", "false", "true"])
@pytest.mark.parametrize("name", sorted(programs.BUILTIN))
def test_a_builtin_program_with_two_parties_is_refused(registry, name, no_privacy):
    """Not even the creator's opt-in makes a 2-party built-in session: the built-ins need
    ``launch.MIN_BUILTIN_PARTIES``."""
    assert launch.MIN_BUILTIN_PARTIES == 3
    request = {**AUTH, "parties": 2, "program": name}
    if no_privacy is not MISSING:
        request["no_privacy"] = no_privacy
    assert invalid(registry, request) == launch.BUILTIN_NEEDS_PARTIES
    assert invalid(registry, {**request, "args": ["-T0"]}) == launch.BUILTIN_NEEDS_PARTIES
    assert registry.sessions == {}


#: Sessions whose inputs are less private than they could be: (parties, program, args).
LESS_PRIVATE = [
    (2, {"source": TINY_SOURCE}, []),
    (2, {"source": TINY_SOURCE, "program": "sum"}, []),  # an upload named like a built-in
    (3, {"program": "sum"}, ["-T0"]),
    (3, {"source": TINY_SOURCE}, ["--no-log", "-T0"]),
    (3, {"program": "max"}, ["--threshold=0"]),
    (5, {"program": "sum"}, ["-T1"]),
    (5, {"source": TINY_SOURCE}, ["-T", "1"]),
    (4, {"program": "average"}, ["-T0"]),
]
LESS_PRIVATE_IDS = ["2 uploaded", "2 uploaded named sum", "3 sum -T0", "3 uploaded -T0",
                    "3 max --threshold=0", "5 sum -T1", "5 uploaded -T 1", "4 average -T0"]


@pytest.mark.parametrize("parties, program, args", LESS_PRIVATE, ids=LESS_PRIVATE_IDS)
def test_less_privacy_needs_the_creators_no_privacy(registry, parties, program, args):
    request = {**AUTH, "parties": parties, **program, "args": args}
    found = launch.privacy(parties, args)
    assert not found["full"]
    sentence = launch.privacy_sentence(found)
    for refused in (request, {**request, "no_privacy": False}):
        text = invalid(registry, refused)
        assert text.startswith(sentence + " "), text
        assert "'no_privacy'" in text and "--no-privacy" in text, text
        assert text != launch.BUILTIN_NEEDS_PARTIES
    assert registry.sessions == {}
    session = registry.create({**request, "no_privacy": True})
    assert (session.parties, session.program.args) == (parties, args)
    assert registry.sessions == {session.id: session}


def test_the_refusal_says_how_private_the_inputs_would_be(registry):
    no_privacy = launch.privacy_sentence(launch.privacy(3, ["-T0"]))
    reduced = launch.privacy_sentence(launch.privacy(5, ["-T1"]))
    assert no_privacy != reduced  # none at all, and less than 5 parties could keep
    text = invalid(registry, {**AUTH, "parties": 3, "program": "sum", "args": ["-T0"]})
    assert text.startswith(no_privacy + " ")
    text = invalid(registry, {**AUTH, "parties": 5, "program": "sum", "args": ["-T1"]})
    assert text.startswith(reduced + " ")
    text = invalid(registry, {**AUTH, **TWO_PARTIES, "no_privacy": False})
    assert text.startswith(no_privacy + " ")  # threshold 0 either way


@pytest.mark.parametrize("parties, program, args", [
    (3, {"program": "sum"}, []),
    (3, {"program": "sum"}, ["--no-log", "-L64"]),
    (3, {"program": "sum"}, ["-T1"]),
    (3, {"source": TINY_SOURCE}, []),
    (5, {"program": "sum"}, ["-T2"]),
    (5, {"source": TINY_SOURCE}, ["--threshold=2"]),
    (5, {"program": "sum"}, []),
    (32, {"program": "max"}, []),
], ids=["3 sum", "3 sum -L64", "3 sum -T1", "3 uploaded", "5 sum -T2", "5 uploaded -T2",
        "5 sum", "32 max"])
def test_full_privacy_needs_nothing(registry, parties, program, args):
    request = {**AUTH, "parties": parties, **program, "args": args}
    assert launch.privacy(parties, args)["full"]
    session = registry.create(request)
    assert (session.parties, session.program.args) == (parties, args)
    # The opt-in does no harm where it is not needed.
    assert registry.create({**request, "no_privacy": True}).id in registry.sessions
    assert registry.create({**request, "no_privacy": False}).id in registry.sessions


@pytest.mark.parametrize("value", ["true", "yes", 1, 0, None, [], {}, [True]], ids=repr)
def test_no_privacy_must_be_a_boolean(registry, value):
    for request in ({**AUTH, "parties": 3, "program": "sum"}, {**AUTH, **TWO_PARTIES},
                    {**AUTH, "parties": 2, "program": "sum"}):
        text = invalid(registry, {**request, "no_privacy": value})
        assert text == f"'no_privacy' must be true or false, got {value!r}."
    assert registry.sessions == {}


# --- token_hash and invalid text --------------------------------------------------------------

TOKEN_HASH_MESSAGE = (
    "'token_hash' must be the SHA-256 (64 lowercase hex digits) of the session's join token. "
    "The create page and 'mpyc-webrtc-peer create' make it for you.")


@pytest.mark.parametrize("token_hash", [
    MISSING, None, "", TOKEN_HASH[:63], TOKEN_HASH + "0", TOKEN_HASH.upper(),
    "g" * 64, " " + TOKEN_HASH[1:], TOKEN_HASH[:-1] + "\n", 123, 0, True, [TOKEN_HASH],
    {"sha256": TOKEN_HASH}, TOKEN,
], ids=["missing", "null", "empty", "too short", "too long", "uppercase hex", "not hex",
        "leading space", "trailing newline", "integer", "zero", "true", "list", "object",
        "the token itself"])
def test_create_requires_a_well_formed_token_hash(registry, token_hash):
    request: dict[str, Any] = {"parties": 3, "program": "sum"}
    if token_hash is not MISSING:
        request["token_hash"] = token_hash
    assert invalid(registry, request) == TOKEN_HASH_MESSAGE
    assert registry.sessions == {}


def test_create_with_uploaded_source_requires_a_token_hash_too(registry):
    assert invalid(registry, {"parties": 3, "source": SOURCE}) == TOKEN_HASH_MESSAGE


def test_create_keeps_the_token_hash_but_never_shows_it(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    assert session.token_hash == TOKEN_HASH
    assert TOKEN_HASH not in json.dumps(session.describe())
    assert TOKEN_HASH not in json.dumps(session.roster())
    a = Party(registry)
    a.join(session)
    assert TOKEN_HASH not in json.dumps(a.take())


def test_sessions_have_their_own_tokens(registry):
    other_token = "o" * 43
    mine = registry.create({**AUTH, "parties": 3, "program": "sum"})
    theirs = registry.create({"parties": 3, "program": "sum",
                              "token_hash": hashlib.sha256(other_token.encode()).hexdigest()})
    a = Party(registry)
    a.join(theirs)  # with TOKEN, which is mine's
    assert a.error() == ErrorCode.BAD_TOKEN
    a.join(theirs, token=other_token)
    assert a.types() == ["welcome", "roster"]
    b = Party(registry)
    b.join(mine, token=other_token)
    assert b.error() == ErrorCode.BAD_TOKEN
    assert mine.members == {}


@pytest.mark.parametrize("source", ["\ud800", "x = '\ud800'\n", "# \udfff\n" + SOURCE,
                                    SOURCE + "\udbff"], ids=repr)
def test_source_with_an_unpaired_surrogate_is_invalid_request(registry, source):
    # JSON may carry "\ud800"; it must be a clean 400, not a UnicodeEncodeError (a 500).
    text = invalid(registry, {**AUTH, "parties": 3, "source": source})
    assert text == ("The program contains characters that are not valid text "
                    "(unpaired surrogates).")
    assert registry.sessions == {}


@pytest.mark.parametrize("args", [["\ud800"], ["--no-log", "--input=\udc00"],
                                  ["-L64", "x\ud83d"]], ids=repr)
def test_argument_with_an_unpaired_surrogate_is_invalid_request(registry, args):
    message = "A program argument contains characters that are not valid text."
    assert invalid(registry, {**AUTH, "parties": 3, "program": "sum", "args": args}) == message
    assert invalid(registry, {**AUTH, "parties": 3, "source": SOURCE, "args": args}) == message
    assert registry.sessions == {}


def test_surrogate_pairs_are_fine(registry):
    # A properly paired surrogate is just a character outside the BMP, as JSON spells it.
    request = json.loads('{"parties": 3, "program": "sum", "args": ["--x=\\ud83d\\ude00"]}')
    session = registry.create({**AUTH, **request})
    assert session.program.args == ["--x=\U0001f600"]
    assert session.describe()["program"]["hash"] == launch.program_hash(
        session.program.to_wire())


# --- join tokens ---------------------------------------------------------------------------------

BAD_TOKEN_MESSAGE = (
    "This link is incomplete or wrong: a join link ends with a secret part after the # sign. "
    "Ask the person who created the session for the whole link.")


@pytest.mark.parametrize("token", [
    "", "x", TOKEN[:-1], TOKEN + "t", TOKEN.upper(), " " + TOKEN, TOKEN_HASH[:64],
    "k" * 64, "\ud800", TOKEN[:-1] + "\ud800",
], ids=["empty", "short", "one less", "one more", "uppercase", "leading space",
        "the hash", "64 characters", "lone surrogate", "surrogate at the end"])
def test_join_with_a_wrong_token_is_bad_token(registry, token):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    (a,) = joined(registry, session, 1)
    x = Party(registry)
    x.join(session, token=token)
    (error,) = x.take()
    assert error == {"v": 1, "type": "error", "code": "bad_token",
                     "message": BAD_TOKEN_MESSAGE}
    # Not joined: no welcome, no roster for anyone, no place taken.
    assert x.endpoint.session is None and x.endpoint.pid is None
    assert list(session.members) == [0]
    assert a.sent == []
    x.send("status", state="hello")
    assert x.error() == ErrorCode.NOT_JOINED
    assert a.sent == []


def test_join_without_a_token_is_invalid_message(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    (a,) = joined(registry, session, 1)
    x = Party(registry)
    x.join(session, token=MISSING)
    (error,) = x.take()
    assert error["code"] == ErrorCode.INVALID_MESSAGE
    assert error["message"] == "A 'join' message needs the field 'token'."
    assert x.endpoint.session is None and list(session.members) == [0]
    assert a.sent == []


@pytest.mark.parametrize("token", ["k" * 65, "t" * 1000, None, 123, True, [TOKEN]],
                         ids=["65 characters", "1000 characters", "null", "number", "true",
                              "list"])
def test_join_with_a_malformed_token_is_invalid_message(registry, token):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    (a,) = joined(registry, session, 1)
    x = Party(registry)
    x.join(session, token=token)
    assert x.error() == ErrorCode.INVALID_MESSAGE
    assert x.endpoint.session is None and list(session.members) == [0]
    assert a.sent == []


def test_the_right_token_after_a_wrong_one_joins(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    (a,) = joined(registry, session, 1)
    b = Party(registry)
    b.join(session, token="wrong")
    assert b.error() == ErrorCode.BAD_TOKEN
    b.join(session, token="")
    assert b.error() == ErrorCode.BAD_TOKEN
    b.join(session, token=MISSING)
    assert b.error() == ErrorCode.INVALID_MESSAGE
    assert a.sent == []
    b.join(session)
    assert b.endpoint.pid == 1 and b.endpoint.session is session
    assert b.types() == ["welcome", "roster"]
    assert a.types() == ["roster"]
    c = Party(registry)
    c.join(session)
    assert b.types() == ["roster", "start", "roster"]
    assert a.types() == ["roster", "start", "roster"]


def test_a_wrong_token_does_not_take_a_chosen_role(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    x = Party(registry)
    x.join(session, role=2, token="wrong")
    assert x.error() == ErrorCode.BAD_TOKEN
    b = Party(registry)
    b.join(session, role=2)
    assert b.endpoint.pid == 2


def test_a_wrong_token_is_checked_before_session_full(registry):
    # Without the token nobody learns anything about the session's members.
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    joined(registry, session, 3)
    x = Party(registry)
    x.join(session, token="wrong")
    assert x.error() == ErrorCode.BAD_TOKEN
    x.join(session)
    assert x.error() == ErrorCode.SESSION_FULL


def test_session_admits_only_its_token(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    assert session.admits(TOKEN)
    assert not session.admits("")
    assert not session.admits(TOKEN_HASH)
    assert not session.admits(TOKEN + " ")


# --- join, welcome, roster, start ------------------------------------------------------------

def test_pids_are_assigned_in_join_order(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = Party(registry), Party(registry), Party(registry)
    for expected, party in enumerate([a, b, c]):
        party.join(session)
        assert party.endpoint.pid == expected
        assert party.endpoint.session is session
        welcome = party.sent[0]
        assert welcome["type"] == "welcome"
        assert welcome["pid"] == expected
    assert sorted(session.members) == [0, 1, 2]


def test_welcome_contents(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sort", "args": ["--no-log"]})
    a = Party(registry)
    a.join(session, name="Alice")
    welcome = a.sent[0]
    assert welcome == {
        "v": 1, "type": "welcome", "session": session.id, "pid": 0, "parties": 3,
        "program": {"name": "sort", "args": ["--no-log"], "builtin": True},
        "labels": ["", "", ""], "ice_servers": [STUN], "relay_only": False,
        "descriptor": None, "pins": ["", "", ""],
    }
    assert set(welcome) == {"v", "type", *SERVER_MESSAGES["welcome"]}


def test_welcome_carries_uploaded_source(registry):
    session = registry.create({**AUTH, "parties": 3, "source": SOURCE, "program": "mine.py"})
    a = Party(registry)
    a.join(session)
    assert a.sent[0]["program"] == {"name": "mine.py", "args": [], "builtin": False,
                                    "source": SOURCE}


def test_roster_is_broadcast_to_all_on_each_join(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = Party(registry), Party(registry)
    a.join(session, name="Alice")
    assert a.types() == ["welcome", "roster"]
    b.join(session)
    (roster_a,) = a.take()
    welcome_b, roster_b = b.take()
    assert welcome_b["type"] == "welcome"
    assert roster_a == roster_b == {
        "v": 1, "type": "roster", "parties": 3, "started": False, "round": 0, "pairs": [],
        "members": [{"pid": 0, "name": "Alice", "label": "", "state": "joined", "ready": True,
                     "identity": None},
                    {"pid": 1, "name": "party 1", "label": "", "state": "joined",
                     "ready": True, "identity": None}],
    }
    assert set(roster_a) == {"v", "type", *SERVER_MESSAGES["roster"]}


def test_start_is_broadcast_exactly_once_when_the_last_party_joins(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = Party(registry), Party(registry), Party(registry)
    a.join(session)
    b.join(session)
    assert "start" not in a.types() + b.types()
    assert not session.started
    c.join(session)
    assert session.started
    assert a.types() == ["roster", "start", "roster"]
    assert b.types() == ["roster", "start", "roster"]
    sent_c = c.take()
    assert [m["type"] for m in sent_c] == ["welcome", "roster", "start", "roster"]
    start = sent_c[2]
    assert start == {"v": 1, "type": "start", "parties": 3, "round": 1}
    assert set(start) == {"v", "type", *SERVER_MESSAGES["start"]}
    assert sent_c[1]["started"] is False
    assert sent_c[3]["started"] is True
    assert [m["pid"] for m in sent_c[3]["members"]] == [0, 1, 2]
    # Later activity never starts the session again.
    a.send("status", state="connected")
    d = Party(registry)
    d.join(session)
    for party in (a, b, c):
        assert "start" not in party.types()


def test_two_party_session_starts_on_second_join(registry):
    session = registry.create({**AUTH, **TWO_PARTIES})
    a, b = Party(registry), Party(registry)
    a.join(session)
    assert a.types() == ["welcome", "roster"]
    b.join(session)
    assert a.types() == ["roster", "start", "roster"]
    assert b.types() == ["welcome", "roster", "start", "roster"]


def test_fourth_party_gets_session_full(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    d = Party(registry)
    d.join(session)
    assert d.error() == ErrorCode.SESSION_FULL
    assert d.endpoint.session is None and d.endpoint.pid is None
    assert sorted(session.members) == [0, 1, 2]
    assert a.sent == b.sent == c.sent == []
    # The refused connection is not stuck: it can still join another session.
    other = registry.create({**AUTH, "parties": 3, "program": "sum"})
    d.join(other)
    assert d.types() == ["welcome", "roster"]
    assert d.endpoint.pid == 0


def test_join_unknown_session(registry):
    a = Party(registry)
    a.join("no-such-session")
    assert a.error() == ErrorCode.UNKNOWN_SESSION
    assert a.endpoint.session is None


def test_joining_twice_is_already_joined(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    other = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = joined(registry, session, 2)
    a.join(session)
    (error,) = a.take()
    assert (error["code"], error["message"]) == (
        ErrorCode.ALREADY_JOINED, f"This connection already joined session {session.id} as "
        "party 1.")  # pid 0, as people count parties
    a.join(other)
    assert a.error() == ErrorCode.ALREADY_JOINED
    assert a.endpoint.pid == 0 and a.endpoint.session is session
    assert sorted(session.members) == [0, 1]
    assert other.members == {}
    assert b.sent == []


def test_name_defaults_to_party_pid(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = Party(registry), Party(registry)
    a.join(session, name="")
    b.join(session, name="Bob")
    assert roster_members(b.sent[-1]) == [(0, "party 0", "joined"), (1, "Bob", "joined")]


# --- relaying ----------------------------------------------------------------------------------

def test_signals_are_relayed_to_the_addressed_pid(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    a.send("signal", to=1, seq=1, box="offer-box_-0==")
    assert b.take() == [{"v": 1, "type": "signal", "seq": 1, "box": "offer-box_-0==",
                         "from": 0}]
    b.send("signal", to=0, seq=1, box="answer-box")
    assert a.take() == [{"v": 1, "type": "signal", "seq": 1, "box": "answer-box", "from": 1}]
    c.send("signal", to=0, seq=7, box="A" * 4096)
    assert a.take() == [{"v": 1, "type": "signal", "seq": 7, "box": "A" * 4096, "from": 2}]
    c.send("signal", to=1, seq=0, box="")
    assert b.take() == [{"v": 1, "type": "signal", "seq": 0, "box": "", "from": 2}]
    # Nobody else hears any of it, and senders get no echo.
    assert a.sent == b.sent == c.sent == []


def test_relayed_signal_matches_the_server_schema(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    a.send("signal", to=1, seq=3, box=BOX)
    (relayed,) = b.take()
    assert set(relayed) == {"v", "type", *SERVER_MESSAGES["signal"]}


def test_box_and_seq_pass_through_unchanged(registry):
    # The server never looks inside a box, nor checks the numbering: the receiver does.
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    for seq, box in [(5, BOX), (5, BOX), (2, "not even base64 {}\u00e9\n"), (-1, "x"),
                     (2**53, "y")]:
        a.send("signal", to=1, seq=seq, box=box)
        assert b.take() == [{"v": 1, "type": "signal", "seq": seq, "box": box, "from": 0}]
    assert a.sent == c.sent == []


def test_relay_works_before_start(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = joined(registry, session, 2)
    b.send("signal", to=0, seq=1, box="x")
    assert a.take() == [{"v": 1, "type": "signal", "seq": 1, "box": "x", "from": 1}]


def test_relayed_message_overrides_a_forged_from(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    a.endpoint.receive(json.dumps({"v": 1, "type": "signal", "to": 1, "seq": 1, "box": "x",
                                   "from": 7}))
    (relayed,) = b.take()
    assert relayed["from"] == 0
    assert "to" not in relayed
    assert relayed == {"v": 1, "type": "signal", "seq": 1, "box": "x", "from": 0}
    # "from" naming the receiver itself, or the sender's own pid, changes nothing either.
    a.send("signal", to=1, seq=2, box="y", **{"from": 1})
    assert b.take() == [{"v": 1, "type": "signal", "seq": 2, "box": "y", "from": 0}]
    a.send("signal", to=1, seq=3, box="z", **{"from": 2})
    assert b.take() == [{"v": 1, "type": "signal", "seq": 3, "box": "z", "from": 0}]
    assert a.sent == c.sent == []


@pytest.mark.parametrize("to", [3, 99, -1])
def test_addressing_a_pid_not_in_the_session_is_unknown_pid(registry, to):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    a.send("signal", to=to, seq=1, box="x")
    assert a.error() == ErrorCode.UNKNOWN_PID
    assert b.sent == c.sent == []


def test_addressing_a_free_pid_before_start_is_unknown_pid(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    (a,) = joined(registry, session, 1)
    a.send("signal", to=1, seq=1, box="x")
    assert a.error() == ErrorCode.UNKNOWN_PID


def test_addressing_yourself_is_unknown_pid(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    b.send("signal", to=1, seq=1, box="c")
    (err,) = b.take()
    assert err["code"] == ErrorCode.UNKNOWN_PID
    assert "yourself" in err["message"]
    assert a.sent == c.sent == []


def test_addressing_a_party_that_left_is_unknown_pid(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    c.endpoint.disconnected()
    a.take()
    a.send("signal", to=2, seq=1, box="x")
    assert a.error() == ErrorCode.UNKNOWN_PID
    assert c.sent == []


@pytest.mark.parametrize("type_,fields", [
    ("signal", {"to": 1, "seq": 1, "box": "x"}),
    ("signal", {"to": 0, "seq": 1, "box": "x"}),
    ("signal", {"to": 0, "seq": 1, "box": "x", "from": 1}),
    ("status", {"state": "connected"}),
    ("ready", {"ready": True}),
    ("link", {"peer": 0, "state": "connecting"}),
])
def test_sending_before_join_is_not_joined(registry, type_, fields):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    (a,) = joined(registry, session, 1)
    stranger = Party(registry)
    stranger.send(type_, **fields)
    assert stranger.error() == ErrorCode.NOT_JOINED
    assert a.sent == []


@pytest.mark.parametrize("text,code", [
    ("{oops", ErrorCode.MALFORMED_JSON),
    ('{"v":2,"type":"join","session":"x"}', ErrorCode.UNSUPPORTED_VERSION),
    ('{"v":1,"type":"hello"}', ErrorCode.UNKNOWN_TYPE),
    ('{"v":1,"type":"signal","to":true,"seq":1,"box":"x"}', ErrorCode.INVALID_MESSAGE),
    ('{"v":1,"type":"signal","to":1,"seq":"1","box":"x"}', ErrorCode.INVALID_MESSAGE),
    ('{"v":1,"type":"offer","to":1,"sdp":"x"}', ErrorCode.UNKNOWN_TYPE),
    ("x" * (64 * 1024 + 1), ErrorCode.MESSAGE_TOO_LARGE),
    (b"\xff\xfe\xfd", ErrorCode.MALFORMED_JSON),
])
def test_wire_errors_become_error_messages(registry, text, code):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    (a,) = joined(registry, session, 1)
    a.endpoint.receive(text)
    assert a.error() == code
    # The connection stays usable and joined.
    assert a.endpoint.pid == 0
    a.send("status", state="still here")
    assert roster_members(a.take()[0]) == [(0, "party 0", "still here")]


# --- leaving and status ------------------------------------------------------------------------

def test_leaving_before_start_frees_the_pid(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = joined(registry, session, 2)
    a.endpoint.disconnected()
    assert a.endpoint.session is None and a.endpoint.pid is None
    assert a.sent == []
    (roster,) = b.take()
    assert roster["started"] is False
    assert roster_members(roster) == [(1, "party 1", "joined")]
    c = Party(registry)
    c.join(session)
    assert c.endpoint.pid == 0
    assert roster_members(b.take()[0]) == [(0, "party 0", "joined"), (1, "party 1", "joined")]
    d = Party(registry)
    d.join(session)
    assert d.endpoint.pid == 2
    assert session.started


def test_next_joiner_gets_the_lowest_free_pid(registry):
    session = registry.create({**AUTH, "parties": 4, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    c.endpoint.disconnected()
    b.endpoint.disconnected()
    d = Party(registry)
    d.join(session)
    assert d.endpoint.pid == 1
    e = Party(registry)
    e.join(session)
    assert e.endpoint.pid == 2


def test_leaving_after_start_shows_state_left(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    b.endpoint.disconnected()
    expected = [(0, "party 0", "joined"), (1, "party 1", "left"), (2, "party 2", "joined")]
    (roster_a,) = a.take()
    (roster_c,) = c.take()
    assert roster_a == roster_c
    assert roster_a["started"] is True
    assert roster_members(roster_a) == expected
    assert b.sent == []
    assert sorted(session.members) == [0, 1, 2]
    # The pid is not handed out again: the session is still full.
    d = Party(registry)
    d.join(session)
    assert d.error() == ErrorCode.SESSION_FULL


def test_disconnect_without_join_is_harmless(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    (a,) = joined(registry, session, 1)
    stranger = Party(registry)
    stranger.endpoint.disconnected()
    stranger.endpoint.disconnected()
    assert a.sent == []
    assert list(session.members) == [0]


def test_disconnect_twice_leaves_once(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = joined(registry, session, 2)
    a.endpoint.disconnected()
    a.endpoint.disconnected()
    assert len(b.take()) == 1


def test_status_updates_the_roster(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    b.send("status", state="connected", detail="2 of 2 channels open")
    for party in (a, b, c):
        (roster,) = party.take()
        assert roster_members(roster) == [
            (0, "party 0", "joined"), (1, "party 1", "connected"), (2, "party 2", "joined"),
        ]
        assert roster["started"] is True
    a.send("status", state="done")
    assert roster_members(c.take()[0])[0] == (0, "party 0", "done")


def test_a_party_that_cannot_take_part_holds_its_place_and_says_why(registry):
    """A browser that lacks what taking part needs joins, not ready, and says so: everyone's
    roster shows what it lacks, the session waits, and its place is free once it leaves."""
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = joined(registry, session, 2)
    c = Party(registry)
    c.join(session, ready=False)
    c.send("status", state="unsupported", detail="webrtc,isolation")
    for party in (a, b, c):
        roster = party.take()[-1]
        assert roster["members"][2] == {"pid": 2, "name": "party 2", "label": "",
                                        "state": "unsupported", "ready": False,
                                        "identity": None, "lacks": ["webrtc", "isolation"]}
        assert "lacks" not in roster["members"][0]
    assert not session.started
    c.send("status", state="unsupported", detail="webrtc,isolation")
    assert a.take() == []  # nothing new
    c.endpoint.disconnected()
    assert roster_members(a.take()[-1]) == [(0, "party 0", "joined"), (1, "party 1", "joined")]
    d = Party(registry)
    d.join(session)
    assert d.endpoint.pid == 2
    assert session.started


def test_an_unsupported_status_must_say_what_is_lacking_and_come_before_the_start(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a = Party(registry)
    a.join(session, ready=False)
    a.take()
    a.send("status", state="unsupported")
    assert a.error() == ErrorCode.INVALID_MESSAGE
    a.send("status", state="unsupported", detail="jspi")
    assert a.error() == ErrorCode.INVALID_MESSAGE
    a.send("ready", ready=True)
    joined(registry, session, 2)
    assert session.started
    a.take()
    a.send("status", state="unsupported", detail="webrtc")
    assert a.error() == ErrorCode.INVALID_MESSAGE


# --- expiry ------------------------------------------------------------------------------------

def test_an_open_lobby_never_closes_for_idleness(registry, clock):
    """Issue 18: people wait in a lobby far longer than the idle timeout; their open
    connection is activity. Once the last one left, the idle timeout runs from then."""
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = joined(registry, session, 2)
    clock.now += 10 * 60.0  # ten idle timeouts without a message
    assert registry.expire() == []
    assert a.sent == [] and a.closed == 0 and b.closed == 0
    assert session.id in registry.sessions


def test_an_idle_lobby_closes_after_its_last_party_left(clock):
    """(One process: with shared sessions the store's own expiry does it, ``ttl_ms``, as
    an open connection renews it: ``SharedRegistry.running``.)"""
    registry = Registry(clock=clock, idle_timeout=60.0)
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = joined(registry, session, 2)
    clock.now += 600
    a.endpoint.disconnected(leaving=True)
    clock.now += 30
    b.endpoint.disconnected(leaving=True)
    clock.now += 60.0
    assert registry.expire() == []  # the last one left 60 s ago: not more than the timeout
    clock.now += 0.5
    assert registry.expire() == [session]
    assert registry.sessions == {}
    # The session is gone for newcomers, who are told it closed and how it was made.
    c = Party(registry)
    c.join(session)
    assert c.error() == ErrorCode.SESSION_EXPIRED
    with pytest.raises(SignalingError) as info:
        registry.get(session.id)
    assert info.value.code == ErrorCode.SESSION_EXPIRED
    assert info.value.message == "This session was closed because it was idle for too long."
    assert info.value.to_http()["settings"] == {
        "parties": 3, "program": "sum", "args": [], "labels": ["", "", ""],
        "pins": ["", "", ""], "relay_only": False, "no_privacy": False}


def test_a_party_in_the_lobby_hears_when_the_session_expires(make_registry, clock):
    registry = make_registry(clock=clock, idle_timeout=60, max_age=600)
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = joined(registry, session, 2)
    clock.now += 601
    assert registry.expire() == [session]
    for party in (a, b):
        assert party.error() == ErrorCode.SESSION_EXPIRED
        assert party.closed == 1
    a.endpoint.disconnected()  # the socket closing afterwards is harmless
    assert b.sent == []
    with pytest.raises(SignalingError) as info:
        registry.get(session.id)
    assert info.value.message == ("This session was closed because it has been open longer "
                                  "than the server allows.")


def test_a_closed_session_is_remembered_for_max_age_at_most(make_registry, clock):
    registry = make_registry(clock=clock, idle_timeout=10, max_age=100)
    session = registry.create({**AUTH, "parties": 3, "program": "sum", "labels": ["A", "B"],
                               "args": ["--no-log"]})
    clock.now += 11
    assert registry.expire() == [session]
    with pytest.raises(SignalingError) as info:
        registry.get(session.id)
    assert info.value.to_http()["settings"]["labels"] == ["A", "B", ""]
    assert info.value.to_http()["settings"]["args"] == ["--no-log"]
    clock.now += 101
    with pytest.raises(SignalingError) as info:
        registry.get(session.id)
    assert info.value.code == ErrorCode.UNKNOWN_SESSION


def test_empty_lobby_session_expires(registry, clock):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    clock.now += 61
    assert registry.expire() == [session]
    assert registry.sessions == {}


def test_activity_after_the_last_party_left_keeps_a_lobby_alive(clock):
    registry = Registry(clock=clock, idle_timeout=60.0)
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    (a,) = joined(registry, session, 1)
    clock.now += 50
    a.endpoint.disconnected(leaving=True)
    clock.now += 50
    assert registry.expire() == []
    b = Party(registry)
    b.join(session)
    clock.now += 50
    b.endpoint.disconnected(leaving=True)
    clock.now += 50
    assert registry.expire() == []
    clock.now += 11
    assert registry.expire() == [session]


def test_leaving_counts_as_activity(registry, clock):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = joined(registry, session, 2)
    clock.now += 59
    a.endpoint.disconnected()
    clock.now += 59
    assert registry.expire() == []
    assert session.id in registry.sessions


def test_started_session_with_connected_members_does_not_expire_when_idle(registry, clock):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    parties = joined(registry, session, 3)
    parties[2].endpoint.disconnected()
    clock.now += 10 * 60.0
    assert registry.expire() == []
    assert session.id in registry.sessions
    for party in parties:
        assert party.closed == 0
    assert [m["type"] for m in parties[0].take()] == ["roster"]


def test_started_session_whose_members_all_left_is_removed_after_the_grace(registry, clock):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    a.endpoint.disconnected()
    b.endpoint.disconnected()
    assert registry.expire() == []
    c.endpoint.disconnected()
    # No idle time needed: the session is over once nobody came back for resume_grace.
    clock.now += registry.resume_grace - 1
    assert registry.expire() == []
    clock.now += 1
    assert registry.expire() == [session]
    assert registry.sessions == {}
    assert a.closed == b.closed == c.closed == 0
    assert registry.expire() == []


def test_a_page_reloading_while_the_others_leave_finds_its_place(registry, clock):
    """A reload during a round ends it for the others, who leave; the reloaded page (a
    second or two later) used to find the session closed ("every party had left")
    instead of its place and the news that the others are gone."""
    session, parties = started_with_secrets(registry)
    parties[0].endpoint.disconnected(leaving=True)  # the page unloads
    for party in parties[1:]:
        party.endpoint.disconnected(ended=True)  # the others' programs stop
    clock.now += 2
    assert registry.expire() == []
    back = Party(registry)
    back.join(session, resume=RESUME_A)
    assert back.take()[0]["pid"] == 0
    back.endpoint.disconnected(leaving=True)
    clock.now += registry.resume_grace
    assert registry.expire() == [session]


def test_max_age_expires_even_a_busy_session(make_registry, clock):
    registry = make_registry(clock=clock, idle_timeout=60, max_age=3600)
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    while clock.now + 50 - session.created <= 3600:
        clock.now += 50
        a.send("status", state="busy")
        assert registry.expire() == []
    clock.now += 50
    assert registry.expire() == [session]
    assert registry.sessions == {}
    assert b.take()[-1]["code"] == c.take()[-1]["code"] == ErrorCode.SESSION_EXPIRED
    assert a.closed == b.closed == c.closed == 1


def test_expire_only_removes_the_expired_sessions(registry, clock):
    old = registry.create({**AUTH, "parties": 3, "program": "sum"})
    clock.now += 30
    new = registry.create({**AUTH, "parties": 3, "program": "sum"})
    clock.now += 31
    assert registry.expire() == [old]
    assert list(registry.sessions) == [new.id]


# --- programs.check_args / parse_input -------------------------------------------------------

@pytest.mark.parametrize("args", [[], ["--no-log"], ["-L64", "--bit-length=64", "-T1"],
                                  ["--input=5"], ["--indexed"], ["--Index=1"]])
def test_check_args_allows_ordinary_options(args):
    programs.check_args(args)


@pytest.mark.parametrize("text,values", [("5", [5]), (" -3 ", [-3]), ("3,1,2", [3, 1, 2]),
                                         ("1, 2 ,3", [1, 2, 3]),
                                         (str(programs.INPUT_BOUND), [programs.INPUT_BOUND])])
def test_parse_input(text, values):
    assert programs.parse_input(text) == values


@pytest.mark.parametrize("text", ["", "x", "1,,2", "1.5", "1;2", str(programs.INPUT_BOUND + 1),
                                  ",".join(["1"] * (programs.MAX_INPUT_VALUES + 1))])
def test_parse_input_rejects(text):
    with pytest.raises(ValueError):
        programs.parse_input(text)


# --- the lobby: ready, roles and labels -------------------------------------------------------

def test_session_waits_until_everyone_is_ready(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "average"})
    a, b, c = Party(registry), Party(registry), Party(registry)
    for party in (a, b, c):
        party.join(session, ready=False)
    assert not session.started
    a.send("ready", ready=True, name="Ann")
    b.send("ready", ready=True)
    assert not session.started
    for party in (a, b, c):
        assert "start" not in party.types()
    c.send("ready", ready=True)
    assert session.started
    assert c.types() == ["roster", "start", "roster"]


def test_ready_can_be_taken_back_before_the_start(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "average"})
    a, b, c = Party(registry), Party(registry), Party(registry)
    a.join(session, ready=True)
    b.join(session, ready=False)
    c.join(session, ready=True)
    a.send("ready", ready=False)
    b.send("ready", ready=True)
    assert not session.started
    roster = [m for m in a.take() if m["type"] == "roster"][-1]
    assert [(m["pid"], m["ready"]) for m in roster["members"]] == [
        (0, False), (1, True), (2, True)]
    a.send("ready", ready=True)
    assert session.started


def test_ready_carries_the_name(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "average"})
    a, b = Party(registry), Party(registry)
    a.join(session, ready=False)
    b.join(session, ready=False)
    a.send("ready", ready=True, name="Ann")
    (roster,) = b.take()[-1:]
    assert roster["members"][0]["name"] == "Ann"


def test_labels_are_in_welcome_roster_and_description(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "average",
                               "labels": ["hospital A", "  hospital   B "]})
    assert session.labels == ["hospital A", "hospital B", ""]
    a = Party(registry)
    a.join(session, ready=False)
    welcome, roster = a.take()
    assert welcome["labels"] == ["hospital A", "hospital B", ""]
    assert roster["members"][0]["label"] == "hospital A"
    assert session.describe()["members"] == [
        {"pid": 0, "name": "party 0", "label": "hospital A", "ready": False}]


@pytest.mark.parametrize("labels, words", [
    ("A,B", "'labels'"), ([1, 2], "'labels'"), (["a", "b", "c", "d"], "4 labels for 3"),
    (["x" * 41], "longer than 40"), (["same", "same"], "'same'"),
], ids=repr)
def test_bad_labels_are_refused(registry, labels, words):
    assert words in invalid(registry, {**AUTH, "parties": 3, "program": "sum", "labels": labels})


def test_a_party_can_choose_its_role(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "average",
                               "labels": ["hospital A", "hospital B", "hospital C"]})
    b = Party(registry)
    b.join(session, role=1, ready=False)
    assert b.endpoint.pid == 1
    a = Party(registry)
    a.join(session, ready=False)
    assert a.endpoint.pid == 0  # the lowest free place
    c = Party(registry)
    c.join(session, role=1, ready=False)
    (error,) = c.take()
    assert error == {
        "v": 1, "type": "error", "code": "role_taken",
        "message": "Someone else already joined as 'hospital B' (party 2). "
                   "Choose one of the free places.",
    }
    assert c.endpoint.session is None
    c.join(session, role=5, ready=False)
    (error,) = c.take()
    assert (error["code"], error["message"]) == (  # places as people count them, from 1
        "invalid_message", "There is no party 6 in this session: its parties are 1 to 3.")
    c.join(session, role=2, ready=False)
    assert c.endpoint.pid == 2


# --- connections between pairs ----------------------------------------------------------------

def test_pairs_show_the_less_advanced_end(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    assert [(p["a"], p["b"], p["state"], p["path"]) for p in session.pairs()] == [
        (0, 1, "signaling", None), (0, 2, "signaling", None), (1, 2, "signaling", None)]
    a.send("link", peer=1, state="ready", path="direct")
    b.send("link", peer=0, state="connected", path="direct")
    a.send("link", peer=2, state="ready", path="relayed")
    c.send("link", peer=0, state="ready", path="direct")
    c.send("link", peer=1, state="failed")
    (roster,) = b.take()[-1:]
    assert roster["pairs"] == [
        {"a": 0, "b": 1, "state": "connected", "path": "direct"},
        {"a": 0, "b": 2, "state": "ready", "path": "relayed"},
        {"a": 1, "b": 2, "state": "failed", "path": None},
    ]


def test_an_unchanged_link_report_sends_nothing(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    a.send("link", peer=1, state="connecting")
    assert b.types() == c.types() == ["roster"]
    a.send("link", peer=1, state="connecting")
    assert b.types() == c.types() == []


@pytest.mark.parametrize("peer", [0, 3, -1])
def test_link_to_self_or_nobody_is_unknown_pid(registry, peer):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, _, _ = joined(registry, session, 3)
    a.send("link", peer=peer, state="connecting")
    assert a.error() == "unknown_pid"


# --- running again ---------------------------------------------------------------------------

def test_run_again_when_everyone_agrees(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    a.send("ready", ready=True)
    assert a.error() == "session_started"  # still running: no vote yet
    a.send("status", state="done")
    a.send("ready", ready=True)
    assert session.round == 1
    c.send("status", state="done")
    c.send("ready", ready=True)
    assert session.round == 1
    b.send("status", state="done")
    assert session.round == 1
    b.take()
    b.send("ready", ready=True)
    assert session.round == 2
    types = b.types()
    assert types == ["roster", "start", "roster"]
    assert [(m["state"], m["ready"]) for m in session.roster()["members"]] == [
        ("joined", False), ("joined", False), ("joined", False)]


def test_last_to_finish_starts_the_next_round_if_the_others_agreed(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    a.send("status", state="done")
    a.send("ready", ready=True)
    c.send("status", state="done")
    c.send("ready", ready=True)
    b.send("status", state="done")
    assert session.round == 1  # b has not agreed yet
    b.send("ready", ready=True)
    assert session.round == 2


def test_no_run_again_after_a_party_left(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b, c = joined(registry, session, 3)
    for party in (a, b, c):
        party.send("status", state="done")
    c.endpoint.disconnected()
    a.take()
    a.send("ready", ready=True)
    (error,) = a.take()
    assert error["code"] == "party_left"
    assert error["message"] == ("Party 3 has left the session, so it cannot run again. "
                                "Create a new session to compute again.")


def test_the_sealed_descriptor_is_kept_and_handed_to_every_party(registry):
    """The server cannot read the creator's sealed description of the session; it keeps it
    as it came and gives it to each party (which checks the server's word against it)."""
    box = "AbC_-" * 20
    session = registry.create({**AUTH, "parties": 3, "program": "sum", "descriptor": box})
    assert session.describe()["descriptor"] == box
    party = Party(registry)
    party.join(session)
    (welcome,) = [m for m in party.take() if m["type"] == "welcome"]
    assert welcome["descriptor"] == box
    for bad in (7, "not base64url!", "x" * (16 * 1024 + 1), ""):
        invalid(registry, {**AUTH, "parties": 3, "program": "sum", "descriptor": bad})



# --- reconnecting: a resume secret keeps a place --------------------------------------------

RESUME_A = "a" * 22
RESUME_B = "b" * 22


def test_a_party_that_lost_its_connection_gets_its_place_back(registry, clock):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = Party(registry), Party(registry)
    a.join(session, name="Alice", resume=RESUME_A)
    b.join(session, name="Bob", resume=RESUME_B)
    a.take(), b.take()
    a.endpoint.disconnected()
    assert roster_members(b.take()[-1]) == [(0, "Alice", "reconnecting"), (1, "Bob", "joined")]
    # The place is held: a newcomer gets another one, and a fourth would find it full.
    c = Party(registry)
    c.join(session, name="Carol")
    assert c.endpoint.pid == 2 and not session.started
    d = Party(registry)
    d.join(session)
    assert d.error() == ErrorCode.SESSION_FULL
    clock.now += 30
    again = Party(registry)
    again.join(session, name="Alice", resume=RESUME_A)
    welcome, *_ = again.take()
    assert welcome["type"] == "welcome" and welcome["pid"] == 0
    assert again.endpoint.pid == 0
    # Everyone was ready: back at full strength, the round starts.
    assert session.started and "start" in b.types()


def test_a_reconnecting_place_is_freed_after_the_grace(registry, clock):
    registry.resume_grace = 20.0  # less than the fixture's idle timeout (60 s)
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = Party(registry), Party(registry)
    a.join(session, resume=RESUME_A)
    b.join(session)
    b.take()
    a.endpoint.disconnected()
    clock.now += registry.resume_grace - 1
    registry.sweep()
    assert roster_members(b.take()[-1])[0][2] == "reconnecting"
    clock.now += 2
    registry.sweep()
    assert [pid for pid, *_ in roster_members(b.take()[-1])] == [1]
    assert sorted(session.members) == [1]
    # Too late: the secret no longer holds a place; the party gets a free one.
    late = Party(registry)
    late.join(session, resume=RESUME_A)
    assert late.endpoint.pid == 0


def test_another_secret_does_not_take_a_held_place(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = Party(registry), Party(registry)
    a.join(session, resume=RESUME_A)
    b.join(session)
    a.endpoint.disconnected()
    other = Party(registry)
    other.join(session, role=0, resume="c" * 22)
    assert other.error() == ErrorCode.ROLE_TAKEN
    other.join(session, resume="c" * 22)
    assert other.endpoint.pid == 2


def test_a_short_resume_secret_is_refused(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a = Party(registry)
    a.join(session, resume="x" * 21)
    assert a.error() == ErrorCode.INVALID_MESSAGE
    assert session.members == {}


def test_a_newer_connection_takes_over_an_open_one(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = Party(registry), Party(registry)
    a.join(session, resume=RESUME_A)
    b.join(session)
    a.take(), b.take()
    newer = Party(registry)
    newer.join(session, resume=RESUME_A)
    assert newer.take()[0]["pid"] == 0
    assert a.error() == ErrorCode.ALREADY_JOINED and a.closed == 1
    # The old connection closing later changes nothing, and it can no longer speak.
    a.endpoint.disconnected()
    a.send("ready", ready=False)
    assert a.sent == []
    assert roster_members(b.take()[-1]) == [(0, "party 0", "joined"), (1, "party 1", "joined")]
    assert session.members[0].connected


def test_without_a_resume_secret_leaving_frees_the_place_as_before(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    a, b = joined(registry, session, 2)
    a.endpoint.disconnected()
    assert sorted(session.members) == [1]


def started_with_secrets(registry: Registry) -> tuple[Session, list[Party]]:
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    parties = [Party(registry) for _ in range(3)]
    for party, secret in zip(parties, "abc", strict=True):
        party.join(session, name=f"{secret.upper()}l", resume=secret * 22)
    assert session.started
    for party in parties:
        party.take()
    return session, parties


def test_after_the_start_a_party_that_reloads_gets_its_own_place_back(registry):
    """Issue 18: a reload (the page closes its socket as it unloads) after the start used
    to say "Session full" to the party that had the place."""
    session, (a, b, c) = started_with_secrets(registry)
    a.endpoint.disconnected(leaving=True)
    assert roster_members(b.take()[-1])[0][2] == "left"
    stranger = Party(registry)
    stranger.join(session, resume="z" * 22)
    assert stranger.error() == ErrorCode.SESSION_FULL
    back = Party(registry)
    back.join(session, resume=RESUME_A, ready=True)
    welcome = back.take()[0]
    assert welcome["type"] == "welcome" and welcome["pid"] == 0
    assert back.endpoint.pid == 0
    roster = b.take()[-1]
    assert roster_members(roster)[0] == (0, "Al", "joined")
    assert roster["members"][0]["ready"] is False  # its computation is gone with the page
    assert session.round == 1 and session.members[0].returned


def test_after_the_start_a_lost_connection_is_reconnecting_until_the_grace_ends(registry, clock):
    """Issue 18: a party that loses the server for a moment after the start is not gone:
    the others compute on over their links (which say soon enough if it is really gone),
    and it comes back to its own place. After ``resume_grace`` it has ``left``; its secret
    still takes the place back while the session lasts. Closing deliberately is leaving."""
    session, (a, b, c) = started_with_secrets(registry)
    a.endpoint.disconnected()  # lost, not closed
    assert roster_members(b.take()[-1])[0][2] == "reconnecting"
    back = Party(registry)
    back.join(session, resume=RESUME_A)
    assert back.take()[0]["pid"] == 0
    assert roster_members(b.take()[-1])[0][2] == "joined"
    assert session.members[0].returned  # its next round makes its links anew
    back.endpoint.disconnected()
    b.take()
    clock.now += registry.resume_grace + 1
    registry.sweep()
    assert roster_members(b.take()[-1])[0][2] == "left"
    again = Party(registry)
    again.join(session, resume=RESUME_A)
    assert again.take()[0]["pid"] == 0
    c.endpoint.disconnected(leaving=True)
    assert roster_members(b.take()[-1])[2][2] == "left"


def test_after_the_start_a_socket_that_ended_without_a_word_has_left_at_once(registry):
    """A connection whose other end closed it without a close frame (its process ended, or
    its page crashed) is no lost network: after the start the party has ``left`` at once,
    so whoever computes with it stops waiting; in the lobby its place is kept, as for a
    lost connection (a peer killed there may be started again)."""
    session, (a, b, c) = started_with_secrets(registry)
    a.endpoint.disconnected(ended=True)
    assert roster_members(b.take()[-1])[0][2] == "left"
    lobby = registry.create({**AUTH, "parties": 3, "program": "sum"})
    d, e = Party(registry), Party(registry)
    d.join(lobby, resume=RESUME_A)
    e.join(lobby, resume=RESUME_B)
    e.take()
    d.endpoint.disconnected(ended=True)
    assert roster_members(e.take()[-1])[0][2] == "reconnecting"


def test_a_returned_party_runs_again_over_new_links(registry):
    """After a result, a party that reloaded is back; once everyone is ready the next round
    starts, and its ``fresh`` names the parties whose links are made anew."""
    session, (a, b, c) = started_with_secrets(registry)
    assert a.take() == [] and session.round == 1
    b.send("link", peer=2, state="ready", path="direct")
    c.send("link", peer=1, state="ready", path="direct")
    a.send("link", peer=1, state="ready", path="direct")
    for party in (a, b, c):
        party.send("status", state="done")
    a.endpoint.disconnected(leaving=True)
    back = Party(registry)
    back.join(session, resume=RESUME_A)
    b.take(), c.take(), back.take()
    for party in (b, c):
        party.send("ready", ready=True)
    assert session.round == 1  # party 0 has not said it is ready
    back.send("ready", ready=True)
    assert session.round == 2
    start = [m for m in b.take() if m["type"] == "start"]
    assert start == [{"v": 1, "type": "start", "parties": 3, "round": 2, "fresh": [0]}]
    assert [m for m in back.take() if m["type"] == "start"][0]["fresh"] == [0]
    assert not session.members[0].returned
    # Links to party 0 are reported anew; the pair of 1 and 2 keeps what it had.
    assert session.members[0].links == {} and 0 not in session.members[1].links
    pairs = {(p["a"], p["b"]): p["state"] for p in session.pairs()}
    assert pairs[(0, 1)] == "signaling" and pairs[(1, 2)] == "ready"


def test_the_first_start_has_no_fresh_links(registry):
    session = registry.create({**AUTH, "parties": 3, "program": "sum"})
    parties = [Party(registry) for _ in range(3)]
    for party in parties:
        party.join(session)
    assert "fresh" not in [m for m in parties[0].take() if m["type"] == "start"][0]
