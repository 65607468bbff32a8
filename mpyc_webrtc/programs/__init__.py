"""Built-in MPyC programs and the helpers they share.

Each built-in is an ordinary MPyC script in this folder, written like MPyC's
demos, so it runs the same natively, in Pyodide, or with plain MPyC over TCP
(``python -m mpyc_webrtc.programs.sum -M3 --input=5``).
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources

#: name -> what it computes, as shown to people choosing a program.
BUILTIN: dict[str, str] = {
    "sum": "the sum of all parties' numbers",
    "max": "the largest of all parties' numbers",
    "sort": "all parties' numbers, sorted",
}

#: Inputs are 32-bit secure integers; every value must fit.
INPUT_BOUND = 2**31 - 1
MAX_INPUT_VALUES = 10_000

#: MPyC options that decide who the parties are: the mesh decides that, not the session.
_RESERVED_OPTIONS = ("-M", "-I", "--index", "-P", "-C", "--config", "-B", "--base-port",
                     "--ssl", "--output-windows", "--output-file", "-H", "--HELP", "-V",
                     "--VERSION", "-h", "--help")


def source(name: str) -> str:
    """The source text of a built-in program."""
    if name not in BUILTIN:
        raise KeyError(name)
    return resources.files(__package__).joinpath(f"{name}.py").read_text()


def check_args(args: list[str]) -> None:
    """Refuse program arguments that would change who the parties are."""
    if len(args) > 64:
        raise ValueError("A program takes at most 64 arguments.")
    for arg in args:
        if len(arg) > 1000:
            raise ValueError("A program argument is longer than 1000 characters.")
        name = arg.split("=", 1)[0]
        for opt in _RESERVED_OPTIONS:
            if (
                # MPyC's parser accepts any unambiguous prefix of a long option: --ind=2
                (opt.startswith("--") and len(name) > 2 and opt.startswith(name))
                or (len(opt) == 2 and arg.startswith(opt) and not arg.startswith("--"))
            ):
                raise ValueError(
                    f"The argument {arg!r} is not allowed: the session decides the parties, "
                    "so -M, -I, -P, -C and the like are set for you."
                )


def parse_input(text: str) -> list[int]:
    """Parse a party's private input: an integer or a comma-separated list of integers."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(
            f"Your input must be an integer or a comma-separated list of integers, "
            f"like 5 or 3,1,2 (got {text!r})."
        ) from None
    if len(values) > MAX_INPUT_VALUES:
        raise ValueError(f"Your input has {len(values)} numbers; the limit is "
                         f"{MAX_INPUT_VALUES}.")
    for v in values:
        if abs(v) > INPUT_BOUND:
            raise ValueError(f"The number {v} is too large: inputs must lie between "
                             f"-{INPUT_BOUND} and {INPUT_BOUND}.")
    return values


def party_input(argv: list[str] | None = None) -> list[int]:
    """This party's ``--input`` from the command line (what is left after MPyC's options)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--input", required=True)
    options, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        return parse_input(options.input)
    except ValueError as exc:
        parser.error(str(exc))
        raise


async def secret_share_all(secint, values: list[int]) -> list:
    """Secret-share every party's list; returns them concatenated in pid order.

    How many numbers each party has is public (everyone learns the list lengths);
    the numbers themselves stay secret.
    """
    from mpyc.runtime import mpc

    counts = await mpc.transfer(len(values))
    shared = []
    for pid, count in enumerate(counts):
        if count == 0:
            continue
        own = [secint(v) for v in values] if pid == mpc.pid else [secint(None)] * count
        shared.extend(mpc.input(own, senders=pid))
    return shared
