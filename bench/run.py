"""Compare MPyC over its own TCP links with MPyC over WebRTC data channels.

    .venv/bin/python -m bench.run [--repeat R] [--quick]      (as root, from the repository root)

For m=3 parties, each workload of ``bench/workload.py`` runs once over TCP and
once over WebRTC per repetition, alternately, all inside one throw-away
loopback-only network namespace; the table shows the medians. See bench/README.md.
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
from pathlib import Path

from testbed import chromium
from testbed.netns import BIN, Namespace, Server, available

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = REPO / "bench" / "workload.py"
PARTIES = 3
WORKLOADS = ("mul", "sort", "inner")
#: Each TCP run takes roughly 1 s on a 2-core machine with these sizes.
DEFAULT_SIZES = {"mul": 2000, "sort": 32, "inner": 2000}
QUICK_SIZES = {"mul": 50, "sort": 6, "inner": 100}
OPEN_RE = re.compile(r"open (\d+(?:\.\d+)?) s after the last party joined")


class BenchError(Exception):
    """A run failed; the message says which and why."""


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return "(no output)"
    return "\n".join("    " + line for line in text[-lines:]) or "    (empty)"


def wait_all(procs: list[subprocess.Popen], timeout: float, what: str,
             logs: list[Path]) -> None:
    """Wait for every process; on timeout end them (by PID) and raise."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in procs:
                if other.poll() is None:
                    other.kill()
                    other.wait(10)
            raise BenchError(f"{what} did not finish within {timeout:g} s; "
                             f"stderr of process 0:\n{tail(logs[0])}") from None
    for i, proc in enumerate(procs):
        if proc.returncode != 0:
            raise BenchError(f"{what}: process {i} exited with status {proc.returncode}; "
                             f"its stderr ends with:\n{tail(logs[i])}")


def result_line(outputs: list[Path], what: str) -> dict:
    """The JSON line that party 0 printed (whichever process was party 0)."""
    found = []
    for path in outputs:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    pass
    if len(found) != 1:
        raise BenchError(f"{what}: expected one JSON result line from party 0, "
                         f"found {len(found)}")
    result = found[0]
    if result.get("ok") is not True:
        raise BenchError(f"{what}: WRONG RESULT (ok is {result.get('ok')!r}): "
                         f"{json.dumps(result)[:300]}")
    return result


def run_tcp(ns: Namespace, workload: str, size: int, workdir: Path,
            timeout: float) -> float:
    what = f"TCP run of {workload} (size {size})"
    procs, outs, errs = [], [], []
    for pid in range(PARTIES):
        out, err = workdir / f"tcp-{pid}.out", workdir / f"tcp-{pid}.err"
        with open(out, "w") as fo, open(err, "w") as fe:
            procs.append(ns.popen([sys.executable, str(WORKLOAD), f"-M{PARTIES}", "-I",
                                   str(pid), "--no-log", "--workload", workload,
                                   "--size", str(size)], stdout=fo, stderr=fe))
        outs.append(out)
        errs.append(err)
    wait_all(procs, timeout, what, errs)
    return result_line(outs, what)["seconds"]


