"""Loss recovery for MPyC's messages, above the data channel's own SCTP.

Why: MPyC's rounds are request-response with one small message in flight per peer, so
a lost packet is not followed by others that would reveal the gap; SCTP then waits for
its retransmission timer, whose minimum is 1 s in aiortc and 400 ms in Chrome's dcSCTP,
and a browser's SCTP cannot be tuned from JavaScript. Linux TCP recovers in about one
round trip. So the parties recover lost messages themselves, in Python, which runs on
both sides of every link (natively and in the browser's worker):

- every message travels as a *frame* with a sequence number, over an **unordered**
  channel (still reliable: SCTP delivers everything eventually, this layer only makes
  it sooner), so a resent frame overtakes the lost one instead of queueing behind it;
- the receiver restores the order, drops duplicates, and acknowledges in every frame it
  sends back (cumulative plus a 32-frame bitmap, and how long it held the ack, as QUIC's
  ``ack_delay``); with nothing to send, it acknowledges on its own after ``ACK_DELAY``,
  at once when there is a gap or a retransmitted duplicate;
- the sender measures the round trip (RFC 6298 from acknowledged frames, minus the
  receiver's ack delay) and resends a frame when a later one was acknowledged first
  (RACK, RFC 8985) or when nothing came back for a probe timeout of about one round trip
  plus the ack delay (a tail-loss probe), backing off while nothing comes back;
- once the peer reports that frames were lost (it counts frames whose first copy to
  arrive was a resent one), small frames are sent twice, ``COPY_DELAY`` apart: a single
  loss then costs nothing at all. On a clean link nothing is sent twice.

``Recovery`` is the protocol, bytes in and bytes out with the time passed in (sans I/O,
as python-websockets' core); ``RecoveringChannel`` runs it over a ``MessageChannel`` with
the event loop's timers. Both ends must use it: ``Mesh(recovery=...)`` decides, and a
frame that is not one says so in words.

Frame layout (network byte order)::

    0  kind   u8   0xD1 data, 0xA1 acknowledgement only
    1  flags  u8   TEXT: the payload is UTF-8 text; COPY: a planned second copy;
                   RETRY: a retransmission; FAST: the sender acknowledges within
                   ACK_DELAY (else CLEAN_ACK_DELAY)
    2  seq    u32  the frame's sequence number (0 in an acknowledgement)
    6  ack    u32  the next sequence number the sender expects from its peer
    10 bits   u32  bit i set: frame ack+1+i has arrived too
    14 delay  u16  how long the newest frame waited for this ack, in 10 us units
    16 lost   u16  the peer's frames whose first arrival was a resent copy, mod 2**16
    18 payload

One message travels outside the frames: ``transport.KEEPALIVE`` as a text message, which a
native peer's network thread sends while its MPyC is too busy to (``native/network.py``).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .transport import KEEPALIVE, BufferedChannel, LinkUnusable, MessageChannel

log = logging.getLogger(__name__)

DATA = 0xD1
ACK = 0xA1
TEXT = 0x01
COPY = 0x02
RETRY = 0x04
FAST = 0x08
_HEADER = struct.Struct("!BBIIIHH")
HEADER_SIZE = _HEADER.size
_MOD = 1 << 32

#: With nothing to send back, acknowledge on its own after this long while frames from
#: the peer are being lost (its probe timeout waits for this acknowledgement)...
ACK_DELAY = 0.002
#: ...and after this long on a clean link: in MPyC's rounds the next message usually goes
#: back sooner and carries the acknowledgement, where an acknowledgement of its own would
#: be one more packet each way (in aiortc, Python's work per packet) for nothing.
CLEAN_ACK_DELAY = 0.025
#: A sign of loss from the peer (a resent frame arriving first, a gap) keeps this end's
#: acknowledgements fast for this long.
FAST_ACKS_FOR = 10.0
#: Timer granularity assumed for the peer's acknowledgement (a loop turn or two).
GRANULARITY = 0.001
#: The probe timeout before any round trip was measured.
INITIAL_PTO = 0.2
#: Never probe sooner than this.
MIN_PTO = 0.003
#: Probes back off, doubling, up to this factor while nothing comes back...
MAX_BACKOFF = 64
#: ...and a frame is resent at most this often by this layer; after that, the channel's
#: own SCTP, which is reliable, delivers it (a peer that computes for long, with its
#: loop blocked, cannot acknowledge: its silence is not loss).
MAX_RETRIES = 6
#: Resend at most this many bytes per probe or acknowledgement, and only frames up to this
#: size: this layer is for the small messages of MPyC's rounds; a large frame's packets are
#: SCTP's to recover (the packets after a lost one reveal the gap, and it resends only the
#: lost packet), and its acknowledgement comes only once all of them have crossed, which
#: says little about the round trip.
PROBE_BUDGET = 16 * 1024
#: A frame acknowledged before an older one marks the older as lost once it was sent
#: this much earlier (or a quarter of the round trip, if longer): reordering allowance.
MIN_REORDER = 0.001
#: Frames up to this size are sent twice on a lossy link (a copy fits one packet).
COPY_LIMIT = 1100
#: The second copy follows this much later (not at once: losses come in bursts).
COPY_DELAY = 0.001
#: Copies start above this estimated loss rate and stop below the second (hysteresis).
COPIES_ON = 0.004
COPIES_OFF = 0.001
#: The loss rate is re-estimated every this many acknowledged frames.
LOSS_WINDOW = 64
#: How far ahead of the next expected frame a frame may be (a peer's bug or attack).
MAX_AHEAD = 1 << 20
#: Largest reordering buffer, in frames and in bytes (an honest sender has at most a few
#: MiB on the way: the transport stops writing above 1 MiB buffered).
MAX_HELD = 1 << 16
MAX_HELD_BYTES = 32 << 20

Redundancy = Literal["auto", "on", "off"]


class FrameError(ValueError):
    """A channel message that is not a frame of this layer; the message is for people."""


@dataclass(slots=True)
class _Sent:
    seq: int
    flags: int
    payload: bytes
    first: float
    last: float
    retries: int = 0
    copied: bool = False


def _resendable(sent: _Sent) -> bool:
    return sent.retries < MAX_RETRIES and len(sent.payload) <= PROBE_BUDGET


class Recovery:
    """One end of a link: frames to send (``outgoing``) and messages that arrived in order
    (``delivered``), both taken by the caller after every call; ``deadline`` says when
    ``on_timer`` is due."""

    def __init__(self, redundancy: Redundancy = "auto") -> None:
        if redundancy not in ("auto", "on", "off"):
            raise ValueError("redundancy is 'auto', 'on' or 'off'")
        self.redundancy: Redundancy = redundancy
        self.outgoing: list[bytes] = []
        self.delivered: list[bytes | str] = []
        # sending
        self._next_seq = 0
        #: In sequence order (an OrderedDict: taking from the front stays cheap).
        self._unacked: OrderedDict[int, _Sent] = OrderedDict()
        self._copies: list[tuple[float, int]] = []
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._backoff = 1
        self._peer_lost = 0
        self._window_frames = 0
        self._window_lost = 0
        self.loss_rate = 0.0
        self.copying = redundancy == "on"
        # receiving
        self._expected = 0
        self._held: dict[int, tuple[int, bytes]] = {}
        self._held_bytes = 0
        self._ack_due: float | None = None
        self._newest_arrival = 0.0
        self._lost = 0
        self._fast_until = float("-inf")
        self._peer_fast = False
        #: Counters, for measuring what recovery costs (bytes) and does (frames resent).
        self.stats = {"frames": 0, "payload_bytes": 0, "wire_bytes": 0, "acks": 0,
                      "copies": 0, "retries": 0, "fast_retries": 0, "duplicates": 0,
                      "recovered": 0}

    # -- what the caller does --------------------------------------------------------------

    def send(self, payload: bytes | str, now: float) -> None:
        """Frame one message for the peer."""
        flags = 0
        if isinstance(payload, str):
            flags, payload = TEXT, payload.encode()
        seq = self._next_seq
        self._next_seq += 1
        sent = _Sent(seq, flags, bytes(payload), now, now)
        self._unacked[seq] = sent
        self.stats["frames"] += 1
        self.stats["payload_bytes"] += len(payload)
        self._emit(DATA, flags, seq, sent.payload, now)
        if self.copying and len(payload) <= COPY_LIMIT:
            self._copies.append((now + COPY_DELAY, seq))

    def receive(self, frame: bytes, now: float) -> None:
        """Take one channel message from the peer; raises ``FrameError`` for anything
        that is not a frame."""
        if len(frame) < HEADER_SIZE or frame[0] not in (DATA, ACK):
            raise FrameError("it is not a frame of mpyc-webrtc's message recovery")
        kind, flags, seq, ack, bits, delay, lost = _HEADER.unpack_from(frame)
        self._peer_fast = bool(flags & FAST)
        self._acknowledged(ack, bits, delay * 1e-5, lost, now)
        if kind == DATA:
            self._arrived(self._unwrap(seq, self._expected), flags, frame, now)

    def deadline(self) -> float | None:
        """When ``on_timer`` must run next, or None."""
        times = []
        if self._ack_due is not None:
            times.append(self._ack_due)
        if self._copies:
            times.append(self._copies[0][0])
        probe = self._probe_time()
        if probe is not None:
            times.append(probe)
        return min(times) if times else None

    def on_timer(self, now: float, busy: bool = False) -> None:
        """``busy``: the channel still holds data this end gave it (waiting for SCTP's
        congestion window): frames may not have left yet, so none is resent, and their
        probe timeouts start again."""
        while self._copies and self._copies[0][0] <= now:
            _, seq = self._copies.pop(0)
            sent = self._unacked.get(seq)
            if sent is not None and not sent.copied and sent.retries == 0:
                sent.copied = True
                self.stats["copies"] += 1
                self._emit(DATA, sent.flags | COPY, seq, sent.payload, now)
        probe = self._probe_time()
        if probe is not None and probe <= now:
            if busy:
                for sent in self._unacked.values():
                    sent.last = max(sent.last, now - self.pto * self._backoff / 2)
            else:
                self._probe(now)
        if self._ack_due is not None and self._ack_due <= now:
            self.stats["acks"] += 1
            self._emit(ACK, 0, 0, b"", now)

    @property
    def unacknowledged(self) -> int:
        """Frames sent and not yet acknowledged."""
        return len(self._unacked)

    @property
    def pto(self) -> float:
        """The probe timeout without backoff: a round trip, its variation, the ack delay."""
        if self._srtt is None:
            return INITIAL_PTO
        ack_delay = ACK_DELAY if self._peer_fast else CLEAN_ACK_DELAY
        return max(MIN_PTO, self._srtt + max(4 * self._rttvar, GRANULARITY) + ack_delay)

    # -- sending ---------------------------------------------------------------------------

    def _emit(self, kind: int, flags: int, seq: int, payload: bytes, now: float) -> None:
        ack = self._expected
        bits = 0
        if self._held:
            for i in range(32):
                if ack + 1 + i in self._held:
                    bits |= 1 << i
        delay = 0 if self._ack_due is None else min(0xFFFF, int((now - self._newest_arrival) * 1e5))
        self._ack_due = None
        if now < self._fast_until:
            flags |= FAST
        frame = _HEADER.pack(kind, flags, seq % _MOD, ack % _MOD, bits, max(0, delay),
                             self._lost & 0xFFFF) + payload
        self.stats["wire_bytes"] += len(frame)
        self.outgoing.append(frame)

    def _probe_time(self) -> float | None:
        if not self._unacked:
            return None
        interval = self.pto * self._backoff
        # The oldest frame still to be resent was, nearly always, sent first; should a later
        # one be due sooner (the oldest was resent since), it goes with the oldest's probe.
        for sent in self._unacked.values():
            if _resendable(sent):
                return sent.last + interval
        return None

    def _probe(self, now: float) -> None:
        """Nothing came back for a probe timeout: resend the oldest frames due."""
        interval = self.pto * self._backoff
        budget = PROBE_BUDGET
        for sent in list(self._unacked.values()):
            if budget <= 0:
                break
            if _resendable(sent) and sent.last + interval <= now + 1e-9:
                self._resend(sent, now)
                budget -= len(sent.payload) + HEADER_SIZE
        self._backoff = min(MAX_BACKOFF, self._backoff * 2)

    def _resend(self, sent: _Sent, now: float) -> None:
        sent.retries += 1
        sent.last = now
        self.stats["retries"] += 1
        self._emit(DATA, sent.flags | RETRY, sent.seq, sent.payload, now)

    def _acknowledged(self, ack_wire: int, bits: int, delay: float, lost: int,
                      now: float) -> None:
        oldest = next(iter(self._unacked), self._next_seq)
        ack = self._unwrap(ack_wire, oldest)
        if ack > self._next_seq:
            raise FrameError("it acknowledges messages that were never sent")
        if not self._unacked:
            self._count_losses(lost, 0)
            return
        newest: _Sent | None = None
        acked = 0
        unacked = self._unacked
        while unacked and next(iter(unacked)) < ack:
            _, newest = unacked.popitem(last=False)
            acked += 1
        i = 0
        while bits:
            if bits & 1:
                sent = self._unacked.pop(ack + 1 + i, None)
                if sent is not None:
                    acked += 1
                    if newest is None or sent.seq > newest.seq:
                        newest = sent
            bits >>= 1
            i += 1
        self._count_losses(lost, acked)
        if newest is None:
            return
        self._backoff = 1
        if newest.retries == 0:  # Karn: a resent frame's ack is ambiguous
            self._sample(max(now - newest.first - delay, 1e-5))
        # RACK: frames sent well before one that arrived are lost.
        reorder = max(MIN_REORDER, (self._srtt or 0.0) / 4)
        budget = PROBE_BUDGET
        for sent in self._unacked.values():
            if sent.seq > newest.seq or budget <= 0:
                break
            if sent.last + reorder <= newest.first and _resendable(sent):
                self.stats["fast_retries"] += 1
                self._resend(sent, now)
                budget -= len(sent.payload) + HEADER_SIZE

    def _sample(self, rtt: float) -> None:
        """RFC 6298, 2.2-2.3."""
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt

    def _count_losses(self, lost: int, acked: int) -> None:
        """The peer's count of lost frames tells whether copies are worth their bytes."""
        new = (lost - self._peer_lost) & 0xFFFF
        if new > 0x7FFF:  # an older frame's count, overtaken by a newer one
            new = 0
        else:
            self._peer_lost = lost
        self._window_lost += new
        self._window_frames += acked
        if self._window_frames < LOSS_WINDOW:
            return
        rate = self._window_lost / self._window_frames
        self._window_frames = self._window_lost = 0
        self.loss_rate = 0.5 * self.loss_rate + 0.5 * rate
        if self.redundancy == "auto":
            if not self.copying and self.loss_rate >= COPIES_ON:
                self.copying = True
                log.debug("%.1f%% of frames lost: sending small frames twice",
                          100 * self.loss_rate)
            elif self.copying and self.loss_rate < COPIES_OFF:
                self.copying = False

    # -- receiving -------------------------------------------------------------------------

    def _arrived(self, seq: int, flags: int, frame: bytes, now: float) -> None:
        if seq < self._expected or seq in self._held:
            self.stats["duplicates"] += 1
            if flags & RETRY:  # its sender is waiting for this ack: not for ACK_DELAY
                self._ack_due = now  # (its timeout was early: that is no sign of loss)
            return
        if seq - self._expected > MAX_AHEAD or len(self._held) >= MAX_HELD \
                or self._held_bytes + len(frame) > MAX_HELD_BYTES:
            raise FrameError("it skips further ahead than any sender could")
        if flags & (COPY | RETRY):
            self._lost += 1  # the original did not come first
            self.stats["recovered"] += 1
            self._fast_until = now + FAST_ACKS_FOR
        self._newest_arrival = now
        payload = frame[HEADER_SIZE:]
        if seq == self._expected:
            self._deliver(flags, payload)
            self._expected += 1
            while self._expected in self._held:
                flags, payload = self._held.pop(self._expected)
                self._held_bytes -= len(payload)
                self._deliver(flags, payload)
                self._expected += 1
            gap = bool(self._held)
        else:
            self._held[seq] = (flags, payload)
            self._held_bytes += len(payload)
            gap = True
        if gap:  # tell the sender at once, so that it resends what is missing
            self._ack_due = now
            self._fast_until = now + FAST_ACKS_FOR
        elif self._ack_due is None:
            self._ack_due = now + (ACK_DELAY if now < self._fast_until else CLEAN_ACK_DELAY)

    def _deliver(self, flags: int, payload: bytes) -> None:
        if flags & TEXT:
            try:
                self.delivered.append(payload.decode())
            except UnicodeDecodeError:
                raise FrameError("its text is not UTF-8") from None
        else:
            self.delivered.append(payload)

    @staticmethod
    def _unwrap(wire: int, near: int) -> int:
        """The sequence number closest to ``near`` that is ``wire`` modulo 2**32."""
        return near + ((wire - near + (1 << 31)) % _MOD) - (1 << 31)


