"""Fewer packets per MPyC round on aiortc's SCTP: delayed, bundled SACKs (RFC 4960, 6.2).

aiortc acknowledges every received packet at once with a packet of its own, so one
secure multiplication costs each party four UDP packets per peer (two DATA, two SACK)
where TCP needs two segments, and each packet is a DTLS record plus a system call in
pure Python. RFC 4960 section 6.2 lets a receiver delay a SACK (by at most 200 ms, and
at least every second packet must be acknowledged) and bundle it with outgoing DATA
(section 6.10: control chunks first); in MPyC's rounds the next DATA to the same peer
usually follows within a millisecond. ``DelayedSackSctpTransport`` does exactly that:

- a SACK waits at most ``SACK_DELAY`` for DATA to ride on, and goes out at once for the
  second unacknowledged packet;
- it is never delayed when there is a gap or a duplicate (section 6.2 and 7.2.4: loss
  recovery needs it at once), outside the ESTABLISHED state, or for a packet holding
  any chunk other than DATA and SACK, nor for the first one due after such a packet
  (those are rare, and their answers should not wait);
- a pending SACK rides on the next small DATA chunk sent (``BUNDLE_LIMIT``, so the
  packet stays below the IPv6 minimum MTU); with gaps or duplicates it is not bundled
  but sent by aiortc's own ``_send_sack``.

The class depends on aiortc alone (no other module of this package), so it could be
offered to aiortc as is. It relies on this much of aiortc 1.16's ``RTCSctpTransport``:
``_send_sack`` is called only once a received packet's chunks are handled (at the end of
``_handle_data``), every chunk goes out through ``_send_chunk``, and the receive state
``_send_sack`` reads (``_sack_needed``, ``_sack_misordered``, ``_sack_duplicates``,
``_last_received_tsn``, ``_advertised_rwnd``).
"""

from __future__ import annotations

import asyncio
from struct import pack

from aiortc.rtcsctptransport import Chunk, DataChunk, RTCSctpTransport, SackChunk, crc32c

#: How long a SACK may wait for DATA to bundle with (RFC 4960 allows up to 200 ms).
SACK_DELAY = 0.005
#: Bundle only with small DATA chunks, so a bundled packet stays below 1280 bytes.
BUNDLE_LIMIT = 1000

_ESTABLISHED = RTCSctpTransport.State.ESTABLISHED
_CLOSED = RTCSctpTransport.State.CLOSED


class DelayedSackSctpTransport(RTCSctpTransport):
    """aiortc's SCTP transport, with SACKs delayed and bundled with DATA (RFC 4960 6.2)."""

    #: DATA packets received since the last SACK went out.
    _sack_unacked = 0
    #: When the pending SACK must go out at the latest (event-loop time).
    _sack_due = 0.0
    _sack_timer: asyncio.TimerHandle | None = None
    #: The next SACK goes out at once (set by a chunk other than DATA and SACK).
    _sack_at_once = False

    async def _receive_chunk(self, chunk: Chunk) -> None:
        if not isinstance(chunk, (DataChunk, SackChunk)):
            self._sack_at_once = True
        await super()._receive_chunk(chunk)

    async def _send_sack(self) -> None:
        at_once, self._sack_at_once = self._sack_at_once, False
        if not at_once and self._sack_may_wait():
            return
        self._sack_unacked = 0
        await super()._send_sack()

    async def _send_chunk(self, chunk: Chunk) -> None:
        packet = self._bundle_sack(chunk)
        if packet is None:
            await super()._send_chunk(chunk)
        else:
            await self.transport._send_data(packet)

    def _sack_may_wait(self) -> bool:
        """Whether the SACK a received packet needs may wait for DATA to ride on; if so,
        it goes out ``SACK_DELAY`` after it became needed at the latest."""
        if (
            self._association_state is not _ESTABLISHED
            or self._sack_duplicates
            or self._sack_misordered
        ):
            return False
        unacked = self._sack_unacked + 1
        if unacked >= 2:  # acknowledge at least every second packet
            return False
        self._sack_unacked = unacked
        loop = self._loop
        self._sack_due = due = loop.time() + SACK_DELAY
        # One timer at a time: it is not cancelled when the SACK goes out early (nearly
        # always), but finds nothing to do then, or a later SACK to wait for.
        if self._sack_timer is None:
            self._sack_timer = loop.call_at(due, self._sack_timer_fired)
        return True

    def _bundle_sack(self, chunk: Chunk) -> bytes | None:
        """The packet carrying ``chunk`` with the pending SACK bundled, if a SACK is
        pending, has no gaps or duplicates to report and ``chunk`` is small DATA (the
        SACK then counts as sent); else None."""
        if not (
            self._sack_needed
            and isinstance(chunk, DataChunk)
            and len(chunk.user_data) <= BUNDLE_LIMIT
            and not self._sack_misordered
            and not self._sack_duplicates
        ):
            return None
        self._sack_unacked = 0
        self._sack_needed = False
        header = pack("!HHL", self._local_port, self._remote_port,
                      self._remote_verification_tag)
        # Control chunks before DATA (RFC 4960 6.10).
        body = self._sack_chunk_without_gaps() + bytes(chunk)
        return header + pack("<L", crc32c(header + b"\x00\x00\x00\x00" + body)) + body

    def _sack_chunk_without_gaps(self) -> bytes:
        """What ``bytes(SackChunk)`` is for aiortc's SACK when there are no gap reports and
        no duplicates (16 bytes)."""
        return pack("!BBHLLHH", SackChunk.type, 0, 16, self._last_received_tsn,
                    max(0, self._advertised_rwnd), 0, 0)

    def _sack_timer_fired(self) -> None:
        self._sack_timer = None
        if not self._sack_needed or self._association_state is _CLOSED:
            return  # the SACK it was for went out with DATA
        if self._sack_due > self._loop.time() + 0.0005:  # it was for an earlier SACK
            self._sack_timer = self._loop.call_at(self._sack_due, self._sack_timer_fired)
            return
        asyncio.ensure_future(self._send_delayed_sack())

    async def _send_delayed_sack(self) -> None:
        if not self._sack_needed or self._association_state is _CLOSED:
            return  # it went out meanwhile
        self._sack_unacked = 0
        try:
            await super()._send_sack()  # its time is up: no more deciding
        except ConnectionError:
            pass  # the link is gone: there is nobody left to acknowledge
