"""Tell STUN from everything else by the first byte (RFC 7983), before parsing STUN.

aioice's ``StunProtocol`` tries to parse every datagram it receives as a STUN message and
only hands it on as data once the parser gave up: for a WebRTC data channel that is a
raised and caught ``ValueError`` for every DTLS record. RFC 7983 (section 7, updating
RFC 5764 section 5.1.2) says how to demultiplex the protocols that share an ICE
component by the first byte alone: 0-3 is STUN, 16-19 ZRTP, 20-63 DTLS, 64-79 TURN
channel data, 128-191 RTP/RTCP. So a datagram whose first byte is not 0-3 is not STUN,
and goes straight to the ICE connection as data; STUN messages (and empty datagrams)
take aioice's own path.

``DemuxStunProtocol`` depends on aioice alone and changes nothing else, so it could be
offered to aioice as is. It is used where aioice creates its protocols (aioice looks
``StunProtocol`` up in ``aioice.ice`` each time it creates one).
"""

from __future__ import annotations

from typing import Any

from aioice.ice import StunProtocol

#: RFC 7983, section 7: the first byte of a STUN message is 0-3.
STUN_FIRST_BYTE_MAX = 3


class DemuxStunProtocol(StunProtocol):
    """aioice's UDP protocol, with RFC 7983's demultiplexing by the first byte."""

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        if data and data[0] > STUN_FIRST_BYTE_MAX:  # type: ignore[operator]
            self.receiver.data_received(data, self.local_candidate.component)
        else:
            super().datagram_received(data, addr)
