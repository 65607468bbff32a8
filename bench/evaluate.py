"""What does each way of connecting MPyC parties cost? One reproducible run, as root:

    .venv/bin/python -m bench.evaluate            # the full evaluation (about half an hour)
    .venv/bin/python -m bench.evaluate --quick    # one tiny workload per transport (a smoke test)

It also runs sessions of m = 2, 3, 5, 8, 12 native parties (and 5 with two browsers among
them): time to a full mesh and cost per round, as m(m-1)/2 links grow. The workload is an
uploaded program (``bench/workload.py``), so every peer joins with ``--trust-program``; the
2-party session keeps nothing private (MPyC's threshold is 0) and is a measure of transport
cost only, so it is created with ``--no-privacy`` and joined with ``--accept-no-privacy``.

The same MPyC workloads (``bench/workload.py``) run over

- ``tcp``: MPyC's own TCP links between the parties' addresses (the zero-overhead reference,
  which needs every party reachable: open ports, public addresses);
- ``wireguard``: the same TCP inside a WireGuard full mesh (wireguard-go), standing in for
  the VPN meshes (Tailscale, Headscale, NetBird);
- ``webrtc``: our native peers, direct;
- ``turn``: our native peers in a relay-only session (everything through coturn);
- ``browser``: our browser parties in headless Chromium (Pyodide), direct;
- ``firefox``: our browser parties in headless Firefox (Pyodide), direct;

on the simulated internet of ``e2e.netsim`` (one network namespace per party, "public"
addresses so that plain TCP works too), under each network condition: plain links, 10 ms
and 50 ms round-trip time between parties, and 1% loss. Per cell: the median time of party 0
(after every link is up, to before shutdown), the ratio to TCP in the same run, the bytes
all parties put on the wire (their access links' counters: protocol overhead included), and
the time to connect (process start, or the last "I'm ready" for browsers, to all links up).
Per browser and condition it also times a party's page from opening the link to Python ready
(ready to compute): cold (a fresh profile) and warm (a reload).

It writes ``docs/evaluation.md`` (tables, setup effort) and ``docs/evaluation.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from e2e.netsim import Internet
from mpyc_webrtc import launch

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKLOAD = REPO / "bench" / "workload.py"
TRANSPORTS = ("tcp", "wireguard", "webrtc", "turn", "browser", "firefox")
LABELS = {"tcp": "TCP", "wireguard": "WireGuard mesh", "webrtc": "WebRTC native",
          "turn": "WebRTC via TURN", "browser": "WebRTC Chromium", "firefox": "WebRTC Firefox"}
#: The browser engine of each browser transport (``bench.browser.ENGINES``).
BROWSER_ENGINES = {"browser": "chromium", "firefox": "firefox"}


@dataclass(frozen=True)
class Condition:
    name: str
    title: str
    #: One-way delay and loss on each party's access link; a party-to-party path crosses
    #: two access links each way, so its RTT is 4 x delay_ms.
    delay_ms: float = 0.0
    loss: float = 0.0


CONDITIONS = (
    Condition("plain", "plain links (no delay, no loss)"),
    Condition("rtt10", "10 ms RTT", delay_ms=2.5),
    Condition("rtt50", "50 ms RTT", delay_ms=12.5),
    # Two access links per path, each dropping 0.5% per direction: about 1% per path.
    Condition("loss1", "1% loss", loss=0.005),
)


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str
    parties: int
    #: Size per condition name (latency-bound workloads get smaller sizes on slow links so
    #: that every cell takes seconds, not minutes).
    sizes: dict[str, int]
    what: str

    def size(self, condition: str) -> int:
        return self.sizes.get(condition, self.sizes["plain"])


WORKLOADS = (
    Workload("rounds", "mul", 3, {"plain": 1000, "rtt10": 150, "rtt50": 40, "loss1": 300},
             "sequential secure multiplications: one round trip each (latency)"),
    Workload("sort", "sort", 3, {"plain": 24, "rtt10": 12, "rtt50": 6},
             "mpc.sorted of N secure integers (rounds and compute)"),
    Workload("inner", "inner", 3, {"plain": 5000},
             "inner product of two length-N secure vectors (bandwidth)"),
    Workload("santa3", "santa", 3, {"plain": 3, "rtt50": 1},
             "secret-santa derangements of 3 parties, N draws"),
    Workload("santa5", "santa", 5, {"plain": 2, "rtt50": 1},
             "secret-santa derangements of 5 parties, N draws"),
)
QUICK = (Workload("rounds", "mul", 3, {"plain": 20}, "sequential multiplications"),)


class EvalError(Exception):
    pass


def weak(m: int, args: list[str]) -> bool:
    """Whether a session of ``m`` parties running the workload keeps inputs less than fully
    private (2 parties): measured on purpose, with every opt-in."""
    return not launch.privacy(m, ["--no-log", *args])["full"]


def consent(m: int, args: list[str]) -> list[str]:
    """What a native peer says to run the uploaded workload in such a session."""
    return ["--trust-program", *(["--accept-no-privacy"] if weak(m, args) else [])]


@dataclass
class Cell:
    seconds: list[float] = field(default_factory=list)
    connect: list[float] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)


def tx_bytes(net: Internet, parties: int) -> int:
    """Bytes sent on the parties' access links (eth0 in each LAN namespace)."""
    total = 0
    for i in range(parties):
        out = subprocess.run(["ip", "-n", net.parties[i].ns, "-j", "-s", "link", "show",
                              "dev", "eth0"], capture_output=True, text=True, check=True)
        total += json.loads(out.stdout)[0]["stats64"]["tx"]["bytes"]
    return total


