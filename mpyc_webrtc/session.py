"""Sessions, pid assignment and relaying: the signaling server's sans-I/O core.

Nothing here touches a socket. An ``Endpoint`` stands for one party's
WebSocket: the I/O layer feeds it the text frames it receives and tells it when
the socket closed; the core answers by calling the ``send``/``close`` callables
it was given. That keeps the aiohttp handler thin and lets the tests drive
every rule with plain strings.

Limits (the ``Registry``'s arguments; see ``signaling.app`` for the CLI options): total
sessions, open sessions per client address, total connections, messages per second per
connection (a token bucket on the registry's clock), how long a connection may stay
without joining, and idle/absolute session age. Every refusal is an ``error`` message
with a code and a sentence for a person; nothing a client sends raises out of ``Endpoint``.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import programs
from .ice import IceConfig
from .launch import describe_program
from .wire import (
    CLIENT_MESSAGES,
    LINK_STATES,
    MAX_PARTIES,
    MIN_PARTIES,
    RELAYED,
    SERVER_MESSAGES,
    ErrorCode,
    SignalingError,
    decode_client_message,
    error_message,
    message,
)

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], None]

#: Largest uploaded program source, in bytes.
MAX_SOURCE_BYTES = 256 * 1024
#: Longest party label ("hospital A"), in characters.
MAX_LABEL_LENGTH = 40
#: The error code for a bug in the server (until ``wire.ErrorCode`` has it).
INTERNAL_ERROR = ErrorCode.INTERNAL_ERROR


@dataclass
class Program:
    """What a session runs: a built-in program, or MPyC source uploaded by its creator."""

    name: str
    args: list[str] = field(default_factory=list)
    source: str | None = None

    def to_wire(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "args": self.args, "builtin": self.source is None}
        if self.source is not None:
            doc["source"] = self.source
        return doc


@dataclass
class Member:
    pid: int
    name: str
    endpoint: Endpoint
    connected: bool = True
    state: str = "joined"
    #: Before the first round: input confirmed. After a round: agrees to run again.
    ready: bool = False
    #: peer pid -> (state, path) as this party reports its connection to that peer.
    links: dict[int, tuple[str, str | None]] = field(default_factory=dict)


#: Pair states that are progress, in order; a pair shows the less advanced of its two ends.
_PROGRESS = LINK_STATES[:-1]


class Session:
    def __init__(self, session_id: str, parties: int, program: Program, now: float,
                 ice: IceConfig, labels: list[str] | None = None,
                 token_hash: str = "", *, relay_only: bool = False,
                 wall_clock: Callable[[], float] = time.time):
        self.id = session_id
        #: SHA-256 (hex) of the join token; the token itself is known only to the parties.
        self.token_hash = token_hash
        self.parties = parties
        self.program = program
        self.labels = list(labels or []) + [""] * (parties - len(labels or []))
        self.ice = ice
        #: Parties may only use relay candidates: they never learn each other's addresses.
        self.relay_only = relay_only
        self.wall_clock = wall_clock
        self.created = now
        self.last_activity = now
        self.members: dict[int, Member] = {}
        self.started = False
        #: How many times the program was started; 0 while in the lobby.
        self.round = 0
        self.shown_program = describe_program(program.to_wire())
        #: The address that created the session (for ``max_sessions_per_client``).
        self.client: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "session": self.id,
            "parties": self.parties,
            "program": self.shown_program,
            "labels": self.labels,
            "joined": len(self.members),
            "members": [
                {"pid": m.pid, "name": m.name, "label": self.labels[m.pid], "ready": m.ready}
                for m in self._by_pid() if m.connected
            ],
            "started": self.started,
            "round": self.round,
            "relay_only": self.relay_only,
        }

    def ice_servers(self, pid: int) -> list[dict[str, Any]]:
        """Party ``pid``'s STUN/TURN servers, with TURN credentials made for it now."""
        return self.ice.servers(f"{self.id}.{pid}", self.wall_clock())

    def _by_pid(self) -> list[Member]:
        return sorted(self.members.values(), key=lambda m: m.pid)

    def connected_members(self) -> list[Member]:
        return [m for m in self.members.values() if m.connected]

    def roster(self) -> dict[str, Any]:
        members = [
            {"pid": m.pid, "name": m.name, "label": self.labels[m.pid],
             "state": m.state if m.connected else "left", "ready": m.ready}
            for m in self._by_pid()
        ]
        return message("roster", parties=self.parties, members=members, pairs=self.pairs(),
                       started=self.started, round=self.round)

    def pairs(self) -> list[dict[str, Any]]:
        """Each pair's connection, as both ends report it (empty until the first start)."""
        if not self.started:
            return []
        pairs = []
        for a in range(self.parties):
            for b in range(a + 1, self.parties):
                ends = [self._link(a, b), self._link(b, a)]
                states = [state for state, _ in ends]
                if "failed" in states:
                    state = "failed"
                else:
                    state = min(states, key=_PROGRESS.index)
                paths = {path for _, path in ends}
                path = ("relayed" if "relayed" in paths else "direct" if "direct" in paths
                        else None)
                pairs.append({"a": a, "b": b, "state": state, "path": path})
        return pairs

    def _link(self, pid: int, peer: int) -> tuple[str, str | None]:
        member = self.members.get(pid)
        if member is None:
            return ("signaling", None)
        return member.links.get(peer, ("signaling", None))

    def broadcast(self, msg: dict[str, Any]) -> None:
        for member in self.connected_members():
            member.endpoint.send(msg)

    def admits(self, token: str) -> bool:
        """Whether ``token`` is the session's join token (compared in constant time)."""
        digest = hashlib.sha256(token.encode(errors="replace")).hexdigest()
        return hmac.compare_digest(digest, self.token_hash)

    def join(self, endpoint: Endpoint, name: str, now: float, role: int | None = None,
             ready: bool = False) -> int:
        if self.started or len(self.members) >= self.parties:
            raise SignalingError(
                ErrorCode.SESSION_FULL,
                f"This session already has all {self.parties} parties. "
                "Ask the person who created it for a new link.",
            )
        if role is None:
            pid = min(set(range(self.parties)) - set(self.members))
        elif not 0 <= role < self.parties:
            raise SignalingError(
                ErrorCode.INVALID_MESSAGE,
                f"There is no party {role} in this session; parties are numbered 0 to "
                f"{self.parties - 1}.",
            )
        elif role in self.members:
            label = f"{self.labels[role]!r} (party {role})" if self.labels[role] else \
                f"party {role}"
            raise SignalingError(
                ErrorCode.ROLE_TAKEN,
                f"Someone else already joined as {label}. Choose one of the free places.",
            )
        else:
            pid = role
        self.members[pid] = Member(pid, name or f"party {pid}", endpoint, ready=ready)
        self.last_activity = now
        endpoint.send(message(
            "welcome", session=self.id, pid=pid, parties=self.parties,
            program=self.program.to_wire(), labels=self.labels,
            ice_servers=self.ice_servers(pid), relay_only=self.relay_only,
        ))
        self.broadcast(self.roster())
        self._start_if_agreed()
        return pid

    def set_ready(self, pid: int, ready: bool, name: str | None, now: float) -> None:
        member = self.members[pid]
        self.last_activity = now
        if self.started:
            if member.state != "done":
                raise SignalingError(
                    ErrorCode.SESSION_STARTED,
                    "The computation is running: your input can no longer be changed. "
                    "Wait for it to finish.",
                )
            gone = sorted(p for p in range(self.parties)
                          if p not in self.members or not self.members[p].connected)
            if ready and gone:
                raise SignalingError(
                    ErrorCode.PARTY_LEFT,
                    f"Party {gone[0]} has left the session, so it cannot run again. "
                    "Create a new session to compute again.",
                )
        if name:
            member.name = name
        member.ready = ready
        self.broadcast(self.roster())
        self._start_if_agreed()

    def _start_if_agreed(self) -> None:
        members = self.connected_members()
        if len(members) < self.parties or not all(m.ready for m in members):
            return
        if self.started and not all(m.state == "done" for m in members):
            return
        self.started = True
        self.round += 1
        for member in members:
            member.ready = False
            member.state = "joined"
        log.info("session %s: all %d parties ready, starting round %d", self.id, self.parties,
                 self.round)
        self.broadcast(message("start", parties=self.parties, round=self.round))
        self.broadcast(self.roster())

    def set_link(self, pid: int, peer: int, state: str, path: str | None, now: float) -> None:
        if peer == pid or not 0 <= peer < self.parties:
            raise SignalingError(
                ErrorCode.UNKNOWN_PID,
                f"Party {peer} is {'yourself' if peer == pid else 'not in this session'}.",
            )
        self.last_activity = now
        member = self.members[pid]
        if member.links.get(peer) != (state, path):
            member.links[peer] = (state, path)
            self.broadcast(self.roster())

    def leave(self, pid: int, now: float) -> None:
        self.last_activity = now
        if self.started:
            self.members[pid].connected = False
        else:
            del self.members[pid]
        self.broadcast(self.roster())

    def relay(self, pid: int, msg: dict[str, Any], now: float) -> None:
        to = msg["to"]
        target = self.members.get(to)
        if to == pid or target is None or not target.connected:
            why = "yourself" if to == pid else "not in this session"
            raise SignalingError(
                ErrorCode.UNKNOWN_PID,
                f"Party {to} is {why}; present parties are "
                f"{sorted(m.pid for m in self.connected_members())}.",
            )
        self.last_activity = now
        # Only what the schema relays: nothing else a client adds reaches the other party.
        relayed = message(msg["type"], **{k: msg[k] for k in SERVER_MESSAGES[msg["type"]]
                                          if k in msg and k != "from"})
        relayed["from"] = pid
        target.endpoint.send(relayed)

    def set_status(self, pid: int, state: str, now: float) -> None:
        self.last_activity = now
        self.members[pid].state = state
        self.broadcast(self.roster())
        if state == "done":
            self._start_if_agreed()  # the last to finish may find the others voted to go on


