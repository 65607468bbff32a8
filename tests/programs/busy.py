"""The parties' total, while party 2 (pid 1) first works for ``--busy`` seconds without
giving its event loop a turn, as MPyC itself does when it shares a big input: the others
must wait for a busy party, not take it for gone."""

import argparse
import time

from mpyc.runtime import mpc

parser = argparse.ArgumentParser()
parser.add_argument('--busy', type=float, default=0.0, help='seconds party 2 is busy')
busy = parser.parse_known_args()[0].busy

secint = mpc.SecInt(32)
mpc.run(mpc.start())
shares = mpc.input(secint(mpc.pid + 1))
if mpc.pid == 1:
    end = time.monotonic() + busy
    while time.monotonic() < end:  # computing: the loop does not run meanwhile
        sum(range(10_000))
print('total =', mpc.run(mpc.output(mpc.sum(shares))))
mpc.run(mpc.shutdown())
