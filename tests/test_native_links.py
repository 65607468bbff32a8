"""native/links.py: what a party that left does to the links still connecting to it.

Before offer and answer were exchanged, the link fails at once with the departure. After,
the party may have left because it could not reach this one either, and the link's own
time-out (due about then) says why better; but a party that left for another reason (it
stopped on tampering, crashed, was closed) must not keep the others waiting out their
whole time-out only to hear "no direct path". No peer connection is made here: the links
are stand-ins with PeerLink's own ``fail``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mpyc_webrtc.native import links
from mpyc_webrtc.native.errors import PeerError
from mpyc_webrtc.native.links import AiortcFactory, PeerLink

LEFT = "The computation cannot finish: party 2 left the session."


class Signaling:
    """What AiortcFactory uses of native/signaling.py's Signaling when made."""

    chat_channel: Any = None

    def attach(self, handler: Any) -> None:
        self.handler = handler


class Link:
    """A link (offer and answer exchanged or not) that has not opened yet."""

    fail = PeerLink.fail

    def __init__(self, remote_set: bool):
        self.remote_set = remote_set
        self.ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


def left(peer: int) -> dict[str, Any]:
    return {"event": "peer_left", "peer": peer, "message": LEFT}


async def test_a_party_that_left_before_the_answer_fails_its_link_at_once():
    factory = AiortcFactory(Signaling(), [])
    factory.links[1] = link = Link(remote_set=False)
    factory.handle(left(1))
    assert str(link.ready.exception()) == LEFT


async def test_a_party_that_left_after_the_answer_fails_its_link_after_the_grace(
        monkeypatch):
    monkeypatch.setattr(links, "LEFT_GRACE", 0.05)
    factory = AiortcFactory(Signaling(), [])
    factory.links[1] = link = Link(remote_set=True)
    factory.handle(left(1))
    assert not link.ready.done()  # its own time-out may still come, and say why
    with pytest.raises(PeerError, match="^The computation cannot finish: party 2 left"):
        await asyncio.wait_for(link.ready, 5)


async def test_a_link_that_opened_meanwhile_is_not_failed_after_the_grace(monkeypatch):
    monkeypatch.setattr(links, "LEFT_GRACE", 0.01)
    factory = AiortcFactory(Signaling(), [])
    factory.links[1] = link = Link(remote_set=True)
    factory.handle(left(1))
    link.ready.set_result("channel")
    await asyncio.sleep(0.05)
    assert link.ready.result() == "channel"