class Registry:
    r"""All live sessions of one server, with the limits that keep it healthy.

    - ``max_sessions`` open sessions in all (``server_busy``), and ``max_sessions_per_client``
      open sessions created from one client address (``too_many_sessions``); a session
      counts until it expires;
    - ``idle_timeout``: a session nobody touched for this long closes (joined or not, unless
      it is running with parties connected); ``max_age``: every session closes at this age;
    - ``max_connections`` open connections (``Endpoint``\ s) in all (``server_busy``);
      ``join_timeout``: a connection that has not joined a session this long after it
      opened is closed (``sweep``);
    - ``message_rate``/``message_burst``: each connection may send ``message_burst``
      messages at once and ``message_rate`` per second sustained (a token bucket); more are
      refused with ``rate_limited``, and a connection that sends ``flood_factor`` times
      that (at once, or sustained) is closed.
    """

    def __init__(self, *, idle_timeout: float = 600.0, max_age: float = 24 * 3600.0,
                 max_sessions: int = 1000, ice_servers: Iterable[dict[str, Any]] = (),
                 ice: IceConfig | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 max_sessions_per_client: int = 20, max_connections: int = 5000,
                 join_timeout: float = 60.0, message_rate: float = 50.0,
                 message_burst: int = 200, flood_factor: float = 3.0):
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self.max_sessions = max_sessions
        self.max_sessions_per_client = max_sessions_per_client
        self.max_connections = max_connections
        self.join_timeout = join_timeout
        self.message_rate = message_rate
        self.message_burst = message_burst
        self.flood_factor = max(1.0, flood_factor)
        #: STUN/TURN for every session: ``ice``, or just the fixed ``ice_servers``.
        self.ice = ice if ice is not None else IceConfig(static=tuple(ice_servers))
        self.clock = clock
        self.wall_clock = wall_clock
        self.sessions: dict[str, Session] = {}
        #: Open sessions per creating client address (only addresses with at least one).
        self.sessions_by_client: Counter[str] = Counter()
        #: Every open connection, and those not yet in a session (oldest first).
        self.endpoints: set[Endpoint] = set()
        self.unjoined: dict[Endpoint, None] = {}

    def check_connection_capacity(self) -> None:
        """Raise ``server_busy`` if another connection would be more than the server allows."""
        if len(self.endpoints) >= self.max_connections:
            raise SignalingError(
                ErrorCode.SERVER_BUSY,
                "The server has too many open connections right now; try again in a few "
                "minutes.",
            )

    def _check_session_capacity(self, client: str | None) -> None:
        if len(self.sessions) >= self.max_sessions:
            raise SignalingError(
                ErrorCode.SERVER_BUSY,
                "The server has too many open sessions right now; try again in a few minutes.",
            )
        if client is not None and \
                self.sessions_by_client[client] >= self.max_sessions_per_client:
            raise SignalingError(
                ErrorCode.TOO_MANY_SESSIONS,
                f"You already have {self.max_sessions_per_client} open sessions on this "
                "server, the most it allows from one address. Use one of them, or wait until "
                "some expire.",
            )

    def create(self, request: Any, client: str | None = None) -> Session:
        """Create a session from the JSON body of ``POST /api/sessions``.

        ``client`` is the creator's address, counted against ``max_sessions_per_client``
        (``None``: not counted, e.g. a session the operator opens at start-up).
        """
        if not isinstance(request, dict):
            raise _invalid("The request body must be a JSON object.")
        parties = request.get("parties")
        if isinstance(parties, bool) or not isinstance(parties, int) or not (
            MIN_PARTIES <= parties <= MAX_PARTIES
        ):
            raise _invalid(
                f"'parties' must be a whole number from {MIN_PARTIES} to {MAX_PARTIES}, "
                f"got {parties!r}."
            )
        program = _program_from_request(request)
        labels = _labels_from_request(request, parties)
        token_hash = request.get("token_hash")
        if not isinstance(token_hash, str) or not re.fullmatch(r"[0-9a-f]{64}", token_hash):
            raise _invalid(
                "'token_hash' must be the SHA-256 (64 lowercase hex digits) of the session's "
                "join token. The create page and 'mpyc-webrtc-peer create' make it for you.")
        relay_only = request.get("relay_only", False)
        if not isinstance(relay_only, bool):
            raise _invalid(f"'relay_only' must be true or false, got {relay_only!r}.")
        if relay_only and not self.ice.has_relay:
            raise _invalid(
                "This server has no TURN relay, so it cannot hide the parties' addresses "
                "from each other (relay only). Create the session without that option, or "
                "ask the server's operator to set up TURN.")
        self._check_session_capacity(client)
        session_id = secrets.token_urlsafe(12)
        session = Session(session_id, parties, program, self.clock(), self.ice, labels,
                          token_hash, relay_only=relay_only, wall_clock=self.wall_clock)
        session.client = client
        self.sessions[session_id] = session
        if client is not None:
            self.sessions_by_client[client] += 1
        log.info("session %s party -: created for %d parties, %s", session_id, parties,
                 f"program {program.name}" if program.source is None else
                 f"uploaded program ({len(program.source.encode())} bytes)")
        return session

    def _remove(self, session: Session) -> None:
        del self.sessions[session.id]
        client = session.client
        if client is not None:
            self.sessions_by_client[client] -= 1
            if self.sessions_by_client[client] <= 0:
                del self.sessions_by_client[client]

    def get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise SignalingError(
                ErrorCode.UNKNOWN_SESSION,
                f"There is no session {session_id!r} on this server. It may have expired; "
                "check the link or ask for a new one.",
            )
        return session

    def expire(self) -> list[Session]:
        """Close sessions that are idle, too old, or over and empty; return them."""
        now = self.clock()
        gone = []
        for session in list(self.sessions.values()):
            running = session.started and bool(session.connected_members())
            idle = now - session.last_activity > self.idle_timeout and not running
            over = session.started and not running
            too_old = now - session.created > self.max_age
            if idle or over or too_old:
                gone.append(session)
                self._remove(session)
                why = ("it has been open longer than the server allows" if too_old
                       else "it was idle for too long")
                for member in session.connected_members():
                    member.endpoint.send(message(
                        "error", code=str(ErrorCode.SESSION_EXPIRED),
                        message=f"This session was closed because {why}.",
                    ))
                    member.endpoint.close()
                log.info("session %s party -: expired (%s)", session.id,
                         "too old" if too_old else "over" if over else "idle")
        return gone

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

    def sweep(self) -> list[Session]:
        """What the server does every few seconds: ``expire`` and ``close_unjoined``."""
        gone = self.expire()
        self.close_unjoined()
        return gone


