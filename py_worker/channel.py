"""Browser data channels, transferred to this worker, as the mesh's message channels.

The page creates one RTCPeerConnection per other party and, in the same task, transfers
its negotiated data channel to the worker, which hands it here at once: ``JsChannel``
sets its event handlers before the browser can deliver anything, and keeps what arrives
until ``ChannelTransport`` attaches. ``JsChannelFactory`` is the ``ChannelFactory`` the
mesh asks for one open channel per other party.

Exceptions never escape into a JS event handler: they are logged instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from mpyc_webrtc.mesh import MeshError
from mpyc_webrtc.sentences import say
from mpyc_webrtc.transport import BufferedChannel

try:
    from pyodide.ffi import create_proxy, to_js
except ImportError:  # outside Pyodide, e.g. unit tests with a stand-in for the JS channel
    def create_proxy(function: Any) -> Any:
        return function

    def to_js(data: Any) -> Any:
        return data

log = logging.getLogger(__name__)


def _parties(pids: list[int]) -> str:
    pids = sorted(pids)
    if len(pids) == 1:
        return f"party {pids[0]}"
    return "parties " + ", ".join(map(str, pids[:-1])) + f" and {pids[-1]}"


class JsChannel(BufferedChannel):
    """A JS ``RTCDataChannel`` as a ``transport.MessageChannel``."""

    def __init__(self, dc: Any, peer: int, on_change: Callable[[], None] | None = None,
                 on_open: Callable[[int], None] | None = None):
        super().__init__()
        self.dc = dc
        self.peer = peer
        self._on_change = on_change
        self._on_open = on_open
        self.closed = asyncio.Event()
        dc.binaryType = "arraybuffer"
        self._handlers = {
            "onmessage": create_proxy(self._message),
            "onopen": create_proxy(self._open),
            "onclose": create_proxy(self._close),
            "onerror": create_proxy(self._error),
            "onbufferedamountlow": create_proxy(lambda event: self._drained()),
        }
        for name, handler in self._handlers.items():
            setattr(dc, name, handler)
        if dc.readyState == "closed":
            self._close(None)

    def __repr__(self) -> str:
        return f"the channel to party {self.peer}"

    @property
    def is_open(self) -> bool:
        return self.dc.readyState == "open"

    # -- transport.MessageChannel ---------------------------------------------------------

    @property
    def buffered_amount(self) -> int:
        return self.dc.bufferedAmount

    def send(self, data: bytes) -> None:
        self.dc.send(to_js(data))

    def close(self) -> None:
        if self.dc.readyState in ("connecting", "open"):
            self.dc.close()

    def _set_low_water(self, low_water: int) -> None:
        self.dc.bufferedAmountLowThreshold = low_water

    def dispose(self) -> None:
        """Unhook from the JS channel and free the handlers (after it closed)."""
        for name, handler in self._handlers.items():
            try:
                setattr(self.dc, name, None)
                if hasattr(handler, "destroy"):
                    handler.destroy()
            except Exception:
                log.debug("could not unhook %s from the channel to party %d", name, self.peer)
        self._handlers = {}

    # -- JS event handlers: nothing may escape ----------------------------------------------

    def _message(self, event: Any) -> None:
        try:
            data = event.data
            self._received(data if isinstance(data, str) else data.to_bytes())
        except Exception:
            log.exception("reading a message from party %d failed", self.peer)

    def _open(self, event: Any) -> None:
        try:
            log.debug("channel to party %d is open", self.peer)
            self._changed()
            if self._on_open is not None:
                self._on_open(self.peer)
        except Exception:
            log.exception("handling the opening of party %d's channel failed", self.peer)

    def _close(self, event: Any) -> None:
        self.closed.set()
        try:
            self._changed()
        except Exception:
            log.exception("handling the close of party %d's channel failed", self.peer)
        self._closed_remotely()

    def _error(self, event: Any) -> None:
        try:
            error = getattr(event, "error", None)
            log.warning("channel to party %d reports an error: %s", self.peer,
                        getattr(error, "message", None) or error or "unknown")
        except Exception:
            log.exception("handling an error of party %d's channel failed", self.peer)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


class JsChannelFactory:
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
        self.channels: dict[int, JsChannel] = {}
        self.started = False
        self.ended: str | None = None
        self.failures: dict[int, str] = {}
        self.started_at: float | None = None
        self.connect_seconds: float | None = None
        self._changes = asyncio.Event()

    # -- what the page reports ------------------------------------------------------------

    def add_channel(self, peer: int, dc: Any) -> JsChannel:
        old = self.channels.get(peer)
        if old is not None:
            log.warning("a second channel to party %d arrived; closing the first", peer)
            old.close()
        channel = self.channels[peer] = JsChannel(dc, peer, self._changed,
                                                  self.on_channel_open)
        self._changed()
        return channel

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
            peer, say("connect.failed", who=f"party {peer}", reason=reason,
                      hint=say("connect.hint")))
        self._changed()

    def peer_left(self, peer: int) -> None:
        self.failures.setdefault(peer, say("party.left", party=peer))
        self._changed()

    # -- ChannelFactory -------------------------------------------------------------------

    async def open_channels(self, pid: int, parties: int,
                            timeout: float) -> dict[int, JsChannel]:
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
                broken[p] = say("connect.failed", who=f"party {p}",
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
