"""Load on the signaling server: many sessions doing the whole signaling exchange at once.

    .venv/bin/python -m bench.signaling_load [--sessions 100] [--parties 3]

Everything runs on 127.0.0.1. The server is ``python -m signaling.cli`` in a subprocess
on a free port (or, with ``--in-process``, in this process), with its session and
connection limits raised to fit the load (the message rate limit keeps its default).
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
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from testbed.sans_io import create_request

REPO = Path(__file__).resolve().parent.parent

#: Limits raised for the load (everything else stays at the server's defaults).
SERVER_OPTIONS = ["--max-sessions", "100000", "--max-sessions-per-client", "100000",
                  "--max-connections", "100000", "--max-connections-per-client", "100000"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def box(nbytes: int) -> str:
    """A random base64url box of about ``nbytes`` characters."""
    return base64.urlsafe_b64encode(os.urandom(max(3, nbytes * 3 // 4))).decode().rstrip("=")


@dataclass
class Stats:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[dict[str, Any]] = field(default_factory=list)
    sent_at: dict[tuple[str, int, int, int], tuple[float, str]] = field(default_factory=dict)


@dataclass
class Options:
    parties: int = 3
    candidates: int = 10
    box_bytes: int = 4096
    candidate_bytes: int = 200


async def party(http: aiohttp.ClientSession, base: str, sid: str, token: str, opts: Options,
                stats: Stats, all_done: asyncio.Event, done_count: list[int]) -> None:
    offer_box, candidate_box = box(opts.box_bytes), box(opts.candidate_bytes)
    seq: dict[int, int] = defaultdict(int)
    async with http.ws_connect(f"{base}/ws", max_msg_size=0) as ws:

        async def signal(to: int, kind: str, text: str) -> None:
            seq[to] += 1
            stats.sent_at[(sid, pid, to, seq[to])] = (time.perf_counter(), kind)
            await ws.send_str(json.dumps({"v": 1, "type": "signal", "to": to,
                                          "seq": seq[to], "box": text}))

        async def candidates(to: int) -> None:
            for _ in range(opts.candidates):
                await signal(to, "candidate", candidate_box)

        await ws.send_str(json.dumps({"v": 1, "type": "join", "session": sid, "token": token,
                                      "ready": True}))
        pid = -1
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
            elif kind == "error":
                stats.errors.append(msg)
                raise RuntimeError(f"session {sid}: party {pid} got {msg}")
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
        await all_done.wait()  # leave only when nobody needs this party any more


async def one_session(http: aiohttp.ClientSession, base: str, opts: Options,
                      stats: Stats) -> None:
    token = secrets.token_urlsafe(32)
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    # "sum"; with 2 parties an uploaded program and no_privacy (the built-ins need 3).
    async with http.post(f"{base}/api/sessions",
                         json=create_request(opts.parties, token_hash)) as resp:
        body = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"create failed: {resp.status} {body}")
    all_done, count = asyncio.Event(), [0]
    await asyncio.gather(*(party(http, base, body["session"], token, opts, stats, all_done,
                                 count) for _ in range(opts.parties)))


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


async def load(base: str, sessions: int, opts: Options, timeout: float,
               concurrent: bool = True) -> tuple[Stats, float]:
    """Run ``sessions`` sessions, all at once or one after the other."""
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.perf_counter()
        if concurrent:
            work = asyncio.gather(*(one_session(http, base, opts, stats)
                                    for _ in range(sessions)))
        else:
            async def one_by_one() -> None:
                for _ in range(sessions):
                    await one_session(http, base, opts, stats)
            work = one_by_one()
        await asyncio.wait_for(work, timeout)
        return stats, time.perf_counter() - start


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

    def mib(kib: int | None) -> str:
        return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"

    lines = [f"signaling load on 127.0.0.1 ({where}); {opts.candidates} candidates per pair and "
             f"direction, offer/answer boxes of {opts.box_bytes} bytes",
             f"{'':<24}" + "".join(f"{name:>{width}}" for name in runs)]
    lines += [f"{name:<24}" + "".join(f"{v:>{width}}" for v in values) for name, values in rows]
    lines.append(f"server memory: RSS {mib(before.get('VmRSS'))} idle, peak (VmHWM) "
                 f"{mib(after.get('VmHWM'))}, RSS {mib(after.get('VmRSS'))} after; errors: 0")
    return "\n".join(lines)


async def run(sessions: int, opts: Options | None = None, *, in_process: bool = False,
              timeout: float = 300.0) -> str:
    """Run the load once and return the report (raises if anything failed)."""
    opts = opts or Options()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    baseline = max(1, min(10, sessions))

    async def both(pid: int) -> tuple[dict[str, tuple[int, Stats, float, float]], dict, dict]:
        before = memory(pid)
        runs = {}
        for name, n, concurrent in [("one at a time", baseline, False),
                                    (f"{sessions} at once", sessions, True)]:
            cpu = cpu_seconds(pid)
            stats, seconds = await load(base, n, opts, timeout, concurrent)
            cpu = cpu_seconds(pid) - cpu
            if stats.errors or stats.sent_at:
                raise RuntimeError(f"{len(stats.errors)} errors, {len(stats.sent_at)} signals "
                                   "lost")
            runs[name] = (n, stats, seconds, cpu)
        return runs, before, memory(pid)

    if in_process:
        async with in_process_server(port):
            await wait_ready(base, None)
            runs, before, after = await both(os.getpid())
        where = "server in this process: memory includes the clients"
    else:
        with tempfile.TemporaryFile() as logfile:
            proc = subprocess.Popen(
                [sys.executable, "-m", "signaling.cli", "--host", "127.0.0.1", "--port",
                 str(port), *SERVER_OPTIONS], cwd=REPO, stdout=logfile, stderr=logfile)
            try:
                await wait_ready(base, proc)
                runs, before, after = await both(proc.pid)
            except BaseException:
                logfile.seek(0)
                sys.stderr.write(logfile.read()[-4000:].decode(errors="replace"))
                raise
            finally:
                proc.terminate()  # only the server this run started, by its pid
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        where = f"server: subprocess pid {proc.pid}"
    return report(opts, runs, where, before, after)


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
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this long")
    args = parser.parse_args(argv)
    opts = Options(parties=args.parties, candidates=args.candidates, box_bytes=args.box_bytes)
    try:
        print(asyncio.run(run(args.sessions, opts, in_process=args.in_process,
                              timeout=args.timeout)))
    except (RuntimeError, TimeoutError, aiohttp.ClientError) as exc:
        print(f"signaling_load: failed: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
