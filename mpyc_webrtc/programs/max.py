"""Max: every party learns the largest of all parties' private numbers, nothing else.

    python -m mpyc_webrtc.programs.max -M3 --input=5,9
"""

from mpyc.runtime import mpc

from mpyc_webrtc.programs import party_input, secret_share_all


async def main():
    values = party_input()
    secint = mpc.SecInt(32)
    await mpc.start()
    x = await secret_share_all(secint, values)
    largest = await mpc.output(mpc.max(x))
    print(f'max = {largest}')
    await mpc.shutdown()

if __name__ == '__main__':
    mpc.run(main())
