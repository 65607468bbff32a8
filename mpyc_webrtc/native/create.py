"""``mpyc-webrtc-peer create``: draw a session's secret, create it, print its link."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import programs
from ..identity import (
    Identity,
    IdentityError,
    default_path,
    load_or_create,
    public_key,
)
from ..identity import fingerprint as key_fingerprint
from ..launch import (
    BUILTIN_NEEDS_PARTIES,
    MIN_BUILTIN_PARTIES,
    LaunchError,
    fingerprint,
    privacy,
    privacy_sentence,
)
from ..sealing import JoinSecret
from . import places
from .console import clean, who_is
from .errors import Failure

log = logging.getLogger("mpyc_webrtc.peer")

#: After a privacy sentence that is not "Private unless ...".
NO_PRIVACY_HINT = ("To create it anyway, add --no-privacy: everyone who joins is told and must "
                   "accept it.")


def create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"parties": args.parties, "args": args.args or []}
    if args.program_file:
        path = Path(args.program_file)
        try:
            body["source"] = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise Failure(f"Cannot read the program file {path}: {exc}.") from None
        body["program"] = path.name
    else:
        body["program"] = args.program
    if "source" not in body and args.parties < MIN_BUILTIN_PARTIES:
        raise Failure(BUILTIN_NEEDS_PARTIES, 2)
    found = privacy(args.parties, body["args"])
    privacy_line = privacy_sentence(found)
    if not found["full"]:
        if not args.no_privacy:
            raise Failure(f"{privacy_line} {NO_PRIVACY_HINT}", 2)
        body["no_privacy"] = True
    if args.labels:
        body["labels"] = args.labels
    pins = parse_pins(args.pin or [], args.labels or [], args.parties,
                      lambda: _own_identity(args.identity))
    if any(pins):
        body["pins"] = pins
    if args.relay_only:
        body["relay_only"] = True
    # The hash is computed here from what is sent, as every party computes it from what it
    # runs; it goes into the link, with the secret, never to the server.
    try:
        secret = JoinSecret.create({"name": body["program"], "args": body["args"],
                                    "builtin": "source" not in body,
                                    "source": body.get("source")})
    except LaunchError as exc:
        raise Failure(str(exc)) from None
    body["token_hash"] = secret.token_hash
    # What is chosen here, sealed: every party checks the server's word against it.
    body["descriptor"] = secret.descriptor(args.parties, body["args"],
                                           relay_only=bool(args.relay_only),
                                           labels=args.labels or [], pins=pins)
    url = args.server.rstrip("/") + "/api/sessions"
    reply = _post_json(url, body)
    program = reply["program"]
    ours = secret.fingerprint
    if program.get("hash", secret.program_hash) != secret.program_hash:
        log.warning("the server shows the fingerprint %s for this program, this computer "
                    "%s: the server may run a different version, and parties given another "
                    "program will refuse to run it", fingerprint(program["hash"]), ours)
    link = secret.link(reply["join_url"])
    title = program.get("title") or program["name"]
    shown = f"{title!r}" if title == program["name"] else f"{title!r} ({program['name']})"
    print(f"Session {reply['session']} for {reply['parties']} parties running {shown}, "
          f"fingerprint {ours}.")
    print(privacy_line)
    labels = reply.get("labels") or []
    for pid in range(args.parties):
        label = labels[pid] if pid < len(labels) else ""
        if label or pins[pid]:
            kept = (f"kept for {pins[pid]} (fingerprint {key_fingerprint(public_key(pins[pid]))})"
                    if pins[pid] else "")
            print(f"    party {pid + 1}: " + ", ".join(x for x in (clean(label), kept) if x))
    if reply.get("relay_only"):
        print("Relay only: all traffic goes through the server's TURN relay, so the "
              "parties never learn each other's addresses.")
    print("Each party joins with (the whole link, with its secret part after the # sign; "
          "share it only with the parties):")
    # Quoted: '#' and '&' mean something to a shell.
    print(f"    mpyc-webrtc-peer join {shlex.quote(link)}{input_hint(program)}")
    if not args.no_qr:
        _print_qr(link)
    print(link, flush=True)  # the last line: scripts read the link from it
    return 0


def parse_pins(given: list[str], labels: list[str], parties: int,
               me: Callable[[], Identity]) -> list[str]:
    """The ``pins`` of a session: per place, the did:key it is kept for, or "". Each of
    ``given`` is ``PLACE=did:key:...`` (``--pin``), PLACE a label, ``party N`` or N, and
    ``PLACE=me`` the creator's own key (``me()``)."""
    pins = [""] * parties
    for pin in given:
        place, sep, did = (part.strip() for part in pin.rpartition("="))
        if not sep or not place or not did:
            raise Failure(f"--pin wants PLACE=did:key:..., as in --pin \"hospital A=did:key:"
                          f"z6Mk...\" (or PLACE=me for your own key); not {pin!r}.", 2)
        try:
            pid = places.find(labels, parties, place, numbers=True)
        except ValueError as exc:
            raise Failure(f"--pin {pin!r}: {exc}.", 2) from None
        if pid is None:
            raise Failure(f"--pin {pin!r}: this session has no place {place!r}; its places "
                          f"are {places.listing(labels, parties)}.", 2)
        where = who_is(pid, labels[pid] if pid < len(labels) else "")
        if pins[pid]:
            raise Failure(f"--pin: the place {where} is given a key twice.", 2)
        if did.lower() == "me":
            did = me().did
        try:
            public_key(did)
        except IdentityError as exc:
            raise Failure(f"--pin for the place {where}: {did[:60]!r} is not a key "
                          f"({str(exc).rstrip('.')}); give the whole did:key that "
                          "mpyc-webrtc-peer identity prints.", 2) from None
        pins[pid] = did
    return pins


