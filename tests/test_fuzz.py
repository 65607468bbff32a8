"""Fuzzing the signaling server with hypothesis: whatever a client sends, the server answers
with well-formed messages, never raises, and keeps its books straight.

(a) the sans-I/O core: 10,000 generated scripts of frames, clock ticks, sweeps and
    disconnects against ``Endpoint.receive``;
(b) 500 cases over a real WebSocket to the aiohttp app on 127.0.0.1; afterwards a normal
    create and join still work;
(c) 2,000 ``POST /api/sessions`` bodies: always JSON, always 201/400/413/429/503.

The examples are not stored (``database=None``): nothing is written into the repository.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpyc_webrtc import programs, wire
from mpyc_webrtc.wire import CLIENT_MESSAGES, SERVER_MESSAGES, ErrorCode, SignalingError
from signaling.app import REGISTRY, create_app
from signaling.endpoint import Endpoint
from signaling.registry import Registry
from testbed.sans_io import TWO_PARTIES, Later, create_request, decoded

TOKEN = "f" * 43
TOKEN_HASH = hashlib.sha256(TOKEN.encode()).hexdigest()
KNOWN_CODES = {str(c) for c in ErrorCode}
FIELD_NAMES = sorted({f.name for fields in CLIENT_MESSAGES.values() for f in fields}
                     | {"v", "type", "from", "session", "to"})


# --- what a valid server message is ------------------------------------------------------------

def check_server_message(msg: Any) -> None:
    """``msg`` is one of ``wire.SERVER_MESSAGES``, with exactly its fields (a relayed
    ``signal`` may carry through extra fields its sender added, see below)."""
    assert isinstance(msg, dict), msg
    assert msg.get("v") == wire.VERSION, msg
    type_ = msg.get("type")
    assert type_ in SERVER_MESSAGES, msg
    fields = {"v", "type", *SERVER_MESSAGES[type_]}
    assert fields <= set(msg), msg
    if type_ != "signal":
        assert set(msg) == fields, msg
    if type_ == "error":
        assert msg["code"] in KNOWN_CODES, msg
        assert msg["code"] != "internal_error", msg  # a bug in the server
        assert isinstance(msg["message"], str) and msg["message"].strip(), msg
    elif type_ == "signal":
        assert isinstance(msg["from"], int) and isinstance(msg["seq"], int), msg
        assert isinstance(msg["box"], str), msg
    elif type_ == "welcome":
        assert isinstance(msg["pid"], int) and 0 <= msg["pid"] < msg["parties"], msg
    elif type_ == "roster":
        assert len(msg["members"]) <= msg["parties"], msg
    wire.encode(msg)  # the I/O layer can always send it


# --- strategies --------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | \
    st.floats(allow_nan=False) | st.text(max_size=20)
_flat = st.one_of(st.lists(json_scalars, max_size=3),
                  st.dictionaries(st.text(max_size=6), json_scalars, max_size=3))
#: JSON values two levels deep (``st.recursive`` is much slower to draw, for little more).
json_values = st.one_of(json_scalars, _flat, st.lists(_flat, max_size=3),
                        st.dictionaries(st.text(max_size=6), _flat, max_size=3))
#: Strings that break things: surrogates (paired and not), NUL, RTL marks, long runs.
odd_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None, categories=["Cs", "Cc", "Co", "Cf", "Zs"]),
            max_size=20),
    st.sampled_from(["\ud800", "\udfff", "a\ud83d", "\ud83d\ude00", "\x00", "\u202e", "",
                     " ", "\ufeff", "%s%n", "'; DROP TABLE", "../../etc/passwd"]),
    st.integers(0, 3).map(lambda k: "x" * (10 ** k * 7)),
)
any_value = st.one_of(json_scalars, odd_text, json_values,
                      st.sampled_from([0, 1, 2, 3, -1, 31, 32, 2**31, 2**63, -2**63, 10**30,
                                       True, False, None, [], {}, 1.0, -0.0, math.inf]))
odd_ints = st.one_of(st.integers(-3, 5), st.integers(), st.sampled_from([2**53, -2**63]))


#: Stand-ins for the ids of the sessions a test made; ``with_sessions`` puts those in.
PLACEHOLDERS = ("@session-0@", "@session-1@")


def with_sessions(frame: str | bytes, sids: list[str]) -> str | bytes:
    for placeholder, sid in zip(PLACEHOLDERS, sids + sids, strict=False):
        if isinstance(frame, str):
            frame = frame.replace(placeholder, sid)
        else:
            frame = frame.replace(placeholder.encode(), sid.encode())
    return frame


def message_from_fields() -> st.SearchStrategy[dict[str, Any]]:
    """Dicts built from the schema's field names, values right or wrong."""
    type_ = st.one_of(st.sampled_from(sorted(CLIENT_MESSAGES)), odd_text, any_value)
    fields = st.dictionaries(st.sampled_from(FIELD_NAMES), any_value, max_size=6)
    version = st.one_of(st.just(1), any_value)
    session = st.sampled_from(PLACEHOLDERS) | odd_text
    return st.builds(lambda v, t, f, s, keep_v: {**({"v": v} if keep_v else {}), "type": t,
                                                  **f, **({"session": s} if "session" in f
                                                         else {})},
                     version, type_, fields, session, st.booleans())


