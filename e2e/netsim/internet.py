"""A simulated internet made of network namespaces, for NAT and TURN tests.

Everything lives in namespaces named ``{name}-*``; nothing is added to the machine's
own namespace (links are created directly inside their target namespaces), so a
simulation can neither reach nor disturb the real network. See docs/netsim.md for
the topology and the reasons behind each rule.

The state file (``/run/mpyc-netsim/{name}.json``) lets ``down`` work from another
process or after a crash: namespaces are found by name, processes by PID, and a
recorded PID is signalled only while its /proc cmdline and start time still match
what was recorded, so a recycled PID is never hit (``processes.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import selectors
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .processes import (
    NETNS_DIR,
    NetsimError,
    ParallelJobs,
    ProcessRecord,
    alive,
    matches,
    pids_in_namespaces,
    proc_cmdline,
    proc_stat,
    run_command,
    run_parallel,
    terminate,
)
from .wire import DEFAULT_REORDER_MS
from .wireguard import Mesh, remove_sockets

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WIRE = Path(__file__).with_name("wire.py")
STATE_ROOT = Path(os.environ.get("MPYC_NETSIM_STATE", "/run/mpyc-netsim"))

NAT_TYPES = ("public", "cone", "symmetric")
MAX_PARTIES = 200

# The "internet": one /16 on a bridge in the public namespace. 100.64.0.0/10 is
# shared address space (RFC 6598): public-looking, yet never routed on the real
# internet, and aioice treats it as an ordinary host address.
PUBLIC_PREFIX = 16
SERVER_IP = "100.64.0.1"
TURN_IP = "100.64.0.2"
TURN_PORT = 3478
SERVER_PORT = 8080
#: The signaling server's own STUN service (``mpyc-webrtc-server --stun-port``'s default),
#: what parties get when the simulation runs without coturn.
SERVER_STUN_PORT = 3478
REALM = "mpyc-netsim"
# Point-to-point link from the public namespace to the void (trap 2 in docs/netsim.md).
VOID_GATEWAY = "10.255.255.1"
VOID_ADDRESS = "10.255.255.2"
CUT_CHAIN = "netsim-cut"
#: The simulated public address space (100.64.0.0/10, RFC 6598) as coturn writes a range.
SIMULATED_PUBLIC = "100.64.0.0-100.127.255.255"

#: coturn options of the README's recipe (section "Across networks"), as turnserver.conf
#: lines: coturn relays to no private, loopback, link-local or carrier-grade-NAT address, no
#: multicast, and has allocation quotas. The simulation runs coturn with exactly these (as
#: ``--option``), and allows its own public space back with ``allowed-peer-ip``, which wins
#: over ``denied-peer-ip`` in coturn: the simulated internet lives in 100.64.0.0/10, which
#: the recipe denies because on the real internet it is a carrier's private space.
#: tests/test_turn_recipe.py checks that the README shows exactly these lines.
COTURN_RECIPE = (
    "no-multicast-peers",
    "denied-peer-ip=0.0.0.0-0.255.255.255",
    "denied-peer-ip=10.0.0.0-10.255.255.255",
    "denied-peer-ip=100.64.0.0-100.127.255.255",
    "denied-peer-ip=127.0.0.0-127.255.255.255",
    "denied-peer-ip=169.254.0.0-169.254.255.255",
    "denied-peer-ip=172.16.0.0-172.31.255.255",
    "denied-peer-ip=192.168.0.0-192.168.255.255",
    "denied-peer-ip=::1",
    "denied-peer-ip=::ffff:0.0.0.0-::ffff:255.255.255.255",
    "denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "denied-peer-ip=fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "user-quota=64",
    "total-quota=2000",
)

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,30}$")


def wan_address(i: int) -> str:
    return f"100.64.1.{i + 1}"


def lan_addresses(i: int, nat: str) -> tuple[str, str]:
    """(router side, host side) of party i's access link."""
    if nat == "public":
        # Routed, untranslated: a host with its own public address behind a router.
        return f"100.65.{i}.1", f"100.65.{i}.2"
    return f"192.168.{i}.1", f"192.168.{i}.2"


