"""The aiohttp signaling server (signaling.app) over real HTTP and WebSockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from mpyc_webrtc import launch, programs, wire
from signaling.app import (
    MAX_REQUEST_BYTES,
    REGISTRY,
    WS_FRAME_LIMIT,
    AccessLog,
    create_app,
    drain,
)
from testbed.sans_io import TINY_SOURCE, create_request

TIMEOUT = 5.0
#: The session's join token (as in the link's #k=...) and the hash the server keeps.
TOKEN = "t" * 43
TOKEN_HASH = hashlib.sha256(TOKEN.encode()).hexdigest()
AUTH = {"token_hash": TOKEN_HASH}


#: The Redis that ``serve`` shares its sessions through, for the tests run with
#: ``backend`` "redis"; None: sessions in memory.
REDIS: dict[str, str | None] = {"url": None}


@pytest.fixture(autouse=True, params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs against a server that keeps its sessions in memory and against
    one that shares them through a real Redis (``--redis``)."""
    REDIS["url"] = request.getfixturevalue("redis_url") if request.param == "redis" else None
    yield request.param
    REDIS["url"] = None


@contextlib.asynccontextmanager
async def serve(**options: Any) -> AsyncIterator[TestClient]:
    if REDIS["url"] is not None:
        options.setdefault("redis", REDIS["url"])
    async with TestClient(TestServer(create_app(**options), host="127.0.0.1")) as client:
        yield client


async def new_session(client: TestClient, parties: int = 3, **body: Any) -> str:
    """Create a session of "sum" (with 2 parties, an uploaded program and no_privacy)."""
    resp = await client.post("/api/sessions", json=create_request(parties, TOKEN_HASH, **body))
    assert resp.status == 201, await resp.text()
    return (await resp.json())["session"]


async def open_sessions(client: TestClient) -> int:
    """How many sessions the server has open (in memory, or in Redis for all processes)."""
    if REDIS["url"] is None:
        return len(client.app[REGISTRY].sessions)
    import redis.asyncio as aioredis

    store = aioredis.from_url(REDIS["url"])
    try:
        return await store.zcard("mpyc-webrtc:sessions")
    finally:
        await store.aclose()


def shutdown_code(backend: str) -> str:
    """What a party is told when its server process shuts down: with Redis its session
    is kept (it reconnects), in memory it is lost."""
    return "reconnect" if backend == "redis" else "server_shutting_down"


