"""sctp_recovery: a lost chunk comes again by the tail-loss probe or by fast retransmit on
the first gap report, not by T3; the RTO follows the RTT, backs off and comes back.

Each test runs two real aiortc SCTP associations over real DTLS in one process, on an
in-memory wire (testbed/sctp_link.py) that drops exactly the packets a test chooses: the
k-th DATA packet, the last of a burst, a SACK. Times are event-loop times of the packets'
arrival, compared with the PTO and RTO the sender computed, never with a fixed bound.
The patch runs alone and with sctp_tuning's delayed SACKs and sctp_fastpath's short path
(which replaces aiortc's T3 methods), since it must work with each.

Also here: the short path takes unordered reliable channels (the message-recovery layer
uses them), in both directions.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiortc.rtcsctptransport import SCTP_DATA_UNORDERED, USERDATA_MAX_LENGTH, RTCSctpTransport

from mpyc_webrtc.native import patches
from mpyc_webrtc.native.patches import sctp_recovery
from mpyc_webrtc.native.patches.sctp_recovery import (
    PEER_SACK_DELAY,
    PTO_MIN,
    RTO_INITIAL,
    RTO_MIN,
    TIMER_SLACK,
)
from testbed.sctp_link import DATA, SACK, Chunk, Link, Received, Side, sctp_pair

REPO = Path(__file__).resolve().parent.parent

EVERY = [patch.name for patch in patches.PATCHES]
COMBINATIONS = {
    "alone": ["sctp_recovery"],
    "with sctp_tuning": ["sctp_recovery", "sctp_tuning"],
    "with sctp_fastpath": ["sctp_recovery", "sctp_fastpath"],
    "with every patch": EVERY,
}
#: aiortc's RTO.min (RFC 4960): what a lost chunk waits for without the patch.
AIORTC_RTO_MIN = 1.0
#: How early a timer may run here (the patch's own tolerance) plus how unevenly two
#: packets' arrivals are logged after they were sent (a loop iteration each).
EARLY = 0.001 + TIMER_SLACK


def sctp_class(names: list[str]) -> type:
    return patches.compose("RTCSctpTransport", names)


def inbox(side: Side) -> list[Any]:
    received: list[Any] = []
    side.channel.on("message", received.append)
    return received


async def until(condition: Callable[[], bool], guard: float = 10.0) -> None:
    """Wait for ``condition`` (``guard`` only turns a hang into a failure)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + guard
    while not condition():
        if loop.time() > end:
            raise TimeoutError("the condition never held")
        await asyncio.sleep(0.0005)


async def warm_up(a: Side, b: Side, rounds: int = 20) -> None:
    """Request-response rounds, so that both sides have RTT samples; then let delayed
    SACKs go out, so that none rides on the next test packet."""
    got_a, got_b = inbox(a), inbox(b)
    for i in range(rounds):
        a.channel.send(b"ping %d" % i)
        await until(lambda i=i: len(got_b) > i)
        b.channel.send(b"pong %d" % i)
        await until(lambda i=i: len(got_a) > i)
    a.channel.remove_all_listeners("message")
    b.channel.remove_all_listeners("message")
    await asyncio.sleep(0.03)
    assert a.sctp._srtt is not None and b.sctp._srtt is not None


def drop_data(tsn: int, times: int = 1) -> Callable[[bytes, list[Chunk]], bool]:
    """Drop the first ``times`` packets carrying DATA with ``tsn``."""
    left = [times]

    def drop(packet: bytes, chunks: list[Chunk]) -> bool:
        if left[0] and any(kind == DATA and t == tsn for kind, _, t in chunks):
            left[0] -= 1
            return True
        return False

    return drop


def drop_sack(times: int = 1) -> Callable[[bytes, list[Chunk]], bool]:
    """Drop the first ``times`` packets carrying a SACK."""
    left = [times]

    def drop(packet: bytes, chunks: list[Chunk]) -> bool:
        if left[0] and any(kind == SACK for kind, _, _ in chunks):
            left[0] -= 1
            return True
        return False

    return drop


def arrivals(side: Side, tsn: int) -> list[Received]:
    return [packet for packet in side.log if tsn in packet.tsns]


def counts(side: Side) -> dict[str, int]:
    return side.sctp._mw_recovery_counts


def pto_one_in_flight(srtt: float) -> float:
    return max(2 * srtt + PEER_SACK_DELAY, PTO_MIN)


# -- the tail-loss probe ------------------------------------------------------------------


