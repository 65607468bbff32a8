"""A native party's peer connections (aiortc): one link per party, with MPyC's data channel
and the chat's.

The signaling client (``mpyc_webrtc.client``, through ``signaling.Signaling``) decides when
to make a link, who offers, and which descriptions and candidates to apply when; a
``PeerLink`` only does it with aiortc, in the order it is told, and reports how its
connection is doing. ``AiortcFactory`` is the ``ChannelFactory`` MPyC's mesh asks for one
open channel per other party.

Each peer connection carries two negotiated data channels: MPyC's (``mpyc``, id 0) and the
chat's (``wire.CHAT_CHANNEL``: ``chat``, id 1, ordered). Only MPyC's goes to the mesh; a
chat frame is one JSON object handed to the signaling client (``Signaling.chat_received``),
and the chat is written there only when the client says so (``AiortcFactory.send_chat``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from .. import wire
from ..client import Event
from ..mesh import MeshError
from ..sentences import place, say
from ..transport import BufferedChannel
from .errors import PeerError
from .ice import (
    ice_path,
    plan_ice_servers,
    rtc_configuration,
    selected_candidates,
    udp_answers,
    udp_probe_target,
)
from .signaling import Signaling

log = logging.getLogger(__name__)

#: How long closing a peer connection may take.
CLOSE_TIMEOUT = 3.0
#: How long a link whose party left after offer and answer were exchanged still waits
#: for its own time-out (which says better why, when the party left because it could not
#: reach this one either: both time-outs started together, so that one is due about now).
LEFT_GRACE = 3.0
#: The channel's agreed id: both sides create it with ``negotiated`` (browsers too).
CHANNEL_ID = 0
CHANNEL_LABEL = "mpyc"
#: The longest chat frame read: a chat payload is far smaller (its text has at most
#: ``wire.MAX_CHAT_LENGTH`` characters).
MAX_CHAT_FRAME = 16 * 1024


class PeerConnection(RTCPeerConnection):
    """aiortc's RTCPeerConnection, whose connecting tasks never end unheard.

    aiortc connects (ICE, DTLS, SCTP) in a task it starts and forgets, after each
    description. Closed during it (the other party stopped, or this one), the task fails
    ("Cannot send data, not connected") and asyncio logs "Task exception was never
    retrieved" with a traceback. Here each such task's outcome is read when it ends: after
    ``close`` it is logged as part of closing, before as a warning.
    """

    def __init__(self, configuration: Any = None) -> None:
        super().__init__(configuration)
        self.closing = False

    def _RTCPeerConnection__connect(self) -> asyncio.Future[None]:  # noqa: N802 (aiortc's)
        task = asyncio.ensure_future(RTCPeerConnection._RTCPeerConnection__connect(self))
        task.add_done_callback(self._connected)
        return task

    def _connected(self, task: asyncio.Future[None]) -> None:
        if task.cancelled() or (error := task.exception()) is None:
            return
        if self.closing or self.connectionState == "closed":
            log.debug("connecting ended by closing: %r", error)
        else:
            log.warning("connecting failed: %s", error or type(error).__name__)

    async def close(self) -> None:
        self.closing = True
        await super().close()


class AiortcChannel(BufferedChannel):
    """aiortc's RTCDataChannel as a ``MessageChannel``."""

    def __init__(self, dc: RTCDataChannel, peer: int):
        super().__init__()
        self.dc = dc
        self.peer = peer
        self.closed = asyncio.Event()
        # aiortc calls these from its DTLS/SCTP loop: BufferedChannel lets nothing escape.
        dc.on("message", self._received)
        dc.on("close", self._close)
        dc.on("bufferedamountlow", self._drained)

    def __repr__(self) -> str:
        return f"the channel to party {self.peer}"

    @property
    def buffered_amount(self) -> int:
        return self.dc.bufferedAmount

    @property
    def is_open(self) -> bool:
        return self.dc.readyState == "open"

    def send(self, data: bytes) -> None:
        self.dc.send(data)

    def close(self) -> None:
        self.dc.close()

    def _set_low_water(self, low_water: int) -> None:
        self.dc.bufferedAmountLowThreshold = low_water

    def _close(self) -> None:
        self.closed.set()
        self._closed_remotely()


