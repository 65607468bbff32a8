"""Sum: every party learns the total of all parties' private numbers, nothing else.

How many numbers each party entered is public; the numbers themselves stay secret.
Run with MPyC as usual, e.g. three local parties over TCP:
    python -m mpyc_webrtc.programs.sum -M3 --input=5
or as a session program with ``mpyc-webrtc-peer join URL --input=5``.
"""

from mpyc.runtime import mpc

from mpyc_webrtc.programs import Result, publish, read_input, secret_share_all


async def main():
    values = read_input('sum')
    secint = mpc.SecInt(32)
    await mpc.start()
    x = await secret_share_all(secint, values)
    total = await mpc.output(mpc.sum(x))
    publish(Result('Sum', f'sum = {total}'))
    await mpc.shutdown()

if __name__ == '__main__':
    mpc.run(main())
