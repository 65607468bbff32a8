"""A native party's peer connections (aiortc): one link, with one data channel, per party.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from .. import wire
from ..launch import fingerprint
from ..mesh import MeshError
from ..sealing import TamperError
from ..sentences import say
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

#: How long closing a peer connection or the signaling connection may take.
CLOSE_TIMEOUT = 3.0
#: The channel's agreed id: both sides create it with ``negotiated`` (browsers too).
CHANNEL_ID = 0
CHANNEL_LABEL = "mpyc"


class AiortcChannel:
    """aiortc's RTCDataChannel as a ``MessageChannel``; buffers until attached."""

    def __init__(self, dc: RTCDataChannel):
        self.dc = dc
        self._early: list[bytes] = []
        self._closed_early = False
        self._on_message: Callable[[bytes], None] | None = None
        self._on_close: Callable[[], None] | None = None
        self._on_drain: Callable[[], None] | None = None
        self.closed = asyncio.Event()
        dc.on("message", self._message)
        dc.on("close", self._close)
        dc.on("bufferedamountlow", self._drain)

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

    def attach(self, on_message, on_close, on_drain, low_water: int) -> None:
        self.dc.bufferedAmountLowThreshold = low_water
        self._on_message, self._on_close, self._on_drain = on_message, on_close, on_drain
        early, self._early = self._early, []
        for data in early:
            on_message(data)
        if self._closed_early:
            on_close()

    # aiortc calls these from its DTLS/SCTP loop: nothing may escape.
    def _message(self, data: bytes) -> None:
        try:
            if self._on_message is None:
                self._early.append(data)
            else:
                self._on_message(data)
        except Exception:
            log.exception("message handler failed")

    def _close(self) -> None:
        self.closed.set()
        try:
            if self._on_close is None:
                self._closed_early = True
            else:
                self._on_close()
        except Exception:
            log.exception("close handler failed")

    def _drain(self) -> None:
        try:
            if self._on_drain is not None:
                self._on_drain()
        except Exception:
            log.exception("drain handler failed")


