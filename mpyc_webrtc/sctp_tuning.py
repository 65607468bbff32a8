"""Fewer packets per MPyC round on aiortc's SCTP: delayed, bundled SACKs.

aiortc acknowledges every received packet at once with a packet of its own, so one
secure multiplication costs each party four UDP packets per peer (two DATA, two
SACK) where TCP needs two segments, and each packet is a DTLS record plus a system
call in pure Python. RFC 4960 (6.2) lets a receiver delay a SACK (up to 200 ms, at
least every second packet) and bundle it with outgoing DATA; in MPyC's rounds the
next DATA to the same peer usually follows within a millisecond. This module
teaches aiortc exactly that: a SACK waits at most ``SACK_DELAY`` for DATA to ride
on, is sent at once on the second unacknowledged packet, and is never delayed when
there is a gap or a duplicate (loss recovery needs it immediately).

It patches private methods of ``aiortc.rtcsctptransport.RTCSctpTransport`` and so
only applies to the aiortc version it was written against.
"""

from __future__ import annotations

import asyncio
import logging
from struct import pack

import aiortc
from aiortc import rtcsctptransport as sctp

log = logging.getLogger(__name__)

SUPPORTED_AIORTC = "1.16.0"
#: How long a SACK may wait for DATA to bundle with.
SACK_DELAY = 0.005
#: Bundle only with small DATA chunks, so a bundled packet stays below 1280 bytes.
BUNDLE_LIMIT = 1000


def install() -> bool:
    """Patch aiortc once; returns whether the tuning is active."""
    cls = sctp.RTCSctpTransport
    if getattr(cls, "_mpyc_webrtc_tuned", False):
        return True
    if aiortc.__version__ != SUPPORTED_AIORTC:
        log.warning("SCTP tuning is written for aiortc %s, not %s: left off",
                    SUPPORTED_AIORTC, aiortc.__version__)
        return False

    original_send_sack = cls._send_sack
    original_send_chunk = cls._send_chunk

    async def _handle_data(self, data: bytes) -> None:
        # As aiortc's _handle_data, except for when the SACK goes out.
        try:
            _, _, verification_tag, chunks = sctp.parse_packet(data)
        except ValueError:
            return
        if any(isinstance(x, sctp.InitChunk) for x in chunks):
            assert len(chunks) == 1
            expected_tag = 0
        else:
            expected_tag = self._local_verification_tag
        if verification_tag != expected_tag:
            return
        for chunk in chunks:
            await self._receive_chunk(chunk)
        if not self._sack_needed:
            return
        if (
            self._association_state == cls.State.ESTABLISHED
            and not self._sack_duplicates
            and not self._sack_misordered
            and all(isinstance(c, (sctp.DataChunk, sctp.SackChunk)) for c in chunks)
        ):
            unacked = getattr(self, "_mw_unacked", 0) + 1
            if unacked < 2:
                self._mw_unacked = unacked
                if getattr(self, "_mw_sack_timer", None) is None:
                    self._mw_sack_timer = asyncio.get_running_loop().call_later(
                        SACK_DELAY, _sack_timer_fired, self)
                return
        await self._send_sack()

    async def _send_sack(self) -> None:
        _sack_sent(self)
        await original_send_sack(self)

    async def _send_chunk(self, chunk: sctp.Chunk) -> None:
        if (
            self._sack_needed
            and isinstance(chunk, sctp.DataChunk)
            and len(chunk.user_data) <= BUNDLE_LIMIT
        ):
            sack = _build_sack(self)
            _sack_sent(self)
            self._sack_duplicates.clear()
            self._sack_needed = False
            header = pack("!HHL", self._local_port, self._remote_port,
                          self._remote_verification_tag)
            body = bytes(sack) + bytes(chunk)  # control chunks before DATA (RFC 4960 6.10)
            checksum = sctp.crc32c(header + b"\x00\x00\x00\x00" + body)
            await self._RTCSctpTransport__transport._send_data(
                header + pack("<L", checksum) + body)
            return
        await original_send_chunk(self, chunk)

    cls._handle_data = _handle_data
    cls._send_sack = _send_sack
    cls._send_chunk = _send_chunk
    cls._mpyc_webrtc_tuned = True
    return True


def _sack_timer_fired(transport: sctp.RTCSctpTransport) -> None:
    transport._mw_sack_timer = None
    if transport._sack_needed and transport._association_state != \
            sctp.RTCSctpTransport.State.CLOSED:
        asyncio.ensure_future(transport._send_sack())


def _sack_sent(transport: sctp.RTCSctpTransport) -> None:
    transport._mw_unacked = 0
    timer = getattr(transport, "_mw_sack_timer", None)
    if timer is not None:
        timer.cancel()
        transport._mw_sack_timer = None


def _build_sack(transport: sctp.RTCSctpTransport) -> sctp.SackChunk:
    # As aiortc's _send_sack builds it.
    gaps: list[list[int]] = []
    gap_next = None
    for tsn in sorted(transport._sack_misordered):
        pos = (tsn - transport._last_received_tsn) % sctp.SCTP_TSN_MODULO
        if tsn == gap_next:
            gaps[-1][1] = pos
        else:
            gaps.append([pos, pos])
        gap_next = sctp.tsn_plus_one(tsn)
    sack = sctp.SackChunk()
    sack.cumulative_tsn = transport._last_received_tsn
    sack.advertised_rwnd = max(0, transport._advertised_rwnd)
    sack.duplicates = transport._sack_duplicates[:]
    sack.gaps = [tuple(x) for x in gaps]
    return sack
