"""The signaling wire schema (mpyc_webrtc.wire) and ICE server URL parsing (mpyc_webrtc.ice)."""

from __future__ import annotations

import json

import pytest

from mpyc_webrtc import wire
from mpyc_webrtc.ice import parse_ice_server
from mpyc_webrtc.wire import (
    CLIENT_MESSAGES,
    MAX_MESSAGE_BYTES,
    ErrorCode,
    SignalingError,
    decode_client_message,
)

#: A join token as the create page makes it: base64url of 32 bytes, 43 characters.
TOKEN = "t" * 43
#: A sealed box is base64url text; the server relays it without looking inside.
BOX = "bm9uY2Utbm9uY2UtY2lwaGVydGV4dA"


def msg(type_: str, **fields) -> dict:
    return {"v": 1, "type": type_, **fields}


def code_of(text: str | bytes) -> ErrorCode:
    with pytest.raises(SignalingError) as info:
        decode_client_message(text)
    assert info.value.message  # every error carries a sentence for people
    return info.value.code


# --- valid messages ------------------------------------------------------------------------

VALID = {
    "join": [
        msg("join", session="abc", token=TOKEN),
        msg("join", session="abc", token=TOKEN, name="Alice"),
        msg("join", session="s" * 64, token=TOKEN, name="n" * 64),
        msg("join", session="abc", token=TOKEN, role=2, ready=True),
        msg("join", session="abc", token=TOKEN, ready=False),
        msg("join", session="abc", token="k" * wire.MAX_TOKEN_LENGTH),
        # An empty or wrong token is well-formed; the session decides (bad_token).
        msg("join", session="abc", token=""),
        msg("join", session="abc", token=TOKEN, resume="r" * 22,
            identity="did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
            proof="p" * 86),
    ],
    "chat": [msg("chat", to=1, seq=1, box=BOX), msg("chat", to=0, seq=9, box="A" * 5024)],
    "ready": [msg("ready", ready=True), msg("ready", ready=False, name="Bob")],
    "link": [
        msg("link", peer=1, state="signaling"),
        msg("link", peer=0, state="ready", path="direct"),
        msg("link", peer=3, state="connected", path="relayed"),
        msg("link", peer=2, state="failed"),
    ],
    "signal": [
        msg("signal", to=1, seq=1, box=BOX),
        msg("signal", to=0, seq=0, box=""),
        msg("signal", to=2, seq=2**40, box="A" * 4096),
        msg("signal", to=3, seq=7, box=BOX, **{"from": 9}),  # the server overrides "from"
    ],
    "status": [
        msg("status", state="connected"),
        msg("status", state="s" * 32, detail="d" * 500),
        msg("status", state="unsupported", detail="webrtc,isolation"),
    ],
}


def test_valid_examples_cover_every_client_type():
    assert set(VALID) == set(CLIENT_MESSAGES)


@pytest.mark.parametrize(
    "message", [m for ms in VALID.values() for m in ms], ids=lambda m: m["type"]
)
def test_valid_client_messages_pass(message):
    assert decode_client_message(json.dumps(message)) == message
    assert decode_client_message(json.dumps(message).encode()) == message


def test_extra_fields_are_kept():
    message = msg("status", state="ok", extra=[1, 2])
    assert decode_client_message(json.dumps(message)) == message


# --- malformed_json ------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "{", "not json", "{'v': 1}", '{"v":1,}', "\x00"])
def test_bad_json_is_malformed_json(text):
    assert code_of(text) == ErrorCode.MALFORMED_JSON


@pytest.mark.parametrize("text", ["[]", '[{"v":1,"type":"join","session":"a"}]', '"join"',
                                  "42", "null", "true"])
def test_json_that_is_not_an_object_is_malformed_json(text):
    assert code_of(text) == ErrorCode.MALFORMED_JSON


def test_invalid_utf8_bytes_are_malformed_json():
    assert code_of(b'{"v":1,"type":"status","state":"\xff\xfe"}') == ErrorCode.MALFORMED_JSON


# --- message_too_large ---------------------------------------------------------------------

def _signal_of_size(size: int) -> str:
    empty = wire.encode(msg("signal", to=1, seq=1, box=""))
    text = wire.encode(msg("signal", to=1, seq=1, box="x" * (size - len(empty))))
    assert len(text.encode()) == size
    return text


