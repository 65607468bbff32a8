"""Two aiortc peer connections in one process, for tests/test_tuning.py.

    python tests/aiortc_pair.py SCENARIO [SCENARIO ...]

Run it inside a loopback-only network namespace (testbed/netns.py): it offers loopback
ICE candidates. The aiortc patches are installed first, as the
peer's ``main`` installs them; the MPYC_WEBRTC_*_TUNING / _FASTPATH environment variables
switch them off. For each scenario it prints one JSON line: {"scenario", "ok", ...}, with
what the connections were really made of ("tunings") and ``install()``'s report
("active").

Scenarios (each on a fresh pair of connections):
- ``order``: both sides send a mix of small and large (fragmented) binary messages and
  a few text messages at once; every message must arrive intact and in order.
- ``rounds``: request and response, as MPyC's rounds: each side sends one message
  (mostly small, sometimes large) and waits for the other's before the next.
- ``lossy``: as ``order``, while each side's UDP sends lose some datagrams and hold
  back others for a few milliseconds (so they arrive out of order): retransmissions,
  gap reports and fast recovery are needed.
- ``lossy_rounds``: as ``rounds``, with lost datagrams: nothing follows a lost message,
  so only sctp_recovery's tail-loss probe recovers it (after ~10 ms), or without it the
  retransmission timer (T3, at least 1 s).
- ``suspend``: as ``order``, while aiortc's SCTP receive and flush coroutines sometimes
  really wait (as they might for a TURN channel binding): order must hold.
- ``drain``: ``bufferedamountlow`` fires once per message with the default threshold
  (0), as aiortc fires it; one-way traffic is acknowledged by delayed SACKs in time.
- ``close``: closing one connection closes the other side's channel.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc import RTCPeerConnection  # noqa: E402
from aiortc import rtcsctptransport as sctp  # noqa: E402

from mpyc_webrtc.native import ice as native  # noqa: E402
from mpyc_webrtc.native import patches  # noqa: E402
from mpyc_webrtc.native.join import new_event_loop  # noqa: E402
from mpyc_webrtc.native.patches import (  # noqa: E402
    dispatch_tuning,
    dtls_tuning,
    sctp_fastpath,
    sctp_recovery,
)

ACTIVE = patches.install()

#: How often each tuned path ran (counted by wrapping its methods): messages sent on the
#: short path, datagrams handled where they arrived.
COUNTS = {"fast_send": 0, "pushed": 0}
#: What the last pair of connections was really made of.
TUNINGS = {"dtls": False, "dispatch": False, "fastpath": False, "recovery": False}


def _count(cls, name, key, taken=lambda result: True):
    original = getattr(cls, name)

    def counted(*args, **kwargs):
        result = original(*args, **kwargs)
        if taken(result):
            COUNTS[key] += 1
        return result

    setattr(cls, name, counted)


_count(sctp_fastpath.ShortPathSctpTransport, "_mw_send_now", "fast_send")
_count(dispatch_tuning.DirectDtlsTransport, "_mw_push", "pushed",
       taken=lambda result: result is not False)


def sctp_class():
    """The SCTP transport class RTCPeerConnection creates (patched or aiortc's)."""
    return patches.installed().get("RTCSctpTransport", sctp.RTCSctpTransport)


async def connected_pair():
    native.allow_loopback_candidates()
    a = RTCPeerConnection(native.rtc_configuration([]))
    b = RTCPeerConnection(native.rtc_configuration([]))
    da = a.createDataChannel("mpyc", negotiated=True, id=0)
    db = b.createDataChannel("mpyc", negotiated=True, id=0)
    opened = [asyncio.Event(), asyncio.Event()]
    for channel, event in zip((da, db), opened, strict=True):
        channel.on("open", event.set)
        if channel.readyState == "open":
            event.set()
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 20)
    dtls = a.sctp.transport
    TUNINGS.update(
        dtls=isinstance(dtls, dtls_tuning.CheaperRecordsDtlsTransport),
        dispatch=isinstance(dtls, dispatch_tuning.DirectDtlsTransport) and isinstance(
            dtls.transport._connection, dispatch_tuning.DirectReceiveConnection),
        fastpath=isinstance(a.sctp, sctp_fastpath.ShortPathSctpTransport),
        recovery=isinstance(a.sctp, sctp_recovery.LossRecoverySctpTransport))
    return a, b, da, db