def result_of(outputs: list[str], what: str) -> dict:
    lines = [json.loads(line) for out in outputs for line in out.splitlines()
             if line.startswith("{")]
    if len(lines) != 1:
        raise EvalError(f"{what}: expected one result line from party 0, got {len(lines)}")
    if lines[0].get("ok") is not True:
        raise EvalError(f"{what}: WRONG RESULT {json.dumps(lines[0])[:300]}")
    return lines[0]


def wait(procs: list[subprocess.Popen], timeout: float, what: str) -> list[str]:
    deadline = time.monotonic() + timeout
    outputs = []
    for i, proc in enumerate(procs):
        try:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in procs:
                if other.poll() is None:
                    other.kill()
                    other.communicate()
            raise EvalError(f"{what}: no result within {timeout:g} s") from None
        if proc.returncode != 0:
            raise EvalError(f"{what}: party {i} exited with {proc.returncode}:\n{err[-1500:]}")
        outputs.append(out)
    return outputs


class Runner:
    """Runs one workload over one transport on a built ``Internet``."""

    def __init__(self, net: Internet, timeout: float, wg_addresses: list[str] | None,
                 browsers: dict[str, BrowserParties]):
        self.net = net
        self.timeout = timeout
        self.wg = wg_addresses
        self.browsers = browsers
        self.port = 12000

    def run(self, transport: str, w: Workload, size: int) -> tuple[float, float, int]:
        """(seconds, time to connect, bytes sent) of one run."""
        what = f"{transport} run of {w.name} (size {size})"
        args = ["--workload", w.kind, "--size", str(size)]
        before = tx_bytes(self.net, w.parties)
        if transport in ("tcp", "wireguard"):
            result, launched = self._tcp(transport, w.parties, args, what)
        elif transport in ("webrtc", "turn"):
            result, launched = self._webrtc(transport == "turn", w.parties, args, what)
        else:
            result, launched = self.browsers[transport].run(
                self._create(w.parties, args, False), w.parties, what)
        sent = tx_bytes(self.net, w.parties) - before
        return result["seconds"], result["connected_at"] - launched, sent

    def _tcp(self, transport: str, m: int, args: list[str], what: str):
        self.port += 10  # fresh ports each run: no waiting for TIME_WAIT
        hosts = self.wg if transport == "wireguard" else [p.lan_ip for p in
                                                          self.net.parties]
        assert hosts is not None
        addresses = [arg for i in range(m) for arg in ("-P", f"{hosts[i]}:{self.port + i}")]
        launched = time.time()
        procs = [self.net.popen(self.net.parties[i].ns, [
            sys.executable, str(WORKLOAD), "-M", str(m), "-I", str(i), *addresses,
            "--no-log", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=REPO) for i in range(m)]
        return result_of(wait(procs, self.timeout, what), what), launched

    def _create(self, m: int, args: list[str], relay_only: bool) -> str:
        done = subprocess.run(self.net.exec_args(self.net.parties[0].ns, [
            str(BIN / "mpyc-webrtc-peer"), "create", self.net.server_url, "--parties", str(m),
            "--no-qr", "--program-file", str(WORKLOAD),
            *(["--relay-only"] if relay_only else []),
            *(["--no-privacy"] if weak(m, args) else []), "--args", "--no-log", *args]),
            capture_output=True, text=True, timeout=60, cwd=REPO)
        if done.returncode != 0:
            raise EvalError(f"creating a session failed: {done.stderr[-500:]}")
        return done.stdout.strip().splitlines()[-1]

    def _join(self, i: int, url: str, m: int, args: list[str]) -> subprocess.Popen:
        """Party ``i``'s native peer, with the consent the workload's session needs."""
        return self.net.popen(self.net.parties[i].ns, [
            str(BIN / "mpyc-webrtc-peer"), "join", url, *consent(m, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)

    def ready(self, transport: str) -> tuple[float, float]:
        """A browser party's page open to Python ready, (cold, warm), in a session of 3."""
        url = self._create(3, ["--workload", "mul", "--size", "1"], False)
        try:
            return self.browsers[transport].ready_times(url)
        except AssertionError as exc:
            raise EvalError(f"{transport} page open to ready: {str(exc)[:1500]}") from None

    def _webrtc(self, relay_only: bool, m: int, args: list[str], what: str):
        url = self._create(m, args, relay_only)
        launched = time.time()
        procs = [self._join(i, url, m, args) for i in range(m)]
        return result_of(wait(procs, self.timeout, what), what), launched

    def scale(self, m: int, rounds: int, browsers: int = 0) -> tuple[float, float]:
        """(mesh seconds after the last join, seconds per round) for m parties, of which
        the first ``browsers`` are browser tabs and the rest native peers."""
        what = f"scale run with {m} parties"
        args = ["--workload", "mul", "--size", str(rounds)]
        url = self._create(m, args, False)
        procs = [self._join(i, url, m, args) for i in range(browsers, m)]
        tabs_result = None
        if browsers:
            tabs_result, _ = self.browsers["browser"].run(url, browsers, what,
                                                          complete=False)
        outputs = [(proc, *proc.communicate(timeout=self.timeout)) for proc in procs]
        for proc, _, err in outputs:
            if proc.returncode != 0:
                raise EvalError(f"{what}: a party exited with {proc.returncode}:\n"
                                f"{err[-1500:]}")
        result = result_of([out for _, out, _ in outputs] + (
            [json.dumps(tabs_result)] if tabs_result else []), what)
        mesh = max(float(m_[1]) for _, _, err in outputs
                   for m_ in re.finditer(r"are open (\d+\.\d+) s after the last party "
                                         r"joined", err))
        return mesh, result["seconds"] / rounds


class BrowserParties:
    """One browser per party namespace (each party is a person on its own network), of one
    engine ("chromium" or "firefox"). The pages come from the server's plain http://
    "public" address, which each browser is told to treat as secure (WebCrypto and, with
    the server's COOP/COEP headers, cross-origin isolation need a secure context)."""

    def __init__(self, playwright, net: Internet, parties: int, workdir: Path,
                 engine: str = "chromium"):
        from bench.browser import ENGINES

        self.net = net
        self.engine = ENGINES[engine]
        self.browsers = [self.engine.launch(playwright, net.parties[i].ns, workdir,
                                            secure_origin=net.server_url)
                         for i in range(parties)]

    def close(self) -> None:
        for browser in self.browsers:
            browser.close()

    def run(self, url: str, m: int, what: str, complete: bool = True
            ) -> tuple[dict | None, float]:
        """Tabs for ``m`` parties (with ``complete``, all of them); party 0's result line
        if one of the tabs is party 0."""
        from testbed.browser import BrowserParty

        contexts = [self.engine.new_context(self.browsers[i], self.net.server_url)
                    for i in range(m)]
        try:
            tabs = [BrowserParty(c.new_page(), url) for c in contexts]
            for tab in tabs:
                tab.wait_python()
            for tab in tabs:  # weak sessions (m = 2) are for native peers only
                tab.confirm()
            launched = time.time()
            outputs = [tab.wait_done() for tab in tabs]
        except AssertionError as exc:
            raise EvalError(f"{what}: {str(exc)[:1500]}") from None
        finally:
            for context in contexts:
                context.close()
        if not complete and not any(line.startswith("{") for out in outputs
                                    for line in out.splitlines()):
            return None, launched
        return result_of(outputs, what), launched

    def ready_times(self, url: str) -> tuple[float, float]:
        """Party 0's page: open to Python ready, (cold, warm) (``bench.browser``)."""
        from bench.browser import ready_times

        return ready_times(self.engine.new_context(self.browsers[0], self.net.server_url),
                           url)


def run_once_more_on_failure(runner: Runner, transport: str, w: Workload, size: int,
                             retried: list[str]) -> tuple[float, float, int]:
    """A failed run is tried once more, and the failure goes into the report: one flaky
    connection should not cost a 40-minute run, nor go unmentioned."""
    try:
        return runner.run(transport, w, size)
    except EvalError as exc:
        reason = str(exc).strip().splitlines()
        what = f"{transport} {w.name}({size}): {reason[0] if reason else exc}"
        last = next((line for line in reversed(reason) if "error:" in line), "")
        retried.append(what + (f" ... {last.strip()}" if last else ""))
        print(f"FAILED, trying once more: {what}\n{str(exc)[-3000:]}", file=sys.stderr,
              flush=True)
        return runner.run(transport, w, size)


def evaluate(args: argparse.Namespace) -> dict:
    workloads = QUICK if args.quick else WORKLOADS
    conditions = [c for c in CONDITIONS if c.name in args.conditions]
    transports = [t for t in TRANSPORTS if t in args.transports]
    repeat = 1 if args.quick else args.repeat
    m = max(w.parties for w in workloads)
    cells: dict[tuple[str, str, str], Cell] = {}
    setup: dict[str, float] = {}
    #: (condition, browser transport) -> (cold seconds, warm seconds), one per repetition
    ready: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    retried: list[str] = []
    for condition in conditions:
        with contextlib.ExitStack() as stack:
            net = stack.enter_context(Internet(
                nats=["public"] * m, name="mwev", turn_secret="evaluate", server=True,
                delay_ms=condition.delay_ms, loss=condition.loss, seed=1))
            wg = mesh = None
            if "wireguard" in transports:
                mesh = net.wireguard_mesh()
                wg = [mesh.address(i) for i in range(m)]
                setup.setdefault("wireguard mesh bring-up", mesh.seconds)
            browsers = {}
            if any(t in BROWSER_ENGINES for t in transports):
                from playwright.sync_api import sync_playwright

                playwright = stack.enter_context(sync_playwright())
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                for t in transports:
                    if t in BROWSER_ENGINES:
                        browsers[t] = BrowserParties(playwright, net, 3, workdir,
                                                     BROWSER_ENGINES[t])
                        stack.callback(browsers[t].close)
            runner = Runner(net, args.timeout, wg, browsers)
            for rep in range(repeat):
                for t in browsers:
                    try:
                        cold, warm = runner.ready(t)
                    except EvalError as exc:  # as a failed run: once more, and reported
                        retried.append(f"{t} page open to ready: "
                                       f"{str(exc).strip().splitlines()[0]}")
                        print(f"FAILED, trying once more: {exc}", file=sys.stderr,
                              flush=True)
                        cold, warm = runner.ready(t)
                    colds, warms = ready.setdefault((condition.name, t), ([], []))
                    colds.append(cold)
                    warms.append(warm)
                    print(f"[{condition.name} {rep + 1}/{repeat}] {t} page open to ready: "
                          f"cold {cold:.2f} s, warm {warm:.2f} s", file=sys.stderr, flush=True)
                for w in workloads:
                    size = w.size(condition.name)
                    for transport in transports:
                        if transport in BROWSER_ENGINES and w.parties > 3:
                            continue  # five browsers on two cores measure the cores
                        # Only the WireGuard runs see the tunnel: WebRTC gathers every
                        # interface and would otherwise pick direct pairs through it.
                        hide = mesh.hidden() if mesh is not None and \
                            transport != "wireguard" else contextlib.nullcontext()
                        with hide:
                            seconds, connect, sent = run_once_more_on_failure(
                                runner, transport, w, size, retried)
                        cell = cells.setdefault((condition.name, w.name, transport), Cell())
                        cell.seconds.append(seconds)
                        cell.connect.append(connect)
                        cell.bytes.append(sent)
                        print(f"[{condition.name} {rep + 1}/{repeat}] {w.name}({size}) "
                              f"{transport}: {seconds:.3f} s, connect {connect:.2f} s, "
                              f"{sent / 1e6:.2f} MB", file=sys.stderr, flush=True)
    scale: dict[str, tuple[list[float], list[float]]] = {}
    if args.scale:
        sizes = sorted(set(args.scale))
        mixed = "browser" in transports and not args.quick
        with contextlib.ExitStack() as stack:
            net = stack.enter_context(Internet(
                nats=["public"] * max(sizes), name="mwsc", turn_secret="evaluate",
                server=True))
            browsers = {}
            if mixed:
                from playwright.sync_api import sync_playwright

                playwright = stack.enter_context(sync_playwright())
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                browsers["browser"] = BrowserParties(playwright, net, 2, workdir)
                stack.callback(browsers["browser"].close)
            runner = Runner(net, args.timeout, None, browsers)
            runs = [(f"{m} native", m, 0) for m in sizes]
            if mixed:
                runs.append(("5 mixed (2 browsers)", 5, 2))
            for _ in range(repeat):
                for label, m, tabs in runs:
                    mesh, per_round = runner.scale(m, args.scale_rounds, tabs)
                    meshes, rounds = scale.setdefault(label, ([], []))
                    meshes.append(mesh)
                    rounds.append(per_round)
                    print(f"[scale] {label}: mesh {mesh:.2f} s, {per_round * 1e3:.2f} ms "
                          "per round", file=sys.stderr, flush=True)
    return {"cells": cells, "conditions": conditions, "workloads": workloads,
            "transports": transports, "repeat": repeat, "setup": setup, "scale": scale,
            "ready": ready, "retried": retried,
            "scale_rounds": args.scale_rounds}


def median(values: list[float]) -> float:
    return statistics.median(values)


def markdown(data: dict, command: str) -> str:
    cells, transports = data["cells"], data["transports"]
    lines = [
        "# Evaluation: what each way of connecting MPyC parties costs",
        "",
        f"Regenerated by `{command}` (as root) on the 2-core development machine; every "
        f"cell is the median of {data['repeat']} run(s) in this one run. Parties sit in "
        "their own network namespaces on the simulated internet of `e2e/netsim` "
        "(`docs/netsim.md`), with public addresses so that plain TCP works too. Delay and "
        "loss come from its userspace wire (this kernel has no tc netem), applied equally "
        "to every transport. The WireGuard interfaces are down except during the WireGuard "
        "runs (WebRTC would otherwise find direct pairs through the tunnel).",
        "",
        "Per cell: **time** of party 0 from all links up to the result (median), its "
        "**ratio** to TCP in the same run, the **bytes** all parties sent on their access "
        "links (protocol overhead included), and the **time to connect** from process "
        "start (browsers: from the last \"I'm ready\") to all links up.",
        "",
    ]
    for condition in data["conditions"]:
        lines += [f"## {condition.title}", ""]
        lines.append("| workload (size) | " + " | ".join(LABELS[t] for t in transports) + " |")
        lines.append("|---|" + "---|" * len(transports))
        totals = {t: 0.0 for t in transports}
        complete = {t: True for t in transports}
        for w in data["workloads"]:
            row = [f"{w.name} ({w.size(condition.name)}, m={w.parties})"]
            tcp = cells.get((condition.name, w.name, "tcp"))
            for t in transports:
                cell = cells.get((condition.name, w.name, t))
                if cell is None:
                    row.append("—")
                    complete[t] = False
                    continue
                s = median(cell.seconds)
                totals[t] += s
                ratio = f" ({s / median(tcp.seconds):.2f}x)" if tcp and t != "tcp" else ""
                row.append(f"{s:.3f} s{ratio}<br>{median(cell.bytes) / 1e6:.2f} MB, "
                           f"connect {median(cell.connect):.2f} s")
            lines.append("| " + " | ".join(row) + " |")
        total_row = ["**total (m=3 workloads)**"]
        tcp_total = sum(median(cells[(condition.name, w.name, "tcp")].seconds)
                        for w in data["workloads"] if w.parties == 3
                        and (condition.name, w.name, "tcp") in cells)
        for t in transports:
            s = sum(median(cells[(condition.name, w.name, t)].seconds)
                    for w in data["workloads"] if w.parties == 3
                    and (condition.name, w.name, t) in cells)
            total_row.append(f"**{s:.3f} s**" + (f" **({s / tcp_total:.2f}x)**"
                                                 if t != "tcp" and tcp_total else ""))
        lines += ["| " + " | ".join(total_row) + " |", ""]
    if data["scale"]:
        lines += ["## Scale: sessions of m parties", "",
                  f"Plain links; one session per row and repetition, running "
                  f"{data['scale_rounds']} sequential multiplications. **Mesh** is the time "
                  "from the last party joining to every data channel open (the slowest "
                  "party's view), **per round** party 0's time per multiplication.", "",
                  "| parties | links m(m-1)/2 | mesh ready | per round |", "|---|---|---|---|"]
        for label, (meshes, rounds) in data["scale"].items():
            m = int(label.split()[0])
            lines.append(f"| {label} | {m * (m - 1) // 2} | {median(meshes):.2f} s | "
                         f"{median(rounds) * 1e3:.2f} ms |")
        lines.append("")
    if data.get("retried"):
        lines += ["## Runs that failed and were repeated", "",
                  "Each failed run was tried once more (a second failure ends the "
                  "evaluation); the cells above hold the repeated runs.", ""]
        lines += [f"- {what}" for what in data["retried"]]
        lines.append("")
    lines += SETUP_EFFORT
    if data["setup"]:
        lines += ["", "Measured in this run: " + ", ".join(
            f"{k} {v:.2f} s" for k, v in data["setup"].items()) + "."]
    if data.get("ready"):
        lines += ["", "### A browser party's page: open to ready to compute", "",
                  "From opening the join link to Python loaded in the page's worker (the "
                  "button stops saying \"Loading Python…\"), party 0's page in its own "
                  "browser on its own network; **cold**: a fresh profile (empty HTTP cache) "
                  "in the running browser, **warm**: a reload of that page. Median "
                  f"(min–max) of {data['repeat']} run(s) per cell.", "",
                  "| browser | condition | cold | warm |", "|---|---|---|---|"]
        titles = {c.name: c.title for c in data["conditions"]}

        def spread(values: list[float]) -> str:
            return (f"{median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"
                    if len(values) > 1 else f"{values[0]:.2f} s")

        for t in (t for t in transports if t in BROWSER_ENGINES):
            for (condition, t_), (colds, warms) in data["ready"].items():
                if t_ == t:
                    lines.append(f"| {LABELS[t].removeprefix('WebRTC ')} | "
                                 f"{titles[condition]} | {spread(colds)} | "
                                 f"{spread(warms)} |")
    lines += ["", "![time per workload and transport, relative to TCP](evaluation.png)", ""]
    return "\n".join(lines)


SETUP_EFFORT = [
    "## Setup effort per party",
    "",
    "| option | steps per party | installed per party | network needs |",
    "|---|---|---|---|",
    "| TCP (MPyC's own) | agree on every party's host:port; open and forward a port; run "
    "the script with `-P` for every party | Python, MPyC | every party reachable: a public "
    "address or port forwarding, firewall rules; no NAT in the way |",
    "| WireGuard mesh (Tailscale, Headscale, NetBird) | create an account or run a "
    "coordination server; install the client; log in / exchange keys; then as TCP over the "
    "mesh addresses | a WireGuard client (kernel module or wireguard-go, admin rights), "
    "Python, MPyC | a coordination server; UDP out (or a relay such as DERP) |",
    "| mpyc-webrtc, native | `pip install mpyc-webrtc`; `mpyc-webrtc-peer join LINK` (an "
    "uploaded program: after reading it, or `--trust-program`) | Python, "
    "MPyC, mpyc-webrtc | outbound UDP or TCP to the STUN/TURN server; no open ports |",
    "| mpyc-webrtc, browser | open the link | nothing (a browser) | as native |",
]


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells, transports = data["cells"], [t for t in data["transports"] if t != "tcp"]
    conditions, workloads = data["conditions"], data["workloads"]
    fig, axes = plt.subplots(1, len(conditions), figsize=(4.2 * len(conditions), 4.2),
                             sharey=True, squeeze=False)
    width = 0.8 / max(1, len(transports))
    for ax, condition in zip(axes[0], conditions, strict=True):
        for k, t in enumerate(transports):
            xs, ys = [], []
            for j, w in enumerate(workloads):
                cell, tcp = (cells.get((condition.name, w.name, t)),
                             cells.get((condition.name, w.name, "tcp")))
                if cell and tcp:
                    xs.append(j + (k - (len(transports) - 1) / 2) * width)
                    ys.append(median(cell.seconds) / median(tcp.seconds))
            ax.bar(xs, ys, width, label=LABELS[t])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_title(condition.title)
        ax.set_xticks(range(len(workloads)), [w.name for w in workloads], rotation=30)
    axes[0][0].set_ylabel("time / TCP time (same run)")
    if transports:
        axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one tiny workload per transport on plain links")
    parser.add_argument("--repeat", "-r", type=int, default=3, metavar="R")
    parser.add_argument("--condition", dest="conditions", action="append",
                        choices=[c.name for c in CONDITIONS])
    parser.add_argument("--transport", dest="transports", action="append", choices=TRANSPORTS)
    parser.add_argument("--output", type=Path, default=REPO / "docs",
                        help="where evaluation.md and evaluation.png go")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS")
    parser.add_argument("--scale", type=lambda text: [] if text == "none" else
                        [int(m) for m in text.split(",")], metavar="M,M,...",
                        help="party counts of the scale runs (default 2,3,5,8,12; quick: 2; "
                        "none: no scale runs)")
    parser.add_argument("--scale-rounds", type=int, default=None, metavar="N",
                        help="multiplications per scale run (default 200; quick: 10)")
    args = parser.parse_args(argv)
    args.conditions = args.conditions or (["plain"] if args.quick else
                                          [c.name for c in CONDITIONS])
    args.transports = args.transports or list(TRANSPORTS)
    for t in args.transports:
        if t in BROWSER_ENGINES:
            from bench.browser import ENGINES

            if (why := ENGINES[BROWSER_ENGINES[t]].missing()) is not None:
                print(f"bench.evaluate: cannot run transport {t}: {why}", file=sys.stderr)
                return 2
    if args.scale is None:
        args.scale = [2] if args.quick else [2, 3, 5, 8, 12]
    if args.scale_rounds is None:
        args.scale_rounds = 10 if args.quick else 200
    try:
        data = evaluate(args)
    except EvalError as exc:
        print(f"bench.evaluate: FAILED: {exc}", file=sys.stderr)
        return 1
    command = "python -m bench.evaluate" + (" --quick" if args.quick else "")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "evaluation.md").write_text(markdown(data, command))
    plot(data, args.output / "evaluation.png")
    print(f"wrote {args.output / 'evaluation.md'} and {args.output / 'evaluation.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