async def recv(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    return await asyncio.wait_for(ws.receive_json(), TIMEOUT)


async def recv_types(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[dict[str, Any]]:
    return [await recv(ws) for _ in range(n)]


async def send(ws: aiohttp.ClientWebSocketResponse, type_: str, **fields: Any) -> None:
    await ws.send_str(json.dumps({"v": 1, "type": type_, **fields}))


async def expect_error(ws: aiohttp.ClientWebSocketResponse, code: str) -> dict[str, Any]:
    msg = await recv(ws)
    assert msg["type"] == "error", msg
    assert msg["code"] == code, msg
    assert msg["v"] == 1 and msg["message"]
    return msg


async def join(client: TestClient, sid: str, **fields: Any):
    """Open a WebSocket, join ``sid`` and return it with its welcome message."""
    ws = await client.ws_connect("/ws")
    fields.setdefault("ready", True)
    fields.setdefault("token", TOKEN)
    await send(ws, "join", session=sid, **fields)
    welcome = await recv(ws)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def assert_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED), msg
    assert ws.closed


# --- HTTP API ----------------------------------------------------------------------------------

async def test_create_session():
    async with serve() as client:
        resp = await client.post("/api/sessions",
                                 json={**AUTH, "parties": 3, "program": "sum",
                                       "args": ["--no-log"]})
        assert resp.status == 201
        body = await resp.json()
        sid = body["session"]
        program = body.pop("program")
        closes = body.pop("closes")
        assert closes["idle"] == 600.0 and closes["at"] > time.time() + 7 * 3600
        assert body.pop("settings") == {
            "parties": 3, "program": "sum", "args": ["--no-log"], "labels": ["", "", ""],
            "pins": ["", "", ""], "relay_only": False, "no_privacy": False}
        assert body == {
            "session": sid, "parties": 3, "labels": ["", "", ""], "members": [],
            "joined": 0, "started": False, "round": 0, "relay_only": False,
            "descriptor": None, "pins": ["", "", ""], "join_url": f"http://127.0.0.1:{client.port}/join/{sid}",
        }
        assert (program["name"], program["args"], program["builtin"]) == (
            "sum", ["--no-log"], True)
        assert program["source"] == programs.source("sum")
        assert body["join_url"].endswith(f"/join/{sid}")


async def test_create_session_with_uploaded_source():
    source = "from mpyc.runtime import mpc\nmpc.run(mpc.start())\nmpc.run(mpc.shutdown())\n"
    async with serve() as client:
        resp = await client.post("/api/sessions",
                                 json={**AUTH, "parties": 3, "program": "mine.py",
                                       "source": source})
        assert resp.status == 201
        body = await resp.json()
        assert body["program"]["name"] == "mine.py"
        assert body["program"]["builtin"] is False
        assert body["program"]["source"] == source
        ws, welcome = await join(client, body["session"])
        assert welcome["program"]["source"] == source
        await ws.close()


async def test_join_url_uses_public_url():
    async with serve(public_url="https://mpc.example.org/") as client:
        resp = await client.post("/api/sessions", json={**AUTH, "parties": 3, "program": "max"})
        body = await resp.json()
        assert body["join_url"] == f"https://mpc.example.org/join/{body['session']}"


async def test_create_session_bad_bodies_are_invalid_request():
    bodies = [
        {**AUTH, "parties": 1, "program": "sum"},
        {**AUTH, "parties": 33, "program": "sum"},
        {**AUTH, "parties": "3", "program": "sum"},
        {**AUTH, "parties": True, "program": "sum"},
        {**AUTH, "program": "sum"},
        {**AUTH, "parties": 3, "program": "nope"},
        {**AUTH, "parties": 3, "program": "sum", "args": ["-M3"]},
        {**AUTH, "parties": 3, "program": "sum", "args": ["--index=2"]},
        {**AUTH, "parties": 3, "program": "sum", "args": "--no-log"},
        {**AUTH, "parties": 3, "source": "def f(:\n"},
        {**AUTH, "parties": 3, "source": ""},
        {**AUTH, "parties": 3, "source": "\ud800"},
        {**AUTH, "parties": 3, "program": "sum", "args": ["\udc00"]},
        {"parties": 3, "program": "sum"},
        {"parties": 3, "program": "sum", "token_hash": TOKEN_HASH.upper()},
        {"parties": 3, "program": "sum", "token_hash": TOKEN},
        [3, "sum"],
        "sum",
        None,
    ]
    async with serve() as client:
        for body in bodies:
            resp = await client.post("/api/sessions", data=json.dumps(body),
                                     headers={"Content-Type": "application/json"})
            assert resp.status == 400, body
            assert resp.content_type == "application/json"
            doc = await resp.json()
            assert doc["type"] == "error" and doc["v"] == 1
            assert doc["code"] == "invalid_request", body
            assert doc["message"]


async def test_create_session_without_token_hash_is_400():
    async with serve() as client:
        for body in [{"parties": 3, "program": "sum"},
                     {"parties": 3, "program": "sum", "token_hash": TOKEN_HASH[:40]},
                     {"parties": 3, "program": "sum", "token_hash": 5}]:
            resp = await client.post("/api/sessions", json=body)
            assert resp.status == 400, body
            assert resp.content_type == "application/json"
            assert await resp.json() == {
                "v": 1, "type": "error", "code": "invalid_request",
                "message": "'token_hash' must be the SHA-256 (64 lowercase hex digits) of the "
                           "session's join token. The create page and 'mpyc-webrtc-peer "
                           "create' make it for you."}
        # Nothing was created, and the hash is never given back.
        resp = await client.post("/api/sessions", json={**AUTH, "parties": 3, "program": "sum"})
        assert resp.status == 201
        assert TOKEN_HASH not in await resp.text()


async def test_create_session_with_less_privacy_needs_no_privacy():
    """A built-in program needs 3 parties; a session that keeps inputs less private than it
    could (here threshold 0) is a 400 unless its creator allowed that with no_privacy."""
    no_privacy = launch.privacy_sentence(launch.privacy(2, []))
    assert no_privacy == launch.privacy_sentence(launch.privacy(3, ["-T0"]))
    async with serve() as client:
        for body in [{**AUTH, "parties": 2, "source": TINY_SOURCE},
                     {**AUTH, "parties": 2, "source": TINY_SOURCE, "no_privacy": False},
                     {**AUTH, "parties": 3, "program": "sum", "args": ["-T0"]}]:
            resp = await client.post("/api/sessions", json=body)
            assert resp.status == 400, body
            assert resp.content_type == "application/json"
            doc = await resp.json()
            assert (doc["v"], doc["type"], doc["code"]) == (1, "error", "invalid_request")
            assert doc["message"].startswith(no_privacy + " "), doc
            assert "'no_privacy'" in doc["message"], doc
        for no_privacy_field in ({}, {"no_privacy": True}):
            resp = await client.post("/api/sessions", json={
                **AUTH, "parties": 2, "program": "sum", **no_privacy_field})
            assert resp.status == 400
            assert await resp.json() == {"v": 1, "type": "error", "code": "invalid_request",
                                         "message": launch.BUILTIN_NEEDS_PARTIES}
        assert await open_sessions(client) == 0
        for body in [{**AUTH, "parties": 2, "source": TINY_SOURCE, "no_privacy": True},
                     {**AUTH, "parties": 3, "program": "sum", "args": ["-T0"],
                      "no_privacy": True}]:
            resp = await client.post("/api/sessions", json=body)
            assert resp.status == 201, await resp.text()
            sid = (await resp.json())["session"]
            info = await (await client.get(f"/api/sessions/{sid}")).json()
            assert info["parties"] == body["parties"]
        assert await open_sessions(client) == 2


async def test_create_session_syntax_error_names_the_line():
    async with serve() as client:
        resp = await client.post("/api/sessions",
                                 json={**AUTH, "parties": 3,
                                       "source": "x = 1\ndef f(:\n  pass\n"})
        assert resp.status == 400
        assert "line 2" in (await resp.json())["message"]


async def test_create_session_non_string_program_name_with_source_is_400():
    async with serve() as client:
        resp = await client.post("/api/sessions",
                                 json={**AUTH, "parties": 3, "source": "x = 1\n",
                                       "program": 5})
        assert resp.status == 400
        assert (await resp.json())["code"] == "invalid_request"


async def test_create_session_non_json_body_is_malformed_json():
    async with serve() as client:
        for data in [b"parties=3&program=sum", b"{", b"", b'{"parties": 3,}',
                     b'{"parties":3,"program":"\xff"}']:
            resp = await client.post("/api/sessions", data=data,
                                     headers={"Content-Type": "application/json"})
            assert resp.status == 400, data
            doc = await resp.json()
            assert doc["type"] == "error"
            assert doc["code"] == "malformed_json", data


async def test_create_session_oversize_body_is_message_too_large():
    body = json.dumps({**AUTH, "parties": 3, "source": "#" * (MAX_REQUEST_BYTES + 10)})
    async with serve() as client:
        resp = await client.post("/api/sessions", data=body,
                                 headers={"Content-Type": "application/json"})
        assert resp.status == 413
        assert (await resp.json())["code"] == "message_too_large"


async def test_create_session_server_busy():
    async with serve(max_sessions=1) as client:
        await new_session(client)
        resp = await client.post("/api/sessions", json={**AUTH, "parties": 3, "program": "sum"})
        assert resp.status == 503
        assert (await resp.json())["code"] == "server_busy"


async def test_get_session():
    async with serve() as client:
        sid = await new_session(client, parties=3)
        resp = await client.get(f"/api/sessions/{sid}")
        assert resp.status == 200
        body = await resp.json()
        assert body["session"] == sid
        assert body["joined"] == 0 and body["started"] is False
        assert body["join_url"].endswith(f"/join/{sid}")
        ws, _ = await join(client, sid)
        body = await (await client.get(f"/api/sessions/{sid}")).json()
        assert body["joined"] == 1
        await ws.close()


async def test_get_unknown_session_is_404():
    async with serve() as client:
        resp = await client.get("/api/sessions/does-not-exist")
        assert resp.status == 404
        doc = await resp.json()
        assert doc["type"] == "error"
        assert doc["code"] == "unknown_session"
        assert "does-not-exist" in doc["message"]


async def test_protocol_document():
    async with serve() as client:
        resp = await client.get("/api/protocol")
        assert resp.status == 200
        doc = await resp.json()
        assert doc == json.loads(json.dumps(wire.schema_document()))
        assert doc["relayed"] == ["chat", "signal"]
        assert doc["sealing"]["aad"] == "mpyc-webrtc v1 signal|{session}|{from}|{to}|{seq}"
        assert "bad_token" in doc["error_codes"]


async def test_join_page():
    async with serve() as client:
        sid = await new_session(client)
        resp = await client.get(f"/join/{sid}")
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
        assert (f"mpyc-webrtc-peer join 'http://127.0.0.1:{client.port}/join/{sid}#k=...&p=...'"
                in text)
        assert "secret part after the # sign" in text
        assert "--input" in text
        assert "3 parties" in text


async def test_join_page_unknown_session_is_404():
    async with serve() as client:
        resp = await client.get("/join/nope")
        assert resp.status == 404
        assert "'nope'" in await resp.text()


# --- WebSocket: errors -------------------------------------------------------------------------

async def test_ws_unknown_session():
    async with serve() as client:
        async with client.ws_connect("/ws") as ws:
            await send(ws, "join", session="no-such-session", token=TOKEN)
            await expect_error(ws, "unknown_session")


async def test_ws_wire_errors_keep_the_socket_open():
    cases = [
        ("{not json", "malformed_json"),
        ("[1, 2]", "malformed_json"),
        ('{"v":2,"type":"join","session":"x"}', "unsupported_version"),
        ('{"v":1,"type":"hello"}', "unknown_type"),
        ('{"v":1,"type":"join"}', "invalid_message"),
        ('{"v":1,"type":"signal","to":true,"seq":1,"box":"x"}', "invalid_message"),
        ('{"v":1,"type":"signal","to":1,"seq":1,"box":"x"}', "not_joined"),
        ('{"v":1,"type":"offer","to":1,"sdp":"x"}', "unknown_type"),
        ('{"v":1,"type":"status","state":"ok"}', "not_joined"),
    ]
    async with serve() as client:
        sid = await new_session(client, parties=3)
        async with client.ws_connect("/ws") as ws:
            for text, code in cases:
                await ws.send_str(text)
                await expect_error(ws, code)
            # Still usable afterwards.
            await send(ws, "join", session=sid, token=TOKEN)
            assert (await recv(ws))["type"] == "welcome"


async def test_ws_message_too_large_gets_a_json_answer():
    assert WS_FRAME_LIMIT > wire.MAX_MESSAGE_BYTES + 100
    async with serve() as client:
        sid = await new_session(client, parties=3)
        async with client.ws_connect("/ws") as ws:
            big = json.dumps({"v": 1, "type": "join", "session": sid, "token": TOKEN,
                              "name": "x" * wire.MAX_MESSAGE_BYTES})
            assert wire.MAX_MESSAGE_BYTES < len(big) < WS_FRAME_LIMIT
            await ws.send_str(big)
            err = await expect_error(ws, "message_too_large")
            assert str(wire.MAX_MESSAGE_BYTES) in err["message"]
            await send(ws, "join", session=sid, token=TOKEN)
            assert (await recv(ws))["pid"] == 0


async def test_ws_frame_over_the_aiohttp_limit_closes_only_that_socket():
    async with serve() as client:
        sid = await new_session(client, parties=3)
        ws = await client.ws_connect("/ws")
        await ws.send_str("x" * (WS_FRAME_LIMIT + 1))
        await assert_closed(ws)
        other, welcome = await join(client, sid)
        assert welcome["pid"] == 0
        await other.close()


async def test_ws_binary_frame_with_invalid_utf8_is_malformed_json():
    async with serve() as client:
        sid = await new_session(client, parties=3)
        async with client.ws_connect("/ws") as ws:
            await ws.send_bytes(b'{"v":1,"type":"join","session":"\xff\xfe"}')
            await expect_error(ws, "malformed_json")
            await ws.send_bytes(b"\x80\x81\x82")
            await expect_error(ws, "malformed_json")
            # A binary frame with valid JSON is handled like text.
            await ws.send_bytes(json.dumps({"v": 1, "type": "join", "session": sid,
                                            "token": TOKEN}).encode())
            assert (await recv(ws))["type"] == "welcome"


async def test_ws_join_with_a_wrong_token_is_bad_token():
    async with serve() as client:
        sid = await new_session(client, parties=3)
        a, _ = await join(client, sid)
        assert (await recv(a))["type"] == "roster"
        async with client.ws_connect("/ws") as ws:
            for token in ["wrong", "", TOKEN_HASH[:64], TOKEN + "t"]:
                await send(ws, "join", session=sid, token=token, ready=True)
                assert await recv(ws) == {
                    "v": 1, "type": "error", "code": "bad_token",
                    "message": "This link is incomplete or wrong: a join link ends with a "
                               "secret part after the # sign. Ask the person who created the "
                               "session for the whole link."}
            await send(ws, "join", session=sid, ready=True)  # no token at all
            err = await expect_error(ws, "invalid_message")
            assert "'token'" in err["message"]
            # Not joined: nobody saw a roster change, and the place is still free.
            await send(ws, "status", state="hello")
            await expect_error(ws, "not_joined")
            info = await (await client.get(f"/api/sessions/{sid}")).json()
            assert info["joined"] == 1 and info["started"] is False
            # The same socket joins with the right token.
            await send(ws, "join", session=sid, token=TOKEN, ready=True)
            welcome = await recv(ws)
            assert (welcome["type"], welcome["pid"]) == ("welcome", 1)
        # a's next messages are about the real join only.
        first = await recv(a)
        assert first["type"] == "roster" and [m["pid"] for m in first["members"]] == [0, 1]
        await a.close()


async def test_ws_already_joined():
    async with serve() as client:
        sid = await new_session(client)
        ws, _ = await join(client, sid)
        assert (await recv(ws))["type"] == "roster"
        await send(ws, "join", session=sid, token=TOKEN)
        await expect_error(ws, "already_joined")
        await ws.close()


async def test_ws_session_full():
    async with serve() as client:
        sid = await new_session(client, parties=3)
        a, _ = await join(client, sid)
        b, _ = await join(client, sid)
        c, _ = await join(client, sid)
        async with client.ws_connect("/ws") as d:
            await send(d, "join", session=sid, token=TOKEN)
            await expect_error(d, "session_full")
        for ws in (a, b, c):
            await ws.close()


async def test_ws_unknown_pid():
    async with serve() as client:
        sid = await new_session(client, parties=3)
        a, _ = await join(client, sid)
        b, _ = await join(client, sid)
        c, _ = await join(client, sid)
        await recv_types(a, 5)  # roster, roster, roster, start, roster
        await recv_types(b, 4)  # roster, roster, start, roster
        await recv_types(c, 3)  # roster, start, roster
        await send(a, "signal", to=5, seq=1, box="x")
        await expect_error(a, "unknown_pid")
        await send(a, "signal", to=0, seq=1, box="x")
        await expect_error(a, "unknown_pid")
        for ws in (a, b, c):
            await ws.close()


# --- WebSocket: sessions -----------------------------------------------------------------------

async def test_ws_three_party_flow_and_relay():
    async with serve(ice_servers=[{"urls": "stun:127.0.0.1:3478"}]) as client:
        sid = await new_session(client, parties=3)
        a, welcome_a = await join(client, sid, name="Alice")
        assert welcome_a == {
            "v": 1, "type": "welcome", "session": sid, "pid": 0, "parties": 3,
            "program": {"name": "sum", "args": [], "builtin": True},
            "labels": ["", "", ""], "ice_servers": [{"urls": "stun:127.0.0.1:3478"}],
            "relay_only": False, "descriptor": None, "pins": ["", "", ""],
        }
        roster = await recv(a)
        assert roster["members"] == [
            {"pid": 0, "name": "Alice", "label": "", "state": "joined", "ready": True,
             "identity": None}]

        b, welcome_b = await join(client, sid)
        assert welcome_b["pid"] == 1
        for ws in (a, b):
            roster = await recv(ws)
            assert [m["pid"] for m in roster["members"]] == [0, 1]
            assert roster["started"] is False

        c, welcome_c = await join(client, sid, name="Carol")
        assert welcome_c["pid"] == 2
        for ws in (a, b, c):
            first, start, last = await recv_types(ws, 3)
            assert first["type"] == "roster" and first["started"] is False
            assert start == {"v": 1, "type": "start", "parties": 3, "round": 1}
            assert last["type"] == "roster" and last["started"] is True
            assert [(m["pid"], m["name"], m["state"]) for m in last["members"]] == [
                (0, "Alice", "joined"), (1, "party 1", "joined"), (2, "Carol", "joined")]

        info = await (await client.get(f"/api/sessions/{sid}")).json()
        assert info["joined"] == 3 and info["started"] is True

        box = "bm9uY2Utbm9uY2UtY2lwaGVydGV4dA" * 100
        await send(a, "signal", to=2, seq=1, box=box)
        assert await recv(c) == {"v": 1, "type": "signal", "seq": 1, "box": box, "from": 0}
        await send(c, "signal", to=0, seq=1, box="answer-box")
        assert await recv(a) == {"v": 1, "type": "signal", "seq": 1, "box": "answer-box",
                                 "from": 2}
        await send(b, "signal", to=0, seq=2, box="candidate-box", **{"from": 2})
        assert await recv(a) == {"v": 1, "type": "signal", "seq": 2, "box": "candidate-box",
                                 "from": 1}

        # b got nothing from the a <-> c exchange: its next message is the status roster.
        await send(b, "status", state="connected")
        for ws in (a, b, c):
            roster = await recv(ws)
            assert roster["members"][1]["state"] == "connected"

        # A party leaving after start shows as "left".
        await c.close()
        for ws in (a, b):
            roster = await recv(ws)
            assert roster["members"][2]["state"] == "left"
        await a.close()
        await b.close()


async def test_ws_signal_relayed_between_two_clients():
    # A 2-party session: an uploaded program, created with no_privacy (see new_session).
    async with serve() as client:
        sid = await new_session(client, parties=2)
        a, _ = await join(client, sid)
        b, _ = await join(client, sid)
        assert [m["type"] for m in await recv_types(a, 4)] == [
            "roster", "roster", "start", "roster"]
        assert [m["type"] for m in await recv_types(b, 3)] == ["roster", "start", "roster"]
        await send(a, "signal", to=1, seq=1, box="offer-from-0")
        assert await recv(b) == {"v": 1, "type": "signal", "seq": 1, "box": "offer-from-0",
                                 "from": 0}
        await a.close()
        await b.close()


async def test_ws_close_before_start_frees_the_pid():
    async with serve() as client:
        sid = await new_session(client, parties=3)
        a, welcome_a = await join(client, sid)
        b, welcome_b = await join(client, sid)
        assert (welcome_a["pid"], welcome_b["pid"]) == (0, 1)
        await recv_types(a, 2)
        await recv(b)
        await a.close()
        roster = await recv(b)
        assert roster["started"] is False
        assert [m["pid"] for m in roster["members"]] == [1]
        c, welcome_c = await join(client, sid)
        assert welcome_c["pid"] == 0
        d, welcome_d = await join(client, sid)
        assert welcome_d["pid"] == 2
        types = [m["type"] for m in await recv_types(d, 3)]
        assert types == ["roster", "start", "roster"]
        for ws in (b, c, d):
            await ws.close()


async def test_ws_expiry_closes_the_socket_and_the_link_offers_the_settings():
    async with serve(max_age=0.3, sweep_interval=0.05) as client:
        sid = await new_session(client, parties=3, labels=["Alice", "Bob", "Carol"])
        ws, _ = await join(client, sid)
        assert (await recv(ws))["type"] == "roster"
        err = await expect_error(ws, "session_expired")
        assert err["message"] == ("This session was closed because it has been open longer "
                                  "than the server allows.")
        await assert_closed(ws)
        # A late joiner learns that it closed, and what it was, to create it again.
        resp = await client.get(f"/api/sessions/{sid}")
        assert resp.status == 410
        doc = await resp.json()
        assert doc["code"] == "session_expired" and doc["message"] == err["message"]
        assert doc["settings"] == {"parties": 3, "program": "sum", "args": [],
                                   "labels": ["Alice", "Bob", "Carol"], "pins": ["", "", ""],
                                   "relay_only": False, "no_privacy": False}
        async with client.ws_connect("/ws") as late:
            await send(late, "join", session=sid, token=TOKEN)
            await expect_error(late, "session_expired")


async def test_a_party_waiting_in_the_lobby_keeps_its_session_open():
    """Issue 18: an open lobby connection is activity (here ten idle timeouts pass)."""
    async with serve(idle_timeout=0.1, sweep_interval=0.02) as client:
        sid = await new_session(client, parties=3)
        ws, _ = await join(client, sid)
        assert (await recv(ws))["type"] == "roster"
        await asyncio.sleep(1.0)
        resp = await client.get(f"/api/sessions/{sid}")
        assert resp.status == 200
        assert (await resp.json())["closes"]["idle"] == 0.1
        await ws.close()


# --- the lobby's HTTP side ---------------------------------------------------------------------

async def test_program_library_lists_every_builtin_with_its_code():
    async with serve() as client:
        resp = await client.get("/api/programs")
        assert resp.status == 200
        library = await resp.json()
        assert [p["name"] for p in library] == list(programs.CATALOG)
        for entry in library:
            spec = programs.CATALOG[entry["name"]]
            assert entry["title"] == spec.title
            assert entry["input"] == spec.input.to_json()
            assert entry["source"] == programs.source(entry["name"])


async def test_create_page_and_vendored_code_are_served():
    async with serve() as client:
        page = await client.get("/")
        assert page.status == 200
        assert "create.js" in await page.text()
        prism = await client.get("/vendor/prismjs/prism.js")
        assert prism.status == 200
        assert prism.headers["Content-Type"].split(";")[0] in (
            "text/javascript", "application/javascript")
        assert (await client.get("/vendor/codejar/dist/codejar.js")).status == 200
        # Only the packages the pages use are served, and nothing outside them.
        assert (await client.get("/vendor/pyodide/package.json")).status == 404
        assert (await client.get("/vendor/prismjs/../pyodide/package.json")).status == 404


async def test_session_with_labels_via_http():
    async with serve() as client:
        resp = await client.post("/api/sessions", json={
            **AUTH, "parties": 3, "program": "vote",
            "labels": ["hospital A", "hospital B", "hospital C"]})
        assert resp.status == 201
        body = await resp.json()
        assert body["labels"] == ["hospital A", "hospital B", "hospital C"]
        bad = await client.post("/api/sessions", json={
            **AUTH, "parties": 3, "program": "vote", "labels": ["x", "x"]})
        assert bad.status == 400
        doc = await bad.json()
        assert doc["code"] == "invalid_request" and "'x'" in doc["message"]


def signed_join(who: Any, sid: str, resume: str) -> dict[str, str]:
    """A join's ``identity`` and ``proof`` for ``who`` (an ``identity.Identity``)."""
    from mpyc_webrtc.identity import join_statement
    from mpyc_webrtc.sealing import b64url_encode

    return {"identity": who.did, "proof": b64url_encode(who.sign(join_statement(sid, resume))),
            "resume": resume}


async def test_pins_are_checked_kept_and_shown_over_http():
    from mpyc_webrtc.identity import Identity

    alice = Identity.from_seed(bytes(32))
    labels = ["hospital A", "hospital B", "hospital C"]
    async with serve() as client:
        resp = await client.post("/api/sessions", json={
            **AUTH, "parties": 3, "program": "sum", "labels": labels, "pins": ["", alice.did]})
        assert resp.status == 201
        body = await resp.json()
        assert body["pins"] == ["", alice.did, ""]
        info = await (await client.get(f"/api/sessions/{body['session']}")).json()
        assert info["pins"] == ["", alice.did, ""]
        for pins, text in [
            (["", "did:key:zXYZ"], "The place 'hospital B' (party 2) is pinned to "
             "'did:key:zXYZ', which is not the did:key of an Ed25519 key."),
            ([""] * 4, "There are 4 pins for 3 parties: at most one per place."),
        ]:
            bad = await client.post("/api/sessions", json={
                **AUTH, "parties": 3, "program": "sum", "labels": labels, "pins": pins})
            assert bad.status == 400
            assert await bad.json() == {"v": 1, "type": "error", "code": "invalid_request",
                                        "message": text}
        assert await open_sessions(client) == 1


async def test_ws_a_pinned_place_admits_only_its_key():
    from mpyc_webrtc.identity import Identity

    alice, bob = Identity.from_seed(bytes(32)), Identity.generate()
    async with serve() as client:
        sid = await new_session(client, parties=3, pins=["", alice.did])
        ws = await client.ws_connect("/ws")
        await send(ws, "join", session=sid, token=TOKEN, role=1,
                   **signed_join(bob, sid, "b" * 22))
        refused = await expect_error(ws, "place_pinned")
        assert refused["message"].startswith(
            f"The place of party 2 is kept for someone else's key (fingerprint "
            f"{alice.fingerprint}); you joined with {bob.fingerprint}.")
        a, welcome = await join(client, sid, ready=False, **signed_join(alice, sid, "a" * 22))
        assert (welcome["pid"], welcome["pins"]) == (1, ["", alice.did, ""])
        roster = await recv(a)
        assert [(m["pid"], m["identity"]) for m in roster["members"]] == [(1, alice.did)]
        for sock in (ws, a):
            await sock.close()


async def test_ws_chat_is_relayed_in_the_lobby_and_dropped_for_an_absent_party():
    async with serve() as client:
        sid = await new_session(client, parties=3)
        a, _ = await join(client, sid, ready=False)
        b, _ = await join(client, sid, ready=False)
        await recv_types(a, 2)  # a's roster, and the one b's join made
        await recv(b)
        await send(a, "chat", to=1, seq=1, box="sealed-chat", text="never relayed")
        assert await recv(b) == {"v": 1, "type": "chat", "from": 0, "seq": 1,
                                 "box": "sealed-chat"}
        await send(a, "chat", to=2, seq=1, box="for nobody")  # place 2 is free
        await send(a, "status", state="joined-and-waiting")
        roster = await recv(a)  # the next thing a hears is the roster: no error came
        assert roster["type"] == "roster"
        assert roster["members"][0]["state"] == "joined-and-waiting"
        for ws in (a, b):
            await ws.close()


async def test_config_says_whether_relay_only_sessions_are_possible():
    from signaling.ice_servers import IceConfig

    async with serve() as client:
        assert await (await client.get("/api/config")).json() == {"relay": False,
                                                                  "stun": False}
        resp = await client.post("/api/sessions", json={**AUTH, "parties": 3, "program": "sum",
                                                        "relay_only": True})
        assert resp.status == 400
        body = await resp.json()
        assert body["code"] == "invalid_request"
        assert body["message"].startswith("This server has no TURN relay")
    ice = IceConfig(stun=("stun:h:3478",), turn=("turn:h:3478",), turn_secret="s")
    async with serve(ice=ice) as client:
        assert await (await client.get("/api/config")).json() == {"relay": True, "stun": True}
        sid = await new_session(client, parties=3, relay_only=True)
        ws, welcome = await join(client, sid)
        assert welcome["relay_only"] is True
        turn = welcome["ice_servers"][1]
        assert turn["urls"] == ["turn:h:3478"] and turn["username"].endswith(f":{sid}.0")
        await ws.close()


# --- For the operator: health, metrics, access log, draining ----------------------------------

async def test_healthz_says_ok_with_counts():
    async with serve() as client:
        sid = await new_session(client)
        ws, _ = await join(client, sid)
        resp = await client.get("/healthz")
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        assert await resp.json() == {"status": "ok", "sessions": 1, "connections": 1,
                                     "websockets": 1}
        await ws.close()


async def test_drain_tells_parties_closes_with_1001_and_refuses_newcomers(backend):
    async with serve() as client:
        sid = await new_session(client)
        joined, _ = await join(client, sid)
        await recv(joined)  # the roster
        unjoined = await client.ws_connect("/ws")
        await asyncio.sleep(0.05)  # the server holds both
        draining = asyncio.create_task(drain(client.app, 3.0))
        for ws in (joined, unjoined):
            err = await expect_error(ws, shutdown_code(backend))
            assert "shutting down" in err["message"]
        # Still draining: the parties have not answered the close yet.
        health = await client.get("/healthz")
        assert health.status == 503
        assert (await health.json())["status"] == "draining"
        resp = await client.post("/api/sessions", json=create_request(3, TOKEN_HASH))
        assert resp.status == 503 and resp.headers["Retry-After"] == "60"
        assert (await resp.json())["code"] == "server_shutting_down"
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await client.ws_connect("/ws")
        assert info.value.status == 503
        for ws in (joined, unjoined):
            msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
            assert msg.type == WSMsgType.CLOSE and msg.data == WSCloseCode.GOING_AWAY
        await asyncio.wait_for(draining, TIMEOUT)
        assert client.app[REGISTRY].endpoints == set()


async def test_drain_drops_a_party_that_does_not_close_in_time(backend):
    async with serve() as client:
        ws = await client.ws_connect("/ws", autoclose=False)
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(drain(client.app, 0.3), TIMEOUT)
        assert loop.time() - started < 1.0
        await expect_error(ws, shutdown_code(backend))
        msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert msg.type == WSMsgType.CLOSE  # the close frame; the client never answered it
        await ws.close()


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_count_messages_errors_relays_and_sessions():
    async with serve() as client:
        sid = await new_session(client, parties=2)
        a, _ = await join(client, sid)
        b, _ = await join(client, sid)
        await recv_types(a, 4)
        await recv_types(b, 3)
        await send(a, "signal", to=1, seq=1, box="offer")
        await recv(b)
        await send(a, "signal", to=0, seq=2, box="to myself")
        await expect_error(a, "unknown_pid")
        await a.send_str("{not json")
        await expect_error(a, "malformed_json")
        assert (await client.get("/api/sessions/nosuchsession")).status == 404

        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
        got = metric_samples(text)

        def value(name: str, **labels: str) -> float:
            return got[(name, tuple(sorted(labels.items())))]

        assert value("mpyc_webrtc_messages_received_total", type="join") == 2
        assert value("mpyc_webrtc_messages_received_total", type="signal") == 2
        assert value("mpyc_webrtc_messages_received_total", type="invalid") == 1
        assert value("mpyc_webrtc_messages_received_total", type="status") == 0
        assert value("mpyc_webrtc_messages_sent_total", type="welcome") == 2
        assert value("mpyc_webrtc_messages_sent_total", type="signal") == 1
        assert value("mpyc_webrtc_messages_sent_total", type="start") == 2
        assert value("mpyc_webrtc_errors_sent_total", code="unknown_pid") == 1
        assert value("mpyc_webrtc_errors_sent_total", code="malformed_json") == 1
        assert value("mpyc_webrtc_errors_sent_total", code="unknown_session") == 1  # HTTP
        assert value("mpyc_webrtc_errors_sent_total", code="server_shutting_down") == 0
        assert value("mpyc_webrtc_relay_latency_seconds_count") == 1
        assert 0 <= value("mpyc_webrtc_relay_latency_seconds_sum") < 1
        assert value("mpyc_webrtc_sessions", state="started") == 1
        assert value("mpyc_webrtc_sessions", state="lobby") == 0
        assert value("mpyc_webrtc_parties") == 2
        assert value("mpyc_webrtc_connections", state="joined") == 2
        assert value("mpyc_webrtc_connections", state="unjoined") == 0
        assert value("mpyc_webrtc_websockets_open") == 2
        # Counts only: no session id, nor anything a client sent.
        assert sid not in text and "offer" not in text and "nosuchsession" not in text
        for ws in (a, b):
            await ws.close()

    async with serve() as client:  # another app counts on its own
        got = metric_samples(await (await client.get("/metrics")).text())
        assert got[("mpyc_webrtc_messages_received_total", (("type", "join"),))] == 0


async def test_metrics_can_be_turned_off():
    async with serve(metrics=False) as client:
        assert (await client.get("/metrics")).status == 404
        assert (await client.get("/healthz")).status == 200


class ServerAsRun(TestServer):
    """The app run as ``mpyc-webrtc-server`` runs it (``signaling.cli.serve``): with its
    access log, and handlers that finish when their client leaves (not cancelled)."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        kwargs.update(handler_cancellation=False, access_log_class=AccessLog)
        return web.AppRunner(self.app, **kwargs)


async def test_access_log_names_the_session_and_the_party_and_no_secret(caplog):
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    async with TestClient(ServerAsRun(create_app(), host="127.0.0.1")) as client:
        sid = await new_session(client)
        await client.get(f"/api/sessions/{sid}?k=secret-looking")
        await client.get(f"/join/{sid}")
        ws, welcome = await join(client, sid)
        await ws.close()
        await client.get("/healthz")
        await client.get("/join/x%0Asession%20forged%0A" + "y" * 300)
        for _ in range(50):  # the WebSocket's line is written once its handler returns
            if any("/ws" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "aiohttp.access"]
    text = "\n".join(line for _, line in lines)
    assert re.search(r"^session - party -: 127\.0\.0\.1 POST /api/sessions 201 ", text, re.M)
    assert re.search(rf"^session {sid} party -: \S+ GET /api/sessions/{sid} 200 ", text, re.M)
    assert re.search(rf"^session {sid} party -: \S+ GET /join/{sid} 200 ", text, re.M)
    assert re.search(rf"^session {sid} party {welcome['pid']}: \S+ GET /ws 101 ", text, re.M)
    assert (logging.DEBUG, next(line for _, line in lines if "/healthz" in line)) in lines
    assert TOKEN not in text and "secret-looking" not in text
    assert "\nsession forged" not in text  # a path cannot start a line of its own
    assert re.search(r"GET /join/x%0Asession%20forged%0Ay+\.\.\. 404 ", text)


#: A party in the server's namespace: creates a session, joins it, then reports (one JSON
#: line each) what the server says once it is told to stop, what /healthz says meanwhile,
#: whether a new WebSocket is let in, and how its own socket is closed.
SHUTDOWN_PARTY = r"""
import asyncio, hashlib, json, sys
import aiohttp
from testbed.sans_io import create_request

TOKEN = "t" * 43

def say(**what):
    print(json.dumps(what), flush=True)

async def main(url):
    async with aiohttp.ClientSession() as http:
        body = create_request(3, hashlib.sha256(TOKEN.encode()).hexdigest())
        async with http.post(url + "/api/sessions", json=body) as resp:
            sid = (await resp.json())["session"]
        ws = await http.ws_connect(url + "/ws")
        await ws.send_json({"v": 1, "type": "join", "session": sid, "token": TOKEN})
        welcome = await ws.receive_json(timeout=10)
        await ws.receive_json(timeout=10)  # the roster
        say(joined=welcome["pid"])
        say(told=await ws.receive_json(timeout=30))
        async with http.get(url + "/healthz") as resp:
            say(health=resp.status, body=await resp.json())
        try:
            await http.ws_connect(url + "/ws")
            say(newcomer="let in")
        except aiohttp.WSServerHandshakeError as exc:
            say(newcomer=exc.status)
        closing = await ws.receive(timeout=30)
        say(closed=closing.type.name, code=closing.data)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.netns
def test_sigterm_tells_the_parties_drains_and_exits_0_within_the_timeout(backend):
    import signal
    import subprocess
    import sys
    import time

    from testbed.netns import Namespace, Server

    with Namespace() as ns:
        shared = ["--redis", REDIS["url"]] if REDIS["url"] else []
        server = Server(ns, 8080, "--shutdown-timeout", "3", *shared)
        party = ns.popen([sys.executable, "-c", SHUTDOWN_PARTY, server.url],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def said() -> dict[str, Any]:
            line = party.stdout.readline()
            assert line, party.stderr.read()
            return json.loads(line)

        assert said() == {"joined": 0}
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        told = said()["told"]
        assert told["type"] == "error" and told["code"] == shutdown_code(backend)
        assert told["message"].startswith(
            "This signaling server process is shutting down, but your session is kept"
            if shared else "The signaling server is shutting down.")
        health = said()
        assert health["health"] == 503 and health["body"]["status"] == "draining"
        assert said() == {"newcomer": 503}
        assert said() == {"closed": "CLOSE", "code": WSCloseCode.GOING_AWAY}
        assert party.wait(10) == 0
        assert server.proc.wait(3 + 2) == 0
        assert time.monotonic() - sent < 3 + 1
        assert any("shutting down" in line for line in server.log)


async def roster_until(ws: aiohttp.ClientWebSocketResponse, members: list[tuple[int, str]]
                       ) -> None:
    """Read rosters until one shows ``members`` as (pid, state)."""
    seen = None
    while seen != members:
        msg = await recv(ws)
        if msg["type"] == "roster":
            seen = [(m["pid"], m["state"]) for m in msg["members"]]


async def test_a_socket_its_client_closes_frees_the_place_a_dropped_one_keeps_it():
    """A page closed or a peer that is done sends a close frame: it left. A connection that
    just drops (no close frame: the network, a crash) keeps the place of a party that
    joined with a ``resume`` secret, until it comes back with it."""
    async with serve() as client:
        sid = await new_session(client)
        closing, _ = await join(client, sid, ready=False, resume="c" * 22)
        dropping, _ = await join(client, sid, ready=False, resume="d" * 22)
        watcher, _ = await join(client, sid, ready=False)
        await closing.close()
        await roster_until(watcher, [(1, "joined"), (2, "joined")])
        dropping._writer.transport.abort()  # no close frame: the TCP connection just ends
        await roster_until(watcher, [(1, "reconnecting"), (2, "joined")])
        back, welcome = await join(client, sid, ready=False, resume="d" * 22)
        assert welcome["pid"] == 1
        await roster_until(watcher, [(1, "joined"), (2, "joined")])
        newcomer, welcome = await join(client, sid, ready=False, resume="c" * 22)
        assert welcome["pid"] == 0  # the place that was left is free for anyone
        for ws in (back, newcomer, watcher):
            await ws.close()


# --- how a connection ended, after the start ----------------------------------------------------

async def roster_state(ws: aiohttp.ClientWebSocketResponse, pid: int, state: str) -> None:
    """Read rosters until party ``pid`` is in ``state``."""
    while True:
        msg = await recv(ws)
        if msg["type"] == "roster":
            found = next((m["state"] for m in msg["members"] if m["pid"] == pid), None)
            if found == state:
                return


async def raw_join(client: TestClient, sid: str, resume: str) -> asyncio.StreamWriter:
    """Join over a bare TCP connection speaking WebSocket by hand: the test can then end it
    as a process that is killed would, with no close frame."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /ws HTTP/1.1\r\nHost: {client.host}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    payload = json.dumps({"v": 1, "type": "join", "session": sid, "token": TOKEN,
                          "ready": True, "resume": resume}).encode()
    mask = os.urandom(4)
    assert 126 <= len(payload) < 1 << 16  # its length in the 16-bit form
    writer.write(bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask
                 + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    await writer.drain()
    return writer


async def test_after_the_start_how_a_connection_ended_decides_left_or_reconnecting():
    """Issue 18: a party whose connection is lost after the start (no pong within the
    heartbeat, or a close that is not "normal" or "going away") is ``reconnecting``: the
    others compute on over their links. One whose socket ended without a close frame (its
    process or page is gone) has ``left`` at once, as one that closed it normally."""
    async with serve(heartbeat=2.0) as client:
        sid = await new_session(client)
        joined = [await join(client, sid, resume=secret * 22) for secret in "ab"]
        watcher, _ = joined[0]
        killed = await raw_join(client, sid, "c" * 22)
        await roster_state(watcher, 2, "joined")
        killed.close()  # no close frame: its process is gone
        await roster_state(watcher, 2, "left")
        await joined[1][0].close(code=4000)  # a proxy's own code: not leaving
        await roster_state(watcher, 1, "reconnecting")
        quiet = await client.ws_connect("/ws", autoping=False)  # never answers a ping
        await send(quiet, "join", session=sid, token=TOKEN, ready=True, resume="b" * 22)
        await roster_state(watcher, 1, "joined")  # back in its place
        await roster_state(watcher, 1, "reconnecting")  # its pings went unanswered