def nominated_protocol(pc):
    connection = pc.sctp.transport.transport._connection
    return next(iter(connection._nominated.values())).protocol


class LossyTransport:
    """Stands in for a UDP transport: drops some datagrams, holds back others."""

    def __init__(self, inner, loop, rng, loss=0.05, delay=0.05):
        self.inner, self.loop, self.rng = inner, loop, rng
        self.loss, self.delay = loss, delay
        self.dropped = self.delayed = 0

    def sendto(self, data, addr=None):
        roll = self.rng.random()
        if roll < self.loss:
            self.dropped += 1
        elif roll < self.loss + self.delay:
            self.delayed += 1
            self.loop.call_later(0.003, self.inner.sendto, data, addr)
        else:
            self.inner.sendto(data, addr)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def make_messages(rng, count):
    """(kind, payload) with a sequence number inside each payload."""
    messages = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.05:
            messages.append(f"text {i}")
        else:
            # Around one DATA chunk's worth (1160 bytes) and well beyond (fragmented).
            size = rng.choice((1, 20, 100, 1000, 1160, 1161, 3000, 20000, 70000)) \
                if roll > 0.3 else rng.randint(1, 300)
            messages.append(struct.pack("!I", i) + rng.randbytes(max(0, size - 4)))
    return messages


async def exchange(da, db, count, seed, pace=8):
    """Both directions at once; returns a problem description or None."""
    rng = random.Random(seed)
    to_b, to_a = make_messages(rng, count), make_messages(rng, count)
    got_b, got_a = [], []
    done = asyncio.get_running_loop().create_future()

    def receiver(into, total):
        def on_message(message):
            into.append(message)
            if len(got_a) == total and len(got_b) == total and not done.done():
                done.set_result(None)
        return on_message

    db.on("message", receiver(got_b, count))
    da.on("message", receiver(got_a, count))

    async def send_all(channel, messages):
        for i, message in enumerate(messages):
            channel.send(message)
            if i % pace == 0:
                await asyncio.sleep(0)  # let the other side answer in between
            while channel.bufferedAmount > 1_000_000:
                await asyncio.sleep(0.001)

    await asyncio.gather(send_all(da, to_b), send_all(db, to_a))
    try:
        await asyncio.wait_for(done, 60)
    except TimeoutError:
        return f"timed out: {len(got_b)}/{count} and {len(got_a)}/{count} arrived"
    for name, sent, got in (("a->b", to_b, got_b), ("b->a", to_a, got_a)):
        if got != sent:
            first = next(i for i, (x, y) in enumerate(zip(sent, got, strict=True)) if x != y) \
                if len(got) == len(sent) else None
            return f"{name}: {len(got)} of {len(sent)} arrived, first difference at {first}"
    return None


async def rounds(da, db, count, seed):
    """Request and response; returns a problem description or None."""
    rng = random.Random(seed)
    to_b, to_a = make_messages(rng, count), make_messages(rng, count)
    inbox = {"a": asyncio.Queue(), "b": asyncio.Queue()}
    da.on("message", inbox["a"].put_nowait)
    db.on("message", inbox["b"].put_nowait)
    for i in range(count):
        da.send(to_b[i])
        db.send(to_a[i])
        try:
            got_b = await asyncio.wait_for(inbox["b"].get(), 20)
            got_a = await asyncio.wait_for(inbox["a"].get(), 20)
        except TimeoutError:
            return f"round {i}: no answer"
        if got_b != to_b[i] or got_a != to_a[i]:
            return f"round {i}: wrong message"
    return None


async def scenario_rounds():
    a, b, da, db = await connected_pair()
    try:
        problem = await rounds(da, db, 400, seed=4)
        return {"ok": problem is None, "problem": problem}
    finally:
        await a.close()
        await b.close()


async def lossy_scenario(run, seed: int, **loss):
    """``run(da, db)`` over a pair whose nominated UDP transports drop and delay
    datagrams; ok if it reports no problem and something was really dropped."""
    a, b, da, db = await connected_pair()
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    lossy = []
    for pc in (a, b):
        protocol = nominated_protocol(pc)
        protocol.transport = LossyTransport(protocol.transport, loop, rng, **loss)
        lossy.append(protocol.transport)
    try:
        problem = await run(da, db)
        dropped = sum(t.dropped for t in lossy)
        return {"ok": problem is None and dropped > 0, "problem": problem,
                "dropped": dropped, "delayed": sum(t.delayed for t in lossy)}
    finally:
        for pc in (a, b):
            protocol = nominated_protocol(pc)
            protocol.transport = protocol.transport.inner
        await a.close()
        await b.close()


