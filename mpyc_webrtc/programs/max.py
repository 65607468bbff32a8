"""Max: every party learns the largest of all parties' private numbers, nothing else.

How many numbers each party entered is public; the numbers themselves stay secret.
    python -m mpyc_webrtc.programs.max -M3 --input=5,9
"""

from mpyc.runtime import mpc

from mpyc_webrtc.programs import Result, publish, read_input, secret_share_all


async def main():
    values = read_input('max')
    secint = mpc.SecInt(32)
    await mpc.start()
    x = await secret_share_all(secint, values)
    largest = await mpc.output(mpc.max(x))
    publish(Result('Maximum', f'max = {largest}'))
    await mpc.shutdown()

if __name__ == '__main__':
    mpc.run(main())
