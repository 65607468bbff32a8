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
_ESTABLISHED = sctp.RTCSctpTransport.State.ESTABLISHED
_CLOSED = sctp.RTCSctpTransport.State.CLOSED
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

    cls._mw_unacked = 0  # DATA packets received since the last SACK went out
    cls._mw_sack_due = 0.0  # when the pending SACK must go out at the latest
    cls._mw_sack_timer = None
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
        await sack_after_packet(
            self, all(isinstance(c, (sctp.DataChunk, sctp.SackChunk)) for c in chunks))

    async def _send_sack(self) -> None:
        _sack_sent(self)
        await original_send_sack(self)

    async def _send_chunk(self, chunk: sctp.Chunk) -> None:
        packet = bundled_packet(self, chunk)
        if packet is not None:
            await self._RTCSctpTransport__transport._send_data(packet)
            return
        await original_send_chunk(self, chunk)

    cls._handle_data = _handle_data
    cls._send_sack = _send_sack
    cls._send_chunk = _send_chunk
    cls._mpyc_webrtc_tuned = True
    return True


async def sack_after_packet(transport: sctp.RTCSctpTransport, only_data_and_sack: bool) -> None:
    """Once a packet's chunks are handled: send the SACK it needs now, or let it wait
    (``only_data_and_sack``: the packet had no other chunks)."""
    if transport._sack_needed and not delay_sack(transport, only_data_and_sack):
        await transport._send_sack()


def delay_sack(transport: sctp.RTCSctpTransport, only_data_and_sack: bool) -> bool:
    """Whether the SACK needed after a packet may wait for DATA to ride on (then it is
    sent ``SACK_DELAY`` after it became needed at the latest)."""
    if (
        only_data_and_sack
        and transport._association_state is _ESTABLISHED
        and not transport._sack_duplicates
        and not transport._sack_misordered
    ):
        unacked = transport._mw_unacked + 1
        if unacked < 2:
            transport._mw_unacked = unacked
            loop = transport._loop
            transport._mw_sack_due = due = loop.time() + SACK_DELAY
            # One timer at a time: it is not cancelled when the SACK goes out early
            # (nearly always), but finds nothing to do then, or a later SACK to wait for.
            if transport._mw_sack_timer is None:
                transport._mw_sack_timer = loop.call_at(due, _sack_timer_fired, transport)
            return True
    return False


def bundled_packet(transport: sctp.RTCSctpTransport, chunk: sctp.Chunk) -> bytes | None:
    """The packet carrying ``chunk`` with the pending SACK bundled, if one is pending and
    ``chunk`` is small DATA (the SACK then counts as sent); else None."""
    if not (
        transport._sack_needed
        and isinstance(chunk, sctp.DataChunk)
        and len(chunk.user_data) <= BUNDLE_LIMIT
    ):
        return None
    sack = _sack_bytes(transport)
    _sack_sent(transport)
    transport._sack_duplicates.clear()
    transport._sack_needed = False
    header = pack("!HHL", transport._local_port, transport._remote_port,
                  transport._remote_verification_tag)
    body = sack + bytes(chunk)  # control chunks before DATA (RFC 4960 6.10)
    checksum = sctp.crc32c(header + b"\x00\x00\x00\x00" + body)
    return header + pack("<L", checksum) + body


def sack_packet(transport: sctp.RTCSctpTransport) -> bytes:
    """The packet aiortc's ``_send_sack`` sends (a SACK chunk alone)."""
    header = pack("!HHL", transport._local_port, transport._remote_port,
                  transport._remote_verification_tag)
    body = _sack_bytes(transport)
    return header + pack("<L", sctp.crc32c(header + b"\x00\x00\x00\x00" + body)) + body


def _sack_bytes(transport: sctp.RTCSctpTransport) -> bytes:
    if transport._sack_misordered or transport._sack_duplicates:
        return bytes(_build_sack(transport))
    # What _build_sack and SackChunk.__bytes__ make of it when there are no gaps.
    return pack("!BBHLLHH", sctp.SackChunk.type, 0, 16, transport._last_received_tsn,
                max(0, transport._advertised_rwnd), 0, 0)


def _sack_timer_fired(transport: sctp.RTCSctpTransport) -> None:
    transport._mw_sack_timer = None
    if not transport._sack_needed or transport._association_state is _CLOSED:
        return  # the SACK it was for went out with DATA
    if transport._mw_sack_due > transport._loop.time() + 0.0005:  # for an earlier SACK
        transport._mw_sack_timer = transport._loop.call_at(
            transport._mw_sack_due, _sack_timer_fired, transport)
        return
    asyncio.ensure_future(transport._send_sack())


def _sack_sent(transport: sctp.RTCSctpTransport) -> None:
    transport._mw_unacked = 0


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
