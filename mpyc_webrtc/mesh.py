"""Install a channel mesh in an MPyC runtime in place of its TCP connections.

``Runtime.start()`` opens TCP links and hands each to a ``MessageExchanger``;
here ``start``/``shutdown`` are replaced on the *instance*, so
``mpc.run(mpc.start())``, ``await mpc.start()`` and ``async with mpc:`` keep
working unchanged, while MPyC's own handshake (pid and PRSS keys, sent by the
lower pid) runs over channels opened by a pluggable ``ChannelFactory``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from .transport import MAX_MESSAGE_SIZE, ChannelTransport, MessageChannel

log = logging.getLogger(__name__)


class MeshError(Exception):
    """The mesh could not be set up or lost a party; the message is for people."""


class ChannelFactory(Protocol):
    """Opens one reliable, ordered message channel to every other party."""

    async def open_channels(self, pid: int, parties: int,
                            timeout: float) -> dict[int, MessageChannel]: ...

    async def close(self) -> None: ...


class Mesh:
    def __init__(self, mpc: Any, factory: ChannelFactory, *, connect_timeout: float = 60.0,
                 max_message_size: int = MAX_MESSAGE_SIZE,
                 on_failure: Callable[[MeshError], None] | None = None,
                 keep_channels: bool = False):
        self.mpc = mpc
        self.factory = factory
        self.connect_timeout = connect_timeout
        self.max_message_size = max_message_size
        self.on_failure = on_failure
        #: After ``shutdown`` leave the channels open for another run (see ``run_again``).
        self.keep_channels = keep_channels
        self.transports: dict[int, ChannelTransport] = {}
        self.failure: MeshError | None = None
        self.closing = False
        self._runtime_shutdown = type(mpc).shutdown.__get__(mpc)

    def install(self) -> Mesh:
        self.mpc.start = self.start
        self.mpc.shutdown = self.shutdown
        return self

    async def start(self) -> None:
        from mpyc.asyncoro import MessageExchanger

        mpc = self.mpc
        m = len(mpc.parties)
        logging.info(f"Start MPyC runtime v{mpc.version}")
        if m == 1:
            mpc.start_time = time.time()
            return
        loop = mpc._loop
        for peer in mpc.parties:
            peer.protocol = asyncio.Future(loop=loop) if peer.pid == mpc.pid else None
        channels = await self.factory.open_channels(mpc.pid, m, self.connect_timeout)
        missing = set(range(m)) - {mpc.pid} - set(channels)
        if missing:
            raise MeshError(f"No channel to parties {sorted(missing)}.")
        for peer_pid in sorted(channels):
            # The lower pid is MPyC's client: it sends its pid and PRSS keys first.
            protocol = MessageExchanger(mpc, peer_pid if peer_pid > mpc.pid else None)
            transport = ChannelTransport(
                channels[peer_pid], protocol, loop, peer_pid=peer_pid,
                max_message_size=self.max_message_size,
                on_failure=self._link_failed, on_lost=self._link_lost,
                keep_channel=self.keep_channels,
            )
            self.transports[peer_pid] = transport
        await mpc.parties[mpc.pid].protocol
        logging.info(f"All {m} parties connected over WebRTC data channels.")
        mpc.start_time = time.time()

    async def shutdown(self) -> None:
        self.closing = True
        try:
            if self.transports or len(self.mpc.parties) == 1:
                await self._runtime_shutdown()
        finally:
            if not self.keep_channels or self.failure is not None:
                await self.factory.close()

    def traffic(self) -> dict[str, int]:
        """Messages and bytes exchanged with the other parties so far in this run."""
        transports = self.transports.values()
        return {
            "messages": sum(t.messages_sent + t.messages_received for t in transports),
            "bytes": sum(t.bytes_sent + t.bytes_received for t in transports),
        }

    def peer_left(self, peer_pid: int) -> None:
        """Signaling says the party is gone: fail now rather than after ICE gives up (~30 s)."""
        if self.transports and not self.closing:
            self._fail(MeshError(
                f"Party {peer_pid} left the session before the computation finished."
            ))

    def _link_failed(self, peer_pid: int, exc: BaseException) -> None:
        self._fail(MeshError(f"The link to party {peer_pid} broke: {exc}"))

    def _link_lost(self, peer_pid: int) -> None:
        if not self.closing:
            self._fail(MeshError(
                f"Party {peer_pid} disconnected before the computation finished."
            ))

    def _fail(self, error: MeshError) -> None:
        if self.failure is None:
            self.failure = error
            log.error("%s", error)
            if self.on_failure is not None:
                self.on_failure(error)


def install_mesh(mpc: Any, factory: ChannelFactory, **options: Any) -> Mesh:
    """Make ``mpc.start()``/``mpc.shutdown()`` use channels from ``factory``."""
    return Mesh(mpc, factory, **options).install()


def prepare_next_run(mpc: Any) -> None:
    """Make an MPyC runtime that finished a run ready to run again over kept channels.

    Fresh PRSS keys (the threshold setter draws them), so that the next run's shared
    randomness is independent of the last one's; the program counter starts at zero
    again, as it does at every party, so that message labels match.
    """
    mpc.threshold = mpc.threshold
    mpc._program_counter = [0, 0]
    mpc._pc_level = 0
