"""The native peer's network on a thread of its own, apart from MPyC's computing.

MPyC computes on its event loop without giving it a turn: sharing a big input takes
seconds (17 s for 120,000 values between three parties on two cores). Were the peer
connections on that loop too, for that long they would answer nothing: no ICE consent
(a browser calls the link disconnected after 5 s and failed after 30 s), no SCTP
acknowledgements and no keepalives, so the others would take a busy party for a gone one.
Hence signaling and aiortc run on a loop in a thread of their own, MPyC on the main
thread's, and each data channel crosses between the two in a ``CrossingChannel``, which
also sends the link's keepalive while MPyC sends nothing: the process and its network are
alive, and that is what the others' silence limit asks. (A browser party needs no such
thing: its page owns the connections, and MPyC computes in a worker.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..mesh import KEEPALIVE as KEEPALIVE_EVERY
from ..transport import HIGH_WATER, KEEPALIVE, LOW_WATER, BufferedChannel, MessageChannel

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long stopping waits for the network thread to end.
STOP_TIMEOUT = 5.0


class NetworkThread:
    """An event loop running in a daemon thread, with calls into it from the main thread."""

    def __init__(self, new_loop: Callable[[], asyncio.AbstractEventLoop]):
        self.loop = new_loop()
        self._thread = threading.Thread(target=self._run, name="mpyc-webrtc network",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # What is still pending (an ICE lookup, a timer's task) is cancelled and let end:
        # a task destroyed pending is logged by asyncio, after the party's last word.
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending, timeout=STOP_TIMEOUT))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the network loop; wait here for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Call ``function`` on the network loop; wait here for its result."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(function(*args))
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(call)
        return done.result()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(2 * STOP_TIMEOUT)


class CrossingChannel(BufferedChannel):
    """A data channel owned by the network loop (``inner``), used from MPyC's (``home``).

    Made on the network loop. Every counter is written by one thread only: bytes handed
    over by ``home`` and bytes passed on to the channel by the network loop.
    """

    def __init__(self, inner: MessageChannel, net: asyncio.AbstractEventLoop,
                 home: asyncio.AbstractEventLoop, *, keepalive: float | None = KEEPALIVE_EVERY,
                 high_water: int = HIGH_WATER):
        super().__init__()
        self.inner = inner
        self._net = net
        self._home = home
        self._keepalive = keepalive
        self._high_water = high_water
        self.low_water = LOW_WATER
        self._handed = 0  # home
        self._passed = 0  # network
        self._above = False  # network: above low water since the last drain told
        self._gone = False  # network: the channel closed
        self._in_use = False  # home: something listens (an attached transport or layer)
        self._last_sent = net.time()  # network
        self._timer: asyncio.TimerHandle | None = None
        inner.attach(self._arrived, self._closed, self._check_drain, self.low_water)
        if keepalive is not None:
            self._timer = net.call_later(keepalive / 2, self._tick)

    def __repr__(self) -> str:
        return repr(self.inner)

    # -- used from MPyC's loop ----------------------------------------------------------

    @property
    def buffered_amount(self) -> int:
        return self._handed - self._passed + self.inner.buffered_amount

    @property
    def is_open(self) -> bool:
        return not self._gone and self.inner.is_open

    def send(self, data: bytes | str) -> None:
        if not self.is_open:
            raise ConnectionError("the channel is closed")
        self._handed += len(data)
        self._net.call_soon_threadsafe(self._pass, data)

    def close(self) -> None:
        self._net.call_soon_threadsafe(self.inner.close)

    def attach(self, on_message: Callable[[bytes], None], on_close: Callable[[], None],
               on_drain: Callable[[], None], low_water: int) -> None:
        self._in_use = True
        super().attach(on_message, on_close, on_drain, low_water)

    def detach(self) -> None:
        self._in_use = False
        super().detach()

    def _set_low_water(self, low_water: int) -> None:
        self._net.call_soon_threadsafe(self._attach_inner, low_water)

    # -- on the network loop ------------------------------------------------------------

    def _attach_inner(self, low_water: int) -> None:
        self.low_water = low_water
        self.inner.attach(self._arrived, self._closed, self._check_drain, low_water)

    def _pass(self, data: bytes | str) -> None:
        self._passed += len(data)
        if not self.inner.is_open:
            return  # its close event tells MPyC's side
        try:
            self.inner.send(data)  # type: ignore[arg-type]
        except Exception as exc:
            log.debug("%s: could not send (%s)", self, exc)
            return  # the link is going: its close event follows
        self._last_sent = self._net.time()
        self._check_drain()

    def _check_drain(self) -> None:
        level = self._handed - self._passed + self.inner.buffered_amount
        if level > self.low_water:
            self._above = True
        elif self._above:
            self._above = False
            self._home.call_soon_threadsafe(self._drained)

    def _arrived(self, data: bytes | str) -> None:
        self._home.call_soon_threadsafe(self._received, data)

    def _closed(self) -> None:
        self._gone = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._home.call_soon_threadsafe(self._closed_remotely)

    def _tick(self) -> None:
        self._timer = None
        if self._gone:
            return
        assert self._keepalive is not None
        now = self._net.time()
        if self._in_use and self.inner.is_open and now - self._last_sent >= self._keepalive \
                and self._handed == self._passed \
                and self.inner.buffered_amount < self._high_water:
            try:
                self.inner.send(KEEPALIVE)  # type: ignore[arg-type]  # a text message
                self._last_sent = now
            except Exception as exc:
                log.debug("%s: could not send a keepalive (%s)", self, exc)
        self._timer = self._net.call_later(self._keepalive / 2, self._tick)


class CrossingFactory:
    """A channel factory that lives on the network loop, as MPyC's loop sees it. The same
    channel is always handed over in the same ``CrossingChannel`` (a mesh that keeps its
    channels for another run opens them again)."""

    def __init__(self, inner: Any, net: NetworkThread):
        self.inner = inner
        self.net = net
        self._crossings: dict[int, CrossingChannel] = {}

    async def open_channels(self, pid: int, parties: int,
                            timeout: float) -> dict[int, MessageChannel]:
        home = asyncio.get_running_loop()

        async def opened() -> dict[int, MessageChannel]:
            channels = await self.inner.open_channels(pid, parties, timeout)
            return {peer: self._crossing(channel, home) for peer, channel in channels.items()}

        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(opened(), self.net.loop))

    def _crossing(self, channel: MessageChannel, home: asyncio.AbstractEventLoop,
                  ) -> CrossingChannel:
        crossing = self._crossings.get(id(channel))
        if crossing is None or crossing.inner is not channel:
            crossing = CrossingChannel(channel, self.net.loop, home)
            self._crossings[id(channel)] = crossing
        return crossing

    async def close(self) -> None:
        await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self.inner.close(), self.net.loop))
