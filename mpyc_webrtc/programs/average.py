"""Average salary: everyone learns the average of all parties' salaries, nothing else.

Each party enters a yearly salary (a whole number from 0 to 1,000,000,000). The salaries
are secret-shared and only their total is revealed; the average is that total divided by
the number of parties, which everyone knows anyway. No salary is revealed.

Three parties on this machine, each in its own terminal:
    python -m mpyc_webrtc.programs.average -M3 -I0 --input=52000
    python -m mpyc_webrtc.programs.average -M3 -I1 --input=48000
    python -m mpyc_webrtc.programs.average -M3 -I2 --input=56900
"""

from decimal import ROUND_HALF_UP, Decimal

from mpyc.runtime import mpc

from mpyc_webrtc.programs import Result, format_number, publish, read_input


def average_text(total, parties):
    """total/parties rounded to cents, with thousands separators: '52,300.00'."""
    average = (Decimal(total) / parties).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)
    return f'{average:,.2f}'


async def main():
    salary = read_input('average')
    secint = mpc.SecInt(64)  # a total of up to 32 parties x 10^9 needs 35 bits
    await mpc.start()
    salaries = mpc.input(secint(salary))
    total = await mpc.output(mpc.sum(salaries))
    m = len(mpc.parties)
    average = average_text(total, m)
    publish(Result('Average salary', f'The average salary is {average}.',
                   rows=[('Parties', str(m)), ('Total', format_number(total)),
                         ('Average', average)]))
    await mpc.shutdown()

if __name__ == '__main__':
    mpc.run(main())
