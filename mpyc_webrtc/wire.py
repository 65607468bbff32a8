"""The signaling wire schema: the one source for every party and the server.

Every signaling message is one JSON object sent as one WebSocket text frame,
with a version field ``"v"`` and a ``"type"``. The tables below are the schema;
``docs/protocol.md`` tells the story of a session around them, and the server
serves the same tables as JSON at ``GET /api/protocol`` so the browser's JS
validates against exactly this and nothing written twice.

Client → server (a party's WebSocket at ``/ws``):

``join``       {session, token, name?, role?, ready?, resume?, identity?, proof?}
                                            take party ``role`` (a pid), or
                                            the lowest free one; ``token`` proves the link's
                                            secret (below); ``ready`` as in ``ready``;
                                            ``resume``: this party's own random secret
                                            (``MIN_RESUME_LENGTH`` to ``MAX_RESUME_LENGTH``
                                            base64url characters), the same on every
                                            attempt: a join that shows the secret its place
                                            was taken with gets that place back (it lost its
                                            connection, or its server process died);
                                            ``identity``: this party's did:key, with
                                            ``proof``, its signature (base64url) over
                                            ``identity.join_statement(session, resume)``;
                                            a place pinned to a key (``pins``) only admits
                                            a join that proves that key
``ready``      {ready, name?}               this party confirmed its input (or takes that
                                            back); after a round, ``true`` votes to run again
``signal``     {to, seq, box}               sealed (below) and relayed to party ``to``:
                                            offers, answers, ICE candidates
``chat``       {to, seq, box}               a chat message sealed (below) for party ``to``;
                                            relayed as is, or dropped if ``to`` is not
                                            connected (chat is best effort, never an error)
``link``       {peer, state, path?}         how this party's connection to ``peer`` is doing
``status``     {state, detail?}             how this party is doing, shown to all;
                                            ``unsupported`` (before the start only) says
                                            it cannot take part: ``detail`` names what its
                                            browser lacks (``CAPABILITIES``, joined by
                                            commas), which the roster then shows

Server → client:

``welcome``    {session, pid, parties, program, labels, ice_servers, relay_only, descriptor,
                pins}                       ``pins``: per place, the did:key it is kept for
                                            or "" (as the creator asked, sealed too)
                                            ``ice_servers`` carry TURN credentials made for
                                            this party; ``relay_only``: use only relay
                                            candidates (``iceTransportPolicy: "relay"``);
                                            ``descriptor``: what the creator chose, sealed
                                            (below), or null
``roster``     {parties, members: [{pid, name, label, state, ready, identity, lacks?}],
                                            (a member whose connection closed before the
                                            start, and who joined with ``resume``, keeps its
                                            place in state ``reconnecting`` for a while)
                pairs: [{a, b, state, path}], started, round}
                                            ``lacks``: only for a member in state
                                            ``unsupported``, what it said it lacks (a list)
``start``      {parties, round}             everyone is here and ready: connect and compute
``signal``     {from, seq, box}             as sent, with ``from`` instead of ``to``
``chat``       {from, seq, box}             as sent, with ``from`` instead of ``to``
``error``      {code, message}              see ``ErrorCode``; ``message`` is for a person

Sealing: the server cannot read or forge what parties tell each other.
The person creating a session draws a 32-byte secret S and puts it, with the program's
hash, in the join link's fragment: ``/join/ID#k=<S, base64url>&p=<program hash, hex>``.
Browsers never send the fragment to the server. From S (HKDF-SHA256, empty salt):

- the join token  = base64url(HKDF(S, info=``TOKEN_INFO``, 32 bytes)); the server keeps
  only its SHA-256 (``token_hash``, sent at creation) and admits whoever shows the token;
- the sealing key = HKDF(S, info=``KEY_INFO``, 32 bytes), for AES-256-GCM. A ``signal``'s
  ``box`` is base64url(nonce(12 random bytes) || ciphertext) of a JSON object
  (``{"kind": "offer"|"answer"|"candidate", ...}``, see ``SIGNAL_KINDS``), with associated
  data ``signal_aad(session, from, to, seq)``. ``seq`` counts 1, 2, 3... per sender and
  receiver; a receiver accepts only the next number, so a replayed, dropped or reordered
  message, a message moved to other pids, or any changed byte stops the receiver.
- a ``chat`` box is sealed the same way with its own numbers and associated data
  ``chat_aad(session, from, to, seq)``; a receiver accepts any number above the last one
  it accepted (a party that was away missed some), never the same or a lower one. It
  holds a ``chat`` payload (``SIGNAL_KINDS``), signed by its sender's identity key.

Identities (``identity``): every offer and answer carries the sender's did:key, the name it
claims and its Ed25519 signature over ``identity.link_statement`` (session, both pids, the
sender's place, its name, the DTLS certificate in the SDP, the program), so the receiver
knows who is at the other end of that very connection; a chat message is signed over
``identity.chat_statement``. Over an open peer connection chat goes on its own data
channel (``CHAT_CHANNEL``), as the same JSON payload, never on MPyC's.

The session's descriptor: whoever creates a session seals what it chose (``DESCRIPTOR_FIELDS``:
the number of parties, relay only, the places' names, the program hash and its arguments) as
base64url(nonce || AES-256-GCM) of compact JSON under HKDF(S, info=``DESCRIPTOR_INFO``), with
associated data ``DESCRIPTOR_AAD``, and sends it with the session. The server hands it back
in ``welcome``; every party opens it and compares it with what the server says before it
connects: a server that lies about the session's shape cannot make up a descriptor.

The program hash (``launch.program_hash``) covers the source and arguments; every party
compares it with the link's ``p`` before it connects to anyone, and sends it inside its
sealed offers and answers, where the receiver compares it too.

A session starts when all its parties have joined and are ready. After a round every
party may send ``ready`` again; when all still present agree, the server sends ``start``
with the next ``round`` and the parties run the program again over the same connections.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

VERSION = 1
#: Largest client message the server accepts; an SDP with many candidates is ~5 KB.
MAX_MESSAGE_BYTES = 64 * 1024
MIN_PARTIES = 2
MAX_PARTIES = 32


class ErrorCode(StrEnum):
    """Machine-readable error codes; each error also carries a sentence for people."""

    MALFORMED_JSON = "malformed_json"
    MESSAGE_TOO_LARGE = "message_too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_TOKEN = "bad_token"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_SESSIONS = "too_many_sessions"
    FORBIDDEN_ORIGIN = "forbidden_origin"
    INTERNAL_ERROR = "internal_error"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_SESSION = "unknown_session"
    SESSION_FULL = "session_full"
    SESSION_EXPIRED = "session_expired"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    UNKNOWN_PID = "unknown_pid"
    INVALID_REQUEST = "invalid_request"
    SERVER_BUSY = "server_busy"
    ROLE_TAKEN = "role_taken"
    SESSION_STARTED = "session_started"
    PARTY_LEFT = "party_left"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    TOO_MANY_MESSAGES = "too_many_messages"
    SERVER_SHUTTING_DOWN = "server_shutting_down"
    #: This server process is going away but the session is kept (shared through Redis):
    #: join again at the same address, with the same ``resume``, to keep the place.
    RECONNECT = "reconnect"
    #: The place asked for (or every free place) is kept for another identity key.
    PLACE_PINNED = "place_pinned"


class SignalingError(Exception):
    """An error that is reported to the client as an ``error`` message."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def to_message(self) -> dict[str, Any]:
        return error_message(self.code, self.message)