def run_webrtc(ns: Namespace, server: Server, workload: str, size: int, workdir: Path,
               timeout: float) -> tuple[float, float]:
    what = f"WebRTC run of {workload} (size {size})"
    try:
        url = server.create(PARTIES, "--program-file", str(WORKLOAD),
                            "--args", "--workload", workload, "--size", str(size))
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"{what}: creating the session failed: {exc}") from None
    procs, outs, errs = [], [], []
    for i in range(PARTIES):
        out, err = workdir / f"webrtc-{i}.out", workdir / f"webrtc-{i}.err"
        with open(out, "w") as fo, open(err, "w") as fe:
            # What tests.netns.start_peer runs, with output to files instead of pipes; the
            # workload is an uploaded program, so each peer says it trusts it.
            procs.append(ns.popen([str(BIN / "mpyc-webrtc-peer"), "join", url,
                                   "--allow-loopback", "--trust-program"], stdout=fo,
                                  stderr=fe))
        outs.append(out)
        errs.append(err)
    wait_all(procs, timeout, what, errs)
    seconds = result_line(outs, what)["seconds"]
    opens = []
    for err in errs:
        match = OPEN_RE.search(err.read_text(errors="replace"))
        if match is None:
            raise BenchError(f"{what}: a party did not log when its channels opened; "
                             f"its stderr ends with:\n{tail(err)}")
        opens.append(float(match.group(1)))
    return seconds, max(opens)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="MPyC over TCP vs over WebRTC data channels, 3 parties (run as root).")
    parser.add_argument("--repeat", "-r", type=int, default=None, metavar="R",
                        help="repetitions per workload and transport (default 3; 1 with "
                             "--quick); the table shows medians")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and one repetition: a smoke test")
    parser.add_argument("--workload", "-w", action="append", choices=WORKLOADS,
                        help="run only this workload (repeatable)")
    parser.add_argument("--size", action="append", default=[], metavar="WORKLOAD=N",
                        help="override a workload's size, e.g. --size mul=500")
    parser.add_argument("--no-browser", dest="browser", action="store_false",
                        help="leave out the browser parties (Chromium + Pyodide)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="give up on a run after this long (default 180; 60 with --quick)")
    args = parser.parse_args(argv)
    args.sizes = dict(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    for item in args.size:
        name, _, value = item.partition("=")
        if name not in WORKLOADS or not value.isdigit() or int(value) < 1:
            parser.error(f"--size {item!r}: expected WORKLOAD=N with WORKLOAD one of "
                         f"{', '.join(WORKLOADS)} and N a positive integer")
        args.sizes[name] = int(value)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.timeout is None:
        args.timeout = 60.0 if args.quick else 180.0
    args.workloads = [w for w in WORKLOADS if w in (args.workload or WORKLOADS)]
    return args


def print_table(args: argparse.Namespace, tcp: dict, webrtc: dict, opens: list[float],
                browser: dict, ready: list[tuple[float, float]]) -> None:
    rows = []
    for w in args.workloads:
        rows.append((f"{w} ({args.sizes[w]})", statistics.median(tcp[w]),
                     statistics.median(webrtc[w]),
                     statistics.median(browser[w]) if browser[w] else None))
    total = ("TOTAL", sum(r[1] for r in rows), sum(r[2] for r in rows),
             sum(r[3] for r in rows) if all(r[3] is not None for r in rows) else None)
    print(f"MPyC, {PARTIES} parties, medians of {args.repeat} run(s) per cell "
          "(seconds of party 0, after start() to before shutdown())")
    header = f"{'workload (size)':<18} {'TCP s':>8} {'WebRTC s':>9} {'WebRTC/TCP':>11}"
    if args.browser:
        header += f" {'Browser s':>10} {'Browser/TCP':>12}"
    print(header)
    for name, t, r, b in rows + [total]:
        line = f"{name:<18} {t:>8.3f} {r:>9.3f} {r / t:>10.2f}x"
        if b is not None:
            line += f" {b:>10.3f} {b / t:>11.2f}x"
        print(line)
    print(f"WebRTC data channels open {statistics.median(opens):.3f} s after the last party "
          f"joined (median over {len(opens)} runs of the slowest of the {PARTIES} parties; "
          f"range {min(opens):.3f}-{max(opens):.3f} s)")
    if ready:
        cold = statistics.median(c for c, _ in ready)
        warm = statistics.median(w for _, w in ready)
        print(f"Browser page open -> ready to compute (Pyodide + MPyC loaded): cold "
              f"{cold:.2f} s, warm (reload, HTTP cache) {warm:.2f} s "
              f"(median of {len(ready)})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = available()
    if reason is not None:
        print(f"bench.run: cannot run: {reason} (run it as root).", file=sys.stderr)
        return 2
    if args.browser and (why := chromium.missing()) is not None:
        print(f"bench.run: cannot run the browser parties: {why} "
              "(or pass --no-browser).", file=sys.stderr)
        return 2
    tcp: dict[str, list[float]] = {w: [] for w in args.workloads}
    webrtc: dict[str, list[float]] = {w: [] for w in args.workloads}
    browser: dict[str, list[float]] = {w: [] for w in args.workloads}
    opens: list[float] = []
    ready: list[tuple[float, float]] = []
    try:
        with contextlib.ExitStack() as stack:
            ns = stack.enter_context(Namespace("mwb"))
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mwb-")))
            try:
                server = Server(ns, 8080)
            except RuntimeError as exc:
                raise BenchError(f"the signaling server did not start: {exc}") from None
            browsers = None
            if args.browser:
                from playwright.sync_api import sync_playwright

                from bench.browser import BrowserBench

                browsers = BrowserBench(stack.enter_context(sync_playwright()), ns, server,
                                        workdir)
                stack.callback(browsers.close)
            for rep in range(1, args.repeat + 1):
                if browsers is not None:
                    ready.append(browsers.ready_times(server.create(PARTIES, "--program",
                                                                    "sum")))
                for w in args.workloads:
                    size = args.sizes[w]
                    t = run_tcp(ns, w, size, workdir, args.timeout)
                    tcp[w].append(t)
                    r, opened = run_webrtc(ns, server, w, size, workdir, args.timeout)
                    webrtc[w].append(r)
                    opens.append(opened)
                    line = (f"[{rep}/{args.repeat}] {w} ({size}): TCP {t:.3f} s, "
                            f"WebRTC {r:.3f} s (channels open {opened:.3f} s)")
                    if browsers is not None:
                        b = run_browser(browsers, server, w, size)
                        browser[w].append(b)
                        line += f", browsers {b:.3f} s"
                    print(line, file=sys.stderr, flush=True)
    except BenchError as exc:
        print(f"bench.run: FAILED: {exc}", file=sys.stderr)
        return 1
    print_table(args, tcp, webrtc, opens, browser, ready)
    return 0


def run_browser(browsers, server: Server, workload: str, size: int) -> float:
    what = f"browser run of {workload} (size {size})"
    url = server.create(PARTIES, "--program-file", str(WORKLOAD),
                        "--args", "--workload", workload, "--size", str(size))
    try:
        result = browsers.run(url, PARTIES)
    except (AssertionError, RuntimeError) as exc:
        raise BenchError(f"{what} failed: {exc}") from None
    if result.get("ok") is not True:
        raise BenchError(f"{what}: WRONG RESULT: {json.dumps(result)[:300]}")
    return result["seconds"]


if __name__ == "__main__":
    sys.exit(main())
