"""Sessions, pid assignment and relaying: the signaling server's sans-I/O core.

Nothing here touches a socket. An ``Endpoint`` stands for one party's
WebSocket: the I/O layer feeds it the text frames it receives and tells it when
the socket closed; the core answers by calling the ``send``/``close`` callables
it was given. That keeps the aiohttp handler thin and lets the tests drive
every rule with plain strings.
"""

from __future__ import annotations

import ast
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import programs
from .launch import describe_program
from .wire import (
    LINK_STATES,
    MAX_PARTIES,
    MIN_PARTIES,
    RELAYED,
    ErrorCode,
    SignalingError,
    decode_client_message,
    message,
)

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], None]

#: Largest uploaded program source, in bytes.
MAX_SOURCE_BYTES = 256 * 1024
#: Longest party label ("hospital A"), in characters.
MAX_LABEL_LENGTH = 40


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
                 ice_servers: list[dict[str, Any]], labels: list[str] | None = None):
        self.id = session_id
        self.parties = parties
        self.program = program
        self.labels = list(labels or []) + [""] * (parties - len(labels or []))
        self.ice_servers = ice_servers
        self.created = now
        self.last_activity = now
        self.members: dict[int, Member] = {}
        self.started = False
        #: How many times the program was started; 0 while in the lobby.
        self.round = 0
        self.shown_program = describe_program(program.to_wire())

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
        }

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
            program=self.program.to_wire(), labels=self.labels, ice_servers=self.ice_servers,
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
        relayed = {k: v for k, v in msg.items() if k != "to"}
        relayed["from"] = pid
        target.endpoint.send(relayed)

    def set_status(self, pid: int, state: str, now: float) -> None:
        self.last_activity = now
        self.members[pid].state = state
        self.broadcast(self.roster())
        if state == "done":
            self._start_if_agreed()  # the last to finish may find the others voted to go on


class Registry:
    """All live sessions of one server, with the limits that keep it healthy."""

    def __init__(self, *, idle_timeout: float = 600.0, max_age: float = 24 * 3600.0,
                 max_sessions: int = 1000, ice_servers: Iterable[dict[str, Any]] = (),
                 clock: Callable[[], float] = time.monotonic):
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self.max_sessions = max_sessions
        self.ice_servers = list(ice_servers)
        self.clock = clock
        self.sessions: dict[str, Session] = {}

    def create(self, request: Any) -> Session:
        """Create a session from the JSON body of ``POST /api/sessions``."""
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
        if len(self.sessions) >= self.max_sessions:
            raise SignalingError(
                ErrorCode.SERVER_BUSY,
                "The server has too many open sessions right now; try again in a few minutes.",
            )
        labels = _labels_from_request(request, parties)
        session_id = secrets.token_urlsafe(12)
        session = Session(session_id, parties, program, self.clock(), self.ice_servers, labels)
        self.sessions[session_id] = session
        log.info("session %s: created for %d parties, program %s", session_id, parties,
                 program.name)
        return session

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
                del self.sessions[session.id]
                why = ("it has been open longer than the server allows" if too_old
                       else "it was idle for too long")
                for member in session.connected_members():
                    member.endpoint.send(message(
                        "error", code=str(ErrorCode.SESSION_EXPIRED),
                        message=f"This session was closed because {why}.",
                    ))
                    member.endpoint.close()
                log.info("session %s: expired", session.id)
        return gone


class Endpoint:
    """One party's signaling connection, as the core sees it."""

    def __init__(self, registry: Registry, send: Send, close: Callable[[], None]):
        self.registry = registry
        self.send = send
        self.close = close
        self.session: Session | None = None
        self.pid: int | None = None

    def receive(self, text: str | bytes) -> None:
        """Handle one WebSocket frame; every failure becomes an ``error`` message."""
        try:
            self._receive(decode_client_message(text))
        except SignalingError as exc:
            log.info("session %s party %s: %s (%s)", self._session_id(), self.pid, exc.code,
                     exc.message)
            self.send(exc.to_message())

    def disconnected(self) -> None:
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
            self.pid = session.join(self, msg.get("name", ""), now, msg.get("role"),
                                    msg.get("ready", False))
            self.session = session
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


def _invalid(text: str) -> SignalingError:
    return SignalingError(ErrorCode.INVALID_REQUEST, text)


def _labels_from_request(request: dict[str, Any], parties: int) -> list[str]:
    labels = request.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _invalid("'labels' must be a list of texts, one per party, like "
                       "[\"hospital A\", \"hospital B\"].")
    if len(labels) > parties:
        raise _invalid(f"There are {len(labels)} labels for {parties} parties.")
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
    if source is None:
        if not isinstance(name, str) or name not in programs.BUILTIN:
            raise _invalid(
                f"Unknown program {name!r}. Choose one of {', '.join(sorted(programs.BUILTIN))}, "
                "or upload MPyC source as 'source'."
            )
        return Program(name, args)
    if not isinstance(source, str) or not source.strip():
        raise _invalid("'source' must be the text of an MPyC program.")
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise _invalid(f"The program is larger than {MAX_SOURCE_BYTES // 1024} KiB.")
    if name is None:
        name = "program.py"
    if not isinstance(name, str) or not name or len(name) > 100:
        raise _invalid("'program' must be a short file name for the uploaded source.")
    try:
        # Top-level await is allowed: browsers and native peers run such scripts.
        compile(source, name, "exec", dont_inherit=True, flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError as exc:
        where = f" on line {exc.lineno}" if exc.lineno else ""
        raise _invalid(f"The program has a syntax error{where}: {exc.msg}.") from None
    except ValueError as exc:  # e.g. a NUL byte in the source
        raise _invalid(f"The program is not valid Python source: {exc}.") from None
    return Program(name, args, source)
