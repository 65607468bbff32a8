"""What every party computes the same way before running: fingerprints and descriptions."""

from __future__ import annotations

import re

from mpyc_webrtc import programs
from mpyc_webrtc.launch import describe_program, fingerprint, input_spec

SOURCE = "from mpyc.runtime import mpc\nmpc.run(mpc.start())\nmpc.run(mpc.shutdown())\n"


def uploaded(source: str = SOURCE, args: list[str] | None = None) -> dict:
    return {"name": "mine.py", "args": args or [], "builtin": False, "source": source}


def test_fingerprint_is_short_and_readable():
    assert re.fullmatch(r"[0-9a-f]{4}( [0-9a-f]{4}){4}", fingerprint(uploaded()))


def test_fingerprint_changes_with_source_or_arguments_only():
    base = fingerprint(uploaded())
    assert fingerprint(uploaded()) == base
    assert fingerprint({**uploaded(), "name": "other.py"}) == base  # the name runs nothing
    assert fingerprint(uploaded(SOURCE + "# a comment\n")) != base
    assert fingerprint(uploaded(args=["--no-log"])) != base


def test_builtin_fingerprint_is_of_the_installed_code():
    builtin = {"name": "average", "args": [], "builtin": True}
    # A server cannot make a built-in look like different code: its source is read here.
    assert fingerprint(builtin) == fingerprint(uploaded(programs.source("average")))
    assert fingerprint(builtin) != fingerprint({**builtin, "name": "vote"})


def test_description_of_a_builtin_and_of_an_upload():
    shown = describe_program({"name": "vote", "args": [], "builtin": True})
    assert shown["title"] == "Unanimous vote"
    assert shown["input"]["kind"] == "choice"
    assert shown["source"] == programs.source("vote")
    mine = describe_program(uploaded())
    assert (mine["title"], mine["source"], mine["input"]) == (
        "mine.py", SOURCE, input_spec(uploaded()))
    assert mine["input"]["kind"] == "text"
