"""Message recovery (``mpyc_webrtc.recovery``): whatever the network does to frames (loss,
duplication, reordering, delay), each end delivers exactly the messages the other sent,
once each and in order; and it recovers a loss in about a round trip, not an SCTP timeout.

The two ends run on a virtual clock over a simulated unordered, reliable channel: a frame
the network "loses" arrives only after ``SCTP_LATE`` (as SCTP's own retransmission would
bring it), so whatever arrives sooner is this layer's doing.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_mesh import _close_like_shutdown

from mpyc_webrtc import recovery
from mpyc_webrtc.memory import MemoryChannel, MemoryHub, channel_pair
from mpyc_webrtc.mesh import install_mesh
from mpyc_webrtc.recovery import (
    ACK_DELAY,
    CLEAN_ACK_DELAY,
    COPY_LIMIT,
    HEADER_SIZE,
    MAX_RETRIES,
    PROBE_BUDGET,
    FrameError,
    RecoveringChannel,
    Recovery,
    recovering,
    setting,
)
from mpyc_webrtc.transport import LinkUnusable

#: When SCTP would deliver a frame the network lost (Chrome's minimum RTO).
SCTP_LATE = 0.4


@dataclass
class Network:
    """Frames between ends 0 and 1: each copy is lost (then late), duplicated, delayed."""

    delay: float = 0.005
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    #: Frames lost for good (no late delivery) by (sender, index of the frame sent).
    drop: set[tuple[int, int]] = field(default_factory=set)
    #: Frames that arrive late (the network's loss, SCTP's retransmission) by the same.
    late: set[tuple[int, int]] = field(default_factory=set)
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.sent = [0, 0]

    def arrivals(self, sender: int, now: float) -> list[float]:
        """When the frame ``sender`` sends now arrives (none, one or two times)."""
        index = self.sent[sender]
        self.sent[sender] += 1
        if (sender, index) in self.drop:
            return []
        times = []
        for _ in range(2 if self.rng.random() < self.duplicate else 1):
            at = now + self.delay + self.rng.random() * self.jitter
            if (sender, index) in self.late or self.rng.random() < self.loss:
                at += SCTP_LATE
            times.append(at)
        return times


class Link:
    """Two ``Recovery`` ends over a ``Network``, on a virtual clock."""

    def __init__(self, network: Network, redundancy: recovery.Redundancy = "auto") -> None:
        self.network = network
        self.ends = (Recovery(redundancy), Recovery(redundancy))
        self.now = 0.0
        self.got: tuple[list, list] = ([], [])
        self.arrived_at: tuple[list, list] = ([], [])
        self._events: list[tuple[float, int, int, bytes]] = []
        self._order = 0

    def send(self, sender: int, message: bytes | str) -> None:
        self.ends[sender].send(message, self.now)
        self._ship(sender)

    def run(self, until: float | None = None) -> None:
        """Deliver frames and fire timers until nothing is left (or the time ``until``)."""
        while True:
            times = [(d, -1, i) for i, end in enumerate(self.ends)
                     if (d := end.deadline()) is not None]
            if self._events:
                times.append((self._events[0][0], 0, -1))
            if not times:
                return
            at, _, who = min(times)
            if until is not None and at > until:
                self.now = until
                return
            self.now = max(self.now, at)
            if who >= 0:
                self.ends[who].on_timer(self.now)
                self._ship(who)
            else:
                _, _, to, frame = heapq.heappop(self._events)
                self.ends[to].receive(frame, self.now)
                self._ship(to)

    def _ship(self, sender: int) -> None:
        end = self.ends[sender]
        frames, end.outgoing = end.outgoing, []
        for frame in frames:
            for at in self.network.arrivals(sender, self.now):
                self._order += 1
                heapq.heappush(self._events, (at, self._order, 1 - sender, frame))
        receiver = self.ends[1 - sender]
        delivered, receiver.delivered = receiver.delivered, []  # noqa: F841 (none here)
        for index in (0, 1):
            got, self.ends[index].delivered = self.ends[index].delivered, []
            self.got[index].extend(got)
            self.arrived_at[index].extend([self.now] * len(got))


messages = st.lists(
    st.one_of(st.binary(max_size=3000), st.text(max_size=50)), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=messages, b=messages,
    gaps=st.lists(st.floats(0, 0.02), min_size=80, max_size=80),
    loss=st.sampled_from([0.0, 0.01, 0.05, 0.3]),
    duplicate=st.sampled_from([0.0, 0.05, 0.3]),
    jitter=st.sampled_from([0.0, 0.003, 0.03]),
    delay=st.sampled_from([0.0002, 0.005, 0.05]),
    redundancy=st.sampled_from(["auto", "on", "off"]),
    seed=st.integers(0, 2**16),
)
def test_every_message_arrives_once_and_in_order(a, b, gaps, loss, duplicate, jitter, delay,
                                                redundancy, seed):
    link = Link(Network(delay=delay, jitter=jitter, loss=loss, duplicate=duplicate,
                        seed=seed), redundancy)
    schedule = sorted([(sum(gaps[:i]), 0, m) for i, m in enumerate(a)]
                      + [(sum(gaps[40:40 + i]), 1, m) for i, m in enumerate(b)],
                      key=lambda item: item[0])
    for at, sender, message in schedule:
        link.run(until=at)
        link.send(sender, message)
    link.run()
    assert link.got[1] == a
    assert link.got[0] == b


def test_a_lost_frame_is_resent_after_about_a_round_trip_not_an_sctp_timeout():
    """The first loss on a clean link waits for the peer's slow acknowledgement as well;
    from then on the peer acknowledges fast, and a loss costs about a round trip."""
    link = Link(Network(delay=0.005))

    def exchange(times: int) -> None:
        for i in range(times):
            link.send(0, b"ping %d" % i)
            link.run(until=link.now + 0.002)
            link.send(1, b"pong %d" % i)
            link.run(until=link.now + 0.05)

    def lose_one() -> float:
        """When the frame the network loses arrives after all (SCTP: 400 ms later)."""
        sent_at = link.now
        link.network.late.add((0, link.network.sent[0]))
        link.send(0, b"lost")
        link.run(until=link.now + 0.2)
        assert link.got[1][-1] == b"lost"
        return link.arrived_at[1][-1] - sent_at

    exchange(5)  # a round trip of 10 ms, measured
    clean_pto = link.ends[0].pto
    assert clean_pto == pytest.approx(0.010 + CLEAN_ACK_DELAY, abs=0.008)
    assert lose_one() == pytest.approx(clean_pto + 0.005, abs=1e-6)
    assert link.ends[0].stats["retries"] == 1
    exchange(5)
    fast_pto = link.ends[0].pto
    assert fast_pto == pytest.approx(0.010 + ACK_DELAY, abs=0.008)
    assert lose_one() == pytest.approx(fast_pto + 0.005, abs=1e-6)
    assert link.ends[0].stats["retries"] == 2
    link.run()
    assert link.got[1].count(b"lost") == 2  # each once: the late originals were dropped


def test_acknowledgements_go_alone_only_when_the_answer_is_late():
    """On a clean link an acknowledgement waits for the next message back (in MPyC's rounds
    it comes soon); it goes alone only when none came for ``CLEAN_ACK_DELAY``."""
    link = Link(Network(delay=0.001))
    for i in range(100):
        link.send(0, b"%d" % i)
        link.run(until=link.now + 0.005)  # the answer, 5 ms later
        link.send(1, b"%d" % i)
        link.run(until=link.now + 0.005)
    assert link.ends[0].stats["acks"] == link.ends[1].stats["acks"] == 0
    link.run()  # nothing more to say: end 1's last message is acknowledged alone
    assert (link.ends[0].stats["acks"], link.ends[1].stats["acks"]) == (1, 0)
    assert link.ends[0].unacknowledged == link.ends[1].unacknowledged == 0


def test_a_frame_that_never_arrives_is_recovered_by_this_layer_alone():
    link = Link(Network(delay=0.001, drop={(0, 0), (0, 1)}))
    link.send(0, b"first")
    link.run()
    assert link.got[1] == [b"first"]
    assert link.ends[0].stats["retries"] == 2
    assert link.ends[0].unacknowledged == 0


def test_a_lost_acknowledgement_is_made_good_by_the_probe():
    # Frame 0 of end 1 is its acknowledgement of "hello"; end 0 probes, end 1 answers the
    # duplicate at once.
    link = Link(Network(delay=0.001, drop={(1, 0)}))
    link.send(0, b"hello")
    link.run()
    assert link.got[1] == [b"hello"]
    assert link.ends[0].unacknowledged == 0
    assert link.ends[1].stats["duplicates"] == 1


def test_a_frame_acknowledged_before_an_older_one_marks_the_older_lost_at_once():
    link = Link(Network(delay=0.005, late={(0, 0)}))
    link.send(0, b"a")
    link.run(until=0.003)
    link.send(0, b"b")  # acknowledged at once (a gap): "a" is resent on that news
    link.run()
    assert link.got[1] == [b"a", b"b"]
    assert link.ends[0].stats["fast_retries"] == 1
    # "a" came with the resend, one round trip after "b" was sent, not 400 ms late.
    assert link.arrived_at[1][0] == pytest.approx(0.003 + 0.010 + 0.005, abs=1e-6)


def test_copies_only_once_the_peer_reports_losses():
    clean = Link(Network(delay=0.001))
    lossy = Link(Network(delay=0.001, loss=0.05, seed=3))
    for link in (clean, lossy):
        for i in range(600):
            link.send(i % 2, b"x" * 50)
            link.run(until=link.now + 0.003)
        link.run()
    assert clean.ends[0].stats["copies"] == clean.ends[0].stats["retries"] == 0
    assert not clean.ends[0].copying
    assert lossy.ends[0].copying
    assert lossy.ends[0].stats["copies"] > 100
    assert lossy.got[1] == [b"x" * 50] * 300


def test_large_frames_are_left_to_sctp():
    """A frame over ``PROBE_BUDGET`` is never resent by this layer: its packets are SCTP's
    to recover, and its acknowledgement waits for all of them."""
    link = Link(Network(delay=0.001))
    link.network.late.add((0, 0))
    link.send(0, b"b" * (PROBE_BUDGET + 1))
    link.send(0, b"small")  # acknowledged first: RACK would resend the big one
    link.run()
    assert link.got[1] == [b"b" * (PROBE_BUDGET + 1), b"small"]
    assert link.ends[0].stats["retries"] == 0
    assert link.arrived_at[1][0] >= SCTP_LATE  # it came with SCTP's own retransmission


def test_no_probe_while_the_channel_still_holds_data():
    end = Recovery()
    end.send(b"queued behind a bulk transfer", 0.0)
    end.outgoing.clear()
    due = end.deadline()
    assert due is not None
    end.on_timer(due, busy=True)
    assert end.outgoing == [] and end.stats["retries"] == 0
    later = end.deadline()
    assert later is not None and later > due
    end.on_timer(later)
    assert end.stats["retries"] == 1


def test_large_frames_are_never_copied():
    link = Link(Network(delay=0.001), "on")
    link.send(0, b"y" * (COPY_LIMIT + 1))
    link.send(0, b"z" * COPY_LIMIT)
    link.run()
    assert link.ends[0].stats["copies"] == 1
    assert link.ends[1].stats["duplicates"] == 1
    assert link.got[1] == [b"y" * (COPY_LIMIT + 1), b"z" * COPY_LIMIT]


def test_without_an_answer_it_stops_resending_and_leaves_the_rest_to_sctp():
    link = Link(Network(delay=0.001, drop={(0, i) for i in range(50)}))
    link.send(0, b"into the void")
    link.run()
    assert link.ends[0].stats["retries"] == MAX_RETRIES
    assert link.got[1] == []


def test_sequence_numbers_wrap_around():
    link = Link(Network(delay=0.001))
    for end in link.ends:
        end._next_seq = end._expected = 2**32 - 3
    for i in range(6):
        link.send(0, b"%d" % i)
        link.send(1, b"%d" % i)
    link.run()
    assert link.got[1] == link.got[0] == [b"%d" % i for i in range(6)]


@pytest.mark.parametrize("frame, why", [
    (b"", "not a frame"),
    (b"\x00" * 40, "not a frame"),
    (bytes([recovery.DATA]) + b"\x00" * 5, "not a frame"),
    (bytes([recovery.DATA, 0]) + (2**30).to_bytes(4, "big") + b"\x00" * 12, "further ahead"),
    (bytes([recovery.ACK, 0, 0, 0, 0, 0, 0, 0, 0, 9]) + b"\x00" * 8, "never sent"),
    (bytes([recovery.DATA, recovery.TEXT]) + b"\x00" * 16 + b"\xff", "not UTF-8"),
])
def test_a_message_that_is_not_a_frame_is_refused_in_words(frame, why):
    with pytest.raises(FrameError, match=why):
        Recovery().receive(frame, 0.0)


def test_frames_held_for_a_missing_one_are_bounded_in_bytes():
    end = Recovery()
    big = b"z" * 60_000
    with pytest.raises(FrameError, match="further ahead"):
        for seq in range(1, 10_000):  # frame 0 never comes
            frame = bytes([recovery.DATA, 0]) + seq.to_bytes(4, "big") + bytes(12) + big
            end.receive(frame, 0.0)
    assert end._held_bytes <= recovery.MAX_HELD_BYTES


def test_the_switch_in_words():
    assert setting(None) == setting("") == setting("1") == setting("auto") == "auto"
    assert setting("copies") == "on"
    assert setting("no-copies") == "off"
    assert setting("0") is setting("OFF") is None
    with pytest.raises(ValueError, match="message recovery is one of .*'auto'.*not 'maybe'"):
        setting("maybe")


async def test_recovering_channels_carry_text_and_binary_in_order():
    loop = asyncio.get_running_loop()
    a, b = channel_pair(loop)
    ra, rb = RecoveringChannel(a, loop), RecoveringChannel(b, loop)
    got: list = []
    closed = asyncio.Event()
    rb.attach(got.append, closed.set, lambda: None, 0)
    for message in (b"one", "two", b"three" * 1000):
        ra.send(message)
    await asyncio.sleep(0.01)
    assert got == [b"one", "two", b"three" * 1000]
    assert all(len(frame) >= HEADER_SIZE for frame in a.sent)
    await asyncio.sleep(CLEAN_ACK_DELAY * 2)
    assert ra.core.unacknowledged == 0  # b acknowledged on its own, with nothing to send
    ra.close()
    await asyncio.wait_for(closed.wait(), 1)


async def test_a_peer_without_recovery_is_told_apart_in_words():
    loop = asyncio.get_running_loop()
    a, b = channel_pair(loop)
    rb = RecoveringChannel(b, loop, name="party 1")
    got: list = []
    rb.attach(got.append, lambda: None, lambda: None, 0)
    a.send(b"\x00\x01 raw MPyC bytes from a party without recovery")
    await asyncio.sleep(0.01)
    assert len(got) == 1 and isinstance(got[0], LinkUnusable)
    assert got[0] == ("the two sides send their messages differently (it is not a frame of "
                      "mpyc-webrtc's message recovery). One side has message recovery "
                      "switched off, or runs another version of mpyc-webrtc.")
    assert not rb.is_open


class UnorderedLossyChannel(MemoryChannel):
    """An in-memory channel as an unordered, reliable SCTP channel on a lossy, jittery
    path behaves: a lost message comes ``SCTP_LATE`` later, others may overtake it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str, rng: random.Random):
        super().__init__(loop, name)
        self.rng = rng

    def send(self, data: bytes | str) -> None:
        if self.closed:
            raise ConnectionError("channel is closed")
        self.sent.append(data)
        for _ in range(2 if self.rng.random() < 0.02 else 1):
            at = 0.001 + self.rng.random() * 0.002
            if self.rng.random() < 0.05:
                at += SCTP_LATE
            self.loop.call_later(at, self._arrive, data)

    def _arrive(self, data: bytes | str) -> None:
        if self.remote is not None and not self.remote.closed:
            self.remote._deliver(data)


