"""Fewer event-loop hops per packet in aiortc/aioice: handle a datagram where it
arrives, and send a data channel message where it is sent.

aiortc moves every packet through the event loop more often than it needs to:

- Receiving: aioice's UDP protocol first tries to parse each datagram as STUN (a
  raised and caught ``ValueError`` for every DTLS packet), then puts it in an
  ``asyncio.Queue``; the DTLS transport's reader task wakes up in a later loop
  iteration, takes it out, and only then decrypts it and hands it to SCTP.
- Sending: ``RTCDataChannel.send`` queues the message and schedules a new task
  (``ensure_future(_data_channel_flush())``) per message, which runs in a later
  iteration and sends it.

For latency-bound protocols like MPyC's rounds (a few small messages, then wait for
the answers) that is a task creation, a queue hand-over and extra loop iterations per
packet, all in Python. With this module:

- aioice tells DTLS from STUN by the first byte, as RFC 7983 does (STUN: 0-3, DTLS:
  20-63), before trying to parse STUN;
- once the DTLS transport is connected, aioice hands each datagram straight to it
  from its ``datagram_received`` callback: it is decrypted and given to SCTP (and on
  to the data channel's ``message`` listeners) right there;
- ``RTCDataChannel.send`` runs aiortc's flush right away instead of in a new task.

aiortc's coroutines are still used and still run in the same order; they are only
started at once ("eagerly", like Python 3.12's eager tasks) instead of being scheduled.
None of them normally waits for anything on these paths (aioice's UDP send does not
block). Should one wait after all (e.g. a TURN channel being bound), it is finished
by a task, and later datagrams wait in aioice's queue for the reader task, which
handles them only after it: the order of packets is the order they arrived in, as
before. Errors end the DTLS transport exactly as they did in its reader task.

It patches private methods of aiortc's ``RTCDtlsTransport`` and ``RTCSctpTransport``
and of aioice's ``Connection`` and ``StunProtocol``, so it only applies to the
versions it was written against.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import Any

import aioice
import aiortc
from aioice import ice
from aiortc import rtcdtlstransport as dtls
from aiortc import rtcsctptransport as sctp
from OpenSSL import SSL

from . import dtls_tuning

log = logging.getLogger(__name__)

SUPPORTED_AIORTC = "1.16.0"
SUPPORTED_AIOICE = "0.13.0"
_CONNECTED = dtls.State.CONNECTED


def run_eagerly(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any] | None:
    """Run ``coro`` now, up to its end or its first real wait; returns None if it
    finished, else the task that finishes it. Raises what ``coro`` raises before it
    first waits."""
    try:
        waiting_for = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(coro, waiting_for))


async def _finish(coro: Coroutine[Any, Any, Any], waiting_for: Any) -> Any:
    # What a task does with a coroutine that waits: wait for the future it yielded (a
    # bare yield means "let others run once"), then resume it; cancelling this task
    # cancels what it waits for, as a task's cancel does.
    while True:
        try:
            if waiting_for is None:
                await asyncio.sleep(0)
            else:
                waiting_for._asyncio_future_blocking = False
                try:
                    await asyncio.wait((waiting_for,))
                except asyncio.CancelledError:
                    waiting_for.cancel()
                    raise
        except asyncio.CancelledError as exc:
            try:
                waiting_for = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            waiting_for = coro.send(None)
        except StopIteration as stop:
            return stop.value


def install() -> bool:
    """Patch aiortc and aioice once; returns whether the tuning is active."""
    if getattr(dtls.RTCDtlsTransport, "_mpyc_webrtc_dispatch_tuned", False):
        return True
    if aiortc.__version__ != SUPPORTED_AIORTC or aioice.__version__ != SUPPORTED_AIOICE:
        log.warning("dispatch tuning is written for aiortc %s and aioice %s, not %s and "
                    "%s: left off", SUPPORTED_AIORTC, SUPPORTED_AIOICE, aiortc.__version__,
                    aioice.__version__)
        return False
    _patch_stun_demux()
    _patch_connection()
    _patch_dtls()
    _patch_data_channel_send()
    dtls.RTCDtlsTransport._mpyc_webrtc_dispatch_tuned = True
    return True


# -- aioice ---------------------------------------------------------------------------


def _patch_stun_demux() -> None:
    original = ice.StunProtocol.datagram_received

    def datagram_received(self: ice.StunProtocol, data: bytes, addr: tuple[Any, ...]) -> None:
        # RFC 7983: a first byte of 0-3 is STUN, anything else is not (DTLS is 20-63).
        if data and data[0] > 3:
            self.receiver.data_received(data, self.local_candidate.component)
        else:
            original(self, data, addr)

    ice.StunProtocol.datagram_received = datagram_received


def _patch_connection() -> None:
    ice.Connection._mw_receiver = None  # set by a connected DTLS transport

    def data_received(self: ice.Connection, data: bytes, component: int) -> None:
        receiver = self._mw_receiver
        if receiver is not None and component == 1 and self._queue.empty():
            receiver(data)
        else:
            self._queue.put_nowait((data, component))

    ice.Connection.data_received = data_received


# -- aiortc DTLS ----------------------------------------------------------------------


async def _handle_datagram(self: dtls.RTCDtlsTransport, data: bytes) -> None:
    """What aiortc's ``_recv_next`` does with a datagram once the handshake is done."""
    self._RTCDtlsTransport__rx_bytes += len(data)
    self._RTCDtlsTransport__rx_packets += 1
    first_byte = data[0]
    if 19 < first_byte < 64:
        if dtls.RTCDtlsTransport._mpyc_webrtc_dtls_tuned:
            await dtls_tuning.after_decrypt(self, dtls_tuning.decrypt(self, data))
            return
        self._ssl.bio_write(data)
        try:
            data = self._ssl.recv(1500)
        except SSL.ZeroReturnError:
            data = None
        except SSL.Error:
            data = b""
        await self._write_ssl()
        if data is None:
            self._RTCDtlsTransport__log_debug("- DTLS shutdown by remote party")
            raise ConnectionError
        elif data and self._data_receiver:
            await self._data_receiver._handle_data(data)
    elif 127 < first_byte < 192 and self._rx_srtp:
        await dtls_tuning.handle_srtp(self, data)


