"""The signaling server's abuse limits: each limit refuses in JSON, with a code and a sentence.

The sans-I/O core is driven with a fake clock; what needs real sockets (Origin, HTTP 429,
bounded outboxes, heartbeats, closing idle connections, JSON 500s) runs against the aiohttp
app on 127.0.0.1. No test measures wall-clock time: waits for the server to act (a sweep,
a heartbeat) poll with a generous upper bound that only turns a hang into a failure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from mpyc_webrtc import wire
from mpyc_webrtc.wire import ErrorCode
from signaling import app as server
from signaling.app import REGISTRY, create_app
from signaling.cli import parse_args
from signaling.connection import Connection
from signaling.registry import Registry
from signaling.session import Session
from testbed.sans_io import TOKEN, TOKEN_HASH, Clock, Party

REPO = Path(__file__).resolve().parent.parent
BODY = {"parties": 3, "program": "sum", "token_hash": TOKEN_HASH}
#: Upper bound for anything the server should do soon; only turns a hang into a failure.
PATIENCE = 10.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock: Clock, **limits: Any) -> Registry:
    return Registry(clock=clock, **limits)


# --- messages per second per connection (token bucket) ----------------------------------------

def test_burst_then_rate_limited_then_refilled(clock):
    registry = make(clock, message_burst=5, message_rate=2.0)
    a = Party(registry)
    for _ in range(5):
        a.send("status", state="x")
    assert a.codes() == ["not_joined"] * 5  # handled: within the burst
    a.send("status", state="x")
    assert a.codes() == ["rate_limited"]
    clock.now += 1.0  # two more tokens
    a.send("status", state="x")
    a.send("status", state="x")
    a.send("status", state="x")
    assert a.codes() == ["not_joined", "not_joined", "rate_limited"]
    clock.now += 1000.0  # the bucket refills to the burst, not more
    for _ in range(6):
        a.send("status", state="x")
    assert a.codes() == ["not_joined"] * 5 + ["rate_limited"]
    assert a.closed == 0


def test_a_refused_message_is_not_handled(clock):
    registry = make(clock, message_burst=1, message_rate=1.0)
    session = registry.create(BODY)
    a = Party(registry)
    a.send("status", state="x")
    a.take()
    a.join(session)
    assert a.codes() == ["rate_limited"]
    assert session.members == {}
    clock.now += 1.0
    a.join(session)
    assert a.take()[0]["type"] == "welcome"


def test_rate_limited_message_says_the_rate():
    clock = Clock()
    registry = make(clock, message_burst=1, message_rate=7.0)
    a = Party(registry)
    a.send("status", state="x")
    a.take()
    a.send("status", state="x")
    (msg,) = a.take()
    assert msg["code"] == "rate_limited" and "7 per second" in msg["message"]


def test_a_dump_of_three_times_the_burst_closes_the_connection(clock):
    registry = make(clock, message_burst=10, message_rate=1.0)
    a = Party(registry)
    for _ in range(30):  # 10 handled, 20 refused: exactly 3x, still open
        a.send("status", state="x")
    assert a.closed == 0
    a.send("status", state="x")
    assert a.closed == 1
    codes = a.codes()
    assert codes == ["not_joined"] * 10 + ["rate_limited"] * 21
    assert "closed" in a.endpoint.closed * "closed"
    a.send("status", state="x")  # after close: ignored, nothing sent
    assert a.take() == [] and a.closed == 1


@pytest.mark.parametrize("factor, closes", [(2.8, False), (3.3, True)])
def test_sustained_flooding_over_three_times_the_rate_closes(clock, factor, closes):
    rate = 10.0
    registry = make(clock, message_burst=20, message_rate=rate)
    a = Party(registry)
    step = 1 / (rate * factor)
    for _ in range(int(120 / step)):  # two minutes of fake time
        clock.now += step
        a.send("status", state="x")
        if a.closed:
            break
    a.take()
    assert bool(a.closed) is closes


def test_each_connection_has_its_own_bucket(clock):
    registry = make(clock, message_burst=2, message_rate=1.0)
    a, b = Party(registry), Party(registry)
    for _ in range(3):
        a.send("status", state="x")
    assert a.codes()[-1] == "rate_limited"
    b.send("status", state="x")
    assert b.codes() == ["not_joined"]


# --- sessions per client address ---------------------------------------------------------------

def test_sessions_per_client_address(clock):
    registry = make(clock, max_sessions_per_client=3, idle_timeout=60)
    first = [registry.create(BODY, "10.0.0.1") for _ in range(3)]
    with pytest.raises(wire.SignalingError) as info:
        registry.create(BODY, "10.0.0.1")
    assert info.value.code == ErrorCode.TOO_MANY_SESSIONS
    assert "3 open sessions" in info.value.message
    registry.create(BODY, "10.0.0.2")  # another address has its own count
    registry.create(BODY)  # the operator's own (no address) is not counted
    assert registry.sessions_by_client == {"10.0.0.1": 3, "10.0.0.2": 1}
    clock.now += 61
    assert set(registry.expire()) >= set(first)
    assert registry.sessions_by_client == {}  # no empty entries left behind
    registry.create(BODY, "10.0.0.1")


def test_invalid_requests_do_not_count(clock):
    registry = make(clock, max_sessions_per_client=1)
    for _ in range(5):
        with pytest.raises(wire.SignalingError):
            registry.create({**BODY, "parties": 1}, "10.0.0.1")
    registry.create(BODY, "10.0.0.1")


def test_session_expiry_frees_the_address_count_even_when_over(clock):
    registry = make(clock, max_sessions_per_client=1)
    session = registry.create(BODY, "10.0.0.1")
    a, b, c = Party(registry), Party(registry), Party(registry)
    a.join(session)
    b.join(session)
    c.join(session)  # all ready: started
    assert session.started
    a.endpoint.disconnected()
    b.endpoint.disconnected()
    c.endpoint.disconnected()
    clock.now += registry.resume_grace
    assert registry.expire() == [session]  # over and empty (nobody came back)
    registry.create(BODY, "10.0.0.1")


# --- total connections, never-joined connections ----------------------------------------------

def test_max_connections(clock):
    registry = make(clock, max_connections=2)
    a, b = Party(registry), Party(registry)
    with pytest.raises(wire.SignalingError) as info:
        registry.check_connection_capacity()
    assert info.value.code == ErrorCode.SERVER_BUSY and info.value.message
    a.endpoint.disconnected()
    a.endpoint.disconnected()  # twice is harmless
    registry.check_connection_capacity()
    assert registry.endpoints == {b.endpoint}


def test_a_connection_that_never_joins_is_closed(clock):
    registry = make(clock, join_timeout=60)
    session = registry.create(BODY)
    idle, joiner = Party(registry), Party(registry)
    joiner.join(session)
    joiner.take()
    clock.now += 60
    registry.sweep()
    assert idle.closed == 0 and idle.take() == []
    clock.now += 1
    registry.sweep()
    assert idle.codes() == ["not_joined"]
    assert idle.closed == 1
    assert joiner.closed == 0 and joiner.take() == []
    registry.sweep()  # only once
    assert idle.take() == [] and idle.closed == 1
    idle.endpoint.disconnected()
    assert registry.unjoined == {}


def test_failed_joins_do_not_keep_a_connection_open(clock):
    registry = make(clock, join_timeout=60)
    session = registry.create(BODY)
    a = Party(registry)
    for _ in range(10):
        clock.now += 10
        a.send("join", session=session.id, token="wrong")
    assert set(a.codes()) == {"bad_token"}
    registry.sweep()
    assert a.closed == 1


# --- idle and absolute expiry apply to sessions nobody joined ----------------------------------

def test_a_session_nobody_joined_expires_when_idle(clock):
    registry = make(clock, idle_timeout=60, max_age=1000)
    session = registry.create(BODY, "10.0.0.1")
    clock.now += 60
    assert registry.sweep() == []
    clock.now += 1
    assert registry.sweep() == [session]
    assert registry.sessions == {} and registry.sessions_by_client == {}


def test_a_session_nobody_joined_expires_at_max_age(clock):
    registry = make(clock, idle_timeout=10_000, max_age=100)
    session = registry.create(BODY)
    clock.now += 101
    assert registry.sweep() == [session]


# --- robustness of Endpoint.receive ------------------------------------------------------------

def test_deeply_nested_json_is_malformed_not_a_crash(clock):
    a = Party(make(clock))
    a.endpoint.receive("[" * 50_000)
    a.endpoint.receive('{"v":1,"type":"join","session":' + "[" * 30_000 + "]" * 30_000 + "}")
    assert a.codes() == ["malformed_json", "malformed_json"]


def test_text_with_an_unpaired_surrogate_is_malformed(clock):
    a = Party(make(clock))
    a.endpoint.receive('{"v":1,"type":"status","state":"\ud800"}')
    assert a.codes() == ["malformed_json"]
    # As a JSON escape it is just a (strange) string.
    a.endpoint.receive('{"v":1,"type":"status","state":"\\ud800"}')
    assert a.codes() == ["not_joined"]


def test_a_bug_in_the_core_becomes_internal_error_and_closes(clock, monkeypatch, caplog):
    registry = make(clock)
    session = registry.create(BODY)
    a, b, c = Party(registry), Party(registry), Party(registry)
    for party in (a, b, c):
        party.join(session)
    assert session.started
    a.take()

    def broken(*args: Any) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Session, "relay", broken)
    with caplog.at_level(logging.ERROR, logger="signaling"):
        a.send("signal", to=1, seq=1, box="x")
    (msg,) = a.take()
    assert msg["type"] == "error" and msg["code"] == "internal_error" and msg["message"]
    assert "ZeroDivisionError" not in msg["message"] and "Traceback" not in msg["message"]
    assert a.closed == 1
    assert any("internal error" in r.getMessage() for r in caplog.records)


def test_log_lines_name_session_and_party_and_never_the_content(clock, caplog):
    registry = make(clock, message_burst=3, message_rate=1.0)
    secret = "SECRET-CONTENT-7f3a"
    with caplog.at_level(logging.DEBUG, logger="signaling"):
        session = registry.create({**BODY, "parties": 3, "labels": [secret]})
        a, b = Party(registry), Party(registry)
        a.join(session, name=secret)
        a.send(secret)
        a.send("status", state=secret)
        a.send("status", state=secret)  # rate limited
        b.send("join", session=secret, token=secret)
        b.endpoint.receive(secret)
        clock.now += 61
        registry.sweep()
        a.endpoint.disconnected()
    lines = [r.getMessage() for r in caplog.records]
    assert lines
    for line in lines:
        assert secret not in line, line
        assert line.startswith("session ") and " party " in line, line
    assert any(f"session {session.id} party 0:" in line for line in lines)


# --- the aiohttp app ---------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def serve(**options: Any) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(**options), host="127.0.0.1")) as client:
        yield client


async def recv(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    return await asyncio.wait_for(ws.receive_json(), PATIENCE)


async def send(ws: aiohttp.ClientWebSocketResponse, type_: str, **fields: Any) -> None:
    await ws.send_str(json.dumps({"v": 1, "type": type_, **fields}))


async def expect_error(ws: aiohttp.ClientWebSocketResponse, code: str) -> dict[str, Any]:
    msg = await recv(ws)
    assert msg["type"] == "error" and msg["code"] == code, msg
    assert msg["v"] == 1 and msg["message"]
    return msg


async def expect_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        msg = await asyncio.wait_for(ws.receive(), PATIENCE)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return


async def new_session(client: TestClient, **body: Any) -> str:
    resp = await client.post("/api/sessions", json={**BODY, **body})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["session"]


async def join(client: TestClient, sid: str, **options: Any) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect("/ws", **options)
    await send(ws, "join", session=sid, token=TOKEN, ready=True)
    assert (await recv(ws))["type"] == "welcome"
    return ws


async def eventually(condition: Any) -> None:
    """Wait until ``condition()`` holds (polling), failing after ``PATIENCE`` seconds."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), PATIENCE)