class Endpoint:
    """One party's signaling connection, as the core sees it.

    ``send`` and ``close`` are the I/O layer's; neither may raise. The endpoint counts in
    its registry's ``endpoints`` from creation until ``disconnected``.
    """

    def __init__(self, registry: Registry, send: Send, close: Callable[[], None]):
        self.registry = registry
        self.send = send
        self._close = close
        self.session: Session | None = None
        self.pid: int | None = None
        #: Set once the core asked the I/O layer to close; later frames are ignored.
        self.closed = False
        self.opened = registry.clock()
        # Token bucket: ``_tokens`` messages may come now; refused messages add
        # ``_strikes``, which drain at (flood_factor - 1) times the rate.
        self._tokens = float(registry.message_burst)
        self._strikes = 0.0
        self._refilled = self.opened
        registry.endpoints.add(self)
        registry.unjoined[self] = None

    def close(self) -> None:
        """Ask the I/O layer to close this connection (once)."""
        if not self.closed:
            self.closed = True
            self._close()

    def receive(self, text: str | bytes) -> None:
        """Handle one WebSocket frame; every failure becomes an ``error`` message."""
        if self.closed or not self._allowed():
            return
        try:
            try:
                msg = decode_client_message(text)
            except (RecursionError, UnicodeError):
                # Nesting deeper than the JSON parser goes, or text that is not UTF-8.
                raise SignalingError(ErrorCode.MALFORMED_JSON,
                                     "The message is not valid JSON text.") from None
            self._receive(msg)
        except SignalingError as exc:
            # The code only: the message may quote what the client sent.
            log.info("session %s party %s: refused, %s", self._session_id(), self._party(),
                     exc.code)
            self.send(exc.to_message())
        except Exception:
            log.exception("session %s party %s: internal error handling a %s message",
                          self._session_id(), self._party(), _type_of(text))
            self.send(error_message(
                INTERNAL_ERROR,  # type: ignore[arg-type]
                "Something went wrong inside the signaling server; this connection is "
                "closed. Join again, and tell the server's operator if it happens again.",
            ))
            self.close()

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

    def disconnected(self) -> None:
        self.registry.endpoints.discard(self)
        self.registry.unjoined.pop(self, None)
        self.closed = True
        if self.session is not None and self.pid is not None:
            session, pid = self.session, self.pid
            self.session = self.pid = None
            if session.id in self.registry.sessions:
                session.leave(pid, self.registry.clock())
                log.info("session %s party %d: left", session.id, pid)

    def _receive(self, msg: dict[str, Any]) -> None:
        now = self.registry.clock()
        if msg["type"] == "join":
            if self.session is not None:
                raise SignalingError(
                    ErrorCode.ALREADY_JOINED,
                    f"This connection already joined session {self.session.id} as party "
                    f"{self.pid}.",
                )
            session = self.registry.get(msg["session"])
            if not session.admits(msg["token"]):
                raise SignalingError(
                    ErrorCode.BAD_TOKEN,
                    "This link is incomplete or wrong: a join link ends with a secret part "
                    "after the # sign. Ask the person who created the session for the whole "
                    "link.",
                )
            self.pid = session.join(self, msg.get("name", ""), now, msg.get("role"),
                                    msg.get("ready", False))
            self.session = session
            self.registry.unjoined.pop(self, None)
            log.info("session %s party %d: joined", session.id, self.pid)
            return
        if self.session is None or self.pid is None:
            raise SignalingError(
                ErrorCode.NOT_JOINED, "Send a 'join' message before anything else."
            )
        if msg["type"] in RELAYED:
            self.session.relay(self.pid, msg, now)
        elif msg["type"] == "status":
            self.session.set_status(self.pid, msg["state"], now)
        elif msg["type"] == "ready":
            self.session.set_ready(self.pid, msg["ready"], msg.get("name"), now)
        elif msg["type"] == "link":
            self.session.set_link(self.pid, msg["peer"], msg["state"], msg.get("path"), now)

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


