"""Party 2 dies right after start-up; the others must stop with an error, not hang."""

import os

from mpyc.runtime import mpc

mpc.run(mpc.start())
if mpc.pid == 2:
    os._exit(3)
secint = mpc.SecInt(32)
x = mpc.input(secint(mpc.pid))
print(mpc.run(mpc.output(mpc.sum(x))))
mpc.run(mpc.shutdown())
