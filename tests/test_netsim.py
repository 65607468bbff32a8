"""The simulated internet (e2e/netsim), shown with real packets rather than by reading
back its configuration: NAT mappings as public servers see them, dropped unsolicited
packets, TURN allocations that relay, the wire's delay and loss, cut and restore.

Every packet stays inside namespaces the tests create; all of them are deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e.netsim import Internet, pids_in_namespaces
from e2e.netsim.internet import STATE_ROOT
from e2e.netsim.processes import proc_stat

pytestmark = pytest.mark.netns


def _missing() -> str | None:
    for tool in ("ip", "iptables-restore", "turnserver"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    return None


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    """Root is the rule in conftest.py (skip, or fail under CI=true); the tools are
    installed by ./run.sh test, so a missing one fails."""
    if (why := _missing()) is not None:
        pytest.fail(f"the netsim tests need {why}", pytrace=False)


REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

# A public "what is my address" service: UDP on 4000 and 4001, TCP on 4002.
#   anything else  -> reply "ip:port" as seen here
#   b"poke"        -> the same, plus an unsolicited packet from port 4001 (same address,
#                     other port) and a late reply from this port after 0.5 s
#   b"ping..."     -> echoed
#   b"c<seq>"      -> counted; b"count?" -> "received in_order"; b"reset"
#   b"v<seq>:<hex>" -> counted and checked (hex = sha256 of seq, twice); b"stats?" -> JSON:
#                     received, distinct, duplicates, late (arrived after a higher seq), bad
ECHO = r"""
import asyncio, hashlib, json, sys
HOST = sys.argv[1]
socks = {}
seqs = []
checked = []
def stats():
    seen, top, late = set(), -1, 0
    for seq, _ in checked:
        late += seq < top
        top = max(top, seq)
        seen.add(seq)
    return {"received": len(checked), "distinct": len(seen),
            "duplicates": len(checked) - len(seen), "late": late,
            "bad": sum(not ok for _, ok in checked)}
class Udp(asyncio.DatagramProtocol):
    def __init__(self, port):
        self.port = port
    def connection_made(self, t):
        self.t = t
        socks[self.port] = t
    def datagram_received(self, data, addr):
        if data.startswith(b"ping"):
            self.t.sendto(data, addr)
        elif data == b"count?":
            in_order = seqs == sorted(seqs)
            self.t.sendto(f"{len(seqs)} {in_order}".encode(), addr)
        elif data.startswith(b"c"):
            seqs.append(int(data[1:]))
        elif data.startswith(b"v"):
            seq, _, body = data[1:].partition(b":")
            want = hashlib.sha256(seq).hexdigest().encode() * 2
            checked.append((int(seq), body == want))
        elif data == b"stats?":
            self.t.sendto(json.dumps(stats()).encode(), addr)
        elif data == b"reset":
            seqs.clear()
            checked.clear()
            self.t.sendto(b"ok", addr)
        else:
            self.t.sendto(f"{addr[0]}:{addr[1]}".encode(), addr)
            if data == b"poke":
                socks[4001].sendto(b"unsolicited", addr)
                asyncio.get_running_loop().call_later(0.5, self.t.sendto, b"late", addr)
async def tcp(reader, writer):
    host, port = writer.get_extra_info("peername")[:2]
    writer.write(f"{host}:{port}\n".encode())
    await writer.drain()
    writer.close()
async def main():
    loop = asyncio.get_running_loop()
    for port in (4000, 4001):
        await loop.create_datagram_endpoint(lambda port=port: Udp(port), local_addr=(HOST, port))
    await asyncio.start_server(tcp, HOST, 4002)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

