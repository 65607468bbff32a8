"""In-memory message channels: the mesh and transport without any network.

Used by the tests (with deterministic delivery and a scripted buffered amount)
and handy to try an MPyC program in one process.
"""

from __future__ import annotations

import asyncio

from .transport import BufferedChannel


class MemoryChannel(BufferedChannel):
    """One end of an in-memory channel pair; delivery is asynchronous, like a network."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str = ""):
        super().__init__()
        self.loop = loop
        self.name = name
        self.remote: MemoryChannel | None = None
        self.sent: list[bytes] = []
        self.closed = False
        self.buffered_amount = 0

    def __repr__(self) -> str:
        return f"the in-memory channel {self.name!r}"

    @property
    def is_open(self) -> bool:
        return not self.closed

    def send(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionError("channel is closed")
        self.sent.append(data)
        if self.remote is not None:
            self.loop.call_soon(self.remote._deliver, data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.remote is not None:
                self.loop.call_soon(self.remote._remote_closed)

    def drain(self, amount: int = 0) -> None:
        """Simulate the network taking the buffer down to ``amount`` bytes."""
        self.buffered_amount = amount
        if amount <= self.low_water:
            self._drained()

    def _deliver(self, data: bytes) -> None:
        self._received(data)

    def _remote_closed(self) -> None:
        self.closed = True
        self._closed_remotely()


def channel_pair(loop: asyncio.AbstractEventLoop) -> tuple[MemoryChannel, MemoryChannel]:
    a, b = MemoryChannel(loop, "a"), MemoryChannel(loop, "b")
    a.remote, b.remote = b, a
    return a, b


class MemoryHub:
    """A full mesh of in-memory channels for m parties living in one process."""

    def __init__(self, loop: asyncio.AbstractEventLoop, parties: int):
        self.channels: dict[tuple[int, int], MemoryChannel] = {}
        for i in range(parties):
            for j in range(i + 1, parties):
                self.channels[i, j], self.channels[j, i] = channel_pair(loop)

    def factory(self, pid: int) -> MemoryFactory:
        return MemoryFactory(self, pid)


class MemoryFactory:
    def __init__(self, hub: MemoryHub, pid: int):
        self.hub = hub
        self.pid = pid
        self.closed = False

    async def open_channels(self, pid: int, parties: int, timeout: float):
        return {j: self.hub.channels[pid, j] for j in range(parties) if j != pid}

    async def close(self) -> None:
        self.closed = True
        for (i, _), channel in self.hub.channels.items():
            if i == self.pid:
                channel.close()
