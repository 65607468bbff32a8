"""Sessions shared by several server processes through a real Redis (``signaling.shared``,
``signaling.redis_store``): what only several processes can get wrong.

Each ``Cluster`` registry is one server process (its own Redis connections, replicas and
connections); ``testbed.shared_harness`` settles all of them after each step, and
``hold()`` lets several processes' messages race. The single-process rules are checked
against this backend too, by every test of ``tests/test_session.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mpyc_webrtc.wire import ErrorCode, SignalingError
from testbed.sans_io import TOKEN, TOKEN_HASH, Clock, Party
from testbed.shared_harness import Cluster

AUTH = {"token_hash": TOKEN_HASH}
SUM3 = {**AUTH, "parties": 3, "program": "sum"}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cluster(redis_url: str, clock: Clock) -> Iterator[Cluster]:
    cluster = Cluster(redis_url, 3, clock=clock, idle_timeout=60.0)
    yield cluster
    cluster.close()


def roster(party: Party) -> list[tuple[int, str, str]]:
    msgs = [m for m in party.take() if m["type"] == "roster"]
    return [(m["pid"], m["name"], m["state"]) for m in msgs[-1]["members"]]


def test_three_parties_on_three_processes_see_one_session(cluster):
    p0, p1, p2 = cluster.registries
    session = p0.create(SUM3)
    a, b, c = Party(p0), Party(p1), Party(p2)
    a.join(session.id, "Alice", ready=False)
    b.join(session.id, "Bob", ready=False)
    c.join(session.id, "Carol", ready=False)
    assert [x.take()[0]["pid"] for x in (a, b, c)] == [0, 1, 2]
    for party in (a, b):
        party.send("ready", ready=True)
    assert not any(r.sessions[session.id].started for r in cluster.registries)
    c.send("ready", ready=True)
    # Every process's replica agrees, and every party got the same start and roster.
    for registry in cluster.registries:
        replica = registry.sessions[session.id]
        assert replica.started and replica.round == 1
        assert sorted(replica.members) == [0, 1, 2]
    rosters = []
    for party in (a, b, c):
        sent = party.take()
        assert [m["type"] for m in sent].count("start") == 1
        rosters.append(sent[-1])
    assert rosters[0] == rosters[1] == rosters[2]
    assert [m["name"] for m in rosters[0]["members"]] == ["Alice", "Bob", "Carol"]
    # Signals cross processes exactly as the schema says, to the addressed party only.
    a.send("signal", to=2, seq=1, box="offer")
    c.send("signal", to=0, seq=1, box="answer")
    assert c.take() == [{"v": 1, "type": "signal", "seq": 1, "box": "offer", "from": 0}]
    assert a.take() == [{"v": 1, "type": "signal", "seq": 1, "box": "answer", "from": 2}]
    assert b.take() == []


def test_two_processes_racing_for_one_place_never_both_get_it(cluster):
    p0, p1, p2 = cluster.registries
    session = p0.create(SUM3)
    first = Party(p0)
    first.join(session.id)
    x, y = Party(p1), Party(p2)
    with cluster.hold():  # both joins are on their way before either is applied
        x.join(session.id, role=1)
        y.join(session.id, role=1)
    outcomes = sorted((m[0]["type"], m[0].get("code")) for m in (x.take(), y.take()))
    assert outcomes == [("error", ErrorCode.ROLE_TAKEN), ("welcome", None)]
    owners = {r.sessions[session.id].members[1].endpoint.conn for r in cluster.registries
              if session.id in r.sessions}
    assert len(owners) == 1  # every replica gave the place to the same connection


def test_the_last_place_goes_to_exactly_one_of_two_racing_processes(cluster):
    p0, p1, p2 = cluster.registries
    session = p0.create(SUM3)
    Party(p0).join(session.id, ready=False)
    Party(p0).join(session.id, ready=False)
    x, y = Party(p1), Party(p2)
    with cluster.hold():
        x.join(session.id, ready=False)
        y.join(session.id, ready=False)
    types = sorted(m[0].get("code") or m[0]["type"] for m in (x.take(), y.take()))
    assert types == [ErrorCode.SESSION_FULL, "welcome"]


def test_the_session_limit_counts_every_process(redis_url, clock):
    cluster = Cluster(redis_url, 2, clock=clock, max_sessions=2, max_sessions_per_client=1)
    try:
        p0, p1 = cluster.registries
        p0.create(SUM3)
        p1.create(SUM3, client="198.51.100.7")
        with pytest.raises(SignalingError) as info:
            p0.create(SUM3)
        assert info.value.code == ErrorCode.SERVER_BUSY
    finally:
        cluster.close()
    cluster = Cluster(redis_url, 2, clock=clock, max_sessions_per_client=1)
    try:
        p0, p1 = cluster.registries
        p0.create(SUM3, client="198.51.100.8")
        with pytest.raises(SignalingError) as info:
            p1.create(SUM3, client="198.51.100.8")
        assert info.value.code == ErrorCode.TOO_MANY_SESSIONS
    finally:
        cluster.close()


def test_a_dead_process_s_parties_reconnect_elsewhere_and_keep_their_places(cluster):
    p0, p1, p2 = cluster.registries
    session = p0.create(SUM3)
    alice, bob = Party(p1), Party(p0)
    alice.join(session.id, "Alice", resume="a" * 22)
    bob.join(session.id, "Bob", resume="b" * 22)
    bob.take()
    # p1 dies without a word: no leave is ever written, its heartbeat stops.
    loop = cluster.loop
    for task in p1.store._tasks:
        task.cancel()
    loop.run_until_complete(p1.store.redis.delete(f"mpyc-webrtc:proc:{p1.proc}"))
    cluster.registries.remove(p1)
    loop.run_until_complete(p0.store._check_processes())
    cluster.settle()
    assert roster(bob) == [(0, "Alice", "reconnecting"), (1, "Bob", "joined")]
    # Alice's page reconnects through the load balancer, to another process.
    back = Party(p2)
    back.join(session.id, "Alice", resume="a" * 22)
    assert back.take()[0]["pid"] == 0
    assert roster(bob) == [(0, "Alice", "joined"), (1, "Bob", "joined")]
    carol = Party(p2)
    carol.join(session.id, "Carol")
    assert p0.sessions[session.id].started and p2.sessions[session.id].started


def test_a_restarted_process_loses_no_session(redis_url, clock):
    first = Cluster(redis_url, 1, clock=clock)
    session = first.registries[0].create(SUM3)
    a = Party(first.registries[0])
    a.join(session.id, "Alice", ready=False, resume="a" * 22)
    first.close()  # the whole server stops (its parties' connections with it)
    second = Cluster(redis_url, 1, clock=clock)
    try:
        registry = second.registries[0]
        info = second.loop.run_until_complete(registry.store.describe(session.id))
        assert sorted(info.members) == [0]
        back, b = Party(registry), Party(registry)
        back.join(session.id, "Alice", resume="a" * 22)
        b.join(session.id, "Bob")
        assert back.take()[0]["pid"] == 0 and b.take()[0]["pid"] == 1
    finally:
        second.close()


def test_a_session_redis_forgot_is_closed_for_its_parties(cluster):
    p0, p1, _ = cluster.registries
    session = p0.create(SUM3)
    a, b = Party(p0), Party(p1)
    a.join(session.id)
    b.join(session.id)
    a.take(), b.take()
    # Its keys expired (as an idle session's do, by their Redis TTL).
    loop = cluster.loop
    loop.run_until_complete(p0.store.redis.delete(p0.store.meta(session.id),
                                                   p0.store.log_key(session.id)))
    for registry in (p0, p1):
        loop.run_until_complete(registry.store._check_sessions())
    cluster.settle()
    for party in (a, b):
        assert party.take()[-1]["code"] == ErrorCode.SESSION_EXPIRED
        assert party.closed == 1
    late = Party(p1)
    late.join(session.id)
    assert late.error() == ErrorCode.SESSION_EXPIRED  # it remembers the session closed


def test_an_expired_session_is_closed_once_for_everyone(cluster, clock):
    p0, p1, _ = cluster.registries
    session = p0.create(SUM3)
    a, b = Party(p0), Party(p1)
    a.join(session.id)
    b.join(session.id)
    a.take(), b.take()
    clock.now += 61
    p0.sweep()
    p1.sweep()  # idle, but parties are waiting in its lobby: it stays open (issue 18)
    assert a.take() == [] and b.take() == []
    clock.now += p0.max_age
    p0.sweep()
    p1.sweep()
    for party in (a, b):
        assert [m["code"] for m in party.take()] == [ErrorCode.SESSION_EXPIRED]
    assert not asyncio.run(_exists(p0.store, session.id))


def test_a_closed_session_is_known_as_closed_to_every_process(cluster, clock):
    """Issue 18: a late joiner who reaches another process than the one that closed the
    session learns that it closed, and what it was (to create it again), not "no such
    session"."""
    from signaling.registry import ClosedSession

    p0, _, p2 = cluster.registries
    session = p0.create({**SUM3, "labels": ["Alice", "Bob", "Carol"]})
    a = Party(p0)
    a.join(session.id)
    a.take()
    clock.now += p0.max_age + 1
    p0.sweep()
    assert [m["code"] for m in a.take()] == [ErrorCode.SESSION_EXPIRED]
    assert session.id not in p2.sessions and session.id not in p2.closed_sessions
    with pytest.raises(ClosedSession) as closed:
        p2.get(session.id)
    assert closed.value.code == ErrorCode.SESSION_EXPIRED
    assert closed.value.settings["labels"] == ["Alice", "Bob", "Carol"]
    late = Party(p2)
    late.join(session.id)
    assert late.error() == ErrorCode.SESSION_EXPIRED