def plausible() -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed client messages, with right or wrong tokens, pids and values."""
    sid = st.sampled_from(PLACEHOLDERS) | st.sampled_from(PLACEHOLDERS) | odd_text
    token = st.one_of(st.just(TOKEN), st.just(TOKEN_HASH), odd_text,
                      st.just(TOKEN[:-1] + "g"), st.just(TOKEN + "\ud800"))
    opt = st.fixed_dictionaries
    return st.one_of(
        st.builds(lambda s, tok, extra: {"v": 1, "type": "join", "session": s, "token": tok,
                                         **extra},
                  sid, token, opt({}, optional={"name": odd_text, "role": odd_ints,
                                                "ready": st.booleans()})),
        st.builds(lambda to, seq, box, extra: {"v": 1, "type": "signal", "to": to,
                                               "seq": seq, "box": box, **extra},
                  odd_ints, odd_ints, odd_text,
                  opt({}, optional={"from": odd_ints, "junk": any_value})),
        st.builds(lambda r, extra: {"v": 1, "type": "ready", "ready": r, **extra},
                  st.booleans(), opt({}, optional={"name": odd_text})),
        st.builds(lambda peer, state, extra: {"v": 1, "type": "link", "peer": peer,
                                              "state": state, **extra},
                  odd_ints, st.sampled_from(wire.LINK_STATES) | odd_text,
                  opt({}, optional={"path": st.sampled_from(wire.LINK_PATHS) | odd_text})),
        st.builds(lambda state, extra: {"v": 1, "type": "status", "state": state, **extra},
                  st.sampled_from(["done", "connected", "joined", "failed"]) | odd_text,
                  opt({}, optional={"detail": odd_text})),
    )


def frames() -> st.SearchStrategy[str | bytes]:
    """One WebSocket frame: text or bytes, JSON or not."""
    def dump(value: Any) -> str:
        return json.dumps(value)

    return st.one_of(
        plausible().map(dump),
        plausible().map(dump),
        message_from_fields().map(dump),
        json_values.map(dump),
        odd_text,                                            # not JSON (maybe surrogates)
        st.binary(max_size=64),                              # maybe not UTF-8
        plausible().map(lambda m: json.dumps(m).encode()),
        st.sampled_from(["[" * 5000, '{"v":1,"type":"join","session":' + "[" * 3000,
                         "x" * (wire.MAX_MESSAGE_BYTES + 1), '{"v":1}' + " " * 70000,
                         '{"v":1,"type":"status","state":"\ud800"}', "NaN", "1e999999",
                         '{"v":1,"type":"join","session":"a","token":"b","v":2}']),
    )


# --- (a) the sans-I/O core ---------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    """A registry with a few sessions and connections, and the consistency checks."""

    def __init__(self, burst: int, parties: list[int], joined: int = 0, ready: bool = True,
                 coalesce: bool = False):
        self.clock = Clock()
        #: The I/O layer's timer (rosters at most every 0.1 s), or none (every change at once).
        self.later = Later(self.clock) if coalesce else None
        self.registry = Registry(clock=self.clock, idle_timeout=60, max_age=600,
                                 message_burst=burst, message_rate=5.0, join_timeout=30,
                                 max_sessions_per_client=3, max_connections_per_client=4,
                                 session_messages=8, schedule=self.later)
        # "sum", or with 2 parties an uploaded program and no_privacy (create_request).
        self.sessions = [self.registry.create(create_request(n, TOKEN_HASH), f"10.0.0.{i % 2}")
                         for i, n in enumerate(parties)]
        self.conns: list[tuple[Endpoint, list[dict[str, Any]]]] = []
        for _ in range(3):
            self.connect()
        # A head start: some connections are already in the first session.
        for endpoint, _ in self.conns[:joined]:
            endpoint.receive(json.dumps({"v": 1, "type": "join", "session": self.sessions[0].id,
                                         "token": TOKEN, "ready": ready}))
        self.check()

    def connect(self) -> None:
        inbox: list[dict[str, Any]] = []
        client: str | None = f"10.0.0.{len(self.conns) % 2}"
        try:
            self.registry.check_connection_capacity(client)
        except SignalingError:  # too many from this address: here, one not counted
            client = None
        self.conns.append((Endpoint(self.registry, lambda m: inbox.append(decoded(m)),
                                    lambda: None, client), inbox))

    def tick(self, seconds: float) -> None:
        self.clock.now += seconds
        if self.later is not None:
            self.later.run()

    def check(self) -> None:
        reg = self.registry
        for _, inbox in self.conns:
            for msg in inbox:
                check_server_message(msg)
            inbox.clear()
        assert set(reg.unjoined) <= reg.endpoints
        assert len(reg.endpoints) <= len(self.conns)
        for sid, session in reg.sessions.items():
            assert session.id == sid
            assert len(session.members) <= session.parties
            assert all(0 <= pid < session.parties for pid in session.members)
            for pid, member in session.members.items():
                assert member.pid == pid
                if member.connected:
                    assert member.endpoint.session is session and member.endpoint.pid == pid
                    assert member.endpoint not in reg.unjoined
        counts = Counter(s.client for s in reg.sessions.values() if s.client is not None)
        assert reg.sessions_by_client == counts
        assert reg.connections_by_client == Counter(
            e.client for e in reg.endpoints if e.client is not None)
        assert max(reg.connections_by_client.values(), default=0) <= 4
        for session in reg.sessions.values():
            assert not session.closed and session.messages <= session.message_budget
        for endpoint, _ in self.conns:
            if endpoint.session is not None:
                assert endpoint.session.members[endpoint.pid].endpoint is endpoint


FRAMES = frames()
#: Frames that move a session along: a join with the right token, a signal to a real pid,
#: a ready, a link report, a status "done" (so rounds start, finish and start again).
#: Listed once (``sampled_from`` is far cheaper to draw than building them each time).
GOOD_FRAMES = (
    [json.dumps({"v": 1, "type": "join", "session": PLACEHOLDERS[i], "token": TOKEN,
                 "ready": ready, **({} if role is None else {"role": role}), **name})
     for i in (0, 0, 0, 1) for role in (None, None, None, -1, 0, 1, 2, 3)
     for ready in (True, True, False) for name in ({}, {"name": "\ud800 \u202e x"})]
    + [json.dumps({"v": 1, "type": "signal", "to": to, "seq": seq, "box": box})
       for to in (-1, 0, 1, 1, 2, 2, 3) for seq in (0, 1, 2) for box in ("x", "b" * 4000)] * 3
    + [json.dumps({"v": 1, "type": "ready", "ready": r}) for r in (True, False)] * 10
    + [json.dumps({"v": 1, "type": "link", "peer": peer, "state": state, "path": path})
       for peer in (-1, 0, 1, 2, 3) for state in wire.LINK_STATES for path in wire.LINK_PATHS]
    + ['{"v":1,"type":"status","state":"done"}'] * 20
    + ['{"v":1,"type":"status","state":"connected"}'] * 5)
WHO = range(4)
# Most actions are drawn whole from lists made once: hypothesis is much faster at that than
# at building tuples draw by draw, which matters at 10,000 examples.
good_action = st.sampled_from([("frame", who, f, 1) for who in WHO for f in GOOD_FRAMES])
#: The same frame many times at once: rate limits, and closing a flooding connection.
burst_action = st.sampled_from([("frame", who, f, n) for who in WHO
                                for f in GOOD_FRAMES[::5] for n in (5, 30)])
control_action = st.sampled_from(
    [("tick", dt, "", 1) for dt in (0.0, 0.01, 0.5, 5.0, 31.0, 61.0, 700.0)]
    + [("sweep", 0, "", 1)] * 3 + [("disconnect", who, "", 1) for who in WHO]
    + [("connect", 0, "", 1)] * 2)
actions = st.one_of(
    st.tuples(st.just("frame"), st.sampled_from(WHO), FRAMES, st.just(1)),
    good_action, good_action, good_action, burst_action, control_action, control_action)
SETUPS = [(burst, parties, joined, ready, coalesce) for burst in (3, 200)
          for parties in ([2], [3], [2, 3], [3, 2]) for joined in (0, 1, 2, 3)
          for ready in (True, False) for coalesce in (False, True)]


@settings(max_examples=10_000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(setup=st.sampled_from(SETUPS), script=st.lists(actions, min_size=1, max_size=6))
def test_endpoint_receive_survives_anything(setup, script):
    world = World(*setup)
    sids = [s.id for s in world.sessions]
    for kind, who, frame, times in script:
        if kind == "frame":
            endpoint, _ = world.conns[who % len(world.conns)]
            frame = with_sessions(frame, sids)
            for _ in range(times):
                endpoint.receive(frame)
        elif kind == "tick":
            world.tick(who)
        elif kind == "sweep":
            world.registry.sweep()
        elif kind == "disconnect":
            world.conns[who % len(world.conns)][0].disconnected()
        else:
            world.connect()
        world.check()


def test_relayed_signal_keeps_only_the_schema_fields():
    world = World(200, [3])
    (a, _), (b, inbox) = world.conns[:2]
    for endpoint in (a, b):
        endpoint.receive(json.dumps({"v": 1, "type": "join", "session": world.sessions[0].id,
                                     "token": TOKEN}))
    inbox.clear()
    a.receive(json.dumps({"v": 1, "type": "signal", "to": 1, "seq": 1, "box": "x",
                          "junk": "y" * 1000}))
    (relayed,) = inbox
    assert relayed == {"v": 1, "type": "signal", "from": 0, "seq": 1, "box": "x"}


# --- (b) and (c): the aiohttp app, driven from synchronous hypothesis tests -------------------

@pytest.fixture(scope="module")
def live() -> Iterator[tuple[asyncio.AbstractEventLoop, TestClient]]:
    """One server on 127.0.0.1 for a module's examples, on a loop of our own."""
    async def start() -> TestClient:
        client = TestClient(TestServer(create_app(max_sessions=100_000), host="127.0.0.1"))
        await client.start_server()
        return client

    loop = asyncio.new_event_loop()
    client = loop.run_until_complete(start())
    try:
        yield loop, client
    finally:
        loop.run_until_complete(client.close())
        loop.close()


