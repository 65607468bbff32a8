"""The STUN and TURN servers a signaling server hands each party, with short-lived TURN
credentials.

A TURN relay costs its operator bandwidth, so it must not be open to anyone. coturn's
"TURN REST API" scheme (``use-auth-secret``) lets the signaling server mint credentials
that the relay checks without any shared database: the username is
``<unix expiry time>:<who>`` and the password base64(HMAC-SHA1(secret, username)). A
credential that leaks stops working at its expiry; the secret itself never leaves the
server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: The server's own STUN service's UDP port unless told otherwise (STUN's registered port).
DEFAULT_STUN_PORT = 3478
#: Listen hosts that stand for every address: none of them can be handed to a party.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def check_server_url(url: str, schemes: tuple[str, ...]) -> str:
    """``url`` if it is a credential-free ICE URL of one of ``schemes``, else ValueError."""
    scheme, sep, rest = url.partition(":")
    host = rest.split("?", 1)[0]
    if not sep or scheme not in schemes or not host or "@" in rest or "/" in host:
        raise ValueError(
            f"{url!r} is not a {' or '.join(schemes)} URL; write it as "
            f"{schemes[0]}:HOST:PORT" + ("[?transport=udp|tcp]" if "turn" in schemes else "")
            + " (credentials come from --turn-secret).")
    transport = parse_qs(urlsplit(f"x://h/?{url.partition('?')[2]}").query).get("transport")
    if transport is not None and transport != ["udp"] and transport != ["tcp"]:
        raise ValueError(f"{url!r}: transport must be udp or tcp.")
    return url


def names_stun(stun: Iterable[str], static: Iterable[dict[str, Any]]) -> bool:
    """Whether the configuration names a STUN server of its own (``--stun``, or a ``stun:``
    URL among ``--ice-server``): then the server's own STUN service is not handed out."""
    return any(True for _ in stun) or any(
        str(url).startswith(("stun:", "stuns:")) for server in static for url in _urls(server))


def own_stun_url(public_url: str | None, host: str | None, port: int) -> str | None:
    """The ``stun:HOST:PORT`` URL parties reach the server's own STUN service at: HOST is
    ``public_url``'s host, which parties reach the server by, else the listen ``host``;
    None when that is an every-address host (0.0.0.0, ::) and there is no public URL, as
    the server cannot know which of its addresses parties can reach."""
    name = urlsplit(public_url).hostname if public_url else None
    if not name:
        name = None if host is None or host in WILDCARD_HOSTS else host
    if not name:
        return None
    try:
        if ipaddress.ip_address(name).version == 6:
            name = f"[{name}]"
    except ValueError:
        pass  # a host name
    return f"stun:{name}:{port}"


def turn_credentials(secret: str, who: str, expires: int) -> tuple[str, str]:
    """The (username, password) coturn accepts until ``expires`` (Unix time)."""
    username = f"{expires}:{who}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


@dataclass(frozen=True)
class IceConfig:
    """The STUN and TURN servers of a signaling server, and how it authorises the relay.

    ``static`` are servers with fixed credentials (``--ice-server``); ``turn`` URLs get
    fresh REST credentials per party from ``turn_secret``. They expire when the party's
    session closes at the latest (``servers``' ``until``: its absolute end, ``max_age`` after
    it was created), so a session nobody uses any more does not leave a relay open to
    whoever joined it; and never more than ``turn_ttl`` seconds after they were made. A
    running session's parties keep theirs until its end: the relay checks them again at
    every allocation refresh, so they cannot end earlier than the session may run.
    """

    stun: tuple[str, ...] = ()
    turn: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl: float = 24 * 3600.0
    static: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for url in self.stun:
            check_server_url(url, ("stun", "stuns"))
        for url in self.turn:
            check_server_url(url, ("turn", "turns"))
        if self.turn and not self.turn_secret:
            raise ValueError("TURN URLs need the relay's shared secret (--turn-secret), from "
                             "which the server makes each party's credentials.")
        if self.turn_secret is not None and not self.turn_secret:
            raise ValueError("The TURN secret must not be empty.")
        if self.turn_ttl <= 0:
            raise ValueError("The TURN credential lifetime must be positive.")

    @property
    def has_relay(self) -> bool:
        """Whether parties get a TURN relay (needed for relay-only sessions)."""
        return bool(self.turn) or any(
            str(url).startswith(("turn:", "turns:"))
            for server in self.static for url in _urls(server))

    def servers(self, who: str, now: float, until: float = math.inf) -> list[dict[str, Any]]:
        """The ``iceServers`` for one party; ``now`` is Unix time, ``who`` names the party
        in the relay's logs (session and pid, never a person's name); TURN credentials
        expire at ``until`` (Unix time), or ``turn_ttl`` after ``now`` if that is sooner."""
        servers: list[dict[str, Any]] = [dict(s) for s in self.static]
        if self.stun:
            servers.append({"urls": list(self.stun)})
        if self.turn:
            assert self.turn_secret is not None
            expires = math.floor(min(now + self.turn_ttl, until))
            username, password = turn_credentials(self.turn_secret, who, expires)
            servers.append({"urls": list(self.turn), "username": username,
                            "credential": password})
        return servers


def _urls(server: dict[str, Any]) -> list[str]:
    urls = server.get("urls", [])
    return [urls] if isinstance(urls, str) else list(urls)
