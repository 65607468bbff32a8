"""Which ICE servers a native party uses, and what aiortc makes of its connection.

aiortc takes only the first ``stun:`` and the first ``turn:`` URL and never defaults
sensibly (``iceServers=None`` means Google's STUN server), so the party picks the two it
can use, after asking over UDP whether the STUN server answers at all.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aioice.ice
import aioice.stun
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection
from aiortc.rtcicetransport import parse_stun_turn_uri

from ..ice import url_transport

log = logging.getLogger(__name__)


def allow_loopback_candidates() -> None:
    """Test-only opt-in: also offer 127.0.0.1/::1 as ICE host candidates.

    aioice leaves loopback out, so in a loopback-only network namespace ICE would
    never connect. Never use this for real sessions: it is for tests that run all
    parties on one host inside a namespace.
    """
    original = aioice.ice.get_host_addresses
    if getattr(original, "allows_loopback", False):
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    get_host_addresses.allows_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses


def rtc_configuration(ice_servers: list[dict[str, Any]], *,
                      relay_only: bool = False) -> RTCConfiguration:
    # An explicit list, even if empty: with None, aiortc silently uses Google's STUN.
    return RTCConfiguration(
        iceServers=[RTCIceServer(urls=s["urls"], username=s.get("username"),
                                 credential=s.get("credential")) for s in ice_servers],
        iceTransportPolicy=(RTCIceTransportPolicy.RELAY if relay_only
                            else RTCIceTransportPolicy.ALL))


def aiortc_takes(url: str) -> bool:
    """Whether aiortc can use ``url``. It cannot parse an IPv6 address as host
    (``stun:[2001:db8::1]:3478``, which a server listening on one hands out for browsers),
    and creating the peer connection would fail on it; its ICE asks STUN servers over IPv4
    only anyway."""
    try:
        parse_stun_turn_uri(url)
    except ValueError:
        return False
    return True


def plan_ice_servers(ice_servers: list[dict[str, Any]], udp_ok: bool) -> list[dict[str, Any]]:
    """The one STUN and one TURN server aiortc will use, in that order.

    aiortc takes only the first ``stun:`` and the first ``turn:`` URL, and each server it
    cannot reach costs up to 5 s of gathering. So where UDP to the servers gets no answer
    (a firewall that blocks UDP), STUN is useless and the relay must be reached over TCP;
    where it does, STUN and TURN over UDP are best, TCP being the fallback.
    """
    stun: list[dict[str, Any]] = []
    turn: dict[str, list[dict[str, Any]]] = {"udp": [], "tcp": []}
    for server in ice_servers:
        urls = server.get("urls", [])
        for url in [urls] if isinstance(urls, str) else urls:
            one = {**server, "urls": url}
            if not aiortc_takes(url):
                log.debug("ICE server %s left out: aiortc cannot use it", url)
            elif url.startswith(("stun:", "stuns:")):
                stun.append(one)
            elif url.startswith(("turn:", "turns:")):
                turn[url_transport(url)].append(one)
    order = ("udp", "tcp") if udp_ok else ("tcp",)
    relays = [server for transport in order for server in turn[transport]]
    return (stun[:1] if udp_ok else []) + relays[:1]


def udp_probe_target(ice_servers: list[dict[str, Any]]) -> tuple[str, int] | None:
    """Where to ask whether UDP gets through: the first STUN server, else the first TURN
    server reached over UDP (TURN servers answer STUN binding requests too)."""
    candidates = []
    for server in ice_servers:
        urls = server.get("urls", [])
        for url in [urls] if isinstance(urls, str) else urls:
            if not aiortc_takes(url):
                continue
            if url.startswith("stun:"):
                candidates.insert(0, url)
            elif url.startswith("turn:") and url_transport(url) == "udp":
                candidates.append(url)
    if not candidates:
        return None
    address = candidates[0].split(":", 1)[1].split("?", 1)[0]
    host, _, port = address.rpartition(":")
    if not host:
        return address, 3478
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


async def udp_answers(host: str, port: int, tries: int = 3, wait: float = 0.5) -> bool:
    """Whether a STUN server answers a binding request over UDP (a few tries: packets
    get lost)."""
    loop = asyncio.get_running_loop()
    answered = loop.create_future()

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not answered.done():
                answered.set_result(True)

        def error_received(self, exc: Exception) -> None:
            log.debug("UDP probe to %s:%d: %s", host, port, exc)

    try:
        transport, _ = await loop.create_datagram_endpoint(Probe, remote_addr=(host, port))
    except OSError as exc:
        log.debug("UDP probe to %s:%d impossible: %s", host, port, exc)
        return False
    try:
        for _ in range(tries):
            request = aioice.stun.Message(message_method=aioice.stun.Method.BINDING,
                                          message_class=aioice.stun.Class.REQUEST)
            transport.sendto(bytes(request))
            try:
                return await asyncio.wait_for(asyncio.shield(answered), wait)
            except TimeoutError:
                continue
        return False
    finally:
        transport.close()


def selected_candidates(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """The types ("host", "srflx", "prflx", "relay") of the local and the remote candidate
    of the connection's selected ICE pair; None while (or if) there is none.

    aiortc has no public API for the selected pair: aioice's ``Connection._nominated``
    holds it while the connection is open.
    """
    try:
        connection = pc.sctp.transport.transport._connection  # type: ignore[union-attr]
        pair = next(iter(connection._nominated.values()), None)
        if pair is None:
            return None
        return pair.local_candidate.type, pair.remote_candidate.type
    except Exception:
        return None


def ice_path(pc: RTCPeerConnection) -> str | None:
    """"relayed" if the connection's selected ICE pair goes through a TURN relay, else
    "direct"; None while (or if) that cannot be told."""
    types = selected_candidates(pc)
    if types is None:
        return None
    return "relayed" if "relay" in types else "direct"
