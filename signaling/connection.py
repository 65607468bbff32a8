"""One WebSocket's outbox and writer, for the server's core to send through."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, NamedTuple

from aiohttp import WSCloseCode, web

from mpyc_webrtc import wire

from .session import Encoded, Outgoing

if TYPE_CHECKING:
    from .endpoint import Endpoint
    from .metrics import Metrics

log = logging.getLogger("signaling")

#: How long a closing WebSocket may take to send what is queued and say goodbye.
CLOSE_GRACE = 5.0


class Queued(NamedTuple):
    """A message waiting in the outbox: its type, text, ``error`` code (for the counts) and,
    for a relayed ``signal``, when the frame it came in arrived (``loop.time()``)."""

    type: str
    text: str
    code: str | None = None
    since: float | None = None


class Connection:
    """One WebSocket's outbox and writer: the ``send``/``close`` the core is given.

    Messages are encoded when queued (so their size is known; a broadcast comes
    already encoded, once for all its receivers) and written in order by one task.
    Consecutive rosters waiting to be written collapse into the newest, which says
    everything the older ones said. A client that lets more than ``max_messages`` messages
    or ``max_bytes`` bytes pile up (it does not read) is dropped at once: its queue is
    freed and its TCP connection aborted, rather than growing the server's memory.
    """

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, max_messages: int,
                 max_bytes: int, metrics: Metrics | None = None):
        self.ws = ws
        self.request = request
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        #: Counts what is written (by type and error code) and how long signals took.
        self.metrics = metrics
        self.queue: deque[Queued] = deque()
        self.queued_bytes = 0
        self.closing = False
        #: The WebSocket close code once the outbox is written: normal, or going away
        #: when the server shuts down (``close``).
        self.close_code = WSCloseCode.OK
        self.aborted = False
        self.endpoint: Endpoint | None = None
        self._wakeup = asyncio.Event()
        self.task = asyncio.create_task(self._write())

    def label(self) -> str:
        e = self.endpoint
        if e is None or e.session is None:
            return "session - party -"
        return f"session {e.session.id} party {e.pid}"

    def send(self, msg: Outgoing) -> None:
        if self.closing or self.aborted:
            return
        if isinstance(msg, Encoded):
            type_, text, code = msg.type, msg.text, msg.code
        else:
            type_ = msg.get("type", "")
            code = msg.get("code") if type_ == "error" else None
            text = wire.encode(msg)  # ASCII (json.dumps escapes the rest): len() is bytes
        if type_ == "roster" and self.queue and self.queue[-1].type == "roster":
            self.queued_bytes -= len(self.queue.pop().text)
        if len(self.queue) >= self.max_messages or \
                self.queued_bytes + len(text) > self.max_bytes:
            self.abort(f"it does not read its messages ({len(self.queue)} messages, "
                       f"{self.queued_bytes} bytes waiting)")
            return
        since = self.metrics.frame_arrived if self.metrics and type_ == "signal" else None
        self.queue.append(Queued(type_, text, code, since))
        self.queued_bytes += len(text)
        self._wakeup.set()

    def close(self, code: WSCloseCode | None = None) -> None:
        """Write what is queued, then close the WebSocket (with ``code``, if given: the
        first one asked for counts)."""
        if code is not None and not self.closing:
            self.close_code = code
        self.closing = True
        self._wakeup.set()

    def abort(self, why: str) -> None:
        """Drop the connection now, queued messages and all."""
        if self.aborted:
            return
        self.aborted = True
        log.warning("%s: dropping the connection: %s", self.label(), why)
        self.queue.clear()
        self.queued_bytes = 0
        self.task.cancel()
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def _write(self) -> None:
        try:
            while True:
                while self.queue:
                    item = self.queue.popleft()
                    self.queued_bytes -= len(item.text)
                    await self.ws.send_str(item.text)
                    if self.metrics is not None:
                        self.metrics.written(item.type, item.code, item.since)
                if self.closing:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
            await self.ws.close(code=self.close_code)
        except (ConnectionError, RuntimeError) as exc:  # the peer went away meanwhile
            log.debug("%s: writer stopped: %r", self.label(), exc)
            self.closing = True  # nothing more will be written: queue nothing more
            self.queue.clear()
            self.queued_bytes = 0

    async def finish(self) -> None:
        """Close, and give the writer ``CLOSE_GRACE`` seconds to finish."""
        self.close()
        done, _ = await asyncio.wait({self.task}, timeout=CLOSE_GRACE)
        if not done:
            self.task.cancel()
        elif not self.task.cancelled() and self.task.exception() is not None:
            log.error("%s: writer failed: %r", self.label(), self.task.exception())