class PeerLink:
    """One RTCPeerConnection and its single negotiated data channel to one party.

    Made at the client's ``connect``; ``handle`` takes its ``remote``, ``candidate`` and
    ``unexpected`` events, applied one after another; ``ready`` resolves to the open
    channel, or fails with what went wrong (``fail``, e.g. the party left). Reports its
    state to the server (``wire.LINK_STATES``), so every party's roster shows each pair's
    state and whether it is direct or relayed.
    """

    def __init__(self, signaling: Signaling, peer: int, offer: bool,
                 ice_servers: Awaitable[list[dict[str, Any]]], *, relay_only: bool = False,
                 ordered: bool = True):
        self.signaling = signaling
        #: False when the mesh recovers lost messages itself (``recovery``): a resent
        #: message must not queue behind the lost one.
        self.ordered = ordered
        self.peer = peer
        self.offer = offer
        self.pc: PeerConnection | None = None
        self.channel: AiortcChannel | None = None
        #: The chat's data channel (``wire.CHAT_CHANNEL``).
        self.chat: RTCDataChannel | None = None
        #: Whether the peer's offer or answer was applied.
        self.remote_set = False
        # The client may say "connect" before the loop runs again (the factory replays
        # what came before it attached): the loop is the one set, not the running one.
        loop = asyncio.get_event_loop()
        self.ready: asyncio.Future[AiortcChannel] = loop.create_future()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._remote = asyncio.Event()
        self._opened = asyncio.Event()
        self._ice_connected = asyncio.Event()
        self._tasks = [loop.create_task(self._run(ice_servers, relay_only))]

    def handle(self, event: Event) -> None:
        self._events.put_nowait(event)

    def fail(self, error: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # the factory reads it; never "never retrieved"

    def state(self) -> str:
        if self.pc is None:
            return "ICE new, connection new"
        return f"ICE {self.pc.iceConnectionState}, connection {self.pc.connectionState}"

    def report(self, state: str, path: str | None = None) -> None:
        """Tell the server this link's state (once per change: the client sees to it)."""
        self.signaling.link_state(self.peer, state, path)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.pc is not None:
            await self.pc.close()
        self.report("closed")

    async def _run(self, ice_servers: Awaitable[list[dict[str, Any]]],
                   relay_only: bool) -> None:
        try:
            pc = self.pc = PeerConnection(
                rtc_configuration(await ice_servers, relay_only=relay_only))
            dc = pc.createDataChannel(CHANNEL_LABEL, negotiated=True, id=CHANNEL_ID,
                                      ordered=self.ordered)
            chat = self.chat = pc.createDataChannel(
                wire.CHAT_CHANNEL["label"], negotiated=True, id=wire.CHAT_CHANNEL["id"],
                ordered=True)
            chat.on("message", self._chat_received)
            self.channel = AiortcChannel(dc, self.peer)
            dc.on("open", self._opened.set)
            if dc.readyState == "open":
                self._opened.set()
            pc.on("iceconnectionstatechange", self._ice_state_changed)
            pc.on("connectionstatechange", self._state_changed)
            self.report("signaling")
            if self.offer:
                await pc.setLocalDescription(await pc.createOffer())
                self.signaling.local_description(self.peer, "offer", pc.localDescription.sdp)
            consumer = asyncio.ensure_future(self._consume(pc))
            self._tasks.append(consumer)

            async def until(*events: asyncio.Event) -> None:
                await _first(consumer, *(event.wait() for event in events))
                if consumer.done():
                    consumer.result()  # raises what went wrong applying the peer's words

            await until(self._remote)
            self.report("connecting")
            await until(self._opened, self._ice_connected)
            self.report("connected", ice_path(pc))
            await until(self._opened)
            self.report("ready", ice_path(pc))
            if (types := selected_candidates(pc)) is not None:
                log.info("link to party %d: %s (candidates: ours %s, theirs %s)", self.peer,
                         ice_path(pc), *types)
            if not self.ready.done():
                self.ready.set_result(self.channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.fail(exc)

    async def _consume(self, pc: RTCPeerConnection) -> None:
        """Apply the client's events for this link, in order, for as long as it lives."""
        while True:
            event = await self._events.get()
            if event["event"] == "remote":
                kind = event["kind"]
                try:
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=event["sdp"],
                                                                        type=kind))
                except Exception as exc:
                    raise PeerError(
                        f"Party {self.peer + 1} sent an {kind} we cannot use ({exc}).") from None
                self.remote_set = True
                self._remote.set()
                if kind == "offer":
                    await pc.setLocalDescription(await pc.createAnswer())
                    self.signaling.local_description(self.peer, "answer",
                                                     pc.localDescription.sdp)
            elif event["event"] == "candidate":
                await self._add_candidate(pc, event)
            elif event["event"] == "unexpected":
                log.warning("party %d sent an %s while we expected %s", self.peer,
                            event["kind"], f"an {event['expected']}" if event["expected"]
                            else "nothing more")

    async def _add_candidate(self, pc: RTCPeerConnection, event: Event) -> None:
        try:
            candidate = candidate_from_sdp(event["candidate"].removeprefix("candidate:"))
            candidate.sdpMid = event["sdpMid"]
            candidate.sdpMLineIndex = event["sdpMLineIndex"]
            await pc.addIceCandidate(candidate)
        except Exception as exc:
            log.warning("ignoring an unusable ICE candidate from party %d: %s", self.peer, exc)

    def send_chat(self, text: str) -> bool:
        """Send a chat frame over this connection, if its chat channel is open."""
        if self.chat is None or self.chat.readyState != "open":
            return False
        try:
            self.chat.send(text)
        except Exception as exc:  # closing meanwhile: the server carries it instead
            log.debug("could not send chat to party %d directly: %s", self.peer, exc)
            return False
        return True

    def _chat_received(self, data: str | bytes) -> None:
        # Called from aiortc's SCTP loop: nothing may escape (it would end the connection).
        try:
            if not isinstance(data, str) or len(data) > MAX_CHAT_FRAME:
                log.debug("ignoring a chat frame from party %d that is no text or too long",
                          self.peer)
                return
            try:
                payload = json.loads(data)
            except ValueError:
                log.debug("ignoring a chat frame from party %d that is no JSON", self.peer)
                return
            self.signaling.chat_received(self.peer, payload)
        except Exception:
            log.warning("could not take a chat message from party %d", self.peer,
                        exc_info=True)

    def _ice_state_changed(self) -> None:
        if self.pc is not None and self.pc.iceConnectionState == "completed":
            self._ice_connected.set()

    def _state_changed(self) -> None:
        if self.pc is None:
            return
        if self.pc.connectionState == "connected":
            self._ice_connected.set()
        elif self.pc.connectionState == "failed":
            self.report("failed")


