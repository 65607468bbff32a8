"""The page's data channels, as the mesh's message channels.

The page keeps each RTCDataChannel (see ``ring.py`` for why) and writes what happens to it
into the worker's inbox; ``inbox.Inbox`` hands those records to the ``PageChannel`` of that
channel id. What Python sends goes to the page with ``Outbox`` (``postMessage``), which
hands it to the channel. ``PageChannelFactory`` is the ``ChannelFactory`` the mesh asks for
one open channel per other party.

Exceptions never escape into the code that reads the inbox: they are logged instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from mpyc_webrtc.mesh import KEEPALIVE as KEEPALIVE_EVERY
from mpyc_webrtc.mesh import MeshError
from mpyc_webrtc.sentences import place, say
from mpyc_webrtc.transport import HIGH_WATER, KEEPALIVE, BufferedChannel

from . import ring

try:
    from pyodide.ffi import to_js
except ImportError:  # outside Pyodide (the tests): bytes stay bytes
    def to_js(data: bytes) -> bytes:  # type: ignore[misc]
        return data

log = logging.getLogger(__name__)


def _parties(pids: list[int]) -> str:
    pids = sorted(pids)
    if len(pids) == 1:
        return place(pids[0])
    numbers = [str(pid + 1) for pid in pids]  # as people count them
    return "parties " + ", ".join(numbers[:-1]) + f" and {numbers[-1]}"


class Outbox(Protocol):
    """What Python asks the page to do with a channel (``web/worker.js`` posts it)."""

    def send(self, channel: int, data: bytes | str) -> None: ...

    def close(self, channel: int) -> None: ...

    def low_water(self, channel: int, amount: int) -> None: ...

    def keep_alive(self, channel: int, every: float, text: str, high_water: int) -> None:
        """Send ``text`` on the channel whenever Python sent nothing for ``every`` seconds
        (and less than ``high_water`` bytes wait): Python may compute for longer than the
        others' silence limit without a turn for its event loop, the page never does."""


class PageChannel(BufferedChannel):
    """The page's RTCDataChannel ``channel`` to ``peer`` as a ``transport.MessageChannel``.

    Its state follows the page's records; its ``bufferedAmount`` is what Python posted that
    the page has not yet handed to the channel, plus what the channel itself still holds
    (the page keeps both counts in the shared header).
    """

    def __init__(self, peer: int, channel: int, outbox: Outbox, memory: ring.Memory,
                 on_change: Callable[[], None] | None = None,
                 on_open: Callable[[int], None] | None = None):
        super().__init__()
        self.peer = peer
        self.channel = channel
        self.outbox = outbox
        self.memory = memory
        self.state = "connecting"
        self.posted = 0
        self._on_change = on_change
        self._on_open = on_open
        self.closed = asyncio.Event()
        outbox.keep_alive(channel, KEEPALIVE_EVERY, KEEPALIVE, HIGH_WATER)

    def __repr__(self) -> str:
        return f"the channel to party {self.peer}"

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    # -- transport.MessageChannel ---------------------------------------------------------

    @property
    def buffered_amount(self) -> int:
        memory, peer = self.memory, self.peer
        unsent = (self.posted - memory.load(ring.SENT + 2 * peer)) & 0xFFFFFFFF
        amount = unsent + memory.load(ring.BUFFERED + 2 * peer)
        if amount > self.low_water:
            memory.store(ring.WANT_DRAIN + peer, 1)  # the page writes DRAINED when it is
        return amount

    def send(self, data: bytes | str) -> None:
        if self.state != "open":
            raise ConnectionError(f"{self!r} is {self.state}")
        if isinstance(data, str):
            self.outbox.send(self.channel, data)
            self.posted += len(data.encode())
        else:
            self.outbox.send(self.channel, to_js(data))  # a Uint8Array (bytes are not
            self.posted += len(data)                      # converted by themselves)

    def close(self) -> None:
        if self.state in ("connecting", "open"):
            self.state = "closing"
            self.outbox.close(self.channel)

    def _set_low_water(self, low_water: int) -> None:
        self.outbox.low_water(self.channel, low_water)

    def dispose(self) -> None:
        """Nothing to unhook: the page forgets a closed channel itself."""

    # -- what the page reports ------------------------------------------------------------

    def handle(self, record: ring.Record) -> None:
        kind = record.kind
        if kind == ring.BINARY:
            self._received(record.payload)
        elif kind == ring.TEXT:
            self._received(record.text)
        elif kind == ring.DRAINED:
            self._drained()
        elif kind == ring.OPEN:
            log.debug("channel to party %d is open", self.peer)
            self.state = "open"
            self._changed()
            if self._on_open is not None:
                self._on_open(self.peer)
        elif kind == ring.CLOSING:
            if self.state != "closed":
                self.state = "closing"
        elif kind == ring.CLOSED:
            if self.state != "closed":
                self.state = "closed"
                self.closed.set()
                self._changed()
                self._closed_remotely()
        elif kind == ring.ERROR:
            log.warning("channel to party %d reports an error: %s", self.peer,
                        record.text or "unknown")

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