async def scenario_lossy_rounds():
    return await lossy_scenario(lambda da, db: rounds(da, db, 80, seed=5), 8, loss=0.03)


async def scenario_order():
    a, b, da, db = await connected_pair()
    try:
        problem = await exchange(da, db, 600, seed=1)
        return {"ok": problem is None, "problem": problem}
    finally:
        await a.close()
        await b.close()


async def scenario_lossy():
    return await lossy_scenario(lambda da, db: exchange(da, db, 400, seed=2), 7)


async def scenario_suspend():
    # The receive path as the DTLS transport calls it (the outermost _handle_data), and
    # aiortc's own flush (which the eager flush runs).
    cls, base = sctp_class(), sctp.RTCSctpTransport
    own_handle_data = "_handle_data" in cls.__dict__
    handle_data, flush = cls._handle_data, base._data_channel_flush
    rng = random.Random(3)
    waits = {"receive": 0, "flush": 0}

    async def waiting_handle_data(self, data):
        if rng.random() < 0.1:
            waits["receive"] += 1
            await asyncio.sleep(0.002)
        await handle_data(self, data)

    async def waiting_flush(self):
        if rng.random() < 0.1:
            waits["flush"] += 1
            await asyncio.sleep(0.002)
        await flush(self)

    cls._handle_data, base._data_channel_flush = waiting_handle_data, waiting_flush
    try:
        a, b, da, db = await connected_pair()
        try:
            problem = await exchange(da, db, 300, seed=3) or await rounds(da, db, 200, 6)
            return {"ok": problem is None and all(waits.values()), "problem": problem,
                    **waits}
        finally:
            await a.close()
            await b.close()
    finally:
        base._data_channel_flush = flush
        if own_handle_data:
            cls._handle_data = handle_data
        else:
            del cls._handle_data


async def scenario_drain():
    COUNT = 51  # odd: the last SACK is never due for a second packet, only for its timer
    a, b, da, db = await connected_pair()
    try:
        events = []
        da.on("bufferedamountlow", lambda: events.append(da.bufferedAmount))
        received = []
        db.on("message", received.append)
        for i in range(COUNT):
            da.send(struct.pack("!I", i) * 10)
            await asyncio.sleep(0.001)
        for _ in range(200):
            if len(received) == COUNT:
                break
            await asyncio.sleep(0.01)
        # b never sends DATA: its delayed SACKs go out on their own within 5 ms, so a
        # has nothing outstanding (and T3 stopped) well before T3 could expire (1 s).
        await asyncio.sleep(0.05)
        transport = a.sctp  # the RTCSctpTransport
        acked = not transport._sent_queue and not transport._t3_handle
        return {"ok": len(events) == COUNT and len(received) == COUNT and not any(events)
                and acked, "events": len(events), "received": len(received),
                "acked": acked}
    finally:
        await a.close()
        await b.close()


async def scenario_close():
    a, b, da, db = await connected_pair()
    closed = asyncio.Event()
    db.on("close", closed.set)
    received = []
    db.on("message", received.append)
    da.send(b"last words")
    await asyncio.sleep(0.1)
    await a.close()
    try:
        await asyncio.wait_for(closed.wait(), 10)
    except TimeoutError:
        pass
    await b.close()
    return {"ok": closed.is_set() and received == [b"last words"],
            "closed": closed.is_set(), "received": len(received)}


async def main(names):
    for name in names:
        COUNTS.update(fast_send=0, pushed=0)
        TUNINGS.update(dtls=False, dispatch=False, fastpath=False, recovery=False)
        result = await globals()[f"scenario_{name}"]()
        print(json.dumps({"scenario": name, **result, **COUNTS, "tunings": TUNINGS,
                          "active": ACTIVE}), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONASYNCIODEBUG", "0")
    loop = new_event_loop()
    loop.run_until_complete(main(sys.argv[1:]))
