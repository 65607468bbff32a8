"""A session's places as a person names them on the command line: by the label its creator
gave (``--labels "hospital A" ...``), in any case and spacing, or as ``party N`` (N counted
from 1, as the status display shows it: ``party 1`` is pid 0). Used by ``join --place``
and ``create --pin``."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .console import who_is


def folded(text: str) -> str:
    """A label as it compares: case and runs of white space aside."""
    return " ".join(text.split()).casefold()


def listing(labels: Sequence[str], parties: int) -> str:
    """Every place, for an error message: ``'hospital A' (party 1), party 2``."""
    return ", ".join(who_is(pid, _label(labels, pid)) for pid in range(parties))


def find(labels: Sequence[str], parties: int, wanted: str, *,
         numbers: bool = False) -> int | None:
    """The pid of the place ``wanted`` names: a label, ``party N``, or (``numbers``) just N.
    None if no place has that name; ValueError if several places have it."""
    key = folded(wanted)
    matches = [pid for pid in range(parties) if key and folded(_label(labels, pid)) == key]
    if len(matches) > 1:
        raise ValueError(f"{len(matches)} places are called {wanted.strip()!r}: name one "
                         f"as party N ({listing(labels, parties)})")
    if matches:
        return matches[0]
    found = re.fullmatch(r"party\s*(\d+)" + (r"|(\d+)" if numbers else ""), key)
    if found:
        pid = int(next(g for g in found.groups() if g)) - 1  # people count from 1
        if 0 <= pid < parties:
            return pid
    return None


def _label(labels: Sequence[str], pid: int) -> str:
    return str(labels[pid]) if pid < len(labels) and labels[pid] else ""
