"""ChannelTransport: coalescing, chunking, backpressure, reassembly, containment."""

import asyncio
import struct
import types

import pytest
from mpyc.asyncoro import MessageExchanger

from mpyc_webrtc import transport as transport_module
from mpyc_webrtc.memory import MemoryChannel, channel_pair
from mpyc_webrtc.transport import KEEPALIVE, ChannelTransport, PeerSilent


class Recorder(asyncio.Protocol):
    """A protocol that remembers everything it is told."""

    def __init__(self):
        self.data = bytearray()
        self.chunks = []
        self.lost = []
        self.made = None

    def connection_made(self, transport):
        self.made = transport

    def data_received(self, data):
        self.chunks.append(bytes(data))
        self.data += data

    def connection_lost(self, exc):
        self.lost.append(exc)


def transport_pair(loop, **options):
    a, b = channel_pair(loop)
    left, right = Recorder(), Recorder()
    ta = ChannelTransport(a, left, loop, peer_pid=1, **options)
    tb = ChannelTransport(b, right, loop, peer_pid=0, **options)
    return (a, ta, left), (b, tb, right)


async def settle(rounds=5):
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_writes_of_one_loop_iteration_leave_as_one_message():
    loop = asyncio.get_running_loop()
    (a, ta, _), (_, _, right) = transport_pair(loop)
    ta.write(b"one")
    ta.writelines([b"two", b"three"])
    ta.write(b"")
    await settle()
    assert a.sent == [b"onetwothree"]
    assert right.data == b"onetwothree"
    ta.write(b"four")
    await settle()
    ta.write(b"five")
    await settle()
    assert a.sent == [b"onetwothree", b"four", b"five"]


async def test_large_writes_are_cut_at_the_message_size_limit():
    loop = asyncio.get_running_loop()
    (a, ta, _), (_, _, right) = transport_pair(loop)
    payload = bytes(range(256)) * 1000  # 256,000 bytes
    ta.write(payload[:100_000])
    ta.write(payload[100_000:])
    await settle()
    assert [len(m) for m in a.sent] == [65536, 65536, 65536, 59392]
    assert right.data == payload


@pytest.mark.parametrize("size", [1, 7, 12, 13, 1000])
async def test_mpyc_messages_survive_any_chunking(size):
    """MPyC's stream of <qI + payload> records is reassembled whatever the cut points."""
    loop = asyncio.get_running_loop()
    a, b = channel_pair(loop)
    rt = types.SimpleNamespace(_loop=loop, pid=0, options=types.SimpleNamespace(no_prss=True),
                               set_protocol=lambda pid, p: None)
    sender, receiver = MessageExchanger(rt, 1), MessageExchanger(rt)  # client, server
    ChannelTransport(a, sender, loop, peer_pid=1, max_message_size=size)
    ChannelTransport(b, receiver, loop, peer_pid=0, max_message_size=size)
    payloads = {pc: bytes([pc % 251]) * (pc * 37 % 300) for pc in range(1, 60)}
    for pc, payload in payloads.items():
        sender.send(pc, payload)
    await settle(20)
    assert all(len(m) <= size for m in a.sent)
    assert {pc: receiver.receive(pc) for pc in payloads} == payloads


async def test_handshake_arriving_before_the_mesh_is_ready_keeps_roles():
    """A channel may receive the client's pid before the transport exists; the server
    side must still act as server and not answer with a handshake of its own."""
    loop = asyncio.get_running_loop()
    a, b = channel_pair(loop)
    registered = []
    server_rt = types.SimpleNamespace(_loop=loop, pid=1,
                                      options=types.SimpleNamespace(no_prss=True),
                                      set_protocol=lambda pid, p: registered.append(pid))
    a.send(struct.pack("<H", 0) + struct.pack("<qI", 5, 3) + b"abc")  # client pid 0, then data
    await settle()
    server = MessageExchanger(server_rt)
    ChannelTransport(b, server, loop, peer_pid=0)
    await settle()
    assert registered == [0]
    assert server.receive(5) == b"abc"
    assert b.sent == []  # the server wrote nothing back


