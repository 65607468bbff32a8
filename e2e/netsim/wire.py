"""A lossy, slow wire in userspace: what ``tc qdisc netem`` would do, for kernels without netem.

This kernel has no netem qdisc, so delay, loss, reordering and duplication are emulated
here. The wire owns pairs of TUN devices; every IP packet that the kernel routes into
one end of a pair is read by this process and, unless it is randomly dropped, written
into the other end after a constant delay. A fraction of the packets (``--reorder``)
is held back ``--reorder-ms`` longer, so that the packets sent just after it overtake
it; a fraction (``--duplicate``) is written twice. One asyncio process serves every
pair, so a simulation costs one process however many parties it has.

The devices are created in this process's own namespace and then moved (by the
caller, with ``ip link set DEV netns NS``) into the router and LAN namespaces: a
moved TUN device stays attached to the file descriptor that created it. They are
not persistent, so they vanish when this process exits, whichever way it exits.

Run as a script (it must not import anything from the project, so that it starts
fast and from any working directory)::

    python wire.py --delay-ms 25 --loss 0.01 --reorder 0.05 --duplicate 0.01 t0r:t0l t1r:t1l

It prints ``wire ready`` on stdout once every device exists, and then nothing more
on stdout; counters go to stderr (logging) when it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import errno
import fcntl
import logging
import os
import random
import signal
import struct
import sys

log = logging.getLogger("netsim.wire")

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
# netem's default queue limit is 1000 packets; a longer one only adds bufferbloat.
DEFAULT_LIMIT = 10000
# Packets read per wake-up: bounds how long one busy direction can starve the others.
READ_BATCH = 64
# A device whose fd reports these is gone (its namespace was deleted): stop serving it.
GONE = {errno.EBADFD, errno.ENODEV, errno.ENXIO, errno.EIO}
#: How much longer a reordered packet is held back than the others (``--reorder-ms``):
#: long enough that, at the rates MPyC sends, several packets overtake it.
DEFAULT_REORDER_MS = 10.0


class Queue:
    """Packets of one direction waiting for their due time, oldest first.

    Every packet in one queue waits the same time, so due times never decrease: FIFO
    order is the due order, and a single timer pointing at the head serves a burst.
    """

    def __init__(self, direction: Direction, wait: float) -> None:
        self.direction = direction
        self.wait = wait
        self.packets: collections.deque[tuple[float, bytes]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self.packets)

    def push(self, loop: asyncio.AbstractEventLoop, packet: bytes) -> None:
        due = loop.time() + self.wait
        self.packets.append((due, packet))
        if self.timer is None:
            self.timer = loop.call_at(due, self.flush)

    def flush(self) -> None:
        self.timer = None
        d = self.direction
        loop = d.wire.loop
        now = loop.time()
        packets = self.packets
        while packets and packets[0][0] <= now:
            d.send(packets.popleft()[1])
        if packets and d.alive:
            self.timer = loop.call_at(packets[0][0], self.flush)

    def clear(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.packets.clear()


def open_tun(name: str) -> int:
    """A non-blocking fd for a new TUN device without packet-info header (raw IP)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class Direction:
    """One direction of one pair: a queue of packets on time, and one of packets held back.

    Both queues are FIFO with a single timer each (``Queue``): the delay is constant
    within a queue. Reordering needs no sorting: a held-back packet simply waits in the
    second queue while later packets leave through the first.
    """

    def __init__(self, wire: Wire, label: str, src: int, dst: int) -> None:
        self.wire = wire
        self.label = label
        self.src = src
        self.dst = dst
        self.queue = Queue(self, wire.delay)
        self.held = Queue(self, wire.delay + wire.reorder_delay)
        self.received = self.sent = self.lost = self.overflow = self.errors = 0
        self.reordered = self.duplicated = 0
        self.alive = True

    def readable(self) -> None:
        wire = self.wire
        for _ in range(READ_BATCH):
            try:
                packet = os.read(self.src, 65536)
            except BlockingIOError:
                return
            except OSError as exc:
                self.errors += 1
                if exc.errno in GONE:
                    self.close()
                    wire.direction_closed()
                return
            if not packet:
                return
            self.received += 1
            # As netem: loss first, then duplication; each copy is reordered or not on
            # its own, so a duplicate may arrive before or after its original.
            if wire.loss and wire.rng.random() < wire.loss:
                self.lost += 1
                continue
            copies = 1
            if wire.duplicate and wire.rng.random() < wire.duplicate:
                self.duplicated += 1
                copies = 2
            for _ in range(copies):
                self.forward(packet)

    def forward(self, packet: bytes) -> None:
        wire = self.wire
        queue = self.queue
        if wire.reorder and wire.rng.random() < wire.reorder:
            self.reordered += 1
            queue = self.held
        elif wire.delay <= 0:
            self.send(packet)
            return
        if len(self.queue) + len(self.held) >= wire.limit:
            self.overflow += 1
            return
        queue.push(wire.loop, packet)

    def send(self, packet: bytes) -> None:
        # A TUN write injects the packet into the stack; a malformed packet or a
        # device that is down makes it fail, which must cost that packet only.
        try:
            os.write(self.dst, packet)
            self.sent += 1
        except OSError:
            self.errors += 1

    def close(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self.wire.loop.remove_reader(self.src)
        self.queue.clear()
        self.held.clear()


class Wire:
    def __init__(self, pairs: list[tuple[str, str]], delay_ms: float, loss: float,
                 seed: int | None, limit: int, reorder: float = 0.0,
                 reorder_ms: float = DEFAULT_REORDER_MS, duplicate: float = 0.0) -> None:
        self.pairs = pairs
        self.delay = delay_ms / 1000
        self.loss = loss
        self.reorder = reorder
        self.reorder_delay = reorder_ms / 1000
        self.duplicate = duplicate
        self.rng = random.Random(seed)
        self.limit = limit
        self.fds: list[int] = []
        self.directions: list[Direction] = []
        self.loop: asyncio.AbstractEventLoop
        self.stopped: asyncio.Event

    def open(self) -> None:
        for a, b in self.pairs:
            fa = open_tun(a)
            self.fds.append(fa)
            fb = open_tun(b)
            self.fds.append(fb)
            self.directions.append(Direction(self, f"{a}->{b}", fa, fb))
            self.directions.append(Direction(self, f"{b}->{a}", fb, fa))

    def direction_closed(self) -> None:
        if not any(d.alive for d in self.directions):
            log.info("every device is gone; stopping")
            self.stopped.set()

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopped = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self.loop.add_signal_handler(sig, self.stopped.set)
        for d in self.directions:
            self.loop.add_reader(d.src, d.readable)
        print("wire ready", flush=True)
        await self.stopped.wait()
        for d in self.directions:
            d.close()
        for d in self.directions:
            log.info("%s: received %d sent %d lost %d reordered %d duplicated %d overflow %d "
                     "errors %d", d.label, d.received, d.sent, d.lost, d.reordered,
                     d.duplicated, d.overflow, d.errors)
        for fd in self.fds:
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay, each direction")
    parser.add_argument("--loss", type=float, default=0.0, help="drop probability, each direction")
    parser.add_argument("--reorder", type=float, default=0.0,
                        help="probability that a packet is held back --reorder-ms longer, so "
                        "that later packets overtake it, each direction")
    parser.add_argument("--reorder-ms", type=float, default=DEFAULT_REORDER_MS,
                        help="how much longer a reordered packet is held back")
    parser.add_argument("--duplicate", type=float, default=0.0,
                        help="probability that a packet is delivered twice, each direction")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                        help="packets queued per direction before tail drop")
    parser.add_argument("pairs", nargs="+", metavar="DEV_A:DEV_B")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s wire %(levelname)s %(message)s")
    pairs = []
    for spec in args.pairs:
        a, sep, b = spec.partition(":")
        if not sep or not a or not b or len(a) > 15 or len(b) > 15:
            parser.error(f"bad pair {spec!r}: want DEV_A:DEV_B, names of at most 15 characters")
        pairs.append((a, b))
    if not 0 <= args.loss < 1 or args.delay_ms < 0:
        parser.error("want 0 <= loss < 1 and delay >= 0")
    if not (0 <= args.reorder <= 1 and 0 <= args.duplicate <= 1 and args.reorder_ms > 0):
        parser.error("want 0 <= reorder <= 1, 0 <= duplicate <= 1 and reorder-ms > 0")
    wire = Wire(pairs, args.delay_ms, args.loss, args.seed, args.limit, args.reorder,
                args.reorder_ms, args.duplicate)
    try:
        wire.open()
    except OSError as exc:
        log.error("cannot create TUN devices: %s", exc)
        return 1
    asyncio.run(wire.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
