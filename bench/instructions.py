"""CPU work per MPyC round, counted in instructions: TCP vs WebRTC, one party.

    .venv/bin/python -m bench.instructions [-w mul] [--sizes 300 600] [--transport webrtc]
                                          (as root; needs valgrind)

Wall-clock times on a shared 2-core machine move by 10-20% from run to run; the number
of instructions a party executes does not (within ~1%), so this is the measure to
compare changes to the packet path with. For each size, three parties run the workload
of ``bench/workload.py`` in a throw-away loopback-only namespace (as ``bench.run``
does) with party 0 under ``valgrind --tool=callgrind``, counting only from when its
links are up (MPyC's ``start()`` for TCP; the data channels open for WebRTC) until
``shutdown()``. The difference between two sizes, divided by the difference in size,
is the work per round (for ``mul``: per secure multiplication), without start-up costs.

Party 0 runs about 50 times slower under callgrind, so its timers fire relatively more
often than in real runs (delayed SACKs, retransmission timers): the WebRTC figures are a
little too high, the same way for every variant. The environment is passed on, so
``MPYC_WEBRTC_SCTP_FASTPATH=0 python -m bench.instructions`` measures that variant.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from testbed.netns import Namespace, Server, available

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = REPO / "bench" / "workload.py"
PARTIES = 3

# Party 0's wrapper: instrumentation on once the links are up, off before closing them.
_COUNT = r'''
import os, subprocess, sys
def instrument(state):
    subprocess.run(["callgrind_control", "-i", state, str(os.getpid())],
                   capture_output=True, check=False)
'''
TCP_PARTY = _COUNT + r'''
import runpy
sys.argv = sys.argv[1:]
from mpyc.runtime import mpc
start, shutdown = mpc.start, mpc.shutdown
async def counted_start(*args, **kwargs):
    result = await start(*args, **kwargs)
    instrument("on")
    return result
async def counted_shutdown(*args, **kwargs):
    instrument("off")
    return await shutdown(*args, **kwargs)
mpc.start, mpc.shutdown = counted_start, counted_shutdown
runpy.run_path(sys.argv[0], run_name="__main__")
'''
WEBRTC_PARTY = _COUNT + r'''
if "" in sys.path:
    sys.path.remove("")  # as for the installed mpyc-webrtc-peer script
from mpyc_webrtc.native import cli, links
open_channels, close = links.AiortcFactory.open_channels, links.AiortcFactory.close
async def counted_open_channels(self, *args, **kwargs):
    result = await open_channels(self, *args, **kwargs)
    instrument("on")
    return result
async def counted_close(self, *args, **kwargs):
    instrument("off")
    return await close(self, *args, **kwargs)
links.AiortcFactory.open_channels = counted_open_channels
links.AiortcFactory.close = counted_close
sys.argv = ["mpyc-webrtc-peer"] + sys.argv[1:]
cli.main()
'''
COLLECTED = re.compile(r"Collected : (\d+)")


def callgrind(workdir: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={workdir / 'callgrind.out'}"]


def count_tcp(ns: Namespace, workload: str, size: int, workdir: Path) -> int:
    procs = []
    for pid in range(PARTIES):
        cmd = [sys.executable, "-c", TCP_PARTY, str(WORKLOAD), f"-M{PARTIES}", "-I", str(pid),
               "--no-log", "--workload", workload, "--size", str(size)]
        procs.append(ns.popen((callgrind(workdir) if pid == 0 else []) + cmd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return _collected(procs, f"TCP {workload} {size}")


def count_webrtc(ns: Namespace, server: Server, workload: str, size: int,
                 workdir: Path) -> int:
    url = server.create(PARTIES, "--program-file", str(WORKLOAD),
                        "--args", "--workload", workload, "--size", str(size))
    procs = []
    for i in range(PARTIES):
        cmd = [sys.executable, "-c", WEBRTC_PARTY, "join", url, "--allow-loopback",
               "--trust-program"]
        procs.append(ns.popen((callgrind(workdir) if i == 0 else []) + cmd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return _collected(procs, f"WebRTC {workload} {size}")


def _collected(procs: list[subprocess.Popen], what: str) -> int:
    outputs = [proc.communicate(timeout=1800) for proc in procs]
    if any(proc.returncode for proc in procs) or '"ok": true' not in "".join(
            out for out, _ in outputs):
        raise SystemExit(f"{what} failed:\n{outputs[0][1][-2000:]}")
    match = COLLECTED.search(outputs[0][1])
    if match is None:
        raise SystemExit(f"{what}: no instruction count from callgrind")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", "-w", default="mul", choices=("mul", "sort", "inner"))
    parser.add_argument("--sizes", type=int, nargs=2, default=(300, 600), metavar="N")
    parser.add_argument("--transport", choices=("both", "tcp", "webrtc"), default="both")
    args = parser.parse_args()
    if (why := available()) is not None or shutil.which("valgrind") is None:
        print(f"bench.instructions: cannot run: {why or 'valgrind is not installed'}",
              file=sys.stderr)
        return 2
    small, large = sorted(args.sizes)
    transports = ("tcp", "webrtc") if args.transport == "both" else (args.transport,)
    results = {}
    with Namespace("mwi") as ns, tempfile.TemporaryDirectory(prefix="mwi-") as tmp:
        server = Server(ns, 8080) if "webrtc" in transports else None
        for transport in transports:
            counts = []
            for size in (small, large):
                if transport == "tcp":
                    counts.append(count_tcp(ns, args.workload, size, Path(tmp)))
                else:
                    counts.append(count_webrtc(ns, server, args.workload, size, Path(tmp)))
            results[transport] = (counts[1] - counts[0]) / (large - small)
            print(f"{transport}: {counts[0]:,} instructions at size {small}, {counts[1]:,} "
                  f"at {large}: {results[transport]:,.0f} per unit of size",
                  file=sys.stderr, flush=True)
    for transport, per_unit in results.items():
        print(f"{args.workload} {transport:<7} {per_unit / 1000:8.0f}k instructions per "
              f"{'multiplication' if args.workload == 'mul' else 'unit of size'} (party 0)")
    if len(results) == 2:
        print(f"WebRTC/TCP {results['webrtc'] / results['tcp']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
