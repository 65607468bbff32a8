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

A check from the peer on a pair whose own check is still in progress sends that check
again at once (RFC 8445 7.3.1.4); aioice left it to the check's doubling timer, so a
controlled agent that had learnt the peer's nomination could wait 8 or 16 s for it.

Gathering does not wait for addresses that cannot reach the STUN server. aiortc sends
its offer or answer only once every candidate is gathered, and aioice waits up to 5 s
for a server-reflexive candidate per local address: a VPN or container interface whose
STUN query is never answered delayed each link by 5 s on the offering side and 5 s more
on the answering side. Once one address got its answer, the others get
``GATHER_GRACE`` more seconds (a slower route to the same server is not worth waiting
for); an address that gets no answer keeps its host candidate.

``RelayGraceConnection`` is a subclass of aioice's ``Connection`` (aiortc creates it
where it looks up ``Connection`` in ``aiortc.rtcicetransport``). aioice calls the STUN
query for gathering as a module function (``aioice.ice.server_reflexive_candidate``),
with no method to override: ``install()`` wraps that function, and the wrapper bounds
only the queries of a ``RelayGraceConnection`` (any other agent's go through unchanged).
Both use aioice's private state (check list, nomination sets), hence the aioice version
they are written for (see ``patches.PATCHES``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aioice import ice, stun
from aioice.ice import CandidatePair, Connection

log = logging.getLogger(__name__)

#: How long a succeeded relay pair waits for a direct pair that is still being checked.
#: Hole punching through two cone NATs takes one STUN retransmission (0.5 s); a direct
#: pair that cannot work (a symmetric NAT) is given up on after this.
RELAY_GRACE = 2.0
#: How much longer the STUN queries from other local addresses may take once one of them
#: was answered (before a query that never gets an answer is given up on at 5 s).
GATHER_GRACE = 0.5
_PENDING = (CandidatePair.State.FROZEN, CandidatePair.State.WAITING,
            CandidatePair.State.IN_PROGRESS)


def is_relay_pair(pair: CandidatePair) -> bool:
    return "relay" in (pair.local_candidate.type, pair.remote_candidate.type)


def _direct_pending(connection: Connection, component: int) -> bool:
    return any(p.component == component and not is_relay_pair(p) and p.state in _PENDING
               for p in connection._check_list)


class RelayGraceConnection(Connection):
    """aioice's ICE connection, giving direct pairs ``RELAY_GRACE`` seconds over relay
    pairs, ``GATHER_GRACE`` for STUN answers once one address got its own, and a check
    in progress sent again when the peer's check for its pair arrives."""

    #: Its server-reflexive queries are bounded (see ``bounded_server_reflexive``).
    bounded_gathering = True

    def check_incoming(self, message: stun.Message, addr: tuple[str, int],
                       protocol: Any) -> None:
        super().check_incoming(message, addr, protocol)
        # RFC 8445 7.3.1.4: a check from the peer on a pair whose own check is still in
        # progress makes that check go again at once. aioice leaves it to the check's
        # timer, which doubles (0.5, 1, 2, 4, 8 s): when the first requests were lost
        # (or dropped by a TURN server that had no permission for them yet), the
        # controlled agent learnt the peer's nomination of that pair but waited many
        # seconds, and on lossy links longer than a party waits for its links.
        for pair in self._check_list:
            if pair.protocol is protocol and pair.remote_addr == addr \
                    and pair.state is CandidatePair.State.IN_PROGRESS:
                retransmit_now(protocol, addr)

    async def check_start(self, pair: CandidatePair) -> None:
        if not (self.ice_controlling and not self.remote_is_lite and is_relay_pair(pair)):
            await super().check_start(pair)
        else:
            await self._check_relay_pair(pair)

    async def _check_relay_pair(self, pair: CandidatePair) -> None:
        """aioice's ``check_start`` (RFC 8445 7.2.5) with regular nomination after a grace.

        aioice decides between aggressive and regular nomination inside ``check_start``,
        before the check, and nominates at once after a successful one: there is no hook
        to hold back one pair's nomination, so these are its steps, with the wait added.
        """
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


def retransmit_now(protocol: Any, addr: tuple[str, int]) -> None:
    """Send the requests ``protocol`` still waits for an answer from ``addr`` to once more,
    now (their transactions' timers run on unchanged)."""
    for transaction in list(protocol.transactions.values()):
        if transaction._Transaction__addr == addr \
                and not transaction._Transaction__future.done():
            protocol.send_stun(transaction._Transaction__request, addr)


class _Gathering:
    """Per ICE agent: whether one of its STUN queries got its answer yet."""

    def __init__(self) -> None:
        self.answered = asyncio.Event()


def bounded_server_reflexive(
        query: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``query`` (aioice's ``server_reflexive_candidate``), given up on ``GATHER_GRACE``
    seconds after another local address of the same agent got its answer."""

    async def server_reflexive_candidate(protocol: Any, stun_server: tuple[str, int]) -> Any:
        connection = protocol.receiver
        if not getattr(connection, "bounded_gathering", False):
            return await query(protocol, stun_server)  # not one of ours: as aioice does
        gathering = connection.__dict__.get("_mw_gathering")
        if gathering is None:
            gathering = connection._mw_gathering = _Gathering()
        asking = asyncio.ensure_future(query(protocol, stun_server))
        other_answer = asyncio.ensure_future(gathering.answered.wait())
        try:
            await asyncio.wait((asking, other_answer), return_when=asyncio.FIRST_COMPLETED)
            if not asking.done():
                await asyncio.wait((asking,), timeout=GATHER_GRACE)
            if not asking.done():
                host = getattr(protocol.local_candidate, "host", "?")
                log.debug("no STUN answer via %s within %.1f s of another address's: it "
                          "keeps only its host candidate", host, GATHER_GRACE)
                raise TimeoutError(f"no STUN answer via {host}")
            result = asking.result()  # raises as the query did
            gathering.answered.set()
            return result
        finally:
            other_answer.cancel()
            if not asking.done():
                asking.cancel()

    server_reflexive_candidate.bounds = query  # type: ignore[attr-defined]
    return server_reflexive_candidate


def install() -> None:
    """Bound the STUN queries of ``RelayGraceConnection`` agents (once)."""
    if not hasattr(ice.server_reflexive_candidate, "bounds"):
        ice.server_reflexive_candidate = bounded_server_reflexive(
            ice.server_reflexive_candidate)