def _own_identity(path: Path | None) -> Identity:
    """This person's own key (``--identity``), for ``--pin PLACE=me``."""
    path = path or default_path()
    try:
        me, created = load_or_create(path)
    except IdentityError as exc:
        raise Failure(str(exc)) from None
    if created:
        print(f"Made a new identity in {path}.", file=sys.stderr)
    return me


def input_hint(program: dict[str, Any]) -> str:
    """`` --input ...`` as a built-in program wants it, for the join command line."""
    spec = programs.CATALOG.get(program["name"]) if program.get("builtin") else None
    if spec is None or spec.input.kind == "none":
        return ""
    if spec.input.kind == "choice":
        return " --input " + "|".join(value for value, _ in spec.input.choices)
    if spec.input.kind == "integers":
        return " --input N,N,..."
    return " --input YOUR_NUMBER"


def _print_qr(url: str) -> None:
    """The join link as a QR code on stderr, for a phone's camera; stdout stays parseable."""
    import segno

    try:
        sys.stdout.flush()
        print("Or scan the link:", file=sys.stderr)
        segno.make(url, error="m").terminal(out=sys.stderr, compact=True)
        sys.stderr.flush()
    except (OSError, UnicodeEncodeError, ValueError) as exc:
        log.warning("could not print the QR code: %s", exc)


def _post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            error = json.load(exc)
            message = error["message"]
        except (ValueError, KeyError, TypeError):
            message = f"The server answered {exc.code} {exc.reason}."
        raise Failure(message) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionRefusedError):
            reason = "nothing is listening there: connection refused"
        elif isinstance(reason, OSError) and reason.strerror:
            reason = reason.strerror
        raise Failure(f"Could not reach the signaling server at {url} ({reason}).") from None


def session_info(server: str, session_id: str) -> dict[str, Any] | None:
    """``GET /api/sessions/ID``; None if the server cannot be asked (joining will say why)."""
    url = f"{server}/api/sessions/{session_id}"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            info = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["message"]
        except (ValueError, KeyError, TypeError):
            return None
        raise Failure(message) from None
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("program"), dict) else None
