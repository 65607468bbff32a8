"""A party's side of signaling, without I/O: what it does with each message.

``SignalingClient`` is to a party's WebSocket what python-websockets' ``ClientProtocol`` is
to its socket: it never sends, opens a connection or waits. Its I/O layer feeds it what
happened (``connected``, ``receive`` for each server message, ``opened`` for each sealed
signal it opened, ``local_description`` ...) and gets back a list of *events*, plain dicts
``{"event": NAME, ...}``, saying what to do or what to show. Two I/O layers drive it: the
native peer (``mpyc_webrtc.native.signaling``, aiohttp and aiortc) and, as its JavaScript
twin with the same methods and events, the page (``web/client.js``). Both are checked
against the same scenarios (``tests/client_scenarios.json``).

The rules it holds:

- joining: the ``join`` message (a native peer is ready at once, a page once its person
  confirmed an input), always with this client's own ``resume`` secret (drawn once, when
  the client is made); an ``error`` before the ``welcome`` means joining failed;
- losing the server (welcomed, in the lobby or after a ``start``, not stopped, no error
  that ended the session: ``SESSION_ENDING``): reconnect to the same server
  (``reconnect``, after ``delay`` seconds: 0.5, 1, 2, 4, 8, 8, ...; at once after the error
  ``reconnect``) and join again with the same ``resume`` and ``role`` = this party's pid;
  the same pid back is ``reconnected`` (the join carries the current ready and name; a
  browser that cannot take part says so again); another pid, or an ``error`` instead of
  the welcome, ends it (``join_failed``, in words that say what happened); a welcome that
  describes the session differently from the first is tampering; after
  ``MAX_RECONNECT_ATTEMPTS`` attempts in a row without the place back, it gives up
  (``closed``, with a ``message``). A socket that cannot even open is one more
  ``disconnected``. Back after the start, this party is not ready (as the server holds
  it) and its next round's ``start`` names it in ``fresh``: all its links are made anew;
- the program: nothing connects before the program this party will run is known to be
  the one whose hash the link carries (``check_program`` / ``program_checked``), and every
  peer's offer or answer must name the same hash; anything else is tampering;
- the session's shape: nothing connects before what the server says (the number of
  parties, relay only, the places' names, the program's arguments) is what the creator
  sealed in the session's descriptor (``open_descriptor`` / ``descriptor_opened``), and the
  peers are as many distinct parties as that says (no two show the same DTLS certificate);
- when to start: only a round this party said it is ready for (a ``start`` it did not
  agree to is the server's lie: tampering); at the first ``start`` this client sees (round
  1, or a later one for a party back in its place after a reload) one link per other party
  is made (``connect``); later rounds run over the same links, except to the parties the
  ``start`` names in ``fresh`` (back after a reload): their links are made anew (``connect``
  again: the I/O layer replaces the old link), checked as at first (the same key must sign);
  a peer back after a reload has a new page whose sealed boxes are numbered from 1 again
  (``restart_numbering``: when the roster shows it back, and at that start);
- who offers: the lower pid, everywhere;
- ICE candidates that come before the offer or answer they belong to wait for it;
- a party that left after the start: whoever waits for it is told (``peer_left``), once;
  one that lost its connection to the server (``reconnecting``) may still be computing, over
  its own links: ``peer_away``, once per time it is away;
- links: each link's state goes to the server once per change; a path, once known, stays;
  ``failed`` is final;
- identities (``identity``): every offer and answer this party makes is signed
  (``seal`` with ``sign``) over ``identity.link_statement``: the session, both pids, this
  party's place, its name, the DTLS certificate in the SDP and the program; every offer
  or answer that comes is checked (``verify`` / ``verified``) before it is used, and then
  the peer's key and the name it signed are its identity (``identity``). A signature
  that does not verify, a peer that signs with another key than before (in chat or an
  earlier description), a peer in a place pinned (the descriptor's ``pins``) to another
  key, this party put in a place pinned to another key, and a roster that shows a
  verified peer with another key or name are tampering;
- chat (``say``, ``chat_received``): a message goes to everyone present (``chat_out``),
  signed over ``identity.chat_statement``; one that comes is checked (``verify``) and
  shown (``chat``) with its sender's key, ``bound`` once that key is the one verified on
  the peer connection;
- tampering (a box that does not open, another program): stop at once, tell the server,
  and act on nothing more;
- a browser that lacks what taking part needs (``lacks``, some of ``wire.CAPABILITIES``)
  still joins, to hold its place and tell the others why (``status unsupported``), but
  never gets ready, checks nothing and connects to nobody; closing it frees the place.

Events (fields after the name):

==================  =====================================================================
``send``            message: a wire message for the server (``wire.CLIENT_MESSAGES``)
``seal``            to, payload, sign?: seal ``payload`` (``wire.SIGNAL_KINDS``) for party
                    ``to`` and send it as a ``signal``; with ``sign`` (a list of texts),
                    first set ``payload["signature"]`` to this party's signature over
                    ``identity.statement(*sign)``, base64url
``verify``          id, peer, identity, signature, statement: check that ``signature``
                    (base64url) is ``identity``'s over ``identity.statement(*statement)``;
                    call ``verified(id, ok)``
``identity``        peer, identity, name, label, who: ``peer``'s key (did:key) and the
                    name it signed are verified and bound to its peer connection
``chat_out``        payload, sign, to: sign as for ``seal``, then send ``payload`` to each
                    pid in ``to``: over the chat data channel (``wire.CHAT_CHANNEL``) if it
                    is open, else sealed (``Sealer.seal_chat``) as a ``chat`` message
``chat_refused``    message: this party's chat message was not sent, and why
``open_chat``       from, seq, box: open this chat box (``Sealer.open_chat``) and call
                    ``chat_received`` with its payload (or ``tampered``)
``chat``            peer, text, identity, name, label, who, bound: a chat message whose
                    signature is its key's (text only: never markup)
``open``            from, seq, box: open this box, in arrival order, and call ``opened``
                    with its payload (or ``tampered`` with the sealer's sentence)
``welcome``         welcome: the server's ``welcome``; this party is ``welcome["pid"]``
``join_failed``     code, message: the server refused to let this party in (also when it
                    joins again after a lost connection; ``code`` is then the server's, or
                    ``other_place`` if it was given another pid): stop, close the socket
``reconnect``       attempt, delay: the connection to the server was lost in the lobby:
                    after ``delay`` seconds open a new one to the same server and call
                    ``connected`` (or ``disconnected`` if it cannot be opened)
``reconnected``     pid, welcome, started: joined again at this party's own place ``pid``;
                    nothing to check again (the welcome is the one checked, with fresh
                    ``ice_servers``); ``started``: after the start (it is not ready now)
``open_descriptor`` descriptor: open the session's sealed descriptor (the welcome's; may be
                    null); call ``descriptor_opened`` with what it holds, or None
``check_program``   program: hash the program this party will run; call ``program_checked``
``program_ok``      (none): the program is the link's
``session_ok``      (none): the server's word about the session is the creator's
``roster``          roster: the server's latest ``roster``
``start``           round: everyone is here and ready: round ``round`` begins
``restart_numbering`` peer: ``peer`` is back after a reload (a new page): number the
                    sealed boxes to and from it afresh (``Sealer.restart``)
``connect``         peer, offer: make the link to ``peer`` (replacing one made before, if
                    any: the peer came back after a reload); if ``offer``, create an offer
                    and call ``local_description`` with it
``remote``          peer, kind, sdp: set the remote description; after an ``offer``, create
                    an answer and call ``local_description`` with it
``candidate``       peer, candidate, sdpMid, sdpMLineIndex: add the peer's ICE candidate
``unexpected``      peer, kind, expected: the peer sent a ``kind`` where ``expected`` was
                    due (ignored; worth a log line)
``peer_away``       peer: after the start, ``peer`` lost its connection to the server; its
                    links will tell whether it is still there (they wait for it no
                    longer than for a party already heard from)
``peer_left``       peer, message: after the start, ``peer`` left the session
``server_error``    code, message: an ``error`` from the server after the ``welcome``
                    (for ``server_shutting_down``, the message is this client's own:
                    what the shutdown means where the party stands)
``tampered``        message: someone interfered: stop at once, connect to nobody
``closed``          welcomed, started (and message, after giving up reconnecting): the
                    connection to the server is gone for good
==================  =====================================================================
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from . import shape
from .launch import fingerprint
from .sentences import SENTENCES, place, say
from .wire import MAX_CHAT_LENGTH, RECONNECTING, SIGNAL_KINDS, UNSUPPORTED, ErrorCode, message

Event = dict[str, Any]

#: Where the client stands: before ``connected``, joining, in the lobby, waiting to open a
#: new connection after losing one in the lobby, joining again over it, after the first
#: ``start``, stopped (tampering), refused when joining again, and after ``disconnected``.
PHASES = ("new", "joining", "lobby", "reconnecting", "rejoining", "started", "stopped",
          "refused", "closed")

#: How long to wait before reconnecting: the first delay, doubled per attempt, at most.
RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 8.0
#: Attempts in a row without getting the place back before giving up (the delays add up
#: to about two minutes; a server keeps a place for a while, see ``wire.RECONNECTING``).
MAX_RECONNECT_ATTEMPTS = 20
#: Errors in the lobby after which the session is over: no use reconnecting.
SESSION_ENDING = frozenset({ErrorCode.SERVER_SHUTTING_DOWN, ErrorCode.SESSION_EXPIRED,
                            ErrorCode.TOO_MANY_MESSAGES})
#: The welcome's fields that must not change when this party joins again.
REJOIN_SAME = ("session", "parties", "relay_only", "labels", "program", "descriptor",
               "pins")


def reconnect_delay(attempt: int) -> float:
    """Seconds before reconnect attempt ``attempt`` (1, 2, ...): 0.5, 1, 2, 4, 8, 8, ..."""
    return min(RECONNECT_FIRST_DELAY * 2 ** (attempt - 1), RECONNECT_MAX_DELAY)


def new_resume() -> str:
    """A party's own resume secret: 16 random bytes, base64url (22 characters)."""
    return secrets.token_urlsafe(16)


