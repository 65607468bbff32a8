"""One party's signaling connection, as the server's core sees it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from mpyc_webrtc.wire import (
    CLIENT_MESSAGES,
    ErrorCode,
    SignalingError,
    decode_client_message,
    error_message,
)

from .registry import Registry
from .session import Send, Session, check_join_identity

log = logging.getLogger(__name__)


class Endpoint:
    """One party's signaling connection, as the core sees it.

    ``send`` and ``close`` are the I/O layer's; neither may raise. The endpoint counts in
    its registry's ``endpoints`` from creation until ``disconnected``.
    """

    def __init__(self, registry: Registry, send: Send, close: Callable[[], None],
                 client: str | None = None):
        self.registry = registry
        #: The client address it counts against (``registry.client_key``), if any.
        self.client = client
        self.send = send
        self._close = close
        self.session: Session | None = None
        self.pid: int | None = None
        #: The session it asked to join while the join is on its way (``signaling.shared``).
        self.joining: str | None = None
        #: Names this connection among every server process's (``Registry.connection_id``).
        self.conn = registry.connection_id()
        #: Set once the core asked the I/O layer to close; later frames are ignored.
        self.closed = False
        self.opened = registry.clock()
        # Token bucket: ``_tokens`` messages may come now; refused messages add
        # ``_strikes``, which drain at (flood_factor - 1) times the rate.
        self._tokens = float(registry.message_burst)
        self._strikes = 0.0
        self._refilled = self.opened
        registry.connection_opened(self)

    def close(self) -> None:
        """Ask the I/O layer to close this connection (once)."""
        if not self.closed:
            self.closed = True
            self._close()

    def receive(self, text: str | bytes) -> None:
        """Handle one WebSocket frame; every failure becomes an ``error`` message."""
        if self.closed:
            return
        if not self._allowed() or (self.session is not None and
                                   not self.registry.count_message(self.session)):
            # Over the rate (refused) or the session's budget (it is closed, this too).
            self._observe("dropped")
            return
        kind = "invalid"
        try:
            try:
                msg = decode_client_message(text)
            except (RecursionError, UnicodeError):
                # Nesting deeper than the JSON parser goes, or text that is not UTF-8.
                raise SignalingError(ErrorCode.MALFORMED_JSON,
                                     "The message is not valid JSON text.") from None
            kind = msg["type"]
            self._observe(kind)
            self._receive(msg)
        except SignalingError as exc:
            if kind == "invalid":
                self._observe(kind)
            # The code only: the message may quote what the client sent.
            log.info("session %s party %s: refused, %s", self._session_id(), self._party(),
                     exc.code)
            self.send(exc.to_message())
        except Exception:
            log.exception("session %s party %s: internal error handling a %s message",
                          self._session_id(), self._party(), _type_of(text))
            self.send(error_message(
                ErrorCode.INTERNAL_ERROR,
                "Something went wrong inside the signaling server; this connection is "
                "closed. Join again, and tell the server's operator if it happens again.",
            ))
            self.close()

    def _observe(self, kind: str) -> None:
        """Tell the registry's observer (the operator's counts) what came; never raise."""
        observer = self.registry.observer
        if observer is not None:
            try:
                observer.received(kind)
            except Exception:  # counting must never cost a party its message
                log.exception("session %s party %s: counting a message failed",
                              self._session_id(), self._party())

    def _allowed(self) -> bool:
        """Take a token from the bucket, or refuse (and close a flooding connection)."""
        reg = self.registry
        now = reg.clock()
        elapsed = max(0.0, now - self._refilled)
        self._refilled = now
        self._tokens = min(float(reg.message_burst), self._tokens + elapsed * reg.message_rate)
        excess = reg.flood_factor - 1.0
        self._strikes = max(0.0, self._strikes - elapsed * reg.message_rate * excess)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self._strikes += 1.0
        if self._strikes > reg.message_burst * excess:
            log.warning("session %s party %s: closing a connection that floods the server",
                        self._session_id(), self._party())
            self.send(error_message(
                ErrorCode.RATE_LIMITED,
                f"This connection sent far more than {reg.message_rate:g} messages per second, "
                "so the server closed it.",
            ))
            self.close()
        else:
            self.send(error_message(
                ErrorCode.RATE_LIMITED,
                f"Too many messages: the server takes {reg.message_rate:g} per second (bursts "
                f"of {reg.message_burst}) from one connection. This one was dropped; slow "
                "down and send it again.",
            ))
        return False

    def disconnected(self, leaving: bool = False, ended: bool = False) -> None:
        """The connection closed: ``leaving`` if its client closed it as it means to (a
        page closed or navigated away, a native peer that is done); ``ended`` if the other
        end closed it without a word (its process ended or crashed); else it was lost (the
        network, a timeout), and a party that can come back keeps its place
        (``Session.leave``)."""
        self.registry.connection_closed(self)
        self.closed = True
        self.registry.left(self, leaving, ended)

    def _receive(self, msg: dict[str, Any]) -> None:
        """What a valid message does: here and now (one process), or once the registry
        put it in order with the other processes' (``signaling.shared``)."""
        if msg["type"] == "join" and (self.session is not None or self.joining):
            number = None if self.pid is None else self.pid + 1  # as people count
            where = f"session {self.session.id} as party {number}" if self.session \
                else f"session {self.joining}"
            raise SignalingError(
                ErrorCode.ALREADY_JOINED, f"This connection already joined {where}.")
        if msg["type"] != "join" and (self.session is None or self.pid is None):
            raise SignalingError(
                ErrorCode.NOT_JOINED, "Send a 'join' message before anything else."
            )
        if msg["type"] == "join":
            # Here, once, for one process or many: only this process sees the resume
            # secret the proof signs (the shared log keeps its hash).
            check_join_identity(msg)
        self.registry.handle(self, msg)

    def apply(self, msg: dict[str, Any], now: float) -> None:
        """Act on ``msg`` in this process's session (``Registry.handle``)."""
        if msg["type"] == "join":
            session = self.registry.get(msg["session"])
            session.check_token(msg["token"])
            self.pid = session.join(self, msg.get("name", ""), now, msg.get("role"),
                                    msg.get("ready", False), msg.get("resume"),
                                    msg.get("identity"))
            self.session = session
            self.registry.unjoined.pop(self, None)
            log.info("session %s party %d: joined", session.id, self.pid)
        elif self.session is not None and self.pid is not None:
            self.session.act(self.pid, msg, now)

    def _session_id(self) -> str:
        return self.session.id if self.session else "-"

    def _party(self) -> str:
        return "-" if self.pid is None else str(self.pid)


def _type_of(text: str | bytes) -> str:
    """A frame's message type, for a log line (never its content)."""
    try:
        type_ = json.loads(text).get("type")
    except Exception:
        return "malformed"
    return type_ if isinstance(type_, str) and type_ in CLIENT_MESSAGES else "unknown"
