"""Direct paths before the relay: the controlling ICE agent gives direct pairs a moment.

aioice nominates aggressively: as the controlling agent it asks to use every pair it
checks, so the first pair whose check succeeds carries the connection. Behind two
port-restricted cone NATs the direct (server-reflexive) pair needs a retransmission
before the hole is punched (the first check hits a router that has not yet seen
outbound traffic to us), while a check through a TURN relay succeeds at once. So the
relay won, and two parties that could talk directly sent everything through the relay:
slower, and the relay operator pays for the bandwidth.

Browsers prefer the direct pair; with this module aioice does too. A check of a pair
that involves a relay candidate does not ask for nomination; once it succeeds, the
controlling agent waits up to ``RELAY_GRACE`` seconds while a direct pair of the same
component is still being checked, and nominates the relay pair only if none succeeded
(RFC 8445's regular nomination, section 8.1.1). Pairs without a relay candidate, the
controlled agent and relay-only connections are unchanged.

It replaces ``aioice.ice.Connection.check_start`` and uses aioice's private state, so
it only applies to the aioice version it was written against.
"""

from __future__ import annotations

import asyncio
import logging

import aioice
from aioice import stun
from aioice.ice import CandidatePair, Connection

log = logging.getLogger(__name__)

SUPPORTED_AIOICE = "0.13.0"
#: How long a succeeded relay pair waits for a direct pair that is still being checked.
#: Hole punching through two cone NATs takes one STUN retransmission (0.5 s); a direct
#: pair that cannot work (a symmetric NAT) is given up on after this.
RELAY_GRACE = 2.0
_PENDING = (CandidatePair.State.FROZEN, CandidatePair.State.WAITING,
            CandidatePair.State.IN_PROGRESS)


def is_relay_pair(pair: CandidatePair) -> bool:
    return "relay" in (pair.local_candidate.type, pair.remote_candidate.type)


def install() -> bool:
    """Patch aioice once; returns whether the tuning is active."""
    if getattr(Connection, "_mpyc_webrtc_tuned", False):
        return True
    if aioice.__version__ != SUPPORTED_AIOICE:
        log.warning("ICE tuning is written for aioice %s, not %s: left off",
                    SUPPORTED_AIOICE, aioice.__version__)
        return False
    original = Connection.check_start

    async def check_start(self: Connection, pair: CandidatePair) -> None:
        if not (self.ice_controlling and not self.remote_is_lite and is_relay_pair(pair)):
            return await original(self, pair)
        await _check_relay_pair(self, pair)

    Connection.check_start = check_start  # type: ignore[method-assign]
    Connection._mpyc_webrtc_tuned = True  # type: ignore[attr-defined]
    return True


def _direct_pending(connection: Connection, component: int) -> bool:
    return any(p.component == component and not is_relay_pair(p) and p.state in _PENDING
               for p in connection._check_list)


async def _check_relay_pair(self: Connection, pair: CandidatePair) -> None:
    # As aioice's check_start (RFC 8445 7.2.5), but with regular nomination after a grace.
    assert self.remote_password is not None
    self.check_state(pair, CandidatePair.State.IN_PROGRESS)
    key = self.remote_password.encode("utf8")
    try:
        _, addr = await pair.protocol.request(self.build_request(pair, nominate=False),
                                              pair.remote_addr, integrity_key=key)
    except stun.TransactionError as exc:
        if exc.response and exc.response.error_code == 487:  # role conflict
            self.switch_role(ice_controlling=not self.ice_controlling)
            return await self.check_start(pair)
        self.check_state(pair, CandidatePair.State.FAILED)
        self.check_complete(pair)
        return
    if addr != pair.remote_addr:
        self.check_state(pair, CandidatePair.State.FAILED)
        self.check_complete(pair)
        return
    if pair.remote_nominated:
        pair.nominated = True
    elif self.ice_controlling:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RELAY_GRACE
        while loop.time() < deadline and pair.component not in self._nominated \
                and _direct_pending(self, pair.component):
            await asyncio.sleep(0.05)
        if pair.component in self._nominated or pair.component in self._nominating:
            # A direct pair won (or another relay pair is being nominated): keep this one
            # as a valid, unused pair.
            self.check_state(pair, CandidatePair.State.SUCCEEDED)
            self.check_complete(pair)
            return
        self._nominating.add(pair.component)
        try:
            await pair.protocol.request(self.build_request(pair, nominate=True),
                                        pair.remote_addr, integrity_key=key)
        except stun.TransactionError:
            self._nominating.discard(pair.component)
            self.check_state(pair, CandidatePair.State.FAILED)
            self.check_complete(pair)
            return
        pair.nominated = True
    self.check_state(pair, CandidatePair.State.SUCCEEDED)
    self.check_complete(pair)
