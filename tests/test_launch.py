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


def test_a_later_run_gets_sys_argv_as_mpyc_leaves_it(tmp_path, monkeypatch):
    """Run again: MPyC is set up already and would not take its options out of sys.argv a
    second time, so a script's argparse.parse_args must not see them."""
    import argparse
    import sys

    from mpyc_webrtc.launch import prepare

    monkeypatch.setattr(sys, "argv", sys.argv[:])
    program = {"name": "p.py", "args": ["--rounds", "3"], "builtin": False,
               "source": "x = 1\n"}
    path, _ = prepare(program, tmp_path, 3, 1, "42")
    assert sys.argv == [str(path), "-M", "3", "-I", "1", "--mix32-64bit", "--rounds", "3",
                        "--input=42"]
    prepare(program, tmp_path, 3, 1, "7", mpyc_set_up=True)
    assert sys.argv == [str(path), "--rounds", "3", "--input=7"]
    script = argparse.ArgumentParser()
    script.add_argument("--rounds", type=int)
    script.add_argument("--input")
    assert vars(script.parse_args(sys.argv[1:])) == {"rounds": 3, "input": "7"}



def test_a_broken_link_explains_the_loop_stopping_but_not_the_programs_own_error():
    """Two parties whose programs fail at once: each says its own error, not that the
    other left; a program stopped because a link broke says the link broke."""
    from mpyc_webrtc.launch import ending
    from mpyc_webrtc.mesh import MeshError

    broken = MeshError("Party 1 disconnected before the computation finished.")
    stopped = RuntimeError("Event loop stopped before Future completed.")
    assert str(ending("mine.py", stopped, broken)) == str(broken)
    assert str(ending("mine.py", ValueError("no data today"), broken)) == (
        "The program 'mine.py' stopped with an error: ValueError: no data today")
    assert str(ending("mine.py", stopped, None)) == (
        "The program 'mine.py' stopped with an error: RuntimeError: Event loop stopped "
        "before Future completed.")
