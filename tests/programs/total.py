"""The total of the parties' inputs (``--input=N``), in MPyC's classic style: a program the
tests upload, for sessions of any number of parties."""

import argparse

from mpyc.runtime import mpc

parser = argparse.ArgumentParser()
parser.add_argument('--input', type=int, default=0, help='your number')
value = parser.parse_known_args()[0].input

secint = mpc.SecInt(32)
mpc.run(mpc.start())
total = mpc.sum(mpc.input(secint(value)))
print('total =', mpc.run(mpc.output(total)))
mpc.run(mpc.shutdown())
