# ruff: noqa: F704  (top-level await is the point of this script)
"""A sealed-bid second-price auction with top-level await (MPyC's async style).

Each party bids --input=N. Everybody learns the winning party and the price it pays (the
second-highest bid); no other bid is revealed. Top-level 'await' runs where the program is
started as a coroutine (the browser party does that); it needs no mpc.run(...).
"""

import argparse

from mpyc.runtime import mpc

parser = argparse.ArgumentParser()
parser.add_argument('--input', type=int, required=True, help='your bid')
bid = parser.parse_args().input

secint = mpc.SecInt(32)
await mpc.start()
bids = mpc.input(secint(bid))
winner, _ = mpc.argmax(bids)  # (index, value) of the first highest bid
rest = [mpc.if_else(winner == i, secint(0), b) for i, b in enumerate(bids)]
price = mpc.max(rest)
print('winner = party', await mpc.output(winner))
print('price =', await mpc.output(price))
await mpc.shutdown()
