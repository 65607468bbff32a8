"""End-to-end sealed signaling: the join link's secret, the join token, sealed ``signal`` boxes.

The construction is specified in the docstring of ``wire`` (``TOKEN_INFO``, ``KEY_INFO``,
``SIGNAL_KINDS``, ``signal_aad``); the browser implements the same with WebCrypto, and
``tests/sealing_vectors.json`` holds known answers both sides are checked against.

- The person who creates a session draws a 32-byte secret and puts it, with the program's
  hash, in the join link's fragment (``JoinSecret.to_fragment``: ``k=<base64url>&p=<hex>``).
- ``join_token(secret)`` proves the link to the server; the server only keeps
  ``token_hash(token)``.
- ``Sealer`` seals what a party tells another (offers, answers, ICE candidates) with
  AES-256-GCM under a key only the link's holders know, bound to the session, both pids and
  a sequence number; ``Sealer.open`` raises ``TamperError`` for anything else.

Base64url is always without padding, and only the canonical encoding is accepted (the
unused low bits of the last character must be zero), so a changed character never decodes
to the same bytes. The wording of every ``TamperError`` and link error is in ``sentences``,
which the browser's ``web/sealing.js`` says too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import launch, wire
from .sentences import place, say

#: Bytes in the link's secret, the sealing key and the join token's key material.
SECRET_BYTES = 32
#: Bytes of random nonce in front of each box (AES-GCM's standard 96 bits).
NONCE_BYTES = 12
#: Bytes of the AES-GCM authentication tag at the end of each box.
TAG_BYTES = 16

class TamperError(Exception):
    """Someone changed, forged, replayed or reordered signaling; the message is for people
    and starts with "Tampering detected:". The party must stop at once."""


# -- encoding ---------------------------------------------------------------------------------

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict inverse of ``b64url_encode``: only the URL-safe alphabet, no padding, and only
    the canonical encoding; else ``ValueError``."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
    if b64url_encode(data) != text:
        raise ValueError("not canonical base64url")
    return data


def compact_json(payload: dict[str, Any]) -> bytes:
    """The bytes sealed for ``payload``: JSON without spaces, non-ASCII as UTF-8 (as
    JavaScript's ``JSON.stringify`` writes it), keys in the order given."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


# -- keys -------------------------------------------------------------------------------------

def new_secret() -> bytes:
    """A fresh link secret: 32 random bytes."""
    return secrets.token_bytes(SECRET_BYTES)


def _hkdf(secret: bytes, info: bytes) -> bytes:
    # salt=None is RFC 5869's default, HashLen zero bytes, which gives the same HMAC key as
    # an empty salt (WebCrypto: salt = new Uint8Array(0)).
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def join_token(secret: bytes) -> str:
    """What a party shows the server in ``join``: base64url(HKDF(secret, TOKEN_INFO))."""
    return b64url_encode(_hkdf(secret, wire.TOKEN_INFO))


def token_hash(token: str) -> str:
    """What the server keeps of the token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def seal_key(secret: bytes) -> bytes:
    """The AES-256-GCM key for ``signal`` boxes: HKDF(secret, KEY_INFO)."""
    return _hkdf(secret, wire.KEY_INFO)


def descriptor_key(secret: bytes) -> bytes:
    """The AES-256-GCM key for the session's descriptor: HKDF(secret, DESCRIPTOR_INFO)."""
    return _hkdf(secret, wire.DESCRIPTOR_INFO)


def seal_descriptor(secret: bytes, descriptor: dict[str, Any], *,
                    nonce: bytes | None = None) -> str:
    """The sealed description of a session (``wire.DESCRIPTOR_FIELDS`` of ``descriptor``),
    for ``POST /api/sessions``: the server keeps it and hands it to every party, and cannot
    make up another. ``nonce`` is for known-answer tests only."""
    doc = {name: descriptor[name] for name in wire.DESCRIPTOR_FIELDS}
    nonce = secrets.token_bytes(NONCE_BYTES) if nonce is None else nonce
    sealed = AESGCM(descriptor_key(secret)).encrypt(nonce, compact_json(doc), wire.DESCRIPTOR_AAD)
    return b64url_encode(nonce + sealed)


def open_descriptor(secret: bytes, box: Any) -> dict[str, Any] | None:
    """What the session's creator chose, or None if ``box`` is missing, does not open with
    this secret or is not a descriptor."""
    try:
        data = b64url_decode(box)
        if len(data) < NONCE_BYTES + TAG_BYTES:
            return None
        plain = AESGCM(descriptor_key(secret)).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:],
                                                       wire.DESCRIPTOR_AAD)
        doc = json.loads(plain.decode())
    except (ValueError, TypeError, InvalidTag, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or set(doc) != set(wire.DESCRIPTOR_FIELDS):
        return None
    return doc


# -- the join link ----------------------------------------------------------------------------

_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class JoinSecret:
    """What the join link's fragment carries: the secret and the program's hash."""

    secret: bytes
    program_hash: str

    @classmethod
    def create(cls, program: dict[str, Any]) -> JoinSecret:
        """A new secret for a session that runs ``program`` (as in a ``welcome``, e.g.
        ``session.Program.to_wire()``); its hash is computed here, from the local source
        for a built-in."""
        return cls(new_secret(), launch.program_hash(program))

    @property
    def token(self) -> str:
        return join_token(self.secret)

    @property
    def token_hash(self) -> str:
        return token_hash(self.token)

    @property
    def fingerprint(self) -> str:
        return launch.fingerprint(self.program_hash)

    def descriptor(self, parties: int, args: list[str], *, relay_only: bool = False,
                   labels: list[str] | None = None, pins: list[str] | None = None) -> str:
        """The sealed description of the session this secret is for (``seal_descriptor``);
        ``pins``: per place, the did:key it is kept for, or ""."""
        return seal_descriptor(self.secret, {
            "parties": parties, "relay_only": relay_only,
            "labels": list(labels or []) + [""] * (parties - len(labels or [])),
            "program": self.program_hash, "args": list(args),
            "pins": list(pins or []) + [""] * (parties - len(pins or []))})

    def to_fragment(self) -> str:
        """``k=<secret, base64url>&p=<program hash, hex>`` (no ``#``)."""
        return f"k={b64url_encode(self.secret)}&p={self.program_hash}"

    def link(self, join_url: str) -> str:
        """``join_url`` (``.../join/ID``) with this secret as its fragment."""
        return f"{join_url.split('#', 1)[0]}#{self.to_fragment()}"

    @classmethod
    def from_fragment(cls, fragment: str) -> JoinSecret:
        """Parse a fragment (with or without its ``#``); ``ValueError`` with a sentence for
        people (``link.missing_secret`` or ``link.damaged``) if it is missing or damaged.
        Parameters other than ``k`` and ``p`` are ignored; ``p`` may be upper case."""
        fragment = (fragment or "").strip().removeprefix("#")
        fields: dict[str, str] = {}
        for part in fragment.split("&"):
            key, sep, value = part.partition("=")
            if sep and key in ("k", "p"):
                if key in fields:
                    raise ValueError(_damaged(say("link.twice", key=key)))
                fields[key] = value
        if not fields:
            raise ValueError(say("link.missing_secret"))
        if "k" not in fields:
            raise ValueError(_damaged(say("link.no_secret")))
        if "p" not in fields:
            raise ValueError(_damaged(say("link.no_hash")))
        try:
            secret = b64url_decode(fields["k"])
        except ValueError:
            secret = b""
        if len(secret) != SECRET_BYTES:
            raise ValueError(_damaged(say("link.bad_secret", bytes=SECRET_BYTES)))
        program = fields["p"].lower()
        if not _HASH.fullmatch(program):
            raise ValueError(_damaged(say("link.bad_hash")))
        return cls(secret, program)


def _damaged(detail: str) -> str:
    return say("link.damaged", detail=detail)


# -- sealed signals ---------------------------------------------------------------------------

class Sealer:
    """Seals this party's signals to each other party and opens theirs, in order.

    ``parties`` is the session's number of parties: a sender is one of the others, 0 to
    ``parties - 1`` (without it, any pid the protocol allows).
    """

    def __init__(self, secret: bytes, session_id: str, pid: int,
                 parties: int = wire.MAX_PARTIES):
        self.session_id = session_id
        self.pid = pid
        self.parties = parties
        self._aead = AESGCM(seal_key(secret))
        #: Receiver -> the last number sealed for it; sender -> the last number accepted.
        self._sent: dict[int, int] = defaultdict(int)
        self._accepted: dict[int, int] = defaultdict(int)
        #: The same for chat boxes, which count on their own.
        self._chat_sent: dict[int, int] = defaultdict(int)
        self._chat_accepted: dict[int, int] = defaultdict(int)

    def restart(self, peer: int) -> None:
        """``peer`` came back after a reload, with a new page whose numbers start again:
        signals to and from it, and chat from it, are numbered afresh (chat to it needs
        nothing: a new page takes any number above the last it accepted, none yet)."""
        self._sent[peer] = self._accepted[peer] = self._chat_accepted[peer] = 0

    def seal(self, to: int, payload: dict[str, Any], *,
             nonce: bytes | None = None) -> dict[str, Any]:
        """The fields of a ``signal`` message (``to``, ``seq``, ``box``) carrying ``payload``.
        ``nonce`` is for known-answer tests only: never reuse one."""
        seq = self._sent[to] + 1
        self._sent[to] = seq
        if nonce is None:
            nonce = secrets.token_bytes(NONCE_BYTES)
        elif len(nonce) != NONCE_BYTES:
            raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
        aad = wire.signal_aad(self.session_id, self.pid, to, seq)
        sealed = self._aead.encrypt(nonce, compact_json(payload), aad)
        return {"to": to, "seq": seq, "box": b64url_encode(nonce + sealed)}

    def seal_chat(self, to: int, payload: dict[str, Any]) -> dict[str, Any]:
        """The fields of a ``chat`` message (``to``, ``seq``, ``box``) carrying ``payload``
        (a ``chat`` kind), numbered apart from the signals."""
        seq = self._chat_sent[to] + 1
        self._chat_sent[to] = seq
        aad = wire.chat_aad(self.session_id, self.pid, to, seq)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, compact_json(payload), aad)
        return {"to": to, "seq": seq, "box": b64url_encode(nonce + sealed)}

    def open(self, sender: Any, seq: Any, box: Any) -> dict[str, Any]:
        """The payload of a ``signal`` relayed from ``sender``; ``TamperError`` unless it
        authenticates for this session and these pids, is the next number from ``sender``,
        and is a JSON object of a kind in ``wire.SIGNAL_BOX_KINDS`` with its fields."""
        plain = self._decrypt(sender, seq, box, wire.signal_aad)
        expected = self._accepted[sender] + 1
        if seq < expected:
            raise TamperError(say("tamper.replayed", who=place(sender), seq=seq))
        if seq > expected:
            raise TamperError(say("tamper.out_of_order", who=place(sender), seq=seq,
                                  expected=expected))
        payload = _check_payload(sender, plain, wire.SIGNAL_BOX_KINDS)
        self._accepted[sender] = seq
        return payload

    def open_chat(self, sender: Any, seq: Any, box: Any) -> dict[str, Any]:
        """The payload of a ``chat`` relayed from ``sender``: as ``open``, but any number
        above the last one accepted will do (chat to a party that was away is dropped by
        the server, so numbers may be missing), and only the ``chat`` kind."""
        plain = self._decrypt(sender, seq, box, wire.chat_aad)
        if seq <= self._chat_accepted[sender]:
            raise TamperError(say("tamper.replayed", who=place(sender), seq=seq))
        payload = _check_payload(sender, plain, wire.CHAT_BOX_KINDS)
        self._chat_accepted[sender] = seq
        return payload

    def _decrypt(self, sender: Any, seq: Any, box: Any,
                 aad_of: Callable[[str, int, int, int], bytes]) -> bytes:
        if (isinstance(sender, bool) or not isinstance(sender, int)
                or not 0 <= sender < self.parties or sender == self.pid
                or isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
            raise TamperError(say("tamper.failed_authentication", who=place(sender)))
        try:
            data = b64url_decode(box)
            if len(data) < NONCE_BYTES + TAG_BYTES:
                raise ValueError("too short")
            aad = aad_of(self.session_id, sender, self.pid, seq)
            return self._aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], aad)
        except (ValueError, InvalidTag):
            raise TamperError(say("tamper.failed_authentication", who=place(sender))) from None


def _check_payload(sender: int, plain: bytes, kinds: tuple[str, ...]) -> dict[str, Any]:
    def bad(detail: str) -> TamperError:
        return TamperError(say("tamper.bad_content", who=place(sender), detail=detail))

    try:
        payload = json.loads(plain.decode())
    except (UnicodeDecodeError, ValueError):
        raise bad(say("tamper.not_json")) from None
    if not isinstance(payload, dict):
        raise bad(say("tamper.not_object"))
    kind = payload.get("kind")
    fields = wire.SIGNAL_KINDS.get(kind) if isinstance(kind, str) and kind in kinds else None
    if fields is None:
        raise bad(say("tamper.unknown_kind", kind=json.dumps(kind, ensure_ascii=False)))
    for name in fields:
        if not isinstance(payload.get(name), str):
            raise bad(say("tamper.missing_field", kind=kind, field=name))
    return payload
