"""Cheaper DTLS records in aiortc: no empty output check per packet, no exceptions as
control flow, no buffer allocations.

After the handshake, aiortc's ``RTCDtlsTransport`` does this for every datagram it
receives: pyOpenSSL's ``bio_write`` and ``recv`` (which allocates a 1500-byte buffer
and runs its whole error check even when the read succeeded), then ``_write_ssl`` to
flush whatever DTLS wants to send in reply: ``bio_read`` allocates another buffer,
finds the memory BIO empty and raises ``WantReadError``, which ``_write_ssl`` catches.
For application data there is never anything to send back, so every received packet
pays for one raised and caught exception plus two allocations. Sending goes through
pyOpenSSL's ``send`` and the same ``bio_read``.

With this module the transport asks the memory BIO how many bytes it holds
(``BIO_get_mem_data``) and flushes only when it holds some, and reads and writes
records through the OpenSSL binding with two buffers allocated once per transport.
Only the result-is-an-error paths still go through pyOpenSSL, so errors, alerts and
close_notify are reported exactly as before. Nothing changes before the handshake is
done (aiortc's own code runs it, with its retransmission timers), nor for SRTP.

It also gives the transport two synchronous helpers that ``dispatch_tuning`` and
``sctp_fastpath`` use: ``_mw_decrypt(record)`` and ``_mw_encrypt(data)``.

It patches private methods of ``aiortc.rtcdtlstransport.RTCDtlsTransport`` and uses
pyOpenSSL's private connection attributes, so it only applies to the aiortc version it
was written against.
"""

from __future__ import annotations

import logging

import aiortc
import pylibsrtp
from aiortc import clock
from aiortc import rtcdtlstransport as dtls
from aiortc.rtp import is_rtcp
from OpenSSL import SSL
from OpenSSL._util import ffi, lib

log = logging.getLogger(__name__)

SUPPORTED_AIORTC = "1.16.0"
#: As aiortc: one datagram's worth (records are never larger than the path MTU).
RECORD_BUFFER = 1500


class _Buffers:
    __slots__ = ("plain", "record", "pointer")

    def __init__(self) -> None:
        self.plain = ffi.new("char[]", RECORD_BUFFER)
        self.record = ffi.new("char[]", RECORD_BUFFER)
        self.pointer = ffi.new("char **")


def _buffers(transport: dtls.RTCDtlsTransport) -> _Buffers:
    buffers = transport._mw_buffers = _Buffers()
    return buffers


def pending_output(transport: dtls.RTCDtlsTransport) -> int:
    """How many bytes DTLS has written to its outgoing memory BIO and not yet sent."""
    buffers = transport._mw_buffers or _buffers(transport)
    return lib.BIO_get_mem_data(transport._ssl._from_ssl, buffers.pointer)


def read_output(transport: dtls.RTCDtlsTransport) -> bytes:
    """What ``_write_ssl`` would send (one read of up to 1500 bytes), or b"" if nothing."""
    conn = transport._ssl
    buffers = transport._mw_buffers or _buffers(transport)
    if lib.BIO_get_mem_data(conn._from_ssl, buffers.pointer) <= 0:
        return b""
    n = lib.BIO_read(conn._from_ssl, buffers.record, RECORD_BUFFER)
    if n <= 0:
        return b""
    return ffi.buffer(buffers.record, n)[:]


def decrypt(transport: dtls.RTCDtlsTransport, record: bytes) -> bytes | None:
    """As aiortc's ``bio_write`` + ``recv(1500)``: the plaintext (b"" if none), or None
    once the peer closed DTLS (close_notify)."""
    conn = transport._ssl
    n = lib.BIO_write(conn._into_ssl, record, len(record))
    if n <= 0:
        conn._handle_bio_errors(conn._into_ssl, n)  # raises, as pyOpenSSL's bio_write
    buffers = transport._mw_buffers or _buffers(transport)
    n = lib.SSL_read(conn._ssl, buffers.plain, RECORD_BUFFER)
    if n > 0:
        return ffi.buffer(buffers.plain, n)[:]
    try:
        conn._raise_ssl_error(conn._ssl, n)  # pyOpenSSL's own error mapping
    except SSL.ZeroReturnError:
        return None
    except SSL.Error:
        return b""
    return b""


