"""A short path through aiortc's SCTP for the packets of a steady association.

aiortc's ``RTCSctpTransport`` handles every packet in full generality: a message is
queued for a flush that moves it to the outbound queue, ``_transmit`` scans the sent
queue for retransmissions and moves it on, and ``_send_chunk`` serializes it; every
received packet is parsed into chunk objects, each dispatched through a chain of
``isinstance`` tests, DATA goes through reassembly and SACKs through the congestion
bookkeeping and another flush and ``_transmit`` of queues that are almost always
empty; each of these steps is a coroutine, down to the UDP send. That is most of the
Python work per packet when messages are small and rounds are short (MPyC's).

``ShortPathSctpTransport`` adds a short path for the cases that are nearly all packets
of such a workload, and leaves everything else to aiortc's code (through ``super()``),
which stays in charge of the association's state:

- sending: a binary message that fits one DATA chunk, on a reliable channel (ordered
  or unordered), when nothing is queued or waiting for retransmission and the
  congestion window has room, becomes one DATA chunk, is recorded in the sent queue
  exactly as ``_transmit`` records it, and is encrypted and sent right away (with a
  pending SACK bundled, when ``sctp_tuning``'s class is installed too);
- receiving: a packet that holds only DATA and SACK chunks is parsed in place; DATA that
  is the next expected TSN and a whole message, unordered or the next in its stream's
  order, is handed on at once (a binary message straight to the channel's "message"
  handlers, as pyee's ``emit`` calls them, unless ``_receive`` or
  ``_data_channel_receive`` was replaced), a SACK without gap reports or duplicates
  is applied as ``_receive_sack_chunk`` would, and the flush and ``_transmit`` after it
  run only if something is waiting. Any other chunk goes through aiortc's own handler,
  in order;
- a SACK without gaps or duplicates is built and sent without aiortc's chain of
  coroutines;
- the retransmission timer T3, which aiortc starts and cancels once per message in
  request-response traffic, keeps one event-loop timer that checks a deadline instead
  (see ``_t3_start``); it expires exactly when aiortc's would.

Sending "right away" means: the record goes to aioice's UDP transport directly when the
DTLS transport sits on an aioice connection whose nominated pair sends as aioice's
``StunProtocol`` does; on any other ICE transport it goes through that transport's own
``_send`` (started at once; should it wait, nothing takes the short path until it is
done).

The short path repeats aiortc's bookkeeping for the cases it takes (what ``_transmit``
records for a sent chunk, what ``_receive_data_chunk`` and ``_receive_sack_chunk`` do with
an in-order DATA chunk and a SACK without gaps), each step marked "as ...": calling
aiortc's methods for them is the very chain of coroutines it saves. For the same reason
the T3 methods are replaced, not extended: aiortc's create a timer handle per call.

It reads and writes private attributes of aiortc's ``RTCSctpTransport`` and
``RTCDtlsTransport``, aioice's ``Connection`` and pyee's ``EventEmitter``, hence the
versions it is written for (see ``patches.PATCHES``).
"""

from __future__ import annotations

import time
from struct import pack, unpack_from
from typing import Any

from aioice.ice import Connection, StunProtocol
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    SCTP_DATA_UNORDERED,
    SCTP_PACKET_MINIMUM_LENGTH,
    SCTP_TSN_MODULO,
    USERDATA_MAX_LENGTH,
    WEBRTC_BINARY,
    DataChunk,
    RTCSctpTransport,
    SackChunk,
    crc32c,
    serialize_packet,
)
from aiortc.utils import uint16_add, uint32_gt, uint32_gte
from OpenSSL import SSL

from .eager import run_eagerly

_ESTABLISHED = RTCSctpTransport.State.ESTABLISHED
_CLOSED = RTCSctpTransport.State.CLOSED
_CONNECTED = DtlsState.CONNECTED
_DATA = DataChunk.type
_SACK = SackChunk.type
_WHOLE = SCTP_DATA_FIRST_FRAG | SCTP_DATA_LAST_FRAG
_ZEROS = b"\x00\x00\x00\x00"
#: aioice's send on a nominated pair: ``self.transport.sendto(data, addr)``.
_STUN_SEND_DATA = StunProtocol.send_data
_AIORTC_RECEIVE = RTCSctpTransport._receive
_AIORTC_CHANNEL_RECEIVE = RTCSctpTransport._data_channel_receive


class _Running:
    """What ``_t3_handle`` holds while T3 runs (a new one per start: aiortc's tests tell
    a restarted timer by its handle)."""

    __slots__ = ()

    def cancel(self) -> None:  # in case anything still cancels it directly
        pass


