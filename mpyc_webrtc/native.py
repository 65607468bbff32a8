"""The native backend: signaling over aiohttp WebSockets, channels over aiortc.

This is I/O glue only; what a message means is decided in ``wire``, when a
session starts in the server's ``session`` core, and how MPyC uses a channel in
``transport``/``mesh``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import aioice.ice
import aioice.stun
import aioice.turn
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from . import dispatch_tuning, dtls_tuning, ice_tuning, sctp_fastpath, sctp_tuning, wire
from .ice import url_transport
from .mesh import MeshError
from .sealing import Sealer, TamperError, tamper_failed_authentication, tamper_peer_program

log = logging.getLogger(__name__)

#: How long closing a peer connection or the signaling connection may take.
CLOSE_TIMEOUT = 3.0
#: The channel's agreed id: both sides create it with ``negotiated`` (browsers too).
CHANNEL_ID = 0
CHANNEL_LABEL = "mpyc"

# Bursts of MPyC traffic overflow aioice's 256 KiB UDP receive buffer, and SCTP only
# retransmits after a second; 4 MiB removed those stalls in measurements.
aioice.turn.UDP_SOCKET_BUFFER_SIZE = 4 * 1024 * 1024
# Less Python work per packet (see each module; "=0" switches one off for comparison).
# In this order: dispatch_tuning builds on dtls_tuning's record helpers, and
# sctp_fastpath wraps what sctp_tuning and dispatch_tuning installed.
if os.environ.get("MPYC_WEBRTC_SCTP_TUNING", "1") != "0":
    sctp_tuning.install()
if os.environ.get("MPYC_WEBRTC_ICE_TUNING", "1") != "0":
    ice_tuning.install()
if os.environ.get("MPYC_WEBRTC_DTLS_TUNING", "1") != "0":
    dtls_tuning.install()
if os.environ.get("MPYC_WEBRTC_DISPATCH_TUNING", "1") != "0":
    dispatch_tuning.install()
if os.environ.get("MPYC_WEBRTC_SCTP_FASTPATH", "1") != "0":
    sctp_fastpath.install()


class PeerError(Exception):
    """Something a person at this party must be told, in one sentence."""


def allow_loopback_candidates() -> None:
    """Test-only opt-in: also offer 127.0.0.1/::1 as ICE host candidates.

    aioice leaves loopback out, so in a loopback-only network namespace ICE would
    never connect. Never use this for real sessions: it is for tests that run all
    parties on one host inside a namespace.
    """
    original = aioice.ice.get_host_addresses
    if getattr(original, "allows_loopback", False):
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    get_host_addresses.allows_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses


def rtc_configuration(ice_servers: list[dict[str, Any]], *,
                      relay_only: bool = False) -> RTCConfiguration:
    # An explicit list, even if empty: with None, aiortc silently uses Google's STUN.
    return RTCConfiguration(
        iceServers=[RTCIceServer(urls=s["urls"], username=s.get("username"),
                                 credential=s.get("credential")) for s in ice_servers],
        iceTransportPolicy=(RTCIceTransportPolicy.RELAY if relay_only
                            else RTCIceTransportPolicy.ALL))


def plan_ice_servers(ice_servers: list[dict[str, Any]], udp_ok: bool) -> list[dict[str, Any]]:
    """The one STUN and one TURN server aiortc will use, in that order.

    aiortc takes only the first ``stun:`` and the first ``turn:`` URL, and each server it
    cannot reach costs up to 5 s of gathering. So where UDP to the servers gets no answer
    (a firewall that blocks UDP), STUN is useless and the relay must be reached over TCP;
    where it does, STUN and TURN over UDP are best, TCP being the fallback.
    """
    stun: list[dict[str, Any]] = []
    turn: dict[str, list[dict[str, Any]]] = {"udp": [], "tcp": []}
    for server in ice_servers:
        urls = server.get("urls", [])
        for url in [urls] if isinstance(urls, str) else urls:
            one = {**server, "urls": url}
            if url.startswith(("stun:", "stuns:")):
                stun.append(one)
            elif url.startswith(("turn:", "turns:")):
                turn[url_transport(url)].append(one)
    order = ("udp", "tcp") if udp_ok else ("tcp",)
    relays = [server for transport in order for server in turn[transport]]
    return (stun[:1] if udp_ok else []) + relays[:1]


def udp_probe_target(ice_servers: list[dict[str, Any]]) -> tuple[str, int] | None:
    """Where to ask whether UDP gets through: the first STUN server, else the first TURN
    server reached over UDP (TURN servers answer STUN binding requests too)."""
    candidates = []
    for server in ice_servers:
        urls = server.get("urls", [])
        for url in [urls] if isinstance(urls, str) else urls:
            if url.startswith("stun:"):
                candidates.insert(0, url)
            elif url.startswith("turn:") and url_transport(url) == "udp":
                candidates.append(url)
    if not candidates:
        return None
    address = candidates[0].split(":", 1)[1].split("?", 1)[0]
    host, _, port = address.rpartition(":")
    if not host:
        return address, 3478
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


async def udp_answers(host: str, port: int, tries: int = 3, wait: float = 0.5) -> bool:
    """Whether a STUN server answers a binding request over UDP (a few tries: packets
    get lost)."""
    loop = asyncio.get_running_loop()
    answered = loop.create_future()

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not answered.done():
                answered.set_result(True)

        def error_received(self, exc: Exception) -> None:
            log.debug("UDP probe to %s:%d: %s", host, port, exc)

    try:
        transport, _ = await loop.create_datagram_endpoint(Probe, remote_addr=(host, port))
    except OSError as exc:
        log.debug("UDP probe to %s:%d impossible: %s", host, port, exc)
        return False
    try:
        for _ in range(tries):
            request = aioice.stun.Message(message_method=aioice.stun.Method.BINDING,
                                          message_class=aioice.stun.Class.REQUEST)
            transport.sendto(bytes(request))
            try:
                return await asyncio.wait_for(asyncio.shield(answered), wait)
            except TimeoutError:
                continue
        return False
    finally:
        transport.close()


def websocket_url(server_url: str) -> str:
    parts = urlsplit(server_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise PeerError(f"{server_url!r} is not an http:// or https:// address.")
    return urlunsplit((scheme, parts.netloc, "/ws", "", ""))


class Signaling:
    """This party's WebSocket to the signaling server.

    Everything a party tells another goes sealed (``sealing.Sealer``): ``send_sealed``
    seals, and each relayed ``signal`` is opened before it is queued for ``next_from``. The
    first one that does not open stops all signaling at once: ``tampered`` holds the
    ``TamperError``, ``next_from`` raises it, and ``on_tamper`` is called once.
    """

    def __init__(self, server_url: str, session_id: str, name: str = "", *,
                 secret: bytes, token: str):
        self.url = websocket_url(server_url)
        self.session_id = session_id
        self.name = name
        self.secret = secret
        self.token = token
        self.sealer: Sealer | None = None
        self.welcome: dict[str, Any] | None = None
        self.started = asyncio.Event()
        self.closed = asyncio.Event()
        self.last_error: PeerError | None = None
        self.tampered: TamperError | None = None
        #: Set with ``tampered``: wakes whoever waits for the session to start.
        self.stopped = asyncio.Event()
        self.on_tamper: Callable[[TamperError], None] | None = None
        #: The latest ``roster`` message, and who to tell about each new one.
        self.roster: dict[str, Any] | None = None
        self.on_roster: Callable[[dict[str, Any]], None] | None = None
        self._inbox: dict[int, asyncio.Queue[dict[str, Any] | Exception]] = \
            defaultdict(asyncio.Queue)
        #: Parties the roster showed as gone after the start (told to ``next_from`` once).
        self._gone: set[int] = set()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def join(self, timeout: float = 15.0) -> dict[str, Any]:
        """Connect and join; returns the ``welcome`` message."""
        self._http = aiohttp.ClientSession()
        try:
            self._ws = await self._http.ws_connect(self.url, timeout=aiohttp.ClientWSTimeout(
                ws_close=5.0), heartbeat=20.0, max_msg_size=8 * 1024 * 1024)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            await self._http.close()
            raise PeerError(
                f"Could not reach the signaling server at {self.url} ({_reason(exc)})."
            ) from None
        # A native peer's input is given on its command line: it is ready when it joins.
        await self.send(wire.message("join", session=self.session_id, token=self.token,
                                     name=self.name, ready=True))
        welcome = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(welcome))
        try:
            self.welcome = await asyncio.wait_for(welcome, timeout)
        except TimeoutError:
            await self.close()
            raise PeerError("The signaling server did not answer the join request.") from None
        except PeerError:
            await self.close()
            raise
        return self.welcome

    async def send(self, msg: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed:
            raise PeerError("The connection to the signaling server is closed.")
        await self._ws.send_str(wire.encode(msg))

    async def send_sealed(self, to: int, payload: dict[str, Any]) -> None:
        """Seal ``payload`` (see ``wire.SIGNAL_KINDS``) for party ``to`` and send it."""
        if self.tampered is not None:
            raise self.tampered
        if self.sealer is None:
            raise PeerError("Not joined: there is nothing to seal with yet.")
        await self.send(wire.message("signal", **self.sealer.seal(to, payload)))

    async def next_from(self, pid: int) -> dict[str, Any]:
        """The next opened offer/answer/candidate from party ``pid`` (a ``SIGNAL_KINDS``
        payload); raises the ``TamperError`` once signaling was tampered with."""
        if self.tampered is not None:
            raise self.tampered
        item = await self._inbox[pid].get()
        if isinstance(item, Exception):
            raise item
        return item

    def tamper(self, error: TamperError) -> None:
        """Stop all signaling: the first ``TamperError`` wins and wakes every waiter."""
        if self.tampered is not None:
            return
        self.tampered = error
        self.stopped.set()
        log.error("%s", error)
        for queue in self._inbox.values():
            queue.put_nowait(error)
        if self.on_tamper is not None:
            self.on_tamper(error)

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            try:  # a server out of reach would keep us waiting for its closing frame
                await asyncio.wait_for(self._ws.close(), CLOSE_TIMEOUT)
            except TimeoutError:
                log.debug("the signaling server did not answer our closing frame")
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        if self._http is not None:
            await self._http.close()

    async def _read(self, welcome: asyncio.Future[dict[str, Any]]) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    msg = json.loads(frame.data)
                    self._dispatch(msg, welcome)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("ignoring a malformed message from the server: %s", exc)
        except Exception as exc:  # the reader must end quietly, the owner decides
            log.debug("signaling reader stopped: %s", exc)
        finally:
            if not welcome.done():
                welcome.set_exception(PeerError(
                    "The signaling server closed the connection before welcoming us."))
            self.closed.set()
            log.debug("signaling connection closed")

    def _dispatch(self, msg: dict[str, Any], welcome: asyncio.Future[dict[str, Any]]) -> None:
        kind = msg.get("type")
        if self.tampered is not None:
            return  # nothing the server says counts any more
        if kind == "welcome" and not welcome.done():
            self.sealer = Sealer(self.secret, self.session_id, int(msg["pid"]))
            welcome.set_result(msg)
        elif kind == "error":
            error = PeerError(msg.get("message") or f"The server reported {msg.get('code')}.")
            error.code = msg.get("code")  # type: ignore[attr-defined]
            if not welcome.done():
                welcome.set_exception(error)
            else:
                log.warning("signaling server: %s", error)
                self.last_error = error
        elif kind == "roster":
            self.roster = msg
            if msg.get("started"):
                for member in msg.get("members", []):
                    pid = member.get("pid")
                    if member.get("state") == "left" and pid not in self._gone:
                        # Whoever still waits for its offer or answer need not wait longer.
                        self._gone.add(pid)
                        self._inbox[pid].put_nowait(PeerError(
                            f"Party {pid} left the session before the computation "
                            "finished."))
            if self.on_roster is not None:
                self.on_roster(msg)
        elif kind == "start":
            self.started.set()
        elif kind == "signal":
            sender = msg.get("from")
            try:
                if self.sealer is None:
                    raise TamperError(tamper_failed_authentication(sender))
                payload = self.sealer.open(sender, msg.get("seq"), msg.get("box"))
            except TamperError as exc:
                self.tamper(exc)
                return
            self._inbox[sender].put_nowait(payload)


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


def selected_candidates(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """The types ("host", "srflx", "prflx", "relay") of the local and the remote candidate
    of the connection's selected ICE pair; None while (or if) there is none.

    aiortc has no public API for the selected pair: aioice's ``Connection._nominated``
    holds it while the connection is open.
    """
    try:
        connection = pc.sctp.transport.transport._connection  # type: ignore[union-attr]
        pair = next(iter(connection._nominated.values()), None)
        if pair is None:
            return None
        return pair.local_candidate.type, pair.remote_candidate.type
    except Exception:
        return None


def ice_path(pc: RTCPeerConnection) -> str | None:
    """"relayed" if the connection's selected ICE pair goes through a TURN relay, else
    "direct"; None while (or if) that cannot be told."""
    types = selected_candidates(pc)
    if types is None:
        return None
    return "relayed" if "relay" in types else "direct"


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
                    error = TamperError(tamper_peer_program(self.peer, msg["program"],
                                                            self.program_hash))
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


def _reason(exc: BaseException) -> str:
    """The cause of a connection failure, in the words of the operating system."""
    os_error = getattr(exc, "os_error", None)  # aiohttp.ClientConnectorError
    if isinstance(os_error, OSError):
        if isinstance(os_error, ConnectionRefusedError):
            return "nothing is listening there: connection refused"
        return os_error.strerror or str(os_error)
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__
