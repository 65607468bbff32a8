"""The README's coturn recipe (``e2e.netsim.internet.COTURN_RECIPE``), shown with real
packets in the simulated internet: a relay toward a private, loopback, link-local or
carrier-grade-NAT address is refused (403) and nothing reaches it, while two parties
still relay to each other and to a public host. The same probes against coturn without
the recipe reach those addresses, so it is the recipe that stops them.

Every packet stays inside namespaces the test creates; all of them are deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.netsim import Internet
from e2e.netsim.internet import COTURN_RECIPE, TURN_IP, VOID_GATEWAY

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

#: Addresses of the simulation's public namespace (where coturn runs), each answered by an
#: echo service: coturn could reach every one of them. The extra ones go on its loopback
#: device; VOID_GATEWAY is its link to the void, SERVER is the signaling server's address.
EXTRA = ("192.168.77.1", "172.16.77.1", "169.254.77.1")
SERVER = "100.64.0.1"
DENIED = (VOID_GATEWAY, SERVER, *EXTRA, "127.0.0.1")
#: What coturn may relay to here: its own relay address (party to party through the
#: relay) and the public parties' addresses (100.65.i.2), not the rest of 100.64.0.0/10.
ALLOWED = (TURN_IP, "100.65.0.0-100.65.255.255")

# Echo on UDP port 4000 of each address given: answers "echo <address>".
ECHO = r"""
import asyncio, sys
class Echo(asyncio.DatagramProtocol):
    def __init__(self, host):
        self.host = host
    def connection_made(self, t):
        self.t = t
    def datagram_received(self, data, addr):
        self.t.sendto(b"echo " + self.host.encode(), addr)
async def main():
    loop = asyncio.get_running_loop()
    for host in sys.argv[1:]:
        await loop.create_datagram_endpoint(lambda h=host: Echo(h), local_addr=(host, 4000))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

# A TURN allocation over UDP; then a datagram to port 4000 of each peer address given, a
# few times: per peer what came back through the relay, the error the relay gave when the
# channel to it was bound, or nothing.
PROBE = r"""
import asyncio, json, sys
from aioice import turn
server, user, password, *peers = sys.argv[1:]
result = {peer: "nothing" for peer in peers}
class P(asyncio.DatagramProtocol):
    def datagram_received(self, data, addr):
        result[addr[0]] = data.decode()
async def main():
    t, p = await asyncio.wait_for(turn.create_turn_endpoint(
        P, (server, 3478), user, password, transport="udp"), 5)
    inner = t._TurnTransport__inner_protocol  # send_data raises what the relay answered
    for _ in range(3):
        for peer in peers:
            if result[peer] == "nothing":
                try:
                    await asyncio.wait_for(inner.send_data(b"probe", (peer, 4000)), 5)
                except Exception as exc:
                    result[peer] = f"error {exc}"
        await asyncio.sleep(0.5)
    t.close()
    await asyncio.sleep(0.2)
asyncio.run(main())
print(json.dumps(result))
"""

# Two parties, each with an allocation: print the relayed address, read the other's from
# stdin, then send to it until the other's datagram arrived and one second more (the
# other's relay lets datagrams in only once the other has sent to this one's).
PAIR = r"""
import asyncio, json, sys
from aioice import turn
server, user, password, me = sys.argv[1:]
async def main():
    loop = asyncio.get_running_loop()
    got = loop.create_future()
    class P(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if not got.done():
                got.set_result([data.decode(), list(addr)])
    t, _ = await asyncio.wait_for(turn.create_turn_endpoint(
        P, (server, 3478), user, password, transport="udp"), 5)
    print(json.dumps(list(t.get_extra_info("sockname"))), flush=True)
    host, port = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    more = 5
    for _ in range(50):
        t.sendto(f"hello from {me}".encode(), (host, port))
        await asyncio.sleep(0.2)
        if got.done():
            more -= 1
            if not more:
                break
    return got.result() if got.done() else None
print(json.dumps(asyncio.run(main())), flush=True)
"""


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    for tool in ("ip", "iptables-restore", "turnserver"):
        if shutil.which(tool) is None:
            pytest.fail(f"the recipe test needs {tool} (./run.sh test installs it)",
                        pytrace=False)
    if not os.path.exists("/dev/net/tun"):
        pytest.fail("the recipe test needs /dev/net/tun", pytrace=False)


