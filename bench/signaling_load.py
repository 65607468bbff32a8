"""Load on the signaling server: many sessions doing the whole signaling exchange at once.

    .venv/bin/python -m bench.signaling_load [--sessions 100] [--parties 3]
    .venv/bin/python -m bench.signaling_load --redis --processes 2 [--sessions 100]
    .venv/bin/python -m bench.signaling_load --matrix [--sizes 1000,5000]

Everything runs on 127.0.0.1. The server is ``python -m signaling.cli`` in a subprocess
on a free port (or, with ``--in-process``, in this process), with its session and
connection limits raised to fit the load (the message rate limit keeps its default) and
no STUN service (its UDP port would collide between processes and runs).
Every session is created with a ``token_hash``; each of its parties opens a WebSocket,
joins with the token and ``ready``, waits for ``start``, and then every pair exchanges
what WebRTC would: an offer and an answer (``signal`` boxes of ``--box-bytes``, 4 KB)
and ``--candidates`` (10) ICE candidates each way (~200-byte boxes). All sessions run
concurrently. The boxes are random base64url: the server relays them without reading.

Two runs on the same server, side by side: first up to 10 sessions one after the other
(the server idle but for one session: its own relay latency), then ``--sessions`` at once.
Reported per run: signals relayed, relay latency (this process's clock from just before the
sender's ``send_str`` to the receiver getting the frame, so it includes both clients'
event loop, which shares the machine's cores with the server) as p50/p99/max, the
server's CPU time (``/proc/PID/stat``; with ``--in-process`` the clients' too), and the
server's memory from ``/proc/PID/status``: ``VmRSS`` before and after, ``VmHWM`` (peak).
It exits non-zero if any party fails, times out or receives an ``error``.

Sessions shared through Redis (``--redis``, ``--processes N``): a throw-away
``redis-server`` on a Unix socket (``testbed.redis_server``) and N server processes with
``--redis`` on it, each on its own free port. Session k is created on process k mod N and
its party i connects to process (k + i) mod N: with N >= parties every party of a session
is on another process, with 2 two of them share one, and the load is spread evenly. With
``--redis`` the run also checks that bad input and overload still get their documented
JSON errors through Redis (``check_errors``, ``check_overload``).

``--matrix`` measures, for each of ``--sizes`` (1000 and 5000 sessions) and each
configuration of ``CONFIGS`` (one process in memory; 1, 2 and 4 processes with Redis),
on fresh servers: how fast sessions are created (``POST /api/sessions``, ``CREATING`` in
flight), the relay latency of the concurrent phase, the server memory and the Redis memory
per idle session, and prints Markdown tables. *Idle* here means: every session created,
all its parties connected and joined with ``ready: false`` and each of them shown a roster
with all parties, so nothing starts (``measure``). Then every party says ``ready`` at once
and the signaling runs as above. This process holds every party's WebSocket (5000 sessions
x 3 = 15,000): it raises its open-files limit to the hard limit, and the servers, its
children, inherit it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from signal import SIGTERM
from typing import IO, Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from testbed.redis_server import RedisServer
from testbed.sans_io import create_request

REPO = Path(__file__).resolve().parent.parent

#: Limits raised for the load (everything else stays at the server's defaults); no STUN
#: service: its UDP port (3478) would be taken twice by several processes, or by a test.
SERVER_OPTIONS = ["--max-sessions", "100000", "--max-sessions-per-client", "100000",
                  "--max-connections", "100000", "--max-connections-per-client", "100000",
                  "--stun-port", "0"]

#: The configurations ``--matrix`` compares: name, server processes, through Redis.
CONFIGS: list[tuple[str, int, bool]] = [("memory x1", 1, False), ("redis x1", 1, True),
                                        ("redis x2", 2, True), ("redis x4", 4, True)]
#: Session creations in flight at once (``POST /api/sessions``).
CREATING = 50
#: WebSockets being opened at once (until their ``welcome``): more would only overflow
#: the servers' listen backlog (128), and a dropped SYN costs a second.
CONNECTING = 200
#: How long the servers are left alone before their memory is read: Redis shrinks the
#: buffers of its clients (the servers' connections) only after a while.
SETTLE = 2.0
#: Open files besides the parties' WebSockets (Redis, logs, the Python runtime).
FD_MARGIN = 500
#: What Redis says when it starts (at the ``warning`` level too): no trouble.
REDIS_STARTING = ("oO0OoO0OoO0Oo", "Redis version=", "Configuration loaded",
                  "Server initialized", "Memory overcommit", "Ready to accept")
#: A phase in which nothing moves for this long has failed: what it waits for will not come.
STALL = 60.0
#: Server log lines that say something went wrong (the log has no level names).
TROUBLE = ("Traceback", "failed", "refused", "stopped;", "lost touch", "internal error",
           "dropping", "did not come through", "Redis refused",
           "websocket error")


def free_port(taken: set[int] | None = None) -> int:
    """A free TCP port on 127.0.0.1 (not one of ``taken``, handed out but not bound yet)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if taken is None or port not in taken:
            if taken is not None:
                taken.add(port)
            return port