@dataclass(frozen=True)
class Field:
    name: str
    kind: type | tuple[type, ...]
    required: bool = True
    max_length: int | None = None
    #: The only values allowed, for a string field that names a state.
    choices: tuple[str, ...] = ()


#: A pair's connection states, in the order they are reached; ``failed`` may come anywhere.
LINK_STATES = ("signaling", "connecting", "connected", "ready", "closed", "failed")
#: How a connected pair's packets travel: straight between them, or through a TURN relay.
LINK_PATHS = ("direct", "relayed")


#: What a browser must have to take part, as a party that lacks some says in its
#: ``unsupported`` status: WebRTC data channels (the links), WebAssembly (Python runs in it),
#: Web Workers (Python runs beside the page) and cross-origin isolation (SharedArrayBuffer,
#: with which Python in the worker waits for the page). Every party's sentences name them
#: (``capability.NAME``). Such a party still joins: it holds its place and the others see
#: why the session cannot start until it leaves.
CAPABILITIES = ("webrtc", "webassembly", "workers", "isolation")
#: The member state of a party that cannot take part (``status``'s ``detail``: what it lacks).
UNSUPPORTED = "unsupported"


def lacks_from_detail(detail: str | None) -> list[str]:
    """What an ``unsupported`` status says its party lacks: ``detail`` as ``CAPABILITIES``
    joined by commas (each at most once, at least one), or SignalingError saying why not."""
    names = (detail or "").split(",")
    if not detail or any(n not in CAPABILITIES for n in names) or len(set(names)) < len(names):
        raise SignalingError(
            ErrorCode.INVALID_MESSAGE,
            f"An {UNSUPPORTED!r} status needs a 'detail' naming what the party lacks: one or "
            f"more of {', '.join(CAPABILITIES)}, separated by commas; got {detail!r}.",
        )
    return names