# From a LAN host: one UDP socket asks ports 4000 and 4001 who it is ("timeout" if
# no answer). With "poke" it asks 4000 only, so that 4001 stays uncontacted, and then
# lists every packet that reaches it within 1 s.
WHOAMI = r"""
import socket, sys, time
host, poke = sys.argv[1], sys.argv[2] == "poke"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 0))
s.settimeout(0.5)
print("local", s.getsockname()[1])
for port in (4000,) if poke else (4000, 4001):
    for _ in range(2):
        s.sendto(b"who", (host, port))
        try:
            print("mapped", s.recvfrom(100)[0].decode())
            break
        except socket.timeout:
            pass
    else:
        print("mapped timeout")
sys.stdout.flush()
if poke:
    s.sendto(b"poke", (host, 4000))
    end = time.monotonic() + 1
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, addr = s.recvfrom(100)
        except socket.timeout:
            break
        print("got", f"{addr[0]}:{addr[1]}", data.decode(), flush=True)
"""

TCP_WHOAMI = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], 4002), timeout=2) as s:
        print("mapped", s.makefile().readline().strip())
except OSError as exc:
    print("error", exc)
"""

# Hole punching: learn the own mapping from the echo service, print it, read the
# peer's from stdin, then both send to each other for 1.5 s; prints what arrived.
PUNCH = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 0))
s.settimeout(1)
s.sendto(b"who", (sys.argv[1], 4000))
print(s.recvfrom(100)[0].decode(), flush=True)
ip, port = sys.stdin.readline().strip().split(":")
peer = (ip, int(port))
got = 0
end = time.monotonic() + 1.5
next_send = 0.0
while (now := time.monotonic()) < end:
    if now >= next_send:
        s.sendto(b"hi", peer)
        next_send = now + 0.05
    s.settimeout(max(0.001, min(next_send, end) - now))
    try:
        data, addr = s.recvfrom(100)
    except socket.timeout:
        continue
    got += data == b"hi" and addr == peer
print(got)
"""

SEND_UDP = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"third party", (sys.argv[1], int(sys.argv[2])))
"""

# A TURN allocation with aioice, then one datagram relayed to the echo service and
# its answer relayed back.
TURN = r"""
import asyncio, json, sys
from aioice import turn
server, user, password, transport, peer = sys.argv[1:6]
class P(asyncio.DatagramProtocol):
    def __init__(self):
        self.got = asyncio.get_running_loop().create_future()
    def datagram_received(self, data, addr):
        if not self.got.done():
            self.got.set_result((data.decode(), list(addr)))
async def main():
    try:
        t, p = await asyncio.wait_for(turn.create_turn_endpoint(
            P, (server, 3478), user, password, transport=transport), 4)
    except Exception as exc:
        return {"error": repr(exc)}
    relayed = list(t.get_extra_info("sockname"))
    t.sendto(b"who", (peer, 4000))
    try:
        seen, source = await asyncio.wait_for(p.got, 4)
    except asyncio.TimeoutError:
        seen = source = None
    t.close()
    return {"relayed": relayed, "seen": seen, "from": source}
print(json.dumps(asyncio.run(main())))
"""

PING = r"""
import socket, statistics, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
rtts = []
for i in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    s.sendto(b"ping%d" % i, (sys.argv[1], 4000))
    try:
        while s.recv(100) != b"ping%d" % i:
            pass
    except socket.timeout:
        continue
    rtts.append((time.perf_counter() - t0) * 1000)
print(statistics.median(rtts), min(rtts), max(rtts), len(rtts))
"""

# 1000 numbered datagrams one way, then how many arrived and whether in order.
BURST = r"""
import socket, sys, time
host, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
def ask(msg):
    for _ in range(30):
        s.sendto(msg, (host, 4000))
        try:
            return s.recv(100).decode()
        except socket.timeout:
            pass
    raise SystemExit("no answer")
ask(b"reset")
for i in range(n):
    s.sendto(b"c%d" % i, (host, 4000))
    if i % 50 == 49:
        time.sleep(0.002)
time.sleep(0.3)
print(ask(b"count?"))
"""

# n numbered datagrams one way, each with a payload the echo service checks, then its
# statistics (JSON). Replies are matched by their start: the wire may duplicate them.
CHECKED_BURST = r"""
import hashlib, socket, sys, time
host, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
def ask(msg, start):
    for _ in range(30):
        s.sendto(msg, (host, 4000))
        try:
            while not (reply := s.recv(200).decode()).startswith(start):
                pass
            return reply
        except socket.timeout:
            pass
    raise SystemExit("no answer")
