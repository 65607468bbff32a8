"""The server's own STUN service, sans-I/O (``signaling/stun.py``): RFC 5769's test vectors,
what is answered and what is not, and that no datagram makes it raise or amplify."""

from __future__ import annotations

import struct

import aioice.stun
from hypothesis import given
from hypothesis import strategies as st

from signaling.stun import (
    MAX_ANSWER_BYTES,
    MAX_GROWTH,
    Outcome,
    StunResponder,
    check,
    fingerprint,
    xor_mapped_address,
)


def vector(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# RFC 5769, section 2.1: a Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
# MESSAGE-INTEGRITY and FINGERPRINT (an ICE connectivity check).
SAMPLE_REQUEST = vector("""
    00 01 00 58  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 10  53 54 55 4e  20 74 65 73  74 20 63 6c  69 65 6e 74
    00 24 00 04  6e 00 01 ff
    80 29 00 08  93 2f f9 b1  51 26 3b 36
    00 06 00 09  65 76 74 6a  3a 68 36 76  59 20 20 20
    00 08 00 14  9a ea a7 0c  bf d8 cb 56  78 1e f2 b5  b2 d3 f2 49  c1 b5 71 a2
    80 28 00 04  e5 7a 3b cf""")
TRANSACTION = SAMPLE_REQUEST[8:20]
# RFC 5769, sections 2.2 and 2.3: the responses' XOR-MAPPED-ADDRESS attributes for
# 192.0.2.1 port 32853 and 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
SAMPLE_IPV4_RESPONSE = vector("""
    01 01 00 3c  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 08  00 01 a1 47  e1 12 a6 43
    00 08 00 14  2b 91 f5 99  fd 9e 90 c3  8c 74 89 f9  2a f9 ba 53  f0 6b e7 d7
    80 28 00 04  c0 7d 4c 96""")
SAMPLE_IPV6_RESPONSE = vector("""
    01 01 00 48  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 14  00 02 a1 47  01 13 a9 fa  a5 d3 f1 79  bc 25 f4 b5  be d2 b9 d9
    00 08 00 14  a3 82 95 4e  4b e6 7b f1  17 84 c9 7c  82 92 c2 75  bf e3 ed 41
    80 28 00 04  c8 fb 0b 4c""")
IPV4 = ("192.0.2.1", 32853)
IPV6 = ("2001:db8:1234:5678:11:2233:4455:6677", 32853)


def binding_request(*attributes: tuple[int, bytes], transaction: bytes = TRANSACTION,
                    with_fingerprint: bool = False) -> bytes:
    body = b"".join(struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)
                    for kind, value in attributes)
    length = len(body) + (8 if with_fingerprint else 0)
    message = struct.pack("!HHI", 0x0001, length, 0x2112A442) + transaction + body
    if with_fingerprint:
        message += struct.pack("!HHI", 0x8028, 4, fingerprint(message))
    return message


def test_fingerprint_of_the_rfc_5769_samples():
    for sample in (SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE):
        assert struct.unpack("!I", sample[-4:])[0] == fingerprint(sample[:-8])


def test_xor_mapped_address_is_rfc_5769s():
    assert xor_mapped_address(*IPV4, TRANSACTION) == SAMPLE_IPV4_RESPONSE[36:48]
    assert xor_mapped_address(*IPV6, TRANSACTION) == SAMPLE_IPV6_RESPONSE[36:60]


def test_the_rfc_5769_sample_request_is_answered_with_the_clients_address():
    """An ICE-style request (credentials, PRIORITY, ICE-CONTROLLED) still only asks where
    the client is seen: the answer echoes its transaction and says so, with FINGERPRINT."""
    for source, sample, attribute in ((IPV4, SAMPLE_IPV4_RESPONSE, slice(36, 48)),
                                      (IPV6, SAMPLE_IPV6_RESPONSE, slice(36, 60))):
        responder = StunResponder()
        answer = responder.answer(SAMPLE_REQUEST, source)
        assert answer is not None
        assert answer[:2] == b"\x01\x01" and answer[4:20] == SAMPLE_REQUEST[4:20]
        assert answer[20:] == sample[attribute] + answer[-8:]
        assert answer[-8:-4] == b"\x80\x28\x00\x04"
        assert struct.unpack("!I", answer[-4:])[0] == fingerprint(answer[:-8])
        assert responder.counts == {Outcome.ANSWERED: 1}


def test_aioice_reads_the_answer():
    """What a WebRTC client's STUN code makes of it (aioice: aiortc's ICE)."""
    request = aioice.stun.Message(message_method=aioice.stun.Method.BINDING,
                                  message_class=aioice.stun.Class.REQUEST)
    request.add_fingerprint()
    for host, port in (("198.51.100.7", 40000), ("2001:db8::5", 1), ("::ffff:10.1.2.3", 9)):
        answer = StunResponder().answer(bytes(request), (host, port, 0, 0)[:2])
        assert answer is not None
        parsed = aioice.stun.parse_message(answer)  # checks FINGERPRINT too
        assert parsed.message_class == aioice.stun.Class.RESPONSE
        assert parsed.transaction_id == request.transaction_id
        want = host.removeprefix("::ffff:")  # a dual-stack socket's IPv4 client: IPv4
        assert parsed.attributes["XOR-MAPPED-ADDRESS"] == (want, port)


