"""ice_tuning's bounded gathering: an address whose STUN query is never answered (a VPN
or container interface) must not hold up the offer once another address got its answer.
And its triggered checks: the peer's check on a pair whose own check is in progress sends
that check again at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aioice import stun
from aioice.candidate import Candidate
from aioice.ice import CandidatePair, Connection, StunProtocol

from mpyc_webrtc.native.patches import ice_tuning


class Agent:
    """Stands in for ice_tuning's aioice Connection: the wrapper keeps its state on it."""

    bounded_gathering = True


def protocol_of(agent: Agent, host: str) -> SimpleNamespace:
    return SimpleNamespace(receiver=agent, local_candidate=SimpleNamespace(host=host))


def scripted_query(delays: dict[str, float | None], asked: list[str]):
    """A STUN query answering after ``delays[host]`` seconds, or never (None)."""

    async def query(protocol, stun_server):
        host = protocol.local_candidate.host
        asked.append(host)
        delay = delays[host]
        if delay is None:
            await asyncio.Event().wait()
        await asyncio.sleep(delay)
        if delay < 0:
            raise ConnectionError("refused")
        return f"srflx of {host}"

    return query


@pytest.fixture
def grace(monkeypatch):
    monkeypatch.setattr(ice_tuning, "GATHER_GRACE", 0.05)
    return 0.05


async def gather(delays, timeout=5.0):
    """What aioice's get_component_candidates does: all queries at once, up to a timeout."""
    asked: list[str] = []
    wrapped = ice_tuning.bounded_server_reflexive(scripted_query(delays, asked))
    agent = Agent()
    tasks = [asyncio.ensure_future(wrapped(protocol_of(agent, host), ("stun", 3478)))
             for host in delays]
    started = asyncio.get_running_loop().time()
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    took = asyncio.get_running_loop().time() - started
    for task in pending:
        task.cancel()
    results = sorted(t.result() for t in done if t.exception() is None)
    return results, [t for t in done if t.exception() is not None], pending, took


async def test_an_unanswered_address_is_given_up_on_after_the_grace(grace):
    results, failed, pending, took = await gather({"192.168.1.2": 0.01,
                                                   "10.77.0.1": None})
    assert results == ["srflx of 192.168.1.2"]
    assert [str(t.exception()) for t in failed] == ["no STUN answer via 10.77.0.1"]
    assert not pending
    assert took < 1.0  # instead of aioice's 5 s gathering timeout


async def test_answers_within_the_grace_are_all_kept(grace):
    results, failed, pending, _ = await gather({"a": 0.01, "b": 0.03, "c": 0.02})
    assert results == ["srflx of a", "srflx of b", "srflx of c"] and not failed


async def test_without_any_answer_nothing_is_cut_short(grace):
    # No address got an answer (the STUN server is unreachable): aioice's own timeout
    # applies, as before.
    results, failed, pending, _ = await gather({"a": None, "b": None}, timeout=0.3)
    assert results == [] and not failed and len(pending) == 2


async def test_a_failed_query_is_not_an_answer(grace):
    results, failed, pending, _ = await gather({"a": -0.01, "b": None}, timeout=0.3)
    assert results == [] and [str(t.exception()) for t in failed] == ["refused"]
    assert len(pending) == 1  # b still waits: a's refusal says nothing about b


async def test_agents_do_not_share_answers(grace):
    asked: list[str] = []
    wrapped = ice_tuning.bounded_server_reflexive(
        scripted_query({"fast": 0.0, "slow": 0.2}, asked))
    first, second = Agent(), Agent()
    assert await wrapped(protocol_of(first, "fast"), ("stun", 3478)) == "srflx of fast"
    # The other agent's address has no answered sibling: it gets all the time it needs.
    assert await wrapped(protocol_of(second, "slow"), ("stun", 3478)) == "srflx of slow"


async def test_other_agents_queries_go_through_unchanged(grace):
    # An aioice Connection that is not ice_tuning's (or anything else): aioice's own
    # gathering, with no bound.
    asked: list[str] = []
    wrapped = ice_tuning.bounded_server_reflexive(
        scripted_query({"fast": 0.0, "slow": 0.2}, asked))
    plain = object()
    fast, slow = (wrapped(protocol_of(plain, host), ("stun", 3478)) for host in ("fast", "slow"))
    assert await asyncio.gather(fast, slow) == ["srflx of fast", "srflx of slow"]


# -- a triggered check for a pair in progress (RFC 8445 7.3.1.4) ---------------------------


class Wire:
    """A datagram transport that keeps what is sent (no socket: nothing leaves)."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        pass


@pytest.mark.parametrize("connection_class", [ice_tuning.RelayGraceConnection, Connection],
                         ids=["patched", "aioice"])
async def test_a_nomination_for_a_pair_in_progress_sends_its_check_again_at_once(
        connection_class):
    """The controlled agent's own check of a pair went out (and was lost); the peer's
    check of that pair arrives, asking to use it. The lost request goes again now, not
    when its timer says (0.5 s, then doubling)."""
    agent = connection_class(ice_controlling=False, components=1)
    agent.remote_username, agent.remote_password = "peer", "peer-password-0123456789"
    local = Candidate(foundation="1", component=1, transport="udp", priority=1,
                      host="192.0.2.1", port=4000, type="host")
    remote = Candidate(foundation="2", component=1, transport="udp", priority=1,
                       host="198.51.100.7", port=5000, type="srflx")
    protocol = StunProtocol(agent)
    protocol.local_candidate = local
    wire = Wire()
    protocol.connection_made(wire)  # type: ignore[arg-type]
    agent._remote_candidates.append(remote)
    pair = CandidatePair(protocol, remote)
    agent._check_list.append(pair)
    agent.check_state(pair, CandidatePair.State.IN_PROGRESS)
    key = agent.remote_password.encode()
    checking = asyncio.ensure_future(
        protocol.request(agent.build_request(pair, nominate=False), pair.remote_addr,
                         integrity_key=key))
    await asyncio.sleep(0)
    assert len(wire.sent) == 1  # the first request, lost on the way

    nominating = stun.Message(message_method=stun.Method.BINDING,
                              message_class=stun.Class.REQUEST)
    nominating.attributes.update({"USERNAME": f"{agent.local_username}:peer",
                                  "PRIORITY": 1, "ICE-CONTROLLING": 1,
                                  "USE-CANDIDATE": None})
    agent.check_incoming(nominating, pair.remote_addr, protocol)
    try:
        again = [data for data, addr in wire.sent[1:] if addr == pair.remote_addr
                 and stun.parse_message(data).message_class == stun.Class.REQUEST]
        if connection_class is Connection:
            assert again == []  # aioice: only the timer sends it again
        else:
            assert again == [wire.sent[0][0]]  # the same request, at once
        assert pair.remote_nominated
    finally:
        checking.cancel()
        await asyncio.gather(checking, return_exceptions=True)


def test_installed_on_aioice():
    from aioice import ice

    from mpyc_webrtc.native import patches

    assert patches.install()["ice_tuning"]
    assert ice.server_reflexive_candidate.__qualname__.startswith(
        "bounded_server_reflexive")
    assert issubclass(patches.installed()["Connection"], ice_tuning.RelayGraceConnection)
