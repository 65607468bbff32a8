"""What one client can make the server do (issue 13, point 8): rosters are built and encoded
once per change and at most once per interval per session, a link report that tells
nothing new costs no broadcast, a session's parties have a message budget, and one client
address has a bounded number of WebSockets (an IPv6 address counts as its /64).

The sans-I/O core runs on a fake clock with a fake timer (``testbed.sans_io.Later``);
what needs the aiohttp layer (one encoding per broadcast, the connection cap) runs on
127.0.0.1. The CPU figures are in ``bench/signaling_attack.py``, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from mpyc_webrtc import wire
from mpyc_webrtc.client import SignalingClient
from mpyc_webrtc.wire import LINK_PATHS, LINK_STATES, ErrorCode
from signaling import session as session_module
from signaling.app import REGISTRY, create_app
from signaling.endpoint import Endpoint
from signaling.registry import Registry, client_key
from signaling.session import Encoded, Session
from testbed.sans_io import TOKEN, TOKEN_HASH, Clock, Later, Party, create_request

PATIENCE = 10.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


def started(registry: Registry, m: int, **body: Any) -> tuple[Session, list[Party]]:
    """An m-party session whose parties all joined ready: round 1 has started. (With m = 2,
    an uploaded program and the creator's no_privacy: see ``create_request``.)"""
    session = registry.create(create_request(m, **body))
    parties = [Party(registry) for _ in range(m)]
    for party in parties:
        party.join(session)
    assert session.started
    return session, parties


def count_rosters(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times any session builds its roster (one item per build)."""
    built: list[int] = []
    original = Session.roster

    def roster(self: Session) -> dict[str, Any]:
        built.append(1)
        return original(self)

    monkeypatch.setattr(Session, "roster", roster)
    return built


def last_roster(party: Party) -> dict[str, Any]:
    rosters = [m for m in party.take() if m["type"] == "roster"]
    assert rosters, "no roster"
    return rosters[-1]


# --- rosters: coalesced per session --------------------------------------------------------

def test_a_burst_of_changes_builds_the_roster_twice_and_everyone_gets_the_last(clock,
                                                                                 monkeypatch):
    later = Later(clock)
    registry = Registry(clock=clock, schedule=later, roster_interval=0.1, roster_burst=1)
    session, parties = started(registry, 32)
    clock.now += 1.0
    later.run()  # the roster after the start
    clock.now += 1.0
    built = count_rosters(monkeypatch)
    for party in parties:
        party.take()
    # 640 changes at once, within every rate limit: 20 status changes from each party.
    for i in range(20):
        for party in parties:
            party.send("status", state=f"step {i}")
    assert len(built) == 1  # the first change went out at once; the rest wait
    assert all(party.types() == ["roster"] for party in parties)
    clock.now += 0.1
    assert later.run() == 1
    assert len(built) == 2
    for party in parties:
        roster = last_roster(party)
        assert roster == json.loads(json.dumps(session.roster()))
        assert {m["state"] for m in roster["members"]} == {"step 19"}


def test_rosters_go_out_at_most_once_per_interval_while_changes_keep_coming(clock,
                                                                             monkeypatch):
    later = Later(clock)
    registry = Registry(clock=clock, schedule=later, roster_interval=0.1, roster_burst=1)
    session, parties = started(registry, 8)
    later.run()
    built = count_rosters(monkeypatch)
    # One change every 10 ms for 3 s (one party, 100 per second per party... spread).
    for i in range(300):
        clock.now += 0.01
        parties[i % 8].send("status", state=f"s{i}")
        later.run()
    clock.now += 1.0
    later.run()
    assert 20 <= len(built) <= 31  # one per interval (3 s / 0.1 s), not one per change
    assert last_roster(parties[0])["members"][299 % 8]["state"] == "s299"


def test_an_isolated_change_goes_out_at_once(clock):
    later = Later(clock)
    registry = Registry(clock=clock, schedule=later, roster_interval=0.1, roster_burst=1)
    session, (a, b, c) = started(registry, 3)
    clock.now += 5.0
    later.run()  # the roster after the start
    clock.now += 5.0
    b.take()
    a.send("status", state="connected")
    assert [m["state"] for m in last_roster(b)["members"]] == ["connected", "joined", "joined"]
    assert later.pending == []


def test_the_roster_before_a_start_is_sent_before_the_start(clock):
    later = Later(clock)
    registry = Registry(clock=clock, schedule=later, roster_interval=0.1, roster_burst=1)
    session = registry.create({"parties": 3, "program": "sum", "token_hash": TOKEN_HASH})
    a, b, c = (Party(registry) for _ in range(3))
    a.join(session)
    b.join(session)
    c.join(session)  # within the interval: its roster waits, but not behind the start
    got = [(m["type"], m.get("started"), len(m.get("members", []))) for m in a.take()]
    assert got == [("welcome", None, 0), ("roster", False, 1), ("roster", False, 3),
                   ("start", None, 0)]
    clock.now += 0.1
    later.run()
    (roster,) = a.take()
    assert roster["type"] == "roster" and roster["started"] is True


def test_a_session_that_changes_little_sees_every_change(clock, monkeypatch):
    """Within its allowance (600 // m² rosters at once, then 10 a second) a session gets a
    roster for every change, as a small honest session's whole life does; beyond it, one
    per interval."""
    later = Later(clock)
    registry = Registry(clock=clock, schedule=later)  # the defaults: 600 // 9 = 66, 0.1 s
    session, (a, b, c) = started(registry, 3)  # 3 joins and the start: 4 rosters
    assert session.roster_burst == 66
    built = count_rosters(monkeypatch)
    b.take()
    for i in range(62):
        a.send("status", state=f"s{i}")
    assert len(built) == 62 and [m["type"] for m in b.take()] == ["roster"] * 62
    for i in range(100):
        a.send("status", state=f"t{i}")
    assert len(built) == 62  # the allowance is spent: the rest waits
    clock.now += 0.1
    later.run()
    assert len(built) == 63
    assert last_roster(b)["members"][0]["state"] == "t99"
    clock.now += 60  # refilled, up to 66
    for i in range(80):
        a.send("status", state=f"u{i}")
    assert len(built) == 63 + 66
    assert registry.create({"parties": 32, "program": "sum",
                            "token_hash": TOKEN_HASH}).roster_burst == 1
    assert registry.create({"parties": 8, "program": "sum",
                            "token_hash": TOKEN_HASH}).roster_burst == 9


def test_a_closed_session_sends_no_late_roster(clock):
    later = Later(clock)
    registry = Registry(clock=clock, schedule=later, roster_interval=0.1, roster_burst=1,
                        idle_timeout=1)
    session, (a, b, c) = started(registry, 3)
    a.send("status", state="x")
    assert later.pending  # the roster waits: the allowance went on the joins and the start
    for party in (a, b, c):
        party.endpoint.disconnected()
    clock.now += registry.resume_grace  # nobody came back: the session is over
    registry.sweep()
    assert session.id not in registry.sessions
    b.take()
    c.take()
    clock.now += 1.0
    later.run()
    assert b.take() == c.take() == []


async def test_a_broadcast_is_encoded_once_for_all_parties(monkeypatch):
    encoded: list[str] = []
    original = wire.encode

    def encode(msg: dict[str, Any]) -> str:
        encoded.append(msg["type"])
        return original(msg)

    monkeypatch.setattr(wire, "encode", encode)
    monkeypatch.setattr(session_module, "encode", encode)
    async with TestClient(TestServer(create_app(), host="127.0.0.1")) as client:
        resp = await client.post("/api/sessions", json={
            "parties": 8, "program": "sum", "token_hash": TOKEN_HASH})
        sid = (await resp.json())["session"]
        sockets = []
        for _ in range(8):
            ws = await client.ws_connect("/ws")
            await ws.send_json({"v": 1, "type": "join", "session": sid, "token": TOKEN,
                                "ready": True})
            sockets.append(ws)
        registry = client.server.app[REGISTRY]
        (session,) = registry.sessions.values()

        async def until_quiet() -> list[list[dict[str, Any]]]:
            """What each socket gets until it has had nothing for 0.3 s."""
            async def drain(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
                got = []
                with contextlib.suppress(asyncio.TimeoutError):
                    while True:
                        got.append(await asyncio.wait_for(ws.receive_json(), 0.3))
                return got
            return list(await asyncio.gather(*map(drain, sockets)))

        await until_quiet()
        encoded.clear()
        await sockets[3].send_json({"v": 1, "type": "link", "peer": 5, "state": "connecting"})
        got = await until_quiet()
        assert [[m["type"] for m in messages] for messages in got] == [["roster"]] * 8
        (pair,) = [p for p in got[0][0]["pairs"] if (p["a"], p["b"]) == (3, 5)]
        assert pair["state"] == "signaling"  # the less advanced end; 3 said connecting
        assert encoded == ["roster"]  # once, not once per party
        assert session.members[3].links[5] == ("connecting", None)
        for ws in sockets:
            await ws.close()


# --- link reports: only news counts ---------------------------------------------------------

HONEST_SEQUENCES = {
    # A native peer (mpyc_webrtc/native/links.py): each step once, then closed at its end.
    "native": [("signaling", None), ("connecting", None), ("connected", "direct"),
               ("ready", "direct"), ("closed", None)],
    "native relayed, failed": [("signaling", None), ("connecting", None), ("failed", None),
                               ("closed", None)],
    # A browser (web/links.js state()): the path comes a moment after "connected", and the
    # connection may drop back to connecting before the channel opens.
    "browser": [("signaling", None), ("connecting", None), ("connected", None),
                ("connected", "relayed"), ("connecting", "relayed"), ("connected", "relayed"),
                ("ready", "relayed"), ("closed", "relayed"), ("failed", "relayed")],
    "browser failing early": [("signaling", None), ("failed", None), ("closed", None)],
}


@pytest.mark.parametrize("name", HONEST_SEQUENCES)
def test_what_honest_clients_report_is_never_refused(clock, name):
    registry = Registry(clock=clock)
    session, (a, b, c) = started(registry, 3)
    client = SignalingClient(session.id, "0" * 64, token=TOKEN)
    b.take()
    for state, path in HONEST_SEQUENCES[name]:
        for event in client.link_state(1, state, path):
            a.send(**{"type_": event["message"]["type"],
                      **{k: v for k, v in event["message"].items() if k not in ("v", "type")}})
    assert [m for m in a.take() if m["type"] == "error"] == []
    assert b.take(), "the reports reached the others"


def test_a_report_that_tells_nothing_new_sends_nothing(clock):
    registry = Registry(clock=clock)
    session, (a, b, c) = started(registry, 3)
    a.take()
    b.take()
    a.send("link", peer=1, state="connected", path="direct")
    assert b.types() == ["roster"]
    assert a.types() == ["roster"]
    for state, path in [("connecting", "direct"), ("signaling", None), ("connected", None),
                        ("connected", "direct"), ("connecting", None)]:
        a.send("link", peer=1, state=state, **({"path": path} if path else {}))
    assert b.take() == [] and a.take() == []  # dropped quietly: no error, no roster
    assert session.pairs()[0] == {"a": 0, "b": 1, "state": "signaling", "path": "direct"}
    a.send("link", peer=1, state="connected", path="relayed")  # relayed after all: news
    assert b.types() == ["roster"]
    assert [m["type"] for m in a.take()] == ["roster"]
    a.send("link", peer=1, state="ready")  # the path stays
    assert session.members[0].links[1] == ("ready", "relayed")
    a.send("link", peer=1, state="failed")
    a.take()
    b.take()
    for state in LINK_STATES:  # failed is final
        a.send("link", peer=1, state=state, path="direct")
    assert b.take() == [] and a.take() == []


def test_each_end_of_a_pair_changes_the_roster_a_bounded_number_of_times(clock):
    registry = Registry(clock=clock, session_messages=10**6)
    session, (a, b, c) = started(registry, 3)
    reports = [(s, p) for s in LINK_STATES for p in (None, *LINK_PATHS)]
    rng = random.Random(13)
    a.take()
    for _ in range(20):
        b.take()
        session.members[0].links.clear()
        for state, path in rng.choices(reports, k=400):
            a.send("link", peer=1, state=state, **({"path": path} if path else {}))
            clock.now += 1.0  # within the rate limit
        # 5 states x 3 paths, and failed: never more than 8 steps forward.
        assert 1 <= len(b.take()) <= 8
        assert [m for m in a.take() if m["type"] != "roster"] == []


def test_a_link_report_before_the_start_is_refused(clock):
    registry = Registry(clock=clock)
    session = registry.create({"parties": 3, "program": "sum", "token_hash": TOKEN_HASH})
    a, b = Party(registry), Party(registry)
    a.join(session)
    b.join(session)
    b.take()
    a.take()
    a.send("link", peer=1, state="connecting")
    assert a.codes() == ["invalid_message"]
    assert b.take() == []


def test_repeated_status_and_ready_send_nothing(clock):
    registry = Registry(clock=clock)
    session = registry.create({"parties": 3, "program": "sum", "token_hash": TOKEN_HASH})
    a, b = Party(registry), Party(registry)
    a.join(session, ready=False)
    b.join(session, ready=False)
    b.take()
    a.send("ready", ready=True)
    assert b.types() == ["roster"]
    a.send("ready", ready=True)
    a.send("status", state="waiting")
    a.send("status", state="waiting")
    assert b.types() == ["roster"]
    a.send("ready", ready=True, name="Alice")  # a new name is news
    assert b.types() == ["roster"]


# --- the session's message budget ------------------------------------------------------------

def test_a_session_over_its_budget_is_closed_for_everyone(clock):
    registry = Registry(clock=clock, session_messages=5)  # 5 x 2 x 2 = 20 messages
    session, (a, b) = started(registry, 2)
    assert session.message_budget == 20
    a.take()
    b.take()
    for i in range(20):
        (a if i % 2 else b).send("status", state=f"s{i % 3}")
        clock.now += 1.0
    assert session.id in registry.sessions and not a.closed
    a.send("status", state="one too many")
    for party in (a, b):
        (error,) = [m for m in party.take() if m["type"] == "error"]
        assert error["code"] == ErrorCode.TOO_MANY_MESSAGES == "too_many_messages"
        assert "more than 20 messages" in error["message"]
        assert party.closed == 1
    assert session.id not in registry.sessions and session.closed
    assert registry.sessions_by_client == {}


def test_refused_messages_count_too(clock):
    registry = Registry(clock=clock, session_messages=1)  # 4 messages for 2 parties
    session, (a, b) = started(registry, 2)
    for _ in range(4):
        a.endpoint.receive("{not json")
    assert session.id in registry.sessions
    a.send("link", peer=0, state="ready")  # unknown_pid, and the fifth
    assert session.id not in registry.sessions


def honest_session(registry: Registry, m: int, rounds: int, candidates: int) -> Session:
    """Everything an honest m-party session of browsers sends: joins, a confirmed input,
    per pair an offer and an answer, ``candidates`` trickled candidates each way, every
    link state with its path (and a drop back to connecting), a status at the start and
    end of each round, and a vote to run again, ``rounds`` times; then everyone leaves."""
    session = registry.create(create_request(m))  # with m = 2, an uploaded program
    clock, later = registry.clock, registry.schedule
    assert isinstance(clock, Clock) and isinstance(later, Later)
    refused: list[dict[str, Any]] = []

    def record(msg: Any) -> None:
        # Broadcasts come encoded; what one party is told (an error) as a dict.
        if isinstance(msg, dict) and msg["type"] == "error":
            refused.append(msg)

    parties = [Endpoint(registry, record, lambda: None) for _ in range(m)]

    def send(party: Endpoint, type_: str, **fields: Any) -> None:
        clock.now += 0.001
        later.run()
        party.receive(json.dumps({"v": 1, "type": type_, **fields}))
        assert refused == []

    for party in parties:
        send(party, "join", session=session.id, token=TOKEN, ready=False)
    for party in parties:
        send(party, "ready", ready=True, name="someone")
    for pid, party in enumerate(parties):
        for peer in range(m):
            if peer != pid:
                send(party, "signal", to=peer, seq=1, box="offer or answer")
                for seq in range(candidates):
                    send(party, "signal", to=peer, seq=2 + seq, box="candidate")
                for state, path in HONEST_SEQUENCES["browser"][:-2]:
                    send(party, "link", peer=peer, state=state,
                         **({"path": path} if path else {}))
    for round_ in range(rounds):
        for party in parties:
            send(party, "status", state="connected")
        for party in parties:
            send(party, "status", state="done")
        if round_ < rounds - 1:
            for party in parties:
                send(party, "ready", ready=True)
            assert session.round == round_ + 2
    return session


@pytest.mark.parametrize(("m", "rounds"), [(2, 140), (3, 200), (8, 500), (32, 60)])
def test_an_honest_session_stays_within_the_default_budget(clock, m, rounds):
    registry = Registry(clock=clock, message_rate=1e9, schedule=Later(clock))
    session = honest_session(registry, m, rounds, candidates=20)
    assert session.id in registry.sessions
    # Far below it for the set-up; what is left allows many rounds of "run again".
    assert session.messages < session.message_budget == 250 * m * m
    print(f"m={m}: {session.messages} messages for {rounds} rounds, budget "
          f"{session.message_budget}")


# --- WebSockets per client address -----------------------------------------------------------

@pytest.mark.parametrize(("address", "key"), [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("[2001:db8:1:3::1]", "2001:db8:1:3::/64"),
    ("unknown", "unknown"),
    ("not an address", "not an address"),
])
def test_client_key(address, key):
    assert client_key(address) == key


def test_connections_per_client_address(clock):
    registry = Registry(clock=clock, max_connections_per_client=2)
    key = client_key("2001:db8::1")
    a, b = Party(registry, key), Party(registry, client_key("2001:db8::2"))
    with pytest.raises(wire.SignalingError) as refused:
        registry.check_connection_capacity(client_key("2001:db8::ffff:3"))
    assert refused.value.code == ErrorCode.TOO_MANY_CONNECTIONS
    assert "2 connections" in refused.value.message
    registry.check_connection_capacity(client_key("2001:db8:0:1::1"))  # another /64
    registry.check_connection_capacity(None)  # not counted
    a.endpoint.disconnected()
    a.endpoint.disconnected()  # once only
    registry.check_connection_capacity(key)
    assert registry.connections_by_client == {"2001:db8::/64": 1}
    b.endpoint.disconnected()
    assert registry.connections_by_client == {}


@contextlib.asynccontextmanager
async def serve(**options: Any) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(**options), host="127.0.0.1")) as client:
        yield client


async def test_a_websocket_beyond_the_per_client_cap_gets_too_many_connections():
    async with serve(max_connections_per_client=2) as client:
        first = await client.ws_connect("/ws")
        second = await client.ws_connect("/ws")
        third = await client.ws_connect("/ws")
        msg = await asyncio.wait_for(third.receive_json(), PATIENCE)
        assert msg["type"] == "error" and msg["code"] == "too_many_connections"
        assert msg["message"]
        closing = await asyncio.wait_for(third.receive(), PATIENCE)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await first.close()
        registry = client.server.app[REGISTRY]

        async def freed() -> None:
            while registry.connections_by_client.get("127.0.0.1") != 1:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(freed(), PATIENCE)
        fourth = await client.ws_connect("/ws")
        await fourth.send_json({"v": 1, "type": "status", "state": "x"})
        assert (await asyncio.wait_for(fourth.receive_json(), PATIENCE))["code"] == \
            "not_joined"
        for ws in (second, fourth):
            await ws.close()


async def test_forwarded_ipv6_addresses_count_per_64():
    async with serve(max_connections_per_client=1, trust_forwarded_for=True) as client:
        def via(address: str) -> dict[str, str]:
            return {"X-Forwarded-For": f"198.51.100.1, {address}"}

        first = await client.ws_connect("/ws", headers=via("2001:db8:5:6::1"))
        same_64 = await client.ws_connect("/ws", headers=via("2001:db8:5:6:ffff::2"))
        assert (await asyncio.wait_for(same_64.receive_json(), PATIENCE))["code"] == \
            "too_many_connections"
        other_64 = await client.ws_connect("/ws", headers=via("2001:db8:5:7::1"))
        await other_64.send_json({"v": 1, "type": "status", "state": "x"})
        assert (await asyncio.wait_for(other_64.receive_json(), PATIENCE))["code"] == \
            "not_joined"
        for ws in (first, same_64, other_64):
            await ws.close()


def test_the_new_codes_are_in_the_protocol_documents_error_table():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    for code in (ErrorCode.TOO_MANY_CONNECTIONS, ErrorCode.TOO_MANY_MESSAGES):
        assert f"| `{code}` |" in doc


def test_encoded_is_the_wire_text():
    msg = wire.message("start", parties=3, round=1)
    assert Encoded.of(msg) == Encoded("start", '{"v":1,"type":"start","parties":3,"round":1}')


# --- the benchmark ---------------------------------------------------------------------------

async def test_signaling_cpu_benchmark_smoke():
    """bench/signaling_cpu.py runs, against this tree and a git revision, and prints every
    figure (a smoke run: tiny numbers, no time bound)."""
    from bench import signaling_cpu

    text = await signaling_cpu.run("HEAD", (3,), per_party=3, attack_per_party=2,
                                   sustain=0.5)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("type"))
    assert header.split() == ["type", "m", "at", "HEAD", "now", "ratio"]
    for kind in signaling_cpu.TYPES:
        (row,) = [line.split() for line in lines if line.startswith(f"{kind} ")]
        assert row[1] == "3" and float(row[2]) > 0 and float(row[3]) > 0, row
        assert row[4].endswith("x")
    rows = {line[:22].strip(): line[22:].split() for line in lines}
    assert rows["messages"] == ["64", "64", rows["messages"][2]]
    assert int(rows["messages"][2]) > 64  # the sustained phase, this tree only
    assert len(rows["bystander p99 ms"]) == 3
    assert all(float(x) >= 0 for x in rows["server CPU s"])