def test_an_ipv6_source_with_a_zone_and_flow_info():
    answer = StunResponder().answer(binding_request(), ("fe80::1%eth0", 5000, 0, 3))
    assert answer is not None
    assert aioice.stun.parse_message(answer).attributes["XOR-MAPPED-ADDRESS"] == \
        ("fe80::1", 5000)


def test_plain_and_fingerprinted_requests_are_answered():
    for request in (binding_request(), binding_request(with_fingerprint=True),
                    binding_request((0x8022, b"some client"), with_fingerprint=True)):
        assert check(request) is Outcome.ANSWERED, request.hex()


def test_what_is_not_answered_and_why():
    good = binding_request(with_fingerprint=True)
    cases = {
        b"": Outcome.TOO_SHORT,
        good[:19]: Outcome.TOO_SHORT,
        good[:-1]: Outcome.NOT_STUN,  # the length does not fit
        good + b"\0\0\0\0": Outcome.NOT_STUN,
        b"\x80" + good[1:]: Outcome.NOT_STUN,  # top bits: not STUN (e.g. RTP, DTLS)
        good[:4] + b"\0\0\0\0" + good[8:]: Outcome.NOT_STUN,  # RFC 3489: no magic cookie
        b"\x01\x01" + good[2:]: Outcome.NOT_BINDING_REQUEST,  # a response
        b"\x00\x11" + good[2:]: Outcome.NOT_BINDING_REQUEST,  # an indication
        b"\x00\x03" + good[2:]: Outcome.NOT_BINDING_REQUEST,  # TURN Allocate
        good[:-1] + bytes([good[-1] ^ 1]): Outcome.BAD_FINGERPRINT,
        binding_request((0x0003, b"\0\0\0\x06")): Outcome.UNKNOWN_ATTRIBUTE,  # CHANGE-REQUEST
        # An attribute claiming more bytes than there are:
        struct.pack("!HHI", 1, 8, 0x2112A442) + TRANSACTION + b"\x80\x22\x00\x40abcd":
            Outcome.MALFORMED,
        # A FINGERPRINT that is not the last attribute:
        binding_request((0x8028, b"\0\0\0\0"), (0x8022, b"x")): Outcome.BAD_FINGERPRINT,
        # Padding missing after the last attribute:
        struct.pack("!HHI", 1, 8, 0x2112A442) + TRANSACTION + b"\x80\x22\x00\x05abcd":
            Outcome.MALFORMED,
    }
    responder = StunResponder()
    for data, why in cases.items():
        assert check(data) is why, (data.hex(), check(data), why)
        assert responder.answer(data, IPV4) is None
    assert responder.counts[Outcome.ANSWERED] == 0
    assert sum(responder.counts.values()) == len(cases)
    assert responder.summary().startswith(f"answered 0, ignored {len(cases)} (")


def test_an_unusable_source_address_gets_no_answer():
    responder = StunResponder()
    assert responder.answer(binding_request(), ("not-an-address", 1)) is None
    assert responder.answer(binding_request(), ("10.0.0.1", 70000)) is None
    assert responder.counts == {Outcome.BAD_ADDRESS: 2}


def test_no_amplification():
    """The smallest request that gets an answer is the bare 20-byte header; the largest
    answer is for an IPv6 client."""
    answer = StunResponder().answer(binding_request(), IPV6)
    assert answer is not None and len(answer) == MAX_ANSWER_BYTES == 20 + MAX_GROWTH


sources = st.one_of(
    st.tuples(st.ip_addresses().map(str), st.integers(0, 65535)),
    st.tuples(st.text(max_size=50), st.integers(-1, 1 << 20)))


@given(st.binary(max_size=300), sources)
def test_garbage_never_raises_nor_amplifies(data, source):
    answer = StunResponder().answer(data, source)
    assert answer is None or len(answer) <= len(data) + MAX_GROWTH


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)), max_size=6),
       st.binary(min_size=12, max_size=12), st.booleans(), st.binary(max_size=4),
       st.ip_addresses().map(str))
def test_mutated_binding_requests_never_raise_nor_amplify(attributes, transaction, fp,
                                                          tail, host):
    request = binding_request(*attributes, transaction=transaction, with_fingerprint=fp)
    for data in (request, request + tail, request[:len(request) - len(tail)]):
        answer = StunResponder().answer(data, (host, 3478))
        assert answer is None or len(answer) <= len(data) + MAX_GROWTH
        if answer is not None:
            parsed = aioice.stun.parse_message(answer)
            assert parsed.transaction_id == transaction