def raise_fd_limit(need: int) -> int:
    """Raise this process's open-files soft limit to the hard limit (servers started
    afterwards inherit it); fail early, saying why, if ``need`` descriptors do not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        soft = hard if hard != resource.RLIM_INFINITY else max(soft, need)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < need:
        raise RuntimeError(f"the load needs about {need} open files, the limit is {soft} "
                           "(raise the hard limit: ulimit -Hn)")
    return soft


def memory(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of a process, in KiB (empty if /proc has no such file)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/PID/stat``), or NaN."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU time every process of the machine used so far (``/proc/stat``): less this
    benchmark's, what others took from it meanwhile."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """This process's CPU time so far (the clients')."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def box(nbytes: int) -> str:
    """A random base64url box of about ``nbytes`` characters."""
    return base64.urlsafe_b64encode(os.urandom(max(3, nbytes * 3 // 4))).decode().rstrip("=")


@dataclass
class Stats:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[dict[str, Any]] = field(default_factory=list)
    sent_at: dict[tuple[str, int, int, int], tuple[float, str]] = field(default_factory=dict)

    def all(self) -> list[float]:
        return [x for values in self.latency.values() for x in values]

    def count(self) -> int:
        """Signals received so far."""
        return sum(map(len, self.latency.values()))


@dataclass
class Options:
    parties: int = 3
    candidates: int = 10
    box_bytes: int = 4096
    candidate_bytes: int = 200


class Countdown:
    """Set ``done`` once ``arrived`` was called ``n`` times (every party in the lobby)."""

    def __init__(self, n: int):
        self.left = n
        self.done = asyncio.Event()
        if n <= 0:
            self.done.set()

    def arrived(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


async def party(http: aiohttp.ClientSession, base: str, sid: str, token: str, opts: Options,
                stats: Stats, all_done: asyncio.Event, done_count: list[int],
                go: asyncio.Event | None = None, lobby: Countdown | None = None,
                gate: asyncio.Semaphore | None = None) -> None:
    """One party's whole signaling exchange. Without ``go`` it joins ``ready``. With
    ``go`` it joins not ready, tells ``lobby`` once a roster shows every party, and says
    ``ready`` only when ``go`` is set; it reads its frames all along (pings, rosters).
    ``gate`` bounds the WebSockets being opened at once (held until the ``welcome``)."""
    offer_box, candidate_box = box(opts.box_bytes), box(opts.candidate_bytes)
    seq: dict[int, int] = defaultdict(int)
    pid = -1
    opening = gate is not None
    if gate is not None:
        await gate.acquire()
    waiter: asyncio.Task[None] | None = None
    try:
        async with http.ws_connect(f"{base}/ws", max_msg_size=0) as ws:

            async def signal(to: int, kind: str, text: str) -> None:
                seq[to] += 1
                stats.sent_at[(sid, pid, to, seq[to])] = (time.perf_counter(), kind)
                await ws.send_str(json.dumps({"v": 1, "type": "signal", "to": to,
                                              "seq": seq[to], "box": text}))

            async def candidates(to: int) -> None:
                for _ in range(opts.candidates):
                    await signal(to, "candidate", candidate_box)

            async def ready_on_go(go: asyncio.Event) -> None:
                await go.wait()
                await ws.send_str(json.dumps({"v": 1, "type": "ready", "ready": True}))

            await ws.send_str(json.dumps({"v": 1, "type": "join", "session": sid,
                                          "token": token, "ready": go is None}))
            if go is not None:
                waiter = asyncio.create_task(ready_on_go(go))
            in_lobby = lobby is None
            expected = (opts.parties - 1) * (1 + opts.candidates)
            received = 0
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"session {sid}: party {pid}'s socket closed: {frame}")
                now = time.perf_counter()
                msg = json.loads(frame.data)
                kind = msg["type"]
                if kind == "welcome":
                    pid = msg["pid"]
                    if opening and gate is not None:
                        gate.release()
                        opening = False
                elif kind == "error":
                    stats.errors.append(msg)
                    raise RuntimeError(f"session {sid}: party {pid} got {msg}")
                elif kind == "roster" and not in_lobby and lobby is not None:
                    here = [m for m in msg["members"] if m["state"] not in ("left",
                                                                           "reconnecting")]
                    if len(here) == opts.parties:
                        in_lobby = True
                        lobby.arrived()
                elif kind == "start":
                    for peer in range(pid + 1, opts.parties):  # the lower pid offers
                        await signal(peer, "offer", offer_box)
                elif kind == "signal":
                    sent, what = stats.sent_at.pop((sid, msg["from"], pid, msg["seq"]))
                    stats.latency[what].append(now - sent)
                    received += 1
                    if what == "offer":
                        await signal(msg["from"], "answer", offer_box)
                        await candidates(msg["from"])
                    elif what == "answer":
                        await candidates(msg["from"])
                    if received == expected:
                        break
            done_count[0] += 1
            if done_count[0] == opts.parties:
                all_done.set()
            await read_until(ws, all_done, sid)
    finally:
        if waiter is not None:
            waiter.cancel()
        if opening and gate is not None:
            gate.release()


async def read_until(ws: aiohttp.ClientWebSocketResponse, done: asyncio.Event,
                     sid: str) -> None:
    """Read on until ``done`` (the session's other parties are through): a party leaves
    only when nobody needs it any more, and meanwhile the server's pings get their pongs
    (a party that stops reading is dropped after one and a half heartbeats)."""
    finished = asyncio.ensure_future(done.wait())
    try:
        while not done.is_set():
            reading = asyncio.ensure_future(ws.receive())
            await asyncio.wait({reading, finished}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
                return
            frame = reading.result()
            if frame.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"session {sid}: a socket closed: {frame}")
            msg = json.loads(frame.data)
            if msg["type"] == "error":
                raise RuntimeError(f"session {sid}: a party got {msg}")
    finally:
        finished.cancel()


async def create(http: aiohttp.ClientSession, base: str, parties: int) -> tuple[str, str]:
    """A new session on the server at ``base``: its id and its join token."""
    token = secrets.token_urlsafe(32)
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    # "sum"; with 2 parties an uploaded program and no_privacy (the built-ins need 3).
    async with http.post(f"{base}/api/sessions",
                         json=create_request(parties, token_hash)) as resp:
        body = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"create failed: {resp.status} {body}")
    return body["session"], token


def party_base(bases: Sequence[str], k: int, i: int) -> str:
    """Where party ``i`` of session number ``k`` connects: each party of a session to
    another process (as far as there are enough), the load spread evenly."""
    return bases[(k + i) % len(bases)]


async def session_parties(http: aiohttp.ClientSession, bases: Sequence[str], k: int,
                          sid: str, token: str, opts: Options, stats: Stats,
                          **kwargs: Any) -> None:
    all_done, count = asyncio.Event(), [0]
    await asyncio.gather(*(party(http, party_base(bases, k, i), sid, token, opts, stats,
                                 all_done, count, **kwargs) for i in range(opts.parties)))


async def one_session(http: aiohttp.ClientSession, bases: Sequence[str], opts: Options,
                      stats: Stats, k: int = 0) -> None:
    """Session number ``k``: created on process k mod N, then its whole exchange."""
    sid, token = await create(http, bases[k % len(bases)], opts.parties)
    await session_parties(http, bases, k, sid, token, opts, stats)


async def create_sessions(http: aiohttp.ClientSession, bases: Sequence[str], n: int,
                          parties: int, in_flight: int = CREATING) -> list[tuple[str, str]]:
    """``n`` sessions, round-robin over the processes, ``in_flight`` requests at a time."""
    gate = asyncio.Semaphore(in_flight)

    async def one(k: int) -> tuple[str, str]:
        async with gate:
            return await create(http, bases[k % len(bases)], parties)

    return list(await asyncio.gather(*(one(k) for k in range(n))))


async def wait_ready(base: str, proc: subprocess.Popen | None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/api/protocol") as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not come up")
            await asyncio.sleep(0.1)


async def load(bases: Sequence[str], sessions: int, opts: Options, timeout: float,
               concurrent: bool = True) -> tuple[Stats, float]:
    """Run ``sessions`` sessions, all at once or one after the other."""
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.perf_counter()
        if concurrent:
            work = asyncio.gather(*(one_session(http, bases, opts, stats, k)
                                    for k in range(sessions)))
        else:
            async def one_by_one() -> None:
                for k in range(sessions):
                    await one_session(http, bases, opts, stats, k)
            work = one_by_one()
        await asyncio.wait_for(work, timeout)
        return stats, time.perf_counter() - start


class ServerGroup:
    """``processes`` server subprocesses (``python -m signaling.cli``) on free ports, with
    ``redis`` a throw-away ``redis-server`` they share; everything is ended by its PID
    (``stop``, also when starting fails). ``options``: the servers' command line."""

    def __init__(self, processes: int = 1, redis: bool = False,
                 options: Sequence[str] = SERVER_OPTIONS,
                 redis_config: Sequence[tuple[str, str]] = ()):
        if processes > 1 and not redis:
            raise ValueError("several server processes share sessions only through Redis "
                             "(--redis)")
        self.redis: RedisServer | None = None
        self.procs: list[subprocess.Popen] = []
        self.logs: list[IO[bytes]] = []
        self.bases: list[str] = []
        #: What Redis wrote to its log (it logs warnings only), read as it comes.
        self.redis_log = ""
        ports: set[int] = set()
        try:
            if redis:
                self.redis = RedisServer()
                if self.redis.proc.stdout is not None:
                    os.set_blocking(self.redis.proc.stdout.fileno(), False)
                for name, value in redis_config:
                    answer = self.redis.cli("CONFIG", "SET", name, value).strip()
                    if answer != "OK":
                        raise RuntimeError(f"redis CONFIG SET {name} {value}: {answer}")
            for _ in range(processes):
                port = free_port(ports)
                logfile = tempfile.TemporaryFile()
                self.logs.append(logfile)
                command = [sys.executable, "-m", "signaling.cli", "--host", "127.0.0.1",
                           "--port", str(port), *options]
                if self.redis is not None:
                    command += ["--redis", self.redis.url]
                self.procs.append(subprocess.Popen(command, cwd=REPO, stdout=logfile,
                                                   stderr=logfile))
                self.bases.append(f"http://127.0.0.1:{port}")
        except BaseException:
            self.stop()
            raise

    async def wait(self) -> None:
        await asyncio.gather(*(wait_ready(base, proc)
                               for base, proc in zip(self.bases, self.procs, strict=True)))

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def memory(self) -> dict[str, int]:
        """``VmRSS`` and ``VmHWM`` summed over the server processes, in KiB."""
        total: dict[str, int] = defaultdict(int)
        for pid in self.pids:
            for key, value in memory(pid).items():
                total[key] += value
        return dict(total)

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def redis_memory(self) -> dict[str, int] | None:
        """Redis's ``used_memory`` and, of it, ``mem_clients_normal`` (the buffers of its
        clients: the servers' connections), in bytes; None without Redis."""
        if self.redis is None:
            return None
        self.read_redis_log()
        info = {}
        for line in self.redis.cli("INFO", "memory").splitlines():
            key, _, value = line.strip().partition(":")
            if key in ("used_memory", "mem_clients_normal"):
                info[key] = int(value)
        if len(info) != 2:
            raise RuntimeError(f"INFO memory lacks used_memory or mem_clients_normal: {info}")
        return info

    def redis_cpu(self) -> float | None:
        return None if self.redis is None else cpu_seconds(self.redis.proc.pid)

    async def metrics(self, http: aiohttp.ClientSession) -> dict[tuple[str, str, str], float]:
        """Every server's ``/metrics`` samples summed: (name, kind label, le) -> value."""
        total: dict[tuple[str, str, str], float] = defaultdict(float)
        for base in self.bases:
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    key = (sample.name, sample.labels.get("kind", ""),
                           sample.labels.get("le", ""))
                    total[key] += sample.value
        return dict(total)

    def log_text(self) -> str:
        parts = []
        for i, logfile in enumerate(self.logs):
            logfile.seek(0)
            parts.append(f"--- server {i} ---\n"
                         + logfile.read().decode(errors="replace"))
            logfile.seek(0, os.SEEK_END)
        return "\n".join(parts)

    def read_redis_log(self) -> str:
        """Redis's log so far (read without blocking, so that its pipe never fills)."""
        if self.redis is not None and self.redis.proc.stdout is not None:
            with contextlib.suppress(OSError, TypeError, ValueError):
                self.redis_log += self.redis.proc.stdout.read() or ""
        return self.redis_log

    def trouble(self) -> list[str]:
        """The servers' log lines so far that say something went wrong, and Redis's
        warnings."""
        return [line for line in self.log_text().splitlines()
                if any(word in line for word in TROUBLE)] + \
            [f"redis: {line}" for line in self.read_redis_log().splitlines()
             if line.strip() and not any(word in line for word in REDIS_STARTING)]

    def stop(self) -> None:
        """End the servers (SIGTERM, after 15 s SIGKILL), then Redis: only what this group
        started, by PID."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.redis is not None:
            self.redis.stop()
        for logfile in self.logs:
            logfile.close()
        self.logs = []

    def __enter__(self) -> ServerGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- bad input and overload -----------------------------------------------------------------

async def expect_error(http: aiohttp.ClientSession, method: str, url: str, status: int,
                       code: str, **kwargs: Any) -> str:
    """Send a request that must be refused with HTTP ``status`` and JSON error ``code``."""
    async with http.request(method, url, **kwargs) as resp:
        try:
            body = await resp.json(content_type=None)
        except ValueError:
            body = None
        got = (resp.status, body.get("type") if isinstance(body, dict) else None,
               body.get("code") if isinstance(body, dict) else None)
        if got != (status, "error", code) or not body.get("message"):
            raise RuntimeError(f"{method} {url}: expected {status} {code}, got {resp.status} "
                               f"{body!r}")
        if status in (429, 503) and "Retry-After" not in resp.headers:
            raise RuntimeError(f"{method} {url}: {status} without Retry-After")
    return f"{status} {code}"


async def check_errors(http: aiohttp.ClientSession, bases: Sequence[str]) -> list[str]:
    """Bad input on servers that share sessions: a create body that is not JSON and one
    that is not a session request, a look-up and a join of a session that does not
    exist. Each on another process; raises unless each gets its documented JSON error."""
    def at(i: int) -> str:
        return bases[i % len(bases)]

    done = [
        "create, body not JSON: " + await expect_error(
            http, "POST", f"{at(0)}/api/sessions", 400, "malformed_json", data=b"{not json",
            headers={"Content-Type": "application/json"}),
        "create, not a session request: " + await expect_error(
            http, "POST", f"{at(1)}/api/sessions", 400, "invalid_request",
            json={"parties": "three", "program": "sum"}),
        "look-up of an unknown session: " + await expect_error(
            http, "GET", f"{at(2)}/api/sessions/no-such-session", 404, "unknown_session"),
    ]
    async with http.ws_connect(f"{at(3)}/ws") as ws:
        await ws.send_str(json.dumps({"v": 1, "type": "join", "session": "no-such-session",
                                      "token": "x" * 43}))
        msg = await ws.receive_json(timeout=10)
        if msg.get("type") != "error" or msg.get("code") != "unknown_session":
            raise RuntimeError(f"join of an unknown session: got {msg}")
    done.append("join of an unknown session: error unknown_session")
    return done


async def check_overload(http: aiohttp.ClientSession, parties: int = 3) -> list[str]:
    """``--max-sessions`` counts the sessions of all processes: two servers with
    ``--max-sessions 5`` on a fresh Redis; 5 sessions created on the first, then one on
    the second must be refused with 503 ``server_busy``."""
    options = ["--max-sessions", "5", "--stun-port", "0"]
    with ServerGroup(2, redis=True, options=options) as group:
        await group.wait()
        for _ in range(5):
            await create(http, group.bases[0], parties)
        status = await expect_error(http, "POST", f"{group.bases[1]}/api/sessions", 503,
                                    "server_busy",
                                    json=create_request(parties, "0" * 64))
    return [f"--max-sessions 5 over 2 processes: 5 created on one, the 6th on the other: "
            f"{status}"]


# -- one run, side by side with the one-at-a-time baseline ----------------------------------

@contextlib.asynccontextmanager
async def in_process_server(port: int):
    from aiohttp import web

    from signaling.app import create_app

    runner = web.AppRunner(create_app(max_sessions=100000, max_sessions_per_client=100000,
                                      max_connections=100000,
                                      max_connections_per_client=100000), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()


def quantiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    if not ordered:
        return (float("nan"),) * 3
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return statistics.median(ordered), p99, ordered[-1]


def mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def report(opts: Options, runs: dict[str, tuple[int, Stats, float, float]], where: str,
           before: dict[str, int], after: dict[str, int]) -> str:
    """The runs side by side: one column per run, one row per measure."""
    width = 16
    rows: list[tuple[str, list[str]]] = [
        ("sessions x parties", [f"{n} x {opts.parties}" for n, _, _, _ in runs.values()])]
    for label, kinds in [("", ("offer", "answer", "candidate")),
                         ("offer/answer ", ("offer", "answer")), ("candidate ", ("candidate",))]:
        values = [[x for k in kinds for x in stats.latency[k]]
                  for _, stats, _, _ in runs.values()]
        qs = [quantiles(v) for v in values]
        if not label:
            rows.append(("signals relayed", [str(len(v)) for v in values]))
            names = ("latency p50 ms", "latency p99 ms", "latency max ms")
        else:
            names = (f"  {label}p50 ms", f"  {label}p99 ms")
        for i, name in enumerate(names):
            rows.append((name, [f"{q[i] * 1000:.2f}" for q in qs]))
    rows.append(("wall time s", [f"{seconds:.2f}" for _, _, seconds, _ in runs.values()]))
    rows.append(("server CPU s", [f"{cpu:.2f}" for _, _, _, cpu in runs.values()]))
    rows.append(("relayed signals/s", [
        f"{sum(map(len, stats.latency.values())) / seconds:.0f}"
        for _, stats, seconds, _ in runs.values()]))

    lines = [f"signaling load on 127.0.0.1 ({where}); {opts.candidates} candidates per pair and "
             f"direction, offer/answer boxes of {opts.box_bytes} bytes",
             f"{'':<24}" + "".join(f"{name:>{width}}" for name in runs)]
    lines += [f"{name:<24}" + "".join(f"{v:>{width}}" for v in values) for name, values in rows]
    lines.append(f"server memory: RSS {mib(before.get('VmRSS'))} idle, peak (VmHWM) "
                 f"{mib(after.get('VmHWM'))}, RSS {mib(after.get('VmRSS'))} after; errors: 0")
    return "\n".join(lines)


async def run(sessions: int, opts: Options | None = None, *, in_process: bool = False,
              timeout: float = 300.0, processes: int = 1, redis: bool = False,
              redis_config: Sequence[tuple[str, str]] = ()) -> str:
    """Run the load once and return the report (raises if anything failed). With
    ``redis``, on ``processes`` servers sharing a Redis, and the error checks too."""
    opts = opts or Options()
    baseline = max(1, min(10, sessions))
    # One descriptor per party here, and one in a server (here too with ``in_process``).
    raise_fd_limit(sessions * opts.parties * (2 if in_process else 1) + FD_MARGIN)

    async def both(bases: Sequence[str], cpu: Any, mem: Any
                   ) -> tuple[dict[str, tuple[int, Stats, float, float]], dict, dict]:
        before = mem()
        runs = {}
        for name, n, concurrent in [("one at a time", baseline, False),
                                    (f"{sessions} at once", sessions, True)]:
            used = cpu()
            stats, seconds = await load(bases, n, opts, timeout, concurrent)
            used = cpu() - used
            if stats.errors or stats.sent_at:
                raise RuntimeError(f"{len(stats.errors)} errors, {len(stats.sent_at)} signals "
                                   "lost")
            runs[name] = (n, stats, seconds, used)
        return runs, before, mem()

    if in_process:
        if processes != 1 or redis:
            raise ValueError("--in-process runs one server in memory")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        async with in_process_server(port):
            await wait_ready(base, None)
            runs, before, after = await both([base], lambda: cpu_seconds(os.getpid()),
                                             lambda: memory(os.getpid()))
        return report(opts, runs, "server in this process: memory includes the clients",
                      before, after)
    with ServerGroup(processes, redis, redis_config=redis_config) as group:
        try:
            await group.wait()
            redis_before = group.redis_memory()
            runs, before, after = await both(group.bases, group.cpu, group.memory)
            redis_after = group.redis_memory()
            checks: list[str] = []
            if redis:
                async with aiohttp.ClientSession() as http:
                    checks = await check_errors(http, group.bases)
                    checks += await check_overload(http, opts.parties)
        except BaseException:
            sys.stderr.write(group.log_text()[-4000:])
            raise
        trouble = group.trouble()
        pids = ", ".join(map(str, group.pids))
    if processes == 1 and not redis:
        where = f"server: subprocess pid {pids}"
    else:
        where = (f"{processes} server subprocesses (pids {pids}) sharing sessions through "
                 "Redis; memory summed over them")
    text = report(opts, runs, where, before, after)
    if redis_before is not None and redis_after is not None:
        text += (f"\nredis used_memory: {redis_before['used_memory'] / 1024:.0f} KiB "
                 f"before, {redis_after['used_memory'] / 1024:.0f} KiB after")
    text += "".join(f"\ncheck: {line}" for line in checks)
    text += "".join(f"\nserver log: {line}" for line in trouble)
    return text


# -- the matrix ----------------------------------------------------------------------------

@dataclass
class Cell:
    """What ``measure`` found for one size on one configuration."""

    config: str
    sessions: int
    parties: int
    create_seconds: float = 0.0
    idle: Stats = field(default_factory=Stats)
    stats: Stats = field(default_factory=Stats)
    relay_seconds: float = 0.0
    rss: dict[str, dict[str, int]] = field(default_factory=dict)  # before / idle / after
    redis: dict[str, dict[str, int] | None] = field(default_factory=dict)
    server_cpu: float = 0.0
    redis_cpu: float | None = None
    client_cpu: float = 0.0
    #: CPU time of the machine's other processes during the relay phase (another test
    #: run, a browser): what the benchmark did not have.
    other_cpu: float = 0.0
    metrics: dict[tuple[str, str, str], float] = field(default_factory=dict)
    #: The most Redis held for its clients (the servers' connections) while relaying, in
    #: bytes: mostly what it has yet to send to their subscriptions.
    redis_buffers_peak: int = 0
    checks: list[str] = field(default_factory=list)
    trouble: list[str] = field(default_factory=list)
    #: What went wrong, if the cell did not run to the end.
    failure: str | None = None


class Stalled(Exception):
    """Nothing moved for ``STALL`` seconds: what was awaited will not come."""


async def watch(work: asyncio.Future[Any], done: asyncio.Event | None,
                progress: Callable[[], int], timeout: float,
                tick: Callable[[], None] | None = None, stall: float | None = None) -> None:
    """Wait for ``done`` (without it, for ``work``); fail at once if ``work`` fails (or
    ends first), with ``Stalled`` once ``progress()`` stood still for ``stall`` seconds
    (``STALL``), and after ``timeout``. ``tick`` is called about every second meanwhile."""
    stall = STALL if stall is None else stall
    loop = asyncio.get_running_loop()
    start = moved = loop.time()
    last = progress()
    waiting = asyncio.ensure_future(done.wait()) if done is not None else None
    try:
        while True:
            finished, _ = await asyncio.wait({work} | ({waiting} if waiting else set()),
                                             timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            if work in finished:
                work.result()  # raises what went wrong
                if waiting is None:
                    return
                raise RuntimeError("the parties finished first")
            if waiting is not None and waiting in finished:
                return
            if tick is not None:
                tick()
            now, now_progress = loop.time(), progress()
            if now_progress != last:
                last, moved = now_progress, now
            elif now - moved > stall:
                raise Stalled(f"nothing moved for {stall:g} s")
            if now - start > timeout:
                raise TimeoutError(f"not within {timeout:g} s")
    finally:
        if waiting is not None:
            waiting.cancel()


async def measure(group: ServerGroup, sessions: int, opts: Options, timeout: float,
                  config: str, check: bool = True, settle: float = SETTLE) -> Cell:
    """One cell of the matrix on a fresh ``group``.

    1. Ten sessions one after the other (``idle``: the relay latency of idle servers).
    2. Memory read (``before``); ``sessions`` sessions created, ``CREATING`` in flight,
       round-robin over the processes: timed (sessions created per second).
    3. Their parties join, ``ready: false``, at most ``CONNECTING`` WebSockets being
       opened at a time, until each party was shown a roster with all parties: every
       session is idle in its lobby. After ``SETTLE`` the memory is read (``idle``).
    4. Every party says ``ready`` at once and the signaling runs (``stats``): its wall
       time and the CPU time of the servers, Redis and this process, the servers' own
       metrics over it, and the peak of Redis's client buffers. Memory read again
       (``after``).

    A cell whose parties get an error, lose their connection or wait in vain (nothing
    moves for ``STALL`` seconds) is not the end of the matrix: ``failure`` says what
    happened and how far it got, the other measures stay. With ``check`` and Redis,
    ``check_errors`` first. ``settle``: the pause before each reading of the memory.
    """
    cell = Cell(config, sessions, opts.parties)
    expected = sessions * opts.parties * (opts.parties - 1) * (1 + opts.candidates)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        if check and group.redis is not None:
            cell.checks = await check_errors(http, group.bases)
        for k in range(min(10, sessions)):
            await asyncio.wait_for(one_session(http, group.bases, opts, cell.idle, k), timeout)
        await asyncio.sleep(settle)
        cell.rss["before"], cell.redis["before"] = group.memory(), group.redis_memory()

        start = time.perf_counter()
        created = await asyncio.wait_for(
            create_sessions(http, group.bases, sessions, opts.parties), timeout)
        cell.create_seconds = time.perf_counter() - start

        go, lobby = asyncio.Event(), Countdown(sessions * opts.parties)
        gate = asyncio.Semaphore(CONNECTING)
        work = asyncio.ensure_future(asyncio.gather(*(
            session_parties(http, group.bases, k, sid, token, opts, cell.stats, go=go,
                            lobby=lobby, gate=gate)
            for k, (sid, token) in enumerate(created))))
        phase = "the idle lobby of every session"
        metrics_before: dict[tuple[str, str, str], float] = {}
        try:
            await watch(work, lobby.done, lambda: lobby.left, timeout)
            await asyncio.sleep(settle)
            cell.rss["idle"], cell.redis["idle"] = group.memory(), group.redis_memory()

            metrics_before = await group.metrics(http)
            cpu, redis_cpu, client_cpu = group.cpu(), group.redis_cpu(), own_cpu_seconds()
            machine = machine_cpu_seconds()

            def sample_redis() -> None:
                now = group.redis_memory()
                if now is not None:
                    cell.redis_buffers_peak = max(cell.redis_buffers_peak,
                                                  now["mem_clients_normal"])

            phase = "every signal relayed"
            start = time.perf_counter()
            go.set()
            await watch(work, None, cell.stats.count, timeout, tick=sample_redis)
            cell.relay_seconds = time.perf_counter() - start
            cell.server_cpu = group.cpu() - cpu
            cell.client_cpu = own_cpu_seconds() - client_cpu
            if redis_cpu is not None:
                cell.redis_cpu = (group.redis_cpu() or 0.0) - redis_cpu
            cell.other_cpu = machine_cpu_seconds() - machine - cell.server_cpu - \
                cell.client_cpu - (cell.redis_cpu or 0.0)
        except (RuntimeError, TimeoutError, Stalled, aiohttp.ClientError) as exc:
            cell.failure = (f"waiting for {phase}: {exc}; by then "
                            f"{sessions * opts.parties - lobby.left} of "
                            f"{sessions * opts.parties} parties were in their lobby, "
                            f"{cell.stats.count()} of {expected} signals arrived, "
                            f"{len(cell.stats.errors)} errors")
        finally:
            if not work.done():
                work.cancel()
            await asyncio.gather(work, return_exceptions=True)
        if metrics_before:
            metrics_after = await group.metrics(http)
            cell.metrics = {key: value - metrics_before.get(key, 0.0)
                            for key, value in metrics_after.items()}
        if cell.failure is None and (cell.stats.errors or cell.stats.sent_at or
                                     cell.idle.errors or cell.idle.sent_at):
            cell.failure = (f"{len(cell.stats.errors)} errors, {len(cell.stats.sent_at)} "
                            "signals lost")
        await asyncio.sleep(settle)
        cell.rss["after"], cell.redis["after"] = group.memory(), group.redis_memory()
    cell.trouble = group.trouble()
    return cell


def histogram_quantile(metrics: dict[tuple[str, str, str], float], name: str, kind: str,
                       q: float) -> float:
    """The upper bound (s) of the bucket where quantile ``q`` of a histogram falls."""
    buckets = sorted((float(le), value) for (n, k, le), value in metrics.items()
                     if n == f"{name}_bucket" and k == kind)
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return float("nan")
    return next(le for le, count in buckets if count >= q * total)


def histogram_mean(metrics: dict[tuple[str, str, str], float], name: str, kind: str) -> float:
    count = metrics.get((f"{name}_count", kind, ""), 0.0)
    return metrics.get((f"{name}_sum", kind, ""), 0.0) / count if count else float("nan")


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return "n/a" if ms != ms else f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 \
        else f"{ms:.0f}"


def bound_ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else ("≤ " if seconds < float("inf") else "> ") + \
        fmt_ms(seconds if seconds < float("inf") else 2.5)


def matrix_report(cells: list[Cell], opts: Options, checks: list[str], where: str,
                  reference: str = CONFIGS[0][0]) -> str:
    """The cells as Markdown tables: the results (ratios against the ``reference``
    configuration of the same size), then what lies behind them."""
    memory_cells = {c.sessions: c for c in cells if c.config == reference}

    def ratio(cell: Cell, which: int, idle: bool = False) -> str:
        base = memory_cells.get(cell.sessions)
        if base is None or (base.failure is not None and not idle) or base is cell:
            return "1" if base is cell else "n/a"
        mine = quantiles((cell.idle if idle else cell.stats).all())[which]
        theirs = quantiles((base.idle if idle else base.stats).all())[which]
        return f"{mine / theirs:.2f}" if theirs else "n/a"

    def server_kib(cell: Cell, state: str) -> str:
        if state not in cell.rss:
            return "–"
        grown = cell.rss[state].get("VmRSS", 0) - cell.rss["before"].get("VmRSS", 0)
        return f"{grown / cell.sessions:.1f}"

    def redis_kib(cell: Cell, state: str, buffers: bool = False) -> str:
        """Redis's growth per session; without ``buffers`` less its clients' buffers,
        which come and go with the traffic (not what a session keeps)."""
        before, now = cell.redis.get("before"), cell.redis.get(state)
        if not before or not now:
            return "–"
        grown = now["used_memory"] - before["used_memory"]
        if not buffers:
            grown -= now["mem_clients_normal"] - before["mem_clients_normal"]
        return f"{grown / 1024 / cell.sessions:.1f}"

    lines = [where, "",
             "| sessions × 3 parties | servers | sessions created/s | relay p50 ms | "
             "relay p99 ms | p50 / memory | p99 / memory | idle relay p50 ms | "
             "idle p50 / memory | server KiB per idle session | Redis KiB per idle session |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in cells:
        p50, p99, _ = quantiles(c.stats.all())
        idle50 = quantiles(c.idle.all())[0]
        relayed = (f"{fmt_ms(p50)} | {fmt_ms(p99)} | {ratio(c, 0)} | {ratio(c, 1)}"
                   if c.failure is None else "failed (see below) | – | – | –")
        lines.append(
            f"| {c.sessions} | {c.config} | {c.sessions / c.create_seconds:.0f} | "
            f"{relayed} | "
            f"{fmt_ms(idle50)} | {ratio(c, 0, idle=True)} | "
            f"{server_kib(c, 'idle')} | {redis_kib(c, 'idle')} |")
    relay, rtt = "mpyc_webrtc_relay_latency_seconds", "mpyc_webrtc_redis_round_trip_seconds"
    lines += ["", "| sessions | servers | signals relayed | relay wall s | server CPU s | "
              "Redis CPU s | bench CPU s | others' CPU s | server-side relay p50 / p99 ms | "
              "Redis append round trip mean ms | server RSS MiB before / idle / after | "
              "Redis KiB per idle session, buffers included | Redis KiB per session after "
              "relay | Redis client buffers peak MiB | trouble in the logs |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|"]
    for c in cells:
        rss = " / ".join(f"{c.rss[s].get('VmRSS', 0) / 1024:.0f}" if s in c.rss else "–"
                         for s in ("before", "idle", "after"))
        peak = "–" if not c.redis.get("before") else f"{c.redis_buffers_peak / 2**20:.1f}"
        redis_cpu = "–" if c.redis_cpu is None else f"{c.redis_cpu:.1f}"
        append = histogram_mean(c.metrics, rtt, "append")
        phase = (f"{c.relay_seconds:.1f} | {c.server_cpu:.1f} | {redis_cpu} | "
                 f"{c.client_cpu:.1f} | {c.other_cpu:.1f}" if c.failure is None
                 else "failed | – | – | – | –")
        lines.append(
            f"| {c.sessions} | {c.config} | {c.stats.count()} | {phase} | "
            f"{bound_ms(histogram_quantile(c.metrics, relay, '', 0.5))} / "
            f"{bound_ms(histogram_quantile(c.metrics, relay, '', 0.99))} | "
            f"{'–' if append != append else fmt_ms(append)} | {rss} | "
            f"{redis_kib(c, 'idle', buffers=True)} | {redis_kib(c, 'after')} | {peak} | "
            f"{len(c.trouble)} |")
    lines += ["", f"{opts.candidates} candidates per pair and direction, offer/answer boxes "
              f"of {opts.box_bytes} bytes; latencies from the first table are this "
              "process's clock (send to receipt), the server-side ones are the servers' "
              "own histogram (bucket bounds). CPU seconds are those of the relay phase; "
              "others' is what the machine's other processes used meanwhile. Redis memory "
              "per session: the growth of "
              "`used_memory` less that of `mem_clients_normal` (the buffers of the servers' "
              "connections, which come and go with the traffic), unless said otherwise."]
    failed = [c for c in cells if c.failure is not None]
    if failed:
        lines += ["", "Cells that did not run to the end:"]
        lines += [f"- {c.sessions}, {c.config}: {c.failure}" for c in failed]
    lines += ["", "Checks (bad input and overload, through Redis):"]
    lines += [f"- {line}" for line in checks]
    for c in cells:
        for line, count in trouble_summary(c.trouble)[:8]:
            lines.append(f"- log ({c.sessions}, {c.config}): {count} x `{line}`")
    return "\n".join(lines)


def trouble_summary(lines: list[str]) -> list[tuple[str, int]]:
    """Log lines that say the same but for the time, session and party (a Redis client:
    but for its flags), counted, most frequent first."""
    counts: dict[str, int] = defaultdict(int)
    for line in lines:
        line = re.sub(r"^(redis: )?(\d+:[A-Z] )?(\d{2} \w{3} \d{4} )?[\d-]*\s*"
                      r"\d{2}:\d{2}:\d{2}[.,]\d{3}\s*[#*.-]?\s*", r"\1", line)
        line = re.sub(r"session \S+ party \S+:", "session S party P:", line)
        flags = re.search(r" flags=(\S+)", line)
        line = re.sub(r"Client (\S+=\S*\s)+", f"Client flags={flags[1]} … " if flags else
                      "Client … ", line)
        counts[line[:200]] += 1
    return sorted(counts.items(), key=lambda item: -item[1])


async def matrix(sizes: Sequence[int], opts: Options, timeout: float,
                 configs: Sequence[tuple[str, int, bool]] = CONFIGS,
                 settle: float = SETTLE, redis_config: Sequence[tuple[str, str]] = ()
                 ) -> tuple[str, list[Cell]]:
    """Every size on every configuration (``CONFIGS``), each on fresh servers; the first
    configuration is the one the others are compared with. The report, and the cells
    (a failed one says why: ``Cell.failure``). ``redis_config``: Redis settings
    (``CONFIG SET``) of the Redis configurations."""
    limit = raise_fd_limit(max(sizes) * opts.parties + FD_MARGIN)
    checks: list[str] = []
    async with aiohttp.ClientSession() as http:
        checks += await check_overload(http, opts.parties)
    cells = []
    for sessions in sizes:
        for config, processes, redis in configs:
            print(f"signaling_load: {sessions} sessions, {config} ...", file=sys.stderr,
                  flush=True)
            with ServerGroup(processes, redis, redis_config=redis_config) as group:
                try:
                    await group.wait()
                    cell = await measure(group, sessions, opts, timeout, config,
                                         check=sessions == sizes[0], settle=settle)
                except BaseException:
                    sys.stderr.write(group.log_text()[-4000:])
                    raise
            checks += [f"{config}: {line}" for line in cell.checks]
            cells.append(cell)
            print(f"signaling_load: {sessions} sessions, {config}: "
                  + (f"failed: {cell.failure}" if cell.failure else
                     f"{sessions / cell.create_seconds:.0f} created/s, relay p50/p99 "
                     + "/".join(fmt_ms(q) for q in quantiles(cell.stats.all())[:2]) + " ms"),
                  file=sys.stderr, flush=True)
    where = (f"signaling load on 127.0.0.1, {os.cpu_count()} CPU cores shared by the "
             f"servers, Redis and the clients (this one process, open-files limit {limit}); "
             f"Python {sys.version.split()[0]}; Redis "
             + (", ".join(f"`{name} {value}`" for name, value in redis_config)
                or "with its default settings"))
    return matrix_report(cells, opts, checks, where, configs[0][0]), cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.signaling_load",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100, help="concurrent sessions")
    parser.add_argument("--parties", type=int, default=3,
                        help="parties per session (with 2: an uploaded program, no_privacy)")
    parser.add_argument("--candidates", type=int, default=10,
                        help="ICE candidates per pair and direction")
    parser.add_argument("--box-bytes", type=int, default=4096,
                        help="size of an offer's or answer's box")
    parser.add_argument("--in-process", action="store_true",
                        help="run the server in this process (memory then includes clients)")
    parser.add_argument("--redis", action="store_true",
                        help="share the sessions through a throw-away redis-server, and check "
                             "the JSON errors through it")
    parser.add_argument("--processes", type=int, default=1,
                        help="server processes (more than one needs --redis)")
    parser.add_argument("--matrix", action="store_true",
                        help="every --sizes on memory x1, redis x1, x2 and x4: Markdown tables")
    parser.add_argument("--sizes", default="1000,5000",
                        help="sessions per cell of --matrix, comma-separated")
    parser.add_argument("--redis-config", action="append", default=[], metavar="'NAME VALUE'",
                        help="a setting of the benchmark's Redis (CONFIG SET), e.g. "
                             "'client-output-buffer-limit pubsub 0 0 0'; repeatable")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up after this long (per phase with --matrix; default 300 "
                             "s, 900 s with --matrix)")
    args = parser.parse_args(argv)
    if args.processes > 1 and not args.redis and not args.matrix:
        parser.error("--processes N > 1 needs --redis (processes share sessions through it)")
    opts = Options(parties=args.parties, candidates=args.candidates, box_bytes=args.box_bytes)
    redis_config: list[tuple[str, str]] = []
    for setting in args.redis_config:
        name, _, value = setting.strip().partition(" ")
        if not value.strip():
            parser.error("--redis-config takes 'NAME VALUE'")
        redis_config.append((name, value.strip()))
    failed: list[Cell] = []

    async def main_task() -> str:
        # SIGTERM ends the run as Ctrl-C does: the servers and Redis are stopped on the way.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(SIGTERM, task.cancel)
        if args.matrix:
            sizes = [int(n) for n in args.sizes.split(",") if n.strip()]
            text, cells = await matrix(sizes, opts, args.timeout or 900.0,
                                       redis_config=redis_config)
            failed.extend(c for c in cells if c.failure is not None)
            return text
        return await run(args.sessions, opts, in_process=args.in_process,
                         timeout=args.timeout or 300.0, processes=args.processes,
                         redis=args.redis, redis_config=redis_config)

    try:
        print(asyncio.run(main_task()))
    except (RuntimeError, TimeoutError, ValueError, aiohttp.ClientError) as exc:
        print(f"signaling_load: failed: {exc!r}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        print("signaling_load: stopped (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("signaling_load: stopped (Ctrl-C)", file=sys.stderr)
        return 130
    if failed:
        print(f"signaling_load: {len(failed)} cells did not run to the end", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