def _invalid(text: str) -> SignalingError:
    return SignalingError(ErrorCode.INVALID_REQUEST, text)


def _is_text(text: str) -> bool:
    """Whether ``text`` is encodable as UTF-8 (JSON may carry unpaired surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _labels_from_request(request: dict[str, Any], parties: int) -> list[str]:
    labels = request.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _invalid("'labels' must be a list of texts, one per party, like "
                       "[\"hospital A\", \"hospital B\"].")
    if len(labels) > parties:
        raise _invalid(f"There are {len(labels)} labels for {parties} parties.")
    if not all(_is_text(x) for x in labels):
        raise _invalid("A label contains characters that are not valid text.")
    labels = [" ".join(x.split()) for x in labels]
    for label in labels:
        if len(label) > MAX_LABEL_LENGTH:
            raise _invalid(f"The label {label[:20]!r}… is longer than {MAX_LABEL_LENGTH} "
                           "characters.")
    named = [x for x in labels if x]
    if len(set(named)) < len(named):
        twice = next(x for x in named if named.count(x) > 1)
        raise _invalid(f"Two parties have the label {twice!r}; each party needs its own.")
    return labels


def _program_from_request(request: dict[str, Any]) -> Program:
    name = request.get("program")
    source = request.get("source")
    args = request.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _invalid("'args' must be a list of strings.")
    try:
        programs.check_args(args)
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    if not all(_is_text(a) for a in args):
        raise _invalid("A program argument contains characters that are not valid text.")
    if source is None:
        if not isinstance(name, str) or name not in programs.BUILTIN:
            raise _invalid(
                f"Unknown program {name!r}. Choose one of {', '.join(sorted(programs.BUILTIN))}, "
                "or upload MPyC source as 'source'."
            )
        return Program(name, args)
    if not isinstance(source, str) or not source.strip():
        raise _invalid("'source' must be the text of an MPyC program.")
    if not _is_text(source):
        raise _invalid("The program contains characters that are not valid text "
                       "(unpaired surrogates).")
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise _invalid(f"The program is larger than {MAX_SOURCE_BYTES // 1024} KiB.")
    if name is None:
        name = "program.py"
    if not isinstance(name, str) or not name or len(name) > 100 or not _is_text(name):
        raise _invalid("'program' must be a short file name for the uploaded source.")
    try:
        # Top-level await is allowed: browsers and native peers run such scripts.
        compile(source, name, "exec", dont_inherit=True, flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError as exc:
        where = f" on line {exc.lineno}" if exc.lineno else ""
        raise _invalid(f"The program has a syntax error{where}: {exc.msg}.") from None
    except ValueError as exc:  # e.g. a NUL byte in the source
        raise _invalid(f"The program is not valid Python source: {exc}.") from None
    except (RecursionError, MemoryError):
        raise _invalid("The program is too deeply nested for Python to compile.") from None
    return Program(name, args, source)
