"""How a session's program is started: its file, its ``sys.argv``, its code, and what
its end means, the same for the native peer (``native/join.py``) and the browser
(``py_worker/party.py``). No I/O beyond writing the uploaded source.

The two run it the same way (``prepare``, ``import_runtime``, then ``run_as_main`` around
the program) and differ only in how they wait: a native party's loop is not running while
the program runs (``mpc.run`` runs it), a browser's always is (the program is awaited).
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import hashlib
import inspect
import logging
import re
import sys
import traceback
import types
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import programs
from .mesh import MeshError
from .wire import PROGRAM_HASH_CONTEXT

log = logging.getLogger(__name__)


class LaunchError(Exception):
    """The program cannot be started; the message is for the person at this party."""


class ProgramFailed(Exception):
    """The program could not run or did not end well: the message is for the person at
    this party, ``code`` the exit status a command reports for it."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def is_builtin(program: dict[str, Any]) -> bool:
    """Whether the session runs one of ``programs.BUILTIN`` (no source was uploaded)."""
    return bool(program.get("builtin", program.get("source") is None))


def program_file(program: dict[str, Any], workdir: Path) -> Path:
    """The file to run: a built-in's own file, or the uploaded source written to ``workdir``."""
    if is_builtin(program):
        name = program["name"]
        if name not in programs.BUILTIN:
            raise LaunchError(f"This session runs the program {name!r}, which this version "
                              "does not have; please upgrade.")
        return Path(programs.__file__).with_name(f"{name}.py")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(program["name"]).name) or "program.py"
    if not name.endswith(".py"):
        name += ".py"
    path = workdir / name
    path.write_text(program["source"])
    return path


def program_source(program: dict[str, Any]) -> str:
    """The source text the session runs: the uploaded script, or the built-in's own file."""
    if is_builtin(program):
        try:
            return programs.source(program["name"])
        except KeyError:
            raise LaunchError(f"This session runs the program {program['name']!r}, which this "
                              "version does not have; please upgrade.") from None
    return program["source"]


