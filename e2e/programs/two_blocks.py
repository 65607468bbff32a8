"""Starts MPyC twice, as several of MPyC's own demos do: two ``async with mpc:`` blocks,
each computing over fresh connections (here: the sum, then the product of the parties'
numbers). Input: one whole number (default: pid + 2)."""

import sys

from mpyc.runtime import mpc


def my_number() -> int:
    given = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--input=")]
    return int(given[0]) if given and given[0].strip() else mpc.pid + 2


async def main() -> None:
    secint = mpc.SecInt(32)
    async with mpc:
        total = await mpc.output(mpc.sum(mpc.input(secint(my_number()))))
    print("sum =", total)
    async with mpc:
        product = await mpc.output(mpc.prod(mpc.input(secint(my_number()))))
    print("product =", product)


mpc.run(main())