def test_message_exactly_at_the_limit_is_accepted():
    text = _signal_of_size(MAX_MESSAGE_BYTES)
    assert decode_client_message(text)["to"] == 1
    assert decode_client_message(text.encode())["to"] == 1


def test_message_one_byte_over_the_limit_is_too_large():
    text = _signal_of_size(MAX_MESSAGE_BYTES + 1)
    assert code_of(text) == ErrorCode.MESSAGE_TOO_LARGE
    assert code_of(text.encode()) == ErrorCode.MESSAGE_TOO_LARGE


def test_size_is_counted_in_utf8_bytes_not_characters():
    # Fewer characters than the limit, but more bytes.
    text = json.dumps(msg("signal", to=1, seq=1, box="é" * (MAX_MESSAGE_BYTES // 2 + 10)),
                      ensure_ascii=False)
    assert len(text) < MAX_MESSAGE_BYTES < len(text.encode())
    assert code_of(text) == ErrorCode.MESSAGE_TOO_LARGE


def test_box_over_the_size_limit_is_too_large():
    # The whole message is limited to MAX_MESSAGE_BYTES, so a box of that many characters
    # (the box field's own limit) never gets as far as the field check.
    assert code_of(wire.encode(msg("signal", to=1, seq=1, box="x" * (MAX_MESSAGE_BYTES + 1)))
                   ) == ErrorCode.MESSAGE_TOO_LARGE
    assert code_of(wire.encode(msg("signal", to=1, seq=1, box="x" * MAX_MESSAGE_BYTES))
                   ) == ErrorCode.MESSAGE_TOO_LARGE


def test_size_is_checked_before_parsing():
    assert code_of("{" * (MAX_MESSAGE_BYTES + 1)) == ErrorCode.MESSAGE_TOO_LARGE


def test_too_large_message_names_size_and_limit():
    with pytest.raises(SignalingError) as info:
        decode_client_message(_signal_of_size(MAX_MESSAGE_BYTES + 1))
    assert str(MAX_MESSAGE_BYTES + 1) in info.value.message
    assert str(MAX_MESSAGE_BYTES) in info.value.message


# --- unsupported_version -------------------------------------------------------------------

@pytest.mark.parametrize("version", [2, 0, "1", None, [1]], ids=repr)
def test_wrong_version_is_unsupported(version):
    text = json.dumps({"v": version, "type": "status", "state": "ok"})
    assert code_of(text) == ErrorCode.UNSUPPORTED_VERSION


def test_missing_version_is_unsupported():
    assert code_of('{"type":"join","session":"abc"}') == ErrorCode.UNSUPPORTED_VERSION


def test_version_true_is_unsupported():
    # The schema never treats a JSON boolean as an integer; "v": true is not version 1.
    assert code_of('{"v":true,"type":"status","state":"ok"}') == ErrorCode.UNSUPPORTED_VERSION


def test_version_is_checked_before_type():
    assert code_of('{"v":2,"type":"nonsense"}') == ErrorCode.UNSUPPORTED_VERSION


# --- unknown_type --------------------------------------------------------------------------

@pytest.mark.parametrize("type_", ["hello", "JOIN", "welcome", "error", "start", "roster", "",
                                   5, None, ["join"]], ids=repr)
def test_unknown_type(type_):
    assert code_of(json.dumps({"v": 1, "type": type_})) == ErrorCode.UNKNOWN_TYPE


def test_missing_type_is_unknown_type():
    assert code_of('{"v":1}') == ErrorCode.UNKNOWN_TYPE


def test_unknown_type_message_lists_known_types():
    with pytest.raises(SignalingError) as info:
        decode_client_message('{"v":1,"type":"hello"}')
    for type_ in CLIENT_MESSAGES:
        assert type_ in info.value.message


# --- invalid_message -----------------------------------------------------------------------

INVALID = {
    # missing required fields
    "join without session": msg("join", token=TOKEN, name="x"),
    "join without token": msg("join", session="a"),
    "signal without to": msg("signal", seq=1, box="x"),
    "signal without seq": msg("signal", to=1, box="x"),
    "signal without box": msg("signal", to=1, seq=1),
    "status without state": msg("status", detail="d"),
    # wrong types
    "to as string": msg("signal", to="1", seq=1, box="x"),
    "to as float": msg("signal", to=1.5, seq=1, box="x"),
    "to as null": msg("signal", to=None, seq=1, box="x"),
    "seq as string": msg("signal", to=1, seq="1", box="x"),
    "seq as float": msg("signal", to=1, seq=1.0, box="x"),
    "seq as null": msg("signal", to=1, seq=None, box="x"),
    "box as number": msg("signal", to=1, seq=1, box=5),
    "box as object": msg("signal", to=1, seq=1, box={"kind": "offer"}),
    "box as null": msg("signal", to=1, seq=1, box=None),
    "session as number": msg("join", session=123, token=TOKEN),
    "token as number": msg("join", session="a", token=123),
    "token as null": msg("join", session="a", token=None),
    "token as list": msg("join", session="a", token=[TOKEN]),
    "name as null": msg("join", session="a", token=TOKEN, name=None),
    "state as list": msg("status", state=["ok"]),
    # bool where int expected
    "to as true": msg("signal", to=True, seq=1, box="x"),
    "to as false": msg("signal", to=False, seq=1, box="x"),
    "seq as true": msg("signal", to=1, seq=True, box="x"),
    "seq as false": msg("signal", to=1, seq=False, box="x"),
    # too-long strings
    "session too long": msg("join", session="s" * 65, token=TOKEN),
    "token too long": msg("join", session="a", token="k" * (wire.MAX_TOKEN_LENGTH + 1)),
    "name too long": msg("join", session="a", token=TOKEN, name="n" * 65),
    "state too long": msg("status", state="s" * 33),
    # booleans and choices
    "ready as 1": msg("ready", ready=1),
    "ready as string": msg("ready", ready="yes"),
    "ready missing": msg("ready", name="x"),
    "join ready as 0": msg("join", session="a", token=TOKEN, ready=0),
    "role as true": msg("join", session="a", token=TOKEN, role=True),
    "role as string": msg("join", session="a", token=TOKEN, role="1"),
    "link state unknown": msg("link", peer=1, state="great"),
    "link path unknown": msg("link", peer=1, state="ready", path="carrier pigeon"),
    "link peer missing": msg("link", state="ready"),
    "detail too long": msg("status", state="ok", detail="d" * 501),
}


@pytest.mark.parametrize("message", INVALID.values(), ids=INVALID.keys())
def test_invalid_message(message):
    assert code_of(json.dumps(message)) == ErrorCode.INVALID_MESSAGE


def test_missing_field_message_names_the_field():
    with pytest.raises(SignalingError) as info:
        decode_client_message(json.dumps(msg("join", token=TOKEN, name="x")))
    assert "'session'" in info.value.message
    with pytest.raises(SignalingError) as info:
        decode_client_message(json.dumps(msg("join", session="a")))
    assert info.value.message == "A 'join' message needs the field 'token'."
    with pytest.raises(SignalingError) as info:
        decode_client_message(json.dumps(msg("signal", to=1, seq=1)))
    assert info.value.message == "A 'signal' message needs the field 'box'."


def test_wrong_type_message_names_the_expected_type():
    with pytest.raises(SignalingError) as info:
        decode_client_message(json.dumps(msg("signal", to=True, seq=1, box="x")))
    assert "'to'" in info.value.message
    assert "an integer" in info.value.message
    with pytest.raises(SignalingError) as info:
        decode_client_message(json.dumps(msg("signal", to=1, seq="1", box="x")))
    assert info.value.message == "The field 'seq' of a 'signal' message must be an integer."


def test_too_long_message_names_the_limit():
    with pytest.raises(SignalingError) as info:
        decode_client_message(json.dumps(msg("status", state="s" * 33)))
    assert "'state'" in info.value.message
    assert "32" in info.value.message
    with pytest.raises(SignalingError) as info:
        decode_client_message(json.dumps(msg("join", session="a", token="k" * 65)))
    assert info.value.message == "The field 'token' is longer than 64 characters."


# --- helpers and schema document -----------------------------------------------------------

def test_error_message_shape():
    err = SignalingError(ErrorCode.UNKNOWN_PID, "Party 9 is not here.")
    assert err.to_message() == {"v": 1, "type": "error", "code": "unknown_pid",
                                "message": "Party 9 is not here."}
    assert str(err) == "Party 9 is not here."


def test_encode_is_compact_json():
    text = wire.encode(wire.message("start", parties=3))
    assert text == '{"v":1,"type":"start","parties":3}'


def test_schema_document_is_json_serialisable():
    doc = wire.schema_document()
    assert json.loads(json.dumps(doc)) == doc


def test_schema_document_lists_every_error_code():
    codes = wire.schema_document()["error_codes"]
    assert sorted(codes) == sorted(c.value for c in ErrorCode)
    assert len(codes) == len(ErrorCode)


def test_schema_document_lists_every_client_message_type():
    doc = wire.schema_document()
    assert set(doc["client_messages"]) == set(CLIENT_MESSAGES)
    for type_, fields in CLIENT_MESSAGES.items():
        assert set(doc["client_messages"][type_]) == {f.name for f in fields}


def test_schema_document_contents():
    doc = wire.schema_document()
    assert doc["version"] == wire.VERSION == 1
    assert doc["max_message_bytes"] == MAX_MESSAGE_BYTES
    assert doc["parties"] == {"min": wire.MIN_PARTIES, "max": wire.MAX_PARTIES}
    assert doc["relayed"] == ["chat", "signal"]
    assert set(doc["server_messages"]) == set(wire.SERVER_MESSAGES)
    assert doc["server_messages"]["signal"] == ["from", "seq", "box"]
    join = doc["client_messages"]["join"]
    assert join["session"] == {"types": ["string"], "required": True, "max_length": 64}
    assert join["token"] == {"types": ["string"], "required": True, "max_length": 64}
    assert join["name"] == {"types": ["string"], "required": False, "max_length": 64}
    signal = doc["client_messages"]["signal"]
    assert signal == {
        "to": {"types": ["integer"], "required": True},
        "seq": {"types": ["integer"], "required": True},
        "box": {"types": ["string"], "required": True, "max_length": MAX_MESSAGE_BYTES},
    }
    for gone in ("offer", "answer", "candidate"):
        assert gone not in doc["client_messages"]
        assert gone not in doc["server_messages"]


def test_schema_document_lists_the_new_error_codes():
    codes = wire.schema_document()["error_codes"]
    for code in ("bad_token", "rate_limited", "too_many_sessions", "forbidden_origin"):
        assert code in codes
        assert ErrorCode(code).value == code


def test_schema_document_sealing_section():
    sealing = wire.schema_document()["sealing"]
    expected = {
        "token_info": "mpyc-webrtc v1 join token",
        "key_info": "mpyc-webrtc v1 seal key",
        "aad": "mpyc-webrtc v1 signal|{session}|{from}|{to}|{seq}",
        "chat_aad": "mpyc-webrtc v1 chat|{session}|{from}|{to}|{seq}",
        "signal_kinds": {
            "offer": ["sdp", "program", "identity", "name", "signature"],
            "answer": ["sdp", "program", "identity", "name", "signature"],
            "candidate": ["candidate"],
            "chat": ["text", "identity", "name", "signature", "number"]},
        "signal_box_kinds": ["offer", "answer", "candidate"],
        "chat_box_kinds": ["chat"],
        "descriptor_fields": ["parties", "relay_only", "labels", "program", "args", "pins"],
    }
    assert {k: sealing.get(k) for k in expected} == expected
    assert sealing["token_info"].encode() == wire.TOKEN_INFO
    assert sealing["key_info"].encode() == wire.KEY_INFO
    assert wire.TOKEN_INFO != wire.KEY_INFO  # two independent keys from one secret


def test_signal_aad():
    assert wire.signal_aad("S", 1, 2, 3) == b"mpyc-webrtc v1 signal|S|1|2|3"
    # Every part of the binding matters: sender and receiver are not interchangeable.
    assert wire.signal_aad("S", 1, 2, 3) != wire.signal_aad("S", 2, 1, 3)
    assert wire.signal_aad("S", 1, 2, 3) != wire.signal_aad("T", 1, 2, 3)
    assert wire.signal_aad("S", 1, 2, 3) != wire.signal_aad("S", 1, 2, 4)


def test_chat_aad_is_never_a_signal_aad():
    assert wire.chat_aad("S", 1, 2, 3) == b"mpyc-webrtc v1 chat|S|1|2|3"
    assert wire.chat_aad("S", 1, 2, 3) != wire.signal_aad("S", 1, 2, 3)


@pytest.mark.parametrize("field, value", [("identity", "d" * 101), ("proof", "p" * 101),
                                          ("identity", 7)])
def test_join_identity_fields_are_checked(field, value):
    text = json.dumps(msg("join", session="abc", token=TOKEN, **{field: value}))
    assert code_of(text) == ErrorCode.INVALID_MESSAGE


def test_a_chat_box_has_room_for_the_longest_message():
    # 500 characters of four UTF-8 bytes each, with the name, identity and signature.
    from mpyc_webrtc.sealing import Sealer, compact_json
    payload = {"kind": "chat", "text": "😀" * wire.MAX_CHAT_LENGTH, "identity": "d" * 56,
               "name": "n" * 64, "signature": "s" * 86, "number": "999999"}
    box = Sealer(bytes(32), "S", 0).seal_chat(1, payload)["box"]
    assert len(compact_json(payload)) > 2000
    decode_client_message(json.dumps(msg("chat", to=1, seq=1, box=box)))


def test_relayed_is_signal_and_chat_only():
    assert wire.RELAYED == frozenset({"signal", "chat"})
    for type_ in ("offer", "answer", "candidate"):
        assert code_of(json.dumps(msg(type_, to=1, sdp="x"))) == ErrorCode.UNKNOWN_TYPE


# --- ICE server URLs -----------------------------------------------------------------------

@pytest.mark.parametrize("url", ["stun:stun.example.org:3478", "stun:127.0.0.1:3478",
                                 "stuns:stun.example.org:5349", "turn:turn.example.org:3478"])
def test_ice_server_without_credentials(url):
    assert parse_ice_server(url) == {"urls": url}


def test_turn_with_credentials():
    assert parse_ice_server("turn:alice:s3cret@turn.example.org:3478") == {
        "urls": "turn:turn.example.org:3478", "username": "alice", "credential": "s3cret",
    }


def test_turns_with_credentials_and_transport():
    assert parse_ice_server("turns:bob:pw@turn.example.org:443?transport=tcp") == {
        "urls": "turns:turn.example.org:443?transport=tcp", "username": "bob",
        "credential": "pw",
    }


def test_turn_password_may_contain_colon_and_at():
    assert parse_ice_server("turn:u:p:a@ss@10.0.0.1:3478") == {
        "urls": "turn:10.0.0.1:3478", "username": "u", "credential": "p:a@ss",
    }


@pytest.mark.parametrize("url", ["", "stun", "stun:", "http://stun.example.org",
                                 "stun.example.org:3478", "udp:1.2.3.4:3478", "STUN:host:1"])
def test_bad_ice_url_raises_helpful_value_error(url):
    with pytest.raises(ValueError) as info:
        parse_ice_server(url)
    text = str(info.value)
    assert repr(url) in text
    assert "stun:HOST:PORT" in text
    assert "turn:USER:PASSWORD@HOST:PORT" in text


def test_unknown_choice_message_lists_the_allowed_values():
    with pytest.raises(SignalingError) as info:
        decode_client_message(json.dumps(msg("link", peer=1, state="great")))
    assert info.value.message == (
        "The field 'state' of a 'link' message must be one of "
        "signaling, connecting, connected, ready, closed, failed; got 'great'.")


def test_schema_document_carries_booleans_and_choices():
    doc = wire.schema_document()
    assert doc["client_messages"]["ready"]["ready"] == {"types": ["boolean"], "required": True}
    assert doc["client_messages"]["link"]["state"]["choices"] == list(wire.LINK_STATES)
    assert doc["client_messages"]["link"]["path"]["choices"] == ["direct", "relayed"]


@pytest.mark.parametrize(("detail", "lacks"), [
    ("webrtc", ["webrtc"]),
    ("webassembly,workers,isolation", ["webassembly", "workers", "isolation"]),
])
def test_an_unsupported_status_names_what_the_party_lacks(detail, lacks):
    assert wire.lacks_from_detail(detail) == lacks


@pytest.mark.parametrize("detail", [None, "", "webrtc,", "WebRTC", "webrtc,webrtc", "jspi",
                                    "webrtc, workers"])
def test_an_unsupported_status_without_known_lacks_is_refused(detail):
    with pytest.raises(SignalingError) as info:
        wire.lacks_from_detail(detail)
    assert info.value.code == ErrorCode.INVALID_MESSAGE
    assert info.value.message == (
        "An 'unsupported' status needs a 'detail' naming what the party lacks: one or more "
        f"of webrtc, webassembly, workers, isolation, separated by commas; got {detail!r}.")


def test_schema_document_lists_the_capabilities_a_browser_needs():
    assert wire.schema_document()["capabilities"] == list(wire.CAPABILITIES)