def member_state(member: dict[str, Any], started: bool) -> str:
    """A roster member's state as a person reads it: a ``member.*`` key of the sentences
    (``joined``, ``ready``, ``connecting``, ``computing``, ``done``, ``again``, ``failed``,
    ``left``, ``unsupported``, ``reconnecting``)."""
    state = member.get("state")
    if state in ("left", "failed", UNSUPPORTED, RECONNECTING):
        return state
    if not started:
        return "ready" if member.get("ready") else "joined"
    if state == "done":
        return "again" if member.get("ready") else "done"
    if state == "connected":
        return "computing"
    return "connecting"


def lacks_words(lacks: list[str]) -> str:
    """What a browser lacks, in words: ``WebRTC data channels and WebAssembly`` (names the
    sentences do not know are left out: they come from the server, which may lie)."""
    words = [say(f"capability.{name}") for name in lacks
             if isinstance(name, str) and f"capability.{name}" in SENTENCES]
    if not words:
        return say("capability.unknown")
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def state_words(state: str, lacks: list[str] | None = None) -> str:
    """A ``member.*`` state (``member_state``) as a sentence; ``unsupported`` says what the
    party's browser lacks."""
    if state == UNSUPPORTED:
        return say("member.unsupported", lacks=lacks_words(lacks or []))
    return say(f"member.{state}")


