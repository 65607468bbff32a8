"""Benchmark workloads: an ordinary MPyC script, run over TCP or over WebRTC data channels.

Every party derives every party's inputs from a fixed seed, contributes its own
share of them, and party 0 checks the opened result against plain Python and
prints one JSON line:

    {"workload": "mul", "size": 1000, "seconds": 0.42, "result": ..., "ok": true}

Workloads (N = --size):
  mul    N sequential secure multiplications x = x * y, each depending on the
         previous one: N communication rounds, latency bound.
  sort   mpc.sorted of N secure integers: many rounds of comparisons.
  inner  mpc.in_prod of two secure vectors of length N: bulk input sharing
         (bandwidth) and local field arithmetic, a single multiplication round.
  santa  N secret-santa draws, as the library's santa program makes one: a uniformly
         random derangement of the m parties (shuffle, test for a fixed point, redraw),
         opened here so that party 0 can check it is a derangement.

``connected_at`` in the JSON line is the Unix time at which every link was up, so that a
harness that knows when it started the processes can tell the time to connect.

Run with MPyC as usual, e.g. three local parties over TCP:
    python bench/workload.py -M3 --workload mul --size 1000
"""

import argparse
import json
import random
import sys
import time

from mpyc.runtime import mpc

SEED = 20261125
#: Bound on each party's contribution to one input value; the sum over parties stays
#: well inside the 32-bit range that secure comparisons (sort) need.
BOUND = {"mul": 2**20, "sort": 2**20, "inner": 2**10, "santa": 0}


def parse_args():
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workload", choices=("mul", "sort", "inner", "santa"),
                        required=True)
    parser.add_argument("--size", type=int, required=True)
    options, _ = parser.parse_known_args(sys.argv[1:])
    if options.size < 1:
        parser.error("--size must be at least 1")
    return options


def party_values(workload, size, pid):
    """The inputs party ``pid`` contributes; any party can recompute them."""
    rng = random.Random(f"{SEED}-{workload}-{size}-{pid}")
    bound = BOUND[workload]
    count = {"mul": 2, "sort": size, "inner": 2 * size, "santa": 0}[workload]
    return [rng.randint(-bound, bound) for _ in range(count)]


def plain_inputs(workload, size, parties):
    """Every value as the sum of all parties' contributions."""
    columns = zip(*(party_values(workload, size, pid) for pid in range(parties)), strict=True)
    return [sum(column) for column in columns]


def signed(value, modulus):
    value %= modulus
    return value - modulus if value > modulus // 2 else value


def expected(workload, size, parties, modulus):
    values = plain_inputs(workload, size, parties)
    if workload == "mul":
        x, y = values
        return signed(x * pow(y, size, modulus), modulus)
    if workload == "sort":
        return sorted(values)
    a, b = values[:size], values[size:]
    return signed(sum(u * v for u, v in zip(a, b, strict=True)), modulus)


async def main():
    options = parse_args()
    workload, size = options.workload, options.size
    secint = mpc.SecInt(32)
    own = party_values(workload, size, mpc.pid)

    await mpc.start()
    # All-to-all exchange so that every link between every pair is up before timing
    # (a party's start() only waits for its own links).
    await mpc.transfer(mpc.pid)
    connected_at = time.time()
    started = time.perf_counter()

    shares = mpc.input([secint(v) for v in own])  # one list per party
    values = [mpc.sum(list(column)) for column in zip(*shares, strict=True)]
    if workload == "mul":
        x, y = values
        for _ in range(size):
            x = x * y
        result = await mpc.output(x)
    elif workload == "sort":
        result = await mpc.output(mpc.sorted(values))
    elif workload == "santa":
        from mpyc.random import random_derangement

        m = len(mpc.parties)
        result = [await mpc.output(random_derangement(secint, range(m))) for _ in range(size)]
    else:
        result = await mpc.output(mpc.in_prod(values[:size], values[size:]))

    seconds = time.perf_counter() - started
    if workload == "santa":  # random: check what makes it a derangement
        m = len(mpc.parties)
        ok = all(sorted(p) == list(range(m)) and all(p[i] != i for i in range(m))
                 for p in result)
    else:
        ok = result == expected(workload, size, len(mpc.parties), secint.field.modulus)
    if mpc.pid == 0:
        print(json.dumps({"workload": workload, "size": size, "seconds": round(seconds, 4),
                          "connected_at": round(connected_at, 4), "result": result,
                          "ok": ok}), flush=True)
    await mpc.shutdown()


if __name__ == "__main__":
    mpc.run(main())
