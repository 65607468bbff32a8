"""ICE server URLs as people write them (``stun:HOST:PORT``,
``turn:USER:PASSWORD@HOST:PORT?transport=tcp``), for the server's options and a party's
``--ice-server`` alike.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

SCHEMES = ("stun", "stuns", "turn", "turns")


def parse_ice_server(url: str) -> dict[str, Any]:
    """``stun:HOST:PORT`` or ``turn:USER:PASSWORD@HOST:PORT[?transport=tcp]``."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in SCHEMES or not rest:
        raise ValueError(
            f"{url!r} is not an ICE server URL; use stun:HOST:PORT or "
            "turn:USER:PASSWORD@HOST:PORT."
        )
    if "@" not in rest:
        return {"urls": url}
    credentials, _, address = rest.rpartition("@")
    username, _, password = credentials.partition(":")
    return {"urls": f"{scheme}:{address}", "username": username, "credential": password}


def url_transport(url: str) -> str:
    """"tcp" for a ``turn:``/``turns:`` URL that asks for TCP (``turns`` is TLS over TCP),
    else "udp"."""
    if url.startswith("turns:"):
        return "tcp"
    query = parse_qs(urlsplit(f"x://h/?{url.partition('?')[2]}").query)
    return "tcp" if query.get("transport") == ["tcp"] else "udp"