async def test_backpressure_holds_data_until_the_channel_drains():
    loop = asyncio.get_running_loop()
    (a, ta, _), (_, _, right) = transport_pair(loop, high_water=1000, low_water=100)
    a.buffered_amount = 5000
    ta.write(b"x" * 10)
    ta.write(b"y" * 10)
    await settle()
    assert a.sent == [] and ta.pending == 20
    a.drain(500)  # still above low water: nothing happens
    await settle()
    assert a.sent == []
    a.drain(0)
    await settle()
    assert a.sent == [b"x" * 10 + b"y" * 10] and ta.pending == 0
    assert right.data == b"x" * 10 + b"y" * 10


async def test_backpressure_stops_between_chunks():
    loop = asyncio.get_running_loop()

    class Filling(MemoryChannel):
        def send(self, data):
            super().send(data)
            self.buffered_amount += len(data)

    a, b = Filling(loop), MemoryChannel(loop)
    a.remote, b.remote = b, a
    ta = ChannelTransport(a, Recorder(), loop, peer_pid=1, max_message_size=100,
                          high_water=250, low_water=0)
    ta.write(bytes(1000))
    await settle()
    assert len(a.sent) == 3 and ta.pending == 700
    a.drain(0)
    await settle()
    assert len(a.sent) == 6
    a.drain(0)
    a.drain(0)
    a.drain(0)
    await settle()
    assert b"".join(a.sent) == bytes(1000) and ta.pending == 0


async def test_close_flushes_first_and_reports_connection_lost_once():
    loop = asyncio.get_running_loop()
    (a, ta, left), (b, tb, right) = transport_pair(loop)
    ta.write(b"last words")
    ta.close()
    ta.close()
    ta.write(b"ignored after close")
    await settle()
    assert a.sent == [b"last words"] and a.closed
    assert left.lost == [None]
    assert right.data == b"last words" and right.lost == [None]
    assert tb.is_closing()


async def test_exception_in_protocol_is_contained_and_reported():
    loop = asyncio.get_running_loop()
    a, b = channel_pair(loop)
    failures = []

    class Exploding(Recorder):
        def data_received(self, data):
            raise RuntimeError("boom")

    ChannelTransport(b, Exploding(), loop, peer_pid=0,
                     on_failure=lambda pid, exc: failures.append((pid, str(exc))))
    b._on_message(b"anything")  # what the channel's event handler would call; must not raise
    assert failures == [(0, "boom")]
    assert b.closed


async def test_peer_claiming_another_pid_is_refused():
    loop = asyncio.get_running_loop()
    a, b = channel_pair(loop)
    failures = []
    rt = types.SimpleNamespace(_loop=loop, pid=2, options=types.SimpleNamespace(no_prss=True),
                               set_protocol=lambda pid, p: None)
    ChannelTransport(b, MessageExchanger(rt), loop, peer_pid=0,
                     on_failure=lambda pid, exc: failures.append(str(exc)))
    a.send(struct.pack("<H", 1))  # says it is party 1 on party 0's channel
    await settle()
    assert failures and "says it is party 1" in failures[0]


async def test_send_failure_is_contained():
    class Broken(MemoryChannel):
        def send(self, data):
            raise OSError("the link broke")

    loop = asyncio.get_running_loop()
    a = Broken(loop)
    failures = []
    ta = ChannelTransport(a, Recorder(), loop, peer_pid=1,
                          on_failure=lambda pid, exc: failures.append(pid))
    ta.write(b"data")
    await settle()
    assert failures == [1] and ta.is_closing()


async def test_data_for_a_peer_that_closed_its_end_is_a_lost_connection_not_a_failure():
    loop = asyncio.get_running_loop()
    a, _ = channel_pair(loop)
    failures, lost = [], []
    ta = ChannelTransport(a, Recorder(), loop, peer_pid=1,
                          on_failure=lambda pid, exc: failures.append(pid),
                          on_lost=lost.append)
    a.closed = True  # the peer started closing: send raises, the close event is pending
    ta.write(b"data")
    await settle()
    assert failures == [] and lost == [1] and ta.protocol.lost == [None]


