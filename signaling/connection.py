"""One WebSocket's outbox and writer, for the server's core to send through."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from aiohttp import web

from mpyc_webrtc import wire

from .session import Encoded, Outgoing

if TYPE_CHECKING:
    from .endpoint import Endpoint

log = logging.getLogger("signaling")

#: How long a closing WebSocket may take to send what is queued and say goodbye.
CLOSE_GRACE = 5.0


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
                 max_bytes: int):
        self.ws = ws
        self.request = request
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.queue: deque[tuple[str, str]] = deque()
        self.queued_bytes = 0
        self.closing = False
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
            type_, text = msg.type, msg.text
        else:
            type_ = msg.get("type", "")
            text = wire.encode(msg)  # ASCII (json.dumps escapes the rest): len() is bytes
        if type_ == "roster" and self.queue and self.queue[-1][0] == "roster":
            self.queued_bytes -= len(self.queue.pop()[1])
        if len(self.queue) >= self.max_messages or \
                self.queued_bytes + len(text) > self.max_bytes:
            self.abort(f"it does not read its messages ({len(self.queue)} messages, "
                       f"{self.queued_bytes} bytes waiting)")
            return
        self.queue.append((type_, text))
        self.queued_bytes += len(text)
        self._wakeup.set()

    def close(self) -> None:
        """Write what is queued, then close the WebSocket."""
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
                    _, text = self.queue.popleft()
                    self.queued_bytes -= len(text)
                    await self.ws.send_str(text)
                if self.closing:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
            await self.ws.close()
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