@pytest.mark.parametrize("combination", COMBINATIONS)
async def test_a_lost_tail_chunk_is_sent_again_by_the_probe_not_by_t3(combination):
    async with sctp_pair(sctp_class(COMBINATIONS[combination])) as (a, b, _):
        await warm_up(a, b)
        got = inbox(b)
        tsn = a.sctp._local_tsn
        b.drop = drop_data(tsn)
        srtt, rto, cwnd = a.sctp._srtt, a.sctp._rto, a.sctp._cwnd
        a.channel.send(b"the last message")
        await until(lambda: got == [b"the last message"])

        lost, again = arrivals(b, tsn)
        assert lost.dropped and not again.dropped
        assert counts(a) == {"probes": 1, "fast_retransmits": 0, "t3_expiries": 0}
        # It came after the PTO (one chunk in flight: 2 SRTT and the peer's SACK delay),
        # before the RTO, let alone the second aiortc would have waited.
        waited = again.time - lost.time
        assert pto_one_in_flight(srtt) - EARLY <= waited < rto < AIORTC_RTO_MIN
        # The probe left the congestion window alone, and the message came once.
        assert a.sctp._cwnd >= cwnd
        a.channel.send(b"next")
        await until(lambda: len(got) == 2)
        assert got == [b"the last message", b"next"]


@pytest.mark.parametrize("combination", COMBINATIONS)
async def test_the_last_chunk_of_a_lost_burst_tail_is_probed(combination):
    async with sctp_pair(sctp_class(COMBINATIONS[combination])) as (a, b, _):
        await warm_up(a, b)
        got = inbox(b)
        first = a.sctp._local_tsn
        b.drop = drop_data(first + 3)  # the last of four
        burst = [b"burst %d" % i for i in range(4)]
        for message in burst:
            a.channel.send(message)
        await until(lambda: len(got) == 4)
        assert got == burst
        lost, again = arrivals(b, first + 3)
        assert lost.dropped and not again.dropped
        assert counts(a) == {"probes": 1, "fast_retransmits": 0, "t3_expiries": 0}
        assert again.time - lost.time < a.sctp._rto


@pytest.mark.parametrize("combination", COMBINATIONS)
async def test_a_lost_sack_is_answered_by_the_probe_and_the_peer_keeps_one_copy(combination):
    async with sctp_pair(sctp_class(COMBINATIONS[combination])) as (a, b, _):
        await warm_up(a, b)
        got = inbox(b)
        tsn = a.sctp._local_tsn
        a.drop = drop_sack()
        cwnd = a.sctp._cwnd
        start = len(a.log)
        a.channel.send(b"acknowledge me")
        await until(lambda: got and not a.sctp._sent_queue)

        # b got the chunk twice (the probe), delivered it once, and its second SACK
        # (at once, for a duplicate) acknowledged it.
        assert [packet.dropped for packet in arrivals(b, tsn)] == [False, False]
        assert [packet.dropped for packet in a.log[start:] if SACK in packet.types] \
            == [True, False]
        assert got == [b"acknowledge me"]
        assert counts(a) == {"probes": 1, "fast_retransmits": 0, "t3_expiries": 0}
        assert a.sctp._cwnd >= cwnd


async def test_without_the_patch_the_same_lost_tail_waits_for_t3():
    # What the probe saves: aiortc's T3, at least RTO.min (1 s).
    others = [name for name in EVERY if name != "sctp_recovery"]
    async with sctp_pair(sctp_class(others)) as (a, b, _):
        await warm_up(a, b, rounds=5)
        got = inbox(b)
        tsn = a.sctp._local_tsn
        b.drop = drop_data(tsn)
        a.channel.send(b"the last message")
        await until(lambda: got == [b"the last message"])
        lost, again = arrivals(b, tsn)
        assert again.time - lost.time >= AIORTC_RTO_MIN - EARLY


# -- fast retransmit on the first gap report (RACK) -----------------------------------


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
@pytest.mark.parametrize("combination", COMBINATIONS)
async def test_a_lost_chunk_followed_by_others_is_retransmitted_on_the_first_gap_report(
        combination, ordered):
    async with sctp_pair(sctp_class(COMBINATIONS[combination]), ordered=ordered) as (a, b, _):
        await warm_up(a, b)
        got = inbox(b)
        first = a.sctp._local_tsn
        b.drop = drop_data(first)  # the first of three: two gap reports at most follow
        srtt = a.sctp._srtt
        burst = [b"burst %d" % i for i in range(3)]
        for message in burst:
            a.channel.send(message)
        await until(lambda: len(got) == 3)

        assert got == burst if ordered else sorted(got) == burst
        lost, again = arrivals(b, first)
        assert lost.dropped and not again.dropped
        assert counts(a) == {"probes": 0, "fast_retransmits": 1, "t3_expiries": 0}
        # One gap report was enough: it came before the probe would have been due.
        assert again.time - lost.time < 2 * srtt + TIMER_SLACK


