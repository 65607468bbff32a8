"""The DTLS server's last handshake flight, sent again until the peer shows it arrived.

In a full DTLS 1.2 handshake the server sends the last flight (ChangeCipherSpec and
Finished) and is done; the client is done only once that flight arrives. If it is lost,
RFC 6347 (4.2.4) leaves the repair to the client: its timer sends its own last flight
again, and the server answers that with its last flight. OpenSSL's timer starts at 1 s
and doubles for every retransmission of the same flight, so a client that already had to
repeat that flight once or twice waits 4, 8, then 16 s before it asks again, and an
answer lost once more costs the next doubling. Meanwhile the server's side of the link is
"connected": its SCTP INITs reach a client that cannot decrypt them yet.

On lossy links this left a link connected on one side and connecting on the other for
longer than a party waits for its links (measured in the simulated internet at 5 %
loss per access link: about one session in a hundred; at 15 %, one in three), and the
whole session failed to start.

``LastFlightDtlsTransport`` keeps the datagram it wrote last during the handshake. Once
a server's handshake is done, that is its last flight, and it sends it again after
``RESENDS`` (0.25 s, then doubling), until the peer shows that the flight arrived: the
SCTP association above is established, which takes the peer's decrypted packets. A copy
that reaches a client already done is a record it has seen, and DTLS's replay check
drops it (RFC 6347 4.1.2.6); a client still waiting finishes with it, as with the
original. The client's side and every other path are aiortc's own.

It uses aiortc 1.16's ``RTCDtlsTransport`` internals (``_write_ssl``, its counters and
``_data_receiver``), hence the version it is written for (``patches.PATCHES``).
"""

from __future__ import annotations

import asyncio
import logging

from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcsctptransport import RTCSctpTransport
from OpenSSL import SSL

log = logging.getLogger(__name__)

#: Seconds between the handshake's end and the first copy, then between copies: before the
#: client's own first retransmission (1 s), and doubling as its timer does, to about 16 s.
RESENDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)

_ESTABLISHED = RTCSctpTransport.State.ESTABLISHED


class LastFlightDtlsTransport(RTCDtlsTransport):
    """aiortc's DTLS transport, whose server sends its last flight again (module
    docstring)."""

    #: The datagram written last while the handshake ran.
    _mw_flight: bytes | None = None
    _mw_resend: asyncio.TimerHandle | None = None
    #: Copies sent so far (for tests).
    _mw_resent = 0

    async def _write_ssl(self) -> None:
        if self.encrypted:
            await super()._write_ssl()
            return
        # aiortc's own steps (it has no seam for the bytes), keeping the datagram.
        try:
            data = self._ssl.bio_read(1500)
        except SSL.Error:
            data = b""
        if data:
            self._mw_flight = data
            await self._mw_transmit(data)

    async def _mw_transmit(self, data: bytes) -> None:
        """Send a datagram, counted as aiortc counts what it sends."""
        await self.transport._send(data)
        self._RTCDtlsTransport__tx_bytes += len(data)
        self._RTCDtlsTransport__tx_packets += 1

    def _set_state(self, state: State) -> None:
        super()._set_state(state)
        if state is State.CONNECTED and self._role == "server" and self._mw_flight:
            self._mw_schedule(0)
        else:
            self._mw_cancel()

    async def stop(self) -> None:
        self._mw_cancel()
        await super().stop()

    def _mw_schedule(self, done: int) -> None:
        if done < len(RESENDS):
            loop = asyncio.get_running_loop()
            self._mw_resend = loop.call_later(RESENDS[done], self._mw_send_again, done + 1)
        else:
            self._mw_cancel()

    def _mw_cancel(self) -> None:
        if self._mw_resend is not None:
            self._mw_resend.cancel()
            self._mw_resend = None
        self._mw_flight = None

    def _mw_send_again(self, done: int) -> None:
        self._mw_resend = None
        flight = self._mw_flight
        receiver = self._data_receiver
        if flight is None or self._state is not State.CONNECTED or (
                getattr(receiver, "_association_state", None) is _ESTABLISHED):
            self._mw_flight = None
            return
        self._mw_resent += 1
        asyncio.ensure_future(self._mw_send(flight))
        self._mw_schedule(done)

    async def _mw_send(self, flight: bytes) -> None:
        try:
            await self._mw_transmit(flight)
        except ConnectionError:
            return  # closing: nothing more to repair
        log.debug("DTLS: sent the handshake's last flight again (%d bytes)", len(flight))