async def test_mpyc_exchanges_its_messages_intact_over_lossy_reordering_channels():
    """MPyC's own handshake and message exchangers, 3 parties, 100 rounds of messages to
    everyone (a round waits for the last one's messages, as MPyC's rounds do)."""
    from mpyc.runtime import Party, Runtime, mpyc

    loop = asyncio.get_running_loop()
    m = 3
    options = mpyc._get_arg_parser().parse_args(["--no-log"])
    options.threshold = 1
    rts = [Runtime(pid, [Party(i) for i in range(m)], options) for pid in range(m)]
    hub = MemoryHub(loop, m)
    rng = random.Random(7)
    for i in range(m):
        for j in range(i + 1, m):
            a = UnorderedLossyChannel(loop, f"{i}-{j}", rng)
            b = UnorderedLossyChannel(loop, f"{j}-{i}", rng)
            a.remote, b.remote = b, a
            hub.channels[i, j], hub.channels[j, i] = a, b
    meshes = [install_mesh(rt, hub.factory(rt.pid)) for rt in rts]

    async def party(rt):
        await rt.start()
        got = []
        for r in range(100):
            rt._program_counter[0] = r
            for peer in range(m):
                if peer != rt.pid:
                    rt._send_message(peer, b"%d from %d" % (r, rt.pid) * (1 + r % 7))
            for peer in range(m):
                if peer != rt.pid:
                    message = rt._receive_message(peer)  # here already, or a future
                    got.append(message if isinstance(message, bytes) else await message)
        return got

    results = await asyncio.wait_for(asyncio.gather(*(party(rt) for rt in rts)), 60)
    for rt, got in zip(rts, results, strict=True):
        assert got == [b"%d from %d" % (r, peer) * (1 + r % 7)
                       for r in range(100) for peer in range(m) if peer != rt.pid]
    assert all(mesh.failure is None for mesh in meshes)
    stats = [mesh.recovery_stats() for mesh in meshes]
    assert sum(s["recovered"] for s in stats) > 0  # losses happened, and were made good
    await _close_like_shutdown(rts, meshes)


async def test_a_channel_keeps_its_layer_from_one_mesh_to_the_next():
    """A browser party makes a new mesh for each run over the same channels: frames of
    the last run still on their way must meet the same sequence numbers."""
    loop = asyncio.get_running_loop()
    a, _ = channel_pair(loop)
    first = recovering({1: a}, loop)[1]
    first.send(b"last run")
    assert recovering({1: a}, loop)[1] is first
    assert recovering({1: first}, loop)[1] is first