ask(b"reset", "ok")
for i in range(n):
    seq = b"%d" % i
    s.sendto(b"v" + seq + b":" + hashlib.sha256(seq).hexdigest().encode() * 2, (host, 4000))
    if i % 50 == 49:
        time.sleep(0.002)
time.sleep(0.3)
print(ask(b"stats?", "{"))
"""


def py(net: Internet, ns: str, script: str, *args: str, timeout: float = 20) -> str:
    done = net.run(ns, [PY, "-c", script, *args], timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


def start_echo(net: Internet) -> subprocess.Popen:
    proc = net.popen(net.public, [PY, "-c", ECHO, net.server_ip], stdout=subprocess.PIPE,
                     text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def whoami(net: Internet, i: int, poke: bool = False) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in py(net, net.parties[i].ns, WHOAMI, net.server_ip,
                   "poke" if poke else "-").splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key, []).append(value)
    return out


@pytest.fixture(scope="module")
def net():
    with Internet(nats=["cone", "symmetric", "public", "cone", "cone"], block_udp=(3,),
                  turn_secret="t0ps3cret", name="msimt") as net:
        start_echo(net)
        yield net


# -- (2) NAT behaviour -----------------------------------------------------------

def test_cone_keeps_one_mapping_for_every_destination(net):
    seen = whoami(net, 0)
    assert seen["mapped"][0] == seen["mapped"][1]
    assert seen["mapped"][0].split(":")[0] == net.parties[0].wan_ip


def test_symmetric_maps_each_destination_to_a_new_port(net):
    seen = whoami(net, 1)
    (ip0, port0), (ip1, port1) = (m.split(":") for m in seen["mapped"])
    assert ip0 == ip1 == net.parties[1].wan_ip
    assert port0 != port1


def test_public_host_is_seen_untranslated(net):
    seen = whoami(net, 2)
    local = seen["local"][0]
    assert seen["mapped"] == [f"{net.parties[2].lan_ip}:{local}"] * 2


@pytest.mark.parametrize("i", [0, 1, 2])
def test_unsolicited_inbound_udp(net, i):
    """Behind a NAT only the contacted address:port gets through (port-restricted);
    a public host receives from anyone."""
    party = net.parties[i]
    client = net.popen(party.ns, [PY, "-c", WHOAMI, net.server_ip, "poke"],
                       stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None
    client.stdout.readline()  # local port
    mapped = client.stdout.readline().split()[1]
    ip, port = mapped.split(":")
    # A third address: another party's home router, on the public side.
    py(net, net.parties[3].router, SEND_UDP, ip, port)
    out, _ = client.communicate(timeout=10)
    got = sorted(line.split(" ", 2)[2] for line in out.splitlines() if line.startswith("got"))
    if party.nat == "public":
        assert got == sorted([mapped, "unsolicited", "third party", "late"])
    else:
        assert got == sorted([mapped, "late"])  # solicited answers only


@pytest.mark.parametrize("a,b,works", [(0, 4, True), (0, 1, False)])
def test_hole_punching(net, a, b, works):
    """cone/cone connects directly: simultaneous sends open both NATs (this needs the
    routers to drop unsolicited packets, trap 1). A symmetric NAT gives the peer a
    different port than the one the echo service saw, so punching fails."""
    procs = [net.popen(net.parties[i].ns, [PY, "-c", PUNCH, net.server_ip],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in (a, b)]
    mapped = [p.stdout.readline().strip() for p in procs]
    for proc, peer in zip(procs, reversed(mapped), strict=True):
        proc.stdin.write(peer + "\n")
        proc.stdin.flush()
    got = [int(p.communicate(timeout=10)[0]) for p in procs]
    if works:
        assert min(got) >= 20, got  # ~30 sent each way; the first ones may be dropped
    else:
        assert got == [0, 0]


# -- (3) block_udp ----------------------------------------------------------------

def test_blocked_udp_never_leaves_but_tcp_does(net):
    party = net.parties[3]
    seen = whoami(net, 3)
    assert seen["mapped"] == ["timeout", "timeout"]
    tcp = py(net, party.ns, TCP_WHOAMI, net.server_ip).split()
    assert tcp[0] == "mapped" and tcp[1].split(":")[0] == party.wan_ip


# -- (4) coturn -------------------------------------------------------------------

def turn_allocate(net: Internet, i: int, transport: str, password: str | None = None) -> dict:
    user, good = net.turn_credentials(f"party{i}")
    out = py(net, net.parties[i].ns, TURN, net.turn_ip, user, password or good, transport,
             net.server_ip)
    return json.loads(out)


@pytest.mark.parametrize("i,transport", [(0, "udp"), (1, "udp"), (0, "tcp"), (3, "tcp")])
def test_turn_allocation_relays(net, i, transport):
    result = turn_allocate(net, i, transport)
    assert "error" not in result, result
    relay_ip, relay_port = result["relayed"]
    assert relay_ip == net.turn_ip
    # The public echo saw the relay as its peer, and its answer came back through it.
    assert result["seen"] == f"{relay_ip}:{relay_port}"
    assert result["from"] == [net.server_ip, 4000]


def test_turn_wrong_password_gets_no_allocation(net):
    result = turn_allocate(net, 0, "udp", password="d3JvbmcgcGFzc3dvcmQ=")
    assert "error" in result and "401" in result["error"], result


def test_turn_over_udp_fails_where_udp_is_blocked(net):
    result = turn_allocate(net, 3, "udp")
    assert "error" in result, result


# -- (6) cut / restore -------------------------------------------------------------

def test_cut_and_restore(net):
    assert whoami(net, 0)["mapped"][0] != "timeout"
    net.cut(0)
    try:
        assert whoami(net, 0)["mapped"] == ["timeout", "timeout"]
        assert py(net, net.parties[0].ns, TCP_WHOAMI, net.server_ip).startswith("error")
        assert whoami(net, 1)["mapped"][0] != "timeout"  # the others are unaffected
    finally:
        net.restore(0)
    assert whoami(net, 0)["mapped"][0].split(":")[0] == net.parties[0].wan_ip


# -- (5) the wire -------------------------------------------------------------------

def test_wire_delay():
    """One access link between the LAN host and the public side: RTT = 2 x delay."""
    with Internet(nats=["cone", "public"], delay_ms=25, name="msimd") as net:
        start_echo(net)
        for i in range(2):
            median, low, high, n = map(float, py(net, net.parties[i].ns, PING, net.server_ip,
                                                  "20").split())
            assert n == 20
            assert 50 <= low and median < 60, (median, low, high)


def test_wire_loss_and_order():
    with Internet(nats=["cone"], loss=0.2, name="msiml", seed=7) as net:
        start_echo(net)
        received, in_order = py(net, net.parties[0].ns, BURST, net.server_ip, "1000").split()
        assert 700 <= int(received) <= 900, received
        assert in_order == "True"


def wire_counters(net: Internet) -> dict[str, dict[str, int]]:
    """Ends the wire (SIGTERM) and returns its counters per direction, from its log."""
    rec = next(r for r in net._procs if r.role == "wire")
    os.kill(rec.pid, signal.SIGTERM)
    assert rec.popen is not None and rec.popen.wait(5) == 0
    counters = {}
    for line in (net.state_dir / "wire.log").read_text().splitlines():
        if m := re.search(r"(\S+->\S+): (.*)", line):
            words = m[2].split()
            counters[m[1]] = {k: int(v) for k, v in zip(words[::2], words[1::2], strict=True)}
    return counters


def test_wire_reorders_without_losing_or_altering():
    """A fifth of the packets held back 10 ms: later ones overtake them, and every packet
    still arrives once, intact."""
    with Internet(nats=["cone"], reorder=0.2, reorder_ms=10, name="msimo", seed=7) as net:
        start_echo(net)
        stats = json.loads(py(net, net.parties[0].ns, CHECKED_BURST, net.server_ip, "1000"))
        assert stats["received"] == stats["distinct"] == 1000, stats
        assert stats["duplicates"] == stats["bad"] == 0, stats
        # About 200 held back; nearly every one is overtaken at this sending rate.
        assert 100 <= stats["late"] <= 300, stats
        up = wire_counters(net)["t0l->t0r"]
        assert up["sent"] == up["received"] and up["lost"] == up["duplicated"] == 0, up
        assert 150 <= up["reordered"] <= 260, up


def test_wire_duplicates_without_losing_or_altering():
    with Internet(nats=["cone"], duplicate=0.1, name="msimu", seed=7) as net:
        start_echo(net)
        stats = json.loads(py(net, net.parties[0].ns, CHECKED_BURST, net.server_ip, "1000"))
        assert stats["distinct"] == 1000 and stats["bad"] == 0, stats
        assert 60 <= stats["duplicates"] <= 140, stats
        assert stats["received"] == 1000 + stats["duplicates"]
        assert stats["late"] == 0, stats  # duplication alone keeps the order
        up = wire_counters(net)["t0l->t0r"]
        assert up["sent"] == up["received"] + up["duplicated"] and up["reordered"] == 0, up


def test_impairment_options_are_checked_and_kept():
    """Out-of-range options fail before anything is built; the state file keeps them, so
    that ``Internet.load`` (CLI status/cut) describes the same wire."""
    for bad in ({"reorder": 1.5}, {"duplicate": -0.1}, {"reorder": 0.1, "reorder_ms": 0}):
        with pytest.raises(ValueError, match="reorder"):
            Internet(nats=["cone"], name="msimv", **bad)
    net = Internet(nats=["cone"], name="msimv", reorder=0.05, reorder_ms=4, duplicate=0.01)
    assert net.use_wire
    assert {k: net.config()[k] for k in ("reorder", "reorder_ms", "duplicate")} == {
        "reorder": 0.05, "reorder_ms": 4.0, "duplicate": 0.01}
    assert "5.0% held back 4 ms (reordered), 1.0% duplicated" in net.describe()


def test_without_coturn_the_servers_own_stun_is_the_stun_server():
    """``coturn=False``: no relay, and parties are pointed at the signaling server's STUN
    service; the state file keeps the choice (``Internet.load``)."""
    net = Internet(nats=["cone", "cone"], name="msimc", server=True, coturn=False)
    assert net.stun_url == "stun:100.64.0.1:3478" and net.turn_urls == []
    assert net.config()["coturn"] is False
    text = net.describe()
    assert "coturn            none (no TURN relay)" in text
    assert "stun:100.64.0.1:3478  (the signaling server's own)" in text
    assert "--ice-server" not in text and "TURN credentials" not in text
    assert Internet(nats=["cone"], name="msimc").config()["coturn"] is True


def test_no_wire_without_impairment(net):
    median, low, high, n = map(float, py(net, net.parties[0].ns, PING, net.server_ip,
                                          "20").split())
    assert median < 5
    assert not any(role == "wire" for role in roles(net.status()))


def roles(status: dict) -> list[str]:
    return [p["role"] for p in status["processes"] if p["alive"]]


# -- (1) up/down idempotent, crash-safe -----------------------------------------------

def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}


def namespaces_named(name: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{name}-")]


def test_up_down_idempotent_and_crash_safe():
    links = root_links()
    first = Internet(nats=["cone", "symmetric"], delay_ms=5, name="msimi")
    first.up()
    old = first.status()
    sleeper = first.popen(first.parties[0].ns, ["sleep", "60"])
    old_pids = {p["pid"] for p in old["processes"]} | {sleeper.pid}
    assert set(roles(old)) == {"coturn", "wire"}
    assert len(namespaces_named("msimi")) == 6

    # The test "crashes": nothing is torn down; a new run of the same name starts over.
    second = Internet(nats=["cone", "symmetric"], delay_ms=5, name="msimi")
    second.up()
    assert sleeper.wait(5) is not None
    for pid in old_pids:
        assert proc_stat(pid) is None or proc_stat(pid)[0] == "Z"
    new = second.status()
    assert set(roles(new)) == {"coturn", "wire"}
    new_pids = {p["pid"] for p in new["processes"]}
    assert not new_pids & old_pids
    assert whoami_after_up(second)

    # Crash again, and lose the state file too: down from a fresh object still finds
    # everything through the namespaces.
    (STATE_ROOT / "msimi.json").unlink()
    fresh = Internet(name="msimi")
    fresh.down()
    assert namespaces_named("msimi") == []
    for pid in new_pids:
        assert proc_stat(pid) is None or proc_stat(pid)[0] == "Z"
    fresh.down()  # twice is fine
    second.down()
    assert root_links() == links  # nothing ever appeared in the root namespace
    assert not (STATE_ROOT / "msimi").exists()


def whoami_after_up(net: Internet) -> bool:
    start_echo(net)
    return whoami(net, 0)["mapped"][0].split(":")[0] == net.parties[0].wan_ip


def test_down_spares_a_recycled_pid():
    """A recorded PID that now runs something else is not ours any more."""
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        stat = proc_stat(bystander.pid)
        assert stat is not None
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        (STATE_ROOT / "msimr.json").write_text(json.dumps({"processes": [
            {"role": "coturn", "ns": "msimr-inet", "pid": bystander.pid,
             "argv": ["ip", "netns", "exec", "msimr-inet", "turnserver", "-n"],
             "cmd": ["turnserver", "-n"], "start": stat[1]}]}))
        Internet(name="msimr").down()
        assert bystander.poll() is None
        assert not (STATE_ROOT / "msimr.json").exists()
    finally:
        bystander.send_signal(signal.SIGTERM)
        bystander.wait()


# -- (7) the CLI ----------------------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "e2e.netsim", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_cli_up_status_down():
    up = cli("up", "--name", "msimc", "--nat", "cone,public", "--block-udp", "1",
             "--delay-ms", "1", "--server")
    try:
        assert up.returncode == 0, up.stderr
        assert "msimc-p0" in up.stdout and "turn:100.64.0.2:3478?transport=tcp" in up.stdout
        assert "UDP blocked" in up.stdout and "up in " in up.stdout
        assert len(namespaces_named("msimc")) == 6
        status = cli("status", "--name", "msimc")
        assert status.returncode == 0, status.stderr
        alive = [line.split() for line in status.stdout.splitlines() if " alive " in line]
        assert {cols[2] for cols in alive} == {"coturn", "wire", "server"}
        pids = [int(cols[0]) for cols in alive]
        assert set(pids) <= set(pids_in_namespaces(namespaces_named("msimc")))
        # The signaling server answers a party behind the NAT.
        fetch = subprocess.run(
            ["ip", "netns", "exec", "msimc-p0", PY, "-c",
             "import urllib.request; print(urllib.request.urlopen("
             "'http://100.64.0.1:8080/', timeout=5).status)"],
            capture_output=True, text=True, timeout=30)
        assert fetch.stdout.strip() == "200", fetch.stderr
        cut = cli("cut", "0", "--name", "msimc")
        assert cut.returncode == 0 and "offline" in cut.stdout
    finally:
        down = cli("down", "--name", "msimc")
    assert down.returncode == 0, down.stderr
    assert namespaces_named("msimc") == []
    time.sleep(0.05)
    assert all(proc_stat(pid) is None or proc_stat(pid)[0] == "Z" for pid in pids)
    status = cli("status", "--name", "msimc")
    assert status.returncode == 1 and "not running" in status.stdout


def test_wire_overhead_and_clean_exit():
    """Without delay the wire costs well under a millisecond; on SIGTERM it exits
    cleanly and its TUN devices vanish with it."""
    with Internet(nats=["cone"], wire=True, name="msimw") as net:
        start_echo(net)
        median, *_ = map(float, py(net, net.parties[0].ns, PING, net.server_ip, "50").split())
        assert median < 5
        (wire,) = [p for p in net.status()["processes"] if p["role"] == "wire"]
        rec = next(r for r in net._procs if r.role == "wire")
        os.kill(wire["pid"], signal.SIGTERM)
        assert rec.popen.wait(5) == 0
        link = subprocess.run(["ip", "-n", net.parties[0].ns, "link", "show", "eth0"],
                              capture_output=True, text=True)
        assert link.returncode != 0
        log = (net.state_dir / "wire.log").read_text()
        assert "t0l->t0r: received" in log
