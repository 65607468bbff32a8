"""Cheaper DTLS records in aiortc: no exception as control flow after each packet, and
synchronous record helpers for the short paths.

After the handshake, aiortc's ``RTCDtlsTransport`` calls ``_write_ssl`` after every
datagram it receives, to flush whatever DTLS wants to send in reply: pyOpenSSL's
``bio_read`` allocates a buffer, finds the memory BIO empty and raises ``WantReadError``,
which ``_write_ssl`` catches. For application data there is never anything to send back,
so every received packet pays for a raised and caught exception and an allocation.
``CheaperRecordsDtlsTransport._write_ssl`` first asks the memory BIO how many bytes it
holds (``BIO_get_mem_data``) and leaves the rest to aiortc's ``_write_ssl`` only when it
holds some.

It also gives the transport three synchronous helpers that ``dispatch_tuning`` and
``sctp_fastpath`` use instead of pyOpenSSL's ``recv``/``send`` (which allocate a buffer
per call and run their whole error check even when the call succeeded):
``_mw_decrypt(record)``, ``_mw_encrypt(data)`` and ``_mw_output_pending()``. They read
and write records through the OpenSSL binding with two buffers allocated once per
transport; only the result-is-an-error paths go through pyOpenSSL, so errors, alerts
and close_notify are reported exactly as before. Nothing changes before the handshake
is done (aiortc's own code runs it), nor for SRTP.

It uses pyOpenSSL's private connection attributes (``_ssl``, ``_into_ssl``,
``_from_ssl``, ``_raise_ssl_error``, ``_handle_bio_errors``) and its ``OpenSSL._util``
binding, hence the pyOpenSSL version it is written for (see ``patches.PATCHES``).
"""

from __future__ import annotations

from aiortc.rtcdtlstransport import RTCDtlsTransport
from OpenSSL import SSL
from OpenSSL._util import ffi, lib

#: As aiortc: one datagram's worth (records are never larger than the path MTU).
RECORD_BUFFER = 1500


class _Buffers:
    __slots__ = ("plain", "record", "pointer")

    def __init__(self) -> None:
        self.plain = ffi.new("char[]", RECORD_BUFFER)
        self.record = ffi.new("char[]", RECORD_BUFFER)
        self.pointer = ffi.new("char **")


class CheaperRecordsDtlsTransport(RTCDtlsTransport):
    """aiortc's DTLS transport, flushing its output only when there is some."""

    _mw_buffers: _Buffers | None = None  # per transport, made on first use

    async def _write_ssl(self) -> None:
        if self._mw_output_pending():
            await super()._write_ssl()

    def _mw_output_pending(self) -> bool:
        """Whether DTLS wrote anything to its outgoing memory BIO that is not yet sent."""
        buffers = self._mw_buffers or self._mw_new_buffers()
        return lib.BIO_get_mem_data(self._ssl._from_ssl, buffers.pointer) > 0

    def _mw_decrypt(self, record: bytes) -> bytes | None:
        """As aiortc's ``bio_write`` + ``recv(1500)`` in ``_recv_next``: the plaintext (b""
        if none), or None once the peer closed DTLS (close_notify)."""
        conn = self._ssl
        n = lib.BIO_write(conn._into_ssl, record, len(record))
        if n <= 0:
            conn._handle_bio_errors(conn._into_ssl, n)  # raises, as pyOpenSSL's bio_write
        buffers = self._mw_buffers or self._mw_new_buffers()
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

    def _mw_encrypt(self, data: bytes) -> bytes:
        """As aiortc's ``_ssl.send(data)`` and the read in ``_write_ssl``: the record to
        send (b"" if DTLS made none)."""
        conn = self._ssl
        n = lib.SSL_write(conn._ssl, data, len(data))
        if n <= 0:
            conn._raise_ssl_error(conn._ssl, n)  # raises, as pyOpenSSL's send
        buffers = self._mw_buffers or self._mw_new_buffers()
        if lib.BIO_get_mem_data(conn._from_ssl, buffers.pointer) <= 0:
            return b""
        n = lib.BIO_read(conn._from_ssl, buffers.record, RECORD_BUFFER)
        return ffi.buffer(buffers.record, n)[:] if n > 0 else b""

    def _mw_new_buffers(self) -> _Buffers:
        buffers = self._mw_buffers = _Buffers()
        return buffers