class RecoveringChannel(BufferedChannel):
    """A ``MessageChannel`` whose messages travel as ``Recovery`` frames over another.

    It stays attached to the inner channel for its whole life (acknowledgements keep
    flowing while no transport is attached, between two runs of a program); what arrives
    meanwhile is held for the next ``attach``, as every ``BufferedChannel`` does.
    """

    def __init__(self, inner: MessageChannel, loop: asyncio.AbstractEventLoop, *,
                 redundancy: Redundancy = "auto", name: str = "the peer") -> None:
        super().__init__()
        self.inner = inner
        self.core = Recovery(redundancy)
        self._loop = loop
        self._name = name
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._broken = False
        inner.attach(self._frame, self._inner_closed, self._drained, self.low_water)

    def __repr__(self) -> str:
        return f"the recovering channel to {self._name}"

    @property
    def buffered_amount(self) -> int:
        return self.inner.buffered_amount

    @property
    def is_open(self) -> bool:
        return self.inner.is_open and not self._broken

    def send(self, data: bytes | str) -> None:
        if self._broken:
            raise ConnectionError("the channel cannot be used")
        self.core.send(data, self._loop.time())
        self._flush()
        self._arm()

    def close(self) -> None:
        self._stop()
        self.inner.close()

    def _set_low_water(self, low_water: int) -> None:
        self.inner.attach(self._frame, self._inner_closed, self._drained, low_water)

    # -- inner channel events ---------------------------------------------------------------

    def _frame(self, data: bytes | str) -> None:
        if self._broken:
            return
        try:
            if data == KEEPALIVE:
                # Sent as it is, outside the frames, by the peer's network while its MPyC
                # was busy (native/network.py): it only says the peer is alive.
                self._received(data)
                return
            if isinstance(data, str):
                raise FrameError("it is a text message")
            self.core.receive(data, self._loop.time())
        except FrameError as exc:
            self._broken = True
            self._stop()
            log.error("unusable message from %s: %s", self._name, exc)
            self._received(LinkUnusable(
                f"the two sides send their messages differently ({exc}). One side has "
                "message recovery switched off, or runs another version of mpyc-webrtc."))
            return
        delivered, self.core.delivered = self.core.delivered, []
        for message in delivered:
            self._received(message)
        self._flush()
        self._arm()

    def _inner_closed(self) -> None:
        self._stop()
        self._closed_remotely()

    # -- timers ------------------------------------------------------------------------------

    def _flush(self) -> None:
        frames, self.core.outgoing = self.core.outgoing, []
        for frame in frames:
            self.inner.send(frame)

    def _arm(self) -> None:
        due = self.core.deadline()
        if due is None:
            self._stop()
            return
        if self._timer is not None:
            if self._timer_at <= due:
                return  # it fires first and re-arms
            self._timer.cancel()
        self._timer_at = due
        self._timer = self._loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._broken:
            return
        try:
            self.core.on_timer(self._loop.time(), busy=self.inner.buffered_amount > 0)
            self._flush()
        except Exception as exc:  # the link is gone: SCTP or the transport will say so
            log.debug("%s: could not send (%s)", self, exc)
            self.core.outgoing.clear()
            return
        self._arm()

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


