"""Known identities: whom this party computed with before, and under which name.

A party's key (``identity``) proves who is at the other end of a peer connection, but a
did:key means nothing to a person the first time. What helps is memory: this key computed
with you before as 'Alice'; or, the warning that matters, someone calls itself 'Alice' with
a key you have never seen while you know another key by that name.

The rules are pure (``recognise``, ``record``) over ``records``: a dict from did:key to
``{"name", "first", "last", "count"}`` (times in ISO 8601, UTC). The verdict is the key of
one of the shared ``known.*`` sentences (``mpyc_webrtc.sentences``) and its fields:

- ``known.new``: never seen;
- ``known.known``: seen, under the same name (or no name now, or none then);
- ``known.renamed``: seen under another name;
- ``known.name_reused``: never seen, but its name is one another key had: flag it.

Names compare as a person reads them: case and runs of white space do not count.

A native peer keeps the records in a JSON file next to its identity file (``path_for``),
readable by its owner only, written whole to a temporary file and renamed over the old one
(``save``), so a crash never leaves half a file. A file that cannot be read as records is
``KnownError`` with a sentence saying what to do, never a traceback.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .identity import IdentityError, fingerprint, public_key

#: The file's format, written as ``{"version": 1, "identities": {did: record}}``.
VERSION = 1
FILE_NAME = "known.json"
RECORD_FIELDS = ("name", "first", "last", "count")

Records = dict[str, dict[str, Any]]


class KnownError(ValueError):
    """The known identities file cannot be used; the message says why and what to do."""


def same_name(a: str, b: str) -> bool:
    """Whether two names are the same to a person: case and white space aside."""
    return _folded(a) == _folded(b)


def _folded(name: str) -> str:
    return " ".join(name.split()).casefold()


def recognise(records: Records, did: str, name: str) -> tuple[str, dict[str, str]]:
    """Who ``did`` calling itself ``name`` is to this party: a ``known.*`` sentence's key
    and its fields (``say(key, **fields)``)."""
    name = " ".join((name or "").split())
    seen = records.get(did)
    if seen is not None:
        before = str(seen.get("name") or "")
        if name and before and not same_name(name, before):
            return "known.renamed", {"before": before, "name": name}
        return "known.known", {"name": before or name, "when": when(seen)}
    if name:
        for other, record in sorted(records.items()):
            if other != did and same_name(str(record.get("name") or ""), name):
                return "known.name_reused", {"name": name, "fingerprint": _fingerprint(other)}
    return "known.new", {}


def record(records: Records, did: str, name: str, now: datetime.datetime) -> Records:
    """``records`` with one more session with ``did`` at ``now``, as ``name`` (a name given
    now replaces the one before; no name keeps it). ``records`` itself is unchanged."""
    stamp = _iso(now)
    name = " ".join((name or "").split())
    before = records.get(did)
    if before is None:
        entry = {"name": name, "first": stamp, "last": stamp, "count": 1}
    else:
        entry = {"name": name or before.get("name", ""), "first": before["first"],
                 "last": stamp, "count": int(before.get("count", 0)) + 1}
    return {**records, did: entry}


def when(seen: dict[str, Any]) -> str:
    """``3 times, last on 2026-12-07``: how often and how recently, for ``known.known``."""
    count = int(seen.get("count", 1))
    day = str(seen.get("last", ""))[:10]
    times = "once" if count == 1 else "twice" if count == 2 else f"{count} times"
    return f"{times}, last on {day}" if day else times


def _iso(now: datetime.datetime) -> str:
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.UTC)
    return now.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _fingerprint(did: str) -> str:
    try:
        return fingerprint(public_key(did))
    except IdentityError:
        return "?"


# -- the file -----------------------------------------------------------------------------

def path_for(identity_file: Path) -> Path:
    """Where the known identities of the key in ``identity_file`` are kept."""
    return identity_file.parent / FILE_NAME


def load(path: Path) -> Records:
    """The records in ``path``; none if there is no such file yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise KnownError(_unusable(path, getattr(exc, "strerror", None) or str(exc))) from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise KnownError(_unusable(path, f"it is not JSON: {exc}")) from None
    problem = _check(document)
    if problem is not None:
        raise KnownError(_unusable(path, problem))
    return dict(document["identities"])


def save(path: Path, records: Records) -> None:
    """Write ``records`` to ``path``, atomically, readable by its owner only."""
    data = json.dumps({"version": VERSION, "identities": records}, indent=1,
                      ensure_ascii=False, sort_keys=True) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise KnownError(f"Cannot write the known identities file {path}: "
                         f"{exc.strerror or exc}.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:  # mkstemp: mode 0600
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise KnownError(f"Cannot write the known identities file {path}: "
                         f"{exc.strerror or exc}.") from None


def _unusable(path: Path, why: str) -> str:
    return (f"The known identities file {path} cannot be used ({why}). Move it away or "
            "delete it to start a new one (you lose the record of whom you computed with), "
            "or give another file with --known.")


def _check(document: Any) -> str | None:
    """What is wrong with a known identities file's content, or None."""
    if not isinstance(document, dict) or document.get("version") != VERSION:
        return f"it is not version {VERSION} of the format"
    identities = document.get("identities")
    if not isinstance(identities, dict):
        return "it has no identities"
    for did, entry in identities.items():
        try:
            public_key(did)
        except IdentityError:
            return f"{did[:60]!r} is not a did:key"
        if (not isinstance(entry, dict) or not isinstance(entry.get("name"), str)
                or not isinstance(entry.get("first"), str)
                or not isinstance(entry.get("last"), str)
                or not isinstance(entry.get("count"), int) or entry["count"] < 1):
            return f"the record of {did[:60]} is not {{name, first, last, count}}"
    return None
