"""A session: its program, its places and who holds them, the lobby, the relaying.

The signaling server's core is sans-I/O: nothing here, in ``registry`` or in ``endpoint``
touches a socket. An ``Endpoint`` stands for one party's WebSocket: the I/O layer
(``signaling.app``) feeds it the text frames it receives and tells it when the socket
closed; the core answers by calling the ``send``/``close`` callables it was given. That
keeps the aiohttp handler thin and lets the tests drive every rule with plain strings.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mpyc_webrtc import programs
from mpyc_webrtc.identity import IdentityError, fingerprint, join_statement, public_key, verify
from mpyc_webrtc.launch import describe_program
from mpyc_webrtc.sealing import b64url_decode
from mpyc_webrtc.wire import (
    LINK_PATHS,
    LINK_STATES,
    MAX_IDENTITY_LENGTH,
    MIN_RESUME_LENGTH,
    RECONNECTING,
    RELAYED,
    SERVER_MESSAGES,
    UNSUPPORTED,
    ErrorCode,
    SignalingError,
    encode,
    error_message,
    lacks_from_detail,
    message,
)

from .ice_servers import IceConfig

if TYPE_CHECKING:
    from .endpoint import Endpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    """A server message encoded once, so that a broadcast sends the same text to everyone.

    ``code`` is an ``error``'s code, kept so the I/O layer can count errors by code without
    decoding the text again."""

    type: str
    text: str
    code: str | None = None

    @classmethod
    def of(cls, msg: dict[str, Any]) -> Encoded:
        return cls(msg["type"], encode(msg), msg.get("code") if msg["type"] == "error" else None)


#: What the core hands the I/O layer to send: a message, or one already encoded.
Outgoing = dict[str, Any] | Encoded
Send = Callable[[Outgoing], None]
#: The I/O layer's timer: call the function after this many seconds (``loop.call_later``).
Schedule = Callable[[float, Callable[[], None]], object]

#: Largest uploaded program source, in bytes.
MAX_SOURCE_BYTES = 256 * 1024
#: Longest party label ("hospital A"), in characters.
MAX_LABEL_LENGTH = 40

#: A session's rosters: ``ROSTER_BURST`` // m² of them (at least one) go out at once, then
#: one per ``ROSTER_INTERVAL`` seconds, each with every change since the last. A roster's
#: cost grows with m² (its pairs), so the allowance is the same work for every m: a small
#: session's whole life (m = 3: 66 rosters, for joins, readies, a few link reports per
#: pair and statuses) stays within it, so its parties see every change; a 32-party one
#: gets one at once; any that keeps changing its roster gets ten per second.
ROSTER_INTERVAL = 0.1
ROSTER_BURST = 600


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
    #: In state ``unsupported``: what the party said its browser lacks (wire.CAPABILITIES).
    lacks: list[str] = field(default_factory=list)
    #: SHA-256 (hex) of the ``resume`` secret it joined with: showing the secret again
    #: gets this place back (``Session.join``).
    resume_hash: str | None = None
    #: Since when it is reconnecting: its connection was lost and it keeps its place (as
    #: ``reconnecting``) until ``Session.forget_reconnecting``. None while connected (or left).
    since: float | None = None
    #: The did:key it proved when it joined (``check_join_identity``), or None: the others
    #: see it in the roster and compare it with the key that signs its offer or answer.
    identity: str | None = None
    #: It came back with its ``resume`` secret after the start (a reload): it holds its
    #: place, its links went with its page; the next round makes them anew (``fresh``).
    returned: bool = False


#: Pair states that are progress, in order; a pair shows the less advanced of its two ends.
_PROGRESS = LINK_STATES[:-1]
#: What a link report may say about the path, least to most: unknown, direct, relayed.
_PATHS = (None, *LINK_PATHS)
#: What an end that has not reported counts as.
_NO_REPORT: tuple[str, str | None] = ("signaling", None)


def advances(before: tuple[str, str | None], state: str, path: str | None) -> bool:
    """Whether a link report tells more than ``before`` (the end's last accepted report).

    A link only moves forward: ``signaling``, ``connecting``, ``connected``, ``ready``,
    ``closed`` in that order; ``failed`` may come at any point and is final. At the same
    state, only a path that becomes known (or turns out ``relayed``) is news. So each end of
    a pair has at most a handful of reports that change the roster, whatever it sends.
    """
    if before[0] == "failed":
        return False
    if state == "failed":
        return True
    rank, was = _PROGRESS.index(state), _PROGRESS.index(before[0])
    return rank > was or (rank == was and _PATHS.index(path) > _PATHS.index(before[1]))


class Session:
    def __init__(self, session_id: str, parties: int, program: Program, now: float,
                 ice: IceConfig, labels: list[str] | None = None,
                 token_hash: str = "", *, relay_only: bool = False,
                 descriptor: str | None = None, pins: list[str] | None = None,
                 wall_clock: Callable[[], float] = time.time):
        self.id = session_id
        #: SHA-256 (hex) of the join token; the token itself is known only to the parties.
        self.token_hash = token_hash
        self.parties = parties
        self.program = program
        self.labels = list(labels or []) + [""] * (parties - len(labels or []))
        #: Per place, the did:key it is kept for ("": anyone with the link may take it), as
        #: the creator asked (``pins_from_request``); only a join that proves that key gets it.
        self.pins = list(pins or []) + [""] * (parties - len(pins or []))
        self.ice = ice
        #: Parties may only use relay candidates: they never learn each other's addresses.
        self.relay_only = relay_only
        #: What the creator chose, sealed with the link's secret (opaque here): every party
        #: checks the server's word (parties, places, relay only, arguments) against it.
        self.descriptor = descriptor
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
        # Set by the registry (``Registry.create``) from its limits:
        #: Unix time the session closes at the latest (``max_age``): TURN credentials end then.
        self.ends = math.inf
        #: How many messages its parties may send together, and how many they sent.
        self.message_budget = math.inf
        self.messages = 0
        #: The I/O layer's timer; without one, every roster change is sent at once.
        self.schedule: Schedule | None = None
        #: Rosters go out at once while the session has some of its allowance left (a
        #: bucket of ``roster_burst``, refilled by one every ``roster_interval`` seconds on
        #: ``clock``); after that at most once per interval, with every change since.
        self.roster_interval = 0.0
        self.roster_burst = 1
        self.clock: Callable[[], float] = time.monotonic
        self._roster_tokens = 1.0
        self._roster_refilled = -math.inf
        self._roster_due = False
        #: Seconds without activity after which the registry closes it, counted only while
        #: no party is connected (``Registry.due``); set by the registry.
        self.idle_timeout = math.inf
        #: The creator allowed less than full privacy (``no_privacy``), as it asked.
        self.no_privacy = False
        #: Whether the registry closed the session (nothing more is sent).
        self.closed = False
        #: While a replica is rebuilt from the shared log (``signaling.shared``): what
        #: happened long ago is not logged again.
        self.replaying = False

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
            "descriptor": self.descriptor,
            "pins": self.pins,
            "closes": self.closes(),
            "settings": self.settings(),
        }

    def closes(self) -> dict[str, float | None]:
        """When the session closes: ``idle`` seconds after its last party left (never while
        one is connected, see ``Registry.due``), and at Unix time ``at`` in any case
        (``max_age``); None where there is no such limit."""
        return {"idle": None if math.isinf(self.idle_timeout) else self.idle_timeout,
                "at": None if math.isinf(self.ends) else self.ends}

    def settings(self) -> dict[str, Any]:
        """What the session was created with, as a create request (``POST /api/sessions``)
        without its link (token hash and descriptor): to create it again with a new link."""
        doc: dict[str, Any] = {"parties": self.parties, "program": self.program.name,
                               "args": list(self.program.args), "labels": list(self.labels),
                               "pins": list(self.pins), "relay_only": self.relay_only,
                               "no_privacy": self.no_privacy}
        if self.program.source is not None:
            doc["source"] = self.program.source
        return doc

    def ice_servers(self, pid: int) -> list[dict[str, Any]]:
        """Party ``pid``'s STUN/TURN servers, with TURN credentials made for it now that
        expire with the session."""
        return self.ice.servers(f"{self.id}.{pid}", self.wall_clock(), until=self.ends)

    def _by_pid(self) -> list[Member]:
        return sorted(self.members.values(), key=lambda m: m.pid)

    def connected_members(self) -> list[Member]:
        return [m for m in self.members.values() if m.connected]

    def roster(self) -> dict[str, Any]:
        members = []
        for m in self._by_pid():
            state = m.state if m.connected else RECONNECTING if m.since is not None \
                else "left"
            member = {"pid": m.pid, "name": m.name, "label": self.labels[m.pid],
                      "state": state, "ready": m.ready, "identity": m.identity}
            if member["state"] == UNSUPPORTED:  # why it cannot take part, for the others
                member["lacks"] = list(m.lacks)
            members.append(member)
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
        """Send ``msg`` to every connected party, encoded once."""
        encoded = Encoded.of(msg)
        for member in self.connected_members():
            member.endpoint.send(encoded)

    def roster_changed(self) -> None:
        """The roster changed: everyone gets it now while the session's allowance lasts
        (``roster_burst`` rosters at once, one more every ``roster_interval``), else once the
        next one is due, with every change made meanwhile. So however many messages change
        it, the roster, which grows with the square of the parties, is built and encoded
        about once per interval; a session that changes little sees every change."""
        if self.schedule is None:
            self._send_roster()
            return
        if self._roster_due:
            return
        self._refill_rosters()
        if self._roster_tokens >= 1.0:
            self._send_roster()
        else:
            self._roster_due = True
            self.schedule((1.0 - self._roster_tokens) * self.roster_interval,
                          self._send_due_roster)

    def _refill_rosters(self) -> None:
        now = self.clock()
        if self.roster_interval > 0:
            elapsed = max(0.0, now - self._roster_refilled)
            self._roster_tokens = min(float(self.roster_burst),
                                      self._roster_tokens + elapsed / self.roster_interval)
        else:
            self._roster_tokens = float(self.roster_burst)
        self._roster_refilled = now

    def _send_due_roster(self) -> None:
        if not self._roster_due:
            return  # sent already (before a start)
        self._roster_due = False
        try:
            self._send_roster()
        except Exception:  # a bug here must not reach the I/O layer's timer
            log.exception("session %s party -: sending the roster failed", self.id)

    def _send_roster(self) -> None:
        if self.closed:
            return
        if self.schedule is not None:
            self._refill_rosters()
            self._roster_tokens -= 1.0  # may go below zero: the next one waits longer
        self.broadcast(self.roster())

    def admits(self, token: str) -> bool:
        """Whether ``token`` is the session's join token (compared in constant time)."""
        return self.admits_hash(hash_secret(token))

    def admits_hash(self, digest: str) -> bool:
        """Whether ``digest`` is the hash of the session's join token."""
        return hmac.compare_digest(digest, self.token_hash)

    def join(self, endpoint: Endpoint, name: str, now: float, role: int | None = None,
             ready: bool = False, resume: str | None = None,
             identity: str | None = None) -> int:
        """Give ``endpoint`` a place: the one its ``resume`` secret holds (before or after
        the start: a party that reloads or lost its connection gets its own place back),
        else ``role`` or a free one (``_free_place``); the secret then holds the new place.
        ``identity``: the did:key the join proved (``check_join_identity``, done before the
        join is applied, so a replica rebuilt from the shared log trusts it); a place that
        is pinned (``pins``) only goes to a join with that key."""
        resume_hash = None if resume is None else hash_secret(check_resume(resume))
        if resume_hash is not None:
            held = next((m for m in self.members.values() if m.resume_hash is not None
                         and hmac.compare_digest(m.resume_hash, resume_hash)), None)
            if held is not None:
                self._check_pin(held.pid, identity)
                return self._resume(held, endpoint, name, now, ready, identity)
        if self.started or len(self.members) >= self.parties:
            raise SignalingError(
                ErrorCode.SESSION_FULL,
                f"This session already has all {self.parties} parties. "
                "Ask the person who created it for a new link.",
            )
        if role is None:
            pid = self._free_place(identity)
        elif not 0 <= role < self.parties:
            raise SignalingError(
                ErrorCode.INVALID_MESSAGE,
                # ``role`` is a pid: people count parties from 1.
                f"There is no party {role + 1} in this session: its parties are 1 to "
                f"{self.parties}.",
            )
        else:
            # A place kept for another key is never this party's, taken or not: say that
            # rather than "taken", which would suggest waiting for it.
            self._check_pin(role, identity)
            if role in self.members:
                raise SignalingError(
                    ErrorCode.ROLE_TAKEN,
                    f"Someone else already joined as {self.place(role)}. Choose one of the "
                    "free places.",
                )
            pid = role
        self.members[pid] = Member(pid, name or f"party {pid}", endpoint, ready=ready,
                                   resume_hash=resume_hash, identity=identity)
        self.last_activity = now
        self._welcome(endpoint, pid)
        self.roster_changed()
        self._start_if_agreed()
        return pid

    def place(self, pid: int) -> str:
        """Place ``pid`` as a person sees it: "'hospital A' (party 2)", or "party 2" for pid 1
        (people count parties from 1)."""
        number = pid + 1
        return f"{self.labels[pid]!r} (party {number})" if self.labels[pid] else f"party {number}"

    def _free_place(self, identity: str | None) -> int:
        """The place for a join without ``role`` (some place is free): the lowest free one
        pinned to ``identity``, else the lowest free unpinned one; if every free place is
        kept for another key, ``place_pinned``."""
        free = sorted(set(range(self.parties)) - set(self.members))
        mine = [pid for pid in free if identity is not None and self.pins[pid] == identity]
        anyone = [pid for pid in free if not self.pins[pid]]
        if mine or anyone:
            return (mine or anyone)[0]
        kept = "; ".join(f"{self.place(pid)} for {pin_fingerprint(self.pins[pid])}"
                         for pid in free)
        raise SignalingError(
            ErrorCode.PLACE_PINNED,
            f"The free places of this session are kept for other people's keys ({kept}); "
            f"{_joined_with(identity)}. If one of them should be yours, ask the person who "
            f"created the session to pin your key {SHOWN_WHERE}.",
        )

    def _check_pin(self, pid: int, identity: str | None) -> None:
        """Raise ``place_pinned`` unless place ``pid`` is unpinned or pinned to ``identity``."""
        pinned = self.pins[pid]
        if not pinned or pinned == identity:
            return
        raise SignalingError(
            ErrorCode.PLACE_PINNED,
            f"{the_place(self.labels[pid], pid)} is kept for someone else's key (fingerprint "
            f"{pin_fingerprint(pinned)}); {_joined_with(identity)}. If it should be yours, "
            f"ask the person who created the session to pin your key {SHOWN_WHERE}.",
        )

    def _resume(self, member: Member, endpoint: Endpoint, name: str, now: float,
                ready: bool, identity: str | None = None) -> int:
        """``member``'s party is back on ``endpoint``: the place, its name and its
        readiness are as the new join says; a connection it still had is closed. After the
        start it is back as ``returned`` and not ready: its links (and its computation, if
        one ran) are gone with the page or process that had them. Once it and the others
        are ready, the next round makes its links anew (``start``'s ``fresh``)."""
        old, member.endpoint = member.endpoint, endpoint
        if member.connected and old is not endpoint:
            old.send(error_message(ErrorCode.ALREADY_JOINED, (
                "Your place in this session was taken back by a newer connection with your "
                "link, so this one is closed.")))
            old.close()
        member.connected, member.since = True, None
        member.state, member.lacks = "joined", []
        if name:
            member.name = name
        member.ready = ready and not self.started
        member.returned = member.returned or self.started
        member.identity = identity
        self.last_activity = now
        if not self.replaying:
            log.info("session %s party %d: back on a new connection", self.id, member.pid)
        self._welcome(endpoint, member.pid)
        self.roster_changed()
        self._start_if_agreed()
        return member.pid

    def _welcome(self, endpoint: Endpoint, pid: int) -> None:
        endpoint.send(message(
            "welcome", session=self.id, pid=pid, parties=self.parties,
            program=self.program.to_wire(), labels=self.labels,
            ice_servers=self.ice_servers(pid), relay_only=self.relay_only,
            descriptor=self.descriptor, pins=self.pins,
        ))

    def act(self, pid: int, msg: dict[str, Any], now: float) -> None:
        """What a message from party ``pid`` (decoded, any type but ``join``) does."""
        if msg["type"] in RELAYED:
            self.relay(pid, msg, now)
        elif msg["type"] == "status":
            self.set_status(pid, msg["state"], now, msg.get("detail"))
        elif msg["type"] == "ready":
            self.set_ready(pid, msg["ready"], msg.get("name"), now)
        elif msg["type"] == "link":
            self.set_link(pid, msg["peer"], msg["state"], msg.get("path"), now)

    def check_token(self, token: str, hashed: bool = False) -> None:
        """Raise ``bad_token`` unless ``token`` is the session's join token (or, if
        ``hashed``, its hash)."""
        if not (self.admits_hash(token) if hashed else self.admits(token)):
            raise SignalingError(
                ErrorCode.BAD_TOKEN,
                "This link is incomplete or wrong: a join link ends with a secret part "
                "after the # sign. Ask the person who created the session for the whole "
                "link.",
            )

    def set_ready(self, pid: int, ready: bool, name: str | None, now: float) -> None:
        member = self.members[pid]
        self.last_activity = now
        if self.started:
            if member.state != "done" and not member.returned:
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
                    f"{self.place(gone[0])[:1].upper()}{self.place(gone[0])[1:]} has left the "
                    "session, so it cannot run again. "
                    "Create a new session to compute again.",
                )

        if (name or member.name) == member.name and ready == member.ready:
            return  # nothing new: no roster, and no start that the last change did not make
        if name:
            member.name = name
        member.ready = ready
        self.roster_changed()
        self._start_if_agreed()

    def _start_if_agreed(self) -> None:
        members = self.connected_members()
        if len(members) < self.parties or not all(m.ready for m in members):
            return
        if self.started and not all(m.state == "done" or m.returned for m in members):
            return
        if self._roster_due:  # everyone sees the roster that agreed before the start
            self._roster_due = False
            self._send_roster()
        self.started = True
        self.round += 1
        # Parties back after a reload: their links are made anew, and reported anew.
        fresh = sorted(m.pid for m in members if m.returned)
        for member in members:
            member.ready = False
            member.state = "joined"
            member.returned = False
            if member.pid in fresh:
                member.links = {}
            else:
                for pid in fresh:
                    member.links.pop(pid, None)
        if not self.replaying:
            log.info("session %s: all %d parties ready, starting round %d%s", self.id,
                     self.parties, self.round,
                     f", new links for parties {fresh}" if fresh else "")
        # ``fresh`` only when there are such parties: a start is as it always was otherwise.
        self.broadcast(message("start", parties=self.parties, round=self.round,
                               **({"fresh": fresh} if fresh else {})))
        self.roster_changed()

    def set_link(self, pid: int, peer: int, state: str, path: str | None, now: float) -> None:
        if peer == pid or not 0 <= peer < self.parties:
            raise SignalingError(
                ErrorCode.UNKNOWN_PID,
                f"Party {peer} is {'yourself' if peer == pid else 'not in this session'}.",
            )
        if not self.started:
            raise SignalingError(
                ErrorCode.INVALID_MESSAGE,
                "There are no connections to report before the session starts.")
        self.last_activity = now
        member = self.members[pid]
        before = member.links.get(peer, _NO_REPORT)
        if advances(before, state, path):  # else: nothing new, nothing to send
            if path is None or _PATHS.index(path) < _PATHS.index(before[1]):
                path = before[1]  # a path, once known, stays; relayed stays relayed
            member.links[peer] = (state, path)
            self.roster_changed()

    def leave(self, pid: int, now: float, endpoint: Endpoint | None = None,
              keep: bool = True, ended: bool = False) -> None:
        """Party ``pid``'s connection closed (if ``endpoint`` is given: only if it is
        still the one that holds the place). If the connection was lost (``keep``) and it
        joined with a ``resume`` secret, it is ``reconnecting`` until
        ``forget_reconnecting``, before the start and after it: a computation goes on over
        the parties' own links, which tell soon enough if it is really gone. Otherwise,
        before the start its place is freed; after it, it has ``left`` at once (whoever
        computes with it stops waiting), but the place stays its own: its ``resume`` secret
        takes it back while the session lasts (``join``). A connection that ``ended`` (its
        other end closed it without a word: the party's process or page is gone) counts as
        lost before the start and as left after it."""
        member = self.members.get(pid)
        if member is None or not member.connected or (
                endpoint is not None and member.endpoint is not endpoint):
            return
        self.last_activity = now
        if keep and member.resume_hash is not None and not (ended and self.started):
            member.connected, member.since = False, now
        elif self.started:
            member.connected = False  # left at once: whoever computes with it is told
        else:
            del self.members[pid]
        self.roster_changed()

    def forget_reconnecting(self, before: float) -> list[int]:
        """Free the places of parties reconnecting since ``before`` or earlier (and before
        the start: a started session keeps them as ``left``); which pids."""
        gone = sorted(pid for pid, m in self.members.items()
                      if not m.connected and m.since is not None and m.since <= before)
        for pid in gone:
            if self.started:
                self.members[pid].since = None
            else:
                del self.members[pid]
        if gone:
            self.roster_changed()
        return gone

    def relay(self, pid: int, msg: dict[str, Any], now: float) -> None:
        """Pass a ``signal`` or ``chat`` on to party ``to``, with only the schema's fields.

        A ``chat`` for a place that is free or whose party is not connected is dropped
        without a word: chat is best effort, the sender's list of parties may be a moment
        old, and an error would only confuse it. A ``chat`` to itself or to a pid outside
        the session is a client's mistake, refused like a ``signal``'s."""
        to = msg["to"]
        target = self.members.get(to)
        if msg["type"] == "chat" and to != pid and 0 <= to < self.parties and (
                target is None or not target.connected):
            self.last_activity = now
            if not self.replaying:
                log.debug("session %s party %d: chat for party %d dropped, it is not here",
                          self.id, pid, to)
            return
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

    def set_status(self, pid: int, state: str, now: float, detail: str | None = None) -> None:
        self.last_activity = now
        member = self.members[pid]
        if state == UNSUPPORTED and self.started:
            raise SignalingError(
                ErrorCode.INVALID_MESSAGE,
                "A party can say it cannot take part only before the session starts.")
        lacks = lacks_from_detail(detail) if state == UNSUPPORTED else []
        if member.state == state and member.lacks == lacks:
            return  # nothing new
        member.state, member.lacks = state, lacks
        self.roster_changed()
        if state == "done":
            self._start_if_agreed()  # the last to finish may find the others voted to go on


