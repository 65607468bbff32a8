"""Several ``mpyc-webrtc-server`` processes sharing one real Redis, with native peers that
compute over real WebRTC links: each party talks to a different server process.

Everything runs in a loopback-only network namespace (``testbed.netns``); the Redis is a
throw-away ``redis-server`` on a Unix socket (``testbed.redis_server``), which the
processes in the namespace reach through the file system.
"""

from __future__ import annotations

import re
import signal

import pytest

from testbed.netns import Namespace, Server, start_peer, wait_until

pytestmark = pytest.mark.netns

TIMEOUT = 120
JOINED = re.compile(r"session (\S+) party (\d+): joined")


def servers(ns: Namespace, redis_url: str, count: int) -> list[Server]:
    """``count`` server processes on ports 8080, 8081, ... sharing ``redis_url`` (only the
    first answers STUN: they share one address)."""
    return [Server(ns, 8080 + i, "--redis", redis_url,
                   *(["--stun-port", "0"] if i else []), "-v") for i in range(count)]


def through(url: str, first: Server, other: Server) -> str:
    """The same join link, to another server process."""
    return url.replace(first.url, other.url, 1)


def test_three_parties_on_three_server_processes_compute_the_sum(redis_url):
    inputs = [17, -5, 1000]
    with Namespace() as ns:
        procs = servers(ns, redis_url, 3)
        url = procs[0].create(3, "--program", "sum")
        peers = [start_peer(ns, through(url, procs[0], server), "--input", str(x))
                 for server, x in zip(procs, inputs, strict=True)]
        results = [p.communicate(timeout=TIMEOUT) + (p.returncode,) for p in peers]
        logs = ["".join(server.log) for server in procs]
    for out, err, code in results:
        assert code == 0, f"party failed ({code}):\n{err[-3000:]}"
        assert out.strip() == f"sum = {sum(inputs)}"
    # Each process took exactly one of the joins: the parties really were apart.
    joined = [JOINED.findall(log) for log in logs]
    assert [len(j) for j in joined] == [1, 1, 1], logs
    assert sorted(int(pid) for j in joined for _, pid in j) == [0, 1, 2]


def test_a_server_process_that_is_killed_takes_no_session_with_it(redis_url):
    """SIGKILL: no goodbye, no leave written. The session lives in Redis; a restarted
    process serves it."""
    with Namespace() as ns:
        first, second = servers(ns, redis_url, 2)
        url = first.create(3, "--program", "sum")
        second.proc.send_signal(signal.SIGKILL)
        second.proc.wait(10)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        again = Server(ns, 8081, "--redis", redis_url, "--stun-port", "0")
        info = again.info(through(url, first, again))
        assert info["joined"] == 0 and info["parties"] == 3
        peers = [start_peer(ns, through(url, first, again), "--input", str(x))
                 for x in (1, 2, 3)]
        results = [p.communicate(timeout=TIMEOUT) + (p.returncode,) for p in peers]
    for out, err, code in results:
        assert code == 0, f"party failed ({code}):\n{err[-3000:]}"
        assert out.strip() == "sum = 6"




def test_killing_a_process_during_the_lobby_loses_no_place(redis_url):
    """Party 1's server process is killed (SIGKILL) while parties 0 and 1 wait in the lobby.
    The other processes notice it is gone (its heartbeat stops) and show party 1 as
    reconnecting, its place kept; party 1 reconnects to the same address once a new process
    listens there, gets its place back, and the session computes once party 2 arrives."""
    with Namespace() as ns:
        p0, p1, p2 = servers(ns, redis_url, 3)
        url = p0.create(3, "--program", "sum")
        first = start_peer(ns, url, "--input", "1")
        p0.wait_joined(url, 1)
        second = start_peer(ns, through(url, p0, p1), "--input", "2")
        p0.wait_joined(url, 2)
        assert p0.members(url) == (2, [0, 1])
        p1.proc.send_signal(signal.SIGKILL)
        p1.proc.wait(10)
        # Place 1 is held while its party is away: taken, but not connected.
        wait_until("party 1 shown as reconnecting", lambda: p0.members(url) == (2, [0]))
        again = Server(ns, 8081, "--redis", redis_url, "--stun-port", "0", "-v")
        wait_until("party 1 back", lambda: p0.members(url) == (2, [0, 1]))
        third = start_peer(ns, through(url, p0, p2), "--input", "3")
        results = [p.communicate(timeout=TIMEOUT) + (p.returncode,)
                   for p in (first, second, third)]
        rejoined = JOINED.findall("".join(again.log))
    for out, err, code in results:
        assert code == 0, f"party failed ({code}):\n{err[-3000:]}"
        assert out.strip() == "sum = 6"
    assert "Reconnected: still party 2." in results[1][1]  # pid 1, as people count
    assert [pid for _, pid in rejoined] == ["1"]  # it came back through the new process
