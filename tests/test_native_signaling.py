"""The native party's signaling connection (``mpyc_webrtc.native.signaling``) against a small
stand-in server on loopback (no WebRTC): a connection lost in the lobby is opened again and
the party joins again with the same resume secret, asking for its own place."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mpyc_webrtc import launch, wire
from mpyc_webrtc.native.errors import PeerError
from mpyc_webrtc.native.signaling import Signaling
from mpyc_webrtc.sealing import JoinSecret
from mpyc_webrtc.sentences import say

PROGRAM = {"name": "sum", "args": [], "builtin": True}
LINK_HASH = launch.program_hash(PROGRAM)
SECRET = bytes(range(32))
#: Sealed once, when the session is made: the server hands the same one to every join.
DESCRIPTOR = JoinSecret(SECRET, LINK_HASH).descriptor(2, [])


def welcome(pid: int) -> dict[str, Any]:
    return wire.message("welcome", session="S", pid=pid, parties=2, program=PROGRAM,
                        labels=["", ""], ice_servers=[], relay_only=False,
                        descriptor=DESCRIPTOR, pins=["", ""])


def roster(state: str) -> dict[str, Any]:
    return wire.message("roster", parties=2, members=[
        {"pid": 0, "name": "party 0", "label": "", "state": "joined", "ready": True},
        {"pid": 1, "name": "party 1", "label": "", "state": state, "ready": True}],
        pairs=[], started=False, round=0)


Answer = Callable[[int, dict[str, Any]], list[dict[str, Any]]]


class StandIn:
    """A signaling server that answers the n-th connection's join with ``answer(n, join)``
    and, if ``drop`` says so, closes that connection right after."""

    def __init__(self, answer: Answer, drop: Callable[[int], bool]):
        self.answer = answer
        self.drop = drop
        self.joins: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> StandIn:
        app = web.Application()
        app.router.add_get("/ws", self.ws)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        n = len(self.joins)
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            if message["type"] != "join":
                continue
            self.joins.append(message)
            for reply in self.answer(n, message):
                await ws.send_str(wire.encode(reply))
            if self.drop(n):
                break
        await ws.close()
        return ws


def signaling_to(server: StandIn) -> tuple[Signaling, list[str]]:
    signaling = Signaling(server.url, "S", secret=SECRET,
                          token=JoinSecret(SECRET, LINK_HASH).token, link_hash=LINK_HASH)
    news: list[str] = []
    signaling.on_news = news.append
    return signaling, news


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_a_connection_lost_in_the_lobby_is_opened_again_at_the_same_place():
    def answer(n: int, join: dict[str, Any]) -> list[dict[str, Any]]:
        return [welcome(1), roster("reconnecting" if n == 0 else "joined")]

    async with StandIn(answer, drop=lambda n: n == 0) as server:
        signaling, news = signaling_to(server)
        try:
            got = await signaling.join()
            assert got["pid"] == 1
            await until(lambda: len(server.joins) == 2 and signaling.client.phase == "lobby"
                        and "Reconnected: still party 2." in news)
            first, second = server.joins
            assert "role" not in first and second["role"] == 1
            assert first["resume"] == second["resume"] == signaling.client.resume
            assert wire.MIN_RESUME_LENGTH <= len(first["resume"]) <= wire.MAX_RESUME_LENGTH
            assert second["ready"] is True
            assert news == [say("reconnect.lost", attempt=1), say("reconnect.back", who="party 2")]
            assert not signaling.closed.is_set() and signaling.lost is None
            assert signaling.roster is not None
            assert signaling.roster["members"][1]["state"] == "joined"
        finally:
            await signaling.close()
        assert signaling.closed.is_set()
        await asyncio.sleep(0.7)  # past the first reconnect delay: closing means closed
        assert len(server.joins) == 2


async def test_a_session_the_server_lost_meanwhile_ends_with_a_sentence():
    def answer(n: int, join: dict[str, Any]) -> list[dict[str, Any]]:
        if n == 0:
            return [welcome(0)]
        return [wire.error_message(wire.ErrorCode.UNKNOWN_SESSION, "There is no session S.")]

    async with StandIn(answer, drop=lambda n: True) as server:
        signaling, news = signaling_to(server)
        try:
            await signaling.join()
            await until(signaling.closed.is_set)
            assert signaling.lost == say("rejoin.unknown_session")
            assert len(server.joins) == 2 and server.joins[1]["role"] == 0
            assert news == [say("reconnect.lost", attempt=1)]
        finally:
            await signaling.close()


async def test_a_server_out_of_reach_is_tried_again_with_backoff():
    """The first reconnect finds nothing listening; the second gets the place back."""
    def answer(n: int, join: dict[str, Any]) -> list[dict[str, Any]]:
        return [welcome(1)]

    async with StandIn(answer, drop=lambda n: n == 0) as server:
        signaling, news = signaling_to(server)
        try:
            await signaling.join()
            await until(lambda: signaling.client.phase == "reconnecting")
            signaling.url = "ws://127.0.0.1:9/ws"  # nothing listens there: refused at once
            await until(lambda: signaling.client.attempt == 2)
            signaling.url = server.url.replace("http", "ws") + "/ws"
            await until(lambda: "Reconnected: still party 2." in news)
            assert news[:2] == [say("reconnect.lost", attempt=1),
                                say("reconnect.lost", attempt=2)]
            assert [j.get("role") for j in server.joins] == [None, 1]
        finally:
            await signaling.close()


async def test_a_wrong_secret_says_the_link_is_wrong_not_that_a_part_is_missing():
    """The link had its secret part, well formed, but not this session's: the server's
    bad_token becomes the sentence that says so (the page's client says the same)."""
    def answer(n: int, join: dict[str, Any]) -> list[dict[str, Any]]:
        return [wire.error_message(wire.ErrorCode.BAD_TOKEN, "This link is incomplete or "
                                   "wrong: a join link ends with a secret part after the # "
                                   "sign. Ask the person who created the session for the "
                                   "whole link.")]

    async with StandIn(answer, drop=lambda n: True) as server:
        signaling, _ = signaling_to(server)
        try:
            with pytest.raises(PeerError) as refused:
                await signaling.join()
        finally:
            await signaling.close()
    assert refused.value.code == "bad_token"  # type: ignore[attr-defined]
    assert str(refused.value) == say("link.wrong_secret") == (
        "This link is wrong: its secret part (after the # sign) is not this session's. A "
        "character may have changed on the way, or the link is another session's. Ask the "
        "person who created the session for the whole link, and copy all of it.")
    assert "missing" not in str(refused.value)