#: Each channel's layer, for as long as the channel lives: a channel kept for another run
#: of the program (``Mesh(keep_channels=True)``; a browser party makes a new mesh per run)
#: keeps its sequence numbers, and frames still on their way find the same layer.
_layers: weakref.WeakKeyDictionary[MessageChannel, RecoveringChannel] = \
    weakref.WeakKeyDictionary()


def recovering(channels: dict[int, MessageChannel], loop: asyncio.AbstractEventLoop, *,
               redundancy: Redundancy = "auto",
               name: Callable[[int], str] = lambda pid: f"party {pid}",
               ) -> dict[int, RecoveringChannel]:
    """``channels``, each in its ``RecoveringChannel`` (made on first use)."""
    wrapped: dict[int, RecoveringChannel] = {}
    for pid, channel in channels.items():
        if isinstance(channel, RecoveringChannel):
            wrapped[pid] = channel
            continue
        layer = _layers.get(channel)
        if layer is None:
            layer = _layers[channel] = RecoveringChannel(channel, loop, redundancy=redundancy,
                                                         name=name(pid))
        wrapped[pid] = layer
    return wrapped


#: The switch's words (``MPYC_WEBRTC_RECOVERY`` for native peers, ``?recovery=`` on the
#: page): whether frames are recovered by this layer, and when small ones are sent twice.
SETTINGS: dict[str, Redundancy | None] = {
    "": "auto", "1": "auto", "auto": "auto", "copies": "on", "no-copies": "off",
    "0": None, "off": None,
}


def setting(text: str | None) -> Redundancy | None:
    """The recovery switch: None turns the layer off (plain ordered channel); otherwise
    when copies are sent. Both ends of a link must agree (see ``RecoveringChannel``)."""
    key = (text or "").strip().lower()
    if key not in SETTINGS:
        raise ValueError(f"message recovery is one of {', '.join(repr(k) for k in SETTINGS if k)}"
                         f", not {text!r}")
    return SETTINGS[key]
