"""A party's connection to the sans-I/O signaling core, for the core's tests, and the create
requests they (and the signaling benchmarks) use.

Shared by tests/test_session.py, tests/test_hardening.py and the other server tests.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mpyc_webrtc.wire import SERVER_MESSAGES, ErrorCode
from signaling.endpoint import Endpoint
from signaling.registry import Registry
from signaling.session import Encoded, Outgoing, Session

TOKEN = "t" * 43
TOKEN_HASH = hashlib.sha256(TOKEN.encode()).hexdigest()
#: Leave the field out of the message altogether.
MISSING: Any = object()

#: A tiny valid program to upload.
TINY_SOURCE = "x = 1\n"
#: What a create request needs for a 2-party session: the built-in programs need at least
#: ``launch.MIN_BUILTIN_PARTIES`` (3), so an uploaded program; and with 2 parties MPyC's
#: threshold is 0 (no privacy, ``launch.privacy``), so the creator's explicit ``no_privacy``.
TWO_PARTIES: dict[str, Any] = {"parties": 2, "source": TINY_SOURCE, "no_privacy": True}


def create_request(parties: int, token_hash: str = TOKEN_HASH, **fields: Any) -> dict[str, Any]:
    """A valid ``POST /api/sessions`` body for ``parties`` parties: the built-in "sum" from 3
    parties on, ``TWO_PARTIES``' uploaded program with 2; ``fields`` are added (or replace)."""
    base = dict(TWO_PARTIES) if parties == 2 else {"parties": parties, "program": "sum"}
    return {**base, "token_hash": token_hash, **fields}


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def decoded(msg: Outgoing) -> dict[str, Any]:
    """A message the core sends, as the client gets it."""
    return json.loads(msg.text) if isinstance(msg, Encoded) else msg


class Later:
    """The I/O layer's timer for the core (``Registry``'s ``schedule``), on a fake clock:
    ``run()`` calls what is due by ``clock()``, in order."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.pending: list[tuple[float, int, Any]] = []
        self._count = 0

    def __call__(self, delay: float, callback: Any) -> None:
        self._count += 1
        self.pending.append((self.clock() + delay, self._count, callback))

    def run(self) -> int:
        """Call every callback due by now (also those they schedule); how many ran."""
        ran = 0
        while due := sorted(p for p in self.pending if p[0] <= self.clock()):
            self.pending.remove(due[0])
            due[0][2]()
            ran += 1
        return ran


class Party:
    """One party's connection as the core sees it: records what it is sent and closes."""

    def __init__(self, registry: Registry, client: str | None = None):
        self.sent: list[dict[str, Any]] = []
        self.closed = 0
        self.endpoint = Endpoint(registry, self._receive, self._close, client)

    def _receive(self, msg: Outgoing) -> None:
        self.sent.append(decoded(msg))

    def _close(self) -> None:
        self.closed += 1

    def send(self, type_: str, **fields: Any) -> None:
        self.endpoint.receive(json.dumps({"v": 1, "type": type_, **fields}))

    def join(self, session: Session | str, name: str | None = None, *, ready: bool = True,
             role: int | None = None, token: Any = TOKEN, resume: str | None = None) -> None:
        """Join; by default already ready (input confirmed), as a native peer with --input."""
        sid = session.id if isinstance(session, Session) else session
        fields: dict[str, Any] = {"session": sid, "ready": ready}
        if token is not MISSING:
            fields["token"] = token
        if name is not None:
            fields["name"] = name
        if role is not None:
            fields["role"] = role
        if resume is not None:
            fields["resume"] = resume
        self.send("join", **fields)

    def take(self) -> list[dict[str, Any]]:
        sent = list(self.sent)
        self.sent.clear()  # the endpoint's send is bound to this very list
        return sent

    def types(self) -> list[str]:
        return [m["type"] for m in self.take()]

    def error(self) -> str:
        """The code of the one message this party got, which must be an error."""
        (msg,) = self.take()
        assert msg["type"] == "error", msg
        assert set(msg) == {"v", "type", *SERVER_MESSAGES["error"]}
        assert msg["message"]
        return msg["code"]

    def codes(self) -> list[str]:
        msgs = self.take()
        for msg in msgs:
            assert msg["type"] == "error", msg
            assert set(msg) == {"v", "type", *SERVER_MESSAGES["error"]}
            assert msg["code"] in set(ErrorCode) and msg["message"], msg
        return [m["code"] for m in msgs]
