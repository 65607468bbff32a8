"""A lossy, slow wire in userspace: what ``tc qdisc netem`` would do, for kernels without netem.

This kernel has no netem qdisc, so delay and loss are emulated here. The wire owns
pairs of TUN devices; every IP packet that the kernel routes into one end of a pair
is read by this process and, unless it is randomly dropped, written into the other
end after a constant delay. One asyncio process serves every pair, so a simulation
costs one process however many parties it has.

The devices are created in this process's own namespace and then moved (by the
caller, with ``ip link set DEV netns NS``) into the router and LAN namespaces: a
moved TUN device stays attached to the file descriptor that created it. They are
not persistent, so they vanish when this process exits, whichever way it exits.

Run as a script (it must not import anything from the project, so that it starts
fast and from any working directory)::

    python wire.py --delay-ms 25 --loss 0.01 t0r:t0l t1r:t1l

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
    """One direction of one pair: FIFO with a due time per packet.

    A single timer always points at the head of the deque. Because the delay is
    constant, due times are non-decreasing, so FIFO order is preserved and a burst
    costs one timer rather than one ``call_later`` per packet.
    """

    def __init__(self, wire: Wire, label: str, src: int, dst: int) -> None:
        self.wire = wire
        self.label = label
        self.src = src
        self.dst = dst
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.received = self.sent = self.lost = self.overflow = self.errors = 0
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
            if wire.loss and wire.rng.random() < wire.loss:
                self.lost += 1
                continue
            if wire.delay <= 0:
                self.send(packet)
                continue
            if len(self.queue) >= wire.limit:
                self.overflow += 1
                continue
            due = wire.loop.time() + wire.delay
            self.queue.append((due, packet))
            if self.timer is None:
                self.timer = wire.loop.call_at(due, self.flush)

    def flush(self) -> None:
        self.timer = None
        now = self.wire.loop.time()
        queue = self.queue
        while queue and queue[0][0] <= now:
            self.send(queue.popleft()[1])
        if queue and self.alive:
            self.timer = self.wire.loop.call_at(queue[0][0], self.flush)

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
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()


class Wire:
    def __init__(self, pairs: list[tuple[str, str]], delay_ms: float, loss: float,
                 seed: int | None, limit: int) -> None:
        self.pairs = pairs
        self.delay = delay_ms / 1000
        self.loss = loss
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
            log.info("%s: received %d sent %d lost %d overflow %d errors %d", d.label,
                     d.received, d.sent, d.lost, d.overflow, d.errors)
        for fd in self.fds:
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay, each direction")
    parser.add_argument("--loss", type=float, default=0.0, help="drop probability, each direction")
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
    wire = Wire(pairs, args.delay_ms, args.loss, args.seed, args.limit)
    try:
        wire.open()
    except OSError as exc:
        log.error("cannot create TUN devices: %s", exc)
        return 1
    asyncio.run(wire.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
