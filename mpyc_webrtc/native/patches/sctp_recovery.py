"""Loss recovery for aiortc's SCTP as a modern TCP does it: an RTO from the measured RTT,
a tail-loss probe, and fast retransmit on the first gap report.

MPyC's rounds are request and response with usually one packet in flight per peer, and
aiortc's SCTP recovers a lost packet the way RFC 4960 did in 2007:

- the RTO is at least 1 s (RTO.min, RFC 4960 15) and 3 s before the first RTT sample
  (RTO.initial), where a round takes a millisecond;
- fast retransmit needs three SACKs that report the chunk missing (7.2.4): with one
  packet in flight there are none, so every lost packet waits for T3, the whole RTO;
- there is no tail-loss probe, and T3 expiring does not double the RTO (6.3.3 E2).

At 1 % loss MPyC's rounds took about 85 times as long as over TCP. Linux TCP recovers a
lost tail in about two RTTs (a probe) and a loss followed by other data in about one.
``LossRecoverySctpTransport`` does the same for aiortc's SCTP:

- **RTO** (RFC 6298, as RFC 4960 6.3.1 computes it): SRTT and RTTVAR as before, RTO =
  SRTT + max(G, 4 RTTVAR) with G = ``TIMER_SLACK``, at least ``RTO_MIN`` (50 ms, where
  Linux TCP uses 200 ms for peers that delay ACKs by up to 200 ms: ours delay SACKs by
  ``sctp_tuning.SACK_DELAY``, 5 ms, and the tail-loss probe below comes first anyway),
  ``RTO_INITIAL`` (1 s, RFC 6298 2.1) before the first sample. Each consecutive T3
  expiry doubles it (RFC 4960 6.3.3 E2, RFC 6298 5.5); the first SACK that acknowledges
  new data brings it back to the computed value (as Linux does).
- **Tail-loss probe** (RFC 8985 7): when data is outstanding and nothing new has been
  acknowledged for PTO = 2 SRTT (plus the peer's largest SACK delay,
  ``PEER_SACK_DELAY``, when one chunk is in flight, since its SACK may wait for DATA to
  ride on; else plus ``TIMER_SLACK``), at least ``PTO_MIN`` and before T3 would expire,
  the last outstanding chunk is sent again, once, and T3 restarts from then. The probe
  neither touches the congestion window nor counts as a T3 expiry: a lost tail chunk
  arrives with it, and if the chunk had arrived (its SACK lost or late) the peer reports
  a duplicate at once, with a SACK that acknowledges everything (a peer that holds its
  SACKs back longer, as a browser's may, gets an early probe now and then: one packet,
  answered at once). (RFC 8985 7.4 would
  halve cwnd when a probe turns out to have repaired a loss; that needs DSACK-like
  reports on every path, and with MPyC's rounds cwnd stays far above what is in flight,
  so it is left out.)
- **RACK** (RFC 8985 6): a chunk is lost once a chunk sent after it (later, or with a
  higher TSN at the same time) is acknowledged, by gap report or cumulatively, and a
  reordering window has passed since; it is retransmitted at once in fast recovery (cwnd
  halved once per recovery, RFC 4960 7.2.4), instead of after three miss indications.
  Retransmissions count with their own send time, so a lost retransmission is found the
  same way. The window is 0 until reordering is seen (a never-retransmitted chunk
  acknowledged after a later one, or the peer reporting a fast-retransmitted TSN as a
  duplicate), then min RTT / 4 (RFC 8985 6.2), with a timer for chunks whose window
  is still open.

- **INIT sent again** (RFC 9260 8.5.1): always with the verification tag 0. Both ends
  start the association (RFC 8841 9.3); aiortc sent its INIT again with the peer's tag
  once it had answered the peer's INIT, the peer dropped it as misaddressed, and when
  both INIT ACKs were lost neither end could ever finish (``tests/test_sctp_recovery.py``
  shows it; in the simulated internet at 15 % loss it stopped sessions from starting).

aiortc's own three-strike rule stays in place underneath (it can only add
retransmissions the window has not yet allowed). The probe and the RACK window share one
event-loop timer (T3 keeps its own), re-armed only when it would fire too late, as
``sctp_fastpath`` does for T3: request-response traffic arms and disarms the probe once
per message.

It composes with ``sctp_tuning`` and ``sctp_fastpath`` (``patches.PATCHES`` puts it
first): it extends T3's methods (``sctp_fastpath`` replaces aiortc's with a deadline
timer, and both call ``_update_rto``), sees every SACK with gap reports or duplicates in
``_receive_sack_chunk`` (``sctp_fastpath`` applies only SACKs without either itself), and
every retransmission in ``_send_chunk`` (before ``sctp_tuning`` bundles a SACK with it).
It relies on this much of aiortc 1.16's ``RTCSctpTransport``: the sent queue's chunks and
their bookkeeping (``_sent_count``, ``_sent_time``, ``_acked``, ``_retransmit``,
``_abandoned``, ``_in_flight``), the congestion state (``_cwnd``, ``_ssthresh``,
``_fast_recovery_exit``, ``_fast_recovery_transmit``), ``_srtt``/``_rttvar``/``_rto`` and
the T3 methods, hence the version it is written for.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Container
from typing import Any

from aiortc.rtcsctptransport import (
    SCTP_RTO_ALPHA,
    SCTP_RTO_BETA,
    SCTP_RTO_MAX,
    SCTP_TSN_MODULO,
    USERDATA_MAX_LENGTH,
    DataChunk,
    InitChunk,
    RTCSctpTransport,
    SackChunk,
    serialize_packet,
)
from aiortc.utils import uint32_gt, uint32_gte

from .sctp_tuning import SACK_DELAY

#: Timer granularity: how late an event-loop timer or the peer's loop may run (RFC 6298's
#: G, RFC 8985's 2 ms allowance for a PTO with more than one chunk in flight).
TIMER_SLACK = 0.002
#: The lowest RTO: many times the peer's SACK delay and the timer granularity, and well
#: above the tail-loss probe's PTO on a LAN, so the probe comes first (module docstring).
RTO_MIN = 0.05
#: The RTO before the first RTT sample (RFC 6298 2.1; aiortc: 3 s).
RTO_INITIAL = 1.0
#: The shortest PTO (Linux TCP's TLP: 10 ms): below it, a probe races the SACK.
PTO_MIN = 0.01
#: How long the peer may hold back the SACK for a single packet (``sctp_tuning``'s delay,
#: plus its timer's granularity): added to the PTO when one chunk is in flight.
PEER_SACK_DELAY = SACK_DELAY + TIMER_SLACK
#: Fast-retransmitted TSNs kept to recognize the peer's duplicate reports (reordering).
_REMEMBERED = 64

_CLOSED = RTCSctpTransport.State.CLOSED


def _sent_at(chunk: Any) -> float | None:
    """When ``chunk`` was last sent (``time.time()``, as aiortc's ``_sent_time``; None
    for an abandoned chunk that never was)."""
    return getattr(chunk, "_mw_resent", None) or chunk._sent_time


class LossRecoverySctpTransport(RTCSctpTransport):
    """aiortc's SCTP transport, recovering from loss as RACK-TLP (RFC 8985) does."""

    #: Consecutive T3 expiries since new data was last acknowledged.
    _mw_backoff = 0
    #: ``_last_sacked_tsn`` when last looked at: a change means new data was acknowledged.
    _mw_acked_tsn: int | None = None
    #: The probe of this episode went out (or T3 expired): no other until new data is
    #: acknowledged.
    _mw_probe_spent = False
    _mw_min_rtt = math.inf
    #: Event-loop times: when T3 expires, the probe is due, the RACK window ends (0: not).
    _mw_t3_due = 0.0
    _mw_probe_due = 0.0
    _mw_reorder_due = 0.0
    _mw_recovery_timer: asyncio.Handle | None = None
    #: When it runs (uvloop hands out a plain Handle, without ``when()``, for due times
    #: within its millisecond).
    _mw_recovery_timer_when = 0.0
    #: RACK (RFC 8985 6.1): the most recently sent chunk known to be delivered (its send
    #: time and TSN) and its RTT; the highest TSN delivered; whether reordering was seen.
    _mw_rack_sent = 0.0
    _mw_rack_tsn = 0
    _mw_rack_rtt = 0.0
    _mw_fack: int | None = None
    _mw_reordering = False
    #: Inside ``_t3_start`` (sctp_fastpath's calls ``_t3_restart``: arm the probe once).
    _mw_starting = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rto = RTO_INITIAL
        self._mw_fast_retransmitted: set[int] = set()
        #: What recovered lost chunks, for tests and benchmarks.
        self._mw_recovery_counts = {"probes": 0, "fast_retransmits": 0, "t3_expiries": 0}

    # -- RTO (RFC 6298) -----------------------------------------------------------------

    def _update_rto(self, R: float) -> None:
        # As aiortc's, with this module's bounds; a new sample ends any backoff.
        if self._srtt is None or self._rttvar is None:
            self._rttvar = R / 2
            self._srtt = R
        else:
            self._rttvar = (1 - SCTP_RTO_BETA) * self._rttvar + SCTP_RTO_BETA * abs(
                self._srtt - R)
            self._srtt = (1 - SCTP_RTO_ALPHA) * self._srtt + SCTP_RTO_ALPHA * R
        if R < self._mw_min_rtt:
            self._mw_min_rtt = R
        self._mw_backoff = 0
        # (_mw_rto() without backoff, written out: this runs for nearly every SACK)
        self._rto = min(max(RTO_MIN, self._srtt + max(TIMER_SLACK, 4 * self._rttvar)),
                        SCTP_RTO_MAX)

    def _mw_rto(self) -> float:
        """The RTO: computed from SRTT and RTTVAR, doubled per consecutive T3 expiry."""
        if self._srtt is None or self._rttvar is None:
            rto = RTO_INITIAL
        else:
            rto = max(RTO_MIN, self._srtt + max(TIMER_SLACK, 4 * self._rttvar))
        return min(rto * 2 ** self._mw_backoff, SCTP_RTO_MAX)

    def _mw_check_acked(self) -> None:
        """If new data was acknowledged since the last look: no backoff, a new episode
        for the probe."""
        if self._last_sacked_tsn != self._mw_acked_tsn:
            self._mw_acked_tsn = self._last_sacked_tsn
            self._mw_probe_spent = False
            if self._mw_backoff:
                self._mw_backoff = 0
                self._rto = self._mw_rto()

    # -- T3 (extended, whoever implements it) -------------------------------------------

    def _t3_start(self) -> None:
        self._mw_starting = True  # (sctp_fastpath's _t3_start calls _t3_restart)
        try:
            super()._t3_start()
        finally:
            self._mw_starting = False
        self._mw_t3_started()

    def _t3_restart(self) -> None:
        self._mw_check_acked()  # a SACK that acknowledged new data restarts T3 ...
        super()._t3_restart()
        if not self._mw_starting:
            self._mw_t3_started()

    def _mw_t3_started(self) -> None:
        """T3 (re)started: note when it expires, and arm the probe."""
        now = self._loop.time()
        self._mw_t3_due = now + self._rto
        self._mw_schedule_probe(now)

    def _t3_cancel(self) -> None:
        if self._last_sacked_tsn != self._mw_acked_tsn:  # ... or stops it, when it
            self._mw_check_acked()  # acknowledged everything
        self._mw_probe_due = 0.0
        super()._t3_cancel()
        if self._association_state is _CLOSED and self._mw_recovery_timer is not None:
            self._mw_recovery_timer.cancel()
            self._mw_recovery_timer = None

    def _t3_expired(self) -> None:
        self._mw_backoff += 1
        self._rto = self._mw_rto()
        self._mw_probe_spent = True  # everything is retransmitted now: no probe
        self._mw_probe_due = 0.0
        self._mw_recovery_counts["t3_expiries"] += 1
        super()._t3_expired()

    # -- sending ------------------------------------------------------------------------

    async def _send_chunk(self, chunk: Any) -> None:
        if isinstance(chunk, InitChunk):
            # RFC 9260 8.5.1: a packet with INIT carries the verification tag 0. aiortc
            # sends it with the peer's tag once it took the peer's INIT (both ends start
            # the association, RFC 8841 9.3), and the peer drops it: after both INIT ACKs
            # were lost, no INIT got through any more, and the association never came up.
            self._RTCSctpTransport__log_debug("> %s", chunk)
            await self._RTCSctpTransport__transport._send_data(serialize_packet(
                self._local_port, self._remote_port, 0, chunk))
            return
        if isinstance(chunk, DataChunk):
            if chunk._sent_count > 1:  # a retransmission: RACK goes by its time
                chunk._mw_resent = time.time()
            else:  # new data: the probe waits for it too (RFC 8985 7.2)
                self._mw_schedule_probe()
        await super()._send_chunk(chunk)

    # -- the tail-loss probe (RFC 8985 7) -----------------------------------------------

    def _mw_schedule_probe(self, now: float | None = None) -> None:
        """Arm the probe PTO from now (event-loop time), unless it is spent, there is no
        RTT sample yet (T3 alone then), nothing is outstanding or T3 comes first."""
        srtt = self._srtt
        if self._mw_probe_spent or srtt is None or not self._sent_queue:
            self._mw_probe_due = 0.0
            return
        one = len(self._sent_queue) == 1
        pto = max(2 * srtt + (PEER_SACK_DELAY if one else TIMER_SLACK), PTO_MIN)
        if now is None:
            now = self._loop.time()
        # Before T3 (RFC 8985 7.2: PTO at most the time left to the RTO), by a margin,
        # so that the two never fire in the same loop iteration in the wrong order.
        due = min(now + pto, self._mw_t3_due - TIMER_SLACK)
        if due <= now:
            self._mw_probe_due = 0.0
            return
        self._mw_probe_due = due
        self._mw_arm(due)

    def _mw_probe(self) -> None:
        """Send the last outstanding chunk again (RFC 8985 7.3), once per episode."""
        queue = self._sent_queue
        if self._mw_probe_spent or not queue or self._association_state is _CLOSED:
            return
        chunk = None
        for candidate in reversed(queue):
            if candidate._retransmit:
                return  # retransmissions are waiting: fast recovery or T3 is at work
            if not candidate._acked and not candidate._abandoned and chunk is None:
                chunk = candidate
        if chunk is None:
            return
        self._mw_probe_spent = True
        if self._maybe_abandon(chunk):  # partially reliable and out of time: say so
            self._update_advanced_peer_ack_point()
            asyncio.ensure_future(self._transmit())
            return
        chunk._sent_count += 1  # (so no RTT sample is taken from it: Karn)
        self._mw_recovery_counts["probes"] += 1
        self._t3_restart()  # the RTO counts from the probe (RFC 8985 7.3)
        asyncio.ensure_future(self._mw_send_probe(chunk))

    async def _mw_send_probe(self, chunk: DataChunk) -> None:
        try:
            await self._send_chunk(chunk)
        except ConnectionError:
            pass  # the link is gone: T3 and the association's end take it from here

    # -- RACK (RFC 8985 6) --------------------------------------------------------------

    async def _receive_sack_chunk(self, chunk: SackChunk) -> None:
        delivered = False
        if not uint32_gt(self._last_sacked_tsn, chunk.cumulative_tsn):  # (else stale)
            now = time.time()
            acked = self._mw_note_delivered(chunk, now)
            delivered = acked is not None
            if delivered and self._mw_detect_losses(now, acked):
                self._mw_enter_fast_recovery()
        # aiortc's: acknowledges, strikes, adjusts cwnd, restarts T3 and transmits (the
        # chunks marked lost above first).
        await super()._receive_sack_chunk(chunk)
        if delivered:  # (a SACK that only adds gap reports does not restart T3)
            self._mw_probe_spent = False
            self._mw_schedule_probe()

    def _mw_note_delivered(self, sack: SackChunk, now: float) -> set[int] | None:
        """Update RACK's state from the chunks ``sack`` acknowledges for the first time;
        returns the TSNs of the outstanding chunks it acknowledges (aiortc marks them
        only afterwards) if there were such new ones, else None."""
        cumulative = sack.cumulative_tsn
        seen: set[int] = set()
        highest = cumulative
        for start, end in sack.gaps:
            for pos in range(start, end + 1):
                seen.add((cumulative + pos) % SCTP_TSN_MODULO)
            highest = (cumulative + end) % SCTP_TSN_MODULO
        fast = self._mw_fast_retransmitted
        if fast and any(tsn in fast for tsn in sack.duplicates):
            self._mw_reordering = True  # the original arrived after all: it was late
        fack = self._mw_fack
        newest = None
        newest_sent = 0.0
        any_new = False
        acked: set[int] = set()
        for schunk in self._sent_queue:
            tsn = schunk.tsn
            if uint32_gt(tsn, highest):
                break
            if not (uint32_gte(cumulative, tsn) or tsn in seen):
                continue
            acked.add(tsn)
            if schunk._acked:
                continue  # gap-acknowledged before
            any_new = True
            sent = _sent_at(schunk)
            if sent is None:
                continue  # abandoned before it was ever sent
            if schunk._sent_count > 1:
                if now - sent < self._mw_min_rtt:
                    continue  # too soon to be for the retransmission (RFC 8985 6.2 step 2)
            elif fack is not None and uint32_gt(fack, tsn):
                self._mw_reordering = True  # delivered after a later chunk
            if newest is None or sent > newest_sent or (
                    sent == newest_sent and uint32_gt(tsn, newest.tsn)):
                newest, newest_sent = schunk, sent
        if any_new and (fack is None or uint32_gt(highest, fack)):
            self._mw_fack = highest
        if newest is not None and (newest_sent > self._mw_rack_sent or (
                newest_sent == self._mw_rack_sent
                and uint32_gt(newest.tsn, self._mw_rack_tsn))):
            self._mw_rack_sent, self._mw_rack_tsn = newest_sent, newest.tsn
            self._mw_rack_rtt = now - newest_sent
        if len(fast) > _REMEMBERED:
            fast.clear()
        return acked if any_new else None

    def _mw_reorder_window(self) -> float:
        if not self._mw_reordering or self._srtt is None:
            return 0.0
        return min(self._mw_min_rtt / 4, self._srtt)

    def _mw_detect_losses(self, now: float, acked: Container[int] = ()) -> bool:
        """Mark the outstanding chunks RACK deems lost for retransmission, but not those
        in ``acked``; returns whether there were any. Arms the timer for those whose
        window is still open."""
        rack_sent, rack_tsn = self._mw_rack_sent, self._mw_rack_tsn
        if not rack_sent:
            return False
        window = self._mw_reorder_window()
        lost = 0
        wait = math.inf
        for schunk in self._sent_queue:
            if schunk._acked or schunk._retransmit or schunk._abandoned or schunk.tsn in acked:
                continue
            sent = _sent_at(schunk)
            if sent is None or sent > rack_sent or (
                    sent == rack_sent and uint32_gte(schunk.tsn, rack_tsn)):
                continue  # sent after the newest delivered chunk: not known lost
            left = sent + self._mw_rack_rtt + window - now
            if left > 0:
                wait = min(wait, left)
                continue
            # As aiortc marks a chunk struck three times.
            if not self._maybe_abandon(schunk):
                schunk._retransmit = True
                self._mw_fast_retransmitted.add(schunk.tsn)
                lost += 1
            schunk._acked = False
            self._flight_size_decrease(schunk)
        if lost:
            self._mw_recovery_counts["fast_retransmits"] += lost
        if wait < math.inf:
            self._mw_reorder_due = due = self._loop.time() + wait
            self._mw_arm(due)
        return lost > 0

    def _mw_enter_fast_recovery(self) -> None:
        """As aiortc enters fast recovery on loss (RFC 4960 7.2.3, 7.2.4): once."""
        if self._fast_recovery_exit is None and self._sent_queue:
            self._ssthresh = max(self._cwnd // 2, 4 * USERDATA_MAX_LENGTH)
            self._cwnd = self._ssthresh
            self._partial_bytes_acked = 0
            self._fast_recovery_exit = self._sent_queue[-1].tsn
            self._fast_recovery_transmit = True

    # -- the one timer --------------------------------------------------------------------

    def _mw_arm(self, due: float) -> None:
        timer = self._mw_recovery_timer
        if timer is None or self._mw_recovery_timer_when > due:
            if timer is not None:
                timer.cancel()
            self._mw_recovery_timer = self._loop.call_at(due, self._mw_timer_fired)
            self._mw_recovery_timer_when = due

    def _mw_timer_fired(self) -> None:
        self._mw_recovery_timer = None
        if self._association_state is _CLOSED:
            return
        now = self._loop.time() + 0.001  # (a timer may run a hair early)
        if self._mw_reorder_due and self._mw_reorder_due <= now:
            self._mw_reorder_due = 0.0
            if self._mw_detect_losses(time.time()):
                self._mw_enter_fast_recovery()
                asyncio.ensure_future(self._transmit())
        if self._mw_probe_due and self._mw_probe_due <= now:
            self._mw_probe_due = 0.0
            self._mw_probe()
        due = min((d for d in (self._mw_reorder_due, self._mw_probe_due) if d),
                  default=0.0)
        if due:
            self._mw_arm(due)
