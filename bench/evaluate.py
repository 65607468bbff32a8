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
and 50 ms round-trip time between parties, 1% loss, and 1% and 3% loss with 10 ms RTT.
``--variant`` adds columns of native peers with loss-recovery switches turned off
(``MPYC_WEBRTC_RECOVERY=0``, ``MPYC_WEBRTC_SCTP_RECOVERY=0``), side by side with the
default in the same run. Per cell: the median time of party 0
(after every link is up, to before shutdown), the ratio to TCP in the same run, the bytes
all parties put on the wire (their access links' counters: protocol overhead included), and
the time to connect (process start, or the last "I'm ready" for browsers, to all links up).
Per browser and condition it also times a party's page from opening the link to Python ready
(ready to compute): cold (a fresh profile) and warm (a reload).

It writes ``docs/evaluation.md`` (tables, setup effort), ``docs/evaluation.png`` and
``docs/evaluation.json`` (every measurement, for ``--merge``: a run of a few conditions,
say ``--condition loss3rtt10 --merge``, replaces those conditions' sections and keeps the
rest of the report).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
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
#: Column headers of older reports, for ``--merge`` into them.
OLD_LABELS = {"WebRTC browsers": "browser"}


@dataclass(frozen=True)
class Variant:
    """Native peers with some loss-recovery switches turned off: a column beside the
    default one, in the same run, so that the switches' effect is measured on the same
    machine load and the same simulated links."""

    name: str
    label: str
    #: Environment of every native peer in this column.
    env: dict[str, str]


#: The environment switches of the loss-recovery work (issue 15): each on unless ``=0``.
RECOVERY_SWITCHES = ("MPYC_WEBRTC_SCTP_RECOVERY", "MPYC_WEBRTC_RECOVERY")
VARIANTS = {v.name: v for v in (
    Variant("no-recovery", "no recovery",
            {"MPYC_WEBRTC_SCTP_RECOVERY": "0", "MPYC_WEBRTC_RECOVERY": "0"}),
    Variant("no-sctp-recovery", "no SCTP recovery", {"MPYC_WEBRTC_SCTP_RECOVERY": "0"}),
    Variant("no-message-recovery", "no message recovery", {"MPYC_WEBRTC_RECOVERY": "0"}),
)}
#: Transports whose peers are our native processes: the variants' env reaches them.
NATIVE = ("webrtc", "turn")


def browser_switches(variant: Variant) -> str | None:
    """A script that turns ``variant``'s switches off in a browser party, run in each page
    before its own scripts (Playwright's ``add_init_script``), or None when the variant
    means nothing in a browser: the page reads ``?recovery=`` from its address (what
    ``MPYC_WEBRTC_RECOVERY`` is to a native peer), and a browser's SCTP is its own."""
    value = variant.env.get("MPYC_WEBRTC_RECOVERY")
    if value is None:
        return None
    return ("if (location.pathname.startsWith('/join/') && !location.search) "
            f"history.replaceState(null, '', location.pathname + '?recovery={value}' "
            "+ location.hash);")


def transport_of(column: str) -> str:
    """"webrtc:no-recovery" -> "webrtc"."""
    return column.partition(":")[0]


def variant_of(column: str) -> Variant | None:
    name = column.partition(":")[2]
    return VARIANTS[name] if name else None


def label(column: str) -> str:
    variant = variant_of(column)
    return LABELS[transport_of(column)] + (f", {variant.label}" if variant else "")


def columns(transports: list[str], variants: list[str]) -> list[str]:
    """Each transport, then its variants (natives always; browsers once the hook has
    something for them)."""
    out = []
    for t in transports:
        out.append(t)
        for name in variants:
            if t in NATIVE or (t in BROWSER_ENGINES
                               and browser_switches(VARIANTS[name]) is not None):
                out.append(f"{t}:{name}")
    return out


def native_env(column: str) -> dict[str, str]:
    """Native peers' environment for a column: the default column runs with every
    recovery switch at its default (on) whatever the caller's shell says, so that the
    column means what its header says."""
    env = {k: v for k, v in os.environ.items() if k not in RECOVERY_SWITCHES}
    variant = variant_of(column)
    return env | (variant.env if variant else {})


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
    # Two access links per path, each dropping 0.5% per direction: about 1% per path
    # (1 - 0.995^2 = 0.998%), with no delay.
    Condition("loss1", "1% loss", loss=0.005),
    # The same loss on 10 ms RTT paths (2.5 ms one way per access link, 4 crossings per
    # round trip): a lost packet then also waits for the round trips of its recovery.
    Condition("loss1rtt10", "1% loss, 10 ms RTT", delay_ms=2.5, loss=0.005),
    # 1.5% per access link and direction: 1 - 0.985^2 = 2.98% per path.
    Condition("loss3rtt10", "3% loss, 10 ms RTT", delay_ms=2.5, loss=0.015),
)
#: The conditions with loss (``--condition loss``): the ones the recovery work changes.
LOSS_CONDITIONS = tuple(c.name for c in CONDITIONS if c.loss)


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
    Workload("rounds", "mul", 3, {"plain": 1000, "rtt10": 150, "rtt50": 40, "loss1": 300,
                                  "loss1rtt10": 150, "loss3rtt10": 100},
             "sequential secure multiplications: one round trip each (latency)"),
    Workload("sort", "sort", 3, {"plain": 24, "rtt10": 12, "rtt50": 6, "loss1rtt10": 12,
                                 "loss3rtt10": 12},
             "mpc.sorted of N secure integers (rounds and compute)"),
    Workload("inner", "inner", 3, {"plain": 5000},
             "inner product of two length-N secure vectors (bandwidth)"),
    Workload("santa3", "santa", 3, {"plain": 3, "rtt50": 1},
             "secret-santa derangements of 3 parties, N draws"),
    Workload("santa5", "santa", 5, {"plain": 2, "rtt50": 1, "loss3rtt10": 1},
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

    def run(self, column: str, w: Workload, size: int) -> tuple[float, float, int]:
        """(seconds, time to connect, bytes sent) of one run of a column (a transport,
        or a transport with a ``Variant``)."""
        what = f"{column} run of {w.name} (size {size})"
        args = ["--workload", w.kind, "--size", str(size)]
        transport, variant = transport_of(column), variant_of(column)
        before = tx_bytes(self.net, w.parties)
        if transport in ("tcp", "wireguard"):
            result, launched = self._tcp(transport, w.parties, args, what)
        elif transport in NATIVE:
            result, launched = self._webrtc(transport == "turn", w.parties, args, what,
                                            native_env(column))
        else:
            result, launched = self.browsers[transport].run(
                self._create(w.parties, args, False), w.parties, what,
                init_script=browser_switches(variant) if variant else None)
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

    def _join(self, i: int, url: str, m: int, args: list[str],
              env: dict[str, str] | None = None) -> subprocess.Popen:
        """Party ``i``'s native peer, with the consent the workload's session needs."""
        return self.net.popen(self.net.parties[i].ns, [
            str(BIN / "mpyc-webrtc-peer"), "join", url, *consent(m, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env=env if env is not None else native_env("webrtc"))

    def ready(self, transport: str) -> tuple[float, float]:
        """A browser party's page open to Python ready, (cold, warm), in a session of 3."""
        url = self._create(3, ["--workload", "mul", "--size", "1"], False)
        try:
            return self.browsers[transport].ready_times(url)
        except AssertionError as exc:
            raise EvalError(f"{transport} page open to ready: {str(exc)[:1500]}") from None

    def _webrtc(self, relay_only: bool, m: int, args: list[str], what: str,
                env: dict[str, str]):
        url = self._create(m, args, relay_only)
        launched = time.time()
        procs = [self._join(i, url, m, args, env) for i in range(m)]
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

    def run(self, url: str, m: int, what: str, complete: bool = True,
            init_script: str | None = None) -> tuple[dict | None, float]:
        """Tabs for ``m`` parties (with ``complete``, all of them); party 0's result line
        if one of the tabs is party 0. ``init_script`` runs in every page before its own
        scripts (``browser_switches``)."""
        from testbed.browser import BrowserParty

        contexts = [self.engine.new_context(self.browsers[i], self.net.server_url)
                    for i in range(m)]
        if init_script is not None:
            for context in contexts:
                context.add_init_script(init_script)
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
                             retried: list[str], condition: str = "") -> tuple[float, float, int]:
    """A failed run is tried once more, and the failure goes into the report: one flaky
    connection should not cost a 40-minute run, nor go unmentioned."""
    try:
        return runner.run(transport, w, size)
    except EvalError as exc:
        reason = str(exc).strip().splitlines()
        what = (f"{condition + ': ' if condition else ''}{transport} {w.name}({size}): "
                f"{reason[0] if reason else exc}")
        last = next((line for line in reversed(reason) if "error:" in line), "")
        retried.append(what + (f" ... {last.strip()}" if last else ""))
        print(f"FAILED, trying once more: {what}\n{str(exc)[-3000:]}", file=sys.stderr,
              flush=True)
        return runner.run(transport, w, size)


def evaluate(args: argparse.Namespace) -> dict:
    workloads = QUICK if args.quick else WORKLOADS
    conditions = [c for c in CONDITIONS if c.name in args.conditions]
    transports = [t for t in TRANSPORTS if t in args.transports]
    cols = columns(transports, args.variants)
    repeat = 1 if args.quick else args.repeat
    m = max(w.parties for w in workloads)
    cells: dict[tuple[str, str, str], Cell] = {}
    setup: dict[str, float] = {}
    #: (condition, browser transport) -> (cold seconds, warm seconds), one per repetition
    ready: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    retried: list[str] = []
    #: (condition, workload) -> the size it ran with (a report outlives WORKLOADS' sizes)
    sizes: dict[tuple[str, str], int] = {}
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
                    sizes[(condition.name, w.name)] = size
                    for column in cols:
                        transport = transport_of(column)
                        if transport in BROWSER_ENGINES and w.parties > 3:
                            continue  # five browsers on two cores measure the cores
                        # Only the WireGuard runs see the tunnel: WebRTC gathers every
                        # interface and would otherwise pick direct pairs through it.
                        hide = mesh.hidden() if mesh is not None and \
                            transport != "wireguard" else contextlib.nullcontext()
                        with hide:
                            seconds, connect, sent = run_once_more_on_failure(
                                runner, column, w, size, retried, condition.name)
                        cell = cells.setdefault((condition.name, w.name, column), Cell())
                        cell.seconds.append(seconds)
                        cell.connect.append(connect)
                        cell.bytes.append(sent)
                        print(f"[{condition.name} {rep + 1}/{repeat}] {w.name}({size}) "
                              f"{column}: {seconds:.3f} s, connect {connect:.2f} s, "
                              f"{sent / 1e6:.2f} MB", file=sys.stderr, flush=True)
    scale: dict[str, tuple[list[float], list[float]]] = {}
    if args.scale:
        parties = sorted(set(args.scale))
        mixed = "browser" in transports and not args.quick
        with contextlib.ExitStack() as stack:
            net = stack.enter_context(Internet(
                nats=["public"] * max(parties), name="mwsc", turn_secret="evaluate",
                server=True))
            browsers = {}
            if mixed:
                from playwright.sync_api import sync_playwright

                playwright = stack.enter_context(sync_playwright())
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                browsers["browser"] = BrowserParties(playwright, net, 2, workdir)
                stack.callback(browsers["browser"].close)
            runner = Runner(net, args.timeout, None, browsers)
            runs = [(f"{m} native", m, 0) for m in parties]
            if mixed:
                runs.append(("5 mixed (2 browsers)", 5, 2))
            for _ in range(repeat):
                for run, m, tabs in runs:
                    mesh, per_round = runner.scale(m, args.scale_rounds, tabs)
                    meshes, rounds = scale.setdefault(run, ([], []))
                    meshes.append(mesh)
                    rounds.append(per_round)
                    print(f"[scale] {run}: mesh {mesh:.2f} s, {per_round * 1e3:.2f} ms "
                          "per round", file=sys.stderr, flush=True)
    return {"cells": cells, "conditions": conditions, "workloads": workloads,
            "transports": cols, "repeat": repeat, "setup": setup, "scale": scale,
            "ready": ready, "retried": retried, "sizes": sizes,
            "repeats": {c.name: repeat for c in conditions},
            "scale_rounds": args.scale_rounds,
            "skipped_variants": [f"{t}:{v}" for t in transports if t in BROWSER_ENGINES
                                 for v in args.variants if f"{t}:{v}" not in cols]}


def median(values: list[float]) -> float:
    return statistics.median(values)


def markdown(data: dict, command: str) -> str:
    cells, transports = data["cells"], data["transports"]
    repeats = data.get("repeats") or {c.name: data["repeat"] for c in data["conditions"]}
    same = len(set(repeats.values())) <= 1 and len(set(data.get("commands", {}).values())) <= 1
    how = (f"every cell is the median of {next(iter(repeats.values()), data['repeat'])} "
           "run(s) in this one run" if same else
           "every cell is the median of the runs its section names")
    lines = [
        "# Evaluation: what each way of connecting MPyC parties costs",
        "",
        f"Regenerated by `{command}` (as root) on the 2-core development machine; {how}. "
        "Parties sit in "
        "their own network namespaces on the simulated internet of `e2e/netsim` "
        "(`docs/netsim.md`), with public addresses so that plain TCP works too. Delay and "
        "loss come from its userspace wire (this kernel has no tc netem), applied equally "
        "to every transport. The WireGuard interfaces are down except during the WireGuard "
        "runs (WebRTC would otherwise find direct pairs through the tunnel).",
        "",
        "Per cell: **time** of party 0 from all links up to the result (median), its "
        "**ratio** to TCP in the same run, the **bytes** all parties sent on their access "
        "links (protocol overhead included), and the **time to connect** from process "
        "start (browsers: from the last \"I'm ready\") to all links up. The **rounds** row "
        "(one round trip per multiplication) is the one loss hurts most; the totals are "
        "given with and without it.",
        "",
    ]
    if any(variant_of(t) for t in transports):
        lines += ["Columns \"no recovery\" and the like: the same native peers with loss "
                  "recovery switched off (" + "; ".join(
                      f"{v.label}: " + " ".join(f"`{k}={x}`" for k, x in v.env.items())
                      for v in VARIANTS.values()
                      if any(variant_of(t) == v for t in transports))
                  + "), in the same run; the column without a variant has every switch on.",
                  ""]
    if data.get("skipped_variants"):
        lines += ["Browsers ran with their defaults only: they have no loss-recovery switch "
                  "yet (`browser_switches` in `bench/evaluate.py`).", ""]
    for condition in data["conditions"]:
        lines += [f"## {condition.title}", ""]
        if not same:
            lines += [f"Median of {repeats.get(condition.name, data['repeat'])} run(s)"
                      + (f", by `{data['commands'][condition.name]}`"
                         if condition.name in data.get("commands", {}) else "") + ".", ""]
        present = [t for t in transports if any(
            (condition.name, w.name, t) in cells for w in data["workloads"])]
        lines.append("| workload (size) | " + " | ".join(label(t) for t in present) + " |")
        lines.append("|---|" + "---|" * len(present))
        for w in data["workloads"]:
            if not any((condition.name, w.name, t) in cells for t in present):
                continue
            size = data.get("sizes", {}).get((condition.name, w.name), w.size(condition.name))
            row = [f"{w.name} ({size}, m={w.parties})"]
            tcp = cells.get((condition.name, w.name, "tcp"))
            for t in present:
                cell = cells.get((condition.name, w.name, t))
                if cell is None:
                    row.append("—")
                    continue
                s = median(cell.seconds)
                ratio = f" ({s / median(tcp.seconds):.2f}x)" if tcp and t != "tcp" else ""
                row.append(f"{s:.3f} s{ratio}<br>{median(cell.bytes) / 1e6:.2f} MB, "
                           f"connect {median(cell.connect):.2f} s")
            lines.append("| " + " | ".join(row) + " |")
        for title, skip in (("total (m=3 workloads)", ()),
                            ("total without rounds (m=3)", ("rounds",))):
            names = [w.name for w in data["workloads"] if w.parties == 3 and w.name not in skip
                     and any((condition.name, w.name, t) in cells for t in present)]
            if skip and not names:
                continue  # only rounds ran here (--quick): nothing to total without it
            total_row = [f"**{title}**"]
            tcp_total = sum(median(cells[(condition.name, n, "tcp")].seconds)
                            for n in names if (condition.name, n, "tcp") in cells)
            for t in present:
                s = sum(median(cells[(condition.name, n, t)].seconds)
                        for n in names if (condition.name, n, t) in cells)
                total_row.append(f"**{s:.3f} s**" + (f" **({s / tcp_total:.2f}x)**"
                                                     if t != "tcp" and tcp_total else ""))
            lines.append("| " + " | ".join(total_row) + " |")
        lines.append("")
    if data["scale"]:
        lines += ["## Scale: sessions of m parties", "",
                  f"Plain links; one session per row and repetition, running "
                  f"{data['scale_rounds']} sequential multiplications. **Mesh** is the time "
                  "from the last party joining to every data channel open (the slowest "
                  "party's view), **per round** party 0's time per multiplication.", "",
                  "| parties | links m(m-1)/2 | mesh ready | per round |", "|---|---|---|---|"]
        for run, (meshes, rounds) in data["scale"].items():
            m = int(run.split()[0])
            lines.append(f"| {run} | {m * (m - 1) // 2} | {median(meshes):.2f} s | "
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
    """Time over TCP time per workload, one panel per condition, on a log scale: under
    loss some cells are tens of times TCP's, which on a linear axis would flatten the
    differences of 10-50% that matter on the other conditions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cells, transports = data["cells"], [t for t in data["transports"] if t != "tcp"]
    # One colour per column in every panel, and a legend of all of them, even of columns
    # that only some conditions have (a merged report).
    colours = {t: f"C{k % 10}" for k, t in enumerate(transports)}
    conditions, workloads = data["conditions"], data["workloads"]
    ncols = min(4, len(conditions))
    nrows = math.ceil(len(conditions) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.2 * nrows),
                             sharey=True, squeeze=False)
    width = 0.8 / max(1, len(transports))
    ratios = [1.0]
    for ax, condition in zip(axes.flat, conditions, strict=False):
        for k, t in enumerate(transports):
            xs, ys = [], []
            for j, w in enumerate(workloads):
                cell, tcp = (cells.get((condition.name, w.name, t)),
                             cells.get((condition.name, w.name, "tcp")))
                if cell and tcp:
                    xs.append(j + (k - (len(transports) - 1) / 2) * width)
                    ys.append(median(cell.seconds) / median(tcp.seconds))
            ratios += ys
            ax.bar(xs, ys, width, color=colours[t])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_title(condition.title)
        ax.set_xticks(range(len(workloads)), [w.name for w in workloads], rotation=30)
    for ax in axes.flat[len(conditions):]:
        ax.set_visible(False)
    # Bars grow from the bottom of the axis: put it below every ratio (and below 1).
    axes[0][0].set_yscale("log")
    axes[0][0].set_ylim(min(ratios) / 1.5, max(ratios) * 1.5)
    for row in axes:
        row[0].set_ylabel("time / TCP time (same run), log scale")
    if transports:
        axes[0][0].legend([Patch(color=colours[t]) for t in transports],
                          [label(t) for t in transports], fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the record of a run, and merging runs ---------------------------------------------------

def to_json(data: dict) -> dict:
    """Everything the report and the plot are made from, as JSON (``evaluation.json``)."""
    return {
        "conditions": [vars(c) for c in data["conditions"]],
        "workloads": [w.name for w in data["workloads"]],
        "transports": data["transports"],
        "repeat": data["repeat"],
        "repeats": data.get("repeats") or {c.name: data["repeat"] for c in data["conditions"]},
        "commands": data.get("commands", {}),
        "cells": [{"condition": c, "workload": w, "column": t, "seconds": cell.seconds,
                   "connect": cell.connect, "bytes": cell.bytes}
                  for (c, w, t), cell in data["cells"].items()],
        "sizes": [[c, w, n] for (c, w), n in data.get("sizes", {}).items()],
        "setup": data["setup"],
        "scale": data["scale"],
        "scale_rounds": data["scale_rounds"],
        "ready": [[c, t, colds, warms] for (c, t), (colds, warms) in data["ready"].items()],
        "retried": data["retried"],
        "skipped_variants": data.get("skipped_variants", []),
    }


def _condition(record: dict) -> Condition:
    known = {c.name: c for c in CONDITIONS}
    return known.get(record["name"]) or Condition(**record)


def _workloads(names: list[str]) -> list[Workload]:
    """By name (``QUICK``'s tiny rounds share the name of the full one)."""
    known = {w.name: w for w in QUICK + WORKLOADS}
    return [known[n] for n in dict.fromkeys(names) if n in known]


def from_json(record: dict) -> dict:
    return {
        "conditions": [_condition(c) for c in record["conditions"]],
        "workloads": _workloads(record["workloads"]),
        "transports": record["transports"],
        "repeat": record["repeat"],
        "repeats": record["repeats"],
        "commands": record.get("commands", {}),
        "cells": {(c["condition"], c["workload"], c["column"]):
                  Cell(c["seconds"], c["connect"], c["bytes"]) for c in record["cells"]},
        "sizes": {(c, w): n for c, w, n in record["sizes"]},
        "setup": record["setup"],
        "scale": {k: (v[0], v[1]) for k, v in record["scale"].items()},
        "scale_rounds": record["scale_rounds"],
        "ready": {(c, t): (colds, warms) for c, t, colds, warms in record["ready"]},
        "retried": record["retried"],
        "skipped_variants": record.get("skipped_variants", []),
    }


def from_markdown(text: str) -> dict:
    """An earlier report read back, for ``--merge`` into a report that has no
    ``evaluation.json`` beside it (made before there was one). Only what the tables
    print comes back: each cell's medians, rounded as printed, as a single run."""
    titles = {c.title: c for c in CONDITIONS}
    by_label = {LABELS[t]: t for t in TRANSPORTS} | OLD_LABELS
    by_label |= {label(f"{t}:{v}"): f"{t}:{v}" for t in TRANSPORTS for v in VARIANTS}
    ready_titles = {LABELS[t].removeprefix("WebRTC "): t for t in BROWSER_ENGINES} | {
        "browsers": "browser"}
    m = re.search(r"median of (\d+) run", text)
    repeat = int(m[1]) if m else 1
    command = re.search(r"Regenerated by `([^`]*)`", text)
    m = re.search(r"running (\d+) sequential multiplications", text)
    data: dict = {"conditions": [], "workloads": [], "transports": [], "repeat": repeat,
                  "repeats": {}, "commands": {}, "cells": {}, "sizes": {}, "setup": {},
                  "scale": {}, "scale_rounds": int(m[1]) if m else 200, "ready": {},
                  "retried": [], "skipped_variants": []}
    if command:
        data["command"] = command[1]
    seen: set[str] = set()
    section = ""
    header: list[str] = []
    for line in text.splitlines():
        if line.startswith("## "):
            section, header = line[3:].strip(), []
            if section in titles:
                data["conditions"].append(titles[section])
                data["repeats"][titles[section].name] = repeat
            continue
        if m := re.fullmatch(r"Median of (\d+) run\(s\)(?:, by `(.*)`)?\.", line):
            name = titles[section].name
            data["repeats"][name] = int(m[1])
            if m[2]:
                data["commands"][name] = m[2]
            continue
        cols = [c.strip() for c in line.strip().strip("|").split("|")] if \
            line.startswith("|") else []
        if section in titles and cols:
            name = titles[section].name
            if cols[0] == "workload (size)":
                header = [by_label[c] for c in cols[1:]]
                for t in header:
                    if t not in data["transports"]:
                        data["transports"].append(t)
                continue
            if not (m := re.fullmatch(r"(\w+) \((\d+), m=\d+\)", cols[0])):
                continue  # the separator and the total rows (totals are recomputed)
            workload = m[1]
            if workload not in seen:
                seen.add(workload)
                data["workloads"].append(workload)
            data["sizes"][(name, workload)] = int(m[2])
            for t, cell in zip(header, cols[1:], strict=True):
                if c := re.match(r"([\d.]+) s.*?<br>([\d.]+) MB, connect ([\d.]+) s", cell):
                    data["cells"][(name, workload, t)] = Cell(
                        [float(c[1])], [float(c[3])], [round(float(c[2]) * 1e6)])
        elif section.startswith("Scale") and cols and cols[0] not in ("parties", "---"):
            if (m := re.fullmatch(r"([\d.]+) s", cols[2])) and \
                    (r := re.fullmatch(r"([\d.]+) ms", cols[3])):
                data["scale"][cols[0]] = ([float(m[1])], [float(r[1]) / 1e3])
        elif section.startswith("Runs that failed") and line.startswith("- "):
            data["retried"].append(line[2:])
        elif section.startswith("Setup effort"):
            if line.startswith("Measured in this run: "):
                for part in line.removeprefix("Measured in this run: ").rstrip(".").split(", "):
                    key, _, value = part.rpartition(" ")
                    if value == "s":
                        key, _, value = key.rpartition(" ")
                    data["setup"][key] = float(value)
            elif cols and cols[0] in ready_titles:
                by_title = {c.title: c.name for c in CONDITIONS}
                spreads = [float(re.match(r"([\d.]+) s", c)[1]) for c in cols[2:4]]
                if cols[1] in by_title:
                    data["ready"][(by_title[cols[1]], ready_titles[cols[0]])] = (
                        [spreads[0]], [spreads[1]])
    data["workloads"] = _workloads(data["workloads"])
    return data


def load_report(directory: Path) -> dict | None:
    """The report in ``directory``: its JSON record, else its markdown, else None."""
    record, text = directory / "evaluation.json", directory / "evaluation.md"
    if record.exists():
        return from_json(json.loads(record.read_text()))
    if text.exists():
        return from_markdown(text.read_text())
    return None


def merge(old: dict, new: dict, command: str) -> dict:
    """``old`` with the conditions that ``new`` ran replaced by new's (scale runs and page
    timings too, if new has them); conditions in the order of ``CONDITIONS``."""
    ran = {c.name for c in new["conditions"]}
    order = [c.name for c in CONDITIONS]
    conditions = {c.name: c for c in old["conditions"] if c.name not in ran}
    conditions |= {c.name: c for c in new["conditions"]}
    cells = {k: v for k, v in old["cells"].items() if k[0] not in ran} | new["cells"]
    columns_ = [t for t in old["transports"] + new["transports"] if any(
        k[2] == t for k in cells)]
    names = {w.name for w in [*old["workloads"], *new["workloads"]]}
    old_repeats = old.get("repeats") or {c.name: old["repeat"] for c in old["conditions"]}
    old_commands = old.get("commands") or {
        c.name: old["command"] for c in old["conditions"] if "command" in old}
    return {
        "conditions": sorted(conditions.values(), key=lambda c: (
            order.index(c.name) if c.name in order else len(order))),
        "workloads": _workloads([w.name for w in WORKLOADS if w.name in names]
                                + sorted(names - {w.name for w in WORKLOADS})),
        "transports": list(dict.fromkeys(columns_)),
        "repeat": new["repeat"],
        "repeats": {k: v for k, v in old_repeats.items() if k not in ran} | new["repeats"],
        "commands": {k: v for k, v in old_commands.items() if k not in ran} | {
            c: command for c in ran},
        "cells": cells,
        "sizes": {k: v for k, v in old.get("sizes", {}).items() if k[0] not in ran}
        | new.get("sizes", {}),
        "setup": old["setup"] | new["setup"],
        "scale": new["scale"] or old["scale"],
        "scale_rounds": new["scale_rounds"] if new["scale"] else old["scale_rounds"],
        "ready": {k: v for k, v in old["ready"].items() if k[0] not in ran} | new["ready"],
        "retried": old["retried"] + new["retried"],
        "skipped_variants": sorted(set(old.get("skipped_variants", []))
                                   | set(new.get("skipped_variants", []))),
    }


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, for the report's header."""
    parts = ["python -m bench.evaluate"]
    if args.quick:
        parts.append("--quick")
    if args.condition_given:
        parts += [f"--condition {c}" for c in args.condition_given]
    if args.transport_given:
        parts += [f"--transport {t}" for t in args.transport_given]
    parts += [f"--variant {v}" for v in args.variants]
    if args.repeat != 3 and not args.quick:
        parts.append(f"-r {args.repeat}")
    if args.merge:
        parts.append("--merge")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one tiny workload per transport on plain links")
    parser.add_argument("--repeat", "-r", type=int, default=3, metavar="R")
    parser.add_argument("--condition", dest="conditions", action="append",
                        choices=[c.name for c in CONDITIONS] + ["loss"],
                        help="run only these conditions (repeatable); loss: every condition "
                        f"with loss ({', '.join(LOSS_CONDITIONS)})")
    parser.add_argument("--transport", dest="transports", action="append", choices=TRANSPORTS)
    parser.add_argument("--variant", dest="variants", action="append", default=[],
                        choices=list(VARIANTS),
                        help="also native peers with these loss-recovery switches off, each "
                        "a column beside the default (repeatable): " + "; ".join(
                            f"{v.name}: " + " ".join(f"{k}={x}" for k, x in v.env.items())
                            for v in VARIANTS.values()))
    parser.add_argument("--merge", action="store_true",
                        help="keep the report in --output and replace only the conditions "
                        "run now (and the scale runs and page timings, if run)")
    parser.add_argument("--output", type=Path, default=REPO / "docs",
                        help="where evaluation.md, evaluation.png and evaluation.json go")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS")
    parser.add_argument("--scale", type=lambda text: [] if text == "none" else
                        [int(m) for m in text.split(",")], metavar="M,M,...",
                        help="party counts of the scale runs (default 2,3,5,8,12; quick: 2; "
                        "none: no scale runs)")
    parser.add_argument("--scale-rounds", type=int, default=None, metavar="N",
                        help="multiplications per scale run (default 200; quick: 10)")
    args = parser.parse_args(argv)
    args.condition_given = list(args.conditions or [])
    args.transport_given = list(args.transports or [])
    args.conditions = args.conditions or (["plain"] if args.quick else
                                          [c.name for c in CONDITIONS])
    if "loss" in args.conditions:
        args.conditions = [c for c in args.conditions if c != "loss"] + list(LOSS_CONDITIONS)
    args.transports = args.transports or list(TRANSPORTS)
    args.variants = list(dict.fromkeys(args.variants))
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
    command = command_line(args)
    if args.merge:
        old = load_report(args.output)
        if old is None:
            print(f"bench.evaluate: nothing to merge into in {args.output}: writing a new "
                  "report", file=sys.stderr)
        else:
            data = merge(old, data, command)
    else:
        data["commands"] = {c.name: command for c in data["conditions"]}
    write_report(data, command, args.output)
    print(f"wrote {args.output / 'evaluation.md'}, evaluation.png and evaluation.json")
    return 0


#: What follows this line in a report was written by people (what the numbers mean, which
#: targets they meet): a new report keeps it, at its end.
ANALYSIS_MARK = "<!-- analysis: written by hand, kept when the report is regenerated -->"


def write_report(data: dict, command: str, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    report = directory / "evaluation.md"
    kept = ""
    if report.exists():
        old = report.read_text()
        if ANALYSIS_MARK in old:
            kept = "\n" + old[old.index(ANALYSIS_MARK):]
    report.write_text(markdown(data, command) + kept)
    (directory / "evaluation.json").write_text(json.dumps(to_json(data), indent=1) + "\n")
    plot(data, directory / "evaluation.png")


if __name__ == "__main__":
    sys.exit(main())