def simulation(name: str, recipe: bool) -> Internet:
    net = Internet(nats=["cone", "symmetric", "public"], turn_secret="r3cipe", name=name,
                   turn_recipe=recipe, turn_allowed_peers=ALLOWED).up()
    try:
        for address in EXTRA:
            subprocess.run(["ip", "-n", net.public, "addr", "add", f"{address}/32", "dev",
                            "lo"], check=True)
        echo = net.popen(net.public, [PY, "-c", ECHO, *DENIED], stdout=subprocess.PIPE,
                         text=True)
        public = net.popen(net.parties[2].ns, [PY, "-c", ECHO, net.parties[2].lan_ip],
                           stdout=subprocess.PIPE, text=True)
        for proc in (echo, public):
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    except BaseException:
        net.down()
        raise
    return net


def probe(net: Internet, party: int, peers: tuple[str, ...]) -> dict[str, str]:
    user, password = net.turn_credentials(f"party{party}")
    done = net.run(net.parties[party].ns, [PY, "-c", PROBE, net.turn_ip, user, password,
                                           *peers], timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def relay_between(net: Internet, a: int, b: int) -> tuple[object, object]:
    procs = []
    for i in (a, b):
        user, password = net.turn_credentials(f"party{i}")
        procs.append(net.popen(net.parties[i].ns, [PY, "-c", PAIR, net.turn_ip, user,
                                                   password, str(i)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    relayed = [json.loads(p.stdout.readline()) for p in procs]
    assert all(r[0] == net.turn_ip for r in relayed), relayed
    procs[0].stdin.write(json.dumps(relayed[1]) + "\n")
    procs[1].stdin.write(json.dumps(relayed[0]) + "\n")
    for p in procs:
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=30)
        results.append(json.loads(out))
    return results[0], results[1], relayed


@pytest.fixture(scope="module")
def with_recipe():
    net = simulation("msimr", recipe=True)
    yield net
    net.down()


def test_the_relay_refuses_every_denied_address(with_recipe):
    result = probe(with_recipe, 1, DENIED)
    for address in DENIED:
        assert result[address].startswith("error "), (address, result)
        assert "403" in result[address], (address, result)  # Forbidden, not a timeout


def test_two_parties_still_relay_to_each_other_and_to_a_public_host(with_recipe):
    net = with_recipe
    first, second, relayed = relay_between(net, 0, 1)
    # Each got the other's greeting, from the other's relayed address.
    assert first == ["hello from 1", relayed[1]], (first, relayed)
    assert second == ["hello from 0", relayed[0]], (second, relayed)
    public = net.parties[2].lan_ip
    assert probe(net, 1, (public,)) == {public: f"echo {public}"}


def test_coturn_runs_with_the_recipe_and_took_every_line(with_recipe):
    cmdline = Path(f"/proc/{_coturn_pid(with_recipe)}/cmdline").read_bytes().split(b"\0")
    for line in COTURN_RECIPE:
        assert f"--{line}".encode() in cmdline, line
    # coturn says what it took: each denied range, and the simulation's allowed ones.
    log = (with_recipe.state_dir / "turnserver.log").read_text(errors="replace")
    for line in COTURN_RECIPE:
        if line.startswith("denied-peer-ip="):
            assert f"Black listing: {line.partition('=')[2]}\n" in log, line
    for peers in ALLOWED:
        assert f"White listing: {peers}\n" in log, peers


def _coturn_pid(net: Internet) -> int:
    (pid,) = [p.pid for p in net._procs if p.role == "coturn"]
    return pid


def test_without_the_recipe_the_same_addresses_are_reached():
    """The control: the probes themselves work, so the refusals above are the recipe's."""
    net = simulation("msimq", recipe=False)
    try:
        result = probe(net, 1, DENIED)
    finally:
        net.down()
    for address in DENIED:
        if address == "127.0.0.1":  # coturn never relays to loopback without being told to
            assert "403" in result[address], result
        else:
            assert result[address] == f"echo {address}", (address, result)


def test_the_readme_shows_the_recipe_that_is_tested():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```(?:ini)?\n(use-auth-secret\n.*?)```", readme, re.S)
    assert block, "the README's turnserver.conf recipe"
    lines = [line for line in block.group(1).splitlines()
             if line and not line.startswith("#")]
    recipe = [line for line in lines
              if not line.startswith(("use-auth-secret", "static-auth-secret", "realm"))]
    assert recipe == list(COTURN_RECIPE)
