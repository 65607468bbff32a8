"""A WireGuard full mesh between the parties of a running simulated internet.

VPN-mesh products (Tailscale, Headscale, NetBird) run WireGuard between every pair
of machines; this is that data path without their control planes, as a baseline
to compare WebRTC data channels against on the same simulated network.

There is no kernel WireGuard here, so each party's LAN namespace runs Debian's
``wireguard-go`` (userspace, on /dev/net/tun) in the foreground, recorded like every
other daemon of the simulation and ended by ``Internet.down()``. Keys come from
``wg genkey``/``wg pubkey`` and peers are configured with ``wg set``; the tunnel
interface gets 10.77.0.(i+1)/24. ``up`` returns only when every party has exchanged
a packet with every other through the tunnel, so a benchmark that starts right after
sees a working mesh. See docs/netsim.md ("WireGuard mesh").

Endpoints: a ``"public"`` party is reached at its LAN address, a ``"cone"`` party at
its router's WAN address (MASQUERADE keeps the listen port, and both sides sending
punch the hole), and a ``"symmetric"`` party at no fixed address: it initiates, and
its peer learns the endpoint from the authenticated packet (WireGuard roaming). Hence
a pair works when one side is public or both are cone; pairs with a symmetric party
and a non-public one, and UDP-blocked parties, would need a relay (DERP, TURN) and are
refused up front.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import re
import selectors
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .processes import NETNS_DIR, NetsimError, matches, run_command, run_parallel, terminate

if TYPE_CHECKING:
    from .internet import Internet, Party

log = logging.getLogger(__name__)

SOCKET_DIR = Path("/var/run/wireguard")
"""wireguard-go's control sockets: one directory for all namespaces (not per netns)."""
SUBNET = "10.77.0"
PREFIX = 24
LISTEN_PORT = 51820
MTU = 1420
"""wireguard-go's default: 1500 on the access links minus 80 bytes of IPv6+UDP+WireGuard."""
KEEPALIVE = 25
"""Seconds; what wg-quick users set behind NAT (UDP conntrack lasts 30 s unreplied,
120 s once seen both ways). Used on every pair, see ``Mesh._build``."""
PROBE_PORT = 51999
PROBE_INTERVAL = 0.05
"""Seconds between pings to a peer that has not answered yet."""
OPEN_GAP = 0.1
"""Seconds between a cone opener's first packet and its peer's initiation: far more
than the time the opener's packet needs to pass its router; it costs bring-up only
when two cone parties are present."""
ROLE = "wireguard"
"""The processes' role in the state file (``python -m e2e.netsim status`` shows it)."""


def interface_prefix(name: str) -> str:
    """``wgm`` + 7 hex digits of the simulation's name: unique per ``Internet`` name.

    wireguard-go's control socket is /var/run/wireguard/IFNAME.sock whatever the
    namespace, so two simulations (or two parties) must never share an interface
    name; and interface names have at most 15 characters, too few for the name
    itself. Deterministic, so ``down`` from another process finds the sockets.
    """
    return "wgm" + hashlib.sha1(name.encode()).hexdigest()[:7] + "p"


def interface_name(name: str, i: int) -> str:
    """Party i's tunnel interface, e.g. ``wgm1a2b3c4p0`` (at most 14 characters)."""
    return f"{interface_prefix(name)}{i}"


def address(i: int) -> str:
    """Party i's address inside the tunnel."""
    return f"{SUBNET}.{i + 1}"


def remove_sockets(name: str) -> list[Path]:
    """Delete the control sockets of simulation ``name``'s interfaces (only those).

    wireguard-go unlinks its socket on SIGTERM but not when killed, and a stale one
    makes ``wg show all`` list a dead interface. Call only once our wireguard-go
    processes are gone: a running one exits when its socket is deleted.
    """
    pattern = re.compile(rf"^{re.escape(interface_prefix(name))}\d+\.sock$")
    removed = []
    try:
        entries = os.listdir(SOCKET_DIR)
    except FileNotFoundError:
        return removed
    for entry in entries:
        if pattern.match(entry):
            path = SOCKET_DIR / entry
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path)
    return removed


