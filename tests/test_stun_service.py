"""The server's own STUN service on a real socket (``signaling/app.py``'s ``StunEndpoint``),
asked by aioice, aiortc's ICE: inside a throw-away network namespace, over loopback."""

from __future__ import annotations

import json
import sys
import time

import pytest

from testbed.netns import Namespace, Server

pytestmark = pytest.mark.netns

#: Runs in the namespace: aioice gathers candidates with the server's STUN service (loopback
#: host candidates allowed, as the test-only opt-in does), then asks over IPv6 by hand, after
#: a datagram that is no STUN at all.
CLIENT = r"""
import asyncio, json, socket, sys
import aioice.ice, aioice.stun
from mpyc_webrtc.native.ice import allow_loopback_candidates

async def gather():
    allow_loopback_candidates()
    connection = aioice.ice.Connection(ice_controlling=True, use_ipv6=False,
                                       stun_server=("127.0.0.1", int(sys.argv[1])))
    await connection.gather_candidates()
    found = [[c.type, c.host, c.port, c.related_address, c.related_port]
             for c in connection.local_candidates]
    await connection.close()
    return found

def ask_ipv6(port):
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.connect(("::1", port))
        sock.send(b"not STUN at all, nor anything else")
        try:
            garbage_answered = bool(sock.recv(1500))
        except TimeoutError:
            garbage_answered = False
        request = aioice.stun.Message(message_method=aioice.stun.Method.BINDING,
                                      message_class=aioice.stun.Class.REQUEST)
        sock.send(bytes(request))
        answer = aioice.stun.parse_message(sock.recv(1500))
        assert answer.transaction_id == request.transaction_id
        return garbage_answered, list(answer.attributes["XOR-MAPPED-ADDRESS"]), \
            list(sock.getsockname()[:2])

print(json.dumps({"candidates": asyncio.run(gather()), "ipv6": ask_ipv6(int(sys.argv[2]))}))
"""


def test_aioice_gathers_a_server_reflexive_candidate_from_the_servers_stun():
    with Namespace("mws") as ns:
        ipv4 = Server(ns, 8080)  # the defaults: STUN on 127.0.0.1:3478
        ipv6 = Server(ns, 8081, "--host", "::1", "--stun-port", "3479")
        assert any("STUN on UDP port 3478, handed to parties as stun:127.0.0.1:3478" in line
                   for line in ipv4.log), list(ipv4.log)
        done = ns.run([sys.executable, "-c", CLIENT, "3478", "3479"], timeout=60)
        assert done.returncode == 0, done.stderr
        got = json.loads(done.stdout)
        host = [c for c in got["candidates"] if c[0] == "host" and c[1] == "127.0.0.1"]
        srflx = [c for c in got["candidates"] if c[0] == "srflx"]
        assert host and srflx, got
        # Seen from the server, on loopback, the client is where it is.
        assert srflx[0][1:3] == host[0][1:3] == srflx[0][3:5], got
        garbage_answered, mapped, own = got["ipv6"]
        assert not garbage_answered
        assert mapped == own
        for server in (ipv4, ipv6):
            server.proc.terminate()
            server.proc.wait(10)
        time.sleep(0.2)  # the log readers
        assert any("STUN service: answered 1, ignored 1 (not STUN 1)" in line
                   for line in ipv6.log), list(ipv6.log)
