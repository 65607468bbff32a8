"""The session's shape: what its creator sealed (the descriptor) against what the server
says, and the DTLS certificate a party shows. Used by ``client``; ``web/shape.js`` is the
twin the page uses, and the same scenarios check both."""

from __future__ import annotations

import json
import re
from typing import Any

from . import wire

_FINGERPRINT = re.compile(r"^a=fingerprint:(\S+) (\S+)", re.M)


def said_by(welcome: dict[str, Any], link_hash: str) -> dict[str, Any]:
    """What the server's ``welcome`` says of the descriptor's fields (the program: the
    link's, which this party checks on its own)."""
    return {"parties": welcome.get("parties"), "relay_only": welcome.get("relay_only"),
            "labels": welcome.get("labels"), "program": link_hash,
            "args": (welcome.get("program") or {}).get("args"), "pins": welcome.get("pins")}


def difference(descriptor: dict[str, Any], said: dict[str, Any]) -> tuple[str, str, str] | None:
    """The first field (``wire.DESCRIPTOR_FIELDS``) where the server's word differs from
    the creator's, with both values in words; None if none does. Places' names compare
    with white space collapsed (the server keeps them so)."""
    for name in wire.DESCRIPTOR_FIELDS:
        chosen, told = descriptor.get(name), said.get(name)
        if name == "labels":
            chosen = _labels(chosen, descriptor.get("parties"))
            told = _labels(told, descriptor.get("parties"))
        if json.dumps(chosen) != json.dumps(told):  # exactly, as shape.js compares
            return name, _shown(chosen), _shown(told)
    return None


def certificate(sdp: str) -> str | None:
    """The DTLS certificate fingerprint an SDP shows (``sha-256 AB:CD:...``), if any."""
    found = _FINGERPRINT.search(sdp)
    return None if found is None else f"{found.group(1).lower()} {found.group(2).upper()}"


def _labels(labels: Any, parties: Any) -> Any:
    if not isinstance(labels, list) or not isinstance(parties, int):
        return labels
    names = [" ".join(str(x).split()) for x in labels]
    return names + [""] * (parties - len(names))


def _shown(value: Any) -> str:
    """A descriptor's value for a person."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(json.dumps(x, ensure_ascii=False) for x in value) or "none"
    return json.dumps(value, ensure_ascii=False)