def upgrade_headers(**extra: str) -> dict[str, str]:
    return {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), **extra}


async def test_foreign_origin_is_refused_with_403_json():
    async with serve() as client:
        for origin in ["http://evil.example", "null", "https://127.0.0.1:1",
                       f"http://127.0.0.1:{client.port + 1}", "not a url"]:
            resp = await client.get("/ws", headers=upgrade_headers(Origin=origin))
            assert resp.status == 403, origin
            doc = await resp.json()
            assert doc["type"] == "error" and doc["code"] == "forbidden_origin", doc
            assert doc["message"]
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await client.ws_connect("/ws", headers={"Origin": origin})
            assert info.value.status == 403


async def test_own_origin_allowed_origins_and_no_origin_are_accepted():
    async with serve(public_url="https://mpc.example.org/base",
                     allow_origins=["https://Pages.Example.com:443"]) as client:
        sid = await new_session(client, parties=5)
        for headers in [{}, {"Origin": f"http://127.0.0.1:{client.port}"},
                        {"Origin": f"HTTP://127.0.0.1:{client.port}/"},
                        {"Origin": "https://mpc.example.org"},
                        {"Origin": "https://pages.example.com"}]:
            ws = await join(client, sid, headers=headers)
            await ws.close()


async def test_too_many_sessions_from_one_address_is_429():
    async with serve(max_sessions_per_client=2) as client:
        await new_session(client)
        await new_session(client)
        # X-Forwarded-For is not trusted unless enabled: it does not get around the count.
        resp = await client.post("/api/sessions", json=BODY,
                                 headers={"X-Forwarded-For": "203.0.113.9"})
        assert resp.status == 429
        assert resp.headers["Retry-After"]
        doc = await resp.json()
        assert doc["code"] == "too_many_sessions" and doc["message"]


