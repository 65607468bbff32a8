"""Browser parties, path against path: this tree's (Python blocking in ``Atomics.wait`` on a
shared-memory inbox the page fills, no JSPI) and an older revision's (``--before REV``: data
channels transferred to the worker, ``mpc.run`` blocking through JSPI), side by side.

    .venv/bin/python -m bench.browser_paths --before REV [--rounds 300] [--repeat 3]
        [--browser chromium] [--browser firefox]

Per browser and tree, in one network namespace on loopback, with the server of that tree
(``--before``: its ``signaling``, ``mpyc_webrtc``, ``py_worker`` and ``web`` from
``git archive``, the same ``node_modules``): a page's time from navigation to Python ready,
cold (a fresh profile) and warm (a reload), and three browser parties computing
``bench/workload.py --workload mul --size ROUNDS`` (ROUNDS sequential secure
multiplications: one round trip each, latency bound) and ``inner`` (bulk), once with every
party a browser and once with one browser (party 0) and native peers (one person's browser
among others: on two shared cores, three browsers measure the cores too). The runs of the
two trees alternate, pair by pair, and the report gives medians and this tree's time over
the older one's, in each browser asked for.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import sync_playwright

from bench.browser import ENGINES, ready_times
from testbed.browser import BrowserParty
from testbed.netns import BIN, Namespace, Server, start_peer

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = REPO / "bench" / "workload.py"


class TreeServer(Server):
    """``python -m signaling.cli`` of another checkout, in the namespace."""

    def __init__(self, ns: Namespace, port: int, root: Path):
        env = dict(os.environ, PYTHONPATH=str(root))
        self.ns = ns
        self.url = f"http://127.0.0.1:{port}"
        # This tree's server holds the namespace's STUN port, where the other has one too.
        own_stun = "--stun-port" in (root / "signaling" / "cli.py").read_text()
        self.proc = ns.popen([sys.executable, "-m", "signaling.cli", "--port", str(port),
                              *(["--stun-port", "0"] if own_stun else [])],
                             cwd=root, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        if not first.startswith("mpyc-webrtc server on"):
            raise RuntimeError(f"the older server did not start: {first!r}")
        import collections
        import threading

        self.log = collections.deque(maxlen=2000)
        for pipe in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self.log.extend, args=(pipe,), daemon=True).start()


def checkout(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", rev, "signaling", "mpyc_webrtc", "py_worker",
                              "web"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "node_modules").symlink_to(REPO / "node_modules")
    return into


@dataclass
class Tree:
    name: str
    server: Server
    ready_cold: list[float] = field(default_factory=list)
    ready_warm: list[float] = field(default_factory=list)
    seconds: dict[str, list[float]] = field(default_factory=dict)


class Browsers:
    """One browser process per engine; a fresh context (profile) per party."""

    def __init__(self, playwright, ns: Namespace, workdir: Path, engine: str):
        self.engine = engine
        module = ENGINES[engine]
        self.browser = module.launch(playwright, ns, workdir)
        self.context = lambda origin: module.new_context(self.browser, origin)

    def ready_times(self, server: Server, url: str) -> tuple[float, float]:
        return ready_times(self.context(server.url), url)

    def compute(self, server: Server, url: str, parties: int, natives: int = 0) -> float:
        """Seconds party 0 (a browser) took; the last ``natives`` parties are native peers."""
        contexts = [self.context(server.url) for _ in range(parties - natives)]
        peers = []
        try:
            tabs = [BrowserParty(c.new_page(), url) for c in contexts]
            for tab in tabs:
                tab.confirm()
            peers = [start_peer(server.ns, url, "--trust-program") for _ in range(natives)]
            outputs = [tab.wait_done() for tab in tabs]
            for peer in peers:
                _, err = peer.communicate(timeout=300)
                if peer.returncode != 0:
                    raise RuntimeError(f"a native peer failed: {err[-2000:]}")
        finally:
            for context in contexts:
                context.close()
            for peer in peers:
                if peer.poll() is None:
                    peer.kill()  # a peer this benchmark started
        line = next(line for line in outputs[0].splitlines() if line.startswith("{"))
        result = json.loads(line)
        if not result.get("ok"):
            raise RuntimeError(f"wrong result: {result}")
        return float(result["seconds"])

    def close(self) -> None:
        self.browser.close()


def create(server: Server, parties: int, workload: str, size: int) -> str:
    done = server.ns.run([str(BIN / "mpyc-webrtc-peer"), "create", server.url, "--parties",
                          str(parties), "--program-file", str(WORKLOAD), "--no-qr", "--args",
                          "--workload", workload, "--size", str(size)])
    if done.returncode != 0:
        raise RuntimeError(f"create failed: {done.stderr}")
    return done.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def trees(ns: Namespace, before: str | None, tmp: Path) -> Iterator[list[Tree]]:
    made = [Tree("this tree", Server(ns, 8080))]
    if before:
        made.insert(0, Tree(f"at {before}", TreeServer(ns, 8081, checkout(before, tmp))))
    try:
        yield made
    finally:
        for tree in made:
            tree.server.proc.terminate()  # the servers this benchmark started
            tree.server.proc.wait(10)


def measure(engine: str, before: str | None, rounds: int, inner: int, repeat: int,
            parties: int) -> list[Tree]:
    workloads = {"mul": rounds, "inner": inner}
    with Namespace() as ns, tempfile.TemporaryDirectory() as tmp, \
            sync_playwright() as playwright, \
            trees(ns, before, Path(tmp)) as made:
        browsers = Browsers(playwright, ns, Path(tmp), engine)
        try:
            for _ in range(repeat):
                for tree in made:  # alternating, pair by pair
                    url = create(tree.server, parties, "mul", 1)
                    cold, warm = browsers.ready_times(tree.server, url)
                    tree.ready_cold.append(cold)
                    tree.ready_warm.append(warm)
                    for workload, size in workloads.items():
                        for natives in (0, parties - 1):
                            url = create(tree.server, parties, workload, size)
                            what = (f"{workload} {size}, {parties - natives} browser"
                                    f"{'s' if parties - natives > 1 else ''}")
                            tree.seconds.setdefault(what, []).append(
                                browsers.compute(tree.server, url, parties, natives))
        finally:
            browsers.close()
    return made


def report(engine: str, made: list[Tree]) -> str:
    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}" if values else "-"

    rows = [("page open to ready, cold s", [t.ready_cold for t in made]),
            ("page open to ready, warm s", [t.ready_warm for t in made])]
    for key in made[-1].seconds:
        rows.append((f"{key} s", [t.seconds.get(key, []) for t in made]))
    head = f"{engine}: " + " | ".join(t.name for t in made)
    lines = [head, f"{'':38}" + "".join(f"{t.name:>18}" for t in made)
             + ("           ratio" if len(made) == 2 else "")]
    for label, values in rows:
        line = f"{label:38}" + "".join(f"{med(v):>18}" for v in values)
        if len(made) == 2 and all(values):
            line += f"{statistics.median(values[1]) / statistics.median(values[0]):>16.2f}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.browser_paths",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="REV",
                        help="also measure the browser path as it was at this git revision")
    parser.add_argument("--browser", dest="browsers", action="append",
                        choices=("chromium", "firefox"))
    parser.add_argument("--rounds", type=int, default=300, help="size of the mul workload")
    parser.add_argument("--inner", type=int, default=2000, help="size of the inner workload")
    parser.add_argument("--repeat", "-r", type=int, default=3)
    parser.add_argument("--parties", type=int, default=3)
    args = parser.parse_args(argv)
    for engine in args.browsers or ["chromium"]:
        made = measure(engine, args.before, args.rounds, args.inner, args.repeat,
                       args.parties)
        print(report(engine, made), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
