"""Sealed signaling (``mpyc_webrtc.sealing``): the link's fragment, the join token, and
sealed ``signal`` boxes, with every way a box can fail and known-answer vectors.

The vectors are kept in ``tests/sealing_vectors.json`` for the browser's WebCrypto
implementation to be checked against; ``python tests/test_sealing.py`` rewrites the file,
and ``test_vector_file_is_current`` fails when it no longer matches this implementation.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from mpyc_webrtc import launch, sealing, wire
from mpyc_webrtc.launch import fingerprint
from mpyc_webrtc.sealing import (
    JoinSecret,
    Sealer,
    TamperError,
    b64url_decode,
    b64url_encode,
    compact_json,
    join_token,
    open_descriptor,
    seal_descriptor,
    seal_key,
    token_hash,
)
from mpyc_webrtc.sentences import place, say

VECTORS = Path(__file__).with_name("sealing_vectors.json")
SECRET = bytes(range(32))
SESSION = "s3ss10n-ID_x"
#: What an offer or answer carries besides its SDP and program (the sealing does not check
#: signatures; the client does).
SIGNED = {"identity": "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
          "name": "Alice", "signature": "c2ln"}
OFFER = {"kind": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n",
         "program": "ab" * 32, **SIGNED}
ANSWER = {"kind": "answer", "sdp": "v=0\r\n", "program": "ab" * 32, **SIGNED}
CHAT = {"kind": "chat", "text": "Hello, <b>all</b> 👋", "number": "1", **SIGNED}
CANDIDATE = {"kind": "candidate", "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 "
             "typ host", "sdpMid": "0", "sdpMLineIndex": 0}


def pair(secret=SECRET, session=SESSION, a=0, b=1):
    return Sealer(secret, session, a), Sealer(secret, session, b)


def tamper_message(excinfo) -> str:
    text = str(excinfo.value)
    assert text.startswith("Tampering detected: ")
    assert text.endswith("Stop, and do not take part in this session.")
    return text


# -- encodings, token, key ----------------------------------------------------------------

def test_base64url_is_unpadded_and_strict():
    assert b64url_encode(b"\xfb\xff") == "-_8"
    assert b64url_decode("-_8") == b"\xfb\xff"
    for bad in ["-_8=", "+/8", "a", "ab c", "-_9", "AB==", "é"]:
        with pytest.raises(ValueError):
            b64url_decode(bad)


@given(st.binary(max_size=80))
def test_base64url_round_trip(data):
    assert b64url_decode(b64url_encode(data)) == data


def test_token_and_key_are_hkdf_sha256_with_an_empty_salt():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    def hkdf(info, salt):
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(SECRET)

    assert hkdf(wire.TOKEN_INFO, b"") == hkdf(wire.TOKEN_INFO, None)
    assert join_token(SECRET) == b64url_encode(hkdf(wire.TOKEN_INFO, b""))
    assert len(join_token(SECRET)) == 43
    assert seal_key(SECRET) == hkdf(wire.KEY_INFO, b"")
    assert seal_key(SECRET) != b64url_decode(join_token(SECRET))
    assert token_hash("abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(sealing.new_secret()) == 32 and sealing.new_secret() != sealing.new_secret()


# -- the link's fragment ------------------------------------------------------------------

def test_fragment_round_trip():
    secret = JoinSecret(SECRET, "0f" * 32)
    fragment = secret.to_fragment()
    assert fragment == f"k={b64url_encode(SECRET)}&p={'0f' * 32}"
    assert JoinSecret.from_fragment(fragment) == secret
    assert JoinSecret.from_fragment("#" + fragment) == secret
    assert JoinSecret.from_fragment(f"p={'0F' * 32}&x=1&k={b64url_encode(SECRET)}") == secret
    assert secret.link("http://h/join/ID") == f"http://h/join/ID#{fragment}"
    assert secret.link("http://h/join/ID#old") == f"http://h/join/ID#{fragment}"
    assert secret.fingerprint == "0f0f 0f0f 0f0f 0f0f 0f0f"
    assert secret.token == join_token(SECRET) and secret.token_hash == token_hash(secret.token)


def test_create_hashes_the_program():
    program = {"name": "sum", "args": [], "builtin": True}
    secret = JoinSecret.create(program)
    assert secret.program_hash == launch.program_hash(program) and len(secret.secret) == 32


@pytest.mark.parametrize("fragment", ["", "#", "x=1", "k", "#k"])
def test_missing_fragment(fragment):
    with pytest.raises(ValueError) as excinfo:
        JoinSecret.from_fragment(fragment)
    assert str(excinfo.value) == say("link.missing_secret")
    assert str(excinfo.value).startswith("The join link lacks its secret part (after the # "
                                         "sign).")


K = b64url_encode(SECRET)
P = "ab" * 32


@pytest.mark.parametrize("fragment, detail", [
    (f"k={K}", "the program's hash (p=...) is missing"),
    (f"p={P}", "its secret (k=...) is missing"),
    (f"k={K[:-1]}&p={P}", "its secret (k=...) is not 32 bytes of base64url"),
    (f"k={K}A&p={P}", "its secret (k=...) is not 32 bytes of base64url"),
    (f"k={K[:-1]}B&p={P}", "its secret (k=...) is not 32 bytes of base64url"),  # not canonical
    (f"k={K}=&p={P}", "its secret (k=...) is not 32 bytes of base64url"),
    (f"k={K}&p={P[:-1]}", "the program's hash (p=...) is not 64 hexadecimal digits"),
    (f"k={K}&p={P[:-1]}g", "the program's hash (p=...) is not 64 hexadecimal digits"),
    (f"k={K}&k={K}&p={P}", "it has 'k' twice"),
])
def test_damaged_fragment(fragment, detail):
    with pytest.raises(ValueError) as excinfo:
        JoinSecret.from_fragment(fragment)
    assert str(excinfo.value) == (
        f"The join link's secret part (after the # sign) is damaged: {detail}. Ask the person "
        "who created the session for the whole link, and copy all of it.")


# -- sealing and opening ------------------------------------------------------------------

def test_round_trip_counts_per_receiver():
    a, b = pair()
    c = Sealer(SECRET, SESSION, 2)
    first = a.seal(1, OFFER)
    assert set(first) == {"to", "seq", "box"} and first["to"] == 1 and first["seq"] == 1
    to_c = a.seal(2, OFFER)
    assert to_c["seq"] == 1  # its own count per receiver
    second = a.seal(1, CANDIDATE)
    assert second["seq"] == 2
    assert b.open(0, first["seq"], first["box"]) == OFFER
    assert b.open(0, second["seq"], second["box"]) == CANDIDATE
    back = b.seal(0, ANSWER)
    assert a.open(1, back["seq"], back["box"]) == ANSWER
    assert c.open(0, 1, to_c["box"]) == OFFER
    with pytest.raises(TamperError):
        b.open(0, 1, to_c["box"])  # not meant for party 1


def test_chat_boxes_count_on_their_own_and_hold_only_chat():
    a, b = pair()
    signal = a.seal(1, OFFER)
    first, second = a.seal_chat(1, CHAT), a.seal_chat(1, CHAT)
    assert (signal["seq"], first["seq"], second["seq"]) == (1, 1, 2)
    with pytest.raises(TamperError):
        b.open_chat(0, 1, signal["box"])  # a signal is never a chat: other associated data
    assert b.open_chat(0, 2, second["box"]) == CHAT  # the first was lost on the way: fine
    with pytest.raises(TamperError, match="replayed"):
        b.open_chat(0, 1, first["box"])
    assert b.open(0, 1, signal["box"]) == OFFER  # the signals' count is untouched


@settings(max_examples=50)
@given(sdp=st.text(max_size=300), session=st.text(min_size=1, max_size=20),
       pids=st.lists(st.integers(0, 31), min_size=2, max_size=2, unique=True))
def test_round_trip_any_text(sdp, session, pids):
    sdp = sdp.encode("utf-8", "replace").decode()  # no lone surrogates: not valid JSON text
    a, b = Sealer(SECRET, session, pids[0]), Sealer(SECRET, session, pids[1])
    payload = {"kind": "answer", "sdp": sdp, "program": P, **SIGNED}
    sealed = a.seal(pids[1], payload)
    assert b.open(pids[0], sealed["seq"], sealed["box"]) == payload


def test_box_layout_is_nonce_then_aes_gcm():
    a, _ = pair()
    nonce = bytes(range(12))
    sealed = a.seal(1, OFFER, nonce=nonce)
    data = b64url_decode(sealed["box"])
    assert data[:12] == nonce
    aad = wire.signal_aad(SESSION, 0, 1, 1)
    assert AESGCM(seal_key(SECRET)).decrypt(nonce, data[12:], aad) == compact_json(OFFER)
    assert len(data) == 12 + len(compact_json(OFFER)) + 16
    assert a.seal(1, OFFER)["box"][:16] != sealed["box"][:16]  # fresh random nonces


def flip(box: str, index: int | None = None) -> str:
    index = len(box) // 2 if index is None else index
    return box[:index] + ("A" if box[index] != "A" else "B") + box[index + 1:]


def test_any_changed_character_fails_authentication():
    a, _ = pair()
    sealed = a.seal(1, OFFER)
    for index in range(len(sealed["box"])):
        _, b = pair()
        with pytest.raises(TamperError) as excinfo:
            b.open(0, 1, flip(sealed["box"], index))
        assert tamper_message(excinfo) == (
            "Tampering detected: a signaling message said to come from party 1 failed "
            "authentication. Someone between you and party 1 (the signaling server or the "
            "network) changed it, or it was not sent by party 1. Stop, and do not take part "
            "in this session.")


@pytest.mark.parametrize("case", ["key", "session", "sender", "receiver", "seq", "base64",
                                  "short", "empty", "not-a-string", "bool-seq", "zero-seq"])
def test_failed_authentication(case):
    a, b = pair()
    sealed = a.seal(1, OFFER)
    sender, seq, box = 0, 1, sealed["box"]
    if case == "key":
        b = Sealer(bytes(32), SESSION, 1)
    elif case == "session":
        b = Sealer(SECRET, SESSION + "x", 1)
    elif case == "sender":
        sender = 2  # moved to another sender: the "from" was changed
    elif case == "receiver":
        b = Sealer(SECRET, SESSION, 2)  # relayed to another party
    elif case == "seq":
        a.seal(1, OFFER)
        seq = 2  # the number was changed: it is authenticated too
    elif case == "base64":
        box = box[:10] + "+" + box[11:]
    elif case == "short":
        box = box[:30]
    elif case == "empty":
        box = ""
    elif case == "not-a-string":
        box = None
    elif case == "bool-seq":
        seq = True
    elif case == "zero-seq":
        seq = 0
    with pytest.raises(TamperError) as excinfo:
        b.open(sender, seq, box)
    assert f"said to come from party {sender + 1} failed authentication" in tamper_message(excinfo)
    # Nothing was accepted: the real message still opens afterwards (same receiver).
    if case not in ("key", "session", "receiver", "seq"):
        assert b.open(0, 1, sealed["box"]) == OFFER


def test_swapped_pids_fail():
    a, b = pair()
    sealed = a.seal(1, OFFER)
    mirror = Sealer(SECRET, SESSION, 0)
    with pytest.raises(TamperError, match="from party 2 failed authentication"):
        mirror.open(1, 1, sealed["box"])  # reflected back to its sender as if from 1
    assert b.open(0, 1, sealed["box"]) == OFFER


def test_replay_is_detected():
    a, b = pair()
    sealed = a.seal(1, OFFER)
    b.open(0, 1, sealed["box"])
    with pytest.raises(TamperError) as excinfo:
        b.open(0, 1, sealed["box"])
    assert tamper_message(excinfo) == (
        "Tampering detected: signaling message 1 from party 1 arrived again (replayed). "
        "Someone between you and party 1 (the signaling server or the network) sent it "
        "twice. Stop, and do not take part in this session.")


def test_skipped_or_reordered_message_is_detected():
    a, b = pair()
    boxes = [a.seal(1, CANDIDATE)["box"] for _ in range(5)]
    b.open(0, 1, boxes[0])
    b.open(0, 2, boxes[1])
    with pytest.raises(TamperError) as excinfo:
        b.open(0, 5, boxes[4])
    assert tamper_message(excinfo) == (
        "Tampering detected: signaling message 5 from party 1 arrived out of order (number "
        "5, expected 3). Someone between you and party 1 (the signaling server or the "
        "network) held back, dropped or reordered messages. Stop, and do not take part in "
        "this session.")
    assert b.open(0, 3, boxes[2]) == CANDIDATE  # the rejected one did not count
    with pytest.raises(TamperError, match="replayed"):
        b.open(0, 2, boxes[1])


def test_counts_are_per_sender():
    _, b = pair()
    a0, a2 = Sealer(SECRET, SESSION, 0), Sealer(SECRET, SESSION, 2)
    assert b.open(2, 1, a2.seal(1, CANDIDATE)["box"]) == CANDIDATE
    assert b.open(0, 1, a0.seal(1, CANDIDATE)["box"]) == CANDIDATE


def sealed_raw(plain: bytes, seq: int = 1, aad_of=wire.signal_aad) -> str:
    """A box of arbitrary bytes, sealed correctly by party 0 for party 1."""
    nonce = bytes(12)
    aad = aad_of(SESSION, 0, 1, seq)
    return b64url_encode(nonce + AESGCM(seal_key(SECRET)).encrypt(nonce, plain, aad))


@pytest.mark.parametrize("plain, detail", [
    (b"{not json", "it is not JSON"),
    (b"\xff\xfe", "it is not JSON"),
    (b"[1, 2]", "it is not a JSON object"),
    (b'{"kind": "bye"}', 'unknown kind "bye"'),
    (b'{"sdp": "v=0"}', "unknown kind null"),
    (b'{"kind": "offer", "sdp": "v=0"}', "its offer has no text field 'program'"),
    (b'{"kind": "answer", "program": "x"}', "its answer has no text field 'sdp'"),
    (b'{"kind": "offer", "sdp": 1, "program": "x"}', "its offer has no text field 'sdp'"),
    (b'{"kind": "candidate"}', "its candidate has no text field 'candidate'"),
    (b'{"kind": "offer", "sdp": "v=0", "program": "x", "identity": "d", "name": ""}',
     "its offer has no text field 'signature'"),
    (b'{"kind": "chat", "text": "hi"}', 'unknown kind "chat"'),
])
def test_authentic_box_with_bad_content(plain, detail):
    _, b = pair()
    with pytest.raises(TamperError) as excinfo:
        b.open(0, 1, sealed_raw(plain))
    assert tamper_message(excinfo) == (
        f"Tampering detected: a sealed signaling message from party 1 is not a valid offer, "
        f"answer, ICE candidate or chat message ({detail}). Only someone with the join link "
        f"can seal messages, so party 1 or someone else with the link sent it. Stop, and do "
        f"not take part in this session.")
    assert b.open(0, 1, sealed_raw(b'{"kind":"candidate","candidate":""}')) == {
        "kind": "candidate", "candidate": ""}


def test_program_messages():
    link, ours = "ab" * 32, "cd" * 32
    assert say("tamper.server_program", ours=fingerprint(ours), link=fingerprint(link)) == (
        "Tampering detected: the server gave this party a different program than the one "
        "the session's creator chose (fingerprint cdcd cdcd cdcd cdcd cdcd; the link says "
        "abab abab abab abab abab). Stop, and do not take part in this session.")
    assert say("tamper.peer_program", who="party 3", theirs=fingerprint(ours),
               ours=fingerprint(link)) == (
        "Tampering detected: party 3 runs a different program than this party (fingerprint "
        "cdcd cdcd cdcd cdcd cdcd; this party runs abab abab abab abab abab). The parties "
        "were given different programs. Stop, and do not take part in this session.")


def test_nonce_must_be_twelve_bytes():
    a, _ = pair()
    with pytest.raises(ValueError):
        a.seal(1, OFFER, nonce=bytes(8))


# -- known answers for the browser --------------------------------------------------------

def _vector(secret: bytes, session: str, sender: int, receiver: int, payloads: list[dict],
            nonces: list[bytes], program: str) -> list[dict]:
    sealer = Sealer(secret, session, sender)
    token = join_token(secret)
    out = []
    for payload, nonce in zip(payloads, nonces, strict=True):
        sealed = sealer.seal(receiver, payload, nonce=nonce)
        out.append({
            "secret_hex": secret.hex(), "fragment": JoinSecret(secret, program).to_fragment(),
            "program_hash": program, "token": token, "token_hash": token_hash(token),
            "key_hex": seal_key(secret).hex(), "session": session, "from": sender,
            "to": receiver, "seq": sealed["seq"], "payload": payload,
            "plaintext": compact_json(payload).decode(),
            "aad": wire.signal_aad(session, sender, receiver, sealed["seq"]).decode(),
            "nonce_hex": nonce.hex(), "box": sealed["box"],
        })
    return out


def build_vectors() -> dict:
    program = launch.program_hash({"name": "sum", "args": [], "builtin": True})
    seal = _vector(SECRET, SESSION, 0, 1, [OFFER, CANDIDATE],
                   [bytes(range(12)), bytes(range(100, 112))], program)
    seal += _vector(bytes.fromhex("ff" * 32), "Z9_-abcdefghijkl", 2, 0,
                    [ANSWER, {"kind": "candidate", "candidate": "", "note": "héllo ✓"}],
                    [bytes(12), b"\xff" * 12], "0123456789abcdef" * 4)
    first, second = seal[0], seal[1]

    def message(from_, seq, box, expect, **fields):
        # The whole sentence both parties must say, for each refusal.
        sentence = {
            "authentication": lambda: say("tamper.failed_authentication", who=place(from_)),
            "replayed": lambda: say("tamper.replayed", who=place(from_), seq=seq),
            "out_of_order": lambda: say("tamper.out_of_order", who=place(from_), seq=seq,
                                        expected=fields["expected"]),
            "content": lambda: say("tamper.bad_content", who=place(from_),
                                   detail=fields["detail"]),
            "ok": lambda: None,
        }[expect]()
        doc = {"from": from_, "seq": seq, "box": box, "expect": expect}
        return doc if sentence is None else doc | {"message": sentence}

    def chat(box, seq, expect, **fields):
        return message(0, seq, box, expect, **fields) | {"chat": True}

    opening = {
        "secret_hex": SECRET.hex(), "session": SESSION, "receiver": 1, "parties": 3,
        "note": "Feed the messages in order to one fresh receiver (open, or open_chat "
                "for those marked chat); expect is ok (with payload), or authentication, "
                "replayed, out_of_order or content (with the whole sentence as message).",
        "messages": [
            message(0, 1, flip(first["box"]), "authentication"),
            message(0, 1, first["box"][:-1] + ("B" if first["box"][-1] == "A" else "A"),
                    "authentication"),
            message(2, 1, first["box"], "authentication"),
            # A sender that is not a number (its replays would count apart), oneself, or
            # not a party of the session: refused before anything else.
            message("0", 1, first["box"], "authentication"),
            message(1, 1, first["box"], "authentication"),
            message(3, 1, first["box"], "authentication"),
            message(0, 2, first["box"], "authentication"),
            message(0, 2, second["box"], "out_of_order", expected=1),
            message(0, 1, first["box"] + "=", "authentication"),
            message(0, 1, first["box"], "ok") | {"payload": OFFER},
            message(0, 1, first["box"], "replayed"),
            message(0, 2, sealed_raw(b'{"kind": "bye"}', 2), "content",
                    detail='unknown kind "bye"'),
            message(0, 2, sealed_raw(b"[1, 2]", 2), "content", detail="it is not a JSON object"),
            message(0, 2, sealed_raw(b"{not json", 2), "content", detail="it is not JSON"),
            message(0, 2, sealed_raw(b'{"kind": "answer", "sdp": "v=0"}', 2), "content",
                    detail="its answer has no text field 'program'"),
            message(0, 2, second["box"], "ok") | {"payload": CANDIDATE},
            # Chat boxes: their own numbers (gaps allowed, never back), their own kind.
            chat(first["box"], 1, "authentication"),
            chat(sealed_raw(compact_json(CHAT), 1, wire.chat_aad), 1, "ok") | {"payload": CHAT},
            chat(sealed_raw(compact_json(CHAT), 1, wire.chat_aad), 1, "replayed"),
            chat(sealed_raw(compact_json(CHAT), 4, wire.chat_aad), 4, "ok") | {"payload": CHAT},
            chat(sealed_raw(compact_json(CHAT), 3, wire.chat_aad), 3, "replayed"),
            chat(sealed_raw(compact_json(OFFER), 5, wire.chat_aad), 5, "content",
                 detail='unknown kind "offer"'),
            message(0, 3, sealed_raw(compact_json(CHAT), 3), "content",
                    detail='unknown kind "chat"'),
        ],
    }
    return {
        "about": "Known answers for sealed signaling (mpyc_webrtc/sealing.py, spec in "
                 "mpyc_webrtc/wire.py). HKDF-SHA256 with an empty salt; token = "
                 "base64url(HKDF(secret, token_info)), token_hash = sha256 hex of the "
                 "token's ASCII; key = HKDF(secret, key_info); box = base64url(nonce || "
                 "AES-256-GCM(key, nonce, plaintext, aad)) without padding; plaintext = "
                 "the payload as compact JSON in UTF-8. Regenerate: python "
                 "tests/test_sealing.py",
        "token_info": wire.TOKEN_INFO.decode(), "key_info": wire.KEY_INFO.decode(),
        "seal": seal,
        "open": opening,
        "descriptor": _descriptor_vector(program),
    }


def _descriptor_vector(program: str) -> dict:
    chosen = {"parties": 4, "relay_only": True, "labels": ["hospital A", "", "ünï ✓", ""],
              "program": program, "args": ["--no-log", "-L64"],
              "pins": ["did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp", "", "", ""]}
    box = seal_descriptor(SECRET, chosen, nonce=bytes(range(12)))
    flipped = flip(box)
    return {"secret_hex": SECRET.hex(), "descriptor": chosen, "nonce_hex": bytes(range(12)).hex(),
            "box": box, "refused": [flipped, box[:20], "", "!!", seal_descriptor(
                bytes(32), chosen, nonce=bytes(12))]}


def test_vector_file_is_current():
    assert VECTORS.exists(), "run: python tests/test_sealing.py"
    assert json.loads(VECTORS.read_text()) == build_vectors()


def test_vectors_seal_and_open():
    vectors = json.loads(VECTORS.read_text())
    for v in vectors["seal"]:
        assert JoinSecret.from_fragment(v["fragment"]).secret.hex() == v["secret_hex"]
        sealer = Sealer(bytes.fromhex(v["secret_hex"]), v["session"], v["to"])
        for _ in range(v["seq"] - 1):
            sealer._accepted[v["from"]] += 1
        assert sealer.open(v["from"], v["seq"], v["box"]) == v["payload"]
        data = b64url_decode(v["box"])
        assert data[:12].hex() == v["nonce_hex"]
        assert AESGCM(bytes.fromhex(v["key_hex"])).decrypt(
            data[:12], data[12:], v["aad"].encode()) == v["plaintext"].encode()
    spec = vectors["open"]
    receiver = Sealer(bytes.fromhex(spec["secret_hex"]), spec["session"], spec["receiver"],
                      spec["parties"])
    descriptor = vectors["descriptor"]
    secret = bytes.fromhex(descriptor["secret_hex"])
    assert open_descriptor(secret, descriptor["box"]) == descriptor["descriptor"]
    for box in descriptor["refused"]:
        assert open_descriptor(secret, box) is None
    for m in spec["messages"]:
        opener = receiver.open_chat if m.get("chat") else receiver.open
        if m["expect"] == "ok":
            assert opener(m["from"], m["seq"], m["box"]) == m["payload"]
        else:
            with pytest.raises(TamperError) as excinfo:
                opener(m["from"], m["seq"], m["box"])
            assert str(excinfo.value) == m["message"]


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(build_vectors(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {VECTORS}", file=sys.stderr)