#: Prefix of the bytes hashed into a program hash (``launch.program_hash``).
PROGRAM_HASH_CONTEXT = b"mpyc-webrtc program v1\x00"
#: HKDF ``info`` strings: one secret, two independent keys.
TOKEN_INFO = b"mpyc-webrtc v1 join token"
KEY_INFO = b"mpyc-webrtc v1 seal key"
#: The session descriptor's key and associated data, and what it holds.
DESCRIPTOR_INFO = b"mpyc-webrtc v1 descriptor key"
DESCRIPTOR_AAD = b"mpyc-webrtc v1 session descriptor"
DESCRIPTOR_FIELDS = ("parties", "relay_only", "labels", "program", "args", "pins")
#: What a sealed ``signal`` (or ``chat``) may carry, by ``kind``, with the fields each
#: needs (all strings).
SIGNAL_KINDS = {"offer": ("sdp", "program", "identity", "name", "signature"),
                "answer": ("sdp", "program", "identity", "name", "signature"),
                "candidate": ("candidate",),
                "chat": ("text", "identity", "name", "signature", "number")}
#: The kinds a ``signal`` box may hold, and a ``chat`` box.
SIGNAL_BOX_KINDS = ("offer", "answer", "candidate")
CHAT_BOX_KINDS = ("chat",)
#: Longest chat message, in characters (after white space at both ends is dropped).
MAX_CHAT_LENGTH = 500
#: The data channel chat uses on every peer connection (MPyC's is ``mpyc``, id 0).
CHAT_CHANNEL = {"label": "chat", "id": 1}
#: Longest did:key (an Ed25519 one is 56 characters) and signature (64 bytes: 86).
MAX_IDENTITY_LENGTH = 100
MAX_PROOF_LENGTH = 100
#: Longest join token: base64url of 32 bytes is 43 characters.
MAX_TOKEN_LENGTH = 64
#: A join's ``resume`` secret: base64url, at least 16 random bytes (22 characters).
MIN_RESUME_LENGTH = 22
MAX_RESUME_LENGTH = 64
#: The member state of a party that lost its connection before the start and keeps its
#: place while it reconnects.
RECONNECTING = "reconnecting"


