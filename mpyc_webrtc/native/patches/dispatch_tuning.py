"""Fewer event-loop hops per packet in aiortc/aioice: handle a datagram where it
arrives, and send a data channel message where it is sent.

aiortc moves every packet through the event loop more often than it needs to:

- Receiving: aioice's UDP protocol first tries to parse each datagram as STUN (a raised
  and caught ``ValueError`` for every DTLS packet), then puts it in an ``asyncio.Queue``;
  the DTLS transport's reader task wakes up in a later loop iteration, takes it out, and
  only then decrypts it and hands it to SCTP.
- Sending: ``RTCDataChannel.send`` queues the message and schedules a new task
  (``ensure_future(_data_channel_flush())``) per message, which runs in a later
  iteration and sends it.

For latency-bound protocols like MPyC's rounds (a few small messages, then wait for the
answers) that is a task creation, a queue hand-over and extra loop iterations per
packet, all in Python. With this module:

- aioice tells DTLS from STUN by the first byte, as RFC 7983 does (``stun_demux``);
- once the DTLS transport is connected, its ICE connection (``DirectReceiveConnection``)
  hands each datagram straight to it from aioice's ``datagram_received`` callback
  (``DirectDtlsTransport._mw_push``): it is decrypted and given to SCTP (and on to the
  data channel's ``message`` listeners) right there;
- ``RTCDataChannel.send`` runs aiortc's flush right away instead of in a new task
  (``EagerFlushSctpTransport``).

aiortc's coroutines are still used and still run in the same order; they are only
started at once ("eagerly", like Python 3.12's eager tasks) instead of being scheduled.
None of them normally waits for anything on these paths (aioice's UDP send does not
block). Should one wait after all (e.g. a TURN channel being bound), it is finished by a
task, and later datagrams wait in aioice's queue for the reader task, which takes them
only after it: the order of packets is the order they arrived in, as before. Errors end
the DTLS transport exactly as they did in its reader task. Everything before the
handshake is done, and anything that is not DTLS (SRTP), is left to the reader task and
aiortc's own ``_recv_next``.

Each class steps aside when its neighbour is not what it expects: the DTLS transport
only asks for datagrams from a ``DirectReceiveConnection``, and the connection only
pushes to a receiver that asked. The record helpers of ``dtls_tuning``
(``_mw_decrypt``, ``_mw_output_pending``) replace the plain ones here when both are
installed (``patches`` puts ``dtls_tuning``'s class first). They use private state of
aiortc's ``RTCDtlsTransport`` (handshake flag, counters, reader task) and aioice's
``Connection`` (its queue), hence the versions they are written for (``patches.PATCHES``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aioice.ice import Connection
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcsctptransport import RTCSctpTransport
from OpenSSL import SSL

from .eager import run_eagerly

_CONNECTED = State.CONNECTED

#: What a datagram receiver returns: None (handled), a future (handled, still running),
#: or False (not taken: it goes to aioice's queue, for the reader task).
Pushed = asyncio.Future[Any] | None | bool


# -- aioice ---------------------------------------------------------------------------


class DirectReceiveConnection(Connection):
    """aioice's ICE connection, handing datagrams of component 1 to a receiver as they
    arrive instead of queueing them, whenever that keeps their order: the queue is
    empty, the reader (``recv``) is not in the middle of one, and no earlier pushed
    datagram is still being handled."""

    _mw_receiver: Callable[[bytes], Pushed] | None = None
    _mw_pending: asyncio.Future[Any] | None = None  # a pushed datagram still handled
    _mw_busy = False  # the reader is handling what recv() returned
    _mw_failure: BaseException | None = None  # what a pushed datagram raised

    def set_datagram_receiver(self, receiver: Callable[[bytes], Pushed] | None) -> None:
        """From now on, offer datagrams to ``receiver`` (None: queue them all again)."""
        self._mw_receiver = receiver

    def data_received(self, data: bytes, component: int) -> None:
        receiver = self._mw_receiver
        if (receiver is None or component != 1 or self._mw_busy
                or self._mw_pending is not None or not self._queue.empty()):
            super().data_received(data, component)
            return
        try:
            pushed = receiver(data)
        except Exception as exc:  # as in aiortc's reader task: it ends the transport
            self._mw_fail(exc)
            return
        if pushed is False:
            super().data_received(data, component)
        elif pushed is not None:  # it waits for something: hold back what comes next
            self._mw_pending = pushed
            pushed.add_done_callback(self._mw_pushed_done)

    async def recvfrom(self) -> tuple[bytes, int]:
        self._mw_busy = False
        try:
            result = await super().recvfrom()
        except ConnectionError:
            failure, self._mw_failure = self._mw_failure, None
            if failure is None:
                raise
            raise failure from None  # the reader reports it and closes, as it always did
        # A queued datagram came while an earlier, pushed one was still being handled.
        while self._mw_pending is not None:
            await asyncio.wait((self._mw_pending,))
        self._mw_busy = True
        return result

    def _mw_pushed_done(self, task: asyncio.Future[Any]) -> None:
        self._mw_pending = None
        if not task.cancelled() and task.exception() is not None:
            self._mw_fail(task.exception())

    def _mw_fail(self, exc: BaseException) -> None:
        # Hand the error to the reader, which ends the transport as it always did.
        self._mw_receiver = None
        self._mw_failure = exc
        self._queue.put_nowait(None)


# -- aiortc DTLS ----------------------------------------------------------------------


class DirectDtlsTransport(RTCDtlsTransport):
    """aiortc's DTLS transport, taking application-data records from its ICE connection
    as they arrive once connected (if the connection offers that)."""

    def _set_state(self, state: State) -> None:
        super()._set_state(state)
        connection = getattr(self.transport, "_connection", None)
        if isinstance(connection, DirectReceiveConnection):
            connection.set_datagram_receiver(self._mw_push if state is _CONNECTED else None)

    async def stop(self) -> None:
        connection = getattr(self.transport, "_connection", None)
        if isinstance(connection, DirectReceiveConnection):
            connection.set_datagram_receiver(None)
        await super().stop()

    def _mw_push(self, data: bytes) -> Pushed:
        """A datagram straight from the ICE connection: what aiortc's ``_recv_next`` does
        with an application-data record, started at once."""
        if (self._state is not _CONNECTED or self._task is None
                or not self._RTCDtlsTransport__handshake_done or not 19 < data[0] < 64):
            return False  # the reader task takes it, through aiortc's own code
        self._RTCDtlsTransport__rx_bytes += len(data)
        self._RTCDtlsTransport__rx_packets += 1
        plain = self._mw_decrypt(data)
        receiver = self._data_receiver
        if plain and receiver is not None and not self._mw_output_pending():
            return run_eagerly(receiver._handle_data(plain))  # the usual case
        return run_eagerly(self._mw_after_decrypt(plain))

    def _mw_output_pending(self) -> bool:
        """Whether DTLS may have something to send (unknown here: ``dtls_tuning`` knows)."""
        return True

    def _mw_decrypt(self, record: bytes) -> bytes | None:
        """The record's plaintext (b"" if none), None once the peer closed DTLS.

        The same steps as in aiortc's ``_recv_next``, which receives and decrypts in one
        method: there is nothing to call for the decryption alone.
        """
        self._ssl.bio_write(record)
        try:
            return self._ssl.recv(1500)
        except SSL.ZeroReturnError:
            return None
        except SSL.Error:
            return b""

    async def _mw_after_decrypt(self, data: bytes | None) -> None:
        """What aiortc's ``_recv_next`` does with a decrypted record (copied, as above)."""
        await self._write_ssl()
        if data is None:
            self._RTCDtlsTransport__log_debug("- DTLS shutdown by remote party")
            raise ConnectionError
        elif data and self._data_receiver:
            await self._data_receiver._handle_data(data)