def _push(self: dtls.RTCDtlsTransport, data: bytes) -> None:
    """A datagram straight from aioice, whose queue is empty."""
    if (self._state is not _CONNECTED or self._task is None or self._mw_busy
            or self._mw_pending is not None):
        # The reader task is in the middle of one, or an earlier one still waits for
        # something: this one waits its turn in the queue.
        self.transport._connection._queue.put_nowait((data, 1))
        return
    try:
        if 19 < data[0] < 64 and dtls.RTCDtlsTransport._mpyc_webrtc_dtls_tuned:
            # The usual case, _handle_datagram without a coroutine of its own.
            self._RTCDtlsTransport__rx_bytes += len(data)
            self._RTCDtlsTransport__rx_packets += 1
            data = dtls_tuning.decrypt(self, data)
            if data and self._data_receiver and not dtls_tuning.pending_output(self):
                task = run_eagerly(self._data_receiver._handle_data(data))
            else:
                task = run_eagerly(dtls_tuning.after_decrypt(self, data))
        else:
            task = run_eagerly(_handle_datagram(self, data))
    except Exception as exc:  # as in aiortc's reader task: it ends the transport
        _fail(self, exc)
        return
    if task is not None:  # it waits for something: hold back what comes next
        self._mw_pending = task
        task.add_done_callback(lambda t: _pushed_done(self, t))


def _pushed_done(self: dtls.RTCDtlsTransport, task: asyncio.Future[Any]) -> None:
    self._mw_pending = None
    if not task.cancelled() and task.exception() is not None:
        _fail(self, task.exception())


def _fail(self: dtls.RTCDtlsTransport, exc: BaseException) -> None:
    # Hand the error to the reader task, which ends the transport as it always did.
    self.transport._connection._mw_receiver = None
    self._mw_failure = exc
    self.transport._connection._queue.put_nowait(None)


def _patch_dtls() -> None:
    cls = dtls.RTCDtlsTransport
    cls._mw_busy = False  # the reader task is handling a datagram
    cls._mw_pending = None  # the task finishing a pushed datagram that had to wait
    cls._mw_failure = None  # what a pushed datagram raised, for the reader task
    if not hasattr(cls, "_mpyc_webrtc_dtls_tuned"):
        cls._mpyc_webrtc_dtls_tuned = False
    original_recv_next = cls._recv_next  # aiortc's, or dtls_tuning's
    original_stop = cls.stop

    async def _recv_next(self: dtls.RTCDtlsTransport) -> None:
        if not self._RTCDtlsTransport__handshake_done:
            await original_recv_next(self)
            if self._RTCDtlsTransport__handshake_done and self._state == dtls.State.CONNECTED:
                self.transport._connection._mw_receiver = functools.partial(_push, self)
            return
        try:
            data = await self.transport._recv()
        except ConnectionError:
            failure, self._mw_failure = self._mw_failure, None
            if failure is None:
                raise
            raise failure from None  # aiortc's reader task reports it and closes
        # A queued datagram came while an earlier, pushed one was still handled.
        while self._mw_pending is not None:
            await asyncio.wait((self._mw_pending,))
        self._mw_busy = True
        try:
            await _handle_datagram(self, data)
        finally:
            self._mw_busy = False

    async def stop(self: dtls.RTCDtlsTransport) -> None:
        self.transport._connection._mw_receiver = None
        await original_stop(self)

    cls._recv_next = _recv_next
    cls.stop = stop


# -- aiortc SCTP ----------------------------------------------------------------------


def _patch_data_channel_send() -> None:
    cls = sctp.RTCSctpTransport

    def _data_channel_send(self: sctp.RTCSctpTransport, channel: Any, data: bytes | str) -> None:
        # As aiortc's, but the flush runs now instead of in a new task.
        if data == "":
            pp_id, user_data = sctp.WEBRTC_STRING_EMPTY, b"\x00"
        elif isinstance(data, str):
            pp_id, user_data = sctp.WEBRTC_STRING, data.encode("utf8")
        elif data == b"":
            pp_id, user_data = sctp.WEBRTC_BINARY_EMPTY, b"\x00"
        else:
            pp_id, user_data = sctp.WEBRTC_BINARY, data
        if self._remote_max_message_size and (
            len(user_data) > self._remote_max_message_size
        ):
            raise ValueError(
                f"Cannot send message of {len(user_data)} bytes, the remote party "
                f"only supports messages up to {self._remote_max_message_size} bytes"
            )
        channel._addBufferedAmount(len(user_data))
        self._data_channel_queue.append((channel, pp_id, user_data))
        try:
            run_eagerly(self._data_channel_flush())
        except Exception as exc:  # as from aiortc's task: reported, not raised to the sender
            self._loop.call_exception_handler({
                "message": "Exception in data channel flush", "exception": exc})

    cls._data_channel_send = _data_channel_send