def signal_aad(session: str, sender: int, receiver: int, seq: int) -> bytes:
    """The associated data that binds a sealed signal to its session, pids and number."""
    return f"mpyc-webrtc v1 signal|{session}|{sender}|{receiver}|{seq}".encode()


def chat_aad(session: str, sender: int, receiver: int, seq: int) -> bytes:
    """The same for a sealed chat message: its own numbers, never mistaken for a signal."""
    return f"mpyc-webrtc v1 chat|{session}|{sender}|{receiver}|{seq}".encode()


#: Messages a party may send, and their fields besides ``v`` and ``type``.
CLIENT_MESSAGES: dict[str, tuple[Field, ...]] = {
    "join": (Field("session", str, max_length=64),
             Field("token", str, max_length=MAX_TOKEN_LENGTH),
             Field("name", str, False, 64), Field("role", int, False),
             Field("ready", bool, False),
             Field("resume", str, False, MAX_RESUME_LENGTH),
             Field("identity", str, False, MAX_IDENTITY_LENGTH),
             Field("proof", str, False, MAX_PROOF_LENGTH)),
    "ready": (Field("ready", bool), Field("name", str, False, 64)),
    "signal": (Field("to", int), Field("seq", int),
               Field("box", str, max_length=MAX_MESSAGE_BYTES)),
    "chat": (Field("to", int), Field("seq", int),
             Field("box", str, max_length=8 * MAX_CHAT_LENGTH + 1024)),
    "link": (Field("peer", int), Field("state", str, choices=LINK_STATES),
             Field("path", str, False, choices=LINK_PATHS)),
    "status": (Field("state", str, max_length=32), Field("detail", str, False, 500)),
}

#: Client messages that the server relays to the party named in ``to``.
RELAYED = frozenset({"signal", "chat"})

#: Messages the server sends; documented here, checked by the tests.
SERVER_MESSAGES: dict[str, tuple[str, ...]] = {
    "welcome": ("session", "pid", "parties", "program", "labels", "ice_servers",
                "relay_only", "descriptor", "pins"),
    "roster": ("parties", "members", "pairs", "started", "round"),
    "start": ("parties", "round"),
    "signal": ("from", "seq", "box"),
    "chat": ("from", "seq", "box"),
    "error": ("code", "message"),
}


def message(type_: str, **fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "type": type_, **fields}


def error_message(code: ErrorCode, text: str) -> dict[str, Any]:
    return message("error", code=str(code), message=text)


def encode(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"))


def decode_client_message(text: str | bytes) -> dict[str, Any]:
    """Parse and validate one client message, or raise SignalingError saying what is wrong."""
    try:
        size = len(text.encode() if isinstance(text, str) else text)
    except UnicodeEncodeError:  # a str with an unpaired surrogate: not valid text
        raise SignalingError(ErrorCode.MALFORMED_JSON,
                             "The message is not valid UTF-8 text.") from None
    if size > MAX_MESSAGE_BYTES:
        raise SignalingError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"The message is {size} bytes; the limit is {MAX_MESSAGE_BYTES} bytes.",
        )
    try:
        msg = json.loads(text)
    except RecursionError:
        raise SignalingError(ErrorCode.MALFORMED_JSON,
                             "The message is nested too deeply.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignalingError(
            ErrorCode.MALFORMED_JSON, f"The message is not valid JSON ({exc})."
        ) from None
    if not isinstance(msg, dict):
        raise SignalingError(ErrorCode.MALFORMED_JSON, "The message must be a JSON object.")
    version = msg.get("v")
    if isinstance(version, bool) or version != VERSION:
        raise SignalingError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"This server speaks protocol version {VERSION}, the message says {version!r}.",
        )
    type_ = msg.get("type")
    fields = CLIENT_MESSAGES.get(type_) if isinstance(type_, str) else None
    if fields is None:
        known = ", ".join(sorted(CLIENT_MESSAGES))
        raise SignalingError(
            ErrorCode.UNKNOWN_TYPE,
            f"Unknown message type {type_!r}; known types are: {known}.",
        )
    for field in fields:
        _check_field(type_, msg, field)
    return msg


