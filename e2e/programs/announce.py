"""Says that it runs, then computes the total of the parties' inputs (``--input=N``): a
program whose first line of output shows whether it was started at all."""

import argparse

from mpyc.runtime import mpc

print('this program is running')
parser = argparse.ArgumentParser()
parser.add_argument('--input', type=int, default=0, help='your number')
value = parser.parse_known_args()[0].input

secint = mpc.SecInt(32)
mpc.run(mpc.start())
total = mpc.sum(mpc.input(secint(value)))
print('total =', mpc.run(mpc.output(total)))
mpc.run(mpc.shutdown())
