"""Sort: every party learns all parties' numbers in sorted order, but not who had which.

How many numbers each party entered is public.
    python -m mpyc_webrtc.programs.sort -M3 --input=3,1,2
"""

from mpyc.runtime import mpc

from mpyc_webrtc.programs import Result, publish, read_input, secret_share_all


async def main():
    values = read_input('sort')
    secint = mpc.SecInt(32)
    await mpc.start()
    x = await secret_share_all(secint, values)
    ordered = await mpc.output(mpc.sorted(x))
    publish(Result('Sort', 'sort = ' + ','.join(map(str, ordered))))
    await mpc.shutdown()

if __name__ == '__main__':
    mpc.run(main())
