"""dtls_recovery: a DTLS server's lost last flight is sent again, so the client finishes
without waiting for its own (doubling) retransmission timer; the copies harm nobody and
stop once the SCTP association above is up.

Two real aiortc DTLS transports in one process, on an in-memory wire that records what
each side sent and drops exactly the datagrams a test chooses (no sockets, no ICE).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport, State
from aiortc.rtcsctptransport import RTCSctpTransport

from mpyc_webrtc.native import patches
from mpyc_webrtc.native.patches import dtls_recovery
from testbed.sctp_link import sctp_pair

#: The first byte of a DTLS record carrying ChangeCipherSpec, the start of a last flight.
CHANGE_CIPHER_SPEC = 20
ALERT = 21
APPLICATION_DATA = 23
#: One way across the wire.
DELAY = 0.002

EVERY = [patch.name for patch in patches.PATCHES]
COMBINATIONS = {"alone": ["dtls_recovery"], "with every patch": EVERY}


def dtls_class(names: list[str]) -> type:
    return patches.compose("RTCDtlsTransport", names)


class Wire:
    """Both directions between the DTLS client ``a`` and server ``b``."""

    def __init__(self, drop: Callable[[str, bytes], bool] = lambda side, data: False):
        self.drop = drop
        self.sent: dict[str, list[bytes]] = {"a": [], "b": []}
        self.queues: dict[str, asyncio.Queue[bytes | None]] = {
            "a": asyncio.Queue(), "b": asyncio.Queue()}


class End:
    """What ``RTCDtlsTransport`` uses of an ICE transport, over the ``Wire``."""

    def __init__(self, wire: Wire, side: str, role: str):
        self.wire, self.side, self.role = wire, side, role
        self.other = "b" if side == "a" else "a"

    async def _send(self, data: bytes) -> None:
        self.wire.sent[self.side].append(data)
        if not self.wire.drop(self.side, data):
            asyncio.get_running_loop().call_later(
                DELAY, self.wire.queues[self.other].put_nowait, data)

    async def _recv(self) -> bytes:
        data = await self.wire.queues[self.side].get()
        if data is None:
            raise ConnectionError
        return data

    async def stop(self) -> None:
        self.wire.queues[self.side].put_nowait(None)


class Inbox:
    """A DTLS transport's data receiver: what arrived as application data."""

    def __init__(self) -> None:
        self.got: list[bytes] = []

    async def _handle_data(self, data: bytes) -> None:
        self.got.append(data)


async def handshake(cls: type, wire: Wire) -> tuple[RTCDtlsTransport, RTCDtlsTransport]:
    a = cls(End(wire, "a", "controlled"), [RTCCertificate.generateCertificate()])
    b = cls(End(wire, "b", "controlling"), [RTCCertificate.generateCertificate()])
    await asyncio.wait_for(asyncio.gather(b.start(a.getLocalParameters()),
                                          a.start(b.getLocalParameters())), 30)
    assert (a._role, b._role) == ("client", "server")
    assert a.state == b.state == "connected"
    return a, b


def handshake_sent(wire: Wire, side: str) -> list[bytes]:
    """What ``side`` sent of the handshake (not the alert that closes it)."""
    return [data for data in wire.sent[side] if data[0] not in (ALERT, APPLICATION_DATA)]


async def handshake_sends_without_loss(cls: type) -> int:
    """How many handshake datagrams the client sends when nothing is lost."""
    clean = Wire()
    a, b = await handshake(cls, clean)
    await a.stop()
    await b.stop()
    return len(handshake_sent(clean, "a"))


def first_last_flight(side: str, data: bytes, dropped: list[bytes]) -> bool:
    """Drop the server's last flight, the first time it goes out."""
    if side == "b" and data[0] == CHANGE_CIPHER_SPEC and not dropped:
        dropped.append(data)
        return True
    return False


@pytest.mark.parametrize("combination", COMBINATIONS)
async def test_a_lost_last_flight_is_sent_again_before_the_client_asks(combination):
    cls = dtls_class(COMBINATIONS[combination])
    clean = await handshake_sends_without_loss(cls)
    dropped: list[bytes] = []
    lossy = Wire(lambda side, data: first_last_flight(side, data, dropped))
    a, b = await handshake(cls, lossy)
    try:
        assert dropped, "the server sent no ChangeCipherSpec"
        # The client finished with the server's copy: it never sent its own last flight
        # again (OpenSSL's timer would have, after 1 s, and the server then answered).
        assert len(handshake_sent(lossy, "a")) == clean
        assert b._mw_resent >= 1
        assert dropped[0] in lossy.sent["b"][-b._mw_resent:]  # the very same datagram
    finally:
        await a.stop()
        await b.stop()


async def test_without_the_patch_the_client_waits_for_its_own_timer():
    dropped: list[bytes] = []
    wire = Wire(lambda side, data: first_last_flight(side, data, dropped))
    a, b = await handshake(RTCDtlsTransport, wire)
    try:
        assert len(handshake_sent(wire, "a")) > await handshake_sends_without_loss(
            RTCDtlsTransport)
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.parametrize("combination", COMBINATIONS)
async def test_copies_reaching_a_finished_client_are_dropped_and_data_flows(
        combination, monkeypatch):
    monkeypatch.setattr(dtls_recovery, "RESENDS", (0.005,) * 6)
    wire = Wire()
    a, b = await handshake(dtls_class(COMBINATIONS[combination]), wire)
    inbox_a, inbox_b = Inbox(), Inbox()
    a._register_data_receiver(inbox_a)
    b._register_data_receiver(inbox_b)
    try:
        # No SCTP above to show that the client is done: every copy goes out.
        for _ in range(1000):
            if b._mw_resent == 6 and b._mw_resend is None:
                break
            await asyncio.sleep(0.005)
        assert b._mw_resent == 6
        await asyncio.sleep(10 * DELAY)  # they all arrived
        await a._send_data(b"from the client")
        await b._send_data(b"from the server")
        for _ in range(1000):
            if inbox_a.got and inbox_b.got:
                break
            await asyncio.sleep(0.005)
        assert inbox_a.got == [b"from the server"]
        assert inbox_b.got == [b"from the client"]
        assert a._state is State.CONNECTED and b._state is State.CONNECTED
        assert not [d for side in "ab" for d in wire.sent[side] if d[0] == ALERT]
    finally:
        await a.stop()
        await b.stop()


async def test_the_copies_stop_once_the_association_above_is_up(monkeypatch):
    monkeypatch.setattr(dtls_recovery, "RESENDS", (0.05, 0.1, 0.2, 0.4, 0.8, 1.6))
    dtls = dtls_class(EVERY)
    sctp = patches.compose("RTCSctpTransport", EVERY)
    async with sctp_pair(sctp, dtls_class=dtls) as (a, b, _):
        server = b.sctp.transport
        assert server._role == "server"
        assert b.sctp._association_state is RTCSctpTransport.State.ESTABLISHED
        for _ in range(1000):
            if server._mw_resend is None:
                break
            await asyncio.sleep(0.01)
        assert server._mw_resend is None and server._mw_flight is None
        assert server._mw_resent < len(dtls_recovery.RESENDS)
