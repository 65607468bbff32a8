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

from .recovery import HEADER_SIZE, RecoveringChannel, Redundancy, recovering
from .sentences import say
from .transport import MAX_MESSAGE_SIZE, ChannelTransport, MessageChannel, PeerSilent

log = logging.getLogger(__name__)


class MeshError(Exception):
    """The mesh could not be set up or lost a party; the message is for people."""


class ChannelFactory(Protocol):
    """Opens one reliable message channel to every other party: ordered, or unordered when
    the mesh recovers lost messages itself (``Mesh.recovery``; it restores the order)."""

    async def open_channels(self, pid: int, parties: int,
                            timeout: float) -> dict[int, MessageChannel]: ...

    async def close(self) -> None: ...


#: Every link sends a keepalive after this many idle seconds...
KEEPALIVE = 1.0
#: ...so a party not heard from for this long is gone: it was killed, lost its network or
#: closed its page. Long enough for SCTP to retransmit a lost packet twice on a lossy link
#: (its timeout starts at 1 s and doubles), short enough that nobody waits long for a
#: party that will never answer.
SILENCE_LIMIT = 7.0
#: How long a party that must stop waits for the others to acknowledge its reason.
SETTLE_TIME = 2.0


class Mesh:
    def __init__(self, mpc: Any, factory: ChannelFactory, *, connect_timeout: float = 60.0,
                 max_message_size: int = MAX_MESSAGE_SIZE,
                 on_failure: Callable[[MeshError], None] | None = None,
                 keep_channels: bool = False, keepalive: float | None = KEEPALIVE,
                 silence_limit: float | None = SILENCE_LIMIT,
                 recovery: Redundancy | None = "auto"):
        self.mpc = mpc
        self.factory = factory
        self.connect_timeout = connect_timeout
        self.max_message_size = max_message_size
        self.on_failure = on_failure
        #: After ``shutdown`` leave the channels open for another run (see ``run_again``).
        self.keep_channels = keep_channels
        self.keepalive = keepalive
        self.silence_limit = silence_limit
        #: Recover lost messages above the channel (``recovery.Recovery``; every party of a
        #: session must do the same), and when to send small ones twice; None: off.
        self.recovery = recovery
        self._recovering: dict[int, RecoveringChannel] = {}
        #: How each party is called in messages for people ("party 2 (Bob)"); see ``name``.
        self.names: dict[int, str] = {}
        self.transports: dict[int, ChannelTransport] = {}
        self.failure: MeshError | None = None
        self.closing = False
        #: Parties signaling said lost the server during this run (``peer_away``).
        self._away: set[int] = set()
        self._runtime_shutdown = type(mpc).shutdown.__get__(mpc)

    def install(self) -> Mesh:
        self.mpc.start = self.start
        self.mpc.shutdown = self.shutdown
        return self

    async def start(self) -> None:
        from mpyc.asyncoro import MessageExchanger

        mpc = self.mpc
        m = len(mpc.parties)
        # A script may start MPyC again after a shutdown: over the kept channels, with new
        # transports, and a failure from now on counts again.
        self.closing = False
        self.transports = {}
        self._away = set()
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
        max_message_size = self.max_message_size
        if self.recovery is not None:
            layers = recovering(channels, loop, redundancy=self.recovery, name=self._named)
            self._recovering.update(layers)
            channels = dict(layers)
            max_message_size -= HEADER_SIZE
        for peer_pid in sorted(channels):
            # The lower pid is MPyC's client: it sends its pid and PRSS keys first.
            protocol = MessageExchanger(mpc, peer_pid if peer_pid > mpc.pid else None)
            transport = ChannelTransport(
                channels[peer_pid], protocol, loop, peer_pid=peer_pid,
                max_message_size=max_message_size,
                on_failure=self._link_failed, on_lost=self._link_lost,
                keep_channel=self.keep_channels, keepalive=self.keepalive,
                silence_limit=self.silence_limit,
                startup_grace=self.connect_timeout + (self.silence_limit or 0.0),
                on_abort=self._peer_aborted,
            )
            self.transports[peer_pid] = transport
            if peer_pid in self._away:  # it lost the server while the links were made
                transport.end_grace()
        await mpc.parties[mpc.pid].protocol
        logging.info(f"All {m} parties connected over WebRTC data channels.")
        mpc.start_time = time.time()

    async def shutdown(self) -> None:
        self.closing = True
        if self._recovering:
            stats = self.recovery_stats()
            log.info("message recovery so far: %d frames, %d resent (%d on a gap), %d copies, "
                     "%d acknowledgements alone, %d duplicates received, %d recovered",
                     stats["frames"], stats["retries"], stats["fast_retries"], stats["copies"],
                     stats["acks"], stats["duplicates"], stats["recovered"])
        try:
            if self.transports or len(self.mpc.parties) == 1:
                await self._runtime_shutdown()
        finally:
            if not self.keep_channels or self.failure is not None:
                await self.factory.close()

    async def settle(self, timeout: float = SETTLE_TIME) -> None:
        """Wait until every other party has acknowledged what this one sent (its reason to
        stop above all), or ``timeout``: closing the peer connections at once would drop a
        message lost on the way, and the others would blame the wrong party. Only message
        recovery knows what was acknowledged; without it there is nothing to wait for."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end and any(
                channel.core.unacknowledged and channel.is_open
                for channel in self._recovering.values()):
            await asyncio.sleep(0.01)

    def recovery_stats(self) -> dict[str, int]:
        """What message recovery did on every link so far (frames resent, copies, bytes)."""
        total: dict[str, int] = {}
        for channel in self._recovering.values():
            for key, value in channel.core.stats.items():
                total[key] = total.get(key, 0) + value
        return total

    def traffic(self) -> dict[str, int]:
        """Messages and bytes exchanged with the other parties so far in this run."""
        transports = self.transports.values()
        return {
            "messages": sum(t.messages_sent + t.messages_received for t in transports),
            "bytes": sum(t.bytes_sent + t.bytes_received for t in transports),
        }

    def name(self, pid: int) -> str:
        """"Party 2", or "Party 2 (Bob)" when the roster gave it a name or a place (pid 1:
        people count parties from 1)."""
        extra = self.names.get(pid)
        return f"Party {pid + 1} ({extra})" if extra else f"Party {pid + 1}"

    def _named(self, pid: int) -> str:
        """``name`` inside a sentence."""
        return "p" + self.name(pid)[1:]

    def set_names(self, members: list[dict[str, Any]]) -> None:
        """Take names and places from a roster's members."""
        for member in members:
            pid = member.get("pid")
            if not isinstance(pid, int):
                continue
            parts = [str(member.get(key) or "").strip() for key in ("name", "label")]
            parts = [p for p in parts if p and p != f"party {pid}"]
            self.names[pid] = ", ".join(dict.fromkeys(parts))

    def peer_left(self, peer_pid: int) -> None:
        """Signaling says the party is gone: fail now rather than after ICE gives up (~30 s)."""
        if self.transports and not self.closing:
            self._fail(MeshError(say("party.left", who=self._named(peer_pid))))

    def peer_away(self, peer_pid: int) -> None:
        """Signaling says the party lost its connection to the server: it may compute on over
        its links, or be gone (a crash closes its socket too). Its links wait for it no longer
        than for a party already heard from, rather than the start's grace (~30 s)."""
        self._away.add(peer_pid)
        transport = self.transports.get(peer_pid)
        if transport is not None:
            transport.end_grace()

    def _link_failed(self, peer_pid: int, exc: BaseException) -> None:
        if isinstance(exc, PeerSilent):
            self._fail(MeshError(
                f"{self.name(peer_pid)} stopped responding: {exc}. It may have lost its "
                "network, closed its page or crashed; the computation cannot go on "
                "without it."))
        else:
            detail = str(exc).strip() or f"unexpected {type(exc).__name__}"
            self._fail(MeshError(f"The link to {self._named(peer_pid)} broke: {detail}"))

    def _link_lost(self, peer_pid: int) -> None:
        if not self.closing:
            self._fail(MeshError(
                f"{self.name(peer_pid)} disconnected before the computation finished."
            ))

    def _peer_aborted(self, peer_pid: int, reason: str) -> None:
        """Another party had to stop; its reason (say, a third party went silent) is the
        reason here too, rather than the closing of its links that follows."""
        text = "".join(c if c.isprintable() else " " for c in reason).strip()
        if not self.closing:
            self._fail(MeshError(text or f"{self.name(peer_pid)} stopped."), tell=False)

    def _fail(self, error: MeshError, tell: bool = True) -> None:
        if self.failure is None:
            self.failure = error
            log.error("%s", error)
            if tell:
                for transport in self.transports.values():
                    transport.send_abort(str(error))
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