SENTINEL = json.dumps({"v": 1, "type": "no-such-type"})


async def ws_case(client: TestClient, case: list[str | bytes]) -> None:
    registry = client.app[REGISTRY]
    sids = [registry.create({"parties": 3, "program": "sum", "token_hash": TOKEN_HASH}).id
            for _ in PLACEHOLDERS]
    async with client.ws_connect("/ws") as ws:
        for frame in case:
            frame = with_sessions(frame, sids)
            if isinstance(frame, str):
                await ws.send_str(frame.encode("utf-8", "replace").decode())
            else:
                await ws.send_bytes(frame)
        await ws.send_str(SENTINEL)
        while True:
            msg = await asyncio.wait_for(ws.receive(), 10)
            if msg.type != WSMsgType.TEXT:
                assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED), msg
                break  # closed on purpose (e.g. a frame over aiohttp's own size limit)
            doc = json.loads(msg.data)
            check_server_message(doc)
            if doc["type"] == "error" and doc["code"] == "unknown_type" and \
                    "no-such-type" in doc["message"]:
                break


ws_frames = st.one_of(
    FRAMES,
    plausible().map(json.dumps),
    st.sampled_from(['{"v":1,"type":"join","session":"@session-0@","token":"' + TOKEN + '"}']),
)


