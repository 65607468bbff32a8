"""ICE server URLs as people type them, turned into WebRTC ``RTCIceServer`` dicts."""

from __future__ import annotations

from typing import Any


def parse_ice_server(url: str) -> dict[str, Any]:
    """``stun:HOST:PORT`` or ``turn:USER:PASSWORD@HOST:PORT[?transport=tcp]``."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in ("stun", "stuns", "turn", "turns") or not rest:
        raise ValueError(
            f"{url!r} is not an ICE server URL; use stun:HOST:PORT or "
            "turn:USER:PASSWORD@HOST:PORT."
        )
    if "@" not in rest:
        return {"urls": url}
    credentials, _, address = rest.rpartition("@")
    username, _, password = credentials.partition(":")
    return {"urls": f"{scheme}:{address}", "username": username, "credential": password}