def program_hash(program: dict[str, Any]) -> str:
    """SHA-256 (hex) of exactly what runs: the source and the arguments.

    The bytes hashed are ``PROGRAM_HASH_CONTEXT``, then the UTF-8 source and each
    argument, each preceded by its length in bytes as 4 bytes big-endian, with the
    number of arguments (4 bytes) before the arguments. The page's create.js builds the
    same bytes; a test checks both give the same hash for every built-in.
    """
    def part(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(4, "big") + data

    args = list(program["args"])
    data = (PROGRAM_HASH_CONTEXT + part(program_source(program))
            + len(args).to_bytes(4, "big") + b"".join(part(a) for a in args))
    return hashlib.sha256(data).hexdigest()


def fingerprint(program: dict[str, Any] | str) -> str:
    """A short form of the program hash for people to compare: five groups of four.

    Every party computes it from the code it is about to run, so a server that hands
    different parties different programs shows up as different fingerprints.
    """
    digest = program if isinstance(program, str) else program_hash(program)
    return " ".join(digest[i:i + 4] for i in range(0, 20, 4))


#: The built-in programs are written for sessions with a privacy threshold of 1 or more.
MIN_BUILTIN_PARTIES = 3
BUILTIN_NEEDS_PARTIES = (
    "The built-in programs need at least 3 parties: with 2, MPyC's threshold is 0 and "
    "neither party's input stays secret from the other.")


def privacy(parties: int, args: list[str]) -> dict[str, Any]:
    """How private the parties' inputs are with ``parties`` parties and these arguments:
    MPyC keeps an input secret from any ``threshold`` parties working together (``-T``,
    by default ``(parties - 1) // 2``), not from ``colluders`` = threshold + 1. With a
    threshold of 0 (two parties, or ``-T0``) a party's shares are its input: no privacy;
    below the default the inputs are less private than MPyC could keep them (``full``
    False in both cases: the session's creator must opt in, every party must accept).
    A program can still change its threshold in its code: read uploaded code."""
    import argparse

    best = (parties - 1) // 2
    options = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    options.add_argument("-T", "--threshold", type=int)  # as MPyC reads it
    try:
        threshold = options.parse_known_args(list(args))[0].threshold
    except argparse.ArgumentError:  # not a number: MPyC itself would refuse to start
        threshold = None
    if threshold is None:
        threshold = best
    return {"parties": parties, "threshold": threshold, "best": best,
            "colluders": threshold + 1, "full": 0 < threshold and threshold >= best}


def privacy_sentence(privacy: dict[str, Any]) -> str:
    """``privacy``'s meaning in one sentence, for the person about to commit an input."""
    from .sentences import say

    if privacy["threshold"] <= 0:
        return say("privacy.none")
    if not privacy["full"]:
        return say("privacy.reduced", colluders=privacy["colluders"],
                   parties=privacy["parties"], best=privacy["best"] + 1)
    return say("privacy.full", colluders=privacy["colluders"], parties=privacy["parties"])


#: What an uploaded script gets: free text, passed on as ``--input=VALUE`` if given.
UPLOADED_INPUT = {
    "kind": "text",
    "label": "Your private input (optional)",
    "help": "If the program reads one, e.g. 42 or 3,1,2: it gets it as --input=VALUE. "
            "Leave it empty otherwise.",
    # An example only: the page puts "e.g." before it, as before every program's.
    "placeholder": "42 or 3,1,2",
    "minimum": None, "maximum": None, "max_count": None, "choices": [],
}


def input_spec(program: dict[str, Any]) -> dict[str, Any]:
    """What the program asks of each party, as JSON for the pages."""
    if is_builtin(program) and program["name"] in programs.CATALOG:
        return programs.CATALOG[program["name"]].input.to_json()
    return dict(UPLOADED_INPUT)


def describe_program(program: dict[str, Any]) -> dict[str, Any]:
    """The program as shown before anyone runs it: title, input, source and fingerprint."""
    spec = programs.CATALOG.get(program["name"]) if is_builtin(program) else None
    return {
        "name": program["name"],
        "args": list(program["args"]),
        "builtin": is_builtin(program),
        "title": spec.title if spec else program["name"],
        "summary": spec.summary if spec else "An MPyC program uploaded by the session's creator.",
        "input": input_spec(program),
        "source": program_source(program),
        "hash": program_hash(program),
        "fingerprint": fingerprint(program),
    }


def check_input(program: dict[str, Any], text: str | None) -> str | None:
    """Why ``text`` is not a usable private input for ``program``, or None if it is.

    Built-in programs check it with their own input rules; uploaded scripts may do
    without one.
    """
    if is_builtin(program):
        spec = programs.CATALOG.get(program["name"])
        if spec is None:
            return (f"This session runs the program {program['name']!r}, which this version "
                    "does not have; please upgrade.")
        try:
            spec.input.parse(text)
        except ValueError as exc:
            return str(exc)
        return None
    if text is None or not text.strip():
        return None
    if len(text) > 100_000:
        return "Your input is longer than 100,000 characters."
    return None


def input_reading(program: dict[str, Any], text: str | None) -> str | None:
    """How a usable ``text`` with grouped digits was read ("Read as 52 000."), for the
    person to check before committing it; None otherwise (and for uploaded scripts, which
    get the text as it is)."""
    spec = programs.CATALOG.get(program["name"]) if is_builtin(program) else None
    return None if spec is None else spec.input.reading(text)


#: MPyC options every party of every session uses. Browsers run 32-bit Python (wasm32),
#: native peers mostly 64-bit: MPyC's default program-counter hop hashes with the
#: platform's ``hash()``, so without this the parties' message labels differ and a mixed
#: session hangs at its first exchange.
COMMON_MPYC_OPTIONS = ("--mix32-64bit",)


def program_argv(path: Path, parties: int, pid: int, args: list[str],
                 party_input: str | None) -> list[str]:
    """``sys.argv`` as if the program were started as ``python PATH -M m -I pid ARGS``
    (plus ``COMMON_MPYC_OPTIONS`` and ``--input=VALUE``)."""
    argv = [str(path), "-M", str(parties), "-I", str(pid), *COMMON_MPYC_OPTIONS, *args]
    if party_input is not None and party_input.strip():
        argv.append(f"--input={party_input.strip()}")
    return argv


def exit_message(name: str, code: object) -> str | None:
    """What a ``SystemExit(code)`` raised by the program means, or None for success."""
    if code in (None, 0):
        return None
    if isinstance(code, int):
        return f"The program {name!r} exited with status {code}."
    return str(code)


def error_message(name: str, exc: BaseException) -> str:
    """The sentence for a program that raised ``exc``."""
    return f"The program {name!r} stopped with an error: {type(exc).__name__}: {exc}"


def compile_program(path: Path) -> types.CodeType:
    """The program's code; top-level ``await`` is allowed (``await mpc.start()``), and
    evaluating such code gives a coroutine to run on the event loop."""
    return compile(path.read_text(), str(path), "exec", dont_inherit=True,
                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def main_module(path: Path) -> types.ModuleType:
    """A fresh ``__main__`` for the program, as ``python PATH`` would give it."""
    module = types.ModuleType("__main__")
    module.__file__ = str(path)
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    return module


def prepare(program: dict[str, Any], workdir: Path, parties: int, pid: int,
            party_input: str | None, *, mpyc_set_up: bool = False
            ) -> tuple[Path, types.CodeType]:
    """Check the input, write the program's file if it was uploaded, compile it and set
    ``sys.argv`` for it: (the file, its code). ``ProgramFailed`` says what is wrong (exit
    status 2 for the input). ``mpyc_set_up``: MPyC was imported for an earlier run (run
    again), so the program gets ``sys.argv`` as MPyC leaves it, without MPyC's options."""
    problem = check_input(program, party_input)
    if problem is not None:
        raise ProgramFailed(problem, 2)
    try:
        path = program_file(program, workdir)
        code = compile_program(path)
    except LaunchError as exc:
        raise ProgramFailed(str(exc)) from None
    except SyntaxError as exc:
        raise ProgramFailed(error_message(program["name"], exc)) from None
    argv = program_argv(path, parties, pid, list(program["args"]), party_input)
    sys.argv = without_mpyc_options(argv) if mpyc_set_up else argv
    return path, code


def without_mpyc_options(argv: list[str]) -> list[str]:
    """``argv`` as MPyC's set-up leaves ``sys.argv`` for the program: its own options
    taken out (a script's ``argparse.parse_args`` would refuse them)."""
    import mpyc

    _, rest = mpyc._get_arg_parser().parse_known_args(argv[1:])
    return [argv[0], *rest]


def import_runtime(parties: int, pid: int, *, set_loop: Callable[[], None] | None = None,
                   too_late: str) -> Any:
    """``mpyc.runtime.mpc``, set up from ``sys.argv`` as ``prepare`` left it; ``set_loop``
    runs between importing ``mpyc`` (which may install uvloop's policy, forgetting the
    current loop) and ``mpyc.runtime`` (which caches the loop). ``too_late`` is the
    sentence if MPyC had been set up for another party already."""
    import mpyc  # noqa: F401  (reads MPyC's options from sys.argv)

    if set_loop is not None:
        set_loop()
    import mpyc.runtime

    mpc = mpyc.runtime.mpc
    if mpc.pid != pid or len(mpc.parties) != parties:
        raise ProgramFailed(too_late)
    return mpc


def run_to_the_end(loop: asyncio.AbstractEventLoop, coro: Any) -> None:
    """``loop.run_until_complete(coro)``, even if a failure asked the loop to stop (to end the
    ``mpc.run`` the program was blocked in) just as that run was ending anyway: the stop
    then ends this run early, and it goes on."""
    task = loop.create_task(coro)
    while not task.done():
        try:
            loop.run_until_complete(task)
        except RuntimeError:
            if task.done():
                raise
            log.debug("the loop was asked to stop before closing; closing goes on")
    task.result()


@contextmanager
def run_as_main(path: Path, code: types.CodeType, name: str,
                mesh_failure: Callable[[], BaseException | None]
                ) -> Iterator[Coroutine[Any, Any, Any] | None]:
    """Run ``code`` as ``__main__``, as ``python PATH`` would (``runpy.run_path``, but
    allowing top-level ``await``): entering runs it and gives the coroutine to finish if it
    awaits at the top level (the caller runs it on its loop, inside the ``with``), else None.

    How it ended becomes ``ProgramFailed`` (or nothing, for a normal end or ``exit(0)``):
    ``mesh_failure()`` is the mesh's failure, which explains what a broken link makes the
    program raise (``ending``).
    """
    module = main_module(path)
    saved_main = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    sys.path.insert(0, str(path.parent))
    try:
        failed = None
        pending = None
        try:
            result = eval(code, module.__dict__)
            if inspect.iscoroutine(result):
                pending = result
        except (Exception, SystemExit) as exc:
            failed = ending(name, exc, mesh_failure())
        if failed is None:
            try:
                yield pending
            except (Exception, SystemExit) as exc:
                failed = ending(name, exc, mesh_failure())
        if failed is not None:
            raise failed from None
    finally:
        if str(path.parent) in sys.path:
            sys.path.remove(str(path.parent))
        if saved_main is not None:
            sys.modules["__main__"] = saved_main


#: What a program raises because a link broke: the mesh stops the loop the program waits
#: in (``mpc.run``: "Event loop stopped before Future completed"), or a send fails. Any other
#: exception is the program's own, even if a link broke meanwhile: when two parties fail
#: together, each says its own error, not that the other one left.
BROKEN_LINK_ERRORS = (RuntimeError, ConnectionError)


def ending(name: str, exc: BaseException, mesh_failure: BaseException | None
           ) -> ProgramFailed | None:
    """What the program ending with ``exc`` means for the person at this party."""
    if isinstance(exc, ProgramFailed):
        return exc
    if isinstance(exc, SystemExit):
        message = exit_message(name, exc.code)
        if message is None:
            return None
        return ProgramFailed(message, exc.code if isinstance(exc.code, int) else 1)
    if isinstance(exc, MeshError) or (mesh_failure is not None
                                      and isinstance(exc, BROKEN_LINK_ERRORS)):
        return ProgramFailed(str(mesh_failure or exc))
    log.error("the program raised:\n%s", "".join(traceback.format_exception(exc)).rstrip())
    return ProgramFailed(error_message(name, exc))


class PartyContext(logging.Filter):
    """Puts the session id and this party's pid into every log line."""

    session = "-"
    party = "-"

    def filter(self, record: logging.LogRecord) -> bool:
        record.session = self.session
        record.party = self.party
        return True


CONTEXT = PartyContext()
LOG_FORMAT = "%(asctime)s [session %(session)s party %(party)s] %(name)s: %(message)s"
