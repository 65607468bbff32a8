"""How a session's program is started: its file, its ``sys.argv``, its code, and what
its end means, the same for the native peer (``peer.py``) and the browser
(``py_worker/party.py``). Pure functions, no I/O beyond writing the uploaded source.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import logging
import re
import types
from pathlib import Path
from typing import Any

from . import programs
from .wire import PROGRAM_HASH_CONTEXT


class LaunchError(Exception):
    """The program cannot be started; the message is for the person at this party."""


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


#: What an uploaded script gets: free text, passed on as ``--input=VALUE`` if given.
UPLOADED_INPUT = {
    "kind": "text",
    "label": "Your private input (optional)",
    "help": "If the program reads one, e.g. 42 or 3,1,2: it gets it as --input=VALUE. "
            "Leave it empty otherwise.",
    "placeholder": "e.g. 42 or 3,1,2",
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