def hash_secret(text: str) -> str:
    """SHA-256 (hex) of a join token or resume secret: what the server keeps of it."""
    return hashlib.sha256(text.encode(errors="replace")).hexdigest()


def check_resume(resume: str) -> str:
    """``resume``, if it is long enough to be a secret, else SignalingError."""
    if len(resume) < MIN_RESUME_LENGTH:
        raise SignalingError(
            ErrorCode.INVALID_MESSAGE,
            f"The 'resume' secret must be at least {MIN_RESUME_LENGTH} characters "
            "(16 random bytes, base64url).")
    return resume


def the_place(label: str, pid: int) -> str:
    """Place ``pid`` as the subject of a sentence: "The place 'hospital A' (party 2)", or
    "The place of party 2" for pid 1 (people count parties from 1)."""
    number = pid + 1
    return f"The place {label!r} (party {number})" if label else f"The place of party {number}"


#: Where a person finds its own key, for the sentences that ask it to have it pinned.
SHOWN_WHERE = "(the join page shows it; on a terminal, mpyc-webrtc-peer identity)"


def pin_fingerprint(did: str) -> str:
    """What a person reads out to check a pinned key (a checked did:key)."""
    return fingerprint(public_key(did))


def _joined_with(identity: str | None) -> str:
    if identity is None:
        return ("you joined without proving a key, as pages and peers older than pinned "
                "places do: join with an up-to-date one")
    return f"you joined with {pin_fingerprint(identity)}"