def encrypt(transport: dtls.RTCDtlsTransport, data: bytes) -> bytes:
    """As aiortc's ``_ssl.send(data)`` and the read in ``_write_ssl``: the record(s) to
    send."""
    conn = transport._ssl
    n = lib.SSL_write(conn._ssl, data, len(data))
    if n <= 0:
        conn._raise_ssl_error(conn._ssl, n)  # raises, as pyOpenSSL's send
    return read_output(transport)


async def after_decrypt(transport: dtls.RTCDtlsTransport, data: bytes | None) -> None:
    """What aiortc's ``_recv_next`` does with a decrypted record (``decrypt``'s result)."""
    if pending_output(transport):  # alerts, close_notify: never for application data
        await transport._write_ssl()
    if data is None:
        transport._RTCDtlsTransport__log_debug("- DTLS shutdown by remote party")
        raise ConnectionError
    elif data and transport._data_receiver:
        await transport._data_receiver._handle_data(data)


async def handle_srtp(transport: dtls.RTCDtlsTransport, data: bytes) -> None:
    """SRTP / SRTCP, as aiortc's ``_recv_next`` (unused by data channels, kept intact)."""
    arrival_time_ms = clock.current_ms()
    try:
        if is_rtcp(data):
            data = transport._rx_srtp.unprotect_rtcp(data)
            await transport._handle_rtcp_data(data)
        else:
            data = transport._rx_srtp.unprotect(data)
            await transport._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)
    except pylibsrtp.Error as exc:
        transport._RTCDtlsTransport__log_debug("x SRTP unprotect failed: %s", exc)


def install() -> bool:
    """Patch aiortc once; returns whether the tuning is active."""
    cls = dtls.RTCDtlsTransport
    if getattr(cls, "_mpyc_webrtc_dtls_tuned", False):
        return True
    if aiortc.__version__ != SUPPORTED_AIORTC:
        log.warning("DTLS tuning is written for aiortc %s, not %s: left off",
                    SUPPORTED_AIORTC, aiortc.__version__)
        return False

    cls._mw_buffers = None  # per transport, made on first use
    original_recv_next = cls._recv_next

    async def _recv_next(self: dtls.RTCDtlsTransport) -> None:
        if not self._RTCDtlsTransport__handshake_done:
            # The handshake and its retransmission timers: aiortc's own code.
            await original_recv_next(self)
            return
        data = await self.transport._recv()
        self._RTCDtlsTransport__rx_bytes += len(data)
        self._RTCDtlsTransport__rx_packets += 1
        first_byte = data[0]
        if 19 < first_byte < 64:
            await after_decrypt(self, decrypt(self, data))
        elif 127 < first_byte < 192 and self._rx_srtp:
            await handle_srtp(self, data)

    async def _send_data(self: dtls.RTCDtlsTransport, data: bytes) -> None:
        if self._state != dtls.State.CONNECTED:
            raise ConnectionError("Cannot send encrypted data, not connected")
        record = encrypt(self, data)
        if record:
            await self.transport._send(record)
            self._RTCDtlsTransport__tx_bytes += len(record)
            self._RTCDtlsTransport__tx_packets += 1

    async def _write_ssl(self: dtls.RTCDtlsTransport) -> None:
        record = read_output(self)
        if record:
            await self.transport._send(record)
            self._RTCDtlsTransport__tx_bytes += len(record)
            self._RTCDtlsTransport__tx_packets += 1

    cls._recv_next = _recv_next
    cls._send_data = _send_data
    cls._write_ssl = _write_ssl
    cls._mpyc_webrtc_dtls_tuned = True
    return True