class PageChannelFactory:
    """The mesh's ``ChannelFactory`` in a browser: channels come from the page.

    The page calls ``add_channel`` for each peer connection it creates, ``start`` when the
    signaling server says everyone has joined, ``peer_failed``/``peer_left`` when a
    connection fails or a party leaves, and ``end`` when signaling ended early.
    """

    def __init__(self, *, join_timeout: float = 600.0, linger: float = 10.0,
                 on_connected: Callable[[float], None] | None = None,
                 on_channel_open: Callable[[int], None] | None = None):
        self.join_timeout = join_timeout
        self.linger = linger
        self.on_connected = on_connected
        self.on_channel_open = on_channel_open
        self.channels: dict[int, PageChannel] = {}
        self.started = False
        self.ended: str | None = None
        self.failures: dict[int, str] = {}
        self.started_at: float | None = None
        self.connect_seconds: float | None = None
        self._changes = asyncio.Event()

    # -- what the page reports ------------------------------------------------------------

    def add_channel(self, peer: int, channel: int, outbox: Outbox,
                    memory: ring.Memory) -> PageChannel:
        """The page made data channel ``channel`` to ``peer``."""
        old = self.channels.get(peer)
        if old is not None:
            log.warning("a second channel to party %d arrived; closing the first", peer)
            old.close()
        # A new link to the peer (it came back after a reload): what failed was the old one.
        self.failures.pop(peer, None)
        made = self.channels[peer] = PageChannel(peer, channel, outbox, memory,
                                                 self._changed, self.on_channel_open)
        self._changed()
        return made

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.started_at = time.monotonic()
            self._changed()

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self._changed()

    def peer_failed(self, peer: int, reason: str) -> None:
        """The page gave up on the connection to ``peer``; ``reason`` ends with a period."""
        self.failures.setdefault(
            peer, say("connect.failed", who=place(peer), reason=reason,
                      hint=say("connect.hint")))
        self._changed()

    def peer_left(self, peer: int) -> None:
        self.failures.setdefault(peer, say("party.left", who=place(peer)))
        self._changed()

    # -- ChannelFactory -------------------------------------------------------------------

    async def open_channels(self, pid: int, parties: int,
                            timeout: float) -> dict[int, PageChannel]:
        peers = [p for p in range(parties) if p != pid]
        if not self.started:
            log.info("waiting for all %d parties to join", parties)
            await self._until(lambda: self.started or self.ended is not None,
                              self.join_timeout)
            if not self.started:
                if self.ended is not None:
                    raise MeshError(f"The session ended before all {parties} parties joined: "
                                    f"{self.ended}")
                raise MeshError(f"Not all {parties} parties joined within "
                                f"{self.join_timeout / 60:.0f} minutes.")

        def settled() -> bool:
            return all(self._is_open(p) for p in peers) or bool(self._broken(peers))

        await self._until(settled, timeout)
        broken = self._broken(peers)
        if broken:
            raise MeshError(broken[min(broken)])
        missing = [p for p in peers if not self._is_open(p)]
        if missing:
            raise MeshError(say("connect.timeout", who=_parties(missing),
                                seconds=f"{timeout:.0f}", hint=say("connect.hint")))
        assert self.started_at is not None
        self.connect_seconds = time.monotonic() - self.started_at
        log.info("data channels to all %d other parties are open %.3f s after the last "
                 "party joined", len(peers), self.connect_seconds)
        if self.on_connected is not None:
            self.on_connected(self.connect_seconds)
        return {p: self.channels[p] for p in peers}

    async def close(self, graceful: bool = True, linger: float | None = None) -> None:
        """Close every channel; gracefully, wait until each finished closing (then the
        other side has received all our data)."""
        channels, self.channels = self.channels, {}
        for channel in channels.values():
            try:
                channel.close()
            except Exception:
                log.debug("closing the channel to party %d failed", channel.peer)
        if graceful and channels:
            linger = self.linger if linger is None else linger
            waits = [channel.closed.wait() for channel in channels.values()]
            try:
                await asyncio.wait_for(asyncio.gather(*waits), linger)
            except TimeoutError:
                log.warning("some channels did not finish closing within %.0f s", linger)
        for channel in channels.values():
            channel.dispose()

    # -- helpers --------------------------------------------------------------------------

    def _is_open(self, peer: int) -> bool:
        channel = self.channels.get(peer)
        return channel is not None and channel.is_open

    def _broken(self, peers: list[int]) -> dict[int, str]:
        broken = {p: why for p, why in self.failures.items() if p in peers}
        for p in peers:
            channel = self.channels.get(p)
            if p not in broken and channel is not None and channel.closed.is_set():
                broken[p] = say("connect.failed", who=place(p),
                                reason=say("connect.closed_early"), hint=say("connect.hint"))
        return broken

    def _changed(self) -> None:
        self._changes.set()

    async def _until(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changes.clear()
            try:
                await asyncio.wait_for(self._changes.wait(), remaining)
            except TimeoutError:
                return condition()
        return True