async def test_text_message_is_a_protocol_violation():
    loop = asyncio.get_running_loop()
    a, b = channel_pair(loop)
    failures = []
    ChannelTransport(b, Recorder(), loop, peer_pid=0,
                     on_failure=lambda pid, exc: failures.append(str(exc)))
    b._on_message("text")
    assert failures and "text message" in failures[0]


# --- keeping the channel for another run ---------------------------------------------------

async def test_kept_channel_ends_a_run_and_carries_the_next():
    loop = asyncio.get_running_loop()
    (a, ta, left), (b, tb, right) = transport_pair(loop, keep_channel=True)
    ta.write(b"last of run 1")
    ta.close()
    await settle()
    assert right.data == b"last of run 1"
    assert left.lost == [None] and right.lost == [None]  # both runs over, no error
    assert not a.closed and not b.closed
    # Run 2: the far side starts first; what it sends waits in the channel for run 2's
    # transport, in order.
    left2, right2 = Recorder(), Recorder()
    tb2 = ChannelTransport(b, right2, loop, peer_pid=0, keep_channel=True)
    tb2.write(b"early")
    await settle()
    tb2.write(b" and on time")
    ta2 = ChannelTransport(a, left2, loop, peer_pid=1, keep_channel=True)
    await settle()
    assert left2.data == b"early and on time"
    assert left.data == b""  # nothing of run 2 reached run 1's protocol
    assert (ta2.messages_received, ta2.bytes_received) == (2, len(b"early and on time"))


async def test_end_of_run_ends_the_run_also_without_keep_channel():
    """A native peer (which does not keep channels) with a browser that does."""
    loop = asyncio.get_running_loop()
    (a, _, _), (b, tb, right) = transport_pair(loop)
    failures = []
    tb._on_failure = lambda pid, exc: failures.append(exc)
    a.send(b"data")
    a.send("end of run")
    a.send(b"next run")
    await settle()
    assert right.data == b"data" and right.lost == [None]
    assert failures == []


async def test_other_text_messages_are_refused():
    loop = asyncio.get_running_loop()
    (a, _, _), (b, tb, right) = transport_pair(loop, keep_channel=True)
    failures = []
    tb._on_failure = lambda pid, exc: failures.append(exc)
    a.send("hello")
    await settle()
    assert failures and "text message" in str(failures[0])
    assert b.closed


# --- liveness: keepalives and silent peers -----------------------------------------------------

def failures_of(transport_options, loop):
    failed = []
    (a, ta, _), (b, tb, _) = transport_pair(
        loop, on_failure=lambda pid, exc: failed.append((pid, exc)), **transport_options)
    return failed, (a, ta), (b, tb)


async def test_idle_links_stay_alive_on_keepalives_that_mpyc_never_sees():
    loop = asyncio.get_running_loop()
    failed, (a, ta), (b, tb) = failures_of(
        {"keepalive": 0.02, "silence_limit": 0.15}, loop)
    await asyncio.sleep(0.5)
    assert failed == []
    assert KEEPALIVE in a.sent and KEEPALIVE in b.sent
    assert ta.messages_sent == tb.messages_received == 0  # not counted as traffic
    assert ta.protocol.data == tb.protocol.data == b""
    ta.close()
    tb.close()


async def test_a_silent_peer_is_declared_gone_after_the_silence_limit():
    loop = asyncio.get_running_loop()
    failed, (a, ta), (b, tb) = failures_of(
        {"keepalive": 0.02, "silence_limit": 0.15, "startup_grace": 0.15}, loop)
    await asyncio.sleep(0.1)
    b.remote = None  # party 1 vanishes: nothing it sends arrives any more, and no close
    started = loop.time()
    while not failed and loop.time() - started < 2:
        await asyncio.sleep(0.01)
    waited = loop.time() - started
    assert [(pid, type(exc)) for pid, exc in failed] == [(1, PeerSilent)]
    assert 0.1 <= waited < 1.0  # the limit after the last keepalive that got through
    assert str(failed[0][1]) == "nothing arrived from it for 0 s"  # 0.15 s, rounded
    assert ta.protocol.lost == [None] and ta.is_closing()
    tb.close()