async def _exists(store, sid: str) -> bool:
    import redis.asyncio as aioredis

    client = aioredis.from_url(store.url)
    try:
        return bool(await client.exists(store.meta(sid), store.log_key(sid)))
    finally:
        await client.aclose()


def test_a_server_that_cannot_reach_its_redis_says_so_and_stops(tmp_path):
    import subprocess

    from testbed.netns import BIN

    missing = f"unix://{tmp_path}/no-redis.sock"
    done = subprocess.run([str(BIN / "mpyc-webrtc-server"), "--port", "0", "--stun-port", "0",
                           "--redis", missing], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mpyc-webrtc-server: error: cannot reach Redis at {missing} (")
    assert last.endswith("Start redis-server, or check --redis (redis://HOST:PORT/DB).")


def test_an_entry_that_never_came_through_the_channel_is_read_from_the_log(cluster):
    """Redis drops a subscriber that falls too far behind, and what it published meanwhile
    is lost to it: the periodic check reads such entries from the log, so no session
    stalls waiting for a message that was relayed."""
    import json

    p0, p1, _ = cluster.registries
    session = p0.create(SUM3)
    a, b, c = Party(p0), Party(p1), Party(p1)
    for party in (a, b, c):
        party.join(session.id)
    for party in (a, b, c):
        party.take()
    # b's signal to a, in the log but never published (as if p0 had been dropped).
    entry = {"op": "msg", "c": b.endpoint.conn, "t": p1.clock(),
             "m": {"v": 1, "type": "signal", "to": 0, "seq": 1, "box": "late"}}
    loop = cluster.loop
    before = p0.applied[session.id]
    length = loop.run_until_complete(p1.store.redis.rpush(p1.store.log_key(session.id),
                                                          json.dumps(entry)))
    assert length == before + 1 and a.take() == []
    loop.run_until_complete(p0.store._check_sessions())
    assert a.take() == [{"v": 1, "type": "signal", "seq": 1, "box": "late", "from": 1}]
    # The next entry through the channel follows in order.
    c.send("signal", to=0, seq=1, box="next")
    assert a.take() == [{"v": 1, "type": "signal", "seq": 1, "box": "next", "from": 2}]


def test_a_session_whose_parties_all_left_at_once_is_closed_and_forgotten(cluster, clock):
    """Three parties on three processes finish together: whichever process applies the
    last leave still holds the session and ends it at its sweep once nobody came back
    for ``resume_grace`` (as one process would), rather than every process dropping it
    and Redis keeping it for the idle timeout."""
    session = cluster.registries[0].create(SUM3)
    parties = [Party(r) for r in cluster.registries]
    for party in parties:
        party.join(session.id)
    assert all(r.sessions[session.id].started for r in cluster.registries)
    with cluster.hold():
        for party in parties:
            party.endpoint.disconnected(leaving=True)
    for registry in cluster.registries:
        registry.sweep()
    assert any(session.id in r.sessions for r in cluster.registries)  # a reload may come
    clock.now += cluster.registries[0].resume_grace
    for registry in cluster.registries:
        registry.sweep()
    assert all(session.id not in r.sessions for r in cluster.registries)
    loop = cluster.loop
    store = cluster.registries[0].store
    assert loop.run_until_complete(store.redis.zcard("mpyc-webrtc:sessions")) == 0
    assert not loop.run_until_complete(store.redis.exists(store.meta(session.id)))


def test_redis_never_holds_a_join_token_nor_a_resume_secret(cluster):
    """Whoever reads Redis learns no secret that lets them in: entries keep hashes."""
    p0, p1, _ = cluster.registries
    session = p0.create(SUM3)
    a, b = Party(p0), Party(p1)
    a.join(session.id, resume="r" * 22)
    b.join(session.id, resume="s" * 22, token="x" * 43)
    assert b.error() == ErrorCode.BAD_TOKEN
    a.endpoint.disconnected()
    back = Party(p1)
    back.join(session.id, resume="r" * 22)
    assert back.take()[0]["pid"] == 0  # the hashed secret still gives the place back
    loop = cluster.loop
    log = loop.run_until_complete(p0.store.redis.lrange(p0.store.log_key(session.id), 0, -1))
    text = "".join(log)
    for secret in (TOKEN, "r" * 22, "s" * 22, "x" * 43):
        assert secret not in text


def test_looking_at_a_session_from_another_process_logs_no_old_news(cluster, caplog):
    p0, p1, p2 = cluster.registries
    session = p0.create(SUM3)
    for party in (Party(p0), Party(p0), Party(p0)):
        party.join(session.id)
    caplog.clear()
    with caplog.at_level("INFO"):
        seen = p2.get(session.id)  # a process with no party in it rebuilds it from Redis
    assert seen.started and sorted(seen.members) == [0, 1, 2]
    assert [r.getMessage() for r in caplog.records if "starting round" in r.getMessage()] == []


def test_entries_redis_did_not_take_are_never_lost_in_silence(cluster):
    """A batch of entries that cannot be written: every connection that sent one is told
    to join again (``reconnect``) and closed, not left believing it was heard."""
    p0, p1, _ = cluster.registries
    session = p0.create(SUM3)
    a, b, c = Party(p0), Party(p0), Party(p1)
    for party in (a, b, c):
        party.join(session.id, ready=False)
    for party in (a, b, c):
        party.take()
    real = p0.store._append

    async def refuse(batch):
        p0.store._append = real
        raise ConnectionError("Redis went away")

    p0.store._append = refuse
    with cluster.hold():
        a.send("ready", ready=True)
        b.send("ready", ready=True)
    for party in (a, b):
        assert [m["code"] for m in party.take()] == [ErrorCode.RECONNECT]
        assert party.closed == 1
    assert c.take() == []