async def _first(*waits: Awaitable[Any]) -> None:
    """Until the first of ``waits`` is done (the others are cancelled, unless tasks)."""
    futures = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future, wait in zip(futures, waits, strict=True):
            if future is not wait:
                future.cancel()


class AiortcFactory:
    """Opens the data channels of one party with aiortc, signaling via the server.

    It attaches to ``signaling`` at once and makes each link when the client says so (at
    the start), so the links connect while the program is still getting to
    ``mpc.start()``; ``open_channels`` waits for them.
    """

    def __init__(self, signaling: Signaling, ice_servers: list[dict[str, Any]], *,
                 join_timeout: float = 600.0, relay_only: bool = False,
                 ordered: bool = True):
        self.signaling = signaling
        #: Whether the channels are ordered (not when the mesh recovers messages itself).
        self.ordered = ordered
        self.ice_servers = ice_servers
        self.join_timeout = join_timeout
        #: Only relay candidates: the other parties never learn this party's addresses.
        self.relay_only = relay_only
        self.links: dict[int, PeerLink] = {}
        self._plan: asyncio.Future[list[dict[str, Any]]] | None = None
        self._planned: list[dict[str, Any]] = []
        #: Told when a party left after the start (the mesh fails at once then).
        self.on_peer_left: Callable[[int], None] | None = None
        #: Told when a party lost the server after the start (it may still be computing).
        self.on_peer_away: Callable[[int], None] | None = None
        signaling.attach(self.handle)
        signaling.chat_channel = self.send_chat

    def send_chat(self, peer: int, text: str) -> bool:
        """Send a chat frame to ``peer`` over its peer connection, if its chat channel is
        open (else the signaling sends it sealed, through the server)."""
        link = self.links.get(peer)
        return link is not None and link.send_chat(text)

    def handle(self, event: Event) -> None:
        """A ``signaling.LINK_EVENTS`` event from the client."""
        kind, peer = event["event"], event["peer"]
        link = self.links.get(peer)
        if kind == "connect":
            if self._plan is None:
                self._plan = asyncio.get_event_loop().create_task(self._plan_ice_servers())
            self.links[peer] = PeerLink(self.signaling, peer, event["offer"], self._plan,
                                        relay_only=self.relay_only, ordered=self.ordered)
        elif kind == "peer_left":
            # Whoever still waits for its offer or answer need not wait longer. Once they
            # were exchanged, the party may have left because it could not reach this one
            # either: the link's own time-out, due about now, says that better. If it does
            # not come within LEFT_GRACE, the party left for another reason (it stopped,
            # crashed or was closed), and that is said rather than waited out.
            if link is not None:
                left = PeerError(event["message"])
                if not link.remote_set:
                    link.fail(left)
                else:
                    asyncio.get_event_loop().call_later(LEFT_GRACE, link.fail, left)
            if self.on_peer_left is not None:
                self.on_peer_left(peer)
        elif kind == "peer_away":
            if self.on_peer_away is not None:
                self.on_peer_away(peer)
        elif link is not None:
            link.handle(event)

    async def _plan_ice_servers(self) -> list[dict[str, Any]]:
        target = udp_probe_target(self.ice_servers)
        udp_ok = True if target is None else await udp_answers(*target)
        if not udp_ok:
            log.info("no answer over UDP from %s:%d; reaching the TURN relay over TCP",
                     *target)  # type: ignore[misc]
        plan = self._planned = plan_ice_servers(self.ice_servers, udp_ok)
        log.info("ICE servers: %s%s", ", ".join(s["urls"] for s in plan) or "none",
                 " (relay only)" if self.relay_only else "")
        return plan

    async def open_channels(self, pid: int, parties: int, timeout: float):
        loop = asyncio.get_running_loop()
        signaling = self.signaling
        if not signaling.started.is_set():
            log.info("waiting for all %d parties to join", parties)
            await _first(signaling.started.wait(), signaling.closed.wait(),
                         signaling.stopped.wait(), asyncio.sleep(self.join_timeout))
            if signaling.tampered is not None:
                raise MeshError(str(signaling.tampered))
            if not signaling.started.is_set():
                if signaling.lost is not None:  # lost the connection, then the place
                    raise MeshError(signaling.lost)
                if signaling.closed.is_set():
                    why = signaling.last_error or "the connection was closed"
                    raise MeshError(f"The signaling server ended the session before all "
                                    f"{parties} parties joined: {why}")
                raise MeshError(
                    f"Not all {parties} parties joined within {self.join_timeout:.0f} s.")
        started = loop.time()
        if signaling.tampered is not None:
            raise MeshError(str(signaling.tampered))
        links = self.links
        peers = [peer for peer in range(parties) if peer != pid]
        if sorted(links) != peers:
            raise MeshError(f"No link to parties {sorted(set(peers) - set(links))}.")
        # The first link that fails (tampering above all) ends the wait: no use waiting
        # for the others then.
        pending = {links[peer].ready for peer in peers}
        stop = asyncio.ensure_future(signaling.stopped.wait())
        try:
            while pending and not stop.done():
                remaining = started + timeout - loop.time()
                if remaining <= 0:
                    break
                done, _ = await asyncio.wait(pending | {stop}, timeout=remaining,
                                             return_when=asyncio.FIRST_COMPLETED)
                pending -= done
                if any(f is not stop and f.exception() is not None for f in done):
                    break
        finally:
            stop.cancel()
        failed = []
        unanswered = []
        error = None
        for peer in peers:
            link = links[peer]
            if not link.ready.done():
                failed.append(f"{place(peer)} ({link.state()})")
                if not link.remote_set:
                    unanswered.append(peer)
            elif link.ready.exception() is not None:
                error = error or MeshError(str(link.ready.exception()))
            else:
                continue
            link.report("failed")
        if signaling.tampered is not None:
            raise MeshError(str(signaling.tampered))
        if error is not None:
            raise error
        if failed:
            raise MeshError(connect_failure(failed, timeout, self._planned,
                                            unanswered=len(unanswered) == len(failed)))
        log.info("data channels to all %d other parties are open %.3f s after the last "
                 "party joined", len(peers), loop.time() - started)
        signaling.status("connected")
        return {peer: links[peer].ready.result() for peer in peers}

    async def close(self, graceful: bool = True, linger: float = 10.0) -> None:
        """Close every peer connection; gracefully, once each channel's closing handshake
        is done, because that is when the other side has received all our data."""
        links, self.links = self.links, {}
        if self._plan is not None:
            self._plan.cancel()
        channels = [link.channel for link in links.values() if link.channel is not None]
        for channel in channels:
            # A channel kept open after the program's last shutdown (the mesh keeps them for
            # a script that starts MPyC again): its closing handshake follows the data.
            if channel.is_open:
                channel.close()
        if graceful and channels:
            try:
                await asyncio.wait_for(asyncio.gather(*(c.closed.wait() for c in channels)),
                                       linger)
            except TimeoutError:
                log.warning("some channels did not finish closing within %.0f s", linger)
        # Concurrently and bounded: closing a connection through a TURN relay that can no
        # longer be reached (this party lost its network) retransmits for half a minute.
        closing = asyncio.gather(*(link.close() for link in links.values()),
                                 return_exceptions=True)
        try:
            await asyncio.wait_for(closing, CLOSE_TIMEOUT)
        except TimeoutError:
            log.info("gave up closing the peer connections cleanly after %.0f s",
                     CLOSE_TIMEOUT)
        if links:
            self.signaling.status("done")


def connect_failure(failed: list[str], timeout: float, ice_servers: list[dict[str, Any]],
                    unanswered: bool = False) -> str:
    """Why connecting failed, and what would help, for a person."""
    who, seconds = ", ".join(failed), f"{timeout:.0f}"
    if unanswered:
        return say("connect.never_answered", who=who, seconds=seconds,
                   they="it" if len(failed) == 1 else "they")
    if any(str(s.get("urls", "")).startswith(("turn:", "turns:")) for s in ice_servers):
        return say("connect.not_through_relay", who=who, seconds=seconds)
    return say("connect.no_path", who=who, seconds=seconds, hint=say("connect.hint"))
