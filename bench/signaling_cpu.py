"""What one client can make the signaling server do: CPU per message, and a bystander's wait.

    .venv/bin/python -m bench.signaling_cpu [--before REV] [--parties 3 8 32]

Everything runs on 127.0.0.1; each server is ``python -m signaling.cli`` in a subprocess on
a free port, with its defaults (only the sessions per client raised, for the many sessions
of the first part). With ``--before REV`` the same runs also go against the server as it
was at that git revision (its ``signaling`` and ``mpyc_webrtc`` taken with ``git archive``
into a temporary folder, first on ``PYTHONPATH``), and the report puts the two side by side.

1. **CPU per message**, by type and number of parties m. For each (type, m), a fresh
   m-party session whose parties are this process's WebSockets; each party sends
   ``--per-party`` (20) messages at once (within the burst of the rate limit) and a last
   one that the server refuses (a signal to nobody), then the parties read until that
   refusal came and then nothing for 0.3 s. Server CPU (the sum of its threads'
   ``/proc/PID/task/*/schedstat``, nanoseconds) over the messages sent:

   - ``link``: what an attacker sends, a link report toggling ``connecting``/``signaling``
     (each one a change for a server that takes every report);
   - ``status``: a status toggling between two made-up states (a change every time);
   - ``ready``: in the lobby (m−1 parties joined, so nothing starts), ``ready`` toggling;
   - ``signal``: a 200-character box to the next party (relayed to one party).

2. **The attack** (issue 13): one client opens a 32-party session, joins all 32 parties,
   and each sends ``--attack-per-party`` (20) link reports at once: 640 messages within the
   rate limits (the burst). Then (this tree's server only: the old one stays busy for
   seconds after one burst) each party goes on at 45 messages per second, link reports and
   status changes in turn, for ``--sustain`` (5) seconds. Meanwhile a bystander in another
   process asks ``GET /api/sessions/ID`` of another session every 20 ms. Reported per
   phase: the server's CPU, how long until it had handled every message (each party's
   last one is a marker it refuses), the bystander's latency p50/p99/max over the requests
   that overlapped that time.

CPU figures include aiohttp's own work for each frame (parsing, writing), which the server
does for any message; with 2 shared cores the absolute numbers move by tens of percent
between runs, the ratios much less.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from testbed.sans_io import create_request

REPO = Path(__file__).resolve().parent.parent
TYPES = ("link", "status", "ready", "signal")
TOKEN = secrets.token_urlsafe(32)
TOKEN_HASH = hashlib.sha256(TOKEN.encode()).hexdigest()
QUIET = 0.3

# The bystander: its own process and loop; one GET every 20 ms until stdin closes, then
# a JSON list of [wall time sent, seconds to the answer].
BYSTANDER = r"""
import asyncio, json, sys, threading, time
import aiohttp
url = sys.argv[1]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
async def main():
    out = []
    async with aiohttp.ClientSession() as http:
        print("ready", flush=True)
        while not stop.is_set():
            t0 = time.time()
            p0 = time.perf_counter()
            async with http.get(url) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            out.append([t0, time.perf_counter() - p0])
            await asyncio.sleep(0.02)
    return out