#: Why a join's identity is refused (``check_join_identity``).
BAD_PROOF = ("The join's identity proof does not verify: it must be the signature of the key "
             "it names over this session and this party's resume secret.")


def check_join_identity(msg: dict[str, Any]) -> str | None:
    """The did:key a ``join`` proves (its ``proof`` is that key's signature over
    ``identity.join_statement(session, resume)``), None if it names none; else
    SignalingError ``invalid_message``. Checked where the join arrives, before anything
    else sees it: the shared log then keeps only the key (not the proof), and every
    replica trusts it as it applies the join."""
    did, proof = msg.get("identity"), msg.get("proof")
    if did is None:
        if proof is not None:
            raise SignalingError(ErrorCode.INVALID_MESSAGE,
                                 "The join has a 'proof' but no 'identity' that it proves.")
        return None
    try:
        public_key(did)
    except IdentityError as exc:
        raise SignalingError(ErrorCode.INVALID_MESSAGE,
                             f"The join's identity is not usable: {exc}") from None
    resume = msg.get("resume")
    if resume is None:
        raise SignalingError(
            ErrorCode.INVALID_MESSAGE,
            "A join with an 'identity' needs its 'resume' secret too: the proof is a "
            "signature over it.")
    try:
        signature = b64url_decode(proof) if isinstance(proof, str) else b""
    except ValueError:
        signature = b""
    if not signature or not verify(did, signature, join_statement(msg["session"], resume)):
        raise SignalingError(ErrorCode.INVALID_MESSAGE, BAD_PROOF)
    return did