def unsupported_pairs(parties: list[Party]) -> list[tuple[int, int]]:
    """Pairs no direct WireGuard path can join on this network (they would need a relay)."""
    bad = []
    for a in parties:
        for b in parties[a.index + 1:]:
            ok = not (a.block_udp or b.block_udp) and (
                "public" in (a.nat, b.nat) or (a.nat == b.nat == "cone"))
            if not ok:
                bad.append((a.index, b.index))
    return bad


def check_supported(parties: list[Party]) -> None:
    """ValueError naming the pairs a direct WireGuard mesh cannot join."""
    bad = unsupported_pairs(parties)
    if bad:
        raise ValueError(
            "no direct WireGuard path for parties " + ", ".join(f"{a}-{b}" for a, b in bad)
            + ": a pair needs UDP and one public side or two cone NATs")


@dataclass(frozen=True)
class Keys:
    """A party's key pair, base64 as ``wg`` prints it (the private one also in a 0600
    file: ``wg set`` reads keys from files only, never from its command line)."""

    private: str
    public: str


class Mesh:
    """wireguard-go on every party, each the peer of every other; see the module doc.

    ``up()`` is idempotent; ``down()`` ends only the mesh (the simulation stays),
    and ``Internet.down()`` ends it too.
    """

    def __init__(self, net: Internet, *, mtu: int = MTU, port: int = LISTEN_PORT,
                 timeout: float = 30.0) -> None:
        check_supported(net.parties)
        if not 1280 <= mtu <= 1500 - 80:
            raise ValueError(f"mtu {mtu}: want 1280..1420 (access links carry 1500)")
        self.net = net
        self.mtu = mtu
        self.port = port
        self.timeout = timeout
        self.keys: list[Keys] = []
        self.seconds: float | None = None
        """Bring-up time: keys, wireguard-go start, ``wg set``, handshakes until every
        pair has exchanged a packet."""
        self.is_up = False
        self.processes: list[subprocess.Popen] = []
        """The wireguard-go daemons, party by party (their PIDs are recorded, too)."""

    # -- names ---------------------------------------------------------------------

    def interface(self, i: int) -> str:
        """Party i's tunnel interface (in its LAN namespace), for ``wg show`` or ``ip``."""
        return interface_name(self.net.name, i)

    def address(self, i: int) -> str:
        """Party i's address inside the tunnel: what benchmarks connect to."""
        return address(i)

    @property
    def addresses(self) -> list[str]:
        """Every party's tunnel address, in party order."""
        return [address(p.index) for p in self.net.parties]

    def endpoint(self, i: int) -> str | None:
        """Where the others send to party i, or None: a symmetric NAT's port is unknown
        until it sends (its peers learn it then)."""
        p = self.net.parties[i]
        if p.nat == "public":
            return f"{p.lan_ip}:{self.port}"
        if p.nat == "cone":
            return f"{p.wan_ip}:{self.port}"
        return None

    def initiator(self, a: Party, b: Party) -> tuple[int, int | None]:
        """(who sends the first packet of pair a-b, who must send before it or None).

        One side only: when both initiate at once, each answers the other's
        initiation, which discards its own handshake state, so both responses are
        rejected ("Received invalid response message") and the pair waits for the
        retry after REKEY_TIMEOUT (5 s) -- which may cross again. With 10 ms links
        that was every other bring-up. A NATed side starts (its router then lets
        the answer in); between two cone NATs the higher index sends first, only
        to open its router (its initiation dies at the other router), and the lower
        one initiates OPEN_GAP later through that hole.
        """
        lo, hi = (a, b) if a.index < b.index else (b, a)
        if lo.nat == hi.nat == "cone":
            return lo.index, hi.index
        if lo.nat == "public" and hi.nat != "public":
            return hi.index, None
        return lo.index, None

    # -- up / down ---------------------------------------------------------------------

    def up(self) -> Mesh:
        """Start and configure every party; return once every pair exchanges packets."""
        if self.is_up:
            return self
        current = self.net._wireguard
        if current is not None and current is not self:
            current.down()
        self.down()  # whatever an earlier mesh on this simulation left
        t0 = time.monotonic()
        self.net._wireguard = self
        try:
            self._build()
        except BaseException:
            log.error("WireGuard mesh on %s failed; ending it", self.net.name)
            self.down()
            raise
        self.seconds = time.monotonic() - t0
        self.is_up = True
        log.info("%s: WireGuard mesh of %d up in %.3f s", self.net.name,
                 len(self.net.parties), self.seconds)
        return self

    def down(self) -> None:
        """End this simulation's wireguard-go processes and delete their sockets."""
        net = self.net
        victims = {rec.pid: rec.role for rec in net._recorded()
                   if rec.role == ROLE and matches(rec)}
        terminate(victims)
        for rec in net._procs:
            if rec.role == ROLE and rec.popen is not None:
                try:
                    rec.popen.wait(0.1)
                except subprocess.TimeoutExpired:
                    pass
        net._procs = [rec for rec in net._procs if rec.role != ROLE]
        if net.state_file.exists():
            net._save()
        remove_sockets(net.name)
        for key_file in (net.state_dir / "wireguard").glob("p*.key"):
            key_file.unlink(missing_ok=True)  # the logs stay until Internet.down()
        self.processes = []
        self.is_up = False
        if net._wireguard is self:
            net._wireguard = None

    @contextlib.contextmanager
    def hidden(self) -> Iterator[None]:
        """The tunnel interfaces down for a while, then up and probed again.

        For measuring other transports on the same parties: WebRTC gathers every
        interface, and its direct pairs would otherwise run through the tunnel.
        """
        if not self.is_up:
            yield
            return
        for p in self.net.parties:
            run_command(["ip", "-n", p.ns, "link", "set", self.interface(p.index), "down"])
        try:
            yield
        finally:
            for p in self.net.parties:
                run_command(["ip", "-n", p.ns, "link", "set", self.interface(p.index), "up"])
            self._probe()

    def _build(self) -> None:
        net = self.net
        wgdir = net.state_dir / "wireguard"
        wgdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        n = len(net.parties)
        # Keys and daemons at once: wg genkey/pubkey never touch a network.
        keygen = subprocess.Popen(
            ["sh", "-c", 'for i in $(seq "$1"); do k=$(wg genkey) && '
             'printf "%s %s\\n" "$k" "$(printf %s "$k" | wg pubkey)" || exit 1; done',
             "keygen", str(n)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        env = dict(os.environ, WG_PROCESS_FOREGROUND="1",
                   LOG_LEVEL=os.environ.get("MPYC_NETSIM_WG_LOG", "error"))
        daemons = []
        for p in net.parties:
            with open(wgdir / f"{self.interface(p.index)}.log", "ab") as out:
                daemons.append(net._start(ROLE, p.ns, ["wireguard-go", self.interface(p.index)],
                                          env=env, stdout=out, stderr=out,
                                          stdin=subprocess.DEVNULL, start_new_session=True))
        out, err = keygen.communicate(timeout=30)
        if keygen.returncode != 0:
            raise NetsimError(f"wg genkey/pubkey failed: {err.strip()}")
        self.keys = [Keys(*line.split()) for line in out.splitlines()]
        if len(self.keys) != n:
            raise NetsimError(f"wg genkey/pubkey gave {len(self.keys)} keys for {n} parties")
        for p, keys in zip(net.parties, self.keys, strict=True):
            key_file = wgdir / f"p{p.index}.key"
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(keys.private + "\n")
        self.processes = daemons
        self._wait_sockets(daemons, 10.0)

        # Configure everyone before any packet flows: a handshake initiation that
        # reaches a peer not yet configured is lost, and the retry comes only after
        # REKEY_TIMEOUT (5 s). Hence no persistent keepalive here (turning it on sends
        # a keepalive at once); it is switched on after the probes.
        jobs = [subprocess.Popen(net.exec_args(p.ns, ["sh", "-c", self._configure_script(p)]),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                for p in net.parties]
        errors = []
        for p, job in zip(net.parties, jobs, strict=True):
            _, err = job.communicate(timeout=30)
            if job.returncode != 0:
                errors.append(f"party {p.index}: {err.strip()}")
        if errors:
            raise NetsimError("configuring WireGuard failed:\n" + "\n".join(errors))

        self._probe()

        # Keepalives on every pair: NAT mappings die after 30 s of silence, and a
        # session left idle expires after 180 s; the next packets would start a new
        # handshake from whichever side sends first, and if both send at once (an
        # MPC round does), the handshakes cross and the pair stalls for 5 s. Kept
        # alive, only the session's initiator rekeys (every 120 s): no crossing.
        keepalive = []
        for p in net.parties:
            args = []
            for q in net.parties:
                if q.index != p.index:
                    args += ["peer", self.keys[q.index].public,
                             "persistent-keepalive", str(KEEPALIVE)]
            if args:
                keepalive.append((net.exec_args(p.ns, ["wg", "set", self.interface(p.index),
                                                       *args]), ""))
        run_parallel(keepalive)

    def _configure_script(self, p: Party) -> str:
        """``wg set`` with every peer, then address, MTU and link up, for party p."""
        ifname = self.interface(p.index)
        wg = ["wg", "set", ifname, "listen-port", str(self.port),
              "private-key", str(self.net.state_dir / "wireguard" / f"p{p.index}.key")]
        for q in self.net.parties:
            if q.index == p.index:
                continue
            wg += ["peer", self.keys[q.index].public, "allowed-ips", f"{address(q.index)}/32"]
            endpoint = self.endpoint(q.index)
            if endpoint is not None:
                wg += ["endpoint", endpoint]
        ip = [["ip", "addr", "add", f"{address(p.index)}/{PREFIX}", "dev", ifname],
              # No IPv6 link-local addresses anywhere in the simulation (docs/netsim.md).
              ["ip", "link", "set", ifname, "addrgenmode", "none"],
              ["ip", "link", "set", ifname, "mtu", str(self.mtu), "up"]]
        return " && ".join(shlex.join(cmd) for cmd in [wg, *ip])

    def _wait_sockets(self, daemons: list[subprocess.Popen], timeout: float) -> None:
        """wireguard-go is ready for ``wg`` once its control socket exists."""
        deadline = time.monotonic() + timeout
        for p, proc in zip(self.net.parties, daemons, strict=True):
            sock = SOCKET_DIR / f"{self.interface(p.index)}.sock"
            while not sock.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_file = self.net.state_dir / "wireguard" / f"{self.interface(p.index)}.log"
                    raise NetsimError(
                        f"wireguard-go for party {p.index} did not start (exit {proc.poll()}):\n"
                        + _read(log_file))
                time.sleep(0.002)

    def _probe(self) -> None:
        """Every pair exchanges a ping and a pong through the tunnel, in a safe order.

        The initiator's first ping starts the handshake (see ``initiator`` for why
        only one side may); the pong proves the way back. All from this process,
        with one UDP socket per party made inside its namespace (``socket_in``):
        no probe processes to start, so their start-up skews neither ``seconds``
        nor the cone openers' head start.
        """
        net = self.net
        # plan[i]: (peer index, first ping after this many seconds) for party i.
        plan: list[list[tuple[int, float]]] = [[] for _ in net.parties]
        for a in net.parties:
            for b in net.parties[a.index + 1:]:
                first, opener = self.initiator(a, b)
                other = b.index if first == a.index else a.index
                if opener is None:
                    plan[first].append((other, 0.0))
                else:
                    plan[opener].append((first, 0.0))
                    plan[first].append((opener, OPEN_GAP))
        socks = [socket_in(p.ns) for p in net.parties]
        try:
            for p, sock in zip(net.parties, socks, strict=True):
                sock.setblocking(False)
                # Bound to the tunnel address, which only p's namespace has: a socket
                # in any other namespace would fail here.
                sock.bind((address(p.index), PROBE_PORT))
            t0 = time.monotonic()
            deadline = t0 + self.timeout
            due = {(i, j): t0 + wait for i, peers in enumerate(plan) for j, wait in peers}
            pending = set(due)
            with selectors.DefaultSelector() as sel:
                for i, sock in enumerate(socks):
                    sel.register(sock, selectors.EVENT_READ, i)
                while pending and (now := time.monotonic()) < deadline:
                    for i, j in pending:
                        if now >= due[i, j]:
                            _send(socks[i], b"ping", address(j))
                            due[i, j] = now + PROBE_INTERVAL
                    wait = min(min(due[k] for k in pending) - now, deadline - now)
                    for key, _ in sel.select(max(wait, 0.0)):
                        i = key.data
                        while True:
                            try:
                                data, (host, _port) = socks[i].recvfrom(64)
                            except BlockingIOError:
                                break
                            j = int(host.rsplit(".", 1)[1]) - 1
                            if data == b"ping":
                                _send(socks[i], b"pong", host)
                            elif data == b"pong":
                                pending.discard((i, j))
            if pending:
                raise NetsimError(
                    f"WireGuard mesh incomplete after {self.timeout} s: no answer for "
                    + ", ".join(f"{i}->{j}" for i, j in sorted(pending)))
        finally:
            for sock in socks:
                sock.close()

    # -- reading back -------------------------------------------------------------------

    def transfer(self, i: int) -> dict[int, tuple[int, int]]:
        """Party i's WireGuard byte counters per peer: {peer index: (received, sent)}.

        The bytes that really went through the tunnel, as wireguard-go counts them.
        """
        out = run_command(self.net.exec_args(self.net.parties[i].ns,
                                             ["wg", "show", self.interface(i), "transfer"]))
        by_key = {k.public: j for j, k in enumerate(self.keys)}
        counters = {}
        for line in out.splitlines():
            key, rx, tx = line.split()
            counters[by_key[key]] = (int(rx), int(tx))
        return counters

    def describe(self) -> str:
        """For people (``up --wireguard`` prints it): addresses, interfaces, endpoints."""
        lines = [f"WireGuard mesh (wireguard-go, {SUBNET}.0/{PREFIX}, MTU {self.mtu}, "
                 f"UDP {self.port})" + (f", up in {self.seconds:.3f} s" if self.seconds else "")]
        for p in self.net.parties:
            lines.append(f"    {p.index}: {p.ns:<12} {address(p.index):<11} dev "
                         f"{self.interface(p.index)}  endpoint "
                         f"{self.endpoint(p.index) or '(learned: symmetric NAT)'}")
        return "\n".join(lines)


def socket_in(ns: str, kind: int = socket.SOCK_DGRAM) -> socket.socket:
    """A socket inside network namespace ns, made without a process in ns.

    setns(2) changes the network namespace of the calling thread only, and a socket
    stays in the namespace it was made in; so a short-lived thread enters ns, makes
    the socket and ends. This process's own namespace is never used: if setns
    fails, no socket is made.
    """
    result: list[socket.socket | BaseException] = []

    def enter() -> None:
        try:
            fd = os.open(NETNS_DIR / ns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc().setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(socket.socket(socket.AF_INET, kind))
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    thread = threading.Thread(target=enter, name=f"setns-{ns}")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


_CLONE_NEWNET = 0x40000000


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _send(sock: socket.socket, data: bytes, host: str) -> None:
    try:
        sock.sendto(data, (host, PROBE_PORT))
    except OSError:
        pass  # a full queue or a transient error: the next round resends


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"