print(json.dumps(asyncio.run(main())))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_ns(pid: int) -> int:
    """CPU time of all of a process's threads so far, in nanoseconds (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def quantiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    if not ordered:
        return (float("nan"),) * 3
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return statistics.median(ordered), p99, ordered[-1]


@dataclass
class Server:
    """A signaling server subprocess: this tree's, or ``root``'s (an older revision)."""

    name: str
    root: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Server:
        env = dict(os.environ)
        if self.root is not None:
            env["PYTHONPATH"] = str(self.root) + os.pathsep + env.get("PYTHONPATH", "")
        self.log = tempfile.TemporaryFile()
        # No STUN service (signaling only, and the servers of both trees share 127.0.0.1),
        # where the tree has one.
        cli = ((self.root or REPO) / "signaling" / "cli.py").read_text()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "signaling.cli", "--host", "127.0.0.1", "--port",
             str(self.port), "--max-sessions-per-client", "1000",
             *(["--stun-port", "0"] if "--stun-port" in cli else [])],
            cwd=self.root or REPO, env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the {self.name} server exited: {self.tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.base}/api/protocol") as resp:
                        if resp.status == 200:
                            return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {self.name} server did not come up")
                await asyncio.sleep(0.1)

    def tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:].decode(errors="replace")

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()  # only the server this run started, by its pid
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


async def new_session(http: aiohttp.ClientSession, base: str, parties: int) -> str:
    # "sum"; with 2 parties an uploaded program and no_privacy (the built-ins need 3).
    async with http.post(f"{base}/api/sessions",
                         json=create_request(parties, TOKEN_HASH)) as resp:
        body = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"create failed: {resp.status} {body}")
        return body["session"]


#: The last message of each party in a measurement: a signal to itself, which every
#: version of the server refuses (``unknown_pid``) after it handled what came before.
MARKER = json.dumps({"v": 1, "type": "signal", "to": -1, "seq": 1, "box": "end"})


async def drain(sockets: list[aiohttp.ClientWebSocketResponse], errors: list[str],
                marked: bool = False) -> None:
    """Read every socket (frames are not parsed, except errors, which are kept: a run
    with errors is not a measurement): with ``marked``, until the answer to ``MARKER``
    came (the server handled all of its messages), then until nothing came for ``QUIET``
    seconds (what the server sends a little later, a coalesced roster)."""
    async def one(ws: aiohttp.ClientWebSocketResponse) -> None:
        waiting = marked
        while True:
            try:
                frame = await asyncio.wait_for(ws.receive(), 120 if waiting else QUIET)
            except TimeoutError:
                if waiting:
                    errors.append("no answer to the marker")
                return
            if frame.type != aiohttp.WSMsgType.TEXT:
                errors.append(f"socket closed: {frame.type!r}")
                return
            if frame.data.startswith('{"v":1,"type":"error"'):
                code = json.loads(frame.data)["code"]
                if waiting and code == "unknown_pid":
                    waiting = False
                else:
                    errors.append(code)
    await asyncio.gather(*map(one, sockets))


async def joined(http: aiohttp.ClientSession, base: str, m: int, joining: int,
                 ready: bool) -> tuple[str, list[aiohttp.ClientWebSocketResponse]]:
    sid = await new_session(http, base, m)
    sockets = []
    for _ in range(joining):
        ws = await http.ws_connect(f"{base}/ws", max_msg_size=0)
        await ws.send_str(json.dumps({"v": 1, "type": "join", "session": sid,
                                      "token": TOKEN, "ready": ready}))
        sockets.append(ws)
    return sid, sockets


def frames(kind: str, pid: int, m: int, count: int) -> list[str]:
    """``count`` messages of ``kind`` from party ``pid`` of ``m``."""
    out = []
    for i in range(count):
        if kind == "link":
            msg = {"type": "link", "peer": (pid + 1 + i % (m - 1)) % m,
                   "state": ("connecting", "signaling")[(i // (m - 1)) % 2]}
        elif kind == "status":
            msg = {"type": "status", "state": ("busy", "idle")[i % 2]}
        elif kind == "ready":
            msg = {"type": "ready", "ready": i % 2 == 0}
        else:
            msg = {"type": "signal", "to": (pid + 1) % m, "seq": i + 1, "box": "x" * 200}
        out.append(json.dumps({"v": 1, **msg}))
    return out


async def cpu_per_message(server: Server, kind: str, m: int, per_party: int) -> float:
    """Server CPU microseconds per message of ``kind`` in an m-party session."""
    assert server.proc is not None
    errors: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        lobby = kind == "ready"
        _, sockets = await joined(http, server.base, m, m - 1 if lobby else m, not lobby)
        await drain(sockets, errors)
        before = cpu_ns(server.proc.pid)
        for pid, ws in enumerate(sockets):
            for text in frames(kind, pid, m, per_party):
                await ws.send_str(text)
            await ws.send_str(MARKER)
        await drain(sockets, errors, marked=True)
        spent = cpu_ns(server.proc.pid) - before
        for ws in sockets:
            await ws.close()
    if errors:
        raise RuntimeError(f"{server.name}, {kind}, m={m}: errors {sorted(set(errors))}")
    return spent / 1000 / (len(sockets) * per_party)


@dataclass
class Attack:
    cpu_s: float
    seconds: float
    latencies_ms: list[float]
    messages: int


async def sustained(sockets: list[aiohttp.ClientWebSocketResponse], seconds: float,
                    rate: float) -> int:
    """Each socket sends ``rate`` messages per second for ``seconds`` (link reports and
    status changes in turn, each a change for a server that takes every report), while
    reading what comes back; returns how many were sent."""
    m = len(sockets)
    sent = [0] * m
    stop = asyncio.Event()

    async def send(pid: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        links, statuses = frames("link", pid, m, 10**4), frames("status", pid, m, 10**4)
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * rate) + 1
            while sent[pid] < due:
                i = sent[pid]
                await ws.send_str(links[i // 2] if i % 2 else statuses[i // 2])
                sent[pid] += 1
            await asyncio.sleep(1 / rate)

    async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.receive(), 0.1)

    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    await asyncio.gather(*(send(pid, ws) for pid, ws in enumerate(sockets)))
    stop.set()
    await asyncio.gather(*readers)
    return sum(sent)


async def attack(server: Server, per_party: int, sustain: float,
                 parties: int = 32) -> dict[str, Attack]:
    """The burst (``per_party`` link reports from each party at once), and then, if
    ``sustain``, ``sustain`` seconds at 45 messages per second from each party."""
    assert server.proc is not None
    errors: list[str] = []
    phases: dict[str, tuple[float, float, float, int]] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        other = await new_session(http, server.base, 3)
        bystander = subprocess.Popen(
            [sys.executable, "-c", BYSTANDER, f"{server.base}/api/sessions/{other}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert bystander.stdout is not None and bystander.stdin is not None
            ready = await asyncio.get_running_loop().run_in_executor(
                None, bystander.stdout.readline)
            assert ready.strip() == "ready", ready
            _, sockets = await joined(http, server.base, parties, parties, True)
            await drain(sockets, errors)
            await asyncio.sleep(0.5)  # the bystander's requests before the attack
            for phase in ("burst", "sustained") if sustain else ("burst",):
                before = cpu_ns(server.proc.pid)
                start = time.time()
                if phase == "burst":
                    count = parties * per_party
                    for pid, ws in enumerate(sockets):
                        for text in frames("link", pid, parties, per_party):
                            await ws.send_str(text)
                else:
                    count = await sustained(sockets, sustain, 45.0)
                for ws in sockets:
                    await ws.send_str(MARKER)
                await drain(sockets, errors, marked=True)
                quiet = time.time() - QUIET
                phases[phase] = ((cpu_ns(server.proc.pid) - before) / 1e9, start, quiet,
                                 count)
                await asyncio.sleep(0.5)
        finally:
            out, _ = bystander.communicate("", timeout=60)
        for ws in sockets:
            await ws.close()
    if errors:
        raise RuntimeError(f"{server.name}, attack: errors {sorted(set(errors))}")
    requests = json.loads(out)
    result = {}
    for phase, (cpu, start, quiet, count) in phases.items():
        during = [lat * 1000 for sent, lat in requests
                  if start <= sent + lat and sent <= quiet]
        result[phase] = Attack(cpu, quiet - start, during, count)
    return result


def checkout(rev: str, into: Path) -> Path:
    """The server's code as it was at ``rev``, in ``into``."""
    archive = subprocess.run(["git", "archive", rev, "signaling", "mpyc_webrtc", "py_worker",
                              "web"], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


async def run(before: str | None, parties: tuple[int, ...], per_party: int,
              attack_per_party: int, sustain: float) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        servers = [Server("now")]
        if before:
            servers.insert(0, Server(f"at {before}", checkout(before, Path(tmp))))
        cpu: dict[tuple[str, str, int], float] = {}
        attacks: dict[str, dict[str, Attack]] = {}
        for server in servers:
            async with server:
                for m in parties:
                    for kind in TYPES:
                        cpu[(server.name, kind, m)] = await cpu_per_message(
                            server, kind, m, per_party)
                # The old server cannot be kept busy for long: one burst is seconds of CPU.
                attacks[server.name] = await attack(
                    server, attack_per_party, sustain if server.root is None else 0.0)
    names = [s.name for s in servers]
    width = 14
    lines = [f"server CPU per message, microseconds ({per_party} messages from each party "
             "at once; link and status toggle, ready toggles in the lobby, signal 200 B)",
             f"{'type':<8}{'m':>4}" + "".join(f"{n:>{width}}" for n in names)
             + (f"{'ratio':>{width}}" if len(names) == 2 else "")]
    for kind in TYPES:
        for m in parties:
            values = [cpu[(n, kind, m)] for n in names]
            row = f"{kind:<8}{m:>4}" + "".join(f"{v:>{width}.0f}" for v in values)
            if len(values) == 2:
                row += f"{values[0] / values[1]:>{width - 1}.1f}x"
            lines.append(row)
    lines.append("")
    lines.append(f"attack: one client, a 32-party session; burst: {attack_per_party} link "
                 f"reports from each party at once ({32 * attack_per_party} messages); "
                 f"sustained: {sustain:g} s of 45 messages per second from each party (link "
                 "and status in turn, within the rate limit); a bystander asks "
                 "GET /api/sessions/ID every 20 ms")
    columns = [(n, phase) for n in names for phase in ("burst", "sustained")
               if phase in attacks[n]]
    lines.append(f"{'':<22}" + "".join(f"{n + ', ' + phase:>{width + 8}}"
                                       for n, phase in columns))
    rows = [("messages", lambda a: str(a.messages)),
            ("server CPU s", lambda a: f"{a.cpu_s:.2f}"),
            ("until all handled s", lambda a: f"{a.seconds:.2f}"),
            ("server CPU share", lambda a: f"{a.cpu_s / a.seconds:.0%}"),
            ("bystander requests", lambda a: str(len(a.latencies_ms))),
            ("bystander p50 ms", lambda a: f"{quantiles(a.latencies_ms)[0]:.1f}"),
            ("bystander p99 ms", lambda a: f"{quantiles(a.latencies_ms)[1]:.1f}"),
            ("bystander max ms", lambda a: f"{quantiles(a.latencies_ms)[2]:.1f}")]
    for label, show in rows:
        lines.append(f"{label:<22}" + "".join(f"{show(attacks[n][phase]):>{width + 8}}"
                                             for n, phase in columns))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.signaling_cpu",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="REV",
                        help="also measure the server as it was at this git revision")
    parser.add_argument("--parties", type=int, nargs="+", default=[3, 8, 32],
                        help="party counts m (with 2: an uploaded program, no_privacy)")
    parser.add_argument("--per-party", type=int, default=20,
                        help="messages each party sends per measurement")
    parser.add_argument("--attack-per-party", type=int, default=20,
                        help="link reports each of the attacker's 32 parties sends at once")
    parser.add_argument("--sustain", type=float, default=5.0, metavar="SECONDS",
                        help="then keep attacking this long (this tree's server only)")
    args = parser.parse_args(argv)
    try:
        print(asyncio.run(run(args.before, tuple(args.parties), args.per_party,
                              args.attack_per_party, args.sustain)))
    except (RuntimeError, TimeoutError, aiohttp.ClientError,
            subprocess.CalledProcessError) as exc:
        print(f"signaling_cpu: failed: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
