"""Less Python work per packet in aiortc and aioice, and faster loss recovery, installed
on request.

Each module removes work that MPyC's many small messages do not need, or waiting they
should not do (see its docstring and ``docs/architecture.md``, "Packet path"):

- ``sctp_recovery``: loss recovery as a modern TCP's: an RTO from the measured RTT with a
  50 ms floor, a tail-loss probe and fast retransmit on the first gap report (RACK-TLP,
  RFC 8985; RFC 6298);
- ``sctp_tuning``: delayed SACKs, bundled with DATA (RFC 4960 6.2);
- ``ice_tuning``: relay pairs wait for direct pairs, bounded gathering (RFC 8445 8.1.1),
  a check in progress sent again when the peer's arrives (7.3.1.4);
- ``dtls_recovery``: the DTLS server's last handshake flight sent again until the
  peer's packets show it arrived (RFC 6347 leaves it to the client's doubling timer);
- ``dtls_tuning``: DTLS output flushed only when there is some; synchronous records;
- ``sctp_fastpath``: a short path for steady DATA/SACK packets;
- ``dispatch_tuning``: STUN/DTLS told apart by the first byte (RFC 7983, ``stun_demux``),
  datagrams handled where they arrive, data channel messages flushed where sent.

Each module defines subclasses of aiortc's and aioice's classes that override a few
methods and reach the originals through ``super()``. Nothing changes on import:
``install()`` composes the subclasses of the active patches into one class per
original and puts it where aiortc and aioice look the name up each time they create
such an object (``SLOTS``). So every ``RTCPeerConnection`` made afterwards uses them;
an ``RTCSctpTransport`` or ``RTCDtlsTransport`` constructed directly from
``aiortc.rtcsctptransport`` or ``aiortc.rtcdtlstransport`` does not (``installed()``
gives the composed classes). The peer's ``main`` calls ``install()``; so do the tests
and benchmarks that measure aiortc as a peer runs it.

A patch is active only on the versions of aiortc, aioice, pyOpenSSL and pyee it was
written for (``PATCHES``; ``requirements.lock`` pins them): on any other it logs a
warning and steps aside, and aiortc runs as released. ``MPYC_WEBRTC_<NAME>=0`` in the
environment leaves one out, for comparison: ``MPYC_WEBRTC_SCTP_RECOVERY``,
``MPYC_WEBRTC_SCTP_TUNING``, ``MPYC_WEBRTC_ICE_TUNING``, ``MPYC_WEBRTC_DTLS_RECOVERY``,
``MPYC_WEBRTC_DTLS_TUNING``, ``MPYC_WEBRTC_SCTP_FASTPATH``,
``MPYC_WEBRTC_DISPATCH_TUNING``. ``install()`` reports which are active.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aioice.turn

log = logging.getLogger(__name__)

#: Bursts of MPyC traffic overflow aioice's 256 KiB UDP receive buffer, and SCTP only
#: retransmits after a second; 4 MiB removed those stalls in measurements.
UDP_BUFFER = 4 * 1024 * 1024

#: Where aiortc and aioice look up the class they instantiate, at the time they do.
SLOTS: dict[str, tuple[str, str]] = {
    "RTCSctpTransport": ("aiortc.rtcpeerconnection", "RTCSctpTransport"),
    "RTCDtlsTransport": ("aiortc.rtcpeerconnection", "RTCDtlsTransport"),
    "Connection": ("aiortc.rtcicetransport", "Connection"),
    "StunProtocol": ("aioice.ice", "StunProtocol"),
}


@dataclass(frozen=True)
class Patch:
    """One switchable patch: the versions it is written for (distribution -> version,
    ``*`` matching anything: "13.*"), its subclasses per slot
    (``module:Class`` in this package) and an optional set-up function."""

    name: str
    requires: dict[str, str]
    subclasses: dict[str, str] = field(default_factory=dict)
    setup: str | None = None

    @property
    def switch(self) -> str:
        return f"MPYC_WEBRTC_{self.name.upper()}"


#: Outermost first: for each slot, a patch's class comes before those of the patches
#: after it, so its overrides run first and reach theirs through super(). (dtls_tuning's
#: record helpers replace dispatch_tuning's plain ones; sctp_recovery extends the T3
#: methods sctp_fastpath replaces, and sees retransmissions before sctp_tuning bundles a
#: SACK with them; sctp_tuning decides when a SACK goes out, sctp_fastpath how.)
PATCHES: tuple[Patch, ...] = (
    Patch("sctp_recovery", {"aiortc": "1.16.0"},
          {"RTCSctpTransport": "sctp_recovery:LossRecoverySctpTransport"}),
    Patch("sctp_tuning", {"aiortc": "1.16.0"},
          {"RTCSctpTransport": "sctp_tuning:DelayedSackSctpTransport"}),
    Patch("ice_tuning", {"aioice": "0.13.0"},
          {"Connection": "ice_tuning:RelayGraceConnection"}, setup="ice_tuning:install"),
    Patch("dtls_recovery", {"aiortc": "1.16.0", "pyOpenSSL": "26.*"},
          {"RTCDtlsTransport": "dtls_recovery:LastFlightDtlsTransport"}),
    Patch("dtls_tuning", {"aiortc": "1.16.0", "pyOpenSSL": "26.*"},
          {"RTCDtlsTransport": "dtls_tuning:CheaperRecordsDtlsTransport"}),
    Patch("sctp_fastpath", {"aiortc": "1.16.0", "aioice": "0.13.0", "pyee": "13.*"},
          {"RTCSctpTransport": "sctp_fastpath:ShortPathSctpTransport"}),
    Patch("dispatch_tuning", {"aiortc": "1.16.0", "aioice": "0.13.0"},
          {"RTCSctpTransport": "dispatch_tuning:EagerFlushSctpTransport",
           "RTCDtlsTransport": "dispatch_tuning:DirectDtlsTransport",
           "Connection": "dispatch_tuning:DirectReceiveConnection",
           "StunProtocol": "stun_demux:DemuxStunProtocol"}),
)

_active: dict[str, bool] | None = None
_classes: dict[str, type] = {}
_originals: dict[str, type] = {}


def install() -> dict[str, bool]:
    """Install every patch written for the installed versions and not switched off by
    ``MPYC_WEBRTC_<NAME>=0``; returns which are active. Later calls change nothing and
    return the same."""
    global _active
    if _active is not None:
        return dict(_active)
    aioice.turn.UDP_SOCKET_BUFFER_SIZE = UDP_BUFFER
    active: dict[str, bool] = {}
    chosen: dict[str, list[type]] = {}
    for patch in PATCHES:
        if os.environ.get(patch.switch, "1") == "0":
            active[patch.name] = False
            continue
        mismatch = version_mismatch(patch.requires)
        if mismatch is not None:
            log.warning("aiortc patch %s is written for %s, not %s: left off", patch.name,
                        ", ".join(f"{d} {v}" for d, v in patch.requires.items()), mismatch)
            active[patch.name] = False
            continue
        for slot, where in patch.subclasses.items():
            chosen.setdefault(slot, []).append(_load(where))
        if patch.setup is not None:
            _load(patch.setup)()
        active[patch.name] = True
    for slot, bases in chosen.items():
        composed = _compose(slot, bases)
        module_name, name = SLOTS[slot]
        setattr(importlib.import_module(module_name), name, composed)
        _classes[slot] = composed
    log.debug("aiortc patches: %s", ", ".join(n for n, on in active.items() if on) or "none")
    _active = active
    return dict(active)


def installed() -> dict[str, type]:
    """The composed classes ``install()`` put in place, per slot (``SLOTS``)."""
    return dict(_classes)


def compose(slot: str, names: Iterable[str]) -> type:
    """The class ``install()`` puts in ``slot`` when exactly the patches ``names`` are
    active (aiortc's or aioice's own class when none of them has one for it), without
    looking at versions or switches and without installing anything: tests and
    benchmarks build several combinations side by side in one process with it."""
    wanted = set(names)
    unknown = wanted - {patch.name for patch in PATCHES}
    if unknown:
        raise ValueError(f"no such patch: {', '.join(sorted(unknown))}")
    bases = [_load(patch.subclasses[slot]) for patch in PATCHES
             if patch.name in wanted and slot in patch.subclasses]
    return _compose(slot, bases) if bases else _original(slot)


def _compose(slot: str, bases: list[type]) -> type:
    """One class per slot, with the given patches' overrides in PATCHES order."""
    name = SLOTS[slot][1]
    original = _original(slot)
    return type(name, tuple(bases), {
        "__module__": __name__, "__qualname__": name,
        "__doc__": f"{original.__module__}.{name} with "
                   + ", ".join(cls.__name__ for cls in bases) + "."})


def _original(slot: str) -> type:
    """The class aiortc or aioice had in ``slot`` before ``install()``."""
    if slot not in _originals:
        module_name, name = SLOTS[slot]
        _originals[slot] = getattr(importlib.import_module(module_name), name)
    return _originals[slot]


def version_mismatch(requires: dict[str, str],
                     version: Callable[[str], str] = importlib.metadata.version) -> str | None:
    """The installed versions that differ from ``requires`` ("aiortc 1.17.0"), or None."""
    wrong = []
    for distribution, pattern in requires.items():
        try:
            have = version(distribution)
        except importlib.metadata.PackageNotFoundError:
            have = "missing"
        if not fnmatch.fnmatchcase(have, pattern):
            wrong.append(f"{distribution} {have}")
    return ", ".join(wrong) or None


def _load(where: str) -> Callable:
    module_name, _, attribute = where.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module_name}"), attribute)
