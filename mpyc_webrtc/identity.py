"""A party's long-term identity: an Ed25519 key pair, shown as a ``did:key`` and a
fingerprint a person can read out.

The server hands out places and relays; it must not be able to say who a party is. So
each party keeps a key pair of its own (a browser: a non-extractable WebCrypto key in
IndexedDB, ``web/identity.js``; a native peer: a key file, ``load_or_create``), and signs
what binds it to a session (``statement``): the session, its place, the name it claims and
the DTLS certificate its peer connection shows. Another party that checks the signature
knows the key holder is the one at the other end of that very connection.

Formats, the same in Python and JavaScript (``tests/identity_vectors.json`` holds known
answers both are checked against):

- ``did:key``: ``did:key:z`` + base58btc(``0xED 0x01`` + the 32-byte public key), as in the
  W3C did:key method for Ed25519 (so it starts ``did:key:z6Mk``);
- the fingerprint: the first 10 bytes of SHA-256(public key) in base32 (RFC 4648, no
  padding), as four groups of four characters: ``ABCD-EFGH-IJKL-MNOP``; easy to read
  aloud (no 0/O or 1/I confusion in base32's alphabet), 80 bits;
- a statement: ``STATEMENT_CONTEXT`` and then the fields, each as UTF-8, length-prefixed
  (4 bytes, big-endian), so no two statements share bytes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

#: The multicodec prefix of an Ed25519 public key (varint 0xed).
ED25519_PREFIX = b"\xed\x01"
DID_PREFIX = "did:key:z"
#: What every signed statement starts with: a signature for anything else never verifies.
STATEMENT_CONTEXT = b"mpyc-webrtc v1 identity\x00"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class IdentityError(ValueError):
    """A did:key, key file or signature that is not what it must be; the message says
    what, for a person."""


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = _B58[digit] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        digit = _B58.find(char)
        if digit < 0:
            raise IdentityError(f"{char!r} is not a base58 character.")
        number = number * 58 + digit
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def did_key(public: bytes) -> str:
    """The ``did:key`` of an Ed25519 public key (32 bytes)."""
    if len(public) != 32:
        raise IdentityError("An Ed25519 public key has 32 bytes.")
    return DID_PREFIX + b58encode(ED25519_PREFIX + public)


def public_key(did: str) -> bytes:
    """The public key a ``did:key`` names, or IdentityError saying what is wrong."""
    if not isinstance(did, str) or not did.startswith(DID_PREFIX):
        raise IdentityError(f"{str(did)[:60]!r} is not a did:key identifier "
                            "(did:key:z6Mk...).")
    raw = b58decode(did[len(DID_PREFIX):])
    if not raw.startswith(ED25519_PREFIX) or len(raw) != 34:
        raise IdentityError(f"{did[:60]!r} is not the did:key of an Ed25519 key.")
    if did_key(raw[2:]) != did:
        raise IdentityError(f"{did[:60]!r} is not written the one way a did:key is.")
    return raw[2:]


def fingerprint(public: bytes) -> str:
    """What a person reads out to check a key: ``ABCD-EFGH-IJKL-MNOP``."""
    text = base64.b32encode(hashlib.sha256(public).digest()[:10]).decode()
    return "-".join(text[i:i + 4] for i in range(0, 16, 4))


def statement(*fields: str) -> bytes:
    """The bytes signed for ``fields`` (see the module's docstring)."""
    out = bytearray(STATEMENT_CONTEXT)
    for text in fields:
        data = text.encode()
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


#: What an offer or answer's signature covers, in this order (``link_statement``).
LINK_FIELDS = ("link", "session", "from", "to", "label", "name", "certificate", "program")


def link_statement(session: str, sender: int, receiver: int, label: str, name: str,
                   certificate: str, program: str) -> bytes:
    """What party ``sender`` signs in its offer or answer to ``receiver``: that the key
    holder is the one at this end of the connection whose DTLS certificate is
    ``certificate`` (``shape.certificate``: ``sha-256 AB:CD:...``), in place ``label`` of
    ``session``, calling itself ``name``, running ``program`` (its hash). A server that
    moves it to another session, pair, place or connection, or changes the name, breaks
    the signature."""
    return statement("link", session, str(sender), str(receiver), label, name, certificate,
                     program)


def join_statement(session: str, resume: str) -> bytes:
    """What a party signs to join ``session`` with its identity (the join's ``proof``):
    bound to its own ``resume`` secret, so the proof is good for this party's joins only."""
    return statement("join", session, resume)


def chat_statement(session: str, sender: int, number: str, name: str, text: str) -> bytes:
    """What party ``sender`` signs for its chat message number ``number`` (1, 2, ... as
    text): that the key holder, calling itself ``name``, wrote ``text`` in ``session``."""
    return statement("chat", session, str(sender), number, name, text)


def verify(did: str, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is the key of ``did``'s over ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key(did)).verify(signature, message)
    except (InvalidSignature, IdentityError, ValueError):
        return False
    return True


class Identity:
    """A key pair: ``did``, ``fingerprint``, ``sign``."""

    def __init__(self, private: Ed25519PrivateKey):
        self._private = private
        self.public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.did = did_key(self.public)
        self.fingerprint = fingerprint(self.public)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The identity of a 32-byte seed (known-answer tests)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def pem(self) -> bytes:
        return self._private.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())


def default_path() -> Path:
    """Where a native peer keeps its key: the user's config directory."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mpyc-webrtc" / "identity.pem"


def _make(path: Path) -> Identity | None:
    """A new identity saved in ``path``, whole or not at all: written to a file of its own
    and linked into place, so that peers started together on a new key file never read
    half of one. None if another program made ``path`` meanwhile."""
    identity = Identity.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".identity-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(identity.pem())
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return None
    finally:
        os.unlink(temporary)
    return identity


def load_or_create(path: Path | None = None) -> tuple[Identity, bool]:
    """The identity in ``path`` (``default_path()``), made and saved (readable by its
    owner only) if there is none; and whether it was just made."""
    path = path or default_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        made = _make(path)
        if made is not None:
            return made, True
        data = path.read_bytes()  # another program made it first: that one is ours
    except OSError as exc:
        raise IdentityError(f"Cannot read the identity file {path}: "
                            f"{exc.strerror or exc}.") from None
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(f"The identity file {path} can be read by other users of this "
                            f"machine; make it yours only (chmod 600 {path}).")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise IdentityError(f"{path} is not an identity file (an Ed25519 private key in "
                            "PEM).") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path} holds another kind of key; an identity is an Ed25519 "
                            "key.")
    return Identity(key), False
