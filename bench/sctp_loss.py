"""Request-response round trips over a lossy link, with and without sctp_recovery.

    .venv/bin/python -m bench.sctp_loss [--rounds N] [--loss 0 1 3] [--rtt-ms 0 10]

Two aiortc SCTP associations in one process, over real DTLS and the in-memory wire of
``testbed/sctp_link.py`` (no ICE, no sockets, so no network namespace): each record
arrives RTT/2 after it is sent, or is lost with the given probability (a seeded random
draw, the same sequence for every configuration). Party a sends a small message, b
answers it as soon as it arrives, a waits for the answer: one round trip, as MPyC's
rounds keep one packet in flight. For each loss rate and RTT the table shows the mean
time per round trip with every patch (as the peer runs them), with every patch but
``sctp_recovery``, and with none (aiortc as released), and patched/unpatched; then how
the patched runs recovered (tail-loss probes, fast retransmits, T3 expiries).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpyc_webrtc.native import patches  # noqa: E402
from mpyc_webrtc.native.join import new_event_loop  # noqa: E402
from testbed.sctp_link import Link, sctp_pair  # noqa: E402

EVERY = [patch.name for patch in patches.PATCHES]
CONFIGURATIONS = {
    "patched": EVERY,
    "unpatched": [name for name in EVERY if name != "sctp_recovery"],
    "aiortc": [],
}
MESSAGE = bytes(32)


@dataclass
class Result:
    seconds_per_round: float
    lost: int
    carried: int
    recovery: dict[str, int]


async def round_trips(names: list[str], rounds: int, loss: float, rtt: float,
                      seed: int) -> Result:
    sctp_class = patches.compose("RTCSctpTransport", names)
    dtls_class = patches.compose("RTCDtlsTransport", names)
    link = Link(delay=rtt / 2, loss=loss, seed=seed)
    async with sctp_pair(sctp_class, dtls_class=dtls_class, link=link) as (a, b, _):
        answers: asyncio.Queue[bytes] = asyncio.Queue()
        a.channel.on("message", answers.put_nowait)
        b.channel.on("message", b.channel.send)  # answer at once
        for _ in range(5):  # RTT samples first, without loss
            link.lossy = False
            a.channel.send(MESSAGE)
            await answers.get()
        link.lossy = True
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(rounds):
            a.channel.send(MESSAGE)
            await asyncio.wait_for(answers.get(), 120)
        elapsed = loop.time() - start
        recovery = {}
        for side in (a, b):
            for key, value in getattr(side.sctp, "_mw_recovery_counts", {}).items():
                recovery[key] = recovery.get(key, 0) + value
        return Result(elapsed / rounds, link.lost, link.carried, recovery)


async def main(args: argparse.Namespace) -> None:
    print(f"{args.rounds} round trips of {len(MESSAGE)}-byte messages; ms per round trip")
    print(f"{'RTT':>6} {'loss':>5} | " + " ".join(f"{name:>10}" for name in CONFIGURATIONS)
          + f" | {'patched/unpatched':>17} | recovery (patched)")
    for rtt_ms in args.rtt_ms:
        for loss_pct in args.loss:
            results = {}
            for name, names in CONFIGURATIONS.items():
                results[name] = await round_trips(names, args.rounds, loss_pct / 100,
                                                  rtt_ms / 1000, args.seed)
            patched, unpatched = results["patched"], results["unpatched"]
            ratio = patched.seconds_per_round / unpatched.seconds_per_round
            recovery = ", ".join(f"{k} {v}" for k, v in patched.recovery.items())
            print(f"{rtt_ms:>4g}ms {loss_pct:>4g}% | "
                  + " ".join(f"{r.seconds_per_round * 1000:>10.2f}" for r in results.values())
                  + f" | {ratio:>17.3f} | {recovery}; lost {patched.lost} of "
                  f"{patched.carried}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--loss", type=float, nargs="+", default=[0, 1, 3],
                        help="loss rates in percent")
    parser.add_argument("--rtt-ms", type=float, nargs="+", default=[0, 10])
    parser.add_argument("--seed", type=int, default=1)
    loop = new_event_loop()
    try:
        loop.run_until_complete(main(parser.parse_args()))
    finally:
        loop.close()
