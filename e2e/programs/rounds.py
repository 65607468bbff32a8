"""Many short rounds of secure arithmetic: a computation that takes a while, so that a test
can kill a party, cut its network or stop the signaling server in the middle of it.

Every party's input is its own number (``--input=N``, default pid+1); each round computes
the sum of the inputs times the round number, opened to all. It prints one line per ten
rounds (so a test sees it is under way) and finally the total over all rounds, which is
sum(inputs) * rounds * (rounds+1) / 2.
"""

import sys

from mpyc.runtime import mpc


def option(name: str, default: int) -> int:
    return next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith(name + "=")),
                default)


async def main(rounds: int) -> None:
    await mpc.start()
    secint = mpc.SecInt(32)
    mine = option("--input", mpc.pid + 1)
    inputs = mpc.input(secint(mine))
    total = 0
    for r in range(1, rounds + 1):
        total += await mpc.output(mpc.sum(inputs) * r)
        if r % 10 == 0:
            print(f"round {r}", flush=True)
    print(f"total: {total}", flush=True)
    await mpc.shutdown()


if __name__ == "__main__":
    mpc.run(main(option("--rounds", 200)))
