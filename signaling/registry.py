"""All live sessions of one server, and the limits that keep it healthy.

Limits (the ``Registry``'s arguments; see ``signaling.cli`` for the command-line options):
total sessions, open sessions per client address, total connections, messages per second
per connection (a token bucket on the registry's clock), how long a connection may stay
without joining, and idle/absolute session age. Every refusal is an ``error`` message with a
code and a sentence for a person.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from mpyc_webrtc.launch import (
    BUILTIN_NEEDS_PARTIES,
    MIN_BUILTIN_PARTIES,
    privacy,
    privacy_sentence,
)
from mpyc_webrtc.wire import (
    MAX_PARTIES,
    MIN_PARTIES,
    ErrorCode,
    SignalingError,
    error_message,
)

from .ice_servers import IceConfig
from .session import (
    ROSTER_BURST,
    ROSTER_INTERVAL,
    Encoded,
    Schedule,
    Session,
    invalid,
    labels_from_request,
    pins_from_request,
    program_from_request,
)

if TYPE_CHECKING:
    from .endpoint import Endpoint

log = logging.getLogger(__name__)

#: Longest sealed session description: 32 labels of 40 characters and the arguments fit.
MAX_DESCRIPTOR_LENGTH = 16 * 1024


class Observer(Protocol):
    """What the core tells whoever counts for the operator (``signaling.metrics``).

    Only what the I/O layer cannot see itself: the type of each message a client sent,
    which is known once the core decoded it. Everything else is counted at the I/O edge.
    """

    def received(self, type_: str) -> None:
        """A client's message of ``type_`` (a ``wire.CLIENT_MESSAGES`` type), or
        ``invalid`` (not a valid message) or ``dropped`` (over a rate or budget, unread)."""


class Registry:
    r"""All live sessions of one server, with the limits that keep it healthy.

    - ``max_sessions`` open sessions in all (``server_busy``), and ``max_sessions_per_client``
      open sessions created from one client address (``too_many_sessions``); a session
      counts until it expires;
    - ``resume_grace``: a party that joined with a ``resume`` secret and whose connection
      closed before the start keeps its place this long (``reconnecting``); a started
      session that every party has left stays open this long too, for a page that reloads
      (or a party that lost its connection) while the others leave;
    - ``idle_timeout``: a session nobody touched for this long closes, counted only while
      no party is connected (an open connection, in the lobby or running, is activity);
      ``max_age``: every session closes at this age. A closed session is remembered
      (``closed_sessions``, as long as ``max_age`` and at most ``max_sessions`` of them) so
      that its link says it closed and offers its settings, to create it again;
    - ``max_connections`` open connections (``Endpoint``\ s) in all (``server_busy``), and
      ``max_connections_per_client`` from one client address (``too_many_connections``;
      an IPv6 address counts as its /64, see ``client_key``);
      ``join_timeout``: a connection that has not joined a session this long after it
      opened is closed (``sweep``);
    - ``message_rate``/``message_burst``: each connection may send ``message_burst``
      messages at once and ``message_rate`` per second sustained (a token bucket); more are
      refused with ``rate_limited``, and a connection that sends ``flood_factor`` times
      that (at once, or sustained) is closed;
    - ``session_messages``: the parties of an m-party session may send
      ``session_messages`` x m² messages together; the one beyond closes the session
      (``too_many_messages``). An honest session sends far fewer: see ``docs/protocol.md``;
    - rosters: each change of a session's roster reaches its parties, at once while the
      session has some of its allowance (``roster_burst`` // m² rosters, at least one,
      refilled by one every ``roster_interval`` seconds), else with the next roster due,
      which holds every change since the last; so the roster (its pairs grow with m²) is
      built and encoded about once per interval at most, however many messages change it.
      ``schedule`` (the I/O layer's ``loop.call_later``) sends the due roster. Without
      ``schedule``, every change is sent at once (the core's tests).
    """

    def __init__(self, *, idle_timeout: float = 600.0, max_age: float = 8 * 3600.0,
                 max_sessions: int = 1000, ice_servers: Iterable[dict[str, Any]] = (),
                 ice: IceConfig | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 max_sessions_per_client: int = 20, max_connections: int = 5000,
                 join_timeout: float = 60.0, message_rate: float = 50.0,
                 message_burst: int = 200, flood_factor: float = 3.0,
                 max_connections_per_client: int = 64, session_messages: int = 250,
                 roster_interval: float = ROSTER_INTERVAL, roster_burst: int = ROSTER_BURST,
                 schedule: Schedule | None = None, resume_grace: float = 60.0):
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self.max_sessions = max_sessions
        self.max_sessions_per_client = max_sessions_per_client
        self.max_connections = max_connections
        self.join_timeout = join_timeout
        self.message_rate = message_rate
        self.message_burst = message_burst
        self.flood_factor = max(1.0, flood_factor)
        self.max_connections_per_client = max_connections_per_client
        self.session_messages = session_messages
        self.roster_interval = roster_interval
        self.roster_burst = max(1, roster_burst)
        self.schedule = schedule
        self.resume_grace = resume_grace
        #: STUN/TURN for every session: ``ice``, or just the fixed ``ice_servers``.
        self.ice = ice if ice is not None else IceConfig(static=tuple(ice_servers))
        self.clock = clock
        self.wall_clock = wall_clock
        self.sessions: dict[str, Session] = {}
        #: Sessions that closed, oldest first: id -> (when, the error code and sentence its
        #: parties got, its ``Session.settings``), for ``get`` to say so.
        self.closed_sessions: dict[str, tuple[float, ErrorCode, str, dict[str, Any]]] = {}
        #: Open sessions per creating client address (only addresses with at least one).
        self.sessions_by_client: Counter[str] = Counter()
        #: Every open connection, and those not yet in a session (oldest first).
        self.endpoints: set[Endpoint] = set()
        self.unjoined: dict[Endpoint, None] = {}
        #: Open connections per client address (``client_key``; only those with one or more).
        self.connections_by_client: Counter[str] = Counter()
        #: Told about what clients send, if anyone counts (the I/O layer sets it).
        self.observer: Observer | None = None
        #: This process among the server's (``signaling.shared``); names its connections.
        self.proc = "local"
        self._connections = 0

    def check_connection_capacity(self, client: str | None = None) -> None:
        """Raise ``server_busy`` if another connection would be more than the server allows,
        or ``too_many_connections`` if ``client`` (``client_key``) has as many as it may."""
        if len(self.endpoints) >= self.max_connections:
            raise SignalingError(
                ErrorCode.SERVER_BUSY,
                "The server has too many open connections right now; try again in a few "
                "minutes.",
            )
        if client is not None and \
                self.connections_by_client[client] >= self.max_connections_per_client:
            raise SignalingError(
                ErrorCode.TOO_MANY_CONNECTIONS,
                f"There are already {self.max_connections_per_client} connections to this "
                "server from your address, the most it allows. Close some tabs or parties, "
                "or wait until their sessions end.",
            )

    def connection_id(self) -> str:
        """A new connection's name, unique among this server's processes."""
        self._connections += 1
        return f"{self.proc}.{self._connections}"

    def handle(self, endpoint: Endpoint, msg: dict[str, Any]) -> None:
        """A valid message from ``endpoint``: acted on at once (one process holds all)."""
        endpoint.apply(msg, self.clock())

    def left(self, endpoint: Endpoint, leaving: bool = False, ended: bool = False) -> None:
        """``endpoint``'s connection closed: its party leaves its session, or, if the
        connection was lost (not ``leaving``) and it has a ``resume`` secret, is
        reconnecting."""
        if endpoint.session is not None and endpoint.pid is not None:
            session, pid = endpoint.session, endpoint.pid
            endpoint.session = endpoint.pid = None
            if session.id in self.sessions:
                session.leave(pid, self.clock(), endpoint, keep=not leaving, ended=ended)
                log.info("session %s party %d: connection closed", session.id, pid)

    def connection_opened(self, endpoint: Endpoint) -> None:
        self.endpoints.add(endpoint)
        self.unjoined[endpoint] = None
        if endpoint.client is not None:
            self.connections_by_client[endpoint.client] += 1

    def connection_closed(self, endpoint: Endpoint) -> None:
        if endpoint not in self.endpoints:
            return
        self.endpoints.discard(endpoint)
        self.unjoined.pop(endpoint, None)
        client = endpoint.client
        if client is not None:
            self.connections_by_client[client] -= 1
            if self.connections_by_client[client] <= 0:
                del self.connections_by_client[client]

    def _check_session_capacity(self, client: str | None) -> None:
        if len(self.sessions) >= self.max_sessions:
            raise sessions_busy()
        if client is not None and \
                self.sessions_by_client[client] >= self.max_sessions_per_client:
            raise too_many_sessions(self.max_sessions_per_client)

    def create(self, request: Any, client: str | None = None) -> Session:
        """Create a session from the JSON body of ``POST /api/sessions``.

        ``client`` is the creator's address, counted against ``max_sessions_per_client``
        (``None``: not counted, e.g. a session the operator opens at start-up).
        """
        session = self.build(request)
        self._check_session_capacity(client)
        session.client = client
        self.sessions[session.id] = session
        if client is not None:
            self.sessions_by_client[client] += 1
        log.info("session %s party -: created for %d parties, %s", session.id,
                 session.parties, f"program {session.program.name}"
                 if session.program.source is None else
                 f"uploaded program ({len(session.program.source.encode())} bytes)")
        return session

    def build(self, request: Any, session_id: str | None = None,
              created: float | None = None, ends: float | None = None) -> Session:
        """The session a create request asks for, checked but not yet counted nor kept:
        a new one, or (``session_id``, ``created``, ``ends``) one made before (whose
        program was compiled then)."""
        if not isinstance(request, dict):
            raise invalid("The request body must be a JSON object.")
        parties = request.get("parties")
        if isinstance(parties, bool) or not isinstance(parties, int) or not (
            MIN_PARTIES <= parties <= MAX_PARTIES
        ):
            raise invalid(
                f"'parties' must be a whole number from {MIN_PARTIES} to {MAX_PARTIES}, "
                f"got {parties!r}."
            )
        program = program_from_request(request, compiled=session_id is not None)
        labels = labels_from_request(request, parties)
        pins = pins_from_request(request, parties, labels)
        token_hash = request.get("token_hash")
        if not isinstance(token_hash, str) or not re.fullmatch(r"[0-9a-f]{64}", token_hash):
            raise invalid(
                "'token_hash' must be the SHA-256 (64 lowercase hex digits) of the session's "
                "join token. The create page and 'mpyc-webrtc-peer create' make it for you.")
        descriptor = request.get("descriptor")
        if descriptor is not None and (
                not isinstance(descriptor, str) or len(descriptor) > MAX_DESCRIPTOR_LENGTH
                or not re.fullmatch(r"[A-Za-z0-9_-]+", descriptor)):
            raise invalid("'descriptor' must be the sealed description of the session "
                          f"(base64url, at most {MAX_DESCRIPTOR_LENGTH} characters). The "
                          "create page and 'mpyc-webrtc-peer create' make it for you.")
        no_privacy = request.get("no_privacy", False)
        if not isinstance(no_privacy, bool):
            raise invalid(f"'no_privacy' must be true or false, got {no_privacy!r}.")
        check_privacy(program.source is None, parties, program.args, no_privacy)
        relay_only = request.get("relay_only", False)
        if not isinstance(relay_only, bool):
            raise invalid(f"'relay_only' must be true or false, got {relay_only!r}.")
        if relay_only and not self.ice.has_relay:
            raise invalid(
                "This server has no TURN relay, so it cannot hide the parties' addresses "
                "from each other (relay only). Create the session without that option, or "
                "ask the server's operator to set up TURN.")
        session = Session(session_id or secrets.token_urlsafe(12), parties, program,
                          self.clock() if created is None else created, self.ice, labels,
                          token_hash, relay_only=relay_only, descriptor=descriptor,
                          pins=pins, wall_clock=self.wall_clock)
        session.ends = self.wall_clock() + self.max_age if ends is None else ends
        session.idle_timeout = self.idle_timeout
        session.no_privacy = no_privacy
        session.message_budget = self.session_messages * parties ** 2
        session.schedule, session.clock = self.schedule, self.clock
        session.roster_interval = self.roster_interval
        session.roster_burst = max(1, self.roster_burst // parties ** 2)
        return session

    def _remove(self, session: Session) -> None:
        del self.sessions[session.id]
        session.closed = True
        client = session.client
        if client is not None:
            self.sessions_by_client[client] -= 1
            if self.sessions_by_client[client] <= 0:
                del self.sessions_by_client[client]

    def get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise self.gone(session_id)
        return session

    def gone(self, session_id: str) -> SignalingError:
        """Why there is no session ``session_id``: it closed (``ClosedSession``, with its
        settings), or there never was one here (``unknown_session``)."""
        self._forget_closed()
        closed = self.closed_sessions.get(session_id)
        if closed is None:
            return unknown_session(session_id)
        _, code, text, settings = closed
        return ClosedSession(code, text, settings)

    def remember_closed(self, session: Session, code: ErrorCode, text: str) -> None:
        """Remember that ``session`` closed, why, and its settings (``closed_sessions``)."""
        self.recall_closed(session.id, code, text, session.settings())

    def recall_closed(self, session_id: str, code: ErrorCode, text: str,
                      settings: dict[str, Any]) -> None:
        """Remember a session that closed, as ``remember_closed`` (here: another process
        closed it, and the shared store said so)."""
        self.closed_sessions.pop(session_id, None)
        self.closed_sessions[session_id] = (self.clock(), code, text, settings)
        self._forget_closed()

    def _forget_closed(self) -> None:
        before = self.clock() - self.max_age
        while self.closed_sessions and (
                len(self.closed_sessions) > self.max_sessions
                or next(iter(self.closed_sessions.values()))[0] < before):
            del self.closed_sessions[next(iter(self.closed_sessions))]

    def due(self) -> list[tuple[Session, str]]:
        """Sessions to close now, each with why: ``too old``, ``over`` (started, and
        every party left ``resume_grace`` ago or longer: a reloaded page finds its place
        still there, and the others gone) or ``idle`` (no party connected, and nothing
        happened for ``idle_timeout``: a party waiting in the lobby keeps it open)."""
        now = self.clock()
        found = []
        for session in list(self.sessions.values()):
            connected = bool(session.connected_members())
            if now - session.created > self.max_age:
                found.append((session, "too old"))
            elif session.started and not connected \
                    and now - session.last_activity >= self.resume_grace:
                found.append((session, "over"))
            elif now - session.last_activity > self.idle_timeout and not connected:
                found.append((session, "idle"))
        return found

    def expire(self) -> list[Session]:
        """Close sessions that are idle, too old, or over and empty; return them."""
        gone = []
        for session, why in self.due():
            gone.append(session)
            self.close(session, ErrorCode.SESSION_EXPIRED, expired_sentence(why))
            log.info("session %s party -: expired (%s)", session.id, why)
        return gone

    def close(self, session: Session, code: ErrorCode, text: str) -> None:
        """Close ``session`` now: its parties get the error ``code`` and are disconnected."""
        if session.closed:
            return
        self._remove(session)
        self.remember_closed(session, code, text)
        encoded = Encoded.of(error_message(code, text))
        for member in session.connected_members():
            member.endpoint.send(encoded)
            member.endpoint.close()

    def count_message(self, session: Session) -> bool:
        """Count a message from one of ``session``'s parties against its budget; past the
        budget, close the session and say so (False)."""
        session.messages += 1
        if session.messages <= session.message_budget:
            return True
        log.warning("session %s party -: closed, its parties sent more than %d messages",
                    session.id, session.message_budget)
        self.close(session, ErrorCode.TOO_MANY_MESSAGES,
                   f"The parties of this session sent the server more than "
                   f"{session.message_budget:g} messages, far more than a computation needs, "
                   "so the server closed the session. Create a new session.")
        return False

    def close_unjoined(self) -> int:
        """Close connections that have not joined a session within ``join_timeout``."""
        now = self.clock()
        late = [e for e in self.unjoined if now - e.opened > self.join_timeout]
        for endpoint in late:
            del self.unjoined[endpoint]
            endpoint.send(error_message(
                ErrorCode.NOT_JOINED,
                f"This connection did not join a session within {self.join_timeout:g} "
                "seconds, so the server closed it. Open the join link again.",
            ))
            endpoint.close()
            log.info("session - party -: connection closed, no join within %gs",
                     self.join_timeout)
        return len(late)

    def forget_reconnecting(self) -> None:
        """Free the places of parties that have been reconnecting for ``resume_grace``."""
        before = self.clock() - self.resume_grace
        for session in list(self.sessions.values()):
            for pid in session.forget_reconnecting(before):
                log.info("session %s party %d: did not come back within %gs, its place is "
                         "free", session.id, pid, self.resume_grace)

    def sweep(self) -> list[Session]:
        """What the server does every few seconds: ``expire``, ``forget_reconnecting`` and
        ``close_unjoined``."""
        gone = self.expire()
        self.forget_reconnecting()
        self.close_unjoined()
        return gone


def expired_sentence(why: str) -> str:
    """What the parties of a session closed for ``why`` (``Registry.due``) are told."""
    reason = ("it has been open longer than the server allows" if why == "too old"
              else "every party had left" if why == "over"
              else "it was idle for too long")
    return f"This session was closed because {reason}."


class ClosedSession(SignalingError):
    """A session that was here and closed: its error says why, and carries the settings it
    was created with (``Session.settings``), so the page can offer to create it again."""

    def __init__(self, code: ErrorCode, text: str, settings: dict[str, Any]):
        super().__init__(code, text)
        self.settings = settings

    def to_http(self) -> dict[str, Any]:
        """The error as ``GET /api/sessions/ID`` answers it: with the settings (over the
        WebSocket it is a plain ``error``)."""
        return {**self.to_message(), "settings": self.settings}


def sessions_busy() -> SignalingError:
    return SignalingError(
        ErrorCode.SERVER_BUSY,
        "The server has too many open sessions right now; try again in a few minutes.",
    )


def too_many_sessions(most: int) -> SignalingError:
    return SignalingError(
        ErrorCode.TOO_MANY_SESSIONS,
        f"You already have {most} open sessions on this server, the most it allows from one "
        "address. Use one of them, or wait until some expire.",
    )


def unknown_session(session_id: str) -> SignalingError:
    return SignalingError(
        ErrorCode.UNKNOWN_SESSION,
        f"There is no session {session_id!r} on this server. It may have expired; "
        "check the link or ask for a new one.",
    )


def client_key(address: str) -> str:
    """What a client address counts as: an IPv4 address as it is (also when written as
    IPv4-mapped IPv6), an IPv6 address as its /64 (one home or host gets a whole /64, so
    counting single addresses would let it open as many as it likes), anything else as it is.
    """
    try:
        ip = ipaddress.ip_address(address.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def check_privacy(builtin: bool, parties: int, args: list[str], allowed: bool) -> None:
    """Refuse a session that keeps inputs less private than it could (``launch.privacy``)
    unless its creator allowed that (``no_privacy``); a built-in program never runs with
    fewer than ``launch.MIN_BUILTIN_PARTIES``. The parties check it again themselves: this
    only keeps anyone from getting such a session by mistake."""
    if builtin and parties < MIN_BUILTIN_PARTIES:
        raise invalid(BUILTIN_NEEDS_PARTIES)
    found = privacy(parties, args)
    if not found["full"] and not allowed:
        raise invalid(
            f"{privacy_sentence(found)} If every party knows and accepts that, create the "
            "session with 'no_privacy' (the create page: \"Allow a session that keeps inputs "
            "less private than it could\" under Advanced; mpyc-webrtc-peer create "
            "--no-privacy).")
