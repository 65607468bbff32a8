"""The WireGuard mesh on the simulated internet (e2e/netsim/wireguard.py), shown with
real traffic: TCP between tunnel addresses, wireguard-go's own byte counters and the
LAN interface's as proof that it went through WireGuard, the wire's delay inside the
tunnel RTT, and nothing left behind (processes, control sockets, namespaces).

Sockets are made inside the parties' namespaces from this process (``socket_in``),
so every packet stays inside namespaces the tests create; all of them are deleted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from e2e.netsim import Internet, Mesh
from e2e.netsim.internet import STATE_ROOT
from e2e.netsim.processes import alive
from e2e.netsim.wireguard import (
    SOCKET_DIR,
    interface_name,
    interface_prefix,
    socket_in,
    unsupported_pairs,
)

pytestmark = pytest.mark.netns

# Unique per run: a concurrent run of the suite (another checkout) must not share names.
NAME = f"mwg{os.getpid()}"


def _missing() -> str | None:
    for tool in ("ip", "iptables-restore", "turnserver", "wireguard-go", "wg"):
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
        pytest.fail(f"the WireGuard netsim tests need {why}", pytrace=False)


@pytest.fixture(scope="module")
def net() -> Iterator[Internet]:
    with Internet(nats=["public"] * 3, name=NAME, turn_secret="x") as net:
        yield net


def _our_sockets(name: str) -> list[str]:
    try:
        return [e for e in os.listdir(SOCKET_DIR) if e.startswith(interface_prefix(name))]
    except FileNotFoundError:
        return []


def _dev_bytes(pid: int, dev: str) -> tuple[int, int]:
    """(received, sent) bytes of dev in pid's network namespace."""
    for line in open(f"/proc/{pid}/net/dev").read().splitlines()[2:]:
        name, data = line.split(":", 1)
        if name.strip() == dev:
            cols = data.split()
            return int(cols[0]), int(cols[8])
    raise AssertionError(f"no {dev} in pid {pid}'s namespace")


def _listen(ns: str, ip: str) -> socket.socket:
    srv = socket_in(ns, socket.SOCK_STREAM)
    srv.bind((ip, 0))
    srv.listen()
    srv.settimeout(10)
    return srv


def _connect(ns: str, ip: str, port: int) -> socket.socket:
    cli = socket_in(ns, socket.SOCK_STREAM)
    cli.settimeout(10)
    cli.connect((ip, port))
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return cli


