"""Inner product and maximum of the parties' private vectors, in MPyC's classic style.

Every party holds a vector of 4 small integers derived from its pid (so the test can
compute the same thing in plain Python); the parties learn the inner product of the
element-wise sums of all vectors with (1, 2, 3, 4), and the largest element overall.
Unmodified MPyC: synchronous mpc.run(...) calls from module level.
"""

from mpyc.runtime import mpc

secint = mpc.SecInt(32)
weights = [1, 2, 3, 4]
mine = [(mpc.pid + 1) * (i + 1) - 3 for i in range(4)]

mpc.run(mpc.start())
vectors = mpc.input([secint(v) for v in mine])  # one shared vector per party
summed = [mpc.sum([vec[i] for vec in vectors]) for i in range(4)]
dot = mpc.in_prod(summed, list(map(secint, weights)))
largest = mpc.max([x for vec in vectors for x in vec])
print('dot =', mpc.run(mpc.output(dot)))
print('max =', mpc.run(mpc.output(largest)))
mpc.run(mpc.shutdown())