async def test_forwarded_for_counts_per_forwarded_address_when_trusted():
    async with serve(max_sessions_per_client=1, trust_forwarded_for=True) as client:
        for address in ["203.0.113.1", "203.0.113.2", "198.51.100.7, 203.0.113.3"]:
            resp = await client.post("/api/sessions", json=BODY,
                                     headers={"X-Forwarded-For": address})
            assert resp.status == 201
        resp = await client.post("/api/sessions", json=BODY,
                                 headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.2"})
        assert resp.status == 429
        counts = dict(client.app[REGISTRY].sessions_by_client)
        assert counts == {"203.0.113.1": 1, "203.0.113.2": 1, "203.0.113.3": 1}


async def test_total_connections_limit_closes_with_server_busy():
    async with serve(max_connections=1) as client:
        first = await client.ws_connect("/ws")
        await eventually(lambda: len(client.app[REGISTRY].endpoints) == 1)
        second = await client.ws_connect("/ws")
        await expect_error(second, "server_busy")
        await expect_closed(second)
        await first.close()
        await eventually(lambda: not client.app[REGISTRY].endpoints)
        third = await client.ws_connect("/ws")
        await send(third, "status", state="x")
        await expect_error(third, "not_joined")
        await third.close()


async def test_a_websocket_that_never_joins_is_closed():
    async with serve(join_timeout=0.2, sweep_interval=0.05) as client:
        sid = await new_session(client, parties=3)
        idle = await client.ws_connect("/ws")
        member = await join(client, sid)
        err = await expect_error(idle, "not_joined")
        assert "did not join" in err["message"]
        await expect_closed(idle)
        await eventually(lambda: len(client.app[REGISTRY].endpoints) == 1)
        assert (await recv(member))["type"] == "roster"  # the member stays
        await member.close()


async def test_sessions_nobody_joined_are_swept():
    async with serve(idle_timeout=0.2, sweep_interval=0.05, max_sessions_per_client=1) as client:
        sid = await new_session(client)
        await eventually(lambda: sid not in client.app[REGISTRY].sessions)
        assert (await client.get(f"/api/sessions/{sid}")).status == 410  # closed, not unknown
        await new_session(client)  # the address's count went down again


async def test_rate_limit_over_a_websocket_and_flood_close():
    async with serve(message_burst=3, message_rate=0.01) as client:
        ws = await client.ws_connect("/ws")
        for _ in range(3):
            await send(ws, "status", state="x")
            await expect_error(ws, "not_joined")
        await send(ws, "status", state="x")
        await expect_error(ws, "rate_limited")
        for _ in range(10):
            await send(ws, "status", state="x")
        codes = []
        while True:
            msg = await asyncio.wait_for(ws.receive(), PATIENCE)
            if msg.type != WSMsgType.TEXT:
                break
            codes.append(json.loads(msg.data)["code"])
        assert set(codes) == {"rate_limited"} and len(codes) == 6  # the 6th says "closed"
        assert ws.closed


async def test_dead_connections_are_dropped_by_the_heartbeat():
    async with serve(heartbeat=0.2) as client:
        sid = await new_session(client, parties=3)
        alive = await join(client, sid)
        rosters: list[dict[str, Any]] = []

        async def read() -> None:  # reading answers the server's pings
            async for msg in alive:
                rosters.append(json.loads(msg.data))

        reader = asyncio.create_task(read())
        dead = await join(client, sid, autoping=False)
        # ``dead`` never reads again, so it never answers a ping: the server drops it.
        await eventually(lambda: len(rosters) >= 3)  # alive's, dead's join, dead gone
        assert [len(r["members"]) for r in rosters[:3]] == [1, 2, 1]
        assert list(client.app[REGISTRY].sessions[sid].members) == [0]
        assert len(client.app[REGISTRY].endpoints) == 1
        await alive.close()
        await reader
        await dead.close()


async def test_a_client_that_does_not_read_is_dropped_not_buffered(caplog):
    caplog.set_level(logging.WARNING, logger="signaling")
    async with serve(max_outbox=20, message_burst=10_000, message_rate=10_000.0) as client:
        registry = client.app[REGISTRY]
        sid = await new_session(client)
        sender = await join(client, sid)
        stuck = await join(client, sid)  # reads nothing from here on
        bystander = await join(client, sid)  # gets only rosters
        box = "b" * 60_000
        # All ready: started. Relay to ``stuck`` until the server drops it; the kernel's
        # socket buffers take a few MB first, then at most 20 messages may wait.
        seq = 0
        while len(registry.sessions[sid].connected_members()) == 3:
            seq += 1
            assert seq < 2000, "the stuck client was never dropped"
            await send(sender, "signal", to=1, seq=seq, box=box)
            await asyncio.sleep(0)
        assert len(registry.endpoints) == 2 and not bystander.closed
        assert any(r.getMessage().startswith(f"session {sid} party 1: dropping the connection: "
                                              "it does not read its messages (20 messages")
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
        # The sender is told (roster: party 1 left) and the server goes on working.
        while True:
            msg = await recv(sender)
            if msg["type"] == "roster" and msg["started"] and \
                    msg["members"][1]["state"] == "left":
                break
        await send(sender, "signal", to=1, seq=seq + 1, box="x")
        await expect_error(sender, "unknown_pid")
        await sender.close()
        await stuck.close()
        await bystander.close()
        other = await new_session(client)
        ws = await join(client, other)
        await ws.close()


async def test_consecutive_rosters_waiting_collapse_into_the_newest():
    class FakeWS:
        async def send_str(self, text: str) -> None:
            await asyncio.Event().wait()  # stuck

    conn = Connection(FakeWS(), None, max_messages=3, max_bytes=10**6)  # type: ignore
    conn.send(wire.message("start", parties=2, round=1))
    await asyncio.sleep(0)  # the writer takes "start" and blocks on it
    for i in range(100):
        conn.send(wire.message("roster", parties=2, members=[], pairs=[], started=True,
                               round=i))
    assert [q.type for q in conn.queue] == ["roster"]
    assert json.loads(conn.queue[0].text)["round"] == 99
    conn.task.cancel()


async def test_an_unexpected_exception_is_a_json_500_without_traceback(monkeypatch):
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("SECRET-TRACE-DETAIL")

    async with serve() as client:
        monkeypatch.setattr(wire, "schema_document", boom)
        monkeypatch.setattr(Registry, "create", boom)
        for method, path in [("GET", "/api/protocol"), ("POST", "/api/sessions")]:
            resp = await client.request(method, path, json=BODY)
            assert resp.status == 500
            assert resp.content_type == "application/json"
            text = await resp.text()
            assert "Traceback" not in text and "SECRET-TRACE-DETAIL" not in text
            assert "RuntimeError" not in text
            doc = json.loads(text)
            assert doc["v"] == 1 and doc["type"] == "error"
            assert doc["code"] == ErrorCode.INTERNAL_ERROR == "internal_error" and doc["message"]
        monkeypatch.undo()
        await new_session(client)  # and the server goes on


async def test_a_bug_behind_a_websocket_closes_only_that_socket(monkeypatch):
    def broken(*args: Any) -> None:
        raise ZeroDivisionError("bug")

    async with serve() as client:
        sid = await new_session(client)
        a = await join(client, sid)
        await join(client, sid)
        await join(client, sid)  # all three ready: started
        monkeypatch.setattr(Session, "relay", broken)
        await send(a, "signal", to=1, seq=1, box="x")
        while (msg := await recv(a))["type"] != "error":
            pass
        assert msg["code"] == "internal_error"
        await expect_closed(a)
        monkeypatch.undo()
        ws = await join(client, await new_session(client))
        await ws.close()


async def test_unknown_api_routes_and_methods_are_json():
    async with serve() as client:
        resp = await client.get("/api/nothing-here")
        assert resp.status == 404
        doc = await resp.json()
        assert doc["code"] == "invalid_request" and "/api/nothing-here" in doc["message"]
        resp = await client.delete("/api/sessions")
        assert resp.status == 405
        assert "POST" in resp.headers["Allow"]
        doc = await resp.json()
        assert doc["code"] == "invalid_request" and "POST" in doc["message"]
        resp = await client.put("/api/protocol")
        assert resp.status == 405 and (await resp.json())["type"] == "error"


async def test_request_body_with_a_strange_charset_or_deep_nesting_is_400():
    async with serve() as client:
        for data, ctype, code in [
                (b'{"parties": 2}', "application/json; charset=no-such", "invalid_request"),
                (b"\xff", "application/json; charset=no-such", "malformed_json"),
                (b"[" * 100_000, "application/json", "malformed_json")]:
            resp = await client.post("/api/sessions", data=data, headers={"Content-Type": ctype})
            assert resp.status == 400
            assert (await resp.json())["code"] == code


# --- HTTP headers and odd paths ---------------------------------------------------------------

#: Every kind of thing the server answers: pages, the worker script, what the worker loads
#: (Pyodide, the Python archive), vendored code, the API, errors, the WebSocket upgrade.
async def _every_kind_of_response(client: TestClient) -> list[aiohttp.ClientResponse]:
    sid = await new_session(client)
    assets = await (await client.get("/api/assets")).json()
    answers = [await client.get(path, headers=headers) for path, headers in [
        ("/", {}), (f"/join/{sid}", {"Accept": "text/html"}), (f"/join/{sid}", {}),
        ("/web/join.js", {}), ("/web/worker.js", {}), ("/web/style.css", {}),
        ("/vendor/prismjs/prism.js", {}), (assets["python"], {}),
        (f"{assets['pyodide']}pyodide.mjs", {}), (f"{assets['pyodide']}pyodide.asm.js", {}),
        ("/api/protocol", {}), (f"/api/sessions/{sid}", {}), ("/api/nothing", {}),
        ("/web/no-such-file.js", {}), ("/no/such/page", {})]]
    answers.append(await client.post("/api/sessions", data=b"{"))
    answers.append(await client.get("/ws", headers=upgrade_headers()))
    return answers


async def test_every_response_has_the_security_headers_and_no_server_version():
    async with serve() as client:
        answers = await _every_kind_of_response(client)
        assert {r.status for r in answers} == {101, 200, 400, 404}, [
            (r.url.path, r.status) for r in answers]
        for resp in answers:
            where = f"{resp.url.path} ({resp.status})"
            assert "Server" not in resp.headers, where
            assert resp.headers["X-Content-Type-Options"] == "nosniff", where
            assert resp.headers["Referrer-Policy"] == "no-referrer", where
            assert resp.headers["Content-Security-Policy"] == server.CONTENT_SECURITY_POLICY, where


def test_the_content_security_policy_allows_no_inline_script_and_no_other_origin():
    directives = {d.split()[0]: d.split()[1:]
                  for d in server.CONTENT_SECURITY_POLICY.split("; ")}
    assert directives["default-src"] == ["'self'"]
    # Pages and the worker run only the server's own scripts; Pyodide compiles WebAssembly.
    assert directives["script-src"] == ["'self'", "'wasm-unsafe-eval'"]
    assert directives["connect-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["object-src"] == ["'none'"] and directives["base-uri"] == ["'none'"]
    for values in directives.values():
        assert "'unsafe-eval'" not in values and "*" not in values
    assert "'unsafe-inline'" not in directives["script-src"]


def test_the_pages_have_no_inline_script():
    for page in (REPO / "web").glob("*.html"):
        for tag in re.findall(r"<script\b[^>]*>", page.read_text()):
            assert re.search(r"\bsrc=", tag), f"{page.name}: inline {tag}"
        assert not re.search(r"\son[a-z]+\s*=", page.read_text()), page.name


@pytest.mark.parametrize("path", [
    "/web/%00", "/web/a%00b.js", "/vendor/prismjs/%00", "/pyodide/{version}/%00",
    "/web/" + "a" * 5000, "/web/" + "a/" * 3000 + "x", "/vendor/prismjs/" + "b" * 5000,
    "/pyodide/{version}/" + "c" * 5000, "/web/..%2f..%2fpyproject.toml",
    "/vendor/prismjs/..%2f..%2fpackage.json"])
async def test_odd_file_paths_are_404_without_a_traceback(path, caplog):
    caplog.set_level(logging.DEBUG)
    async with serve() as client:
        version = (await (await client.get("/api/assets")).json())["pyodide"].split("/")[2]
        resp = await client.get(path.format(version=version))
        assert resp.status == 404, await resp.text()
        assert "Traceback" not in await resp.text()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# --- the CLI -----------------------------------------------------------------------------------

def test_every_limit_has_a_cli_option_with_its_default():
    args = parse_args([])
    for name, default in server.DEFAULTS.items():
        assert getattr(args, name) == default, name
    args = parse_args(["--max-sessions-per-client", "3", "--message-rate", "5",
                       "--allow-origin", "https://a.example", "--allow-origin",
                       "https://b.example", "--trust-forwarded-for", "--join-timeout", "9"])
    assert args.max_sessions_per_client == 3 and args.message_rate == 5.0
    assert args.allow_origin == ["https://a.example", "https://b.example"]
    assert args.trust_forwarded_for and args.join_timeout == 9.0


# --- the load benchmark ------------------------------------------------------------------------

async def test_signaling_load_benchmark_smoke():
    from bench import signaling_load

    text = await signaling_load.run(2, signaling_load.Options(parties=3, candidates=2),
                                    in_process=True, timeout=60)
    rows = {line[:24].strip(): line[24:].split() for line in text.splitlines()}
    assert rows["sessions x parties"] == ["2", "x", "3", "2", "x", "3"]
    # sessions x pairs x both ways x (offer or answer + candidates), in each of the two runs
    assert rows["signals relayed"] == [str(2 * 3 * 2 * (1 + 2))] * 2
    assert len(rows["latency p99 ms"]) == 2 and "VmHWM" in text
