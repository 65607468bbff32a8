"""The native party's WebSocket to the signaling server: aiohttp around ``SignalingClient``.

What a message means and what to do about it is ``mpyc_webrtc.client``'s business; this
module only carries messages (in order, through one writer), seals and opens the ``signal``
boxes (``sealing.Sealer``), hashes the program it is asked to, and hands what concerns the
peer connections (``connect``, ``remote``, ``candidate``, ``peer_left``) to whoever
attached to it (``links.AiortcFactory``). The first sign of tampering stops all signaling:
``tampered`` holds the ``TamperError``, ``stopped`` is set and ``on_tamper`` is called once.

Identities (``identity``): this party signs what the client asks it to (its join proof,
its offers and answers, its chat messages) with its key, and checks the signatures the
client asks about (``verify``). Who each peer turned out to be (``identity``), chat that
arrived (``chat``) and chat that could not be sent (``chat_refused``) go to ``on_identity``,
``on_chat`` and ``on_chat_refused``. Chat leaves over a peer connection's ``chat`` data
channel when it is open (``chat_channel``, set by ``links.AiortcFactory``), else sealed
through the server.

A connection lost in the lobby is opened again to the same server after the client's
delay (with a little jitter), and the client joins again at its own place; ``on_news``
hears a sentence for the person each time (``reconnect.lost``, ``reconnect.back``). If the
place cannot be had back, ``lost`` says why and ``closed`` is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from .. import wire
from ..client import Event, SignalingClient, new_resume
from ..identity import Identity, join_statement, statement, verify
from ..launch import LaunchError, program_hash
from ..sealing import Sealer, TamperError, b64url_decode, b64url_encode, open_descriptor
from ..sentences import place, say
from .errors import PeerError

log = logging.getLogger(__name__)

#: How long closing the signaling connection may take.
CLOSE_TIMEOUT = 3.0
#: Events about the peer connections, for ``attach``'s handler.
LINK_EVENTS = ("connect", "remote", "candidate", "unexpected", "peer_left", "peer_away")
#: How long opening a connection to the server may take.
CONNECT_TIMEOUT = 10.0
#: At most this share of a reconnect delay is added at random, so that parties that lost
#: the server together do not all come back in the same instant.
RECONNECT_JITTER = 0.1


def websocket_url(server_url: str) -> str:
    parts = urlsplit(server_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise PeerError(f"{server_url!r} is not an http:// or https:// address.")
    return urlunsplit((scheme, parts.netloc, "/ws", "", ""))


class Signaling:
    """This party's WebSocket to the signaling server.

    ``secret`` and ``link_hash`` come from the join link; a native party is ready the moment
    it joins (its input is on its command line). ``identity``: this party's key (it joins
    with its did:key and proves it); ``role``: the place it asks for (a pid), if any.
    """

    def __init__(self, server_url: str, session_id: str, name: str = "", *,
                 secret: bytes, token: str, link_hash: str, resume: str | None = None,
                 identity: Identity | None = None, role: int | None = None):
        self.url = websocket_url(server_url)
        self.session_id = session_id
        self.secret = secret
        self.identity = identity
        resume = resume if resume is not None else new_resume()
        signed: dict[str, Any] = {}
        if identity is not None:
            signed = {"identity": identity.did, "proof": b64url_encode(
                identity.sign(join_statement(session_id, resume)))}
        self.client = SignalingClient(session_id, link_hash, token=token, name=name,
                                      ready=True, resume=resume, role=role, **signed)
        #: Each peer's verified identity (the client's ``identity`` event), by pid.
        self.identities: dict[int, Event] = {}
        self.on_identity: Callable[[Event], None] | None = None
        self.on_chat: Callable[[Event], None] | None = None
        self.on_chat_refused: Callable[[str], None] | None = None
        #: Told when round 1 starts (everyone is here).
        self.on_start: Callable[[], None] | None = None
        #: Sends a chat message (JSON text) to a peer over its peer connection's ``chat``
        #: channel, if that is open; whether it did.
        self.chat_channel: Callable[[int, str], bool] | None = None
        self.sealer: Sealer | None = None
        self.welcome: dict[str, Any] | None = None
        #: The latest ``roster`` message, and who to tell about each new one.
        self.roster: dict[str, Any] | None = None
        self.on_roster: Callable[[dict[str, Any]], None] | None = None
        self.started = asyncio.Event()
        self.closed = asyncio.Event()
        self.last_error: PeerError | None = None
        #: Why this party lost its place after losing the connection (a sentence), if so.
        self.lost: str | None = None
        #: Who tells the person about reconnecting (a sentence each time).
        self.on_news: Callable[[str], None] | None = None
        #: Why the program cannot run here (``launch.LaunchError``), found at the welcome.
        self.program_problem: str | None = None
        self.tampered: TamperError | None = None
        #: Set with ``tampered``: wakes whoever waits for the session to start.
        self.stopped = asyncio.Event()
        self.on_tamper: Callable[[TamperError], None] | None = None
        self._links: Callable[[Event], None] | None = None
        self._link_events: list[Event] = []
        self._welcomed: asyncio.Future[dict[str, Any]] | None = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        #: ``close`` was called: a connection that ends now stays closed.
        self._closing = False

    # -- what the rest of the party calls --------------------------------------------------

    async def join(self, timeout: float = 15.0) -> dict[str, Any]:
        """Connect and join; returns the ``welcome`` message."""
        self._http = aiohttp.ClientSession()
        self._welcomed = asyncio.get_running_loop().create_future()
        try:
            await self._open()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            await self._http.close()
            raise PeerError(
                f"Could not reach the signaling server at {self.url} ({_reason(exc)})."
            ) from None
        self._writer = asyncio.ensure_future(self._write())
        self.handle(self.client.connected())
        try:
            return await asyncio.wait_for(asyncio.shield(self._welcomed), timeout)
        except TimeoutError:
            await self.close()
            raise PeerError("The signaling server did not answer the join request.") from None
        except PeerError:
            await self.close()
            raise

    def described(self, program: Any) -> None:
        """The program the server describes before this party joins (``GET
        /api/sessions/ID``): if it is not the link's, this party stops here
        (``tampered``), and if this version cannot run it, ``program_problem`` says why."""
        digest = self._hash(program)
        if digest is not None:
            self.handle(self.client.described(digest))

    def attach(self, handler: Callable[[Event], None]) -> None:
        """Who makes the peer connections: gets every ``LINK_EVENTS`` event, those that
        came before it attached first."""
        self._links = handler
        early, self._link_events = self._link_events, []
        for event in early:
            handler(event)

    def local_description(self, peer: int, kind: str, sdp: str) -> None:
        self.handle(self.client.local_description(peer, kind, sdp))

    def link_state(self, peer: int, state: str, path: str | None = None) -> None:
        self.handle(self.client.link_state(peer, state, path))

    def status(self, state: str, detail: str | None = None) -> None:
        self.handle(self.client.status(state, detail))

    def tamper(self, error: TamperError) -> None:
        """Stop all signaling: the first ``TamperError`` wins and wakes every waiter."""
        if self.tampered is not None:
            return
        self.tampered = error
        self.stopped.set()
        log.error("%s", error)
        if self._welcomed is not None and not self._welcomed.done():
            self._welcomed.set_exception(PeerError(str(error)))
            self._welcomed.exception()  # whoever joins is told; no "never retrieved"
        if self.on_tamper is not None:
            self.on_tamper(error)

    async def close(self) -> None:
        """Send what is queued (bounded), then close (and reconnect no more)."""
        self._closing = True
        if self._reconnecting is not None and self._reconnecting is not asyncio.current_task():
            self._reconnecting.cancel()
        if self._writer is not None and not self._writer.done():
            try:
                await asyncio.wait_for(self._outbox.join(), CLOSE_TIMEOUT)
            except TimeoutError:
                log.debug("the signaling server did not take our last messages")
            self._writer.cancel()
        if self._ws is not None and not self._ws.closed:
            try:  # a server out of reach would keep us waiting for its closing frame
                await asyncio.wait_for(self._ws.close(), CLOSE_TIMEOUT)
            except TimeoutError:
                log.debug("the signaling server did not answer our closing frame")
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        if self._http is not None:
            await self._http.close()

    # -- the client's events ---------------------------------------------------------------

    def handle(self, events: list[Event]) -> None:
        for event in events:
            getattr(self, f"_on_{event['event']}", self._to_links)(event)

    def _to_links(self, event: Event) -> None:
        if event["event"] not in LINK_EVENTS:
            log.debug("ignoring the client event %s", event["event"])
        elif self._links is None:
            self._link_events.append(event)
        else:
            self._links(event)

    def _on_send(self, event: Event) -> None:
        if self._ws is None or self._ws.closed:
            log.debug("not sent, the connection is closed: %s", event["message"]["type"])
            return
        self._outbox.put_nowait(wire.encode(event["message"]))

    def _on_restart_numbering(self, event: Event) -> None:
        if self.sealer is not None:
            self.sealer.restart(event["peer"])

    def _on_seal(self, event: Event) -> None:
        assert self.sealer is not None  # there is nothing to seal before the welcome
        payload = self._signed(event["payload"], event.get("sign"))
        self._on_send({"message": wire.message(
            "signal", **self.sealer.seal(event["to"], payload))})

    def _signed(self, payload: dict[str, Any], sign: list[str] | None) -> dict[str, Any]:
        """``payload`` with this party's signature over ``statement(*sign)``, if asked."""
        if sign is None:
            return payload
        assert self.identity is not None  # the client asks only a party with an identity
        signature = self.identity.sign(statement(*sign))
        return {**payload, "signature": b64url_encode(signature)}

    def _on_verify(self, event: Event) -> None:
        try:
            signature = b64url_decode(event["signature"])
        except ValueError:
            ok = False
        else:
            ok = verify(event["identity"], signature, statement(*event["statement"]))
        self.handle(self.client.verified(event["id"], ok))

    def _on_identity(self, event: Event) -> None:
        self.identities[event["peer"]] = event
        self._call(self.on_identity, event)

    def _on_open_chat(self, event: Event) -> None:
        assert self.sealer is not None  # the client asks only after the welcome
        try:
            payload = self.sealer.open_chat(event["from"], event["seq"], event["box"])
        except TamperError as exc:
            self.handle(self.client.tampered(str(exc)))
            return
        self.handle(self.client.chat_received(event["from"], payload))

    def _on_chat_out(self, event: Event) -> None:
        payload = self._signed(event["payload"], event["sign"])
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        for peer in event["to"]:
            if self.chat_channel is not None and self.chat_channel(peer, text):
                log.info("chat to party %d over the peer connection", peer)
                continue
            if self.sealer is None:
                continue
            log.info("chat to party %d through the server (sealed)", peer)
            self._on_send({"message": wire.message(
                "chat", **self.sealer.seal_chat(peer, payload))})

    def _on_chat(self, event: Event) -> None:
        self._call(self.on_chat, event)

    def _on_chat_refused(self, event: Event) -> None:
        if self.on_chat_refused is None:
            log.warning("chat not sent: %s", event["message"])
        self._call(self.on_chat_refused, event["message"])

    def say(self, text: str) -> None:
        """This party writes ``text`` to the others (``chat_refused`` if it cannot)."""
        self.handle(self.client.say(text))

    def chat_received(self, peer: int, payload: Any) -> None:
        """A chat message that came over the peer connection to ``peer`` (decoded JSON)."""
        if isinstance(payload, dict):
            self.handle(self.client.chat_received(peer, payload))
        else:
            log.debug("ignoring a chat frame from party %d that is no JSON object", peer)

    def _on_open(self, event: Event) -> None:
        assert self.sealer is not None  # the client asks only after the welcome
        try:
            payload = self.sealer.open(event["from"], event["seq"], event["box"])
        except TamperError as exc:
            self.handle(self.client.tampered(str(exc)))
            return
        self.handle(self.client.opened(event["from"], payload))

    def _on_welcome(self, event: Event) -> None:
        welcome = self.welcome = event["welcome"]
        self.sealer = Sealer(self.secret, self.session_id, int(welcome["pid"]),
                             int(welcome["parties"]))

    def _on_open_descriptor(self, event: Event) -> None:
        self.handle(self.client.descriptor_opened(
            open_descriptor(self.secret, event["descriptor"])))

    def _on_check_program(self, event: Event) -> None:
        digest = self._hash(event["program"])
        if digest is None:  # this party cannot run it at all; join() says why
            if self._welcomed is not None and not self._welcomed.done():
                self._welcomed.set_exception(PeerError(str(self.program_problem)))
            return
        self.handle(self.client.program_checked(digest))

    def _on_program_ok(self, event: Event) -> None:
        if self._welcomed is not None and not self._welcomed.done():
            self._welcomed.set_result(self.welcome)  # type: ignore[arg-type]

    def _on_join_failed(self, event: Event) -> None:
        error = PeerError(event["message"])
        error.code = event["code"]  # type: ignore[attr-defined]
        if self._welcomed is not None and not self._welcomed.done():
            self._welcomed.set_exception(error)
        elif self.welcome is not None:  # joining again after a lost connection failed
            log.error("could not get the place back (%s): %s", event["code"], event["message"])
            self.lost = event["message"]
            self.last_error = error
            if self._ws is not None and not self._ws.closed:
                asyncio.ensure_future(self._ws.close())  # then: closed

    def _on_reconnect(self, event: Event) -> None:
        self._drop_outbox()  # what the lost connection did not send: the join says it anew
        if self._closing:
            self.closed.set()
            return
        attempt, delay = event["attempt"], event["delay"]
        log.warning("lost the connection to the signaling server; reconnecting in %.1f s "
                    "(attempt %d)", delay, attempt)
        self._tell(say("reconnect.lost", attempt=attempt))
        delay += random.uniform(0.0, delay * RECONNECT_JITTER)
        self._reconnecting = asyncio.ensure_future(self._reconnect(delay))

    def _on_reconnected(self, event: Event) -> None:
        self.welcome = event["welcome"]  # the same session; fresh ICE servers
        log.info("reconnected to the signaling server: still party %d", event["pid"])
        pid = event["pid"]
        labels = self.welcome.get("labels") or []
        self._tell(say("reconnect.back",
                       who=place(pid, labels[pid] if 0 <= pid < len(labels) else "")))

    def _on_server_error(self, event: Event) -> None:
        log.warning("signaling server: %s", event["message"])
        self.last_error = PeerError(event["message"])

    def _on_roster(self, event: Event) -> None:
        self.roster = event["roster"]
        if self.on_roster is not None:
            self.on_roster(self.roster)

    def _on_start(self, event: Event) -> None:
        first = not self.started.is_set()
        self.started.set()
        if first:
            self._call(self.on_start)

    def _on_tampered(self, event: Event) -> None:
        self.tamper(TamperError(event["message"]))

    def _on_closed(self, event: Event) -> None:
        if event.get("message"):  # it gave up reconnecting
            log.error("%s", event["message"])
            self.lost = event["message"]
        self.closed.set()
        if self._welcomed is not None and not self._welcomed.done():
            self._welcomed.set_exception(PeerError(
                "The signaling server closed the connection before welcoming us."))
        log.debug("signaling connection closed")

    def _hash(self, program: Any) -> str | None:
        """The program's hash, computed here from the code that would run; None if this
        version cannot run it (``program_problem`` says why)."""
        try:
            return program_hash(program)
        except LaunchError as exc:  # a built-in this version does not have
            self.program_problem = str(exc)
            return None
        except (KeyError, TypeError, AttributeError):
            return "0" * 64  # no usable program at all: certainly not the link's

    def _call(self, handler: Callable[..., None] | None, *args: Any) -> None:
        """Call who listens (showing something to the person): never at the cost of the
        connection."""
        if handler is None:
            return
        try:
            handler(*args)
        except Exception:
            log.warning("could not handle a signaling event", exc_info=True)

    def _tell(self, sentence: str) -> None:
        if self.on_news is not None:
            try:
                self.on_news(sentence)
            except Exception:  # telling the person must not cost the connection
                log.debug("could not show %r", sentence, exc_info=True)

    # -- I/O --------------------------------------------------------------------------------

    async def _open(self) -> None:
        """Open a WebSocket to the server and read from it."""
        assert self._http is not None
        ws = await self._http.ws_connect(
            self.url, timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            heartbeat=20.0, max_msg_size=8 * 1024 * 1024)
        self._ws = ws
        self._reader = asyncio.ensure_future(self._read(ws))

    async def _reconnect(self, delay: float) -> None:
        """After ``delay`` seconds, open a new connection and join again (or tell the
        client that it could not be opened)."""
        await asyncio.sleep(delay)
        if self._closing or self.client.phase != "reconnecting":
            return
        try:
            await asyncio.wait_for(self._open(), CONNECT_TIMEOUT)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.info("could not reach the signaling server at %s (%s)", self.url, _reason(exc))
            self.handle(self.client.disconnected())
            return
        if self._closing:
            await self._ws.close()  # type: ignore[union-attr]
            return
        self.handle(self.client.connected())

    def _drop_outbox(self) -> None:
        while not self._outbox.empty():
            self._outbox.get_nowait()
            self._outbox.task_done()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    message = json.loads(frame.data)
                    if not isinstance(message, dict):
                        raise ValueError("not a JSON object")
                except ValueError as exc:
                    log.warning("ignoring a malformed message from the server: %s", exc)
                    continue
                self.handle(self.client.receive(message))
        except Exception as exc:  # the reader must end quietly, the owner decides
            log.debug("signaling reader stopped: %s", exc)
        finally:
            if ws is self._ws:  # a connection given up on says nothing more
                self.handle(self.client.disconnected())

    async def _write(self) -> None:
        """One writer, so messages leave in the order the client made them (over whichever
        connection is open)."""
        while True:
            text = await self._outbox.get()
            try:
                ws = self._ws
                if ws is not None and not ws.closed:
                    await ws.send_str(text)
            except Exception as exc:
                log.debug("could not send a message to the signaling server: %s", exc)
            finally:
                self._outbox.task_done()


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