@pytest.mark.parametrize("combination", COMBINATIONS)
async def test_a_lost_retransmission_is_found_too(combination):
    async with sctp_pair(sctp_class(COMBINATIONS[combination])) as (a, b, _):
        await warm_up(a, b)
        got = inbox(b)
        first = a.sctp._local_tsn
        b.drop = drop_data(first, times=2)  # the chunk and its fast retransmission
        burst = [b"burst %d" % i for i in range(3)]
        for message in burst:
            a.channel.send(message)
        await until(lambda: len(got) == 3)
        assert got == burst
        assert [packet.dropped for packet in arrivals(b, first)] == [True, True, False]
        # The retransmission was the tail: the probe sent it again, not T3.
        assert counts(a) == {"probes": 1, "fast_retransmits": 1, "t3_expiries": 0}


# -- the RTO ------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.02])
async def test_the_rto_follows_the_measured_rtt_down_to_its_floor(delay):
    async with sctp_pair(sctp_class(EVERY), link=Link(delay=delay)) as (a, b, _):
        assert a.sctp._rto == b.sctp._rto == RTO_INITIAL < 3  # aiortc's RTO.initial: 3 s
        await warm_up(a, b)
        for side in (a, b):
            srtt, rttvar = side.sctp._srtt, side.sctp._rttvar
            assert srtt >= 2 * delay - EARLY
            assert side.sctp._rto == max(RTO_MIN, srtt + max(TIMER_SLACK, 4 * rttvar))
            assert side.sctp._rto < AIORTC_RTO_MIN


@pytest.mark.parametrize("combination", COMBINATIONS)
async def test_the_rto_doubles_on_consecutive_t3_expiries_and_comes_back_on_an_ack(
        combination):
    async with sctp_pair(sctp_class(COMBINATIONS[combination])) as (a, b, _):
        await warm_up(a, b)
        got = inbox(b)
        tsn = a.sctp._local_tsn
        b.drop = drop_data(tsn, times=3)  # the chunk, the probe and T3's first resend
        rto = a.sctp._rto
        a.channel.send(b"persist")
        await until(lambda: got == [b"persist"] and not a.sctp._sent_queue)

        sends = arrivals(b, tsn)
        assert [packet.dropped for packet in sends] == [True, True, True, False]
        assert counts(a) == {"probes": 1, "fast_retransmits": 0, "t3_expiries": 2}
        # T3 ran from the probe for one RTO, then for two.
        first_t3 = sends[2].time - sends[1].time
        second_t3 = sends[3].time - sends[2].time
        assert first_t3 >= rto - EARLY
        assert second_t3 >= 2 * rto - EARLY
        # The acknowledgement ended the backoff (no new RTT sample: the chunk was resent).
        assert a.sctp._mw_backoff == 0 and a.sctp._rto == rto
        # T3 collapsed the congestion window (RFC 4960 7.2.3); the probe had not.
        assert a.sctp._cwnd == USERDATA_MAX_LENGTH


# -- setting up the association --------------------------------------------------------

#: INIT ACK's chunk type (RFC 9260 3.3.3).
INIT_ACK = 2


@pytest.mark.parametrize("combination", ["alone", "with every patch"])
async def test_the_association_comes_up_when_both_init_acks_are_lost(combination,
                                                                      monkeypatch):
    """Both ends send INIT (RFC 8841 9.3) and answer the other's with an INIT ACK. When
    both INIT ACKs are lost, only INITs sent again can help; aiortc sent them with the
    peer's verification tag (learnt from its INIT) instead of 0 (RFC 9260 8.5.1), the peer
    dropped every one, and the association never came up. (RTO.initial scaled down from
    1 s to 20 ms: aiortc gives up after 9 INITs.)"""
    monkeypatch.setattr(sctp_recovery, "RTO_INITIAL", RTO_INITIAL / 50)
    lost: set[str] = set()

    def first_init_ack(side: str, packet: bytes, found: list[Chunk]) -> bool:
        if side not in lost and any(kind == INIT_ACK for kind, _, _ in found):
            lost.add(side)
            return True
        return False

    async with sctp_pair(sctp_class(COMBINATIONS[combination]),
                         drop_setup=first_init_ack) as (a, b, _):
        got = inbox(a)
        b.channel.send(b"up")
        await until(lambda: got == [b"up"])
    assert lost == {"a", "b"}


