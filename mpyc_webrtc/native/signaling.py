"""The native party's WebSocket to the signaling server (aiohttp)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from .. import wire
from ..sealing import Sealer, TamperError
from ..sentences import say
from .errors import PeerError

log = logging.getLogger(__name__)

#: How long closing the signaling connection may take.
CLOSE_TIMEOUT = 3.0


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
                    raise TamperError(say("tamper.failed_authentication", party=sender))
                payload = self.sealer.open(sender, msg.get("seq"), msg.get("box"))
            except TamperError as exc:
                self.tamper(exc)
                return
            self._inbox[sender].put_nowait(payload)


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