@settings(max_examples=500, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(case=st.lists(ws_frames, min_size=1, max_size=6))
def test_websocket_fuzz_keeps_the_server_answering(live, case):
    loop, client = live
    loop.run_until_complete(ws_case(client, case))


# (c) POST /api/sessions

SOURCES = st.one_of(
    st.just(programs.source("sum")), odd_text, st.text(max_size=200),
    st.sampled_from(["x = 1\n", "def f(:\n", "x=" + "+".join(["1"] * 50_000),
                     "-" * 100_000 + "1", "(" * 10_000, "a" + ".b" * 50_000, "\x00",
                     "x = '\ud800'", "await x\n", "#" * (256 * 1024 + 1)]),
)
BODY_FIELDS = {
    "parties": st.one_of(st.integers(1, 33), odd_ints, any_value),
    "program": st.one_of(st.sampled_from(sorted(programs.BUILTIN)), odd_text, any_value),
    "token_hash": st.one_of(st.just(TOKEN_HASH), st.just(TOKEN_HASH.upper()), odd_text,
                            any_value),
    "args": st.one_of(st.lists(odd_text, max_size=4), st.just(["--no-log"]), any_value),
    "labels": st.one_of(st.lists(odd_text, max_size=4), any_value),
    "source": SOURCES,
    "no_privacy": st.one_of(st.booleans(), any_value),
}
bodies = st.one_of(
    st.fixed_dictionaries({}, optional=BODY_FIELDS).map(json.dumps),
    st.fixed_dictionaries({"parties": st.integers(2, 4), "program": st.just("sum"),
                           "token_hash": st.just(TOKEN_HASH)},
                          optional={k: BODY_FIELDS[k]
                                    for k in ("args", "labels", "source", "no_privacy")}
                          ).map(json.dumps),
    json_values.map(json.dumps),
    st.binary(max_size=100),
    odd_text,
    st.sampled_from(["[" * 100_000, "{" * 10, "", "null", "NaN", "1e99999",
                     '{"parties":3,"program":"sum","token_hash":"' + TOKEN_HASH + '"}',
                     json.dumps(create_request(2, TOKEN_HASH)),
                     json.dumps({**TWO_PARTIES, "token_hash": TOKEN_HASH, "no_privacy": False}),
                     '{"parties": 2, "program": "sum", "x": "' + "y" * 600_000 + '"}']),
)


@settings(max_examples=2_000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(body=bodies, content_type=st.sampled_from(
    ["application/json", "text/plain", "application/json; charset=latin-1",
     "application/json; charset=nope", "application/x-www-form-urlencoded"]))
def test_create_session_fuzz_is_always_json_never_500(live, body, content_type):
    loop, client = live

    async def post() -> None:
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        resp = await client.post("/api/sessions", data=data,
                                 headers={"Content-Type": content_type})
        assert resp.status in (201, 400, 413, 429, 503), (resp.status, await resp.text())
        assert resp.content_type == "application/json"
        doc = await resp.json()
        if resp.status == 201:
            assert isinstance(doc["session"], str) and doc["joined"] == 0
        else:
            check_server_message(doc)
            assert doc["type"] == "error"

    loop.run_until_complete(post())


def test_after_the_fuzzing_a_normal_create_and_join_work(live):
    loop, client = live

    async def normal() -> None:
        resp = await client.post("/api/sessions", json={"parties": 3, "program": "sum",
                                                        "token_hash": TOKEN_HASH},
                                 headers={"X-Test": "normal"})
        assert resp.status in (201, 429), await resp.text()
        if resp.status == 429:  # (c) used up this address's sessions: make room
            client.app[REGISTRY].sessions_by_client.clear()
            resp = await client.post("/api/sessions", json={
                "parties": 3, "program": "sum", "token_hash": TOKEN_HASH})
        sid = (await resp.json())["session"]
        async with client.ws_connect("/ws") as ws:
            await ws.send_str(json.dumps({"v": 1, "type": "join", "session": sid,
                                          "token": TOKEN}))
            welcome = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            assert welcome["type"] == "welcome" and welcome["pid"] == 0

    loop.run_until_complete(normal())