# -- everything arrives exactly once, in order ---------------------------------------


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
@pytest.mark.parametrize("combination", COMBINATIONS)
async def test_random_loss_and_reordering_deliver_every_message_once(combination, ordered):
    link = Link(loss=0.05, hold=0.05, seed=11)
    async with sctp_pair(sctp_class(COMBINATIONS[combination]), link=link,
                         ordered=ordered) as (a, b, _):
        rng = random.Random(5)
        messages = {side: [] for side in ("a", "b")}
        for side in messages:
            for i in range(150):
                size = rng.choice((8, 100, 1000, 2500, 5000)) if rng.random() < 0.2 else 20
                messages[side].append(i.to_bytes(4, "big") + rng.randbytes(size - 4))
        got_a, got_b = inbox(a), inbox(b)
        for i in range(150):
            # Mostly rounds, sometimes a burst of several before the answers.
            a.channel.send(messages["a"][i])
            b.channel.send(messages["b"][i])
            if i % 5 != 4:
                await until(lambda i=i: len(got_b) > i - 3 and len(got_a) > i - 3)
        await until(lambda: len(got_a) == len(got_b) == 150, guard=30)
        if ordered:
            assert got_b == messages["a"] and got_a == messages["b"]
        else:
            assert sorted(got_b) == sorted(messages["a"])
            assert sorted(got_a) == sorted(messages["b"])
        assert link.lost > 0 and link.held > 0
        recovered = {k: counts(a)[k] + counts(b)[k] for k in counts(a)}
        assert recovered["probes"] + recovered["fast_retransmits"] > 0


# -- the short path takes unordered channels -----------------------------------------


def counting(cls: type) -> type:
    """``cls``, counting the messages its short path sends and receives."""

    class Counting(cls):  # type: ignore[misc,valid-type]
        short_sends = 0
        short_receives = 0

        def _mw_send_now(self, channel: Any, data: bytes) -> None:
            self.short_sends += 1
            super()._mw_send_now(channel, data)

        def _mw_receive_data_now(self, flags: int, body: bytes) -> int | None:
            stream_id = super()._mw_receive_data_now(flags, body)
            if stream_id is not None:
                self.short_receives += 1
            return stream_id

    return Counting


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
@pytest.mark.parametrize("names", [["sctp_fastpath"], EVERY], ids=["fastpath", "every"])
async def test_the_short_path_takes_reliable_channels_ordered_or_not(names, ordered):
    cls = counting(sctp_class(names))
    async with sctp_pair(cls, ordered=ordered) as (a, b, _):
        got_a, got_b = inbox(a), inbox(b)
        for i in range(50):
            a.channel.send(b"request %d" % i)
            await until(lambda i=i: len(got_b) > i)
            b.channel.send(b"response %d" % i)
            await until(lambda i=i: len(got_a) > i)
        assert got_b == [b"request %d" % i for i in range(50)]
        assert got_a == [b"response %d" % i for i in range(50)]
        for sender, receiver in ((a, b), (b, a)):
            assert sender.sctp.short_sends == 50
            assert receiver.sctp.short_receives == 50
            flags = {flag for packet in receiver.log for kind, flag, _ in packet.chunks
                     if kind == DATA}
            assert {bool(flag & SCTP_DATA_UNORDERED) for flag in flags} == {not ordered}
        # An unordered message takes no stream sequence number (as aiortc's _send).
        assert (a.sctp._outbound_stream_seq.get(0, 0) == 0) is (not ordered)


async def test_an_unordered_message_overtakes_a_lost_one():
    # Unordered delivery is what the short path must not undo: the second message is
    # handed on while the first waits for its retransmission.
    async with sctp_pair(sctp_class(EVERY), ordered=False) as (a, b, _):
        await warm_up(a, b)
        got = inbox(b)
        first = a.sctp._local_tsn
        b.drop = drop_data(first)
        a.channel.send(b"first")
        a.channel.send(b"second")
        await until(lambda: len(got) == 2)
        assert got == [b"second", b"first"]


def test_the_patch_is_written_for_aiortc_alone():
    patch = next(p for p in patches.PATCHES if p.name == "sctp_recovery")
    assert patch.requires == {"aiortc": "1.16.0"}
    assert patch.switch == "MPYC_WEBRTC_SCTP_RECOVERY"
    assert issubclass(sctp_recovery.LossRecoverySctpTransport, RTCSctpTransport)


def test_the_benchmark_runs_and_prints_patched_against_unpatched():
    done = subprocess.run([sys.executable, "-m", "bench.sctp_loss", "--rounds", "20",
                           "--loss", "0", "--rtt-ms", "0"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    row = done.stdout.splitlines()[-1].split()
    assert row[:2] == ["0ms", "0%"] and float(row[7]) > 0, done.stdout
