"""Two aiortc SCTP associations in one process, over real DTLS and an in-memory wire
that delays and loses packets: for tests and benchmarks of SCTP's loss recovery.

There is no ICE: each side's DTLS transport sends its records into a queue the other
side reads, as aiortc's own tests do (``dummy_ice_transport_pair``). Nothing gathers
interfaces or opens a socket, so no network namespace is needed. What is lost is
chosen two ways, both repeatable:

- ``Link.loss`` with ``seed``: each DTLS record is lost with that probability, drawn
  from a seeded random generator (once the association is up);
- ``Side.drop``: a predicate on each SCTP packet (decrypted, just before the receiving
  association would handle it), e.g. "the 3rd packet with DATA": deterministic loss
  of a chosen packet, as aiortc's tests do with loss patterns.

Each side logs the SCTP packets it received (``Side.log``: event-loop time, chunk
types, DATA TSNs, dropped or not), so tests can tell when a lost chunk came again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCDataChannel, RTCDataChannelParameters
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcsctptransport import RTCSctpTransport

DATA, SACK = 0, 3


#: (chunk type, flags, TSN for DATA else None)
Chunk = tuple[int, int, int | None]


def chunks(packet: bytes) -> list[Chunk]:
    """The (type, flags, TSN for DATA else None) of each chunk of an SCTP packet."""
    found: list[Chunk] = []
    pos = 12
    while pos + 4 <= len(packet):
        kind, flags, length = struct.unpack_from("!BBH", packet, pos)
        if length < 4:
            break
        tsn = struct.unpack_from("!L", packet, pos + 4)[0] if kind == DATA else None
        found.append((kind, flags, tsn))
        pos += length + (-length % 4)
    return found


@dataclass
class Received:
    """One SCTP packet as it reached a side."""

    time: float
    chunks: list[Chunk]
    dropped: bool

    @property
    def tsns(self) -> list[int]:
        return [tsn for kind, _, tsn in self.chunks if kind == DATA and tsn is not None]

    @property
    def types(self) -> set[int]:
        return {kind for kind, _, _ in self.chunks}


class MemoryIceTransport:
    """What ``RTCDtlsTransport`` uses of an ICE transport (its role, ``_send``,
    ``_recv``, ``stop``), over two queues; records it sends cross the ``Link``."""

    def __init__(self, role: str, link: Link, inbox: asyncio.Queue[bytes | None],
                 outbox: asyncio.Queue[bytes | None]) -> None:
        self.role = role
        self._link, self._inbox, self._outbox = link, inbox, outbox

    async def _send(self, data: bytes) -> None:
        self._link.carry(self._outbox, data)

    async def _recv(self) -> bytes:
        data = await self._inbox.get()
        if data is None:
            raise ConnectionError
        return data

    async def stop(self) -> None:
        self._inbox.put_nowait(None)


@dataclass
class Side:
    """One end: its SCTP association, data channel and the packets it received."""

    sctp: Any = None
    channel: Any = None
    #: Drops a received SCTP packet when it returns True (packet, its chunks).
    drop: Callable[[bytes, list[Chunk]], bool] | None = None
    #: The same while the association is being set up (INIT, INIT ACK, COOKIE ...).
    drop_setup: Callable[[bytes, list[Chunk]], bool] | None = None
    log: list[Received] = field(default_factory=list)


@dataclass
class Link:
    """Both directions: each record arrives ``delay`` seconds after it is sent (so the
    RTT is twice that), unless lost (``loss``) or held back another ``hold_time``
    (``hold``, so that it arrives after later ones), once ``lossy`` is set."""

    delay: float = 0.0
    loss: float = 0.0
    seed: int = 0
    hold: float = 0.0
    hold_time: float = 0.003
    lossy: bool = False
    carried: int = 0
    lost: int = 0
    held: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def carry(self, queue: asyncio.Queue[bytes | None], data: bytes) -> None:
        self.carried += 1
        delay = self.delay
        if self.lossy and (self.loss or self.hold):
            roll = self.rng.random()
            if roll < self.loss:
                self.lost += 1
                return
            if roll < self.loss + self.hold:
                self.held += 1
                delay += self.hold_time
        if delay:
            asyncio.get_running_loop().call_later(delay, queue.put_nowait, data)
        else:
            queue.put_nowait(data)


def _watch(side: Side) -> None:
    """Log (and maybe drop) each SCTP packet before ``side``'s association handles it:
    the DTLS transport hands it to ``_handle_data``, looked up on the instance."""
    sctp = side.sctp
    handle = sctp._handle_data
    loop = asyncio.get_running_loop()

    async def watched(data: bytes) -> None:
        found = chunks(data)
        up = sctp._association_state is RTCSctpTransport.State.ESTABLISHED
        drop = side.drop if up else side.drop_setup
        dropped = bool(drop is not None and drop(data, found))
        side.log.append(Received(loop.time(), found, dropped))
        if not dropped:
            await handle(data)

    sctp._handle_data = watched


@contextlib.asynccontextmanager
async def sctp_pair(sctp_class: type = RTCSctpTransport, *,
                    sctp_class_b: type | None = None,
                    dtls_class: type = RTCDtlsTransport, link: Link | None = None,
                    ordered: bool = True,
                    drop_setup: Callable[[str, bytes, list[Chunk]], bool] | None = None,
                    ) -> AsyncIterator[tuple[Side, Side, Link]]:
    """An established association between a (DTLS client) and b, each with an open
    negotiated data channel (id 0, reliable, ``ordered`` or not); ``link`` becomes lossy
    once they are up. Both start the association (RFC 8841 9.3); ``drop_setup`` drops
    what reaches a side ("a" or "b") before then (``Side.drop_setup``)."""
    link = link or Link()
    a_to_b: asyncio.Queue[bytes | None] = asyncio.Queue()
    b_to_a: asyncio.Queue[bytes | None] = asyncio.Queue()
    ice_a = MemoryIceTransport("controlled", link, b_to_a, a_to_b)
    ice_b = MemoryIceTransport("controlling", link, a_to_b, b_to_a)
    dtls_a = dtls_class(ice_a, [RTCCertificate.generateCertificate()])
    dtls_b = dtls_class(ice_b, [RTCCertificate.generateCertificate()])
    try:
        await asyncio.wait_for(asyncio.gather(
            dtls_b.start(dtls_a.getLocalParameters()),
            dtls_a.start(dtls_b.getLocalParameters())), 10)
        a, b = Side(sctp_class(dtls_a)), Side((sctp_class_b or sctp_class)(dtls_b))
        if drop_setup is not None:
            a.drop_setup = functools.partial(drop_setup, "a")
            b.drop_setup = functools.partial(drop_setup, "b")
        for side in (a, b):
            _watch(side)
            side.channel = RTCDataChannel(side.sctp, RTCDataChannelParameters(
                label="mpyc", negotiated=True, id=0, ordered=ordered))
        await b.sctp.start(a.sctp.getCapabilities(), a.sctp.port)
        await a.sctp.start(b.sctp.getCapabilities(), b.sctp.port)
        for _ in range(1000):
            if all(s.channel.readyState == "open" for s in (a, b)):
                break
            await asyncio.sleep(0.01)
        else:
            raise TimeoutError("the SCTP association did not come up")
        link.lossy = True
        try:
            yield a, b, link
        finally:
            link.lossy = False
            await a.sctp.stop()
            await b.sctp.stop()
    finally:
        await dtls_a.stop()
        await dtls_b.stop()
