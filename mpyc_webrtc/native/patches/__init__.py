"""Less Python work per packet in aiortc and aioice, installed on request.

Each module removes per-packet work that MPyC's many small messages do not need (see
each module's docstring and ``docs/architecture.md``, "Packet path"). Nothing is changed
on import: ``install()`` puts them in place, in an order where each builds on the ones
before, and says which are active. The peer's ``main`` calls it; so do the tests and
benchmarks that measure aiortc as a peer runs it. ``MPYC_WEBRTC_<NAME>=0`` in the
environment leaves one out, for comparison.
"""

from __future__ import annotations

import logging
import os

import aioice.turn

from . import dispatch_tuning, dtls_tuning, ice_tuning, sctp_fastpath, sctp_tuning

log = logging.getLogger(__name__)

#: Bursts of MPyC traffic overflow aioice's 256 KiB UDP receive buffer, and SCTP only
#: retransmits after a second; 4 MiB removed those stalls in measurements.
UDP_BUFFER = 4 * 1024 * 1024

#: In this order: dispatch_tuning builds on dtls_tuning's record helpers, and
#: sctp_fastpath wraps what sctp_tuning and dispatch_tuning installed.
PATCHES = {
    "sctp_tuning": sctp_tuning.install,
    "ice_tuning": ice_tuning.install,
    "dtls_tuning": dtls_tuning.install,
    "dispatch_tuning": dispatch_tuning.install,
    "sctp_fastpath": sctp_fastpath.install,
}


def install() -> dict[str, bool]:
    """Install every patch not switched off by ``MPYC_WEBRTC_<NAME>=0``; returns which
    are active."""
    aioice.turn.UDP_SOCKET_BUFFER_SIZE = UDP_BUFFER
    active = {}
    for name, install_one in PATCHES.items():
        if os.environ.get(f"MPYC_WEBRTC_{name.upper()}", "1") == "0":
            active[name] = False
            continue
        active[name] = install_one()
    log.debug("aiortc patches: %s", ", ".join(n for n, on in active.items() if on) or "none")
    return active
