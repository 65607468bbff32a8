"""Median: everyone learns all numbers in sorted order and their median, not who had which.

Each party enters 1 to 100 whole numbers (each from -1,000,000,000 to 1,000,000,000).
The numbers are secret-shared and sorted securely; only the sorted list is revealed, so
nobody learns which party entered which number (how many numbers each party entered is
public). The median is the middle number, or the mean of the two middle ones.

Three parties on this machine, each in its own terminal:
    python -m mpyc_webrtc.programs.median -M3 -I0 --input=3,1,2
    python -m mpyc_webrtc.programs.median -M3 -I1 --input=10
    python -m mpyc_webrtc.programs.median -M3 -I2 --input=-4,7
"""

from fractions import Fraction

from mpyc.runtime import mpc

from mpyc_webrtc.programs import Result, format_number, publish, read_input, secret_share_all


def median_text(ordered):
    """The median of a sorted list: '4', or '4.5' for the mean of two middle numbers."""
    n = len(ordered)
    median = Fraction(ordered[(n - 1) // 2] + ordered[n // 2], 2)
    if median.denominator == 1:
        return format_number(median.numerator)
    return f'{float(median):,.1f}'  # exactly .5


async def main():
    values = read_input('median')
    secint = mpc.SecInt(32)  # differences of numbers within +-10^9 stay below 2^32
    await mpc.start()
    x = await secret_share_all(secint, values)
    ordered = await mpc.output(mpc.sorted(x))
    median = median_text(ordered)
    publish(Result('Median', f'The median is {median}.',
                   rows=[('Count', str(len(ordered))),
                         ('Minimum', format_number(ordered[0])),
                         ('Median', median),
                         ('Maximum', format_number(ordered[-1]))],
                   table=(['#', 'Value'],
                          [[str(i), format_number(v)] for i, v in enumerate(ordered, 1)])))
    await mpc.shutdown()

if __name__ == '__main__':
    mpc.run(main())