# -- aiortc SCTP ----------------------------------------------------------------------


class EagerFlushSctpTransport(RTCSctpTransport):
    """aiortc's SCTP transport, flushing a data channel message when it is sent.

    aiortc's ``_data_channel_send`` ends with ``ensure_future(self._data_channel_flush())``.
    While it runs, ``_data_channel_flush`` here runs aiortc's flush at once and hands
    ``ensure_future`` a finished future (or the task finishing the flush, should it
    wait) instead of a coroutine for a new task. Everywhere else the flush is aiortc's.
    """

    _mw_flush_now = False

    def _data_channel_send(self, channel: Any, data: bytes | str) -> None:
        self._mw_flush_now = True
        try:
            super()._data_channel_send(channel, data)
        finally:
            self._mw_flush_now = False

    def _data_channel_flush(self) -> Any:  # a coroutine, or a future when run eagerly
        if not self._mw_flush_now:
            return super()._data_channel_flush()
        self._mw_flush_now = False
        try:
            task = run_eagerly(super()._data_channel_flush())
        except Exception as exc:  # as from aiortc's task: reported, not raised to the sender
            self._loop.call_exception_handler({
                "message": "Exception in data channel flush", "exception": exc})
            task = None
        if task is None:
            task = self._loop.create_future()
            task.set_result(None)
        return task