def invalid(text: str) -> SignalingError:
    return SignalingError(ErrorCode.INVALID_REQUEST, text)


def is_text(text: str) -> bool:
    """Whether ``text`` is encodable as UTF-8 (JSON may carry unpaired surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def labels_from_request(request: dict[str, Any], parties: int) -> list[str]:
    labels = request.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise invalid("'labels' must be a list of texts, one per party, like "
                       "[\"hospital A\", \"hospital B\"].")
    if len(labels) > parties:
        raise invalid(f"There are {len(labels)} labels for {parties} parties.")
    if not all(is_text(x) for x in labels):
        raise invalid("A label contains characters that are not valid text.")
    labels = [" ".join(x.split()) for x in labels]
    for label in labels:
        if len(label) > MAX_LABEL_LENGTH:
            raise invalid(f"The label {label[:20]!r}… is longer than {MAX_LABEL_LENGTH} "
                           "characters.")
    named = [x for x in labels if x]
    if len(set(named)) < len(named):
        twice = next(x for x in named if named.count(x) > 1)
        raise invalid(f"Two parties have the label {twice!r}; each party needs its own.")
    return labels


def pins_from_request(request: dict[str, Any], parties: int,
                      labels: list[str]) -> list[str]:
    """The places' pins a create request asks for, padded with "" to one per place: each
    "" (anyone with the link) or the did:key of the only one who may take it."""
    pins = request.get("pins", [])
    if not isinstance(pins, list) or not all(isinstance(x, str) for x in pins):
        raise invalid("'pins' must be a list with one text per place, in party order: \"\" "
                      "for a place anyone with the link may take, or the did:key of the "
                      "person it is kept for.")
    if len(pins) > parties:
        raise invalid(f"There are {len(pins)} pins for {parties} parties: at most one per "
                      "place.")
    for pid, pin in enumerate(pins):
        if not pin:
            continue
        where = the_place(labels[pid] if pid < len(labels) else "", pid)  # (not padded)
        shown = repr(pin[:60]) + ("..." if len(pin) > 60 else "")
        if len(pin) > MAX_IDENTITY_LENGTH:  # (never decoded: base58 costs its length squared)
            raise invalid(f"{where} is pinned to {shown}, which is far longer than a did:key "
                          "(did:key:z6Mk... of 56 characters).")
        try:
            public_key(pin)
        except IdentityError as exc:
            why = str(exc)
            said = repr(pin[:60]) + " "
            why = "which " + why[len(said):] if why.startswith(said) else \
                f"which is not a did:key ({why.rstrip('.')})."
            raise invalid(f"{where} is pinned to {shown}, {why}") from None
    return pins + [""] * (parties - len(pins))


def program_from_request(request: dict[str, Any], compiled: bool = False) -> Program:
    """The program a create request asks for, checked; ``compiled``: its source compiled
    already when the session was made (a replica rebuilt from the shared store), so it is
    not compiled again (which costs up to a few hundred ms for the largest)."""
    name = request.get("program")
    source = request.get("source")
    args = request.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise invalid("'args' must be a list of strings.")
    try:
        programs.check_args(args)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    if not all(is_text(a) for a in args):
        raise invalid("A program argument contains characters that are not valid text.")
    if source is None:
        if not isinstance(name, str) or name not in programs.BUILTIN:
            raise invalid(
                f"Unknown program {name!r}. Choose one of {', '.join(sorted(programs.BUILTIN))}, "
                "or upload MPyC source as 'source'."
            )
        return Program(name, args)
    if not isinstance(source, str) or not source.strip():
        raise invalid("'source' must be the text of an MPyC program.")
    if not is_text(source):
        raise invalid("The program contains characters that are not valid text "
                       "(unpaired surrogates).")
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise invalid(f"The program is larger than {MAX_SOURCE_BYTES // 1024} KiB.")
    if name is None:
        name = "program.py"
    if not isinstance(name, str) or not name or len(name) > 100 or not is_text(name):
        raise invalid("'program' must be a short file name for the uploaded source.")
    if compiled:
        return Program(name, args, source)
    try:
        # Top-level await is allowed: browsers and native peers run such scripts.
        compile(source, name, "exec", dont_inherit=True, flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError as exc:
        where = f" on line {exc.lineno}" if exc.lineno else ""
        raise invalid(f"The program has a syntax error{where}: {exc.msg}.") from None
    except ValueError as exc:  # e.g. a NUL byte in the source
        raise invalid(f"The program is not valid Python source: {exc}.") from None
    except (RecursionError, MemoryError):
        raise invalid("The program is too deeply nested for Python to compile.") from None
    return Program(name, args, source)