def _serve(srv: socket.socket, handler) -> threading.Thread:  # type: ignore[no-untyped-def]
    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(10)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            handler(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _sink(conn: socket.socket) -> None:
    """Read to EOF, answer with the SHA-256 of what came."""
    h = hashlib.sha256()
    while data := conn.recv(1 << 16):
        h.update(data)
    conn.sendall(h.digest())


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(64):
        conn.sendall(data)


def _ping_pong_ms(cli: socket.socket, rounds: int) -> list[float]:
    rtts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        cli.sendall(b"x")
        assert cli.recv(64) == b"x"
        rtts.append((time.perf_counter() - t0) * 1e3)
    return rtts


def test_tcp_goes_through_wireguard(net: Internet) -> None:
    mesh = net.wireguard_mesh()
    assert net.wireguard_mesh() is mesh  # idempotent
    assert [mesh.address(i) for i in range(3)] == ["10.77.0.1", "10.77.0.2", "10.77.0.3"]
    assert mesh.seconds is not None and 0 < mesh.seconds < 10
    p0, p2 = net.parties[0], net.parties[2]
    pid0 = mesh.processes[0].pid
    wg_before, wg2_before = mesh.transfer(0)[2], mesh.transfer(2)[0]
    eth_before = _dev_bytes(pid0, "eth0")

    payload = os.urandom(2 << 20)
    srv = _listen(p2.ns, mesh.address(2))
    thread = _serve(srv, _sink)
    with _connect(p0.ns, mesh.address(2), srv.getsockname()[1]) as cli:
        # The route to 10.77.0.0/24 is the tunnel interface: our end is the tunnel address.
        assert cli.getsockname()[0] == mesh.address(0)
        cli.sendall(payload)
        cli.shutdown(socket.SHUT_WR)
        assert cli.recv(64) == hashlib.sha256(payload).digest()
    thread.join(10)
    srv.close()

    # wireguard-go encrypted it (its per-peer counters, both ends) and the LAN interface
    # carried it (as UDP between the WireGuard ports, the only traffic there).
    sent = mesh.transfer(0)[2][1] - wg_before[1]
    received = mesh.transfer(2)[0][0] - wg2_before[0]
    eth_sent = _dev_bytes(pid0, "eth0")[1] - eth_before[1]
    assert sent >= len(payload) and received >= len(payload)
    assert eth_sent >= len(payload)
    udp = open(f"/proc/{pid0}/net/udp").read()
    assert f":{mesh.port:04X} " in udp  # wireguard-go's socket on the LAN side


def test_mesh_down_and_up_again(net: Internet) -> None:
    """Mesh.down() ends only the mesh; a new one comes up on the same simulation."""
    first = net.wireguard_mesh()
    pids = [p.pid for p in first.processes]
    first.down()
    assert not any(alive(pid) for pid in pids)
    assert _our_sockets(net.name) == []
    assert set(net.existing_namespaces()) == set(net.namespaces)
    second = Mesh(net).up()
    assert second is not first and net.wireguard_mesh() is second
    srv = _listen(net.parties[1].ns, second.address(1))
    thread = _serve(srv, _echo)
    with _connect(net.parties[0].ns, second.address(1), srv.getsockname()[1]) as cli:
        assert len(_ping_pong_ms(cli, 3)) == 3
    thread.join(10)
    srv.close()


def test_hidden_mesh_is_unreachable_then_works_again(net: Internet) -> None:
    """Mesh.hidden(): other transports measured meanwhile cannot use the tunnel."""
    mesh = net.wireguard_mesh()
    p0, p1 = net.parties[0], net.parties[1]
    with mesh.hidden():
        cli = socket_in(p0.ns, socket.SOCK_STREAM)
        cli.settimeout(2)
        with pytest.raises(OSError):  # no route to the tunnel addresses at all
            cli.connect((mesh.address(1), 9))
        cli.close()
    assert mesh.is_up
    srv = _listen(p1.ns, mesh.address(1))
    thread = _serve(srv, _echo)
    with _connect(p0.ns, mesh.address(1), srv.getsockname()[1]) as cli:
        assert len(_ping_pong_ms(cli, 3)) == 3
    thread.join(10)
    srv.close()


def test_tunnel_rtt_includes_the_delay() -> None:
    delay = 10.0
    with Internet(nats=["public", "public"], delay_ms=delay, name=NAME + "d") as net:
        mesh = net.wireguard_mesh()
        srv = _listen(net.parties[1].ns, mesh.address(1))
        thread = _serve(srv, _echo)
        with _connect(net.parties[0].ns, mesh.address(1), srv.getsockname()[1]) as cli:
            rtts = _ping_pong_ms(cli, 15)
        thread.join(10)
        srv.close()
    # Party to party crosses two access links, each twice: 4 x delay per round trip.
    assert min(rtts) >= 4 * delay
    assert statistics.median(rtts) < 4 * delay + 20


def test_behind_cone_and_symmetric_nats() -> None:
    """cone/cone punches through (one side opens, the other initiates), and a
    symmetric party reaches public ones (they learn its endpoint). ``up`` returning
    means every pair exchanged packets."""
    with Internet(nats=["cone", "cone", "public"], delay_ms=5, name=NAME + "c") as net:
        mesh = net.wireguard_mesh()
        assert mesh.endpoint(0) == f"{net.parties[0].wan_ip}:{mesh.port}"
        assert set(mesh.transfer(0)) == {1, 2}
    with Internet(nats=["symmetric", "public"], name=NAME + "s") as net:
        mesh = net.wireguard_mesh()
        assert mesh.endpoint(0) is None
    for nats, bad in ((["cone", "symmetric"], [(0, 1)]),
                      (["symmetric", "symmetric", "public"], [(0, 1)])):
        assert unsupported_pairs(Internet(nats=nats, name=NAME).parties) == bad
        with pytest.raises(ValueError, match="no direct WireGuard path"):
            Mesh(Internet(nats=nats, name=NAME))
    blocked = Internet(nats=["public", "public"], block_udp=(1,), name=NAME)
    assert unsupported_pairs(blocked.parties) == [(0, 1)]


def test_interface_names() -> None:
    names = {interface_name(n, i) for n in ("msim", "msimt", "x" * 31) for i in range(200)}
    assert len(names) == 600 and max(map(len, names)) <= 15


def test_down_leaves_nothing() -> None:
    """Internet.down() ends wireguard-go (even one killed hard, whose socket stays
    behind) and deletes only our sockets."""
    name = NAME + "x"
    net = Internet(nats=["public"] * 3, name=name).up()
    try:
        mesh = net.wireguard_mesh()
        pids = [p.pid for p in mesh.processes]
        sockets = _our_sockets(name)
        assert len(sockets) == 3
        os.kill(pids[1], signal.SIGKILL)  # our own wireguard-go, by PID
        mesh.processes[1].wait(5)
        assert f"{interface_name(name, 1)}.sock" in _our_sockets(name)  # stale
        others = set(os.listdir(SOCKET_DIR)) - set(sockets)
    finally:
        net.down()
    assert not any(alive(pid) for pid in pids)
    assert _our_sockets(name) == []
    assert others <= set(os.listdir(SOCKET_DIR))  # nobody else's socket was touched
    assert net.existing_namespaces() == []
    assert not (STATE_ROOT / f"{name}.json").exists()
