"""The browser party's Python (py_worker), run natively with a stand-in for JS channels.

No browser and no network: ``FakeDataChannel`` has the attributes and event-handler slots
of a JS ``RTCDataChannel`` that ``JsChannel`` uses, and the tests fire its events.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from mpyc_webrtc.launch import COMMON_MPYC_OPTIONS, check_input, program_argv, program_file
from mpyc_webrtc.mesh import MeshError
from py_worker.channel import JsChannel, JsChannelFactory


class JsBytes:
    """An ArrayBuffer as Pyodide hands it to Python."""

    def __init__(self, data: bytes):
        self.data = data

    def to_bytes(self) -> bytes:
        return self.data


class FakeDataChannel:
    def __init__(self) -> None:
        self.readyState = "connecting"
        self.bufferedAmount = 0
        self.bufferedAmountLowThreshold = 0
        self.binaryType = "blob"
        self.sent: list[bytes] = []
        self.onmessage = self.onopen = self.onclose = self.onerror = None
        self.onbufferedamountlow = None

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.readyState = "closing"

    # what the browser would do
    def open(self) -> None:
        self.readyState = "open"
        self.onopen(SimpleNamespace())

    def receive(self, data: bytes) -> None:
        self.onmessage(SimpleNamespace(data=JsBytes(data)))

    def closed(self) -> None:
        self.readyState = "closed"
        self.onclose(SimpleNamespace())


def test_channel_keeps_early_messages_and_close_until_attached():
    dc = FakeDataChannel()
    channel = JsChannel(dc, peer=1)
    assert dc.binaryType == "arraybuffer"
    dc.receive(b"one")
    dc.receive(b"two")
    dc.closed()
    got, closes = [], []
    channel.attach(got.append, lambda: closes.append(True), lambda: None, low_water=123)
    assert got == [b"one", b"two"] and closes == [True]
    assert dc.bufferedAmountLowThreshold == 123
    dc.receive(b"three")
    assert got == [b"one", b"two", b"three"]


def test_channel_handlers_never_raise_into_js():
    dc = FakeDataChannel()
    channel = JsChannel(dc, peer=2)

    def broken(data: bytes) -> None:
        raise RuntimeError("bug in the handler")

    channel.attach(broken, broken, broken, low_water=0)  # type: ignore[arg-type]
    dc.receive(b"x")  # logged, not raised
    dc.onbufferedamountlow(SimpleNamespace())
    dc.onmessage(SimpleNamespace(data=None))  # not a buffer at all
    dc.closed()


def test_channel_sends_and_reports_buffered_amount():
    dc = FakeDataChannel()
    channel = JsChannel(dc, peer=1)
    channel.send(b"abc")
    dc.bufferedAmount = 3
    assert dc.sent == [b"abc"] and channel.buffered_amount == 3
    channel.close()
    assert dc.readyState == "closing"
    channel.dispose()
    assert dc.onmessage is None


async def test_factory_waits_for_start_and_every_open_channel():
    connected = []
    factory = JsChannelFactory(on_connected=connected.append)
    opening = asyncio.ensure_future(factory.open_channels(1, 3, timeout=5))
    await asyncio.sleep(0.01)
    dcs = {0: FakeDataChannel(), 2: FakeDataChannel()}
    factory.start()
    for peer, dc in dcs.items():
        factory.add_channel(peer, dc)
    dcs[0].open()
    await asyncio.sleep(0.01)
    assert not opening.done()
    dcs[2].open()
    channels = await asyncio.wait_for(opening, 1)
    assert sorted(channels) == [0, 2] and channels[2].dc is dcs[2]
    assert len(connected) == 1


async def test_factory_names_the_parties_it_could_not_reach():
    factory = JsChannelFactory()
    factory.start()
    factory.add_channel(0, FakeDataChannel())
    with pytest.raises(MeshError, match="Could not connect to parties 0 and 2 within"):
        await factory.open_channels(1, 3, timeout=0.05)


async def test_factory_fails_at_once_when_a_connection_fails_or_a_party_leaves():
    factory = JsChannelFactory()
    factory.start()
    opening = asyncio.ensure_future(factory.open_channels(0, 3, timeout=30))
    await asyncio.sleep(0.01)
    factory.peer_failed(2, "the connection failed.")
    with pytest.raises(MeshError, match="Could not connect to party 2: the connection failed"):
        await asyncio.wait_for(opening, 1)

    factory = JsChannelFactory()
    factory.start()
    factory.peer_left(1)
    with pytest.raises(MeshError, match="Party 1 left the session"):
        await factory.open_channels(0, 2, timeout=30)


async def test_factory_stops_waiting_when_the_session_ends_before_everyone_joined():
    factory = JsChannelFactory()
    opening = asyncio.ensure_future(factory.open_channels(0, 3, timeout=30))
    await asyncio.sleep(0.01)
    factory.end("This session was closed because it was idle for too long.")
    with pytest.raises(MeshError, match="ended before all 3 parties joined: This session"):
        await asyncio.wait_for(opening, 1)


async def test_factory_close_waits_for_the_closing_handshake():
    factory = JsChannelFactory()
    dc = FakeDataChannel()
    factory.add_channel(1, dc)
    dc.open()
    closing = asyncio.ensure_future(factory.close(graceful=True, linger=5))
    await asyncio.sleep(0.01)
    assert dc.readyState == "closing" and not closing.done()
    dc.closed()
    await asyncio.wait_for(closing, 1)
    assert dc.onclose is None  # handlers released


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
        "Your numbers must be whole numbers separated by commas, like 3,1,2 (got 'four').")
    assert check_input(builtin, "-4, 5") is None
    vote = {"name": "vote", "args": [], "builtin": True}
    assert check_input(vote, "maybe") == "Your vote must be yes or no (got 'maybe')."
    assert check_input(vote, "yes") is None
    assert check_input({"name": "santa", "args": [], "builtin": True}, "x") == (
        "This program takes no input.")

    uploaded = {"name": "../my script", "args": [], "builtin": False, "source": "print(1)\n"}
    path = program_file(uploaded, tmp_path)
    assert path == tmp_path / "my_script.py" and path.read_text() == "print(1)\n"
    assert check_input(uploaded, "") is None
