"""A short path through aiortc's SCTP for the packets of a steady association.

aiortc's ``RTCSctpTransport`` handles every packet in full generality: a message is
queued for a flush that moves it to the outbound queue, ``_transmit`` scans the sent
queue for retransmissions and moves it on, and ``_send_chunk`` serializes it; every
received packet is parsed into chunk objects, each dispatched through a chain of
``isinstance`` tests, DATA goes through reassembly and SACKs through the congestion
bookkeeping and another flush and ``_transmit`` of queues that are almost always
empty; each of these steps is a coroutine, down to the UDP send. That is most of the
Python work per packet when messages are small and rounds are short (MPyC's).

This module adds a short path for the cases that are nearly all packets of such a
workload, and leaves everything else to aiortc's code, which stays in charge of the
association's state:

- sending: a binary message that fits one DATA chunk, on a reliable ordered channel,
  when nothing is queued or waiting for retransmission and the congestion window has
  room, becomes one DATA chunk, is recorded in the sent queue exactly as
  ``_transmit`` records it, and is encrypted and sent right away (with a pending SACK
  bundled, when ``sctp_tuning`` is on);
- receiving: a packet that holds only DATA and SACK chunks is parsed in place; DATA
  that is the next expected TSN, a whole message and the next in its stream's order is
  handed to the channel's "message" handlers at once (as pyee's ``emit`` calls them), a
  SACK without gap reports is applied as ``_receive_sack_chunk`` would, and the flush
  and ``_transmit`` after it run only if something is waiting. Any other chunk goes
  through aiortc's own handler, in order;
- a SACK on its own is built and sent without aiortc's chain of coroutines;
- the retransmission timer T3, which aiortc starts and cancels once per message in
  request-response traffic, keeps one event-loop timer that checks a deadline instead
  (see ``_patch_t3_timer``); it expires exactly when aiortc's would.

It reads and writes private attributes of ``aiortc.rtcsctptransport.RTCSctpTransport``
(and calls pyee's handler runner), so it only applies to the versions it was written
against.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import time
from struct import unpack_from
from typing import Any

import aiortc
from aioice import ice
from aiortc import rtcdtlstransport as dtls
from aiortc import rtcsctptransport as sctp
from aiortc.utils import uint16_add, uint32_gt, uint32_gte

from . import dtls_tuning, sctp_tuning

log = logging.getLogger(__name__)

SUPPORTED_AIORTC = "1.16.0"
#: It calls a data channel's "message" handlers as pyee's emit does.
SUPPORTED_PYEE = re.compile(r"13\.")

_ESTABLISHED = sctp.RTCSctpTransport.State.ESTABLISHED
_CLOSED = sctp.RTCSctpTransport.State.CLOSED
_CONNECTED = dtls.State.CONNECTED
_DATA = sctp.DataChunk.type
_SACK = sctp.SackChunk.type
_WHOLE = sctp.SCTP_DATA_FIRST_FRAG | sctp.SCTP_DATA_LAST_FRAG
_ORDERED_WHOLE_MASK = _WHOLE | sctp.SCTP_DATA_UNORDERED
_TSN_MODULO = sctp.SCTP_TSN_MODULO
_BINARY = sctp.WEBRTC_BINARY
_crc32c = sctp.crc32c
_ZEROS = b"\x00\x00\x00\x00"


def install() -> bool:
    """Patch aiortc once; returns whether the short path is active."""
    cls = sctp.RTCSctpTransport
    if getattr(cls, "_mpyc_webrtc_fastpath", False):
        return True
    if aiortc.__version__ != SUPPORTED_AIORTC or not SUPPORTED_PYEE.match(
            importlib.metadata.version("pyee")):
        log.warning("the SCTP short path is written for aiortc %s and pyee 13, not %s and "
                    "%s: left off", SUPPORTED_AIORTC, aiortc.__version__,
                    importlib.metadata.version("pyee"))
        return False
    if not hasattr(dtls.RTCDtlsTransport, "_mpyc_webrtc_dtls_tuned"):
        dtls.RTCDtlsTransport._mpyc_webrtc_dtls_tuned = False  # (set by dtls_tuning)
    original_send = cls._data_channel_send  # aiortc's, or dispatch_tuning's
    original_handle_data = cls._handle_data  # aiortc's, or sctp_tuning's

    def _data_channel_send(self: sctp.RTCSctpTransport, channel: Any,
                           data: bytes | str) -> None:
        if type(data) is bytes and _can_send_now(self, channel, data):
            _send_now(self, channel, data)
        else:
            original_send(self, channel, data)

    async def _handle_data(self: sctp.RTCSctpTransport, data: bytes) -> None:
        chunks = _scan(self, data) if self._association_state is _ESTABLISHED else None
        if chunks is None:
            await original_handle_data(self, data)
            return
        for chunk_type, flags, body in chunks:
            if chunk_type == _DATA:
                stream_id = _receive_data_now(self, flags, body)
                if stream_id is not None:
                    pp_id = unpack_from("!L", body, 8)[0]
                    channel = self._data_channels.get(stream_id)
                    if pp_id == _BINARY and channel is not None:
                        # As _data_channel_receive: channel.emit("message", ...), minus
                        # two layers of pyee's emit around the handler calls.
                        handlers = channel._events.get("message")
                        if handlers:
                            message = body[12:]
                            for handler in list(handlers.values()):
                                channel._emit_run(handler, (message,), {})
                    else:
                        await self._receive(stream_id, pp_id, body[12:])
                else:
                    await self._receive_chunk(sctp.DataChunk(flags=flags, body=body))
            else:
                flush = _receive_sack_now(self, body)
                if flush is None:
                    await self._receive_chunk(sctp.SackChunk(flags=flags, body=body))
                elif flush:  # as _receive_sack_chunk ends
                    await self._data_channel_flush()
                    await self._transmit()
        if self._sack_needed and not (getattr(cls, "_mpyc_webrtc_tuned", False)
                                      and sctp_tuning.delay_sack(self, True)):
            await self._send_sack()

    original_send_sack = cls._send_sack  # aiortc's, or sctp_tuning's

    async def _send_sack(self: sctp.RTCSctpTransport) -> None:
        # As aiortc's _send_sack (and sctp_tuning's bookkeeping), without its coroutines.
        if self._association_state is not _ESTABLISHED or \
                self._RTCSctpTransport__transport._state is not _CONNECTED:
            await original_send_sack(self)
            return
        if getattr(cls, "_mpyc_webrtc_tuned", False):
            sctp_tuning._sack_sent(self)
        send_packet_now(self._RTCSctpTransport__transport, sctp_tuning.sack_packet(self))
        self._sack_duplicates.clear()
        self._sack_needed = False

    cls._data_channel_send = _data_channel_send
    cls._handle_data = _handle_data
    cls._send_sack = _send_sack
    _patch_t3_timer(cls)
    cls._mpyc_webrtc_fastpath = True
    return True


def _patch_t3_timer(cls: type[sctp.RTCSctpTransport]) -> None:
    """The retransmission timer T3 without a timer created and cancelled per message.

    aiortc starts T3 when it sends DATA and nothing is outstanding, and cancels it when
    a SACK acknowledges everything: in request-response traffic, once per message. Here
    ``_t3_handle`` only says whether T3 runs (as aiortc's code expects), and when it
    expires is kept as a deadline; one event-loop timer at a time checks the deadline:
    if T3 was stopped meanwhile it does nothing, if it was restarted it waits for the new
    deadline, else T3 expires (aiortc's ``_t3_expired``) when it would have.
    """
    original_expired = cls._t3_expired
    cls._mw_t3_deadline = 0.0
    cls._mw_t3_timer = None

    def _t3_set(self: sctp.RTCSctpTransport) -> None:
        loop = self._loop
        self._mw_t3_deadline = deadline = loop.time() + self._rto
        self._t3_handle = _T3_RUNNING
        timer = self._mw_t3_timer
        if timer is None or timer.when() > deadline:  # (the RTO can shrink)
            if timer is not None:
                timer.cancel()
            self._mw_t3_timer = loop.call_at(deadline, _t3_check, self)

    def _t3_check(self: sctp.RTCSctpTransport) -> None:
        self._mw_t3_timer = None
        if self._t3_handle is None:
            return  # stopped since
        if self._mw_t3_deadline > self._loop.time() + 0.001:  # restarted since
            self._mw_t3_timer = self._loop.call_at(self._mw_t3_deadline, _t3_check, self)
            return
        original_expired(self)

    def _t3_start(self: sctp.RTCSctpTransport) -> None:
        assert self._t3_handle is None
        _t3_set(self)

    def _t3_cancel(self: sctp.RTCSctpTransport) -> None:
        self._t3_handle = None
        if self._association_state is _CLOSED and self._mw_t3_timer is not None:
            self._mw_t3_timer.cancel()  # the association is over: let it go now
            self._mw_t3_timer = None

    cls._t3_start = _t3_start
    cls._t3_restart = _t3_set
    cls._t3_cancel = _t3_cancel


class _Running:
    """What ``_t3_handle`` holds while T3 runs."""

    def cancel(self) -> None:  # in case anything still cancels it directly
        pass


_T3_RUNNING = _Running()


# -- sending --------------------------------------------------------------------------


def _stream_id(channel: Any) -> int | None:
    """The channel's stream if it is reliable and ordered, else None (both are fixed once
    the channel has its id, so they are looked up once)."""
    stream_id = channel.__dict__.get("_mw_stream_id", -1)
    if stream_id == -1:
        stream_id = channel.id
        if stream_id is None:
            return None  # not registered yet: ask again next time
        if not (channel.ordered and channel.maxRetransmits is None
                and channel.maxPacketLifeTime is None):
            stream_id = None
        channel._mw_stream_id = stream_id
    return stream_id


def _can_send_now(self: sctp.RTCSctpTransport, channel: Any, data: bytes) -> bool:
    size = len(data)
    return (
        0 < size <= sctp.USERDATA_MAX_LENGTH
        and self._association_state is _ESTABLISHED
        and not self._data_channel_queue
        and not self._outbound_queue
        and self._flight_size < self._cwnd
        and self._forward_tsn_chunk is None
        and self._fast_recovery_exit is None
        and not self._reconfig_queue
        and _stream_id(channel) is not None
        and (size <= self._remote_max_message_size or not self._remote_max_message_size)
        and self._RTCSctpTransport__transport._state is _CONNECTED
        and not (self._sent_queue and any(chunk._retransmit for chunk in self._sent_queue))
    )


def _send_now(self: sctp.RTCSctpTransport, channel: Any, data: bytes) -> None:
    # What _data_channel_flush, _send and _transmit do with one such message.
    stream_id = channel._mw_stream_id
    stream_seq = self._outbound_stream_seq.get(stream_id, 0)
    chunk = sctp.DataChunk()
    chunk.flags = _WHOLE
    chunk.tsn = self._local_tsn
    chunk.stream_id = stream_id
    chunk.stream_seq = stream_seq
    chunk.protocol = sctp.WEBRTC_BINARY
    chunk.user_data = data
    chunk._abandoned = False
    chunk._acked = False
    chunk._book_size = size = len(data)
    chunk._expiry = None
    chunk._max_retransmits = None
    chunk._misses = 0
    chunk._retransmit = False
    self._local_tsn = (chunk.tsn + 1) % _TSN_MODULO
    self._outbound_stream_seq[stream_id] = uint16_add(stream_seq, 1)
    self._sent_queue.append(chunk)
    chunk._in_flight = True
    self._flight_size += size
    chunk._sent_count = 1
    chunk._sent_time = time.time()
    packet = None
    if getattr(sctp.RTCSctpTransport, "_mpyc_webrtc_tuned", False):
        packet = sctp_tuning.bundled_packet(self, chunk)
    if packet is None:
        packet = sctp.serialize_packet(self._local_port, self._remote_port,
                                       self._remote_verification_tag, chunk)
    try:
        send_packet_now(self._RTCSctpTransport__transport, packet)
    except Exception as exc:  # as from aiortc's flush task: reported, not raised
        self._loop.call_exception_handler({
            "message": "Exception in data channel flush", "exception": exc})
        return
    if not self._t3_handle:
        self._t3_start()
    # aiortc counts the message in bufferedAmount until its flush task has sent it, and
    # emits "bufferedamountlow" then if that crosses the threshold: so does this, in the
    # next loop iteration, where aiortc's flush task would have run.
    buffered = channel.bufferedAmount
    if buffered + size > channel.bufferedAmountLowThreshold >= buffered:
        self._loop.call_soon(channel.emit, "bufferedamountlow")


def send_packet_now(transport: dtls.RTCDtlsTransport, packet: bytes) -> None:
    """What ``RTCDtlsTransport._send_data(packet)`` does, without waiting for anything."""
    if transport._state is not _CONNECTED:
        raise ConnectionError("Cannot send encrypted data, not connected")
    if dtls.RTCDtlsTransport._mpyc_webrtc_dtls_tuned:
        record = dtls_tuning.encrypt(transport, packet)
    else:
        transport._ssl.send(packet)
        try:
            record = transport._ssl.bio_read(1500)
        except dtls.SSL.Error:
            record = b""
    if not record:
        return
    pair = transport._transport._connection._nominated.get(1)
    if pair is None:
        raise ConnectionError("Cannot send data, not connected")
    if type(pair.protocol) is ice.StunProtocol:
        pair.protocol.transport.sendto(record, pair.remote_addr)  # its send_data
    else:
        from .dispatch_tuning import run_eagerly
        run_eagerly(pair.protocol.send_data(record, pair.remote_addr))
    transport._RTCDtlsTransport__tx_bytes += len(record)
    transport._RTCDtlsTransport__tx_packets += 1


# -- receiving ------------------------------------------------------------------------


def _scan(self: sctp.RTCSctpTransport, data: bytes) -> list[tuple[int, int, bytes]] | None:
    """The (type, flags, body) of the chunks of a valid packet for this association that
    holds only DATA and SACK chunks; None for any other packet (aiortc handles it)."""
    length = len(data)
    if length < sctp.SCTP_PACKET_MINIMUM_LENGTH \
            or unpack_from("!L", data, 4)[0] != self._local_verification_tag:
        return None
    chunks = []
    pos = 12
    while pos <= length - 4:
        chunk_type, flags, chunk_length = unpack_from("!BBH", data, pos)
        if chunk_type not in (_DATA, _SACK) or chunk_length < 4 or pos + chunk_length > length:
            return None
        chunks.append((chunk_type, flags, data[pos + 4:pos + chunk_length]))
        pos += chunk_length + (-chunk_length % 4)
    if not chunks or unpack_from("<L", data, 8)[0] != _crc32c(data[:8] + _ZEROS + data[12:]):
        return None
    return chunks


def _receive_data_now(self: sctp.RTCSctpTransport, flags: int, body: bytes) -> int | None:
    """Account for an in-order DATA chunk that is a whole ordered message and the next
    of its stream: returns its stream (the caller delivers it); else None, nothing done."""
    if (flags & _ORDERED_WHOLE_MASK) != _WHOLE or self._sack_misordered \
            or self._reconfig_deferred is not None or len(body) < 12:
        return None
    tsn, stream_id, stream_seq = unpack_from("!LHH", body)
    if tsn != (self._last_received_tsn + 1) % _TSN_MODULO:
        return None
    inbound = self._inbound_streams.get(stream_id)
    if inbound is None:
        inbound = self._get_inbound_stream(stream_id)
    if inbound.reassembly or stream_seq != inbound.sequence_number:
        return None
    # As _receive_data_chunk, _mark_received and InboundStream.pop_messages.
    self._sack_needed = True
    self._last_received_tsn = tsn
    if self._sack_duplicates:
        self._sack_duplicates = [x for x in self._sack_duplicates if uint32_gt(x, tsn)]
    inbound.sequence_number = uint16_add(stream_seq, 1)
    return stream_id


def _receive_sack_now(self: sctp.RTCSctpTransport, body: bytes) -> bool | None:
    """Apply a SACK without gap reports, outside fast recovery, as _receive_sack_chunk
    would, up to its flush and _transmit: returns whether they have anything to do. None
    (nothing done) for any other SACK."""
    if len(body) < 12 or self._fast_recovery_exit is not None:
        return None
    cumulative_tsn, _, gaps = unpack_from("!LLH", body)
    if gaps:
        return None
    if uint32_gt(self._last_sacked_tsn, cumulative_tsn):
        return False  # an old SACK: ignored, as aiortc does
    self._last_sacked_tsn = cumulative_tsn
    cwnd_fully_utilized = self._flight_size >= self._cwnd
    done = 0
    done_bytes = 0
    sent_queue = self._sent_queue
    while sent_queue and uint32_gte(cumulative_tsn, sent_queue[0].tsn):
        chunk = sent_queue.popleft()
        done += 1
        if not chunk._acked:
            done_bytes += chunk._book_size
        if chunk._in_flight:
            chunk._in_flight = False
            self._flight_size -= chunk._book_size
        if done == 1 and chunk._sent_count == 1:
            self._update_rto(time.time() - chunk._sent_time)
    if done and cwnd_fully_utilized:
        if self._cwnd <= self._ssthresh:
            self._cwnd += min(done_bytes, sctp.USERDATA_MAX_LENGTH)
        else:
            self._partial_bytes_acked += done_bytes
            if self._partial_bytes_acked >= self._cwnd:
                self._partial_bytes_acked -= self._cwnd
                self._cwnd += sctp.USERDATA_MAX_LENGTH
    if not sent_queue:
        self._t3_cancel()
    elif done:
        self._t3_restart()
    # _update_advanced_peer_ack_point, which only has work once chunks were abandoned.
    if (self._forward_tsn_streams or (sent_queue and sent_queue[0]._abandoned)
            or (self._outbound_queue and self._outbound_queue[0]._abandoned)
            or uint32_gt(self._advanced_peer_ack_tsn, cumulative_tsn)):
        self._update_advanced_peer_ack_point()
    elif uint32_gt(cumulative_tsn, self._advanced_peer_ack_tsn):
        self._advanced_peer_ack_tsn = cumulative_tsn
    # Whether the flush and _transmit that follow have anything to do.
    return bool(self._data_channel_queue or self._outbound_queue or self._reconfig_queue
                or self._forward_tsn_chunk is not None
                or any(chunk._retransmit for chunk in sent_queue))