def member_words(member: dict[str, Any], started: bool) -> str:
    """How a roster member is doing, as the roster says it to a person."""
    lacks = member.get("lacks")
    return state_words(member_state(member, started), lacks if isinstance(lacks, list) else [])


class _Link:
    """What the rules remember about the link to one party."""

    def __init__(self, peer: int, offerer: bool):
        self.peer = peer
        self.offerer = offerer
        #: The description due from the peer; None once it came.
        self.expecting: str | None = "answer" if offerer else "offer"
        #: Candidates that came before that description.
        self.early: list[dict[str, Any]] = []
        #: The description came and its signature is being checked (``verify``).
        self.verifying = False


class SignalingClient:
    """One party's signaling rules in one session.

    ``link_hash`` is the program hash the join link carries; ``token`` proves the link to the
    server; ``ready`` whether the party is ready as it joins (a native peer, whose input
    is on its command line); ``role`` the place it asks for, if any; ``lacks`` what this
    party's browser lacks of ``wire.CAPABILITIES`` (then it only holds its place and says why);
    ``resume`` this party's own secret for getting its place back (by default a new one);
    ``identity`` this party's did:key and ``proof`` its signature over
    ``identity.join_statement(session, resume)`` (the I/O layer draws ``resume`` first).
    """

    def __init__(self, session: str, link_hash: str, *, token: str, name: str = "",
                 role: int | None = None, ready: bool = False, lacks: list[str] | None = None,
                 resume: str | None = None, identity: str | None = None,
                 proof: str | None = None):
        self.session = session
        self.link_hash = link_hash
        self.token = token
        self.name = name
        self.identity = identity
        self.proof = proof
        self.role = role
        self.lacks = list(lacks or [])
        #: Whether this party said it is ready for the next round (and did not take it back).
        self.ready = ready and not self.lacks
        #: It took it back, and the server may have started the round before it heard so.
        self._retracting = False
        self.phase = "new"
        #: Whether the connection to the server closed for good (``disconnected``).
        self.closed = False
        #: Shown on every join: a server gives the place it was taken with back to it.
        self.resume = resume if resume is not None else new_resume()
        #: Reconnect attempts since the connection was lost (0: connected, or never lost).
        self.attempt = 0
        #: The server said ``reconnect``: the next attempt goes at once.
        self._reconnect_now = False
        #: An error said the session is over (``SESSION_ENDING``): no reconnecting.
        self._session_over = False
        self.welcome: dict[str, Any] | None = None
        self.roster: dict[str, Any] | None = None
        self.round = 0
        #: Whether the program this party runs is the link's (``program_checked``), and
        #: the session what its creator chose (``descriptor_opened``).
        self.program_ok = False
        self.session_ok = False
        #: The DTLS certificate fingerprints this party and each peer show in their SDP.
        self._own_certificates: set[str] = set()
        self._certificates: dict[int, str] = {}
        self.links: dict[int, _Link] = {}
        #: Signals from parties without a link yet (before the start or the program check).
        self._held: list[tuple[int, dict[str, Any]]] = []
        self._gone: set[int] = set()
        #: Peers seen away (left or reconnecting) after the start: one seen again is back
        #: after a reload, with a new page (``restart_numbering``).
        self._away: set[int] = set()
        self._reported: dict[int, tuple[str, str | None]] = {}
        #: Each peer's identity, verified on its offer or answer (bound to its DTLS
        #: certificate): ``{"identity": did, "name": ...}``.
        self.identities: dict[int, dict[str, str]] = {}
        #: The key each peer signed its chat messages with before that.
        self._claimed: dict[int, str] = {}
        #: Signatures the I/O layer is checking (``verify``), by id.
        self._pending: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self._verifications = 0
        #: This party's chat messages so far (each is numbered in what it signs).
        self._chats = 0

    @property
    def pid(self) -> int | None:
        return None if self.welcome is None else self.welcome["pid"]

    @property
    def parties(self) -> int | None:
        return None if self.welcome is None else self.welcome["parties"]

    @property
    def stopped(self) -> bool:
        return self.phase == "stopped"

    # -- the connection to the server -----------------------------------------------------

    def connected(self) -> list[Event]:
        """The WebSocket is open: ask to join (again, after a ``reconnect``: this party's
        own place)."""
        if self.phase == "new":
            self.phase, role = "joining", self.role
        elif self.phase == "reconnecting":
            self.phase, role = "rejoining", self.pid
        else:
            return []
        fields: dict[str, Any] = {"session": self.session, "token": self.token}
        if self.name:
            fields["name"] = self.name
        if role is not None:
            fields["role"] = role
        fields["ready"] = self.ready
        fields["resume"] = self.resume
        if self.identity is not None and self.proof is not None:
            fields["identity"], fields["proof"] = self.identity, self.proof
        return [_send("join", **fields)]

    def disconnected(self) -> list[Event]:
        """The WebSocket closed, for whatever reason (or a new one could not be opened)."""
        if self.closed:
            return []
        # Before the start and after it alike: a party that lost its connection for a moment
        # gets its place back, and whoever computes with it goes on over their links.
        if (self.phase in ("lobby", "started", "reconnecting", "rejoining")
                and not self._session_over):
            self.attempt += 1
            if self.attempt <= MAX_RECONNECT_ATTEMPTS:
                delay = 0.0 if self._reconnect_now else reconnect_delay(self.attempt)
                self._reconnect_now = False
                self.phase = "reconnecting"
                return [{"event": "reconnect", "attempt": self.attempt, "delay": delay}]
            self.closed, self.phase = True, "closed"
            seconds = int(sum(reconnect_delay(a) for a in range(1, self.attempt)) + 0.5)
            return [{"event": "closed", "welcomed": True, "started": self.round > 0,
                     "message": say("reconnect.gave_up", seconds=seconds)}]
        self.closed = True
        welcomed, started = self.welcome is not None, self.round > 0
        if self.phase != "stopped":
            self.phase = "closed"
        return [{"event": "closed", "welcomed": welcomed, "started": started}]

    def receive(self, message: dict[str, Any]) -> list[Event]:
        """A message from the server (JSON, decoded)."""
        if self.phase in ("stopped", "refused", "reconnecting"):
            return []  # nothing the server says counts any more (or: not this socket's)
        handler = getattr(self, f"_receive_{message.get('type')}", None)
        return [] if handler is None else handler(message)

    def _receive_welcome(self, message: dict[str, Any]) -> list[Event]:
        if self.phase == "rejoining":
            return self._rejoined(message)
        if self.welcome is not None:
            return []
        self.welcome = message
        self.phase = "lobby"
        if self.lacks:  # nothing to check: this party will run nothing
            return [{"event": "welcome", "welcome": message},
                    _send("status", state=UNSUPPORTED, detail=",".join(self.lacks))]
        return [{"event": "welcome", "welcome": message},
                {"event": "open_descriptor", "descriptor": message.get("descriptor")},
                {"event": "check_program", "program": message["program"]}]

    def _rejoined(self, message: dict[str, Any]) -> list[Event]:
        """The welcome after joining again: this party's own place, as it was."""
        assert self.welcome is not None
        pid = self.pid
        if message.get("pid") != pid:
            self.phase = "refused"
            return [{"event": "join_failed", "code": "other_place",
                     "message": say("rejoin.other_place", got=self._place(message.get("pid")),
                                            who=self._place(pid))}]
        changed = next((name for name in REJOIN_SAME
                        if json.dumps(message.get(name)) != json.dumps(self.welcome.get(name))),
                       None)
        if changed is not None:
            return self._tamper(say("tamper.rejoin_changed", what=say(f"shape.{changed}")))
        self.welcome = message  # the same session; fresh ICE servers (TURN credentials)
        started = self.round > 0
        self.phase = "started" if started else "lobby"
        self.attempt = 0
        self._retracting = False  # the join said whether it is ready
        if started:
            # Back after the start, the server holds it not ready (a page that comes back
            # may have lost its computation), and its next round makes its links anew.
            self.ready = False
        events: list[Event] = [{"event": "reconnected", "pid": pid, "welcome": message,
                                "started": started}]
        if self.lacks:
            events.append(_send("status", state=UNSUPPORTED, detail=",".join(self.lacks)))
        return events

    def _receive_error(self, message: dict[str, Any]) -> list[Event]:
        code = message.get("code")
        text = message.get("message") or say("server.reported", code=code)
        if code == ErrorCode.RECONNECT and self.phase in ("lobby", "started", "rejoining"):
            # The server process goes away, the session stays: join again, at once.
            self._reconnect_now = True
            return []
        if code == ErrorCode.SERVER_SHUTTING_DOWN:
            # The server's words are general; what it means depends on where this party is.
            text = say("server.shutting_down.started" if self.round > 0
                       else "server.shutting_down.lobby")
        if code in SESSION_ENDING:
            self._session_over = True
        if self.phase == "rejoining":
            self.phase = "refused"
            if code == ErrorCode.UNKNOWN_SESSION:
                text = say("rejoin.unknown_session")
            elif code in (ErrorCode.ROLE_TAKEN, ErrorCode.SESSION_FULL,
                          ErrorCode.SESSION_STARTED):
                text = say("rejoin.place_taken")
            elif code != ErrorCode.SERVER_SHUTTING_DOWN:
                text = say("rejoin.refused", reason=text)
            return [{"event": "join_failed", "code": code, "message": text}]
        if self.welcome is None:
            if code == ErrorCode.BAD_TOKEN:  # the link had a secret, only not this session's
                text = say("link.wrong_secret")
            return [{"event": "join_failed", "code": code, "message": text}]
        return [{"event": "server_error", "code": code, "message": text}]

    def _receive_roster(self, message: dict[str, Any]) -> list[Event]:
        self.roster = message
        if self._retracting and not message.get("started") and any(
                m.get("pid") == self.pid and not m.get("ready")
                for m in message.get("members", [])):
            self._retracting = False  # the server heard it: no round can start on it now
        events: list[Event] = [{"event": "roster", "roster": message}]
        for peer in self.identities:
            if problem := self._roster_problem(peer):
                return problem
        if message.get("started"):
            for member in message.get("members", []):
                pid = member.get("pid")
                if member.get("state") == "left" and pid != self.pid and pid not in self._gone:
                    self._gone.add(pid)
                    events.append({"event": "peer_left", "peer": pid,
                                   "message": say("party.left", who=self._place(pid))})
                if pid == self.pid or type(pid) is not int:
                    continue
                if member.get("state") in ("left", RECONNECTING):
                    if member.get("state") == RECONNECTING and pid not in self._away:
                        events.append({"event": "peer_away", "peer": pid})
                    self._away.add(pid)
                elif pid in self._away:  # back, with a new page: its numbers start again
                    self._away.discard(pid)
                    self._gone.discard(pid)
                    events.append({"event": "restart_numbering", "peer": pid})
        return events

    def _receive_start(self, message: dict[str, Any]) -> list[Event]:
        if self.welcome is None or self.phase == "rejoining":
            return []  # not before this connection's welcome
        round_ = message.get("round", self.round + 1)
        if not (self.ready or self._retracting):
            return self._tamper(say("tamper.unprompted_start", round=round_))
        self.ready = self._retracting = False  # the next round needs its own "ready"
        self.round = round_
        first = self.phase == "lobby"
        self.phase = "started"
        events: list[Event] = [{"event": "start", "round": self.round}]
        if first:
            events += self._connect_all()
        else:
            events += self._relink(message.get("fresh"))
        return events

    def _relink(self, fresh: Any) -> list[Event]:
        """A later round's start: the links to the parties in ``fresh`` (back in their
        places after a reload or a lost connection; their old links went with their pages, or
        may have gone with the network) are made anew: all of them if this party is named."""
        pid, parties = self.pid, self.parties
        assert pid is not None and parties is not None
        named = {p for p in fresh if type(p) is int and 0 <= p < parties} \
            if isinstance(fresh, list) else set()
        peers = sorted(set(range(parties)) - {pid} if pid in named else named - {pid})
        events: list[Event] = []
        for peer in peers:
            self.links[peer] = _Link(peer, offerer=pid < peer)
            self._certificates.pop(peer, None)  # its new page has a new certificate
            self._reported.pop(peer, None)
            self._gone.discard(peer)
            self._away.discard(peer)
            events += [{"event": "restart_numbering", "peer": peer},
                       {"event": "connect", "peer": peer, "offer": pid < peer}]
        return events

    def _receive_chat(self, message: dict[str, Any]) -> list[Event]:
        if self.welcome is None or self.lacks:
            return []  # nothing to open it with; chat is best effort
        return [{"event": "open_chat", "from": message.get("from"), "seq": message.get("seq"),
                 "box": message.get("box")}]

    def _receive_signal(self, message: dict[str, Any]) -> list[Event]:
        sender = message.get("from")
        if self.welcome is None:  # nothing to open it with: it cannot be authentic
            return self._tamper(say("tamper.failed_authentication", who=self._place(sender)))
        return [{"event": "open", "from": sender, "seq": message.get("seq"),
                 "box": message.get("box")}]

    # -- this party's program -----------------------------------------------------------

    def described(self, digest: str) -> list[Event]:
        """The hash of the program the server describes before this party joins: if it is
        not the link's, there is no use joining."""
        if digest != self.link_hash:
            return self._tamper(say("tamper.server_program", ours=fingerprint(digest),
                                    link=fingerprint(self.link_hash)), tell=False)
        return []

    def program_checked(self, digest: str) -> list[Event]:
        """The hash of the program this party will run (``check_program``)."""
        if self.stopped or self.program_ok:
            return []
        if digest != self.link_hash:
            return self._tamper(say("tamper.server_program", ours=fingerprint(digest),
                                    link=fingerprint(self.link_hash)))
        self.program_ok = True
        events: list[Event] = [{"event": "program_ok"}]
        if self.phase == "started":
            events += self._connect_all()
        return events

    def descriptor_opened(self, descriptor: dict[str, Any] | None) -> list[Event]:
        """What the welcome's sealed descriptor holds (``open_descriptor``), or None if it
        was missing or did not open with the link's secret."""
        if self.stopped or self.session_ok or self.welcome is None:
            return []
        if descriptor is None:
            return self._tamper(say("tamper.no_descriptor"))
        changed = shape.difference(descriptor, shape.said_by(self.welcome, self.link_hash))
        if changed is not None:
            name, chosen, told = changed
            return self._tamper(say("tamper.shape", what=say(f"shape.{name}"),
                                    chosen=chosen, said=told))
        pinned = self._pin(self.pid)
        if pinned and pinned != self.identity:
            return self._tamper(say("tamper.pinned_self", place=self._place(self.pid),
                                    pinned=pinned, identity=self.identity or "none"))
        self.session_ok = True
        events: list[Event] = [{"event": "session_ok"}]
        if self.phase == "started":
            events += self._connect_all()
        return events

    # -- sealed signals -------------------------------------------------------------------

    def opened(self, sender: int, payload: dict[str, Any]) -> list[Event]:
        """The payload of a sealed signal from ``sender``, opened and authentic."""
        if self.stopped:
            return []
        link = self.links.get(sender)
        if link is None:
            if 0 <= sender < (self.parties or 0) and sender != self.pid:
                self._held.append((sender, payload))
            return []
        kind = payload["kind"]
        if kind == "candidate":
            if link.expecting is not None:
                link.early.append(payload)
                return []
            return _candidate(sender, payload)
        if kind != link.expecting or link.verifying:
            return [{"event": "unexpected", "peer": sender, "kind": kind,
                     "expected": link.expecting}]
        if payload.get("program") != self.link_hash:
            return self._tamper(say("tamper.peer_program", who=self._place(sender),
                                    theirs=fingerprint(str(payload.get("program"))),
                                    ours=fingerprint(self.link_hash)))
        if (same := self._certificate(sender, payload["sdp"])) is not None:
            return same
        link.verifying = True
        return [self._verify("link", sender, payload, self._link_fields(
            sender, self.pid, payload["name"], payload["sdp"]))]

    def verified(self, id_: str, ok: bool) -> list[Event]:
        """Whether the signature of ``verify`` event ``id_`` is its key's."""
        pending = self._pending.pop(id_, None)
        if pending is None or self.stopped:
            return []
        what, sender, payload = pending
        did, name = payload["identity"], payload["name"]
        if not ok:
            kind = say("identity.kind_chat") if what == "chat" else payload["kind"]
            return self._tamper(say("tamper.bad_signature", who=self._place(sender), kind=kind,
                                    identity=did))
        before = self.identities.get(sender, {}).get("identity") or self._claimed.get(sender)
        if before is not None and before != did:
            return self._tamper(say("tamper.other_identity", who=self._place(sender), now=did,
                                    before=before))
        if what == "chat":
            self._claimed[sender] = did
            return [{"event": "chat", "peer": sender, "text": payload["text"],
                     "identity": did, "name": name, "label": self._label(sender),
                     "who": self._place(sender), "bound": sender in self.identities}]
        pinned = self._pin(sender)
        if pinned and pinned != did:
            return self._tamper(say("tamper.pinned", place=self._place(sender),
                                    pinned=pinned, identity=did))
        self.identities[sender] = {"identity": did, "name": name}
        if problem := self._roster_problem(sender):
            return problem
        link = self.links[sender]
        link.expecting, link.verifying = None, False
        events: list[Event] = [
            {"event": "identity", "peer": sender, "identity": did, "name": name,
             "label": self._label(sender), "who": self._place(sender)},
            {"event": "remote", "peer": sender, "kind": payload["kind"],
             "sdp": payload["sdp"]}]
        for candidate in link.early:
            events += _candidate(sender, candidate)
        link.early.clear()
        return events

    def tampered(self, message: str) -> list[Event]:
        """The I/O layer found tampering (a box that did not open): ``message`` says how."""
        return self._tamper(message)

    def local_description(self, peer: int, kind: str, sdp: str) -> list[Event]:
        """This party's offer or answer for ``peer`` is made."""
        if self.stopped or peer not in self.links:
            return []
        if (same := self._certificate(None, sdp)) is not None:
            return same
        assert self.pid is not None
        payload = {"kind": kind, "sdp": sdp, "program": self.link_hash,
                   "identity": self.identity or "", "name": self.name}
        return [{"event": "seal", "to": peer, "payload": payload,
                 "sign": self._link_fields(self.pid, peer, self.name, sdp)}]

    def local_candidate(self, peer: int, candidate: dict[str, Any]) -> list[Event]:
        """This party found an ICE candidate for the link to ``peer`` (trickle ICE)."""
        if self.stopped or peer not in self.links or not candidate.get("candidate"):
            return []
        payload = {"kind": "candidate", "candidate": candidate["candidate"],
                   "sdpMid": candidate.get("sdpMid"),
                   "sdpMLineIndex": candidate.get("sdpMLineIndex")}
        return [{"event": "seal", "to": peer, "payload": payload}]

    # -- chat -----------------------------------------------------------------------------

    def say(self, text: str) -> list[Event]:
        """This party writes ``text`` to everyone else in the session."""
        if self.stopped:
            return []
        if self.welcome is None or self.lacks or self.phase in ("refused", "closed"):
            return [{"event": "chat_refused", "message": say("chat.not_yet")}]
        text = text.strip()
        if not text:
            return [{"event": "chat_refused", "message": say("chat.empty")}]
        if len(text) > MAX_CHAT_LENGTH:
            return [{"event": "chat_refused",
                     "message": say("chat.too_long", max=MAX_CHAT_LENGTH, length=len(text))}]
        members = (self.roster or {}).get("members") or []
        to = [m["pid"] for m in members
              if isinstance(m.get("pid"), int) and m["pid"] != self.pid
              and m.get("state") != "left"]
        if not to:
            return [{"event": "chat_refused", "message": say("chat.nobody")}]
        self._chats += 1
        number = str(self._chats)
        payload = {"kind": "chat", "text": text, "identity": self.identity or "",
                   "name": self.name, "number": number}
        return [{"event": "chat_out", "payload": payload, "to": to,
                 "sign": ["chat", self.session, str(self.pid), number, self.name, text]}]

    def chat_received(self, sender: Any, payload: Any) -> list[Event]:
        """A chat payload from ``sender``: opened from a sealed ``chat`` message, or read
        off the chat data channel to that party."""
        if self.stopped or self.welcome is None:
            return []
        if (isinstance(sender, bool) or not isinstance(sender, int) or sender == self.pid
                or not 0 <= sender < (self.parties or 0) or not isinstance(payload, dict)
                or payload.get("kind") != "chat"
                or not all(isinstance(payload.get(f), str) for f in SIGNAL_KINDS["chat"])
                or not 0 < len(payload["text"]) <= MAX_CHAT_LENGTH):
            return [{"event": "unexpected", "peer": sender,
                     "kind": payload.get("kind") if isinstance(payload, dict) else None,
                     "expected": "chat"}]
        fields = ["chat", self.session, str(sender), payload["number"], payload["name"],
                  payload["text"]]
        return [self._verify("chat", sender, payload, fields)]

    # -- what this party tells the server -------------------------------------------------

    def set_ready(self, ready: bool, name: str | None = None) -> list[Event]:
        """This party confirmed its input (or takes that back; after a round, ``True``
        votes to run again)."""
        if self.stopped or self.welcome is None or self.lacks:
            return []
        self._retracting = self.ready and not ready
        self.ready = ready
        if name:
            self.name = name  # a join after a lost connection says it again
        if self.phase == "reconnecting":
            return []  # no connection: the next join says it
        return [_send("ready", ready=ready, **({"name": name} if name else {}))]

    def link_state(self, peer: int, state: str, path: str | None = None) -> list[Event]:
        """How the link to ``peer`` is doing (``wire.LINK_STATES``, ``wire.LINK_PATHS``)."""
        before = self._reported.get(peer)
        if path is None and before is not None:
            path = before[1]  # a path, once known, stays (also once closed)
        if before == (state, path) or (before is not None and before[0] == "failed"):
            return []
        self._reported[peer] = (state, path)
        fields: dict[str, Any] = {"peer": peer, "state": state}
        if path is not None:
            fields["path"] = path
        return [_send("link", **fields)]

    def status(self, state: str, detail: str | None = None) -> list[Event]:
        """How this party is doing (``connected``, ``done``, ``failed``), for everyone."""
        if self.welcome is None:
            return []
        return [_send("status", state=state, **({"detail": detail[:500]} if detail else {}))]

    # -- helpers ------------------------------------------------------------------------

    def _connect_all(self) -> list[Event]:
        """The links, once the round started and the program and the session are checked."""
        if not (self.program_ok and self.session_ok):
            return []
        pid, parties = self.pid, self.parties
        assert pid is not None and parties is not None
        events: list[Event] = []
        for peer in range(parties):
            if peer != pid and peer not in self.links:
                # The lower pid offers, everywhere.
                self.links[peer] = _Link(peer, offerer=pid < peer)
                events.append({"event": "connect", "peer": peer, "offer": pid < peer})
        held, self._held = self._held, []
        for sender, payload in held:
            events += self.opened(sender, payload)
        return events

    def _verify(self, what: str, sender: int, payload: dict[str, Any],
                fields: list[str]) -> Event:
        """Ask the I/O layer to check a signature; ``verified`` goes on from there."""
        self._verifications += 1
        id_ = f"{what}-{self._verifications}"
        self._pending[id_] = (what, sender, payload)
        return {"event": "verify", "id": id_, "peer": sender,
                "identity": payload["identity"], "signature": payload["signature"],
                "statement": fields}

    def _link_fields(self, sender: int, receiver: int, name: str, sdp: str) -> list[str]:
        """What an offer or answer's signature covers (``identity.link_statement``)."""
        return ["link", self.session, str(sender), str(receiver), self._label(sender), name,
                shape.certificate(sdp) or "", self.link_hash]

    def _label(self, pid: int | None) -> str:
        labels = (self.welcome or {}).get("labels") or []
        label = labels[pid] if isinstance(pid, int) and 0 <= pid < len(labels) else ""
        return " ".join(str(label).split())

    def _place(self, pid: int | None) -> str:
        """A place as a person reads it: ``'hospital A' (party 2)`` or ``party 2`` (pid 1)."""
        return place(pid, self._label(pid))

    def _pin(self, pid: int | None) -> str:
        """The key place ``pid`` is kept for ("" if none), as the creator sealed it."""
        pins = (self.welcome or {}).get("pins") or []
        pin = pins[pid] if isinstance(pid, int) and 0 <= pid < len(pins) else ""
        return pin if isinstance(pin, str) else ""

    def _roster_problem(self, peer: int) -> list[Event] | None:
        """Tampering, if the latest roster shows a verified peer with another key or name
        than the one it signed."""
        signed = self.identities[peer]
        member = next((m for m in (self.roster or {}).get("members") or []
                       if m.get("pid") == peer), None)
        if member is None:
            return None
        said = member.get("identity")
        if said is not None and said != signed["identity"]:
            return self._tamper(say("tamper.roster_identity", who=self._place(peer), said=said,
                                    signed=signed["identity"]))
        name = member.get("name")
        if name != signed["name"] and not (signed["name"] == "" and name == f"party {peer}"):
            return self._tamper(say("tamper.roster_name", who=self._place(peer),
                                    said=json.dumps(name, ensure_ascii=False),
                                    signed=json.dumps(signed["name"], ensure_ascii=False)))
        return None

    def _certificate(self, party: int | None, sdp: str) -> list[Event] | None:
        """Note the DTLS certificate ``party`` (None: this party) shows in ``sdp``; the
        tampering events if it is this party's own or another peer's: then there are fewer
        distinct parties than the session has."""
        certificate = shape.certificate(sdp)
        if certificate is None:
            return None  # no DTLS: nothing could connect with it anyway
        if party is None:
            self._own_certificates.add(certificate)
            peer = next((p for p, c in self._certificates.items() if c == certificate), None)
            return None if peer is None else self._tamper(
                say("tamper.own_certificate", who=self._place(peer)))
        if certificate in self._own_certificates:
            return self._tamper(say("tamper.own_certificate", who=self._place(party)))
        other = next((p for p, c in self._certificates.items()
                      if c == certificate and p != party), None)
        if other is not None:
            return self._tamper(say("tamper.same_peer", who=self._place(party),
                                                    other=self._place(other)))
        self._certificates[party] = certificate
        return None

    def _tamper(self, message: str, tell: bool = True) -> list[Event]:
        if self.stopped:
            return []
        self.phase = "stopped"
        events: list[Event] = []
        if tell and self.welcome is not None:
            events.append(_send("status", state="failed", detail=message[:500]))
        events.append({"event": "tampered", "message": message})
        return events


def _send(type_: str, **fields: Any) -> Event:
    return {"event": "send", "message": message(type_, **fields)}


def _candidate(peer: int, payload: dict[str, Any]) -> list[Event]:
    """The ``candidate`` event for a peer's candidate payload; none for end-of-candidates."""
    if not payload.get("candidate"):
        return []
    mid, index = payload.get("sdpMid"), payload.get("sdpMLineIndex")
    if mid is None and index is None:
        index = 0  # a candidate must name its media section; there is only one
    return [{"event": "candidate", "peer": peer, "candidate": payload["candidate"],
             "sdpMid": mid, "sdpMLineIndex": index}]