async def test_before_the_first_message_the_startup_grace_applies():
    loop = asyncio.get_running_loop()
    a, _ = channel_pair(loop)
    a.remote = None  # the other side has not set up its transport yet
    failed = []
    # Ticks every 0.2 s: a loop late by more than three ticks (0.6 s) counts as this party's
    # own pause, not the peer's silence, so the test holds on a busy machine too.
    ChannelTransport(a, Recorder(), loop, peer_pid=1, keepalive=0.2, silence_limit=1.6,
                     startup_grace=3.0, on_failure=lambda pid, exc: failed.append(exc))
    await asyncio.sleep(2.0)
    assert failed == []  # past the silence limit, within the grace
    for _ in range(30):
        await asyncio.sleep(0.1)
        if failed:
            break
    assert len(failed) == 1 and failed[0].seconds == 3.0


async def test_a_peer_away_from_the_server_gets_no_startup_grace():
    """Signaling says the peer lost the server (a crash closes its socket too): silence from
    it is no longer a slow start, and the silence limit alone applies."""
    loop = asyncio.get_running_loop()
    a, _ = channel_pair(loop)
    a.remote = None  # it never sets up its side: it is gone
    failed = []
    transport = ChannelTransport(a, Recorder(), loop, peer_pid=1, keepalive=0.2,
                                 silence_limit=1.6, startup_grace=30.0,
                                 on_failure=lambda pid, exc: failed.append(exc))
    await asyncio.sleep(0.5)
    transport.end_grace()
    for _ in range(30):
        await asyncio.sleep(0.1)
        if failed:
            break
    assert len(failed) == 1 and failed[0].seconds == 1.6


async def test_a_blocked_own_loop_does_not_count_as_the_peers_silence():
    import time

    loop = asyncio.get_running_loop()
    failed, (a, ta), (b, tb) = failures_of(
        {"keepalive": 0.02, "silence_limit": 0.15}, loop)
    await asyncio.sleep(0.05)
    time.sleep(0.4)  # a long local computation: nobody's messages are read meanwhile
    await asyncio.sleep(0.05)
    assert failed == []
    ta.close()
    tb.close()


async def test_no_keepalives_unless_asked():
    loop = asyncio.get_running_loop()
    (a, ta, _), _ = transport_pair(loop)
    await asyncio.sleep(0.05)
    assert a.sent == [] and ta._timer is None


async def test_no_keepalive_and_no_failure_while_the_peer_closes_its_end():
    # aiortc and browsers report a channel the peer is closing as "closing" at once, but
    # "closed" only after the closing handshake; a keepalive sent in between raised an
    # empty InvalidStateError that failed a finished computation (seen on a lossy link).
    loop = asyncio.get_running_loop()
    failed, (a, ta), (b, tb) = failures_of({"keepalive": 0.02, "silence_limit": 0.1}, loop)
    await asyncio.sleep(0.05)
    tb._stop_timer()  # party 1 closes its end: its transport is done
    a.closed = True  # as aiortc's readyState "closing": any send raises
    sent = len(a.sent)
    await asyncio.sleep(0.3)  # keepalive time, and longer than the silence limit
    assert failed == [] and len(a.sent) == sent and ta.protocol.lost == []
    a._remote_closed()  # the handshake completes
    assert ta.protocol.lost == [None] and failed == []
    tb.close()


async def test_a_closing_that_never_completes_counts_as_closed(monkeypatch):
    monkeypatch.setattr(transport_module, "CLOSING_WAIT", 0.1)
    loop = asyncio.get_running_loop()
    lost = []
    failed, (a, ta), (b, tb) = failures_of({"keepalive": 0.02, "silence_limit": 0.05}, loop)
    ta._on_lost = lost.append
    await asyncio.sleep(0.03)
    tb._stop_timer()
    a.closed = True
    b.remote = None  # and the link dies: no close event ever comes
    await asyncio.sleep(0.4)
    assert failed == [] and lost == [1] and ta.protocol.lost == [None]
    tb.close()