@dataclass(frozen=True)
class Party:
    index: int
    nat: str
    ns: str
    """LAN namespace: where the party's processes run."""
    router: str
    """Home router namespace."""
    wan_ip: str
    lan_ip: str
    gateway: str
    """The router's address on the access link (the LAN host's default route)."""
    block_udp: bool


def _hex_address(ip: str, port: int) -> str:
    """How /proc/net/{tcp,udp} spell ip:port."""
    (raw,) = struct.unpack("<I", socket.inet_aton(ip))
    return f"{raw:08X}:{port:04X}"


def _listening(pid: int, ip: str, port: int) -> tuple[bool, bool]:
    """(UDP bound, TCP listening) on ip:port in pid's network namespace.

    /proc/PID/net shows PID's namespace, so no fork into the namespace is needed.
    """
    local = _hex_address(ip, port)
    result = []
    for proto, state in (("udp", None), ("tcp", "0A")):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            result.append(False)
            continue
        result.append(any(cols[1] == local and (state is None or cols[3] == state)
                          for cols in (line.split() for line in lines)))
    return result[0], result[1]


class _HelpProbe:
    """``mpyc-webrtc-server --help``, started early: its imports take ~0.4 s, which
    would otherwise add to bring-up. The options it lists decide what the server is
    given (``--stun``/``--turn``/``--turn-secret`` are newer than the server)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([str(BIN / "mpyc-webrtc-server"), "--help"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True)

    def options(self) -> frozenset[str]:
        try:
            text, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return frozenset()
        return frozenset(re.findall(r"(--[a-z][a-z0-9-]*)", text))


def rest_credentials(secret: str, name: str = "netsim", ttl: int = 3600,
                     now: float | None = None) -> tuple[str, str]:
    """TURN REST credentials (coturn ``--use-auth-secret``): username
    ``<expiry>:<name>``, password base64(HMAC-SHA1(secret, username)).

    An empty name gives the bare ``<expiry>``, which coturn accepts too: the peer's
    ``turn:USER:PASSWORD@HOST`` syntax splits at the first colon, so a username
    that contains one cannot be written there.
    """
    expiry = int(time.time() if now is None else now) + ttl
    username = f"{expiry}:{name}" if name else str(expiry)
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


class Internet:
    """Namespaces, links and NAT routers for ``len(nats)`` parties; see docs/netsim.md.

    ``delay_ms`` (one way, each direction) and ``loss`` (each direction) apply to
    every party's access link, between its LAN host and its router. So do
    ``reorder`` (the fraction of packets held back ``reorder_ms`` longer than the
    rest, so that later ones overtake them) and ``duplicate`` (the fraction delivered
    twice): loss alone never reorders, and real paths do both, which a transport's
    loss recovery has to tell apart from loss. Without any of these the links are veth
    pairs; with them, TUN pairs served by the userspace wire (``wire=True`` forces the
    wire even without impairment, e.g. to measure it).

    ``coturn=False`` starts no coturn: no TURN relay, and the STUN server is the signaling
    server's own (``stun_url``), as for an operator who runs only ``mpyc-webrtc-server``.
    """

    def __init__(self, nats: Sequence[str] = ("cone", "symmetric", "public"),
                 block_udp: Iterable[int] = (), delay_ms: float = 0.0, loss: float = 0.0,
                 turn_secret: str = "s3cret", name: str = "msim", server: bool = False,
                 *, wire: bool | None = None, seed: int | None = None,
                 server_port: int = SERVER_PORT, turn_recipe: bool = True,
                 turn_allowed_peers: Sequence[str] = (SIMULATED_PUBLIC,),
                 reorder: float = 0.0, reorder_ms: float = DEFAULT_REORDER_MS,
                 duplicate: float = 0.0, coturn: bool = True) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"name {name!r}: want letters, digits, '_' or '.', at most 31")
        nats = list(nats)
        if not 1 <= len(nats) <= MAX_PARTIES:
            raise ValueError(f"want 1 to {MAX_PARTIES} parties, got {len(nats)}")
        for nat in nats:
            if nat not in NAT_TYPES:
                raise ValueError(f"NAT type {nat!r}: want one of {', '.join(NAT_TYPES)}")
        blocked = set(block_udp)
        if not blocked <= set(range(len(nats))):
            raise ValueError(f"block_udp {sorted(blocked)}: parties are 0..{len(nats) - 1}")
        if delay_ms < 0 or not 0 <= loss < 1:
            raise ValueError("want delay_ms >= 0 and 0 <= loss < 1")
        if not (0 <= reorder <= 1 and 0 <= duplicate <= 1 and reorder_ms > 0):
            raise ValueError("want 0 <= reorder <= 1, 0 <= duplicate <= 1 and reorder_ms > 0")
        self.name = name
        self.nats = nats
        self.block_udp = tuple(sorted(blocked))
        self.delay_ms = float(delay_ms)
        self.loss = float(loss)
        self.reorder = float(reorder)
        self.reorder_ms = float(reorder_ms)
        self.duplicate = float(duplicate)
        self.use_wire = bool(delay_ms or loss or reorder or duplicate) if wire is None else wire
        self.seed = seed
        self.turn_secret = turn_secret
        #: coturn runs with the README's recipe (``COTURN_RECIPE``), and relays to
        #: ``turn_allowed_peers`` anyway (coturn ranges: ``A``, or ``A-B``).
        self.turn_recipe = turn_recipe
        self.turn_allowed_peers = tuple(turn_allowed_peers)
        self.server = server
        self.coturn = coturn
        self.public = f"{name}-inet"
        self.void = f"{name}-void"
        self.server_ip = SERVER_IP
        self.server_port = server_port
        self.server_url = f"http://{SERVER_IP}:{server_port}"
        self.turn_ip = TURN_IP
        self.turn_port = TURN_PORT
        self.realm = REALM
        self.stun_url = (f"stun:{TURN_IP}:{TURN_PORT}" if coturn
                         else f"stun:{SERVER_IP}:{SERVER_STUN_PORT}")
        self.turn_urls = [f"turn:{TURN_IP}:{TURN_PORT}?transport=udp",
                          f"turn:{TURN_IP}:{TURN_PORT}?transport=tcp"] if coturn else []
        self.parties: list[Party] = []
        for i, nat in enumerate(nats):
            gateway, host = lan_addresses(i, nat)
            self.parties.append(Party(i, nat, f"{name}-p{i}", f"{name}-r{i}", wan_address(i),
                                      host, gateway, i in blocked))
        self.state_dir = STATE_ROOT / name
        self.state_file = STATE_ROOT / f"{name}.json"
        self._procs: list[ProcessRecord] = []
        self._wireguard: Mesh | None = None
        self.up_seconds: float | None = None
        self.down_seconds: float | None = None

    # -- names -----------------------------------------------------------------

    @property
    def namespaces(self) -> list[str]:
        return ([self.public, self.void] + [p.router for p in self.parties]
                + [p.ns for p in self.parties])

    def existing_namespaces(self) -> list[str]:
        """Namespaces of this name that exist now, whatever created them."""
        pattern = re.compile(rf"^{re.escape(self.name)}-(inet|void|r\d+|p\d+)$")
        try:
            entries = os.listdir(NETNS_DIR)
        except FileNotFoundError:
            return []
        return sorted(e for e in entries if pattern.match(e))

    def exec_args(self, ns: str, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def turn_credentials(self, name: str = "netsim", ttl: int = 3600) -> tuple[str, str]:
        return rest_credentials(self.turn_secret, name, ttl)

    # -- processes ---------------------------------------------------------------

    def popen(self, ns: str, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start cmd inside ns; it is recorded and ended by ``down``."""
        kwargs.setdefault("cwd", REPO)
        return self._start("user", ns, list(cmd), **kwargs)

    def run(self, ns: str, cmd: Sequence[str], timeout: float = 30,
            **kwargs: Any) -> subprocess.CompletedProcess:
        """Run cmd inside ns to completion (text output captured)."""
        kwargs.setdefault("cwd", REPO)
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.exec_args(ns, cmd), timeout=timeout, **kwargs)

    def _start(self, role: str, ns: str, cmd: list[str], **kwargs: Any) -> subprocess.Popen:
        argv = self.exec_args(ns, cmd)
        proc = subprocess.Popen(argv, **kwargs)
        stat = proc_stat(proc.pid)
        rec = ProcessRecord(role, ns, proc.pid, argv, cmd, stat[1] if stat else 0, proc)
        self._procs.append(rec)
        self._save()
        log.debug("started %s in %s: pid %d", role, ns, proc.pid)
        return proc

    # -- state -------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "nats": self.nats, "block_udp": list(self.block_udp),
                "delay_ms": self.delay_ms, "loss": self.loss, "reorder": self.reorder,
                "reorder_ms": self.reorder_ms, "duplicate": self.duplicate,
                "wire": self.use_wire,
                "seed": self.seed, "turn_secret": self.turn_secret, "server": self.server,
                "server_port": self.server_port, "turn_recipe": self.turn_recipe,
                "turn_allowed_peers": list(self.turn_allowed_peers), "coturn": self.coturn}

    def _save(self) -> None:
        state = {
            "config": self.config(),
            "namespaces": self.namespaces,
            "public": self.public,
            "server_url": self.server_url,
            "turn_ip": self.turn_ip,
            "turn_port": self.turn_port,
            "stun_url": self.stun_url,
            "turn_urls": self.turn_urls,
            "parties": [asdict(p) for p in self.parties],
            "state_dir": str(self.state_dir),
            "processes": [p.record() for p in self._procs],
        }
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)

    def _recorded(self) -> list[ProcessRecord]:
        """Processes recorded here and in the state file (another process's, maybe)."""
        procs = list(self._procs)
        seen = {(p.pid, p.start) for p in procs}
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return procs
        for data in state.get("processes", []):
            try:
                rec = ProcessRecord(data["role"], data["ns"], int(data["pid"]), list(data["argv"]),
                            list(data["cmd"]), int(data["start"]))
            except (KeyError, TypeError, ValueError):
                continue
            if (rec.pid, rec.start) not in seen:
                procs.append(rec)
        return procs

    @classmethod
    def load(cls, name: str = "msim") -> Internet:
        """The simulation called name as its state file describes it (for CLI
        ``status``/``cut`` from another process)."""
        path = STATE_ROOT / f"{name}.json"
        state = json.loads(path.read_text())
        cfg = state["config"]
        net = cls(cfg["nats"], cfg["block_udp"], cfg["delay_ms"], cfg["loss"],
                  cfg["turn_secret"], cfg["name"], cfg["server"], wire=cfg["wire"],
                  seed=cfg["seed"], server_port=cfg["server_port"],
                  turn_recipe=cfg.get("turn_recipe", True),
                  turn_allowed_peers=cfg.get("turn_allowed_peers", (SIMULATED_PUBLIC,)),
                  reorder=cfg.get("reorder", 0.0),
                  reorder_ms=cfg.get("reorder_ms", DEFAULT_REORDER_MS),
                  duplicate=cfg.get("duplicate", 0.0), coturn=cfg.get("coturn", True))
        net._procs = net._recorded()
        return net

    # -- up ----------------------------------------------------------------------

    def __enter__(self) -> Internet:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> Internet:
        """Build everything; first removes whatever an earlier run of this name left."""
        t0 = time.monotonic()
        self.down()
        try:
            self._build()
        except BaseException:
            log.error("bring-up of %s failed; tearing down", self.name)
            self.down()
            raise
        self.up_seconds = time.monotonic() - t0
        log.info("%s up in %.3f s", self.name, self.up_seconds)
        return self

    def _build(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._save()
        probe = _HelpProbe() if self.server else None
        # 1. Namespaces and links, from one batch. "link add ... netns NS" creates
        #    each device directly inside NS: the root namespace never sees it.
        root = [f"netns add {ns}" for ns in self.namespaces]
        root.append(f"link add br0 netns {self.public} type bridge")
        root.append(f"link add vd netns {self.public} type veth peer name eth0 netns {self.void}")
        for p in self.parties:
            root.append(f"link add wan netns {p.router} type veth peer name r{p.index} "
                        f"netns {self.public}")
            if not self.use_wire:
                root.append(f"link add lan netns {p.router} type veth peer name eth0 "
                            f"netns {p.ns}")
        run_command(["ip", "-batch", "-"], "\n".join(root) + "\n")

        # 2. Firewalls and NAT (slowest step: iptables) run while the rest is built.
        firewall = [(self.exec_args(p.router, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/"
                                               "ip_forward && exec iptables-restore"]),
                     self._router_rules(p)) for p in self.parties]
        fw_procs = ParallelJobs(firewall)

        wire = self._start_wire() if self.use_wire else None

        # 3. The public namespace, then coturn on it (it binds TURN_IP at once).
        run_command(["ip", "-n", self.public, "-batch", "-"], self._public_batch())
        turn = self._start_coturn() if self.coturn else None

        # 4. Routers, LANs and the void.
        jobs = [(["ip", "-n", self.void, "-batch", "-"],
                 f"link set lo up\naddr add {VOID_ADDRESS}/30 dev eth0\n"
                 "link set eth0 addrgenmode none\nlink set eth0 up\n")]
        if wire is not None:
            self._wait_line(wire, "wire ready", 10, self.state_dir / "wire.log")
            moves = []
            for p in self.parties:
                moves.append(f"link set t{p.index}r netns {p.router}")
                moves.append(f"link set t{p.index}l netns {p.ns}")
            run_command(["ip", "-n", self.void, "-batch", "-"], "\n".join(moves) + "\n")
        for p in self.parties:
            jobs.append((["ip", "-n", p.router, "-batch", "-"], self._router_batch(p)))
            jobs.append((["ip", "-n", p.ns, "-batch", "-"], self._lan_batch(p)))
        run_parallel(jobs)
        fw_procs.wait()

        # 5. Daemons ready.
        if turn is not None:
            self._wait_listening(turn, self.turn_ip, self.turn_port, 10,
                                 self.state_dir / "turnserver.log")
        if probe is not None:
            self._start_server(probe.options())
        self._save()

    def _public_batch(self) -> str:
        lines = ["link set lo up",
                 f"addr add {SERVER_IP}/{PUBLIC_PREFIX} dev br0"]
        if TURN_IP != SERVER_IP:
            lines.append(f"addr add {TURN_IP}/{PUBLIC_PREFIX} dev br0")
        lines += ["link set br0 addrgenmode none", "link set br0 up"]
        for p in self.parties:
            lines += [f"link set r{p.index} master br0", f"link set r{p.index} addrgenmode none",
                      f"link set r{p.index} up"]
        lines += [f"addr add {VOID_GATEWAY}/30 dev vd", "link set vd addrgenmode none",
                  "link set vd up",
                  # Trap 2: without a route, coturn's relay sendto to a private peer
                  # address fails with ENETUNREACH and coturn drops the allocation.
                  f"route add default via {VOID_ADDRESS}"]
        for p in self.parties:
            if p.nat == "public":
                lines.append(f"route add {_subnet(p.lan_ip)} via {p.wan_ip}")
        return "\n".join(lines) + "\n"

    def _router_batch(self, p: Party) -> str:
        lines = ["link set lo up"]
        if self.use_wire:
            lines.append(f"link set t{p.index}r name lan")
        lines += [f"addr add {p.wan_ip}/{PUBLIC_PREFIX} dev wan", "link set wan addrgenmode none",
                  "link set wan up",
                  f"addr add {p.gateway} peer {p.lan_ip} dev lan", "link set lan addrgenmode none",
                  "link set lan up",
                  # Unknown destinations vanish silently, as on the internet.
                  "route add blackhole default"]
        for q in self.parties:
            if q.nat == "public" and q.index != p.index:
                lines.append(f"route add {_subnet(q.lan_ip)} via {q.wan_ip}")
        return "\n".join(lines) + "\n"

    def _lan_batch(self, p: Party) -> str:
        lines = ["link set lo up"]
        if self.use_wire:
            lines.append(f"link set t{p.index}l name eth0")
        lines += [f"addr add {p.lan_ip} peer {p.gateway} dev eth0",
                  "link set eth0 addrgenmode none", "link set eth0 up",
                  f"route add default via {p.gateway} dev eth0"]
        return "\n".join(lines) + "\n"

    def _router_rules(self, p: Party) -> str:
        """iptables-restore input for party p's home router."""
        f = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             f":{CUT_CHAIN} - [0:0]",
             f"-A FORWARD -j {CUT_CHAIN}", f"-A INPUT -i lan -j {CUT_CHAIN}",
             f"-A OUTPUT -o lan -j {CUT_CHAIN}"]
        if p.block_udp:
            f += ["-A FORWARD -p udp -j DROP", "-A INPUT -i lan -p udp -j DROP",
                  "-A OUTPUT -o lan -p udp -j DROP"]
        # Trap 1: a real router drops unsolicited inbound packets. Dropped in INPUT, the
        # packet's conntrack entry is never confirmed; accepted, it would occupy the
        # tuple that MASQUERADE wants during simultaneous hole punching, and MASQUERADE
        # would pick another port: cone/cone would fail.
        f += ["-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
              "-A INPUT -i wan -j DROP"]
        n = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":POSTROUTING ACCEPT [0:0]"]
        if p.nat != "public":
            f += ["-A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                  "-A FORWARD -i wan -j DROP"]
            # MASQUERADE keeps the source port when it can and conntrack only lets
            # replies from the contacted address:port back in: a port-restricted cone.
            # --random-fully draws a new port per destination: symmetric.
            masq = "-A POSTROUTING -o wan -j MASQUERADE"
            n.append(masq + (" --random-fully" if p.nat == "symmetric" else ""))
        return "\n".join(f + ["COMMIT"] + n + ["COMMIT"]) + "\n"

    def _start_wire(self) -> subprocess.Popen:
        pairs = [f"t{p.index}r:t{p.index}l" for p in self.parties]
        # -I -S: the wire needs only the standard library; skip site-packages and the
        # environment (faster start, and nothing of the caller leaks in).
        cmd = [sys.executable, "-I", "-S", str(WIRE), "--delay-ms", repr(self.delay_ms),
               "--loss", repr(self.loss)]
        if self.reorder:
            cmd += ["--reorder", repr(self.reorder), "--reorder-ms", repr(self.reorder_ms)]
        if self.duplicate:
            cmd += ["--duplicate", repr(self.duplicate)]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        with open(self.state_dir / "wire.log", "ab") as err:
            return self._start("wire", self.void, cmd + pairs, stdout=subprocess.PIPE,
                               stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)

    def _start_coturn(self) -> subprocess.Popen:
        d = self.state_dir
        cmd = ["turnserver", "-n", "--no-tls", "--no-dtls", "--no-cli",
               "--use-auth-secret", f"--static-auth-secret={self.turn_secret}",
               f"--realm={self.realm}", "--fingerprint",
               f"--listening-ip={self.turn_ip}", f"--listening-port={self.turn_port}",
               f"--relay-ip={self.turn_ip}",
               # The README's recipe, and the simulated public space (or what the caller
               # says) allowed back: see COTURN_RECIPE.
               *(f"--{line}" for line in (COTURN_RECIPE if self.turn_recipe else ())),
               *(f"--allowed-peer-ip={peers}" for peers in self.turn_allowed_peers),
               f"--userdb={d / 'turndb'}", f"--pidfile={d / 'turnserver.pid'}",
               f"--log-file={d / 'turnserver.log'}", "--simple-log", "--no-stdout-log"]
        with open(d / "turnserver.out", "ab") as out:
            return self._start("coturn", self.public, cmd, stdout=out, stderr=out,
                               stdin=subprocess.DEVNULL, start_new_session=True)

    def _start_server(self, opts: frozenset[str]) -> None:
        cmd = [str(BIN / "mpyc-webrtc-server"), "--host", self.server_ip,
               "--port", str(self.server_port)]
        # Without coturn: no STUN or TURN option, so the server hands out its own STUN.
        if self.coturn and {"--stun", "--turn", "--turn-secret"} <= opts:
            cmd += ["--stun", self.stun_url]
            for url in self.turn_urls:
                cmd += ["--turn", url]
            cmd += ["--turn-secret", self.turn_secret]
        logfile = self.state_dir / "server.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(logfile, "ab") as out:
            proc = self._start("server", self.public, cmd, stdout=out, stderr=out,
                               stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                               cwd=REPO)
        deadline = time.monotonic() + 20
        while True:
            text = logfile.read_text(errors="replace")
            if "mpyc-webrtc server on" in text:
                return
            if proc.poll() is not None or time.monotonic() > deadline:
                raise NetsimError(f"signaling server did not start:\n{text[-2000:]}")
            time.sleep(0.02)

    def _wait_line(self, proc: subprocess.Popen, line: str, timeout: float,
                   logfile: Path) -> None:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ok = bool(sel.select(timeout)) and proc.stdout.readline().decode().strip() == line
        if not ok:
            raise NetsimError(f"{line!r} not seen within {timeout} s:\n"
                              f"{_tail(logfile)}")
        # Nothing more comes on this pipe; do not keep it open in this process.
        proc.stdout.close()

    def _wait_listening(self, proc: subprocess.Popen, ip: str, port: int, timeout: float,
                        logfile: Path) -> None:
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if all(_listening(proc.pid, ip, port)):
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        raise NetsimError(f"coturn is not listening on {ip}:{port} (exit {proc.poll()}):\n"
                          f"{_tail(logfile)}")

    # -- control -----------------------------------------------------------------

    def wireguard_mesh(self, **kwargs: Any) -> Mesh:
        """A WireGuard full mesh between the parties (``e2e/netsim/wireguard.py``),
        the data path of VPN-mesh products, as a baseline. Returns the running mesh
        if there is one (kwargs are then ignored); ``down()`` ends it."""
        if self._wireguard is not None and self._wireguard.is_up:
            return self._wireguard
        return Mesh(self, **kwargs).up()

    def cut(self, i: int) -> None:
        """Party i loses its network: its router drops everything to and from its LAN.

        NAT mappings and connections stay in conntrack, as they would during a real
        outage, so ``restore`` brings back a network that looks unchanged.
        """
        self._cut_rules(i, ["-A", CUT_CHAIN, "-j", "DROP"])

    def restore(self, i: int) -> None:
        self._cut_rules(i, [])

    def _cut_rules(self, i: int, rule: list[str]) -> None:
        script = f"iptables -w -F {CUT_CHAIN}"
        if rule:
            script += " && iptables -w " + shlex.join(rule)
        run_command(self.exec_args(self.parties[i].router, ["sh", "-c", script]))

    # -- down --------------------------------------------------------------------

    def down(self) -> None:
        """End every process of this simulation and delete its namespaces.

        Works without the state file (namespaces are found by name, processes by the
        namespace they are in) and from any process.
        """
        t0 = time.monotonic()
        namespaces = self.existing_namespaces()
        recorded = self._recorded()
        victims: dict[int, str] = {}
        for rec in recorded:
            if matches(rec):
                victims[rec.pid] = rec.role
            elif alive(rec.pid):
                log.warning("pid %d (%s) no longer runs what was recorded: left alone",
                            rec.pid, rec.role)
        for pid, ns in pids_in_namespaces(namespaces).items():
            victims.setdefault(pid, f"in {ns}")
        victims.pop(os.getpid(), None)
        terminate(victims)
        # A killed wireguard-go leaves its socket in the one directory all namespaces
        # share; the names are derived from ours, so only our sockets go.
        remove_sockets(self.name)
        if self._wireguard is not None:
            self._wireguard.is_up = False
            self._wireguard = None
        for rec in self._procs:
            if rec.popen is not None:
                try:
                    rec.popen.wait(0.1)  # reap our own children
                except subprocess.TimeoutExpired:
                    pass
        if namespaces:
            run_command(["ip", "-force", "-batch", "-"],
                 "".join(f"netns del {ns}\n" for ns in namespaces))
        left = self.existing_namespaces()
        self._procs.clear()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        self.down_seconds = time.monotonic() - t0
        if left:
            raise NetsimError(f"namespaces left behind: {left}")
        if namespaces or victims:
            log.info("%s down in %.3f s (%d processes, %d namespaces)", self.name,
                     self.down_seconds, len(victims), len(namespaces))

    # -- reporting ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What exists now: namespaces, recorded processes (alive or not), and any
        other processes inside the namespaces."""
        namespaces = self.existing_namespaces()
        procs = []
        known = set()
        for rec in self._recorded():
            alive = matches(rec)
            if alive:
                known.add(rec.pid)
            procs.append({"pid": rec.pid, "role": rec.role, "ns": rec.ns, "alive": alive,
                          "cmd": shlex.join(rec.cmd)})
        for pid, ns in sorted(pids_in_namespaces(namespaces).items()):
            if pid not in known:
                procs.append({"pid": pid, "role": "other", "ns": ns, "alive": True,
                              "cmd": shlex.join(proc_cmdline(pid) or [])})
        return {"name": self.name, "namespaces": namespaces,
                "state_file": str(self.state_file) if self.state_file.exists() else None,
                "processes": procs}

    def describe(self) -> str:
        """A summary for people: addresses, URLs and commands to paste."""
        venv = os.path.relpath(BIN, REPO) if BIN.is_relative_to(REPO) else str(BIN)
        peer = f"{venv}/mpyc-webrtc-peer"
        user, password = self.turn_credentials("", 24 * 3600)
        lines = [f"simulated internet {self.name!r}",
                 f"  public namespace  {self.public}  (bridge 100.64.0.0/{PUBLIC_PREFIX})",
                 f"  signaling server  {self.server_url}"
                 + ("" if self.server else "  (not started: --server)"),
                 f"  coturn            {self.turn_ip}:{self.turn_port} udp+tcp, realm {self.realm},"
                 f" secret {self.turn_secret!r}" if self.coturn else
                 "  coturn            none (no TURN relay)",
                 f"  STUN              {self.stun_url}"
                 + ("" if self.coturn else "  (the signaling server's own)")]
        if self.coturn:
            lines += [f"  TURN              {'  '.join(self.turn_urls)}",
                      f"  TURN credentials  user {user}  password {password}  (valid 24 h)"]
        if self.use_wire:
            lines.append(f"  access links      {self.delay_ms:g} ms one way, {self.loss:.1%} loss,"
                         + (f" {self.reorder:.1%} held back {self.reorder_ms:g} ms (reordered),"
                            if self.reorder else "")
                         + (f" {self.duplicate:.1%} duplicated," if self.duplicate else "")
                         + " each direction (userspace wire)")
        lines.append("  parties:")
        for p in self.parties:
            extra = "  UDP blocked" if p.block_udp else ""
            lines.append(f"    {p.index}: {p.ns:<12} {p.lan_ip:<13} behind {p.router} "
                         f"(wan {p.wan_ip}, {p.nat}){extra}")
        ice = f"--ice-server {self.stun_url}" + "".join(
            f" --ice-server turn:{user}:{password}@{url.removeprefix('turn:')}"
            for url in self.turn_urls)
        server_cmd = next((r.cmd for r in self._recorded() if r.role == "server"), [])
        if "--turn-secret" in server_cmd or (self.server and not self.coturn):
            ice = ""  # the server hands every party its STUN (and fresh TURN credentials)
        else:
            ice = " " + ice
        n = len(self.parties)
        lines += ["", "try:",
                  f"  ip netns exec {self.parties[0].ns} {peer} create {self.server_url} "
                  f"--parties {n} --program sum --no-qr"]
        for p in self.parties:
            lines.append(f"  ip netns exec {p.ns} {peer} join JOIN_URL --input {p.index + 1}{ice}")
        lines += [f"  ip netns exec {self.parties[0].ns} bash     # a shell on party 0's LAN",
                  f"  python -m e2e.netsim cut 0 --name {self.name}   # party 0 goes offline",
                  f"  python -m e2e.netsim down --name {self.name}"]
        return "\n".join(lines)


def _subnet(ip: str) -> str:
    return ip.rsplit(".", 1)[0] + ".0/24"


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"
