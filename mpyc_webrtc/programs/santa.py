"""Secret Santa: each party learns only whom they give a present to.

No input. The parties jointly draw a uniformly random derangement p of 0..m-1 (a
permutation in which nobody draws themselves): they shuffle secret-shared party numbers
and securely test whether any party drew itself, revealing only that one bit, and draw
again if so. Party i then learns p[i] and nothing else about the draw. Needs 2 or more
parties.

Three parties on this machine, each in its own terminal:
    python -m mpyc_webrtc.programs.santa -M3 -I0
    python -m mpyc_webrtc.programs.santa -M3 -I1
    python -m mpyc_webrtc.programs.santa -M3 -I2
"""

import sys

from mpyc.random import random_derangement
from mpyc.runtime import mpc

from mpyc_webrtc.programs import Result, party_name, publish, read_input


async def main():
    read_input('santa')
    m = len(mpc.parties)
    if m < 2:
        sys.exit('santa: error: Secret Santa needs at least 2 parties.')
    secint = mpc.SecInt(32)
    await mpc.start()
    p = random_derangement(secint, range(m))
    outputs = [mpc.output(p[i], receivers=i) for i in range(m)]  # p[i] only to party i
    receiver = await outputs[mpc.pid]
    # party_name: what people call a party ('Bob'), else 'party 2' for pid 1.
    publish(Result('Secret Santa', f'You give a present to {party_name(receiver)}.',
                   rows=[('You are', party_name(mpc.pid)), ('Parties', str(m))],
                   private=True))
    await mpc.shutdown()

if __name__ == '__main__':
    mpc.run(main())