class ShortPathSctpTransport(RTCSctpTransport):
    """aiortc's SCTP transport, with a short path for steady DATA and SACK packets."""

    _mw_t3_deadline = 0.0
    _mw_t3_timer: Any = None
    _mw_sending: Any = None  # a send that had to wait: no short path until it is done
    #: Whether it delays SACKs and bundles them with DATA (``sctp_tuning``'s class is in
    #: it): set per subclass.
    _mw_delays_sacks = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._mw_delays_sacks = hasattr(cls, "_bundle_sack") and hasattr(cls, "_sack_may_wait")

    # -- sending ----------------------------------------------------------------------

    def _data_channel_send(self, channel: Any, data: bytes | str) -> None:
        if type(data) is bytes and self._mw_can_send_now(channel, data):
            self._mw_send_now(channel, data)
        else:
            super()._data_channel_send(channel, data)

    def _mw_can_send_now(self, channel: Any, data: bytes) -> bool:
        size = len(data)
        return (
            0 < size <= USERDATA_MAX_LENGTH
            and self._association_state is _ESTABLISHED
            and not self._data_channel_queue
            and not self._outbound_queue
            and self._flight_size < self._cwnd
            and self._forward_tsn_chunk is None
            and self._fast_recovery_exit is None
            and not self._reconfig_queue
            and self._mw_sending is None
            and _stream_id(channel) is not None
            and (size <= self._remote_max_message_size or not self._remote_max_message_size)
            and self._RTCSctpTransport__transport._state is _CONNECTED
            and not (self._sent_queue and any(chunk._retransmit for chunk in self._sent_queue))
        )

    def _mw_send_now(self, channel: Any, data: bytes) -> None:
        # What _data_channel_flush, _send and _transmit do with one such message.
        stream_id = channel._mw_stream_id
        unordered = channel._mw_unordered
        # As _send: an unordered chunk has stream sequence number 0 and takes none.
        stream_seq = 0 if unordered else self._outbound_stream_seq.get(stream_id, 0)
        chunk = DataChunk()
        chunk.flags = (_WHOLE | SCTP_DATA_UNORDERED) if unordered else _WHOLE
        chunk.tsn = self._local_tsn
        chunk.stream_id = stream_id
        chunk.stream_seq = stream_seq
        chunk.protocol = WEBRTC_BINARY
        chunk.user_data = data
        chunk._abandoned = False
        chunk._acked = False
        chunk._book_size = size = len(data)
        chunk._expiry = None
        chunk._max_retransmits = None
        chunk._misses = 0
        chunk._retransmit = False
        self._local_tsn = (chunk.tsn + 1) % SCTP_TSN_MODULO
        if not unordered:
            self._outbound_stream_seq[stream_id] = uint16_add(stream_seq, 1)
        self._sent_queue.append(chunk)
        chunk._in_flight = True
        self._flight_size += size
        chunk._sent_count = 1
        chunk._sent_time = time.time()
        packet = self._bundle_sack(chunk) if self._mw_delays_sacks else None
        if packet is None:
            packet = serialize_packet(self._local_port, self._remote_port,
                                      self._remote_verification_tag, chunk)
        try:
            self._mw_send_packet(packet)
        except Exception as exc:  # as from aiortc's flush task: reported, not raised
            self._loop.call_exception_handler({
                "message": "Exception in data channel flush", "exception": exc})
            return
        if not self._t3_handle:
            self._t3_start()
        # aiortc counts the message in bufferedAmount until its flush task has sent it, and
        # emits "bufferedamountlow" then if that crosses the threshold: so does this, in
        # the next loop iteration, where aiortc's flush task would have run.
        buffered = channel.bufferedAmount
        if buffered + size > channel.bufferedAmountLowThreshold >= buffered:
            self._loop.call_soon(channel.emit, "bufferedamountlow")

    def _mw_send_packet(self, packet: bytes) -> None:
        """What ``RTCDtlsTransport._send_data(packet)`` does, started at once."""
        dtls = self._RTCSctpTransport__transport  # (the transport properties' attributes)
        if dtls._state is not _CONNECTED:
            raise ConnectionError("Cannot send encrypted data, not connected")
        encrypt = getattr(dtls, "_mw_encrypt", None)  # dtls_tuning's
        if encrypt is not None:
            record = encrypt(packet)
        else:
            dtls._ssl.send(packet)
            try:
                record = dtls._ssl.bio_read(1500)
            except SSL.Error:
                record = b""
        if not record:
            return
        ice = dtls._transport
        connection = getattr(ice, "_connection", None)
        if isinstance(connection, Connection):
            pair = connection._nominated.get(1)
            if pair is None:
                raise ConnectionError("Cannot send data, not connected")
            if type(pair.protocol).send_data is _STUN_SEND_DATA:
                pair.protocol.transport.sendto(record, pair.remote_addr)
            else:
                self._mw_sent(run_eagerly(pair.protocol.send_data(record, pair.remote_addr)))
        else:
            self._mw_sent(run_eagerly(ice._send(record)))
        dtls._RTCDtlsTransport__tx_bytes += len(record)
        dtls._RTCDtlsTransport__tx_packets += 1

    def _mw_sent(self, task: Any) -> None:
        if task is not None:  # the send waits: nothing overtakes it on the short path
            self._mw_sending = task
            task.add_done_callback(self._mw_send_done)

    def _mw_send_done(self, task: Any) -> None:
        self._mw_sending = None
        if not task.cancelled() and task.exception() is not None:
            self._loop.call_exception_handler({
                "message": "Exception in SCTP send", "exception": task.exception()})

    async def _send_sack(self) -> None:
        # As aiortc's _send_sack when there are no gaps or duplicates to report, without
        # its SackChunk object and its chain of coroutines.
        if (self._association_state is not _ESTABLISHED or self._sack_misordered
                or self._sack_duplicates or self._mw_sending is not None
                or self._RTCSctpTransport__transport._state is not _CONNECTED):
            await super()._send_sack()
            return
        header = pack("!HHL", self._local_port, self._remote_port,
                      self._remote_verification_tag)
        body = pack("!BBHLLHH", _SACK, 0, 16, self._last_received_tsn,
                    max(0, self._advertised_rwnd), 0, 0)
        self._mw_send_packet(header + pack("<L", crc32c(header + _ZEROS + body)) + body)
        self._sack_needed = False

    # -- receiving --------------------------------------------------------------------

    async def _handle_data(self, data: bytes) -> None:
        chunks = self._mw_scan(data) if self._association_state is _ESTABLISHED else None
        if chunks is None:
            await super()._handle_data(data)
            return
        for chunk_type, flags, body in chunks:
            if chunk_type == _DATA:
                stream_id = self._mw_receive_data_now(flags, body)
                if stream_id is None:
                    await self._receive_chunk(DataChunk(flags=flags, body=body))
                    continue
                pp_id = unpack_from("!L", body, 8)[0]
                channel = self._data_channels.get(stream_id)
                if (pp_id == WEBRTC_BINARY and channel is not None
                        and getattr(self._receive, "__func__", None) is _AIORTC_RECEIVE
                        and getattr(self._data_channel_receive, "__func__", None)
                        is _AIORTC_CHANNEL_RECEIVE):
                    # As _data_channel_receive: channel.emit("message", ...), minus two
                    # layers of pyee's emit around the handler calls.
                    handlers = channel._events.get("message")
                    if handlers:
                        message = body[12:]
                        for handler in list(handlers.values()):
                            channel._emit_run(handler, (message,), {})
                else:
                    await self._receive(stream_id, pp_id, body[12:])
            else:
                flush = self._mw_receive_sack_now(body)
                if flush is None:
                    await self._receive_chunk(SackChunk(flags=flags, body=body))
                elif flush:  # as _receive_sack_chunk ends
                    await self._data_channel_flush()
                    await self._transmit()
        # sctp_tuning's _send_sack would decide whether the SACK may wait: the same
        # decision, without a coroutine per packet (it changes nothing when it says no).
        if self._sack_needed and not (self._mw_delays_sacks and not self._sack_at_once
                                      and self._sack_may_wait()):
            await self._send_sack()

    def _mw_scan(self, data: bytes) -> list[tuple[int, int, bytes]] | None:
        """The (type, flags, body) of the chunks of a valid packet for this association
        that holds only DATA and SACK chunks; None for any other packet (aiortc's
        ``_handle_data`` handles it)."""
        length = len(data)
        if length < SCTP_PACKET_MINIMUM_LENGTH \
                or unpack_from("!L", data, 4)[0] != self._local_verification_tag:
            return None
        chunks = []
        pos = 12
        while pos <= length - 4:
            chunk_type, flags, chunk_length = unpack_from("!BBH", data, pos)
            if chunk_type not in (_DATA, _SACK) or chunk_length < 4 \
                    or pos + chunk_length > length:
                return None
            chunks.append((chunk_type, flags, data[pos + 4:pos + chunk_length]))
            pos += chunk_length + (-chunk_length % 4)
        if not chunks or unpack_from("<L", data, 8)[0] != crc32c(data[:8] + _ZEROS + data[12:]):
            return None
        return chunks

    def _mw_receive_data_now(self, flags: int, body: bytes) -> int | None:
        """Account for an in-order DATA chunk that is a whole message, unordered or the
        next of its stream: returns its stream (the caller delivers it); else None,
        nothing done."""
        if (flags & _WHOLE) != _WHOLE or self._sack_misordered \
                or self._reconfig_deferred is not None or len(body) < 12:
            return None
        tsn, stream_id, stream_seq = unpack_from("!LHH", body)
        if tsn != (self._last_received_tsn + 1) % SCTP_TSN_MODULO:
            return None
        inbound = self._inbound_streams.get(stream_id)
        if inbound is None:
            inbound = self._get_inbound_stream(stream_id)
        unordered = flags & SCTP_DATA_UNORDERED
        # (An unordered message does not wait for its stream's order, but a stream with
        # fragments waiting is left to aiortc's reassembly all the same.)
        if inbound.reassembly or not (unordered or stream_seq == inbound.sequence_number):
            return None
        # As _receive_data_chunk, _mark_received and InboundStream.pop_messages.
        self._sack_needed = True
        self._last_received_tsn = tsn
        if self._sack_duplicates:
            self._sack_duplicates = [x for x in self._sack_duplicates if uint32_gt(x, tsn)]
        if not unordered:
            inbound.sequence_number = uint16_add(stream_seq, 1)
        return stream_id

    def _mw_receive_sack_now(self, body: bytes) -> bool | None:
        """Apply a SACK without gap reports or duplicates, outside fast recovery, as
        _receive_sack_chunk would, up to its flush and _transmit: returns whether they have
        anything to do. None (nothing done) for any other SACK (``sctp_recovery`` reads
        the duplicates in aiortc's)."""
        if len(body) < 12 or self._fast_recovery_exit is not None:
            return None
        cumulative_tsn, _, gaps, duplicates = unpack_from("!LLHH", body)
        if gaps or duplicates:
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
                self._cwnd += min(done_bytes, USERDATA_MAX_LENGTH)
            else:
                self._partial_bytes_acked += done_bytes
                if self._partial_bytes_acked >= self._cwnd:
                    self._partial_bytes_acked -= self._cwnd
                    self._cwnd += USERDATA_MAX_LENGTH
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

    # -- the retransmission timer T3 --------------------------------------------------

    def _t3_start(self) -> None:
        """T3 without a timer created and cancelled per message.

        aiortc starts T3 when it sends DATA and nothing is outstanding, and cancels it
        when a SACK acknowledges everything: in request-response traffic, once per
        message. Here ``_t3_handle`` only says whether T3 runs (as aiortc's code expects),
        and when it expires is kept as a deadline; one event-loop timer at a time checks
        the deadline: if T3 was stopped meanwhile it does nothing, if it was restarted it
        waits for the new deadline, else T3 expires (aiortc's ``_t3_expired``) when it
        would have.
        """
        assert self._t3_handle is None
        self._t3_restart()

    def _t3_restart(self) -> None:
        loop = self._loop
        self._mw_t3_deadline = deadline = loop.time() + self._rto
        self._t3_handle = _Running()
        timer = self._mw_t3_timer
        if timer is None or timer.when() > deadline:  # (the RTO can shrink)
            if timer is not None:
                timer.cancel()
            self._mw_t3_timer = loop.call_at(deadline, self._mw_t3_check)

    def _t3_cancel(self) -> None:
        self._t3_handle = None
        if self._association_state is _CLOSED and self._mw_t3_timer is not None:
            self._mw_t3_timer.cancel()  # the association is over: let it go now
            self._mw_t3_timer = None

    def _mw_t3_check(self) -> None:
        self._mw_t3_timer = None
        if self._t3_handle is None:
            return  # stopped since
        if self._mw_t3_deadline > self._loop.time() + 0.001:  # restarted since
            self._mw_t3_timer = self._loop.call_at(self._mw_t3_deadline, self._mw_t3_check)
            return
        self._t3_expired()




def _stream_id(channel: Any) -> int | None:
    """The channel's stream if it is reliable, else None; whether it is unordered is
    kept as ``_mw_unordered`` (both are fixed once the channel has its id, so they are
    looked up once)."""
    stream_id = getattr(channel, "_mw_stream_id", -1)
    if stream_id == -1:
        stream_id = channel.id
        if stream_id is None:
            return None  # not registered yet: ask again next time
        if not (channel.maxRetransmits is None and channel.maxPacketLifeTime is None):
            stream_id = None
        channel._mw_unordered = not channel.ordered
        channel._mw_stream_id = stream_id
    return stream_id