def _check_field(type_: str, msg: dict[str, Any], field: Field) -> None:
    if field.name not in msg:
        if field.required:
            raise SignalingError(
                ErrorCode.INVALID_MESSAGE,
                f"A {type_!r} message needs the field {field.name!r}.",
            )
        return
    value = msg[field.name]
    kinds = field.kind if isinstance(field.kind, tuple) else (field.kind,)
    # bool is an int in Python, never in this schema.
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join("null" if k is type(None) else _JSON_NAMES[k] for k in kinds)
        raise SignalingError(
            ErrorCode.INVALID_MESSAGE,
            f"The field {field.name!r} of a {type_!r} message must be {names}.",
        )
    if field.max_length is not None and isinstance(value, str) and len(value) > field.max_length:
        raise SignalingError(
            ErrorCode.INVALID_MESSAGE,
            f"The field {field.name!r} is longer than {field.max_length} characters.",
        )
    if field.choices and value not in field.choices:
        raise SignalingError(
            ErrorCode.INVALID_MESSAGE,
            f"The field {field.name!r} of a {type_!r} message must be one of "
            f"{', '.join(field.choices)}; got {value!r}.",
        )


_JSON_NAMES = {str: "a string", int: "an integer", bool: "true or false"}
_SCHEMA_TYPES = {str: "string", int: "integer", bool: "boolean", type(None): "null"}


def schema_document() -> dict[str, Any]:
    """The schema as JSON, for clients that are not written in Python."""

    def field_doc(f: Field) -> dict[str, Any]:
        kinds = f.kind if isinstance(f.kind, tuple) else (f.kind,)
        doc: dict[str, Any] = {
            "types": [_SCHEMA_TYPES[k] for k in kinds],
            "required": f.required,
        }
        if f.max_length is not None:
            doc["max_length"] = f.max_length
        if f.choices:
            doc["choices"] = list(f.choices)
        return doc

    return {
        "version": VERSION,
        "max_message_bytes": MAX_MESSAGE_BYTES,
        "parties": {"min": MIN_PARTIES, "max": MAX_PARTIES},
        "client_messages": {
            t: {f.name: field_doc(f) for f in fields} for t, fields in CLIENT_MESSAGES.items()
        },
        "relayed": sorted(RELAYED),
        "server_messages": {t: list(fields) for t, fields in SERVER_MESSAGES.items()},
        "error_codes": [str(c) for c in ErrorCode],
        "sealing": {"token_info": TOKEN_INFO.decode(), "key_info": KEY_INFO.decode(),
                    "program_hash_context": PROGRAM_HASH_CONTEXT.decode(),
                    "aad": signal_aad("{session}", 0, 1, 2).decode().replace(
                        "|0|1|2", "|{from}|{to}|{seq}"),
                    "signal_kinds": {k: list(v) for k, v in SIGNAL_KINDS.items()},
                    "chat_aad": chat_aad("{session}", 0, 1, 2).decode().replace(
                        "|0|1|2", "|{from}|{to}|{seq}"),
                    "signal_box_kinds": list(SIGNAL_BOX_KINDS),
                    "chat_box_kinds": list(CHAT_BOX_KINDS),
                    "descriptor_info": DESCRIPTOR_INFO.decode(),
                    "descriptor_aad": DESCRIPTOR_AAD.decode(),
                    "descriptor_fields": list(DESCRIPTOR_FIELDS)},
        "link_states": list(LINK_STATES),
        "link_paths": list(LINK_PATHS),
        "capabilities": list(CAPABILITIES),
        "resume_length": {"min": MIN_RESUME_LENGTH, "max": MAX_RESUME_LENGTH},
        "reconnecting": RECONNECTING,
        "chat": {"max_length": MAX_CHAT_LENGTH, "channel": CHAT_CHANNEL},
    }
