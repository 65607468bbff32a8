"""Sessions shared by several server processes: one ordered log per session.

Parties of one session may be connected to different server processes (behind a load
balancer). Instead of a second implementation of the session's rules, every process that
has a party of a session keeps a *replica* of it, a plain ``Session``, and every change is
an *entry* in the session's log: a join, a message, a connection that closed, a process that
died, a place whose grace ran out, the session's end. The store (``signaling.redis_store``:
a Redis list, appended to by a Lua script that also publishes the entry) puts the entries of
all processes in one order; every replica applies them in that order with the same code
the single process uses (``Session``, ``Endpoint.apply``), so all replicas agree: two
parties racing for one place are two entries, and the first one applied gets it
everywhere. A replica delivers only what goes to its own process's connections: a message
for a party on another process is that process's to deliver, from its own replica.

This module is sans-I/O, like the rest of the core: ``SharedRegistry`` queues what must
be written (``ops``) and is handed what was read (``loaded``, ``apply``); the I/O is
``signaling.redis_store``. Entries carry the time they were made (wall clock, the same on
every process), so time-based rules (idle sessions, the reconnect grace) agree too.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mpyc_webrtc.wire import ErrorCode, SignalingError, error_message

from .registry import Registry, expired_sentence
from .session import Outgoing, Session, check_resume, hash_secret

if TYPE_CHECKING:
    from .endpoint import Endpoint

log = logging.getLogger(__name__)


class Remote:
    """A party connected to another process, as this process's replica holds it: what the
    core sends it, that process delivers from its own replica."""

    def __init__(self, conn: str):
        self.conn = conn

    def send(self, msg: Outgoing) -> None:
        pass

    def close(self) -> None:
        pass


def process_of(conn: str) -> str:
    """The process a connection id belongs to (``Registry.connection_id``)."""
    return conn.rpartition(".")[0]


@dataclass
class Op:
    """Something the store must do, in order: ``append`` an entry to session ``sid``'s
    log (``load`` it first if this process holds no replica of it: a ``join``), or
    ``delete`` the session (``entry``: why it closed, ``closed_entry``)."""

    kind: str
    sid: str
    entry: dict[str, Any] = field(default_factory=dict)


class SharedRegistry(Registry):
    """A ``Registry`` whose sessions live in a shared store; ``sessions`` holds this
    process's replicas (the sessions its connections joined).

    ``proc`` names this process among all of the server's (it must never repeat: a
    restarted process is a new one). Limits on sessions (``max_sessions``,
    ``max_sessions_per_client``) count every process's sessions: the store checks them
    when it creates one. Limits on connections and messages per connection are per
    process.
    """

    def __init__(self, *, proc: str, clock: Callable[[], float] = time.time,
                 **kwargs: Any):
        super().__init__(clock=clock, **kwargs)
        self.proc = proc
        #: What the store must do, oldest first; ``wake`` is called when some are added.
        self.ops: deque[Op] = deque()
        self.wake: Callable[[], None] = lambda: None
        #: Called with a session's id when this process drops its replica.
        self.forgotten: Callable[[str], None] = lambda sid: None
        #: This process's connections by id, and the last entry applied per replica.
        self.local: dict[str, Endpoint] = {}
        self.applied: dict[str, int] = {}
        #: Per replica, the parties of other processes (``Remote``) by connection id.
        self.remotes: dict[str, dict[str, Remote]] = {}
        #: Entries already asked for, so that a sweep does not ask twice (sid -> keys).
        self._asked: dict[str, set[str]] = {}

    # -- what this process's connections do ------------------------------------------------

    def connection_opened(self, endpoint: Endpoint) -> None:
        super().connection_opened(endpoint)
        self.local[endpoint.conn] = endpoint

    def connection_closed(self, endpoint: Endpoint) -> None:
        super().connection_closed(endpoint)
        self.local.pop(endpoint.conn, None)

    def count_message(self, session: Session) -> bool:
        return True  # counted in order, by every replica alike (``apply``)

    def handle(self, endpoint: Endpoint, msg: dict[str, Any]) -> None:
        if msg["type"] == "join":
            # Redis keeps hashes only: whoever reads it learns no secret that lets them in.
            msg = {**msg, "token": hash_secret(msg["token"])}
            if msg.get("resume") is not None:
                msg["resume"] = hash_secret(check_resume(msg["resume"]))
            # The identity was proved as the join came in (``Endpoint``): the log keeps
            # the key, which every replica trusts, not the proof (made over the secret).
            msg.pop("proof", None)
        entry = {"op": "join" if msg["type"] == "join" else "msg", "c": endpoint.conn,
                 "t": self.clock(), "m": msg}
        if msg["type"] == "join":
            endpoint.joining = msg["session"]
            self._queue(Op("join", msg["session"], entry))
        else:
            assert endpoint.session is not None
            self._queue(Op("append", endpoint.session.id, entry))

    def left(self, endpoint: Endpoint, leaving: bool = False, ended: bool = False) -> None:
        sid = endpoint.session.id if endpoint.session is not None else endpoint.joining
        endpoint.session = endpoint.pid = None
        endpoint.joining = None
        if sid is not None and (sid in self.sessions or sid in self._loading()):
            self._queue(Op("append", sid, {"op": "leave", "c": endpoint.conn,
                                           "t": self.clock(), "keep": not leaving,
                                           "ended": ended}))

    def _loading(self) -> set[str]:
        return {op.sid for op in self.ops if op.kind == "join"}

    def _queue(self, op: Op) -> None:
        self.ops.append(op)
        self.wake()

    # -- what the store hands back ---------------------------------------------------------

    def replica(self, sid: str, spec: dict[str, Any],
                entries: list[dict[str, Any]]) -> Session:
        """Session ``sid`` as the store holds it (``spec``: how it was made, see
        ``spec_of``) after ``entries``, without keeping it: for a look from outside
        (``GET /api/sessions/ID``) or before keeping it (``loaded``)."""
        return self._replay(sid, spec, entries)[0]

    def _replay(self, sid: str, spec: dict[str, Any],
                entries: list[dict[str, Any]]) -> tuple[Session, dict[str, Remote]]:
        session = self.build(spec["request"], sid, created=spec["created"],
                             ends=spec["ends"])
        session.schedule = None  # nothing is sent while replaying: no timers either
        session.replaying = True
        remotes: dict[str, Remote] = {}
        for entry in entries:
            self._apply(session, remotes, entry, deliver=False)
        session.schedule, session.replaying = self.schedule, False
        return session, remotes

    def loaded(self, sid: str, spec: dict[str, Any], entries: list[dict[str, Any]]) -> None:
        """Keep a replica of ``sid``: the store read its log up to ``len(entries)``."""
        if sid in self.sessions:
            return
        session, self.remotes[sid] = self._replay(sid, spec, entries)
        self.sessions[sid] = session
        self.applied[sid] = len(entries)
        log.debug("session %s party -: replica of %d entries", sid, len(entries))

    def missing(self, op: Op) -> None:
        """``op``'s session is not in the store (it expired, or never was)."""
        endpoint = self.local.get(op.entry.get("c", ""))
        if op.kind == "join" and endpoint is not None:
            endpoint.joining = None
            endpoint.send(self.gone(op.sid).to_message())
        self.vanished(op.sid)

    def vanished(self, sid: str) -> None:
        """Session ``sid`` is no longer in the store: its parties here are told."""
        session = self.sessions.get(sid)
        if session is not None:
            old = self.clock() - session.created >= self.max_age
            Registry.close(self, session, ErrorCode.SESSION_EXPIRED,
                           expired_sentence("too old" if old else "idle"))
            self._forget(sid)

    def apply(self, sid: str, seq: int, entry: dict[str, Any]) -> None:
        """Entry number ``seq`` (from 1) of ``sid``'s log; the store hands them in order."""
        session = self.sessions.get(sid)
        if session is None or seq != self.applied.get(sid, 0) + 1:
            return
        self.applied[sid] = seq
        self._apply(session, self.remotes.setdefault(sid, {}), entry, deliver=True)
        if session.closed:
            self._forget(sid)
        elif entry["op"] == "leave" and not self._holds(session) and (
                not session.started or session.connected_members()):
            # Nobody here any more. (A session that is over stays until this process's
            # sweep ends it: ``expire``, as with one process.)
            self._forget(sid)

    def _holds(self, session: Session) -> bool:
        """Whether a connection of this process is in ``session`` (as its replica says:
        also one that closed and whose leave is still on its way) or joining it."""
        return any(m.connected and process_of(getattr(m.endpoint, "conn", "")) == self.proc
                   for m in session.members.values()) or any(
            e.joining == session.id for e in self.local.values())

    def _forget(self, sid: str) -> None:
        """Drop the replica of ``sid``; the store stops listening (``forgotten``)."""
        session = self.sessions.pop(sid, None)
        if session is not None:
            session.closed = True
        self.applied.pop(sid, None)
        self.remotes.pop(sid, None)
        self._asked.pop(sid, None)
        self.forgotten(sid)

    def _apply(self, session: Session, remotes: dict[str, Remote], entry: dict[str, Any],
               deliver: bool) -> None:
        """The same rules as in one process (``Endpoint.apply``), on ``session``."""
        op, now = entry["op"], entry["t"]
        conn = entry.get("c", "")
        # This process's own connection (only while delivering), else the one a ``Remote``
        # stands for: the same object for a connection every time, as ``leave`` needs.
        local = self.local.get(conn) if deliver else None
        target = local if local is not None else \
            remotes.setdefault(conn, Remote(conn)) if conn else None
        try:
            if op == "join":
                msg = entry["m"]
                if local is not None:
                    local.joining = None
                    if local.closed:  # it closed meanwhile; its "leave" comes next
                        target = remotes.setdefault(conn, Remote(conn))
                        local = None
                session.check_token(msg["token"], hashed=True)  # (``handle``)
                pid = session.join(target, msg.get("name", ""), now, msg.get("role"),
                                   msg.get("ready", False), msg.get("resume"),
                                   msg.get("identity"))
                if local is not None:
                    local.session, local.pid = session, pid
                    self.unjoined.pop(local, None)
                    log.info("session %s party %d: joined", session.id, pid)
            elif op == "msg":
                pid = self._pid_of(session, conn)
                if pid is None:
                    return  # its place was taken over by a newer connection
                if not Registry.count_message(self, session):
                    return  # over the budget: closed (``close``), here and everywhere
                session.act(pid, entry["m"], now)
            elif op == "leave":
                pid = self._pid_of(session, conn)
                if pid is not None:
                    session.leave(pid, now, session.members[pid].endpoint,
                                  keep=entry.get("keep", True),
                                  ended=entry.get("ended", False))
            elif op == "lost":
                for pid, member in sorted(session.members.items()):
                    if member.connected and process_of(
                            getattr(member.endpoint, "conn", "")) == entry["proc"]:
                        session.leave(pid, now, member.endpoint)
            elif op == "forget":
                session.forget_reconnecting(entry["before"])
            elif op == "close":
                self.close(session, ErrorCode(entry["code"]), entry["text"])
        except SignalingError as exc:
            if local is not None:
                local.send(exc.to_message())
        except Exception:
            log.exception("session %s party -: internal error applying a %s entry",
                          session.id, op)
            if local is not None:
                local.send(error_message(
                    ErrorCode.INTERNAL_ERROR,
                    "Something went wrong inside the signaling server; this connection is "
                    "closed. Join again, and tell the server's operator if it happens "
                    "again."))
                local.close()

    @staticmethod
    def _pid_of(session: Session, conn: str) -> int | None:
        """The place connection ``conn`` holds (none if a newer one took it over)."""
        return next((pid for pid, m in session.members.items()
                     if m.connected and getattr(m.endpoint, "conn", None) == conn), None)

    # -- the core's rules that act on every replica: written as entries ----------------------

    def close(self, session: Session, code: ErrorCode, text: str) -> None:
        """Close ``session`` here, and in the store. Only for what every replica decides
        alike while applying an entry (a message over the session's budget): what one
        process decides on its own (``expire``) is an entry, for all to apply."""
        if session.closed:
            return
        Registry.close(self, session, code, text)
        self._forget(session.id)
        self._queue(Op("delete", session.id, closed_entry(code, text, session)))

    def _ask(self, session: Session, key: str, entry: dict[str, Any]) -> None:
        asked = self._asked.setdefault(session.id, set())
        if key not in asked:
            asked.add(key)
            self._queue(Op("append", session.id, {**entry, "t": self.clock()}))

    def expire(self) -> list[Session]:
        """The same rule as in one process, decided by this process's clock: so it is an
        entry, which closes the session in every replica at the same point."""
        gone = []
        for session, why in self.due():
            gone.append(session)
            text = expired_sentence(why)
            self._ask(session, "close", {"op": "close", "code": str(ErrorCode.SESSION_EXPIRED),
                                         "text": text})
            self._queue(Op("delete", session.id,
                           closed_entry(ErrorCode.SESSION_EXPIRED, text, session)))
        return gone

    def forget_reconnecting(self) -> None:
        before = self.clock() - self.resume_grace
        for session in self.sessions.values():
            late = [m.since for m in session.members.values()
                    if not m.connected and m.since is not None and m.since <= before]
            if late:
                self._ask(session, f"forget {max(late)}", {"op": "forget", "before": before})

    def processes(self) -> dict[str, list[str]]:
        """The other processes that hold parties of this process's replicas (by
        process, the sessions), for the store to check they are alive."""
        found: dict[str, list[str]] = {}
        for sid, session in self.sessions.items():
            for member in session.members.values():
                proc = process_of(getattr(member.endpoint, "conn", ""))
                if member.connected and proc and proc != self.proc:
                    found.setdefault(proc, [])
                    if sid not in found[proc]:
                        found[proc].append(sid)
        return found

    def process_died(self, proc: str, sids: list[str]) -> None:
        """``proc`` stopped without a word: its parties in ``sids`` lost their connection."""
        for sid in sids:
            session = self.sessions.get(sid)
            if session is not None:
                self._ask(session, f"lost {proc}", {"op": "lost", "proc": proc})

    def running(self) -> list[str]:
        """Replicas that must not expire (their time in the store is renewed): those with
        a party connected, in the lobby or running, as in ``Registry.due``."""
        return [sid for sid, s in self.sessions.items() if s.connected_members()]


def closed_entry(code: ErrorCode, text: str, session: Session) -> dict[str, Any]:
    """What the store keeps of a session that closed (``Op`` ``delete``), so that every
    process can tell a late joiner why, and what it was (``Registry.gone``)."""
    return {"closed": {"code": str(code), "text": text, "settings": session.settings()}}


def spec_of(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    """What the store keeps of how ``session`` was made: enough for ``replica``."""
    return {"request": request, "created": session.created, "ends": session.ends}


def encode_entry(entry: dict[str, Any]) -> str:
    return json.dumps(entry, separators=(",", ":"))
