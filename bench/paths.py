"""The bench workloads over a direct path and over the TURN relay, side by side.

    .venv/bin/python -m bench.paths [--repeat R] [--quick] [--delay-ms D]      (as root)

Three native parties behind port-restricted cone NATs on the simulated internet
(``e2e.netsim``): they connect directly (srflx) in an ordinary session, and through
coturn in a relay-only session. Each workload of ``bench/workload.py`` runs once each
way per repetition, alternately; the table shows the medians and relayed/direct.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from e2e.netsim import Internet

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKLOAD = REPO / "bench" / "workload.py"
WORKLOADS = ("mul", "sort", "inner")
DEFAULT_SIZES = {"mul": 2000, "sort": 32, "inner": 2000}
QUICK_SIZES = {"mul": 50, "sort": 6, "inner": 100}
PARTIES = 3


def run_session(net: Internet, workload: str, size: int, relay_only: bool,
                timeout: float) -> tuple[float, float, set[str]]:
    """(party 0's seconds, mesh set-up seconds, paths seen) of one run."""
    create = [str(BIN / "mpyc-webrtc-peer"), "create", net.server_url, "--parties",
              str(PARTIES), "--no-qr", "--program-file", str(WORKLOAD),
              *(["--relay-only"] if relay_only else []),
              "--args", "--no-log", "--workload", workload, "--size", str(size)]
    done = subprocess.run(net.exec_args(net.parties[0].ns, create), capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"creating a session failed: {done.stderr}")
    url = done.stdout.strip().splitlines()[-1]
    procs = [net.popen(net.parties[i].ns, [str(BIN / "mpyc-webrtc-peer"), "join", url,
                                           "--trust-program"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for i in range(PARTIES)]
    outputs = [proc.communicate(timeout=timeout) for proc in procs]
    if any(proc.returncode for proc in procs):
        raise SystemExit("a party failed:\n" + "\n".join(err[-2000:] for _, err in outputs))
    result = next(json.loads(line) for out, _ in outputs for line in out.splitlines()
                  if line.startswith("{"))
    if not result.get("ok"):
        raise SystemExit(f"wrong result: {result}")
    mesh = max(float(line.split(" are open ")[1].split(" s ")[0])
               for _, err in outputs for line in err.splitlines() if " are open " in line)
    paths = {m[1] for _, err in outputs
             for m in re.finditer(r"link to party \d+: (\w+) \(candidates", err)}
    return result["seconds"], mesh, paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paths",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", "-r", type=int, default=3, metavar="R")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="one-way delay on every access link (userspace wire)")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    repeat = 1 if args.quick else args.repeat
    times: dict[tuple[str, bool], list[float]] = {}
    meshes: dict[bool, list[float]] = {False: [], True: []}
    with Internet(nats=["cone"] * PARTIES, turn_secret="bench-paths", name="mwbp",
                  server=True, delay_ms=args.delay_ms) as net:
        for _ in range(repeat):
            for workload in WORKLOADS:
                for relay_only in (False, True):
                    seconds, mesh, paths = run_session(net, workload, sizes[workload],
                                                       relay_only, args.timeout)
                    want = "relayed" if relay_only else "direct"
                    if paths != {want}:
                        raise SystemExit(f"expected only {want} links, saw {paths}")
                    times.setdefault((workload, relay_only), []).append(seconds)
                    meshes[relay_only].append(mesh)
                    time.sleep(0.2)
    print(f"MPyC, {PARTIES} native parties behind cone NATs, medians of {repeat} run(s); "
          f"one-way delay per access link {args.delay_ms:g} ms")
    print(f"{'workload (size)':<20}{'direct s':>10}{'relayed s':>11}{'relayed/direct':>16}")
    total = {False: 0.0, True: 0.0}
    for workload in WORKLOADS:
        direct = statistics.median(times[workload, False])
        relayed = statistics.median(times[workload, True])
        total[False] += direct
        total[True] += relayed
        print(f"{f'{workload} ({sizes[workload]})':<20}{direct:>10.3f}{relayed:>11.3f}"
              f"{relayed / direct:>15.2f}x")
    print(f"{'TOTAL':<20}{total[False]:>10.3f}{total[True]:>11.3f}"
          f"{total[True] / total[False]:>15.2f}x")
    print(f"mesh ready after the last join (median): direct "
          f"{statistics.median(meshes[False]):.3f} s, relayed "
          f"{statistics.median(meshes[True]):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