class PeerLink:
    """One RTCPeerConnection and its single negotiated data channel to one party.

    Reports how it is doing to the server (``link`` messages, ``wire.LINK_STATES``), so
    every party's roster shows each pair's state and whether it is direct or relayed.
    """

    def __init__(self, signaling: Signaling, pid: int, peer: int,
                 ice_servers: list[dict[str, Any]], program_hash: str, *,
                 relay_only: bool = False):
        self.signaling = signaling
        self.pid = pid
        self.peer = peer
        #: The hash of the program this party runs; the peer's offer or answer must match.
        self.program_hash = program_hash
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers, relay_only=relay_only))
        dc = self.pc.createDataChannel(CHANNEL_LABEL, negotiated=True, id=CHANNEL_ID)
        self.channel = AiortcChannel(dc)
        self.opened = asyncio.Event()
        self.ice_connected = asyncio.Event()
        dc.on("open", self.opened.set)
        if dc.readyState == "open":
            self.opened.set()
        self.pc.on("iceconnectionstatechange", self._ice_state_changed)
        self.pc.on("connectionstatechange", self._state_changed)
        self._remote_set = False
        self._early_candidates: list[dict[str, Any]] = []
        #: What was last reported to the server: (state, path).
        self.reported: tuple[str, str | None] | None = None
        self._reports: list[asyncio.Task[None]] = []

    async def connect(self) -> AiortcChannel:
        await self.report("signaling")
        if self.pid < self.peer:  # the lower pid offers, everywhere
            await self.pc.setLocalDescription(await self.pc.createOffer())
            await self.signaling.send_sealed(self.peer, {
                "kind": "offer", "sdp": self.pc.localDescription.sdp,
                "program": self.program_hash})
            answer = await self._next("answer")
            await self._set_remote(answer["sdp"], "answer")
        else:
            offer = await self._next("offer")
            await self._set_remote(offer["sdp"], "offer")
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self.signaling.send_sealed(self.peer, {
                "kind": "answer", "sdp": self.pc.localDescription.sdp,
                "program": self.program_hash})
        await self.report("connecting")
        consumer = asyncio.create_task(self._consume_candidates())
        try:
            if not self.opened.is_set():
                opened = asyncio.ensure_future(self.opened.wait())
                connected = asyncio.ensure_future(self.ice_connected.wait())
                try:
                    await asyncio.wait({opened, connected}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    opened.cancel()
                    connected.cancel()
            await self.report("connected", ice_path(self.pc))
            await self.opened.wait()
        finally:
            consumer.cancel()
        await self.report("ready", ice_path(self.pc))
        if (types := selected_candidates(self.pc)) is not None:
            log.info("link to party %d: %s (candidates: ours %s, theirs %s)", self.peer,
                     ice_path(self.pc), *types)
        return self.channel

    def state(self) -> str:
        return f"ICE {self.pc.iceConnectionState}, connection {self.pc.connectionState}"

    async def report(self, state: str, path: str | None = None) -> None:
        """Tell the server this link's state, once per change; never fails."""
        if path is None and self.reported is not None:
            path = self.reported[1]  # a path, once known, stays (also once closed)
        if self.reported == (state, path) or (
                self.reported is not None and self.reported[0] == "failed"):
            return
        self.reported = (state, path)
        fields: dict[str, Any] = {"peer": self.peer, "state": state}
        if path is not None:
            fields["path"] = path
        try:
            await self.signaling.send(wire.message("link", **fields))
        except Exception as exc:
            log.debug("could not report link %s to party %d: %s", state, self.peer, exc)

    async def close(self) -> None:
        await self.pc.close()
        await asyncio.gather(*self._reports, return_exceptions=True)
        await self.report("closed")

    def _ice_state_changed(self) -> None:
        if self.pc.iceConnectionState == "completed":
            self.ice_connected.set()

    def _state_changed(self) -> None:
        if self.pc.connectionState == "connected":
            self.ice_connected.set()
        elif self.pc.connectionState == "failed":
            self._reports.append(asyncio.ensure_future(self.report("failed")))

    async def _next(self, kind: str) -> dict[str, Any]:
        """The peer's next (opened, authentic) ``kind``; candidates before it are kept."""
        while True:
            msg = await self.signaling.next_from(self.peer)
            if msg["kind"] == kind:
                if msg["program"] != self.program_hash:
                    error = TamperError(say("tamper.peer_program", party=self.peer,
                                            theirs=fingerprint(msg["program"]),
                                            ours=fingerprint(self.program_hash)))
                    self.signaling.tamper(error)
                    raise error
                return msg
            if msg["kind"] == "candidate":
                await self._add_candidate(msg)
            else:
                log.warning("party %d sent an %s while we expected an %s", self.peer,
                            msg["kind"], kind)

    async def _consume_candidates(self) -> None:
        while True:
            try:
                msg = await self.signaling.next_from(self.peer)
            except (TamperError, PeerError):
                return  # signaling is over: whoever runs the session is told elsewhere
            if msg["kind"] == "candidate":
                await self._add_candidate(msg)

    async def _set_remote(self, sdp: str, kind: str) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        except Exception as exc:
            raise PeerError(f"Party {self.peer} sent an {kind} we cannot use ({exc}).") from None
        self._remote_set = True
        for msg in self._early_candidates:
            await self._add_candidate(msg)
        self._early_candidates.clear()

    async def _add_candidate(self, msg: dict[str, Any]) -> None:
        if not self._remote_set:
            self._early_candidates.append(msg)
            return
        text = msg.get("candidate") or ""
        if not text:  # end-of-candidates
            return
        try:
            candidate = candidate_from_sdp(text.removeprefix("candidate:"))
            candidate.sdpMid = msg.get("sdpMid")
            candidate.sdpMLineIndex = msg.get("sdpMLineIndex")
            await self.pc.addIceCandidate(candidate)
        except Exception as exc:
            log.warning("ignoring an unusable ICE candidate from party %d: %s", self.peer, exc)


class AiortcFactory:
    """Opens the data channels of one party with aiortc, signaling via the server."""

    def __init__(self, signaling: Signaling, ice_servers: list[dict[str, Any]], *,
                 program_hash: str, join_timeout: float = 600.0, relay_only: bool = False):
        self.signaling = signaling
        self.ice_servers = ice_servers
        self.program_hash = program_hash
        self.join_timeout = join_timeout
        #: Only relay candidates: the other parties never learn this party's addresses.
        self.relay_only = relay_only
        self.links: dict[int, PeerLink] = {}

    async def _plan_ice_servers(self) -> list[dict[str, Any]]:
        target = udp_probe_target(self.ice_servers)
        udp_ok = True if target is None else await udp_answers(*target)
        if not udp_ok:
            log.info("no answer over UDP from %s:%d; reaching the TURN relay over TCP",
                     *target)  # type: ignore[misc]
        plan = plan_ice_servers(self.ice_servers, udp_ok)
        log.info("ICE servers: %s%s", ", ".join(s["urls"] for s in plan) or "none",
                 " (relay only)" if self.relay_only else "")
        return plan

    async def open_channels(self, pid: int, parties: int, timeout: float):
        loop = asyncio.get_running_loop()
        if not self.signaling.started.is_set():
            log.info("waiting for all %d parties to join", parties)
            started = asyncio.ensure_future(self.signaling.started.wait())
            closed = asyncio.ensure_future(self.signaling.closed.wait())
            stopped = asyncio.ensure_future(self.signaling.stopped.wait())
            await asyncio.wait({started, closed, stopped}, timeout=self.join_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
            closed.cancel()
            stopped.cancel()
            if self.signaling.tampered is not None:
                raise MeshError(str(self.signaling.tampered))
            if not self.signaling.started.is_set():
                if self.signaling.closed.is_set():
                    why = self.signaling.last_error or "the connection was closed"
                    raise MeshError(f"The signaling server ended the session before all "
                                    f"{parties} parties joined: {why}")
                raise MeshError(
                    f"Not all {parties} parties joined within {self.join_timeout:.0f} s.")
        started = loop.time()
        if self.signaling.tampered is not None:
            raise MeshError(str(self.signaling.tampered))
        ice_servers = await self._plan_ice_servers()
        links = self.links = {peer: PeerLink(self.signaling, pid, peer, ice_servers,
                                             self.program_hash, relay_only=self.relay_only)
                              for peer in range(parties) if peer != pid}
        tasks = {peer: asyncio.ensure_future(link.connect()) for peer, link in links.items()}
        # The first link that fails (tampering above all) ends the wait: no use waiting
        # for the others then.
        done, pending = await asyncio.wait(tasks.values(), timeout=timeout,
                                           return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        failed = []
        unanswered = []
        error = None
        for peer, task in tasks.items():
            if task in pending:
                failed.append(f"party {peer} ({links[peer].state()})")
                if not links[peer]._remote_set:
                    unanswered.append(peer)
            elif task.exception() is not None:
                error = error or MeshError(str(self.signaling.tampered or task.exception()))
            else:
                continue
            await links[peer].report("failed")
        if error is not None:
            raise error
        if failed:
            raise MeshError(connect_failure(failed, timeout, ice_servers,
                                            unanswered=len(unanswered) == len(failed)))
        log.info("data channels to all %d other parties are open %.3f s after the last "
                 "party joined", len(tasks), loop.time() - started)
        await self._report("connected")
        return {peer: task.result() for peer, task in tasks.items()}

    async def close(self, graceful: bool = True, linger: float = 10.0) -> None:
        """Close every peer connection; gracefully, once each channel's closing handshake
        is done, because that is when the other side has received all our data."""
        links, self.links = self.links, {}
        if graceful and links:
            waits = [link.channel.closed.wait() for link in links.values()]
            try:
                await asyncio.wait_for(asyncio.gather(*waits), linger)
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
            await self._report("done")

    async def _report(self, state: str) -> None:
        try:
            await self.signaling.send(wire.message("status", state=state))
        except Exception:
            log.debug("could not report status %r", state)


def connect_failure(failed: list[str], timeout: float, ice_servers: list[dict[str, Any]],
                    unanswered: bool = False) -> str:
    """Why connecting failed, and what would help, for a person."""
    who = ", ".join(failed)
    if unanswered:
        return (f"Could not connect to {who} within {timeout:.0f} s: "
                f"{'it' if len(failed) == 1 else 'they'} never answered. A party may have "
                "closed its page, lost its network or stopped.")
    if any(str(s.get("urls", "")).startswith(("turn:", "turns:")) for s in ice_servers):
        return (f"Could not connect to {who} within {timeout:.0f} s, not even through the "
                "TURN relay. The relay may be unreachable from one of you, or refuse the "
                "credentials (its secret must match the server's --turn-secret).")
    return (f"Could not connect to {who} within {timeout:.0f} s: no direct path between "
            "you was found. A firewall or a strict (symmetric) NAT is in the way; the "
            "signaling server's operator can add a TURN relay (mpyc-webrtc-server --turn "
            "URL --turn-secret SECRET), which gets through.")
