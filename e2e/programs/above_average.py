"""Total, maximum and how many are above average, in MPyC's classic synchronous style.

Every party contributes one private number with --input=N (default: its party number).
All parties learn the total, the largest number, and how many numbers lie strictly above
the average; nobody learns anybody else's number. An unmodified MPyC script: run it with
plain MPyC as  python above_average.py -M3 --input=5  or upload it as a session program.
"""

import argparse

from mpyc.runtime import mpc

parser = argparse.ArgumentParser()
parser.add_argument('--input', type=int, default=None, help='your private number')
args = parser.parse_args()
mine = mpc.pid if args.input is None else args.input

m = len(mpc.parties)
secint = mpc.SecInt(32)

mpc.run(mpc.start())
x = mpc.input(secint(mine))  # one secret-shared number per party
total = mpc.sum(x)
print('total =', mpc.run(mpc.output(total)))
print('max =', mpc.run(mpc.output(mpc.max(x))))
above = mpc.sum([m * xi > total for xi in x])  # x_i > total/m, without dividing
print('above average =', mpc.run(mpc.output(above)))
mpc.run(mpc.shutdown())
