"""Mean and variance of one fixed-point number per party, using `async with mpc`.

Party i contributes i + 0.5; run with an extra argument N to use N numbers per party.
"""

import sys

from mpyc.runtime import mpc

secfxp = mpc.SecFxp()


async def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    async with mpc:
        values = [secfxp(mpc.pid + 0.5 + k) for k in range(n)]
        shared = [x for v in values for x in mpc.input(v)]
        mean = mpc.statistics.mean(shared)
        total = mpc.sum(shared)
        print('total =', await mpc.output(total))
        print('mean =', round(await mpc.output(mean), 3))

mpc.run(main())
