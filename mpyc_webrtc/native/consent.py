"""What a person at a native party agrees to before it computes: the program, and how
private the session is.

A built-in program comes with this package; an uploaded one is the session creator's
Python and would run with this person's rights, so it runs only once they saw it (on a
terminal: its code, its fingerprint, and a question) or said so beforehand
(``--trust-program``). A session in which fewer than all-but-a-minority of the parties must
collude to learn an input (``launch.privacy``) is joined only with ``--accept-no-privacy``.
Both are decided before this party takes a place, and again on what the verified welcome
says.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from ..launch import fingerprint, is_builtin, privacy, privacy_sentence, program_source
from .errors import Failure

#: After a privacy sentence that is not "Private unless ...".
ACCEPT_HINT = ("If every party knows and accepts that, join again with --accept-no-privacy; "
               "otherwise ask the session's creator for a session with more parties.")
UPLOADED = ("This session runs a program uploaded by the session's creator (fingerprint "
            "{fingerprint}). It would run on this computer with your rights, so read it "
            "first; it is saved in {path}:")
QUESTION = "Run this program here (fingerprint {fingerprint})? [y/N]"
CONSENT_NEEDED = (
    "This session runs a program uploaded by the session's creator (fingerprint "
    "{fingerprint}), which would run on this computer with your rights. It is saved in "
    "{path}: read it, and if you trust it, join again with --trust-program.")
REFUSED = "You did not agree to run the session's program (saved in {path}); nothing was run."


def check_privacy(parties: int, args: list[str], accepted: bool) -> str:
    """The session's privacy in one sentence; ``Failure`` (exit status 2) if it is less
    than full and the person did not accept that."""
    found = privacy(parties, list(args))
    sentence = privacy_sentence(found)
    if not found["full"] and not accepted:
        raise Failure(f"{sentence} {ACCEPT_HINT}", 2)
    return sentence


def consent_to_program(program: dict[str, Any], session: str, *, trusted: bool,
                       stdin: TextIO | None = None, out: TextIO | None = None) -> bool:
    """Whether this person lets the session's program run here: a built-in always (False:
    nothing to agree to); an uploaded one if ``trusted``, or if they say so on a terminal
    after seeing its code, which is saved first (True); ``Failure`` (exit status 2)
    otherwise, with the code saved where it can be read."""
    if is_builtin(program):
        return False
    if trusted:
        return True
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stderr if out is None else out
    source = program_source(program)
    path = saved_copy(program, source, session)
    shown = fingerprint(program)
    if not (_is_terminal(stdin) and _is_terminal(out)):
        raise Failure(CONSENT_NEEDED.format(path=path, fingerprint=shown), 2)
    out.write(f"{UPLOADED.format(path=path, fingerprint=shown)}\n")
    out.write(f"----- {path.name} -----\n{source.rstrip()}\n----- end of {path.name} -----\n")
    out.write(QUESTION.format(fingerprint=shown) + " ")
    out.flush()
    answer = stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise Failure(REFUSED.format(path=path), 2)
    return True


def saved_copy(program: dict[str, Any], source: str, session: str) -> Path:
    """The uploaded program, saved where the person can read it before it runs."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(str(program.get("name", ""))).name)
    safe_session = re.sub(r"[^A-Za-z0-9_-]", "_", session)
    path = Path(tempfile.gettempdir()) / f"mpyc-webrtc-{safe_session}-{name or 'program.py'}"
    path.write_text(source)
    return path


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
