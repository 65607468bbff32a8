"""A message channel presented to MPyC as the byte-stream transport it expects.

MPyC's ``MessageExchanger`` is an ``asyncio.Protocol`` written for TCP: it only
calls ``write``, ``writelines`` and ``close`` on its transport and parses a byte
stream, so message boundaries on the channel do not matter. A data channel is a
message channel with per-message costs (one SCTP chunk, one DTLS record, one
system call per packet), hence everything MPyC writes during one event-loop
iteration leaves as one channel message, cut at the channel's message-size
limit. Exceptions never reach the channel's event handler: in aiortc such an
exception kills the link silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: aiortc refuses messages over 65536 bytes unless the remote SDP allows more.
MAX_MESSAGE_SIZE = 64 * 1024
#: Stop handing data to the channel above this many buffered bytes...
HIGH_WATER = 1024 * 1024
#: ...and resume when the channel reports it drained below this.
LOW_WATER = 256 * 1024
#: A text message that ends one run of a program on a channel kept for the next run; to
#: the receiver it means what closing the channel would. MPyC data always travels as
#: binary messages, so it cannot be mistaken for data.
END_OF_RUN = "end of run"
#: A text message sent on a link that carried nothing else for a while: a party that
#: is killed or loses its network says nothing, and neither SCTP nor ICE notices for
#: half a minute, while MPyC would wait for its next message forever.
KEEPALIVE = "keepalive"
#: A text message a party sends to everyone it can still reach when it must stop (the
#: rest of the text says why, for people). Without it, the others would only see this
#: party's links close and blame it, not the party that really went missing.
ABORT_PREFIX = "abort:"
#: Longest reason passed on.
MAX_ABORT_TEXT = 500
#: A channel the peer began to close normally reports closed after one round trip; if
#: that report does not come (the link died meanwhile), it counts as closed after this.
CLOSING_WAIT = 5.0


class LinkUnusable(str):
    """What a channel adapter delivers in place of a message when the link cannot carry
    MPyC's messages any more (the text says why, for people). Only an adapter makes one:
    nothing that arrives from the peer is of this type."""


class PeerSilent(Exception):
    """Nothing arrived from a party for ``seconds``, keepalives included."""

    def __init__(self, seconds: float):
        super().__init__(f"nothing arrived from it for {seconds:.0f} s")
        self.seconds = seconds


class MessageChannel(Protocol):
    """What the transport needs from a channel; aiortc's, the browser's and the
    in-memory pair's adapters implement it.

    ``attach`` must deliver any message that arrived before it was called, in order.
    ``on_drain`` is called when ``buffered_amount`` falls to ``low_water`` or below.
    """

    @property
    def buffered_amount(self) -> int: ...

    @property
    def is_open(self) -> bool:
        """False from the moment either end starts closing: sending then raises, while
        the close event comes only after the closing handshake (a round trip)."""

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def attach(self, on_message: Callable[[bytes], None], on_close: Callable[[], None],
               on_drain: Callable[[], None], low_water: int) -> None: ...

    def detach(self) -> None:
        """Keep what arrives from now on for the next ``attach`` (needed by ``keep_channel``)."""


class BufferedChannel:
    """What every ``MessageChannel`` adapter shares (aiortc's, the browser's, the in-memory
    one): whatever arrives before a transport attaches, or after it detached, is held for
    the next ``attach``, in order; a close that came meanwhile is told then too. And no
    exception escapes into the channel's own event handlers (aiortc's would kill the link
    silently, a browser's would only reach the console).

    Subclasses call ``_received``, ``_closed_remotely`` and ``_drained`` from their
    channel's events, and may override ``_set_low_water``.
    """

    def __init__(self) -> None:
        self._held: list[bytes | str] = []
        self._close_held = False
        self._on_message: Callable[[bytes], None] | None = None
        self._on_close: Callable[[], None] | None = None
        self._on_drain: Callable[[], None] | None = None
        self.low_water = 0

    def attach(self, on_message: Callable[[bytes], None], on_close: Callable[[], None],
               on_drain: Callable[[], None], low_water: int) -> None:
        self.low_water = low_water
        self._set_low_water(low_water)
        self._on_message, self._on_close, self._on_drain = on_message, on_close, on_drain
        held, self._held = self._held, []
        for data in held:
            on_message(data)  # type: ignore[arg-type]  # text: the transport refuses it
        if self._close_held:
            self._close_held = False
            on_close()

    def detach(self) -> None:
        self._on_message = self._on_close = self._on_drain = None

    def _set_low_water(self, low_water: int) -> None:
        """Ask the channel for ``on_drain`` at ``low_water`` buffered bytes."""

    def _received(self, data: bytes | str) -> None:
        try:
            if self._on_message is None:
                if data == KEEPALIVE:
                    return  # it said the peer was alive then; nobody needs to hear it later
                self._held.append(data)
            else:
                self._on_message(data)  # type: ignore[arg-type]
        except Exception:
            log.exception("handling a message from %s failed", self)

    def _closed_remotely(self) -> None:
        try:
            if self._on_close is None:
                self._close_held = True
            else:
                self._on_close()
        except Exception:
            log.exception("handling the close of %s failed", self)

    def _drained(self) -> None:
        try:
            if self._on_drain is not None:
                self._on_drain()
        except Exception:
            log.exception("handling a drained %s failed", self)


class ChannelTransport:
    """The transport a ``MessageExchanger`` writes to, backed by one message channel."""

    def __init__(self, channel: MessageChannel, protocol: asyncio.Protocol,
                 loop: asyncio.AbstractEventLoop, *, peer_pid: int,
                 max_message_size: int = MAX_MESSAGE_SIZE, high_water: int = HIGH_WATER,
                 low_water: int = LOW_WATER,
                 on_failure: Callable[[int, BaseException], None] | None = None,
                 on_lost: Callable[[int], None] | None = None, keep_channel: bool = False,
                 keepalive: float | None = None, silence_limit: float | None = None,
                 startup_grace: float = 30.0,
                 on_abort: Callable[[int, str], None] | None = None):
        if not 0 < max_message_size:
            raise ValueError("max_message_size must be positive")
        self.channel = channel
        self.protocol = protocol
        self.peer_pid = peer_pid
        self._loop = loop
        self._max_message_size = max_message_size
        self._high_water = high_water
        self._on_failure = on_failure
        self._on_lost = on_lost
        self._on_abort = on_abort
        self._buffer = bytearray()
        self._flush_scheduled = False
        self._closing = False
        self._lost = False
        self._failed = False
        #: Close by ending the run (``END_OF_RUN``), leaving the channel open for another.
        self._keep_channel = keep_channel
        self.messages_sent = 0
        self.bytes_sent = 0
        self.messages_received = 0
        self.bytes_received = 0
        #: Send a ``KEEPALIVE`` after this many seconds without sending anything; declare the
        #: party gone (``PeerSilent``) after ``silence_limit`` seconds without hearing from it.
        self._keepalive = keepalive
        self._silence_limit = silence_limit
        #: Until the first message arrives, the peer may still be connecting to others
        #: before it sets up its side of this link: allow it this long in all.
        self._startup_grace = startup_grace
        self._heard = False
        self._closing_seen: float | None = None
        self._last_sent = self._last_received = self._last_tick = loop.time()
        self._timer: asyncio.TimerHandle | None = None
        if keepalive is not None or silence_limit is not None:
            self._timer = loop.call_later(self._tick_interval(), self._tick)
        # As asyncio's transports do, tell the protocol first, and only then let data in:
        # MessageExchanger decides from peer_pid in connection_made whether it is the
        # client, and a handshake received before that would make a server act as one.
        protocol.connection_made(self)
        channel.attach(self._on_message, self._on_close, self._on_drain, low_water)

    # -- what MessageExchanger calls ------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost:
            log.debug("write to party %d after close ignored (%d bytes)", self.peer_pid,
                      len(data))
            return
        if not data:
            return
        self._buffer += data
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def close(self) -> None:
        """Close once everything written so far has been handed to the channel."""
        if self._closing or self._lost:
            return
        self._closing = True
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peer_pid": self.peer_pid, "channel": self.channel}.get(name, default)

    @property
    def pending(self) -> int:
        """Bytes written by MPyC that have not yet been handed to the channel."""
        return len(self._buffer)

    def end_grace(self) -> None:
        """From now on the peer gets the silence limit only, heard from or not: signaling
        says it lost its connection, so silence from it is no longer just a slow start."""
        self._startup_grace = 0.0

    def send_abort(self, reason: str) -> None:
        """Tell the peer this party stops, and why (best effort: the link may be gone)."""
        if self._lost:
            return
        try:
            self.channel.send(ABORT_PREFIX + reason[:MAX_ABORT_TEXT])  # type: ignore[arg-type]
        except Exception:
            log.debug("could not tell party %d why this party stops", self.peer_pid)

    # -- liveness -------------------------------------------------------------------------

    def _tick_interval(self) -> float:
        return min(t for t in (self._keepalive, (self._silence_limit or 0) / 8 or None, 1.0)
                   if t is not None)

    def _tick(self) -> None:
        self._timer = None
        if self._lost:
            return
        try:
            now = self._loop.time()
            if now - self._last_tick > 3 * self._tick_interval():
                # This party's own loop was blocked (a long local computation): whatever
                # the peer sent meanwhile waits unread, so its silence proves nothing.
                self._last_received = now
            self._last_tick = now
            if not self.channel.is_open:
                # The peer is closing its end: the close event follows the closing
                # handshake. Nothing more can be sent, and its silence means nothing.
                if self._closing_seen is None:
                    self._closing_seen = now
                elif now - self._closing_seen > CLOSING_WAIT:
                    log.debug("channel to party %d never finished closing", self.peer_pid)
                    self._connection_lost()
                    return
                self._timer = self._loop.call_later(self._tick_interval(), self._tick)
                return
            limit = self._silence_limit
            if limit is not None and not self._heard:
                limit = max(limit, self._startup_grace)
            if limit is not None and now - self._last_received > limit:
                self._fail(PeerSilent(limit))
                return
            if self._keepalive is not None and now - self._last_sent >= self._keepalive \
                    and not self._closing and self.channel.buffered_amount < self._high_water:
                self.channel.send(KEEPALIVE)  # type: ignore[arg-type]  # a text message
                self._last_sent = now
        except Exception as exc:  # a broken channel: as a failed send would
            self._fail(exc)
            return
        self._timer = self._loop.call_later(self._tick_interval(), self._tick)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- sending --------------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._send_buffer()

    def _send_buffer(self) -> None:
        if self._lost:
            return
        try:
            while self._buffer and self.channel.buffered_amount < self._high_water:
                chunk = bytes(self._buffer[: self._max_message_size])
                del self._buffer[: len(chunk)]
                self.channel.send(chunk)
                self.messages_sent += 1
                self.bytes_sent += len(chunk)
                self._last_sent = self._loop.time()
        except Exception as exc:  # a closed or broken channel must not crash the caller
            if self.channel.is_open:
                self._fail(exc)
            else:
                # The peer closed its end first: to MPyC a lost connection, which only
                # matters if the computation was not finished.
                log.debug("party %d closed the channel with %d bytes unsent", self.peer_pid,
                          len(self._buffer))
                self._connection_lost()
            return
        if self._closing and not self._buffer:
            self._finish_close()

    def _on_drain(self) -> None:
        try:
            if self._buffer:
                self._send_buffer()
        except Exception as exc:  # never into the channel's handler
            self._fail(exc)

    def _finish_close(self) -> None:
        try:
            if self._keep_channel and not self._failed:
                self.channel.send(END_OF_RUN)  # type: ignore[arg-type]  # a text message
                self.channel.detach()
            else:
                self.channel.close()
        except Exception:
            log.debug("closing the channel to party %d failed", self.peer_pid, exc_info=True)
        self._connection_lost()

    # -- receiving ------------------------------------------------------------------------

    def _on_message(self, data: bytes) -> None:
        try:
            if self._lost:
                return
            self._last_received = self._loop.time()
            self._heard = True
            if isinstance(data, str):
                if isinstance(data, LinkUnusable):
                    raise ConnectionError(str(data))
                if data == KEEPALIVE:
                    return
                if data.startswith(ABORT_PREFIX):
                    reason = data[len(ABORT_PREFIX):][:MAX_ABORT_TEXT]
                    log.info("party %d stops: %s", self.peer_pid, reason)
                    if self._on_abort is not None:
                        self._on_abort(self.peer_pid, reason)
                    return
                if data == END_OF_RUN:
                    # As a close would: the peer finished (it keeps the channel for
                    # another run; whether this side does, is up to this side).
                    log.debug("party %d ended this run", self.peer_pid)
                    if self._keep_channel:
                        self.channel.detach()
                    self._connection_lost()
                    return
                raise ValueError("received a text message where MPyC sends only binary data")
            self.messages_received += 1
            self.bytes_received += len(data)
            protocol = self.protocol
            protocol.data_received(data)
            claimed = getattr(protocol, "peer_pid", self.peer_pid)
            if claimed is not None and claimed != self.peer_pid:
                raise ValueError(
                    f"the party on the channel of party {self.peer_pid} says it is "
                    f"party {claimed}"
                )
        except Exception as exc:  # never into the channel's handler
            self._fail(exc)

    def _on_close(self) -> None:
        try:
            if not self._lost:
                log.debug("channel to party %d closed", self.peer_pid)
                self._connection_lost()
        except Exception:
            log.exception("error while handling the close of party %d's channel",
                          self.peer_pid)

    def _connection_lost(self) -> None:
        if self._lost:
            return
        self._lost = True
        self._stop_timer()
        self._buffer.clear()
        try:
            self.protocol.connection_lost(None)
        except (asyncio.InvalidStateError, KeyError, TypeError, IndexError):
            # MPyC's unset_protocol raises when its peers were already all gone.
            log.debug("connection_lost for party %d after shutdown", self.peer_pid)
        except Exception as exc:
            log.warning("MPyC failed to handle losing party %d: %s", self.peer_pid, exc)
        if self._on_lost is not None:
            self._on_lost(self.peer_pid)

    def _fail(self, exc: BaseException) -> None:
        self._failed = True
        self._stop_timer()
        log.error("link to party %d failed: %s", self.peer_pid, exc)
        if self._on_failure is not None:
            try:
                self._on_failure(self.peer_pid, exc)
            except Exception:
                log.exception("failure callback raised")
        self._closing = True
        self._finish_close()
