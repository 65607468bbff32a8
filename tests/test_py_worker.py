"""The browser party's Python (py_worker), run natively with a stand-in for the page.

No browser and no network: ``Page`` writes the records the page writes into the worker's
inbox (``py_worker/ring.py``) and keeps what Python asks the page to do, and the tests act
as the browser's data channels would.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mpyc_webrtc.launch import (
    COMMON_MPYC_OPTIONS,
    check_input,
    input_reading,
    program_argv,
    program_file,
)
from mpyc_webrtc.mesh import MeshError
from py_worker import ring
from py_worker.channel import PageChannelFactory
from py_worker.inbox import Inbox


class Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes | str]] = []
        self.closed: list[int] = []
        self.low: dict[int, int] = {}
        self.kept_alive: dict[int, tuple[float, str, int]] = {}

    def send(self, channel: int, data: bytes | str) -> None:
        self.sent.append((channel, data))

    def close(self, channel: int) -> None:
        self.closed.append(channel)

    def low_water(self, channel: int, amount: int) -> None:
        self.low[channel] = amount

    def keep_alive(self, channel: int, every: float, text: str, high_water: int) -> None:
        self.kept_alive[channel] = (every, text, high_water)


class Page:
    """The page's side: writes records, then lets the inbox deliver them (as the loop would
    when it wakes up)."""

    def __init__(self, factory: PageChannelFactory | None = None, size: int = 1 << 16):
        self.memory = ring.BytesMemory(size)
        self.outbox = Outbox()
        self.rooms = 0
        self.inbox = Inbox(self.memory, self.outbox, self._room)
        self.reader_size = size
        self.inbox.reader = ring.RingReader(self.memory, size)
        self.controls: list[dict] = []
        self.factory = factory or PageChannelFactory()
        self.inbox.serve(self.factory, self.controls.append)
        self.next_id = 1
        self.ids: dict[int, int] = {}

    def _room(self) -> None:
        self.rooms += 1

    def write(self, kind: int, peer: int = 0, channel: int = 0, payload: bytes = b"") -> None:
        assert self.memory.write_record(kind, peer, channel, payload)
        self.inbox.deliver()

    def channel(self, peer: int) -> int:
        channel = self.ids[peer] = self.next_id
        self.next_id += 1
        for index in (ring.SENT + 2 * peer, ring.BUFFERED + 2 * peer):
            self.memory.store(index, 0)
        self.write(ring.CHANNEL, peer, channel)
        return channel

    def event(self, peer: int, kind: int, payload: bytes = b"") -> None:
        self.write(kind, peer, self.ids[peer], payload)


def test_channel_keeps_early_messages_and_close_until_attached():
    page = Page()
    page.channel(1)
    page.event(1, ring.OPEN)
    page.event(1, ring.BINARY, b"one")
    page.event(1, ring.TEXT, "two ✓".encode())
    page.event(1, ring.CLOSED)
    channel = page.factory.channels[1]
    got, closes = [], []
    channel.attach(got.append, lambda: closes.append(True), lambda: None, low_water=123)
    assert got == [b"one", "two ✓"] and closes == [True]
    assert page.outbox.low == {1: 123}
    assert not channel.is_open and channel.closed.is_set()


def test_channel_handlers_never_raise_into_the_inbox():
    page = Page()
    page.channel(2)
    page.event(2, ring.OPEN)

    def broken(data: bytes) -> None:
        raise RuntimeError("bug in the handler")

    page.factory.channels[2].attach(broken, broken, broken, low_water=0)  # type: ignore[arg-type]
    page.event(2, ring.BINARY, b"x")  # logged, not raised
    page.event(2, ring.DRAINED)
    page.write(ring.BINARY, 2, 99, b"for a channel nobody knows")  # ignored
    page.event(2, ring.CLOSED)
    page.write(ring.CONTROL, payload=b"not json")  # logged, not raised
    assert page.controls == []


def test_channel_sends_and_counts_what_the_page_has_not_sent_yet():
    page = Page()
    channel_id = page.channel(1)
    channel = page.factory.channels[1]
    with pytest.raises(ConnectionError):
        channel.send(b"too early")
    page.event(1, ring.OPEN)
    channel.attach(lambda data: None, lambda: None, lambda: None, low_water=2)
    channel.send(b"abcd")
    channel.send("keepalive")
    assert page.outbox.sent == [(channel_id, b"abcd"), (channel_id, "keepalive")]
    # Not yet handed to the channel: all of it counts; Python wishes to hear of a drain.
    assert channel.buffered_amount == 4 + 9
    assert page.memory.load(ring.WANT_DRAIN + 1) == 1
    # The page sent it all; the channel still holds 5 bytes.
    page.memory.store(ring.SENT + 2, 13)
    page.memory.store(ring.BUFFERED + 2, 5)
    assert channel.buffered_amount == 5
    page.memory.store(ring.BUFFERED + 2, 0)
    assert channel.buffered_amount == 0
    channel.close()
    assert page.outbox.closed == [channel_id] and not channel.is_open


def test_page_messages_reach_the_party_in_order_and_early_ones_wait():
    memory = ring.BytesMemory(1 << 12)
    inbox = Inbox(memory, Outbox(), lambda: None)
    memory.write_record(ring.CONTROL, payload=json.dumps({"type": "start"}).encode())
    inbox.deliver()  # before a party: held
    got: list[dict] = []
    memory.write_record(ring.CONTROL, payload=json.dumps({"type": "peer-left", "peer": 2}).encode())
    inbox.serve(PageChannelFactory(), got.append)
    inbox.deliver()
    assert got == [{"type": "start"}, {"type": "peer-left", "peer": 2}]


def test_a_full_ring_asks_the_page_to_wait_and_says_when_there_is_room():
    page = Page(size=64)
    page.channel(1)
    page.event(1, ring.OPEN)
    assert page.memory.write_record(ring.BINARY, 1, 1, b"x" * 30)
    assert not page.memory.write_record(ring.BINARY, 1, 1, b"y" * 30)  # no room: the page
    page.memory.store(ring.PAGE_WAITING, 1)                            # keeps it and waits
    page.inbox.deliver()
    assert page.rooms == 1 and page.memory.load(ring.PAGE_WAITING) == 0
    assert page.memory.write_record(ring.BINARY, 1, 1, b"y" * 30)  # wraps around the end
    page.inbox.deliver()
    got: list[bytes] = []
    page.factory.channels[1].attach(got.append, lambda: None, lambda: None, 0)
    assert got == [b"x" * 30, b"y" * 30]


async def test_factory_waits_for_start_and_every_open_channel():
    connected = []
    page = Page(PageChannelFactory(on_connected=connected.append))
    factory = page.factory
    opening = asyncio.ensure_future(factory.open_channels(1, 3, timeout=5))
    await asyncio.sleep(0.01)
    factory.start()
    page.channel(0)
    page.channel(2)
    page.event(0, ring.OPEN)
    await asyncio.sleep(0.01)
    assert not opening.done()
    page.event(2, ring.OPEN)
    channels = await asyncio.wait_for(opening, 1)
    assert sorted(channels) == [0, 2] and channels[2].channel == page.ids[2]
    assert len(connected) == 1


async def test_factory_names_the_parties_it_could_not_reach():
    page = Page()
    page.factory.start()
    page.channel(0)
    with pytest.raises(MeshError, match="Could not connect to parties 1 and 3 within"):
        await page.factory.open_channels(1, 3, timeout=0.05)


async def test_factory_fails_at_once_when_a_connection_fails_or_a_party_leaves():
    factory = PageChannelFactory()
    factory.start()
    opening = asyncio.ensure_future(factory.open_channels(0, 3, timeout=30))
    await asyncio.sleep(0.01)
    factory.peer_failed(2, "the connection failed.")
    with pytest.raises(MeshError, match="Could not connect to party 3: the connection failed"):
        await asyncio.wait_for(opening, 1)

    factory = PageChannelFactory()
    factory.start()
    factory.peer_left(1)
    with pytest.raises(MeshError, match="The computation cannot finish: party 2 left the session"):
        await factory.open_channels(0, 2, timeout=30)


async def test_factory_stops_waiting_when_the_session_ends_before_everyone_joined():
    factory = PageChannelFactory()
    opening = asyncio.ensure_future(factory.open_channels(0, 3, timeout=30))
    await asyncio.sleep(0.01)
    factory.end("This session was closed because it was idle for too long.")
    with pytest.raises(MeshError, match="ended before all 3 parties joined: This session"):
        await asyncio.wait_for(opening, 1)


async def test_factory_close_waits_for_the_closing_handshake():
    page = Page()
    channel_id = page.channel(1)
    page.event(1, ring.OPEN)
    closing = asyncio.ensure_future(page.factory.close(graceful=True, linger=5))
    await asyncio.sleep(0.01)
    assert page.outbox.closed == [channel_id] and not closing.done()
    page.event(1, ring.CLOSED)
    await asyncio.wait_for(closing, 1)
    assert page.inbox.channels == {}


def test_launch_builds_argv_and_checks_input(tmp_path: Path):
    builtin = {"name": "sum", "args": [], "builtin": True}
    path = program_file(builtin, tmp_path)
    assert path.name == "sum.py" and path.exists()
    assert program_argv(path, 3, 1, ["-T0"], " 4,5 ") == [
        str(path), "-M", "3", "-I", "1", *COMMON_MPYC_OPTIONS, "-T0", "--input=4,5"]
    assert check_input(builtin, "") == (
        "Please enter your numbers: up to 10,000 whole numbers from -2,147,483,647 to "
        "2,147,483,647, separated by commas (like 3,1,2).")
    assert check_input(builtin, "four") == (
        "Your numbers must be whole numbers separated by commas, like 3,1,2; a number may be "
        "grouped in threes with spaces or dots, like 52 000 or 52.000 (got 'four').")
    assert check_input(builtin, "-4, 5") is None
    average = {"name": "average", "args": [], "builtin": True}
    assert check_input(average, "52,000") is None
    # What the page shows under the field, from the same rule (programs.InputSpec).
    assert input_reading(average, "52.000") == "Read as 52\u202f000."
    assert input_reading(average, "52000") is None
    assert input_reading(average, "lots") is None
    assert input_reading({"name": "x.py", "args": [], "source": "pass"}, "1,000") is None
    vote = {"name": "vote", "args": [], "builtin": True}
    assert check_input(vote, "maybe") == "Your vote must be yes or no (got 'maybe')."
    assert check_input(vote, "yes") is None
    assert check_input({"name": "santa", "args": [], "builtin": True}, "x") == (
        "This program takes no input.")

    uploaded = {"name": "../my script", "args": [], "builtin": False, "source": "print(1)\n"}
    path = program_file(uploaded, tmp_path)
    assert path == tmp_path / "my_script.py" and path.read_text() == "print(1)\n"
    assert check_input(uploaded, "") is None
