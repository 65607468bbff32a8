"""The server's own STUN service, without I/O: a datagram in, the answer (or nothing) out.

A party behind a home router (a cone NAT) can reach others directly once it knows the
address and port its router maps it to; a STUN server tells it (RFC 8489, formerly 5389:
a Binding request, answered with XOR-MAPPED-ADDRESS). Answering takes no state and no
credentials, so the signaling server can do it itself and a server on a public host
works across home routers without coturn. Relaying (TURN) stays coturn's job.

A STUN port is open to anyone, so the rules are strict and cheap:

- only a well-formed Binding *request* with the magic cookie is answered; responses,
  indications, other methods, RFC 3489 messages (no cookie), attributes that overflow the
  message, a FINGERPRINT that does not match or is not last, and attributes that must be
  understood but are not (e.g. CHANGE-REQUEST) get no answer, and nothing ever raises;
- the answer is a success response with XOR-MAPPED-ADDRESS and FINGERPRINT only: at most
  ``MAX_ANSWER_BYTES`` (52, for an IPv6 client) and never more than ``MAX_GROWTH`` (32)
  bytes longer than the request, so the port is useless as a traffic amplifier;
- every datagram is counted by what became of it (``StunResponder.counts``), for the log.
"""

from __future__ import annotations

import binascii
import ipaddress
import struct
from collections import Counter
from enum import StrEnum

MAGIC_COOKIE = 0x2112A442
HEADER_BYTES = 20
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
XOR_MAPPED_ADDRESS = 0x0020
FINGERPRINT = 0x8028
#: What FINGERPRINT's CRC-32 is XORed with (RFC 8489, section 14.7: "STUN" in ASCII).
FINGERPRINT_XOR = 0x5354554E
#: Comprehension-required attributes a Binding request may carry that change nothing in our
#: answer: credentials (we ask for none), and ICE's (a client may reuse a check's layout).
UNDERSTOOD = frozenset({
    0x0006,  # USERNAME
    0x0008,  # MESSAGE-INTEGRITY
    0x0014,  # REALM
    0x0015,  # NONCE
    0x001C,  # MESSAGE-INTEGRITY-SHA256
    0x001D,  # PASSWORD-ALGORITHM
    0x001E,  # USERHASH
    0x0024,  # PRIORITY
    0x0025,  # USE-CANDIDATE
})
#: The largest answer: header, XOR-MAPPED-ADDRESS of an IPv6 address, FINGERPRINT.
MAX_ANSWER_BYTES = HEADER_BYTES + 4 + 20 + 8
#: How much longer than the request the answer may be (the smallest request is 20 bytes).
MAX_GROWTH = MAX_ANSWER_BYTES - HEADER_BYTES


class Outcome(StrEnum):
    """What became of a datagram (the keys of ``StunResponder.counts``)."""

    ANSWERED = "answered"
    TOO_SHORT = "too short"
    NOT_STUN = "not STUN"  # top bits set, no magic cookie, or a length that does not fit
    NOT_BINDING_REQUEST = "not a binding request"
    MALFORMED = "malformed attributes"
    BAD_FINGERPRINT = "bad fingerprint"
    UNKNOWN_ATTRIBUTE = "unknown required attribute"
    BAD_ADDRESS = "unusable source address"


def fingerprint(message: bytes) -> int:
    """FINGERPRINT's value for ``message``: everything before the attribute, with the
    header's length already counting it."""
    return (binascii.crc32(message) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


def check(data: bytes) -> Outcome:
    """Whether ``data`` is a Binding request this service answers (``Outcome.ANSWERED``),
    else why not."""
    if len(data) < HEADER_BYTES:
        return Outcome.TOO_SHORT
    kind, length, cookie = struct.unpack_from("!HHI", data)
    if kind & 0xC000 or cookie != MAGIC_COOKIE or length % 4 or \
            length != len(data) - HEADER_BYTES:
        return Outcome.NOT_STUN
    if kind != BINDING_REQUEST:
        return Outcome.NOT_BINDING_REQUEST
    offset = HEADER_BYTES
    while offset < len(data):
        if offset + 4 > len(data):
            return Outcome.MALFORMED
        attribute, size = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + size
        if end > len(data):
            return Outcome.MALFORMED
        if attribute == FINGERPRINT:
            # The last attribute, four bytes, over everything before it.
            if size != 4 or end != len(data):
                return Outcome.BAD_FINGERPRINT
            (value,) = struct.unpack_from("!I", data, offset + 4)
            if value != fingerprint(data[:offset]):
                return Outcome.BAD_FINGERPRINT
        elif attribute < 0x8000 and attribute not in UNDERSTOOD:
            return Outcome.UNKNOWN_ATTRIBUTE
        offset = end + (-size % 4)
    if offset != len(data):  # the last attribute's padding ran past the end
        return Outcome.MALFORMED
    return Outcome.ANSWERED


def xor_mapped_address(host: str, port: int, transaction: bytes) -> bytes:
    """The XOR-MAPPED-ADDRESS attribute (header included) for ``host``:``port``; an
    IPv4-mapped IPv6 address (a dual-stack socket's IPv4 client) as the IPv4 address it
    is. ValueError if ``host`` is not an IP address or the port is out of range."""
    address = ipaddress.ip_address(host.split("%", 1)[0])  # no IPv6 zone: not on the wire
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    mask = struct.pack("!I", MAGIC_COOKIE) + transaction
    raw = bytes(a ^ b for a, b in zip(address.packed, mask, strict=False))
    family = 0x01 if address.version == 4 else 0x02
    value = struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + raw
    return struct.pack("!HH", XOR_MAPPED_ADDRESS, len(value)) + value


def binding_success(transaction: bytes, host: str, port: int) -> bytes:
    """A Binding success response for ``transaction`` telling the client it is seen at
    ``host``:``port``, with FINGERPRINT."""
    attributes = xor_mapped_address(host, port, transaction)
    length = len(attributes) + 8
    head = struct.pack("!HHI", BINDING_SUCCESS, length, MAGIC_COOKIE) + transaction
    body = head + attributes
    return body + struct.pack("!HHI", FINGERPRINT, 4, fingerprint(body))


class StunResponder:
    """Answers Binding requests (see the module's docstring); counts what it saw."""

    def __init__(self) -> None:
        self.counts: Counter[Outcome] = Counter()

    def answer(self, data: bytes, source: tuple[str, int] | tuple[str, int, int, int]
               ) -> bytes | None:
        """The response to send back to ``source`` (the datagram's sender, as asyncio
        gives it), or None: nothing is sent."""
        outcome = check(data)
        response = None
        if outcome is Outcome.ANSWERED:
            try:
                response = binding_success(data[8:20], str(source[0]), int(source[1]))
            except (ValueError, TypeError, IndexError):
                outcome = Outcome.BAD_ADDRESS
        self.counts[outcome] += 1
        return response

    def summary(self) -> str:
        """The counts for a person: ``answered 12, ignored 3 (not STUN 2, too short 1)``."""
        ignored = {o: n for o, n in self.counts.items() if o is not Outcome.ANSWERED}
        text = f"answered {self.counts[Outcome.ANSWERED]}"
        if ignored:
            text += f", ignored {sum(ignored.values())} (" + ", ".join(
                f"{o} {n}" for o, n in sorted(ignored.items(), key=lambda i: -i[1])) + ")"
        return text
